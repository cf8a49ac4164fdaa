//! The Kafka sink end to end: the real `walrus` binary, a throwaway PostgreSQL and a fresh
//! Kafka-protocol broker per test (Tansu, or librdkafka's mock cluster for injected faults),
//! read back by a real rdkafka consumer.
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
//! - the exactly-once mode (mock cluster): after kill -9 and a restart, the source
//!   transactions committed to Kafka before the kill arrive once although PostgreSQL
//!   resends them; a broker without transactions (Tansu) stops walrus naming the key.

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
use walrus_testkit::Broker;

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
/// new came for `idle`. Counts by consuming (Tansu's high-water marks are unreliable).
fn consume(bootstrap: &str, topics: &[&str], expected: usize, idle: Duration) -> Vec<Msg> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique_name_group())
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

/// The config for `env` with a Kafka sink; `extra` is appended at the top level (routes,
/// tables, outbox) and `sink_extra` inside `[sink]`.
fn kafka_config(env: &Env, brokers: &str, tables: &str, sink_extra: &str, extra: &str) -> String {
    format!(
        r#"topic_prefix = "app"
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

async fn current_lsn(c: &tokio_postgres::Client) -> u64 {
    let s: String = c
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    parse_lsn(&s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_rows_arrive_with_debezium_keys_values_headers_and_routes() {
    let broker = Broker::start().expect("tansu");
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
    let routing = r#"
[[routes]]
match = 'public\.orders_(.*)'
topic = "orders.$1"
[tables."public.customers"]
topic = "crm.customers"
key_columns = ["email"]
exclude_columns = ["secret"]
skip_ops = ["d"]
"#;
    let cfg = env.write_config(&kafka_config(
        &env,
        &broker.bootstrap(),
        r#"["public.*"]"#,
        TOPIC_CREATION,
        routing,
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
    let end = current_lsn(&c).await;
    wait_until_async(
        Duration::from_secs(60),
        "confirmation of the workload",
        || async { env.confirmed_flush_lsn().await.is_some_and(|l| l >= end) },
    )
    .await;
    walrus.interrupt();
    assert!(
        walrus.wait(Duration::from_secs(30)).success(),
        "{}",
        walrus.log()
    );

    let b = broker.bootstrap();
    let items = consume(
        &b,
        &["app.public.items"],
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

    let customers = consume(&b, &["crm.customers"], 10, Duration::from_secs(10));
    assert_eq!(customers.len(), 10, "deletes skipped: only the 10 creates");
    for m in &customers {
        let v = m.value.as_ref().unwrap();
        assert_eq!(v["op"], "c");
        assert!(v["after"].get("secret").is_none(), "secret excluded: {v}");
        assert_eq!(m.key.as_ref().unwrap()["email"], v["after"]["email"]);
    }
    let us = consume(&b, &["orders.us"], 20, Duration::from_secs(10));
    let eu = consume(&b, &["orders.eu"], 15, Duration::from_secs(10));
    assert_eq!((us.len(), eu.len()), (20, 15));
    assert_eq!(us[0].headers["table"], "public.orders_us");
    assert!(us.iter().all(|m| m.topic == "orders.us"));
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
    let broker = Broker::start().expect("tansu");
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
    let routing = r#"
[[outbox]]
table = "public.outbox"
fields = [{ column = "type", placement = "header", name = "eventType" }]
[[outbox]]
table = "public.kept_outbox"
topic = "kept.{aggregatetype}"
delete_after_delivery = true
delete_interval_ms = 100
"#;
    let cfg = env.write_config(&kafka_config(
        &env,
        &broker.bootstrap(),
        r#"["public.outbox", "public.kept_outbox"]"#,
        TOPIC_CREATION,
        routing,
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
    let b = broker.bootstrap();
    let orders = consume(&b, &["outbox.event.Order"], 2, Duration::from_secs(30));
    let customers = consume(&b, &["outbox.event.Customer"], 1, Duration::from_secs(10));
    assert_eq!(
        (orders.len(), customers.len()),
        (2, 1),
        "deletes produce nothing"
    );
    assert_eq!(orders[0].raw_key.as_deref(), Some(b"o-1".as_slice()));
    assert_eq!(orders[0].value, Some(json!({"total": 10})));
    assert_eq!(
        orders[0].headers["id"],
        "00000000-0000-4000-8000-000000000001"
    );
    assert_eq!(orders[0].headers["eventType"], "OrderCreated");
    assert_eq!(orders[1].headers["eventType"], "OrderPaid");
    assert_eq!(orders[1].value, Some(json!({"total": 10, "paid": true})));
    assert_eq!(customers[0].raw_key.as_deref(), Some(b"c-7".as_slice()));

    let kept = consume(&b, &["kept.Invoice"], 20, Duration::from_secs(30));
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
    let kept = consume(&b, &["kept.Invoice"], 21, Duration::from_secs(3));
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
            let lsn = current_lsn(&client).await;
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
    let broker = Broker::start().expect("tansu");
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
    let at_pause = current_lsn(&c).await;
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
    let end = current_lsn(&c).await;
    wait_until_async(
        Duration::from_secs(90),
        "confirmation after the outage",
        || async { env.confirmed_flush_lsn().await.is_some_and(|l| l >= end) },
    )
    .await;
    walrus.interrupt();
    assert!(
        walrus.wait(Duration::from_secs(30)).success(),
        "{}",
        walrus.log()
    );
    let msgs = consume(
        &broker.bootstrap(),
        &["app.public.items"],
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
    cluster.create_topic("app.public.items", 3, 1).unwrap();
    cluster.create_topic("walrus.offsets", 1, 1).unwrap();
    let env = Env::new().await;
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
    let at_down = current_lsn(&c).await;
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
    let end = current_lsn(&c).await;
    wait_until_async(
        Duration::from_secs(90),
        "confirmation after the faults",
        || async { env.confirmed_flush_lsn().await.is_some_and(|l| l >= end) },
    )
    .await;
    walrus.interrupt();
    assert!(
        walrus.wait(Duration::from_secs(30)).success(),
        "{}",
        walrus.log()
    );
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
        &["app.public.items"],
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
    let broker = Broker::start().expect("tansu");
    let env = Env::new().await;
    let c = env.sql().await;
    c.batch_execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        .await
        .unwrap();
    let sink = format!("{TOPIC_CREATION}[sink.properties]\n\"message.max.bytes\" = 20000\n");
    let cfg = env.write_config(&kafka_config(
        &env,
        &broker.bootstrap(),
        r#"["public.docs"]"#,
        &sink,
        "",
    ));
    let mut walrus = start(&cfg).await;
    c.batch_execute("INSERT INTO docs VALUES (1, 'small')")
        .await
        .unwrap();
    let before_big = current_lsn(&c).await;
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
    let after_big = current_lsn(&c).await;
    let status = walrus.wait(Duration::from_secs(60));
    assert!(!status.success(), "walrus must stop on a rejected record");
    let log = walrus.log();
    assert!(
        log.contains("app.public.docs")
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
    let broker = Broker::start().expect("tansu");
    let env = Env::new().await;
    let c = env.sql().await;
    c.batch_execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        .await
        .unwrap();
    let sink = format!(
        "dead_letter_topic = \"app.dlq\"\n{TOPIC_CREATION}[sink.properties]\n\"message.max.bytes\" = 20000\n"
    );
    let cfg = env.write_config(&kafka_config(
        &env,
        &broker.bootstrap(),
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
    let end = current_lsn(&c).await;
    wait_until_async(Duration::from_secs(60), "confirmation", || async {
        env.confirmed_flush_lsn().await.is_some_and(|l| l >= end)
    })
    .await;
    assert!(walrus.is_running());
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(30)).success());
    let b = broker.bootstrap();
    let main = consume(&b, &["app.public.docs"], 2, Duration::from_secs(10));
    assert_eq!(
        distinct_ids(&main).into_iter().collect::<Vec<_>>(),
        vec![1, 3]
    );
    let dlq = consume(&b, &["app.dlq"], 1, Duration::from_secs(10));
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].key, Some(json!({"id": 2})));
    assert_eq!(dlq[0].headers["walrus.original.topic"], "app.public.docs");
    assert_eq!(dlq[0].headers["table"], "public.docs");
    assert!(dlq[0].headers.contains_key("walrus.error"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_kill9_mid_workload_then_restart_delivers_every_row() {
    let broker = Broker::start().expect("tansu");
    let env = Env::new().await;
    let c = create_items(&env).await;
    let cfg = env.write_config(&kafka_config(
        &env,
        &broker.bootstrap(),
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
    let end = current_lsn(&c).await;
    wait_until_async(
        Duration::from_secs(90),
        "confirmation after restart",
        || async { env.confirmed_flush_lsn().await.is_some_and(|l| l >= end) },
    )
    .await;
    walrus.interrupt();
    assert!(
        walrus.wait(Duration::from_secs(30)).success(),
        "{}",
        walrus.log()
    );
    let msgs = consume(
        &broker.bootstrap(),
        &["app.public.items"],
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

/// The newest position stored in the offsets topic under `key` (the transactional id).
fn stored_offset(bootstrap: &str, key: &str) -> Option<u64> {
    let records = consume(
        bootstrap,
        &["walrus.offsets"],
        usize::MAX,
        Duration::from_secs(5),
    );
    records
        .iter()
        .filter(|m| m.raw_key.as_deref() == Some(key.as_bytes()))
        .filter_map(|m| m.value.as_ref()?["lsn"].as_str().map(parse_lsn))
        .max()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_exactly_once_kill9_then_restart_skips_what_was_committed() {
    // The mock cluster lives in the test process and outlives both walrus processes.
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("app.public.items", 3, 1).unwrap();
    cluster.create_topic("walrus.offsets", 1, 1).unwrap();
    let env = Env::new().await;
    let c = create_items(&env).await;
    let bootstrap = cluster.bootstrap_servers();
    // Status updates every 2 s: PostgreSQL's confirmed_flush_lsn lags well behind what
    // Kafka committed (every 50 ms), so PostgreSQL resends committed transactions after
    // the kill and the restart must drop them.
    let cfg = env.write_config(
        &kafka_config(
            &env,
            &bootstrap,
            r#"["public.items"]"#,
            "exactly_once = true\ntransaction_interval_ms = 50\n[sink.topic_creation]\nenabled = false\n[sink.properties]\n\"retry.backoff.ms\" = 20\n",
            "",
        )
        .replace("status_interval_ms = 200", "status_interval_ms = 2000"),
    );
    let (mut walrus, commits, load) =
        start_under_workload(&env, &cfg, 600, Duration::from_millis(5), 250).await;
    // Kill half a second after a status update reached PostgreSQL: several Kafka commits
    // later, and well before the next update.
    let before = env.confirmed_flush_lsn().await;
    wait_until_async(Duration::from_secs(10), "a status update", || async {
        env.confirmed_flush_lsn().await != before
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    walrus.kill9();
    let confirmed_at_kill = env.confirmed_flush_lsn().await.unwrap();
    let stored_at_kill =
        stored_offset(&bootstrap, &format!("walrus-{}", env.slot)).expect("a committed position");
    assert!(
        stored_at_kill > confirmed_at_kill,
        "Kafka committed past the slot: {stored_at_kill:X} > {confirmed_at_kill:X}"
    );
    let mut walrus = Walrus::start(&cfg);
    let last_id = load.await.unwrap();
    let end = current_lsn(&c).await;
    wait_until_async(
        Duration::from_secs(90),
        "confirmation after restart",
        || async { env.confirmed_flush_lsn().await.is_some_and(|l| l >= end) },
    )
    .await;
    walrus.interrupt();
    assert!(
        walrus.wait(Duration::from_secs(30)).success(),
        "{}",
        walrus.log()
    );
    let log = walrus.log();
    assert!(
        log.contains("dropping them as PostgreSQL resends them")
            && log.contains("dropped the transactions the sink had already committed"),
        "the restart dropped what Kafka had: {log}"
    );
    // librdkafka consumers read with isolation.level=read_committed by default.
    let msgs = consume(
        &bootstrap,
        &["app.public.items"],
        usize::MAX,
        Duration::from_secs(5),
    );
    let ids = distinct_ids(&msgs);
    assert_eq!(ids.len() as i64, last_id, "every committed row arrives");
    let mut seen = std::collections::HashMap::new();
    for id in msgs.iter().filter_map(|m| m.key.as_ref()?["id"].as_i64()) {
        *seen.entry(id).or_insert(0) += 1;
    }
    // Rows of source transactions committed to Kafka before the kill arrive once, also
    // those past the slot's confirmed position, which PostgreSQL sent again. (The
    // workload's LSN is taken after its commit, so it is at or past the commit's end.)
    let commits = commits.lock().unwrap().clone();
    let committed_through = commits
        .iter()
        .filter(|(_, lsn)| *lsn <= stored_at_kill)
        .map(|(id, _)| *id)
        .max()
        .unwrap_or(0);
    let resent_window = commits
        .iter()
        .filter(|(_, lsn)| *lsn > confirmed_at_kill && *lsn <= stored_at_kill)
        .count();
    assert!(
        resent_window > 0,
        "some transactions lay between the slot's position and Kafka's"
    );
    for id in 1..=committed_through {
        assert_eq!(
            seen.get(&id),
            Some(&1),
            "row {id} was committed to Kafka before the kill (through row {committed_through}) and must arrive once"
        );
    }
    // The mock cluster shows records of aborted transactions to read_committed consumers
    // too (a real broker does not): rows of the Kafka transaction open at the kill may
    // appear twice here, and nothing before it.
    let duplicated: Vec<i64> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    eprintln!(
        "exactly-once: {last_id} rows; Kafka committed through row {committed_through} at the kill, {resent_window} transactions of it past the slot's position; {} rows duplicated (the mock shows the aborted transaction)",
        duplicated.len()
    );
    assert!(
        duplicated.iter().all(|id| *id > committed_through),
        "duplicates only after the stored position: {duplicated:?}"
    );
    assert!(
        seen.values().all(|n| *n <= 2),
        "at most the one aborted transaction again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_exactly_once_needs_a_broker_with_transactions() {
    let broker = Broker::start().expect("tansu");
    let env = Env::new().await;
    env.sql()
        .await
        .batch_execute("CREATE TABLE items (id bigint PRIMARY KEY, payload text)")
        .await
        .unwrap();
    let sink = format!("exactly_once = true\n{TOPIC_CREATION}");
    let cfg = env.write_config(&kafka_config(
        &env,
        &broker.bootstrap(),
        r#"["public.items"]"#,
        &sink,
        "",
    ));
    let mut walrus = Walrus::start(&cfg);
    let status = walrus.wait(Duration::from_secs(90));
    assert!(!status.success(), "walrus must stop: {}", walrus.log());
    let log = walrus.log();
    assert!(
        log.contains("[sink] exactly_once") && log.contains("Kafka transactions"),
        "the error names the key and the missing feature: {log}"
    );
}
