//! End-to-end benchmark of walrus against PostgreSQL's own ceiling, a do-it-yourself pipe
//! and Debezium on Kafka Connect, side by side in the same run (issues 7 and 13).
//!
//! ```sh
//! cargo bench --bench e2e                      # W1–W5 at the issue's sizes, every pipeline
//! cargo bench --bench e2e -- w1 w5             # some workloads
//! WALRUS_BENCH_SCALE=0.1 cargo bench --bench e2e          # rows (and W5's duration) × 0.1
//! WALRUS_BENCH_PIPELINES=ceiling,file cargo bench --bench e2e  # some pipelines
//! WALRUS_BENCH_PERF_DIR=/tmp/perf cargo bench --bench e2e -- w1  # plus a perf profile per walrus run
//! WALRUS_BENCH_BIN=/tmp/walrus-before cargo bench --bench e2e    # another walrus build
//! WALRUS_BENCH_CONFIG=$'[pipeline]\nmax_in_flight_bytes = 16777216' cargo bench --bench e2e  # more walrus config
//! ```
//!
//! Per workload it starts a throwaway PostgreSQL (walrus-testkit, `fsync=off`) and runs each
//! pipeline of [`pipelines::Pipeline`] in turn: for a backlog workload (W1–W4) all slots are
//! created first and the workload is written once, so every pipeline drains the same WAL; for
//! the live W5 each pipeline gets a fresh slot and the paced workload is written while it
//! runs. Broker runs get a fresh Apache Kafka broker each. It prints one Markdown table row
//! per run as it finishes:
//!
//! - rows/s and MB/s of WAL (the workload's WAL bytes over the run's time), and the ratio of
//!   rows/s to `pg_recvlogical`'s in the same workload;
//! - CPU-seconds of every process involved, split into the client side (walrus, or
//!   `pg_recvlogical` plus the producer) and PostgreSQL's walsender serving the slot, plus
//!   client CPU-µs per row;
//! - peak RSS of the client processes;
//! - time until the slot's `confirmed_flush_lsn` reached the workload's end (from the start
//!   of a backlog run, from the last commit of a live one);
//! - for walrus on W5: commit-to-delivery p50/p99/p999 from its
//!   `walrus_commit_to_delivery_seconds` histogram (`[admin] commit_latency = true`), which is
//!   recorded where the sink reports delivery (for the broker: the delivery-report callback);
//! - how many rows reached the destination (file lines, messages consumed from the broker).
//!
//! The machine is shared and noisy: compare ratios within a run, and CPU per row.

mod measure;
mod pipelines;
mod workloads;

use pipelines::{Load, Outcome, Pipeline, Server};
use workloads::{Shape, Workload};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let scale: f64 = std::env::var("WALRUS_BENCH_SCALE")
        .ok()
        .map(|s| s.parse().expect("WALRUS_BENCH_SCALE is a number"))
        .unwrap_or(1.0);
    let mut pipelines: Vec<Pipeline> = match std::env::var("WALRUS_BENCH_PIPELINES") {
        Ok(list) => Pipeline::ALL
            .into_iter()
            .filter(|p| list.split(',').any(|n| n.trim() == p.name()))
            .collect(),
        Err(_) => Pipeline::ALL.to_vec(),
    };
    if pipelines.contains(&Pipeline::Diy) && !wal2json_installed() {
        eprintln!(
            "skipping the do-it-yourself pipe: the wal2json output plugin is not installed \
             (apt-get install postgresql-<major>-wal2json, or scripts/install-deps.sh --bench)"
        );
        pipelines.retain(|p| *p != Pipeline::Diy);
    }
    if pipelines.contains(&Pipeline::Avro) && !walrus_testkit::registry::available() {
        eprintln!(
            "skipping walrus → broker, Avro: the Apicurio registry or Java 21+ is missing \
             (scripts/install-deps.sh installs them)"
        );
        pipelines.retain(|p| *p != Pipeline::Avro);
    }
    if pipelines.contains(&Pipeline::Diy) {
        // Built before anything is timed.
        pipelines::line_producer_path();
    }
    eprintln!("walrus binary: {}", pipelines::walrus_bin().display());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    println!("{}", header());
    for w in workloads::all(scale) {
        if !args.is_empty() && !args.iter().any(|a| *a == w.name) {
            continue;
        }
        runtime.block_on(run_workload(&w, &pipelines));
    }
}

/// Whether the server's library directory holds wal2json.
fn wal2json_installed() -> bool {
    let Ok(bindir) = walrus_testkit::find_bindir() else {
        return false;
    };
    let Ok(out) = std::process::Command::new(bindir.join("pg_config"))
        .arg("--pkglibdir")
        .output()
    else {
        // No pg_config next to the server: try the slot and let it fail there.
        return true;
    };
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    std::path::Path::new(&dir).join("wal2json.so").exists()
}

async fn run_workload(w: &Workload, pipelines: &[Pipeline]) {
    let cluster = walrus_testkit::PgCluster::new().expect("start PostgreSQL");
    let db = "bench".to_string();
    cluster.create_database(&db).await.expect("create database");
    let sql = cluster.connect(&db).await.expect("connect");
    // One statement per call: slots cannot be created in a transaction that wrote.
    for s in workloads::SCHEMA {
        sql.batch_execute(s).await.expect("schema");
    }
    let server = Server { cluster, db, sql };
    let rows = w.rows();
    // walrus follows each delete with a tombstone; the DIY pipe sends one line per change.
    let expected = |p: Pipeline| {
        if p == Pipeline::Diy {
            rows
        } else {
            rows + w.deletes()
        }
    };
    let mut ceiling: Option<f64> = None;
    match w.shape {
        Shape::Backlog { .. } => {
            let mut ready = vec![];
            for &p in pipelines {
                match server.create_slot(p).await {
                    Ok(()) => ready.push(p),
                    Err(e) => eprintln!("{}: skipping {}: {e}", w.name, p.name()),
                }
            }
            let debezium = ready.contains(&Pipeline::Debezium);
            if debezium {
                server.create_probe().await;
            }
            let start = server.wal_insert_lsn().await;
            let t = std::time::Instant::now();
            server.sql.batch_execute(&w.sql()).await.expect("workload");
            let end = server.wal_insert_lsn().await;
            // Debezium confirms commit positions only: its run ends at the last commit.
            let commit_end = if debezium {
                server.last_commit_end().await
            } else {
                end
            };
            eprintln!(
                "{}: wrote {rows} rows, {:.0} MB of WAL in {:.1} s",
                w.name,
                (end - start) as f64 / 1e6,
                t.elapsed().as_secs_f64()
            );
            for p in ready {
                let end_of = if p == Pipeline::Debezium {
                    commit_end
                } else {
                    end
                };
                let mut o = pipelines::run(
                    p,
                    &server,
                    Load::Backlog { end: end_of },
                    expected(p),
                    w.name,
                )
                .await;
                o.wal_bytes = end - start;
                report(w, &o, rows, &mut ceiling);
                server.drop_slot(p).await;
            }
        }
        Shape::Live { .. } => {
            let sql = w.sql();
            for &p in pipelines {
                server
                    .sql
                    .batch_execute("TRUNCATE bench")
                    .await
                    .expect("truncate");
                if let Err(e) = server.create_slot(p).await {
                    eprintln!("{}: skipping {}: {e}", w.name, p.name());
                    continue;
                }
                let o =
                    pipelines::run(p, &server, Load::Live { sql: &sql }, expected(p), w.name).await;
                report(w, &o, rows, &mut ceiling);
                server.drop_slot(p).await;
            }
        }
    }
}

fn header() -> String {
    "| workload | pipeline | rows/s | MB/s | × pg_recvlogical | client CPU-s | walsender CPU-s | client CPU-µs/row | peak RSS MiB | confirm s | commit→ack p50 / p99 / p999 ms | rows at destination |\n\
     |---|---|---|---|---|---|---|---|---|---|---|---|"
        .to_string()
}

/// Prints the table row of one run (and remembers the ceiling's rate for the ratios).
fn report(w: &Workload, o: &Outcome, rows: u64, ceiling: &mut Option<f64>) {
    let rate = rows as f64 / o.seconds;
    if o.pipeline == Pipeline::Ceiling {
        *ceiling = Some(rate);
    }
    let ratio = ceiling.map_or("—".to_string(), |c| format!("{:.2}x", rate / c));
    let client: Vec<String> = o
        .sampler
        .cpu
        .iter()
        .filter(|(r, _)| **r != "walsender")
        .map(|(r, c)| format!("{r} {c:.2}"))
        .collect();
    let client_cpu = o.sampler.client_cpu();
    let walsender = o
        .sampler
        .cpu
        .get("walsender")
        .map_or("—".to_string(), |c| format!("{c:.2}"));
    let ms = |v: &Option<f64>| v.map_or(">60000".to_string(), |s| format!("{:.1}", s * 1e3));
    let latency = if o.latency.len() == 3 {
        format!(
            "{} / {} / {}",
            ms(&o.latency[0]),
            ms(&o.latency[1]),
            ms(&o.latency[2])
        )
    } else {
        "—".to_string()
    };
    let per_record = match (o.delivered, o.bytes) {
        (Some(n), Some(b)) if n > 0 => format!(" ({:.0} B/record)", b as f64 / n as f64),
        _ => String::new(),
    };
    let delivered = o.delivered.map_or("—".to_string(), |n| {
        if n >= o.expected {
            format!("{n}{per_record}")
        } else {
            format!("**{n} of {}**{per_record}", o.expected)
        }
    });
    let achieved = o.load_seconds.map_or(String::new(), |s| {
        format!(" (writes {:.0} tx/s)", rows as f64 / s)
    });
    println!(
        "| {} ({}){achieved} | {} | {:.0} | {:.1} | {ratio} | {} | {walsender} | {:.2} | {:.0} | {} | {latency} | {delivered} |",
        w.name,
        w.description,
        o.pipeline.label(),
        rate,
        o.wal_bytes as f64 / 1e6 / o.seconds,
        if client.is_empty() { "—".to_string() } else { client.join(" + ") },
        client_cpu * 1e6 / rows as f64,
        o.sampler.peak_rss_mib(),
        o.confirm_seconds.map_or("—".to_string(), |s| format!("{s:.2}")),
    );
}
