//! The Kafka sink end to end: the real `walrus` binary, a throwaway PostgreSQL and Apache
//! Kafka 4.4 (walrus-testkit's one-node KRaft broker), read back by a real rdkafka consumer
//! with `isolation.level=read_committed` (librdkafka's default).
//!
//! Tests that only produce and consume share one broker per test run
//! ([`KafkaBroker::shared`]), each under its own topic prefix, offsets topic and
//! transactional id (all named after its unique slot); tests that freeze, restart or kill the
//! broker start their own. librdkafka's mock cluster stays where it injects faults a real
//! broker cannot (produce errors on demand, a broker that refuses connections).
//!
//! - rows of several tables arrive complete: topics (default, regex routes, overrides), keys
//!   and values in Debezium's shapes, headers, per-key order, column filters, skipped ops;
//! - the outbox router: topic from the aggregate type, key, header id, payload; deletes
//!   produce nothing; keep-rows outboxes are emptied once delivered;
//! - a broker outage (SIGSTOP for 30 s) mid-workload: `confirmed_flush_lsn` does not pass
//!   what the broker has not acknowledged; after SIGCONT every committed row arrives;
//! - injected faults on the mock cluster (broker down, produce errors): the same, also in
//!   the exactly-once mode, where timed-out records abort their Kafka transaction and the
//!   session restarts from the stored position;
//! - a message over the size limit: walrus stops with an error naming topic, table and fix,
//!   and the slot does not pass it; with a dead-letter topic, the event lands there;
//! - kill -9 of walrus mid-workload, then a restart: every committed row arrives;
//! - the exactly-once mode, on Apache Kafka, read with `read_committed`: every row arrives
//!   exactly once across kill -9 of walrus mid-transaction (the source transactions Kafka
//!   committed before the kill are dropped although PostgreSQL resends them; the open Kafka
//!   transaction is aborted), across a restart of the broker, and when a second walrus with
//!   the same `transactional_id` takes over (the first is fenced and stops with the hint).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::TopicPartitionList;
use serde_json::{json, Value};
use walrus_testkit::KafkaBroker;

use crate::common::*;

/// A consumed message.
#[derive(Debug, Clone)]
struct Msg {
    topic: String,
    partition: i32,
    key: Option<Value>,
    value: Option<Value>,
    raw_key: Option<Vec<u8>>,
    headers: HashMap<String, String>,
}

/// Reads every message of `topics` from the beginning until `expected` arrived or nothing
/// new came for `idle`, with `read_committed` (librdkafka's default): records of aborted
/// transactions are not shown. Counts by consuming: transaction markers take offsets too.
fn consume(bootstrap: &str, topics: &[&str], expected: usize, idle: Duration) -> Vec<Msg> {
    consume_with(bootstrap, topics, expected, idle, "read_committed")
}

/// [`consume`] with the given `isolation.level` (`read_uncommitted` shows the records of
/// open and aborted transactions too).
fn consume_with(
    bootstrap: &str,
    topics: &[&str],
    expected: usize,
    idle: Duration,
    isolation: &str,
) -> Vec<Msg> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique_name_group())
        .set("isolation.level", isolation)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        // The topic may not exist yet (walrus creates it on its first record): wait for it.
        let deadline = Instant::now() + idle;
        loop {
            let md = consumer
                .fetch_metadata(Some(t), Duration::from_secs(10))
                .expect("metadata");
            let parts: Vec<i32> = md
                .topics()
                .iter()
                .filter(|mt| mt.error().is_none())
                .flat_map(|mt| mt.partitions().iter().map(|p| p.id()))
                .collect();
            if !parts.is_empty() || Instant::now() > deadline {
                for p in parts {
                    tpl.add_partition_offset(t, p, rdkafka::Offset::Beginning)
                        .unwrap();
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut last = Instant::now();
    while out.len() < expected && last.elapsed() < idle {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last = Instant::now();
                let json = |b: Option<&[u8]>| b.and_then(|b| serde_json::from_slice(b).ok());
                out.push(Msg {
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    key: json(m.key()),
                    value: json(m.payload()),
                    raw_key: m.key().map(<[u8]>::to_vec),
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

fn unique_name_group() -> String {
    walrus_testkit::unique_name("g")
}

/// The address of this test run's shared broker, for tests that only produce and consume.
fn shared_broker() -> String {
    KafkaBroker::shared()
        .expect("the shared Apache Kafka broker")
        .bootstrap()
}

/// A topic of this test: `<slot>.<name>` (the slot name is unique, so tests sharing the
/// broker never meet). `kafka_config` sets the topic prefix to the slot name too.
fn topic(env: &Env, name: &str) -> String {
    format!("{}.{name}", env.slot)
}

/// The config for `env` with a Kafka sink; `extra` is appended at the top level (routes,
/// tables, outbox) and `sink_extra` inside `[sink]`.
fn kafka_config(env: &Env, brokers: &str, tables: &str, sink_extra: &str, extra: &str) -> String {
    format!(
        r#"topic_prefix = "{slot}"
[source]
url = "{url}"
slot = "{slot}"
publication = "{slot}"
tables = {tables}
status_interval_ms = 200
[pipeline]
flush_interval_ms = 50
[admin]
listen = "127.0.0.1:0"
[sink]
type = "kafka"
brokers = "{brokers}"
linger_ms = 5
{sink_extra}
{extra}
"#,
        url = env.cluster.url(&env.db),
        slot = env.slot,
    )
}

const TOPIC_CREATION: &str = "[sink.topic_creation]\npartitions = 3\nreplication_factor = 1\n";

async fn start(cfg: &std::path::Path) -> Walrus {
    let mut w = Walrus::start(cfg);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !w.log().contains("starting replication") {
        if Instant::now() > deadline || !w.is_running() {
            panic!("walrus did not start replicating; log:\n{}", w.log());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w
}

/// Waits until the slot confirmed everything written so far (`what` names the wait if it
/// times out), then stops walrus cleanly.
async fn confirm_all_then_stop(
    env: &Env,
    c: &tokio_postgres::Client,
    walrus: &mut Walrus,
    within: Duration,
    what: &str,
) {
    let end = wal_end_lsn(c).await;
    wait_until_async(within, what, || async {
        env.confirmed_flush_lsn().await.is_some_and(|l| l >= end)
    })
    .await;
    walrus.interrupt();
    assert!(
        walrus.wait(Duration::from_secs(30)).success(),
        "{}",
        walrus.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_rows_arrive_with_debezium_keys_values_headers_and_routes() {
    let brokers = shared_broker();
    let env = Env::new().await;
    let c = env.sql().await;
    c.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text, qty int);
         CREATE TABLE customers (id int PRIMARY KEY, email text NOT NULL, secret text);
         CREATE TABLE orders_us (id int PRIMARY KEY, total int);
         CREATE TABLE orders_eu (id int PRIMARY KEY, total int);",
    )
    .await
    .unwrap();
    let routing = format!(
        r#"
[[routes]]
match = 'public\.orders_(.*)'
topic = "{slot}.orders.$1"
[tables."public.customers"]
topic = "{slot}.crm.customers"
key_columns = ["email"]
exclude_columns = ["secret"]
skip_ops = ["d"]
"#,
        slot = env.slot
    );
    let cfg = env.write_config(&kafka_config(
        &env,
        &brokers,
        r#"["public.*"]"#,
        TOPIC_CREATION,
        &routing,
    ));
    let mut walrus = start(&cfg).await;

    // A mixed workload: items updated repeatedly (per-key order), customers with a
    // filtered column and skipped deletes, orders in two routed tables.
    let n_items = 50;
    for round in 0..4 {
        let mut sql = String::from("BEGIN;");
        for i in 0..n_items {
            if round == 0 {
                sql.push_str(&format!("INSERT INTO items VALUES ({i}, 'item{i}', 0);"));
            } else {
                sql.push_str(&format!("UPDATE items SET qty = {round} WHERE id = {i};"));
            }
        }
        sql.push_str("COMMIT;");
        c.batch_execute(&sql).await.unwrap();
    }
    c.batch_execute(
        "INSERT INTO customers SELECT g, 'c' || g || '@x', 'pw' || g FROM generate_series(1, 10) g;
         DELETE FROM customers WHERE id <= 3;
         INSERT INTO orders_us SELECT g, g * 10 FROM generate_series(1, 20) g;
         INSERT INTO orders_eu SELECT g, g * 20 FROM generate_series(1, 15) g;
         DELETE FROM items WHERE id = 0;",
    )
    .await
    .unwrap();
    confirm_all_then_stop(
        &env,
        &c,
        &mut walrus,
        Duration::from_secs(60),
        "confirmation of the workload",
    )
    .await;

    let b = brokers;
    let items = consume(
        &b,
        &[&topic(&env, "public.items")],
        4 * n_items + 2,
        Duration::from_secs(10),
    );
    assert_eq!(
        items.len(),
        4 * n_items + 2,
        "creates, updates, a delete and its tombstone"
    );
    // Per key: one partition, operations in commit order.
    let mut per_key: BTreeMap<i64, Vec<&Msg>> = BTreeMap::new();
    for m in &items {
        per_key
            .entry(m.key.as_ref().unwrap()["id"].as_i64().unwrap())
            .or_default()
            .push(m);
    }
    for (id, msgs) in &per_key {
        assert!(msgs.iter().all(|m| m.partition == msgs[0].partition));
        let qty: Vec<i64> = msgs
            .iter()
            .filter_map(|m| m.value.as_ref())
            .filter(|v| v["op"] != "d")
            .map(|v| v["after"]["qty"].as_i64().unwrap())
            .collect();
        assert_eq!(qty, vec![0, 1, 2, 3], "order of key {id}");
    }
    let first = &per_key[&1][0];
    assert_eq!(first.key, Some(json!({"id": 1})));
    let v = first.value.as_ref().unwrap();
    assert_eq!(v["op"], "c");
    assert_eq!(v["after"], json!({"id": 1, "name": "item1", "qty": 0}));
    assert_eq!(v["source"]["table"], "items");
    assert_eq!(first.headers["op"], "c");
    assert_eq!(first.headers["table"], "public.items");
    assert_eq!(
        first.headers["txId"],
        v["source"]["txId"].as_i64().unwrap().to_string()
    );
    assert!(first.headers["id"].contains(':'), "{:?}", first.headers);
    // Event ids are unique.
    let ids: std::collections::HashSet<&String> = items.iter().map(|m| &m.headers["id"]).collect();
    assert_eq!(ids.len(), items.len());
    let deleted = &per_key[&0];
    assert_eq!(deleted.len(), 6);
    assert_eq!(deleted[4].value.as_ref().unwrap()["op"], "d");
    assert!(deleted[5].value.is_none(), "tombstone");
    assert!(deleted[5].headers["id"].ends_with(":tombstone"));

    let customers = consume(
        &b,
        &[&topic(&env, "crm.customers")],
        10,
        Duration::from_secs(10),
    );
    assert_eq!(customers.len(), 10, "deletes skipped: only the 10 creates");
    for m in &customers {
        let v = m.value.as_ref().unwrap();
        assert_eq!(v["op"], "c");
        assert!(v["after"].get("secret").is_none(), "secret excluded: {v}");
        assert_eq!(m.key.as_ref().unwrap()["email"], v["after"]["email"]);
    }
    let (us_topic, eu_topic) = (topic(&env, "orders.us"), topic(&env, "orders.eu"));
    let us = consume(&b, &[&us_topic], 20, Duration::from_secs(10));
    let eu = consume(&b, &[&eu_topic], 15, Duration::from_secs(10));
    assert_eq!((us.len(), eu.len()), (20, 15));
    assert_eq!(us[0].headers["table"], "public.orders_us");
    assert!(us.iter().all(|m| m.topic == us_topic));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_event_headers_off_leaves_only_the_headers_debezium_writes() {
    let brokers = shared_broker();
    let env = Env::new().await;
    let c = env.sql().await;
    c.batch_execute("CREATE TABLE h (id int PRIMARY KEY, v text);")
        .await
        .unwrap();
    let cfg = env.write_config(&kafka_config(
        &env,
        &brokers,
        r#"["public.h"]"#,
        &format!("event_headers = false\n{TOPIC_CREATION}"),
        "",
    ));
    let mut walrus = start(&cfg).await;
    c.batch_execute(
        "INSERT INTO h VALUES (1, 'a'), (2, 'b');
         UPDATE h SET id = 3 WHERE id = 1;
         DELETE FROM h WHERE id = 2;",
    )
    .await
    .unwrap();
    confirm_all_then_stop(
        &env,
        &c,
        &mut walrus,
        Duration::from_secs(60),
        "confirmation of the workload",
    )
    .await;
    // Two creates; the key change as a delete, its tombstone and a create; a delete and
    // its tombstone.
    let msgs = consume(
        &brokers,
        &[&topic(&env, "public.h")],
        7,
        Duration::from_secs(10),
    );
    assert_eq!(msgs.len(), 7, "{msgs:?}");
    for m in &msgs {
        for walrus_header in ["id", "op", "table", "txId"] {
            assert!(!m.headers.contains_key(walrus_header), "{m:?}");
        }
    }
    // Debezium's key-change headers stay.
    let new_key = msgs
        .iter()
        .find(|m| m.headers.contains_key("__debezium.newkey"))
        .expect("the delete half of the key change");
    assert_eq!(new_key.headers["__debezium.newkey"], r#"{"id":3}"#);
    assert!(msgs
        .iter()
        .any(|m| m.headers.get("__debezium.oldkey").map(String::as_str) == Some(r#"{"id":1}"#)));
}

/// Polls an async condition.
async fn wait_until_async<F, Fut>(timeout: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !f().await {
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_outbox_routes_inserts_and_ignores_deletes() {
    let brokers = shared_broker();
    let env = Env::new().await;
    let c = env.sql().await;
    let ddl = |t: &str| {
        format!(
            "CREATE TABLE {t} (id uuid PRIMARY KEY, aggregatetype text NOT NULL, aggregateid text NOT NULL, type text NOT NULL, payload jsonb)"
        )
    };
    c.batch_execute(&format!("{}; {};", ddl("outbox"), ddl("kept_outbox")))
        .await
        .unwrap();
    // Outbox topics are not prefixed: each names the slot to stay apart on the shared broker.
    let routing = format!(
        r#"
[[outbox]]
table = "public.outbox"
topic = "{slot}.outbox.event.{{aggregatetype}}"
fields = [{{ column = "type", placement = "header", name = "eventType" }}]
[[outbox]]
table = "public.kept_outbox"
topic = "{slot}.kept.{{aggregatetype}}"
delete_after_delivery = true
delete_interval_ms = 100
"#,
        slot = env.slot
    );
    let cfg = env.write_config(&kafka_config(
        &env,
        &brokers,
        r#"["public.outbox", "public.kept_outbox"]"#,
        TOPIC_CREATION,
        &routing,
    ));
    let mut walrus = start(&cfg).await;
    // The recommended practice: insert and delete in one transaction.
    c.batch_execute(
        "BEGIN;
         INSERT INTO outbox VALUES ('00000000-0000-4000-8000-000000000001', 'Order', 'o-1', 'OrderCreated', '{\"total\": 10}');
         INSERT INTO outbox VALUES ('00000000-0000-4000-8000-000000000002', 'Customer', 'c-7', 'CustomerMoved', '{\"city\": \"Oslo\"}');
         INSERT INTO outbox VALUES ('00000000-0000-4000-8000-000000000003', 'Order', 'o-1', 'OrderPaid', '{\"total\": 10, \"paid\": true}');
         DELETE FROM outbox;
         COMMIT;
         INSERT INTO kept_outbox SELECT ('00000000-0000-4000-8000-1' || lpad(g::text, 11, '0'))::uuid, 'Invoice', 'i-' || g, 'InvoiceIssued', jsonb_build_object('n', g) FROM generate_series(1, 20) g;",
    )
    .await
    .unwrap();
    let b = brokers;
    let orders = consume(
        &b,
        &[&topic(&env, "outbox.event.Order")],
        2,
        Duration::from_secs(30),
    );
    let customers = consume(
        &b,
        &[&topic(&env, "outbox.event.Customer")],
        1,
        Duration::from_secs(10),
    );
    assert_eq!(
        (orders.len(), customers.len()),
        (2, 1),
        "deletes produce nothing"
    );
    // The key as Debezium writes it with JsonConverter: a JSON string.
    assert_eq!(orders[0].raw_key.as_deref(), Some(br#""o-1""#.as_slice()));
    assert_eq!(orders[0].value, Some(json!({"total": 10})));
    assert_eq!(
        orders[0].headers["id"],
        "00000000-0000-4000-8000-000000000001"
    );
    assert_eq!(orders[0].headers["eventType"], "OrderCreated");
    assert_eq!(orders[1].headers["eventType"], "OrderPaid");
    assert_eq!(orders[1].value, Some(json!({"total": 10, "paid": true})));
    assert_eq!(
        customers[0].raw_key.as_deref(),
        Some(br#""c-7""#.as_slice())
    );

    let kept_topic = topic(&env, "kept.Invoice");
    let kept = consume(&b, &[&kept_topic], 20, Duration::from_secs(30));
    assert_eq!(kept.len(), 20);
    // Housekeeping deletes the kept rows once the broker confirmed them.
    let emptied = Instant::now();
    wait_until_async(Duration::from_secs(30), "kept_outbox emptied", || async {
        if emptied.elapsed() > Duration::from_secs(28) {
            eprintln!("walrus log:\n{}", walrus.log());
        }
        let n: i64 = c
            .query_one("SELECT count(*) FROM kept_outbox", &[])
            .await
            .unwrap()
            .get(0);
        n == 0
    })
    .await;
    walrus.interrupt();
    assert!(
        walrus.wait(Duration::from_secs(30)).success(),
        "{}",
        walrus.log()
    );
    // The housekeeping deletes did not publish anything.
    let kept = consume(&b, &[&kept_topic], 21, Duration::from_secs(3));
    assert_eq!(kept.len(), 20);
}

/// Serial transactions inserting rows into `items`; after each commit, the WAL insert
/// position (at or past the commit's end). Returns the handle yielding the last id.
fn workload(
    client: tokio_postgres::Client,
    transactions: usize,
    commits: Commits,
    pace: Duration,
) -> tokio::task::JoinHandle<i64> {
    tokio::spawn(async move {
        let mut next_id = 1i64;
        for t in 0..transactions {
            let rows = (t % 5) as i64 + 1;
            client
                .batch_execute(&format!(
                    "INSERT INTO items SELECT g, repeat('x', 100) FROM generate_series({}, {}) g",
                    next_id,
                    next_id + rows - 1
                ))
                .await
                .unwrap();
            next_id += rows;
            let lsn = wal_end_lsn(&client).await;
            commits.lock().unwrap().push((next_id - 1, lsn));
            tokio::time::sleep(pace).await;
        }
        next_id - 1
    })
}

/// Creates the `items` table the workload writes; returns the connection used.
async fn create_items(env: &Env) -> tokio_postgres::Client {
    let c = env.sql().await;
    c.batch_execute("CREATE TABLE items (id bigint PRIMARY KEY, payload text)")
        .await
        .unwrap();
    c
}

/// Starts walrus on `cfg` and [`workload`] (`transactions` of them, `pace` apart), and
/// returns once `first` have committed: walrus, the commits so far, and the workload.
async fn start_under_workload(
    env: &Env,
    cfg: &std::path::Path,
    transactions: usize,
    pace: Duration,
    first: usize,
) -> (Walrus, Commits, tokio::task::JoinHandle<i64>) {
    let walrus = start(cfg).await;
    let commits: Commits = Arc::default();
    let load = workload(env.sql().await, transactions, commits.clone(), pace);
    while commits.lock().unwrap().len() < first {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (walrus, commits, load)
}

/// `(id, commit LSN)` of each committed workload transaction.
type Commits = Arc<Mutex<Vec<(i64, u64)>>>;

fn distinct_ids(msgs: &[Msg]) -> std::collections::BTreeSet<i64> {
    msgs.iter()
        .filter_map(|m| m.key.as_ref()?["id"].as_i64())
        .collect()
}

/// How long the broker is frozen (SIGSTOP) mid-workload: longer than librdkafka's
/// default `socket.timeout.ms` half and any linger or retry backoff, so requests are stuck
/// in flight, but within `message.timeout.ms`, so nothing fails.
const BROKER_PAUSE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_broker_outage_holds_the_slot_and_loses_nothing() {
    // Its own broker: this test freezes it.
    let broker = KafkaBroker::start().expect("an Apache Kafka broker");
    let env = Env::new().await;
    let c = create_items(&env).await;
    let cfg = env.write_config(&kafka_config(
        &env,
        &broker.bootstrap(),
        r#"["public.items"]"#,
        TOPIC_CREATION,
        "",
    ));
    // About 50 s of transactions: before, during and after the 30 s pause.
    let (mut walrus, commits, load) =
        start_under_workload(&env, &cfg, 4000, Duration::from_millis(10), 100).await;
    broker.pause().unwrap();
    let commits_at_pause = commits.lock().unwrap().len();
    // Nothing the broker receives from now on can be acknowledged.
    let at_pause = wal_end_lsn(&c).await;
    let paused = Instant::now();
    let mut samples = 0;
    while paused.elapsed() < BROKER_PAUSE {
        if let Some(confirmed) = env.confirmed_flush_lsn().await {
            assert!(
                confirmed <= at_pause,
                "confirmed_flush_lsn {confirmed:X} passed {at_pause:X} while the broker was frozen"
            );
            samples += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(samples > 50);
    assert!(
        commits.lock().unwrap().len() > commits_at_pause + 200,
        "the workload went on while the broker was frozen"
    );
    assert!(
        walrus.is_running(),
        "walrus waits for the broker: {}",
        walrus.log()
    );
    broker.resume().unwrap();
    let last_id = load.await.unwrap();
    let end = wal_end_lsn(&c).await;
    // A single KRaft node stopped for 30 s fences itself (its own heartbeats lapse) and
    // librdkafka's idempotent producer bumps its epoch after the timed-out requests; on a
    // loaded 2-core machine that recovery once took more than 90 s. Waiting longer does not
    // weaken the test: nothing may be confirmed early (checked above) and every row must
    // arrive (below). A failure shows how far confirmation got and the broker's log.
    let resumed = Instant::now();
    let mut confirmed = None;
    while confirmed.is_none_or(|l| l < end) {
        assert!(
            resumed.elapsed() < Duration::from_secs(240),
            "no confirmation of {end:X} within 240 s of the broker's resume (confirmed: {confirmed:X?})\nbroker log:\n{}\nwalrus log:\n{}",
            broker.log_tail(40),
            walrus.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        confirmed = env.confirmed_flush_lsn().await;
    }
    eprintln!(
        "confirmed {:.1} s after the broker resumed",
        resumed.elapsed().as_secs_f64()
    );
    walrus.interrupt();
    assert!(
        walrus.wait(Duration::from_secs(30)).success(),
        "{}",
        walrus.log()
    );
    let msgs = consume(
        &broker.bootstrap(),
        &[&topic(&env, "public.items")],
        last_id as usize,
        Duration::from_secs(15),
    );
    let ids = distinct_ids(&msgs);
    assert_eq!(ids.len() as i64, last_id, "every committed row arrives");
    assert_eq!(ids.last().copied(), Some(last_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_mock_faults_never_confirm_unacknowledged_events() {
    mock_faults("", false).await;
}

/// The same faults in the exactly-once mode, with records timing out while the broker is
/// down: their transaction aborts, the session restarts from the stored position, and
/// nothing is confirmed that Kafka did not commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_exactly_once_mock_faults_never_confirm_uncommitted_events() {
    mock_faults("exactly_once = true\ntransaction_interval_ms = 50\n", true).await;
}

/// Produce errors for a while, then the broker down, on the mock cluster mid-workload;
/// `sink_extra` goes into `[sink]`. With `time_out`, records time out (after 2 s) while the
/// broker is down, so the session fails and restarts.
async fn mock_faults(sink_extra: &str, time_out: bool) {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let env = Env::new().await;
    cluster
        .create_topic(&topic(&env, "public.items"), 3, 1)
        .unwrap();
    cluster.create_topic("walrus.offsets", 1, 1).unwrap();
    let c = create_items(&env).await;
    let bootstrap = cluster.bootstrap_servers();
    let cfg = env.write_config(&kafka_config(
        &env,
        &bootstrap,
        r#"["public.items"]"#,
        &format!(
            "{sink_extra}[sink.topic_creation]\nenabled = false\n[sink.properties]\n\"retry.backoff.ms\" = 20\n{}",
            if time_out { "\"message.timeout.ms\" = 2000\n" } else { "" }
        ),
        "",
    ));
    let (mut walrus, _commits, load) =
        start_under_workload(&env, &cfg, 400, Duration::from_millis(10), 80).await;
    // Produce errors for a while: librdkafka retries them, nothing is lost.
    let errs: Vec<RDKafkaRespErr> = (0..40)
        .map(|i| match i % 3 {
            0 => RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            1 => RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            _ => RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        })
        .collect();
    cluster.request_errors(RDKafkaApiKey::Produce, &errs);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Then the broker goes down.
    cluster.broker_down(1).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at_down = wal_end_lsn(&c).await;
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(5) {
        if let Some(confirmed) = env.confirmed_flush_lsn().await {
            assert!(
                confirmed <= at_down,
                "confirmed_flush_lsn {confirmed:X} passed {at_down:X} while the broker was down"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.broker_up(1).unwrap();
    let last_id = load.await.unwrap();
    confirm_all_then_stop(
        &env,
        &c,
        &mut walrus,
        Duration::from_secs(90),
        "confirmation after the faults",
    )
    .await;
    if time_out {
        let log = walrus.log();
        assert!(
            log.contains("session ended; retrying"),
            "records timed out and the session restarted: {log}"
        );
    }
    // Everything, duplicates included (the mock shows aborted transactions).
    let msgs = consume(
        &bootstrap,
        &[&topic(&env, "public.items")],
        usize::MAX,
        Duration::from_secs(5),
    );
    assert_eq!(
        distinct_ids(&msgs).len() as i64,
        last_id,
        "every committed row arrives"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_message_too_large_stops_and_the_slot_holds() {
    let brokers = shared_broker();
    let env = Env::new().await;
    let c = env.sql().await;
    c.batch_execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        .await
        .unwrap();
    let sink = format!("{TOPIC_CREATION}[sink.properties]\n\"message.max.bytes\" = 20000\n");
    let cfg = env.write_config(&kafka_config(
        &env,
        &brokers,
        r#"["public.docs"]"#,
        &sink,
        "",
    ));
    let mut walrus = start(&cfg).await;
    c.batch_execute("INSERT INTO docs VALUES (1, 'small')")
        .await
        .unwrap();
    let before_big = wal_end_lsn(&c).await;
    wait_until_async(
        Duration::from_secs(30),
        "the small row confirmed",
        || async {
            env.confirmed_flush_lsn()
                .await
                .is_some_and(|l| l >= before_big)
        },
    )
    .await;
    c.batch_execute("INSERT INTO docs VALUES (2, repeat('y', 50000))")
        .await
        .unwrap();
    let after_big = wal_end_lsn(&c).await;
    let status = walrus.wait(Duration::from_secs(60));
    assert!(!status.success(), "walrus must stop on a rejected record");
    let log = walrus.log();
    assert!(
        log.contains(&topic(&env, "public.docs"))
            && log.contains("public.docs")
            && log.contains("max.message.bytes"),
        "the error names topic, table and fix: {log}"
    );
    let confirmed = env.confirmed_flush_lsn().await.unwrap();
    assert!(confirmed < after_big, "{confirmed:X} < {after_big:X}");
    // The slot did not move past the big row: a restart gets it again (and stops again).
    let mut again = Walrus::start(&cfg);
    assert!(!again.wait(Duration::from_secs(60)).success());
    assert_eq!(env.confirmed_flush_lsn().await.unwrap(), confirmed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_message_too_large_goes_to_the_dead_letter_topic() {
    let brokers = shared_broker();
    let env = Env::new().await;
    let c = env.sql().await;
    c.batch_execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        .await
        .unwrap();
    let dlq_topic = topic(&env, "dlq");
    let sink = format!(
        "dead_letter_topic = \"{dlq_topic}\"\n{TOPIC_CREATION}[sink.properties]\n\"message.max.bytes\" = 20000\n"
    );
    let cfg = env.write_config(&kafka_config(
        &env,
        &brokers,
        r#"["public.docs"]"#,
        &sink,
        "",
    ));
    let mut walrus = start(&cfg).await;
    c.batch_execute(
        "INSERT INTO docs VALUES (1, 'small'); INSERT INTO docs VALUES (2, repeat('y', 50000)); INSERT INTO docs VALUES (3, 'after');",
    )
    .await
    .unwrap();
    let end = wal_end_lsn(&c).await;
    wait_until_async(Duration::from_secs(60), "confirmation", || async {
        env.confirmed_flush_lsn().await.is_some_and(|l| l >= end)
    })
    .await;
    assert!(walrus.is_running());
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(30)).success());
    let b = brokers;
    let docs_topic = topic(&env, "public.docs");
    let main = consume(&b, &[&docs_topic], 2, Duration::from_secs(10));
    assert_eq!(
        distinct_ids(&main).into_iter().collect::<Vec<_>>(),
        vec![1, 3]
    );
    let dlq = consume(&b, &[&dlq_topic], 1, Duration::from_secs(10));
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].key, Some(json!({"id": 2})));
    assert_eq!(dlq[0].headers["walrus.original.topic"], docs_topic);
    assert_eq!(dlq[0].headers["table"], "public.docs");
    assert!(dlq[0].headers.contains_key("walrus.error"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_kill9_mid_workload_then_restart_delivers_every_row() {
    let brokers = shared_broker();
    let env = Env::new().await;
    let c = create_items(&env).await;
    let cfg = env.write_config(&kafka_config(
        &env,
        &brokers,
        r#"["public.items"]"#,
        TOPIC_CREATION,
        "",
    ));
    let (mut walrus, commits, load) =
        start_under_workload(&env, &cfg, 500, Duration::from_millis(5), 200).await;
    walrus.kill9();
    let confirmed_at_kill = env.confirmed_flush_lsn().await.unwrap();
    let mut walrus = Walrus::start(&cfg);
    let last_id = load.await.unwrap();
    confirm_all_then_stop(
        &env,
        &c,
        &mut walrus,
        Duration::from_secs(90),
        "confirmation after restart",
    )
    .await;
    let msgs = consume(
        &brokers,
        &[&topic(&env, "public.items")],
        usize::MAX,
        Duration::from_secs(5),
    );
    let ids = distinct_ids(&msgs);
    assert_eq!(ids.len() as i64, last_id, "every committed row arrives");
    // Duplicates only from the window after the confirmed position at the kill.
    let confirmed_rows = commits
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, lsn)| *lsn <= confirmed_at_kill)
        .map(|(id, _)| *id)
        .max()
        .unwrap_or(0);
    let mut seen = std::collections::HashMap::new();
    for id in msgs.iter().filter_map(|m| m.key.as_ref()?["id"].as_i64()) {
        *seen.entry(id).or_insert(0) += 1;
    }
    for (id, n) in seen {
        if n > 1 {
            // The window may start a little before the last recorded commit at or below
            // the confirmed LSN (the sample was taken after the commit).
            assert!(
                id > confirmed_rows.saturating_sub(10),
                "row {id} duplicated although confirmed before the kill (confirmed through row {confirmed_rows})"
            );
        }
    }
}

/// The newest position stored under `key` (the transactional id) in the offsets topic
/// `offsets`, read with `read_committed`.
fn stored_offset(bootstrap: &str, offsets: &str, key: &str) -> Option<u64> {
    let records = consume(bootstrap, &[offsets], usize::MAX, Duration::from_secs(5));
    records
        .iter()
        .filter(|m| m.raw_key.as_deref() == Some(key.as_bytes()))
        .filter_map(|m| m.value.as_ref()?["lsn"].as_str().map(parse_lsn))
        .max()
}

/// `[sink]` lines of the exactly-once mode: a short transaction interval, the offsets topic
/// under the test's prefix, `transactional_id` when given (else walrus's `walrus-<slot>`).
fn exactly_once_sink(env: &Env, transactional_id: Option<&str>) -> String {
    let id = transactional_id
        .map(|id| format!("transactional_id = \"{id}\"\n"))
        .unwrap_or_default();
    format!(
        "exactly_once = true\ntransaction_interval_ms = 50\noffsets_topic = \"{}\"\n{id}{TOPIC_CREATION}",
        topic(env, "offsets")
    )
}

/// How many times each row id arrived.
fn arrivals(msgs: &[Msg]) -> BTreeMap<i64, usize> {
    let mut seen = BTreeMap::new();
    for id in msgs.iter().filter_map(|m| m.key.as_ref()?["id"].as_i64()) {
        *seen.entry(id).or_insert(0) += 1;
    }
    seen
}

/// Asserts that every id in `expected` arrived exactly once and nothing else arrived.
fn assert_exactly_once(msgs: &[Msg], expected: impl IntoIterator<Item = i64>) {
    let seen = arrivals(msgs);
    let mut missing = Vec::new();
    let mut n = 0;
    for id in expected {
        n += 1;
        match seen.get(&id) {
            Some(1) => {}
            Some(k) => panic!("row {id} arrived {k} times (read_committed)"),
            None => missing.push(id),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {n} rows missing, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(seen.len(), n, "rows arrived that were never written");
}

/// `confirmed_flush_lsn` of the slot `slot` in `env`'s database.
async fn slot_confirmed(env: &Env, slot: &str) -> Option<u64> {
    let row = env
        .sql()
        .await
        .query_opt(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .ok()??;
    row.get::<_, Option<String>>(0).map(|s| parse_lsn(&s))
}

/// Ids of the large source transaction in the kill test, apart from the workload's.
const BIG_FIRST_ID: i64 = 1_000_001;
const BIG_ROWS: i64 = 30_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_exactly_once_kill9_mid_transaction_then_restart_delivers_every_row_once() {
    let brokers = shared_broker();
    let env = Env::new().await;
    let c = create_items(&env).await;
    let items = topic(&env, "public.items");
    let offsets = topic(&env, "offsets");
    // Status updates only every 30 s (the most walrus allows): PostgreSQL's
    // confirmed_flush_lsn stays near the start while Kafka commits every 50 ms, so after the
    // kill PostgreSQL resends every transaction Kafka already has, and the restart must
    // drop them.
    let config = |status_ms: u32| {
        kafka_config(
            &env,
            &brokers,
            r#"["public.items"]"#,
            &exactly_once_sink(&env, None),
            "",
        )
        .replace(
            "status_interval_ms = 200",
            &format!("status_interval_ms = {status_ms}"),
        )
    };
    let cfg = env.write_config(&config(30_000));
    let (mut walrus, commits, load) =
        start_under_workload(&env, &cfg, 600, Duration::from_millis(5), 150).await;
    // What the kill below tests needs Kafka to hold transactions the slot has not
    // confirmed. On a loaded machine walrus can still be behind the 150 commits, and would
    // then put them and the large transaction's first rows into one Kafka transaction: wait
    // for a committed one (the slot hears of it only at the next status update, 30 s on).
    let committed: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", unique_name_group())
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    committed.subscribe(&[&items]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(committed.poll(Duration::from_millis(100)), Some(Ok(_))) {
        assert!(
            Instant::now() < deadline,
            "no Kafka transaction committed; log:\n{}",
            walrus.log()
        );
    }
    drop(committed);
    let position_key = format!("walrus-{}", env.slot);
    // One large source transaction: walrus streams its rows into one Kafka transaction that
    // stays open until the last row is acknowledged. Kill walrus as soon as a
    // read_uncommitted consumer sees one of them: mid-transaction, for certain. The watcher
    // starts at the partitions' ends as they are *before* the insert: resolved after it,
    // walrus may already have written every row of it, and the watcher would wait for none.
    let watcher: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", unique_name_group())
        .set("isolation.level", "read_uncommitted")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        let (_, high) = watcher
            .fetch_watermarks(&items, p, Duration::from_secs(10))
            .unwrap();
        tpl.add_partition_offset(&items, p, rdkafka::Offset::Offset(high))
            .unwrap();
    }
    watcher.assign(&tpl).unwrap();
    env.sql()
        .await
        .batch_execute(&format!(
            "INSERT INTO items SELECT g, repeat('y', 100) FROM generate_series({BIG_FIRST_ID}, {}) g",
            BIG_FIRST_ID + BIG_ROWS - 1
        ))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "no row of the large transaction reached Kafka; log:\n{}",
            walrus.log()
        );
        if let Some(Ok(m)) = watcher.poll(Duration::from_millis(10)) {
            let id = m
                .key()
                .and_then(|k| serde_json::from_slice::<Value>(k).ok())
                .and_then(|k| k["id"].as_i64());
            if id.is_some_and(|id| id >= BIG_FIRST_ID) {
                break;
            }
        }
    }
    walrus.kill9();
    drop(watcher);
    let confirmed_at_kill = env.confirmed_flush_lsn().await.unwrap();
    let stored_at_kill = stored_offset(&brokers, &offsets, &position_key).expect("a position");
    assert!(
        stored_at_kill > confirmed_at_kill,
        "Kafka committed past the slot: {stored_at_kill:X} > {confirmed_at_kill:X}"
    );
    // Frequent status updates from here on, so the end is confirmed quickly.
    let cfg = env.write_config(&config(200));
    let mut walrus = Walrus::start(&cfg);
    let last_id = load.await.unwrap();
    confirm_all_then_stop(
        &env,
        &c,
        &mut walrus,
        Duration::from_secs(120),
        "confirmation after restart",
    )
    .await;
    let log = walrus.log();
    assert!(
        log.contains("dropping them as PostgreSQL resends them")
            && log.contains("dropped the transactions the sink had already committed"),
        "the restart dropped what Kafka had: {log}"
    );
    // To the end, not just `expected` records: a duplicate would come after them.
    let msgs = consume(&brokers, &[&items], usize::MAX, Duration::from_secs(5));
    assert_exactly_once(
        &msgs,
        (1..=last_id).chain(BIG_FIRST_ID..BIG_FIRST_ID + BIG_ROWS),
    );
    // The killed transaction's records are in the log, aborted: a read_uncommitted consumer
    // sees rows of the large transaction twice, the read_committed one above once.
    let all = consume_with(
        &brokers,
        &[&items],
        usize::MAX,
        Duration::from_secs(5),
        "read_uncommitted",
    );
    let twice = arrivals(&all)
        .into_iter()
        .filter(|(id, n)| *id >= BIG_FIRST_ID && *n > 1)
        .count();
    let resent = commits
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, lsn)| *lsn > confirmed_at_kill && *lsn <= stored_at_kill)
        .count();
    eprintln!(
        "exactly-once after kill -9: {} rows once each; {resent} workload transactions committed to Kafka but not confirmed to PostgreSQL at the kill; {twice} rows of the killed Kafka transaction aborted",
        msgs.len()
    );
    assert!(twice > 0, "the kill left an open transaction with records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_exactly_once_broker_restart_delivers_every_row_once() {
    // Its own broker: this test restarts it.
    let broker = Arc::new(KafkaBroker::start().expect("an Apache Kafka broker"));
    let env = Env::new().await;
    let c = create_items(&env).await;
    let cfg = env.write_config(&kafka_config(
        &env,
        &broker.bootstrap(),
        r#"["public.items"]"#,
        &exactly_once_sink(&env, None),
        "",
    ));
    // About 25 s of transactions: before, during and after the restart.
    let (mut walrus, commits, load) =
        start_under_workload(&env, &cfg, 2000, Duration::from_millis(10), 150).await;
    let b = broker.clone();
    let restarted = Instant::now();
    tokio::task::spawn_blocking(move || b.restart())
        .await
        .unwrap()
        .expect("the broker restarts");
    let commits_at_restart = commits.lock().unwrap().len();
    eprintln!(
        "broker restarted in {:?}, {commits_at_restart} source transactions so far",
        restarted.elapsed()
    );
    let last_id = load.await.unwrap();
    let end = wal_end_lsn(&c).await;
    wait_until_async(
        Duration::from_secs(120),
        "confirmation after the broker restart",
        || async { env.confirmed_flush_lsn().await.is_some_and(|l| l >= end) },
    )
    .await;
    assert!(walrus.is_running(), "{}", walrus.log());
    walrus.interrupt();
    assert!(
        walrus.wait(Duration::from_secs(30)).success(),
        "{}",
        walrus.log()
    );
    let msgs = consume(
        &broker.bootstrap(),
        &[&topic(&env, "public.items")],
        usize::MAX,
        Duration::from_secs(5),
    );
    assert_exactly_once(&msgs, 1..=last_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_exactly_once_second_walrus_fences_the_first_which_stops_with_the_hint() {
    let brokers = shared_broker();
    let env = Env::new().await;
    let c = create_items(&env).await;
    let txn_id = format!("{}-txn", env.slot);
    let sink = exactly_once_sink(&env, Some(&txn_id));
    let cfg_a = env.write_config(&kafka_config(
        &env,
        &brokers,
        r#"["public.items"]"#,
        &sink,
        "",
    ));
    let mut first = start(&cfg_a).await;
    // The second walrus reads the same publication through a slot of its own, created before
    // any row is written: it sees every change the first one does.
    let slot_b = format!("{}_b", env.slot);
    c.query_one(
        "SELECT pg_create_logical_replication_slot($1, 'pgoutput')::text",
        &[&slot_b],
    )
    .await
    .unwrap();
    let cfg_b = env.dir.path().join("walrus-b.toml");
    std::fs::write(
        &cfg_b,
        std::fs::read_to_string(&cfg_a).unwrap().replace(
            &format!("slot = \"{}\"", env.slot),
            &format!("slot = \"{slot_b}\""),
        ),
    )
    .unwrap();
    let commits: Commits = Arc::default();
    let load = workload(
        env.sql().await,
        600,
        commits.clone(),
        Duration::from_millis(5),
    );
    while commits.lock().unwrap().len() < 150 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Same transactional id: its init_transactions fences the first.
    let mut second = start(&cfg_b).await;
    let status = first.wait(Duration::from_secs(60));
    let log = first.log();
    assert!(!status.success(), "the fenced walrus must stop: {log}");
    assert!(
        log.contains("another producer with the same transactional id took over"),
        "the fenced walrus names why and what to do: {log}"
    );
    assert!(
        !log.contains("session ended; retrying"),
        "a fenced producer must not retry (it would fence the other back): {log}"
    );
    let last_id = load.await.unwrap();
    let end = wal_end_lsn(&c).await;
    wait_until_async(
        Duration::from_secs(120),
        "the second walrus confirms the workload",
        || async {
            slot_confirmed(&env, &slot_b)
                .await
                .is_some_and(|l| l >= end)
        },
    )
    .await;
    assert!(second.is_running(), "{}", second.log());
    second.interrupt();
    assert!(
        second.wait(Duration::from_secs(30)).success(),
        "{}",
        second.log()
    );
    let msgs = consume(
        &brokers,
        &[&topic(&env, "public.items")],
        usize::MAX,
        Duration::from_secs(5),
    );
    assert_exactly_once(&msgs, 1..=last_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_tls_and_sasl_scram_settings_reach_the_broker() {
    // Its own broker: a SASL_SSL listener with a SCRAM user and a CA of its own (the
    // plaintext listener stays, to read back what walrus wrote).
    let broker = tokio::task::spawn_blocking(|| {
        KafkaBroker::builder()
            .tls()
            .scram_user("walrus", "walrus-secret")
            .start()
    })
    .await
    .unwrap()
    .expect("an Apache Kafka broker with TLS and SCRAM");
    let secure = broker.secure_bootstrap().expect("the SECURE listener");
    assert_eq!(broker.secure_protocol().as_deref(), Some("sasl_ssl"));
    let ca = broker.ca_file().expect("a CA").display().to_string();
    let env = Env::new().await;
    let c = create_items(&env).await;
    let sink = |password: &str| {
        format!(
            "security_protocol = \"sasl_ssl\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"walrus\"\nsasl_password = \"{password}\"\nssl_ca_location = \"{ca}\"\n{}",
            // Exactly-once: the offsets reader connects with the same settings.
            exactly_once_sink(&env, None)
        )
    };

    // No snapshot: the refused start below creates the slot, and a snapshot it began would
    // be taken again, overlapping the stream (at least once, see docs/kafka.md), which is not
    // what this test is about.
    let no_snapshot = "[snapshot]\nmode = \"no_data\"\n";
    // A wrong password: the broker refuses walrus, which stops by itself (the same
    // credentials never succeed, so retrying for ever would only hide it) with the keys to
    // fix, having confirmed nothing.
    let cfg = env.write_config(&kafka_config(
        &env,
        &secure,
        r#"["public.items"]"#,
        &sink("wrong-secret"),
        no_snapshot,
    ));
    let mut refused = Walrus::start(&cfg);
    let status = refused.wait(Duration::from_secs(90));
    let log = refused.log();
    assert!(!status.success(), "walrus exited 0: {log}");
    assert!(log.contains("Authentication failed"), "{log}");
    assert!(
        log.contains("sasl_password") && log.contains("fatal error"),
        "no hint naming the keys: {log}"
    );
    assert!(
        !log.contains("starting replication"),
        "walrus streamed without a broker: {log}"
    );

    let cfg = env.write_config(&kafka_config(
        &env,
        &secure,
        r#"["public.items"]"#,
        &sink("walrus-secret"),
        no_snapshot,
    ));
    let mut walrus = start(&cfg).await;
    c.batch_execute("INSERT INTO items SELECT g, 'x' FROM generate_series(1, 50) g")
        .await
        .unwrap();
    let end = wal_end_lsn(&c).await;
    wait_until_async(Duration::from_secs(60), "confirmation", || async {
        env.confirmed_flush_lsn().await.is_some_and(|l| l >= end)
    })
    .await;
    walrus.interrupt();
    assert!(
        walrus.wait(Duration::from_secs(30)).success(),
        "{}",
        walrus.log()
    );
    let msgs = consume(
        &broker.bootstrap(),
        &[&topic(&env, "public.items")],
        usize::MAX,
        Duration::from_secs(5),
    );
    assert_exactly_once(&msgs, 1..=50);
}
