//! End-to-end throughput of walrus against PostgreSQL's own ceiling, in the same run.
//!
//! `cargo bench --bench e2e` (optionally `-- w1 w3` to pick workloads). For each workload it
//! starts a throwaway PostgreSQL (walrus-testkit), creates two pgoutput slots, writes the
//! workload (so both slots hold the same WAL), then drains it twice:
//!
//! 1. `pg_recvlogical` into /dev/null: PostgreSQL's walsender decoding the slot with a
//!    client that does nothing — the ceiling;
//! 2. `walrus run` (release build) into the file sink, timed until the slot's
//!    `confirmed_flush_lsn` reaches the end of the workload, i.e. until every row was
//!    written, flushed and confirmed.
//!
//! It prints rows/s for both, their ratio, walrus's CPU-seconds (user + system, all threads)
//! and peak RSS. The machine is shared and noisy, so compare ratios, not absolute numbers.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use walrus_testkit::process::{count_lines, cpu_seconds, peak_rss_kib, Profiler};
use walrus_testkit::PgCluster;

struct Workload {
    name: &'static str,
    description: &'static str,
    rows: u64,
    sql: fn(u64) -> String,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "w1",
        description: "1M rows in 1,000-row transactions",
        rows: 1_000_000,
        sql: |rows| {
            format!(
                "DO $$ BEGIN FOR i IN 0..{} LOOP
                   INSERT INTO bench SELECT g, md5(g::text), g % 1000, now()
                     FROM generate_series(i * 1000 + 1, i * 1000 + 1000) g;
                   COMMIT;
                 END LOOP; END $$",
                rows / 1000 - 1
            )
        },
    },
    Workload {
        name: "w2",
        description: "200k single-row transactions",
        rows: 200_000,
        sql: |rows| {
            format!(
                "DO $$ BEGIN FOR i IN 1..{rows} LOOP
                   INSERT INTO bench VALUES (i, md5(i::text), i % 1000, now());
                   COMMIT;
                 END LOOP; END $$"
            )
        },
    },
    Workload {
        name: "w3",
        description: "one 1M-row transaction",
        rows: 1_000_000,
        sql: |rows| {
            format!("INSERT INTO bench SELECT g, md5(g::text), g % 1000, now() FROM generate_series(1, {rows}) g")
        },
    },
];

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    println!(
        "| workload | rows | pg_recvlogical rows/s | walrus→file rows/s | ratio | walrus CPU-s | rows per walrus CPU-s | walrus peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for w in WORKLOADS {
        if !args.is_empty() && !args.iter().any(|a| a == w.name) {
            continue;
        }
        runtime.block_on(run(w));
    }
}

async fn run(w: &Workload) {
    let cluster = PgCluster::new().expect("start PostgreSQL");
    let db = "bench";
    cluster.create_database(db).await.expect("create database");
    let c = cluster.connect(db).await.expect("connect");
    // One statement per call: a multi-statement string is one transaction, and slots cannot
    // be created in a transaction that wrote.
    for sql in [
        "CREATE TABLE bench (id int PRIMARY KEY, a text, b int, c timestamptz)",
        "CREATE PUBLICATION bench_pub FOR TABLE bench",
        "SELECT pg_create_logical_replication_slot('ceiling', 'pgoutput')",
        "SELECT pg_create_logical_replication_slot('walrus', 'pgoutput')",
    ] {
        c.batch_execute(sql).await.expect("setup");
    }
    c.batch_execute(&(w.sql)(w.rows)).await.expect("workload");
    let end: String = c
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .expect("lsn")
        .get(0);

    // The ceiling: pg_recvlogical drains the same WAL into /dev/null.
    let started = Instant::now();
    let status = Command::new(cluster.bin("pg_recvlogical"))
        .args([
            "-h",
            cluster.host(),
            "-p",
            &cluster.port().to_string(),
            "-U",
            "postgres",
            "-d",
            db,
        ])
        .args([
            "--slot",
            "ceiling",
            "--start",
            "--no-loop",
            "-f",
            "/dev/null",
            "--endpos",
            &end,
        ])
        .args(["-o", "proto_version=1", "-o", "publication_names=bench_pub"])
        .status()
        .expect("run pg_recvlogical");
    assert!(status.success(), "pg_recvlogical failed");
    let ceiling = started.elapsed();

    // walrus into a file, until the slot confirms the end of the workload.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("events.jsonl");
    let config = dir.path().join("walrus.toml");
    std::fs::write(
        &config,
        format!(
            "topic_prefix = \"bench\"\n[source]\nurl = \"{}\"\nslot = \"walrus\"\npublication = \"bench_pub\"\ntables = [\"public.bench\"]\nstatus_interval_ms = 50\n[sink]\ntype = \"file\"\npath = \"{}\"\n",
            cluster.url(db),
            out.display()
        ),
    )
    .expect("config");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_walrus"))
        .args(["run", "--config"])
        .arg(&config)
        .env("WALRUS_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn walrus");
    let pid = child.id();
    // With WALRUS_BENCH_PERF_DIR set, a perf profile of walrus per run.
    let perf = Profiler::from_env(pid, w.name, 499);
    let end_lsn = parse_lsn(&end);
    let mut peak_kib = 0;
    let mut cpu = 0.0;
    loop {
        peak_kib = peak_kib.max(peak_rss_kib(pid).unwrap_or(0));
        cpu = cpu_seconds(pid).unwrap_or(cpu);
        let confirmed: Option<String> = c
            .query_one("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'walrus'", &[])
            .await
            .expect("slot")
            .get(0);
        if confirmed.map(|s| parse_lsn(&s)).unwrap_or(0) >= end_lsn {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "walrus did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let walrus = started.elapsed();
    if let Some(perf) = perf {
        perf.stop();
    }
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let lines = count_lines(&out);
    assert!(
        lines >= w.rows,
        "{} rows expected in the file, found {lines}",
        w.rows
    );

    let ceiling_rate = w.rows as f64 / ceiling.as_secs_f64();
    let walrus_rate = w.rows as f64 / walrus.as_secs_f64();
    println!(
        "| {} ({}) | {} | {:.0} | {:.0} | {:.2}x | {:.2} | {:.0} | {} |",
        w.name,
        w.description,
        w.rows,
        ceiling_rate,
        walrus_rate,
        walrus_rate / ceiling_rate,
        cpu,
        w.rows as f64 / cpu.max(0.001),
        peak_kib / 1024
    );
}

fn parse_lsn(s: &str) -> u64 {
    let (hi, lo) = s.split_once('/').expect("lsn");
    (u64::from_str_radix(hi, 16).expect("hex") << 32) | u64::from_str_radix(lo, 16).expect("hex")
}
