//! The pipeline's state, shared by the tasks that know it and read by the admin server.
//!
//! ```text
//!  main.rs retry loop ──state, last error──┐
//!  source (replication session) ──LSNs, ───┼──▶ Status ──▶ /status, /readyz, walrus status
//!        delivered commit time, sink        │
//!  watchdog ──slot reports, alerts─────────┘
//! ```
//!
//! One process-wide instance ([`Status::global`]), like the metrics recorder: the source
//! publishes into it a few times a second (never per event), so the hot path pays nothing.
//! Per-table event counts are not kept here: they are the `walrus_events_total` counter.

use std::sync::{OnceLock, RwLock};

use serde::Serialize;

use crate::alert::{Alert, SlotReport};
use crate::time::now_ms;
use crate::Lsn;

/// What the pipeline is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PipelineState {
    /// Connecting, setting up the slot, not yet streaming.
    #[default]
    Starting,
    /// Replication is running.
    Streaming,
    /// A session ended with a retryable error; the next one starts after a backoff.
    Retrying,
    /// walrus is shutting down, or stopped on a fatal error.
    Stopped,
}

impl PipelineState {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            PipelineState::Starting => "starting",
            PipelineState::Streaming => "streaming",
            PipelineState::Retrying => "retrying",
            PipelineState::Stopped => "stopped",
        }
    }

    /// Every state, for the one-hot state gauge.
    pub const ALL: [PipelineState; 4] = [
        PipelineState::Starting,
        PipelineState::Streaming,
        PipelineState::Retrying,
        PipelineState::Stopped,
    ];
}

/// The last error a session ended with.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LastError {
    /// `ErrorKind` name.
    pub kind: String,
    /// The message.
    pub message: String,
    /// What an operator should do.
    pub hint: String,
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
}

/// What the source publishes about replication progress.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Progress {
    /// Newest WAL position received.
    pub received_lsn: Option<String>,
    /// WAL position confirmed to PostgreSQL.
    pub confirmed_lsn: Option<String>,
    /// Commit time (ms since the Unix epoch) of the newest delivered transaction or
    /// heartbeat.
    pub delivered_commit_ms: Option<i64>,
    /// Last time (ms since the Unix epoch) walrus had delivered everything the server had
    /// sent (no transaction open, nothing in flight).
    pub caught_up_ms: Option<i64>,
    /// Change events produced in this process's life.
    pub events: u64,
    /// Records the sink delivered in the current session.
    pub delivered_records: u64,
    /// Records handed to the sink in the current session.
    pub sent_records: u64,
    /// Heartbeats received back through the slot.
    pub heartbeats_received: u64,
}

/// Everything `/status` shows.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Snapshot {
    /// walrus's version.
    pub version: &'static str,
    /// Pipeline state.
    pub state: PipelineState,
    /// Since when, ms since the Unix epoch.
    pub state_since_ms: i64,
    /// walrus's slot.
    pub slot: String,
    /// walrus's database.
    pub database: String,
    /// Sink type.
    pub sink: String,
    /// Replication progress.
    pub progress: Progress,
    /// Slot lag of walrus's slot in bytes, from the last watchdog poll.
    pub lag_bytes: Option<u64>,
    /// Time lag in ms: now minus `progress.delivered_commit_ms`.
    pub lag_ms: Option<u64>,
    /// Retryable session failures so far.
    pub retries: u64,
    /// The last session error.
    pub last_error: Option<LastError>,
    /// Heartbeats written.
    pub heartbeats_sent: u64,
    /// Every watched slot, from the last watchdog poll.
    pub slots: Vec<SlotReport>,
    /// When the watchdog last polled successfully, ms since the Unix epoch.
    pub watchdog_polled_ms: Option<i64>,
    /// The watchdog's last error, if its last poll failed.
    pub watchdog_error: Option<String>,
    /// Alerts firing now.
    pub alerts: Vec<Alert>,
    /// Whether a critical alert concerns walrus's own slot.
    pub critical: bool,
}

/// The shared status. All methods take `&self`; updates are short critical sections.
#[derive(Debug, Default)]
pub struct Status {
    inner: RwLock<Snapshot>,
}

impl Status {
    /// A fresh status (tests); the binary uses [`Status::global`].
    pub fn new() -> Self {
        let s = Status::default();
        s.write(|s| {
            s.version = env!("CARGO_PKG_VERSION");
            s.state_since_ms = now_ms();
        });
        s
    }

    /// The process-wide status.
    pub fn global() -> &'static Status {
        static GLOBAL: OnceLock<Status> = OnceLock::new();
        GLOBAL.get_or_init(Status::new)
    }

    fn write(&self, f: impl FnOnce(&mut Snapshot)) {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        f(&mut g);
    }

    /// A copy of everything, with the time lag computed for now.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = self.inner.read().unwrap_or_else(|e| e.into_inner()).clone();
        s.lag_ms = time_lag_ms(&s.progress, now_ms());
        s
    }

    /// Names walrus's slot, database and sink.
    pub fn set_identity(&self, slot: &str, database: &str, sink: &str) {
        self.write(|s| {
            s.slot = slot.into();
            s.database = database.into();
            s.sink = sink.into();
        });
    }

    /// Changes the pipeline state (and the state gauge).
    pub fn set_state(&self, state: PipelineState) {
        self.write(|s| {
            if s.state != state {
                s.state = state;
                s.state_since_ms = now_ms();
            }
        });
        for st in PipelineState::ALL {
            metrics::gauge!(crate::telemetry::PIPELINE_STATE, "state" => st.as_str())
                .set(if st == state { 1.0 } else { 0.0 });
        }
    }

    /// Records the error a session ended with; `retry` counts it as a retry.
    pub fn set_error(&self, kind: &str, message: String, hint: &str, retry: bool) {
        self.write(|s| {
            s.last_error = Some(LastError {
                kind: kind.into(),
                message,
                hint: hint.into(),
                at_ms: now_ms(),
            });
            if retry {
                s.retries += 1;
            }
        });
    }

    /// Publishes replication progress (the source calls this a few times a second).
    pub fn update_progress(&self, f: impl FnOnce(&mut Progress)) {
        self.write(|s| f(&mut s.progress));
    }

    /// A heartbeat was written.
    pub fn heartbeat_sent(&self) {
        self.write(|s| s.heartbeats_sent += 1);
    }

    /// Publishes a watchdog poll.
    pub fn set_watchdog(
        &self,
        slots: Vec<SlotReport>,
        walrus_lag_bytes: Option<u64>,
        alerts: Vec<Alert>,
        critical: bool,
    ) {
        self.write(|s| {
            s.slots = slots;
            s.lag_bytes = walrus_lag_bytes;
            s.alerts = alerts;
            s.critical = critical;
            s.watchdog_polled_ms = Some(now_ms());
            s.watchdog_error = None;
        });
    }

    /// The watchdog's last poll failed.
    pub fn set_watchdog_error(&self, error: String) {
        self.write(|s| s.watchdog_error = Some(error));
    }

    /// Ready: streaming, and no critical alert on walrus's slot.
    pub fn ready(&self) -> (bool, String) {
        let s = self.snapshot();
        if s.state != PipelineState::Streaming {
            return (false, format!("pipeline is {}", s.state.as_str()));
        }
        if s.critical {
            return (
                false,
                "a critical alert concerns walrus's slot (see /status)".into(),
            );
        }
        (true, "streaming".into())
    }
}

/// now minus the commit time of the newest delivered transaction or heartbeat.
pub fn time_lag_ms(p: &Progress, now_ms: i64) -> Option<u64> {
    p.delivered_commit_ms
        .map(|t| now_ms.saturating_sub(t).max(0) as u64)
}

/// The time lag to judge against thresholds: like [`time_lag_ms`], but a walrus that had
/// delivered everything the server sent at some moment was not behind then, so a quiet
/// database without heartbeats does not look late.
pub fn effective_time_lag_ms(p: &Progress, now_ms: i64) -> Option<u64> {
    let newest = match (p.delivered_commit_ms, p.caught_up_ms) {
        (Some(a), Some(b)) => a.max(b),
        (a, b) => a.or(b)?,
    };
    Some(now_ms.saturating_sub(newest).max(0) as u64)
}

/// An LSN in PostgreSQL's text form.
pub fn lsn_text(lsn: Lsn) -> String {
    lsn.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_streaming_and_no_critical() {
        let s = Status::new();
        assert!(!s.ready().0);
        s.set_state(PipelineState::Streaming);
        assert!(s.ready().0);
        s.set_watchdog(vec![], Some(1), vec![], true);
        assert!(!s.ready().0);
    }

    #[test]
    fn time_lags() {
        let p = Progress {
            delivered_commit_ms: Some(1_000),
            caught_up_ms: Some(4_000),
            ..Progress::default()
        };
        assert_eq!(time_lag_ms(&p, 5_000), Some(4_000));
        assert_eq!(effective_time_lag_ms(&p, 5_000), Some(1_000));
        assert_eq!(effective_time_lag_ms(&Progress::default(), 5_000), None);
    }
}
