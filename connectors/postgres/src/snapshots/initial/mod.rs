//! The initial snapshot: the tables' contents as of one consistent point, read in parallel
//! chunks, delivered through the same encoder, sink and acknowledgements as streaming, and
//! resumable after a crash.
//!
//! ```text
//!  replication conn (gated) ── CREATE_REPLICATION_SLOT .. (SNAPSHOT 'export') ──▶ name, consistent point
//!        │ held open, idle, until the snapshot is read                    │
//!        │                                         SET TRANSACTION SNAPSHOT 'name'
//!        │                                 ┌────────────┬───────────────┴──┐
//!        │                              worker 1     worker 2   ...     worker n   (REPEATABLE READ)
//!        │                                 │ COPY (SELECT .. WHERE key > last ORDER BY key LIMIT n) TO STDOUT
//!        │                                 ▼ parse (types.rs) → ChangeEvent op r → JSON → Record
//!        │                            coordinator ──reserve/send──▶ SinkHandle ──▶ sink
//!        │                                 │ chunk delivered? (Delivered counter) ──▶ state file
//!        ▼
//!  START_REPLICATION from the consistent point, on the same connection
//! ```
//!
//! **Why it is exact.** `CREATE_REPLICATION_SLOT ... LOGICAL pgoutput (SNAPSHOT 'export')`
//! returns a snapshot that sees exactly the transactions committed before the slot's
//! consistent point, and the slot streams exactly the transactions committing after it
//! (PostgreSQL docs, "Streaming Replication Protocol" and "Exported Snapshots"). The snapshot
//! stays importable while the replication connection runs no other command, so walrus keeps
//! that connection open and idle (`ReplicationClient::connect_gated`) while every worker
//! imports it with `SET TRANSACTION SNAPSHOT`, and only then sends `START_REPLICATION` on it.
//! Nothing is confirmed to PostgreSQL before streaming starts, and the first confirmation
//! waits for every snapshot record (they are numbered before the first streamed one).
//!
//! **Chunks.** Tables with a primary key are read by keyset pagination
//! (`WHERE (pk) > (last) ORDER BY pk LIMIT chunk_size`), split into key ranges sampled with
//! `TABLESAMPLE` so that several workers can read one large table; tables without one by
//! `ctid` block ranges (TID range scans, PostgreSQL 14+). Each chunk is one
//! `COPY (SELECT ...) TO STDOUT`, in binary format when walrus decodes every column type from
//! binary (else text), parsed by the same decoders as pgoutput's
//! values.
//!
//! **Resume.** Progress (per key range: the last key of the last chunk the sink *delivered*)
//! is kept in a small JSON file next to the config (`[snapshot] state_file`), written
//! atomically. The exported snapshot dies with its connection, so a resumed snapshot reads
//! the remaining chunks in a *new* snapshot, and streaming then starts from the slot's
//! position, which cannot have moved (nothing is confirmed before the snapshot completes):
//! every change after the original consistent point is streamed, so no row is missed; a row
//! changed in between may appear both as a read and as a streamed change (at-least-once).
//! See `docs/snapshots.md`.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio_postgres::Client;
use walrus_core::config::Config;
use walrus_core::event::{ChangeEvent, Column, Op, ReplicaIdentity, Row, SourcePosition, Table};
use walrus_core::format::json::JsonEncoder;
use walrus_core::pipeline::{Batch, SinkHandle};
use walrus_core::router::TableRoute;
use walrus_core::sink::{Delivered, Record};
use walrus_core::telemetry;
use walrus_core::value::Value;
use walrus_core::Lsn;

use crate::catalog;
use crate::conn::ConnParams;
use crate::error::PgError;
use crate::setup::{quote_ident, quote_literal};
use crate::types;

/// Version of the state file format.
const STATE_VERSION: u32 = 1;
/// Rows assumed per 8 kB block when the planner has no statistics.
const DEFAULT_ROWS_PER_BLOCK: f64 = 60.0;
/// Most records in one batch handed to the sink.
const BATCH_RECORDS: usize = 2048;
/// How often delivered progress is written to the state file.
const SAVE_INTERVAL: Duration = Duration::from_millis(500);

// ───────────────────────────── state file ─────────────────────────────

/// Where a snapshot stands, as kept in the state file.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// walrus was about to create the slot; the snapshot has not started.
    Creating,
    /// Chunks are being read; `tables` says which are delivered.
    Running,
    /// Every chunk was delivered.
    Done,
}

/// The snapshot's progress: what has been *delivered* by the sink, per key range.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    /// Format version.
    pub version: u32,
    /// The slot whose stream this snapshot precedes.
    pub slot: String,
    /// The database.
    pub database: String,
    /// Where the snapshot stands.
    pub phase: Phase,
    /// The LSN streaming starts from (the slot's consistent point, or its confirmed
    /// position when the snapshot was taken over an existing slot).
    #[serde(default)]
    pub stream_from: Option<String>,
    /// Per table (`schema.table`).
    #[serde(default)]
    pub tables: BTreeMap<String, TableState>,
}

/// One table's progress.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableState {
    /// `pg_class.oid`: a table dropped and recreated under the same name starts again.
    pub oid: u32,
    /// `pg_class.relfilenode`: block positions of a keyless table are void after a rewrite.
    pub relfilenode: u32,
    /// `pk`, `ctid` or `whole`.
    pub kind: String,
    /// The key columns the positions refer to.
    pub key_columns: Vec<String>,
    /// Rows delivered.
    pub rows: u64,
    /// Every range delivered.
    pub done: bool,
    /// The ranges the table was split into.
    pub units: Vec<UnitState>,
}

/// One key (or block) range of a table.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnitState {
    /// Exclusive lower bound (key texts, or the first block for `ctid`); `None`: unbounded.
    pub lower: Option<Vec<String>>,
    /// Inclusive upper bound (key texts), or the exclusive end block for `ctid`; `None`:
    /// unbounded.
    pub upper: Option<Vec<String>>,
    /// Last key delivered (or the next block to read for `ctid`); `None`: nothing yet.
    pub last: Option<Vec<String>>,
    /// Delivered completely.
    pub done: bool,
}

impl State {
    /// A new state for `slot`.
    pub fn new(slot: &str, database: &str, phase: Phase) -> State {
        State {
            version: STATE_VERSION,
            slot: slot.to_string(),
            database: database.to_string(),
            phase,
            stream_from: None,
            tables: BTreeMap::new(),
        }
    }

    /// Reads the state for `slot` in `database`; `None` when there is no file or it belongs
    /// to another slot or database.
    pub fn load(path: &Path, slot: &str, database: &str) -> Result<Option<State>, PgError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(PgError::SnapshotState {
                    path: path.to_path_buf(),
                    message: format!("cannot read it: {e}"),
                })
            }
        };
        let state: State = serde_json::from_str(&text).map_err(|e| PgError::SnapshotState {
            path: path.to_path_buf(),
            message: format!("not a walrus snapshot state ({e}); move it away to start over"),
        })?;
        if state.slot != slot || state.database != database {
            tracing::warn!(path = %path.display(), state_slot = %state.slot, "snapshot state file belongs to another slot or database; ignoring it");
            return Ok(None);
        }
        Ok(Some(state))
    }

    /// Writes the state atomically (see [`save_json_atomically`]).
    pub fn save(&self, path: &Path) -> Result<(), PgError> {
        save_json_atomically(self, path)
    }

    /// Forgets all table progress (the next snapshot reads everything again).
    pub fn reset_tables(&mut self) {
        self.tables.clear();
    }
}

// ───────────────────────────── slot creation ─────────────────────────────

/// A slot just created on a gated replication connection, with its exported snapshot.
pub struct ExportedSlot {
    /// The replication connection, not yet started; it must stay open (and idle) while
    /// the snapshot is read.
    pub client: pgwire_replication::ReplicationClient,
    /// The snapshot name for `SET TRANSACTION SNAPSHOT`.
    pub snapshot_name: String,
    /// The slot's consistent point: streaming starts here.
    pub consistent_point: Lsn,
}

/// Creates `slot` on a new gated replication connection with an exported snapshot
/// (`SNAPSHOT 'export'` on PostgreSQL 15+, `EXPORT_SNAPSHOT` before), and tells the
/// connection that the consistent point is already confirmed (it is: a new slot's
/// `confirmed_flush_lsn` is its consistent point), so the first status update sends
/// nothing older.
pub async fn create_slot_exported(
    sql: &Client,
    params: &ConnParams,
    config: &Config,
) -> Result<ExportedSlot, PgError> {
    let version: i32 = sql
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| PgError::sql("reading server_version_num", e))?
        .get(0);
    let slot = &config.source.slot;
    let repl = params
        .replication_config(
            slot,
            &config.source.publication,
            // 0/0: start where the slot's confirmed position is, i.e. the consistent point.
            Lsn::ZERO,
            Duration::from_millis(config.source.status_interval_ms),
            config.source.replication_buffer_events,
        )
        .with_binary(config.source.binary);
    let mut client = pgwire_replication::ReplicationClient::connect_gated(repl).await?;
    let command = if version >= 150_000 {
        format!(
            "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput (SNAPSHOT 'export')",
            quote_ident(slot)
        )
    } else {
        format!(
            "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput EXPORT_SNAPSHOT",
            quote_ident(slot)
        )
    };
    let rows = client.simple_query(&command).await?;
    let row = rows.first().ok_or_else(|| PgError::Protocol {
        lsn: Lsn::ZERO,
        message: "CREATE_REPLICATION_SLOT returned no row".into(),
    })?;
    let text = |i: usize| {
        row.get(i)
            .and_then(|c| c.as_ref())
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    let consistent_point: Lsn =
        text(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| PgError::Protocol {
                lsn: Lsn::ZERO,
                message: "CREATE_REPLICATION_SLOT returned no consistent point".into(),
            })?;
    let snapshot_name = text(2).ok_or_else(|| PgError::Protocol {
        lsn: consistent_point,
        message: "CREATE_REPLICATION_SLOT exported no snapshot".into(),
    })?;
    client.update_applied_lsn(pgwire_replication::Lsn(consistent_point.0));
    tracing::info!(slot = %slot, consistent_point = %consistent_point, snapshot = %snapshot_name, "created replication slot with an exported snapshot");
    Ok(ExportedSlot {
        client,
        snapshot_name,
        consistent_point,
    })
}

// ───────────────────────────── planning ─────────────────────────────

/// How a table is cut into chunks.
#[derive(Clone, Debug)]
enum KeyKind {
    /// By primary key: column indexes and their SQL types (`format_type`).
    Pk {
        columns: Vec<usize>,
        casts: Vec<String>,
    },
    /// By `ctid` block ranges of `step` blocks; `blocks` is the relation's size when
    /// planned (the last range reads past it).
    Ctid { step: u64, blocks: u64 },
    /// In one piece (a partitioned table without primary key).
    Whole,
}

/// One table to read.
struct TablePlan {
    qualified: String,
    table: Arc<Table>,
    route: TableRoute,
    /// `"a", "b"` — the columns in table order; in binary mode followed by the key
    /// columns as text (the resume position of the chunk).
    select_list: String,
    /// Read with `COPY ... (FORMAT binary)`: every column's type has a binary format
    /// walrus decodes into the same values as its text.
    binary: bool,
    /// `"schema"."table"`.
    from: String,
    kind: KeyKind,
    /// Estimated rows (for the ETA).
    estimated_rows: u64,
}

/// What one session of the snapshot reads, and how it ended.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Records handed to the sink (they are numbered before any streamed record).
    pub records: u64,
    /// True when every chunk was delivered.
    pub complete: bool,
}

/// Where the snapshot comes from.
pub enum Source<'a> {
    /// The snapshot exported by `CREATE_REPLICATION_SLOT` (exact seam).
    Exported {
        /// Snapshot name.
        name: &'a str,
    },
    /// A new snapshot exported on an SQL connection (resume, `always`, `initial_only`).
    Fresh,
}

/// Reads the tables (or what is left of them) and hands their events to the sink.
///
/// `state` is updated and saved as chunks are delivered. Returns when everything is
/// delivered (`complete`), or when `shutdown` turned true (what was delivered is saved).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    config: &Config,
    params: &ConnParams,
    source: Source<'_>,
    stream_from: Lsn,
    state: &mut State,
    state_path: &Path,
    handle: &mut SinkHandle,
    delivered: &Delivered,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Outcome, PgError> {
    let started = Instant::now();
    // A new snapshot: exported on a connection of our own, held open until the workers
    // imported it.
    let mut _exporter: Option<Client> = None;
    let snapshot_name = match source {
        Source::Exported { name } => name.to_string(),
        Source::Fresh => {
            let c = params.connect_sql().await?;
            c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await
                .map_err(|e| PgError::sql("starting the snapshot transaction", e))?;
            let name: String = c
                .query_one("SELECT pg_export_snapshot()", &[])
                .await
                .map_err(|e| PgError::sql("exporting a snapshot", e))?
                .get(0);
            _exporter = Some(c);
            name
        }
    };
    let workers = config.snapshot.workers.max(1);
    let mut conns = Vec::with_capacity(workers);
    for _ in 0..workers {
        let c = params.connect_sql().await?;
        c.batch_execute(&format!(
            "SET standard_conforming_strings = on;
             BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
             SET TRANSACTION SNAPSHOT {}",
            quote_literal(&snapshot_name)
        ))
        .await
        .map_err(|e| PgError::sql("importing the exported snapshot", e))?;
        conns.push(c);
    }
    // Every worker holds the snapshot now; the exporter may go.
    drop(_exporter.take());

    let plans = plan_tables(&conns[0], config, state, workers).await?;
    state.phase = Phase::Running;
    state.stream_from = Some(stream_from.to_string());
    state.save(state_path)?;

    // The work queue: (table index, unit index) of every unfinished unit, largest tables
    // first so that the long ones start early.
    let mut order: Vec<usize> = (0..plans.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(plans[i].estimated_rows));
    let mut queue = VecDeque::new();
    for &t in &order {
        let ts = &state.tables[&plans[t].qualified];
        for (u, unit) in ts.units.iter().enumerate() {
            if !unit.done {
                queue.push_back(WorkItem {
                    table: t,
                    unit: u,
                    state: unit.clone(),
                });
            }
        }
    }
    let remaining_tables = plans
        .iter()
        .filter(|p| !state.tables[&p.qualified].done)
        .count();
    tracing::info!(
        tables = plans.len(),
        remaining_tables,
        ranges = queue.len(),
        workers,
        snapshot = %snapshot_name,
        "snapshot started"
    );
    metrics::gauge!(telemetry::SNAPSHOT_TABLES_REMAINING).set(remaining_tables as f64);

    let plans = Arc::new(plans);
    let queue = Arc::new(Mutex::new(queue));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Piece>(workers * 4);
    let json = crate::json_options(config, &params.dbname);
    let with_headers = config.sink.type_name() == "kafka";
    let position = SourcePosition {
        lsn: stream_from,
        commit_lsn: stream_from,
        last_commit_lsn: None,
        tx_id: None,
        commit_time_us: now_us(),
        tx_index: 0,
        origin: None,
    };
    let mut tasks = Vec::with_capacity(workers);
    for (i, client) in conns.into_iter().enumerate() {
        let worker = Worker {
            client,
            plans: plans.clone(),
            queue: queue.clone(),
            stop: stop.clone(),
            tx: tx.clone(),
            encoder: JsonEncoder::new(json.clone()),
            chunk_size: config.snapshot.chunk_size,
            position: position.clone(),
            with_headers,
            value_capacity: 0,
        };
        let span = tracing::info_span!("snapshot_worker", worker = i);
        tasks.push(tokio::spawn(tracing::Instrument::instrument(
            worker.run(),
            span,
        )));
    }
    drop(tx);

    let mut coord = Coordinator::new(&plans, state, config);
    let result = coord
        .drive(rx, handle, delivered, shutdown, &stop, state, state_path)
        .await;
    stop.store(true, Ordering::SeqCst);
    let mut worker_error = None;
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                worker_error.get_or_insert(e);
            }
            Err(e) => {
                worker_error.get_or_insert(PgError::Snapshot {
                    table: "(worker)".into(),
                    message: format!("snapshot worker failed: {e}"),
                });
            }
        }
    }
    let records = handle.sent();
    // Save what the sink delivered, whatever happened.
    let all_sent = result.as_ref().is_ok_and(|done| *done) && worker_error.is_none();
    let deadline = (!all_sent).then(|| Instant::now() + Duration::from_secs(10));
    loop {
        coord.apply_delivered(delivered.get(), state);
        if delivered.get() >= handle.sent()
            || handle.is_stopped()
            || deadline.is_some_and(|d| Instant::now() >= d)
        {
            break;
        }
        if all_sent && *shutdown.borrow() {
            // Stop waiting for a sink that does not deliver; the next run resumes.
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    coord.apply_delivered(delivered.get(), state);
    let complete = all_sent && coord.all_done(state) && delivered.get() >= handle.sent();
    if complete {
        state.phase = Phase::Done;
    }
    state.save(state_path)?;
    coord.log_progress(state, true);
    if let Some(e) = worker_error {
        return Err(e);
    }
    result?;
    if complete {
        tracing::info!(
            rows = coord.total_rows(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "snapshot complete"
        );
    }
    Ok(Outcome { records, complete })
}

/// Lists the published tables the config selects, and cuts each into ranges, reusing the
/// ranges (and progress) of `state` where they still apply.
async fn plan_tables(
    client: &Client,
    config: &Config,
    state: &mut State,
    workers: usize,
) -> Result<Vec<TablePlan>, PgError> {
    let router = config.router().map_err(|e| PgError::Config {
        key: "routes",
        message: e.to_string(),
    })?;
    let rows = client
        .query(
            "SELECT c.oid, n.nspname::text, c.relname::text, c.relreplident::text,
                    c.relfilenode, c.relkind::text, c.reltuples::float8,
                    (pg_relation_size(c.oid) / current_setting('block_size')::int8)::int8
               FROM pg_publication_tables pt
               JOIN pg_namespace n ON n.nspname = pt.schemaname
               JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
              WHERE pt.pubname = $1
              ORDER BY 2, 3",
            &[&config.source.publication],
        )
        .await
        .map_err(|e| PgError::sql("listing published tables for the snapshot", e))?;
    let pk_oids: Vec<u32> = rows.iter().map(|r| r.get(0)).collect();
    let keys = catalog::primary_keys(client, &pk_oids).await?;
    let mut plans = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in &rows {
        let oid: u32 = r.get(0);
        let schema: String = r.get(1);
        let name: String = r.get(2);
        if !config.table_selected(&schema, &name) {
            continue;
        }
        let identity =
            ReplicaIdentity::from_byte(r.get::<_, String>(3).bytes().next().unwrap_or(b'd'));
        let relfilenode: u32 = r.get(4);
        let relkind: String = r.get(5);
        let reltuples: f64 = r.get(6);
        let blocks = r.get::<_, i64>(7).max(0) as u64;
        let qualified = format!("{schema}.{name}");
        if config.snapshot.signal_table.as_deref() == Some(qualified.as_str()) {
            // The signal table carries commands and watermarks, not data.
            continue;
        }
        let pk_names = keys.get(&oid).cloned().unwrap_or_default();
        let (columns, casts) = describe_columns(client, oid, identity, &pk_names).await?;
        let table = Arc::new(Table {
            id: oid,
            schema: schema.clone(),
            name: name.clone(),
            columns,
            replica_identity: identity,
        });
        let route = router.resolve(&table)?;
        if route.outbox.is_some() || route.skips(Op::Read) {
            tracing::info!(table = %qualified, "not snapshotted (outbox table, or reads skipped by [tables])");
            continue;
        }
        seen.insert(qualified.clone());
        let pk_idx: Vec<usize> = pk_names
            .iter()
            .filter_map(|n| table.columns.iter().position(|c| &c.name == n))
            .collect();
        let rows_per_block = if reltuples > 0.0 && blocks > 0 {
            (reltuples / blocks as f64).max(1.0)
        } else {
            DEFAULT_ROWS_PER_BLOCK
        };
        let estimated_rows = if reltuples >= 0.0 && blocks > 0 {
            reltuples as u64
        } else {
            (blocks as f64 * rows_per_block) as u64
        };
        let chunk = config.snapshot.chunk_size as u64;
        let (kind, kind_name) = if !pk_idx.is_empty() && pk_idx.len() == pk_names.len() {
            (
                KeyKind::Pk {
                    casts: pk_idx.iter().map(|&i| casts[i].clone()).collect(),
                    columns: pk_idx,
                },
                "pk",
            )
        } else if relkind == "r" {
            let step = ((chunk as f64 / rows_per_block).ceil() as u64).max(1);
            (KeyKind::Ctid { step, blocks }, "ctid")
        } else {
            (KeyKind::Whole, "whole")
        };
        let key_columns: Vec<String> = match &kind {
            KeyKind::Pk { .. } => pk_names.clone(),
            KeyKind::Ctid { .. } => vec!["ctid".into()],
            KeyKind::Whole => Vec::new(),
        };
        // Binary values cost PostgreSQL less to produce (no text rendering of numbers and
        // timestamps) and walrus less to parse; text stays for any type walrus does not
        // decode in binary, so events are the same either way.
        let binary = config.snapshot.binary_copy
            && table.columns.iter().all(|c| match &c.type_desc {
                Some(d) => crate::binary::decodes_desc(d),
                None => crate::binary::decodes(c.type_oid),
            });
        let mut select_list = table
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        if let (true, KeyKind::Pk { columns, .. }) = (binary, &kind) {
            // Aliased: a second output column named like the key would make the chunk's
            // `ORDER BY` ambiguous.
            for (n, &i) in columns.iter().enumerate() {
                select_list.push_str(&format!(
                    ", {}::text AS walrus_resume_key_{n}",
                    quote_ident(&table.columns[i].name)
                ));
            }
        }
        let from = format!("{}.{}", quote_ident(&schema), quote_ident(&name));
        // Reuse the table's saved ranges when they still describe the same relation.
        let reusable = state.tables.get(&qualified).is_some_and(|t| {
            t.oid == oid
                && t.kind == kind_name
                && t.key_columns == key_columns
                && (kind_name != "ctid" || t.relfilenode == relfilenode)
        });
        if !reusable {
            if state.tables.contains_key(&qualified) {
                tracing::warn!(table = %qualified, "table changed since the snapshot began (recreated, rewritten or re-keyed); reading it again from the start");
            }
            let parts = if workers > 1 && estimated_rows > 2 * chunk {
                ((estimated_rows / chunk) as usize).clamp(2, workers * 4)
            } else {
                1
            };
            let units = match &kind {
                KeyKind::Pk { columns, .. } => {
                    let bounds =
                        sample_bounds(client, &table, &from, columns, parts, blocks).await?;
                    key_units(bounds)
                }
                KeyKind::Ctid { step, .. } => block_units(blocks, parts, *step),
                KeyKind::Whole => vec![UnitState {
                    lower: None,
                    upper: None,
                    last: None,
                    done: false,
                }],
            };
            state.tables.insert(
                qualified.clone(),
                TableState {
                    oid,
                    relfilenode,
                    kind: kind_name.into(),
                    key_columns,
                    rows: 0,
                    done: false,
                    units,
                },
            );
        }
        tracing::info!(
            table = %qualified,
            chunks_by = kind_name,
            copy_format = if binary { "binary" } else { "text" },
            estimated_rows,
            "table planned"
        );
        plans.push(TablePlan {
            qualified,
            table,
            route,
            select_list,
            binary,
            from,
            kind,
            estimated_rows,
        });
    }
    // Tables no longer published are not read.
    state.tables.retain(|k, _| seen.contains(k));
    Ok(plans)
}

/// The columns of table `oid` as events describe them (in `attnum` order, without dropped
/// and generated columns, as pgoutput sends them), with each column's SQL type
/// (`format_type`) for casting key literals.
pub(crate) async fn describe_columns(
    client: &Client,
    oid: u32,
    identity: ReplicaIdentity,
    pk_names: &[String],
) -> Result<(Vec<Column>, Vec<String>), PgError> {
    let cols = client
        .query(
            "SELECT a.attname::text, a.atttypid, a.atttypmod,
                    format_type(a.atttypid, a.atttypmod), t.typname::text
               FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
              WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
                AND a.attgenerated = ''
              ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .map_err(|e| PgError::sql("reading columns for the snapshot", e))?;
    let mut columns = Vec::with_capacity(cols.len());
    let mut casts = Vec::with_capacity(cols.len());
    for c in &cols {
        let col_name: String = c.get(0);
        let type_oid: u32 = c.get(1);
        let type_modifier: i32 = c.get(2);
        casts.push(c.get::<_, String>(3));
        let typname: String = c.get(4);
        let type_desc = if type_oid >= catalog::FIRST_NORMAL_OID {
            Some(Arc::new(
                catalog::resolve_type(client, type_oid, type_modifier, 0).await?,
            ))
        } else {
            None
        };
        let primary_key = pk_names.contains(&col_name);
        columns.push(Column {
            key: match identity {
                ReplicaIdentity::Full => true,
                ReplicaIdentity::Nothing => false,
                _ => primary_key,
            },
            primary_key,
            type_desc,
            type_name: types::type_name(type_oid)
                .map(str::to_string)
                .unwrap_or(typname),
            name: col_name,
            type_oid,
            type_modifier,
        });
    }
    Ok((columns, casts))
}

/// Split points of a table's primary key, from a `TABLESAMPLE` of about 64 blocks per
/// range: `parts - 1` keys (as text), ascending, without duplicates.
async fn sample_bounds(
    client: &Client,
    table: &Table,
    from: &str,
    key: &[usize],
    parts: usize,
    blocks: u64,
) -> Result<Vec<Vec<String>>, PgError> {
    if parts < 2 || blocks == 0 {
        return Ok(Vec::new());
    }
    let pct = (100.0 * (64 * parts) as f64 / blocks as f64).clamp(0.0001, 100.0);
    // Qualified names: a bare name in ORDER BY would sort by the text output column of
    // the same name, i.e. lexicographically, and give overlapping ranges.
    let names: Vec<String> = key
        .iter()
        .map(|&i| format!("s.{}", quote_ident(&table.columns[i].name)))
        .collect();
    let sql = format!(
        "SELECT {} FROM {from} AS s TABLESAMPLE SYSTEM ({pct}) ORDER BY {}",
        names
            .iter()
            .map(|n| format!("{n}::text"))
            .collect::<Vec<_>>()
            .join(", "),
        names.join(", ")
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(|e| PgError::sql("sampling primary keys for the snapshot", e))?;
    let sample: Vec<Vec<String>> = rows
        .iter()
        .map(|r| (0..key.len()).map(|i| r.get::<_, String>(i)).collect())
        .collect();
    let mut bounds: Vec<Vec<String>> = Vec::new();
    for p in 1..parts {
        if let Some(k) = sample.get(sample.len() * p / parts) {
            if bounds.last() != Some(k) {
                bounds.push(k.clone());
            }
        }
    }
    Ok(bounds)
}

/// Key ranges `(-inf, b0], (b0, b1], ..., (bn, +inf)`.
fn key_units(bounds: Vec<Vec<String>>) -> Vec<UnitState> {
    let mut units = Vec::with_capacity(bounds.len() + 1);
    let mut lower = None;
    for b in bounds {
        units.push(UnitState {
            lower: lower.take(),
            upper: Some(b.clone()),
            last: None,
            done: false,
        });
        lower = Some(b);
    }
    units.push(UnitState {
        lower,
        upper: None,
        last: None,
        done: false,
    });
    units
}

/// Block ranges over `blocks` blocks, the last one open-ended (rows may sit beyond the
/// size measured when planning).
fn block_units(blocks: u64, parts: usize, step: u64) -> Vec<UnitState> {
    let per = (blocks / parts.max(1) as u64).max(step);
    let mut units = Vec::new();
    let mut start = 0u64;
    while start + per < blocks {
        units.push(UnitState {
            lower: Some(vec![start.to_string()]),
            upper: Some(vec![(start + per).to_string()]),
            last: None,
            done: false,
        });
        start += per;
    }
    units.push(UnitState {
        lower: Some(vec![start.to_string()]),
        upper: None,
        last: None,
        done: false,
    });
    units
}

// ───────────────────────────── workers ─────────────────────────────

struct WorkItem {
    table: usize,
    unit: usize,
    state: UnitState,
}

/// What a worker hands to the coordinator: encoded records of one table, and, at the end
/// of a chunk, where the chunk ended.
struct Piece {
    table: usize,
    unit: usize,
    records: Vec<Record>,
    rows: u64,
    /// Set on the last piece of a chunk.
    chunk_end: Option<ChunkEnd>,
}

#[derive(Clone, Debug)]
struct ChunkEnd {
    /// The new resume position of the unit.
    last: Option<Vec<String>>,
    /// The unit is complete.
    unit_done: bool,
}

struct Worker {
    client: Client,
    plans: Arc<Vec<TablePlan>>,
    queue: Arc<Mutex<VecDeque<WorkItem>>>,
    stop: Arc<AtomicBool>,
    tx: mpsc::Sender<Piece>,
    encoder: JsonEncoder,
    chunk_size: usize,
    position: SourcePosition,
    with_headers: bool,
    /// Capacity for the next event's JSON: the last one's size plus some slack.
    value_capacity: usize,
}

impl Worker {
    async fn run(mut self) -> Result<(), PgError> {
        let stop = self.stop.clone();
        let result = self.read_all().await;
        if result.is_err() {
            // The others stop too; the next session resumes from what was delivered.
            stop.store(true, Ordering::SeqCst);
        }
        result
    }

    async fn read_all(&mut self) -> Result<(), PgError> {
        loop {
            let item = match self.queue.lock() {
                Ok(mut q) => q.pop_front(),
                Err(_) => None,
            };
            let Some(item) = item else { break };
            if !self.read_unit(item).await? {
                break;
            }
        }
        // Ends the read-only transaction; the snapshot is released.
        let _ = self.client.batch_execute("COMMIT").await;
        Ok(())
    }

    /// Reads a unit chunk by chunk; `false` when the coordinator is gone or a stop was
    /// asked.
    async fn read_unit(&mut self, item: WorkItem) -> Result<bool, PgError> {
        let plans = self.plans.clone();
        let plan = &plans[item.table];
        let mut last = item.state.last.clone().or(item.state.lower.clone());
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(false);
            }
            let (sql, open_end) = chunk_query(plan, &item.state, last.as_ref(), self.chunk_size);
            let (rows, key) = match self.copy_chunk(plan, item.table, item.unit, &sql).await? {
                Some(r) => r,
                None => return Ok(false),
            };
            let (next, done) = match &plan.kind {
                KeyKind::Pk { .. } => {
                    let done = rows < self.chunk_size as u64;
                    (if rows > 0 { key } else { last.clone() }, done)
                }
                KeyKind::Ctid { step, .. } => {
                    let start = block_of(last.as_ref());
                    let next = start + step;
                    (Some(vec![next.to_string()]), open_end)
                }
                KeyKind::Whole => (None, true),
            };
            let end = Piece {
                table: item.table,
                unit: item.unit,
                records: Vec::new(),
                rows: 0,
                chunk_end: Some(ChunkEnd {
                    last: next.clone(),
                    unit_done: done,
                }),
            };
            if self.tx.send(end).await.is_err() {
                return Ok(false);
            }
            if done {
                return Ok(true);
            }
            last = next;
        }
    }

    /// Runs one `COPY ... TO STDOUT` and sends its rows as records. Returns the number of
    /// rows and the key texts of the last row (primary-key tables); `None` when the
    /// coordinator is gone.
    async fn copy_chunk(
        &mut self,
        plan: &TablePlan,
        table_idx: usize,
        unit: usize,
        sql: &str,
    ) -> Result<Option<(u64, Option<Vec<String>>)>, PgError> {
        if plan.binary {
            return self.copy_chunk_binary(plan, table_idx, unit, sql).await;
        }
        let stream = self
            .client
            .copy_out(sql)
            .await
            .map_err(|e| PgError::sql(format!("reading {} (COPY)", plan.qualified), e))?;
        let mut stream = std::pin::pin!(stream);
        let mut records = Vec::with_capacity(BATCH_RECORDS);
        let mut rows = 0u64;
        let mut pending_rows = 0u64;
        let mut carry: Vec<u8> = Vec::new();
        let mut last_line: Option<Bytes> = None;
        let mut fields: Vec<(usize, usize)> = Vec::with_capacity(plan.table.columns.len());
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| PgError::sql(format!("reading {} (COPY)", plan.qualified), e))?;
            // One CopyData message per row in practice; a row split across messages is
            // joined here.
            let data: Bytes = if carry.is_empty() {
                chunk
            } else {
                carry.extend_from_slice(&chunk);
                Bytes::from(std::mem::take(&mut carry))
            };
            let mut start = 0;
            while let Some(nl) = memchr(b'\n', &data[start..]) {
                let line = data.slice(start..start + nl);
                start += nl + 1;
                let record = self.row_record(plan, &line, &mut fields)?;
                records.push(record);
                rows += 1;
                pending_rows += 1;
                last_line = Some(line);
                if records.len() >= BATCH_RECORDS {
                    let full = std::mem::replace(&mut records, Vec::with_capacity(BATCH_RECORDS));
                    let rows = std::mem::take(&mut pending_rows);
                    if !self.send_rows(table_idx, unit, full, rows).await {
                        return Ok(None);
                    }
                }
            }
            if start < data.len() {
                carry.extend_from_slice(&data[start..]);
            }
        }
        if !records.is_empty() && !self.send_rows(table_idx, unit, records, pending_rows).await {
            return Ok(None);
        }
        let key = match (&plan.kind, last_line) {
            (KeyKind::Pk { columns, .. }, Some(line)) => {
                split_fields(&line, &mut fields);
                let mut key = Vec::with_capacity(columns.len());
                for &i in columns {
                    let (s, e) = fields[i];
                    let raw = &line[s..e];
                    if raw == b"\\N" {
                        return Err(PgError::Snapshot {
                            table: plan.qualified.clone(),
                            message: "a primary-key column is NULL".into(),
                        });
                    }
                    key.push(String::from_utf8_lossy(&unescape(raw)).into_owned());
                }
                Some(key)
            }
            _ => None,
        };
        Ok(Some((rows, key)))
    }

    /// Hands rows of a chunk to the coordinator; false when it is gone.
    async fn send_rows(&self, table: usize, unit: usize, records: Vec<Record>, rows: u64) -> bool {
        let piece = Piece {
            table,
            unit,
            records,
            rows,
            chunk_end: None,
        };
        self.tx.send(piece).await.is_ok()
    }

    /// [`Self::copy_chunk`] for `COPY ... (FORMAT binary)`: the same records, with values
    /// decoded from their binary format and the resume key from the trailing text columns.
    async fn copy_chunk_binary(
        &mut self,
        plan: &TablePlan,
        table_idx: usize,
        unit: usize,
        sql: &str,
    ) -> Result<Option<(u64, Option<Vec<String>>)>, PgError> {
        let read_err = |e| PgError::sql(format!("reading {} (COPY)", plan.qualified), e);
        let stream = self.client.copy_out(sql).await.map_err(read_err)?;
        let mut stream = std::pin::pin!(stream);
        let mut records = Vec::with_capacity(BATCH_RECORDS);
        let (mut rows, mut pending_rows) = (0u64, 0u64);
        let mut parser = BinaryRows::default();
        let mut fields: FieldRanges = Vec::new();
        let mut last_row: Option<(Bytes, FieldRanges)> = None;
        let ncols = plan.table.columns.len();
        let bad = |message: String| PgError::Snapshot {
            table: plan.qualified.clone(),
            message,
        };
        while let Some(chunk) = stream.next().await {
            parser.push(&chunk.map_err(read_err)?);
            while let Some(row) = parser.next_row(&mut fields).map_err(bad)? {
                if fields.len() < ncols {
                    return Err(bad(format!(
                        "COPY returned {} columns, expected {ncols}",
                        fields.len()
                    )));
                }
                let mut values = Vec::with_capacity(ncols);
                for (field, col) in fields.iter().zip(&plan.table.columns) {
                    let Some((s, e)) = *field else {
                        values.push(Value::Null);
                        continue;
                    };
                    let (value, err) = crate::binary::parse_binary_or_hex(
                        col.type_desc.as_deref(),
                        col.type_oid,
                        &row[s..e],
                    );
                    if let Some(err) = err {
                        tracing::warn!(table = %plan.qualified, column = %col.name, error = %err, "binary value kept as hex text");
                    }
                    values.push(value);
                }
                records.push(self.encode_row(plan, values, row.len())?);
                rows += 1;
                pending_rows += 1;
                if records.len() >= BATCH_RECORDS {
                    let full = std::mem::replace(&mut records, Vec::with_capacity(BATCH_RECORDS));
                    let rows = std::mem::take(&mut pending_rows);
                    if !self.send_rows(table_idx, unit, full, rows).await {
                        return Ok(None);
                    }
                }
                last_row = Some((row, fields.clone()));
            }
        }
        if !parser.is_finished() {
            return Err(bad("binary COPY stream ended early".into()));
        }
        if !records.is_empty() && !self.send_rows(table_idx, unit, records, pending_rows).await {
            return Ok(None);
        }
        let key = match (&plan.kind, last_row) {
            (KeyKind::Pk { columns, .. }, Some((row, fields))) => {
                let mut key = Vec::with_capacity(columns.len());
                for field in &fields[ncols..] {
                    let Some((s, e)) = *field else {
                        return Err(bad("a primary-key column is NULL".into()));
                    };
                    key.push(String::from_utf8_lossy(&row[s..e]).into_owned());
                }
                if key.len() != columns.len() {
                    return Err(bad(format!(
                        "COPY returned {} key columns, expected {}",
                        key.len(),
                        columns.len()
                    )));
                }
                Some(key)
            }
            _ => None,
        };
        Ok(Some((rows, key)))
    }

    /// Parses one COPY text line into a read event and encodes it.
    fn row_record(
        &mut self,
        plan: &TablePlan,
        line: &[u8],
        fields: &mut Vec<(usize, usize)>,
    ) -> Result<Record, PgError> {
        split_fields(line, fields);
        let table = &plan.table;
        if fields.len() != table.columns.len() {
            return Err(PgError::Snapshot {
                table: plan.qualified.clone(),
                message: format!(
                    "COPY returned {} columns, expected {}",
                    fields.len(),
                    table.columns.len()
                ),
            });
        }
        let mut values = Vec::with_capacity(fields.len());
        for (&(s, e), col) in fields.iter().zip(&table.columns) {
            let raw = &line[s..e];
            if raw == b"\\N" {
                values.push(Value::Null);
                continue;
            }
            let text = unescape(raw);
            let (value, err) = match &col.type_desc {
                Some(desc) => types::parse_text_desc_or_text(desc, &text),
                None => types::parse_text_or_text(col.type_oid, &text),
            };
            if let Some(err) = err {
                tracing::warn!(table = %plan.qualified, column = %col.name, error = %err, "value kept as text");
            }
            values.push(value);
        }
        self.encode_row(plan, values, line.len())
    }

    /// Encodes a row's values as a read event's record. `size_hint`: the row's size as read.
    fn encode_row(
        &mut self,
        plan: &TablePlan,
        values: Vec<Value>,
        size_hint: usize,
    ) -> Result<Record, PgError> {
        let table = &plan.table;
        let ev = ChangeEvent {
            op: Op::Read,
            table: Some(table.clone()),
            before: None,
            after: Some(Row {
                values,
                key_only: false,
            }),
            source: self.position.clone(),
            message: None,
        };
        let projected = plan.route.project(&ev);
        let ev = projected.as_ref().unwrap_or(&ev);
        let mut key_buf = Vec::with_capacity(32);
        let key = self
            .encoder
            .encode_key(ev, &plan.route.key_columns, &mut key_buf)
            .then(|| Bytes::from(key_buf));
        // Sized from the previous event so the buffer rarely grows (each growth copies it).
        let mut value = Vec::with_capacity(self.value_capacity.max(256 + size_hint * 2));
        self.encoder.encode_value(ev, &mut value);
        self.value_capacity = value.len() + value.len() / 8;
        Ok(Record {
            topic: plan.route.topic.clone(),
            key,
            value: Some(Bytes::from(value)),
            headers: if self.with_headers {
                plan.route.headers(ev, false)
            } else {
                Vec::new()
            },
            timestamp_ms: ev.source.commit_time_us / 1000,
        })
    }
}

/// Writes `value` as JSON to `path` atomically: a temporary file, fsync, rename, fsync of the
/// directory, so a crash leaves either the old progress or the new, never half of it.
pub(crate) fn save_json_atomically<T: Serialize>(value: &T, path: &Path) -> Result<(), PgError> {
    let err = |e: std::io::Error| PgError::SnapshotState {
        path: path.to_path_buf(),
        message: format!("cannot write it: {e}"),
    };
    let text = serde_json::to_vec_pretty(value).map_err(|e| PgError::SnapshotState {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("json.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&text).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// The block number in a `ctid` position (`["123"]`); 0 when none.
fn block_of(pos: Option<&Vec<String>>) -> u64 {
    pos.and_then(|v| v.first())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The `COPY` statement of the next chunk of a unit, and whether it reads to the unit's
/// end (`ctid` units).
fn chunk_query(
    plan: &TablePlan,
    unit: &UnitState,
    last: Option<&Vec<String>>,
    chunk_size: usize,
) -> (String, bool) {
    let mut sql = format!("COPY (SELECT {} FROM {}", plan.select_list, plan.from);
    let mut open_end = false;
    match &plan.kind {
        KeyKind::Pk { columns, casts } => {
            let names: Vec<String> = columns
                .iter()
                .map(|&i| quote_ident(&plan.table.columns[i].name))
                .collect();
            let tuple = |key: &Vec<String>| -> String {
                let lits: Vec<String> = key
                    .iter()
                    .zip(casts)
                    .map(|(k, t)| format!("{}::{t}", quote_literal(k)))
                    .collect();
                if lits.len() == 1 {
                    lits[0].clone()
                } else {
                    format!("({})", lits.join(", "))
                }
            };
            let lhs = if names.len() == 1 {
                names[0].clone()
            } else {
                format!("({})", names.join(", "))
            };
            let mut conds = Vec::new();
            if let Some(k) = last {
                conds.push(format!("{lhs} > {}", tuple(k)));
            }
            if let Some(u) = &unit.upper {
                conds.push(format!("{lhs} <= {}", tuple(u)));
            }
            if !conds.is_empty() {
                sql.push_str(" WHERE ");
                sql.push_str(&conds.join(" AND "));
            }
            sql.push_str(&format!(
                " ORDER BY {} LIMIT {chunk_size}",
                names.join(", ")
            ));
        }
        KeyKind::Ctid { step, blocks } => {
            let start = block_of(last);
            let end = start + step;
            match unit.upper.as_ref().map(|u| block_of(Some(u))) {
                Some(h) if end >= h => {
                    sql.push_str(&format!(
                        " WHERE ctid >= '({start},0)'::tid AND ctid < '({h},0)'::tid"
                    ));
                    open_end = true;
                }
                // The last range ends with an open query once past the size measured when
                // planning (the relation may have grown; rows beyond are invisible to the
                // snapshot but cost nothing to skip).
                None if end >= *blocks => {
                    sql.push_str(&format!(" WHERE ctid >= '({start},0)'::tid"));
                    open_end = true;
                }
                _ => sql.push_str(&format!(
                    " WHERE ctid >= '({start},0)'::tid AND ctid < '({end},0)'::tid"
                )),
            }
        }
        KeyKind::Whole => open_end = true,
    }
    sql.push_str(if plan.binary {
        ") TO STDOUT (FORMAT binary)"
    } else {
        ") TO STDOUT"
    });
    (sql, open_end)
}

/// Byte ranges of a binary COPY row's fields, `None` for NULL.
type FieldRanges = Vec<Option<(usize, usize)>>;

/// `COPY ... (FORMAT binary)`'s signature, first in the stream.
const COPY_BINARY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Cuts a binary COPY stream into rows as its CopyData messages arrive: after the header
/// (signature, flags, extension), each row is an i16 field count and per field an i32
/// length (-1 for NULL) and that many bytes; a count of -1 ends the stream. A row split
/// across messages waits for the rest; lengths are checked against the bytes that
/// arrived, never used to allocate.
#[derive(Default)]
pub(crate) struct BinaryRows {
    buf: bytes::BytesMut,
    header_done: bool,
    ended: bool,
}

impl BinaryRows {
    /// Appends the bytes of one CopyData message.
    pub(crate) fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// True once the end marker arrived and nothing follows it.
    pub(crate) fn is_finished(&self) -> bool {
        self.ended && self.buf.is_empty()
    }

    /// The next complete row, with each field's byte range in it (`None` for NULL) in
    /// `fields`; `Ok(None)` until more bytes arrive, and after the end.
    pub(crate) fn next_row(
        &mut self,
        fields: &mut Vec<Option<(usize, usize)>>,
    ) -> Result<Option<Bytes>, String> {
        let be_i32 =
            |b: &[u8], at: usize| i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        if !self.header_done {
            if self.buf.len() < 19 {
                return Ok(None);
            }
            if &self.buf[..11] != COPY_BINARY_SIGNATURE {
                return Err("not a binary COPY stream (bad signature)".into());
            }
            let ext = usize::try_from(be_i32(&self.buf, 15))
                .map_err(|_| "binary COPY header: negative extension length".to_string())?;
            if self.buf.len() - 19 < ext {
                return Ok(None);
            }
            let _ = self.buf.split_to(19 + ext);
            self.header_done = true;
        }
        if self.ended {
            if !self.buf.is_empty() {
                return Err("binary COPY stream: data after the end marker".into());
            }
            return Ok(None);
        }
        if self.buf.len() < 2 {
            return Ok(None);
        }
        let count = i16::from_be_bytes([self.buf[0], self.buf[1]]);
        if count == -1 {
            let _ = self.buf.split_to(2);
            self.ended = true;
            return if self.buf.is_empty() {
                Ok(None)
            } else {
                Err("binary COPY stream: data after the end marker".into())
            };
        }
        let count = usize::try_from(count)
            .map_err(|_| format!("binary COPY row: bad field count {count}"))?;
        fields.clear();
        let mut at = 2;
        for _ in 0..count {
            if self.buf.len() < at + 4 {
                return Ok(None);
            }
            let len = be_i32(&self.buf, at);
            at += 4;
            if len == -1 {
                fields.push(None);
                continue;
            }
            let len = usize::try_from(len)
                .map_err(|_| format!("binary COPY row: bad field length {len}"))?;
            if self.buf.len() - at < len {
                return Ok(None);
            }
            fields.push(Some((at, at + len)));
            at += len;
        }
        Ok(Some(self.buf.split_to(at).freeze()))
    }
}

/// Splits a COPY text line at tabs into (start, end) byte ranges.
pub(crate) fn split_fields(line: &[u8], out: &mut Vec<(usize, usize)>) {
    out.clear();
    let mut start = 0;
    while let Some(t) = memchr(b'\t', &line[start..]) {
        out.push((start, start + t));
        start += t + 1;
    }
    out.push((start, line.len()));
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// Undoes COPY's text-format escaping (`\\`, `\n`, `\t`, `\r`, `\b`, `\f`, `\v`, octal and
/// `\x` hex bytes).
pub(crate) fn unescape(raw: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !raw.contains(&b'\\') {
        return std::borrow::Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'\\' || i + 1 == raw.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let c = raw[i + 1];
        i += 2;
        match c {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                let mut n = 1;
                while n < 3 && i < raw.len() && (b'0'..=b'7').contains(&raw[i]) {
                    v = v * 8 + u32::from(raw[i] - b'0');
                    i += 1;
                    n += 1;
                }
                out.push(v as u8);
            }
            b'x' => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 && i < raw.len() && raw[i].is_ascii_hexdigit() {
                    v = v * 16 + (raw[i] as char).to_digit(16).unwrap_or(0);
                    i += 1;
                    n += 1;
                }
                if n == 0 {
                    out.push(b'x');
                } else {
                    out.push(v as u8);
                }
            }
            other => out.push(other),
        }
    }
    std::borrow::Cow::Owned(out)
}

// ───────────────────────────── coordinator ─────────────────────────────

/// A chunk whose records end at sequence number `seq`.
struct Completion {
    seq: u64,
    table: usize,
    unit: usize,
    rows: u64,
    end: Option<ChunkEnd>,
}

/// Per-table bookkeeping of the coordinator.
struct TableRun {
    qualified: String,
    estimated_rows: u64,
    /// Rows handed to the sink this session.
    sent_rows: u64,
    /// Rows delivered before this session.
    rows_before: u64,
    units_left: usize,
    /// The newest record, held back until the next one (or the table's end) says whether
    /// it is the table's last.
    held: Option<(Record, Vec<Completion>)>,
    /// Whether the table's first record is still to be marked.
    first_pending: bool,
    started: Option<Instant>,
    finished: bool,
}

struct Coordinator {
    tables: Vec<TableRun>,
    pending: VecDeque<Completion>,
    first_overall: bool,
    tables_left: usize,
    /// Bars or log lines for people (`crate::progress`).
    progress: crate::progress::Progress,
    /// `[snapshot] max_rows_per_second`, 0 for none, and the rows handed over so far.
    max_rows_per_second: u64,
    rows_sent: u64,
    started: Instant,
    last_save: Instant,
    dirty: bool,
}

impl Coordinator {
    fn new(plans: &[TablePlan], state: &State, config: &Config) -> Coordinator {
        let tables: Vec<TableRun> = plans
            .iter()
            .map(|p| {
                let ts = &state.tables[&p.qualified];
                TableRun {
                    qualified: p.qualified.clone(),
                    estimated_rows: p.estimated_rows,
                    sent_rows: 0,
                    rows_before: ts.rows,
                    units_left: ts.units.iter().filter(|u| !u.done).count(),
                    held: None,
                    first_pending: ts.rows == 0,
                    started: None,
                    finished: ts.done,
                }
            })
            .collect();
        let tables_left = tables.iter().filter(|t| !t.finished).count();
        let views: Vec<(String, u64, u64, bool)> = tables
            .iter()
            .map(|t| {
                (
                    t.qualified.clone(),
                    t.estimated_rows,
                    t.rows_before,
                    t.finished,
                )
            })
            .collect();
        let progress = crate::progress::Progress::new(
            &views,
            crate::progress::wants_bars(config.snapshot.progress),
            Duration::from_millis(config.snapshot.progress_interval_ms),
        );
        Coordinator {
            first_overall: state.tables.values().all(|t| t.rows == 0),
            tables,
            pending: VecDeque::new(),
            tables_left,
            progress,
            max_rows_per_second: config.snapshot.max_rows_per_second,
            rows_sent: 0,
            started: Instant::now(),
            last_save: Instant::now(),
            dirty: false,
        }
    }

    fn all_done(&self, state: &State) -> bool {
        state.tables.values().all(|t| t.done)
    }

    fn total_rows(&self) -> u64 {
        self.tables
            .iter()
            .map(|t| t.sent_rows + t.rows_before)
            .sum()
    }

    /// Receives pieces until the workers are done (`Ok(true)`) or a stop (`Ok(false)`),
    /// saving delivered progress to `path` as it goes.
    #[allow(clippy::too_many_arguments)]
    async fn drive(
        &mut self,
        mut rx: mpsc::Receiver<Piece>,
        handle: &mut SinkHandle,
        delivered: &Delivered,
        shutdown: &mut watch::Receiver<bool>,
        stop: &AtomicBool,
        state: &mut State,
        path: &Path,
    ) -> Result<bool, PgError> {
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let sink_stopped = || PgError::Protocol {
            lsn: Lsn::ZERO,
            message: "sink stopped during the snapshot".into(),
        };
        loop {
            if *shutdown.borrow() {
                stop.store(true, Ordering::SeqCst);
                return Ok(false);
            }
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        stop.store(true, Ordering::SeqCst);
                        return Ok(false);
                    }
                }
                _ = ticker.tick() => {
                    if handle.is_stopped() {
                        stop.store(true, Ordering::SeqCst);
                        return Err(sink_stopped());
                    }
                    self.tick();
                    self.apply_delivered(delivered.get(), state);
                    self.maybe_save(state, path)?;
                }
                piece = rx.recv() => {
                    let Some(piece) = piece else { return Ok(true) };
                    self.rows_sent += piece.rows;
                    let batch = self.accept(piece, handle.sent());
                    if let Some((batch, completions)) = batch {
                        let reservation = tokio::select! {
                            biased;
                            r = handle.reserve(batch.bytes) => r.map_err(|_| sink_stopped())?,
                            _ = shutdown.changed() => { stop.store(true, Ordering::SeqCst); return Ok(false) }
                        };
                        let seq = handle.send(batch, reservation).map_err(|_| sink_stopped())?;
                        for mut c in completions {
                            c.seq = seq;
                            self.pending.push_back(c);
                        }
                    }
                    if let Some(wait) = self.throttle() {
                        tokio::select! {
                            biased;
                            _ = shutdown.changed() => { stop.store(true, Ordering::SeqCst); return Ok(false) }
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
        }
    }

    /// Turns a piece into a batch to send, holding back the newest record of its table
    /// and releasing the one held before. Completions get their sequence number from the
    /// caller once the batch is sent.
    fn accept(&mut self, piece: Piece, sent: u64) -> Option<(Batch, Vec<Completion>)> {
        let t = &mut self.tables[piece.table];
        t.started.get_or_insert_with(Instant::now);
        t.sent_rows += piece.rows;
        self.progress.advance(piece.table, piece.rows);
        if piece.rows > 0 {
            metrics::counter!(telemetry::SNAPSHOT_ROWS_TOTAL, "table" => t.qualified.clone())
                .increment(piece.rows);
        }
        let mut out: Vec<Record> = Vec::with_capacity(piece.records.len() + 1);
        let mut completions = Vec::new();
        let mut records = piece.records;
        let mut held_rows = 0;
        if let Some(newest) = records.pop() {
            if let Some((mut held, held_completions)) = t.held.take() {
                if t.first_pending {
                    // Only possible when the held record was the table's first.
                    t.first_pending = false;
                    let marker = if std::mem::take(&mut self.first_overall) {
                        "first"
                    } else {
                        "first_in_data_collection"
                    };
                    set_snapshot_marker(&mut held, marker);
                }
                out.push(held);
                completions.extend(held_completions);
            }
            if t.first_pending && !records.is_empty() {
                t.first_pending = false;
                let marker = if std::mem::take(&mut self.first_overall) {
                    "first"
                } else {
                    "first_in_data_collection"
                };
                set_snapshot_marker(&mut records[0], marker);
            }
            out.extend(records);
            // The held record's row counts as delivered with it.
            let row = Completion {
                seq: 0,
                table: piece.table,
                unit: piece.unit,
                rows: 1,
                end: None,
            };
            t.held = Some((newest, vec![row]));
            held_rows = 1;
        }
        if let Some(end) = piece.chunk_end {
            let completion = Completion {
                seq: 0,
                table: piece.table,
                unit: piece.unit,
                rows: 0,
                end: Some(end.clone()),
            };
            // The chunk is complete once its last record (held, if any) is delivered.
            match &mut t.held {
                Some((_, cs)) => cs.push(completion),
                None => completions.push(completion),
            }
            if end.unit_done {
                t.units_left = t.units_left.saturating_sub(1);
                if t.units_left == 0 && !t.finished {
                    t.finished = true;
                    self.progress.finish(piece.table);
                    self.tables_left = self.tables_left.saturating_sub(1);
                    metrics::gauge!(telemetry::SNAPSHOT_TABLES_REMAINING)
                        .set(self.tables_left as f64);
                    if let Some((mut held, cs)) = t.held.take() {
                        let marker = if self.tables_left == 0 {
                            "last"
                        } else {
                            "last_in_data_collection"
                        };
                        set_snapshot_marker(&mut held, marker);
                        t.first_pending = false;
                        out.push(held);
                        completions.extend(cs);
                    }
                    tracing::info!(
                        table = %t.qualified,
                        rows = t.sent_rows + t.rows_before,
                        elapsed_ms = t.started.map_or(0, |s| s.elapsed().as_millis() as u64),
                        "table read"
                    );
                }
            }
        }
        // Rows are counted as delivered with the batch that carries them.
        if piece.rows > held_rows {
            completions.push(Completion {
                seq: 0,
                table: piece.table,
                unit: piece.unit,
                rows: piece.rows - held_rows,
                end: None,
            });
        }
        if out.is_empty() && completions.is_empty() {
            return None;
        }
        let mut batch = Batch::default();
        for r in out {
            batch.push(r);
        }
        if batch.is_empty() {
            // Only completions: they complete when everything sent so far is delivered.
            for c in completions {
                self.pending.push_back(Completion { seq: sent, ..c });
            }
            return None;
        }
        // A batch of rows is a unit an exactly-once sink may commit after (they have no
        // LSN: a snapshot cut short is taken again, so its rows are at least once).
        batch.end_unit(None);
        Some((batch, completions))
    }

    /// How long to pause to stay under `max_rows_per_second`.
    fn throttle(&self) -> Option<Duration> {
        if self.max_rows_per_second == 0 {
            return None;
        }
        let due = Duration::from_secs_f64(self.rows_sent as f64 / self.max_rows_per_second as f64);
        due.checked_sub(self.started.elapsed())
    }

    fn tick(&mut self) {
        self.progress.tick();
    }

    /// Applies every completion the sink has delivered to the state; saves it at most
    /// every [`SAVE_INTERVAL`].
    fn apply_delivered(&mut self, delivered: u64, state: &mut State) {
        while let Some(c) = self.pending.front() {
            if c.seq > delivered {
                break;
            }
            let Some(c) = self.pending.pop_front() else {
                break;
            };
            let qualified = &self.tables[c.table].qualified;
            if let Some(ts) = state.tables.get_mut(qualified) {
                ts.rows += c.rows;
                if let (Some(end), Some(unit)) = (&c.end, ts.units.get_mut(c.unit)) {
                    if end.last.is_some() {
                        unit.last = end.last.clone();
                    }
                    unit.done |= end.unit_done;
                }
                ts.done = ts.units.iter().all(|u| u.done);
            }
            self.dirty = true;
        }
    }

    fn maybe_save(&mut self, state: &State, path: &Path) -> Result<(), PgError> {
        if self.dirty && self.last_save.elapsed() >= SAVE_INTERVAL {
            state.save(path)?;
            self.dirty = false;
            self.last_save = Instant::now();
        }
        Ok(())
    }

    fn log_progress(&mut self, state: &State, _final: bool) {
        self.progress.close();
        let delivered: u64 = state.tables.values().map(|t| t.rows).sum();
        let done = state.tables.values().filter(|t| t.done).count();
        tracing::info!(
            rows_delivered = delivered,
            tables_done = done,
            tables = state.tables.len(),
            "snapshot progress saved"
        );
    }
}

/// Replaces `"snapshot":"true"` in the record's `source` block with another of Debezium's
/// `SnapshotRecord` values (`first`, `last`, ...). The `source` block is the last object
/// named `source` in the value (it follows `before` and `after`, which hold user data).
pub(crate) fn set_snapshot_marker(record: &mut Record, marker: &str) {
    let Some(value) = &record.value else { return };
    let bytes: &[u8] = value;
    let Some(src) = rfind(bytes, b"\"source\":{") else {
        return;
    };
    let needle = b"\"snapshot\":\"true\"";
    let Some(rel) = find(&bytes[src..], needle) else {
        return;
    };
    let at = src + rel;
    let mut out = Vec::with_capacity(bytes.len() + marker.len());
    out.extend_from_slice(&bytes[..at]);
    out.extend_from_slice(b"\"snapshot\":\"");
    out.extend_from_slice(marker.as_bytes());
    out.push(b'"');
    out.extend_from_slice(&bytes[at + needle.len()..]);
    record.value = Some(Bytes::from(out));
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// The default state file path for a config (for `walrus status` and docs).
pub fn state_path(config: &Config) -> PathBuf {
    config.snapshot.state_path(&config.source.slot)
}

// ───────────────────────────── session start ─────────────────────────────

/// What the session does before streaming, decided from `[snapshot] mode`, the slot and
/// the state file.
#[derive(Default)]
pub struct Decision {
    /// The slot was just created on this gated connection; stream on it after the snapshot.
    pub exported: Option<ExportedSlot>,
    /// A snapshot to read (new or resumed), with its state file.
    pub pending: Option<(State, PathBuf)>,
}

/// Decides whether this session snapshots, creating the slot with an exported snapshot
/// when it is missing (and may be created). `initial_only` is handled by
/// [`run_initial_only`] instead.
///
/// | slot | state file | `initial` | `when_needed` | `always` | `no_data` |
/// |---|---|---|---|---|---|
/// | missing | any | create + snapshot | create + snapshot | create + snapshot | create, stream |
/// | lost | any | error | drop, create + snapshot | error | error |
/// | exists | unfinished | resume | resume | resume | stream |
/// | exists | done or none | stream | stream | snapshot again | stream |
pub async fn decide(
    sql: &Client,
    params: &ConnParams,
    config: &Config,
) -> Result<Decision, PgError> {
    use walrus_core::config::SnapshotMode;
    let mode = config.snapshot.mode;
    if mode == SnapshotMode::NoData {
        return Ok(Decision::default());
    }
    let slot = &config.source.slot;
    let path = state_path(config);
    let state = State::load(&path, slot, &params.dbname)?;
    let mut row = crate::setup::query_slot(sql, slot).await?;
    let lost = row
        .as_ref()
        .is_some_and(|r| r.wal_status.as_deref() == Some("lost") || r.invalidated);
    if lost && mode == SnapshotMode::WhenNeeded && config.source.create_slot {
        tracing::warn!(slot = %slot, "the slot lost WAL it needed; snapshot.mode = when_needed: dropping it and taking a new snapshot");
        sql.execute("SELECT pg_drop_replication_slot($1)", &[slot])
            .await
            .map_err(|e| PgError::sql(format!("dropping the lost slot {slot:?}"), e))?;
        row = None;
    }
    let Some(row) = row else {
        if !config.source.create_slot {
            return Ok(Decision::default());
        }
        // Written first: a crash between creating the slot and saving the consistent point
        // must not look like "slot exists, nothing to snapshot" on the next start.
        let mut st = State::new(slot, &params.dbname, Phase::Creating);
        st.save(&path)?;
        let exported = create_slot_exported(sql, params, config).await?;
        st.stream_from = Some(exported.consistent_point.to_string());
        return Ok(Decision {
            exported: Some(exported),
            pending: Some((st, path)),
        });
    };
    if lost {
        // ensure_slot reports it with the operator's fix.
        return Ok(Decision::default());
    }
    let confirmed = row.confirmed_flush_lsn.unwrap_or_default();
    let pending = match state {
        Some(mut st) if st.phase != Phase::Done => {
            let from: Option<Lsn> = st.stream_from.as_deref().and_then(|s| s.parse().ok());
            match from {
                Some(from) if confirmed <= from => {
                    tracing::info!(slot = %slot, stream_from = %from, "resuming the interrupted snapshot in a new snapshot (rows changed since may be read and streamed both)");
                }
                _ => {
                    tracing::warn!(slot = %slot, confirmed = %confirmed, "the interrupted snapshot cannot be resumed against this slot position; reading every table again");
                    st.reset_tables();
                }
            }
            Some(st)
        }
        Some(_) | None if mode == SnapshotMode::Always => {
            Some(State::new(slot, &params.dbname, Phase::Running))
        }
        _ => None,
    };
    Ok(Decision {
        exported: None,
        pending: pending.map(|st| (st, path)),
    })
}

/// Runs the snapshot the [`Decision`] asks for, if any. `Some(records)`: go on streaming
/// (the snapshot's records come first in the session's numbering); `None`: stop (a stop
/// was requested mid-snapshot; what was delivered is saved).
pub async fn run_before_streaming(
    config: &Config,
    params: &ConnParams,
    decision: &mut Decision,
    stream_from: Lsn,
    handle: &mut SinkHandle,
    delivered: &Delivered,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<u64>, PgError> {
    let Some((mut state, path)) = decision.pending.take() else {
        return Ok(Some(0));
    };
    let name = decision.exported.as_ref().map(|e| e.snapshot_name.clone());
    let source = match &name {
        Some(name) => Source::Exported { name },
        None => Source::Fresh,
    };
    let outcome = run(
        config,
        params,
        source,
        stream_from,
        &mut state,
        &path,
        handle,
        delivered,
        shutdown,
    )
    .await?;
    Ok(outcome.complete.then_some(outcome.records))
}

/// `snapshot.mode = initial_only`: read the tables in a new snapshot, deliver them, and
/// stop; no slot is created or kept. An interrupted run resumes from its state file; a
/// finished one does nothing.
pub async fn run_initial_only<S: walrus_core::sink::Sink>(
    config: &Config,
    params: &ConnParams,
    sql: &Client,
    sink: S,
    delivered: Delivered,
    mut shutdown: watch::Receiver<bool>,
) -> Result<crate::source::SessionSummary, PgError> {
    let path = state_path(config);
    let slot = &config.source.slot;
    let mut state = match State::load(&path, slot, &params.dbname)? {
        Some(st) if st.phase == Phase::Done => {
            tracing::info!(state_file = %path.display(), "snapshot.mode = initial_only: the snapshot is already complete; nothing to do (remove the state file to take it again)");
            return Ok(crate::source::SessionSummary::default());
        }
        Some(st) => st,
        None => State::new(slot, &params.dbname, Phase::Running),
    };
    let at: String = sql
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .map_err(|e| PgError::sql("reading the current WAL position", e))?
        .get(0);
    let at: Lsn = at.parse().unwrap_or_default();
    let mut handle = SinkHandle::spawn(
        sink,
        delivered.clone(),
        walrus_core::pipeline::PipelineOptions {
            max_in_flight_bytes: config.pipeline.max_in_flight_bytes,
            flush_interval: Duration::from_millis(config.pipeline.flush_interval_ms),
        },
    );
    let result = run(
        config,
        params,
        Source::Fresh,
        at,
        &mut state,
        &path,
        &mut handle,
        &delivered,
        &mut shutdown,
    )
    .await;
    let sink_result = handle.finish().await;
    let outcome = result?;
    sink_result?;
    Ok(crate::source::SessionSummary {
        confirmed: Lsn::ZERO,
        events: outcome.records,
        delivered: delivered.get(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_copy_text() {
        assert_eq!(&*unescape(b"plain"), b"plain");
        assert_eq!(&*unescape(b"a\\tb\\nc\\\\d"), b"a\tb\nc\\d");
        assert_eq!(&*unescape(b"\\101\\x41\\r"), b"AA\r");
    }

    /// A binary COPY stream: header, the given rows (`None` = NULL field), end marker.
    fn binary_stream(rows: &[Vec<Option<&[u8]>>]) -> Vec<u8> {
        let mut out = COPY_BINARY_SIGNATURE.to_vec();
        out.extend_from_slice(&0i32.to_be_bytes()); // flags
        out.extend_from_slice(&4i32.to_be_bytes()); // extension length
        out.extend_from_slice(b"ext!");
        for row in rows {
            out.extend_from_slice(&(row.len() as i16).to_be_bytes());
            for f in row {
                match f {
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(b) => {
                        out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                        out.extend_from_slice(b);
                    }
                }
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    fn collect_rows(stream: &[u8], piece: usize) -> Result<Vec<Vec<Option<Vec<u8>>>>, String> {
        let mut p = BinaryRows::default();
        let mut fields = Vec::new();
        let mut rows = Vec::new();
        for chunk in stream.chunks(piece) {
            p.push(chunk);
            while let Some(row) = p.next_row(&mut fields)? {
                rows.push(
                    fields
                        .iter()
                        .map(|f| f.map(|(s, e)| row[s..e].to_vec()))
                        .collect(),
                );
            }
        }
        if !p.is_finished() {
            return Err("unfinished".into());
        }
        Ok(rows)
    }

    #[test]
    fn binary_copy_rows_survive_any_split_into_messages() {
        let stream = binary_stream(&[
            vec![Some(&b"\x00\x00\x00\x01"[..]), None, Some(b"")],
            vec![Some(b"abc"), Some(b"\xff"), None],
        ]);
        let want = vec![
            vec![Some(vec![0, 0, 0, 1]), None, Some(vec![])],
            vec![Some(b"abc".to_vec()), Some(vec![0xff]), None],
        ];
        for piece in [1, 2, 3, 7, 19, 20, stream.len()] {
            assert_eq!(
                collect_rows(&stream, piece).unwrap(),
                want,
                "split every {piece} bytes"
            );
        }
    }

    #[test]
    fn binary_copy_refuses_damage_without_allocating_from_lengths() {
        let good = binary_stream(&[vec![Some(&b"abc"[..])]]);
        // A cut stream never finishes.
        assert!(collect_rows(&good[..good.len() - 2], 4).is_err());
        // A bad signature.
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(collect_rows(&bad, 64).unwrap_err().contains("signature"));
        // A huge field length waits for bytes that never come instead of allocating.
        let mut huge = good.clone();
        let at = 11 + 4 + 4 + 4 + 2;
        huge[at..at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(collect_rows(&huge, 64).is_err());
        // Negative lengths and counts are errors.
        let mut neg = good.clone();
        neg[at..at + 4].copy_from_slice(&(-7i32).to_be_bytes());
        assert!(collect_rows(&neg, 64).unwrap_err().contains("length"));
        let mut cnt = good;
        cnt[at - 2..at].copy_from_slice(&(-3i16).to_be_bytes());
        assert!(collect_rows(&cnt, 64).unwrap_err().contains("count"));
    }

    #[test]
    fn binary_decoding_covers_arrays_and_ranges_of_decoded_types_only() {
        use crate::types::oid;
        assert!(crate::binary::decodes(oid::INT4));
        assert!(crate::binary::decodes(1007)); // int4[]
        assert!(crate::binary::decodes(oid::INT4RANGE));
        assert!(crate::binary::decodes(4451)); // int4multirange
        assert!(!crate::binary::decodes(1033)); // aclitem: no send function
        assert!(!crate::binary::decodes(1034)); // aclitem[]
    }

    #[test]
    fn splits_fields() {
        let mut f = Vec::new();
        split_fields(b"1\t\\N\tx", &mut f);
        assert_eq!(f, vec![(0, 1), (2, 4), (5, 6)]);
        split_fields(b"", &mut f);
        assert_eq!(f, vec![(0, 0)]);
    }

    #[test]
    fn key_and_block_units_cover_everything() {
        let u = key_units(vec![vec!["10".into()], vec!["20".into()]]);
        assert_eq!(u.len(), 3);
        assert_eq!(u[0].lower, None);
        assert_eq!(u[0].upper, Some(vec!["10".to_string()]));
        assert_eq!(u[1].lower, Some(vec!["10".to_string()]));
        assert_eq!(u[2].upper, None);
        let b = block_units(100, 4, 10);
        assert_eq!(b.len(), 4);
        assert_eq!(b[0].lower, Some(vec!["0".to_string()]));
        assert_eq!(b[3].upper, None);
        assert_eq!(block_units(0, 4, 10).len(), 1);
    }

    #[test]
    fn marker_replaces_the_source_field_only() {
        let mut r = Record {
            topic: Arc::from("t"),
            key: None,
            value: Some(Bytes::from_static(
                br#"{"before":null,"after":{"snapshot":"true"},"source":{"version":"x","snapshot":"true","db":"d"},"op":"r"}"#,
            )),
            headers: vec![],
            timestamp_ms: 0,
        };
        set_snapshot_marker(&mut r, "last");
        assert_eq!(
            r.value.as_deref().unwrap(),
            br#"{"before":null,"after":{"snapshot":"true"},"source":{"version":"x","snapshot":"last","db":"d"},"op":"r"}"#
        );
    }

    #[test]
    fn state_round_trips_and_ignores_other_slots() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let mut s = State::new("slot", "db", Phase::Running);
        s.tables.insert(
            "public.t".into(),
            TableState {
                oid: 1,
                relfilenode: 2,
                kind: "pk".into(),
                key_columns: vec!["id".into()],
                rows: 5,
                done: false,
                units: key_units(vec![]),
            },
        );
        s.save(&path).unwrap();
        let back = State::load(&path, "slot", "db").unwrap().unwrap();
        assert_eq!(back.tables, s.tables);
        assert!(State::load(&path, "other", "db").unwrap().is_none());
        assert!(State::load(&dir.path().join("none"), "slot", "db")
            .unwrap()
            .is_none());
    }
}
