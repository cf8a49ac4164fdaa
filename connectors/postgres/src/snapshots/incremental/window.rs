//! The session's side: reacting to signal rows and watermarks in the stream, noting keys
//! changed while a window is open, and turning a closed window's chunk into read events.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tracing::Instrument;
use walrus_core::config::Config;
use walrus_core::event::{ChangeEvent, Op, Row, SourcePosition, Table};
use walrus_core::value::Value;

use super::driver::{drive, Chunk, ChunkRequest, ChunkResult};
use super::signals::{
    qualify, unique_suffix, Signal, SignalData, EXECUTE_SNAPSHOT, PAUSE_SNAPSHOT, RESUME_SNAPSHOT,
    STOP_SNAPSHOT, WINDOW_CLOSE, WINDOW_OPEN,
};
use super::state::{IncrementalState, TableProgress};
use super::{RETRY_DELAY, SAVE_INTERVAL};
use crate::conn::ConnParams;
use crate::error::PgError;
use crate::operations::setup::quote_ident;

/// The chunk asked for and not yet finished.
#[derive(Debug)]
pub(super) struct Outstanding {
    pub(super) window: String,
    pub(super) table: String,
    /// The rows, once the driver sent them.
    pub(super) chunk: Option<Chunk>,
}

/// The window between the watermarks seen in the stream.
#[derive(Debug)]
pub(super) struct Window {
    pub(super) id: String,
    pub(super) oid: u32,
    /// Keys of rows changed in the stream while the window is open.
    pub(super) changed: HashSet<String>,
    /// A change whose key could not be told (or a truncate): the chunk is read again.
    pub(super) dirty: bool,
}

/// The session's side of incremental snapshots: reacts to signal rows and watermarks in
/// the stream, notes keys changed in an open window, and turns a closed window's chunk
/// into read events. Owned by the replication session; the reads run in a driver task.
pub struct Incremental {
    pub(super) signal_oid: u32,
    pub(super) chunk_size: usize,
    pub(super) state: IncrementalState,
    pub(super) path: PathBuf,
    pub(super) requests: mpsc::UnboundedSender<ChunkRequest>,
    pub(super) results: mpsc::UnboundedReceiver<ChunkResult>,
    pub(super) driver: tokio::task::JoinHandle<()>,
    pub(super) outstanding: Option<Outstanding>,
    pub(super) window: Option<Window>,
    pub(super) retry_at: Option<Instant>,
    /// Progress changes not yet durable, with the records that must be delivered first.
    pub(super) pending_saves: VecDeque<(u64, IncrementalState)>,
    /// The state changed since the last `after_emit`.
    pub(super) dirty: bool,
    pub(super) last_save: Option<Instant>,
    /// The next request asks the driver to describe the table anew.
    pub(super) refresh: bool,
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

    pub(super) fn command(&mut self, signal: &Signal, config: &Config) {
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

    pub(super) fn open_window(&mut self, signal: &Signal) {
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

    pub(super) fn close_window(
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

    pub(super) fn table_done(&mut self) {
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

    pub(super) fn save_delivered(&mut self, delivered: u64, force: bool) {
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

    pub(super) fn drain_results(&mut self) {
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
    pub(super) fn request_next(&mut self) {
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
pub(super) fn same_shape(a: &Table, b: &Table) -> bool {
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
