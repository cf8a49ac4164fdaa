//! The signal table and its signals: creating it (and publishing it), writing a signal
//! (`walrus snapshot --table`), and reading one back from the stream in Debezium's shape
//! (`execute-snapshot`, `stop-snapshot`, `pause-snapshot`, `resume-snapshot`, and the
//! watermark rows walrus writes itself).

use serde::Deserialize;
use tokio_postgres::Client;
use walrus_core::config::Config;
use walrus_core::event::ChangeEvent;
use walrus_core::value::Value;

use super::driver::{describe, ReadError};
use crate::conn::ConnParams;
use crate::error::PgError;
use crate::operations::setup::quote_ident;

/// Signal type: start an incremental snapshot of `data-collections`.
pub const EXECUTE_SNAPSHOT: &str = "execute-snapshot";
/// Signal type: stop the incremental snapshot (of `data-collections`, or of everything).
pub const STOP_SNAPSHOT: &str = "stop-snapshot";
/// Signal type: read no further chunks until resumed.
pub const PAUSE_SNAPSHOT: &str = "pause-snapshot";
/// Signal type: go on reading chunks.
pub const RESUME_SNAPSHOT: &str = "resume-snapshot";
/// Watermark row written before a chunk is read.
pub const WINDOW_OPEN: &str = "snapshot-window-open";
/// Watermark row written after a chunk is read.
pub const WINDOW_CLOSE: &str = "snapshot-window-close";

/// Creates the signal table when missing and makes sure the publication carries it; returns
/// its OID, or `None` when no signal table is configured.
pub async fn ensure_signal_table(client: &Client, config: &Config) -> Result<Option<u32>, PgError> {
    let Some((schema, table)) = config.snapshot.signal_table_parts() else {
        return Ok(None);
    };
    let qualified = format!("{}.{}", quote_ident(schema), quote_ident(table));
    let lookup = || async {
        client
            .query_opt(
                "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = $1 AND c.relname = $2",
                &[&schema, &table],
            )
            .await
            .map(|r| r.map(|r| r.get::<_, u32>(0)))
            .map_err(|e| PgError::sql("looking up the signal table", e))
    };
    let oid = match lookup().await? {
        Some(oid) => oid,
        None => {
            let create = format!(
                "CREATE TABLE IF NOT EXISTS {qualified} (id text PRIMARY KEY, type text NOT NULL, data text)"
            );
            client
                .batch_execute(&create)
                .await
                .map_err(|e| PgError::Config {
                    key: "snapshot.signal_table",
                    message: format!(
                        "cannot create the signal table ({e}); create it as its owner: {create}"
                    ),
                })?;
            tracing::info!(table = %format!("{schema}.{table}"), "created the signal table");
            lookup().await?.ok_or_else(|| PgError::Config {
                key: "snapshot.signal_table",
                message: format!("{schema}.{table} vanished right after it was created"),
            })?
        }
    };
    let columns: Vec<String> = client
        .query(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped",
            &[&oid],
        )
        .await
        .map_err(|e| PgError::sql("reading the signal table's columns", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for needed in ["id", "type", "data"] {
        if !columns.iter().any(|c| c == needed) {
            return Err(PgError::Config {
                key: "snapshot.signal_table",
                message: format!(
                    "{schema}.{table} has no column {needed:?}; a signal table has Debezium's columns (id text primary key, type text, data text)"
                ),
            });
        }
    }
    let publication = &config.source.publication;
    let published: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_publication p WHERE p.pubname = $1 AND p.puballtables)
                 OR EXISTS (SELECT 1 FROM pg_publication_tables
                             WHERE pubname = $1 AND schemaname = $2 AND tablename = $3)",
            &[publication, &schema, &table],
        )
        .await
        .map_err(|e| PgError::sql("checking that the signal table is published", e))?
        .get(0);
    if !published {
        let alter = format!(
            "ALTER PUBLICATION {} ADD TABLE {qualified}",
            quote_ident(publication)
        );
        client
            .batch_execute(&alter)
            .await
            .map_err(|e| PgError::Publication {
                publication: publication.clone(),
                message: format!("cannot add the signal table ({e}); run as its owner: {alter}"),
            })?;
        tracing::info!(table = %format!("{schema}.{table}"), "added the signal table to the publication");
    }
    Ok(Some(oid))
}

/// What `walrus snapshot` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `execute-snapshot` of these tables, with an optional extra condition on their rows.
    Execute {
        /// `schema.table` names.
        tables: Vec<String>,
        /// SQL condition applied to every table's rows (Debezium's `additional-conditions`).
        filter: Option<String>,
    },
    /// `stop-snapshot` of these tables (all when empty).
    Stop {
        /// `schema.table` names.
        tables: Vec<String>,
    },
    /// `pause-snapshot`.
    Pause,
    /// `resume-snapshot`.
    Resume,
}

/// Writes a signal row for `command` (so it works with a running walrus, which reads it
/// from the stream); returns the signal's id. Tables to snapshot are checked first: each
/// must exist, be captured by `[source] tables`, and have a primary key.
pub async fn send_signal(config: &Config, command: &Command) -> Result<String, PgError> {
    if config.snapshot.signal_table.is_none() {
        return Err(PgError::Config {
            key: "snapshot.signal_table",
            message: "is not set; incremental snapshots are signalled through a table: add signal_table = \"public.walrus_signal\" under [snapshot] and restart walrus".into(),
        });
    }
    let params = ConnParams::from_config(&config.source)?;
    let client = params.connect_sql().await?;
    ensure_signal_table(&client, config).await?;
    let (kind, data) = match command {
        Command::Execute { tables, filter } => {
            if tables.is_empty() {
                return Err(PgError::Config {
                    key: "snapshot.signal_table",
                    message: "name at least one table to snapshot (--table schema.table)".into(),
                });
            }
            let tables: Vec<String> = tables.iter().map(|t| qualify(t)).collect();
            for t in &tables {
                check_snapshottable(&client, config, t).await?;
            }
            let mut data = serde_json::json!({ "data-collections": tables, "type": "incremental" });
            if let Some(f) = filter {
                data["additional-conditions"] = tables
                    .iter()
                    .map(|t| serde_json::json!({ "data-collection": t, "filter": f }))
                    .collect();
            }
            (EXECUTE_SNAPSHOT, Some(data.to_string()))
        }
        Command::Stop { tables } if tables.is_empty() => (
            STOP_SNAPSHOT,
            Some(serde_json::json!({ "type": "incremental" }).to_string()),
        ),
        Command::Stop { tables } => {
            let tables: Vec<String> = tables.iter().map(|t| qualify(t)).collect();
            (
                STOP_SNAPSHOT,
                Some(
                    serde_json::json!({ "data-collections": tables, "type": "incremental" })
                        .to_string(),
                ),
            )
        }
        Command::Pause => (PAUSE_SNAPSHOT, None),
        Command::Resume => (RESUME_SNAPSHOT, None),
    };
    let id = format!("walrus-cli-{}", unique_suffix());
    let (schema, table) = config.snapshot.signal_table_parts().unwrap_or_default();
    client
        .execute(
            &format!(
                "INSERT INTO {}.{} (id, type, data) VALUES ($1, $2, $3)",
                quote_ident(schema),
                quote_ident(table)
            ),
            &[&id, &kind, &data],
        )
        .await
        .map_err(|e| PgError::sql("writing the signal row", e))?;
    Ok(id)
}

/// `t` as `schema.table` (`public` when no schema is given).
pub(super) fn qualify(t: &str) -> String {
    if t.contains('.') {
        t.to_string()
    } else {
        format!("public.{t}")
    }
}

/// Refuses a table that cannot be snapshotted incrementally, saying why and how to fix it.
pub(super) async fn check_snapshottable(
    client: &Client,
    config: &Config,
    qualified: &str,
) -> Result<(), PgError> {
    let (schema, name) = qualified.split_once('.').unwrap_or(("public", qualified));
    if !config.table_selected(schema, name) {
        return Err(PgError::Snapshot {
            table: qualified.to_string(),
            message: "is not captured by [source] tables; add it there (and restart walrus) before snapshotting it".into(),
        });
    }
    match describe(client, schema, name).await {
        Ok(_) => Ok(()),
        Err(ReadError::Refused(message)) => Err(PgError::Snapshot {
            table: qualified.to_string(),
            message,
        }),
        Err(ReadError::Failed(e)) => Err(e),
    }
}

/// A unique-enough suffix for signal and window ids: process id, time and a counter.
pub(super) fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A signal row, as read from the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signal {
    /// `id`.
    pub id: String,
    /// `type`.
    pub kind: String,
    /// `data`, when not null.
    pub data: Option<String>,
}

impl Signal {
    /// The signal in an insert event of the signal table; `None` when the row lacks the
    /// columns or its id or type is null.
    pub fn from_event(ev: &ChangeEvent) -> Option<Signal> {
        let table = ev.table.as_ref()?;
        let row = ev.after.as_ref()?;
        let text = |name: &str| -> Option<String> {
            let i = table.columns.iter().position(|c| c.name == name)?;
            match row.values.get(i)? {
                Value::Text(s) | Value::Json(s) | Value::Numeric(s) => Some(s.clone()),
                Value::Null | Value::Unavailable => None,
                other => Some(format!("{other:?}")),
            }
        };
        Some(Signal {
            id: text("id")?,
            kind: text("type")?,
            data: text("data"),
        })
    }
}

/// The `data` of `execute-snapshot` and `stop-snapshot` (Debezium's shape).
#[derive(Debug, Default, Deserialize)]
pub(super) struct SignalData {
    #[serde(rename = "data-collections", default)]
    pub(super) data_collections: Vec<String>,
    #[serde(rename = "type", default)]
    pub(super) kind: Option<String>,
    #[serde(rename = "additional-conditions", default)]
    pub(super) additional_conditions: Vec<AdditionalCondition>,
}

#[derive(Debug, Deserialize)]
pub(super) struct AdditionalCondition {
    #[serde(rename = "data-collection")]
    pub(super) data_collection: String,
    pub(super) filter: String,
}
