//! walrus engine core.
//!
//! Everything a source, a sink and the binary share, with no heavy dependency:
//!
//! ```text
//!  source connector ──ChangeEvent──▶ router + format ──Record──▶ pipeline ──▶ Sink
//!        ▲                                                          │
//!        └──────────── confirmed LSN ◀── AckTracker ◀── delivered ──┘
//! ```
//!
//! - [`lsn`]: WAL positions.
//! - [`event`], [`value`]: the change-event model.
//! - [`format`]: Debezium's JSON envelope.
//! - [`sink`]: the sink trait and its durability contract, and the encoded [`sink::Record`].
//! - [`ack`]: from sink deliveries to the LSN that may be confirmed to PostgreSQL.
//! - [`pipeline`]: the sink task, the in-flight byte budget and delivery progress.
//! - [`config`]: the TOML configuration, its defaults and validation.
//! - [`error`]: how every error is classified (retryable or fatal) with an operator hint.
//! - [`telemetry`]: metric names, described once.

pub mod ack;
pub mod config;
pub mod error;
pub mod event;
pub mod format;
pub mod lsn;
pub mod pipeline;
pub mod sink;
pub mod telemetry;
pub mod value;

pub use lsn::Lsn;
