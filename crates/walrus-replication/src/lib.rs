//! walrus-replication: a PostgreSQL logical replication client, from the socket to
//! pgoutput's bytes, with no walrus types in it.
//!
//! ```text
//! ConnectConfig ──connect──▶ ReplicationClient ──start──▶ ReplicationStream
//!   host, TLS (rustls),        IDENTIFY_SYSTEM            next_batch() ─▶ Frames ─▶ Frame::XLogData { data }
//!   auth (md5, SCRAM)          CREATE_REPLICATION_SLOT    set_flushed(lsn) ─▶ status updates (≤ 1 s)
//!                              simple_query               finish() ─▶ final status, CopyDone
//! ```
//!
//! - `transport`: socket, TLS (the caller's `rustls::ClientConfig`, shared with its SQL
//!   connections), startup with `replication=database`, trust / cleartext / md5 /
//!   SCRAM-SHA-256 authentication with channel binding under TLS.
//! - `version`: which commands and pgoutput options each PostgreSQL major accepts (10–18),
//!   as pure functions.
//! - `client`: commands, then the copy-both stream with proactive, monotonic feedback and a
//!   clean shutdown that loses no acknowledgement.
//! - `frame`: cutting what the socket delivered into messages, zero-copy, checked (the fuzz
//!   target `replication_frames` feeds it arbitrary bytes).
//! - `error`: one error type; [`ReplicationError::is_retryable`] says whether trying again
//!   can help (an unknown option or missing publication cannot).
//!
//! What the bytes inside XLogData mean (pgoutput's Begin, Insert, ...) is the caller's
//! business: this crate moves them, it does not decode them.

mod client;
mod error;
pub mod frame;
mod lsn;
mod transport;
pub mod version;

pub use client::{
    CreatedSlot, IdentifySystem, ReplicationClient, ReplicationStream, Rows, MAX_STATUS_INTERVAL,
};
pub use error::{ReplicationError, Result, ServerError};
pub use frame::{Frame, Frames};
pub use lsn::Lsn;
pub use transport::{tls_server_end_point, ConnectConfig, Host, TlsMode};
pub use version::{
    CreateSlot, OriginFilter, PluginOptions, PluginRequest, ServerVersion, SnapshotAction,
    Streaming,
};
