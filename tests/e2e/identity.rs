//! TOAST, replica identities, primary-key changes and partitions, against real PostgreSQL 15.
//!
//! - An UPDATE that leaves large values stored out of line (TOASTed) alone: the WAL does not
//!   carry them, so the event carries the placeholder (a value that compresses below the
//!   TOAST threshold stays inline and is sent in full) — never null, never a wrong value — under
//!   DEFAULT and USING INDEX; with FULL the before image is complete (PostgreSQL inlines the
//!   old tuple's TOASTed values) and `after` takes the unchanged values from it.
//! - The message key is the primary key, whatever the identity (FULL flags every column).
//! - A primary-key update is a delete + tombstone for the old key and a create for the new.
//! - With `publish_via_partition_root`, partitions report as their root table.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

const PLACEHOLDER: &str = "__debezium_unavailable_value";
/// base64 of the placeholder's bytes: a bytea column's placeholder in `bytes` mode.
const PLACEHOLDER_B64: &str = "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==";

async fn start(env: &Env, tables: &str, extra: &str) -> Walrus {
    let w = Walrus::start(&env.write_config(&env.config(tables, extra)));
    wait_until(Duration::from_secs(30), "replication start", || {
        w.log().contains("starting replication")
    })
    .await;
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_toast_is_the_placeholder_under_every_identity() {
    let env = Env::new().await;
    let c = env.sql().await;
    let identities = [
        ("t_default", "DEFAULT"),
        ("t_full", "FULL"),
        ("t_index", "USING INDEX t_index_u"),
    ];
    for (t, ident) in identities {
        c.batch_execute(&format!(
            "CREATE TABLE {t} (id int PRIMARY KEY, u int NOT NULL, counter int,
                 compressible text, random text, doc jsonb, blob bytea);
             CREATE UNIQUE INDEX {t}_u ON {t} (u);
             ALTER TABLE {t} REPLICA IDENTITY {ident};"
        ))
        .await
        .unwrap();
    }
    c.batch_execute("CREATE TABLE t_nothing (id int PRIMARY KEY, big text); ALTER TABLE t_nothing REPLICA IDENTITY NOTHING")
        .await
        .unwrap();
    let mut walrus = start(&env, r#"["public.t_*"]"#, "").await;
    for (t, _) in identities {
        c.batch_execute(&format!(
            "INSERT INTO {t} SELECT 1, 1, 0, (SELECT string_agg(g::text, ',') FROM generate_series(1, 200000) g),
                 (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 3000)),
                 (SELECT jsonb_agg(jsonb_build_object('k', g, 'v', md5(g::text))) FROM generate_series(1, 3000) g),
                 (SELECT decode(string_agg(md5(random()::text), ''), 'hex') FROM generate_series(1, 3000));
             UPDATE {t} SET counter = counter + 1 WHERE id = 1;
             DELETE FROM {t} WHERE id = 1;"
        ))
        .await
        .unwrap();
    }
    c.batch_execute("INSERT INTO t_nothing VALUES (1, repeat('x', 100000))")
        .await
        .unwrap();
    let out = env.out_path();
    let events = wait_for_events(&out, 1, Duration::from_secs(30), |e| {
        e["topic"] == "app.public.t_nothing"
    })
    .await;
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(30)).success());

    // What PostgreSQL holds, to compare the inserts and FULL's before image with: the
    // rows are gone, so re-create the deterministic columns' values.
    let compressible: String = c
        .query_one(
            "SELECT string_agg(g::text, ',') FROM generate_series(1, 200000) g",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    for (t, ident) in identities {
        let v = values_for(&events, &format!("app.public.{t}"));
        assert_eq!(v.len(), 3, "{t}");
        let (insert, update, delete) = (v[0], v[1], v[2]);
        assert!(
            insert["after"]["compressible"] == compressible.as_str(),
            "{t}"
        );
        let random = insert["after"]["random"].as_str().unwrap();
        assert_eq!(random.len(), 96_000, "{t}");
        assert!(insert["after"]["doc"]
            .as_str()
            .unwrap()
            .starts_with("[{\"k\": 1, \"v\": "));
        // The update: the counter changed, every untouched TOASTed value is the placeholder,
        // except under FULL, where it is taken from the old tuple (as Debezium does).
        let after = &update["after"];
        assert_eq!(after["counter"], 1, "{t}");
        for col in ["compressible", "random", "doc", "blob"] {
            if ident == "FULL" {
                assert!(
                    after[col] == insert["after"][col],
                    "{t}.{col} ({ident}) is not the old tuple's value"
                );
            } else if col == "blob" {
                assert!(after[col] == PLACEHOLDER_B64, "{t}.blob ({ident})");
            } else {
                assert!(
                    after[col] == PLACEHOLDER,
                    "{t}.{col} ({ident}) is not the placeholder"
                );
            }
        }
        match ident {
            "FULL" => {
                // PostgreSQL inlines TOASTed values of a FULL old tuple: before is complete.
                let before = &update["before"];
                assert_eq!(before["counter"], 0);
                assert!(before["compressible"] == compressible.as_str());
                assert!(before["random"] == random);
                assert!(before["doc"] == insert["after"]["doc"]);
                assert!(before["blob"] == insert["after"]["blob"]);
                assert_eq!(delete["before"]["random"], random);
            }
            "DEFAULT" => {
                // The key did not change: no old tuple; a delete carries the key.
                assert!(update["before"].is_null(), "{t}: before is not null");
                assert_eq!(delete["before"]["id"], 1);
            }
            _ => {
                // USING INDEX: the old tuple holds the index columns only.
                assert!(update["before"].is_null(), "{t}: before is not null");
                assert_eq!(delete["before"]["u"], 1);
                // The primary key is NOT NULL: Debezium (and walrus) fill the value the old
                // tuple lacks with the type's fallback.
                assert_eq!(delete["before"]["id"], 0);
            }
        }
    }
    // Keys are the primary key under every identity (FULL flags every column as identity).
    // The exception: a delete under USING INDEX whose index lacks the key column carries no
    // key value in the WAL, so the key column is null (documented in docs/events.md).
    for e in events
        .iter()
        .filter(|e| e["topic"] != "app.public.t_nothing")
    {
        let index_delete =
            e["topic"] == "app.public.t_index" && (e["value"].is_null() || e["value"]["op"] == "d");
        let want = if index_delete {
            json!({"id": null})
        } else {
            json!({"id": 1})
        };
        assert_eq!(e["key"], want, "{}: {}", e["topic"], e["value"]["op"]);
    }
    let n = values_for(&events, "app.public.t_nothing");
    assert_eq!(n[0]["after"]["big"].as_str().unwrap().len(), 100_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_key_updates_become_delete_and_create() {
    let env = Env::new().await;
    let c = env.sql().await;
    c.batch_execute(
        "CREATE TABLE k_default (id int PRIMARY KEY, v text);
         CREATE TABLE k_full (a int, b int, v text, PRIMARY KEY (b, a));
         ALTER TABLE k_full REPLICA IDENTITY FULL;
         CREATE TABLE k_none (v text); ALTER TABLE k_none REPLICA IDENTITY FULL;",
    )
    .await
    .unwrap();
    let mut walrus = start(&env, r#"["public.k_*"]"#, "").await;
    c.batch_execute(
        "INSERT INTO k_default VALUES (1, 'x');
         UPDATE k_default SET id = 2 WHERE id = 1;
         UPDATE k_default SET v = 'y' WHERE id = 2;
         INSERT INTO k_full VALUES (1, 1, 'x');
         UPDATE k_full SET a = 5 WHERE a = 1;
         UPDATE k_full SET v = 'z';
         INSERT INTO k_none VALUES ('x');
         UPDATE k_none SET v = 'y';",
    )
    .await
    .unwrap();
    let out = env.out_path();
    let events = wait_for_events(&out, 2, Duration::from_secs(30), |e| {
        e["topic"] == "app.public.k_none"
    })
    .await;
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(30)).success());

    let seq = |topic: &str| -> Vec<(String, Value)> {
        events
            .iter()
            .filter(|e| e["topic"] == topic)
            .map(|e| {
                (
                    e["value"]["op"].as_str().unwrap_or("tombstone").to_string(),
                    e["key"].clone(),
                )
            })
            .collect()
    };
    let ops = |v: Vec<(&str, Value)>| -> Vec<(String, Value)> {
        v.into_iter().map(|(o, k)| (o.to_string(), k)).collect()
    };
    assert_eq!(
        seq("app.public.k_default"),
        ops(vec![
            ("c", json!({"id": 1})),
            ("d", json!({"id": 1})),
            ("tombstone", json!({"id": 1})),
            ("c", json!({"id": 2})),
            ("u", json!({"id": 2})),
        ])
    );
    // A composite key, in key order, under FULL.
    assert_eq!(
        seq("app.public.k_full"),
        ops(vec![
            ("c", json!({"b": 1, "a": 1})),
            ("d", json!({"b": 1, "a": 1})),
            ("tombstone", json!({"b": 1, "a": 1})),
            ("c", json!({"b": 1, "a": 5})),
            ("u", json!({"b": 1, "a": 5})),
        ])
    );
    let full = values_for(&events, "app.public.k_full");
    assert_eq!(full[1]["before"], json!({"a": 1, "b": 1, "v": "x"}));
    assert!(full[1]["after"].is_null());
    assert_eq!(full[2]["after"], json!({"a": 5, "b": 1, "v": "x"}));
    assert!(full[2]["before"].is_null());
    // No primary key: a null key, updates stay updates.
    assert_eq!(
        seq("app.public.k_none"),
        ops(vec![("c", Value::Null), ("u", Value::Null)])
    );
    assert_eq!(
        values_for(&events, "app.public.k_none")[1]["before"]["v"],
        "x"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_report_as_their_root_table() {
    let env = Env::new().await;
    let c = env.sql().await;
    c.batch_execute(
        "CREATE TABLE measures (id int, day date, v int, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
         CREATE TABLE measures_2023 PARTITION OF measures FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
         CREATE TABLE measures_2024 PARTITION OF measures FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');",
    )
    .await
    .unwrap();
    let mut walrus = start(
        &env,
        r#"["public.measures"]"#,
        "publish_via_partition_root = true",
    )
    .await;
    c.batch_execute(
        "INSERT INTO measures VALUES (1, '2023-06-01', 1), (2, '2024-06-01', 2);
         UPDATE measures SET v = 20 WHERE id = 2;
         DELETE FROM measures WHERE id = 1;",
    )
    .await
    .unwrap();
    let out = env.out_path();
    let events = wait_for_events(&out, 4, Duration::from_secs(30), |e| !e["value"].is_null()).await;
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(30)).success());
    let ops: Vec<&str> = events
        .iter()
        .filter(|e| !e["value"].is_null())
        .map(|e| {
            assert_eq!(e["topic"], "app.public.measures", "{e}");
            assert_eq!(e["value"]["source"]["table"], "measures");
            e["value"]["op"].as_str().unwrap()
        })
        .collect();
    assert_eq!(ops, ["c", "c", "u", "d"]);
    assert_eq!(events[0]["key"], json!({"id": 1, "day": 19509}));
}
