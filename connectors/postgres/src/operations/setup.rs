//! Publication and slot management on the ordinary SQL connection.
//!
//! On start walrus makes sure the publication exists and covers the configured tables, and
//! that the slot exists, is a logical `pgoutput` slot of this database, and still has the
//! WAL it needs (`wal_status <> 'lost'`). A missing publication is created for the matching
//! tables only (`FOR TABLE ...`), which a table owner can do without superuser; `FOR ALL
//! TABLES` only when `source.publication_all_tables` says so. Tables created later that
//! match the patterns are added on the next start (`ALTER PUBLICATION ... ADD TABLE`).

use tokio_postgres::Client;
use walrus_core::config::Config;
use walrus_core::Lsn;

use crate::error::PgError;
use crate::server::{server_num, ServerInfo};

/// What the slot looked like when walrus started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotState {
    /// Slot name.
    pub name: String,
    /// Where PostgreSQL will resume sending: every transaction committed before it has been
    /// confirmed by a previous session.
    pub confirmed_flush_lsn: Lsn,
    /// Oldest WAL the slot retains.
    pub restart_lsn: Option<Lsn>,
    /// `wal_status` (`reserved`, `extended`, `unreserved`, `lost`), if the server has it.
    pub wal_status: Option<String>,
    /// Whether walrus created it just now.
    pub created: bool,
}

/// Quotes an SQL identifier.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quotes an SQL string literal.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Ordinary tables and partitioned tables (not partitions, which publish through their
/// root or on their own) in user schemas that the config selects, as (schema, table).
/// Before PostgreSQL 13 a publication cannot hold a partitioned table: there the
/// partitions themselves are listed (each publishes its own changes).
pub async fn matching_tables(
    client: &Client,
    config: &Config,
) -> Result<Vec<(String, String)>, PgError> {
    let kinds = if server_num(client).await? >= ServerInfo::num_of(13) {
        "c.relkind IN ('r', 'p') AND NOT c.relispartition"
    } else {
        "c.relkind = 'r'"
    };
    let rows = client
        .query(
            &format!(
                "SELECT n.nspname::text, c.relname::text
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE {kinds}
                    AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                    AND n.nspname NOT LIKE 'pg\\_%'
                  ORDER BY 1, 2"
            ),
            &[],
        )
        .await
        .map_err(|e| PgError::sql("listing tables", e))?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
        .filter(|(s, t)| config.table_selected(s, t))
        .collect())
}

/// Creates the publication when missing, or adds matching tables it lacks.
pub async fn ensure_publication(client: &Client, config: &Config) -> Result<(), PgError> {
    let name = &config.source.publication;
    let existing = client
        .query_opt(
            "SELECT puballtables FROM pg_publication WHERE pubname = $1",
            &[name],
        )
        .await
        .map_err(|e| PgError::sql("looking up the publication", e))?;
    let all_tables = match existing {
        Some(row) => row.get::<_, bool>(0),
        None => {
            if !config.source.create_publication {
                return Err(PgError::Publication {
                    publication: name.clone(),
                    message: format!(
                        "does not exist and source.create_publication is false; create it with CREATE PUBLICATION {} FOR TABLE ...",
                        quote_ident(name)
                    ),
                });
            }
            let mut sql = if config.source.publication_all_tables {
                format!("CREATE PUBLICATION {} FOR ALL TABLES", quote_ident(name))
            } else {
                let tables = matching_tables(client, config).await?;
                if tables.is_empty() {
                    tracing::warn!(
                        publication = %name,
                        patterns = ?config.source.tables,
                        "no existing table matches source.tables; creating an empty publication (tables created later are added on the next start)"
                    );
                    format!("CREATE PUBLICATION {}", quote_ident(name))
                } else {
                    format!(
                        "CREATE PUBLICATION {} FOR TABLE {}",
                        quote_ident(name),
                        table_list(&tables)
                    )
                }
            };
            if config.source.publish_via_partition_root {
                sql.push_str(" WITH (publish_via_partition_root = true)");
            }
            client
                .batch_execute(&sql)
                .await
                .map_err(|e| PgError::Publication {
                    publication: name.clone(),
                    message: format!(
                        "cannot create it ({e}); run as a table owner or superuser: {sql}"
                    ),
                })?;
            tracing::info!(publication = %name, "created publication");
            return Ok(());
        }
    };
    if all_tables || config.source.publication_all_tables {
        return Ok(());
    }
    let published = client
        .query(
            "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1",
            &[name],
        )
        .await
        .map_err(|e| PgError::sql("listing published tables", e))?;
    let published: std::collections::HashSet<(String, String)> =
        published.iter().map(|r| (r.get(0), r.get(1))).collect();
    let missing: Vec<_> = matching_tables(client, config)
        .await?
        .into_iter()
        .filter(|t| !published.contains(t))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "ALTER PUBLICATION {} ADD TABLE {}",
        quote_ident(name),
        table_list(&missing)
    );
    match client.batch_execute(&sql).await {
        Ok(()) => {
            tracing::info!(publication = %name, tables = ?missing, "added tables to publication");
        }
        Err(e) => tracing::warn!(
            publication = %name,
            error = %e,
            "tables match source.tables but are not published; walrus will not see them until someone runs: {sql}"
        ),
    }
    Ok(())
}

fn table_list(tables: &[(String, String)]) -> String {
    tables
        .iter()
        .map(|(s, t)| format!("{}.{}", quote_ident(s), quote_ident(t)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Creates the slot when missing (if allowed) and checks it is usable.
pub async fn ensure_slot(client: &Client, config: &Config) -> Result<SlotState, PgError> {
    let slot = &config.source.slot;
    let mut created = false;
    let mut row = crate::operations::slots::query_slot(client, slot).await?;
    if row.is_none() {
        if !config.source.create_slot {
            return Err(PgError::SlotMissing { slot: slot.clone() });
        }
        client
            .execute(
                "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                &[slot],
            )
            .await
            .map_err(|e| PgError::sql(format!("creating replication slot {slot:?}"), e))?;
        tracing::info!(slot = %slot, "created replication slot");
        created = true;
        row = crate::operations::slots::query_slot(client, slot).await?;
    }
    let Some(row) = row else {
        return Err(PgError::SlotMissing { slot: slot.clone() });
    };
    let unusable = |reason: String| PgError::SlotUnusable {
        slot: slot.clone(),
        reason,
    };
    if row.slot_type != "logical" {
        return Err(unusable(format!(
            "it is a {} slot; walrus needs a logical slot: SELECT pg_drop_replication_slot('{slot}'); then start walrus again",
            row.slot_type
        )));
    }
    if row.plugin.as_deref() != Some("pgoutput") {
        return Err(unusable(format!(
            "it uses the output plugin {:?}, walrus needs pgoutput: use another source.slot, or drop this one if nothing else uses it",
            row.plugin.unwrap_or_default()
        )));
    }
    let current_db: String = client
        .query_one("SELECT current_database()::text", &[])
        .await
        .map_err(|e| PgError::sql("reading current database", e))?
        .get(0);
    if row.database.as_deref() != Some(current_db.as_str()) {
        return Err(unusable(format!(
            "it belongs to database {:?}, not {current_db:?}: choose another source.slot",
            row.database.unwrap_or_default()
        )));
    }
    let confirmed = row.confirmed_lsn().unwrap_or_default();
    if row.is_lost() {
        return Err(PgError::SlotLost {
            slot: slot.clone(),
            confirmed,
        });
    }
    Ok(SlotState {
        name: slot.clone(),
        confirmed_flush_lsn: confirmed,
        restart_lsn: row.restart_position(),
        wal_status: row.wal_status,
        created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(
            table_list(&[("public".into(), "Orders".into())]),
            "\"public\".\"Orders\""
        );
    }
}
