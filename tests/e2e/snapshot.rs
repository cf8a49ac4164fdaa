//! The initial snapshot against a real PostgreSQL, with a workload writing throughout:
//! the state rebuilt from the events (snapshot reads, then streamed changes, applied by key
//! in order) must equal the tables' final contents row for row — with parallel workers,
//! several tables, a composite key, a table without a primary key, and a kill -9 in the
//! middle of the snapshot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

const SETUP: &str = "
CREATE TABLE a (id int PRIMARY KEY, v text NOT NULL, n int NOT NULL);
CREATE TABLE b (k1 text, k2 int, payload text, PRIMARY KEY (k1, k2));
CREATE TABLE c (x int NOT NULL, y text);
ALTER TABLE c REPLICA IDENTITY FULL;
";

async fn fill(c: &tokio_postgres::Client, rows_a: i32) {
    c.batch_execute(SETUP).await.unwrap();
    c.batch_execute(&format!(
        "INSERT INTO a SELECT g, 'v' || g, g FROM generate_series(1, {rows_a}) g;
         INSERT INTO b SELECT 'k' || (g % 50), g, repeat('p', g % 20) FROM generate_series(1, 8000) g;
         INSERT INTO c SELECT g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'y' || g END FROM generate_series(1, 6000) g;
         ANALYZE a; ANALYZE b; ANALYZE c;"
    ))
    .await
    .unwrap();
}

/// Small transactions of inserts, updates (including primary-key changes) and deletes on
/// every table, all over the key space, until `stop`.
fn workload(
    client: tokio_postgres::Client,
    rows_a: i32,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut next_a = rows_a + 1;
        let mut next_c = 100_000;
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let r = next();
            let id = (r >> 16) as i32 % next_a + 1;
            let sql = match r % 8 {
                0 => {
                    next_a += 1;
                    format!("INSERT INTO a VALUES ({next_a}, 'new', 0)")
                }
                1 | 2 => format!("UPDATE a SET v = v || 'u', n = n + 1 WHERE id = {id}"),
                3 => format!("DELETE FROM a WHERE id = {id}"),
                4 => {
                    next_a += 1;
                    format!("UPDATE a SET id = {next_a} WHERE id = {id}")
                }
                5 => format!(
                    "INSERT INTO b VALUES ('k{}', {}, 'new') ON CONFLICT DO NOTHING;
                     UPDATE b SET payload = coalesce(payload, '') || 'u' WHERE k1 = 'k{}' AND k2 = {};
                     DELETE FROM b WHERE k1 = 'k{}' AND k2 = {}",
                    r % 50,
                    10_000 + (r >> 20) % 5000,
                    (id % 50),
                    id % 8000,
                    (r >> 8) % 50,
                    (r >> 24) % 8000
                ),
                6 => {
                    next_c += 1;
                    format!(
                        "INSERT INTO c VALUES ({next_c}, 'new');
                         UPDATE c SET y = coalesce(y, '') || 'u' WHERE x = {}",
                        id % 6000
                    )
                }
                _ => format!("DELETE FROM c WHERE x = {}", (r >> 12) % 6000),
            };
            client
                .batch_execute(&format!("BEGIN; {sql}; COMMIT"))
                .await
                .unwrap();
            n += 1;
            if n % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        n
    })
}

fn config(env: &Env, extra: &str) -> String {
    format!(
        r#"topic_prefix = "app"
[source]
url = "{url}"
slot = "{slot}"
publication = "{slot}"
tables = ["public.a", "public.b", "public.c"]
status_interval_ms = 200
[snapshot]
workers = 2
chunk_size = 1000
progress_interval_ms = 500
{extra}
[admin]
listen = "127.0.0.1:0"
[sink]
type = "file"
path = "{out}"
fsync = true
"#,
        url = env.cluster.url(&env.db),
        slot = env.slot,
        out = env.out_path().display(),
    )
}

/// Applies the events of `topic` in order: by key for tables with one, as a multiset of
/// whole rows (replica identity FULL) for the table without.
fn rebuild(events: &[Value], topic: &str) -> HashMap<String, i64> {
    let mut rows: HashMap<String, i64> = HashMap::new();
    let mut keyed: HashMap<String, Value> = HashMap::new();
    let mut keyless = false;
    for e in events.iter().filter(|e| e["topic"] == topic) {
        let v = &e["value"];
        if v.is_null() {
            continue; // tombstone
        }
        if e["key"].is_null() {
            keyless = true;
            let mut add = |row: &Value, d: i64| {
                *rows.entry(row.to_string()).or_default() += d;
            };
            match v["op"].as_str().unwrap() {
                "r" | "c" => add(&v["after"], 1),
                "u" => {
                    add(&v["before"], -1);
                    add(&v["after"], 1);
                }
                "d" => add(&v["before"], -1),
                op => panic!("unexpected op {op}"),
            }
        } else {
            let key = e["key"].to_string();
            match v["op"].as_str().unwrap() {
                "r" | "c" | "u" => {
                    keyed.insert(key, v["after"].clone());
                }
                "d" => {
                    keyed.remove(&key);
                }
                op => panic!("unexpected op {op}"),
            }
        }
    }
    if keyless {
        rows.retain(|_, n| *n != 0);
        return rows;
    }
    keyed.into_values().map(|r| (r.to_string(), 1)).collect()
}

async fn table_rows(c: &tokio_postgres::Client, table: &str) -> HashMap<String, i64> {
    let mut out: HashMap<String, i64> = HashMap::new();
    let rows = c
        .query(&format!("SELECT * FROM {table}"), &[])
        .await
        .unwrap();
    for r in rows {
        let v = match table {
            "a" => {
                json!({"id": r.get::<_, i32>(0), "v": r.get::<_, String>(1), "n": r.get::<_, i32>(2)})
            }
            "b" => {
                json!({"k1": r.get::<_, String>(0), "k2": r.get::<_, i32>(1), "payload": r.get::<_, Option<String>>(2)})
            }
            _ => json!({"x": r.get::<_, i32>(0), "y": r.get::<_, Option<String>>(1)}),
        };
        *out.entry(v.to_string()).or_default() += 1;
    }
    out
}

/// Stops the workload, waits until walrus confirmed everything written, and compares.
/// `keyless_exact`: the keyless table must match exactly too; after a crash its rows can
/// only be checked for loss, since re-delivered rows without a key cannot be told apart
/// from new ones (see docs/snapshots.md).
async fn stop_and_compare(
    env: &Env,
    stop: &AtomicBool,
    load: tokio::task::JoinHandle<u64>,
    keyless_exact: bool,
) {
    stop.store(true, Ordering::SeqCst);
    let n = load.await.unwrap();
    assert!(n > 50, "the workload ran ({n} transactions)");
    let c = env.sql().await;
    let end = wal_end_lsn(&c).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while env.confirmed_flush_lsn().await.unwrap_or(0) < end {
        assert!(
            std::time::Instant::now() < deadline,
            "walrus did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = read_events(&env.out_path());
    for t in ["a", "b", "c"] {
        let rebuilt = rebuild(&events, &format!("app.public.{t}"));
        let expected = table_rows(&c, t).await;
        if t == "c" && !keyless_exact {
            for (row, n) in &expected {
                assert!(
                    rebuilt.get(row).copied().unwrap_or(0) >= *n,
                    "table c: row {row} missing"
                );
            }
            continue;
        }
        assert_eq!(rebuilt.len(), expected.len(), "table {t}: row count");
        assert!(
            rebuilt == expected,
            "table {t}: rebuilt state differs from the table"
        );
    }
}

fn reads(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["value"]["op"] == "r")
        .map(|e| &e["value"])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_snapshot_under_workload_is_exact() {
    let env = Env::new().await;
    let c = env.sql().await;
    fill(&c, 30_000).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = workload(env.sql().await, 30_000, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cfg = env.write_config(&config(&env, ""));
    let mut walrus = Walrus::start(&cfg);
    wait_until(Duration::from_secs(120), "snapshot complete", || {
        walrus.log().contains("snapshot complete")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop_and_compare(&env, &stop, load, true).await;

    let events = read_events(&env.out_path());
    let r = reads(&events);
    // Uninterrupted: every row is read once, none twice.
    for t in ["a", "b"] {
        let keys: Vec<String> = events
            .iter()
            .filter(|e| e["topic"] == format!("app.public.{t}") && e["value"]["op"] == "r")
            .map(|e| e["key"].to_string())
            .collect();
        let distinct: std::collections::HashSet<&String> = keys.iter().collect();
        assert_eq!(
            keys.len(),
            distinct.len(),
            "table {t}: a row was read twice"
        );
    }
    let marker = |m: &str| r.iter().filter(|v| v["source"]["snapshot"] == m).count();
    assert_eq!(marker("first"), 1, "one first record");
    assert_eq!(marker("last"), 1, "one last record");
    assert_eq!(marker("last_in_data_collection"), 2, "the other tables end");
    assert!(
        events
            .iter()
            .filter(|e| e["value"]["op"] == "c")
            .all(|e| e["value"]["source"]["snapshot"] == "false"),
        "streamed events are not snapshot events"
    );
    // Reads come before every streamed change in the file.
    let first_streamed = events
        .iter()
        .position(|e| matches!(e["value"]["op"].as_str(), Some("c" | "u" | "d")))
        .unwrap();
    let last_read = events
        .iter()
        .rposition(|e| e["value"]["op"] == "r")
        .unwrap();
    assert!(
        last_read < first_streamed,
        "the snapshot precedes the stream"
    );
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(30)).success());

    // A restart streams on; it does not snapshot again.
    let before = reads(&read_events(&env.out_path())).len();
    let mut again = Walrus::start(&cfg);
    wait_until(Duration::from_secs(30), "streaming", || {
        again.log().contains("starting replication")
    })
    .await;
    c.batch_execute("INSERT INTO a VALUES (-1, 'after restart', 0)")
        .await
        .unwrap();
    wait_for_events(&env.out_path(), 1, Duration::from_secs(30), |e| {
        e["value"]["after"]["id"] == -1
    })
    .await;
    assert_eq!(reads(&read_events(&env.out_path())).len(), before);
    again.interrupt();
    assert!(again.wait(Duration::from_secs(30)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_snapshot_resumes_and_stays_exact() {
    const ROWS_A: i32 = 120_000;
    let env = Env::new().await;
    let c = env.sql().await;
    fill(&c, ROWS_A).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = workload(env.sql().await, ROWS_A, stop.clone());
    // Throttled so that it is still running when it is killed.
    let cfg = env.write_config(&config(&env, "max_rows_per_second = 25000"));
    let state_path = env
        .dir
        .path()
        .join(format!("walrus-snapshot-{}.json", env.slot));
    let mut walrus = Walrus::start(&cfg);
    let delivered_rows = || -> Option<u64> {
        let s: Value = serde_json::from_str(&std::fs::read_to_string(&state_path).ok()?).ok()?;
        if s["phase"] != "running" {
            return None;
        }
        let rows: u64 = s["tables"]
            .as_object()?
            .values()
            .map(|t| t["rows"].as_u64().unwrap_or(0))
            .sum();
        (rows >= 5_000).then_some(rows)
    };
    wait_until(Duration::from_secs(120), "snapshot progress", || {
        delivered_rows().is_some() || walrus.log().contains("snapshot complete")
    })
    .await;
    assert!(
        !walrus.log().contains("snapshot complete"),
        "the snapshot finished before it could be interrupted"
    );
    walrus.kill9();
    let saved = delivered_rows().expect("progress saved");
    let reads_first = reads(&read_events(&env.out_path())).len();
    assert!(reads_first as u64 >= saved, "saved progress is delivered");

    let mut again = Walrus::start(&cfg);
    wait_until(
        Duration::from_secs(180),
        "resumed snapshot complete",
        || again.log().contains("snapshot complete"),
    )
    .await;
    assert!(
        again.log().contains("resuming the interrupted snapshot"),
        "{}",
        again.log()
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop_and_compare(&env, &stop, load, false).await;
    let total_rows = ROWS_A as u64 + 8000 + 6000;
    let reads_second = reads(&read_events(&env.out_path())).len() - reads_first;
    assert!(
        (reads_second as u64) < total_rows,
        "the second run resumed ({reads_second} reads) instead of starting over ({total_rows} rows); log:\n{}",
        again
            .log()
            .lines()
            .filter(|l| l.contains("snapshot") || l.contains("ERROR") || l.contains("WARN"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    again.interrupt();
    assert!(again.wait(Duration::from_secs(30)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_table_is_read_by_ctid_ranges() {
    let env = Env::new().await;
    let c = env.sql().await;
    c.batch_execute(
        "CREATE TABLE a (id int PRIMARY KEY, v text NOT NULL, n int NOT NULL);
         CREATE TABLE b (k1 text, k2 int, payload text, PRIMARY KEY (k1, k2));
         CREATE TABLE c (x int NOT NULL, y text);
         INSERT INTO c SELECT g % 10, 'dup' FROM generate_series(1, 2500) g;",
    )
    .await
    .unwrap();
    // Keyless: many identical rows, chunked by ctid ranges across both workers.
    let cfg = env.write_config(&config(&env, "mode = \"initial\""));
    let mut walrus = Walrus::start(&cfg);
    wait_until(Duration::from_secs(60), "snapshot complete", || {
        walrus.log().contains("snapshot complete")
    })
    .await;
    let events = read_events(&env.out_path());
    assert_eq!(rebuild(&events, "app.public.c"), table_rows(&c, "c").await);
    let r = reads(&events);
    assert_eq!(r.len(), 2500);
    assert!(r.iter().all(|v| v["source"]["table"] == "c"));
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(30)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_data_mode_streams_only() {
    // no_data on a new slot: no reads at all, changes only.
    let env2 = Env::new().await;
    let c2 = env2.sql().await;
    c2.batch_execute(SETUP).await.unwrap();
    c2.batch_execute("INSERT INTO a VALUES (1, 'x', 1)")
        .await
        .unwrap();
    let cfg2 = env2.write_config(&config(&env2, "mode = \"no_data\""));
    let mut w2 = Walrus::start(&cfg2);
    wait_until(Duration::from_secs(30), "streaming", || {
        w2.log().contains("starting replication")
    })
    .await;
    c2.batch_execute("INSERT INTO a VALUES (2, 'y', 2)")
        .await
        .unwrap();
    let events = wait_for_events(&env2.out_path(), 1, Duration::from_secs(30), |e| {
        e["value"]["op"] == "c"
    })
    .await;
    assert!(reads(&events).is_empty());
    w2.interrupt();
    assert!(w2.wait(Duration::from_secs(30)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_mode_reads_again_over_the_existing_slot() {
    let env = Env::new().await;
    let c = env.sql().await;
    fill(&c, 5_000).await;
    let cfg = env.write_config(&config(&env, ""));
    let mut first = Walrus::start(&cfg);
    wait_until(Duration::from_secs(60), "snapshot complete", || {
        first.log().contains("snapshot complete")
    })
    .await;
    first.interrupt();
    assert!(first.wait(Duration::from_secs(30)).success());
    let reads_before = reads(&read_events(&env.out_path())).len();
    assert_eq!(reads_before, 5_000 + 8_000 + 6_000);

    // Changes while walrus is down, then a start with mode = always: the changes are
    // streamed from the slot and every row is read again.
    c.batch_execute(
        "UPDATE a SET v = 'down' WHERE id <= 100; DELETE FROM a WHERE id > 4900;
         INSERT INTO a VALUES (9001, 'new', 1)",
    )
    .await
    .unwrap();
    let cfg = env.write_config(&config(&env, "mode = \"always\""));
    let mut again = Walrus::start(&cfg);
    wait_until(Duration::from_secs(60), "second snapshot complete", || {
        again.log().contains("snapshot complete")
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = workload(env.sql().await, 5_000, stop.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop_and_compare(&env, &stop, load, false).await;
    let reads_after = reads(&read_events(&env.out_path())).len() - reads_before;
    assert_eq!(
        reads_after,
        4_900 + 1 + 8_000 + 6_000,
        "every row read again"
    );
    again.interrupt();
    assert!(again.wait(Duration::from_secs(30)).success());
}

/// DDL while the initial snapshot reads a table: a rename that reaches the table before a
/// worker does makes that worker's query fail on the old name (a retryable
/// `SchemaChanged`: walrus plans again from the catalog and resumes from the last delivered
/// chunk); once a worker has read the table its transaction's lock holds the rename back
/// until the snapshot ends. Either way every row arrives and walrus keeps streaming, under
/// the new name afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_renamed_during_the_snapshot_loses_nothing() {
    let env = Env::new().await;
    let c = env.sql().await;
    fill(&c, 20_000).await;
    // Slow enough that the rename lands in the middle.
    let cfg = env.write_config(&config(&env, "max_rows_per_second = 5000"));
    let mut walrus = Walrus::start(&cfg);
    wait_until(Duration::from_secs(60), "snapshot under way", || {
        read_events(&env.out_path())
            .iter()
            .filter(|e| e["topic"] == "app.public.a")
            .count()
            > 2000
    })
    .await;
    c.batch_execute("ALTER TABLE a RENAME COLUMN v TO label")
        .await
        .unwrap();
    c.batch_execute("INSERT INTO a VALUES (-1, 'after', -1)")
        .await
        .unwrap();
    let events = wait_for_events(&env.out_path(), 1, Duration::from_secs(120), |e| {
        e["value"]["op"] == "c" && e["value"]["after"]["id"] == -1
    })
    .await;
    assert!(walrus.log().contains("snapshot complete"));
    let ids: std::collections::HashSet<i64> = reads(&events)
        .into_iter()
        .filter(|v| v["source"]["table"] == "a")
        .map(|v| v["after"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 20_000, "every row of a is read");
    let created = events
        .iter()
        .find(|e| e["value"]["op"] == "c" && e["value"]["after"]["id"] == -1)
        .unwrap();
    assert_eq!(created["value"]["after"]["label"], "after", "{created}");
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(30)).success());
}
