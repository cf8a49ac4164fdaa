//! The PostgreSQL source of walrus.
//!
//! ```text
//!  [source] config ──▶ conn (URL, TLS) ──▶ setup (publication, slot checks)
//!                                              │
//!  pgwire-replication ──XLogData──▶ pgoutput::Decoder ──▶ convert (RelationCache, types)
//!        ▲                                                   │ ChangeEvent
//!        │ update_applied_lsn                                ▼
//!   AckTracker ◀── Delivered ◀── sink task ◀── Batch ◀── JSON encoder (source::run)
//! ```
//!
//! - [`pgoutput`]: decoding of every pgoutput message, and the relation cache.
//! - [`types`]: typed values from pgoutput's text format; [`binary`]: from its binary format.
//! - [`catalog`]: primary keys and non-built-in types, read from the catalog.
//! - [`conn`]: connection parameters and TLS.
//! - [`setup`]: publication and slot creation and validation.
//! - [`snapshot`]: the consistent, parallel, resumable initial snapshot.
//! - [`incremental`]: incremental snapshots on demand (signal table, watermarks).
//! - [`source`]: the replication loop with exact LSN confirmation.
//! - [`check`]: the preflight behind `walrus check`.
//! - [`watchdog`]: the slot watchdog on its own SQL connection.
//! - [`heartbeat`]: heartbeat messages that keep walrus's slot moving.
//! - [`outbox`]: deleting rows of keep-rows outbox tables once the broker confirmed them.

pub mod binary;
pub mod catalog;
pub mod check;
pub mod conn;
pub mod convert;
pub mod error;
pub mod heartbeat;
pub mod incremental;
pub mod outbox;
pub mod pgoutput;
pub mod progress;
pub mod setup;
pub mod snapshot;
pub mod source;
pub mod types;
pub mod watchdog;

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
