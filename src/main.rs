//! The `walrus` binary: command-line parsing, logging, signal handling, and the retry loop
//! around replication sessions. Everything else lives in the library crates; this is the
//! only place that uses `anyhow` and decides exit codes.
//!
//! `walrus run` runs sessions until SIGINT/SIGTERM: a retryable error (PostgreSQL restarting,
//! a sink hiccup, the slot still held by a dying walsender) ends the session and a new one
//! starts after a backoff, resuming from the slot; a fatal error exits non-zero with a hint,
//! leaving the slot — and the WAL it holds — for an operator.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::sync::watch;
use walrus_core::config::{Config, SinkConfig};
use walrus_core::error::{Classify, ErrorClass};
use walrus_core::sink::Delivered;
use walrus_core::telemetry;
use walrus_postgres::check::{self, Status};
use walrus_stdout::LinesSink;

/// Longest pause between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// First pause after a retryable error.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// A session that ran this long resets the backoff.
const HEALTHY_SESSION: Duration = Duration::from_secs(60);

#[derive(Parser)]
#[command(
    name = "walrus",
    version,
    about = "Change data capture from PostgreSQL to Kafka, stdout or files, in Debezium's event format"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Stream changes until SIGINT/SIGTERM.
    Run {
        /// The TOML config file.
        #[arg(long, short, env = "WALRUS_CONFIG", default_value = "walrus.toml")]
        config: PathBuf,
    },
    /// Check that PostgreSQL and the config are ready for walrus; prints the fix for each
    /// problem and exits non-zero if any check fails.
    Check {
        /// The TOML config file.
        #[arg(long, short, env = "WALRUS_CONFIG", default_value = "walrus.toml")]
        config: PathBuf,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { config } => run(config).await,
            Command::Check { config, json } => check_cmd(config, json).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WALRUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // stdout belongs to the stdout sink; logs go to stderr.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(path).with_context(|| format!("loading {}", path.display()))
}

async fn check_cmd(path: PathBuf, json: bool) -> anyhow::Result<ExitCode> {
    let config = load(&path)?;
    let results = check::run(&config).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        for r in &results {
            let tag = match r.status {
                Status::Ok => "ok  ",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            println!("{tag} {:<28} {}", r.name, r.detail);
            if let Some(fix) = &r.fix {
                println!("     fix: {fix}");
            }
        }
    }
    let failed = results.iter().filter(|r| r.status == Status::Fail).count();
    if failed > 0 {
        if !json {
            println!("\n{failed} check(s) failed");
        }
        Ok(ExitCode::FAILURE)
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

async fn run(path: PathBuf) -> anyhow::Result<ExitCode> {
    let config = load(&path)?;
    telemetry::describe();
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping: delivering what was read, then confirming it");
        let _ = stop_tx.send(true);
        wait_for_signal().await;
        tracing::warn!("second signal: exiting without a clean stop (nothing is lost; the next run repeats the unconfirmed part)");
        std::process::exit(130);
    });

    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = Instant::now();
        let delivered = Delivered::new();
        let result = match &config.sink {
            SinkConfig::Stdout(_) => {
                let sink = LinesSink::stdout(delivered.clone());
                walrus_postgres::source::run(&config, sink, delivered, stop_rx.clone()).await
            }
            SinkConfig::File(f) => match LinesSink::file(&f.path, f.fsync, delivered.clone()) {
                Ok(sink) => {
                    walrus_postgres::source::run(&config, sink, delivered, stop_rx.clone()).await
                }
                Err(e) => Err(e.into()),
            },
        };
        let err = match result {
            Ok(summary) => {
                tracing::info!(confirmed_lsn = %summary.confirmed, events = summary.events, "stopped cleanly");
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) => e,
        };
        let kind = err.kind();
        metrics::counter!(telemetry::ERRORS_TOTAL, "kind" => format!("{kind:?}")).increment(1);
        if *stop_rx.borrow() {
            tracing::error!(error = %err, "stopped with an error");
            return Ok(ExitCode::FAILURE);
        }
        match kind.class() {
            ErrorClass::Retryable => {
                if started.elapsed() >= HEALTHY_SESSION {
                    backoff = FIRST_BACKOFF;
                }
                tracing::warn!(error = %err, hint = kind.hint(), retry_in_ms = backoff.as_millis() as u64, "session ended; retrying");
                metrics::counter!(telemetry::RETRIES_TOTAL, "kind" => format!("{kind:?}"))
                    .increment(1);
                let mut stop = stop_rx.clone();
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => return Ok(ExitCode::SUCCESS),
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            ErrorClass::Fatal => {
                tracing::error!(error = %err, "fatal error; the slot keeps the WAL until this is fixed");
                eprintln!("error: {err}\nhint: {}", kind.hint());
                return Ok(ExitCode::FAILURE);
            }
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
