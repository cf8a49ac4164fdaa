//! The sink side of a pipeline: a task that owns the sink, fed in order through a channel,
//! with the memory in flight bounded by bytes.
//!
//! ```text
//!  source task ──reserve(bytes)──▶ budget (semaphore, max_in_flight_bytes)
//!       │                                  ▲ released when delivered
//!       └──Batch──▶ channel ──▶ sink task ──send/flush──▶ Sink ──▶ Delivered counter
//! ```
//!
//! The source reserves budget before it hands over a batch, so when the sink is slow or
//! down the source stops reading the replication stream (back-pressure) instead of
//! buffering without bound; PostgreSQL keeps the WAL meanwhile. The budget is returned only
//! when the sink reports the batch delivered, so memory stays bounded by configuration
//! however large a transaction is.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::error::SinkError;
use crate::lsn::Lsn;
use crate::sink::{Delivered, FlushReason, Record, Sink, UnitEnd};
use crate::telemetry;

/// Default bound on encoded bytes handed to the sink and not yet delivered. 16 MiB keeps
/// the benchmark's throughput into Apache Kafka (W1–W5) with a quarter of the memory of the
/// earlier 64 MiB and a little less CPU per row (docs/benchmarks.md); much smaller windows
/// (4 MiB) starve `linger.ms` batching and `acks=all` round trips.
pub const DEFAULT_MAX_IN_FLIGHT_BYTES: usize = 16 * 1024 * 1024;
/// Default longest time records wait in the sink before a flush while input keeps coming.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Tuning of the sink side.
#[derive(Clone, Copy, Debug)]
pub struct PipelineOptions {
    /// Bound on encoded bytes in flight (handed over, not yet delivered).
    pub max_in_flight_bytes: usize,
    /// Longest time between flushes while input keeps coming.
    pub flush_interval: Duration,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            max_in_flight_bytes: DEFAULT_MAX_IN_FLIGHT_BYTES,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
        }
    }
}

/// Records handed to the sink together, in order.
#[derive(Debug, Default)]
pub struct Batch {
    /// The records.
    pub records: Vec<Record>,
    /// Sum of [`Record::size`].
    pub bytes: usize,
    /// Where units of source work end among the records, in order (for sinks that commit
    /// atomically, [`Sink::send_units`]).
    pub ends: Vec<UnitEnd>,
}

impl Extend<Record> for Batch {
    fn extend<I: IntoIterator<Item = Record>>(&mut self, records: I) {
        for record in records {
            self.push(record);
        }
    }
}

impl Batch {
    /// Appends a record.
    pub fn push(&mut self, record: Record) {
        self.bytes += record.size();
        self.records.push(record);
    }

    /// A unit of source work ends after the records pushed so far: a transaction's commit
    /// (its end LSN), a non-transactional message (its LSN), or a batch of snapshot rows
    /// (`None`).
    pub fn end_unit(&mut self, lsn: Option<Lsn>) {
        self.ends.push(UnitEnd {
            records: self.records.len(),
            lsn,
        });
    }

    /// True when the batch has no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }
}

/// Budget reserved for one batch; hand it back with [`SinkHandle::send`].
#[derive(Debug)]
pub struct Reservation {
    permit: OwnedSemaphorePermit,
}

/// The sink task has stopped; [`SinkHandle::finish`] returns why.
#[derive(Debug, thiserror::Error)]
#[error("the sink task has stopped")]
pub struct SinkStopped;

struct InFlight {
    /// Sequence number of the batch's last record.
    last_seq: u64,
    permits: u32,
}

/// The source's handle on the sink task.
pub struct SinkHandle {
    tx: Option<mpsc::UnboundedSender<(Batch, InFlight)>>,
    budget: Arc<Semaphore>,
    max_permits: u32,
    delivered: Delivered,
    next_seq: u64,
    task: Option<JoinHandle<Result<(), SinkError>>>,
}

impl SinkHandle {
    /// Starts the sink task. `delivered` must be the counter the sink reports on.
    pub fn spawn<S: Sink>(sink: S, delivered: Delivered, opts: PipelineOptions) -> Self {
        // Semaphore permits are u32; budgets above 4 GiB are clamped.
        let max_permits = u32::try_from(opts.max_in_flight_bytes.max(1)).unwrap_or(u32::MAX);
        let budget = Arc::new(Semaphore::new(max_permits as usize));
        let (tx, rx) = mpsc::unbounded_channel();
        let span = tracing::info_span!("sink", sink = sink.name());
        let task = tokio::spawn(
            run_sink(
                sink,
                rx,
                delivered.clone(),
                budget.clone(),
                opts.flush_interval,
            )
            .instrument(span),
        );
        SinkHandle {
            tx: Some(tx),
            budget,
            max_permits,
            delivered,
            next_seq: 0,
            task: Some(task),
        }
    }

    /// Waits until `bytes` fit in the in-flight budget. Cancel-safe: dropping the future
    /// reserves nothing. A batch larger than the whole budget waits for everything else to
    /// be delivered and then goes alone.
    pub async fn reserve(&self, bytes: usize) -> Result<Reservation, SinkStopped> {
        let n = u32::try_from(bytes)
            .unwrap_or(u32::MAX)
            .clamp(1, self.max_permits);
        let permit = self
            .budget
            .clone()
            .acquire_many_owned(n)
            .await
            .map_err(|_| SinkStopped)?;
        Ok(Reservation { permit })
    }

    /// Hands a batch to the sink task; never waits. Returns the sequence number of the
    /// batch's last record (records are numbered from 1 per session).
    pub fn send(&mut self, batch: Batch, reservation: Reservation) -> Result<u64, SinkStopped> {
        if self.delivered.measures_commit_latency() {
            self.delivered.note_commit_times(
                self.next_seq + 1,
                batch.records.iter().map(|r| r.timestamp_ms),
            );
        }
        self.next_seq += batch.len() as u64;
        let permits = reservation.permit.num_permits() as u32;
        metrics::gauge!(telemetry::SINK_IN_FLIGHT_BYTES).increment(permits as f64);
        metrics::counter!(telemetry::SINK_BYTES_TOTAL).increment(batch.bytes as u64);
        reservation.permit.forget();
        let last_seq = self.next_seq;
        self.tx
            .as_ref()
            .ok_or(SinkStopped)?
            .send((batch, InFlight { last_seq, permits }))
            .map_err(|_| SinkStopped)?;
        Ok(last_seq)
    }

    /// Records delivered so far, as a contiguous prefix.
    pub fn delivered(&self) -> u64 {
        self.delivered.get()
    }

    /// Records handed to the sink so far.
    pub fn sent(&self) -> u64 {
        self.next_seq
    }

    /// True when the sink task has ended (with an error, or after [`Self::finish`]).
    pub fn is_stopped(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Closes the channel and waits for the sink to deliver everything it was given (or to
    /// fail). Also returns the sink task's error after [`SinkStopped`]. A second call
    /// returns `Ok`.
    pub async fn finish(&mut self) -> Result<(), SinkError> {
        self.tx = None;
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        match task.await {
            Ok(result) => result,
            Err(join) => Err(SinkError::Unavailable {
                sink: "pipeline",
                message: format!("sink task failed: {join}"),
            }),
        }
    }
}

async fn run_sink<S: Sink>(
    mut sink: S,
    mut rx: mpsc::UnboundedReceiver<(Batch, InFlight)>,
    delivered: Delivered,
    budget: Arc<Semaphore>,
    flush_interval: Duration,
) -> Result<(), SinkError> {
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut unflushed = false;
    let mut last_flush = Instant::now();
    let mut ticker = tokio::time::interval(flush_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported = delivered.get();

    let result = loop {
        let next = if unflushed {
            match rx.try_recv() {
                Ok(item) => Some(item),
                Err(mpsc::error::TryRecvError::Empty) => {
                    if let Err(e) = sink.flush(FlushReason::Idle).await {
                        break Err(e);
                    }
                    unflushed = false;
                    last_flush = Instant::now();
                    release(
                        &mut in_flight,
                        &delivered,
                        sink.settled(),
                        &budget,
                        &mut reported,
                    );
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            }
        } else {
            tokio::select! {
                item = rx.recv() => item,
                _ = ticker.tick() => {
                    // Lets sinks that deliver asynchronously (Kafka) report progress and
                    // surface errors while no input arrives.
                    if let Err(e) = sink.flush(FlushReason::Interval).await {
                        break Err(e);
                    }
                    release(&mut in_flight, &delivered, sink.settled(), &budget, &mut reported);
                    continue;
                }
            }
        };
        match next {
            Some((batch, info)) => {
                in_flight.push_back(info);
                if let Err(e) = sink.send_units(batch.records, batch.ends).await {
                    break Err(e);
                }
                unflushed = true;
                if last_flush.elapsed() >= flush_interval {
                    if let Err(e) = sink.flush(FlushReason::Interval).await {
                        break Err(e);
                    }
                    last_flush = Instant::now();
                }
                release(
                    &mut in_flight,
                    &delivered,
                    sink.settled(),
                    &budget,
                    &mut reported,
                );
            }
            None => {
                let r = sink.flush(FlushReason::Shutdown).await;
                release(
                    &mut in_flight,
                    &delivered,
                    sink.settled(),
                    &budget,
                    &mut reported,
                );
                break r;
            }
        }
    };
    if result.is_err() {
        // Wake a source waiting for budget so it notices the sink is gone.
        budget.close();
    }
    result
}

/// Returns the budget of settled batches (delivered, or handed on by a sink that reports
/// [`Sink::settled`]).
fn release(
    in_flight: &mut VecDeque<InFlight>,
    delivered: &Delivered,
    settled: Option<u64>,
    budget: &Semaphore,
    reported: &mut u64,
) {
    let done = delivered.get();
    let settled = settled.map_or(done, |s| s.max(done));
    let mut freed = 0usize;
    while let Some(front) = in_flight.front() {
        if front.last_seq > settled {
            break;
        }
        freed += front.permits as usize;
        in_flight.pop_front();
    }
    if freed > 0 {
        budget.add_permits(freed);
        metrics::gauge!(telemetry::SINK_IN_FLIGHT_BYTES).decrement(freed as f64);
    }
    if done > *reported {
        metrics::counter!(telemetry::SINK_DELIVERED_TOTAL).increment(done - *reported);
        *reported = done;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// A sink that delivers on flush, and can be told to hold deliveries.
    struct MemSink {
        delivered: Delivered,
        sent: u64,
        hold: Arc<std::sync::atomic::AtomicBool>,
        got: Arc<std::sync::Mutex<Vec<Record>>>,
    }

    impl Sink for MemSink {
        fn name(&self) -> &'static str {
            "mem"
        }
        async fn send(&mut self, records: Vec<Record>) -> Result<(), SinkError> {
            self.sent += records.len() as u64;
            self.got.lock().unwrap().extend(records);
            Ok(())
        }
        async fn flush(&mut self, _reason: FlushReason) -> Result<(), SinkError> {
            if !self.hold.load(std::sync::atomic::Ordering::SeqCst) {
                self.delivered.advance_to(self.sent);
            }
            Ok(())
        }
    }

    fn record(n: usize) -> Record {
        Record {
            topic: Arc::from("t"),
            key: None,
            value: Some(Bytes::from(vec![b'x'; n])),
            event_headers: None,
            headers: vec![],
            timestamp_ms: 0,
        }
    }

    #[tokio::test]
    async fn delivers_in_order_and_bounds_bytes_in_flight() {
        let delivered = Delivered::new();
        let hold = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = MemSink {
            delivered: delivered.clone(),
            sent: 0,
            hold: hold.clone(),
            got: got.clone(),
        };
        let opts = PipelineOptions {
            max_in_flight_bytes: 1000,
            flush_interval: Duration::from_millis(10),
        };
        let mut h = SinkHandle::spawn(sink, delivered, opts);
        let mut b = Batch::default();
        b.push(record(600));
        let r = h.reserve(b.bytes).await.unwrap();
        assert_eq!(h.send(b, r).unwrap(), 1);
        // The sink holds deliveries: a second batch must not fit.
        let mut b2 = Batch::default();
        b2.push(record(600));
        let blocked = tokio::time::timeout(Duration::from_millis(100), h.reserve(b2.bytes)).await;
        assert!(blocked.is_err(), "budget must block while undelivered");
        hold.store(false, std::sync::atomic::Ordering::SeqCst);
        let r2 = tokio::time::timeout(Duration::from_secs(2), h.reserve(b2.bytes))
            .await
            .expect("budget released after delivery")
            .unwrap();
        assert_eq!(h.send(b2, r2).unwrap(), 2);
        h.finish().await.unwrap();
        assert_eq!(got.lock().unwrap().len(), 2);
    }
}
