//! The initial snapshot: the tables' contents as of one consistent point, read in parallel
//! chunks, delivered through the same encoder, sink and acknowledgements as streaming, and
//! resumable after a crash.
//!
//! ```text
//!  replication conn (commands) ── CREATE_REPLICATION_SLOT .. (SNAPSHOT 'export') ──▶ name, consistent point
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
//! that connection open and idle (`walrus_replication::ReplicationClient` in command mode) while every worker
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

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coordinator::Coordinator;
use plan::plan_tables;
use tokio::sync::{mpsc, watch};
use tokio_postgres::Client;
use walrus_core::alert::SlotReport;
use walrus_core::config::Config;
use walrus_core::event::{SnapshotMarker, SourcePosition};
use walrus_core::pipeline::SinkHandle;
use walrus_core::sink::Delivered;
use walrus_core::telemetry;
use walrus_core::time::now_us;
use walrus_core::Lsn;
use worker::{Piece, WorkItem, Worker};

mod coordinator;
mod plan;
mod state;
mod worker;

pub use state::{state_path, Phase, State, TableState, UnitState};

use crate::conn::ConnParams;
use crate::error::PgError;
use crate::operations::setup::quote_literal;

/// Most records in one batch handed to the sink.
const BATCH_RECORDS: usize = 2048;
/// How often delivered progress is written to the state file.
const SAVE_INTERVAL: Duration = Duration::from_millis(500);

/// A slot just created on a replication connection, with its exported snapshot.
pub struct ExportedSlot {
    /// The replication connection, in command mode; it must stay open (and idle) while the
    /// snapshot is read, then streams from the consistent point.
    pub client: walrus_replication::ReplicationClient,
    /// The snapshot name for `SET TRANSACTION SNAPSHOT`.
    pub snapshot_name: String,
    /// The slot's consistent point: streaming starts here.
    pub consistent_point: Lsn,
}

/// Creates `slot` on a new replication connection with an exported snapshot, in the syntax
/// of the server's version (`SNAPSHOT 'export'` on PostgreSQL 15+, `EXPORT_SNAPSHOT`
/// before; walrus-replication's `version` module). A new slot's `confirmed_flush_lsn` is
/// its consistent point, which is what the stream later reports as already flushed.
pub async fn create_slot_exported(
    params: &ConnParams,
    config: &Config,
) -> Result<ExportedSlot, PgError> {
    let slot = &config.source.slot;
    let mut client = params.connect_replication().await?;
    let created = client
        .create_slot(&walrus_replication::CreateSlot {
            name: slot.clone(),
            temporary: false,
            snapshot: walrus_replication::SnapshotAction::Export,
            failover: false,
        })
        .await?;
    let consistent_point = Lsn(created.consistent_point.0);
    let snapshot_name = created.snapshot_name.ok_or_else(|| PgError::Protocol {
        lsn: consistent_point,
        message: "CREATE_REPLICATION_SLOT exported no snapshot".into(),
    })?;
    tracing::info!(slot = %slot, consistent_point = %consistent_point, snapshot = %snapshot_name, "created replication slot with an exported snapshot");
    Ok(ExportedSlot {
        client,
        snapshot_name,
        consistent_point,
    })
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

    // The work queue: (table index, unit index) of every unfinished unit. One worker reads
    // the tables in plan order, Debezium's (`source.tables` order, then by name), so that the
    // snapshot markers fall on the rows Debezium marks; several start with the largest
    // tables, so that the long ones start early.
    let mut order: Vec<usize> = (0..plans.len()).collect();
    if workers > 1 {
        order.sort_by_key(|&i| std::cmp::Reverse(plans[i].estimated_rows));
    }
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
    let emitter = crate::emitter(config, &params.dbname, config.sink.event_headers(), false);
    let position = SourcePosition {
        lsn: stream_from,
        commit_lsn: stream_from,
        last_commit_lsn: None,
        tx_id: None,
        commit_time_us: now_us(),
        tx_index: 0,
        origin: None,
        snapshot: SnapshotMarker::True,
    };
    let mut tasks = Vec::with_capacity(workers);
    for (i, client) in conns.into_iter().enumerate() {
        let worker = Worker {
            client,
            plans: plans.clone(),
            queue: queue.clone(),
            stop: stop.clone(),
            tx: tx.clone(),
            emitter: emitter.fork(),
            chunk_size: config.snapshot.chunk_size,
            position: position.clone(),
        };
        let span = tracing::info_span!("snapshot_worker", worker = i);
        tasks.push(tokio::spawn(tracing::Instrument::instrument(
            worker.run(),
            span,
        )));
    }
    drop(tx);

    let mut coord = Coordinator::new(plans.clone(), emitter, state, config);
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
    let mut row = crate::operations::slots::query_slot(sql, slot).await?;
    let lost = row.as_ref().is_some_and(SlotReport::is_lost);
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
        let exported = create_slot_exported(params, config).await?;
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
    let confirmed = row.confirmed_lsn().unwrap_or_default();
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
