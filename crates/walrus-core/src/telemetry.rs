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
/// Time from commit to sink delivery.
pub const COMMIT_TO_DELIVERY_SECONDS: &str = "walrus_commit_to_delivery_seconds";

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
        "Time from a transaction's commit to the sink's delivery of its last record."
    );
}
