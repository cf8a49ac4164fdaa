//! The replication loop: from the slot to the sink, confirming exactly what was delivered.
//!
//! ```text
//!  ReplicationStream::next_batch ──▶ Frames (whatever the socket held, one buffer)
//!        │                              │ XLogData: decode (pgoutput) + convert (typed values)
//!        │                              ▼
//!        │                        walrus_core::emit ──▶ Batch ──reserve budget──▶ sink task
//!        │                                                                     │
//!        └──◀── set_flushed ◀── AckTracker ◀── Delivered counter ◀─────────────┘
//! ```
//!
//! The frames are read and decoded in this one task: `next_batch` returns every whole
//! message the socket held as slices of one buffer, so no event crosses a channel or a
//! thread between the socket and the encoder (walrus-replication's module docs).
//!
//! Without `streaming`, PostgreSQL sends a transaction only after it committed, as one
//! contiguous Begin … Commit run, so events are passed on as they arrive — a transaction of
//! any size never sits in memory whole; the in-flight byte budget bounds what waits for
//! the sink. With `streaming` (`[source] streaming`, 14+), a large transaction arrives in
//! Stream Start … Stream Stop blocks while it runs, interleaved with others: its messages
//! go to a spool ([`crate::replication::spool`]) and are replayed at Stream Commit through
//! this same Begin … Commit path (`streamed`), so events and acknowledgement are those of a
//! transaction sent after its commit. Records are numbered in order; at each Commit the [`AckTracker`] notes how many
//! records the transaction ended at and its end LSN, and the LSN reported to PostgreSQL is
//! that of the newest transaction whose records, and all before them, the sink delivered.
//!
//! Feedback: the stream starts with the slot's own confirmed position as already flushed,
//! so connecting confirms nothing new; `set_flushed` only moves forward; status updates go
//! out at least every second, also while the loop waits for sink budget; keepalives are
//! confirmed when nothing is open or in flight, so an idle database does not pin WAL; and
//! on shutdown `finish` sends the final position and `CopyDone` before closing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;
use tracing::Instrument;
use walrus_core::ack::AckTracker;
use walrus_core::alert::SlotHealth;
use walrus_core::config::Config;
use walrus_core::emit::{Emitted, Emitter};
use walrus_core::error::Classify;
use walrus_core::event::{ChangeEvent, SnapshotMarker, SourcePosition};
use walrus_core::pipeline::{Batch, PipelineOptions, SinkHandle};
use walrus_core::resume::ResumeFilter;
use walrus_core::router::Router;
use walrus_core::sink::{Delivered, Record, Sink};
use walrus_core::status::{self, PipelineState, Status};
use walrus_core::telemetry;
use walrus_core::time::now_us;
use walrus_core::Lsn;
use walrus_replication::{
    Frame, Frames, OriginFilter, PluginRequest, ReplicationError, ReplicationStream, Streaming,
};

use crate::conn::ConnParams;
use crate::decoding::convert::{Converter, UpdateOutcome};
use crate::decoding::pgoutput::{Decoder, PgOutputMessage, PG_EPOCH_OFFSET_MICROS};
use crate::error::PgError;
use crate::operations::setup;
use crate::replication::spool::{self, Spools};
use crate::snapshots::initial;

mod streamed;

/// How long shutdown waits for PostgreSQL to take the final status update and end the copy.
const FINAL_ACK_WAIT: Duration = Duration::from_secs(5);

/// What a session ended with.
#[derive(Clone, Debug, Default)]
pub struct SessionSummary {
    /// LSN confirmed to PostgreSQL at the end.
    pub confirmed: Lsn,
    /// Change events produced.
    pub events: u64,
    /// Records delivered by the sink.
    pub delivered: u64,
}

/// `snapshot.mode = initial_only`: read the tables in a new snapshot, deliver them, and
/// stop; no slot is created or kept. An interrupted run resumes from its state file; a
/// finished one does nothing.
async fn run_initial_only<S: Sink>(
    config: &Config,
    params: &ConnParams,
    sql: &tokio_postgres::Client,
    sink: S,
    delivered: Delivered,
    mut shutdown: watch::Receiver<bool>,
) -> Result<SessionSummary, PgError> {
    let path = initial::state_path(config);
    let slot = &config.source.slot;
    let mut state = match initial::State::load(&path, slot, &params.dbname)? {
        Some(st) if st.phase == initial::Phase::Done => {
            tracing::info!(state_file = %path.display(), "snapshot.mode = initial_only: the snapshot is already complete; nothing to do (remove the state file to take it again)");
            return Ok(SessionSummary::default());
        }
        Some(st) => st,
        None => initial::State::new(slot, &params.dbname, initial::Phase::Running),
    };
    let at: String = sql
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .map_err(|e| PgError::sql("reading the current WAL position", e))?
        .get(0);
    let at: Lsn = at.parse().unwrap_or_default();
    let mut handle = SinkHandle::spawn(
        sink,
        delivered.clone(),
        walrus_core::pipeline::PipelineOptions {
            max_in_flight_bytes: config.pipeline.max_in_flight_bytes,
            flush_interval: Duration::from_millis(config.pipeline.flush_interval_ms),
        },
    );
    let result = initial::run(
        config,
        params,
        initial::Source::Fresh,
        at,
        &mut state,
        &path,
        &mut handle,
        &delivered,
        &mut shutdown,
    )
    .await;
    let sink_result = handle.finish().await;
    let outcome = result?;
    sink_result?;
    Ok(SessionSummary {
        confirmed: Lsn::ZERO,
        events: outcome.records,
        delivered: delivered.get(),
    })
}

/// Per-transaction state.
#[derive(Default)]
struct Txn {
    commit_lsn: Lsn,
    xid: Option<u32>,
    commit_time_us: i64,
    next_index: u64,
    origin: Option<String>,
    /// The sink already committed this transaction (exactly-once resume): its changes are
    /// dropped.
    skip: bool,
}

/// Runs one replication session until `shutdown` turns true (returns `Ok`) or an error.
///
/// Sets up the publication and slot, streams from the slot's confirmed position, and on
/// shutdown delivers what it read, confirms it, and closes the connection cleanly.
/// `slot_health`: the watchdog's reports on the slot, when it runs.
pub async fn run<S: Sink>(
    config: &Config,
    mut sink: S,
    delivered: Delivered,
    mut shutdown: watch::Receiver<bool>,
    slot_health: Option<watch::Receiver<SlotHealth>>,
) -> Result<SessionSummary, PgError> {
    let params = ConnParams::from_config(&config.source)?;
    let sql = params.connect_sql().await?;
    // Before anything is created: a setting this server cannot serve stops walrus here,
    // naming the key and the version it needs, instead of failing later in a retry loop.
    let server = crate::server::ServerInfo::query(&sql).await?;
    crate::server::refuse_unsupported(config, &server)?;
    for difference in server.differences() {
        tracing::info!(server = %server.text, "on this PostgreSQL major: {difference}");
    }
    if config.source.binary && !server.has_pgoutput_messages() {
        tracing::warn!(server = %server.text, "source.binary needs PostgreSQL 14; receiving text values (the events are the same)");
    }
    setup::ensure_publication(&sql, config).await?;
    // Before the slot streams, so its rows (commands, watermarks) are in the stream.
    let signal_oid = crate::snapshots::incremental::ensure_signal_table(&sql, config).await?;
    if config.snapshot.mode == walrus_core::config::SnapshotMode::InitialOnly {
        return run_initial_only(config, &params, &sql, sink, delivered, shutdown).await;
    }
    // Creates the slot with an exported snapshot when one is needed (crate::snapshots::initial).
    let mut decision = crate::snapshots::initial::decide(&sql, &params, config).await?;
    let slot = setup::ensure_slot(&sql, config).await?;
    if let Some(row) = crate::operations::slots::query_slot(&sql, &slot.name).await? {
        if let (true, Some(pid)) = (row.active, row.active_pid) {
            return Err(PgError::SlotInUse {
                slot: slot.name.clone(),
                pid,
            });
        }
    }
    // The SQL connection stays open for the session: catalog lookups (primary keys, types)
    // when a Relation message describes a table anew.
    let mut catalog = crate::decoding::catalog::CatalogCache::default();
    catalog.prefetch(&sql, &config.source.publication).await?;
    let start = slot.confirmed_flush_lsn;
    // An exactly-once sink stores its own committed position (walrus_core::resume); what
    // PostgreSQL resends up to it is dropped.
    let resume = ResumeFilter::new(start, sink.resume_position().await?);
    if let Some(through) = resume.through() {
        tracing::info!(slot_confirmed = %start, sink_committed = %through, "the sink already committed changes past the slot's confirmed position; dropping them as PostgreSQL resends them");
    }
    let router = config.router().map_err(|e| PgError::Config {
        key: "routes",
        message: e.to_string(),
    })?;
    // Outbox housekeeping (`delete_after_delivery`) runs beside the session on its own
    // SQL connection and stops after it.
    let outbox_deletes =
        crate::replication::outbox::DeleteQueue::for_tables(router.outbox_tables());
    let (housekeeping_stop, housekeeping_rx) = watch::channel(false);
    let housekeeping = outbox_deletes.clone().map(|queue| {
        let interval = router
            .outbox_tables()
            .filter(|o| o.delete_after_delivery)
            .map(|o| o.delete_interval_ms)
            .min()
            .unwrap_or(walrus_core::router::DEFAULT_OUTBOX_DELETE_INTERVAL_MS);
        tokio::spawn(
            crate::replication::outbox::run(
                params.clone(),
                queue,
                delivered.clone(),
                Duration::from_millis(interval),
                housekeeping_rx,
            )
            .instrument(tracing::info_span!("outbox_housekeeping", slot = %slot.name)),
        )
    });
    // Streamed transactions: asked for per `source.streaming` and the server's major (`on`
    // before 14 was refused above). Spool files of an earlier process are deleted either way.
    let streaming = config.source.streaming.enabled_for(server.major);
    let spools = Spools::new(
        config.spool_dir(),
        config.source.spool_memory_bytes,
        config.source.spool_max_bytes,
    )?;
    let span = tracing::info_span!("replication", slot = %slot.name, publication = %config.source.publication);
    let result = async move {
        tracing::info!(resume_lsn = %start, server = %params.display(), "starting replication");
        let status_interval = Duration::from_millis(config.source.status_interval_ms);
        let request = PluginRequest {
            publications: vec![config.source.publication.clone()],
            binary: config.source.binary,
            // Heartbeats and `pg_logical_emit_message` events; pgoutput sends them from 14.
            messages: true,
            streaming: if streaming {
                Streaming::On
            } else {
                Streaming::Off
            },
            origin: OriginFilter::Any,
        };
        let mut handle = SinkHandle::spawn(
            sink,
            delivered.clone(),
            PipelineOptions {
                max_in_flight_bytes: config.pipeline.max_in_flight_bytes,
                flush_interval: Duration::from_millis(config.pipeline.flush_interval_ms),
            },
        );
        // The snapshot's records are numbered before the first streamed one, so no commit
        // is confirmed before all of them are delivered.
        let snapshot = crate::snapshots::initial::run_before_streaming(
            config,
            &params,
            &mut decision,
            start,
            &mut handle,
            &delivered,
            &mut shutdown,
        )
        .await;
        let snapshot_records = match snapshot {
            Ok(Some(n)) => n,
            Ok(None) | Err(_) => {
                let sink_result = handle.finish().await;
                snapshot?;
                sink_result?;
                return Ok(SessionSummary {
                    confirmed: start,
                    events: handle.sent(),
                    delivered: delivered.get(),
                });
            }
        };
        // `source.sequence` starts with the end of the last commit processed, as Debezium's
        // does: none yet on a slot this run created, the slot's confirmed position (the end of
        // the last delivered commit) when resuming.
        let fresh_slot = decision.exported.is_some();
        let client = match decision.exported.take() {
            // START_REPLICATION on the connection that created the slot, from its
            // consistent point (the slot's confirmed position, `start`).
            Some(exported) => exported.client,
            None => params.connect_replication().await?,
        };
        // `start` is what the slot already confirmed: reported as flushed from the first
        // status update, so connecting confirms nothing new.
        let position = walrus_replication::Lsn(start.0);
        let mut stream = client
            .start(&slot.name, position, position, &request)
            .await?;
        stream.set_status_interval(status_interval);
        tracing::info!(
            server = %stream.server_version().text,
            proto_version = stream.options().proto_version,
            binary = stream.options().binary,
            messages = stream.options().messages,
            streaming = stream.options().streaming,
            "replication started"
        );
        let proto_version = stream.options().proto_version;
        Status::global().set_state(PipelineState::Streaming);
        let incremental = match signal_oid {
            Some(oid) => Some(crate::snapshots::incremental::Incremental::start(
                config, &params, oid,
            )?),
            None => None,
        };
        let mut tracker = AckTracker::new(start);
        tracker.produced_records(snapshot_records);
        let session = Session {
            config,
            database: params.dbname.clone(),
            stream: Some(stream),
            handle,
            delivered,
            tracker,
            decoder: Decoder::new(proto_version),
            converter: Converter::with_catalog(catalog),
            sql,
            emitter: crate::emitter(config, &params.dbname, config.sink.event_headers(), true),
            batch: Batch::default(),
            batch_deadline: None,
            txn: None,
            last_commit_lsn: (!fresh_slot).then_some(start),
            reported: start,
            events: 0,
            linger: Duration::from_millis(config.pipeline.batch_linger_ms.max(1)),
            unclocked: 0,
            batch_byte_limit: (config.pipeline.max_in_flight_bytes / 4).max(1),
            received: start,
            status_published: None,
            heartbeat_topic: Arc::from(config.heartbeat.topic_for(&config.topic_prefix)),
            router,
            route_error: None,
            outbox_deletes,
            resume,
            skipped: 0,
            signal_oid: signal_oid.unwrap_or(0),
            window_oid: 0,
            incremental,
            slot_health,
            spools,
            spool_open_bytes: metrics::gauge!(telemetry::SPOOL_OPEN_BYTES),
            transactions_total: metrics::counter!(telemetry::TRANSACTIONS_TOTAL),
            received_lsn: metrics::gauge!(telemetry::RECEIVED_LSN),
        };
        session.stream(&mut shutdown).await
    }
    .instrument(span)
    .await;
    let _ = housekeeping_stop.send(true);
    if let Some(task) = housekeeping {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    result
}

struct Session<'a> {
    config: &'a Config,
    #[allow(dead_code)]
    database: String,
    /// The replication connection; `None` once let go of (`SlotReleased`).
    stream: Option<ReplicationStream>,
    handle: SinkHandle,
    delivered: Delivered,
    tracker: AckTracker,
    decoder: Decoder,
    converter: Converter,
    /// Ordinary SQL connection for catalog lookups.
    sql: tokio_postgres::Client,
    /// Routing and encoding of events into records (`walrus_core::emit`).
    emitter: Emitter,
    batch: Batch,
    batch_deadline: Option<Instant>,
    txn: Option<Txn>,
    last_commit_lsn: Option<Lsn>,
    reported: Lsn,
    events: u64,
    linger: Duration,
    /// Messages handled since the clock was last read in `after_message`.
    unclocked: u32,
    batch_byte_limit: usize,
    /// Newest WAL position received (for `/status`).
    received: Lsn,
    /// When progress was last published to the shared status.
    status_published: Option<Instant>,
    /// Topic of heartbeat events (`[heartbeat].emit_events`).
    heartbeat_topic: Arc<str>,
    /// Topics, keys, column filters, headers, outbox routing.
    router: Router,
    /// A routing error from `emit`; ends the session after the current message.
    route_error: Option<PgError>,
    /// Rows of keep-rows outbox tables to delete once delivered.
    outbox_deletes: Option<crate::replication::outbox::DeleteQueue>,
    /// `walrus_transactions_total`, registered once.
    transactions_total: metrics::Counter,
    /// `walrus_received_lsn`, registered once.
    received_lsn: metrics::Gauge,
    /// Units of work the sink already committed (exactly-once resume).
    resume: ResumeFilter,
    /// Transactions dropped by `resume` this session.
    skipped: u64,
    /// Relation id of the signal table (`[snapshot] signal_table`); 0 when none. Its rows
    /// go to `incremental`, never to the sink.
    signal_oid: u32,
    /// Relation id of the table whose incremental snapshot window is open; 0 when none.
    /// Changes to it are shown to `incremental`; a plain compare keeps the hot path cheap.
    window_oid: u32,
    /// Incremental snapshots (`crate::snapshots::incremental`), when a signal table is configured.
    incremental: Option<crate::snapshots::incremental::Incremental>,
    /// The watchdog's reports on the slot (`walrus_core::alert::SlotHealth`), when it runs.
    slot_health: Option<watch::Receiver<SlotHealth>>,
    /// Streamed transactions not yet committed or aborted (`crate::replication::spool`).
    spools: Spools,
    /// `walrus_spool_open_bytes`, registered once.
    spool_open_bytes: metrics::Gauge,
}

/// How many messages `after_message` handles between two looks at the clock.
const CLOCK_EVERY_MESSAGES: u32 = 32;
/// How often the source publishes its progress to the shared status.
const STATUS_PUBLISH_INTERVAL: Duration = Duration::from_millis(200);

enum Flow {
    Continue,
    Stop,
}

/// The next batch of the replication stream, or `Closed` once the connection was let go.
async fn next_batch(stream: &mut Option<ReplicationStream>) -> Result<Frames, ReplicationError> {
    match stream {
        Some(stream) => stream.next_batch().await,
        None => Err(ReplicationError::Closed(" (walrus let go of it)")),
    }
}

impl Session<'_> {
    async fn stream(
        mut self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<SessionSummary, PgError> {
        let mut ticker = tokio::time::interval(self.linger);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_tick = Instant::now();
        let result: Result<(), PgError> = loop {
            if *shutdown.borrow() {
                break Ok(());
            }
            // `next_batch` is cancel-safe: a tick or a stop request loses no data. It also
            // sends the status updates that are due, so feedback keeps flowing whatever
            // arrives.
            let frames = tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    // A dropped sender means nobody can ask for a stop any more.
                    if changed.is_err() {
                        break Ok(());
                    }
                    continue;
                }
                _ = ticker.tick() => {
                    last_tick = Instant::now();
                    match self.on_tick(&mut ticker, shutdown).await {
                        Ok(Flow::Continue) => continue,
                        Ok(Flow::Stop) => break Ok(()),
                        Err(e) => break Err(e),
                    }
                }
                frames = next_batch(&mut self.stream) => frames,
            };
            let frames = match frames {
                Ok(frames) => frames,
                Err(e) => break Err(PgError::Replication(e)),
            };
            match self
                .process(frames, &mut ticker, &mut last_tick, shutdown)
                .await
            {
                Ok(Flow::Continue) => {}
                Ok(Flow::Stop) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.finish(result).await
    }

    /// Decodes, converts and encodes one batch of frames, handing records to the sink as
    /// batches fill. Returns `Stop` when shutdown was requested while waiting for the sink;
    /// the frames not processed yet are not confirmed, so PostgreSQL sends them again.
    async fn process(
        &mut self,
        frames: Frames,
        ticker: &mut tokio::time::Interval,
        last_tick: &mut Instant,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Flow, PgError> {
        for frame in frames {
            match frame.map_err(PgError::Replication)? {
                Frame::XLogData {
                    wal_start, data, ..
                } => {
                    let lsn = Lsn(wal_start.0);
                    match data.first() {
                        // A change of a streamed transaction: spooled until its commit.
                        Some(&tag)
                            if self.decoder.in_stream() && spool::carries_stream_xid(tag) =>
                        {
                            self.spool_message(lsn, &data)?;
                        }
                        // Stream Commit: the spooled transaction is replayed here.
                        Some(b'c') => {
                            if let Flow::Stop = self
                                .on_stream_commit(lsn, &data, ticker, last_tick, shutdown)
                                .await?
                            {
                                return Ok(Flow::Stop);
                            }
                        }
                        _ => {
                            if data.first() == Some(&b'R') {
                                self.prepare_relation(lsn, &data).await?;
                            }
                            self.handle_xlog(lsn, &data)?;
                        }
                    }
                }
                Frame::Keepalive { wal_end, .. } => self.on_keepalive(Lsn(wal_end.0)),
                // The walsender ends the copy on its own when the server shuts down:
                // reconnecting later resumes from the slot.
                Frame::CopyDone => {
                    return Err(PgError::Replication(ReplicationError::Closed(
                        " (the server ended the replication stream)",
                    )))
                }
            }
            if let Flow::Stop = self.after_message(ticker, last_tick, shutdown).await? {
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Continue)
    }

    /// After each message: end the session on a routing error, hand over a full batch, and
    /// keep the ticker's work on schedule. Returns `Stop` when shutdown was requested while
    /// waiting for the sink.
    async fn after_message(
        &mut self,
        ticker: &mut tokio::time::Interval,
        last_tick: &mut Instant,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Flow, PgError> {
        if let Some(e) = self.route_error.take() {
            return Err(e);
        }
        if self.batch.len() >= self.config.pipeline.batch_max_records
            || self.batch.bytes >= self.batch_byte_limit
        {
            if let Flow::Stop = self.hand_over(ticker, shutdown).await? {
                return Ok(Flow::Stop);
            }
        }
        // While frames keep coming the ticker arm of the loop is not reached; keep its
        // work (progress reports, lingering batches) on schedule here. Reading the clock
        // for every message showed in profiles; a few dozen messages take microseconds.
        self.unclocked += 1;
        if self.unclocked < CLOCK_EVERY_MESSAGES {
            return Ok(Flow::Continue);
        }
        self.unclocked = 0;
        if last_tick.elapsed() >= self.linger {
            *last_tick = Instant::now();
            if let Flow::Stop = self.on_tick(ticker, shutdown).await? {
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Continue)
    }

    /// Periodic work: confirm what was delivered, notice a dead sink, and hand over a batch
    /// whose linger time is up.
    async fn on_tick(
        &mut self,
        ticker: &mut tokio::time::Interval,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Flow, PgError> {
        self.report_progress();
        if let Some(inc) = &mut self.incremental {
            inc.on_tick(self.delivered.get());
            self.window_oid = inc.window_oid();
        }
        if self.handle.is_stopped() {
            return Err(PgError::Protocol {
                lsn: self.reported,
                message: "sink stopped".into(),
            });
        }
        if self.batch_deadline.is_some_and(|d| Instant::now() >= d) {
            return self.hand_over(ticker, shutdown).await;
        }
        Ok(Flow::Continue)
    }

    /// Hands the current batch to the sink, waiting for budget while keeping progress
    /// reports going. Returns `Stop` if shutdown was requested while waiting.
    async fn hand_over(
        &mut self,
        ticker: &mut tokio::time::Interval,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Flow, PgError> {
        if self.batch.is_empty() {
            self.batch_deadline = None;
            return Ok(Flow::Continue);
        }
        let bytes = self.batch.bytes;
        let reservation = loop {
            tokio::select! {
                biased;
                r = self.handle.reserve(bytes) => break r,
                _ = shutdown.changed() => return Ok(Flow::Stop),
                _ = ticker.tick() => {
                    self.report_progress();
                    self.release_if_slot_at_risk()?;
                    // The socket is not read while the sink holds delivery; status
                    // updates still go out, or wal_sender_timeout ends the connection.
                    if let Some(stream) = &mut self.stream {
                        stream.send_status_if_due().await?;
                    }
                }
            }
        };
        let sent = reservation.and_then(|r| self.handle.send(std::mem::take(&mut self.batch), r));
        self.batch_deadline = None;
        // Let the sink task start on the batch: while events keep coming this loop does not
        // wait, and on a runtime with one worker thread the sink would otherwise run only
        // once the replication queue runs dry, letting the in-flight budget fill up.
        tokio::task::yield_now().await;
        match sent {
            Ok(_) => Ok(Flow::Continue),
            // The sink task ended with an error; `finish` collects it.
            Err(_) => Err(PgError::Protocol {
                lsn: self.reported,
                message: "sink stopped".into(),
            }),
        }
    }

    /// While the sink holds delivery walrus stops reading the replication connection. Once
    /// the slot is past `max_slot_wal_keep_size` (`wal_status` `unreserved`, or already
    /// `lost`), the next checkpoint invalidates it by terminating its walsender and waiting
    /// for that to exit, which a walsender whose client does not read cannot do: the
    /// checkpoint, and with it WAL recycling for the whole server, would wait on walrus.
    /// The operator chose the limit to protect the server, so walrus steps aside: it ends
    /// the session (retryable), which closes the connection; reconnecting afterwards either
    /// finds the slot healthy again or refuses it as lost with the recovery spelled out.
    fn release_if_slot_at_risk(&self) -> Result<(), PgError> {
        let wal_status = self
            .slot_health
            .as_ref()
            .and_then(|h| h.borrow().wal_status.clone());
        match wal_status.as_deref() {
            Some(st @ ("unreserved" | "lost")) => {
                let e = PgError::SlotReleased {
                    slot: self.config.source.slot.clone(),
                    wal_status: st.to_string(),
                    confirmed: self.reported,
                };
                // Logged now: the session ends only once the held sink gives back what it
                // was handed, which may take a while.
                tracing::error!(hint = e.kind().hint(), "{e}");
                Err(e)
            }
            _ => Ok(()),
        }
    }

    fn report_progress(&mut self) {
        let delivered = self.delivered.get();
        if let Some(lsn) = self.tracker.on_delivered(delivered) {
            self.confirm(lsn);
        }
        self.publish_status(false);
    }

    /// Publishes progress to the shared status (`/status`, the watchdog's time lag), at
    /// most every [`STATUS_PUBLISH_INTERVAL`] unless `force`.
    fn publish_status(&mut self, force: bool) {
        if !force
            && self
                .status_published
                .is_some_and(|t| t.elapsed() < STATUS_PUBLISH_INTERVAL)
        {
            return;
        }
        self.status_published = Some(Instant::now());
        let delivered = self.delivered.get();
        let caught_up = self.tracker.caught_up(delivered);
        let (received, reported, events, sent) = (
            self.received,
            self.reported,
            self.events,
            self.handle.sent(),
        );
        let commit_us = self.tracker.delivered_commit_time_us();
        Status::global().update_progress(|p| {
            p.received_lsn = Some(status::lsn_text(received));
            p.confirmed_lsn = Some(status::lsn_text(reported));
            if let Some(us) = commit_us {
                p.delivered_commit_ms = Some(us / 1000);
            }
            if caught_up {
                p.caught_up_ms = Some(walrus_core::time::now_ms());
            }
            p.events = events;
            p.delivered_records = delivered;
            p.sent_records = sent;
        });
    }

    /// A logical message with the heartbeat prefix: walrus's own (see `crate::replication::heartbeat`).
    /// No event unless `[heartbeat].emit_events`; a non-transactional one is a position
    /// that may be confirmed once everything before it is delivered, with its emit time
    /// (the content) as commit time for the time lag.
    fn handle_heartbeat(&mut self, transactional: bool, lsn: Lsn, content: &[u8]) {
        metrics::counter!(telemetry::HEARTBEATS_RECEIVED_TOTAL).increment(1);
        Status::global().update_progress(|p| p.heartbeats_received += 1);
        let sent_us = std::str::from_utf8(content)
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok());
        if self.config.heartbeat.emit_events {
            // Debezium's heartbeat record: key {"serverName": prefix}, value {"ts_ms": ...}.
            let ts_ms = sent_us.unwrap_or_else(now_us) / 1000;
            let key = serde_json::json!({ "serverName": self.config.topic_prefix });
            let value = serde_json::json!({ "ts_ms": ts_ms });
            self.batch.push(Record {
                topic: self.heartbeat_topic.clone(),
                key: Some(Bytes::from(key.to_string())),
                value: Some(Bytes::from(value.to_string())),
                event_headers: None,
                headers: Vec::new(),
                timestamp_ms: ts_ms,
            });
            self.tracker.produced_records(1);
        }
        if !transactional {
            match sent_us {
                Some(us) => self.tracker.standalone_at(lsn, us),
                None => self.tracker.standalone(lsn),
            }
            self.batch.end_unit(Some(lsn));
            if self.batch_deadline.is_none() {
                self.batch_deadline = Some(Instant::now() + self.linger);
            }
        }
        if lsn > self.received {
            self.received = lsn;
        }
    }

    fn confirm(&mut self, lsn: Lsn) {
        if lsn > self.reported {
            if let Some(stream) = &mut self.stream {
                stream.set_flushed(walrus_replication::Lsn(lsn.0));
            }
            self.reported = lsn;
            metrics::gauge!(telemetry::CONFIRMED_LSN).set(lsn.0 as f64);
        }
    }

    /// Reads from the catalog what a Relation message needs before the changes after it can
    /// be converted (its primary key, descriptions of non-built-in column types). Relation
    /// messages are rare (once per table per session, and after DDL), so decoding them
    /// twice costs nothing.
    async fn prepare_relation(&mut self, lsn: Lsn, data: &Bytes) -> Result<(), PgError> {
        let msg = Decoder::new(self.decoder.protocol_version())
            .decode(data)
            .map_err(|source| PgError::Decode { lsn, source })?;
        if let PgOutputMessage::Relation(rel) = &msg {
            if self.converter.catalog.needs_lookup(rel) {
                self.converter.catalog.refresh(&self.sql, rel).await?;
            }
        }
        Ok(())
    }

    /// A primary keepalive: where the server's WAL is. With nothing open or in flight that
    /// position may be confirmed, so an idle database does not pin WAL.
    fn on_keepalive(&mut self, wal_end: Lsn) {
        self.received_lsn.set(wal_end.0 as f64);
        self.received = self.received.max(wal_end);
        let delivered = self.delivered.get();
        // A streamed transaction still open has changes before `wal_end` that nobody
        // delivered yet: only commits are confirmed until it ends.
        if self.spools.any_open() {
            self.publish_status(false);
            return;
        }
        if let Some(lsn) = self.tracker.on_keepalive(wal_end, delivered) {
            self.confirm(lsn);
        }
        self.publish_status(false);
    }

    fn on_begin(&mut self, final_lsn: Lsn, xid: u32, commit_time_micros: i64) {
        self.tracker.begin();
        self.txn = Some(Txn {
            commit_lsn: final_lsn,
            xid: Some(xid),
            commit_time_us: commit_time_micros.saturating_add(PG_EPOCH_OFFSET_MICROS),
            next_index: 0,
            origin: None,
            skip: self.resume.skips_transaction(final_lsn),
        });
    }

    fn on_commit(&mut self, end_lsn: Lsn, commit_time_micros: i64) {
        self.tracker.commit_at(
            end_lsn,
            commit_time_micros.saturating_add(PG_EPOCH_OFFSET_MICROS),
        );
        self.received = self.received.max(end_lsn);
        self.batch.end_unit(Some(end_lsn));
        if self.txn.take().is_some_and(|t| t.skip) {
            self.skipped += 1;
            if !self.resume.skips_commit_end(Lsn(end_lsn.0 + 1)) {
                tracing::info!(transactions = self.skipped, through = %end_lsn, "dropped the transactions the sink had already committed");
            }
        }
        self.last_commit_lsn = Some(end_lsn);
        self.transactions_total.increment(1);
        self.received_lsn.set(end_lsn.0 as f64);
        if self.batch_deadline.is_none() && !self.batch.is_empty() {
            self.batch_deadline = Some(Instant::now() + self.linger);
        }
    }

    /// A logical message (`pg_logical_emit_message`): walrus's heartbeat, or an event. A
    /// non-transactional one is a unit of its own, confirmable once delivered.
    fn on_message(&mut self, m: &crate::decoding::pgoutput::LogicalMessage) {
        let transactional = m.flags & 1 != 0;
        if m.prefix == self.config.heartbeat.prefix {
            self.handle_heartbeat(transactional, m.lsn, &m.content);
            return;
        }
        let source = self.position(m.lsn);
        let event = Converter::message(m, source);
        let n = self.emit(&event);
        self.tracker.produced_records(n);
        if !transactional {
            self.tracker.standalone(m.lsn);
            self.batch.end_unit(Some(m.lsn));
            if self.batch_deadline.is_none() {
                self.batch_deadline = Some(Instant::now() + self.linger);
            }
        }
    }

    /// The source position of the next event at `lsn` in the current transaction.
    fn position(&mut self, lsn: Lsn) -> SourcePosition {
        match &mut self.txn {
            Some(t) => {
                let index = t.next_index;
                t.next_index += 1;
                SourcePosition {
                    lsn,
                    commit_lsn: t.commit_lsn,
                    last_commit_lsn: self.last_commit_lsn,
                    tx_id: t.xid,
                    commit_time_us: t.commit_time_us,
                    tx_index: index,
                    origin: t.origin.clone(),
                    snapshot: SnapshotMarker::False,
                }
            }
            None => SourcePosition {
                lsn,
                commit_lsn: lsn,
                last_commit_lsn: self.last_commit_lsn,
                tx_id: None,
                commit_time_us: now_us(),
                tx_index: 0,
                origin: None,
                snapshot: SnapshotMarker::False,
            },
        }
    }

    fn handle_xlog(&mut self, lsn: Lsn, data: &Bytes) -> Result<(), PgError> {
        let msg = self
            .decoder
            .decode(data)
            .map_err(|source| PgError::Decode { lsn, source })?;
        let convert_err = |e: crate::decoding::convert::ConvertError| match e {
            crate::decoding::convert::ConvertError::Relation(source) => {
                PgError::Relation { lsn, source }
            }
            other => PgError::Protocol {
                lsn,
                message: other.to_string(),
            },
        };
        match &msg {
            PgOutputMessage::Relation(_) | PgOutputMessage::Type(_) => {
                self.converter.observe(&msg);
            }
            PgOutputMessage::Origin(o) => {
                if let Some(t) = &mut self.txn {
                    t.origin = Some(o.name.clone());
                }
            }
            PgOutputMessage::Insert(m) => {
                let source = self.position(lsn);
                let ev = self.converter.insert(m, source).map_err(convert_err)?;
                if m.rel_id == self.signal_oid {
                    self.on_signal(lsn, &ev);
                    return Ok(());
                }
                if m.rel_id == self.window_oid {
                    self.observe_window(&ev);
                }
                let n = self.emit(&ev);
                self.tracker.produced_records(n);
            }
            PgOutputMessage::Update(m) if m.rel_id == self.signal_oid => {}
            PgOutputMessage::Update(m) => {
                let source = self.position(lsn);
                match self.converter.update(m, source).map_err(convert_err)? {
                    UpdateOutcome::Update(ev) => {
                        if m.rel_id == self.window_oid {
                            self.observe_window(&ev);
                        }
                        let n = self.emit(&ev);
                        self.tracker.produced_records(n);
                    }
                    UpdateOutcome::KeyChange { delete, mut create } => {
                        if m.rel_id == self.window_oid {
                            self.observe_window(&delete);
                            self.observe_window(&create);
                        }
                        create.source = self.position(lsn);
                        let n = self.emit_key_change(&delete, &create);
                        self.tracker.produced_records(n);
                    }
                }
            }
            PgOutputMessage::Delete(m) if m.rel_id == self.signal_oid => {}
            PgOutputMessage::Delete(m) => {
                let source = self.position(lsn);
                let ev = self.converter.delete(m, source).map_err(convert_err)?;
                if m.rel_id == self.window_oid {
                    self.observe_window(&ev);
                }
                let n = self.emit(&ev);
                self.tracker.produced_records(n);
            }
            PgOutputMessage::Truncate(m) => {
                let source = self.position(lsn);
                let events = self.converter.truncate(m, &source).map_err(convert_err)?;
                if self.window_oid != 0 && m.rel_ids.contains(&self.window_oid) {
                    if let Some(inc) = &mut self.incremental {
                        inc.observe_truncate();
                    }
                }
                for ev in &events {
                    if ev.table.as_ref().is_some_and(|t| t.id == self.signal_oid) {
                        continue;
                    }
                    let n = self.emit(ev);
                    self.tracker.produced_records(n);
                }
            }
            PgOutputMessage::Message(m) => self.on_message(m),
            PgOutputMessage::Begin(b) => {
                self.on_begin(b.final_lsn, b.xid, b.commit_time.0);
                self.transaction_metadata(true, lsn);
            }
            PgOutputMessage::Commit(c) => {
                self.transaction_metadata(false, lsn);
                self.on_commit(c.end_lsn, c.commit_time.0);
            }
            PgOutputMessage::StreamStart(_)
            | PgOutputMessage::StreamStop
            | PgOutputMessage::StreamAbort(_) => self.on_stream_control(lsn, &msg)?,
            other => {
                return Err(PgError::Protocol {
                    lsn,
                    message: format!(
                        "{} message, but walrus negotiated neither streaming nor two-phase",
                        other.kind()
                    ),
                })
            }
        }
        Ok(())
    }

    /// A streamed change to the table whose incremental snapshot window is open.
    fn observe_window(&mut self, ev: &ChangeEvent) {
        if let Some(inc) = &mut self.incremental {
            inc.observe(ev);
        }
    }

    /// A row inserted into the signal table: a command or a watermark. At the high
    /// watermark of the open window the chunk's rows are emitted here, as op `r` events of
    /// the watermark's transaction, so they are confirmed with it (`crate::snapshots::incremental`).
    fn on_signal(&mut self, lsn: Lsn, ev: &ChangeEvent) {
        let Some(inc) = &mut self.incremental else {
            return;
        };
        let converter = &self.converter;
        let reads = inc.on_signal(ev, self.config, |oid| {
            converter.table(oid).ok().map(|e| e.table.clone())
        });
        for mut read in reads {
            read.source = self.position(lsn);
            read.source.snapshot = SnapshotMarker::Incremental;
            let n = self.emit(&read);
            self.tracker.produced_records(n);
        }
        if let Some(inc) = &mut self.incremental {
            inc.after_emit(self.tracker.produced());
            self.window_oid = inc.window_oid();
        }
    }

    /// Whether events at `lsn` are dropped because an exactly-once sink already committed
    /// them before a restart (`walrus_core::resume`).
    fn held(&self, lsn: Lsn) -> bool {
        match &self.txn {
            Some(t) => t.skip,
            None => self.resume.skips_standalone(lsn),
        }
    }

    /// Routes and encodes an event (and its tombstone) into the batch through the emitter;
    /// returns the records added. An error (configuration that does not fit the table, a
    /// value the format cannot write) is kept in `route_error`, adds nothing, and ends the
    /// session after the current message, so nothing after it is confirmed.
    fn emit(&mut self, ev: &ChangeEvent) -> u64 {
        if self.held(ev.source.lsn) {
            return 0;
        }
        match self.emitter.emit(&self.router, ev, &mut self.batch) {
            Ok(emitted) => {
                self.emitted(ev, &emitted);
                emitted.records
            }
            Err(e) => {
                self.route_error.get_or_insert(PgError::from(e));
                0
            }
        }
    }

    /// Debezium's `BEGIN` (`begin`) or `END` event of the open transaction, whose Begin or
    /// Commit message is at `lsn`, when `[transactions]` is on (`walrus_core::transactions`).
    /// `END` goes into the batch before the commit ends the transaction's unit, so it is
    /// confirmed with the transaction's records.
    fn transaction_metadata(&mut self, begin: bool, lsn: Lsn) {
        let Some(t) = &self.txn else { return };
        let (Some(xid), commit_time_us) = (t.xid, t.commit_time_us) else {
            return;
        };
        if t.skip {
            return;
        }
        let added = if begin {
            self.emitter
                .begin_transaction(xid, lsn, commit_time_us, &mut self.batch)
        } else {
            self.emitter
                .end_transaction(xid, lsn, commit_time_us, &mut self.batch)
        };
        match added {
            Ok(n) => self.tracker.produced_records(n),
            Err(e) => {
                self.route_error.get_or_insert(PgError::from(e));
            }
        }
    }

    /// A primary-key change: the delete and the create, with Debezium's key headers.
    fn emit_key_change(&mut self, delete: &ChangeEvent, create: &ChangeEvent) -> u64 {
        if self.held(delete.source.lsn) {
            return 0;
        }
        match self
            .emitter
            .emit_key_change(&self.router, delete, create, &mut self.batch)
        {
            Ok(emitted) => {
                for e in &emitted {
                    self.emitted(create, e);
                }
                emitted.iter().map(|e| e.records).sum()
            }
            Err(e) => {
                self.route_error.get_or_insert(PgError::from(e));
                0
            }
        }
    }

    /// Bookkeeping after an event became records: the event count, the batch deadline and
    /// the outbox row to delete once its record is delivered.
    fn emitted(&mut self, ev: &ChangeEvent, emitted: &Emitted) {
        if let (Some(id), Some(queue), Some(table)) =
            (&emitted.outbox_delete, &self.outbox_deletes, &ev.table)
        {
            // The record's sequence number: records handed over so far plus its place in
            // the current batch (it is the batch's last).
            let seq = self.handle.sent() + self.batch.len() as u64 - 1;
            queue.push(seq, &table.qualified_name(), id.clone());
        }
        if emitted.event {
            self.events += 1;
            if self.batch_deadline.is_none() {
                self.batch_deadline = Some(Instant::now() + self.linger);
            }
        }
    }

    /// Stops cleanly: hands over what was read, lets the sink deliver it, confirms it, and
    /// ends the copy (final status update, then `CopyDone`) before closing the connection.
    async fn finish(mut self, result: Result<(), PgError>) -> Result<SessionSummary, PgError> {
        if let Err(PgError::SlotReleased { .. }) = &result {
            // Drop the connection now, not after the held sink: that is the point.
            drop(self.stream.take());
        }
        if result.is_ok() && !self.batch.is_empty() {
            // Records of a transaction cut short are delivered but not confirmed; the next
            // session gets the transaction again.
            if let Ok(Ok(r)) = tokio::time::timeout(
                Duration::from_secs(5),
                self.handle.reserve(self.batch.bytes),
            )
            .await
            {
                let _ = self.handle.send(std::mem::take(&mut self.batch), r);
            }
        }
        let sink_result = self.handle.finish().await;
        if let Some(inc) = &mut self.incremental {
            inc.finish(self.delivered.get());
        }
        self.report_progress();
        self.publish_status(true);
        let confirmed = self.tracker.confirmed();
        if let Some(stream) = self.stream.take() {
            // After an error the connection may be gone; trying costs at most the wait.
            match tokio::time::timeout(FINAL_ACK_WAIT, stream.finish()).await {
                Ok(Ok(lsn)) => tracing::debug!(confirmed = %lsn, "replication stream ended"),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "ending the replication stream cleanly failed");
                }
                Err(_) => tracing::debug!("the server did not end the replication stream in time"),
            }
        }
        let summary = SessionSummary {
            confirmed,
            events: self.events,
            delivered: self.delivered.get(),
        };
        tracing::info!(confirmed = %summary.confirmed, events = summary.events, "replication session ended");
        match (sink_result, result) {
            (Err(sink), _) => Err(PgError::Sink(sink)),
            (Ok(()), Err(e)) => Err(e),
            (Ok(()), Ok(())) => Ok(summary),
        }
    }
}
