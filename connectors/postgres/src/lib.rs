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

/// The JSON encoder options for this source's events.
pub fn json_options(
    config: &walrus_core::config::Config,
    database: &str,
) -> walrus_core::format::JsonOptions {
    walrus_core::format::JsonOptions::from_config(
        &config.format,
        config.topic_prefix.clone(),
        database,
    )
}
