//! [`PgCluster`]: one throwaway PostgreSQL server, its lifecycle and its connection helpers.
//!
//! A cluster lives in its own temporary directory:
//!
//! ```text
//! <tmp>/walrus-testkit-cluster-XXXXXX/     owned by the server user, mode 0700
//! ├── owner.pid                           pid of the test process, for the orphan reaper
//! ├── postgres.log                        server log (pg_ctl -l), appended on every start
//! ├── .s.PGSQL.<port>                     unix socket (unix_socket_directories)
//! └── data/                               cp -a of the template, then:
//!     ├── postgresql.conf                 + include = 'walrus-testkit.conf'
//!     └── walrus-testkit.conf             port, wal_level, speed settings, extra settings
//! ```
//!
//! The port is chosen by binding port 0 and releasing it. Another process can take it in the
//! gap, so a first start that fails with "Address already in use" is retried on a new port;
//! once the server has started the port never changes, because tests that restart the server
//! mid-stream reconnect to the same address.
//!
//! Lifecycle calls (`start`, `stop`, `kill`, `restart`) run `pg_ctl` and block until it
//! returns; they take `&self`, so a test can share the cluster in an `Arc` and restart it from
//! `tokio::task::spawn_blocking` while its own tasks keep running.
//!
//! A test process killed from outside (a nextest timeout) cannot run `Drop`, which would leave
//! its server running. Each process therefore, before its first cluster, stops and deletes
//! the clusters whose `owner.pid` names a process that no longer exists.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use tempfile::TempDir;

use crate::binaries::{binaries_for, reachable_by, traversable, Binaries};
use crate::privileges::{
    give_to, kill_hard, process_alive, server_command, server_user, ServerUser,
};
use crate::template;

/// The address the server listens on; TCP only on loopback.
const HOST: &str = "127.0.0.1";

/// Prefix of every cluster directory, which the orphan reaper looks for.
const CLUSTER_PREFIX: &str = "walrus-testkit-cluster-";

/// The per-cluster settings file, included from postgresql.conf.
const CONF_FILE: &str = "walrus-testkit.conf";

/// How many ports a first start tries before giving up.
const PORT_ATTEMPTS: usize = 8;

/// Seconds pg_ctl waits for start-up or shutdown.
const PG_CTL_TIMEOUT: &str = "60";

/// Lines of server log quoted in a start failure.
const LOG_TAIL_LINES: usize = 40;

/// The `wal_level` a cluster runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WalLevel {
    /// Enough for physical replication but not logical decoding: creating a logical slot fails.
    /// For testing walrus's start-up check.
    Replica,
    /// What walrus needs: logical decoding and replication slots.
    #[default]
    Logical,
}

impl WalLevel {
    /// The setting's value as PostgreSQL spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            WalLevel::Replica => "replica",
            WalLevel::Logical => "logical",
        }
    }
}

/// Options for a [`PgCluster`]; [`PgClusterBuilder::start`] creates and starts it.
#[derive(Debug, Clone, Default)]
pub struct PgClusterBuilder {
    wal_level: WalLevel,
    major: Option<u32>,
    settings: Vec<(String, String)>,
    /// The first port to try, instead of a free one; lets tests exercise the port-race retry.
    #[cfg(test)]
    first_port: Option<u16>,
}

impl PgClusterBuilder {
    /// Sets `wal_level` (default [`WalLevel::Logical`]).
    pub fn wal_level(mut self, level: WalLevel) -> Self {
        self.wal_level = level;
        self
    }

    /// Runs PostgreSQL `major` (10 to 18) instead of the default (`$WALRUS_PG_MAJOR`, else
    /// the machine's server); see the `binaries` module for where each major is found.
    pub fn major(mut self, major: u32) -> Self {
        self.major = Some(major);
        self
    }

    /// Adds a server setting, written after the harness's own so it overrides them, e.g.
    /// `.setting("wal_sender_timeout", "5s")` or `.setting("synchronous_commit", "on")`.
    /// The value is quoted for postgresql.conf; pass it as you would after `SET name TO`.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// Creates the cluster from the template and starts it on a free port.
    ///
    /// Fails with the search path when no server binaries are installed, and with the tail of
    /// the server log when the server does not start.
    pub fn start(self) -> Result<PgCluster> {
        let user = server_user()?;
        let base = temp_base(user);
        let bins = reachable_by(binaries_for(self.major)?, user, &base)?;
        reap_orphans_once(bins, user, &base);

        let template = template::ensure(bins, user, &base)?;

        let dir = tempfile::Builder::new()
            .prefix(CLUSTER_PREFIX)
            .tempdir_in(&base)
            .with_context(|| format!("creating a cluster directory in {}", base.display()))?;
        std::fs::write(dir.path().join("owner.pid"), std::process::id().to_string())
            .context("writing owner.pid")?;
        // Only the server user (and root) has any business in there.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .context("restricting the cluster directory")?;
        give_to(dir.path(), user)?;
        let data_dir = dir.path().join("data");
        copy_dir(&template, &data_dir)?;
        append(
            &data_dir.join("postgresql.conf"),
            &format!("\n# Added by walrus-testkit; settings for this cluster.\ninclude = '{CONF_FILE}'\n"),
        )?;

        #[cfg(test)]
        let first_port = self.first_port;
        #[cfg(not(test))]
        let first_port = None;

        let mut cluster = PgCluster {
            bins,
            user,
            log_path: dir.path().join("postgres.log"),
            data_dir,
            port: 0,
            wal_level: self.wal_level,
            settings: self.settings,
            lifecycle: Mutex::new(()),
            dir: Some(dir),
        };

        // From here on a failure drops `cluster`, which removes the directory.
        let mut port = match first_port {
            Some(p) => p,
            None => free_port()?,
        };
        for attempt in 1..=PORT_ATTEMPTS {
            cluster.port = port;
            cluster.write_conf()?;
            match cluster.start_once() {
                Ok(()) => return Ok(cluster),
                Err(e) if e.port_in_use && attempt < PORT_ATTEMPTS => port = free_port()?,
                Err(e) => return Err(e.error),
            }
        }
        unreachable!("the last attempt returns")
    }
}

/// A throwaway PostgreSQL server for one test, started from the machine's real binaries.
///
/// The superuser is `postgres`, authentication is `trust`, and the server listens on
/// `127.0.0.1:<port>` and a unix socket in its own directory. Dropping it stops the server
/// (immediate mode) and deletes every file it had.
///
/// Durability is traded for speed (`fsync`, `full_page_writes` and `synchronous_commit` off):
/// after [`PgCluster::kill`], transactions committed in the last ~200 ms may be gone. A test
/// that checks what survives a crash should pass `.setting("synchronous_commit", "on")`.
#[derive(Debug)]
pub struct PgCluster {
    bins: &'static Binaries,
    user: Option<&'static ServerUser>,
    data_dir: PathBuf,
    log_path: PathBuf,
    port: u16,
    wal_level: WalLevel,
    settings: Vec<(String, String)>,
    /// Held by every lifecycle call, so two threads never run pg_ctl on one cluster at once.
    /// Whether the server runs is always asked of `pg_ctl status`, which also sees a crash.
    lifecycle: Mutex<()>,
    /// `None` only while dropping, so the server stops before its files go.
    dir: Option<TempDir>,
}

/// A start failure, with whether it was the port being taken (worth retrying elsewhere).
struct StartError {
    error: anyhow::Error,
    port_in_use: bool,
}

impl PgCluster {
    /// Starts a cluster with the defaults: `wal_level=logical`, nothing extra.
    pub fn new() -> Result<PgCluster> {
        Self::builder().start()
    }

    /// Options for a cluster with another `wal_level` or extra settings.
    pub fn builder() -> PgClusterBuilder {
        PgClusterBuilder::default()
    }

    /// The TCP port; the same for the cluster's whole life, across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TCP host, always `127.0.0.1`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// A libpq URL for database `db` as the superuser:
    /// `postgres://postgres@127.0.0.1:<port>/<db>`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@{HOST}:{}/{db}", self.port)
    }

    /// The directory holding the server binaries and the matching clients (`psql`,
    /// `pg_recvlogical`, ...).
    pub fn bindir(&self) -> &Path {
        &self.bins.bindir
    }

    /// The path of one binary in [`PgCluster::bindir`], e.g. `bin("pg_recvlogical")`.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bins.bin(name)
    }

    /// The server's version, e.g. `15.18`.
    pub fn server_version(&self) -> &str {
        &self.bins.version
    }

    /// The server's major version, e.g. `15`.
    pub fn major(&self) -> u32 {
        self.bins.major()
    }

    /// The `wal_level` the cluster was created with.
    pub fn wal_level(&self) -> WalLevel {
        self.wal_level
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory holding the server's unix socket, for `host=<dir>` connections.
    pub fn socket_dir(&self) -> &Path {
        self.data_dir
            .parent()
            .expect("data dir is inside the cluster dir")
    }

    /// The server log file, appended to on every start.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the server log, for a failing test's message.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&std::fs::read(&self.log_path).unwrap_or_default(), lines)
    }

    /// Whether a postmaster is running on this cluster's data directory (asks `pg_ctl status`,
    /// so it notices a server that died by itself).
    pub fn is_running(&self) -> bool {
        self.pg_ctl_status()
    }

    /// Starts the server again after [`PgCluster::stop`] or [`PgCluster::kill`], on the same
    /// port and data. Does nothing if it is running.
    pub fn start(&self) -> Result<()> {
        let _lifecycle = self.lock();
        if self.pg_ctl_status() {
            return Ok(());
        }
        // The port was free a moment ago, but a client's ephemeral port may have landed on it
        // since; such a socket goes away soon, so wait rather than move to another port.
        let mut last = None;
        for _ in 0..10 {
            match self.start_once() {
                Ok(()) => return Ok(()),
                Err(e) if e.port_in_use => {
                    last = Some(e.error);
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(e.error),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("server did not start")))
    }

    /// Stops the server in fast mode: open transactions are rolled back, sessions (and
    /// replication connections) are closed, and a shutdown checkpoint is written. Does nothing
    /// if it is not running.
    pub fn stop(&self) -> Result<()> {
        self.stop_mode("fast")
    }

    /// Stops the server in immediate mode, like a crash: no checkpoint, so the next start runs
    /// crash recovery. Does nothing if it is not running.
    pub fn kill(&self) -> Result<()> {
        self.stop_mode("immediate")
    }

    /// [`PgCluster::stop`] then [`PgCluster::start`], keeping the port and data.
    pub fn restart(&self) -> Result<()> {
        self.stop()?;
        self.start()
    }

    /// Replaces `pg_hba.conf` with `contents` and reloads the server, e.g. to test password
    /// authentication: `"host all all 127.0.0.1/32 scram-sha-256\nhost replication all
    /// 127.0.0.1/32 scram-sha-256\nlocal all all trust\n"`. The reload is asynchronous:
    /// connections a few milliseconds later see it.
    pub fn set_hba(&self, contents: &str) -> Result<()> {
        let path = self.data_dir.join("pg_hba.conf");
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        give_to(&path, self.user)?;
        self.reload()
    }

    /// Makes the server re-read its configuration files (`pg_ctl reload`).
    pub fn reload(&self) -> Result<()> {
        let _lifecycle = self.lock();
        let out = self
            .pg_ctl()
            .arg("reload")
            .output()
            .context("running pg_ctl reload")?;
        check(&out, "pg_ctl reload")?;
        // The postmaster handles SIGHUP asynchronously; give it a moment.
        std::thread::sleep(Duration::from_millis(200));
        Ok(())
    }

    /// Connects to database `db` as the superuser and spawns the connection task on the current
    /// tokio runtime. The task ends when the client is dropped or the server goes away.
    pub async fn connect(&self, db: &str) -> Result<tokio_postgres::Client> {
        let (client, connection) = tokio_postgres::connect(&self.url(db), tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connecting to {}", self.url(db)))?;
        tokio::spawn(async move {
            // Expected when a test restarts or kills the server; the client reports it too.
            if let Err(e) = connection.await {
                eprintln!("walrus-testkit: connection closed: {e}");
            }
        });
        Ok(client)
    }

    /// Creates database `name` (quoted as an identifier, so any name works).
    pub async fn create_database(&self, name: &str) -> Result<()> {
        let client = self.connect("postgres").await?;
        client
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
            .await
            .with_context(|| format!("creating database {name}"))?;
        Ok(())
    }

    /// Runs `sql` through the real `psql` against database `db` and returns its unaligned,
    /// tuples-only output (`psql -XAtq`), e.g. `"logical\n"` for `SHOW wal_level`.
    ///
    /// The script is fed on stdin, so several statements run one after another (as in a file,
    /// not one implicit transaction) and the first error stops it and fails the call.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let mut child = Command::new(self.bin("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                HOST,
                "-U",
                "postgres",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-d")
            .arg(db)
            .args(["-f", "-"])
            .env_remove("PGOPTIONS")
            .env_remove("PGSERVICE")
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running psql")?;
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin is piped");
            stdin.write_all(sql.as_bytes()).context("writing to psql")?;
        }
        let out = child.wait_with_output().context("waiting for psql")?;
        if !out.status.success() {
            bail!(
                "psql -d {db} failed ({}): {}\nSQL: {sql}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        String::from_utf8(out.stdout).context("psql printed invalid UTF-8")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // A panic while holding the lock leaves nothing half-done that matters here.
        self.lifecycle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn dir(&self) -> &Path {
        self.socket_dir()
    }

    fn pg_ctl(&self) -> Command {
        let mut cmd = server_command(&self.bin("pg_ctl"), self.user, self.dir());
        cmd.arg("-D").arg(&self.data_dir);
        cmd
    }

    fn pg_ctl_status(&self) -> bool {
        // Exit status 0 means running, 3 not running, 4 no data directory.
        self.pg_ctl()
            .arg("status")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Writes the per-cluster settings file for the current port.
    fn write_conf(&self) -> Result<()> {
        let mut conf = String::from("# Written by walrus-testkit for this cluster.\n");
        let socket_dir = self.dir().to_string_lossy().into_owned();
        let ours: [(&str, &str); 11] = [
            ("listen_addresses", HOST),
            ("unix_socket_directories", &socket_dir),
            ("wal_level", self.wal_level.as_str()),
            ("max_replication_slots", "20"),
            ("max_wal_senders", "20"),
            ("max_connections", "100"),
            // Tests never survive an OS crash, so durability is only cost here.
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
            // Messages in English whatever the environment: start() reads the log.
            ("lc_messages", "C"),
            ("log_line_prefix", "%m [%p] %q%a "),
        ];
        let _ = writeln!(conf, "port = {}", self.port);
        let extra = self.settings.iter().map(|(n, v)| (n.as_str(), v.as_str()));
        for (name, value) in ours.into_iter().chain(extra) {
            let _ = writeln!(conf, "{name} = {}", quote_conf(value));
        }
        let path = self.data_dir.join(CONF_FILE);
        std::fs::write(&path, conf).with_context(|| format!("writing {}", path.display()))?;
        give_to(&path, self.user)
    }

    /// One `pg_ctl start`, with the log written since it began in the error.
    fn start_once(&self) -> std::result::Result<(), StartError> {
        let log_start = std::fs::metadata(&self.log_path).map_or(0, |m| m.len());
        let out = self
            .pg_ctl()
            .args(["-w", "-t", PG_CTL_TIMEOUT, "-l"])
            .arg(&self.log_path)
            .arg("start")
            .output();
        let out = match out {
            Ok(out) if out.status.success() => return Ok(()),
            Ok(out) => out,
            Err(e) => {
                return Err(StartError {
                    error: anyhow!(e).context("running pg_ctl start"),
                    port_in_use: false,
                })
            }
        };
        let log = std::fs::read(&self.log_path).unwrap_or_default();
        let new_log = log.get(log_start as usize..).unwrap_or(&log);
        let text = String::from_utf8_lossy(new_log);
        let port_in_use = text.contains("Address already in use")
            || text.contains("could not create any TCP/IP sockets");
        // A failed start can leave a postmaster.pid behind only if a postmaster is still up
        // (for example stuck in recovery past the timeout); make sure nothing keeps running.
        self.force_stop();
        Err(StartError {
            error: anyhow!(
                "PostgreSQL did not start on port {} (data {}): {}\n--- pg_ctl ---\n{}{}--- {} (tail) ---\n{}",
                self.port,
                self.data_dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log_path.display(),
                tail(new_log, LOG_TAIL_LINES),
            ),
            port_in_use,
        })
    }

    fn stop_mode(&self, mode: &str) -> Result<()> {
        let _lifecycle = self.lock();
        if !self.pg_ctl_status() {
            return Ok(());
        }
        let out = self
            .pg_ctl()
            .args(["-w", "-t", PG_CTL_TIMEOUT, "-m", mode, "stop"])
            .output()
            .context("running pg_ctl stop")?;
        check(&out, &format!("pg_ctl stop -m {mode}"))
    }

    /// Stops the server however it can, for Drop and failed starts; never fails.
    fn force_stop(&self) {
        let pid_file = self.data_dir.join("postmaster.pid");
        if !pid_file.exists() {
            return;
        }
        let stopped = self
            .pg_ctl()
            .args(["-w", "-t", "20", "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            // The pid file's first line is the postmaster's pid; its children exit on their own
            // once they notice it is gone.
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
            {
                kill_hard(pid);
            }
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.force_stop();
        if let Some(dir) = self.dir.take() {
            // TempDir ignores errors on drop; a leftover directory is reaped by a later run.
            let _ = dir.close();
        }
    }
}

/// Returns a name unique to this call, safe as an unquoted identifier and as a replication
/// slot name (lower-case letters, digits and `_`, at most 63 bytes): `<prefix>_<pid>_<n>_<t>`.
///
/// Use it for per-test databases, slots and publications so tests sharing a cluster, or
/// leftovers of earlier runs, never collide.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let suffix = format!("_{}_{n}_{nanos:x}", std::process::id());
    let mut name: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
        // Unquoted identifiers cannot start with a digit (or be empty).
        name.insert(0, 't');
    }
    name.truncate(63 - suffix.len());
    name + &suffix
}

/// Quotes an SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a postgresql.conf value; every parameter type accepts the quoted form.
fn quote_conf(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// A port that was free when asked; see the module doc for the race this leaves.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((HOST, 0)).context("binding a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// The last `lines` lines of `bytes`.
fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.lines().collect();
    let mut out = all[all.len().saturating_sub(lines)..].join("\n");
    out.push('\n');
    out
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("appending to {}", path.display()))
}

fn check(out: &Output, what: &str) -> Result<()> {
    if out.status.success() {
        return Ok(());
    }
    bail!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `cp -a`: keeps modes and, as root, the server user's ownership.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    let out = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .stdin(Stdio::null())
        .output()
        .context("running cp")?;
    check(&out, &format!("cp -a {} {}", from.display(), to.display()))
}

/// The directory clusters and the template go in: the system temp dir, unless the server user
/// could not reach it or its socket path would be too long, then `/tmp`.
fn temp_base(user: Option<&ServerUser>) -> PathBuf {
    let base = std::env::temp_dir();
    // A unix socket path is limited to 107 bytes; the cluster dir and socket name add ~45.
    let short = base.as_os_str().len() <= 60;
    let reachable = user.is_none() || traversable(&base);
    if short && reachable {
        base
    } else {
        PathBuf::from("/tmp")
    }
}

/// Runs [`reap_orphans`] once per process.
fn reap_orphans_once(bins: &Binaries, user: Option<&ServerUser>, base: &Path) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| reap_orphans(bins, user, base));
}

/// Stops and deletes clusters left by test processes that died without running `Drop`.
fn reap_orphans(bins: &Binaries, user: Option<&ServerUser>, base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let is_cluster = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(CLUSTER_PREFIX));
        if !is_cluster {
            continue;
        }
        // No owner file yet means a cluster being created right now: leave it alone.
        let Some(owner) = std::fs::read_to_string(dir.join("owner.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        else {
            continue;
        };
        if process_alive(owner) {
            continue;
        }
        let data = dir.join("data");
        if data.join("postmaster.pid").exists() {
            let _ = server_command(&bins.bin("pg_ctl"), user, &dir)
                .arg("-D")
                .arg(&data)
                .args(["-w", "-t", "20", "-m", "immediate", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // Errors are fine: another process may be reaping the same directory.
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_are_valid_identifiers() {
        let a = unique_name("CDC-Test");
        let b = unique_name("CDC-Test");
        assert_ne!(a, b);
        assert!(a.starts_with("cdc_test_"), "{a}");
        for name in [
            a,
            unique_name(""),
            unique_name("9lives"),
            unique_name(&"x".repeat(100)),
        ] {
            assert!(name.len() <= 63, "{name}");
            assert!(
                name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name}"
            );
        }
    }

    #[test]
    fn quotes_conf_values_and_identifiers() {
        assert_eq!(quote_conf("5s"), "'5s'");
        assert_eq!(quote_conf("it's"), "'it''s'");
        assert_eq!(quote_conf(r"a\b"), r"'a\\b'");
        assert_eq!(quote_ident(r#"we"ird"#), r#""we""ird""#);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail(b"a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail(b"a", 5), "a\n");
    }

    #[test]
    fn retries_on_another_port_when_the_first_is_taken() {
        // Hold a port so the first start fails with "Address already in use".
        let taken = TcpListener::bind((HOST, 0)).unwrap();
        let taken_port = taken.local_addr().unwrap().port();
        let builder = PgClusterBuilder {
            first_port: Some(taken_port),
            ..PgClusterBuilder::default()
        };
        let pg = builder.start().unwrap();
        assert_ne!(pg.port(), taken_port);
        assert_eq!(pg.psql("postgres", "SELECT 1").unwrap(), "1\n");
        assert!(
            pg.log_tail(200).contains("Address already in use"),
            "{}",
            pg.log_tail(200)
        );
    }

    #[test]
    fn start_failure_quotes_the_server_log() {
        let err = PgCluster::builder()
            .setting("shared_buffers", "not-a-size")
            .start()
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("did not start"), "{msg}");
        assert!(msg.contains("shared_buffers"), "{msg}");
    }
}

/// Every major of the version matrix starts, decodes logically and has the contrib
/// extensions walrus's type tests use (installed by `scripts/install-deps.sh`).
#[cfg(test)]
mod matrix {
    use super::*;

    fn starts_with_contrib(major: u32) {
        let pg = PgCluster::builder().major(major).start().unwrap();
        assert_eq!(pg.major(), major, "{}", pg.server_version());
        let out = pg
            .psql(
                "postgres",
                "CREATE EXTENSION hstore; CREATE EXTENSION citext; CREATE EXTENSION ltree;
                 SELECT 'a=>1'::hstore -> 'a', 'AbC'::citext = 'abc', nlevel('a.b.c'::ltree);
                 SELECT 1 FROM pg_create_logical_replication_slot('s', 'pgoutput');
                 SHOW server_version_num;",
            )
            .unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "1|t|3", "{out}");
        assert_eq!(lines[1], "1", "{out}");
        assert_eq!(lines[2].parse::<u32>().unwrap() / 10000, major, "{out}");
    }

    macro_rules! majors {
        ($($name:ident = $major:literal),*) => {$(
            #[test]
            fn $name() {
                starts_with_contrib($major);
            }
        )*};
    }

    majors!(
        pg10 = 10,
        pg11 = 11,
        pg12 = 12,
        pg13 = 13,
        pg14 = 14,
        pg15 = 15,
        pg16 = 16,
        pg17 = 17,
        pg18 = 18
    );
}
