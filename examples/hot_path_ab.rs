//! A/B measurement of walrus builds on the same WAL, for optimising the hot path.
//!
//! ```sh
//! cargo build --release --bin walrus && cp target/release/walrus /tmp/walrus-before
//! # ...change something, build again...
//! cargo run --release --example hot_path_ab -- --workload w1 --sink kafka --reps 2 \
//!     /tmp/walrus-before target/release/walrus
//! ```
//!
//! One throwaway PostgreSQL (walrus-testkit) holds the workload's WAL once; every run of
//! every build drains it through its own pgoutput slot, so the builds see exactly the same
//! changes. Runs alternate between the builds (A B A B …) so a burst of load on this shared
//! machine hits both. Each run is timed until the slot's `confirmed_flush_lsn` reaches the
//! end of the workload; the figure that matters is **walrus CPU-seconds per million rows**
//! (user + system over all threads, from `/proc`), which is far less sensitive to other
//! processes than wall time. `--sink kafka` starts a fresh Apache Kafka broker (walrus-testkit)
//! per run, with topics of 3 partitions; `--sink file` writes to a temporary file; `--sink
//! null` encodes and drops.
//!
//! `pg_recvlogical` draining the same WAL into /dev/null runs once first, for the ratio.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use walrus_testkit::process::{cpu_seconds, peak_rss_kib};
use walrus_testkit::{KafkaBroker, PgCluster};

fn workload_sql(name: &str, rows: u64) -> String {
    match name {
        "w1" => format!(
            "DO $$ BEGIN FOR i IN 0..{} LOOP
               INSERT INTO bench SELECT g, md5(g::text), g % 1000, now()
                 FROM generate_series(i * 1000 + 1, i * 1000 + 1000) g;
               COMMIT;
             END LOOP; END $$",
            rows / 1000 - 1
        ),
        "w2" => format!(
            "DO $$ BEGIN FOR i IN 1..{rows} LOOP
               INSERT INTO bench VALUES (i, md5(i::text), i % 1000, now());
               COMMIT;
             END LOOP; END $$"
        ),
        "w3" => format!(
            "INSERT INTO bench SELECT g, md5(g::text), g % 1000, now() FROM generate_series(1, {rows}) g"
        ),
        other => panic!("unknown workload {other} (w1, w2, w3)"),
    }
}

struct Args {
    workload: String,
    rows: u64,
    sink: String,
    reps: usize,
    bins: Vec<String>,
    perf_dir: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        workload: "w1".into(),
        rows: 0,
        sink: "file".into(),
        reps: 1,
        bins: Vec::new(),
        perf_dir: std::env::var("WALRUS_BENCH_PERF_DIR").ok(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--workload" => a.workload = it.next().expect("--workload value"),
            "--rows" => a.rows = it.next().expect("--rows value").parse().expect("rows"),
            "--sink" => a.sink = it.next().expect("--sink value"),
            "--reps" => a.reps = it.next().expect("--reps value").parse().expect("reps"),
            "--bench" => {}
            other => a.bins.push(other.to_string()),
        }
    }
    if a.rows == 0 {
        a.rows = if a.workload == "w2" {
            200_000
        } else {
            1_000_000
        };
    }
    assert!(!a.bins.is_empty(), "name at least one walrus binary");
    a
}

fn parse_lsn(s: &str) -> u64 {
    let (hi, lo) = s.split_once('/').expect("lsn");
    (u64::from_str_radix(hi, 16).expect("hex") << 32) | u64::from_str_radix(lo, 16).expect("hex")
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let cluster = PgCluster::new().expect("start PostgreSQL");
    let db = "bench";
    cluster.create_database(db).await.expect("create database");
    let c = cluster.connect(db).await.expect("connect");
    for sql in [
        "CREATE TABLE bench (id int PRIMARY KEY, a text, b int, c timestamptz)",
        "CREATE PUBLICATION bench_pub FOR TABLE bench",
        "SELECT pg_create_logical_replication_slot('ceiling', 'pgoutput')",
    ] {
        c.batch_execute(sql).await.expect("setup");
    }
    for rep in 0..args.reps {
        for b in 0..args.bins.len() {
            c.batch_execute(&format!(
                "SELECT pg_create_logical_replication_slot('ab_{rep}_{b}', 'pgoutput')"
            ))
            .await
            .expect("slot");
        }
    }
    c.batch_execute(&workload_sql(&args.workload, args.rows))
        .await
        .expect("workload");
    let end: String = c
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .expect("lsn")
        .get(0);
    let end_lsn = parse_lsn(&end);

    let started = Instant::now();
    let status = Command::new(cluster.bin("pg_recvlogical"))
        .args(["-h", cluster.host(), "-p", &cluster.port().to_string()])
        .args(["-U", "postgres", "-d", db, "--slot", "ceiling", "--start"])
        .args(["--no-loop", "-f", "/dev/null", "--endpos", &end])
        .args(["-o", "proto_version=1", "-o", "publication_names=bench_pub"])
        .status()
        .expect("run pg_recvlogical");
    assert!(status.success(), "pg_recvlogical failed");
    let ceiling = args.rows as f64 / started.elapsed().as_secs_f64();
    println!(
        "{} {} rows, sink {}: pg_recvlogical {:.0} rows/s (load {})",
        args.workload,
        args.rows,
        args.sink,
        ceiling,
        load_average()
    );
    println!("| build | rep | rows/s | ratio | CPU-s | CPU-s per 1M rows | rows per CPU-s | peak RSS MiB | load |");
    println!("|---|---|---|---|---|---|---|---|---|");

    let mut per_bin: Vec<Vec<f64>> = vec![Vec::new(); args.bins.len()];
    for rep in 0..args.reps {
        for (b, bin) in args.bins.iter().enumerate() {
            let dir = tempfile::tempdir().expect("tempdir");
            let broker = (args.sink == "kafka").then(|| {
                KafkaBroker::builder()
                    .full_jit()
                    .start()
                    .expect("an Apache Kafka broker")
            });
            let sink = match args.sink.as_str() {
                "file" => format!(
                    "type = \"file\"\npath = \"{}\"\n",
                    dir.path().join("out.jsonl").display()
                ),
                "null" => "type = \"null\"\n".to_string(),
                "kafka" => format!(
                    "type = \"kafka\"\nbrokers = \"{}\"\n[sink.topic_creation]\npartitions = 3\nreplication_factor = 1\n",
                    broker.as_ref().expect("broker").bootstrap()
                ),
                other => panic!("unknown sink {other}"),
            };
            let config = dir.path().join("walrus.toml");
            std::fs::write(
                &config,
                format!(
                    "topic_prefix = \"bench\"\n[source]\nurl = \"{}\"\nslot = \"ab_{rep}_{b}\"\npublication = \"bench_pub\"\ntables = [\"public.bench\"]\nstatus_interval_ms = 50\n[admin]\nlisten = \"127.0.0.1:0\"\n[sink]\n{sink}",
                    cluster.url(db),
                ),
            )
            .expect("config");
            let load = load_average();
            let started = Instant::now();
            let mut child = Command::new(bin)
                .args(["run", "--config"])
                .arg(&config)
                .env("WALRUS_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn walrus");
            let pid = child.id();
            let perf = args.perf_dir.as_ref().map(|d| {
                Command::new("perf")
                    .args(["record", "-e", "cpu-clock", "-F", "499", "-g", "-p"])
                    .arg(pid.to_string())
                    .arg("-o")
                    .arg(format!(
                        "{d}/{}-{}-{rep}-{b}.perf.data",
                        args.workload, args.sink
                    ))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("perf")
            });
            let (mut peak, mut cpu) = (0, 0.0);
            loop {
                peak = peak.max(peak_rss_kib(pid).unwrap_or(0));
                cpu = cpu_seconds(pid).unwrap_or(cpu);
                let confirmed: Option<String> = c
                    .query_one(
                        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                        &[&format!("ab_{rep}_{b}")],
                    )
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
                assert!(
                    child.try_wait().expect("wait").is_none(),
                    "walrus exited early"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let wall = started.elapsed().as_secs_f64();
            if let Some(mut p) = perf {
                let _ = Command::new("kill")
                    .args(["-INT", &p.id().to_string()])
                    .status();
                let _ = p.wait();
            }
            let _ = Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
            let _ = child.wait();
            drop(broker);
            let rate = args.rows as f64 / wall;
            let per_m = cpu * 1e6 / args.rows as f64;
            per_bin[b].push(per_m);
            println!(
                "| {bin} | {rep} | {rate:.0} | {:.2}x | {cpu:.2} | {per_m:.2} | {:.0} | {} | {load} |",
                rate / ceiling,
                args.rows as f64 / cpu.max(0.001),
                peak / 1024
            );
        }
    }
    for (b, bin) in args.bins.iter().enumerate() {
        let mut v = per_bin[b].clone();
        v.sort_by(|x, y| x.partial_cmp(y).expect("finite"));
        println!(
            "{bin}: CPU-s per 1M rows min {:.2} median {:.2}",
            v[0],
            v[v.len() / 2]
        );
    }
}
