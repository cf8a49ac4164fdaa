//! Replication: the streaming half of the connector, from the slot to the sink and back to
//! the slot's confirmed position.
//!
//! ```text
//!  replication conn ──XLogData──▶ session (decode, convert, emit) ──▶ sink task
//!        ▲                              │ heartbeat messages recognised  │
//!        └── confirmed LSN ◀── AckTracker ◀────────── Delivered ◀────────┘
//!  heartbeat task ── pg_logical_emit_message ──▶ (WAL, comes back through the slot)
//!  outbox task ── DELETE delivered outbox rows (keep-rows tables)
//! ```
//!
//! - [`session`]: the replication loop with exact LSN confirmation (and the transport glue
//!   to the replication client).
//! - [`heartbeat`]: heartbeat messages that keep walrus's slot moving.
//! - [`outbox`]: deleting rows of keep-rows outbox tables once the broker confirmed them.
//! - [`spool`]: streamed transactions (`[source] streaming`) kept until their commit.

pub mod heartbeat;
pub mod outbox;
pub mod session;
pub mod spool;

pub use session::{run, SessionSummary};
