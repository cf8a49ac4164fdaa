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
use walrus_core::alert::SlotHealth;
use walrus_core::config::Config;
use walrus_core::error::{Classify, ErrorClass};
use walrus_core::sink::Delivered;
use walrus_core::status::{PipelineState, Status as Shared};
use walrus_core::telemetry;
use walrus_postgres::operations::check::{self, Status};

mod admin;
mod alerts;
mod sinks;
mod status_cmd;

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
    /// Show every replication slot of the cluster (lag, wal_status, active) and walrus's
    /// pipeline state, read from the admin server when walrus runs.
    Status {
        /// The TOML config file.
        #[arg(long, short, env = "WALRUS_CONFIG", default_value = "walrus.toml")]
        config: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Start (or stop, pause, resume) an incremental snapshot: writes a signal row into
    /// `[snapshot] signal_table`, which a running walrus reads from the stream; the tables
    /// are re-read in chunks while streaming goes on.
    Snapshot {
        /// The TOML config file.
        #[arg(long, short, env = "WALRUS_CONFIG", default_value = "walrus.toml")]
        config: PathBuf,
        /// A table to snapshot (`schema.table`); repeat for several. With --stop: the
        /// tables to stop (default: all).
        #[arg(long = "table", value_name = "SCHEMA.TABLE")]
        tables: Vec<String>,
        /// Read only the rows matching this SQL condition (Debezium's
        /// `additional-conditions`), for every --table.
        #[arg(long, value_name = "SQL")]
        filter: Option<String>,
        /// Stop the incremental snapshot (of the --table tables, or all).
        #[arg(long, conflicts_with_all = ["pause", "resume", "filter"])]
        stop: bool,
        /// Pause it: no further chunks are read until --resume.
        #[arg(long, conflicts_with_all = ["resume", "filter"])]
        pause: bool,
        /// Resume a paused incremental snapshot.
        #[arg(long, conflicts_with = "filter")]
        resume: bool,
    },
    /// Write a walrus.toml equivalent to another tool's configuration
    /// (docs/migrating-from-debezium.md).
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
}

#[derive(Subcommand)]
enum ImportFrom {
    /// A Kafka Connect config of Debezium's PostgreSQL connector: REST JSON
    /// (`{"name", "config"}`), flat JSON or `.properties`. What cannot be mapped is printed
    /// and written as a comment block at the top of the file.
    Debezium {
        /// The connector config file.
        file: PathBuf,
        /// Where to write the walrus.toml (standard output when not given).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Kafka bootstrap servers for `[sink] brokers` (the worker's `bootstrap.servers`);
        /// without it the file reads `${KAFKA_BOOTSTRAP_SERVERS}`.
        #[arg(long)]
        brokers: Option<String>,
        /// Overwrite the output file when it exists.
        #[arg(long)]
        force: bool,
    },
}

/// Tokio worker threads when `TOKIO_WORKER_THREADS` is not set (see `main`).
const DEFAULT_WORKER_THREADS: usize = 1;

/// jemalloc for Rust and, through its unprefixed `malloc`, for librdkafka too. Profiles
/// of W1 into the broker spent about a fifth of walrus's CPU in glibc's allocator: records
/// are allocated on the tokio thread and freed on librdkafka's threads, which glibc's
/// per-thread arenas handle poorly (`malloc_consolidate`, `unlink_chunk`). With jemalloc the
/// same run took ~11% less CPU per row (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    // One worker thread unless TOKIO_WORKER_THREADS says otherwise: the replication
    // connection's task hands walrus every event through a channel, and with the two on
    // different threads each hand-off is a futex wake-up and a context switch, which cost
    // more than decoding and encoding the event (docs/benchmarks.md, optimisation log).
    // On one thread the hand-off is a queue push. CPU-heavy work that must not stall the
    // stream (librdkafka, file writes) has threads of its own anyway.
    let threads = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_WORKER_THREADS);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let main = async move {
        match cli.command {
            Command::Run { config } => run(config).await,
            Command::Check { config, json } => check_cmd(config, json).await,
            Command::Status { config, json } => status_cmd::run(&load(&config)?, json).await,
            Command::Snapshot {
                config,
                tables,
                filter,
                stop,
                pause,
                resume,
            } => snapshot_cmd(config, tables, filter, stop, pause, resume).await,
            Command::Import { from } => import_cmd(from),
        }
    };
    // Spawned rather than run by `block_on`, which would poll it on the main thread,
    // across threads from the tasks it talks to.
    let result = runtime.block_on(async move {
        tokio::spawn(main)
            .await
            .unwrap_or_else(|e| Err(anyhow::anyhow!("walrus's main task failed: {e}")))
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `walrus import debezium`: writes the walrus.toml, prints what was not mapped to stderr.
fn import_cmd(from: ImportFrom) -> anyhow::Result<ExitCode> {
    use walrus_core::config::debezium::{self, ConnectorConfig, FindingKind, ImportOptions};
    let ImportFrom::Debezium {
        file,
        output,
        brokers,
        force,
    } = from;
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let connector = ConnectorConfig::parse(&text)?;
    let import = debezium::import(&connector, &ImportOptions { brokers })?;
    match &output {
        Some(path) => {
            if path.exists() && !force {
                anyhow::bail!("{} exists; pass --force to overwrite it", path.display());
            }
            std::fs::write(path, &import.toml)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => print!("{}", import.toml),
    }
    for (kind, title) in [
        (FindingKind::Unmapped, "not mapped (act on these)"),
        (FindingKind::Review, "review"),
        (FindingKind::NoEffect, "no effect in walrus"),
    ] {
        let items: Vec<_> = import.of_kind(kind).collect();
        if !items.is_empty() {
            eprintln!("{title}:");
            for f in items {
                eprintln!(
                    "  {} {}
      {}",
                    f.key, f.value, f.text
                );
            }
        }
    }
    for (var, what) in &import.env {
        eprintln!("set {var}: {what}");
    }
    if let Some(path) = &output {
        eprintln!(
            "wrote {}; next: walrus check --config {}",
            path.display(),
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `walrus snapshot`: writes a signal row that the running walrus reads from the stream.
async fn snapshot_cmd(
    path: PathBuf,
    tables: Vec<String>,
    filter: Option<String>,
    stop: bool,
    pause: bool,
    resume: bool,
) -> anyhow::Result<ExitCode> {
    use walrus_postgres::snapshots::incremental::{send_signal, Command as Signal};
    let config = load(&path)?;
    let command = if stop {
        Signal::Stop { tables }
    } else if pause {
        Signal::Pause
    } else if resume {
        Signal::Resume
    } else {
        Signal::Execute { tables, filter }
    };
    let id = match send_signal(&config, &command).await {
        Ok(id) => id,
        // A refused table's message names the fix itself.
        Err(e @ walrus_postgres::PgError::Snapshot { .. }) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => {
            eprintln!("error: {e}\nhint: {}", e.kind().hint());
            return Ok(ExitCode::FAILURE);
        }
    };
    let what = match &command {
        Signal::Execute { tables, .. } => format!("execute-snapshot of {}", tables.join(", ")),
        Signal::Stop { tables } if tables.is_empty() => "stop-snapshot".to_string(),
        Signal::Stop { tables } => format!("stop-snapshot of {}", tables.join(", ")),
        Signal::Pause => "pause-snapshot".to_string(),
        Signal::Resume => "resume-snapshot".to_string(),
    };
    println!("signal {id}: {what} written to the signal table; a running walrus acts on it as it streams");
    Ok(ExitCode::SUCCESS)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WALRUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // stdout belongs to the stdout sink; logs go to stderr, past any snapshot progress bars.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LogOut);
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
    let metrics_handle = install_metrics()?;
    telemetry::describe();
    let status = Shared::global();
    let database = walrus_postgres::conn::ConnParams::from_config(&config.source)
        .map(|p| p.dbname)
        .unwrap_or_default();
    status.set_identity(&config.source.slot, &database, config.sink.type_name());
    status.set_state(PipelineState::Starting);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping: delivering what was read, then confirming it");
        let _ = stop_tx.send(true);
        wait_for_signal().await;
        tracing::warn!("second signal: exiting without a clean stop (nothing is lost; the next run repeats the unconfirmed part)");
        std::process::exit(130);
    });
    let slot_health = spawn_observability(&config, metrics_handle, &stop_rx).await?;

    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = Instant::now();
        status.set_state(PipelineState::Starting);
        let delivered = if config.admin.commit_latency {
            Delivered::with_commit_latency()
        } else {
            Delivered::new()
        };
        let result = match sinks::AnySink::open(&config, delivered.clone()) {
            Ok(sink) => {
                walrus_postgres::replication::session::run(
                    &config,
                    sink,
                    delivered,
                    stop_rx.clone(),
                    slot_health.clone(),
                )
                .await
            }
            Err(e) => Err(e.into()),
        };
        let err = match result {
            Ok(summary) => {
                status.set_state(PipelineState::Stopped);
                tracing::info!(confirmed_lsn = %summary.confirmed, events = summary.events, "stopped cleanly");
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) => e,
        };
        let kind = err.kind();
        metrics::counter!(telemetry::ERRORS_TOTAL, "kind" => format!("{kind:?}")).increment(1);
        let retry = kind.class() == ErrorClass::Retryable && !*stop_rx.borrow();
        status.set_error(&format!("{kind:?}"), err.to_string(), kind.hint(), retry);
        status.set_state(if retry {
            PipelineState::Retrying
        } else {
            PipelineState::Stopped
        });
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

/// Installs the Prometheus recorder behind `/metrics` (no HTTP listener of its own).
fn install_metrics() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    // The latency histogram gets buckets (a cumulative Prometheus histogram over the whole
    // run); other histograms stay rolling summaries.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(
                telemetry::COMMIT_TO_DELIVERY_SECONDS.to_string(),
            ),
            telemetry::COMMIT_TO_DELIVERY_BUCKETS,
        )
        .context("histogram buckets")?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).context("installing the metrics recorder")?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        // Histograms are drained into their summaries by upkeep.
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Starts the tasks that run beside the retry loop, whatever the pipeline does: the admin
/// server, the slot watchdog, the alert webhook and heartbeats. Returns the watchdog's
/// reports on walrus's own slot, for the replication loop (`None` with the watchdog off).
async fn spawn_observability(
    config: &Config,
    metrics_handle: metrics_exporter_prometheus::PrometheusHandle,
    stop_rx: &watch::Receiver<bool>,
) -> anyhow::Result<Option<watch::Receiver<SlotHealth>>> {
    if config.admin.enabled {
        let bound = admin::bind(
            config.admin.listen,
            config.admin.token.clone(),
            metrics_handle,
            stop_rx.clone(),
        )
        .await;
        match bound {
            Ok(server) => {
                tokio::spawn(server);
            }
            // The default port taken (say, a second walrus on this machine) must not stop
            // a pipeline configured with the minimal keys; an address the operator chose
            // must work or fail loudly.
            Err(e) if config.admin.listen == walrus_core::config::AdminConfig::default().listen => {
                tracing::warn!(
                    listen = %config.admin.listen,
                    error = %e,
                    "admin server not started: the default address is taken; set [admin] listen to serve /metrics and /status"
                );
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                    "admin server: cannot listen on {} (set [admin] listen, or enabled = false)",
                    config.admin.listen
                )
                })
            }
        }
    }
    let mut slot_health = None;
    if config.watchdog.enabled {
        let (health_tx, health_rx) = watch::channel(SlotHealth::default());
        slot_health = Some(health_rx);
        let (alert_tx, alert_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(alerts::run(
            config.alerts.clone(),
            config.source.slot.clone(),
            alert_rx,
        ));
        tokio::spawn(walrus_postgres::operations::watchdog::run(
            config.clone(),
            Some(alert_tx),
            health_tx,
            stop_rx.clone(),
        ));
    }
    if config.heartbeat.enabled {
        tokio::spawn(walrus_postgres::replication::heartbeat::run(
            config.source.clone(),
            config.heartbeat.clone(),
            stop_rx.clone(),
        ));
    }
    Ok(slot_health)
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

/// Log output: standard error, with snapshot progress bars hidden while a line is written
/// (the formatter hands over each event as one buffer).
struct LogOut;

impl std::io::Write for LogOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        walrus_postgres::snapshots::progress::write_log(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
