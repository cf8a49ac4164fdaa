//! The pipelines compared on every workload, and how one run of one of them is driven and
//! timed.
//!
//! ```text
//!  slot ceiling ──walsender──▶ pg_recvlogical ──▶ /dev/null                 PostgreSQL's ceiling
//!  slot null    ──walsender──▶ walrus (null sink: decode, encode, confirm)
//!  slot file    ──walsender──▶ walrus ──▶ JSON Lines file
//!  slot kafka   ──walsender──▶ walrus ──▶ broker (Apache Kafka)             confirmed on delivery reports
//!  slot avro    ──walsender──▶ walrus (Avro keys and values, Apicurio registry) ──▶ broker
//!  slot diy     ──walsender──▶ pg_recvlogical -P wal2json ─pipe─▶ line_producer ──▶ broker
//!  slot debezium ─walsender──▶ Kafka Connect + Debezium 3.6.1 ──▶ broker     confirmed on offset flush
//! ```
//!
//! A backlog run starts the pipeline on a slot that already holds the workload and is done
//! when the pipeline is: `pg_recvlogical` exits at `--endpos`, walrus's slot confirms the end
//! LSN, the line producer exits with every line acknowledged. A live run starts the pipeline
//! on a fresh slot, waits until it streams, writes the workload meanwhile, and is done once the
//! end LSN is confirmed (for the do-it-yourself pipe: once its `pg_recvlogical`, stopped after
//! confirming, has let the producer drain). Each broker run gets a fresh Apache Kafka broker
//! (walrus-testkit, one KRaft node, with the JVM's full JIT: its numbers should not depend on
//! a broker tuned to start quickly), and what reached it is counted by consuming it
//! afterwards.
//!
//! Debezium runs as it is deployed: a Kafka Connect 4.4 standalone worker with the JVM
//! options of Kafka's own scripts (G1, 2 GiB heap, full JIT), started on the fresh broker
//! before the clock starts; the clock starts when its connector is submitted, and its CPU is
//! counted from that moment (the JVM's own start-up is not the pipeline's work). Its
//! connector has the settings walrus's run has: pgoutput on the same kind of slot and the
//! publication `bench_pub`, no snapshot, JSON without schemas (walrus's default), topics with
//! three partitions, and the worker's producer gets walrus's `lz4` and `linger.ms=5`.
//! Debezium confirms an LSN to PostgreSQL when Connect flushes its offsets, every second
//! here (walrus-testkit's `OFFSET_FLUSH_MS`; Connect's default is a minute), so its run ends
//! up to a second after its last delivery.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use walrus_testkit::debezium::POSTGRES_CONNECTOR;
use walrus_testkit::process::{count_lines, Profiler};
use walrus_testkit::{KafkaBroker, KafkaConnect, PgCluster, RegistryServer};

use crate::measure::{self, Sampler};

/// Longest a single pipeline run may take before the harness gives up.
const RUN_TIMEOUT: Duration = Duration::from_secs(3600);
/// The slot [`Server::last_commit_end`] decodes.
const PROBE_SLOT: &str = "probe";
/// Poll interval of the sampler and the slot.
const POLL: Duration = Duration::from_millis(20);

/// One of the compared pipelines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pipeline {
    /// `pg_recvlogical` (pgoutput, protocol 1) into /dev/null.
    Ceiling,
    /// walrus with the null sink.
    Null,
    /// walrus into a JSON Lines file.
    File,
    /// walrus into the broker.
    Kafka,
    /// walrus into the broker with Avro keys and values (schemas in a registry).
    Avro,
    /// `pg_recvlogical -P wal2json` piped into the line producer, into the broker.
    Diy,
    /// Debezium's PostgreSQL connector on Kafka Connect, into the broker.
    Debezium,
}

impl Pipeline {
    /// Every pipeline, in table order.
    pub const ALL: [Pipeline; 7] = [
        Pipeline::Ceiling,
        Pipeline::Null,
        Pipeline::File,
        Pipeline::Kafka,
        Pipeline::Avro,
        Pipeline::Diy,
        Pipeline::Debezium,
    ];

    /// Name used for the slot, on the command line and in the table.
    pub fn name(self) -> &'static str {
        match self {
            Pipeline::Ceiling => "ceiling",
            Pipeline::Null => "null",
            Pipeline::File => "file",
            Pipeline::Kafka => "kafka",
            Pipeline::Avro => "avro",
            Pipeline::Diy => "diy",
            Pipeline::Debezium => "debezium",
        }
    }

    /// What runs, for the table.
    pub fn label(self) -> &'static str {
        match self {
            Pipeline::Ceiling => "pg_recvlogical → /dev/null",
            Pipeline::Null => "walrus → null",
            Pipeline::File => "walrus → file",
            Pipeline::Kafka => "walrus → broker",
            Pipeline::Avro => "walrus → broker, Avro",
            Pipeline::Diy => "pg_recvlogical wal2json \\| producer → broker",
            Pipeline::Debezium => "Debezium 3.6.1 (Kafka Connect) → broker",
        }
    }

    /// The slot's output plugin.
    pub fn plugin(self) -> &'static str {
        if self == Pipeline::Diy {
            "wal2json"
        } else {
            "pgoutput"
        }
    }

    fn is_walrus(self) -> bool {
        matches!(
            self,
            Pipeline::Null | Pipeline::File | Pipeline::Kafka | Pipeline::Avro
        )
    }
}

/// The server a workload runs on, and a connection for polling it.
pub struct Server {
    /// The throwaway cluster.
    pub cluster: PgCluster,
    /// Database holding the `bench` table.
    pub db: String,
    /// Connection for slot polls and LSNs.
    pub sql: tokio_postgres::Client,
}

impl Server {
    /// `pg_current_wal_insert_lsn()`.
    pub async fn wal_insert_lsn(&self) -> u64 {
        let s: String = self
            .sql
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await
            .expect("lsn")
            .get(0);
        measure::parse_lsn(&s)
    }

    /// Creates `p`'s slot; an error (wal2json missing) is returned as text.
    pub async fn create_slot(&self, p: Pipeline) -> Result<(), String> {
        self.sql
            .batch_execute(&format!(
                "SELECT pg_create_logical_replication_slot('{}', '{}')",
                p.name(),
                p.plugin()
            ))
            .await
            .map_err(|e| {
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_string())
            })
    }

    /// Creates the probe slot (`test_decoding`) that [`Server::last_commit_end`] reads.
    pub async fn create_probe(&self) {
        self.sql
            .batch_execute(&format!(
                "SELECT pg_create_logical_replication_slot('{PROBE_SLOT}', 'test_decoding')"
            ))
            .await
            .expect("create the probe slot");
    }

    /// The end LSN of the last transaction committed since the probe slot was created
    /// (decoded by the server, untimed), and drops the probe.
    ///
    /// A pipeline that confirms only commit positions (Debezium without heartbeats) stops
    /// there, short of `pg_current_wal_insert_lsn()` when the server wrote WAL of its own
    /// after the workload (a running-transactions record, autovacuum); walrus and
    /// `pg_recvlogical` also confirm the positions of the walsender's keepalives.
    pub async fn last_commit_end(&self) -> u64 {
        let lsn: String = self
            .sql
            .query_one(
                &format!(
                    "SELECT max(lsn)::text FROM pg_logical_slot_peek_changes('{PROBE_SLOT}', \
                     NULL, NULL) WHERE data LIKE 'COMMIT%'"
                ),
                &[],
            )
            .await
            .expect("peek the probe slot")
            .get(0);
        let _ = self
            .sql
            .batch_execute(&format!("SELECT pg_drop_replication_slot('{PROBE_SLOT}')"))
            .await;
        measure::parse_lsn(&lsn)
    }

    /// Drops `p`'s slot (its WAL is no longer needed).
    pub async fn drop_slot(&self, p: Pipeline) {
        let _ = self
            .sql
            .batch_execute(&format!("SELECT pg_drop_replication_slot('{}')", p.name()))
            .await;
    }
}

/// What is being run: a backlog up to `end`, or a live workload written during the run.
pub enum Load<'a> {
    /// The slot already holds the workload, which ends at this LSN.
    Backlog { end: u64 },
    /// The workload's SQL, run while the pipeline streams.
    Live { sql: &'a str },
}

/// The measurements of one run.
pub struct Outcome {
    /// Which pipeline.
    pub pipeline: Pipeline,
    /// Seconds from start (backlog) or from the start of the writes (live) until done.
    pub seconds: f64,
    /// WAL bytes the workload wrote.
    pub wal_bytes: u64,
    /// Seconds until the slot confirmed the end LSN: from start (backlog), or from the
    /// end of the writes (live). `None` if it did not within the run.
    pub confirm_seconds: Option<f64>,
    /// CPU and memory per process.
    pub sampler: Sampler,
    /// Commit-to-delivery p50, p99, p999 in seconds (walrus runs of live workloads).
    pub latency: Vec<Option<f64>>,
    /// Records found at the destination (file lines, broker messages), when it keeps them.
    pub delivered: Option<u64>,
    /// Key and value bytes of the records at the broker (broker runs).
    pub bytes: Option<u64>,
    /// Records that should be there.
    pub expected: u64,
    /// Seconds the live writes took (their achieved rate is rows / this).
    pub load_seconds: Option<f64>,
}

/// Running processes of one pipeline.
struct Running {
    /// (role, child) in pipe order.
    children: Vec<(&'static str, Child)>,
    admin: Option<String>,
    out: Option<PathBuf>,
    broker: Option<KafkaBroker>,
    /// Kafka Connect running Debezium (the Debezium pipeline).
    connect: Option<KafkaConnect>,
    /// The schema registry (the Avro pipeline).
    registry: Option<RegistryServer>,
    topic: &'static str,
    _dir: tempfile::TempDir,
}

/// Runs `p` once on `load` and measures it. `expected` is how many records should reach
/// the destination (for walrus: rows plus a tombstone per delete).
pub async fn run(
    p: Pipeline,
    server: &Server,
    load: Load<'_>,
    expected: u64,
    tag: &str,
) -> Outcome {
    let live = matches!(load, Load::Live { .. });
    let end_if_backlog = match load {
        Load::Backlog { end } => Some(end),
        Load::Live { .. } => None,
    };
    let wal_start = server.wal_insert_lsn().await;
    let mut running = start(p, server, end_if_backlog, live);
    let mut sampler = Sampler::default();
    for (role, child) in &running.children {
        sampler.watch(role, child.id());
    }
    let perf = running
        .children
        .iter()
        .find(|(r, _)| *r == "walrus")
        .and_then(|(_, c)| Profiler::from_env(c.id(), &format!("{tag}-{}", p.name()), 499));
    let started = Instant::now();
    if p == Pipeline::Debezium {
        submit_debezium(&running, server, &mut sampler).await;
    }

    // A live workload starts once the pipeline streams from its slot.
    let mut writer = None;
    let mut load_started = started;
    if let Load::Live { sql } = load {
        loop {
            sampler.sample();
            let (_, active) = measure::slot_state(&server.sql, p.name()).await;
            if let Some(pid) = active {
                sampler.watch("walsender", pid);
                break;
            }
            assert_alive(&mut running, &mut sampler, p);
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{} did not start streaming",
                p.name()
            );
            tokio::time::sleep(POLL).await;
        }
        // Let walrus finish its start-up queries before the clock starts.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let c = server.cluster.connect(&server.db).await.expect("connect");
        if p == Pipeline::Debezium {
            server.create_probe().await;
        }
        let sql = sql.to_string();
        load_started = Instant::now();
        writer = Some(tokio::spawn(async move {
            // The server runs with synchronous_commit off (walrus-testkit), which holds WAL
            // back from walsenders until the WAL writer flushes it (up to wal_writer_delay,
            // 200 ms): that would be PostgreSQL's latency, not the pipeline's. fsync is off,
            // so flushing at each commit stays cheap.
            c.batch_execute("SET synchronous_commit = on")
                .await
                .expect("synchronous_commit");
            c.batch_execute(&sql).await.expect("live workload");
        }));
    }

    let mut end = end_if_backlog;
    let mut load_done: Option<Instant> = None;
    let mut confirmed_at: Option<Instant> = None;
    let mut done_at: Option<Instant> = None;
    let mut stopping_recvlogical = false;
    loop {
        sampler.sample();
        if let Some(w) = &writer {
            if w.is_finished() && end.is_none() {
                writer.take().unwrap().await.expect("live workload task");
                end = Some(if p == Pipeline::Debezium {
                    server.last_commit_end().await
                } else {
                    server.wal_insert_lsn().await
                });
                load_done = Some(Instant::now());
            }
        }
        let (confirmed, active) = measure::slot_state(&server.sql, p.name()).await;
        if let Some(pid) = active {
            sampler.watch("walsender", pid);
        }
        if let Some(end) = end {
            if confirmed >= end && confirmed_at.is_none() {
                confirmed_at = Some(Instant::now());
            }
        }
        if done_at.is_none() {
            let finished = match p {
                Pipeline::Ceiling if !live => exited(&running, "pg_recvlogical"),
                Pipeline::Diy if !live => exited(&running, "producer"),
                Pipeline::Diy => {
                    // pg_recvlogical confirms what it wrote into the pipe; once that is the
                    // end, stop it so the producer sees end of input, drains and exits.
                    // A second's grace: its confirmations run ahead of the pipe on keepalives.
                    if confirmed_at.is_some_and(|t| t.elapsed() > Duration::from_secs(1))
                        && !stopping_recvlogical
                    {
                        interrupt(&running, "pg_recvlogical");
                        stopping_recvlogical = true;
                    }
                    exited(&running, "producer")
                }
                _ => confirmed_at.is_some(),
            };
            if finished {
                done_at = Some(Instant::now());
                if live && p == Pipeline::Ceiling {
                    interrupt(&running, "pg_recvlogical");
                }
            } else {
                assert_alive(&mut running, &mut sampler, p);
            }
        }
        if let Some(done) = done_at {
            // Wait a little for a confirmation that comes with the client's exit.
            if confirmed_at.is_some() || done.elapsed() > Duration::from_secs(3) {
                break;
            }
        }
        assert!(
            started.elapsed() < RUN_TIMEOUT,
            "{} did not finish within {RUN_TIMEOUT:?}",
            p.name()
        );
        tokio::time::sleep(POLL).await;
    }
    if let Some(perf) = perf {
        perf.stop();
    }
    let latency = match &running.admin {
        Some(admin) if live => measure::latency_quantiles(admin, &[0.5, 0.99, 0.999]).await,
        _ => vec![],
    };
    let end = end.expect("end LSN");
    let done = done_at.expect("done");
    stop(&mut running, &mut sampler).await;

    let mut bytes = None;
    let delivered = match p {
        Pipeline::File => running.out.as_deref().map(count_lines),
        Pipeline::Kafka | Pipeline::Avro | Pipeline::Diy | Pipeline::Debezium => {
            let bootstrap = running.broker.as_ref().expect("broker").bootstrap();
            let topic = running.topic;
            let (n, b) = tokio::task::spawn_blocking(move || {
                measure::count_messages(&bootstrap, topic, expected, Duration::from_secs(30))
            })
            .await
            .expect("count");
            bytes = Some(b);
            Some(n)
        }
        _ => None,
    };
    let from = load_done.unwrap_or(started);
    Outcome {
        pipeline: p,
        seconds: done.duration_since(load_started).as_secs_f64(),
        wal_bytes: end.saturating_sub(if live { wal_start } else { 0 }),
        confirm_seconds: confirmed_at.map(|t| t.saturating_duration_since(from).as_secs_f64()),
        sampler,
        latency,
        delivered,
        bytes,
        expected,
        load_seconds: load_done.map(|t| t.duration_since(load_started).as_secs_f64()),
    }
}

/// Submits the Debezium connector (the clock runs) and counts the worker's CPU from now.
async fn submit_debezium(running: &Running, server: &Server, sampler: &mut Sampler) {
    let connect = running.connect.as_ref().expect("Kafka Connect");
    let pid = connect.pid().expect("Kafka Connect runs");
    sampler.watch_from_now("connect", pid);
    let port = server.cluster.port().to_string();
    let db = server.db.clone();
    let rest = connect.rest_url();
    let submitted = tokio::task::block_in_place(|| {
        connect.add_connector(
            "bench",
            &[
                ("connector.class", POSTGRES_CONNECTOR),
                ("database.hostname", "127.0.0.1"),
                ("database.port", &port),
                ("database.user", "postgres"),
                ("database.password", "unused"),
                ("database.dbname", &db),
                ("topic.prefix", "bench"),
                ("plugin.name", "pgoutput"),
                ("slot.name", Pipeline::Debezium.name()),
                ("publication.name", "bench_pub"),
                ("publication.autocreate.mode", "disabled"),
                ("snapshot.mode", "no_data"),
                ("table.include.list", "public.bench"),
                (
                    "key.converter",
                    "org.apache.kafka.connect.json.JsonConverter",
                ),
                ("key.converter.schemas.enable", "false"),
                (
                    "value.converter",
                    "org.apache.kafka.connect.json.JsonConverter",
                ),
                ("value.converter.schemas.enable", "false"),
                ("topic.creation.default.partitions", "3"),
                ("topic.creation.default.replication.factor", "1"),
            ],
        )
    });
    if let Err(e) = submitted {
        panic!(
            "the Debezium connector did not start ({rest}): {e:#}\n{}",
            connect.log_tail(60)
        );
    }
}

fn exited(running: &Running, role: &str) -> bool {
    running
        .children
        .iter()
        .filter(|(r, _)| *r == role)
        .all(|(_, c)| measure::has_exited(c.id()))
}

fn interrupt(running: &Running, role: &str) {
    for (r, c) in &running.children {
        if *r == role {
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
        }
    }
}

/// Reaps processes that exited (after one more sample, so their final CPU time counts)
/// and panics if one failed, or if walrus stopped before it was told to.
fn assert_alive(running: &mut Running, sampler: &mut Sampler, p: Pipeline) {
    for (role, c) in &mut running.children {
        if measure::has_exited(c.id()) {
            sampler.sample();
            if let Ok(Some(status)) = c.try_wait() {
                assert!(
                    *role != "walrus" && status.success(),
                    "{} ({role}) exited early: {status}",
                    p.name()
                );
            }
        }
    }
}

/// Stops what still runs (SIGINT, then waits), sampling until each process exits so its
/// final CPU time is kept.
async fn stop(running: &mut Running, sampler: &mut Sampler) {
    for (_, c) in &running.children {
        if !measure::has_exited(c.id()) {
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while running
        .children
        .iter()
        .any(|(_, c)| !measure::has_exited(c.id()))
        && Instant::now() < deadline
    {
        sampler.sample();
        tokio::time::sleep(POLL).await;
    }
    sampler.sample();
    for (_, c) in &mut running.children {
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn recvlogical(server: &Server, p: Pipeline, end: Option<u64>, out: &str) -> Command {
    let c = &server.cluster;
    let mut cmd = Command::new(c.bin("pg_recvlogical"));
    cmd.args([
        "-h",
        c.host(),
        "-p",
        &c.port().to_string(),
        "-U",
        "postgres",
    ])
    .args(["-d", &server.db, "--slot", p.name(), "--start", "--no-loop"])
    // Status and "fsync" (for /dev/null and a pipe: just the flush position it reports)
    // every second, so a live run sees its confirmations promptly.
    .args(["-s", "1", "-F", "1", "-f", out]);
    if let Some(end) = end {
        cmd.args([
            "--endpos",
            &format!("{:X}/{:X}", end >> 32, end & 0xffff_ffff),
        ]);
    }
    if p == Pipeline::Diy {
        cmd.args(["-o", "format-version=2", "-o", "include-transaction=false"]);
    } else {
        cmd.args(["-o", "proto_version=1", "-o", "publication_names=bench_pub"]);
    }
    cmd
}

/// The DIY pipe's producer: built once by `cargo build` (the benchmark runs under cargo).
pub fn line_producer() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "-q",
            "-p",
            "walrus-kafka",
            "--example",
            "line_producer",
        ])
        .status()
        .expect("cargo build line_producer");
    assert!(status.success(), "building the line producer failed");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    target.join("release/examples/line_producer")
}

fn start(p: Pipeline, server: &Server, end: Option<u64>, live: bool) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = matches!(
        p,
        Pipeline::Kafka | Pipeline::Avro | Pipeline::Diy | Pipeline::Debezium
    )
    .then(|| {
        KafkaBroker::builder()
            .full_jit()
            .start()
            .expect("start the Apache Kafka test broker")
    });
    let mut running = Running {
        children: vec![],
        admin: None,
        out: None,
        broker: None,
        connect: None,
        registry: None,
        topic: if p == Pipeline::Diy {
            "diy"
        } else {
            "bench.public.bench"
        },
        _dir: dir,
    };
    match p {
        Pipeline::Debezium => {
            let bootstrap = broker.as_ref().expect("broker").bootstrap();
            running.connect = Some(
                KafkaConnect::start_as_deployed(
                    &bootstrap,
                    &[
                        ("producer.compression.type", "lz4"),
                        ("producer.linger.ms", "5"),
                    ],
                )
                .expect("start Kafka Connect with Debezium (scripts/install-deps.sh installs it)"),
            );
        }
        Pipeline::Ceiling => {
            let child = recvlogical(server, p, end, "/dev/null")
                .spawn()
                .expect("run pg_recvlogical");
            running.children.push(("pg_recvlogical", child));
        }
        Pipeline::Diy => {
            let broker = broker.as_ref().expect("broker");
            let mut recv = recvlogical(server, p, end, "-")
                .stdout(Stdio::piped())
                .spawn()
                .expect("run pg_recvlogical");
            let pipe = recv.stdout.take().expect("pipe");
            let producer = Command::new(line_producer_path())
                .args([&broker.bootstrap(), "diy", "3"])
                .stdin(Stdio::from(pipe))
                .spawn()
                .expect("run line_producer");
            running.children.push(("pg_recvlogical", recv));
            running.children.push(("producer", producer));
        }
        Pipeline::Null | Pipeline::File | Pipeline::Kafka | Pipeline::Avro => {
            let admin = format!("127.0.0.1:{}", free_port());
            let sink = match p {
                Pipeline::Null => "type = \"null\"\n".to_string(),
                Pipeline::File => {
                    let out = running._dir.path().join("events.jsonl");
                    let s = format!("type = \"file\"\npath = \"{}\"\n", out.display());
                    running.out = Some(out);
                    s
                }
                _ => format!(
                    // An inline table, so that keys in $WALRUS_BENCH_CONFIG before any header
                    // still land in [sink] (e.g. "event_headers = false").
                    "type = \"kafka\"\nbrokers = \"{}\"\ntopic_creation = {{ partitions = 3, replication_factor = 1 }}\n",
                    broker.as_ref().expect("broker").bootstrap()
                ),
            };
            let sink = if p == Pipeline::Avro {
                let registry = RegistryServer::start()
                    .expect("start the Apicurio registry (scripts/install-deps.sh installs it)");
                let s = format!(
                    "{sink}[format]\nkey = \"avro\"\nvalue = \"avro\"\n[format.registry]\nurl = \"{}\"\n",
                    registry.url()
                );
                running.registry = Some(registry);
                s
            } else {
                sink
            };
            let config = running._dir.path().join("walrus.toml");
            std::fs::write(
                &config,
                format!(
                    "topic_prefix = \"bench\"\n\
                     [source]\nurl = \"{url}\"\nslot = \"{slot}\"\npublication = \"bench_pub\"\n\
                     tables = [\"public.bench\"]\nstatus_interval_ms = 50\n\
                     [heartbeat]\nenabled = false\n\
                     [watchdog]\nall_slots = false\n\
                     [admin]\nlisten = \"{admin}\"\ncommit_latency = {live}\n\
                     [sink]\n{sink}{extra}",
                    url = server.cluster.url(&server.db),
                    slot = p.name(),
                    // More walrus config for every walrus run: [sink] keys first, then whole
                    // tables (e.g. "event_headers = false\n[pipeline]\nmax_in_flight_bytes = 16777216").
                    extra = std::env::var("WALRUS_BENCH_CONFIG")
                        .map(|c| format!("\n{c}\n"))
                        .unwrap_or_default(),
                ),
            )
            .expect("config");
            let child = Command::new(walrus_bin())
                .args(["run", "--config"])
                .arg(&config)
                .env("WALRUS_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn walrus");
            running.children.push(("walrus", child));
            running.admin = Some(admin);
        }
    }
    debug_assert!(p.is_walrus() == running.admin.is_some());
    running.broker = broker;
    running
}

/// Path of the line producer, built by [`line_producer`] on first use (call it before
/// timing anything).
pub fn line_producer_path() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(line_producer).clone()
}

/// The walrus binary every run of this process uses: `$WALRUS_BENCH_BIN`, else a copy of
/// the release build taken at first use, so that a concurrent `cargo build` in a shared tree
/// cannot swap the binary between runs of one benchmark.
pub fn walrus_bin() -> PathBuf {
    static PATH: std::sync::OnceLock<(PathBuf, Option<tempfile::TempDir>)> =
        std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("WALRUS_BENCH_BIN") {
            return (PathBuf::from(p), None);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let copy = dir.path().join("walrus");
        std::fs::copy(env!("CARGO_BIN_EXE_walrus"), &copy).expect("copy the walrus binary");
        (copy, Some(dir))
    })
    .0
    .clone()
}
