//! Large transactions: one of 1,000,000 rows reaches the file sink with bounded memory,
//! and transactions PostgreSQL streams while they run (`[source] streaming`, 14+, with
//! `logical_decoding_work_mem` at its 64kB minimum so a few thousand rows stream) are
//! delivered exactly as if sent after their commit: complete, once, in commit order, with
//! aborted transactions and rolled-back savepoints left out, confirmed only after commit,
//! and surviving a kill -9 in the middle.

use std::io::BufRead;
use std::time::{Duration, Instant};

use crate::common::*;

const ROWS: usize = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_transaction_of_a_million_rows_streams_with_bounded_memory() {
    let env = Env::new().await;
    let c = env.sql().await;
    c.batch_execute(
        "CREATE TABLE big (id int PRIMARY KEY, v text, n numeric(12,2), t timestamptz)",
    )
    .await
    .unwrap();
    // A small in-flight budget: memory must stay bounded by it, not by the transaction.
    let cfg = env.write_config(&format!(
        "{}\n[pipeline]\nmax_in_flight_bytes = 8388608\n",
        env.config(r#"["public.big"]"#, "")
    ));
    let mut walrus = Walrus::start(&cfg);
    wait_until(Duration::from_secs(30), "replication start", || {
        walrus.log().contains("starting replication")
    })
    .await;
    let started = Instant::now();
    c.batch_execute(&format!(
        "INSERT INTO big SELECT g, md5(g::text), g / 100.0, now() FROM generate_series(1, {ROWS}) g"
    ))
    .await
    .unwrap();
    let committed = started.elapsed();

    let out = env.out_path();
    let mut seen = vec![false; ROWS + 1];
    let mut count = 0usize;
    let mut offset = 0u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut peak_kib = 0;
    while count < ROWS {
        assert!(
            Instant::now() < deadline,
            "only {count} of {ROWS} rows after 600 s\n{}",
            walrus.log()
        );
        assert!(walrus.is_running(), "walrus exited:\n{}", walrus.log());
        peak_kib = peak_kib.max(walrus.peak_rss_kib().unwrap_or(0));
        // Read only what is new, line by line: the file is large.
        let mut file =
            std::fs::File::open(&out).unwrap_or_else(|_| std::fs::File::open("/dev/null").unwrap());
        use std::io::{Seek, SeekFrom};
        file.seek(SeekFrom::Start(offset)).unwrap();
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader.read_line(&mut line).unwrap();
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            offset += n as u64;
            let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON line");
            let id = v["value"]["after"]["id"].as_i64().expect("id") as usize;
            if !seen[id] {
                seen[id] = true;
                count += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let streamed = started.elapsed();
    peak_kib = peak_kib.max(walrus.peak_rss_kib().unwrap_or(0));
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(60)).success());
    eprintln!(
        "1M-row transaction: committed in {:.1} s, all rows in the file after {:.1} s ({:.0} rows/s end to end), walrus peak RSS {} MiB",
        committed.as_secs_f64(),
        streamed.as_secs_f64(),
        ROWS as f64 / streamed.as_secs_f64(),
        peak_kib / 1024
    );
    assert!(seen[1..].iter().all(|s| *s));
    assert!(
        peak_kib < 160 * 1024,
        "peak RSS {peak_kib} KiB is not bounded by the 8 MiB budget"
    );
}

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use walrus_testkit::PgCluster;

const TOPIC: &str = "app.public.big";

/// A cluster that streams any transaction past 64kB of changes (the minimum
/// `logical_decoding_work_mem`), with the `big` table.
async fn streaming_env(major: Option<u32>) -> Env {
    let mut builder = PgCluster::builder().setting("logical_decoding_work_mem", "64kB");
    if let Some(m) = major {
        builder = builder.major(m);
    }
    let cluster = builder
        .start()
        .unwrap_or_else(|e| panic!("PostgreSQL {major:?} (run scripts/install-deps.sh): {e:#}"));
    let env = Env::with_cluster(cluster).await;
    env.sql()
        .await
        .batch_execute("CREATE TABLE big (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    env
}

fn spool_dir(env: &Env) -> PathBuf {
    env.dir.path().join("spool")
}

/// Config with `streaming` as given, a spool under the test's dir and a 16 KiB memory
/// threshold, so the spool of a streamed transaction goes to a file.
fn streaming_config(env: &Env, streaming: &str) -> PathBuf {
    env.write_config(&env.config(
        r#"["public.big"]"#,
        &format!(
            "streaming = \"{streaming}\"\nspool_dir = \"{}\"\nspool_memory_bytes = 16384",
            spool_dir(env).display()
        ),
    ))
}

fn spool_files(env: &Env) -> usize {
    std::fs::read_dir(spool_dir(env))
        .map(|d| d.count())
        .unwrap_or(0)
}

async fn start_streaming(cfg: &Path, streaming: bool) -> Walrus {
    let walrus = Walrus::start(cfg);
    let want = format!("streaming={streaming}");
    wait_until(Duration::from_secs(60), "replication start", || {
        let log = plain(&walrus.log());
        log.contains("replication started") && log.contains(&want)
    })
    .await;
    walrus
}

/// The log without its colour codes (`ESC [ … m`).
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The `big` rows' events in the output, in order.
fn big_events(path: &Path) -> Vec<Value> {
    values_for(&read_events(path), TOPIC)
        .into_iter()
        .cloned()
        .collect()
}

fn ids(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .map(|v| v["after"]["id"].as_i64().expect("id"))
        .collect()
}

/// Inserts `from..=to` into `big` on `c` (inside whatever transaction `c` has open).
async fn insert(c: &tokio_postgres::Client, from: i64, to: i64) {
    c.batch_execute(&format!(
        "INSERT INTO big SELECT g, md5(g::text) FROM generate_series({from}, {to}) g"
    ))
    .await
    .unwrap();
}

/// The spooled changes walrus dropped at Stream Aborts of subtransactions (rolled-back
/// savepoints), from its debug log: 0 when PostgreSQL had streamed none of their changes.
fn dropped_by_rollbacks(log: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("rolled-back subtransaction dropped from the spool"))
        .filter_map(|l| {
            l.split("dropped=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Bytes in the spool files (what walrus wrote so far; up to 64 KiB more may sit in its
/// write buffer).
fn spool_bytes(env: &Env) -> u64 {
    std::fs::read_dir(spool_dir(env))
        .map(|d| {
            d.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// `spool_bytes` once it stopped growing for a second.
async fn settled_spool_bytes(env: &Env) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = spool_bytes(env);
    let mut still = 0;
    while still < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = spool_bytes(env);
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
    last
}

async fn wait_spooled(env: &Env, n: usize, walrus: &Walrus) {
    wait_until(
        Duration::from_secs(60),
        "the streamed transaction's spool file",
        || spool_files(env) >= n,
    )
    .await;
    assert!(!walrus.log().contains("ERROR"), "{}", walrus.log());
}

/// The events with the time walrus wrote them (`ts_ms`, `ts_us`, `ts_ns` of the envelope)
/// removed: everything else must not depend on how the transaction arrived.
fn without_processing_time(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        for k in ["ts_ms", "ts_us", "ts_ns"] {
            o.remove(k);
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_transaction_equals_the_unstreamed_one_and_is_confirmed_after_commit() {
    const N: i64 = 20_000;
    let env = streaming_env(None).await;
    let c = env.sql().await;
    // With Debezium's transaction metadata: BEGIN/END events and each event's transaction
    // block must not differ either.
    let (mut on, mut off, out_off) =
        walrus_on_and_off(&env, "\n[transactions]\nenabled = true\n").await;

    let tx = env.sql().await;
    tx.batch_execute("BEGIN").await.unwrap();
    let before = wal_end_lsn(&c).await;
    insert(&tx, 1, N).await;
    wait_spooled(&env, 1, &on).await;
    // Several status intervals (200 ms) and keepalives later: nothing of the open
    // transaction is delivered, and nothing past its start is confirmed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(big_events(&env.out_path()).len(), 1, "only the first row");
    let confirmed = env.confirmed_flush_lsn().await.unwrap();
    assert!(
        confirmed <= before,
        "confirmed {confirmed:X} past the open transaction's start {before:X}"
    );
    tx.batch_execute("COMMIT").await.unwrap();
    let committed = wal_end_lsn(&c).await;

    let n = N as usize + 1;
    wait_for_events(&env.out_path(), n, Duration::from_secs(120), |e| {
        e["topic"] == TOPIC
    })
    .await;
    wait_for_events(&out_off, n, Duration::from_secs(120), |e| {
        e["topic"] == TOPIC
    })
    .await;
    // The END of the streamed transaction follows its last row.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let streamed = big_events(&env.out_path());
    assert_eq!(streamed.len(), n, "exactly once");
    let got: BTreeSet<i64> = ids(&streamed).into_iter().collect();
    assert_eq!(got, (-1..=N).filter(|i| *i != 0).collect());
    let comparable = |path: &Path| -> Vec<(Value, Value, Value)> {
        read_events(path)
            .into_iter()
            .filter(|e| e["topic"] == TOPIC || e["topic"] == "app.transaction")
            .map(|e| {
                (
                    e["topic"].clone(),
                    e["key"].clone(),
                    without_processing_time(e["value"].clone()),
                )
            })
            .collect()
    };
    let (a, b) = (comparable(&env.out_path()), comparable(&out_off));
    assert_eq!(a.len(), n + 4, "the rows and two BEGIN/END pairs");
    assert_eq!(a.len(), b.len());
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        assert_eq!(a, b, "event {i} differs between streaming on and off");
    }
    wait_until(Duration::from_secs(30), "the spool file deleted", || {
        spool_files(&env) == 0
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.confirmed_flush_lsn().await.unwrap() < committed {
        assert!(Instant::now() < deadline, "the commit was never confirmed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // PostgreSQL streamed the transaction to the one walrus and spilled it for the other.
    let stats = c
        .query_one(
            "SELECT coalesce(max(stream_txns) FILTER (WHERE slot_name = $1), 0), \
                    coalesce(max(stream_txns) FILTER (WHERE slot_name = $2), 0) \
             FROM pg_stat_replication_slots",
            &[&env.slot, &format!("{}_off", env.slot)],
        )
        .await
        .unwrap();
    let (streamed_on, streamed_off): (i64, i64) = (stats.get(0), stats.get(1));
    eprintln!("stream_txns: streaming on {streamed_on}, off {streamed_off}");
    assert_eq!(streamed_off, 0);
    on.interrupt();
    off.interrupt();
    assert!(on.wait(Duration::from_secs(60)).success(), "{}", on.log());
    assert!(off.wait(Duration::from_secs(60)).success());
}

/// Two walrus processes on the same database, each on its own slot: `on` with streaming on
/// (the env's config and output), `off` with streaming off, writing to the returned path.
/// `extra` is appended to both configs. Both have delivered a first transaction (row -1)
/// when this returns, so that `source.sequence` has a previous commit in both (before 15
/// PostgreSQL also sends empty transactions, such as the second walrus creating its
/// publication, which only the first one sees).
async fn walrus_on_and_off(env: &Env, extra: &str) -> (Walrus, Walrus, PathBuf) {
    let cfg_on = streaming_config(env, "on");
    let text_on = std::fs::read_to_string(&cfg_on).unwrap() + extra;
    std::fs::write(&cfg_on, &text_on).unwrap();
    let slot_off = format!("{}_off", env.slot);
    let out_off = env.dir.path().join("events-off.jsonl");
    let text_off = text_on
        .replace(&env.slot, &slot_off)
        .replace(
            &env.out_path().display().to_string(),
            &out_off.display().to_string(),
        )
        .replace("streaming = \"on\"", "streaming = \"off\"");
    let cfg_off = env.dir.path().join("walrus-off.toml");
    std::fs::write(&cfg_off, text_off).unwrap();
    let on = start_streaming(&cfg_on, true).await;
    let off = start_streaming(&cfg_off, false).await;
    insert(&env.sql().await, -1, -1).await;
    for out in [env.out_path(), out_off.clone()] {
        wait_for_events(&out, 1, Duration::from_secs(30), |e| e["topic"] == TOPIC).await;
    }
    (on, off, out_off)
}

/// DDL inside a savepoint of a streamed transaction, rolled back (`rollback`) or kept: the
/// events equal those of the same transaction with streaming off, row for row, and each
/// row has the shape its table had when it was written (no `extra` column on the rows
/// after `ROLLBACK TO`, nor on a later transaction's).
async fn ddl_in_a_savepoint(rollback: bool, major: Option<u32>) {
    let env = streaming_env(major).await;
    let c = env.sql().await;
    let (mut on, mut off, out_off) = walrus_on_and_off(&env, "").await;
    let tx = env.sql().await;
    tx.batch_execute("BEGIN").await.unwrap();
    insert(&tx, 1, 3000).await;
    wait_spooled(&env, 1, &on).await;
    let before = settled_spool_bytes(&env).await;
    tx.batch_execute("SAVEPOINT s; ALTER TABLE big ADD COLUMN extra text")
        .await
        .unwrap();
    for (a, b) in [(3001, 5000), (5001, 7000), (7001, 9000)] {
        tx.batch_execute(&format!(
            "INSERT INTO big SELECT g, md5(g::text), 'x' || g FROM generate_series({a}, {b}) g"
        ))
        .await
        .unwrap();
    }
    // PostgreSQL streams what it decodes while the savepoint is alive: let it stream most
    // of the savepoint's rows (about 450 kB of spool) before ending it. Without waiting it
    // had streamed none of them on 14, 15 and 18 when ROLLBACK TO came, and the test would
    // not exercise the spool's truncation (asserted below). 250 kB more than `before` is
    // more than the top-level rows PostgreSQL may still have held (64 kB) plus the spool
    // file's write buffer (64 KiB).
    wait_until(
        Duration::from_secs(60),
        "the savepoint's rows in the spool",
        || spool_bytes(&env) >= before + 250_000,
    )
    .await;
    let end = if rollback {
        tx.batch_execute("ROLLBACK TO s").await.unwrap();
        // The first rows after the rollback in the same stream block as the rolled-back
        // ones, then enough to stream more blocks.
        insert(&tx, 9001, 9002).await;
        insert(&tx, 9003, 12_000).await;
        12_000
    } else {
        tx.batch_execute("RELEASE s").await.unwrap();
        tx.batch_execute(
            "INSERT INTO big SELECT g, md5(g::text), 'y' || g FROM generate_series(9001, 12000) g",
        )
        .await
        .unwrap();
        12_000
    };
    wait_spooled(&env, 1, &on).await;
    tx.batch_execute("COMMIT").await.unwrap();
    // A later transaction: the table's shape after the commit.
    insert(&c, 20_001, 20_001).await;
    let want: Vec<i64> = if rollback {
        [-1].into_iter()
            .chain(1..=3000)
            .chain(9001..=end)
            .chain([20_001])
            .collect()
    } else {
        [-1].into_iter().chain(1..=end).chain([20_001]).collect()
    };
    for out in [env.out_path(), out_off.clone()] {
        wait_for_events(&out, want.len(), Duration::from_secs(120), |e| {
            e["topic"] == TOPIC
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let streamed = big_events(&env.out_path());
    assert_eq!(ids(&streamed), want, "rows in order, once");
    for v in &streamed {
        let id = v["after"]["id"].as_i64().unwrap();
        let mut columns: Vec<&str> = v["after"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        columns.sort_unstable();
        let with_extra = !rollback && ((3001..=end).contains(&id) || id == 20_001);
        let expected: &[&str] = if with_extra {
            &["extra", "id", "v"]
        } else {
            &["id", "v"]
        };
        assert_eq!(columns, expected, "row {id}: {v}");
        if with_extra && id != 20_001 {
            let prefix = if id <= 9000 { "x" } else { "y" };
            assert_eq!(v["after"]["extra"], format!("{prefix}{id}"), "row {id}");
        }
    }
    // From the big transaction on: the marker's previous commit differs on purpose.
    let comparable = |path: &Path| -> Vec<(Value, Value)> {
        read_events(path)
            .into_iter()
            .filter(|e| e["topic"] == TOPIC && e["key"]["id"] != -1)
            .map(|e| {
                (
                    e["key"].clone(),
                    without_processing_time(e["value"].clone()),
                )
            })
            .collect()
    };
    let (a, b) = (comparable(&env.out_path()), comparable(&out_off));
    assert_eq!(a.len(), b.len());
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        assert_eq!(a, b, "event {i} differs between streaming on and off");
    }
    let log = plain(&on.log());
    if rollback {
        // The rolled-back rows had been streamed and spooled, and the rollback dropped
        // them (keeping the Relation message of the shape that no longer exists).
        assert!(
            dropped_by_rollbacks(&log) > 0,
            "nothing of the savepoint was streamed:\n{log}"
        );
    }
    on.interrupt();
    off.interrupt();
    assert!(on.wait(Duration::from_secs(60)).success(), "{}", on.log());
    assert!(off.wait(Duration::from_secs(60)).success(), "{}", off.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_in_a_rolled_back_savepoint_of_a_streamed_transaction() {
    ddl_in_a_savepoint(true, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_in_a_rolled_back_savepoint_of_a_streamed_transaction_pg14() {
    ddl_in_a_savepoint(true, Some(14)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_in_a_rolled_back_savepoint_of_a_streamed_transaction_pg18() {
    ddl_in_a_savepoint(true, Some(18)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_in_a_released_savepoint_of_a_streamed_transaction() {
    ddl_in_a_savepoint(false, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_streamed_transaction_delivers_nothing() {
    let env = streaming_env(None).await;
    let c = env.sql().await;
    let mut walrus = start_streaming(&streaming_config(&env, "on"), true).await;
    let tx = env.sql().await;
    tx.batch_execute("BEGIN").await.unwrap();
    insert(&tx, 1, 20_000).await;
    wait_spooled(&env, 1, &walrus).await;
    tx.batch_execute("ROLLBACK").await.unwrap();
    wait_until(
        Duration::from_secs(30),
        "the spool dropped on abort",
        || spool_files(&env) == 0,
    )
    .await;
    insert(&c, -1, -1).await;
    let events = wait_for_events(&env.out_path(), 1, Duration::from_secs(30), |e| {
        e["topic"] == TOPIC
    })
    .await;
    let big: Vec<Value> = values_for(&events, TOPIC).into_iter().cloned().collect();
    assert_eq!(ids(&big), vec![-1], "only the committed marker row");
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(60)).success());
}

/// Savepoints rolled back inside a streamed transaction drop exactly their rows: after a
/// released savepoint, nested ones, and with changes of the parent after a child's release.
async fn savepoints(major: Option<u32>) {
    let env = streaming_env(major).await;
    let mut walrus = start_streaming(&streaming_config(&env, "on"), true).await;
    let tx = env.sql().await;
    tx.batch_execute("BEGIN").await.unwrap();
    insert(&tx, 1, 3000).await;
    tx.batch_execute("SAVEPOINT a").await.unwrap();
    insert(&tx, 3001, 6000).await;
    tx.batch_execute("RELEASE a; SAVEPOINT b").await.unwrap();
    insert(&tx, 6001, 9000).await;
    tx.batch_execute("ROLLBACK TO b").await.unwrap();
    insert(&tx, 9001, 12_000).await;
    tx.batch_execute("SAVEPOINT c; SAVEPOINT d").await.unwrap();
    insert(&tx, 12_001, 13_000).await;
    tx.batch_execute("RELEASE d").await.unwrap();
    insert(&tx, 13_001, 14_000).await;
    tx.batch_execute("ROLLBACK TO c; SAVEPOINT e")
        .await
        .unwrap();
    insert(&tx, 14_001, 17_000).await;
    tx.batch_execute("RELEASE e").await.unwrap();
    wait_spooled(&env, 1, &walrus).await;
    tx.batch_execute("COMMIT").await.unwrap();
    let want: Vec<i64> = (1..=6000)
        .chain(9001..=12_000)
        .chain(14_001..=17_000)
        .collect();
    wait_for_events(&env.out_path(), want.len(), Duration::from_secs(120), |e| {
        e["topic"] == TOPIC
    })
    .await;
    // Anything rolled back would come before the end of the transaction's events.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = ids(&big_events(&env.out_path()));
    assert_eq!(got, want, "rows in order, rolled-back savepoints left out");
    // The rollbacks reached walrus as Stream Aborts of subtransactions it had spooled (not
    // only as changes PostgreSQL discarded before streaming them).
    let log = plain(&walrus.log());
    assert!(dropped_by_rollbacks(&log) > 0, "{log}");
    let stats: i64 = env
        .sql()
        .await
        .query_one(
            "SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = $1",
            &[&env.slot],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or(-1);
    eprintln!("PostgreSQL {major:?}: stream_txns {stats}");
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(60)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_savepoints_drop_only_their_rows() {
    savepoints(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_savepoints_drop_only_their_rows_pg14() {
    savepoints(Some(14)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_savepoints_drop_only_their_rows_pg18() {
    savepoints(Some(18)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_streamed_transactions_arrive_whole_in_commit_order() {
    let env = streaming_env(None).await;
    let mut walrus = start_streaming(&streaming_config(&env, "on"), true).await;
    let (a, b) = (env.sql().await, env.sql().await);
    a.batch_execute("BEGIN").await.unwrap();
    b.batch_execute("BEGIN").await.unwrap();
    insert(&a, 1, 5000).await;
    insert(&b, 100_001, 105_000).await;
    insert(&a, 5001, 10_000).await;
    insert(&b, 105_001, 110_000).await;
    wait_spooled(&env, 2, &walrus).await;
    // b commits first, so its rows come first.
    b.batch_execute("COMMIT").await.unwrap();
    a.batch_execute("COMMIT").await.unwrap();
    wait_for_events(&env.out_path(), 20_000, Duration::from_secs(120), |e| {
        e["topic"] == TOPIC
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let events = big_events(&env.out_path());
    let want: Vec<i64> = (100_001..=110_000).chain(1..=10_000).collect();
    assert_eq!(ids(&events), want, "each whole, in commit order, once");
    let tx_ids: BTreeSet<(bool, i64)> = events
        .iter()
        .map(|v| {
            (
                v["after"]["id"].as_i64().unwrap() > 100_000,
                v["source"]["txId"].as_i64().expect("txId"),
            )
        })
        .collect();
    assert_eq!(tx_ids.len(), 2, "one txId per transaction: {tx_ids:?}");
    assert_eq!(spool_files(&env), 0);
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(60)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_a_streamed_transaction_loses_nothing() {
    const N: i64 = 20_000;
    let env = streaming_env(None).await;
    let cfg = streaming_config(&env, "on");
    let mut walrus = start_streaming(&cfg, true).await;
    let tx = env.sql().await;
    tx.batch_execute("BEGIN").await.unwrap();
    insert(&tx, 1, N / 2).await;
    wait_spooled(&env, 1, &walrus).await;
    walrus.kill9();
    // The dead process's spool file stays behind until the next session starts.
    assert_eq!(spool_files(&env), 1);
    insert(&tx, N / 2 + 1, N).await;
    let mut walrus = start_streaming(&cfg, true).await;
    tx.batch_execute("COMMIT").await.unwrap();
    wait_for_events(&env.out_path(), N as usize, Duration::from_secs(120), |e| {
        e["topic"] == TOPIC
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = ids(&big_events(&env.out_path()));
    assert_eq!(got, (1..=N).collect::<Vec<_>>(), "every row once, in order");
    wait_until(Duration::from_secs(30), "no spool left", || {
        spool_files(&env) == 0
    })
    .await;
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(60)).success());
}

/// `source.spool_max_bytes`: a streamed transaction larger than the limit stops walrus
/// with a fatal error naming the key, the transaction and the fixes, without retrying;
/// nothing of it is delivered or confirmed, and a run with streaming off delivers it whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_past_spool_max_bytes_stops_walrus_and_holds_the_slot() {
    const N: i64 = 20_000;
    const LIMIT: u64 = 256 * 1024;
    let env = streaming_env(None).await;
    let c = env.sql().await;
    let text = std::fs::read_to_string(streaming_config(&env, "on"))
        .unwrap()
        .replace(
            "spool_memory_bytes = 16384",
            &format!("spool_memory_bytes = 16384\nspool_max_bytes = {LIMIT}"),
        );
    assert!(text.contains("spool_max_bytes"));
    let cfg = env.write_config(&text);
    let mut walrus = start_streaming(&cfg, true).await;
    // A committed transaction first: delivered and confirmed before the big one.
    insert(&c, -1, -1).await;
    wait_for_events(&env.out_path(), 1, Duration::from_secs(30), |e| {
        e["topic"] == TOPIC
    })
    .await;
    let marker = wal_end_lsn(&c).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.confirmed_flush_lsn().await.unwrap() < marker {
        assert!(Instant::now() < deadline, "the marker was never confirmed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let tx = env.sql().await;
    tx.batch_execute("BEGIN").await.unwrap();
    let xid: String = tx
        .query_one("SELECT pg_current_xact_id()::text", &[])
        .await
        .unwrap()
        .get(0);
    let before = wal_end_lsn(&c).await;
    // About 1 MB of changes, streamed in 64kB blocks while the transaction runs.
    insert(&tx, 1, N).await;
    let status = walrus.wait(Duration::from_secs(60));
    assert!(!status.success(), "walrus must stop:\n{}", walrus.log());
    let log = plain(&walrus.log());
    for want in [
        "source.spool_max_bytes".to_string(),
        format!("streamed transaction {xid} has spooled"),
        format!("limit of {LIMIT} bytes"),
        "source.streaming = \"off\"".to_string(),
        "fix the named configuration key".to_string(),
    ] {
        assert!(log.contains(&want), "{want:?} missing from the log:\n{log}");
    }
    // Fatal: one error, no retry loop.
    assert!(
        !log.contains("retrying"),
        "retried an error that cannot go away:\n{log}"
    );
    let confirmed = env.confirmed_flush_lsn().await.unwrap();
    assert!(
        confirmed >= marker && confirmed <= before,
        "confirmed {confirmed:X}: not the marker's commit ({marker:X}..={before:X})"
    );
    assert_eq!(ids(&big_events(&env.out_path())), vec![-1]);

    // The operator's fix: streaming off (PostgreSQL spills it instead). Nothing was lost.
    tx.batch_execute("COMMIT").await.unwrap();
    let committed = wal_end_lsn(&c).await;
    std::fs::write(
        &cfg,
        text.replace("streaming = \"on\"", "streaming = \"off\""),
    )
    .unwrap();
    let mut walrus = start_streaming(&cfg, false).await;
    wait_for_events(
        &env.out_path(),
        N as usize + 1,
        Duration::from_secs(120),
        |e| e["topic"] == TOPIC,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = ids(&big_events(&env.out_path()));
    assert_eq!(got, (-1..=N).filter(|i| *i != 0).collect::<Vec<_>>());
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.confirmed_flush_lsn().await.unwrap() < committed {
        assert!(Instant::now() < deadline, "the commit was never confirmed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(60)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_stays_off_and_on_is_refused_before_14() {
    let env = streaming_env(Some(13)).await;
    let cfg = streaming_config(&env, "on");
    let mut refused = Walrus::start(&cfg);
    let status = refused.wait(Duration::from_secs(60));
    assert!(!status.success());
    let log = plain(&refused.log());
    assert!(
        log.contains("source.streaming") && log.contains("PostgreSQL 14") && log.contains("13."),
        "{log}"
    );
    let cfg = streaming_config(&env, "auto");
    let mut walrus = start_streaming(&cfg, false).await;
    let tx = env.sql().await;
    tx.batch_execute("BEGIN").await.unwrap();
    insert(&tx, 1, 20_000).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(spool_files(&env), 0, "nothing streamed on 13");
    tx.batch_execute("COMMIT").await.unwrap();
    wait_for_events(&env.out_path(), 20_000, Duration::from_secs(120), |e| {
        e["topic"] == TOPIC
    })
    .await;
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(60)).success());
}

/// GET `/status` on walrus's admin server: `progress.delivered_records`.
async fn delivered_records(port: u16) -> Option<u64> {
    let body: Value = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/status"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    body["progress"]["delivered_records"].as_u64()
}

/// The numbers of docs/benchmarks.md ("Large transaction: streaming on vs off"): one
/// transaction of `WALRUS_STREAMING_BENCH_ROWS` rows (default 2,000,000) into the null sink,
/// with `streaming` off and then on, in the same run on the same cluster (PostgreSQL's
/// default `logical_decoding_work_mem`, 64 MB): the time from COMMIT to the last delivered
/// event (`/status`, published every 200 ms) and to the confirmed commit, and what
/// PostgreSQL spilled to `pg_replslot` or streamed (`pg_stat_replication_slots`). Ignored in
/// the ordinary run (minutes, and GBs of WAL); run it with
/// `cargo nextest run --test e2e --run-ignored only streaming_on_vs_off_numbers --no-capture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: minutes and GBs of WAL"]
async fn streaming_on_vs_off_numbers() {
    let rows: i64 = std::env::var("WALRUS_STREAMING_BENCH_ROWS")
        .ok()
        .map(|s| s.parse().expect("a row count"))
        .unwrap_or(2_000_000);
    let env = Env::new().await;
    let c = env.sql().await;
    c.batch_execute("CREATE TABLE big (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let work_mem: String = c
        .query_one("SHOW logical_decoding_work_mem", &[])
        .await
        .unwrap()
        .get(0);
    eprintln!(
        "PostgreSQL {}, logical_decoding_work_mem {work_mem}, {rows} rows in one transaction",
        env.cluster.server_version()
    );
    eprintln!("| streaming | INSERT (s) | COMMIT → last event delivered (s) | COMMIT → commit confirmed (s) | spill_txns | spill_bytes | stream_txns | stream_bytes | total_bytes | walrus peak RSS (MiB) |");
    eprintln!("|---|---|---|---|---|---|---|---|---|---|");
    for mode in ["off", "on"] {
        let slot = format!("{}_{mode}", env.slot);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let text = env
            .config(
                r#"["public.big"]"#,
                &format!(
                    "streaming = \"{mode}\"\nspool_dir = \"{}\"",
                    env.dir.path().join(format!("spool-{mode}")).display()
                ),
            )
            .replace(&env.slot, &slot)
            .replace(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"127.0.0.1:{port}\""),
            )
            .replace(
                &format!("type = \"file\"\npath = \"{}\"", env.out_path().display()),
                "type = \"null\"",
            );
        assert!(text.contains("type = \"null\""));
        let cfg = env.write_config(&text);
        let mut walrus = start_streaming(&cfg, mode == "on").await;
        c.execute("SELECT pg_stat_reset_replication_slot($1)", &[&slot])
            .await
            .unwrap();
        let tx = env.sql().await;
        tx.batch_execute("BEGIN").await.unwrap();
        let t0 = Instant::now();
        insert(&tx, 1, rows).await;
        let insert_s = t0.elapsed().as_secs_f64();
        let commit = Instant::now();
        tx.batch_execute("COMMIT").await.unwrap();
        let end = wal_end_lsn(&c).await;
        let mut delivered_s = None;
        let mut confirmed_s = None;
        let deadline = Instant::now() + Duration::from_secs(3600);
        while delivered_s.is_none() || confirmed_s.is_none() {
            assert!(Instant::now() < deadline, "not delivered within an hour");
            assert!(walrus.is_running(), "walrus exited:\n{}", walrus.log());
            if delivered_s.is_none() && delivered_records(port).await.unwrap_or(0) >= rows as u64 {
                delivered_s = Some(commit.elapsed().as_secs_f64());
            }
            if confirmed_s.is_none() {
                let confirmed: Option<String> = c
                    .query_one(
                        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                        &[&slot],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if confirmed.is_some_and(|l| parse_lsn(&l) >= end) {
                    confirmed_s = Some(commit.elapsed().as_secs_f64());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let peak_mib = walrus.peak_rss_kib().unwrap_or(0) / 1024;
        // The walsender reports its statistics after the transaction; wait for them.
        let mut stats = (0i64, 0i64, 0i64, 0i64, 0i64);
        for _ in 0..100 {
            let r = c
                .query_one(
                    "SELECT spill_txns, spill_bytes, stream_txns, stream_bytes, total_bytes \
                     FROM pg_stat_replication_slots WHERE slot_name = $1",
                    &[&slot],
                )
                .await
                .unwrap();
            stats = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
            if stats.4 > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "| {mode} | {insert_s:.1} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {peak_mib} |",
            delivered_s.unwrap(),
            confirmed_s.unwrap(),
            stats.0,
            stats.1,
            stats.2,
            stats.3,
            stats.4
        );
        walrus.interrupt();
        assert!(walrus.wait(Duration::from_secs(120)).success());
        c.execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await
            .unwrap();
        c.batch_execute("TRUNCATE big; CHECKPOINT").await.unwrap();
    }
}
