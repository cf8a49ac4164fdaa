//! The broker's ceiling for walrus's Kafka benchmark: a plain rdkafka producer with the
//! settings the sink uses (idempotent, acks=all, lz4, linger 5 ms), sending N messages of a
//! given size to one topic, timed until the last delivery report.
//!
//! `cargo run --release -p walrus-kafka --example produce_baseline -- <brokers> <topic> [n] [bytes]`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

struct Ctx {
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}
impl ClientContext for Ctx {}
impl ProducerContext for Ctx {
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
    let brokers = args.get(1).map_or("127.0.0.1:9092", String::as_str);
    let topic = args.get(2).map_or("baseline", String::as_str);
    let n: u64 = args
        .get(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let size: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(200);
    // The topic, with 3 partitions like the walrus benchmark's (brokers may not auto-create).
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin");
    let _ = admin
        .create_topics(
            [&NewTopic::new(topic, 3, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await;
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let producer: ThreadedProducer<Ctx> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create_with_context(Ctx {
            ok: ok.clone(),
            failed: failed.clone(),
        })
        .expect("producer");
    // Hex digits from a xorshift generator: about as compressible as walrus's JSON events
    // (a constant payload would make lz4 and the broker's work unrealistically cheap).
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let values: Vec<Vec<u8>> = (0..1024)
        .map(|_| {
            (0..size)
                .map(|_| b"0123456789abcdef"[(next() & 15) as usize])
                .collect()
        })
        .collect();
    let start = Instant::now();
    for i in 0..n {
        let key = (i % 10_000).to_string();
        let value = &values[(i % 1024) as usize];
        let mut rec = BaseRecord::to(topic).key(&key).payload(value);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    rec = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{n} messages of {size} bytes: {secs:.2} s, {:.0} msgs/s (delivered {}, failed {})",
        n as f64 / secs,
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
}
