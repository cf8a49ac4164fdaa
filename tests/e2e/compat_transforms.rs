//! The transforms and options Debezium users rely on, compared with Debezium itself: each
//! case runs a Debezium 3.6.1 connector (on one shared Kafka Connect worker) and a walrus with
//! the equivalent configuration against the same database and broker, and the records they
//! write are compared as in `compat.rs` (same helpers, same normalisation, same list of known
//! differences in docs/compat.md).
//!
//! ```text
//!                 ┌─ walrus  (prefix P, case config) ───────────────▶ P.…
//! PostgreSQL ─────┤                                                    │ compared per case
//!  one workload   └─ Debezium (prefix P, case SMTs, then dbz.$1) ────▶ dbz.P.…
//! ```
//!
//! Cases: transaction metadata (`provide.transaction.metadata`) with schemas on and off;
//! `ExtractNewRecordState` with its defaults, with `rewrite` and added fields and headers
//! (schemas on), and with `rewrite-with-tombstone` and a header prefix; `ByLogicalTableRouter`
//! merging two tables into one topic (schemas on); the snapshot markers and table order of
//! one walrus worker (tables listed against name order, a first table with one row, empty
//! tables last); `ExtractNewRecordState` on one table only (a predicate on the SMT, the
//! table's `unwrap` in walrus).

use std::time::{Duration, Instant};

use walrus_testkit::{unique_name, KafkaBroker, KafkaConnect};

use crate::common::*;
use crate::compat::{
    add_connector, compare_prefix, debezium_props, difference, read_all, read_until_ended,
    set_props, Record, END_MARKER, PARTITIONS,
};

/// Two tables, so that per-table counts and orders have something to tell apart, two for
/// TOAST under FULL and DEFAULT identity, and four for the snapshot markers: listed in the
/// `markers` case against name order, the first with one row, the last two empty.
const SCHEMA: &str = "
CREATE TABLE m_z (id int PRIMARY KEY, v text);
CREATE TABLE m_y (id int PRIMARY KEY, v text);
CREATE TABLE m_x (id int PRIMARY KEY, v text);
CREATE TABLE m_w (id int PRIMARY KEY, v text);
INSERT INTO m_z VALUES (1, 'only');
INSERT INTO m_y VALUES (1, 'a'), (2, 'b'), (3, 'c');
CREATE TABLE a (id int PRIMARY KEY, v text);
CREATE TABLE b (id int PRIMARY KEY, v text);
INSERT INTO a VALUES (1, 'x'), (4, 'w');
INSERT INTO b VALUES (1, 'y'), (4, 'w');
CREATE TABLE tf (id int PRIMARY KEY, n int, doc text);
ALTER TABLE tf REPLICA IDENTITY FULL;
CREATE TABLE td (id int PRIMARY KEY, n int, doc text);
INSERT INTO tf VALUES (1, 0, 'small'), (2, 0, 'small');
INSERT INTO td VALUES (1, 0, 'small'), (2, 0, 'small');
";

/// Snapshot rows of [`SCHEMA`] on each side (every case has four).
const SNAPSHOT_ROWS: usize = 4;

/// The tables of most cases, in the order both sides snapshot them (the include list's).
const TABLES: &[&str] = &["public.a", "public.b", "public.td", "public.tf"];

/// Transactions of one and of several statements over both tables, a key change, a
/// transaction with only a logical message, a bulk insert and a truncate.
const WORKLOAD: &[&str] = &[
    "INSERT INTO a VALUES (2, 'one')",
    "BEGIN; INSERT INTO a VALUES (3, 'p'); INSERT INTO b VALUES (2, 'q'); UPDATE a SET v = 'pp' WHERE id = 3; \
     DELETE FROM b WHERE id = 1; INSERT INTO b VALUES (3, 'r'); COMMIT",
    "UPDATE a SET id = 30 WHERE id = 3",
    "SELECT pg_logical_emit_message(true, 'smt', 'alone')",
    "BEGIN; INSERT INTO a SELECT g, 'bulk' FROM generate_series(100, 120) g; UPDATE b SET v = 'z'; COMMIT",
    "TRUNCATE a, b",
    // Unchanged TOASTed values: taken from the old tuple under FULL, the placeholder under
    // DEFAULT, on both sides.
    "INSERT INTO tf SELECT 5, 0, (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 400) g)",
    "INSERT INTO td SELECT 5, 0, (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 400) g)",
    "UPDATE tf SET n = 1 WHERE id = 5",
    "UPDATE td SET n = 1 WHERE id = 5",
];

/// One configuration compared on both sides.
struct Case {
    /// Part of the topic prefix.
    name: &'static str,
    /// `schemas.enable` of both converters / `[format] schemas_enable`.
    schemas: bool,
    /// `table.include.list` / `source.tables`, in this order on both sides.
    tables: &'static [&'static str],
    /// Debezium connector properties beyond the common ones; `transforms` here come before
    /// the renaming `RegexRouter`.
    debezium: Vec<(&'static str, &'static str)>,
    /// SMT aliases, in order, configured in `debezium`.
    transforms: Vec<&'static str>,
    /// TOML appended to walrus's configuration.
    walrus: &'static str,
    /// Topic suffixes (after `P.`) that must have records on both sides.
    expect_topics: Vec<&'static str>,
    /// Text that some value on both sides' table topics must contain (the case's feature
    /// is on), and text none may contain.
    present: &'static str,
    absent: &'static str,
}

fn cases() -> Vec<Case> {
    let tx = |name, schemas| Case {
        name,
        schemas,
        tables: TABLES,
        debezium: vec![("provide.transaction.metadata", "true")],
        transforms: Vec::new(),
        walrus: "[transactions]\nenabled = true\n",
        expect_topics: vec!["transaction", "public.a", "public.b"],
        present: "\"total_order\":",
        absent: "<none>",
    };
    let unwrap = |name, schemas, debezium: &[(&'static str, &'static str)], walrus, present| Case {
        name,
        schemas,
        tables: TABLES,
        debezium: [(
            "transforms.unwrap.type",
            "io.debezium.transforms.ExtractNewRecordState",
        )]
        .into_iter()
        .chain(debezium.iter().copied())
        .collect(),
        transforms: vec!["unwrap"],
        walrus,
        expect_topics: vec!["public.a", "public.b"],
        present,
        absent: "\"source\":",
    };
    vec![
        tx("txon", true),
        tx("txoff", false),
        // Debezium's defaults: deletes become null values, tombstones and truncates dropped.
        unwrap("flat", false, &[], "[transforms.unwrap]\n", "\"v\":\"pp\""),
        unwrap(
            "rewrite",
            true,
            &[
                (
                    "transforms.unwrap.delete.tombstone.handling.mode",
                    "rewrite",
                ),
                (
                    "transforms.unwrap.add.fields",
                    "op,table,schema:SCH,source.connector",
                ),
                ("transforms.unwrap.add.headers", "op,db"),
            ],
            "[transforms.unwrap]\ndelete_tombstone_handling_mode = \"rewrite\"\n\
             add_fields = [\"op\", \"table\", \"schema:SCH\", \"source.connector\"]\n\
             add_headers = [\"op\", \"db\"]\n",
            "\"__deleted\":\"true\",\"__op\":\"d\",\"__table\":\"b\",\"__SCH\":\"public\"",
        ),
        unwrap(
            "rwtomb",
            false,
            &[
                (
                    "transforms.unwrap.delete.tombstone.handling.mode",
                    "rewrite-with-tombstone",
                ),
                ("transforms.unwrap.add.headers", "op"),
                ("transforms.unwrap.add.headers.prefix", "cdc_"),
            ],
            "[transforms.unwrap]\ndelete_tombstone_handling_mode = \"rewrite-with-tombstone\"\n\
             add_headers = [\"op\"]\nadd_headers_prefix = \"cdc_\"\n",
            "\"__deleted\":\"true\"",
        ),
        // ByLogicalTableRouter merging a and b, with its defaults (the key field on) and
        // schemas on: the merged schema names, the key field and the partitions it moves keys
        // to are all compared.
        Case {
            name: "logical",
            schemas: true,
            tables: TABLES,
            debezium: vec![
                (
                    "transforms.reroute.type",
                    "io.debezium.transforms.ByLogicalTableRouter",
                ),
                ("transforms.reroute.topic.regex", "(.*)\\.public\\.(a|b)"),
                ("transforms.reroute.topic.replacement", "$1.public.ab"),
            ],
            transforms: vec!["reroute"],
            walrus: "[[routes]]\nmatch = '(.*)\\.public\\.(a|b)'\nmatch_on = \"topic\"\n\
                     topic = \"$1.public.ab\"\nlogical_table = true\n",
            expect_topics: vec!["public.ab"],
            present: ".public.ab.Envelope\"",
            absent: ".public.a.Value\"",
        },
        // ExtractNewRecordState on table a only: a predicate on the SMT in Kafka Connect, the
        // table's section in walrus.
        Case {
            name: "pertable",
            schemas: false,
            tables: TABLES,
            debezium: vec![
                (
                    "transforms.unwrap.type",
                    "io.debezium.transforms.ExtractNewRecordState",
                ),
                ("transforms.unwrap.predicate", "isA"),
                ("predicates", "isA"),
                (
                    "predicates.isA.type",
                    "org.apache.kafka.connect.transforms.predicates.TopicNameMatches",
                ),
                ("predicates.isA.pattern", ".*\\.public\\.a"),
            ],
            transforms: vec!["unwrap"],
            walrus: "[tables.\"public.a\"]\nunwrap = true\n",
            expect_topics: vec!["public.a", "public.b"],
            present: "\"source\":",
            absent: "<none>",
        },
        // Snapshot markers (Debezium's defaults, one walrus worker): tables listed against
        // name order, a first table whose only row is `first`, and a last row before two
        // empty tables that is `last`.
        Case {
            name: "markers",
            schemas: false,
            tables: &["public.m_z", "public.m_y", "public.m_x", "public.m_w"],
            debezium: Vec::new(),
            transforms: Vec::new(),
            walrus: "",
            expect_topics: vec!["public.m_z", "public.m_y"],
            present: "\"snapshot\":\"first\"",
            // m_z's only row is `first`, m_y's last row `last`: nothing is
            // `last_in_data_collection`.
            absent: "\"snapshot\":\"last_in_data_collection\"",
        },
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn transforms_match_debezium() {
    let broker = KafkaBroker::shared().expect("the shared Kafka broker");
    let env = Env::new().await;
    let sql = env.sql().await;
    sql.batch_execute(SCHEMA).await.expect("schema");
    let run = unique_name("smt");
    let connect = KafkaConnect::start(&broker.bootstrap()).expect("Kafka Connect");
    let cases = cases();
    let mut walruses = Vec::new();
    for case in &cases {
        let prefix = format!("{run}_{}", case.name);
        let slot = format!("{prefix}_dbz");
        let include = case.tables.join(",");
        let mut props = debezium_props(
            &env,
            &prefix,
            &slot,
            &include,
            case.schemas,
            &case.transforms,
        );
        set_props(&mut props, case.debezium.iter().copied());
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
tables = {tables:?}
status_interval_ms = 200
[format]
schemas_enable = {schemas}
[snapshot]
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
{extra}"#,
                url = env.cluster.url(&env.db),
                bootstrap = broker.bootstrap(),
                schemas = case.schemas,
                tables = case.tables,
                extra = case.walrus,
            ),
        )
        .expect("walrus config");
        walruses.push((prefix, Walrus::start(&config)));
    }

    let bootstrap = broker.bootstrap();
    let prefixes: Vec<String> = walruses.iter().map(|(p, _)| p.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let records = read_all(&bootstrap, &run, Duration::from_secs(2));
        let count = |side: &str| records.iter().filter(|r| r.topic.starts_with(side)).count();
        if prefixes.iter().all(|p| {
            count(&format!("{p}.public.")) >= SNAPSHOT_ROWS
                && count(&format!("dbz.{p}.public.")) >= SNAPSHOT_ROWS
        }) {
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
    for (case, prefix) in cases.iter().zip(&prefixes) {
        for topic in &case.expect_topics {
            for side in [format!("{prefix}.{topic}"), format!("dbz.{prefix}.{topic}")] {
                if !records.iter().any(|r| r.topic == side) {
                    differences.push(format!("case {}: nothing on {side}", case.name));
                }
            }
        }
        for side in [format!("{prefix}.public."), format!("dbz.{prefix}.public.")] {
            let values: Vec<String> = records
                .iter()
                .filter(|r| r.topic.starts_with(&side))
                .filter_map(|r| {
                    r.value
                        .as_deref()
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                })
                .collect();
            if !values.iter().any(|v| v.contains(case.present)) {
                differences.push(format!(
                    "case {}: no value on {side}* contains {}",
                    case.name, case.present
                ));
            }
            if values.iter().any(|v| v.contains(case.absent)) {
                differences.push(format!(
                    "case {}: a value on {side}* contains {}",
                    case.name, case.absent
                ));
            }
        }
        if case.name == "pertable" {
            // Table a flat, table b enveloped, on both sides.
            for side in [prefix.to_string(), format!("dbz.{prefix}")] {
                let values = |table: &str| -> Vec<String> {
                    records
                        .iter()
                        .filter(|r| r.topic == format!("{side}.public.{table}"))
                        .filter_map(|r| r.value.as_deref())
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .collect()
                };
                let (a, b) = (values("a"), values("b"));
                if a.is_empty() || a.iter().any(|v| v.contains("\"source\":")) {
                    differences.push(format!("{side}.public.a is not flat: {a:?}"));
                }
                if b.is_empty() || !b.iter().all(|v| v.contains("\"source\":")) {
                    differences.push(format!("{side}.public.b is not enveloped: {b:?}"));
                }
            }
        }
        if case.name == "txoff" {
            // The TOAST updates themselves, beyond agreeing: FULL fills, DEFAULT does not.
            for side in [prefix.to_string(), format!("dbz.{prefix}")] {
                let update = |table: &str| {
                    records
                        .iter()
                        .filter(|r| r.topic == format!("{side}.public.{table}"))
                        .filter_map(|r| r.value.as_deref())
                        .map(|v| serde_json::from_slice::<serde_json::Value>(v).expect("JSON"))
                        .find(|v| v["op"] == "u")
                        .map(|v| v["after"]["doc"].clone())
                };
                let full = update("tf");
                if full
                    .as_ref()
                    .and_then(|d| d.as_str())
                    .is_none_or(|d| d.len() != 12_800)
                {
                    differences.push(format!("{side}: the FULL update's doc is {full:?}"));
                }
                let default = update("td");
                if default.as_ref().and_then(|d| d.as_str()) != Some("__debezium_unavailable_value")
                {
                    differences.push(format!("{side}: the DEFAULT update's doc is {default:?}"));
                }
            }
        }
        let (found, n) = compare(&records, prefix);
        compared += n;
        differences.extend(
            found
                .into_iter()
                .map(|d| format!("case {}: {d}", case.name)),
        );
    }
    assert!(
        differences.is_empty(),
        "{} differences over {compared} compared records:\n{}",
        differences.len(),
        differences.join("\n")
    );
    assert!(compared >= 40, "only {compared} records compared");
    for (_, mut walrus) in walruses {
        walrus.interrupt();
        walrus.wait(Duration::from_secs(30));
    }
}

/// The differences between walrus's records under `prefix` and Debezium's under
/// `dbz.<prefix>`, per topic and partition in offset order, and how many were compared.
fn compare(records: &[Record], prefix: &str) -> (Vec<String>, usize) {
    compare_prefix(records, prefix, |a, b| {
        difference(&message_collections(a), &message_collections(b))
    })
}

/// What Debezium calls a logical message's data collection in an `END` event, before the
/// `@` and the Java object's identity hash (random per JVM).
const MESSAGE_COLLECTION: &str =
    "io.debezium.connector.postgresql.LogicalDecodingMessageMonitor$LogicalDecodingMessageId@";

/// `r` with the logical messages in an `END` event's `data_collections` named without their
/// identity hash and moved after the tables (their place in Java's `HashMap` follows that
/// random hash); the tables keep their order, which is compared. Other records unchanged.
fn message_collections(r: &Record) -> Record {
    let Some(value) = r.value.as_deref() else {
        return r.clone();
    };
    if !r.topic.ends_with(".transaction") {
        return r.clone();
    }
    let mut v: serde_json::Value = serde_json::from_slice(value).expect("a JSON value");
    let payload = if v.get("payload").is_some() {
        &mut v["payload"]
    } else {
        &mut v
    };
    if let Some(list) = payload
        .get_mut("data_collections")
        .and_then(serde_json::Value::as_array_mut)
    {
        let is_message = |e: &serde_json::Value| {
            e["data_collection"]
                .as_str()
                .is_some_and(|n| n.starts_with(MESSAGE_COLLECTION))
        };
        let (mut tables, mut messages): (Vec<_>, Vec<_>) =
            list.drain(..).partition(|e| !is_message(e));
        for m in &mut messages {
            m["data_collection"] = serde_json::Value::String(format!("{MESSAGE_COLLECTION}<hash>"));
        }
        tables.append(&mut messages);
        *list = tables;
    }
    Record {
        value: Some(serde_json::to_vec(&v).expect("JSON")),
        ..r.clone()
    }
}
