//! `walrus-example-orders scenario`: the dual-write scenario in one command (see the crate
//! docs and `docs/outbox.md`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use walrus_example_orders::scenario::{self, Config};

#[derive(Parser)]
#[command(about = "The dual-write scenario: transactional outbox + walrus vs. naive dual write")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
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
    let Cmd::Scenario {
        orders,
        rate,
        freeze_after,
        freeze_for,
        publish_timeout,
        walrus,
    } = Cli::parse().command;
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
