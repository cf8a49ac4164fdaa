//! Incremental snapshots: re-reading chosen tables, chunk by chunk, while streaming goes on,
//! with the watermark algorithm of DBLog (Netflix) that Debezium uses.
//!
//! ```text
//!  signal table ◀── INSERT execute-snapshot (user, `walrus snapshot --table`)
//!       │ (published: its rows arrive through the replication stream, ordered with the data)
//!       ▼
//!  Session (source.rs) ── signal row? ──▶ Incremental ── ChunkRequest ──▶ driver task (own SQL conn)
//!       │                                   ▲    │                        1. INSERT window-open  (L)
//!       │ streamed change to the            │    │                        2. SELECT … WHERE pk > last
//!       │ window's table: note its key ─────┘    │                           ORDER BY pk LIMIT n
//!       │                                        │◀──── ChunkResult ────── 3. (rows sent here)
//!       │                                        │                        4. INSERT window-close (H)
//!       ▼ H arrives in the stream: chunk rows minus the noted keys ──▶ op `r` events at H's position
//! ```
//!
//! **Why it is exact.** Every change committed before the low watermark L is visible to the
//! chunk's `SELECT`, and every change committed after the high watermark H streams after the
//! chunk's events, which are emitted where H is in the stream. A change committed between L
//! and H may or may not be visible to the `SELECT`, so the chunk row of that key is dropped:
//! the streamed change, which is in the stream anyway, wins over a possibly stale read. What
//! is emitted at H is therefore each remaining row exactly as it is at H.
//!
//! One gap in the textbook algorithm is closed here: PostgreSQL writes a commit record to
//! the WAL before the transaction stops being "in progress" for new snapshots, so a
//! transaction whose commit precedes L in the stream could, for a few microseconds, still
//! be invisible to a `SELECT` that starts after L committed. The driver therefore takes
//! `pg_current_snapshot()` right after L commits, and reads the chunk only in a snapshot in
//! which each transaction that was in progress then is visible, aborted, or — after
//! [`INVISIBLE_GRACE`] — still running (a transaction still running that long after L did
//! not commit before it).
//!
//! **Acknowledgements.** The chunk's events are produced inside H's transaction, so the
//! [`walrus_core::ack::AckTracker`] confirms H's commit only once they, and everything
//! before them, are delivered: the confirmed LSN never runs ahead of an undelivered read.
//!
//! **Progress** (tables queued, the current table's last delivered key and its maximum key
//! at the start, paused or not, the signal ids already acted on) is kept in a JSON file
//! beside the initial snapshot's state file ([`walrus_core::config::SnapshotConfig::incremental_state_path`]).
//! A change of progress is written only once the records produced up to it are delivered,
//! so after a kill -9 the snapshot resumes after the last delivered chunk; watermarks of the
//! dead process that PostgreSQL sends again are ignored (their window ids are unknown), and
//! replayed signals are recognised by their id. See `docs/snapshots.md`.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_postgres::Client;
use tracing::Instrument;
use walrus_core::config::Config;
use walrus_core::event::{ChangeEvent, Op, ReplicaIdentity, Row, SourcePosition, Table};
use walrus_core::value::Value;

use crate::conn::ConnParams;
use crate::error::PgError;
use crate::setup::{quote_ident, quote_literal};
use crate::types;

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

/// Version of the progress file format.
const STATE_VERSION: u32 = 1;
/// Signal ids remembered so that a signal PostgreSQL sends again is not acted on twice.
const SIGNALS_REMEMBERED: usize = 256;
/// How long a transaction that was running when the low watermark committed may stay
/// invisible to the chunk's snapshot before walrus concludes it committed after the
/// watermark (see the module docs).
pub const INVISIBLE_GRACE: Duration = Duration::from_secs(2);
/// Pause before asking again for a chunk whose read failed.
const RETRY_DELAY: Duration = Duration::from_secs(2);
/// Least time between two writes of the progress file.
const SAVE_INTERVAL: Duration = Duration::from_millis(200);

// ───────────────────────────── signal table ─────────────────────────────

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
fn qualify(t: &str) -> String {
    if t.contains('.') {
        t.to_string()
    } else {
        format!("public.{t}")
    }
}

/// Refuses a table that cannot be snapshotted incrementally, saying why and how to fix it.
async fn check_snapshottable(
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
fn unique_suffix() -> String {
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

// ───────────────────────────── progress file ─────────────────────────────

/// Incremental snapshot progress, as kept in its file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct IncrementalState {
    /// Format version.
    pub version: u32,
    /// The slot whose stream carries the snapshot.
    pub slot: String,
    /// The database.
    pub database: String,
    /// No chunks are read while paused.
    #[serde(default)]
    pub paused: bool,
    /// Tables still to read, the current one first.
    #[serde(default)]
    pub tables: VecDeque<TableProgress>,
    /// Ids of the newest signals acted on.
    #[serde(default)]
    pub signals_seen: VecDeque<String>,
}

/// One table of an incremental snapshot.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableProgress {
    /// `schema.table`.
    pub table: String,
    /// Extra SQL condition on the rows read (`additional-conditions`).
    #[serde(default)]
    pub filter: Option<String>,
    /// Primary key (as text, in key order) of the last row of the last delivered chunk.
    #[serde(default)]
    pub last: Option<Vec<String>>,
    /// The largest primary key when the table's snapshot began; rows above it are inserts
    /// that streaming delivers anyway.
    #[serde(default)]
    pub max: Option<Vec<String>>,
    /// Rows emitted so far.
    #[serde(default)]
    pub rows: u64,
}

impl IncrementalState {
    /// Reads the progress for `slot` in `database`; a fresh state when there is no file or
    /// it belongs to another slot or database.
    pub fn load(path: &Path, slot: &str, database: &str) -> Result<IncrementalState, PgError> {
        let fresh = IncrementalState {
            version: STATE_VERSION,
            slot: slot.to_string(),
            database: database.to_string(),
            ..IncrementalState::default()
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(fresh),
            Err(e) => {
                return Err(PgError::SnapshotState {
                    path: path.to_path_buf(),
                    message: format!("cannot read it: {e}"),
                })
            }
        };
        let state: IncrementalState =
            serde_json::from_str(&text).map_err(|e| PgError::SnapshotState {
                path: path.to_path_buf(),
                message: format!(
                    "not a walrus incremental snapshot state ({e}); move it away to forget the incremental snapshot"
                ),
            })?;
        if state.slot != slot || state.database != database {
            tracing::warn!(path = %path.display(), "incremental snapshot state belongs to another slot or database; ignoring it");
            return Ok(fresh);
        }
        Ok(state)
    }

    /// Writes the progress atomically (temporary file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<(), PgError> {
        crate::snapshot::save_json_atomically(self, path)
    }

    /// Remembers a signal id; false when it was acted on already.
    fn first_sight(&mut self, id: &str) -> bool {
        if self.signals_seen.iter().any(|s| s == id) {
            return false;
        }
        self.signals_seen.push_back(id.to_string());
        while self.signals_seen.len() > SIGNALS_REMEMBERED {
            self.signals_seen.pop_front();
        }
        true
    }
}

// ───────────────────────────── signals ─────────────────────────────

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
struct SignalData {
    #[serde(rename = "data-collections", default)]
    data_collections: Vec<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(rename = "additional-conditions", default)]
    additional_conditions: Vec<AdditionalCondition>,
}

#[derive(Debug, Deserialize)]
struct AdditionalCondition {
    #[serde(rename = "data-collection")]
    data_collection: String,
    filter: String,
}

// ───────────────────────────── session side ─────────────────────────────

/// One chunk to read, from the session to the driver.
#[derive(Clone, Debug)]
struct ChunkRequest {
    window: String,
    table: String,
    filter: Option<String>,
    last: Option<Vec<String>>,
    max: Option<Vec<String>>,
    chunk_size: usize,
    /// Describe the table anew (its columns changed since the driver described it).
    refresh: bool,
}

/// A chunk read between the watermarks, waiting for the high one.
#[derive(Debug)]
struct Chunk {
    table: Arc<Table>,
    /// The rows with their comparison keys ([`row_key`]).
    rows: Vec<(String, Row)>,
    /// Key of the last row read; `None` when the chunk was empty.
    last: Option<Vec<String>>,
    /// The table's maximum key (computed for the first chunk).
    max: Vec<String>,
    /// Nothing is left to read after this chunk.
    done: bool,
    /// `table` was read from the catalog for this chunk (not reused).
    fresh: bool,
}

/// What the driver answers.
#[derive(Debug)]
enum ChunkResult {
    /// Rows read between the watermarks.
    Rows { window: String, chunk: Chunk },
    /// Nothing to read: the table (or what is left of it below its maximum key) is empty.
    Empty { window: String },
    /// The table cannot be snapshotted incrementally; the message says why and the fix.
    Refused { window: String, message: String },
    /// A transient failure; the chunk is asked for again.
    Failed { window: String, message: String },
}

/// The chunk asked for and not yet finished.
#[derive(Debug)]
struct Outstanding {
    window: String,
    table: String,
    /// The rows, once the driver sent them.
    chunk: Option<Chunk>,
}

/// The window between the watermarks seen in the stream.
#[derive(Debug)]
struct Window {
    id: String,
    oid: u32,
    /// Keys of rows changed in the stream while the window is open.
    changed: HashSet<String>,
    /// A change whose key could not be told (or a truncate): the chunk is read again.
    dirty: bool,
}

/// The session's side of incremental snapshots: reacts to signal rows and watermarks in
/// the stream, notes keys changed in an open window, and turns a closed window's chunk
/// into read events. Owned by the replication session; the reads run in a driver task.
pub struct Incremental {
    signal_oid: u32,
    chunk_size: usize,
    state: IncrementalState,
    path: PathBuf,
    requests: mpsc::UnboundedSender<ChunkRequest>,
    results: mpsc::UnboundedReceiver<ChunkResult>,
    driver: tokio::task::JoinHandle<()>,
    outstanding: Option<Outstanding>,
    window: Option<Window>,
    retry_at: Option<Instant>,
    /// Progress changes not yet durable, with the records that must be delivered first.
    pending_saves: VecDeque<(u64, IncrementalState)>,
    /// The state changed since the last `after_emit`.
    dirty: bool,
    last_save: Option<Instant>,
    /// The next request asks the driver to describe the table anew.
    refresh: bool,
}

impl Drop for Incremental {
    fn drop(&mut self) {
        // A chunk read in flight is abandoned; its watermarks are ignored by the next
        // session (unknown window ids).
        self.driver.abort();
    }
}

impl Incremental {
    /// Loads the progress, starts the driver task (its own SQL connection) and, when a
    /// snapshot was under way and not paused, asks for its next chunk.
    pub fn start(
        config: &Config,
        params: &ConnParams,
        signal_oid: u32,
    ) -> Result<Incremental, PgError> {
        let path = config.snapshot.incremental_state_path(&config.source.slot);
        let state = IncrementalState::load(&path, &config.source.slot, &params.dbname)?;
        let (requests, request_rx) = mpsc::unbounded_channel();
        let (result_tx, results) = mpsc::unbounded_channel();
        let signal = config
            .snapshot
            .signal_table_parts()
            .map(|(s, t)| format!("{}.{}", quote_ident(s), quote_ident(t)))
            .unwrap_or_default();
        let driver = tokio::spawn(
            drive(params.clone(), signal, request_rx, result_tx).instrument(
                tracing::info_span!("incremental_snapshot", slot = %config.source.slot),
            ),
        );
        if !state.tables.is_empty() {
            tracing::info!(
                tables = ?state.tables.iter().map(|t| &t.table).collect::<Vec<_>>(),
                paused = state.paused,
                "resuming the incremental snapshot after the last delivered chunk"
            );
        }
        let mut inc = Incremental {
            signal_oid,
            chunk_size: config.snapshot.incremental_chunk_size,
            state,
            path,
            requests,
            results,
            driver,
            outstanding: None,
            window: None,
            retry_at: None,
            pending_saves: VecDeque::new(),
            dirty: false,
            last_save: None,
            refresh: false,
        };
        inc.request_next();
        Ok(inc)
    }

    /// The signal table's relation id.
    pub fn signal_oid(&self) -> u32 {
        self.signal_oid
    }

    /// The relation id of the table whose window is open; 0 when none is.
    pub fn window_oid(&self) -> u32 {
        self.window.as_ref().map_or(0, |w| w.oid)
    }

    /// A streamed change to the open window's table: its key(s) are no longer read from
    /// the chunk.
    pub fn observe(&mut self, ev: &ChangeEvent) {
        let Some(w) = &mut self.window else { return };
        let Some(table) = &ev.table else { return };
        for row in [&ev.before, &ev.after].into_iter().flatten() {
            match row_key(table, row) {
                Some(k) => {
                    w.changed.insert(k);
                }
                None => w.dirty = true,
            }
        }
    }

    /// The open window's table was truncated: the chunk is void and read again.
    pub fn observe_truncate(&mut self) {
        if let Some(w) = &mut self.window {
            w.dirty = true;
        }
    }

    /// A row inserted into the signal table. Returns the read events to emit at this point
    /// of the stream (a closing watermark of the current window), without their source
    /// positions, which the caller sets. `current_table` gives the session's own
    /// description of a relation, so that events share it with streamed ones.
    pub fn on_signal(
        &mut self,
        ev: &ChangeEvent,
        config: &Config,
        current_table: impl Fn(u32) -> Option<Arc<Table>>,
    ) -> Vec<ChangeEvent> {
        let Some(signal) = Signal::from_event(ev) else {
            tracing::warn!("a signal row without id or type; ignored");
            return Vec::new();
        };
        match signal.kind.as_str() {
            WINDOW_OPEN => {
                self.open_window(&signal);
                Vec::new()
            }
            WINDOW_CLOSE => self.close_window(&signal, current_table),
            EXECUTE_SNAPSHOT | STOP_SNAPSHOT | PAUSE_SNAPSHOT | RESUME_SNAPSHOT => {
                if !self.state.first_sight(&signal.id) {
                    tracing::debug!(id = %signal.id, "signal already acted on; ignored");
                    return Vec::new();
                }
                self.dirty = true;
                self.command(&signal, config);
                Vec::new()
            }
            other => {
                tracing::warn!(id = %signal.id, kind = %other, "unknown signal type; ignored (known: execute-snapshot, stop-snapshot, pause-snapshot, resume-snapshot)");
                Vec::new()
            }
        }
    }

    fn command(&mut self, signal: &Signal, config: &Config) {
        let data: SignalData = match signal.data.as_deref().map(str::trim) {
            None | Some("") => SignalData::default(),
            Some(text) => match serde_json::from_str(text) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(id = %signal.id, kind = %signal.kind, error = %e, "signal data is not the expected JSON; ignored");
                    return;
                }
            },
        };
        match signal.kind.as_str() {
            EXECUTE_SNAPSHOT => {
                if data
                    .kind
                    .as_deref()
                    .is_some_and(|k| !k.eq_ignore_ascii_case("incremental"))
                {
                    tracing::error!(id = %signal.id, kind = ?data.kind, "only incremental snapshots can be signalled; ignored");
                    return;
                }
                for t in &data.data_collections {
                    let table = qualify(t);
                    let (schema, name) = table.split_once('.').unwrap_or_default();
                    if !config.table_selected(schema, name) {
                        tracing::error!(table = %table, "not snapshotted: the table is not captured by [source] tables; add it there first");
                        continue;
                    }
                    if self.state.tables.iter().any(|p| p.table == table) {
                        tracing::info!(table = %table, "already in the incremental snapshot");
                        continue;
                    }
                    let filter = data
                        .additional_conditions
                        .iter()
                        .find(|c| qualify(&c.data_collection) == table)
                        .map(|c| c.filter.clone());
                    tracing::info!(table = %table, filter = ?filter, "incremental snapshot requested");
                    self.state.tables.push_back(TableProgress {
                        table,
                        filter,
                        ..TableProgress::default()
                    });
                }
                self.request_next();
            }
            STOP_SNAPSHOT => {
                let stop: Vec<String> = data.data_collections.iter().map(|t| qualify(t)).collect();
                if stop.is_empty() {
                    self.state.tables.clear();
                } else {
                    self.state.tables.retain(|p| !stop.contains(&p.table));
                }
                // A window of a stopped table closes without events.
                if self
                    .outstanding
                    .as_ref()
                    .is_some_and(|o| !self.state.tables.iter().any(|p| p.table == o.table))
                {
                    self.outstanding = None;
                    self.window = None;
                }
                tracing::info!(tables = ?stop, "incremental snapshot stopped");
                self.request_next();
            }
            PAUSE_SNAPSHOT => {
                self.state.paused = true;
                tracing::info!("incremental snapshot paused");
            }
            RESUME_SNAPSHOT => {
                self.state.paused = false;
                tracing::info!("incremental snapshot resumed");
                self.request_next();
            }
            _ => {}
        }
    }

    fn open_window(&mut self, signal: &Signal) {
        let Some(window) = signal.id.strip_suffix("-open") else {
            return;
        };
        let Some(o) = &self.outstanding else { return };
        if o.window != window {
            // A watermark of an abandoned read or of an earlier process.
            return;
        }
        let oid = signal
            .data
            .as_deref()
            .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            .and_then(|v| v["oid"].as_u64())
            .unwrap_or(0) as u32;
        self.window = Some(Window {
            id: window.to_string(),
            oid,
            changed: HashSet::new(),
            dirty: false,
        });
    }

    fn close_window(
        &mut self,
        signal: &Signal,
        current_table: impl Fn(u32) -> Option<Arc<Table>>,
    ) -> Vec<ChangeEvent> {
        let Some(id) = signal.id.strip_suffix("-close") else {
            return Vec::new();
        };
        if self.window.as_ref().is_none_or(|w| w.id != id) {
            return Vec::new();
        }
        let Some(window) = self.window.take() else {
            return Vec::new();
        };
        // The driver sent the rows before it wrote this watermark, so they are queued.
        self.drain_results();
        let Some(chunk) = self.outstanding.take().and_then(|o| o.chunk) else {
            tracing::warn!(window = %id, "window closed without its chunk; reading it again");
            self.request_next();
            return Vec::new();
        };
        if window.dirty {
            tracing::debug!(window = %id, "the window's table changed in a way keys cannot track; reading the chunk again");
            self.request_next();
            return Vec::new();
        }
        let table = match current_table(chunk.table.id) {
            Some(t) if same_shape(&t, &chunk.table) => t,
            Some(_) if !chunk.fresh => {
                // The stream describes the table differently (DDL since the driver looked):
                // the rows do not fit; read the chunk again with a fresh description.
                tracing::info!(window = %id, "the table's columns changed; reading the chunk again");
                self.refresh = true;
                self.request_next();
                return Vec::new();
            }
            // The catalog, read for this chunk, is newer than the stream's description
            // (no change of the table streamed since the DDL): the rows are as read.
            _ => chunk.table.clone(),
        };
        let read = chunk.rows.len();
        let events: Vec<ChangeEvent> = chunk
            .rows
            .into_iter()
            .filter(|(key, _)| !window.changed.contains(key))
            .map(|(_, row)| ChangeEvent {
                op: Op::Read,
                table: Some(table.clone()),
                before: None,
                after: Some(row),
                source: SourcePosition::default(),
                message: None,
            })
            .collect();
        if let Some(p) = self.state.tables.front_mut() {
            p.max = Some(chunk.max);
            p.rows += events.len() as u64;
            if chunk.last.is_some() {
                p.last = chunk.last;
            }
            tracing::debug!(table = %p.table, read, emitted = events.len(), changed = window.changed.len(), "incremental snapshot chunk");
        }
        if chunk.done {
            self.table_done();
        }
        self.dirty = true;
        self.request_next();
        events
    }

    fn table_done(&mut self) {
        if let Some(p) = self.state.tables.pop_front() {
            tracing::info!(table = %p.table, rows = p.rows, "incremental snapshot of the table complete");
            if self.state.tables.is_empty() {
                tracing::info!("incremental snapshot complete");
            }
        }
    }

    /// After the caller emitted the events of a signal: progress changed by it becomes
    /// durable once the first `produced` records are delivered.
    pub fn after_emit(&mut self, produced: u64) {
        if std::mem::take(&mut self.dirty) {
            self.pending_saves.push_back((produced, self.state.clone()));
        }
    }

    /// Periodic work: answers from the driver that need no window, a retry due, and
    /// progress whose records are delivered.
    pub fn on_tick(&mut self, delivered: u64) {
        self.drain_results();
        if self.retry_at.is_some_and(|t| Instant::now() >= t) {
            self.retry_at = None;
            self.request_next();
        }
        self.save_delivered(delivered, false);
    }

    /// The session ends: keep what was delivered.
    pub fn finish(&mut self, delivered: u64) {
        self.save_delivered(delivered, true);
    }

    fn save_delivered(&mut self, delivered: u64, force: bool) {
        if self
            .pending_saves
            .front()
            .is_none_or(|(seq, _)| *seq > delivered)
        {
            return;
        }
        if !force && self.last_save.is_some_and(|t| t.elapsed() < SAVE_INTERVAL) {
            return;
        }
        let mut newest = None;
        while self
            .pending_saves
            .front()
            .is_some_and(|(seq, _)| *seq <= delivered)
        {
            newest = self.pending_saves.pop_front().map(|(_, s)| s);
        }
        if let Some(state) = newest {
            self.last_save = Some(Instant::now());
            if let Err(e) = state.save(&self.path) {
                // The snapshot goes on; after a crash it would repeat chunks, not lose them.
                tracing::warn!(error = %e, "cannot save incremental snapshot progress");
            }
        }
    }

    fn drain_results(&mut self) {
        while let Ok(result) = self.results.try_recv() {
            let window = match &result {
                ChunkResult::Rows { window, .. }
                | ChunkResult::Empty { window }
                | ChunkResult::Refused { window, .. }
                | ChunkResult::Failed { window, .. } => window.clone(),
            };
            if self.outstanding.as_ref().is_none_or(|o| o.window != window) {
                continue; // stopped or superseded
            }
            match result {
                ChunkResult::Rows { chunk, .. } => {
                    if let Some(o) = &mut self.outstanding {
                        o.chunk = Some(chunk);
                    }
                }
                ChunkResult::Empty { .. } => {
                    self.outstanding = None;
                    self.window = None;
                    self.table_done();
                    self.dirty = true;
                    self.request_next();
                }
                ChunkResult::Refused { message, .. } => {
                    let table = self.outstanding.take().map(|o| o.table).unwrap_or_default();
                    self.window = None;
                    tracing::error!(table = %table, "incremental snapshot of the table refused: {message}");
                    self.state.tables.retain(|p| p.table != table);
                    self.dirty = true;
                    self.request_next();
                }
                ChunkResult::Failed { message, .. } => {
                    let table = self.outstanding.take().map(|o| o.table).unwrap_or_default();
                    self.window = None;
                    tracing::warn!(table = %table, error = %message, "incremental snapshot chunk failed; trying again");
                    self.retry_at = Some(Instant::now() + RETRY_DELAY);
                }
            }
        }
    }

    /// Asks the driver for the next chunk when none is outstanding, work is queued and the
    /// snapshot is not paused.
    fn request_next(&mut self) {
        if self.outstanding.is_some() || self.state.paused || self.retry_at.is_some() {
            return;
        }
        let Some(p) = self.state.tables.front() else {
            return;
        };
        let window = format!("walrus-window-{}", unique_suffix());
        let request = ChunkRequest {
            window: window.clone(),
            table: p.table.clone(),
            filter: p.filter.clone(),
            last: p.last.clone(),
            max: p.max.clone(),
            chunk_size: self.chunk_size,
            refresh: std::mem::take(&mut self.refresh),
        };
        if self.requests.send(request).is_ok() {
            self.outstanding = Some(Outstanding {
                window,
                table: p.table.clone(),
                chunk: None,
            });
        }
    }
}

/// Whether two descriptions of a table have the same columns (so rows of one fit the other).
fn same_shape(a: &Table, b: &Table) -> bool {
    a.columns.len() == b.columns.len()
        && a.columns
            .iter()
            .zip(&b.columns)
            .all(|(x, y)| x.name == y.name && x.type_oid == y.type_oid)
}

/// A row's primary key as a comparable string; `None` when the table has no primary key or
/// the row does not carry it (a key-only old row of another replica identity index).
pub fn row_key(table: &Table, row: &Row) -> Option<String> {
    let mut key = String::new();
    let mut any = false;
    for i in table.primary_key_indexes() {
        let v = row.values.get(i)?;
        if matches!(v, Value::Null | Value::Unavailable) {
            return None;
        }
        use std::fmt::Write;
        let _ = write!(key, "{v:?}\u{1f}");
        any = true;
    }
    any.then_some(key)
}

// ───────────────────────────── driver ─────────────────────────────

/// Why a chunk was not read.
enum ReadError {
    /// The table cannot be snapshotted incrementally (message: why, and the fix).
    Refused(String),
    /// Anything else; worth another try.
    Failed(PgError),
}

impl From<PgError> for ReadError {
    fn from(e: PgError) -> Self {
        ReadError::Failed(e)
    }
}

/// A table as the driver reads it.
struct Described {
    table: Arc<Table>,
    /// Primary-key column names in key order, quoted.
    key_names: Vec<String>,
    /// Their SQL types, for casting key literals.
    key_casts: Vec<String>,
    /// Their indexes in the table's columns, in key order.
    key_indexes: Vec<usize>,
    from: String,
    select_list: String,
    /// The columns' names and types as one string ([`shape_sql`]), to notice DDL.
    shape: String,
}

/// SQL for a fingerprint of table `oid`'s columns (names, types, modifiers, in order), as
/// seen by the current snapshot.
fn shape_sql(oid: u32) -> String {
    format!(
        "(SELECT string_agg(a.attname || ':' || a.atttypid || ':' || a.atttypmod, ',' ORDER BY a.attnum)
            FROM pg_attribute a
           WHERE a.attrelid = {oid} AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '')"
    )
}

async fn describe(client: &Client, schema: &str, name: &str) -> Result<Described, ReadError> {
    let row = client
        .query_opt(
            "SELECT c.oid, c.relreplident::text FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&schema, &name],
        )
        .await
        .map_err(|e| PgError::sql("looking up a table for the incremental snapshot", e))?;
    let Some(row) = row else {
        return Err(ReadError::Refused(
            "no such table; name an existing table as schema.table".into(),
        ));
    };
    let oid: u32 = row.get(0);
    let identity =
        ReplicaIdentity::from_byte(row.get::<_, String>(1).bytes().next().unwrap_or(b'd'));
    let pk = crate::catalog::primary_keys(client, &[oid])
        .await?
        .remove(&oid)
        .unwrap_or_default();
    if pk.is_empty() {
        return Err(ReadError::Refused(format!(
            "it has no primary key, and incremental snapshots read and match rows by primary key; add one (ALTER TABLE {}.{} ADD PRIMARY KEY (...)), or re-read the table with an initial snapshot ([snapshot] mode = \"always\"), which reads keyless tables by ctid",
            quote_ident(schema),
            quote_ident(name)
        )));
    }
    let (columns, casts) = crate::snapshot::describe_columns(client, oid, identity, &pk).await?;
    let mut key_indexes = Vec::with_capacity(pk.len());
    for k in &pk {
        match columns.iter().position(|c| &c.name == k) {
            Some(i) => key_indexes.push(i),
            None => {
                return Err(ReadError::Refused(format!(
                    "primary-key column {k:?} is generated or unreadable"
                )))
            }
        }
    }
    let select_list = columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let shape: Option<String> = client
        .query_one(&format!("SELECT {}", shape_sql(oid)), &[])
        .await
        .map_err(|e| PgError::sql("reading a table's columns", e))?
        .get(0);
    Ok(Described {
        shape: shape.unwrap_or_default(),
        key_names: pk.iter().map(|k| quote_ident(k)).collect(),
        key_casts: key_indexes.iter().map(|&i| casts[i].clone()).collect(),
        key_indexes,
        table: Arc::new(Table {
            id: oid,
            schema: schema.to_string(),
            name: name.to_string(),
            columns,
            replica_identity: identity,
        }),
        from: format!("{}.{}", quote_ident(schema), quote_ident(name)),
        select_list,
    })
}

impl Described {
    /// `(a, b)` or `a`.
    fn key_expr(&self) -> String {
        if self.key_names.len() == 1 {
            self.key_names[0].clone()
        } else {
            format!("({})", self.key_names.join(", "))
        }
    }

    /// A key literal with casts: `'1'::integer` or `('a'::text, '2'::integer)`.
    fn key_literal(&self, key: &[String]) -> String {
        let lits: Vec<String> = key
            .iter()
            .zip(&self.key_casts)
            .map(|(k, t)| format!("{}::{t}", quote_literal(k)))
            .collect();
        if lits.len() == 1 {
            lits[0].clone()
        } else {
            format!("({})", lits.join(", "))
        }
    }
}

/// Reads chunks as the session asks, until the session is gone.
async fn drive(
    params: ConnParams,
    signal: String,
    mut requests: mpsc::UnboundedReceiver<ChunkRequest>,
    results: mpsc::UnboundedSender<ChunkResult>,
) {
    let mut client: Option<Client> = None;
    // Table descriptions, reused from chunk to chunk; dropped on any failure and renewed
    // when the session finds the columns changed.
    let mut described: std::collections::HashMap<String, Arc<Described>> =
        std::collections::HashMap::new();
    while let Some(req) = requests.recv().await {
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = match connect(&params).await {
                Ok(c) => Some(c),
                Err(e) => {
                    let _ = results.send(ChunkResult::Failed {
                        window: req.window.clone(),
                        message: e.to_string(),
                    });
                    continue;
                }
            };
        }
        let Some(c) = &client else { continue };
        let window = req.window.clone();
        let answer = match read_chunk(c, &signal, &req, &results, &mut described).await {
            Ok(None) => continue,
            Ok(Some(answer)) => answer,
            Err(ReadError::Refused(message)) => ChunkResult::Refused { window, message },
            Err(ReadError::Failed(e)) => {
                // A broken transaction or connection: start clean next time.
                let _ = c.batch_execute("ROLLBACK").await;
                described.clear();
                ChunkResult::Failed {
                    window,
                    message: e.to_string(),
                }
            }
        };
        if results.send(answer).is_err() {
            break;
        }
    }
}

/// The driver's SQL connection. Its commits flush the WAL at once even where
/// `synchronous_commit` is off: the walsender sends only flushed WAL, so a watermark
/// waiting for the WAL writer (`wal_writer_delay`, 200 ms by default) would hold up every
/// chunk by that much.
async fn connect(params: &ConnParams) -> Result<Client, PgError> {
    let client = params.connect_sql().await?;
    client
        .batch_execute("SET synchronous_commit TO on")
        .await
        .map_err(|e| PgError::sql("setting synchronous_commit for the watermarks", e))?;
    Ok(client)
}

/// One chunk between two watermarks. The rows go to the session *before* the high
/// watermark is written (`Ok(None)` then); other answers are returned.
async fn read_chunk(
    client: &Client,
    signal: &str,
    req: &ChunkRequest,
    results: &mpsc::UnboundedSender<ChunkResult>,
    described: &mut std::collections::HashMap<String, Arc<Described>>,
) -> Result<Option<ChunkResult>, ReadError> {
    let mut fresh = false;
    let mut d = match described.get(&req.table) {
        Some(d) if !req.refresh => d.clone(),
        _ => {
            fresh = true;
            let (schema, name) = req.table.split_once('.').unwrap_or(("public", &req.table));
            let d = Arc::new(describe(client, schema, name).await?);
            described.insert(req.table.clone(), d.clone());
            d
        }
    };
    let filter = req.filter.as_deref().map(|f| format!("({f})"));
    let max = match &req.max {
        Some(m) => m.clone(),
        None => {
            // Aliased: ORDER BY "id" would otherwise sort the text output column.
            let cols: Vec<String> = d
                .key_names
                .iter()
                .enumerate()
                .map(|(i, k)| format!("{k}::text AS walrus_key_{i}"))
                .collect();
            let desc: Vec<String> = d.key_names.iter().map(|k| format!("{k} DESC")).collect();
            let sql = format!(
                "SELECT {} FROM {}{} ORDER BY {} LIMIT 1",
                cols.join(", "),
                d.from,
                filter
                    .as_deref()
                    .map(|f| format!(" WHERE {f}"))
                    .unwrap_or_default(),
                desc.join(", ")
            );
            let row = client.query_opt(&sql, &[]).await.map_err(|e| {
                PgError::sql(format!("reading the largest key of {}", req.table), e)
            })?;
            match row {
                Some(r) => (0..d.key_names.len())
                    .map(|i| r.get::<_, String>(i))
                    .collect(),
                None => {
                    return Ok(Some(ChunkResult::Empty {
                        window: req.window.clone(),
                    }))
                }
            }
        }
    };
    if req.last.as_ref() == Some(&max) {
        return Ok(Some(ChunkResult::Empty {
            window: req.window.clone(),
        }));
    }
    let open_id = format!("{}-open", req.window);
    let close_id = format!("{}-close", req.window);
    let data = serde_json::json!({ "table": req.table, "oid": d.table.id }).to_string();
    let insert = |id: &str, kind: &str| {
        format!(
            "INSERT INTO {signal} (id, type, data) VALUES ({}, {}, {})",
            quote_literal(id),
            quote_literal(kind),
            quote_literal(&data)
        )
    };
    // One round trip: the low watermark, committed, then a snapshot taken after it. (With
    // explicit BEGIN/COMMIT a multi-statement query is not one implicit transaction.)
    let messages = client
        .simple_query(&format!(
            "BEGIN; {}; COMMIT; SELECT pg_current_snapshot()::text",
            insert(&open_id, WINDOW_OPEN)
        ))
        .await
        .map_err(|e| PgError::sql("writing the low watermark into the signal table", e))?;
    let after_low = first_value(&messages).ok_or_else(|| {
        ReadError::Failed(PgError::Protocol {
            lsn: walrus_core::Lsn::ZERO,
            message: "pg_current_snapshot() returned no row".into(),
        })
    })?;
    let low_at = Instant::now();
    // Wait until every transaction that was running when the low watermark committed is
    // visible (or aborted) in the chunk's snapshot: see the module docs. The transaction
    // that passes the check reads the chunk.
    let mut retry = "";
    loop {
        let past_grace = low_at.elapsed() >= INVISIBLE_GRACE;
        let messages = client
            .simple_query(&format!(
                "{retry}BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
                 SELECT (SELECT count(*) FROM pg_snapshot_xip({}::pg_snapshot) x
                          WHERE NOT pg_visible_in_snapshot(x, pg_current_snapshot())
                            AND pg_xact_status(x) IS DISTINCT FROM 'aborted'
                            AND NOT ({past_grace} AND pg_xact_status(x) IS NOT DISTINCT FROM 'in progress')),
                        {}",
                quote_literal(&after_low),
                shape_sql(d.table.id)
            ))
            .await
            .map_err(|e| PgError::sql("checking the chunk's snapshot", e))?;
        let row = messages.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        });
        let shape = row.and_then(|r| r.get(1)).unwrap_or_default();
        if shape != d.shape {
            // DDL since the table was described: describe it as this snapshot will see it.
            client
                .batch_execute("ROLLBACK")
                .await
                .map_err(|e| PgError::sql("retrying the chunk's snapshot", e))?;
            let (schema, name) = req.table.split_once('.').unwrap_or(("public", &req.table));
            d = Arc::new(describe(client, schema, name).await?);
            described.insert(req.table.clone(), d.clone());
            fresh = true;
            retry = "";
            continue;
        }
        if row.and_then(|r| r.get(0)) == Some("0") {
            break;
        }
        retry = "ROLLBACK; ";
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let key = d.key_expr();
    let mut conds = vec![format!("{key} <= {}", d.key_literal(&max))];
    if let Some(last) = &req.last {
        conds.push(format!("{key} > {}", d.key_literal(last)));
    }
    if let Some(f) = &filter {
        conds.push(f.clone());
    }
    let sql = format!(
        "COPY (SELECT {} FROM {} WHERE {} ORDER BY {} LIMIT {}) TO STDOUT",
        d.select_list,
        d.from,
        conds.join(" AND "),
        d.key_names.join(", "),
        req.chunk_size
    );
    let (rows, last) = copy_rows(client, &d, &req.table, &sql).await?;
    tracing::debug!(%sql, rows = rows.len(), last = ?last, "chunk read");
    let done = rows.len() < req.chunk_size || last.as_ref() == Some(&max);
    let chunk = Chunk {
        table: d.table.clone(),
        rows,
        last,
        max,
        done,
        fresh,
    };
    if results
        .send(ChunkResult::Rows {
            window: req.window.clone(),
            chunk,
        })
        .is_err()
    {
        return Ok(None);
    }
    // One round trip: end the read, write the high watermark, and delete both watermark
    // rows (they are in the WAL now; the table need not keep them).
    client
        .batch_execute(&format!(
            "COMMIT; BEGIN; {}; COMMIT; DELETE FROM {signal} WHERE id IN ({}, {})",
            insert(&close_id, WINDOW_CLOSE),
            quote_literal(&open_id),
            quote_literal(&close_id)
        ))
        .await
        .map_err(|e| PgError::sql("writing the high watermark into the signal table", e))?;
    Ok(None)
}

/// The first column of the first row in a simple query's answer.
fn first_value(messages: &[tokio_postgres::SimpleQueryMessage]) -> Option<String> {
    messages.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    })
}

/// Runs the chunk's `COPY` and parses its rows; returns them with their comparison keys,
/// and the key texts (key order) of the last one.
async fn copy_rows(
    client: &Client,
    d: &Described,
    qualified: &str,
    sql: &str,
) -> Result<(Vec<(String, Row)>, Option<Vec<String>>), ReadError> {
    let stream = client
        .copy_out(sql)
        .await
        .map_err(|e| PgError::sql(format!("reading a chunk of {qualified}"), e))?;
    let mut stream = std::pin::pin!(stream);
    let mut rows = Vec::new();
    let mut carry: Vec<u8> = Vec::new();
    let mut fields = Vec::with_capacity(d.table.columns.len());
    let mut last = None;
    while let Some(data) = stream.next().await {
        let data = data.map_err(|e| PgError::sql(format!("reading a chunk of {qualified}"), e))?;
        carry.extend_from_slice(&data);
        let mut start = 0;
        while let Some(nl) = carry[start..].iter().position(|&b| b == b'\n') {
            let line = &carry[start..start + nl];
            start += nl + 1;
            crate::snapshot::split_fields(line, &mut fields);
            if fields.len() != d.table.columns.len() {
                return Err(ReadError::Failed(PgError::Snapshot {
                    table: qualified.to_string(),
                    message: format!(
                        "COPY returned {} columns, expected {}",
                        fields.len(),
                        d.table.columns.len()
                    ),
                }));
            }
            let mut values = Vec::with_capacity(fields.len());
            for (&(s, e), col) in fields.iter().zip(&d.table.columns) {
                let raw = &line[s..e];
                if raw == b"\\N" {
                    values.push(Value::Null);
                    continue;
                }
                let text = crate::snapshot::unescape(raw);
                let (value, err) = match &col.type_desc {
                    Some(desc) => types::parse_text_desc_or_text(desc, &text),
                    None => types::parse_text_or_text(col.type_oid, &text),
                };
                if let Some(err) = err {
                    tracing::warn!(table = %qualified, column = %col.name, error = %err, "value kept as text");
                }
                values.push(value);
            }
            let key_text: Vec<String> = d
                .key_indexes
                .iter()
                .map(|&i| {
                    let (s, e) = fields[i];
                    String::from_utf8_lossy(&crate::snapshot::unescape(&line[s..e])).into_owned()
                })
                .collect();
            let row = Row {
                values,
                key_only: false,
            };
            let Some(key) = row_key(&d.table, &row) else {
                return Err(ReadError::Failed(PgError::Snapshot {
                    table: qualified.to_string(),
                    message: "a primary-key column is NULL".into(),
                }));
            };
            rows.push((key, row));
            last = Some(key_text);
        }
        carry.drain(..start);
    }
    Ok((rows, last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use walrus_core::event::Column;

    fn table() -> Arc<Table> {
        let col = |name: &str, pk: bool| Column {
            name: name.into(),
            type_oid: 23,
            type_name: "int4".into(),
            type_modifier: -1,
            key: pk,
            primary_key: pk,
            type_desc: None,
        };
        Arc::new(Table {
            id: 42,
            schema: "public".into(),
            name: "t".into(),
            columns: vec![col("id", true), col("v", false)],
            replica_identity: ReplicaIdentity::Default,
        })
    }

    fn row(id: i32, v: i32) -> Row {
        Row {
            values: vec![Value::Int32(id), Value::Int32(v)],
            key_only: false,
        }
    }

    #[test]
    fn keys_compare_primary_key_values_only() {
        let t = table();
        assert_eq!(row_key(&t, &row(1, 5)), row_key(&t, &row(1, 6)));
        assert_ne!(row_key(&t, &row(1, 5)), row_key(&t, &row(2, 5)));
        let key_only = Row {
            values: vec![Value::Int32(1), Value::Null],
            key_only: true,
        };
        assert_eq!(row_key(&t, &key_only), row_key(&t, &row(1, 0)));
        let no_key = Row {
            values: vec![Value::Null, Value::Int32(1)],
            key_only: true,
        };
        assert_eq!(row_key(&t, &no_key), None);
    }

    fn signal_event(id: &str, kind: &str, data: Option<&str>) -> ChangeEvent {
        let col = |name: &str| Column {
            name: name.into(),
            type_oid: 25,
            type_name: "text".into(),
            type_modifier: -1,
            key: name == "id",
            primary_key: name == "id",
            type_desc: None,
        };
        let text = |s: Option<&str>| s.map_or(Value::Null, |s| Value::Text(s.into()));
        ChangeEvent {
            op: Op::Create,
            table: Some(Arc::new(Table {
                id: 7,
                schema: "public".into(),
                name: "walrus_signal".into(),
                columns: vec![col("id"), col("type"), col("data")],
                replica_identity: ReplicaIdentity::Default,
            })),
            before: None,
            after: Some(Row {
                values: vec![text(Some(id)), text(Some(kind)), text(data)],
                key_only: false,
            }),
            source: SourcePosition::default(),
            message: None,
        }
    }

    fn change(op: Op, before: Option<Row>, after: Option<Row>) -> ChangeEvent {
        ChangeEvent {
            op,
            table: Some(table()),
            before,
            after,
            source: SourcePosition::default(),
            message: None,
        }
    }

    /// The session side without a database: the driver's answers are put on the channel
    /// by hand, the stream's rows are passed to `on_signal` and `observe` in stream order.
    #[tokio::test]
    async fn streamed_changes_in_the_window_win_and_progress_waits_for_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inc.json");
        let (requests, mut request_rx) = mpsc::unbounded_channel();
        let (result_tx, results) = mpsc::unbounded_channel();
        let config = Config::parse_with_env(
            "[source]\nurl = \"postgres://u@h/db\"\ntables = [\"public.*\"]\n[sink]\ntype = \"stdout\"\n",
            |_| None,
        )
        .unwrap();
        let mut inc = Incremental {
            signal_oid: 7,
            chunk_size: 5,
            state: IncrementalState::default(),
            path: path.clone(),
            requests,
            results,
            driver: tokio::spawn(async {}),
            outstanding: None,
            window: None,
            retry_at: None,
            pending_saves: VecDeque::new(),
            dirty: false,
            last_save: None,
            refresh: false,
        };
        let no_table = |_: u32| None;
        let exec = signal_event(
            "s1",
            EXECUTE_SNAPSHOT,
            Some(r#"{"data-collections": ["public.t"], "type": "incremental"}"#),
        );
        assert!(inc.on_signal(&exec, &config, no_table).is_empty());
        inc.after_emit(10);
        let req = request_rx.try_recv().expect("a chunk is asked for");
        assert_eq!((req.table.as_str(), req.last.as_ref()), ("public.t", None));
        // A replayed signal is not acted on again.
        assert!(inc.on_signal(&exec, &config, no_table).is_empty());
        assert_eq!(inc.state.tables.len(), 1);

        let open = signal_event(
            &format!("{}-open", req.window),
            WINDOW_OPEN,
            Some(r#"{"table": "public.t", "oid": 42}"#),
        );
        assert!(inc.on_signal(&open, &config, no_table).is_empty());
        assert_eq!(inc.window_oid(), 42);
        // The driver read rows 1..=5 (with stale values) and sent them before the close.
        let t = table();
        let rows: Vec<(String, Row)> = (1..=5)
            .map(|i| (row_key(&t, &row(i, 0)).unwrap(), row(i, 0)))
            .collect();
        result_tx
            .send(ChunkResult::Rows {
                window: req.window.clone(),
                chunk: Chunk {
                    table: t.clone(),
                    rows,
                    last: Some(vec!["5".into()]),
                    max: vec!["9".into()],
                    done: false,
                    fresh: true,
                },
            })
            .unwrap();
        // In the window: an update of 2, a delete of 3, a key change 4 -> 40.
        inc.observe(&change(Op::Update, None, Some(row(2, 1))));
        inc.observe(&change(
            Op::Delete,
            Some(Row {
                values: vec![Value::Int32(3), Value::Null],
                key_only: true,
            }),
            None,
        ));
        inc.observe(&change(Op::Delete, Some(row(4, 0)), None));
        inc.observe(&change(Op::Create, None, Some(row(40, 0))));
        let close = signal_event(&format!("{}-close", req.window), WINDOW_CLOSE, None);
        let reads = inc.on_signal(&close, &config, no_table);
        let ids: Vec<&Value> = reads
            .iter()
            .map(|e| &e.after.as_ref().unwrap().values[0])
            .collect();
        assert_eq!(ids, [&Value::Int32(1), &Value::Int32(5)]);
        assert!(reads.iter().all(|e| e.op == Op::Read));
        assert_eq!(inc.window_oid(), 0, "the window is closed");
        inc.after_emit(12);
        let next = request_rx.try_recv().expect("the next chunk is asked for");
        assert_eq!(next.last, Some(vec!["5".to_string()]));
        assert_eq!(next.max, Some(vec!["9".to_string()]));

        // Progress is written only once the records up to it are delivered.
        inc.on_tick(11);
        let saved = IncrementalState::load(&path, "", "").unwrap();
        assert_eq!(
            saved.signals_seen,
            ["s1"],
            "the signal is durable, the chunk is not"
        );
        assert_eq!(saved.tables[0].last, None);
        inc.finish(12);
        let saved = IncrementalState::load(&path, "", "").unwrap();
        assert_eq!(saved.tables[0].last, Some(vec!["5".to_string()]));
        assert_eq!(saved.tables[0].rows, 2);

        // A watermark of another window (an earlier process) is ignored.
        let stale = signal_event(
            "walrus-window-old-open",
            WINDOW_OPEN,
            Some(r#"{"oid": 42}"#),
        );
        inc.on_signal(&stale, &config, no_table);
        assert_eq!(inc.window_oid(), 0);
    }

    #[test]
    fn signals_are_acted_on_once() {
        let mut s = IncrementalState::default();
        assert!(s.first_sight("a"));
        assert!(!s.first_sight("a"));
        for i in 0..SIGNALS_REMEMBERED {
            s.first_sight(&i.to_string());
        }
        assert_eq!(s.signals_seen.len(), SIGNALS_REMEMBERED);
        assert!(s.first_sight("a"), "the oldest ids are forgotten");
    }

    #[test]
    fn signal_data_has_debeziums_shape() {
        let d: SignalData = serde_json::from_str(
            r#"{"data-collections": ["public.t"], "type": "incremental",
                "additional-conditions": [{"data-collection": "public.t", "filter": "id > 3"}]}"#,
        )
        .unwrap();
        assert_eq!(d.data_collections, vec!["public.t"]);
        assert_eq!(d.kind.as_deref(), Some("incremental"));
        assert_eq!(d.additional_conditions[0].filter, "id > 3");
        assert_eq!(qualify("t"), "public.t");
        assert_eq!(qualify("s.t"), "s.t");
    }
}
