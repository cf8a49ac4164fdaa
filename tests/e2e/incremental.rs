//! Incremental snapshots against a real PostgreSQL, with a workload inserting, updating
//! (primary-key changes included) and deleting throughout: walrus starts with
//! `snapshot.mode = "no_data"`, so the rows nobody touches reach the output only through
//! the incremental snapshot's `r` events, and the state rebuilt from every event (applied by
//! key, in file order) must equal the tables' final contents row for row. Triggered through
//! the signal table and through `walrus snapshot`; interrupted by kill -9 and resumed; and a
//! table without a primary key refused with the fix.

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

const SETUP: &str = "
CREATE TABLE a (id int PRIMARY KEY, v text NOT NULL, n int NOT NULL);
CREATE TABLE b (k1 text, k2 int, payload text, PRIMARY KEY (k1, k2));
CREATE TABLE nopk (x int, y text);
";

async fn fill(c: &tokio_postgres::Client, rows_a: i32) {
    c.batch_execute(SETUP).await.unwrap();
    c.batch_execute(&format!(
        "INSERT INTO a SELECT g, 'v' || g, g FROM generate_series(1, {rows_a}) g;
         INSERT INTO b SELECT 'k' || (g % 50), g, repeat('p', g % 20) FROM generate_series(1, 6000) g;
         INSERT INTO nopk SELECT g, 'y' FROM generate_series(1, 100) g;"
    ))
    .await
    .unwrap();
}

/// Small transactions over the whole key space of `a` and `b` until `stop`.
fn workload(
    client: tokio_postgres::Client,
    rows_a: i32,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut next_a = rows_a + 1;
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let r = next();
            let id = (r >> 16) as i32 % next_a + 1;
            let sql = match r % 7 {
                0 => {
                    next_a += 1;
                    format!("INSERT INTO a VALUES ({next_a}, 'new', 0)")
                }
                1 | 2 => format!("UPDATE a SET v = v || 'u', n = n + 1 WHERE id = {id}"),
                3 => format!("DELETE FROM a WHERE id = {id}"),
                4 => {
                    // A key change, down into the range still to be read as well as up.
                    let to = if r & 1 == 0 { -id } else { next_a + 1 };
                    next_a += 1;
                    format!("UPDATE a SET id = {to} WHERE id = {id} AND id > 0")
                }
                5 => format!(
                    "INSERT INTO b VALUES ('k{}', {}, 'new') ON CONFLICT DO NOTHING;
                     UPDATE b SET payload = coalesce(payload, '') || 'u' WHERE k1 = 'k{}' AND k2 = {}",
                    r % 50,
                    10_000 + (r >> 20) % 5000,
                    id % 50,
                    id % 6000,
                ),
                _ => format!(
                    "DELETE FROM b WHERE k1 = 'k{}' AND k2 = {}",
                    (r >> 8) % 50,
                    (r >> 24) % 6000
                ),
            };
            client
                .batch_execute(&format!("BEGIN; {sql}; COMMIT"))
                .await
                .unwrap();
            n += 1;
            if n % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        n
    })
}

fn config(env: &Env, chunk: usize) -> String {
    format!(
        r#"topic_prefix = "app"
[source]
url = "{url}"
slot = "{slot}"
publication = "{slot}"
tables = ["public.a", "public.b", "public.nopk"]
status_interval_ms = 200
[snapshot]
mode = "no_data"
signal_table = "public.walrus_signal"
incremental_chunk_size = {chunk}
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

/// Applies the events of `topic` by key, in file order.
fn rebuild(events: &[Value], topic: &str) -> HashMap<String, Value> {
    let mut keyed: HashMap<String, Value> = HashMap::new();
    for e in events.iter().filter(|e| e["topic"] == topic) {
        let v = &e["value"];
        if v.is_null() {
            continue; // tombstone
        }
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
    keyed
}

async fn table_rows(c: &tokio_postgres::Client, table: &str) -> Vec<String> {
    let rows = c
        .query(&format!("SELECT * FROM {table}"), &[])
        .await
        .unwrap();
    let mut out: Vec<String> = rows
        .iter()
        .map(|r| match table {
            "a" => json!({"id": r.get::<_, i32>(0), "v": r.get::<_, String>(1), "n": r.get::<_, i32>(2)})
                .to_string(),
            _ => json!({"k1": r.get::<_, String>(0), "k2": r.get::<_, i32>(1), "payload": r.get::<_, Option<String>>(2)})
                .to_string(),
        })
        .collect();
    out.sort();
    out
}

/// Stops the workload, waits until walrus confirmed everything written, and compares the
/// rebuilt state of `tables` with their contents.
async fn stop_and_compare(
    env: &Env,
    stop: &AtomicBool,
    load: tokio::task::JoinHandle<u64>,
    tables: &[&str],
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
    for t in tables {
        let mut rebuilt: Vec<String> = rebuild(&events, &format!("app.public.{t}"))
            .into_values()
            .map(|v| v.to_string())
            .collect();
        rebuilt.sort();
        let expected = table_rows(&c, t).await;
        if rebuilt != expected {
            let have: std::collections::HashSet<&String> = rebuilt.iter().collect();
            let want: std::collections::HashSet<&String> = expected.iter().collect();
            let missing: Vec<_> = expected.iter().filter(|r| !have.contains(r)).collect();
            let extra: Vec<_> = rebuilt.iter().filter(|r| !want.contains(r)).collect();
            // Every event of the first differing rows, so a failure can be told apart from
            // a race in the test: which op last touched the row, and where in the file.
            let history: Vec<String> = missing
                .iter()
                .chain(&extra)
                .take(4)
                .flat_map(|row| {
                    let row: Value = serde_json::from_str(row).unwrap();
                    let id = row.get("id").or_else(|| row.get("k2")).cloned();
                    events
                        .iter()
                        .enumerate()
                        .filter(|(_, e)| e["topic"] == format!("app.public.{t}"))
                        .filter(|(_, e)| {
                            let v = &e["value"];
                            [&v["before"], &v["after"]]
                                .iter()
                                .any(|r| r.get("id").or_else(|| r.get("k2")) == id.as_ref())
                        })
                        .map(|(i, e)| {
                            format!(
                                "#{i} op={} lsn={} snapshot={} before={} after={}",
                                e["value"]["op"],
                                e["value"]["source"]["lsn"],
                                e["value"]["source"]["snapshot"],
                                e["value"]["before"],
                                e["value"]["after"]
                            )
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            // The transactions that last wrote the missing rows, to find in the file.
            let ids: Vec<String> = missing
                .iter()
                .take(8)
                .filter_map(|row| {
                    let row: Value = serde_json::from_str(row).ok()?;
                    row.get("id").map(|v| v.to_string())
                })
                .collect();
            let xmins: Vec<String> = if ids.is_empty() {
                Vec::new()
            } else {
                c.query(
                    &format!(
                        "SELECT id::text || ':' || xmin::text FROM {t} WHERE id IN ({})",
                        ids.join(",")
                    ),
                    &[],
                )
                .await
                .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect())
                .unwrap_or_default()
            };
            let kept = std::env::temp_dir().join(format!(
                "walrus-incremental-failure-{}.jsonl",
                std::process::id()
            ));
            let _ = std::fs::copy(env.out_path(), &kept);
            eprintln!(
                "rows missing (id:xmin): {xmins:?}; the events are kept in {}",
                kept.display()
            );
            panic!(
                "table {t}: rebuilt state ({} rows) differs from the table ({} rows); \
                 missing {} rows, e.g. {:?}; extra {} rows, e.g. {:?}; \
                 their events ({} in the file):\n{}",
                rebuilt.len(),
                expected.len(),
                missing.len(),
                &missing[..missing.len().min(5)],
                extra.len(),
                &extra[..extra.len().min(5)],
                events.len(),
                history.join("\n")
            );
        }
    }
}

fn reads<'a>(events: &'a [Value], topic: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["topic"] == topic && e["value"]["op"] == "r")
        .map(|e| &e["value"])
        .collect()
}

fn table_complete(log: &str, table: &str) -> bool {
    log.lines()
        .any(|l| l.contains("incremental snapshot of the table complete") && l.contains(table))
}

fn walrus_snapshot(cfg: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_walrus"))
        .args(["snapshot", "--config"])
        .arg(cfg)
        .args(args)
        .output()
        .expect("run walrus snapshot")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_snapshot_via_signal_and_cli_under_workload_is_exact() {
    const ROWS_A: i32 = 20_000;
    let env = Env::new().await;
    let c = env.sql().await;
    fill(&c, ROWS_A).await;
    let cfg = env.write_config(&config(&env, 500));
    let mut walrus = Walrus::start(&cfg);
    wait_until(Duration::from_secs(60), "streaming", || {
        walrus.log().contains("starting replication")
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = workload(env.sql().await, ROWS_A, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Through the signal table, as Debezium users do.
    c.batch_execute(
        r#"INSERT INTO walrus_signal (id, type, data) VALUES ('sig-1', 'execute-snapshot',
           '{"data-collections": ["public.a"], "type": "incremental"}')"#,
    )
    .await
    .unwrap();
    // Through the CLI, while that one runs (b is queued behind a).
    let out = walrus_snapshot(&cfg, &["--table", "public.b"]);
    assert!(
        out.status.success(),
        "walrus snapshot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("execute-snapshot of public.b"));

    // A table without a primary key is refused by the CLI, naming the table and the fix.
    let out = walrus_snapshot(&cfg, &["--table", "public.nopk"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("public.nopk")
            && err.contains("no primary key")
            && err.contains("ADD PRIMARY KEY"),
        "{err}"
    );
    // ... and through the signal table walrus logs the same and goes on.
    c.batch_execute(
        r#"INSERT INTO walrus_signal (id, type, data) VALUES ('sig-2', 'execute-snapshot',
           '{"data-collections": ["public.nopk"]}')"#,
    )
    .await
    .unwrap();

    wait_until(Duration::from_secs(240), "both tables snapshotted", || {
        let log = walrus.log();
        table_complete(&log, "public.a") && table_complete(&log, "public.b")
    })
    .await;
    wait_until(Duration::from_secs(30), "keyless table refused", || {
        let log = walrus.log();
        log.contains("refused") && log.contains("public.nopk")
    })
    .await;
    // Streaming goes on after the snapshot.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop_and_compare(&env, &stop, load, &["a", "b"]).await;

    let events = read_events(&env.out_path());
    let reads_a = reads(&events, "app.public.a");
    let reads_b = reads(&events, "app.public.b");
    assert!(
        reads_a.len() > ROWS_A as usize / 2,
        "{} reads of a",
        reads_a.len()
    );
    assert!(reads_b.len() > 3000, "{} reads of b", reads_b.len());
    assert!(
        reads_a
            .iter()
            .chain(&reads_b)
            .all(|v| v["source"]["snapshot"] == "incremental"),
        "incremental reads are marked as such"
    );
    assert!(
        reads(&events, "app.public.nopk").is_empty(),
        "nothing read from the keyless table"
    );
    // Each key is read at most once when nothing is interrupted.
    let keys: Vec<String> = events
        .iter()
        .filter(|e| e["topic"] == "app.public.a" && e["value"]["op"] == "r")
        .map(|e| e["key"].to_string())
        .collect();
    let distinct: std::collections::HashSet<&String> = keys.iter().collect();
    assert_eq!(keys.len(), distinct.len(), "a row of a was read twice");
    // Signal and watermark rows are not events, and the watermarks are cleaned up.
    assert!(
        events
            .iter()
            .all(|e| !e["topic"].as_str().unwrap_or("").contains("walrus_signal")),
        "signal rows leaked into the output"
    );
    let watermarks: i64 = c
        .query_one(
            "SELECT count(*) FROM walrus_signal WHERE type LIKE 'snapshot-window-%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(watermarks, 0);
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(30)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_incremental_snapshot_resumes_and_stays_exact() {
    const ROWS_A: i32 = 150_000;
    let env = Env::new().await;
    let c = env.sql().await;
    fill(&c, ROWS_A).await;
    let cfg = env.write_config(&config(&env, 250));
    let state_path = env
        .dir
        .path()
        .join(format!("walrus-incremental-{}.json", env.slot));
    let mut walrus = Walrus::start(&cfg);
    wait_until(Duration::from_secs(60), "streaming", || {
        walrus.log().contains("starting replication")
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = workload(env.sql().await, ROWS_A, stop.clone());
    let out = walrus_snapshot(&cfg, &["--table", "public.a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let delivered_rows = || -> Option<u64> {
        let s: Value = serde_json::from_str(&std::fs::read_to_string(&state_path).ok()?).ok()?;
        let rows = s["tables"][0]["rows"].as_u64()?;
        (rows >= 5_000).then_some(rows)
    };
    wait_until(
        Duration::from_secs(120),
        "incremental progress saved",
        || delivered_rows().is_some() || table_complete(&walrus.log(), "public.a"),
    )
    .await;
    assert!(
        !table_complete(&walrus.log(), "public.a"),
        "the snapshot finished before it could be interrupted"
    );
    walrus.kill9();
    let saved = delivered_rows().expect("progress saved");
    let reads_first = reads(&read_events(&env.out_path()), "app.public.a").len();
    assert!(reads_first as u64 >= saved, "saved progress is delivered");

    let mut again = Walrus::start(&cfg);
    wait_until(
        Duration::from_secs(240),
        "resumed snapshot complete",
        || table_complete(&again.log(), "public.a"),
    )
    .await;
    assert!(
        again
            .log()
            .contains("resuming the incremental snapshot after the last delivered chunk"),
        "{}",
        again.log()
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop_and_compare(&env, &stop, load, &["a"]).await;
    let reads_second = reads(&read_events(&env.out_path()), "app.public.a").len() - reads_first;
    assert!(
        (reads_second as u64) < ROWS_A as u64 - saved / 2,
        "the second run resumed ({reads_second} reads) rather than starting over"
    );
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    assert_eq!(state["tables"], json!([]), "nothing left to read");
    again.interrupt();
    assert!(again.wait(Duration::from_secs(30)).success());
}

/// The number of reads of `a` once it stayed the same for a second (the chunk in flight
/// when a pause or stop arrives completes).
async fn settled_reads(path: &std::path::Path) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut last = reads(&read_events(path), "app.public.a").len();
    loop {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let now = reads(&read_events(path), "app.public.a").len();
        if now == last {
            return now;
        }
        assert!(std::time::Instant::now() < deadline, "reads never settled");
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_stop_signals() {
    const ROWS_A: i32 = 100_000;
    let env = Env::new().await;
    let c = env.sql().await;
    fill(&c, ROWS_A).await;
    let cfg = env.write_config(&config(&env, 200));
    let mut walrus = Walrus::start(&cfg);
    wait_until(Duration::from_secs(60), "streaming", || {
        walrus.log().contains("starting replication")
    })
    .await;
    assert!(walrus_snapshot(&cfg, &["--table", "public.a"])
        .status
        .success());
    wait_for_events(&env.out_path(), 1000, Duration::from_secs(60), |e| {
        e["value"]["op"] == "r"
    })
    .await;
    assert!(walrus_snapshot(&cfg, &["--pause"]).status.success());
    wait_until(Duration::from_secs(30), "paused", || {
        walrus.log().contains("incremental snapshot paused")
    })
    .await;
    // The chunk in flight when the pause arrived may still be emitted; then nothing.
    let paused_at = settled_reads(&env.out_path()).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(
        reads(&read_events(&env.out_path()), "app.public.a").len(),
        paused_at,
        "no reads while paused"
    );
    // Streaming goes on while paused.
    c.batch_execute("INSERT INTO a VALUES (-5, 'while paused', 0)")
        .await
        .unwrap();
    wait_for_events(&env.out_path(), 1, Duration::from_secs(30), |e| {
        e["value"]["after"]["id"] == -5
    })
    .await;
    assert!(walrus_snapshot(&cfg, &["--resume"]).status.success());
    wait_until(Duration::from_secs(30), "reads again", || {
        reads(&read_events(&env.out_path()), "app.public.a").len() > paused_at + 400
    })
    .await;
    assert!(walrus_snapshot(&cfg, &["--stop"]).status.success());
    wait_until(Duration::from_secs(30), "stopped", || {
        walrus.log().contains("incremental snapshot stopped")
    })
    .await;
    let stopped_at = settled_reads(&env.out_path()).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(
        reads(&read_events(&env.out_path()), "app.public.a").len(),
        stopped_at,
        "no reads after stop"
    );
    assert!(stopped_at < ROWS_A as usize, "stopped before the end");
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(30)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_snapshot_skips_the_signal_table() {
    let env = Env::new().await;
    let c = env.sql().await;
    fill(&c, 1_000).await;
    // A signal table from an earlier run, with an old signal: neither snapshotted nor acted
    // on (it is not in the stream).
    c.batch_execute(
        "CREATE TABLE walrus_signal (id text PRIMARY KEY, type text NOT NULL, data text);
         INSERT INTO walrus_signal VALUES ('old', 'execute-snapshot', '{\"data-collections\": [\"public.a\"]}')",
    )
    .await
    .unwrap();
    let text = config(&env, 500)
        .replace("mode = \"no_data\"", "mode = \"initial\"")
        .replace(
            "tables = [\"public.a\", \"public.b\", \"public.nopk\"]",
            "tables = [\"public.*\"]",
        );
    let cfg = env.write_config(&text);
    let mut walrus = Walrus::start(&cfg);
    wait_until(Duration::from_secs(60), "snapshot complete", || {
        walrus.log().contains("snapshot complete")
    })
    .await;
    assert!(walrus_snapshot(&cfg, &["--table", "a"]).status.success());
    wait_until(Duration::from_secs(60), "incremental snapshot of a", || {
        table_complete(&walrus.log(), "public.a")
    })
    .await;
    // Written once delivered, which may be after the log line.
    let events = wait_for_events(&env.out_path(), 1_000, Duration::from_secs(30), |e| {
        e["value"]["source"]["snapshot"] == "incremental"
    })
    .await;
    assert!(
        events
            .iter()
            .all(|e| !e["topic"].as_str().unwrap_or("").contains("walrus_signal")),
        "the signal table was snapshotted or streamed"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = read_events(&env.out_path());
    let incremental = reads(&events, "app.public.a")
        .iter()
        .filter(|v| v["source"]["snapshot"] == "incremental")
        .count();
    assert_eq!(
        incremental, 1_000,
        "read once by the CLI's signal, not by the old row"
    );
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(30)).success());
}

/// Not a timed test: the rate of an incremental snapshot of a 1M-row table with the default
/// chunk size and a larger one, with nothing else writing. Run with
/// `cargo nextest run --test e2e --run-ignored only incremental_snapshot_rate --no-capture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn incremental_snapshot_rate() {
    const ROWS: i64 = 1_000_000;
    for chunk in [1024usize, 8192] {
        let env = Env::new().await;
        let c = env.sql().await;
        c.batch_execute(&format!(
            "CREATE TABLE a (id int PRIMARY KEY, v text NOT NULL, n int NOT NULL);
             CREATE TABLE b (k1 text, k2 int, payload text, PRIMARY KEY (k1, k2));
             CREATE TABLE nopk (x int, y text);
             INSERT INTO a SELECT g, 'v' || g, g FROM generate_series(1, {ROWS}) g;"
        ))
        .await
        .unwrap();
        c.batch_execute("VACUUM ANALYZE a").await.unwrap();
        // Baseline in the same run: the table read by COPY into /dev/null.
        let copy_started = std::time::Instant::now();
        let status = Command::new(env.cluster.bin("psql"))
            .args([
                "-h",
                env.cluster.host(),
                "-p",
                &env.cluster.port().to_string(),
            ])
            .args(["-U", "postgres", "-d", &env.db, "-X", "-q"])
            .args(["-c", "COPY (SELECT * FROM a) TO STDOUT"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run psql");
        assert!(status.success(), "psql COPY failed");
        let copy_secs = copy_started.elapsed().as_secs_f64();
        let cfg = env.write_config(&config(&env, chunk).replace("fsync = true", "fsync = false"));
        let mut walrus = Walrus::start(&cfg);
        wait_until(Duration::from_secs(60), "streaming", || {
            walrus.log().contains("starting replication")
        })
        .await;
        let started = std::time::Instant::now();
        assert!(walrus_snapshot(&cfg, &["--table", "public.a"])
            .status
            .success());
        wait_until(Duration::from_secs(600), "snapshot complete", || {
            table_complete(&walrus.log(), "public.a")
        })
        .await;
        let secs = started.elapsed().as_secs_f64();
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "incremental snapshot, chunk {chunk}: {ROWS} rows in {secs:.2} s = {:.0} rows/s; COPY into nothing {copy_secs:.2} s; ratio {:.2} (loadavg {})",
            ROWS as f64 / secs,
            copy_secs / secs,
            load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
        );
        walrus.interrupt();
        assert!(walrus.wait(Duration::from_secs(60)).success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_added_mid_snapshot_is_read_with_the_new_shape() {
    const ROWS_A: i32 = 60_000;
    let env = Env::new().await;
    let c = env.sql().await;
    fill(&c, ROWS_A).await;
    let cfg = env.write_config(&config(&env, 250));
    let mut walrus = Walrus::start(&cfg);
    wait_until(Duration::from_secs(60), "streaming", || {
        walrus.log().contains("starting replication")
    })
    .await;
    // The stream learns a's old shape, and nothing of a streams after the ALTER.
    c.batch_execute("UPDATE a SET n = -1 WHERE id = 1")
        .await
        .unwrap();
    assert!(walrus_snapshot(&cfg, &["--table", "public.a"])
        .status
        .success());
    wait_for_events(&env.out_path(), 500, Duration::from_secs(60), |e| {
        e["value"]["op"] == "r"
    })
    .await;
    c.batch_execute("ALTER TABLE a ADD COLUMN extra int NOT NULL DEFAULT 7")
        .await
        .unwrap();
    wait_until(Duration::from_secs(120), "snapshot complete", || {
        table_complete(&walrus.log(), "public.a")
    })
    .await;
    let events = wait_for_events(&env.out_path(), 1, Duration::from_secs(30), |e| {
        e["value"]["op"] == "r" && e["value"]["after"]["id"] == ROWS_A
    })
    .await;
    let r = reads(&events, "app.public.a");
    let keys: std::collections::HashSet<String> =
        r.iter().map(|v| v["after"]["id"].to_string()).collect();
    assert_eq!(keys.len(), ROWS_A as usize, "every row read");
    assert_eq!(r.len(), ROWS_A as usize, "none twice");
    let last = r.last().unwrap();
    assert_eq!(
        last["after"]["extra"], 7,
        "read with the new column: {last}"
    );
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(30)).success());
}
