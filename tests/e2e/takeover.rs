//! Switching from Debezium without a gap: real Debezium (3.6.1 on Kafka Connect) streams a
//! table under a steady insert workload on its own slot and publication; it is stopped (the
//! connector removed) while the workload goes on; `walrus import debezium` turns the very
//! connector config Debezium ran with into a walrus.toml, and walrus starts on Debezium's slot
//! and publication, writing to the same topic.
//!
//! ```text
//!  workload ─ inserts ─▶ PostgreSQL ─ slot "<run>" ─▶ Debezium ─▶ <run>.public.t
//!                                          │  (connector removed; confirmed_flush_lsn = L)
//!                                          └────────▶ walrus (imported config) ─▶ <run>.public.t
//! ```
//!
//! Debezium runs with its default `publication.autocreate.mode` (`all_tables`): its publication
//! holds every table, and a second table written by the workload must not reach either output.
//!
//! What must hold (docs/migrating-from-debezium.md):
//! - every committed row is in the union of the two outputs: nothing lost;
//! - walrus takes no snapshot (no `r` records) and resumes at the slot's confirmed position:
//!   each of its rows has `source.lsn >= L`;
//! - the rows both wrote are exactly the Debezium rows after its last flushed LSN
//!   (`source.lsn >= L`): PostgreSQL resends the transactions whose commit starts at or after
//!   the slot's confirmed position, and with one insert per transaction from one session the
//!   insert and its commit fall on the same side of L;
//! - walrus's first `source.sequence` starts with L, the end of the last commit Debezium
//!   confirmed, as Debezium's own restart would.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::TopicPartitionList;
use serde_json::Value;
use walrus_testkit::debezium::POSTGRES_CONNECTOR;
use walrus_testkit::{unique_name, KafkaBroker, KafkaConnect};

use crate::common::*;

/// Rows in the table before Debezium starts: its snapshot.
const SNAPSHOT_ROWS: i64 = 5;

/// One record of the shared topic, with who wrote it.
#[derive(Debug)]
struct Row {
    id: i64,
    op: String,
    lsn: u64,
    sequence: Option<Value>,
    by_walrus: bool,
    key: Option<Vec<u8>>,
    /// The value without what cannot agree between two writers (docs/compat.md): processing
    /// times and `source.version`.
    value: Value,
}

#[tokio::test(flavor = "multi_thread")]
async fn walrus_takes_over_debeziums_slot_without_loss() {
    let broker = KafkaBroker::shared().expect("the shared Kafka broker");
    let env = Env::new().await;
    let sql = env.sql().await;
    sql.batch_execute(&format!(
        "CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL);
         CREATE TABLE other (id bigint PRIMARY KEY);
         INSERT INTO t SELECT g, 'snapshot ' || g FROM generate_series(1, {SNAPSHOT_ROWS}) g;"
    ))
    .await
    .expect("schema");
    let run = unique_name("tko");
    let topic = format!("{run}.public.t");
    let port = env.cluster.port().to_string();

    // The connector config, as a user would have it: REST JSON.
    let connector: Vec<(&str, String)> = vec![
        ("connector.class", POSTGRES_CONNECTOR.into()),
        ("database.hostname", "127.0.0.1".into()),
        ("database.port", port.clone()),
        ("database.user", "postgres".into()),
        ("database.password", "unused".into()),
        ("database.dbname", env.db.clone()),
        ("topic.prefix", run.clone()),
        ("plugin.name", "pgoutput".into()),
        ("slot.name", run.clone()),
        ("publication.name", run.clone()),
        // publication.autocreate.mode: Debezium's default, all_tables: a FOR ALL TABLES
        // publication, filtered by the connector (and by walrus's filter_events).
        ("table.include.list", "public\\.t".into()),
        (
            "key.converter",
            "org.apache.kafka.connect.json.JsonConverter".into(),
        ),
        ("key.converter.schemas.enable", "false".into()),
        (
            "value.converter",
            "org.apache.kafka.connect.json.JsonConverter".into(),
        ),
        ("value.converter.schemas.enable", "false".into()),
        ("topic.creation.default.partitions", "1".into()),
        ("topic.creation.default.replication.factor", "1".into()),
    ];
    let connect = KafkaConnect::start(&broker.bootstrap()).expect("Kafka Connect");
    let pairs: Vec<(&str, &str)> = connector.iter().map(|(k, v)| (*k, v.as_str())).collect();
    connect
        .add_connector(&run, &pairs)
        .expect("Debezium connector");
    let bootstrap = broker.bootstrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while read_rows(&bootstrap, &topic, Duration::from_secs(1)).len() < SNAPSHOT_ROWS as usize {
        assert!(
            Instant::now() < deadline,
            "Debezium's snapshot did not arrive; Connect log:\n{}",
            connect.log_tail(40)
        );
    }

    // The workload: one insert per transaction, from one session, until told to stop.
    let next = Arc::new(AtomicI64::new(SNAPSHOT_ROWS + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let workload = {
        let (next, stop) = (next.clone(), stop.clone());
        let client = env.sql().await;
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let id = next.load(Ordering::SeqCst);
                client
                    .execute("INSERT INTO t VALUES ($1, 'streamed')", &[&id])
                    .await
                    .expect("insert");
                // Published (FOR ALL TABLES), not captured.
                client
                    .execute("INSERT INTO other VALUES ($1)", &[&id])
                    .await
                    .expect("insert other");
                next.store(id + 1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Debezium stops while the workload goes on.
    connect.remove_connector(&run).expect("remove connector");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let active: bool = sql
            .query_one(
                "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                &[&run],
            )
            .await
            .expect("slot row")
            .get(0);
        if !active {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Debezium's slot stayed active after the connector was removed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let flushed: String = sql
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&run],
        )
        .await
        .expect("confirmed_flush_lsn")
        .get(0);
    let flushed = parse_lsn(&flushed);

    // walrus's config: imported from the connector config Debezium ran with.
    let json = serde_json::json!({
        "name": run,
        "config": connector.iter().map(|(k, v)| (k.to_string(), Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
    });
    let connector_file = env.dir.path().join("connector.json");
    std::fs::write(&connector_file, json.to_string()).expect("connector file");
    let config = env.dir.path().join("walrus.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_walrus"))
        .args(["import", "debezium"])
        .arg(&connector_file)
        .arg("-o")
        .arg(&config)
        .args(["--brokers", &bootstrap])
        .output()
        .expect("walrus import");
    assert!(
        out.status.success(),
        "walrus import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Trust authentication: the password the import asks for is not needed; the admin
    // server on any free port, as every e2e walrus.
    let text = std::fs::read_to_string(&config)
        .expect("imported config")
        .replace("${PGPASSWORD}", "${PGPASSWORD:-unused}")
        + "\n[admin]\nlisten = \"127.0.0.1:0\"\n";
    std::fs::write(&config, &text).expect("config");
    let check = walrus_check(&config);
    assert!(
        check.status.success(),
        "walrus check refused the imported config:\n{}\n{}\n{text}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let mut walrus = Walrus::start(&config);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    workload.await.expect("workload");
    let last = next.load(Ordering::SeqCst) - 1;

    let deadline = Instant::now() + Duration::from_secs(90);
    let rows = loop {
        let rows = read_rows(&bootstrap, &topic, Duration::from_secs(2));
        if rows.iter().any(|r| r.by_walrus && r.id == last) {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "walrus did not deliver row {last}; log:\n{}",
            walrus.log()
        );
    };
    walrus.interrupt();
    walrus.wait(Duration::from_secs(30));
    let other = read_rows(
        &bootstrap,
        &format!("{run}.public.other"),
        Duration::from_secs(1),
    );
    assert!(
        other.is_empty(),
        "{} events of a table outside table.include.list",
        other.len()
    );

    let debezium: Vec<&Row> = rows.iter().filter(|r| !r.by_walrus).collect();
    let ours: Vec<&Row> = rows.iter().filter(|r| r.by_walrus).collect();
    let ids = |rows: &[&Row]| rows.iter().map(|r| r.id).collect::<BTreeSet<_>>();
    let (dbz_ids, our_ids) = (ids(&debezium), ids(&ours));

    // Nothing lost: every committed row is in the union.
    let union: BTreeSet<i64> = dbz_ids.union(&our_ids).copied().collect();
    let missing: Vec<i64> = (1..=last).filter(|i| !union.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "rows lost in the switch: {missing:?} (L = {flushed})"
    );
    // No snapshot by walrus, and nothing before the slot's confirmed position.
    assert!(
        ours.iter().all(|r| r.op == "c"),
        "walrus wrote other than inserts (a snapshot?): {:?}",
        ours.iter()
            .filter(|r| r.op != "c")
            .take(3)
            .collect::<Vec<_>>()
    );
    let early: Vec<&&Row> = ours.iter().filter(|r| r.lsn < flushed).collect();
    assert!(
        early.is_empty(),
        "walrus resent rows before the slot's confirmed position {flushed}: {early:?}"
    );
    // Each side wrote each row once.
    for (side, list) in [("Debezium", &debezium), ("walrus", &ours)] {
        let mut seen = BTreeMap::new();
        for r in list.iter() {
            *seen.entry(r.id).or_insert(0) += 1;
        }
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "{side} wrote rows twice: {twice:?}");
    }
    // The duplicates are exactly Debezium's unflushed window.
    let duplicates: BTreeSet<i64> = dbz_ids.intersection(&our_ids).copied().collect();
    let unflushed: BTreeSet<i64> = debezium
        .iter()
        .filter(|r| r.op == "c" && r.lsn >= flushed)
        .map(|r| r.id)
        .collect();
    assert_eq!(
        duplicates, unflushed,
        "the rows both wrote are not Debezium's rows after its confirmed position {flushed}"
    );
    // The rows both wrote are the same records: key bytes and values (the imported config
    // gives walrus Debezium's format settings).
    for id in &duplicates {
        let theirs = debezium
            .iter()
            .find(|r| r.id == *id)
            .expect("Debezium's row");
        let mine = ours.iter().find(|r| r.id == *id).expect("walrus's row");
        assert_eq!(theirs.key, mine.key, "row {id}: key bytes differ");
        assert_eq!(theirs.value, mine.value, "row {id}: values differ");
    }
    // walrus's first event continues Debezium's sequence: the last confirmed commit.
    let first = ours
        .iter()
        .min_by_key(|r| r.lsn)
        .expect("walrus wrote rows");
    assert_eq!(
        first.sequence.as_ref().and_then(|s| s[0].as_str()),
        Some(flushed.to_string().as_str()),
        "walrus's first source.sequence: {:?}",
        first.sequence
    );
    eprintln!(
        "takeover: {last} rows, Debezium wrote {}, walrus {}, both {} (Debezium's unflushed window), slot confirmed at {flushed}",
        dbz_ids.len(),
        our_ids.len(),
        duplicates.len()
    );
}

/// Every record of `topic` from the beginning, until nothing new came for `idle`.
fn read_rows(bootstrap: &str, topic: &str, idle: Duration) -> Vec<Row> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique_name("takeover"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut assignment = TopicPartitionList::new();
    for t in metadata.topics() {
        if t.error().is_none() {
            for p in t.partitions() {
                assignment
                    .add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning)
                    .expect("partition");
            }
        }
    }
    if assignment.count() == 0 {
        std::thread::sleep(idle);
        return Vec::new();
    }
    consumer.assign(&assignment).expect("assign");
    let mut out = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < idle {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        last = Instant::now();
        let Some(payload) = m.payload() else {
            continue;
        };
        let mut v: Value = serde_json::from_slice(payload).expect("a JSON value");
        let by_walrus = m
            .headers()
            .is_some_and(|hs| hs.iter().any(|h| h.key == "id"));
        out.push(Row {
            id: v["after"]["id"].as_i64().expect("after.id"),
            op: v["op"].as_str().unwrap_or_default().to_owned(),
            lsn: v["source"]["lsn"].as_u64().expect("source.lsn"),
            sequence: v["source"]
                .get("sequence")
                .and_then(|s| s.as_str())
                .and_then(|s| serde_json::from_str(s).ok()),
            by_walrus,
            key: m.key().map(<[u8]>::to_vec),
            value: {
                for k in ["ts_ms", "ts_us", "ts_ns"] {
                    v.as_object_mut().map(|o| o.remove(k));
                    v["source"].as_object_mut().map(|o| o.remove(k));
                }
                v["source"].as_object_mut().map(|o| o.remove("version"));
                v
            },
        });
    }
    out
}
