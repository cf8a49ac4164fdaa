//! The sink contract: how encoded events leave walrus, and when they count as delivered.
//!
//! The pipeline hands a sink [`Record`]s strictly in source order, in batches, through
//! [`Sink::send`]. A sink reports progress through the [`Delivered`] counter it was given at
//! construction: the number of records, counted from the start of the session, such that
//! **every** record up to and including that one is durable at the destination. The counter
//! is the only thing that lets a WAL position be confirmed to PostgreSQL, so:
//!
//! - it may only count a record once the destination has it durably (the file sink: written
//!   and flushed, fsynced when configured; Kafka: a successful delivery report with
//!   `acks=all`);
//! - it must be a contiguous prefix: a sink whose deliveries complete out of order (Kafka
//!   partitions) advances it only over the delivered prefix
//!   ([`crate::ack::DeliveryWindow`] does that bookkeeping);
//! - it never goes backwards;
//! - a record that cannot be delivered is an error from `send` or `flush`, never a silent
//!   skip: the pipeline then stops and the slot keeps the WAL.
//!
//! A sink that re-delivers after a crash (at-least-once) is correct: PostgreSQL resends
//! everything after the confirmed LSN.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::error::SinkError;

/// One encoded event, routed to its topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Destination topic (for file sinks, written into each line).
    pub topic: Arc<str>,
    /// Encoded key (JSON bytes for the JSON format); `None` is a null key.
    pub key: Option<Bytes>,
    /// Encoded value; `None` is a tombstone.
    pub value: Option<Bytes>,
    /// Message headers (event id, op, table, ...), for sinks that carry them.
    pub headers: Vec<(Arc<str>, Bytes)>,
    /// Event time in milliseconds since the Unix epoch (the commit time).
    pub timestamp_ms: i64,
}

impl Record {
    /// Approximate bytes held in memory, for the in-flight budget.
    pub fn size(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.topic.len()
            + self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + headers
            + 64
    }
}

/// Why the pipeline asks a sink to flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushReason {
    /// No more input is waiting; deliver what was sent so progress can be confirmed.
    Idle,
    /// The flush interval elapsed while input kept coming.
    Interval,
    /// The pipeline is stopping: everything sent must be delivered (or fail) before
    /// `flush` returns.
    Shutdown,
}

/// The delivered-records counter shared between a sink and the pipeline.
///
/// The value is a count of records from the start of the session; see the module docs for
/// the contract. Cloning shares the counter.
#[derive(Clone, Debug, Default)]
pub struct Delivered(Arc<AtomicU64>);

impl Delivered {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records delivered contiguously so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Advances the counter to `count`; a smaller value is ignored, so the counter never
    /// moves backwards even if a sink reports an old position.
    pub fn advance_to(&self, count: u64) {
        self.0.fetch_max(count, Ordering::AcqRel);
    }
}

/// A destination for encoded records. See the module docs for the durability contract.
pub trait Sink: Send + 'static {
    /// A short name for logs and metrics (`file`, `stdout`, `kafka`).
    fn name(&self) -> &'static str;

    /// Takes the next records, in order. May wait for capacity (back-pressure); returning
    /// does not mean delivered. An error stops the pipeline.
    fn send(&mut self, records: Vec<Record>) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Moves records sent so far towards delivery and reports them on the [`Delivered`]
    /// counter. With [`FlushReason::Shutdown`] it returns only once every record sent is
    /// delivered, or with an error.
    fn flush(&mut self, reason: FlushReason) -> impl Future<Output = Result<(), SinkError>> + Send;
}
