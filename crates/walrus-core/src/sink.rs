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
//!
//! A sink that commits atomically (Kafka transactions, `[sink] exactly_once`) also needs
//! to know where units of source work end: [`Sink::send_units`] passes [`UnitEnd`]s with
//! the records, and such a sink counts records delivered only once the commit that holds
//! them succeeded, always at a unit's end. It keeps the position of its last commit at the
//! destination, in the same atomic commit, and reports it through
//! [`Sink::resume_position`] when a session starts; the source then drops units at or
//! before it, which PostgreSQL resends when its `confirmed_flush_lsn` lags behind.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::error::SinkError;
use crate::headers::EventHeaders;
use crate::lsn::Lsn;

/// One encoded event, routed to its topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Destination topic (for file sinks, written into each line).
    pub topic: Arc<str>,
    /// Encoded key (JSON bytes for the JSON format); `None` is a null key.
    pub key: Option<Bytes>,
    /// Encoded value; `None` is a tombstone.
    pub value: Option<Bytes>,
    /// walrus's standard headers (`id`, `op`, `table`, `txId`) of a row event, for sinks
    /// that carry headers; `None` on other records and where headers are off.
    pub event_headers: Option<EventHeaders>,
    /// Further headers (Debezium's key-change headers, the outbox router's, `unwrap`'s),
    /// after the standard ones.
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
            + self.event_headers.as_ref().map_or(0, EventHeaders::size)
            + headers
            + 64
    }

    /// Every header as it goes out: the standard ones, then the others.
    pub fn header_pairs(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        let standard = self.event_headers.iter().flat_map(EventHeaders::iter);
        standard.chain(self.headers.iter().map(|(k, v)| (&**k, &v[..])))
    }

    /// How many headers [`Self::header_pairs`] yields.
    pub fn header_count(&self) -> usize {
        self.event_headers.as_ref().map_or(0, EventHeaders::len) + self.headers.len()
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
///
/// A counter made with [`Delivered::with_commit_latency`] also measures, at the moment a
/// sink reports a delivery (for Kafka: in the delivery-report callback), how long after
/// their commit the records became delivered, into
/// [`crate::telemetry::COMMIT_TO_DELIVERY_SECONDS`].
#[derive(Clone, Debug, Default)]
pub struct Delivered(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    count: AtomicU64,
    latency: Option<CommitLatency>,
}

impl Delivered {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// A counter at zero that also records commit-to-delivery latency. It costs a lock
    /// per batch handed over and per delivery report plus a queue entry per commit time, so
    /// it is opt-in (`[admin] commit_latency`).
    pub fn with_commit_latency() -> Self {
        Delivered(Arc::new(Shared {
            count: AtomicU64::new(0),
            latency: Some(CommitLatency::default()),
        }))
    }

    /// True when this counter records commit-to-delivery latency.
    pub fn measures_commit_latency(&self) -> bool {
        self.0.latency.is_some()
    }

    /// Notes the commit times (ms since the Unix epoch) of the records numbered `first_seq`,
    /// `first_seq + 1`, ... Call in order and before the records reach the sink; a no-op
    /// unless the counter measures latency.
    pub fn note_commit_times(&self, first_seq: u64, times_ms: impl Iterator<Item = i64>) {
        if let Some(latency) = &self.0.latency {
            latency.note(first_seq, times_ms);
        }
    }

    /// Records delivered contiguously so far.
    pub fn get(&self) -> u64 {
        self.0.count.load(Ordering::Acquire)
    }

    /// Advances the counter to `count`; a smaller value is ignored, so the counter never
    /// moves backwards even if a sink reports an old position.
    pub fn advance_to(&self, count: u64) {
        let before = self.0.count.fetch_max(count, Ordering::AcqRel);
        if count > before {
            if let Some(latency) = &self.0.latency {
                latency.delivered(count);
            }
        }
    }
}

/// Commit times of records not yet delivered, one entry per run of records sharing a
/// commit time (a transaction, at millisecond resolution): (sequence number of the run's
/// last record, commit time in ms).
#[derive(Debug, Default)]
struct CommitLatency {
    pending: Mutex<VecDeque<(u64, i64)>>,
}

impl CommitLatency {
    fn note(&self, first_seq: u64, times_ms: impl Iterator<Item = i64>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (seq, ms) in (first_seq..).zip(times_ms) {
            match pending.back_mut() {
                Some(last) if last.1 == ms => last.0 = seq,
                _ => pending.push_back((seq, ms)),
            }
        }
    }

    /// Records 1..=count are delivered: every run they complete is measured now.
    fn delivered(&self, count: u64) {
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(&(seq, ms)) = pending.front() {
            if seq > count {
                break;
            }
            pending.pop_front();
            // Commit times have millisecond resolution, so this reads up to 1 ms high; a
            // negative value (clock step) counts as zero.
            let seconds = (now_us - ms * 1000).max(0) as f64 / 1e6;
            metrics::histogram!(crate::telemetry::COMMIT_TO_DELIVERY_SECONDS).record(seconds);
        }
    }
}

/// The end of a unit of source work (a transaction, a non-transactional message, a batch
/// of snapshot rows) inside the records of one [`Sink::send_units`] call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitEnd {
    /// How many of the call's records come before the end (0: the unit ended before the
    /// first record of the call).
    pub records: usize,
    /// The position a restart may skip through once the unit is delivered: a transaction's
    /// commit end LSN, a message's LSN; `None` for snapshot rows, which have none.
    pub lsn: Option<Lsn>,
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

    /// [`Self::send`], told where units of source work end among `records` (in order).
    /// Sinks that commit atomically commit only at such an end; others ignore them.
    fn send_units(
        &mut self,
        records: Vec<Record>,
        ends: Vec<UnitEnd>,
    ) -> impl Future<Output = Result<(), SinkError>> + Send {
        let _ = ends;
        self.send(records)
    }

    /// Called once when a session starts, before any record: the position through which
    /// the destination already holds every unit of work, committed in the same atomic
    /// commit as the records (see the module docs). The source drops units that end at or
    /// before it. `None` (the default) for sinks that keep no position.
    fn resume_position(&mut self) -> impl Future<Output = Result<Option<Lsn>, SinkError>> + Send {
        async { Ok(None) }
    }

    /// Records (counted like [`Delivered`]) that no longer occupy memory in the sink,
    /// delivered or not; the pipeline returns their in-flight budget. `None` (the default)
    /// means the delivered count. A sink that holds delivery until a commit (which must wait
    /// for the end of a source transaction, whatever its size) reports here what it has
    /// handed on, so a transaction larger than the budget cannot stall the pipeline.
    fn settled(&self) -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_runs_complete_only_when_their_last_record_is_delivered() {
        let d = Delivered::with_commit_latency();
        assert!(d.measures_commit_latency());
        // Records 1-3 committed at 10 ms, 4-5 at 20 ms, 6 at 10 ms again (a new run).
        d.note_commit_times(1, [10, 10, 10, 20, 20].into_iter());
        d.note_commit_times(6, [10].into_iter());
        let pending = |d: &Delivered| {
            d.0.latency
                .as_ref()
                .unwrap()
                .pending
                .lock()
                .unwrap()
                .clone()
        };
        assert_eq!(pending(&d), VecDeque::from([(3, 10), (5, 20), (6, 10)]));
        d.advance_to(2);
        assert_eq!(pending(&d).len(), 3);
        d.advance_to(4);
        assert_eq!(pending(&d), VecDeque::from([(5, 20), (6, 10)]));
        d.advance_to(1); // backwards: ignored
        assert_eq!(d.get(), 4);
        d.advance_to(6);
        assert!(pending(&d).is_empty());
    }

    #[test]
    fn plain_counter_ignores_commit_times() {
        let d = Delivered::new();
        assert!(!d.measures_commit_latency());
        d.note_commit_times(1, [1, 2].into_iter());
        d.advance_to(2);
        assert_eq!(d.get(), 2);
    }
}
