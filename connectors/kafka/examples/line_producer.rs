//! The do-it-yourself baseline of the end-to-end benchmark: every line of standard input
//! becomes one Kafka message, produced the way a careful user would wire it by hand.
//!
//! ```text
//! pg_recvlogical -P wal2json -o format-version=2 ... -f - | line_producer <brokers> <topic>
//! ```
//!
//! The producer is a plain rdkafka `ThreadedProducer` (bundled, current librdkafka) with the
//! settings walrus's sink uses by default: idempotent, `acks=all`, lz4, `linger.ms` 5. Lines
//! are sent as they are read, without a key; when librdkafka's queue is full the reader
//! waits. At end of input it flushes, prints `delivered <n> failed <m>` on stderr and exits
//! non-zero if any delivery failed. What it lacks compared with walrus is the point of the
//! comparison: no typed values, no envelope, and the LSN that `pg_recvlogical` confirms is
//! the one written into the pipe, not one the broker acknowledged.
//!
//! `cargo run --release -p walrus-kafka --example line_producer -- <brokers> <topic> [partitions]`

use std::io::BufRead;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

/// Counts delivery reports (called on librdkafka's polling thread).
struct Counts {
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl ClientContext for Counts {}

impl ProducerContext for Counts {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(brokers), Some(topic)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: line_producer <brokers> <topic> [partitions]");
        std::process::exit(2);
    };
    let partitions: i32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    // Brokers may not auto-create topics; an existing topic is fine.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let _ = admin
        .create_topics(
            [&NewTopic::new(
                topic,
                partitions,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        )
        .await;
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let producer: ThreadedProducer<Counts> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .create_with_context(Counts {
            ok: ok.clone(),
            failed: failed.clone(),
        })
        .expect("producer");

    let stdin = std::io::stdin();
    let mut input = std::io::BufReader::with_capacity(1 << 20, stdin.lock());
    let mut line = Vec::with_capacity(4096);
    let mut sent = 0u64;
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("reading standard input: {e}");
                std::process::exit(1);
            }
        }
        let payload = line.strip_suffix(b"\n").unwrap_or(&line);
        if payload.is_empty() {
            continue;
        }
        let mut record: BaseRecord<'_, (), [u8]> = BaseRecord::to(topic).payload(payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // Back-pressure: librdkafka's queue is full until deliveries come back.
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    eprintln!("produce: {e}");
                    std::process::exit(1);
                }
            }
        }
        sent += 1;
    }
    if let Err(e) = producer.flush(Duration::from_secs(300)) {
        eprintln!("flush: {e}");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("sent {sent} delivered {ok} failed {failed}");
    if failed > 0 || ok < sent {
        std::process::exit(1);
    }
}
