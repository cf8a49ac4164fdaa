//! The exactly-once mode of the Kafka sink against librdkafka's mock cluster and against
//! Apache Kafka (walrus-testkit's broker, shared by the test run).
//!
//! The mock cluster speaks the transaction protocol (InitProducerId, AddPartitionsToTxn,
//! EndTxn) but — with the bundled librdkafka 2.12 — neither hides aborted records from
//! `read_committed` consumers nor fences an older producer; so the mock tests check what the
//! sink does (when it commits, what it counts delivered, what it stores and reads back), and
//! the first one pins the mock's behaviour down so that a librdkafka that changes it is
//! noticed. Apache Kafka does both, and is where fencing is tested: a second sink with the
//! same transactional id takes over and the first stops with the operator's hint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::TopicPartitionList;
use walrus_core::config::{KafkaSinkConfig, PropertyValue, DEFAULT_KAFKA_OFFSETS_TOPIC};
use walrus_core::error::{Classify, ErrorClass};
use walrus_core::resume::OffsetRecord;
use walrus_core::sink::{Delivered, FlushReason, Record, Sink, UnitEnd};
use walrus_core::Lsn;
use walrus_kafka::KafkaSink;
use walrus_testkit::{unique_name, KafkaBroker};

/// Every message of partition 0 of `topic` (key, value), read with `isolation`.
fn read_all(bootstrap: &str, topic: &str, isolation: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "test-reader")
        .set("isolation.level", isolation)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push((
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
            )),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => panic!("consume: {e}"),
            None => {}
        }
    }
    out
}

fn record(topic: &str, n: u64) -> Record {
    Record {
        topic: Arc::from(topic),
        key: Some(Bytes::from(format!("{{\"id\":{n}}}"))),
        value: Some(Bytes::from(format!("{{\"n\":{n}}}"))),
        event_headers: None,
        headers: vec![],
        timestamp_ms: 1_700_000_000_000,
    }
}

/// A mock cluster with a one-partition data topic and the offsets topic, and an
/// exactly-once sink config for it.
fn mock() -> (
    MockCluster<'static, DefaultProducerContext>,
    KafkaSinkConfig,
) {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("t", 1, 1).unwrap();
    cluster
        .create_topic(DEFAULT_KAFKA_OFFSETS_TOPIC, 1, 1)
        .unwrap();
    let mut c = KafkaSinkConfig::new(cluster.bootstrap_servers());
    c.topic_creation.enabled = false;
    c.exactly_once = true;
    c.transaction_interval_ms = 200;
    c.properties
        .insert("retry.backoff.ms".into(), PropertyValue::Int(10));
    (cluster, c.for_slot("s1"))
}

#[test]
fn mock_cluster_runs_transactions_but_shows_aborted_records() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("t", 1, 1).unwrap();
    let b = cluster.bootstrap_servers();
    let producer = || -> ThreadedProducer<DefaultProducerContext> {
        ClientConfig::new()
            .set("bootstrap.servers", &b)
            .set("transactional.id", "probe")
            .create()
            .unwrap()
    };
    let p = producer();
    let t = Duration::from_secs(20);
    p.init_transactions(t).unwrap();
    p.begin_transaction().unwrap();
    p.send(BaseRecord::<str, str>::to("t").payload("committed"))
        .unwrap();
    p.commit_transaction(t).unwrap();
    p.begin_transaction().unwrap();
    p.send(BaseRecord::<str, str>::to("t").payload("aborted"))
        .unwrap();
    p.flush(t).unwrap();
    p.abort_transaction(t).unwrap();
    let values = |iso| -> Vec<String> {
        read_all(&b, "t", iso)
            .into_iter()
            .map(|(_, v)| String::from_utf8(v).unwrap())
            .collect()
    };
    // A real broker would show read_committed only "committed"; the mock shows both.
    assert_eq!(values("read_committed"), ["committed", "aborted"]);
    assert_eq!(values("read_uncommitted"), ["committed", "aborted"]);
    // A second producer with the same id does not fence the first on the mock.
    let p2 = producer();
    p2.init_transactions(t).unwrap();
    p.begin_transaction().unwrap();
    p.send(BaseRecord::<str, str>::to("t").payload("after"))
        .unwrap();
    assert!(p.commit_transaction(t).is_ok(), "the mock does not fence");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_only_at_unit_ends_and_counts_delivered_after_the_commit() {
    let (cluster, cfg) = mock();
    let b = cluster.bootstrap_servers();
    let delivered = Delivered::new();
    let mut sink = KafkaSink::new(&cfg, delivered.clone()).unwrap();
    assert_eq!(sink.resume_position().await.unwrap(), None);
    assert!(sink.transactions_started());
    // Two source transactions in one call (ending after record 2 and after record 5), then
    // the start of a third.
    let records: Vec<Record> = (1..=6).map(|n| record("t", n)).collect();
    let ends = vec![
        UnitEnd {
            records: 2,
            lsn: Some(Lsn(0x100)),
        },
        UnitEnd {
            records: 5,
            lsn: Some(Lsn(0x200)),
        },
    ];
    sink.send_units(records, ends).await.unwrap();
    // The broker acknowledges every record (the in-flight budget is freed) ...
    let deadline = Instant::now() + Duration::from_secs(20);
    while sink.settled() != Some(6) {
        assert!(Instant::now() < deadline, "records acknowledged");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ... but nothing counts delivered: the transaction holds part of a third source
    // transaction, so it cannot commit until that one ends, however long it waits.
    tokio::time::sleep(Duration::from_millis(400)).await;
    sink.flush(FlushReason::Interval).await.unwrap();
    assert_eq!(delivered.get(), 0);
    // The third ends; the interval is long up: the next unit end commits.
    sink.send_units(
        vec![record("t", 7)],
        vec![UnitEnd {
            records: 1,
            lsn: Some(Lsn(0x300)),
        }],
    )
    .await
    .unwrap();
    assert_eq!(delivered.get(), 7, "committed at the unit end");
    // Within the interval, a unit end does not commit; a flush after it does.
    sink.send_units(
        vec![record("t", 8)],
        vec![UnitEnd {
            records: 1,
            lsn: Some(Lsn(0x400)),
        }],
    )
    .await
    .unwrap();
    assert_eq!(delivered.get(), 7);
    tokio::time::sleep(Duration::from_millis(250)).await;
    sink.flush(FlushReason::Idle).await.unwrap();
    assert_eq!(delivered.get(), 8);
    // Stopping inside a source transaction aborts it: not delivered.
    sink.send_units(vec![record("t", 9)], vec![]).await.unwrap();
    sink.flush(FlushReason::Shutdown).await.unwrap();
    assert_eq!(delivered.get(), 8);
    drop(sink);

    // The offsets topic: the probe commit at start (no position yet), then one record per
    // commit with the end LSN of its last source transaction.
    let stored: Vec<OffsetRecord> = read_all(&b, DEFAULT_KAFKA_OFFSETS_TOPIC, "read_committed")
        .into_iter()
        .map(|(k, v)| {
            assert_eq!(k, b"walrus-s1");
            OffsetRecord::from_json(&v).unwrap()
        })
        .collect();
    let lsns: Vec<Option<Lsn>> = stored.iter().map(|r| r.lsn).collect();
    assert_eq!(lsns, [None, Some(Lsn(0x300)), Some(Lsn(0x400))]);
    assert!(stored.iter().all(|r| r.slot == "s1"));
    // The committed records are there, in order; the aborted record 9 may be too (the
    // mock shows aborted records), if it left the client before the abort.
    let data: Vec<String> = read_all(&b, "t", "read_committed")
        .into_iter()
        .map(|(_, v)| String::from_utf8(v).unwrap())
        .collect();
    let expected: Vec<String> = (1..=8).map(|n| format!("{{\"n\":{n}}}")).collect();
    assert_eq!(data[..8], expected[..]);
    assert!(data.len() <= 9);

    // A new sink with the same transactional id reads the position back (and restates it).
    let delivered = Delivered::new();
    let mut again = KafkaSink::new(&cfg, delivered.clone()).unwrap();
    assert_eq!(again.resume_position().await.unwrap(), Some(Lsn(0x400)));
    drop(again);
    // Another transactional id has no position of its own.
    let mut other_cfg = cfg.clone();
    other_cfg.transactional_id = Some("other".into());
    let mut other = KafkaSink::new(&other_cfg, Delivered::new()).unwrap();
    assert_eq!(other.resume_position().await.unwrap(), None);
}

/// The shared Apache Kafka broker, a one-partition data topic and an offsets topic of this
/// test's own (created by the sink), and an exactly-once sink config for them.
fn apache_kafka(slot: &str) -> (String, String, KafkaSinkConfig) {
    let bootstrap = KafkaBroker::shared()
        .expect("the shared Apache Kafka broker")
        .bootstrap();
    let topic = unique_name("t");
    let mut c = KafkaSinkConfig::new(bootstrap.clone());
    c.exactly_once = true;
    c.transaction_interval_ms = 0;
    c.offsets_topic = unique_name("offsets");
    c.transactional_id = Some(unique_name(slot));
    c.topic_creation.partitions = 1;
    c.topic_creation.replication_factor = 1;
    (bootstrap, topic, c.for_slot(slot))
}

#[test]
fn apache_kafka_hides_aborted_records_and_fences_an_older_producer() {
    let (b, topic, _) = apache_kafka("probe");
    let id = unique_name("probe");
    let producer = || -> ThreadedProducer<DefaultProducerContext> {
        ClientConfig::new()
            .set("bootstrap.servers", &b)
            .set("transactional.id", &id)
            .create()
            .unwrap()
    };
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new()
            .set("bootstrap.servers", &b)
            .create()
            .unwrap();
    let new = rdkafka::admin::NewTopic::new(&topic, 1, rdkafka::admin::TopicReplication::Fixed(1));
    let rt = tokio::runtime::Runtime::new().unwrap();
    for r in rt
        .block_on(admin.create_topics([&new], &rdkafka::admin::AdminOptions::new()))
        .unwrap()
    {
        r.unwrap();
    }
    let p = producer();
    let t = Duration::from_secs(30);
    p.init_transactions(t).unwrap();
    p.begin_transaction().unwrap();
    p.send(BaseRecord::<str, str>::to(&topic).payload("committed"))
        .unwrap();
    p.commit_transaction(t).unwrap();
    p.begin_transaction().unwrap();
    p.send(BaseRecord::<str, str>::to(&topic).payload("aborted"))
        .unwrap();
    p.flush(t).unwrap();
    p.abort_transaction(t).unwrap();
    let values = |iso| -> Vec<String> {
        read_all(&b, &topic, iso)
            .into_iter()
            .map(|(_, v)| String::from_utf8(v).unwrap())
            .collect()
    };
    // Unlike the mock cluster (the test above), the broker hides what was aborted.
    assert_eq!(values("read_committed"), ["committed"]);
    assert_eq!(values("read_uncommitted"), ["committed", "aborted"]);
    // A second producer with the same id fences the first: its next transaction fails
    // with a fatal error.
    let p2 = producer();
    p2.init_transactions(t).unwrap();
    p.begin_transaction().unwrap();
    p.send(BaseRecord::<str, str>::to(&topic).payload("fenced"))
        .unwrap();
    let err = p.commit_transaction(t).unwrap_err();
    let fatal = p.client().fatal_error();
    assert!(fatal.is_some(), "fenced is fatal: {err}");
    assert_eq!(values("read_committed"), ["committed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sink_with_the_same_transactional_id_fences_the_first_which_stops_with_the_hint() {
    let (b, topic, cfg) = apache_kafka("s1");
    let delivered = Delivered::new();
    let mut first = KafkaSink::new(&cfg, delivered.clone()).unwrap();
    assert_eq!(first.resume_position().await.unwrap(), None);
    first
        .send_units(
            vec![record(&topic, 1), record(&topic, 2)],
            vec![UnitEnd {
                records: 2,
                lsn: Some(Lsn(0x100)),
            }],
        )
        .await
        .unwrap();
    assert_eq!(delivered.get(), 2, "committed at the unit end");
    // The first sink opens another transaction and is fenced while it is open.
    first
        .send_units(vec![record(&topic, 3)], vec![])
        .await
        .unwrap();
    let mut second = KafkaSink::new(&cfg, Delivered::new()).unwrap();
    assert_eq!(
        second.resume_position().await.unwrap(),
        Some(Lsn(0x100)),
        "the second sink reads the first one's position"
    );
    // The first one's next step fails for good, whichever it is (a produce, or the commit).
    let err = match first
        .send_units(
            vec![record(&topic, 4)],
            vec![UnitEnd {
                records: 1,
                lsn: Some(Lsn(0x200)),
            }],
        )
        .await
    {
        Err(e) => e,
        Ok(()) => first
            .flush(FlushReason::Shutdown)
            .await
            .expect_err("a fenced sink cannot commit"),
    };
    assert_eq!(err.kind().class(), ErrorClass::Fatal, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("another producer with the same transactional id took over"),
        "{text}"
    );
    assert_eq!(
        delivered.get(),
        2,
        "nothing of the fenced transaction counts"
    );
    drop(first);
    // The second sink goes on; only committed records are visible.
    second
        .send_units(
            vec![record(&topic, 3), record(&topic, 4)],
            vec![UnitEnd {
                records: 2,
                lsn: Some(Lsn(0x200)),
            }],
        )
        .await
        .unwrap();
    second.flush(FlushReason::Shutdown).await.unwrap();
    let data: Vec<String> = read_all(&b, &topic, "read_committed")
        .into_iter()
        .map(|(_, v)| String::from_utf8(v).unwrap())
        .collect();
    let expected: Vec<String> = (1..=4).map(|n| format!("{{\"n\":{n}}}")).collect();
    assert_eq!(data, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_refused_before_sending_goes_to_the_dead_letter_topic_inside_the_transaction() {
    let (cluster, mut cfg) = mock();
    cluster.create_topic("dlq", 1, 1).unwrap();
    cfg.dead_letter_topic = Some("dlq".into());
    // Client-side limit: librdkafka refuses the record before it is sent, which leaves the
    // transaction intact.
    cfg.properties
        .insert("message.max.bytes".into(), PropertyValue::Int(2000));
    let delivered = Delivered::new();
    let mut sink = KafkaSink::new(&cfg, delivered.clone()).unwrap();
    sink.resume_position().await.unwrap();
    let mut big = record("t", 2);
    big.value = Some(Bytes::from(format!("\"{}\"", "y".repeat(5000))));
    sink.send_units(
        vec![record("t", 1), big, record("t", 3)],
        vec![UnitEnd {
            records: 3,
            lsn: Some(Lsn(0x500)),
        }],
    )
    .await
    .unwrap();
    sink.flush(FlushReason::Shutdown).await.unwrap();
    assert_eq!(
        delivered.get(),
        3,
        "committed, the dead-lettered record too"
    );
    let b = cluster.bootstrap_servers();
    assert_eq!(read_all(&b, "dlq", "read_committed").len(), 1);
    assert_eq!(read_all(&b, "t", "read_committed").len(), 2);
    let last = read_all(&b, DEFAULT_KAFKA_OFFSETS_TOPIC, "read_committed")
        .pop()
        .unwrap();
    assert_eq!(
        OffsetRecord::from_json(&last.1).unwrap().lsn,
        Some(Lsn(0x500))
    );
}

/// What the exactly-once mode costs the client: the same records (200-byte values, a unit
/// end every 5 records) through the sink on the mock cluster with and without
/// transactions, wall time and this process's CPU-seconds per record. The mock answers at
/// once, so this measures walrus's and librdkafka's own work, not a broker's. Run with
/// `cargo nextest run -p walrus-kafka --test transactions --run-ignored only --no-capture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn exactly_once_cost_on_the_mock_cluster() {
    const RECORDS: u64 = 200_000;
    const PER_UNIT: u64 = 5;
    async fn run(exactly_once: bool) -> (f64, f64) {
        let (cluster, mut cfg) = mock();
        cfg.exactly_once = exactly_once;
        cfg.transaction_interval_ms = 100;
        let delivered = Delivered::new();
        let mut sink = KafkaSink::new(&cfg, delivered.clone()).unwrap();
        sink.resume_position().await.unwrap();
        let value = Bytes::from(format!("\"{}\"", "v".repeat(198)));
        let cpu0 = walrus_testkit::process::cpu_seconds(std::process::id()).unwrap();
        let t0 = Instant::now();
        let mut n = 0;
        while n < RECORDS {
            let mut records = Vec::new();
            let mut ends = Vec::new();
            for i in 0..1000 {
                n += 1;
                let mut r = record("t", n);
                r.value = Some(value.clone());
                records.push(r);
                if n % PER_UNIT == 0 {
                    ends.push(UnitEnd {
                        records: i + 1,
                        lsn: Some(Lsn(n)),
                    });
                }
            }
            sink.send_units(records, ends).await.unwrap();
            sink.flush(FlushReason::Interval).await.unwrap();
        }
        sink.flush(FlushReason::Shutdown).await.unwrap();
        assert_eq!(delivered.get(), RECORDS);
        let wall = t0.elapsed().as_secs_f64();
        let cpu = walrus_testkit::process::cpu_seconds(std::process::id()).unwrap() - cpu0;
        drop(sink);
        drop(cluster);
        (wall, cpu)
    }
    // Alternate the modes, three rounds after a warm-up; medians.
    run(false).await;
    let (mut alo, mut eos) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        alo.push(run(false).await);
        eos.push(run(true).await);
    }
    let median = |v: &mut Vec<(f64, f64)>| {
        let mut w: Vec<f64> = v.iter().map(|x| x.0).collect();
        let mut c: Vec<f64> = v.iter().map(|x| x.1).collect();
        w.sort_by(f64::total_cmp);
        c.sort_by(f64::total_cmp);
        (w[1], c[1])
    };
    let ((w0, c0), (w1, c1)) = (median(&mut alo), median(&mut eos));
    let per = |c: f64| c / RECORDS as f64 * 1e6;
    eprintln!(
        "at least once: {:.0} records/s, {:.2} µs CPU/record; exactly once: {:.0} records/s, {:.2} µs CPU/record; wall ratio {:.2}, CPU ratio {:.2}",
        RECORDS as f64 / w0,
        per(c0),
        RECORDS as f64 / w1,
        per(c1),
        w1 / w0,
        c1 / c0
    );
}
