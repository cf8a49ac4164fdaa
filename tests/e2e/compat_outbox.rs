//! walrus's outbox router compared with Debezium's `EventRouter` SMT: one outbox table, the
//! same inserts, a Debezium 3.6.1 connector with the outbox SMT (on one Kafka Connect worker,
//! the SMT limited to the outbox table's records by a `TopicNameMatches` predicate, as
//! Debezium's documentation configures it) and a walrus with the equivalent `[[outbox]]`.
//!
//! ```text
//!                 ┌─ walrus   [[outbox]] ───────────────────────▶ P.outbox.event.<type>
//! PostgreSQL ─────┤                                                 │ compared per case:
//!  outbox inserts └─ Debezium EventRouter, then dbz.$1 ──────────▶ dbz.P.outbox.event.<type>
//! ```
//!
//! Unlike the row events of `compat.rs`, every header is compared here (the event id is the
//! router's `id` header on both sides), and the values byte for byte. Cases: a `jsonb` payload expanded (`table.expand.json.payload`) with the event type
//! as a header, and a text payload kept as a string with the event type as an envelope field.

use std::time::{Duration, Instant};

use walrus_testkit::{unique_name, KafkaBroker, KafkaConnect};

use crate::common::*;
use crate::compat::{
    add_connector, compare_prefix, debezium_props, read_all, read_until_ended, set_props, Record,
    END_MARKER, PARTITIONS,
};

const SCHEMA: &str = "
CREATE TABLE outbox_json (
    id uuid PRIMARY KEY, aggregatetype text NOT NULL, aggregateid text NOT NULL,
    type text NOT NULL, payload jsonb);
CREATE TABLE outbox_text (
    id uuid PRIMARY KEY, aggregatetype text NOT NULL, aggregateid text NOT NULL,
    type text NOT NULL, payload text);
";

/// Written to both outbox tables: events of two aggregate types (two topics), several per
/// aggregate (their order per key is compared), an insert deleted in the same transaction (the
/// recommended practice), a null payload, an update and a delete of an earlier row (both
/// routers publish nothing for them).
const WORKLOAD: &[&str] = &[
    "INSERT INTO {t} VALUES ('00000000-0000-0000-0000-000000000001', 'Order', '17', 'OrderCreated', '{\"id\": 17, \"lines\": [1, 2], \"total\": 12.5}')",
    "BEGIN; INSERT INTO {t} VALUES ('00000000-0000-0000-0000-000000000002', 'Order', '17', 'OrderPaid', '{\"id\": 17, \"paid\": true}'); \
     INSERT INTO {t} VALUES ('00000000-0000-0000-0000-000000000003', 'Customer', 'c-9', 'CustomerMoved', '{\"city\": \"Zürich\", \"note\": null}'); \
     DELETE FROM {t} WHERE id = '00000000-0000-0000-0000-000000000002'; COMMIT",
    "INSERT INTO {t} SELECT ('00000000-0000-0000-0000-0000000001' || lpad(g::text, 2, '0'))::uuid, \
     'Order', (g % 5)::text, 'OrderLine', json_build_object('order', g % 5, 'line', g) FROM generate_series(10, 40) g",
    "INSERT INTO {t} VALUES ('00000000-0000-0000-0000-000000000004', 'Customer', 'c-9', 'CustomerForgotten', NULL)",
    "UPDATE {t} SET type = 'Changed' WHERE id = '00000000-0000-0000-0000-000000000001'",
    "DELETE FROM {t} WHERE id = '00000000-0000-0000-0000-000000000003'",
];

/// Outbox messages each side must write: 1 + 2 + 31 + 1.
const EVENTS: usize = 35;

/// One outbox configuration compared on both sides.
struct Case {
    /// Part of the topic prefix.
    name: &'static str,
    /// The outbox table.
    table: &'static str,
    /// EventRouter properties beyond the route (prefixed `transforms.outbox.`).
    debezium: Vec<(&'static str, &'static str)>,
    /// The `[[outbox]]` entry's keys beyond `table` and `topic`.
    walrus: &'static str,
    /// Debezium's key converter.
    key_converter: &'static str,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "json",
            table: "outbox_json",
            debezium: vec![
                ("table.expand.json.payload", "true"),
                ("table.fields.additional.placement", "type:header:eventType"),
            ],
            walrus: "fields = [{ column = \"type\", placement = \"header\", name = \"eventType\" }]\n",
            key_converter: "org.apache.kafka.connect.json.JsonConverter",
        },
        Case {
            name: "text",
            table: "outbox_text",
            debezium: vec![("table.fields.additional.placement", "type:envelope:eventType")],
            walrus: "payload_format = \"string\"\nkey_format = \"string\"\n\
                     fields = [{ column = \"type\", placement = \"envelope\", name = \"eventType\" }]\n",
            key_converter: "org.apache.kafka.connect.storage.StringConverter",
        },
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn outbox_router_matches_debezium_event_router() {
    let broker = KafkaBroker::shared().expect("the shared Kafka broker");
    let env = Env::new().await;
    let sql = env.sql().await;
    sql.batch_execute(SCHEMA).await.expect("schema");
    let run = unique_name("obx");
    let connect = KafkaConnect::start(&broker.bootstrap()).expect("Kafka Connect");
    let cases = cases();
    let mut walruses = Vec::new();
    for case in &cases {
        let prefix = format!("{run}_{}", case.name);
        let slot = format!("{prefix}_dbz");
        let include = format!("public.{}", case.table);
        let route = format!("{prefix}.outbox.event.${{routedByValue}}");
        let pattern = format!(".*\\.public\\.{}", case.table);
        let mut props = debezium_props(&env, &prefix, &slot, &include, false, &["outbox"]);
        set_props(
            &mut props,
            [
                ("tombstones.on.delete", "false"),
                ("key.converter", case.key_converter),
                (
                    "transforms.outbox.type",
                    "io.debezium.transforms.outbox.EventRouter",
                ),
                ("transforms.outbox.predicate", "isOutbox"),
                ("transforms.outbox.route.topic.replacement", &route),
                ("predicates", "isOutbox"),
                (
                    "predicates.isOutbox.type",
                    "org.apache.kafka.connect.transforms.predicates.TopicNameMatches",
                ),
                ("predicates.isOutbox.pattern", &pattern),
            ],
        );
        let own: Vec<(String, &str)> = case
            .debezium
            .iter()
            .map(|(k, v)| (format!("transforms.outbox.{k}"), *v))
            .collect();
        set_props(&mut props, own.iter().map(|(k, v)| (k.as_str(), *v)));
        add_connector(&connect, &slot, &props)
            .unwrap_or_else(|e| panic!("Debezium connector of case {}: {e}", case.name));
        let config = env.dir.path().join(format!("{prefix}.toml"));
        std::fs::write(
            &config,
            format!(
                r#"topic_prefix = "{prefix}"
[source]
url = "{url}"
slot = "{prefix}_walrus"
publication = "{prefix}_walrus"
tables = ["public.{table}"]
status_interval_ms = 200
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
[[outbox]]
table = "public.{table}"
topic = "{prefix}.outbox.event.{{aggregatetype}}"
{extra}"#,
                url = env.cluster.url(&env.db),
                bootstrap = broker.bootstrap(),
                table = case.table,
                extra = case.walrus,
            ),
        )
        .expect("walrus config");
        walruses.push((prefix, Walrus::start(&config)));
    }

    // Both sides stream (past their snapshots) once a message written now reached them.
    let bootstrap = broker.bootstrap();
    let prefixes: Vec<String> = walruses.iter().map(|(p, _)| p.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        sql.batch_execute("SELECT pg_logical_emit_message(true, 'compat-start', 'start')")
            .await
            .expect("start marker");
        let records = read_all(&bootstrap, &run, Duration::from_secs(2));
        let started = |side: String| {
            records.iter().any(|r| {
                r.topic == side
                    && r.value
                        .as_deref()
                        .is_some_and(|v| String::from_utf8_lossy(v).contains("compat-start"))
            })
        };
        if prefixes
            .iter()
            .all(|p| started(format!("{p}.message")) && started(format!("dbz.{p}.message")))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sides did not start streaming; Connect log:\n{}\nwalrus log:\n{}",
            connect.log_tail(40),
            walruses[0].1.log()
        );
    }

    for case in &cases {
        for statement in WORKLOAD {
            let statement = statement.replace("{t}", case.table);
            sql.batch_execute(&statement)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
    }
    sql.batch_execute(END_MARKER).await.expect("end marker");
    let mut records = read_until_ended(
        &bootstrap,
        &run,
        &prefixes,
        Duration::from_secs(120),
        |_| format!("Connect log:\n{}", connect.log_tail(40)),
    );
    // Topics created moments ago may be missing from the metadata the reader started from:
    // read again until every side's outbox topics are there (or the comparison reports it).
    let outbox_count = |records: &[Record], side: &str| {
        records
            .iter()
            .filter(|r| r.topic.starts_with(&format!("{side}.outbox.event.")))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline
        && !prefixes.iter().all(|p| {
            outbox_count(&records, p) >= EVENTS
                && outbox_count(&records, &format!("dbz.{p}")) >= EVENTS
        })
    {
        records = read_all(&bootstrap, &run, Duration::from_secs(3));
    }

    // The start markers each side saw depend on when it started streaming.
    let records: Vec<Record> = records
        .into_iter()
        .filter(|r| {
            !r.value
                .as_deref()
                .is_some_and(|v| String::from_utf8_lossy(v).contains("compat-start"))
        })
        .collect();
    let mut differences = Vec::new();
    let mut compared = 0;
    for prefix in &prefixes {
        for side in [prefix.clone(), format!("dbz.{prefix}")] {
            let events = outbox_count(&records, &side);
            if events != EVENTS {
                differences.push(format!("{side}: {events} outbox messages, not {EVENTS}"));
            }
        }
        // Only the outbox topics: the end markers' keys follow each case's key converter
        // (a `StringConverter` writes Debezium's message key as `Struct{...}`), and logical
        // messages are compat.rs's subject.
        let outbox: Vec<Record> = records
            .iter()
            .filter(|r| r.topic.contains(".outbox.event."))
            .cloned()
            .collect();
        let (found, n) = compare_prefix(&outbox, prefix, outbox_difference);
        compared += n;
        differences.extend(found);
    }
    let mut topics = std::collections::BTreeMap::<&str, usize>::new();
    for r in &records {
        *topics.entry(r.topic.as_str()).or_default() += 1;
    }
    assert!(
        differences.is_empty(),
        "{} differences over {compared} compared records:\n{}\nrecords per topic: {topics:?}\nConnect log:\n{}",
        differences.len(),
        differences.join("\n"),
        connect.log_tail(60)
    );
    assert!(compared >= 2 * EVENTS, "only {compared} records compared");
    for (_, mut walrus) in walruses {
        walrus.interrupt();
        walrus.wait(Duration::from_secs(30));
    }
}

/// What differs between walrus's outbox message `a` and Debezium's `b`: key bytes, every
/// header but Kafka Connect's context headers, and value bytes.
fn outbox_difference(a: &Record, b: &Record) -> Option<String> {
    let text = |v: &Option<Vec<u8>>| {
        v.as_deref()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_else(|| "null".into())
    };
    if a.key != b.key {
        return Some(format!(
            "key bytes differ: walrus {}, Debezium {}",
            text(&a.key),
            text(&b.key)
        ));
    }
    let theirs: std::collections::BTreeMap<_, _> = b
        .headers
        .iter()
        .filter(|(k, _)| !k.starts_with("__debezium.context."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if a.headers != theirs {
        return Some(format!(
            "headers differ: walrus {:?}, Debezium {theirs:?}",
            a.headers
        ));
    }
    (a.value != b.value).then(|| {
        format!(
            "values differ: walrus {} ({}), Debezium {} ({})",
            text(&a.value),
            if a.value.is_some() {
                "bytes"
            } else {
                "a null value"
            },
            text(&b.value),
            if b.value.is_some() {
                "bytes"
            } else {
                "a null value"
            },
        )
    })
}
