//! The coordinator: takes the workers' records in table order, marks each table's first and
//! last record (re-encoding that row with Debezium's `source.snapshot` marker), hands
//! batches to the sink within the in-flight budget, and saves a unit's progress to the state
//! file once the sink delivered the chunk.
//!
//! The markers are Debezium's (`RelationalSnapshotChangeEventSource` and its buffering
//! snapshot receiver), by priority: `last` (the last record of the whole snapshot, whichever
//! table it is from, even when the tables read after it are empty), `first` (the first row of
//! the first table in reading order; none when that table is empty — with several workers,
//! the first record read), `last_in_data_collection`, `first_in_data_collection`, `true`. A
//! table's only row is therefore `first` in the first table and `last_in_data_collection`
//! elsewhere. To know which record is the snapshot's last, the last record of a finished
//! table is held back until another record follows or every table is finished.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use walrus_core::config::Config;
use walrus_core::emit::Emitter;
use walrus_core::event::{ChangeEvent, SnapshotMarker};
use walrus_core::pipeline::{Batch, SinkHandle};
use walrus_core::sink::{Delivered, Record};
use walrus_core::telemetry;
use walrus_core::Lsn;

use super::plan::TablePlan;
use super::state::State;
use super::worker::{ChunkEnd, Piece};
use super::SAVE_INTERVAL;
use crate::error::PgError;

/// A chunk whose records end at sequence number `seq`.
pub(super) struct Completion {
    pub(super) seq: u64,
    pub(super) table: usize,
    pub(super) unit: usize,
    pub(super) rows: u64,
    pub(super) end: Option<ChunkEnd>,
}

/// Per-table bookkeeping of the coordinator.
pub(super) struct TableRun {
    pub(super) qualified: String,
    pub(super) estimated_rows: u64,
    /// Rows handed to the sink this session.
    pub(super) sent_rows: u64,
    /// Rows delivered before this session.
    pub(super) rows_before: u64,
    pub(super) units_left: usize,
    /// The newest record and its event, held back until the next one (or the table's end)
    /// says whether it is the table's last.
    pub(super) held: Option<(Record, ChangeEvent, Vec<Completion>)>,
    /// Whether the table's first record is still to be marked.
    pub(super) first_pending: bool,
    pub(super) started: Option<Instant>,
    pub(super) finished: bool,
}

/// A finished table's last record, held back until a later record shows it is not the
/// snapshot's last: table index, row, its marker if it is not, and its completions.
type Trailing = (usize, ChangeEvent, SnapshotMarker, Vec<Completion>);

pub(super) struct Coordinator {
    pub(super) tables: Vec<TableRun>,
    /// One worker: tables are read one after the other in plan order, so `first` belongs
    /// to the first table alone, as in Debezium.
    pub(super) sequential: bool,
    /// See [`Trailing`].
    pub(super) trailing: Option<Trailing>,
    /// The tables' plans (routes), by the same index as `tables`.
    pub(super) plans: Arc<Vec<TablePlan>>,
    /// Re-encodes a table's first and last rows with their snapshot marker.
    pub(super) emitter: Emitter,
    pub(super) pending: VecDeque<Completion>,
    pub(super) first_overall: bool,
    pub(super) tables_left: usize,
    /// Bars or log lines for people (`crate::snapshots::progress`).
    pub(super) progress: crate::snapshots::progress::Progress,
    /// `[snapshot] max_rows_per_second`, 0 for none, and the rows handed over so far.
    pub(super) max_rows_per_second: u64,
    pub(super) rows_sent: u64,
    pub(super) started: Instant,
    pub(super) last_save: Instant,
    pub(super) dirty: bool,
}

impl Coordinator {
    pub(super) fn new(
        plans: Arc<Vec<TablePlan>>,
        emitter: Emitter,
        state: &State,
        config: &Config,
    ) -> Coordinator {
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
        let progress = crate::snapshots::progress::Progress::new(
            &views,
            crate::snapshots::progress::wants_bars(config.snapshot.progress),
            Duration::from_millis(config.snapshot.progress_interval_ms),
        );
        Coordinator {
            first_overall: state.tables.values().all(|t| t.rows == 0),
            sequential: config.snapshot.workers <= 1,
            trailing: None,
            tables,
            plans,
            emitter,
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

    pub(super) fn all_done(&self, state: &State) -> bool {
        state.tables.values().all(|t| t.done)
    }

    pub(super) fn total_rows(&self) -> u64 {
        self.tables
            .iter()
            .map(|t| t.sent_rows + t.rows_before)
            .sum()
    }

    /// Receives pieces until the workers are done (`Ok(true)`) or a stop (`Ok(false)`),
    /// saving delivered progress to `path` as it goes.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn drive(
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
                    let batch = self.accept(piece, handle.sent())?;
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
    pub(super) fn accept(
        &mut self,
        piece: Piece,
        sent: u64,
    ) -> Result<Option<(Batch, Vec<Completion>)>, PgError> {
        let ti = piece.table;
        let t = &mut self.tables[ti];
        t.started.get_or_insert_with(Instant::now);
        t.sent_rows += piece.rows;
        self.progress.advance(ti, piece.rows);
        if piece.rows > 0 {
            metrics::counter!(telemetry::SNAPSHOT_ROWS_TOTAL, "table" => t.qualified.clone())
                .increment(piece.rows);
        }
        let mut out: Vec<Record> = Vec::with_capacity(piece.records.len() + 1);
        let mut completions = Vec::new();
        let mut records = piece.records;
        let mut held_rows = 0;
        if let (Some(newest), Some(newest_event)) = (records.pop(), piece.last) {
            // A record follows the one held back at a table's end: that was not the last.
            self.release_trailing(&mut out, &mut completions)?;
            if let Some((mut held, held_event, held_completions)) = self.tables[ti].held.take() {
                if self.tables[ti].first_pending {
                    // Only possible when the held record was the table's first.
                    self.tables[ti].first_pending = false;
                    let marker = self.first_marker(ti);
                    held = self.marked(ti, held_event, marker)?;
                }
                out.push(held);
                completions.extend(held_completions);
            }
            if self.tables[ti].first_pending && !records.is_empty() {
                self.tables[ti].first_pending = false;
                if let Some(first) = piece.first {
                    let marker = self.first_marker(ti);
                    records[0] = self.marked(ti, first, marker)?;
                }
            }
            out.extend(records);
            // The held record's row counts as delivered with it.
            let row = Completion {
                seq: 0,
                table: ti,
                unit: piece.unit,
                rows: 1,
                end: None,
            };
            self.tables[ti].held = Some((newest, newest_event, vec![row]));
            held_rows = 1;
        }
        let t = &mut self.tables[ti];
        if let Some(end) = piece.chunk_end {
            let completion = Completion {
                seq: 0,
                table: ti,
                unit: piece.unit,
                rows: 0,
                end: Some(end.clone()),
            };
            // The chunk is complete once its last record (held, if any) is delivered.
            match &mut t.held {
                Some((_, _, cs)) => cs.push(completion),
                None => completions.push(completion),
            }
            if end.unit_done {
                t.units_left = t.units_left.saturating_sub(1);
                if t.units_left == 0 && !t.finished {
                    t.finished = true;
                    self.progress.finish(ti);
                    self.tables_left = self.tables_left.saturating_sub(1);
                    metrics::gauge!(telemetry::SNAPSHOT_TABLES_REMAINING)
                        .set(self.tables_left as f64);
                    if let Some((_, held_event, cs)) = self.tables[ti].held.take() {
                        // The table's last row; also its first when it has one row, and
                        // `first` outranks `last_in_data_collection`.
                        let marker = if std::mem::take(&mut self.tables[ti].first_pending)
                            && self.first_marker(ti) == SnapshotMarker::First
                        {
                            SnapshotMarker::First
                        } else {
                            SnapshotMarker::LastInDataCollection
                        };
                        self.release_trailing(&mut out, &mut completions)?;
                        self.trailing = Some((ti, held_event, marker, cs));
                    }
                    if self.tables_left == 0 {
                        // Every table is read: the record held last is the snapshot's last.
                        if let Some((tj, event, _, cs)) = self.trailing.take() {
                            out.push(self.marked(tj, event, SnapshotMarker::Last)?);
                            completions.extend(cs);
                        }
                    }
                    let t = &self.tables[ti];
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
                table: ti,
                unit: piece.unit,
                rows: piece.rows - held_rows,
                end: None,
            });
        }
        if out.is_empty() && completions.is_empty() {
            return Ok(None);
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
            return Ok(None);
        }
        // A batch of rows is a unit an exactly-once sink may commit after (they have no
        // LSN: a snapshot cut short is taken again, so its rows are at least once).
        batch.end_unit(None);
        Ok(Some((batch, completions)))
    }

    /// The marker of table `ti`'s first row: `first` for the snapshot's very first, which
    /// with one worker must also be the first table's (Debezium gives no `first` when the
    /// first table is empty).
    fn first_marker(&mut self, ti: usize) -> SnapshotMarker {
        if std::mem::take(&mut self.first_overall) && (ti == 0 || !self.sequential) {
            SnapshotMarker::First
        } else {
            SnapshotMarker::FirstInDataCollection
        }
    }

    /// Adds the record held back at a table's end ([`Trailing`]) to `out` with its marker,
    /// now that it is known not to be the snapshot's last.
    fn release_trailing(
        &mut self,
        out: &mut Vec<Record>,
        completions: &mut Vec<Completion>,
    ) -> Result<(), PgError> {
        if let Some((ti, event, marker, cs)) = self.trailing.take() {
            out.push(self.marked(ti, event, marker)?);
            completions.extend(cs);
        }
        Ok(())
    }

    /// The record of table `ti`'s row `event`, encoded again with `marker` as its
    /// `source.snapshot`.
    fn marked(
        &mut self,
        ti: usize,
        mut event: ChangeEvent,
        marker: SnapshotMarker,
    ) -> Result<Record, PgError> {
        event.source.snapshot = marker;
        let mut out = Vec::with_capacity(1);
        self.emitter
            .emit_routed(&self.plans[ti].route, &event, &mut out)?;
        out.pop().ok_or_else(|| PgError::Snapshot {
            table: self.tables[ti].qualified.clone(),
            message: "a snapshot row produced no record".into(),
        })
    }

    /// How long to pause to stay under `max_rows_per_second`.
    pub(super) fn throttle(&self) -> Option<Duration> {
        if self.max_rows_per_second == 0 {
            return None;
        }
        let due = Duration::from_secs_f64(self.rows_sent as f64 / self.max_rows_per_second as f64);
        due.checked_sub(self.started.elapsed())
    }

    pub(super) fn tick(&mut self) {
        self.progress.tick();
    }

    /// Applies every completion the sink has delivered to the state; saves it at most
    /// every [`SAVE_INTERVAL`].
    pub(super) fn apply_delivered(&mut self, delivered: u64, state: &mut State) {
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

    pub(super) fn maybe_save(&mut self, state: &State, path: &Path) -> Result<(), PgError> {
        if self.dirty && self.last_save.elapsed() >= SAVE_INTERVAL {
            state.save(path)?;
            self.dirty = false;
            self.last_save = Instant::now();
        }
        Ok(())
    }

    pub(super) fn log_progress(&mut self, state: &State, _final: bool) {
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

#[cfg(test)]
mod tests {
    use walrus_core::event::{Column, Op, ReplicaIdentity, Row, SourcePosition, Table};
    use walrus_core::value::Value;

    use super::super::plan::{key_units, KeyKind};
    use super::super::state::{Phase, TableState};
    use super::*;

    fn config(workers: usize) -> Config {
        Config::parse_with_env(
            &format!(
                "topic_prefix = \"app\"\n[source]\nurl = \"postgres://u@127.0.0.1:5432/app\"\n\
                 slot = \"walrus\"\npublication = \"walrus\"\ntables = [\"public.*\"]\n\
                 [snapshot]\nworkers = {workers}\nprogress = \"log\"\n\
                 [sink]\ntype = \"file\"\npath = \"events.jsonl\"\n"
            ),
            |_| None,
        )
        .unwrap()
    }

    /// A coordinator over tables `t0`, `t1`, ... (plan order), one unit each.
    fn coordinator(tables: usize, workers: usize) -> Coordinator {
        let config = config(workers);
        let router = config.router().unwrap();
        let mut state = State::new("walrus", "app", Phase::Running);
        let plans: Vec<TablePlan> = (0..tables)
            .map(|i| {
                let table = Arc::new(Table {
                    id: i as u32 + 1,
                    schema: "public".into(),
                    name: format!("t{i}"),
                    columns: vec![Column {
                        name: "id".into(),
                        type_oid: 23,
                        type_name: "int4".into(),
                        type_modifier: -1,
                        key: true,
                        primary_key: true,
                        not_null: true,
                        default: None,
                        type_desc: None,
                    }],
                    replica_identity: ReplicaIdentity::Default,
                });
                let qualified = table.qualified_name();
                state.tables.insert(
                    qualified.clone(),
                    TableState {
                        oid: i as u32,
                        relfilenode: i as u32,
                        kind: "pk".into(),
                        key_columns: vec!["id".into()],
                        rows: 0,
                        done: false,
                        units: key_units(vec![]),
                    },
                );
                TablePlan {
                    qualified,
                    route: router.resolve(&table).unwrap(),
                    table,
                    select_list: String::new(),
                    binary: false,
                    from: String::new(),
                    kind: KeyKind::Whole,
                    estimated_rows: 0,
                }
            })
            .collect();
        let emitter = crate::emitter(&config, "app", false, false);
        Coordinator::new(Arc::new(plans), emitter, &state, &config)
    }

    /// A worker's piece of table `ti`: rows `ids`, ending its only unit when `end`.
    fn piece(c: &mut Coordinator, ti: usize, ids: &[i32], end: bool) -> Piece {
        let plan = &c.plans[ti];
        let event = |id: i32| ChangeEvent {
            op: Op::Read,
            table: Some(plan.table.clone()),
            before: None,
            after: Some(Row {
                values: vec![Value::Int32(id)],
                key_only: false,
            }),
            source: SourcePosition {
                snapshot: SnapshotMarker::True,
                ..SourcePosition::default()
            },
            message: None,
        };
        let mut records = Vec::new();
        for &id in ids {
            c.emitter
                .emit_routed(&plan.route, &event(id), &mut records)
                .unwrap();
        }
        Piece {
            table: ti,
            unit: 0,
            records,
            first: ids.first().map(|&id| event(id)),
            last: ids.last().map(|&id| event(id)),
            rows: ids.len() as u64,
            chunk_end: end.then_some(ChunkEnd {
                last: None,
                unit_done: true,
            }),
        }
    }

    /// Feeds `(table, ids, end)` pieces in order; every record sent as (table, id, marker).
    fn run(tables: usize, workers: usize, pieces: &[(usize, &[i32], bool)]) -> Vec<String> {
        let mut c = coordinator(tables, workers);
        let mut out = Vec::new();
        for &(ti, ids, end) in pieces {
            let p = piece(&mut c, ti, ids, end);
            if let Some((batch, _)) = c.accept(p, 0).unwrap() {
                for r in batch.records {
                    let v: serde_json::Value =
                        serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
                    out.push(format!(
                        "{}:{}:{}",
                        v["source"]["table"].as_str().unwrap(),
                        v["after"]["id"],
                        v["source"]["snapshot"].as_str().unwrap()
                    ));
                }
            }
        }
        assert!(c.trailing.is_none(), "a record is still held back");
        out
    }

    #[test]
    fn one_worker_marks_as_debezium() {
        // A first table's only row is `first`; the last row before empty tables is `last`.
        assert_eq!(
            run(
                4,
                1,
                &[
                    (0, &[1], true),
                    (1, &[1, 2, 3], true),
                    (2, &[], true),
                    (3, &[], true)
                ]
            ),
            [
                "t0:1:first",
                "t1:1:first_in_data_collection",
                "t1:2:true",
                "t1:3:last"
            ]
        );
        // An empty first table: no `first` at all; a middle table's only row is
        // `last_in_data_collection`; rows over several pieces.
        assert_eq!(
            run(
                4,
                1,
                &[
                    (0, &[], true),
                    (1, &[1, 2], false),
                    (1, &[3], true),
                    (2, &[7], true),
                    (3, &[8, 9], true)
                ]
            ),
            [
                "t1:1:first_in_data_collection",
                "t1:2:true",
                "t1:3:last_in_data_collection",
                "t2:7:last_in_data_collection",
                "t3:8:first_in_data_collection",
                "t3:9:last"
            ]
        );
        // One table, one row: `last` outranks `first`.
        assert_eq!(run(1, 1, &[(0, &[5], true)]), ["t0:5:last"]);
    }

    #[test]
    fn several_workers_interleave_and_the_last_read_is_last() {
        // t1 ends first, but t0's rows follow: t1's last row is only
        // `last_in_data_collection`; `first` goes to the first record read.
        assert_eq!(
            run(
                2,
                2,
                &[(1, &[1, 2], true), (0, &[1], false), (0, &[2], true)]
            ),
            [
                "t1:1:first",
                "t1:2:last_in_data_collection",
                "t0:1:first_in_data_collection",
                "t0:2:last"
            ]
        );
    }
}
