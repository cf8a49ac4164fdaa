//! `walrus check`: a preflight of everything walrus needs from PostgreSQL, each failure
//! with the exact SQL or setting that fixes it.
//!
//! Checks run on the ordinary SQL connection and change nothing. They cover the server
//! version, `wal_level`, free replication slots and WAL senders, the role's REPLICATION
//! attribute and SELECT grants, each configured table (exists, has a primary key or a
//! usable replica identity), the publication's and slot's state, and, when streaming of
//! large transactions will be on for this server, the spool directory (writable, free space
//! against `source.spool_max_bytes`).

use std::path::Path;

use tokio_postgres::Client;
use walrus_core::config::{Config, TablePattern, STREAMING_MIN_MAJOR};

use crate::conn::ConnParams;
use crate::error::PgError;
use crate::operations::setup::{self, quote_ident, quote_literal};
use crate::server::{self, ServerInfo};

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but worth knowing.
    Warn,
    /// walrus will not work until fixed.
    Fail,
}

/// One check's result.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CheckResult {
    /// What was checked.
    pub name: String,
    /// Outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// The SQL or setting that fixes it, for warnings and failures.
    pub fix: Option<String>,
}

impl CheckResult {
    fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        CheckResult {
            name: name.into(),
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    fn warn(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        CheckResult {
            name: name.into(),
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn fail(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        CheckResult {
            name: name.into(),
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Runs every check. A connection failure is itself reported as a failed check.
pub async fn run(config: &Config) -> Vec<CheckResult> {
    let params = match ConnParams::from_config(&config.source) {
        Ok(p) => p,
        Err(e) => {
            return vec![CheckResult::fail(
                "connection",
                e.to_string(),
                "fix source.url",
            )]
        }
    };
    let client = match params.connect_sql().await {
        Ok(c) => c,
        Err(e) => {
            return vec![CheckResult::fail(
                "connection",
                format!("cannot connect to {}: {e}", params.display()),
                "check that PostgreSQL is running and source.url (host, port, user, password, database) is right",
            )]
        }
    };
    let mut out = vec![CheckResult::ok(
        "connection",
        format!("connected to {}", params.display()),
    )];
    if let Err(e) = checks(&client, config, &params, &mut out).await {
        out.push(CheckResult::fail(
            "query",
            e.to_string(),
            "run walrus check as a role that can read the catalogs",
        ));
    }
    if let Some(registry) = &config.format.registry {
        out.extend(registry_checks(registry, &config.topic_prefix).await);
    }
    out
}

/// `[format.registry]`: reachable, and each subject of walrus's topics with its
/// compatibility level (the level decides which ALTER TABLEs the registry will accept).
async fn registry_checks(
    cfg: &walrus_core::config::RegistryConfig,
    topic_prefix: &str,
) -> Vec<CheckResult> {
    use walrus_core::format::avro::RegistryClient;
    let fix = "check format.registry.url, username/password and TLS settings";
    let client = match RegistryClient::from_config(cfg) {
        Ok(c) => c,
        Err(e) => return vec![CheckResult::fail("schema registry", e.to_string(), fix)],
    };
    let level = match client.compatibility(None).await {
        Ok(l) => l,
        Err(e) => return vec![CheckResult::fail("schema registry", e.to_string(), fix)],
    };
    let mut out = vec![CheckResult::ok(
        "schema registry",
        format!("{} reachable; default compatibility level {level}", cfg.url),
    )];
    let subjects = match client.subjects().await {
        Ok(s) => s,
        Err(e) => {
            out.push(CheckResult::warn(
                "schema registry subjects",
                e.to_string(),
                fix,
            ));
            return out;
        }
    };
    for subject in subjects.iter().filter(|s| {
        s.starts_with(&format!("{topic_prefix}.")) || s.contains(&format!("-{topic_prefix}."))
    }) {
        match client.compatibility(Some(subject)).await {
            Ok(l) => out.push(CheckResult::ok(
                format!("subject {subject}"),
                format!("compatibility level {l}"),
            )),
            Err(e) => out.push(CheckResult::warn(
                format!("subject {subject}"),
                e.to_string(),
                fix,
            )),
        }
    }
    out
}

async fn setting(client: &Client, name: &str) -> Result<String, PgError> {
    let row = client
        .query_one("SELECT current_setting($1)", &[&name])
        .await
        .map_err(|e| PgError::sql(format!("reading setting {name}"), e))?;
    Ok(row.get(0))
}

async fn checks(
    client: &Client,
    config: &Config,
    params: &ConnParams,
    out: &mut Vec<CheckResult>,
) -> Result<(), PgError> {
    let server = ServerInfo::query(client).await?;
    if server.at_least(server::MIN_MAJOR) {
        let differences = server.differences();
        let detail = if differences.is_empty() {
            format!(
                "PostgreSQL {} (major {}): every feature walrus uses",
                server.text, server.major
            )
        } else {
            format!(
                "PostgreSQL {} (major {}); on this major walrus: {}",
                server.text,
                server.major,
                differences.join("; ")
            )
        };
        out.push(CheckResult::ok("server version", detail));
    } else {
        out.push(CheckResult::fail(
            "server version",
            format!(
                "PostgreSQL {} (major {}) has no logical replication with pgoutput",
                server.text, server.major
            ),
            "upgrade to PostgreSQL 10 or later (14+ recommended)",
        ));
        // The catalog queries below name what 9.x does not have.
        return Ok(());
    }
    // Settings this major cannot serve: `walrus run` refuses them at startup.
    if let Err(e) = server::refuse_unsupported(config, &server) {
        out.push(CheckResult::fail(
            "server features",
            e.to_string(),
            "turn the named key off, or upgrade PostgreSQL to the version named",
        ));
    }

    // Streamed transactions are spooled under source.spool_dir (replication::spool).
    if config.source.streaming.enabled_for(server.major) && server.major >= STREAMING_MIN_MAJOR {
        out.push(spool_check(
            &config.spool_dir(),
            config.source.spool_max_bytes,
        ));
    } else {
        out.push(CheckResult::ok(
            "spool",
            format!(
                "not used: streaming of large transactions is off on this server (source.streaming = {:?}, PostgreSQL major {})",
                config.source.streaming.as_str(),
                server.major
            ),
        ));
    }

    let wal_level = setting(client, "wal_level").await?;
    if wal_level == "logical" {
        out.push(CheckResult::ok("wal_level", "logical"));
    } else {
        out.push(CheckResult::fail(
            "wal_level",
            format!("wal_level is {wal_level}; logical decoding needs logical"),
            "ALTER SYSTEM SET wal_level = logical; -- then restart PostgreSQL",
        ));
    }

    let slot_row = crate::operations::slots::query_slot(client, &config.source.slot).await?;
    let max_slots: i64 = setting(client, "max_replication_slots")
        .await?
        .parse()
        .unwrap_or(0);
    let used_slots: i64 = client
        .query_one("SELECT count(*) FROM pg_replication_slots", &[])
        .await
        .map_err(|e| PgError::sql("counting slots", e))?
        .get(0);
    if slot_row.is_some() || used_slots < max_slots {
        out.push(CheckResult::ok(
            "replication slots",
            format!("{used_slots} of max_replication_slots = {max_slots} in use"),
        ));
    } else {
        out.push(CheckResult::fail(
            "replication slots",
            format!("all {max_slots} replication slots are in use"),
            format!("ALTER SYSTEM SET max_replication_slots = {}; -- then restart PostgreSQL (or drop an unused slot)", max_slots + 4),
        ));
    }
    let max_senders: i64 = setting(client, "max_wal_senders")
        .await?
        .parse()
        .unwrap_or(0);
    let used_senders: i64 = client
        .query_one("SELECT count(*) FROM pg_stat_replication", &[])
        .await
        .map_err(|e| PgError::sql("counting WAL senders", e))?
        .get(0);
    if used_senders < max_senders {
        out.push(CheckResult::ok(
            "wal senders",
            format!("{used_senders} of max_wal_senders = {max_senders} in use"),
        ));
    } else {
        out.push(CheckResult::fail(
            "wal senders",
            format!("all {max_senders} WAL senders are in use"),
            format!(
                "ALTER SYSTEM SET max_wal_senders = {}; -- then restart PostgreSQL",
                max_senders + 4
            ),
        ));
    }

    let role = client
        .query_one(
            "SELECT rolname::text, rolreplication, rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(|e| PgError::sql("reading role attributes", e))?;
    let (rolname, replication, superuser): (String, bool, bool) =
        (role.get(0), role.get(1), role.get(2));
    if replication || superuser {
        out.push(CheckResult::ok(
            "replication privilege",
            format!("role {rolname} may replicate"),
        ));
    } else {
        out.push(CheckResult::fail(
            "replication privilege",
            format!("role {rolname} lacks the REPLICATION attribute"),
            format!("ALTER ROLE {} WITH REPLICATION;", quote_ident(&rolname)),
        ));
    }

    // Tables.
    let tables = setup::matching_tables(client, config).await?;
    for pattern in &config.source.tables {
        let parsed = TablePattern::parse(pattern);
        if let Some((schema, table)) = parsed.as_ref().and_then(TablePattern::literal) {
            let found = tables.iter().any(|(s, t)| s == schema && t == table);
            if !found {
                out.push(CheckResult::fail(
                    format!("table {pattern}"),
                    "does not exist (or is excluded)",
                    format!("create the table, or remove {pattern:?} from source.tables"),
                ));
            }
        }
    }
    if tables.is_empty() {
        out.push(CheckResult::warn(
            "tables",
            format!(
                "no table matches source.tables = {:?}",
                config.source.tables
            ),
            "create the tables or fix the patterns in source.tables",
        ));
    }
    for (schema, table) in &tables {
        let qualified = format!("{}.{}", quote_ident(schema), quote_ident(table));
        let row = client
            .query_one(
                "SELECT c.relreplident::text,
                        EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
                        has_table_privilege(c.oid, 'SELECT')
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = $1 AND c.relname = $2",
                &[schema, table],
            )
            .await
            .map_err(|e| PgError::sql(format!("inspecting table {schema}.{table}"), e))?;
        let (ident, has_pk, can_select): (String, bool, bool) =
            (row.get(0), row.get(1), row.get(2));
        let name = format!("table {schema}.{table}");
        if !can_select {
            out.push(CheckResult::fail(
                name.clone(),
                format!("role {rolname} cannot SELECT it"),
                format!("GRANT SELECT ON {qualified} TO {};", quote_ident(&rolname)),
            ));
        }
        match (ident.as_str(), has_pk) {
            ("d", false) => out.push(CheckResult::fail(
                name,
                "has no primary key and REPLICA IDENTITY DEFAULT: PostgreSQL rejects its UPDATEs and DELETEs once published",
                format!("ALTER TABLE {qualified} ADD PRIMARY KEY (...); -- or: ALTER TABLE {qualified} REPLICA IDENTITY FULL;"),
            )),
            // Inserts still flow; updates and deletes fail in the application once the table
            // is published, and no event can carry a before image: worth a warning, not a stop.
            ("n", _) => out.push(CheckResult::warn(
                name,
                "has REPLICA IDENTITY NOTHING: events carry no before image, and PostgreSQL rejects its UPDATEs and DELETEs once published",
                format!("ALTER TABLE {qualified} REPLICA IDENTITY DEFAULT; -- or FULL"),
            )),
            _ if can_select => out.push(CheckResult::ok(
                name,
                match ident.as_str() {
                    "f" => "replica identity FULL".to_string(),
                    "i" => "replica identity USING INDEX".to_string(),
                    _ => "primary key".to_string(),
                },
            )),
            _ => {}
        }
    }

    // Publication.
    let publication = &config.source.publication;
    let pubrow = client
        .query_opt("SELECT puballtables, pubinsert AND pubupdate AND pubdelete FROM pg_publication WHERE pubname = $1", &[publication])
        .await
        .map_err(|e| PgError::sql("reading pg_publication", e))?;
    match pubrow {
        None if config.source.create_publication => out.push(CheckResult::ok(
            "publication",
            format!("{publication:?} does not exist yet; walrus will create it for the {} matching tables", tables.len()),
        )),
        None => out.push(CheckResult::fail(
            "publication",
            format!("{publication:?} does not exist and source.create_publication is false"),
            format!(
                "CREATE PUBLICATION {} FOR TABLE {};",
                quote_ident(publication),
                tables.iter().map(|(s, t)| format!("{}.{}", quote_ident(s), quote_ident(t))).collect::<Vec<_>>().join(", ")
            ),
        )),
        Some(row) => {
            let (all, dml): (bool, bool) = (row.get(0), row.get(1));
            if !dml {
                out.push(CheckResult::warn(
                    "publication",
                    format!("{publication:?} does not publish every insert, update and delete"),
                    format!("ALTER PUBLICATION {} SET (publish = 'insert, update, delete, truncate');", quote_ident(publication)),
                ));
            }
            if all {
                out.push(CheckResult::ok("publication", format!("{publication:?} covers all tables")));
            } else {
                let published: std::collections::HashSet<(String, String)> = client
                    .query("SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1", &[publication])
                    .await
                    .map_err(|e| PgError::sql("reading pg_publication_tables", e))?
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect();
                let missing: Vec<String> = tables
                    .iter()
                    .filter(|t| !published.contains(*t))
                    .map(|(s, t)| format!("{}.{}", quote_ident(s), quote_ident(t)))
                    .collect();
                if missing.is_empty() {
                    out.push(CheckResult::ok("publication", format!("{publication:?} covers the {} configured tables", tables.len())));
                } else {
                    out.push(CheckResult::warn(
                        "publication",
                        format!("{publication:?} lacks {} configured tables (walrus adds them on start if it may)", missing.len()),
                        format!("ALTER PUBLICATION {} ADD TABLE {};", quote_ident(publication), missing.join(", ")),
                    ));
                }
            }
        }
    }

    // Slot.
    let slot = &config.source.slot;
    match slot_row {
        None if config.source.create_slot => out.push(CheckResult::ok(
            "slot",
            format!("{slot:?} does not exist yet; walrus will create it (pgoutput)"),
        )),
        None => out.push(CheckResult::fail(
            "slot",
            format!("{slot:?} does not exist and source.create_slot is false"),
            format!(
                "SELECT pg_create_logical_replication_slot({}, 'pgoutput');",
                quote_literal(slot)
            ),
        )),
        Some(row) => {
            let drop_sql = format!("SELECT pg_drop_replication_slot({});", quote_literal(slot));
            if row.slot_type != "logical" || row.plugin.as_deref() != Some("pgoutput") {
                out.push(CheckResult::fail(
                    "slot",
                    format!(
                        "{slot:?} is a {} slot with plugin {:?}; walrus needs logical/pgoutput",
                        row.slot_type,
                        row.plugin.unwrap_or_default()
                    ),
                    format!("choose another source.slot, or {drop_sql}"),
                ));
            } else if row.database.as_deref() != Some(params.dbname.as_str()) {
                out.push(CheckResult::fail(
                    "slot",
                    format!(
                        "{slot:?} belongs to database {:?}",
                        row.database.unwrap_or_default()
                    ),
                    "choose another source.slot",
                ));
            } else if row.is_lost() {
                out.push(CheckResult::fail(
                    "slot",
                    format!("{slot:?} is invalidated: the WAL it needs was removed"),
                    format!("{drop_sql} -- then start walrus again (changes in between are lost; re-snapshot), and raise max_slot_wal_keep_size"),
                ));
            } else if row.active {
                out.push(CheckResult::warn(
                    "slot",
                    format!("{slot:?} is in use by PID {}", row.active_pid.unwrap_or(0)),
                    "stop the other consumer (another walrus?) before starting this one",
                ));
            } else {
                out.push(CheckResult::ok(
                    "slot",
                    format!(
                        "{slot:?} is logical/pgoutput, resumes at {}, wal_status {}",
                        row.confirmed_lsn().unwrap_or_default(),
                        row.wal_status.unwrap_or_else(|| "unknown".into())
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `source.spool_dir`, where streamed transactions are spooled: it exists and walrus may
/// write in it (a probe file is created and removed), or it can be created (its nearest
/// existing ancestor is a writable directory; nothing is created); and the free space
/// there, against `spool_max_bytes` (0: no limit).
pub fn spool_check(dir: &Path, max_bytes: u64) -> CheckResult {
    const NAME: &str = "spool";
    let shown = dir.display();
    let fix_dir = "make it a directory the user walrus runs as may write (chown/chmod), or point source.spool_dir at one";
    // Where the free space is measured: the directory, or where it will be created.
    let (existing, state) = match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            if let Err(e) = probe_write(dir) {
                return CheckResult::fail(
                    NAME,
                    format!("source.spool_dir {shown}: walrus cannot write in it: {e}"),
                    fix_dir,
                );
            }
            (dir.to_path_buf(), "is writable".to_string())
        }
        Ok(_) => {
            return CheckResult::fail(
                NAME,
                format!("source.spool_dir {shown} exists and is not a directory"),
                "point source.spool_dir at a directory (or a path walrus may create)",
            )
        }
        // Missing, or a file where a parent directory should be.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            let Some(ancestor) = dir.ancestors().skip(1).find(|a| a.exists()) else {
                return CheckResult::fail(
                    NAME,
                    format!("source.spool_dir {shown}: no part of the path exists"),
                    "point source.spool_dir at an absolute path on a mounted disk",
                );
            };
            if !ancestor.is_dir() {
                return CheckResult::fail(
                    NAME,
                    format!(
                        "source.spool_dir {shown} cannot be created: {} is not a directory",
                        ancestor.display()
                    ),
                    "point source.spool_dir at a path under a directory",
                );
            }
            let may_create = rustix::fs::access(
                ancestor,
                rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
            );
            if let Err(e) = may_create {
                return CheckResult::fail(
                    NAME,
                    format!(
                        "source.spool_dir {shown} cannot be created: {} is not writable ({})",
                        ancestor.display(),
                        std::io::Error::from(e)
                    ),
                    fix_dir,
                );
            }
            (
                ancestor.to_path_buf(),
                format!(
                    "does not exist yet; walrus creates it under {} when a transaction is streamed",
                    ancestor.display()
                ),
            )
        }
        Err(e) => {
            return CheckResult::fail(NAME, format!("source.spool_dir {shown}: {e}"), fix_dir)
        }
    };
    let free = match rustix::fs::statvfs(&existing) {
        Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
        Err(e) => {
            return CheckResult::warn(
                NAME,
                format!(
                    "source.spool_dir {shown} {state}; its free space is unknown ({})",
                    std::io::Error::from(e)
                ),
                "make sure the disk has room for the largest transactions open at once",
            )
        }
    };
    if max_bytes == 0 {
        return CheckResult::ok(
            NAME,
            format!(
                "source.spool_dir {shown} {state}; {} free; no limit (source.spool_max_bytes = 0): streamed transactions may fill this disk",
                human_bytes(free)
            ),
        );
    }
    if free < max_bytes {
        return CheckResult::warn(
            NAME,
            format!(
                "source.spool_dir {shown} {state}, but only {} is free there, less than source.spool_max_bytes = {}: a large streamed transaction could fill the disk before the limit stops walrus",
                human_bytes(free),
                human_bytes(max_bytes)
            ),
            "free space there, point source.spool_dir at a larger disk, or lower source.spool_max_bytes below the free space",
        );
    }
    CheckResult::ok(
        NAME,
        format!(
            "source.spool_dir {shown} {state}; {} free, source.spool_max_bytes = {}",
            human_bytes(free),
            human_bytes(max_bytes)
        ),
    )
}

/// Creates and removes a probe file in `dir`: permissions, ACLs, read-only mounts and
/// quotas all show up as they would for a spool file.
fn probe_write(dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let probe = dir.join(format!(".walrus-check-{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut f| f.write_all(b"walrus check"));
    let removed = std::fs::remove_file(&probe);
    written?;
    removed
}

/// `bytes` for a person: `12.3 GiB (13207024435 bytes)`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {} ({bytes} bytes)", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_writable_spool_dir_is_ok_with_its_free_space_and_left_clean() {
        let dir = tempfile::tempdir().unwrap();
        let r = spool_check(dir.path(), 1024);
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert!(r.detail.contains("is writable"), "{r:?}");
        assert!(r.detail.contains("free"), "{r:?}");
        assert!(
            r.detail.contains("source.spool_max_bytes = 1.0 KiB"),
            "{r:?}"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the probe file is removed"
        );
    }

    #[test]
    fn a_missing_spool_dir_is_ok_when_it_can_be_created_and_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("a/b/spool");
        let r = spool_check(&spool, 0);
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert!(r.detail.contains("does not exist yet"), "{r:?}");
        assert!(r.detail.contains("no limit"), "{r:?}");
        assert!(!dir.path().join("a").exists(), "check changes nothing");
    }

    #[test]
    fn a_spool_dir_that_is_or_lies_under_a_file_fails_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        for path in [file.clone(), file.join("spool")] {
            let r = spool_check(&path, 1024);
            assert_eq!(r.status, Status::Fail, "{r:?}");
            assert!(r.detail.contains("source.spool_dir"), "{r:?}");
            assert!(r.detail.contains("not a directory"), "{r:?}");
            assert!(r.fix.is_some());
        }
    }

    #[test]
    fn less_free_space_than_the_limit_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let r = spool_check(dir.path(), u64::MAX);
        assert_eq!(r.status, Status::Warn, "{r:?}");
        assert!(
            r.detail.contains("less than source.spool_max_bytes"),
            "{r:?}"
        );
        assert!(r.fix.unwrap().contains("source.spool_max_bytes"));
    }

    #[test]
    fn bytes_read_as_units() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(1536), "1.5 KiB (1536 bytes)");
        assert_eq!(
            human_bytes(16 * 1024 * 1024 * 1024),
            "16.0 GiB (17179869184 bytes)"
        );
    }
}
