//! The scenario: both services side by side through the same broker freeze and walrus crash.
//!
//! ```text
//!  t=0                 freeze_after        +freeze_for   +kill_after_resume        end
//!  │ orders at `rate` (both services, every tick) ────────────────────────────────────▶│
//!  │                   │ broker SIGSTOP ────▶ SIGCONT     │ walrus kill -9, restart
//! ```
//!
//! Then it waits (up to `arrival_timeout`) until the fulfillment consumer has shipped every
//! outbox order, and until the naive topic has been quiet for a few seconds, and counts from
//! the database: orders written, shipped, shipped twice, never shipped (lost).
//!
//! Everything is throwaway: a PostgreSQL cluster and an Apache Kafka broker (KRaft, one node)
//! from walrus-testkit (which handles running as root, free ports, the template cluster and
//! Kafka's jars from `scripts/install-deps.sh`'s cache) and a walrus process
//! with its config in a temp dir, all gone when [`run`] returns.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use tokio::sync::watch;
use walrus_testkit::{unique_name, KafkaBroker, PgCluster};

use crate::fulfillment::{self, SharedStats};
use crate::service::{Mode, OrderService, NAIVE_TOPIC, OUTBOX_TOPIC, SCHEMA};

/// Partitions of both topics.
pub const PARTITIONS: i32 = 3;

/// The scenario's knobs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Orders per service.
    pub orders: u64,
    /// Orders per second per service.
    pub rate: f64,
    /// When the broker is frozen, from the first order.
    pub freeze_after: Duration,
    /// How long it stays frozen.
    pub freeze_for: Duration,
    /// When walrus is killed (`kill -9`) and restarted, after the broker resumes.
    pub kill_after_resume: Duration,
    /// The naive service's request-sized publish timeout.
    pub publish_timeout: Duration,
    /// Longest wait for the outbox orders to be shipped after the last order.
    pub arrival_timeout: Duration,
    /// The `walrus` binary.
    pub walrus_bin: PathBuf,
}

impl Config {
    /// The demo's defaults: 300 orders per service at 10/s, the broker frozen for 8 s after
    /// 10 s, walrus killed 0.3 s after the broker resumes, a 2 s publish timeout.
    pub fn demo(walrus_bin: PathBuf) -> Config {
        Config {
            orders: 300,
            rate: 10.0,
            freeze_after: Duration::from_secs(10),
            freeze_for: Duration::from_secs(8),
            kill_after_resume: Duration::from_millis(300),
            publish_timeout: Duration::from_secs(2),
            arrival_timeout: Duration::from_secs(120),
            walrus_bin,
        }
    }
}

/// One path's outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathReport {
    /// Orders committed to the database.
    pub written: u64,
    /// Orders with at least one shipment.
    pub fulfilled: u64,
    /// Orders whose event was delivered more than once (fulfilled twice without the dedupe).
    pub delivered_twice: u64,
    /// Deliveries the consumer recognised as already processed and skipped.
    pub duplicates_suppressed: u64,
    /// Orders with more than one shipment (after the dedupe: must be 0).
    pub fulfilled_twice: u64,
    /// Committed orders never shipped.
    pub lost: u64,
    /// Publishes that failed or timed out and were answered with success (naive path).
    pub failed_publishes: Option<u64>,
}

/// Both paths, and what happened when.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The outbox path (order + outbox row in one transaction, relayed by walrus).
    pub outbox: PathReport,
    /// The naive dual write (commit, then publish).
    pub naive: PathReport,
    /// Milestones, `(seconds since the first order, what)`.
    pub timeline: Vec<(f64, String)>,
}

/// A table row's value for one path.
type Cell = fn(&PathReport) -> Option<u64>;

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: [(&str, Cell); 7] = [
            ("orders written", |r| Some(r.written)),
            ("orders fulfilled", |r| Some(r.fulfilled)),
            ("orders fulfilled twice before dedupe", |r| {
                Some(r.delivered_twice)
            }),
            ("duplicates suppressed", |r| Some(r.duplicates_suppressed)),
            ("orders fulfilled twice after dedupe", |r| {
                Some(r.fulfilled_twice)
            }),
            ("orders lost", |r| Some(r.lost)),
            ("publishes failed, answered 200", |r| r.failed_publishes),
        ];
        let cell = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        writeln!(
            f,
            "| {:<38} | {:>15} | {:>17} |",
            "", "outbox + walrus", "naive dual write"
        )?;
        writeln!(f, "|{:-<40}|{:->17}|{:->19}|", "", ":", ":")?;
        for (name, get) in rows {
            writeln!(
                f,
                "| {:<38} | {:>15} | {:>17} |",
                name,
                cell(get(&self.outbox)),
                cell(get(&self.naive))
            )?;
        }
        Ok(())
    }
}

/// A `walrus run` child process, killed on drop.
struct Walrus {
    child: Child,
    log: PathBuf,
}

impl Walrus {
    fn start(bin: &Path, config: &Path, log: PathBuf) -> Result<Walrus> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .context("walrus log file")?;
        let child = Command::new(bin)
            .args(["run", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Walrus { child, log })
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log shows `n` sessions replicating.
    async fn wait_replicating(&mut self, n: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.log_text().matches("starting replication").count() < n {
            if let Some(status) = self.child.try_wait()? {
                bail!("walrus exited with {status}; log:\n{}", self.log_text());
            }
            if Instant::now() > deadline {
                bail!(
                    "walrus did not start replicating within {timeout:?}; log:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Walrus {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn walrus_config(pg_url: &str, brokers: &str) -> String {
    format!(
        r#"# The outbox relay: only the outbox table is captured, routed by [[outbox]].
topic_prefix = "shop"
[source]
url = "{pg_url}"
slot = "walrus_orders"
publication = "walrus_orders"
tables = ["public.outbox"]
[admin]
listen = "127.0.0.1:0"
[sink]
type = "kafka"
brokers = "{brokers}"
[[outbox]]
table = "public.outbox"
fields = [{{ column = "type", placement = "header", name = "eventType" }}]
"#
    )
}

/// Creates the two topics (3 partitions each) unless they exist.
pub async fn create_topics(brokers: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("admin client")?;
    let topics = [
        NewTopic::new(OUTBOX_TOPIC, PARTITIONS, TopicReplication::Fixed(1)),
        NewTopic::new(NAIVE_TOPIC, PARTITIONS, TopicReplication::Fixed(1)),
    ];
    let results = admin
        .create_topics(topics.iter(), &AdminOptions::new())
        .await
        .context("creating topics")?;
    for r in results {
        if let Err((topic, e)) = r {
            if e != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                bail!("creating topic {topic}: {e}");
            }
        }
    }
    Ok(())
}

/// Counts one path's outcome from the database and the consumer's stats.
async fn path_report(
    db: &tokio_postgres::Client,
    path: &str,
    stats: &SharedStats,
    failed_publishes: Option<u64>,
) -> Result<PathReport> {
    let row = db
        .query_one(
            "SELECT
               (SELECT count(*) FROM orders WHERE path = $1),
               (SELECT count(DISTINCT order_id) FROM shipments WHERE path = $1),
               (SELECT count(*) FROM (SELECT order_id FROM shipments WHERE path = $1
                                      GROUP BY order_id HAVING count(*) > 1) d),
               (SELECT count(*) FROM orders o WHERE o.path = $1
                  AND NOT EXISTS (SELECT 1 FROM shipments s WHERE s.order_id = o.id))",
            &[&path],
        )
        .await?;
    let s = stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let n = |i: usize| row.get::<_, i64>(i) as u64;
    Ok(PathReport {
        written: n(0),
        fulfilled: n(1),
        delivered_twice: s.delivered_more_than_once(),
        duplicates_suppressed: s.duplicates_suppressed,
        fulfilled_twice: n(2),
        lost: n(3),
        failed_publishes,
    })
}

async fn shipped(db: &tokio_postgres::Client, path: &str) -> Result<u64> {
    let n: i64 = db
        .query_one(
            "SELECT count(DISTINCT order_id) FROM shipments WHERE path = $1",
            &[&path],
        )
        .await?
        .get(0);
    Ok(n as u64)
}

/// Runs the scenario; `progress` is called with each milestone as it happens.
pub async fn run(cfg: &Config, progress: impl Fn(f64, &str)) -> Result<Report> {
    if !cfg.walrus_bin.is_file() {
        bail!(
            "the walrus binary {} does not exist: build it with `cargo build --release --bin walrus`",
            cfg.walrus_bin.display()
        );
    }
    // A broker of its own: the scenario freezes it. A JVM start takes seconds: off the
    // async threads.
    let broker = tokio::task::spawn_blocking(KafkaBroker::start)
        .await?
        .context("starting the Apache Kafka test broker")?;
    let pg = PgCluster::new().context("starting a throwaway PostgreSQL")?;
    let dbname = unique_name("shop");
    pg.create_database(&dbname).await?;
    let admin_db = pg.connect(&dbname).await?;
    admin_db.batch_execute(SCHEMA).await.context("schema")?;
    let brokers = broker.bootstrap();
    create_topics(&brokers).await?;

    let dir = tempfile::tempdir()?;
    let config = dir.path().join("walrus.toml");
    std::fs::write(&config, walrus_config(&pg.url(&dbname), &brokers))?;
    let log = dir.path().join("walrus.log");
    let mut walrus = Walrus::start(&cfg.walrus_bin, &config, log.clone())?;
    walrus
        .wait_replicating(1, Duration::from_secs(60))
        .await
        .context("walrus")?;

    // The consumers, one per path (one topic each), on their own connections.
    let (stop_tx, stop_rx) = watch::channel(false);
    let outbox_stats = SharedStats::default();
    let naive_stats = SharedStats::default();
    let mut consumers = Vec::new();
    for (topic, path, stats) in [
        (OUTBOX_TOPIC, "outbox", outbox_stats.clone()),
        (NAIVE_TOPIC, "naive", naive_stats.clone()),
    ] {
        let db = pg.connect(&dbname).await?;
        let brokers = brokers.clone();
        let stop = stop_rx.clone();
        consumers.push(tokio::spawn(async move {
            fulfillment::run(&brokers, topic, PARTITIONS, path, db, stats, stop).await
        }));
    }

    let outbox = Arc::new(OrderService::new(pg.connect(&dbname).await?, Mode::Outbox));
    let naive = Arc::new(OrderService::new(
        pg.connect(&dbname).await?,
        Mode::naive(&brokers, NAIVE_TOPIC, cfg.publish_timeout)?,
    ));

    // The workload: every tick, one request to each service, each in its own task (requests
    // run concurrently, as in a server: a slow publish does not hold up the next order).
    let mut report = Report::default();
    let start = Instant::now();
    let note = |what: &str, report: &mut Report| {
        let t = start.elapsed().as_secs_f64();
        progress(t, what);
        report.timeline.push((t, what.to_string()));
    };
    let resume_at = cfg.freeze_after + cfg.freeze_for;
    let kill_at = resume_at + cfg.kill_after_resume;
    let (mut frozen, mut resumed, mut killed) = (false, false, false);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / cfg.rate));
    let mut requests = tokio::task::JoinSet::new();
    note(
        &format!(
            "placing {} orders per service at {}/s",
            cfg.orders, cfg.rate
        ),
        &mut report,
    );
    let mut i = 0;
    while i < cfg.orders || !killed {
        ticker.tick().await;
        let now = start.elapsed();
        if !frozen && now >= cfg.freeze_after {
            broker.pause()?;
            frozen = true;
            note("broker frozen (SIGSTOP)", &mut report);
        }
        if frozen && !resumed && now >= resume_at {
            broker.resume()?;
            resumed = true;
            note("broker resumed (SIGCONT)", &mut report);
        }
        if resumed && !killed && now >= kill_at {
            walrus.kill9();
            note("walrus killed (kill -9); restarting it", &mut report);
            walrus = Walrus::start(&cfg.walrus_bin, &config, log.clone())?;
            killed = true;
        }
        if i < cfg.orders {
            let customer = format!("customer-{}", i % 17);
            let total = 1000 + (i as i64 * 37) % 9000;
            for service in [outbox.clone(), naive.clone()] {
                let customer = customer.clone();
                requests.spawn(async move { service.place_order(&customer, total).await });
            }
            i += 1;
        }
    }
    let mut failed_requests = 0;
    while let Some(r) = requests.join_next().await {
        if !matches!(r, Ok(Ok(_))) {
            failed_requests += 1;
        }
    }
    note(
        &format!("all requests answered ({failed_requests} failed)"),
        &mut report,
    );
    // Restarted walrus replays from the slot's confirmed position: the second session.
    walrus
        .wait_replicating(2, Duration::from_secs(60))
        .await
        .context("walrus after its restart")?;

    // Arrival: every outbox order shipped (bounded), then the naive topic quiet for 3 s.
    let written_outbox: i64 = admin_db
        .query_one("SELECT count(*) FROM orders WHERE path = 'outbox'", &[])
        .await?
        .get(0);
    let deadline = Instant::now() + cfg.arrival_timeout;
    while shipped(&admin_db, "outbox").await? < written_outbox as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    note("outbox orders arrived (or the wait timed out)", &mut report);
    let mut last = (shipped(&admin_db, "naive").await?, Instant::now());
    while last.1.elapsed() < Duration::from_secs(3) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let n = shipped(&admin_db, "naive").await?;
        if n != last.0 {
            last = (n, Instant::now());
        }
    }
    // A little longer, so late re-deliveries are counted too.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop_tx.send(true);
    for c in consumers {
        c.await.context("consumer task")??;
    }
    note("consumers stopped", &mut report);

    report.outbox = path_report(&admin_db, "outbox", &outbox_stats, None).await?;
    report.naive = path_report(
        &admin_db,
        "naive",
        &naive_stats,
        Some(naive.failed_publishes()),
    )
    .await?;
    drop(walrus);
    Ok(report)
}
