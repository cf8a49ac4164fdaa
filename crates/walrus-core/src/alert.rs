//! From slot observations to alerts that fire once and resolve once.
//!
//! The slot watchdog (`walrus_postgres::operations::watchdog`) polls `pg_replication_slots` every few
//! seconds and hands one [`SlotReport`] per slot to [`Evaluator::evaluate`], which applies
//! the thresholds of `[watchdog]` and returns the [`Condition`]s that hold now. [`AlertBook`]
//! turns the conditions of consecutive polls into [`Transition`]s: an alert *fires* when its
//! condition first holds (or its severity changes), and *resolves* when it stops holding —
//! never again on every poll while it keeps holding. Everything here is pure (time is
//! passed in), so the state machine is unit-tested without PostgreSQL.
//!
//! Why these conditions (see PostgreSQL's docs, "Replication Slots" and
//! `pg_replication_slots`): a logical slot keeps every WAL segment from its `restart_lsn`
//! until its consumer confirms past it. `confirmed_flush_lsn` behind `pg_current_wal_lsn()`
//! is the consumer's lag; `restart_lsn` behind it is what the slot makes the primary keep on
//! disk. With `max_slot_wal_keep_size` set, `safe_wal_size` says how much more WAL may be
//! written before the slot is invalidated (`wal_status` goes `unreserved`, then `lost`, and
//! the changes in between are gone for good). A consumer that is connected but whose
//! confirmed position stands still while WAL grows is stuck, whatever its lag.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::WatchdogConfig;
use crate::Lsn;

/// What the watchdog tells the replication loop about walrus's own slot after each poll
/// (over a `tokio::sync::watch` channel): the loop lets go of its connection when the slot is
/// about to be invalidated while the sink holds delivery.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotHealth {
    /// `wal_status` of walrus's slot at the last poll (`None` before the first poll, when
    /// the slot is missing, or before PostgreSQL 13).
    pub wal_status: Option<String>,
}

/// One replication slot as the watchdog saw it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SlotReport {
    /// `slot_name`.
    pub slot: String,
    /// Whether this is walrus's own slot.
    pub walrus: bool,
    /// `slot_type`: `logical` or `physical`.
    pub slot_type: String,
    /// Output plugin of a logical slot.
    pub plugin: Option<String>,
    /// Database of a logical slot.
    pub database: Option<String>,
    /// Whether a process streams from it.
    pub active: bool,
    /// That process.
    pub active_pid: Option<i32>,
    /// `wal_status`: `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: Option<String>,
    /// `confirmed_flush_lsn` (logical slots).
    pub confirmed_flush_lsn: Option<String>,
    /// `restart_lsn`.
    pub restart_lsn: Option<String>,
    /// `pg_current_wal_lsn()` at the poll.
    pub current_lsn: String,
    /// Bytes from `confirmed_flush_lsn` to the current WAL position.
    pub lag_bytes: Option<u64>,
    /// Bytes from `restart_lsn` to the current WAL position: WAL kept for the slot.
    pub retained_bytes: Option<u64>,
    /// `safe_wal_size`: bytes that can still be written before the slot is lost (only with
    /// `max_slot_wal_keep_size`; may be negative just before invalidation).
    pub safe_wal_size: Option<i64>,
    /// `max_slot_wal_keep_size` in bytes, when set (not -1).
    pub max_slot_wal_keep_size: Option<u64>,
    /// Whether PostgreSQL invalidated the slot (`invalidation_reason` set, PostgreSQL 17+).
    pub invalidated: bool,
    /// Whether the watchdog considers the slot stuck.
    pub stuck: bool,
}

impl SlotReport {
    /// `confirmed_flush_lsn` as a position.
    pub fn confirmed_lsn(&self) -> Option<Lsn> {
        self.confirmed_flush_lsn.as_deref()?.parse().ok()
    }

    /// `restart_lsn` as a position.
    pub fn restart_position(&self) -> Option<Lsn> {
        self.restart_lsn.as_deref()?.parse().ok()
    }

    /// Whether the WAL the slot needs is gone (`wal_status = lost`, or invalidated).
    pub fn is_lost(&self) -> bool {
        self.wal_status.as_deref() == Some("lost") || self.invalidated
    }

    /// The share (0-1) of `max_slot_wal_keep_size` the slot uses, from `safe_wal_size` when
    /// known, else from the retained bytes.
    pub fn wal_keep_share(&self) -> Option<f64> {
        let max = self.max_slot_wal_keep_size.filter(|&m| m > 0)? as f64;
        match (self.safe_wal_size, self.retained_bytes) {
            (Some(safe), _) => Some((1.0 - safe as f64 / max).clamp(0.0, f64::MAX)),
            (None, Some(r)) => Some(r as f64 / max),
            _ => None,
        }
    }

    /// The slot's confirmed position as a number, if any.
    pub fn confirmed(&self) -> Option<Lsn> {
        self.confirmed_flush_lsn.as_deref()?.parse().ok()
    }
}

/// How bad an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Look at it today.
    Warning,
    /// Look at it now: the disk fills or data is lost.
    Critical,
}

impl Severity {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// What is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// The slot's confirmed position is far behind the current WAL position.
    SlotLag,
    /// walrus's newest delivered commit is old.
    TimeLag,
    /// The slot retains a large share of `max_slot_wal_keep_size` (or `wal_status` is
    /// `unreserved`): it is about to be invalidated.
    WalKeep,
    /// WAL grows while the slot's confirmed position stands still.
    SlotStuck,
    /// The slot was invalidated (`wal_status = lost`).
    SlotLost,
}

impl AlertKind {
    /// snake_case name, as in JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::SlotLag => "slot_lag",
            AlertKind::TimeLag => "time_lag",
            AlertKind::WalKeep => "wal_keep",
            AlertKind::SlotStuck => "slot_stuck",
            AlertKind::SlotLost => "slot_lost",
        }
    }
}

/// A condition that holds at one poll.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Condition {
    /// What.
    pub kind: AlertKind,
    /// Which slot.
    pub slot: String,
    /// How bad.
    pub severity: Severity,
    /// The observed value (bytes, milliseconds or a share).
    pub value: f64,
    /// The threshold it passed.
    pub threshold: f64,
    /// One lower-case sentence for people.
    pub summary: String,
}

/// Whether an alert starts or ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// The condition holds.
    Firing,
    /// The condition no longer holds.
    Resolved,
}

/// An alert as it goes to the log, the webhook and `/status`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    /// `<kind>:<slot>`, stable across polls, for deduplication downstream.
    pub id: String,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// What.
    pub alert: AlertKind,
    /// Which slot.
    pub slot: String,
    /// Whether it is walrus's own slot.
    pub walrus_slot: bool,
    /// How bad (for a resolve: how bad it was).
    pub severity: Severity,
    /// Observed value at the last poll that held it.
    pub value: f64,
    /// Threshold.
    pub threshold: f64,
    /// One sentence for people.
    pub summary: String,
    /// When it started firing, ms since the Unix epoch.
    pub started_at_ms: i64,
    /// When it resolved, ms since the Unix epoch.
    pub resolved_at_ms: Option<i64>,
}

/// A change of an alert's state.
pub type Transition = Alert;

/// Applies the `[watchdog]` thresholds to slot reports, remembering per slot since when its
/// confirmed position stands still (stuck detection).
#[derive(Debug)]
pub struct Evaluator {
    cfg: WatchdogConfig,
    /// Per slot: (confirmed position, WAL position when it was first seen there, since when).
    still: BTreeMap<String, (Lsn, Lsn, Instant)>,
}

impl Evaluator {
    /// Thresholds from `[watchdog]`.
    pub fn new(cfg: WatchdogConfig) -> Self {
        Evaluator {
            cfg,
            still: BTreeMap::new(),
        }
    }

    /// The conditions that hold for these slots now. `time_lag_ms` is walrus's time lag
    /// when it should be judged (see `walrus_core::status`), attributed to `walrus_slot`.
    /// Sets [`SlotReport::stuck`].
    pub fn evaluate(
        &mut self,
        slots: &mut [SlotReport],
        time_lag_ms: Option<u64>,
        walrus_slot: &str,
        now: Instant,
    ) -> Vec<Condition> {
        let c = &self.cfg;
        let mut out = Vec::new();
        let mut seen = Vec::with_capacity(slots.len());
        for s in slots.iter_mut() {
            seen.push(s.slot.clone());
            let mb = |b: f64| format!("{:.1} MiB", b / (1024.0 * 1024.0));
            if s.wal_status.as_deref() == Some("lost") {
                out.push(Condition {
                    kind: AlertKind::SlotLost,
                    slot: s.slot.clone(),
                    severity: Severity::Critical,
                    value: 1.0,
                    threshold: 1.0,
                    summary: format!(
                        "slot {} is invalidated (wal_status = lost): the WAL it needed was removed; drop it and re-snapshot",
                        s.slot
                    ),
                });
                // Lag and retention mean nothing for a lost slot.
                self.still.remove(&s.slot);
                continue;
            }
            if let Some(lag) = s.lag_bytes {
                let sev = if lag >= c.lag_critical_bytes {
                    Some((Severity::Critical, c.lag_critical_bytes))
                } else if lag >= c.lag_warning_bytes {
                    Some((Severity::Warning, c.lag_warning_bytes))
                } else {
                    None
                };
                if let Some((severity, t)) = sev {
                    out.push(Condition {
                        kind: AlertKind::SlotLag,
                        slot: s.slot.clone(),
                        severity,
                        value: lag as f64,
                        threshold: t as f64,
                        summary: format!(
                            "slot {} is {} behind the current WAL position (threshold {})",
                            s.slot,
                            mb(lag as f64),
                            mb(t as f64)
                        ),
                    });
                }
            }
            let share = s.wal_keep_share();
            let unreserved = s.wal_status.as_deref() == Some("unreserved");
            let sev = match share {
                _ if unreserved => Some((Severity::Critical, c.wal_keep_critical_ratio)),
                Some(x) if x >= c.wal_keep_critical_ratio => {
                    Some((Severity::Critical, c.wal_keep_critical_ratio))
                }
                Some(x) if x >= c.wal_keep_warning_ratio => {
                    Some((Severity::Warning, c.wal_keep_warning_ratio))
                }
                _ => None,
            };
            if let Some((severity, t)) = sev {
                let value = share.unwrap_or(1.0);
                out.push(Condition {
                    kind: AlertKind::WalKeep,
                    slot: s.slot.clone(),
                    severity,
                    value,
                    threshold: t,
                    summary: format!(
                        "slot {} retains {:.0}% of max_slot_wal_keep_size (wal_status {}, safe_wal_size {}): PostgreSQL invalidates it at 100%",
                        s.slot,
                        value * 100.0,
                        s.wal_status.as_deref().unwrap_or("?"),
                        s.safe_wal_size.map_or("?".into(), |b| mb(b as f64)),
                    ),
                });
            }
            // Stuck: the confirmed position stands still while WAL grows.
            let current: Lsn = s.current_lsn.parse().unwrap_or_default();
            match s
                .confirmed()
                .or_else(|| s.restart_lsn.as_deref()?.parse().ok())
            {
                Some(confirmed) if c.stuck_after_ms > 0 => {
                    let entry = self
                        .still
                        .entry(s.slot.clone())
                        .or_insert((confirmed, current, now));
                    if entry.0 != confirmed {
                        *entry = (confirmed, current, now);
                    }
                    let still_for = now.saturating_duration_since(entry.2);
                    if still_for >= Duration::from_millis(c.stuck_after_ms) && current > entry.1 {
                        s.stuck = true;
                        out.push(Condition {
                            kind: AlertKind::SlotStuck,
                            slot: s.slot.clone(),
                            severity: Severity::Critical,
                            value: still_for.as_millis() as f64,
                            threshold: c.stuck_after_ms as f64,
                            summary: format!(
                                "slot {} has not confirmed anything for {} s while WAL grew by {} ({})",
                                s.slot,
                                still_for.as_secs(),
                                mb(current.0.saturating_sub(entry.1 .0) as f64),
                                if s.active { "its consumer is connected but not advancing" } else { "no consumer is connected" }
                            ),
                        });
                    }
                }
                _ => {
                    self.still.remove(&s.slot);
                }
            }
        }
        self.still.retain(|k, _| seen.contains(k));
        if let Some(ms) = time_lag_ms {
            let sev = if ms >= c.time_lag_critical_ms {
                Some((Severity::Critical, c.time_lag_critical_ms))
            } else if ms >= c.time_lag_warning_ms {
                Some((Severity::Warning, c.time_lag_warning_ms))
            } else {
                None
            };
            if let Some((severity, t)) = sev {
                out.push(Condition {
                    kind: AlertKind::TimeLag,
                    slot: walrus_slot.to_string(),
                    severity,
                    value: ms as f64,
                    threshold: t as f64,
                    summary: format!(
                        "walrus delivered nothing committed in the last {} s (threshold {} s)",
                        ms / 1000,
                        t / 1000
                    ),
                });
            }
        }
        out
    }
}

/// The alerts firing now, and the transitions from one poll's conditions to the next.
#[derive(Debug, Default)]
pub struct AlertBook {
    active: BTreeMap<(AlertKind, String), Alert>,
}

impl AlertBook {
    /// No alert firing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one poll's conditions: returns the alerts that start firing (or change
    /// severity), and those that resolve. A condition that keeps holding at the same
    /// severity returns nothing; its value is updated for `/status`. `walrus_slot` marks
    /// walrus's own slot; `now_ms` is wall-clock time for the payloads.
    pub fn update(
        &mut self,
        conditions: Vec<Condition>,
        walrus_slot: &str,
        now_ms: i64,
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        let mut holding = std::collections::BTreeSet::new();
        for c in conditions {
            let key = (c.kind, c.slot.clone());
            holding.insert(key.clone());
            match self.active.get_mut(&key) {
                Some(a) if a.severity == c.severity => {
                    a.value = c.value;
                    a.summary = c.summary;
                }
                existing => {
                    let started_at_ms = existing.as_ref().map_or(now_ms, |a| a.started_at_ms);
                    let alert = Alert {
                        id: format!("{}:{}", c.kind.as_str(), c.slot),
                        status: AlertStatus::Firing,
                        alert: c.kind,
                        walrus_slot: c.slot == walrus_slot,
                        slot: c.slot,
                        severity: c.severity,
                        value: c.value,
                        threshold: c.threshold,
                        summary: c.summary,
                        started_at_ms,
                        resolved_at_ms: None,
                    };
                    out.push(alert.clone());
                    self.active.insert(key, alert);
                }
            }
        }
        let gone: Vec<_> = self
            .active
            .keys()
            .filter(|k| !holding.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            if let Some(mut a) = self.active.remove(&k) {
                a.status = AlertStatus::Resolved;
                a.resolved_at_ms = Some(now_ms);
                a.summary = format!("resolved: {}", a.summary);
                out.push(a);
            }
        }
        out
    }

    /// The alerts firing now, oldest key first.
    pub fn firing(&self) -> Vec<Alert> {
        self.active.values().cloned().collect()
    }

    /// Whether a critical alert concerns walrus's own slot (makes `/readyz` fail).
    pub fn walrus_critical(&self) -> bool {
        self.active
            .values()
            .any(|a| a.walrus_slot && a.severity == Severity::Critical)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> WatchdogConfig {
        WatchdogConfig {
            lag_warning_bytes: 100,
            lag_critical_bytes: 1000,
            time_lag_warning_ms: 1000,
            time_lag_critical_ms: 5000,
            stuck_after_ms: 10_000,
            ..WatchdogConfig::default()
        }
    }

    fn slot(name: &str, lag: u64, confirmed: u64, current: u64) -> SlotReport {
        SlotReport {
            slot: name.into(),
            slot_type: "logical".into(),
            lag_bytes: Some(lag),
            retained_bytes: Some(lag),
            confirmed_flush_lsn: Some(Lsn(confirmed).to_string()),
            current_lsn: Lsn(current).to_string(),
            wal_status: Some("reserved".into()),
            ..SlotReport::default()
        }
    }

    #[test]
    fn thresholds_pick_the_severity() {
        let mut e = Evaluator::new(cfg());
        let now = Instant::now();
        let c = e.evaluate(&mut [slot("a", 50, 1, 51)], None, "a", now);
        assert!(c.is_empty());
        let c = e.evaluate(&mut [slot("a", 150, 1, 151)], None, "a", now);
        assert_eq!(
            (c[0].kind, c[0].severity),
            (AlertKind::SlotLag, Severity::Warning)
        );
        let c = e.evaluate(&mut [slot("a", 1500, 1, 1501)], Some(6000), "a", now);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].severity, Severity::Critical);
        assert_eq!(
            (c[1].kind, c[1].severity),
            (AlertKind::TimeLag, Severity::Critical)
        );
    }

    #[test]
    fn fires_once_escalates_and_resolves() {
        let mut e = Evaluator::new(cfg());
        let mut book = AlertBook::new();
        let now = Instant::now();
        let mut poll = |lag: u64, book: &mut AlertBook, t: i64| {
            let c = e.evaluate(&mut [slot("w", lag, 1, 1 + lag)], None, "w", now);
            book.update(c, "w", t)
        };
        let t = poll(200, &mut book, 1);
        assert_eq!(t.len(), 1);
        assert_eq!(
            (t[0].status, t[0].severity, t[0].id.as_str()),
            (AlertStatus::Firing, Severity::Warning, "slot_lag:w")
        );
        assert!(poll(300, &mut book, 2).is_empty(), "no repeat while firing");
        assert_eq!(book.firing()[0].value, 300.0);
        let t = poll(2000, &mut book, 3);
        assert_eq!((t[0].severity, t[0].started_at_ms), (Severity::Critical, 1));
        assert!(book.walrus_critical());
        let t = poll(10, &mut book, 4);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].status, AlertStatus::Resolved);
        assert_eq!(t[0].resolved_at_ms, Some(4));
        assert!(book.firing().is_empty());
        assert!(poll(10, &mut book, 5).is_empty(), "no repeat of a resolve");
    }

    #[test]
    fn stuck_needs_time_and_wal_growth() {
        let mut e = Evaluator::new(cfg());
        let t0 = Instant::now();
        let stuck = |c: &[Condition]| c.iter().any(|c| c.kind == AlertKind::SlotStuck);
        assert!(!stuck(&e.evaluate(
            &mut [slot("s", 0, 10, 10)],
            None,
            "w",
            t0
        )));
        // 11 s later, same confirmed position, no WAL growth: idle, not stuck.
        let t1 = t0 + Duration::from_secs(11);
        assert!(!stuck(&e.evaluate(
            &mut [slot("s", 0, 10, 10)],
            None,
            "w",
            t1
        )));
        // WAL grew: stuck.
        let mut s = [slot("s", 5, 10, 15)];
        assert!(stuck(&e.evaluate(&mut s, None, "w", t1)));
        assert!(s[0].stuck);
        // The slot moves: not stuck, and the clock restarts.
        assert!(!stuck(&e.evaluate(
            &mut [slot("s", 5, 12, 17)],
            None,
            "w",
            t1
        )));
    }

    #[test]
    fn wal_keep_share_and_lost() {
        let mut e = Evaluator::new(cfg());
        let now = Instant::now();
        let mut s = slot("k", 0, 1, 1);
        s.max_slot_wal_keep_size = Some(1000);
        s.safe_wal_size = Some(400);
        let c = e.evaluate(&mut [s.clone()], None, "w", now);
        assert_eq!(
            (c[0].kind, c[0].severity),
            (AlertKind::WalKeep, Severity::Warning)
        );
        s.safe_wal_size = Some(100);
        let c = e.evaluate(&mut [s.clone()], None, "w", now);
        assert_eq!(c[0].severity, Severity::Critical);
        s.wal_status = Some("lost".into());
        let c = e.evaluate(&mut [s], None, "w", now);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].kind, AlertKind::SlotLost);
    }
}
