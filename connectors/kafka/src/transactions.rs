//! The exactly-once mode (`[sink] exactly_once = true`): Kafka transactions that span
//! batches of source transactions, each committed together with the position it reached.
//!
//! ```text
//!  start: init_transactions (fences an older producer, aborts what it left open)
//!         ──▶ read the offsets topic (read_committed) ──▶ resume position ──▶ source
//!         ──▶ probe commit (fails here, naming the key, on a broker without transactions)
//!
//!  records ──▶ begin ─▶ produce ... │unit end│ produce ... │unit end, interval up│
//!                                                              │ wait for acks
//!                                              offsets record ◀┘ (key = transactional id,
//!                                                 │               value = end LSN as JSON)
//!                                                 ▼
//!                        commit_transaction ──ok──▶ Delivered += records of the transaction
//!                               └──error──▶ abort, end the session (resumes from the slot)
//! ```
//!
//! Why it is exactly once: a Kafka transaction holds whole source transactions only (it
//! commits only where one ends), and its offsets record says through which commit end LSN.
//! Both become visible to `read_committed` consumers atomically. After a crash, the new
//! producer's `init_transactions` aborts whatever the old one left open; the stored
//! position is read back with `read_committed`, and the source drops every source
//! transaction ending at or before it ([`walrus_core::resume::ResumeFilter`]), although
//! PostgreSQL resends from `confirmed_flush_lsn`, which may lag. What was aborted is
//! resent, once.
//!
//! The offsets record is produced after every record of its transaction was acknowledged,
//! so on a broker that shows aborted records anyway (librdkafka's mock cluster, or a
//! `read_uncommitted` consumer) a visible position still never refers to records that are
//! missing.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::TopicPartitionList;
use walrus_core::config::KafkaSinkConfig;
use walrus_core::error::SinkError;
use walrus_core::resume::OffsetRecord;
use walrus_core::sink::FlushReason;
use walrus_core::time::now_ms;
use walrus_core::Lsn;

use crate::errors::{kafka_codes, BrokerErrorClass};
use crate::{client_config, Failure, KafkaSink, ADMIN_TIMEOUT, NAME};

/// Delivery opaque of a transaction's offsets record; pipeline records count from 1.
pub(crate) const OFFSET_RECORD_SEQ: u64 = 0;
/// Longest wait for `init_transactions`, `commit_transaction` and `abort_transaction`.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);
/// How far back from the end the offsets topic is read first; the whole partition is read
/// only when the transactional id has no record there.
const OFFSETS_TAIL: i64 = 1000;
/// Attempts of a commit that librdkafka calls retriable before the transaction is aborted.
const COMMIT_ATTEMPTS: u32 = 3;
/// How often the wait for acknowledgements before a commit looks again.
const ACK_POLL: Duration = Duration::from_millis(1);

/// The sink's transaction state in exactly-once mode.
#[derive(Debug)]
pub(crate) struct TxnState {
    transactional_id: String,
    slot: String,
    offsets_topic: String,
    interval: Duration,
    /// When the open Kafka transaction began; `None` when none is open.
    opened: Option<Instant>,
    /// Records sent when the newest unit of source work ended.
    unit_end_seq: u64,
    /// Position of the newest unit end with one (snapshot rows have none).
    unit_end_lsn: Option<Lsn>,
    /// Position stored by the last successful commit (or read back at start).
    committed_lsn: Option<Lsn>,
    /// Whether `init_transactions` ran (in [`KafkaSink::start_transactions`]).
    initialised: bool,
}

impl TxnState {
    pub(crate) fn new(config: &KafkaSinkConfig) -> TxnState {
        let id = config
            .transactional_id
            .clone()
            .or_else(|| config.for_slot(&config.slot).transactional_id)
            .unwrap_or_default();
        TxnState {
            transactional_id: id,
            slot: config.slot.clone(),
            offsets_topic: config.offsets_topic.clone(),
            interval: Duration::from_millis(config.transaction_interval_ms),
            opened: None,
            unit_end_seq: 0,
            unit_end_lsn: None,
            committed_lsn: None,
            initialised: false,
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.opened.is_some()
    }
}

/// A record the broker rejected after it was sent poisons the open transaction, which
/// must abort; it cannot be moved to the dead-letter topic inside it.
pub(crate) fn rejected_in_transaction(f: Failure) -> SinkError {
    SinkError::Rejected {
        sink: NAME,
        topic: f.topic,
        message: format!(
            "the broker rejected record {} in a Kafka transaction: {}; in exactly-once mode such a record aborts its transaction and cannot go to the dead-letter topic (only records refused before sending, such as ones over message.max.bytes, can); fix: {}",
            f.seq,
            f.error,
            BrokerErrorClass::fix(f.code)
        ),
        retryable: false,
    }
}

/// A transaction API error as a sink error: fatal codes (fenced, no transactions on the
/// broker, authorisation) stop walrus with the fix; the rest end the session, which
/// restarts from the slot.
fn txn_err(what: &str, e: &KafkaError) -> SinkError {
    let code = e.rdkafka_error_code().map_or(-1, |c| c as i32);
    let fatal = match e {
        KafkaError::Transaction(t) => t.is_fatal(),
        _ => false,
    };
    let class = BrokerErrorClass::of(code);
    if fatal || matches!(class, BrokerErrorClass::Fatal | BrokerErrorClass::Rejected) {
        let fix = match code {
            kafka_codes::UNSUPPORTED_FEATURE => BrokerErrorClass::fix(code),
            kafka_codes::PRODUCER_FENCED
            | kafka_codes::FENCED
            | kafka_codes::INVALID_PRODUCER_EPOCH => BrokerErrorClass::fix(code),
            _ if fatal && class == BrokerErrorClass::Retryable => {
                "the transactional producer cannot continue; check the broker's logs, or set [sink] exactly_once = false"
            }
            _ => BrokerErrorClass::fix(code),
        };
        return SinkError::Rejected {
            sink: NAME,
            topic: String::new(),
            message: format!("[sink] exactly_once: {what}: {e}; fix: {fix}"),
            retryable: false,
        };
    }
    SinkError::Unavailable {
        sink: NAME,
        message: format!(
            "{what}: {e}; the transaction is aborted and the session restarts from the slot"
        ),
    }
}

impl KafkaSink {
    fn txn_mut(&mut self) -> &mut TxnState {
        self.txn.as_mut().expect("exactly-once mode")
    }

    /// Runs a blocking producer call on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce(&rdkafka::producer::ThreadedProducer<crate::Context>) -> Result<T, KafkaError>
            + Send
            + 'static,
    ) -> Result<Result<T, KafkaError>, SinkError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || f(&producer))
            .await
            .map_err(|e| SinkError::Unavailable {
                sink: NAME,
                message: format!("{what}: {e}"),
            })
    }

    /// At session start: fence older producers, make sure the offsets topic exists, read
    /// the stored position, and prove that the broker commits transactions.
    pub(crate) async fn start_transactions(&mut self) -> Result<Option<Lsn>, SinkError> {
        let id = self.txn_mut().transactional_id.clone();
        tracing::info!(transactional_id = %id, "starting the transactional producer (fences any older one with this id)");
        let init = self
            .blocking("initialising transactions", |p| {
                p.init_transactions(TRANSACTION_TIMEOUT)
            })
            .await?;
        init.map_err(|e| self.txn_error("initialising transactions", &e))?;
        self.txn_mut().initialised = true;
        self.ensure_offsets_topic().await?;
        let stored = self.read_stored_position().await?;
        self.txn_mut().committed_lsn = stored;
        // A first, tiny transaction that restates the stored position: a broker without
        // transactions fails here, before any change is read, and the error names the key.
        self.begin_if_needed()?;
        self.commit(stored).await?;
        match stored {
            Some(lsn) => {
                tracing::info!(transactional_id = %id, lsn = %lsn, "the broker holds every change committed through this position");
            }
            None => {
                tracing::info!(transactional_id = %id, "no committed position stored yet");
            }
        }
        Ok(stored)
    }

    /// Creates the offsets topic (one compacted partition) unless it exists.
    async fn ensure_offsets_topic(&mut self) -> Result<(), SinkError> {
        let topic = self.txn_mut().offsets_topic.clone();
        if self.topics.contains_key(&topic) {
            return Ok(());
        }
        if self.config.topic_creation.enabled {
            let rf = self.config.topic_creation.replication_factor;
            let new = NewTopic::new(&topic, 1, TopicReplication::Fixed(rf))
                .set("cleanup.policy", "compact");
            let opts = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
            let results = self
                .admin
                .create_topics([&new], &opts)
                .await
                .map_err(|e| txn_err(&format!("creating the offsets topic {topic:?}"), &e))?;
            for r in results {
                if let Err((name, code)) = r {
                    if code as i32 != kafka_codes::TOPIC_ALREADY_EXISTS {
                        return Err(SinkError::Rejected {
                            sink: NAME,
                            topic: name,
                            message: format!(
                                "creating the offsets topic ([sink] offsets_topic): {code:?}; create it yourself (one partition, cleanup.policy=compact) or fix: {}",
                                BrokerErrorClass::fix(code as i32)
                            ),
                            retryable: false,
                        });
                    }
                }
            }
            self.topic_exists(&topic)?;
            return Ok(());
        }
        if !self.ensure_topic(&topic).await? {
            return Err(SinkError::Rejected {
                sink: NAME,
                topic,
                message: "the offsets topic ([sink] offsets_topic) does not exist and [sink.topic_creation] is off; create it (one partition, cleanup.policy=compact)".into(),
                retryable: false,
            });
        }
        Ok(())
    }

    /// The position last committed under this transactional id: the newest offsets record
    /// with its key in partition 0, read with `isolation.level=read_committed`.
    async fn read_stored_position(&mut self) -> Result<Option<Lsn>, SinkError> {
        let t = self.txn_mut();
        let (topic, id) = (t.offsets_topic.clone(), t.transactional_id.clone());
        let mut cc = client_config(&self.config);
        cc.set("group.id", format!("{id}.offsets-reader"))
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true");
        for key in [
            "sasl.kerberos.service.name",
            "ssl.endpoint.identification.algorithm",
        ] {
            if let Some(v) = self.config.properties.get(key) {
                cc.set(key, v.to_string());
            }
        }
        let found = tokio::task::spawn_blocking(move || read_offsets(&cc, &topic, &id))
            .await
            .map_err(|e| SinkError::Unavailable {
                sink: NAME,
                message: format!("reading the offsets topic: {e}"),
            })??;
        Ok(found)
    }

    /// Opens a Kafka transaction unless one is open.
    pub(crate) fn begin_if_needed(&mut self) -> Result<(), SinkError> {
        if self.txn_mut().opened.is_some() {
            return Ok(());
        }
        self.producer
            .begin_transaction()
            .map_err(|e| self.txn_error("beginning a transaction", &e))?;
        self.txn_mut().opened = Some(Instant::now());
        Ok(())
    }

    /// A unit of source work ended after the records sent so far; commits when the
    /// transaction has been open for the interval.
    pub(crate) async fn unit_end(&mut self, lsn: Option<Lsn>) -> Result<(), SinkError> {
        let sent = self.sent;
        let t = self.txn_mut();
        t.unit_end_seq = sent;
        if lsn.is_some() {
            t.unit_end_lsn = lsn;
        }
        if t.opened.is_some_and(|o| o.elapsed() >= t.interval) {
            let lsn = t.unit_end_lsn.or(t.committed_lsn);
            self.commit(lsn).await?;
        }
        Ok(())
    }

    /// `flush` in exactly-once mode: commit a transaction that ends at a unit end once the
    /// interval is up (at once when stopping); on stopping, abort one that does not (its
    /// records are not delivered, so PostgreSQL resends them).
    pub(crate) async fn flush_transaction(&mut self, reason: FlushReason) -> Result<(), SinkError> {
        let sent = self.sent;
        let t = self.txn_mut();
        let Some(opened) = t.opened else {
            return Ok(());
        };
        let at_unit_end = t.unit_end_seq == sent;
        let lsn = t.unit_end_lsn.or(t.committed_lsn);
        match reason {
            FlushReason::Shutdown if at_unit_end => self.commit(lsn).await,
            FlushReason::Shutdown => {
                tracing::info!(
                    "stopping inside a source transaction: aborting the open Kafka transaction; its records are sent again on the next start"
                );
                self.abort().await
            }
            _ if at_unit_end && opened.elapsed() >= t.interval => self.commit(lsn).await,
            _ => Ok(()),
        }
    }

    /// Waits for every record of the open transaction to be acknowledged, writes the
    /// offsets record, commits, and counts the transaction's records delivered.
    async fn commit(&mut self, lsn: Option<Lsn>) -> Result<(), SinkError> {
        let started = Instant::now();
        let target = self.sent;
        // Failures surface here rather than as a failed commit, with the record named.
        while self.shared.acked.load(Ordering::Acquire) < target {
            self.check_failures().await?;
            tokio::time::sleep(ACK_POLL).await;
        }
        self.check_failures().await?;
        let t = self.txn_mut();
        let (topic, id) = (t.offsets_topic.clone(), t.transactional_id.clone());
        let value = OffsetRecord {
            slot: t.slot.clone(),
            lsn,
            ts_ms: now_ms(),
        }
        .to_json();
        let rec: BaseRecord<'_, str, [u8], usize> =
            BaseRecord::with_opaque_to(&topic, OFFSET_RECORD_SEQ as usize)
                .partition(0)
                .key(id.as_str())
                .payload(value.as_slice());
        if let Err((e, _)) = self.producer.send(rec) {
            let err = self.txn_error("writing the offsets record", &e);
            self.abort_quietly().await;
            return Err(err);
        }
        // rdkafka's commit_transaction flushes first, and with the producer's own polling
        // thread serving delivery reports its flush sleeps in 100 ms steps while anything
        // is in flight: wait for the offsets record here, without blocking, instead.
        while self.producer.in_flight_count() > 0 {
            self.check_failures().await?;
            tokio::time::sleep(ACK_POLL).await;
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .blocking("committing a transaction", |p| {
                    p.commit_transaction(TRANSACTION_TIMEOUT)
                })
                .await?;
            match result {
                Ok(()) => break,
                Err(e) => {
                    let code = e.rdkafka_error_code().map_or(-1, |c| c as i32);
                    let retriable = matches!(&e, KafkaError::Transaction(t) if t.is_retriable() && !t.is_fatal() && !t.txn_requires_abort());
                    let fatal = self.fatal_error();
                    if retriable
                        && fatal.is_none()
                        && attempt < COMMIT_ATTEMPTS
                        && BrokerErrorClass::of(code) != BrokerErrorClass::Fatal
                    {
                        tracing::warn!(error = %e, attempt, "committing the Kafka transaction failed; retrying");
                        continue;
                    }
                    let is_fatal =
                        fatal.is_some() || matches!(&e, KafkaError::Transaction(t) if t.is_fatal());
                    let err = fatal.unwrap_or_else(|| txn_err("committing a transaction", &e));
                    if !is_fatal {
                        self.abort_quietly().await;
                    }
                    return Err(err);
                }
            }
        }
        let t = self.txn_mut();
        let open_ms = t.opened.map_or(0, |o| o.elapsed().as_millis() as u64);
        t.opened = None;
        if lsn.is_some() {
            t.committed_lsn = lsn;
        }
        let records = target - self.shared.delivered.get();
        self.shared.delivered.advance_to(target);
        tracing::debug!(records, lsn = ?lsn.map(|l| l.to_string()), open_ms, commit_ms = started.elapsed().as_millis() as u64, "kafka transaction committed");
        Ok(())
    }

    /// Aborts the open transaction and ends the session: its records are not delivered.
    async fn abort(&mut self) -> Result<(), SinkError> {
        let result = self
            .blocking("aborting a transaction", |p| {
                p.abort_transaction(TRANSACTION_TIMEOUT)
            })
            .await?;
        self.txn_mut().opened = None;
        result.map_err(|e| self.txn_error("aborting a transaction", &e))
    }

    /// A transaction API error as a sink error: the producer's fatal error when it has one
    /// (see [`KafkaSink::fatal_error`]: the call's own code may hide why), else [`txn_err`].
    fn txn_error(&self, what: &str, e: &KafkaError) -> SinkError {
        self.fatal_error().unwrap_or_else(|| txn_err(what, e))
    }

    async fn abort_quietly(&mut self) {
        if let Err(e) = self.abort().await {
            tracing::warn!(error = %e, "aborting the Kafka transaction failed; the next start aborts it (init_transactions)");
        }
    }

    /// Best effort from `Drop`: abort what is open so `read_committed` consumers are not
    /// held back until the broker's transaction timeout; a restart would abort it too.
    pub(crate) fn abort_on_drop(&mut self) {
        self.producer
            .purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
        let _ = self.producer.abort_transaction(Duration::from_secs(5));
        if let Some(t) = self.txn.as_mut() {
            t.opened = None;
        }
    }

    /// Whether `init_transactions` ran (for tests and logs).
    pub fn transactions_started(&self) -> bool {
        self.txn.as_ref().is_some_and(|t| t.initialised)
    }
}

/// Reads partition 0 of `topic` up to its last stable offset and returns the newest
/// position stored under key `id`: first the tail, then, if the key is not there, the
/// whole partition.
fn read_offsets(cc: &ClientConfig, topic: &str, id: &str) -> Result<Option<Lsn>, SinkError> {
    let unavailable = |what: &str, e: KafkaError| SinkError::Unavailable {
        sink: NAME,
        message: format!("reading the offsets topic {topic:?}: {what}: {e}"),
    };
    let consumer: BaseConsumer = cc.create().map_err(|e| SinkError::Rejected {
        sink: NAME,
        topic: topic.to_string(),
        message: format!("the offsets reader's configuration is invalid: {e}"),
        retryable: false,
    })?;
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, ADMIN_TIMEOUT)
        .map_err(|e| unavailable("watermarks", e))?;
    if high <= low {
        return Ok(None);
    }
    let mut from = (high - OFFSETS_TAIL).max(low);
    loop {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, rdkafka::Offset::Offset(from))
            .map_err(|e| unavailable("assign", e))?;
        consumer
            .assign(&tpl)
            .map_err(|e| unavailable("assign", e))?;
        let deadline = Instant::now() + ADMIN_TIMEOUT;
        let mut found: Option<Option<Lsn>> = None;
        loop {
            if Instant::now() > deadline {
                return Err(SinkError::Unavailable {
                    sink: NAME,
                    message: format!(
                        "reading the offsets topic {topic:?} did not reach its end within {ADMIN_TIMEOUT:?}"
                    ),
                });
            }
            match consumer.poll(Duration::from_millis(100)) {
                // A tombstone (someone deleted the key) means no stored position.
                Some(Ok(m)) if m.key() == Some(id.as_bytes()) && m.payload().is_none() => {
                    found = Some(None);
                }
                Some(Ok(m)) if m.key() == Some(id.as_bytes()) => {
                    let value = m.payload().unwrap_or_default();
                    let record = OffsetRecord::from_json(value).map_err(|e| SinkError::Rejected {
                        sink: NAME,
                        topic: topic.to_string(),
                        message: format!(
                            "the offsets record at offset {} for {id:?} is not walrus's ({e}); use another [sink] offsets_topic or transactional_id",
                            m.offset()
                        ),
                        retryable: false,
                    })?;
                    found = Some(record.lsn);
                }
                Some(Ok(_)) => {}
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => return Err(unavailable("fetch", e)),
                None => {}
            }
        }
        match found {
            Some(lsn) => return Ok(lsn),
            None if from > low => from = low,
            None => return Ok(None),
        }
    }
}
