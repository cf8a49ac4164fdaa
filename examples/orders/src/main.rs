//! `walrus-example-orders scenario`: the dual-write scenario in one command (see the crate
//! docs and `docs/outbox.md`). `schema`, `place` and `fulfill` run the pieces on their own
//! against your PostgreSQL and Kafka (with walrus relaying `public.outbox`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use walrus_example_orders::fulfillment;
use walrus_example_orders::scenario::{self, Config};
use walrus_example_orders::service::{Mode, OrderService, NAIVE_TOPIC, OUTBOX_TOPIC, SCHEMA};

#[derive(Parser)]
#[command(about = "The dual-write scenario: transactional outbox + walrus vs. naive dual write")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    /// Order and outbox row in one transaction (walrus relays `public.outbox`).
    Outbox,
    /// Commit, then publish to the broker directly.
    Naive,
}

impl ModeArg {
    fn topic(self) -> &'static str {
        match self {
            ModeArg::Outbox => OUTBOX_TOPIC,
            ModeArg::Naive => NAIVE_TOPIC,
        }
    }
    fn path(self) -> &'static str {
        match self {
            ModeArg::Outbox => "outbox",
            ModeArg::Naive => "naive",
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Prints the tables the service and the consumer use (apply them with psql).
    Schema,
    /// Places orders through the order service.
    Place {
        /// PostgreSQL URL of the service's database.
        #[arg(long, env = "DATABASE_URL")]
        db: String,
        /// Kafka bootstrap servers (naive mode publishes there).
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        #[arg(long, value_enum, default_value = "outbox")]
        mode: ModeArg,
        /// Orders to place.
        #[arg(long, default_value_t = 100)]
        orders: u64,
        /// Orders per second.
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
        /// The naive mode's publish timeout, in seconds.
        #[arg(long, default_value_t = 2.0)]
        publish_timeout: f64,
    },
    /// Runs the idempotent fulfillment consumer until Ctrl-C, then prints what it did.
    Fulfill {
        /// PostgreSQL URL of the consumer's database (its processed_events and shipments).
        #[arg(long, env = "DATABASE_URL")]
        db: String,
        /// Kafka bootstrap servers.
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        /// Which service's topic to consume.
        #[arg(long, value_enum, default_value = "outbox")]
        mode: ModeArg,
        /// Partitions of the topic (all are read from the beginning; the topics are created
        /// with 3 when missing).
        #[arg(long, default_value_t = 3)]
        partitions: i32,
    },
    /// Runs both services side by side against a throwaway PostgreSQL and a test broker,
    /// freezes the broker, kills walrus once, and prints what arrived.
    Scenario {
        /// Orders per service.
        #[arg(long, default_value_t = 300)]
        orders: u64,
        /// Orders per second per service.
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
        /// Seconds after the first order when the broker is frozen (SIGSTOP).
        #[arg(long, default_value_t = 10.0)]
        freeze_after: f64,
        /// Seconds the broker stays frozen.
        #[arg(long, default_value_t = 8.0)]
        freeze_for: f64,
        /// The naive service's publish timeout, in seconds (a request's budget).
        #[arg(long, default_value_t = 2.0)]
        publish_timeout: f64,
        /// The walrus binary (default: `walrus` next to this binary, i.e. target/release).
        #[arg(long, env = "WALRUS_BIN")]
        walrus: Option<PathBuf>,
    },
}

fn sibling_walrus() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name("walrus");
    if !p.is_file() {
        bail!(
            "no walrus binary at {}: run `cargo build --release --bin walrus` first, or pass --walrus",
            p.display()
        );
    }
    Ok(p)
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let (orders, rate, freeze_after, freeze_for, publish_timeout, walrus) =
        match Cli::parse().command {
            Cmd::Scenario {
                orders,
                rate,
                freeze_after,
                freeze_for,
                publish_timeout,
                walrus,
            } => (
                orders,
                rate,
                freeze_after,
                freeze_for,
                publish_timeout,
                walrus,
            ),
            Cmd::Schema => {
                print!("{SCHEMA}");
                return Ok(());
            }
            Cmd::Place {
                db,
                brokers,
                mode,
                orders,
                rate,
                publish_timeout,
            } => return place(&db, &brokers, mode, orders, rate, publish_timeout).await,
            Cmd::Fulfill {
                db,
                brokers,
                mode,
                partitions,
            } => return fulfill(&db, &brokers, mode, partitions).await,
        };
    let walrus_bin = match walrus {
        Some(p) => p,
        None => sibling_walrus()?,
    };
    let cfg = Config {
        orders,
        rate,
        freeze_after: Duration::from_secs_f64(freeze_after),
        freeze_for: Duration::from_secs_f64(freeze_for),
        publish_timeout: Duration::from_secs_f64(publish_timeout),
        ..Config::demo(walrus_bin)
    };
    let report = scenario::run(&cfg, |t, what| eprintln!("[{t:6.1} s] {what}")).await?;
    println!();
    print!("{report}");
    println!();
    println!(
        "outbox: {} lost, {} fulfilled twice; naive: {} lost ({} publishes failed and were answered with success)",
        report.outbox.lost,
        report.outbox.fulfilled_twice,
        report.naive.lost,
        report.naive.failed_publishes.unwrap_or(0)
    );
    Ok(())
}

async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::error!(error = %e, "database connection closed");
        }
    });
    Ok(client)
}

async fn place(
    db: &str,
    brokers: &str,
    mode: ModeArg,
    orders: u64,
    rate: f64,
    publish_timeout: f64,
) -> Result<()> {
    let mode = match mode {
        ModeArg::Outbox => Mode::Outbox,
        ModeArg::Naive => {
            scenario::create_topics(brokers).await?;
            Mode::naive(
                brokers,
                NAIVE_TOPIC,
                Duration::from_secs_f64(publish_timeout),
            )?
        }
    };
    let service = Arc::new(OrderService::new(connect(db).await?, mode));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..orders {
        ticker.tick().await;
        let service = service.clone();
        requests.spawn(async move {
            service
                .place_order(
                    &format!("customer-{}", i % 17),
                    1000 + (i as i64 * 37) % 9000,
                )
                .await
        });
    }
    let (mut placed, mut failed) = (0, 0);
    while let Some(r) = requests.join_next().await {
        match r {
            Ok(Ok(_)) => placed += 1,
            Ok(Err(e)) => {
                failed += 1;
                tracing::error!(error = %e, "order not placed");
            }
            Err(e) => {
                failed += 1;
                tracing::error!(error = %e, "request task failed");
            }
        }
    }
    println!(
        "{placed} orders placed, {failed} failed; {} publishes failed and were answered with success",
        service.failed_publishes()
    );
    Ok(())
}

async fn fulfill(db: &str, brokers: &str, mode: ModeArg, partitions: i32) -> Result<()> {
    let db = connect(db).await?;
    scenario::create_topics(brokers).await?;
    let stats = fulfillment::SharedStats::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let consumer = {
        let (brokers, stats) = (brokers.to_string(), stats.clone());
        tokio::spawn(async move {
            fulfillment::run(
                &brokers,
                mode.topic(),
                partitions,
                mode.path(),
                db,
                stats,
                stop_rx,
            )
            .await
        })
    };
    eprintln!("consuming {} (Ctrl-C to stop)", mode.topic());
    tokio::signal::ctrl_c().await?;
    let _ = stop_tx.send(true);
    consumer.await??;
    let s = stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
    println!(
        "{} received, {} shipped, {} duplicates suppressed ({} events delivered more than once)",
        s.received,
        s.shipped,
        s.duplicates_suppressed,
        s.delivered_more_than_once()
    );
    Ok(())
}
