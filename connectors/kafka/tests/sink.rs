//! The Kafka sink against Apache Kafka (walrus-testkit's broker, shared by the test run; each
//! test uses topics of its own) and against librdkafka's mock cluster for faults that are
//! hard to cause for real: injected produce errors, a broker that is down, messages over the
//! size limit. Every test checks the one thing the sink
//! exists for: the delivered count never passes a record the broker does not have.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::TopicPartitionList;
use walrus_core::config::{KafkaSinkConfig, PropertyValue};
use walrus_core::error::{Classify, ErrorClass};
use walrus_core::sink::{Delivered, FlushReason, Record, Sink};
use walrus_kafka::KafkaSink;
use walrus_testkit::{unique_name, KafkaBroker};

/// A consumed message.
#[derive(Debug, Clone)]
struct Msg {
    topic: String,
    partition: i32,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: HashMap<String, String>,
}

/// Reads every message of `topics` from the beginning until `expected` arrived (or no new
/// message came for `idle`). Counts by consuming: duplicates would show, high-water marks
/// would not.
fn consume(bootstrap: &str, topics: &[&str], expected: usize, idle: Duration) -> Vec<Msg> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("t{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        let md = consumer
            .fetch_metadata(Some(t), Duration::from_secs(10))
            .expect("metadata");
        for mt in md.topics() {
            for p in mt.partitions() {
                tpl.add_partition_offset(t, p.id(), rdkafka::Offset::Beginning)
                    .unwrap();
            }
        }
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut last = Instant::now();
    while out.len() < expected && last.elapsed() < idle {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last = Instant::now();
                out.push(Msg {
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| {
                                    (
                                        h.key.to_string(),
                                        String::from_utf8_lossy(h.value.unwrap_or_default())
                                            .into_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                });
            }
            Some(Err(e)) => panic!("consume: {e}"),
            None => {}
        }
    }
    out
}

fn record(topic: &str, key: &str, value: String, seq: u64) -> Record {
    Record {
        topic: Arc::from(topic),
        key: Some(Bytes::from(format!("{{\"id\":\"{key}\"}}"))),
        value: Some(Bytes::from(value)),
        event_headers: None,
        headers: vec![
            (Arc::from("id"), Bytes::from(format!("1:{seq}"))),
            (Arc::from("table"), Bytes::from_static(b"public.t")),
        ],
        timestamp_ms: 1_700_000_000_000,
    }
}

fn config(bootstrap: String) -> KafkaSinkConfig {
    let mut c = KafkaSinkConfig::new(bootstrap);
    c.topic_creation.partitions = 3;
    c.topic_creation.replication_factor = 1;
    c.shutdown_timeout_ms = 20_000;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_everything_in_key_order_against_apache_kafka() {
    let bootstrap = KafkaBroker::shared()
        .expect("the shared Apache Kafka broker")
        .bootstrap();
    let (even, odd) = (unique_name("t.even"), unique_name("t.odd"));
    let delivered = Delivered::new();
    let mut sink = KafkaSink::new(&config(bootstrap.clone()), delivered.clone()).unwrap();
    let mut seq = 0;
    let n_keys = 20;
    for batch in 0..10 {
        let mut records = Vec::new();
        for i in 0..100 {
            seq += 1;
            let topic = if i % 2 == 0 { &even } else { &odd };
            let key = format!("k{}", i % n_keys);
            records.push(record(
                topic,
                &key,
                format!("{{\"n\":{seq},\"b\":{batch}}}"),
                seq,
            ));
        }
        sink.send(records).await.unwrap();
        sink.flush(FlushReason::Interval).await.unwrap();
    }
    sink.flush(FlushReason::Shutdown).await.unwrap();
    assert_eq!(delivered.get(), 1000);
    let msgs = consume(&bootstrap, &[&even, &odd], 1000, Duration::from_secs(20));
    assert_eq!(msgs.len(), 1000, "every record arrives exactly once");
    // Per key: one partition, values in send order.
    let mut last: HashMap<Vec<u8>, (i32, u64)> = HashMap::new();
    for m in &msgs {
        let v: serde_json::Value = serde_json::from_slice(m.value.as_ref().unwrap()).unwrap();
        let n = v["n"].as_u64().unwrap();
        let key = m.key.clone().unwrap();
        if let Some((p, prev)) = last.get(&key) {
            assert_eq!(*p, m.partition, "a key stays on one partition");
            assert!(n > *prev, "per-key order: {n} after {prev}");
        }
        last.insert(key, (m.partition, n));
        assert_eq!(m.headers["table"], "public.t");
        assert_eq!(m.headers["id"], format!("1:{n}"));
        assert!(m.topic == even || m.topic == odd);
    }
}

/// A mock cluster with the given topics, and a sink config for it without topic creation
/// (the mock broker has no CreateTopics).
fn mock(
    topics: &[&str],
) -> (
    MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    KafkaSinkConfig,
) {
    let cluster = MockCluster::new(1).expect("mock cluster");
    for t in topics {
        cluster.create_topic(t, 2, 1).unwrap();
    }
    let mut c = KafkaSinkConfig::new(cluster.bootstrap_servers());
    c.topic_creation.enabled = false;
    c.shutdown_timeout_ms = 20_000;
    c.properties
        .insert("retry.backoff.ms".into(), PropertyValue::Int(10));
    (cluster, c)
}

fn batch(topic: &str, from: u64, n: u64, size: usize) -> Vec<Record> {
    (from..from + n)
        .map(|s| {
            record(
                topic,
                &format!("k{}", s % 7),
                format!("\"{}\"", "x".repeat(size)),
                s,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_produce_errors_are_retried_and_delay_confirmation() {
    let (cluster, cfg) = mock(&["m.t"]);
    let delivered = Delivered::new();
    let mut sink = KafkaSink::new(&cfg, delivered.clone()).unwrap();
    // Warm up: the topic is known and the producer id assigned.
    sink.send(batch("m.t", 1, 1, 10)).await.unwrap();
    sink.flush(FlushReason::Shutdown).await.unwrap();
    assert_eq!(delivered.get(), 1);
    // Every produce request fails for a while with errors a broker sends during a leader
    // change; librdkafka retries them.
    let errs: Vec<RDKafkaRespErr> = (0..30)
        .map(|i| {
            if i % 2 == 0 {
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION
            } else {
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT
            }
        })
        .collect();
    cluster.request_errors(RDKafkaApiKey::Produce, &errs);
    sink.send(batch("m.t", 2, 200, 50)).await.unwrap();
    sink.flush(FlushReason::Idle).await.unwrap();
    assert!(delivered.get() <= 201);
    sink.flush(FlushReason::Shutdown).await.unwrap();
    assert_eq!(
        delivered.get(),
        201,
        "everything delivered after the errors"
    );
    let msgs = consume(&cfg.brokers, &["m.t"], 201, Duration::from_secs(10));
    assert!(msgs.len() >= 201, "{} messages", msgs.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_confirms_nothing_until_it_is_back() {
    let (cluster, cfg) = mock(&["m.down"]);
    let delivered = Delivered::new();
    let mut sink = KafkaSink::new(&cfg, delivered.clone()).unwrap();
    sink.send(batch("m.down", 1, 10, 10)).await.unwrap();
    sink.flush(FlushReason::Shutdown).await.unwrap();
    assert_eq!(delivered.get(), 10);
    cluster.broker_down(1).unwrap();
    sink.send(batch("m.down", 11, 100, 10)).await.unwrap();
    // Idle and interval flushes do not wait for the broker.
    let t = Instant::now();
    for _ in 0..20 {
        sink.flush(FlushReason::Idle).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_eq!(
        delivered.get(),
        10,
        "nothing confirmed while the broker is down"
    );
    cluster.broker_up(1).unwrap();
    sink.flush(FlushReason::Shutdown).await.unwrap();
    assert_eq!(delivered.get(), 110);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_record_stops_the_sink_and_is_not_confirmed() {
    let (cluster, cfg) = mock(&["m.big"]);
    let delivered = Delivered::new();
    let mut sink = KafkaSink::new(&cfg, delivered.clone()).unwrap();
    sink.send(batch("m.big", 1, 5, 10)).await.unwrap();
    sink.flush(FlushReason::Shutdown).await.unwrap();
    // The broker refuses the next produce request as too large.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    sink.send(batch("m.big", 6, 1, 10)).await.unwrap();
    let err = sink.flush(FlushReason::Shutdown).await.unwrap_err();
    assert_eq!(err.kind().class(), ErrorClass::Fatal, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("m.big") && text.contains("public.t") && text.contains("max.message.bytes"),
        "names topic, table and fix: {text}"
    );
    assert_eq!(delivered.get(), 5, "the rejected record is not confirmed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_records_go_to_the_dead_letter_topic() {
    let (_cluster, mut cfg) = mock(&["m.dl", "m.dlq"]);
    cfg.dead_letter_topic = Some("m.dlq".into());
    // Client-side limit: librdkafka refuses the record before sending it.
    cfg.properties
        .insert("message.max.bytes".into(), PropertyValue::Int(2000));
    let delivered = Delivered::new();
    let mut sink = KafkaSink::new(&cfg, delivered.clone()).unwrap();
    let mut records = batch("m.dl", 1, 3, 10);
    records.push(record(
        "m.dl",
        "big",
        format!("\"{}\"", "y".repeat(5000)),
        4,
    ));
    records.extend(batch("m.dl", 5, 3, 10));
    sink.send(records).await.unwrap();
    sink.flush(FlushReason::Shutdown).await.unwrap();
    assert_eq!(
        delivered.get(),
        7,
        "the dead-lettered record counts as delivered"
    );
    let dl = consume(&cfg.brokers, &["m.dlq"], 1, Duration::from_secs(5));
    assert_eq!(dl.len(), 1);
    let m = &dl[0];
    assert_eq!(m.headers["walrus.original.topic"], "m.dl");
    assert_eq!(m.headers["table"], "public.t");
    assert!(
        m.headers["walrus.error"]
            .to_lowercase()
            .contains("too large"),
        "{:?}",
        m.headers
    );
    assert_eq!(m.key.as_deref(), Some(b"{\"id\":\"big\"}".as_slice()));
    assert_eq!(m.value, None, "a value too large for any topic is left out");
    assert_eq!(m.headers["walrus.original.value.bytes"], "5002");
    let main = consume(&cfg.brokers, &["m.dl"], 6, Duration::from_secs(5));
    assert_eq!(main.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_topic_with_creation_off_stops_with_a_fix() {
    let (_cluster, cfg) = mock(&["m.exists"]);
    let delivered = Delivered::new();
    let mut sink = KafkaSink::new(&cfg, delivered.clone()).unwrap();
    let err = sink.send(batch("m.missing", 1, 1, 10)).await.unwrap_err();
    assert_eq!(err.kind().class(), ErrorClass::Fatal);
    let text = err.to_string();
    assert!(
        text.contains("m.missing") && text.contains("topic_creation"),
        "{text}"
    );
    assert_eq!(delivered.get(), 0);
}

#[test]
fn an_invalid_property_is_a_fatal_config_error() {
    let mut cfg = KafkaSinkConfig::new("127.0.0.1:1");
    cfg.properties
        .insert("no.such.property".into(), PropertyValue::Int(1));
    let err = match KafkaSink::new(&cfg, Delivered::new()) {
        Err(e) => e,
        Ok(_) => panic!("an unknown property must be refused"),
    };
    assert_eq!(err.kind().class(), ErrorClass::Fatal);
    assert!(err.to_string().contains("no.such.property"), "{err}");
}
