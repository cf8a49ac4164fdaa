//! More of the comparison with Debezium itself (docs/compat.md, "How it is checked"): the type
//! zoo under every handling mode, `ALTER TABLE` in the middle of the stream, and a partitioned
//! table with `publish_via_partition_root` on and off.
//!
//! ```text
//!                 ┌─ walrus   (prefix <run>_m1, modes of set 1) ─▶ <run>_m1.public.zoo …
//! PostgreSQL ─────┤  … one pair per mode set …                            │ compared
//!  one workload   └─ Debezium (same prefix and modes, RegexRouter) ─▶ dbz.<run>_m1.public.zoo …
//! ```
//!
//! Kafka Connect is one JVM: all of Debezium's connectors (one per mode set, each with its
//! own slot, publication and topic prefix) run on one worker, so the test pays for one start.
//! Each mode set has a walrus beside it with the same handling modes. Between them the sets
//! cover every value of `decimal.handling.mode` (precise, double, string),
//! `time.precision.mode` (adaptive, adaptive_time_microseconds, connect),
//! `binary.handling.mode` (base64, base64-url-safe, hex; bytes is compat.rs's),
//! `interval.handling.mode` (numeric, string) and `hstore.handling.mode` (json, map). All run
//! with schemas on, so the Connect schemas are compared too. The records are compared as in
//! compat.rs, with the same normalisation and the same list of known differences.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use walrus_testkit::{unique_name, KafkaBroker, KafkaConnect};

use crate::common::*;
use crate::compat::{
    add_connector, compare_prefix, debezium_props, difference, read_all, read_until_ended,
    set_props, Record, END_MARKER, PARTITIONS,
};
use crate::types::{create_zoo, insert_zoo_rows};

/// One set of handling modes, as (Debezium key, Debezium value, walrus `[format]` key, walrus
/// value), and whether the publication publishes partitions as their root.
struct ModeSet {
    name: &'static str,
    modes: &'static [(&'static str, &'static str, &'static str, &'static str)],
    via_root: bool,
}

const MODE_SETS: &[ModeSet] = &[
    ModeSet {
        name: "m1",
        modes: &[
            (
                "decimal.handling.mode",
                "double",
                "decimal_handling_mode",
                "double",
            ),
            (
                "time.precision.mode",
                "adaptive_time_microseconds",
                "time_precision_mode",
                "adaptive_time_microseconds",
            ),
            (
                "binary.handling.mode",
                "base64",
                "binary_handling_mode",
                "base64",
            ),
            (
                "interval.handling.mode",
                "string",
                "interval_handling_mode",
                "string",
            ),
            ("hstore.handling.mode", "map", "hstore_handling_mode", "map"),
        ],
        via_root: true,
    },
    ModeSet {
        name: "m2",
        modes: &[
            (
                "decimal.handling.mode",
                "string",
                "decimal_handling_mode",
                "string",
            ),
            (
                "time.precision.mode",
                "connect",
                "time_precision_mode",
                "connect",
            ),
            ("binary.handling.mode", "hex", "binary_handling_mode", "hex"),
            (
                "interval.handling.mode",
                "numeric",
                "interval_handling_mode",
                "numeric",
            ),
            (
                "hstore.handling.mode",
                "json",
                "hstore_handling_mode",
                "json",
            ),
        ],
        via_root: false,
    },
    ModeSet {
        name: "m3",
        modes: &[
            (
                "decimal.handling.mode",
                "precise",
                "decimal_handling_mode",
                "precise",
            ),
            (
                "time.precision.mode",
                "adaptive",
                "time_precision_mode",
                "adaptive",
            ),
            (
                "binary.handling.mode",
                "base64-url-safe",
                "binary_handling_mode",
                "base64-url-safe",
            ),
            (
                "interval.handling.mode",
                "string",
                "interval_handling_mode",
                "string",
            ),
            (
                "hstore.handling.mode",
                "json",
                "hstore_handling_mode",
                "json",
            ),
        ],
        via_root: false,
    },
];

/// Zoo columns left out of the comparison, each for a difference docs/compat.md lists with
/// its reason: Debezium drops columns of types it does not know (`include.unknown.datatypes`
/// is off by default) where walrus writes PostgreSQL's text; it writes `infinity` dates and
/// timestamps as clamped numbers, multi-dimensional arrays as nulls or Java object names, a
/// numeric array holding NaN as null, a BC date as the AD one in one of its paths, and a
/// `name` column as null in one of them.
const NOT_COMPARED: &[&str] = &[
    // Types Debezium does not know: geometric (but point), composite, multiranges, pg_lsn,
    // regclass, tsquery, xid.
    "bx", "ci", "comp", "dmr", "imr", "li", "ls", "lsn", "pa", "pg", "rc", "tq", "xi",
    // Values Debezium renders differently (docs/compat.md).
    "dinf", "tsinf", "ia", "ta", "na", "d", "nm",
];

/// Besides the zoo: a table whose shape changes mid-stream and a partitioned table.
const SCHEMA: &str = "
CREATE TABLE defs (id int PRIMARY KEY, n int NOT NULL DEFAULT 5, s text,
    f boolean NOT NULL DEFAULT true, big bigint NOT NULL DEFAULT -7,
    v varchar(10) NOT NULL DEFAULT 'x', at timestamptz);
INSERT INTO defs (id) VALUES (1);
CREATE TABLE evo (id int PRIMARY KEY, a text);
INSERT INTO evo VALUES (1, 'one');
CREATE TABLE zzmeas (id int, at date, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE zzmeas_2024 PARTITION OF zzmeas FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE zzmeas_2025 PARTITION OF zzmeas FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO zzmeas VALUES (1, '2024-06-01', 'a'), (2, '2025-06-01', 'b');
";

/// Snapshot records per side: 3 zoo rows, 1 defs row, 1 evo row, 2 zzmeas rows.
const SNAPSHOT_ROWS: usize = 7;

/// After both snapshots: the zoo's rows again through the stream (a key change re-inserts
/// every value, and deletes them with a key-only before image), ALTER TABLE between changes
/// (ADD COLUMN, SET/DROP NOT NULL, DROP COLUMN), and changes on both partitions, one moving a
/// row across them.
///
/// Both connectors read `NOT NULL` from the catalog when a Relation message arrives, that is
/// *now*, not as of the change: a `SET NOT NULL` committed before a connector decoded the
/// earlier changes would show in their schemas. So before each nullability change the test
/// waits until every side delivered the given number of `evo` records.
const WORKLOAD: &[(&str, Option<usize>)] = &[
    ("UPDATE zoo SET id = id + 10", None),
    ("INSERT INTO evo VALUES (2, 'two')", None),
    ("ALTER TABLE evo ADD COLUMN b int", None),
    ("INSERT INTO evo VALUES (3, 'three', 3)", None),
    ("UPDATE evo SET a = 'uno' WHERE a IS NULL OR id = 1", None),
    ("ALTER TABLE evo ALTER COLUMN a SET NOT NULL", Some(4)),
    ("INSERT INTO evo VALUES (4, 'four', 4)", None),
    ("DELETE FROM evo WHERE id = 2", None),
    ("ALTER TABLE evo DROP COLUMN b", None),
    ("INSERT INTO evo VALUES (5, 'five')", None),
    ("ALTER TABLE evo ALTER COLUMN a DROP NOT NULL", Some(8)),
    ("INSERT INTO evo VALUES (6, NULL)", None),
    ("DELETE FROM evo WHERE id = 3", None),
    (
        "INSERT INTO zzmeas VALUES (3, '2024-07-01', 'c'), (4, '2025-07-01', 'd')",
        None,
    ),
    ("UPDATE zzmeas SET v = 'aa' WHERE id = 1", None),
    ("UPDATE zzmeas SET at = '2025-08-01' WHERE id = 3", None),
    ("DELETE FROM zzmeas WHERE id = 2", None),
    // A key-only before image: Debezium fills the NOT NULL columns from their defaults.
    (
        "INSERT INTO defs VALUES (2, 1, 'a', false, 1, 'y', now())",
        None,
    ),
    ("DELETE FROM defs WHERE id = 2", None),
];

#[tokio::test(flavor = "multi_thread")]
async fn types_modes_schema_changes_and_partitions_match_debezium() {
    let broker = KafkaBroker::shared().expect("the shared Kafka broker");
    let env = Env::new().await;
    let sql = env.sql().await;
    create_zoo(&sql, NOT_COMPARED).await;
    insert_zoo_rows(&sql, NOT_COMPARED).await;
    sql.batch_execute(SCHEMA).await.expect("schema");
    let run = unique_name("cmt");

    let connect = KafkaConnect::start(&broker.bootstrap()).expect("Kafka Connect");
    let mut walruses = Vec::new();
    for set in MODE_SETS {
        let prefix = format!("{run}_{}", set.name);
        let slot = format!("{prefix}_dbz");
        let tables: &[&str] = if set.via_root {
            &["public.zoo", "public.defs", "public.evo", "public.zzmeas"]
        } else {
            &[
                "public.zoo",
                "public.defs",
                "public.evo",
                "public.zzmeas_2024",
                "public.zzmeas_2025",
            ]
        };
        let include = tables.join(",");
        // walrus selects tables, never partitions (operations/setup.rs): its publication holds
        // the root either way, and without via_root the changes arrive under the partitions'
        // names (docs/compat.md).
        let walrus_tables = ["public.zoo", "public.defs", "public.evo", "public.zzmeas"];
        let mut props = debezium_props(&env, &prefix, &slot, &include, true, &[]);
        set_props(
            &mut props,
            [(
                "publish.via.partition.root",
                if set.via_root { "true" } else { "false" },
            )],
        );
        set_props(&mut props, set.modes.iter().map(|(k, v, _, _)| (*k, *v)));
        add_connector(&connect, &slot, &props).expect("Debezium connector");

        let format: String = set
            .modes
            .iter()
            .map(|(_, _, k, v)| format!("{k} = \"{v}\"\n"))
            .collect();
        let path = env.dir.path().join(format!("{prefix}.toml"));
        std::fs::write(
            &path,
            format!(
                r#"topic_prefix = "{prefix}"
[source]
url = "{url}"
slot = "{prefix}_walrus"
publication = "{prefix}_walrus"
publish_via_partition_root = {via_root}
tables = {walrus_tables:?}
status_interval_ms = 200
[format]
schemas_enable = true
{format}
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
"#,
                url = env.cluster.url(&env.db),
                bootstrap = broker.bootstrap(),
                via_root = set.via_root,
            ),
        )
        .expect("walrus config");
        walruses.push((prefix, Walrus::start(&path)));
    }

    let bootstrap = broker.bootstrap();
    let prefixes: Vec<String> = walruses.iter().map(|(p, _)| p.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let records = read_all(&bootstrap, &run, Duration::from_secs(2));
        let done = prefixes.iter().all(|p| {
            let count = |side: &str| records.iter().filter(|r| r.topic.starts_with(side)).count();
            count(&format!("{p}.")) >= SNAPSHOT_ROWS && count(&format!("dbz.{p}.")) >= SNAPSHOT_ROWS
        });
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the snapshots did not arrive: {:?}; Connect errors:\n{}",
            per_topic(&records),
            connect_errors(&connect),
        );
    }

    for (statement, wait_for) in WORKLOAD {
        if let Some(n) = wait_for {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let records = read_all(&bootstrap, &run, Duration::from_millis(500));
                let evo = |side: String| records.iter().filter(|r| r.topic == side).count();
                if prefixes.iter().all(|p| {
                    evo(format!("{p}.public.evo")) >= *n && evo(format!("dbz.{p}.public.evo")) >= *n
                }) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{n} evo records did not arrive before `{statement}`: {:?}",
                    per_topic(&records)
                );
            }
        }
        sql.batch_execute(statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    sql.batch_execute(END_MARKER).await.expect("end marker");

    let records = read_until_ended(
        &bootstrap,
        &run,
        &prefixes,
        Duration::from_secs(180),
        |records| {
            format!(
                "{:?}; Connect errors:\n{}",
                per_topic(records),
                connect_errors(&connect)
            )
        },
    );

    let (differences, compared) = compare(&records, &prefixes);
    assert!(
        differences.is_empty(),
        "{} of {compared} compared records differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
    // Per set: 7 snapshot records, 3 defs records (insert, delete, tombstone), 3×(delete, tombstone, create) for the zoo's key change,
    // 10 evo records (2 deletes with tombstones), 8 zzmeas records (a delete with its
    // tombstone, a row moved across partitions as delete, tombstone, create) and the end
    // marker.
    assert!(compared >= 3 * 37, "only {compared} records compared");
    // Column defaults are in walrus's schemas (not only tolerated as a known difference).
    let defs = records
        .iter()
        .find(|r| r.topic == format!("{}.public.defs", prefixes[0]))
        .and_then(|r| r.value.as_deref())
        .map(|v| serde_json::from_slice::<serde_json::Value>(v).unwrap())
        .expect("a defs record");
    let fields = &defs["schema"]["fields"][1]["fields"];
    let default_of = |name: &str| {
        fields
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["field"] == name)
            .map(|f| f["default"].clone())
            .unwrap()
    };
    assert_eq!(default_of("n"), serde_json::json!(5));
    assert_eq!(default_of("f"), serde_json::json!(true));
    assert_eq!(default_of("big"), serde_json::json!(-7));
    assert_eq!(default_of("v"), serde_json::json!("x"));
    // The partitions were seen as their root with via_root, as themselves without.
    let topics: BTreeSet<&str> = records.iter().map(|r| r.topic.as_str()).collect();
    assert!(topics.contains(format!("{}.public.zzmeas", prefixes[0]).as_str()));
    assert!(topics.contains(format!("{}.public.zzmeas_2024", prefixes[1]).as_str()));
    for (_, mut walrus) in walruses {
        walrus.interrupt();
        walrus.wait(Duration::from_secs(30));
    }
}

/// Compares walrus's and Debezium's records of each prefix per topic and partition, in
/// order; returns the differences and the number of records compared.
fn compare(records: &[Record], prefixes: &[String]) -> (Vec<String>, usize) {
    let mut differences = Vec::new();
    let mut compared = 0;
    for prefix in prefixes {
        let (d, n) = compare_prefix(records, prefix, difference);
        differences.extend(d);
        compared += n;
    }
    (differences, compared)
}

/// Records per topic, for failure messages.
fn per_topic(records: &[Record]) -> std::collections::BTreeMap<&str, usize> {
    let mut out = std::collections::BTreeMap::new();
    for r in records {
        *out.entry(r.topic.as_str()).or_default() += 1;
    }
    out
}

/// The Connect worker's ERROR lines and what follows each (the exception), for failure
/// messages.
fn connect_errors(connect: &KafkaConnect) -> String {
    let log = connect.log_text();
    let lines: Vec<&str> = log.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.contains(" ERROR ") {
            out.extend(lines[i..(i + 12).min(lines.len())].iter().copied());
        }
    }
    out.join("\n")
}
