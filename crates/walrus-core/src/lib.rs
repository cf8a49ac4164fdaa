//! walrus engine core.
//!
//! Everything a source, a sink and the binary share, with no heavy dependency:
//!
//! ```text
//!  source connector ──ChangeEvent──▶ emit (router + format) ──Record──▶ pipeline ──▶ Sink
//!        ▲                                                          │
//!        └──────────── confirmed LSN ◀── AckTracker ◀── delivered ──┘
//! ```
//!
//! - [`lsn`]: WAL positions.
//! - [`event`], [`value`]: the change-event model.
//! - [`arena`]: shared blocks records' bytes are copied into.
//! - [`emit`]: the one path from a change event to its records (route, encode, headers).
//! - [`ids`]: maps keyed by relation and transaction ids, with a fast hasher.
//! - [`format`]: the encoder interface and Debezium's JSON envelope.
//! - [`sink`]: the sink trait and its durability contract, and the encoded [`sink::Record`].
//! - [`ack`]: from sink deliveries to the LSN that may be confirmed to PostgreSQL.
//! - [`resume`]: dropping what an exactly-once sink already committed, after a restart.
//! - [`pipeline`]: the sink task, the in-flight byte budget and delivery progress.
//! - [`router`]: topics, keys, column filters, headers and the outbox event router.
//! - [`config`]: the TOML configuration, its defaults and validation.
//! - [`error`]: how every error is classified (retryable or fatal) with an operator hint.
//! - [`telemetry`]: metric names, described once.
//! - [`alert`]: slot watchdog thresholds, and alerts that fire and resolve once.
//! - [`time`]: the wall clock in microseconds and milliseconds, and calendar dates.
//! - [`status`]: the pipeline's shared state, behind `/status` and `/readyz`.

pub mod ack;
pub mod alert;
pub mod arena;
pub mod config;
pub mod emit;
pub mod error;
pub mod event;
pub mod format;
pub mod headers;
pub mod ids;
pub mod lsn;
pub mod pipeline;
pub mod resume;
pub mod router;
pub mod selection;
pub mod sink;
pub mod status;
pub mod telemetry;
pub mod time;
pub mod transactions;
pub mod unwrap;
pub mod value;

pub use lsn::Lsn;
