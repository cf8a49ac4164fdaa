//! `walrus check`: a preflight of everything walrus needs from PostgreSQL, each failure
//! with the exact SQL or setting that fixes it.
//!
//! Checks run on the ordinary SQL connection and change nothing. They cover the server
//! version, `wal_level`, free replication slots and WAL senders, the role's REPLICATION
//! attribute and SELECT grants, each configured table (exists, has a primary key or a
//! usable replica identity), and the publication's and slot's state.

use tokio_postgres::Client;
use walrus_core::config::{Config, TablePattern};

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
