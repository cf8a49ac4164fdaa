//! Metric names, in one place, each described once.
//!
//! Names follow `walrus_<thing>_<unit>[_total]`. Code records through the `metrics` facade
//! with these constants; [`describe`] registers units and help texts with whatever
//! recorder the binary installed (the Prometheus exporter, or none).

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Change events produced by the source, labelled by `table` and `op`.
pub const EVENTS_TOTAL: &str = "walrus_events_total";
/// Encoded bytes handed to the sink.
pub const SINK_BYTES_TOTAL: &str = "walrus_sink_bytes_total";
/// Records delivered by the sink (contiguous prefix).
pub const SINK_DELIVERED_TOTAL: &str = "walrus_sink_delivered_records_total";
/// Bytes sent to the sink and not yet delivered.
pub const SINK_IN_FLIGHT_BYTES: &str = "walrus_sink_in_flight_bytes";
/// Transactions committed at the source and seen by walrus.
pub const TRANSACTIONS_TOTAL: &str = "walrus_transactions_total";
/// Newest WAL position received from PostgreSQL.
pub const RECEIVED_LSN: &str = "walrus_received_lsn_bytes";
/// WAL position last confirmed to PostgreSQL.
pub const CONFIRMED_LSN: &str = "walrus_confirmed_lsn_bytes";
/// Pipeline restarts after retryable errors, labelled by `kind`.
pub const RETRIES_TOTAL: &str = "walrus_retries_total";
/// Errors, labelled by `kind`.
pub const ERRORS_TOTAL: &str = "walrus_errors_total";
/// Time from commit to sink delivery (recorded with `[admin] commit_latency = true`).
pub const COMMIT_TO_DELIVERY_SECONDS: &str = "walrus_commit_to_delivery_seconds";
/// Bucket upper bounds of [`COMMIT_TO_DELIVERY_SECONDS`], in seconds: fine below 50 ms,
/// where the latency goals are, so quantiles read from the buckets are close.
pub const COMMIT_TO_DELIVERY_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.0175, 0.02, 0.025, 0.03,
    0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
];
/// walrus's own slot: bytes between `pg_current_wal_lsn()` and its `confirmed_flush_lsn`.
pub const LAG_BYTES: &str = "walrus_lag_bytes";
/// walrus's time lag: now minus the commit time of the newest delivered transaction or
/// heartbeat.
pub const LAG_MILLISECONDS: &str = "walrus_lag_milliseconds";
/// Every watched slot: bytes between `pg_current_wal_lsn()` and `confirmed_flush_lsn`,
/// labelled by `slot`.
pub const SLOT_LAG_BYTES: &str = "walrus_slot_lag_bytes";
/// Every watched slot: WAL retained from `restart_lsn`, labelled by `slot`.
pub const SLOT_RETAINED_WAL_BYTES: &str = "walrus_slot_retained_wal_bytes";
/// Every watched slot: `safe_wal_size` (WAL that may still be written before the slot is
/// lost), labelled by `slot`; absent without `max_slot_wal_keep_size`.
pub const SLOT_SAFE_WAL_SIZE_BYTES: &str = "walrus_slot_safe_wal_size_bytes";
/// Every watched slot: 1 while a process streams from it, labelled by `slot`.
pub const SLOT_ACTIVE: &str = "walrus_slot_active";
/// Every watched slot: 1 for its current `wal_status`, labelled by `slot` and `wal_status`.
pub const SLOT_WAL_STATUS: &str = "walrus_slot_wal_status";
/// Alerts firing now, labelled by `severity`.
pub const ALERTS_FIRING: &str = "walrus_alerts_firing";
/// Alerts fired, labelled by `alert` and `severity`.
pub const ALERTS_TOTAL: &str = "walrus_alerts_total";
/// Webhook deliveries that failed.
pub const WEBHOOK_FAILURES_TOTAL: &str = "walrus_webhook_failures_total";
/// Heartbeat messages written to PostgreSQL.
pub const HEARTBEATS_SENT_TOTAL: &str = "walrus_heartbeats_sent_total";
/// Heartbeat messages that came back through walrus's slot.
pub const HEARTBEATS_RECEIVED_TOTAL: &str = "walrus_heartbeats_received_total";
/// Watchdog polls of `pg_replication_slots`, labelled by `result` (`ok` or `error`).
pub const WATCHDOG_POLLS_TOTAL: &str = "walrus_watchdog_polls_total";
/// 1 for the pipeline's current state, labelled by `state`.
pub const PIPELINE_STATE: &str = "walrus_pipeline_state";
/// Rows read by the initial snapshot, labelled by `table`.
pub const SNAPSHOT_ROWS_TOTAL: &str = "walrus_snapshot_rows_total";
/// Tables the initial snapshot still has to read.
pub const SNAPSHOT_TABLES_REMAINING: &str = "walrus_snapshot_tables_remaining";
/// The planner's estimate of a table's rows when its snapshot started, labelled by
/// `table` (with `walrus_snapshot_rows_total`, the fraction done).
pub const SNAPSHOT_ESTIMATED_ROWS: &str = "walrus_snapshot_estimated_rows";
/// Transactions PostgreSQL streamed while they ran (`[source] streaming`), labelled by
/// `outcome` (`committed` or `aborted`).
pub const STREAMED_TRANSACTIONS_TOTAL: &str = "walrus_streamed_transactions_total";
/// Bytes of streamed transactions' messages spooled (memory and files alike).
pub const SPOOL_BYTES_TOTAL: &str = "walrus_spool_bytes_total";
/// Bytes the spools of the open streamed transactions hold now (memory and files), the
/// figure `source.spool_max_bytes` limits.
pub const SPOOL_OPEN_BYTES: &str = "walrus_spool_open_bytes";

/// Every metric name walrus records, for documentation checks and tests.
pub const ALL: &[&str] = &[
    EVENTS_TOTAL,
    SINK_BYTES_TOTAL,
    SINK_DELIVERED_TOTAL,
    SINK_IN_FLIGHT_BYTES,
    TRANSACTIONS_TOTAL,
    RECEIVED_LSN,
    CONFIRMED_LSN,
    RETRIES_TOTAL,
    ERRORS_TOTAL,
    COMMIT_TO_DELIVERY_SECONDS,
    LAG_BYTES,
    LAG_MILLISECONDS,
    SLOT_LAG_BYTES,
    SLOT_RETAINED_WAL_BYTES,
    SLOT_SAFE_WAL_SIZE_BYTES,
    SLOT_ACTIVE,
    SLOT_WAL_STATUS,
    ALERTS_FIRING,
    ALERTS_TOTAL,
    WEBHOOK_FAILURES_TOTAL,
    HEARTBEATS_SENT_TOTAL,
    HEARTBEATS_RECEIVED_TOTAL,
    WATCHDOG_POLLS_TOTAL,
    PIPELINE_STATE,
    SNAPSHOT_ROWS_TOTAL,
    SNAPSHOT_TABLES_REMAINING,
    SNAPSHOT_ESTIMATED_ROWS,
    STREAMED_TRANSACTIONS_TOTAL,
    SPOOL_BYTES_TOTAL,
    SPOOL_OPEN_BYTES,
];

/// Registers every metric's unit and description. Call once after installing a recorder.
pub fn describe() {
    describe_counter!(
        EVENTS_TOTAL,
        Unit::Count,
        "Change events produced by the source."
    );
    describe_counter!(
        SINK_BYTES_TOTAL,
        Unit::Bytes,
        "Encoded bytes handed to the sink."
    );
    describe_counter!(
        SINK_DELIVERED_TOTAL,
        Unit::Count,
        "Records the sink confirmed delivered, as a contiguous prefix."
    );
    describe_gauge!(
        SINK_IN_FLIGHT_BYTES,
        Unit::Bytes,
        "Bytes handed to the sink and not yet delivered."
    );
    describe_counter!(
        STREAMED_TRANSACTIONS_TOTAL,
        Unit::Count,
        "Transactions PostgreSQL streamed while they ran, by outcome (committed, aborted)."
    );
    describe_counter!(
        SPOOL_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes of streamed transactions' messages spooled until their commit."
    );
    describe_gauge!(
        SPOOL_OPEN_BYTES,
        Unit::Bytes,
        "Bytes the spools of open streamed transactions hold now (limited by source.spool_max_bytes)."
    );
    describe_counter!(
        TRANSACTIONS_TOTAL,
        Unit::Count,
        "Source transactions processed."
    );
    describe_gauge!(RECEIVED_LSN, Unit::Bytes, "Newest WAL position received.");
    describe_gauge!(
        CONFIRMED_LSN,
        Unit::Bytes,
        "WAL position confirmed to PostgreSQL."
    );
    describe_counter!(
        RETRIES_TOTAL,
        Unit::Count,
        "Pipeline restarts after retryable errors."
    );
    describe_counter!(ERRORS_TOTAL, Unit::Count, "Errors by kind.");
    describe_histogram!(
        COMMIT_TO_DELIVERY_SECONDS,
        Unit::Seconds,
        "Time from a transaction's commit to the sink's delivery report of its last record (opt-in)."
    );
    describe_gauge!(
        LAG_BYTES,
        Unit::Bytes,
        "walrus's slot: WAL bytes between pg_current_wal_lsn() and confirmed_flush_lsn."
    );
    describe_gauge!(
        LAG_MILLISECONDS,
        Unit::Milliseconds,
        "Now minus the commit time of the newest delivered transaction or heartbeat."
    );
    describe_gauge!(
        SLOT_LAG_BYTES,
        Unit::Bytes,
        "Per slot: WAL bytes between pg_current_wal_lsn() and confirmed_flush_lsn."
    );
    describe_gauge!(
        SLOT_RETAINED_WAL_BYTES,
        Unit::Bytes,
        "Per slot: WAL retained from restart_lsn."
    );
    describe_gauge!(
        SLOT_SAFE_WAL_SIZE_BYTES,
        Unit::Bytes,
        "Per slot: WAL that can still be written before the slot is invalidated."
    );
    describe_gauge!(
        SLOT_ACTIVE,
        Unit::Count,
        "Per slot: 1 while a process streams from it."
    );
    describe_gauge!(
        SLOT_WAL_STATUS,
        Unit::Count,
        "Per slot: 1 for its current wal_status."
    );
    describe_gauge!(ALERTS_FIRING, Unit::Count, "Alerts firing now.");
    describe_counter!(ALERTS_TOTAL, Unit::Count, "Alerts fired.");
    describe_counter!(
        WEBHOOK_FAILURES_TOTAL,
        Unit::Count,
        "Alert webhook requests that failed."
    );
    describe_counter!(
        HEARTBEATS_SENT_TOTAL,
        Unit::Count,
        "Heartbeat messages written to PostgreSQL."
    );
    describe_counter!(
        HEARTBEATS_RECEIVED_TOTAL,
        Unit::Count,
        "Heartbeat messages received back through walrus's slot."
    );
    describe_counter!(
        WATCHDOG_POLLS_TOTAL,
        Unit::Count,
        "Watchdog polls of pg_replication_slots."
    );
    describe_gauge!(
        PIPELINE_STATE,
        Unit::Count,
        "1 for the pipeline's current state (starting, streaming, retrying, stopped)."
    );
    describe_counter!(
        SNAPSHOT_ROWS_TOTAL,
        Unit::Count,
        "Rows read by the initial snapshot."
    );
    describe_gauge!(
        SNAPSHOT_TABLES_REMAINING,
        Unit::Count,
        "Tables the initial snapshot still has to read."
    );
    describe_gauge!(
        SNAPSHOT_ESTIMATED_ROWS,
        Unit::Count,
        "The planner's row estimate of a table whose snapshot is running."
    );
}
