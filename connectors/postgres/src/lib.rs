//! The PostgreSQL source of walrus.
//!
//! ```text
//!  [source] config ──▶ conn (URL, TLS) ──▶ operations::setup (publication, slot checks)
//!                                              │
//!  replication client ──XLogData──▶ decoding (pgoutput ▸ convert ▸ text/binary values)
//!        ▲                                                   │ ChangeEvent
//!        │ confirmed LSN                                     ▼
//!   AckTracker ◀── Delivered ◀── sink task ◀── Batch ◀── encoder (replication::session)
//!                                                   ▲
//!                           snapshots (initial, incremental) ── op `r` events
//! ```
//!
//! - [`replication`]: the replication loop with exact LSN confirmation, heartbeats and
//!   outbox housekeeping.
//! - [`decoding`]: pgoutput messages, text and binary values, conversion to change events,
//!   and the catalog reads they need.
//! - [`snapshots`]: the initial snapshot and incremental snapshots, with their progress.
//! - [`operations`]: setup (publication, slot), `walrus check`, and the slot watchdog.
//! - [`conn`]: connection parameters and TLS; [`error`]: the crate's error type;
//!   [`server`]: the server's PostgreSQL major, what walrus does differently on it, and the
//!   configuration it refuses there.
//!
//! Dependencies point one way: `replication` uses `snapshots`, `decoding` and `operations`;
//! `snapshots` use `decoding` and `operations`; `decoding` and `operations` use only `conn`,
//! `server` and `error`.

pub mod conn;
pub mod decoding;
pub mod error;
pub mod operations;
pub mod replication;
pub mod server;
pub mod snapshots;

pub use error::PgError;

/// The emitter for this source's events: the `[format]` encoders and the emit options.
/// `headers`: whether row records carry walrus's headers; `count_events`: whether they count
/// in `walrus_events_total` (streamed events do, snapshot rows have their own counter).
pub fn emitter(
    config: &walrus_core::config::Config,
    database: &str,
    headers: bool,
    count_events: bool,
) -> walrus_core::emit::Emitter {
    let (key, value) =
        walrus_core::format::encoders(&config.format, &config.topic_prefix, database);
    walrus_core::emit::Emitter::new(
        key,
        value,
        walrus_core::emit::EmitOptions {
            tombstones_on_delete: config.format.tombstones_on_delete,
            headers,
            message_topic: std::sync::Arc::from(format!("{}.message", config.topic_prefix)),
            count_events,
            transaction_topic: config
                .transactions
                .enabled
                .then(|| std::sync::Arc::from(config.transactions.topic_for(&config.topic_prefix))),
        },
    )
}
