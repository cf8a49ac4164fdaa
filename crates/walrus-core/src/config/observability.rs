//! `[watchdog]`, `[alerts]`, `[heartbeat]` and `[admin]`: keeping the slot from filling the
//! primary's disk, and making walrus's state visible.
//!
//! Every interval and threshold is configurable so that tests (and impatient operators) can
//! use short ones; the defaults suit a production primary with a few hundred GB of disk.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{ConfigError, Secret};

/// Default time between two watchdog polls of `pg_replication_slots`.
pub const DEFAULT_WATCHDOG_INTERVAL_MS: u64 = 5_000;
/// Default slot lag (bytes behind `pg_current_wal_lsn()`) that raises a warning: 1 GiB.
pub const DEFAULT_LAG_WARNING_BYTES: u64 = 1 << 30;
/// Default slot lag that raises a critical alert: 10 GiB.
pub const DEFAULT_LAG_CRITICAL_BYTES: u64 = 10 << 30;
/// Default time lag (now minus the commit time of the newest delivered transaction) that
/// raises a warning: 5 minutes.
pub const DEFAULT_TIME_LAG_WARNING_MS: u64 = 5 * 60 * 1000;
/// Default time lag that raises a critical alert: 30 minutes.
pub const DEFAULT_TIME_LAG_CRITICAL_MS: u64 = 30 * 60 * 1000;
/// Default share of `max_slot_wal_keep_size` retained by a slot that raises a warning.
pub const DEFAULT_WAL_KEEP_WARNING_RATIO: f64 = 0.5;
/// Default share of `max_slot_wal_keep_size` retained by a slot that raises a critical alert.
pub const DEFAULT_WAL_KEEP_CRITICAL_RATIO: f64 = 0.8;
/// Default time WAL may grow while a slot's confirmed position stands still before the slot
/// counts as stuck: 10 minutes.
pub const DEFAULT_STUCK_AFTER_MS: u64 = 10 * 60 * 1000;
/// Default time between two heartbeats.
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 10_000;
/// Default prefix of heartbeat logical messages.
pub const DEFAULT_HEARTBEAT_PREFIX: &str = "walrus.heartbeat";
/// Default address of the admin HTTP server: loopback only.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9187";
/// Default timeout of one webhook request.
pub const DEFAULT_WEBHOOK_TIMEOUT_MS: u64 = 5_000;

/// `[watchdog]`: a task on its own SQL connection that polls every replication slot of the
/// cluster and raises alerts before a slot fills the disk.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchdogConfig {
    /// Run the watchdog.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Time between polls, in milliseconds.
    #[serde(default = "default_watchdog_interval_ms")]
    pub interval_ms: u64,
    /// Watch every slot of the cluster (abandoned slots of other tools fill the disk too),
    /// not only walrus's.
    #[serde(default = "yes")]
    pub all_slots: bool,
    /// Slot lag in bytes (`pg_current_wal_lsn() - confirmed_flush_lsn`) for a warning.
    #[serde(default = "default_lag_warning_bytes")]
    pub lag_warning_bytes: u64,
    /// Slot lag in bytes for a critical alert (also makes `/readyz` fail).
    #[serde(default = "default_lag_critical_bytes")]
    pub lag_critical_bytes: u64,
    /// walrus's time lag in milliseconds for a warning.
    #[serde(default = "default_time_lag_warning_ms")]
    pub time_lag_warning_ms: u64,
    /// walrus's time lag in milliseconds for a critical alert.
    #[serde(default = "default_time_lag_critical_ms")]
    pub time_lag_critical_ms: u64,
    /// Share (0-1) of `max_slot_wal_keep_size` a slot may retain before a warning: when the
    /// slot passes the limit PostgreSQL invalidates it and its changes are lost.
    #[serde(default = "default_wal_keep_warning_ratio")]
    pub wal_keep_warning_ratio: f64,
    /// Share of `max_slot_wal_keep_size` for a critical alert.
    #[serde(default = "default_wal_keep_critical_ratio")]
    pub wal_keep_critical_ratio: f64,
    /// A slot whose confirmed position has not moved for this long while WAL grew is
    /// stuck (critical), in milliseconds. 0 turns stuck detection off.
    #[serde(default = "default_stuck_after_ms")]
    pub stuck_after_ms: u64,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        WatchdogConfig {
            enabled: true,
            interval_ms: DEFAULT_WATCHDOG_INTERVAL_MS,
            all_slots: true,
            lag_warning_bytes: DEFAULT_LAG_WARNING_BYTES,
            lag_critical_bytes: DEFAULT_LAG_CRITICAL_BYTES,
            time_lag_warning_ms: DEFAULT_TIME_LAG_WARNING_MS,
            time_lag_critical_ms: DEFAULT_TIME_LAG_CRITICAL_MS,
            wal_keep_warning_ratio: DEFAULT_WAL_KEEP_WARNING_RATIO,
            wal_keep_critical_ratio: DEFAULT_WAL_KEEP_CRITICAL_RATIO,
            stuck_after_ms: DEFAULT_STUCK_AFTER_MS,
        }
    }
}

/// Payload shape of the alert webhook.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// walrus's own JSON object (see docs/operations.md).
    #[default]
    Json,
    /// `{"text": ..., "attachments": [...]}`, accepted by Slack incoming webhooks and by
    /// Mattermost, Rocket.Chat and others.
    Slack,
}

/// `[alerts]`: where alerts go besides the log.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// URL to POST each alert (firing and resolved) to; none by default.
    #[serde(default)]
    pub webhook_url: Option<Secret>,
    /// Payload shape.
    #[serde(default)]
    pub webhook_format: WebhookFormat,
    /// Timeout of one request, in milliseconds; failed requests are retried on the next
    /// transition only (alerts are also in the log and in `/status`).
    #[serde(default = "default_webhook_timeout_ms")]
    pub webhook_timeout_ms: u64,
}

/// `[heartbeat]`: keeps walrus's slot moving on a quiet database, and proves end to end
/// that the pipeline delivers.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// Emit heartbeats.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Time between heartbeats, in milliseconds.
    #[serde(default = "default_heartbeat_interval_ms")]
    pub interval_ms: u64,
    /// Prefix of the non-transactional logical message
    /// (`pg_logical_emit_message(false, prefix, ...)`); messages with it are walrus's own.
    #[serde(default = "default_heartbeat_prefix")]
    pub prefix: String,
    /// SQL run on walrus's database with each heartbeat, like Debezium's
    /// `heartbeat.action.query` (e.g. an UPDATE of a published heartbeat table).
    #[serde(default)]
    pub action_query: Option<String>,
    /// Also deliver each heartbeat as an event to `topic`.
    #[serde(default)]
    pub emit_events: bool,
    /// Topic of heartbeat events; default `__debezium-heartbeat.<topic_prefix>`, Debezium's.
    #[serde(default)]
    pub topic: Option<String>,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            enabled: true,
            interval_ms: DEFAULT_HEARTBEAT_INTERVAL_MS,
            prefix: DEFAULT_HEARTBEAT_PREFIX.into(),
            action_query: None,
            emit_events: false,
            topic: None,
        }
    }
}

impl HeartbeatConfig {
    /// The topic of heartbeat events for this topic prefix.
    pub fn topic_for(&self, topic_prefix: &str) -> String {
        self.topic
            .clone()
            .unwrap_or_else(|| format!("__debezium-heartbeat.{topic_prefix}"))
    }
}

/// `[admin]`: the HTTP server with `/healthz`, `/readyz`, `/metrics` and `/status`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Serve the admin endpoints.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Address to listen on; loopback by default. `walrus status` reads `/status` here.
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    /// When set, every endpoint but `/healthz` wants `Authorization: Bearer <token>`.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Record `walrus_commit_to_delivery_seconds`, a histogram of the time from each
    /// transaction's commit to the sink's delivery report of its last record. Off by
    /// default: it adds a lock per batch and per delivery report.
    #[serde(default)]
    pub commit_latency: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            listen: default_admin_listen(),
            token: None,
            commit_latency: false,
        }
    }
}

fn yes() -> bool {
    true
}
fn default_watchdog_interval_ms() -> u64 {
    DEFAULT_WATCHDOG_INTERVAL_MS
}
fn default_lag_warning_bytes() -> u64 {
    DEFAULT_LAG_WARNING_BYTES
}
fn default_lag_critical_bytes() -> u64 {
    DEFAULT_LAG_CRITICAL_BYTES
}
fn default_time_lag_warning_ms() -> u64 {
    DEFAULT_TIME_LAG_WARNING_MS
}
fn default_time_lag_critical_ms() -> u64 {
    DEFAULT_TIME_LAG_CRITICAL_MS
}
fn default_wal_keep_warning_ratio() -> f64 {
    DEFAULT_WAL_KEEP_WARNING_RATIO
}
fn default_wal_keep_critical_ratio() -> f64 {
    DEFAULT_WAL_KEEP_CRITICAL_RATIO
}
fn default_stuck_after_ms() -> u64 {
    DEFAULT_STUCK_AFTER_MS
}
fn default_heartbeat_interval_ms() -> u64 {
    DEFAULT_HEARTBEAT_INTERVAL_MS
}
fn default_heartbeat_prefix() -> String {
    DEFAULT_HEARTBEAT_PREFIX.into()
}
fn default_admin_listen() -> SocketAddr {
    DEFAULT_ADMIN_LISTEN.parse().expect("valid default address")
}
fn default_webhook_timeout_ms() -> u64 {
    DEFAULT_WEBHOOK_TIMEOUT_MS
}

/// Checks the observability sections; called by [`super::Config::validate`].
pub(super) fn validate(
    w: &WatchdogConfig,
    a: &AlertsConfig,
    h: &HeartbeatConfig,
) -> Result<(), ConfigError> {
    let bad = |key: &str, message: &str| ConfigError::Key {
        key: key.into(),
        message: message.into(),
    };
    if w.interval_ms < 10 {
        return Err(bad("watchdog.interval_ms", "must be at least 10"));
    }
    if w.lag_warning_bytes > w.lag_critical_bytes {
        return Err(bad(
            "watchdog.lag_warning_bytes",
            "must not be above watchdog.lag_critical_bytes",
        ));
    }
    if w.time_lag_warning_ms > w.time_lag_critical_ms {
        return Err(bad(
            "watchdog.time_lag_warning_ms",
            "must not be above watchdog.time_lag_critical_ms",
        ));
    }
    for (key, r) in [
        ("watchdog.wal_keep_warning_ratio", w.wal_keep_warning_ratio),
        (
            "watchdog.wal_keep_critical_ratio",
            w.wal_keep_critical_ratio,
        ),
    ] {
        if !(r > 0.0 && r <= 1.0) {
            return Err(bad(key, "must be a share above 0 and at most 1, e.g. 0.8"));
        }
    }
    if w.wal_keep_warning_ratio > w.wal_keep_critical_ratio {
        return Err(bad(
            "watchdog.wal_keep_warning_ratio",
            "must not be above watchdog.wal_keep_critical_ratio",
        ));
    }
    if let Some(url) = &a.webhook_url {
        let u = url.expose();
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(bad(
                "alerts.webhook_url",
                "must be an http:// or https:// URL",
            ));
        }
    }
    if h.interval_ms < 10 {
        return Err(bad("heartbeat.interval_ms", "must be at least 10"));
    }
    if h.prefix.is_empty() {
        return Err(bad("heartbeat.prefix", "must not be empty"));
    }
    Ok(())
}
