//! Schema changes mid-stream that keep the column count: RENAME COLUMN and a column type
//! change (`int4 → int8`, and `text → int4 … USING`). PostgreSQL sends a new Relation message
//! before the first change after the ALTER; every event before it must keep the old name or
//! type, in its payload and in its schema (schemas are on here), and every event after it the
//! new one — including the before image of an update under REPLICA IDENTITY FULL, which the
//! table rewrite has already converted. The type change runs through walrus in text and in
//! binary format, where reading a value with a stale type would misparse its bytes.
//! (ADD and DROP COLUMN are covered in `events.rs`.) The tables start empty and
//! `snapshot.mode = "no_data"`: these tests are about the stream, and a RENAME while the
//! initial snapshot still reads the table is a different matter (its COPY names the old
//! column).

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

fn config(env: &Env, slot: &str, out: &Path, binary: bool) -> String {
    format!(
        r#"topic_prefix = "app"
[source]
url = "{url}"
slot = "{slot}"
publication = "evolution"
tables = ["public.*"]
status_interval_ms = 200
binary = {binary}
[admin]
listen = "127.0.0.1:0"
[sink]
type = "file"
path = "{out}"
[format]
schemas_enable = true
[snapshot]
mode = "no_data"
"#,
        url = env.cluster.url(&env.db),
        out = out.display(),
    )
}

async fn start(env: &Env, slot: &str, binary: bool) -> (Walrus, std::path::PathBuf) {
    let out = env.dir.path().join(format!("{slot}.jsonl"));
    let cfg = env.dir.path().join(format!("{slot}.toml"));
    std::fs::write(&cfg, config(env, slot, &out, binary)).unwrap();
    let w = Walrus::start(&cfg);
    wait_until(Duration::from_secs(30), "replication start", || {
        w.log().contains("starting replication")
    })
    .await;
    (w, out)
}

/// `(field name, schema type)` of the row struct `which` (`before` or `after`) in an event's
/// value schema.
fn row_fields(event: &Value, which: &str) -> Vec<(String, String)> {
    let fields = event["value"]["schema"]["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("no value schema: {event}"));
    let row = fields
        .iter()
        .find(|f| f["field"] == which)
        .unwrap_or_else(|| panic!("no {which} in {event}"));
    row["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["field"].as_str().unwrap().to_string(),
                f["type"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn fields(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_column_mid_stream_renames_it_in_later_events_only() {
    let env = Env::new().await;
    let c = env.sql().await;
    c.batch_execute(
        "CREATE TABLE renamed (id int PRIMARY KEY, old_name text);
         ALTER TABLE renamed REPLICA IDENTITY FULL;
         CREATE PUBLICATION evolution FOR ALL TABLES",
    )
    .await
    .unwrap();
    let (mut walrus, out) = start(&env, "rename_text", false).await;
    c.batch_execute(
        "INSERT INTO renamed VALUES (1, 'one');
         UPDATE renamed SET old_name = 'uno' WHERE id = 1;
         ALTER TABLE renamed RENAME COLUMN old_name TO new_name;
         INSERT INTO renamed VALUES (2, 'two');
         UPDATE renamed SET new_name = 'eins' WHERE id = 1;",
    )
    .await
    .unwrap();
    let events = wait_for_events(&out, 4, Duration::from_secs(30), |e| !e["value"].is_null()).await;
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(30)).success());
    assert_eq!(events.len(), 4, "{events:?}");

    let payload = |i: usize| &events[i]["value"]["payload"];
    let old = fields(&[("id", "int32"), ("old_name", "string")]);
    let new = fields(&[("id", "int32"), ("new_name", "string")]);

    // Before the rename: the old name, in the payload and in both row schemas.
    assert_eq!(payload(0)["op"], "c");
    assert_eq!(payload(0)["after"], json!({"id": 1, "old_name": "one"}));
    assert_eq!(payload(1)["op"], "u");
    assert_eq!(payload(1)["before"], json!({"id": 1, "old_name": "one"}));
    assert_eq!(payload(1)["after"], json!({"id": 1, "old_name": "uno"}));
    for e in &events[..2] {
        assert_eq!(row_fields(e, "after"), old, "{e}");
        assert_eq!(row_fields(e, "before"), old, "{e}");
    }

    // After it: the new name everywhere, the old one nowhere, the before image included.
    assert_eq!(payload(2)["op"], "c");
    assert_eq!(payload(2)["after"], json!({"id": 2, "new_name": "two"}));
    assert_eq!(payload(3)["op"], "u");
    assert_eq!(payload(3)["before"], json!({"id": 1, "new_name": "uno"}));
    assert_eq!(payload(3)["after"], json!({"id": 1, "new_name": "eins"}));
    for e in &events[2..] {
        assert_eq!(row_fields(e, "after"), new, "{e}");
        assert_eq!(row_fields(e, "before"), new, "{e}");
        assert!(!e.to_string().contains("old_name"), "{e}");
    }
    // The key is the primary key, unaffected, and its schema too.
    for e in &events {
        assert_eq!(
            e["key"]["payload"]["id"],
            e["value"]["payload"]["after"]["id"]
        );
        assert_eq!(e["key"]["schema"]["fields"][0]["field"], "id");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_type_change_mid_stream_changes_type_in_later_events_only() {
    let env = Env::new().await;
    let c = env.sql().await;
    c.batch_execute(
        "CREATE TABLE retyped (id int PRIMARY KEY, n int4, s text);
         ALTER TABLE retyped REPLICA IDENTITY FULL;
         CREATE PUBLICATION evolution FOR ALL TABLES",
    )
    .await
    .unwrap();
    let (mut text, text_out) = start(&env, "retype_text", false).await;
    let (mut bin, bin_out) = start(&env, "retype_binary", true).await;
    c.batch_execute(
        "INSERT INTO retyped VALUES (1, 2147483647, '42');
         ALTER TABLE retyped ALTER COLUMN n TYPE int8;
         ALTER TABLE retyped ALTER COLUMN s TYPE int4 USING s::int4;
         INSERT INTO retyped VALUES (2, 9223372036854775807, -7);
         UPDATE retyped SET n = n + 1, s = s + 1 WHERE id = 1;",
    )
    .await
    .unwrap();
    let text_events = wait_for_events(&text_out, 3, Duration::from_secs(30), |e| {
        !e["value"].is_null()
    })
    .await;
    let bin_events = wait_for_events(&bin_out, 3, Duration::from_secs(30), |e| {
        !e["value"].is_null()
    })
    .await;
    text.interrupt();
    bin.interrupt();
    assert!(text.wait(Duration::from_secs(30)).success());
    assert!(bin.wait(Duration::from_secs(30)).success());
    for log in [text.log(), bin.log()] {
        assert!(
            !log.contains("kept as"),
            "a value fell back to text:\n{log}"
        );
    }

    for (format, events) in [("text", &text_events), ("binary", &bin_events)] {
        assert_eq!(events.len(), 3, "{format}: {events:?}");
        let payload = |i: usize| &events[i]["value"]["payload"];
        // Before: n int32, s a string.
        assert_eq!(
            payload(0)["after"],
            json!({"id": 1, "n": 2147483647, "s": "42"}),
            "{format}"
        );
        assert_eq!(
            row_fields(&events[0], "after"),
            fields(&[("id", "int32"), ("n", "int32"), ("s", "string")]),
            "{format}"
        );
        // After: n int64, s int32, for the new row and for both images of the old one (the
        // rewrite converted it).
        let new = fields(&[("id", "int32"), ("n", "int64"), ("s", "int32")]);
        assert_eq!(
            payload(1)["after"],
            json!({"id": 2, "n": 9223372036854775807i64, "s": -7}),
            "{format}"
        );
        assert_eq!(payload(2)["op"], "u", "{format}");
        assert_eq!(
            payload(2)["before"],
            json!({"id": 1, "n": 2147483647, "s": 42}),
            "{format}"
        );
        assert_eq!(
            payload(2)["after"],
            json!({"id": 1, "n": 2147483648i64, "s": 43}),
            "{format}"
        );
        for e in &events[1..] {
            assert_eq!(row_fields(e, "after"), new, "{format}: {e}");
            assert_eq!(row_fields(e, "before"), new, "{format}: {e}");
        }
    }
    // Text and binary agree event for event, schemas included (ts_ms aside).
    for (t, b) in text_events.iter().zip(&bin_events) {
        assert_eq!(t["key"], b["key"]);
        assert_eq!(t["value"]["schema"], b["value"]["schema"]);
        for part in ["before", "after", "op"] {
            assert_eq!(t["value"]["payload"][part], b["value"]["payload"][part]);
        }
    }
}
