//! Compatibility with Debezium itself, not with its documentation: Debezium's PostgreSQL
//! connector 3.6.1 on Kafka Connect 4.4 and walrus run side by side on the same database and
//! the same broker, each on its own slot and publication, and the records they write are
//! compared one by one.
//!
//! ```text
//!                 ┌─ walrus (prefix on / off) ───────────────▶ on.public.t, off.public.t
//! PostgreSQL ─────┤                                                          │ compared
//!  one workload   └─ Debezium (same prefixes, RegexRouter) ──▶ dbz.on.public.t, dbz.off.public.t
//! ```
//!
//! Both sides use the same topic prefix, so that `source.name` and the Connect schema names
//! (`on.public.customers.Envelope`) agree; Debezium's topics are renamed with Kafka's
//! `RegexRouter` (which changes the topic only) so that both can live on one broker. One side
//! runs with `schemas.enable` on, the other off.
//!
//! Per topic and partition, the records must agree in order, key bytes (so partitions follow),
//! value and headers, after removing only what cannot agree and is listed in `docs/compat.md`:
//! timestamps, `source.version`, the positions of snapshot records (each side's snapshot is
//! taken at its own slot's creation), and each side's own headers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::TopicPartitionList;
use serde_json::Value;
use walrus_testkit::debezium::POSTGRES_CONNECTOR;
use walrus_testkit::{unique_name, KafkaBroker, KafkaConnect};

use crate::common::*;

/// Partitions of every compared topic, on both sides: more than one, so that a key hashed
/// differently would land elsewhere.
pub(crate) const PARTITIONS: u32 = 3;

/// Headers only one side writes, by design (docs/compat.md): walrus's event headers and
/// Kafka Connect's context headers.
const WALRUS_HEADERS: &[&str] = &["id", "op", "table", "txId"];
const DEBEZIUM_HEADER_PREFIX: &str = "__debezium.context.";

/// The tables before either side starts: their rows are the initial snapshot (`r`).
const SCHEMA: &str = "
CREATE TABLE customers (
    id int PRIMARY KEY,
    name text NOT NULL,
    email text,
    balance numeric(10,2),
    born date,
    seen timestamptz,
    wake time,
    tags text[],
    data jsonb,
    vip boolean,
    score double precision,
    big bigint,
    small smallint,
    uid uuid,
    raw bytea,
    price money,
    span interval
);
INSERT INTO customers VALUES
    (1, 'Ada', 'ada@example.com', 12.50, '1815-12-10', '2024-01-02 03:04:05.678901+00', '12:34:56.789',
     '{a,b}', '{\"k\": [1, 2]}', true, 1.5, 9007199254740993, -3, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
     '\\x00ff10', 12.34, '1 year 2 months 3 days 04:05:06.5'),
    (2, 'Grace', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (3, 'Linus', 'l@example.org', -0.01, '2000-02-29', '1999-12-31 23:59:59+05', '00:00', '{}', '[]', false,
     -0.0, 0, 32767, NULL, '\\x', 0, '-1 day');
CREATE TABLE items (sku text PRIMARY KEY, qty int NOT NULL DEFAULT 0);
INSERT INTO items VALUES ('a', 1), ('b', 2);
CREATE TABLE logs (line text, at int);
ALTER TABLE logs REPLICA IDENTITY FULL;
INSERT INTO logs VALUES ('boot', 0);
";

/// The changes after both snapshots: every op, a key change, a multi-statement transaction,
/// a keyless table under FULL identity, logical messages and a truncate.
const WORKLOAD: &[&str] = &[
    "INSERT INTO customers (id, name, email, balance, tags) VALUES (4, 'Barbara', 'b@example.com', 99999999.99, '{x,NULL,\"y z\"}')",
    "UPDATE customers SET email = 'ada@lovelace.org', balance = balance + 1 WHERE id = 1",
    "UPDATE customers SET id = 20 WHERE id = 2",
    "DELETE FROM customers WHERE id = 3",
    "BEGIN; INSERT INTO items VALUES ('c', 3); UPDATE items SET qty = qty * 10; DELETE FROM items WHERE sku = 'a'; COMMIT",
    "INSERT INTO logs VALUES ('up', 1); UPDATE logs SET at = 2 WHERE line = 'up'; DELETE FROM logs WHERE line = 'boot'",
    "SELECT pg_logical_emit_message(true, 'compat', 'in a transaction')",
    "BEGIN; INSERT INTO items VALUES ('d', 4); SELECT pg_logical_emit_message(true, 'compat', 'with a row'); COMMIT",
    "TRUNCATE items",
    "INSERT INTO items VALUES ('e', 5)",
];

/// The last statement: once both sides delivered this message, everything before it was
/// committed earlier and sent before it.
/// Written after every workload: a transactional logical message both sides publish on
/// `<prefix>.message`, so a case knows when everything before it arrived.
pub(crate) const END_MARKER: &str = "SELECT pg_logical_emit_message(true, 'compat-end', 'end')";

/// The connector properties every comparison shares: Debezium's PostgreSQL connector on
/// `env`'s database with topic prefix `prefix`, its own slot and publication `slot` of the
/// tables `include` (`table.include.list`), truncates not skipped, JSON keys and values with
/// `schemas.enable` = `schemas`, topics of [`PARTITIONS`] partitions, and the SMT aliases
/// `transforms` followed by `rename`, the `RegexRouter` that moves Debezium's topics to
/// `dbz.<topic>`. [`set_props`] adds a case's own properties.
pub(crate) fn debezium_props(
    env: &Env,
    prefix: &str,
    slot: &str,
    include: &str,
    schemas: bool,
    transforms: &[&str],
) -> Vec<(String, String)> {
    let json = "org.apache.kafka.connect.json.JsonConverter";
    let schemas = schemas.to_string();
    let transforms: Vec<&str> = transforms.iter().copied().chain(["rename"]).collect();
    [
        ("connector.class", POSTGRES_CONNECTOR),
        ("database.hostname", "127.0.0.1"),
        ("database.port", &env.cluster.port().to_string()),
        ("database.user", "postgres"),
        ("database.password", "unused"),
        ("database.dbname", &env.db),
        ("topic.prefix", prefix),
        ("plugin.name", "pgoutput"),
        ("slot.name", slot),
        ("publication.name", slot),
        ("publication.autocreate.mode", "filtered"),
        ("table.include.list", include),
        // Debezium skips truncates by default, walrus does not (docs/compat.md): compare the
        // records, not the defaults.
        ("skipped.operations", "none"),
        ("key.converter", json),
        ("key.converter.schemas.enable", &schemas),
        ("value.converter", json),
        ("value.converter.schemas.enable", &schemas),
        ("topic.creation.default.partitions", &PARTITIONS.to_string()),
        ("topic.creation.default.replication.factor", "1"),
        ("transforms", &transforms.join(",")),
        (
            "transforms.rename.type",
            "org.apache.kafka.connect.transforms.RegexRouter",
        ),
        ("transforms.rename.regex", "(.*)"),
        ("transforms.rename.replacement", "dbz.$1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Sets each of `extra` in `props`, replacing a property of the same name (Connect's config
/// is a map; a key sent twice would leave which one counts to its JSON parser).
pub(crate) fn set_props<'a>(
    props: &mut Vec<(String, String)>,
    extra: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    for (k, v) in extra {
        match props.iter_mut().find(|(key, _)| key == k) {
            Some(p) => p.1 = v.to_owned(),
            None => props.push((k.to_owned(), v.to_owned())),
        }
    }
}

/// Adds the connector `name` with `props` to `connect`.
pub(crate) fn add_connector(
    connect: &KafkaConnect,
    name: &str,
    props: &[(String, String)],
) -> Result<(), String> {
    let refs: Vec<(&str, &str)> = props
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    connect
        .add_connector(name, &refs)
        .map_err(|e| e.to_string())
}

/// Reads the run's records until the walrus and the Debezium side of every prefix delivered
/// [`END_MARKER`]; panics after `timeout` with `context` (logs, counts) in the message.
pub(crate) fn read_until_ended(
    bootstrap: &str,
    run: &str,
    prefixes: &[String],
    timeout: Duration,
    context: impl Fn(&[Record]) -> String,
) -> Vec<Record> {
    let deadline = Instant::now() + timeout;
    loop {
        let records = read_all(bootstrap, run, Duration::from_secs(3));
        let ended = |side: String| {
            records.iter().any(|r| {
                r.topic == side
                    && r.value
                        .as_deref()
                        .is_some_and(|v| String::from_utf8_lossy(v).contains("compat-end"))
            })
        };
        if prefixes
            .iter()
            .all(|p| ended(format!("{p}.message")) && ended(format!("dbz.{p}.message")))
        {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "the end marker did not arrive on every side; {}",
            context(&records)
        );
    }
}

/// One consumed record.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) headers: BTreeMap<String, String>,
}

#[tokio::test(flavor = "multi_thread")]
async fn walrus_and_debezium_write_the_same_records() {
    let broker = KafkaBroker::shared().expect("the shared Kafka broker");
    let env = Env::new().await;
    let sql = env.sql().await;
    sql.batch_execute(SCHEMA).await.expect("schema");
    let run = unique_name("cmp");
    let tables = ["public.customers", "public.items", "public.logs"];

    // Debezium: one worker, one connector per schemas mode.
    let connect = KafkaConnect::start(&broker.bootstrap()).expect("Kafka Connect");
    let include = tables.join(",");
    let mut walruses = Vec::new();
    for schemas in [true, false] {
        let prefix = format!("{run}_{}", if schemas { "on" } else { "off" });
        let slot = format!("{prefix}_dbz");
        let props = debezium_props(&env, &prefix, &slot, &include, schemas, &[]);
        add_connector(&connect, &slot, &props).expect("Debezium connector");
        let config = env.dir.path().join(format!("{prefix}.toml"));
        std::fs::write(
            &config,
            format!(
                r#"topic_prefix = "{prefix}"
[source]
url = "{url}"
slot = "{prefix}_walrus"
publication = "{prefix}_walrus"
tables = {tables:?}
status_interval_ms = 200
[format]
schemas_enable = {schemas}
[snapshot]
# Debezium reads one table after the other, in name order; so does one walrus worker. With
# more, the `first`/`last` markers go to whichever table is read first/last (docs/compat.md).
workers = 1
[heartbeat]
enabled = false
[admin]
listen = "127.0.0.1:0"
[sink]
type = "kafka"
brokers = "{bootstrap}"
[sink.topic_creation]
partitions = {PARTITIONS}
replication_factor = 1
"#,
                url = env.cluster.url(&env.db),
                bootstrap = broker.bootstrap(),
            ),
        )
        .expect("walrus config");
        walruses.push((prefix, Walrus::start(&config)));
    }

    // Both snapshots: 3 customers, 2 items, 1 log line on each of the four sides.
    let bootstrap = broker.bootstrap();
    let prefixes: Vec<String> = walruses.iter().map(|(p, _)| p.clone()).collect();
    let snapshot_rows = 6;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let records = read_all(&bootstrap, &run, Duration::from_secs(2));
        let done = prefixes.iter().all(|p| {
            let count = |side: &str| records.iter().filter(|r| r.topic.starts_with(side)).count();
            count(&format!("{p}.")) >= snapshot_rows && count(&format!("dbz.{p}.")) >= snapshot_rows
        });
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the snapshots did not arrive: {} records; Connect log:\n{}\nwalrus log:\n{}",
            records.len(),
            connect.log_tail(40),
            walruses[0].1.log()
        );
    }

    for statement in WORKLOAD {
        sql.batch_execute(statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    sql.batch_execute(END_MARKER).await.expect("end marker");

    let records = read_until_ended(
        &bootstrap,
        &run,
        &prefixes,
        Duration::from_secs(120),
        |_| format!("Connect log:\n{}", connect.log_tail(40)),
    );

    let mut differences = Vec::new();
    let mut compared = 0;
    for prefix in &prefixes {
        let (d, n) = compare_prefix(&records, prefix, difference);
        differences.extend(d);
        compared += n;
    }
    assert!(
        differences.is_empty(),
        "{} of {compared} compared records differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
    // Sanity: the comparison saw the whole workload on both schema modes.
    assert!(compared >= 2 * 25, "only {compared} records compared");
    for (_, mut walrus) in walruses {
        walrus.interrupt();
        walrus.wait(Duration::from_secs(30));
    }
}

/// The differences between walrus's records under `prefix` and Debezium's under
/// `dbz.<prefix>`, per topic and partition in offset order (`differ` compares two records),
/// and how many records were compared.
pub(crate) fn compare_prefix(
    records: &[Record],
    prefix: &str,
    differ: impl Fn(&Record, &Record) -> Option<String>,
) -> (Vec<String>, usize) {
    let walrus = by_partition(records, &format!("{prefix}."), "");
    let debezium = by_partition(records, &format!("dbz.{prefix}."), "dbz.");
    let places: BTreeSet<_> = walrus.keys().chain(debezium.keys()).cloned().collect();
    let mut differences = Vec::new();
    let mut compared = 0;
    for place in places {
        let empty = Vec::new();
        let ours = walrus.get(&place).unwrap_or(&empty);
        let theirs = debezium.get(&place).unwrap_or(&empty);
        if ours.len() != theirs.len() {
            differences.push(format!(
                "{} partition {}: walrus wrote {} records, Debezium {}:\n  walrus:   {:?}\n  Debezium: {:?}",
                place.0,
                place.1,
                ours.len(),
                theirs.len(),
                ours.iter().map(describe).collect::<Vec<_>>(),
                theirs.iter().map(describe).collect::<Vec<_>>(),
            ));
            continue;
        }
        for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
            compared += 1;
            if let Some(d) = differ(a, b) {
                differences.push(format!("{} partition {} record {i}: {d}", place.0, place.1));
            }
        }
    }
    (differences, compared)
}

/// Every record on the topics whose names contain `run`, from the beginning, until nothing new
/// came for `idle`.
pub(crate) fn read_all(bootstrap: &str, run: &str, idle: Duration) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique_name("compat"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let mut assignment = TopicPartitionList::new();
    for topic in metadata.topics() {
        if topic.name().contains(run) && topic.error().is_none() {
            for p in topic.partitions() {
                assignment
                    .add_partition_offset(topic.name(), p.id(), rdkafka::Offset::Beginning)
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
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            last = Instant::now();
            out.push(Record {
                topic: m.topic().to_owned(),
                partition: m.partition(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
    }
    out
}

/// The records of one side (topics starting with `side`), by topic without `strip` and
/// partition, in offset order. Records without a key (keyless tables, truncates) have no
/// partition of their own (both producers spread them at will): they are kept per topic under
/// partition `-1`, sorted by their normalised value.
pub(crate) fn by_partition(
    records: &[Record],
    side: &str,
    strip: &str,
) -> BTreeMap<(String, i32), Vec<Record>> {
    let mut out: BTreeMap<(String, i32), Vec<Record>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.topic.starts_with(side)) {
        let topic = r.topic.strip_prefix(strip).unwrap_or(&r.topic).to_owned();
        let partition = if r.key.is_some() { r.partition } else { -1 };
        out.entry((topic, partition)).or_default().push(r.clone());
    }
    for ((_, partition), list) in out.iter_mut() {
        if *partition == -1 {
            list.sort_by_cached_key(|r| normalised(&r.value).map(|v| v.to_string()));
        }
    }
    out
}

/// A record's value as JSON with [`normalise`] applied; `None` for a tombstone.
pub(crate) fn normalised(value: &Option<Vec<u8>>) -> Option<Value> {
    value.as_deref().map(|v| {
        let mut v: Value = serde_json::from_slice(v).expect("a JSON value");
        normalise(&mut v);
        v
    })
}

/// A short description of a record for failure messages.
pub(crate) fn describe(r: &Record) -> String {
    let text = |b: &Option<Vec<u8>>| {
        b.as_deref()
            .map(|b| {
                String::from_utf8_lossy(b)
                    .chars()
                    .take(160)
                    .collect::<String>()
            })
            .unwrap_or_else(|| "null".to_owned())
    };
    format!("key {} value {}", text(&r.key), text(&r.value))
}

/// What differs between walrus's record `a` and Debezium's `b`, if anything.
pub(crate) fn difference(a: &Record, b: &Record) -> Option<String> {
    if a.key != b.key {
        return Some(format!(
            "key bytes differ:\n  walrus:   {}\n  Debezium: {}",
            a.key
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default(),
            b.key
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
        ));
    }
    let ours: BTreeMap<_, _> = a
        .headers
        .iter()
        .filter(|(k, _)| !WALRUS_HEADERS.contains(&k.as_str()))
        .collect();
    let theirs: BTreeMap<_, _> = b
        .headers
        .iter()
        .filter(|(k, _)| !k.starts_with(DEBEZIUM_HEADER_PREFIX))
        .collect();
    if ours != theirs {
        return Some(format!(
            "headers differ: walrus {ours:?}, Debezium {theirs:?}"
        ));
    }
    let (ours, theirs) = (normalised(&a.value), normalised(&b.value));
    let mut found = Vec::new();
    json_diff(
        ours.as_ref().unwrap_or(&Value::Null),
        theirs.as_ref().unwrap_or(&Value::Null),
        String::new(),
        &mut found,
    );
    let unknown: Vec<String> = found
        .into_iter()
        .filter(|(path, ours, theirs)| known_difference(path, ours, theirs).is_none())
        .map(|(path, ours, theirs)| format!("{path}: walrus {ours}, Debezium {theirs}"))
        .collect();
    if !unknown.is_empty() {
        return Some(format!(
            "values differ at {}\n  walrus:   {}\n  Debezium: {}",
            unknown.join("; "),
            ours.map(|v| v.to_string()).unwrap_or_default(),
            theirs.map(|v| v.to_string()).unwrap_or_default()
        ));
    }
    None
}

/// Every leaf where `a` and `b` differ, as (path, a's value, b's value); a member only one side
/// has is `"<absent>"` on the other.
fn json_diff(a: &Value, b: &Value, path: String, out: &mut Vec<(String, Value, Value)>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let absent = Value::String("<absent>".to_owned());
                json_diff(
                    x.get(k).unwrap_or(&absent),
                    y.get(k).unwrap_or(&absent),
                    format!("{path}.{k}"),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                json_diff(p, q, format!("{path}[{i}]"), out);
            }
        }
        _ if a != b => out.push((path, a.clone(), b.clone())),
        _ => {}
    }
}

/// The differences docs/compat.md lists as not fixed yet, by the reason it gives; `None` for
/// any other difference, which fails the suite.
fn known_difference(path: &str, ours: &Value, _theirs: &Value) -> Option<&'static str> {
    let absent = Value::String("<absent>".to_owned());
    // Column defaults: Debezium puts a column's DEFAULT into its Connect schema.
    if path.ends_with(".default") && path.contains(".fields[") && *ours == absent {
        return Some("column-default-in-schema");
    }
    None
}

/// Removes from a value what cannot agree between two connectors (docs/compat.md): the
/// processing timestamps, `source.version`, and the positions of snapshot records.
fn normalise(v: &mut Value) {
    let payload = if v.get("schema").is_some() && v.get("payload").is_some() {
        &mut v["payload"]
    } else {
        v
    };
    let Some(obj) = payload.as_object_mut() else {
        return;
    };
    for k in ["ts_ms", "ts_us", "ts_ns"] {
        obj.remove(k);
    }
    let snapshot = obj.get("op").and_then(Value::as_str) == Some("r");
    if let Some(source) = obj.get_mut("source").and_then(Value::as_object_mut) {
        for k in ["version", "ts_ms", "ts_us", "ts_ns"] {
            source.remove(k);
        }
        if snapshot {
            for k in ["lsn", "sequence", "txId", "xmin"] {
                source.remove(k);
            }
        }
    }
}
