//! The slot watchdog: its own task, on its own ordinary SQL connection, polling every
//! replication slot of the cluster so that no slot fills the primary's disk unnoticed.
//!
//! ```text
//!  every [watchdog].interval_ms:
//!    pg_replication_slots + pg_current_wal_lsn() ──▶ SlotReport per slot
//!        │                                              │ + walrus's time lag (Status)
//!        ▼                                              ▼
//!    metrics (walrus_slot_*)                 alert::Evaluator ──▶ AlertBook
//!    Status (/status, walrus status)                       │ fire / resolve transitions
//!                                                          ▼
//!                                  log (WARN / ERROR / INFO) + channel to the webhook
//! ```
//!
//! It runs beside the binary's retry loop, not inside a replication session, so it keeps
//! reporting while the pipeline is stuck, retrying, or cannot connect at all — exactly when
//! the slot grows. A failed poll is logged and counted and changes no alert (an unreachable
//! server says nothing about the slots); the connection is re-opened on the next poll.
//!
//! The slots are read by [`crate::operations::slots`].

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_postgres::Client;
use tracing::Instrument;
use walrus_core::alert::{
    Alert, AlertBook, AlertStatus, Evaluator, Severity, SlotHealth, SlotReport,
};
use walrus_core::config::Config;
use walrus_core::status::{self, Status};
use walrus_core::telemetry;

use crate::conn::ConnParams;

/// Runs the watchdog until `shutdown` turns true. Alert transitions are logged and sent to
/// `alerts` (the webhook notifier), when given; after each poll walrus's own slot's health
/// goes to `health` (the replication loop).
pub async fn run(
    config: Config,
    alerts: Option<mpsc::UnboundedSender<Alert>>,
    health: watch::Sender<SlotHealth>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slot = config.source.slot.clone();
    let span = tracing::info_span!("watchdog", slot = %slot);
    async move {
        let params = match ConnParams::from_config(&config.source) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "watchdog cannot start");
                return;
            }
        };
        let interval = Duration::from_millis(config.watchdog.interval_ms);
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut evaluator = Evaluator::new(config.watchdog.clone());
        let mut book = AlertBook::new();
        let mut client: Option<Client> = None;
        let mut failing = false;
        tracing::info!(interval_ms = config.watchdog.interval_ms, all_slots = config.watchdog.all_slots, "watchdog started");
        loop {
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                    continue;
                }
                _ = ticker.tick() => {}
            }
            if client.as_ref().is_none_or(|c| c.is_closed()) {
                client = match params.connect_sql().await {
                    Ok(c) => Some(c),
                    Err(e) => {
                        poll_failed(&mut failing, &e.to_string());
                        continue;
                    }
                };
            }
            let Some(c) = client.as_ref() else { continue };
            let polled = tokio::time::timeout(interval.max(Duration::from_secs(5)), crate::operations::slots::query_slots(c, &slot)).await;
            let mut slots = match polled {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    poll_failed(&mut failing, &e.to_string());
                    client = None;
                    continue;
                }
                Err(_) => {
                    poll_failed(&mut failing, "pg_replication_slots query timed out");
                    client = None;
                    continue;
                }
            };
            if failing {
                tracing::info!("watchdog polls succeed again");
                failing = false;
            }
            metrics::counter!(telemetry::WATCHDOG_POLLS_TOTAL, "result" => "ok").increment(1);
            if !config.watchdog.all_slots {
                slots.retain(|s| s.walrus);
            }
            let now_ms = walrus_core::time::now_ms();
            let progress = Status::global().snapshot().progress;
            if let Some(ms) = status::time_lag_ms(&progress, now_ms) {
                metrics::gauge!(telemetry::LAG_MILLISECONDS).set(ms as f64);
            }
            let judged_lag = status::effective_time_lag_ms(&progress, now_ms);
            let conditions = evaluator.evaluate(&mut slots, judged_lag, &slot, Instant::now());
            let transitions = book.update(conditions, &slot, now_ms);
            publish_metrics(&slots);
            let own = slots.iter().find(|s| s.walrus);
            let walrus_lag = own.and_then(|s| s.lag_bytes);
            let wal_status = own.and_then(|s| s.wal_status.clone());
            health.send_if_modified(|h| {
                let changed = h.wal_status != wal_status;
                h.wal_status = wal_status;
                changed
            });
            if let Some(lag) = walrus_lag {
                metrics::gauge!(telemetry::LAG_BYTES).set(lag as f64);
            }
            let firing = book.firing();
            for sev in [Severity::Warning, Severity::Critical] {
                let n = firing.iter().filter(|a| a.severity == sev).count();
                metrics::gauge!(telemetry::ALERTS_FIRING, "severity" => sev.as_str()).set(n as f64);
            }
            Status::global().set_watchdog(slots, walrus_lag, firing, book.walrus_critical());
            for t in transitions {
                log_transition(&t);
                if t.status == AlertStatus::Firing {
                    metrics::counter!(telemetry::ALERTS_TOTAL, "alert" => t.alert.as_str(), "severity" => t.severity.as_str()).increment(1);
                }
                if let Some(tx) = &alerts {
                    let _ = tx.send(t);
                }
            }
        }
        tracing::info!("watchdog stopped");
    }
    .instrument(span)
    .await;
}

fn poll_failed(failing: &mut bool, error: &str) {
    metrics::counter!(telemetry::WATCHDOG_POLLS_TOTAL, "result" => "error").increment(1);
    Status::global().set_watchdog_error(error.to_string());
    // Once per outage at WARN; every further failure at DEBUG.
    if *failing {
        tracing::debug!(error, "watchdog poll failed");
    } else {
        tracing::warn!(
            error,
            "watchdog poll failed; alerts keep their state until a poll succeeds"
        );
        *failing = true;
    }
}

fn publish_metrics(slots: &[SlotReport]) {
    for s in slots {
        let name = s.slot.clone();
        if let Some(lag) = s.lag_bytes {
            metrics::gauge!(telemetry::SLOT_LAG_BYTES, "slot" => name.clone()).set(lag as f64);
        }
        if let Some(r) = s.retained_bytes {
            metrics::gauge!(telemetry::SLOT_RETAINED_WAL_BYTES, "slot" => name.clone())
                .set(r as f64);
        }
        if let Some(safe) = s.safe_wal_size {
            metrics::gauge!(telemetry::SLOT_SAFE_WAL_SIZE_BYTES, "slot" => name.clone())
                .set(safe as f64);
        }
        metrics::gauge!(telemetry::SLOT_ACTIVE, "slot" => name.clone()).set(if s.active {
            1.0
        } else {
            0.0
        });
        if let Some(ws) = &s.wal_status {
            for st in ["reserved", "extended", "unreserved", "lost"] {
                metrics::gauge!(telemetry::SLOT_WAL_STATUS, "slot" => name.clone(), "wal_status" => st)
                    .set(if ws == st { 1.0 } else { 0.0 });
            }
        }
    }
}

/// Structured log of an alert transition: WARN for warnings, ERROR for critical alerts,
/// INFO for resolves.
pub fn log_transition(a: &Alert) {
    let fields = (
        a.id.as_str(),
        a.alert.as_str(),
        a.slot.as_str(),
        a.value,
        a.threshold,
    );
    match (a.status, a.severity) {
        (AlertStatus::Resolved, _) => tracing::info!(
            alert_id = fields.0,
            alert = fields.1,
            alert_slot = fields.2,
            severity = a.severity.as_str(),
            "alert resolved: {}",
            a.summary
        ),
        (AlertStatus::Firing, Severity::Warning) => tracing::warn!(
            alert_id = fields.0,
            alert = fields.1,
            alert_slot = fields.2,
            value = fields.3,
            threshold = fields.4,
            "alert firing: {}",
            a.summary
        ),
        (AlertStatus::Firing, Severity::Critical) => tracing::error!(
            alert_id = fields.0,
            alert = fields.1,
            alert_slot = fields.2,
            value = fields.3,
            threshold = fields.4,
            "alert firing: {}",
            a.summary
        ),
    }
}
