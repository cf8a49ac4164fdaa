//! Shared helpers: a cluster with a fresh database, the walrus process, reading the JSON
//! Lines output, and waiting for conditions.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use walrus_testkit::{unique_name, PgCluster};

/// A cluster, a fresh database in it, and a temp dir for config and output.
pub struct Env {
    pub cluster: PgCluster,
    pub db: String,
    pub slot: String,
    pub dir: tempfile::TempDir,
}

impl Env {
    pub async fn new() -> Env {
        Self::with_cluster(PgCluster::new().expect("start PostgreSQL")).await
    }

    pub async fn with_cluster(cluster: PgCluster) -> Env {
        let db = unique_name("db");
        cluster.create_database(&db).await.expect("create database");
        Env {
            cluster,
            db,
            slot: unique_name("slot"),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub async fn sql(&self) -> tokio_postgres::Client {
        self.cluster.connect(&self.db).await.expect("connect")
    }

    pub fn out_path(&self) -> PathBuf {
        self.dir.path().join("events.jsonl")
    }

    /// The minimal config form, plus `extra` lines appended at the top level of `[source]`
    /// (pass full sections after it for other tables).
    pub fn config(&self, tables: &str, extra: &str) -> String {
        format!(
            r#"topic_prefix = "app"
[source]
url = "{url}"
slot = "{slot}"
publication = "{slot}"
tables = {tables}
status_interval_ms = 200
{extra}
[admin]
listen = "127.0.0.1:0"
[sink]
type = "file"
path = "{out}"
"#,
            url = self.cluster.url(&self.db),
            slot = self.slot,
            out = self.out_path().display(),
        )
    }

    pub fn write_config(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("walrus.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    pub async fn confirmed_flush_lsn(&self) -> Option<u64> {
        let c = self.sql().await;
        let row = c
            .query_opt(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.slot],
            )
            .await
            .ok()??;
        let s: Option<String> = row.get(0);
        s.map(|s| parse_lsn(&s))
    }
}

/// The end of the WAL written so far: `pg_current_wal_insert_lsn()`, not
/// `pg_current_wal_lsn()`. Test clusters run with `synchronous_commit = off`, so a COMMIT
/// returns before its WAL is written out, and the write position (`pg_current_wal_lsn`) can
/// still be short of the last commits: a slot confirmed up to it has not necessarily seen
/// them (a test that waited for it read the output before the last six transactions).
pub async fn wal_end_lsn(c: &tokio_postgres::Client) -> u64 {
    let s: String = c
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .expect("pg_current_wal_insert_lsn")
        .get(0);
    parse_lsn(&s)
}

pub fn parse_lsn(s: &str) -> u64 {
    let (hi, lo) = s.split_once('/').expect("lsn");
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

/// Runs `walrus check --config <config>` to completion.
pub fn walrus_check(config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_walrus"))
        .args(["check", "--config"])
        .arg(config)
        .output()
        .expect("run walrus check")
}

/// A running `walrus run`.
pub struct Walrus {
    pub child: Child,
    pub stderr: PathBuf,
}

impl Walrus {
    pub fn start(config: &Path) -> Walrus {
        let stderr = config.with_extension(format!(
            "{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let child = Command::new(env!("CARGO_BIN_EXE_walrus"))
            .args(["run", "--config"])
            .arg(config)
            .env("WALRUS_LOG", "info,walrus_postgres=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("log file"))
            .spawn()
            .expect("spawn walrus");
        Walrus { child, stderr }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn interrupt(&self) {
        unsafe_kill(self.pid(), "INT");
    }

    /// Waits for exit, killing after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                self.kill9();
                panic!(
                    "walrus did not exit within {timeout:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Peak resident set size so far, in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        walrus_testkit::process::peak_rss_kib(self.child.id())
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Walrus {
    fn drop(&mut self) {
        // A failing test shows what walrus said.
        if std::thread::panicking() {
            eprintln!(
                "---- walrus log ({}) ----\n{}",
                self.stderr.display(),
                self.log()
            );
        }
        if self.is_running() {
            self.kill9();
        }
    }
}

fn unsafe_kill(pid: i32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
}

/// Every complete line of the JSON Lines file, parsed. A partial last line (a crash in the
/// middle of a write) is skipped, as a reader of the file would.
pub fn read_events(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// Events (not tombstones) for a topic.
pub fn values_for<'a>(events: &'a [Value], topic: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["topic"] == topic && !e["value"].is_null())
        .map(|e| &e["value"])
        .collect()
}

/// Polls `f` until it returns true or `timeout` passes.
pub async fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the output holds at least `n` events matching `pred`.
pub async fn wait_for_events(
    path: &Path,
    n: usize,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let events = read_events(path);
        if events.iter().filter(|e| pred(e)).count() >= n {
            return events;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?}: {} of {n} events; last lines: {:?}",
                events.iter().filter(|e| pred(e)).count(),
                events.iter().rev().take(3).collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
