//! Initial snapshot throughput against PostgreSQL's own ceiling, in the same run.
//!
//! `cargo bench --bench snapshot -- --rows 10000000 [--workers 2] [--chunk-size 20000]
//! [--out /dev/null]`. It starts a throwaway PostgreSQL (walrus-testkit), fills one table,
//! then reads it twice:
//!
//! 1. `psql -c "COPY (SELECT * FROM t) TO STDOUT" > /dev/null`: PostgreSQL producing the
//!    rows as text with a client that does nothing — the ceiling;
//! 2. `walrus run` (release build) with `[snapshot] mode = "initial_only"` into the file
//!    sink: planning, parallel chunked COPY, parsing, Debezium JSON encoding, writing; timed
//!    from start to exit (it exits once every row is delivered).
//!
//! It prints rows/s for both, their ratio, walrus's CPU-seconds and peak RSS. The machine
//! is shared and noisy: compare ratios, not absolute numbers.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use walrus_testkit::process::{count_lines, cpu_seconds, peak_rss_kib, Profiler};
use walrus_testkit::PgCluster;

struct Args {
    rows: u64,
    workers: usize,
    chunk_size: usize,
    out: Option<String>,
    /// `[snapshot] binary_copy` values to run, in order.
    formats: Vec<bool>,
}

fn args() -> Args {
    let mut a = Args {
        rows: 10_000_000,
        workers: 2,
        chunk_size: 20_000,
        out: None,
        formats: vec![false, true],
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let next = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--rows" => a.rows = next.parse().expect("--rows N"),
            "--workers" => a.workers = next.parse().expect("--workers N"),
            "--chunk-size" => a.chunk_size = next.parse().expect("--chunk-size N"),
            "--out" => a.out = Some(next),
            "--formats" => {
                a.formats = next
                    .split(',')
                    .map(|f| match f {
                        "text" => false,
                        "binary" => true,
                        _ => panic!("--formats text,binary"),
                    })
                    .collect()
            }
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

fn main() {
    let a = args();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(run(a));
}

async fn run(a: Args) {
    let cluster = PgCluster::new().expect("start PostgreSQL");
    let db = "bench";
    cluster.create_database(db).await.expect("create database");
    let c = cluster.connect(db).await.expect("connect");
    let fill = Instant::now();
    for sql in [
        "CREATE TABLE t (id bigint PRIMARY KEY, name text NOT NULL, qty int, price numeric(12,2), created timestamptz, active bool)".to_string(),
        format!(
            "INSERT INTO t SELECT g, md5(g::text), g % 1000, (g % 100000) / 100.0, \
             timestamptz '2024-01-01' + g * interval '1 second', g % 3 = 0 \
             FROM generate_series(1, {}) g",
            a.rows
        ),
        "VACUUM ANALYZE t".to_string(),
        "CREATE PUBLICATION bench_pub FOR TABLE t".to_string(),
    ] {
        c.batch_execute(&sql).await.expect("setup");
    }
    eprintln!(
        "filled {} rows in {:.1}s",
        a.rows,
        fill.elapsed().as_secs_f64()
    );

    // Warm the cache the same way for both readers.
    c.batch_execute("SELECT count(*) FROM t")
        .await
        .expect("warm");

    // The ceiling: COPY to a client that discards everything.
    let started = Instant::now();
    let status = Command::new(cluster.bin("psql"))
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
        .args(["-X", "-q", "-c", "COPY (SELECT * FROM t) TO STDOUT"])
        .stdout(Stdio::null())
        .status()
        .expect("run psql");
    assert!(status.success(), "psql COPY failed");
    let ceiling = started.elapsed();

    let ceiling_rate = a.rows as f64 / ceiling.as_secs_f64();
    println!("| rows | workers | chunk | COPY format | output | bytes/row | COPY→/dev/null rows/s | walrus snapshot rows/s | ratio | walrus CPU-s | walrus peak RSS MiB |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &binary in &a.formats {
        let (walrus, cpu, peak_kib, bytes_per_row) = run_walrus(&a, &cluster, db, binary);
        let walrus_rate = a.rows as f64 / walrus.as_secs_f64();
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.2}x | {:.1} | {} |",
            a.rows,
            a.workers,
            a.chunk_size,
            if binary { "binary" } else { "text" },
            if a.out.as_deref() == Some("/dev/null") {
                "/dev/null"
            } else {
                "file"
            },
            bytes_per_row,
            ceiling_rate,
            walrus_rate,
            walrus_rate / ceiling_rate,
            cpu,
            peak_kib / 1024
        );
    }
}

/// One `walrus run` snapshot of the table: elapsed, CPU-seconds, peak RSS (KiB), bytes/row.
fn run_walrus(
    a: &Args,
    cluster: &PgCluster,
    db: &str,
    binary: bool,
) -> (Duration, f64, u64, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| dir.path().join("events.jsonl").display().to_string());
    let config = dir.path().join("walrus.toml");
    std::fs::write(
        &config,
        format!(
            "topic_prefix = \"bench\"\n[source]\nurl = \"{}\"\nslot = \"walrus\"\npublication = \"bench_pub\"\ntables = [\"public.t\"]\n\
             [snapshot]\nmode = \"initial_only\"\nworkers = {}\nchunk_size = {}\nbinary_copy = {}\n[sink]\ntype = \"file\"\npath = \"{}\"\n",
            cluster.url(db),
            a.workers,
            a.chunk_size,
            binary,
            out
        ),
    )
    .expect("config");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_walrus"))
        .args(["run", "--config"])
        .arg(&config)
        .env(
            "WALRUS_LOG",
            "warn,walrus_postgres::snapshots::initial=info",
        )
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn walrus");
    let pid = child.id();
    // With WALRUS_BENCH_PERF_DIR set, a perf profile of walrus per run.
    let perf = Profiler::from_env(pid, "snapshot", 999);
    let mut peak_kib = 0;
    let mut cpu = 0.0;
    let status = loop {
        peak_kib = peak_kib.max(peak_rss_kib(pid).unwrap_or(0));
        cpu = cpu_seconds(pid).unwrap_or(cpu);
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "walrus did not finish"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let walrus = started.elapsed();
    if let Some(perf) = perf {
        perf.stop();
    }
    assert!(status.success(), "walrus failed");
    let mut bytes_per_row = String::from("-");
    if out != "/dev/null" {
        let lines = count_lines(std::path::Path::new(&out));
        assert_eq!(lines, a.rows, "rows in the file");
        let bytes = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        bytes_per_row = format!("{}", bytes / a.rows.max(1));
    }

    (walrus, cpu, peak_kib, bytes_per_row)
}
