//! Insert, update, delete, truncate and logical messages come out as Debezium-shaped events
//! with the right values for every type the foundation covers; schema changes mid-stream
//! give each event the columns of its time.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

const TYPES_DDL: &str = "CREATE TABLE types (
    id int PRIMARY KEY,
    b bool, i2 int2, i4 int4, i8 int8,
    f4 float4, f8 float8, f8nan float8, f8inf float8, f8ninf float8,
    n numeric(10,2), nneg numeric(10,2), nv numeric,
    t text, vc varchar(10), bp char(3), nm name,
    by bytea, u uuid, j json, jb jsonb,
    d date, tm time, ts timestamp, tstz timestamptz, iv interval,
    other inet
)";

const TYPES_ROW: &str = "INSERT INTO types VALUES (
    1, true, 1, 2, 3,
    1.5, 2.25, 'NaN', 'Infinity', '-Infinity',
    12.34, -1.00, 1.5,
    'hello', 'varchar', 'ab', 'nm',
    '\\x0102ff', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"a\": 1}', '{\"b\": [1, 2]}',
    '2024-01-02', '12:34:56.789', '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05.123456+00', '1 day 02:00:00',
    '10.0.0.1'
)";

async fn start(env: &Env, tables: &str) -> Walrus {
    let cfg = env.write_config(&env.config(tables, ""));
    let w = Walrus::start(&cfg);
    // Past the initial snapshot: DDL while the snapshot reads a table makes it read the
    // table again, which would change the events these tests expect.
    wait_until(Duration::from_secs(30), "replication start", || {
        w.log().contains("replication started")
    })
    .await;
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_and_type_is_shaped_like_debezium() {
    let env = Env::new().await;
    let c = env.sql().await;
    c.batch_execute(TYPES_DDL).await.unwrap();
    let mut walrus = start(&env, r#"["public.types"]"#).await;
    c.batch_execute(TYPES_ROW).await.unwrap();
    c.batch_execute("UPDATE types SET t = 'changed' WHERE id = 1")
        .await
        .unwrap();
    c.batch_execute("DELETE FROM types WHERE id = 1")
        .await
        .unwrap();
    c.batch_execute("INSERT INTO types (id) VALUES (2); TRUNCATE types")
        .await
        .unwrap();
    c.batch_execute("BEGIN; SELECT pg_logical_emit_message(true, 'walrus.test', 'hello'); COMMIT")
        .await
        .unwrap();
    c.batch_execute("SELECT pg_logical_emit_message(false, 'walrus.nontx', 'now')")
        .await
        .unwrap();

    let out = env.out_path();
    let events = wait_for_events(&out, 2, Duration::from_secs(30), |e| {
        e["value"]["op"] == "m"
    })
    .await;
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(30)).success());

    let topic = "app.public.types";
    let ops: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["topic"].as_str().unwrap().to_string(),
                e["value"]["op"].as_str().unwrap_or("tombstone").to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        (topic, "c"),
        (topic, "u"),
        (topic, "d"),
        (topic, "tombstone"),
        (topic, "c"),
        (topic, "t"),
        ("app.message", "m"),
        ("app.message", "m"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(ops, expected);

    // Create: key, envelope and every value.
    let create = &events[0];
    assert_eq!(create["key"], json!({"id": 1}));
    let v = &create["value"];
    assert!(v["before"].is_null());
    let after = &v["after"];
    let want = json!({
        "id": 1, "b": true, "i2": 1, "i4": 2, "i8": 3,
        "f4": 1.5, "f8": 2.25, "f8nan": "NaN", "f8inf": "Infinity", "f8ninf": "-Infinity",
        "n": "BNI=", "nneg": "nA==", "nv": {"scale": 1, "value": "Dw=="},
        "t": "hello", "vc": "varchar", "bp": "ab ", "nm": "nm",
        "by": "AQL/", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "j": "{\"a\": 1}", "jb": "{\"b\": [1, 2]}",
        "d": 19724, "tm": 45_296_789_000i64, "ts": 1_704_164_645_123_456i64,
        "tstz": "2024-01-02T03:04:05.123456Z", "iv": 93_600_000_000i64,
        "other": "10.0.0.1"
    });
    for (k, expected) in want.as_object().unwrap() {
        assert_eq!(&after[k], expected, "column {k}: {after}");
    }
    let source = &v["source"];
    assert_eq!(source["connector"], "postgresql");
    assert_eq!(source["name"], "app");
    assert_eq!(source["db"], json!(env.db));
    assert_eq!(source["schema"], "public");
    assert_eq!(source["table"], "types");
    assert_eq!(source["snapshot"], "false");
    assert!(source["txId"].as_i64().unwrap() > 0);
    assert!(source["lsn"].as_i64().unwrap() > 0);
    assert!(source["ts_ms"].as_i64().unwrap() > 1_600_000_000_000);
    let seq: Vec<Value> = serde_json::from_str(source["sequence"].as_str().unwrap()).unwrap();
    assert_eq!(seq.len(), 2);
    assert!(v["ts_ms"].as_i64().unwrap() >= source["ts_ms"].as_i64().unwrap());

    // Update with replica identity DEFAULT and an unchanged key: no before image.
    let update = &events[1]["value"];
    assert!(update["before"].is_null());
    assert_eq!(update["after"]["t"], "changed");
    assert_eq!(update["after"]["n"], "BNI=");

    // Delete: before holds the key; then a tombstone with the same key.
    let delete = &events[2];
    assert_eq!(delete["key"], json!({"id": 1}));
    assert_eq!(delete["value"]["before"]["id"], 1);
    assert!(delete["value"]["after"].is_null());
    assert_eq!(events[3]["key"], json!({"id": 1}));
    assert!(events[3]["value"].is_null());

    // Truncate: null key, no rows.
    let truncate = &events[5];
    assert!(truncate["key"].is_null());
    assert!(truncate["value"]["before"].is_null() && truncate["value"]["after"].is_null());

    // Messages.
    let m = &events[6];
    assert_eq!(m["key"], json!({"prefix": "walrus.test"}));
    assert_eq!(
        m["value"]["message"],
        json!({"prefix": "walrus.test", "content": "aGVsbG8="})
    );
    assert_eq!(events[7]["value"]["message"]["prefix"], "walrus.nontx");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_between_inserts_give_each_event_its_columns() {
    let env = Env::new().await;
    let c = env.sql().await;
    c.batch_execute("CREATE TABLE evolving (id int PRIMARY KEY, a text)")
        .await
        .unwrap();
    let mut walrus = start(&env, r#"["public.evolving"]"#).await;
    c.batch_execute("INSERT INTO evolving VALUES (1, 'one')")
        .await
        .unwrap();
    c.batch_execute("ALTER TABLE evolving ADD COLUMN b int DEFAULT 7")
        .await
        .unwrap();
    c.batch_execute("INSERT INTO evolving VALUES (2, 'two', 2)")
        .await
        .unwrap();
    c.batch_execute("ALTER TABLE evolving DROP COLUMN a")
        .await
        .unwrap();
    c.batch_execute("INSERT INTO evolving VALUES (3, 3)")
        .await
        .unwrap();
    c.batch_execute("UPDATE evolving SET b = 30 WHERE id = 3")
        .await
        .unwrap();
    let out = env.out_path();
    let events = wait_for_events(&out, 4, Duration::from_secs(30), |e| !e["value"].is_null()).await;
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(30)).success());
    let afters: Vec<&Value> = events.iter().map(|e| &e["value"]["after"]).collect();
    assert_eq!(afters[0], &json!({"id": 1, "a": "one"}));
    assert_eq!(afters[1], &json!({"id": 2, "a": "two", "b": 2}));
    assert_eq!(afters[2], &json!({"id": 3, "b": 3}));
    assert_eq!(afters[3], &json!({"id": 3, "b": 30}));
}
