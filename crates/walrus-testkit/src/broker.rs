//! A throwaway Kafka-protocol broker: [Tansu](https://crates.io/crates/tansu) with in-memory
//! storage, one per test, on a free port of 127.0.0.1.
//!
//! Tansu speaks produce, fetch, metadata, create-topics, consumer groups and the idempotent
//! producer's APIs, which is what walrus's Kafka sink and a test consumer need. It has no
//! transactions, and its high-water marks are not reliable: count messages by consuming
//! them. Its memory grows with what it stores and is not given back, so every test starts
//! a fresh one and [`Broker`]'s `Drop` kills it.
//!
//! The binary is `$WALRUS_TANSU`, else `tansu` on `PATH`, else `~/.cargo/bin/tansu`;
//! `scripts/install-deps.sh` installs it (`cargo install tansu --locked --features
//! dynostore,libsql`).
//!
//! Faults: [`Broker::pause`] / [`Broker::resume`] stop and continue the process (SIGSTOP /
//! SIGCONT) — connections stay open and nothing is answered, like a hung broker or a network
//! partition — without losing what it stores, which a restart of an in-memory broker would.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How long a broker may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running Tansu broker, killed on drop.
pub struct Broker {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

/// The Tansu binary, searched as the module docs say.
pub fn find_tansu() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("WALRUS_TANSU") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("WALRUS_TANSU={} is not a file", p.display());
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("tansu");
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = PathBuf::from(home).join(".cargo/bin/tansu");
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "the Kafka test broker (tansu) is not installed: run scripts/install-deps.sh, or \
         `cargo install tansu --locked --features dynostore,libsql`, or set WALRUS_TANSU"
    )
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind(("127.0.0.1", 0)).context("binding a free port on 127.0.0.1")?;
    Ok(l.local_addr()?.port())
}

impl Broker {
    /// Starts a fresh broker and waits until it accepts connections.
    pub fn start() -> Result<Broker> {
        let bin = find_tansu()?;
        let dir = tempfile::tempdir().context("temp dir for the broker")?;
        let log = dir.path().join("tansu.log");
        // A port can be taken between the probe and the broker's bind: try a few.
        let mut last_err = None;
        for _ in 0..3 {
            let port = free_port()?;
            let url = format!("tcp://127.0.0.1:{port}");
            let out = std::fs::File::create(&log).context("broker log file")?;
            let err = out.try_clone()?;
            let child = Command::new(&bin)
                .arg("broker")
                .args(["--listener-url", &url])
                .args(["--advertised-listener-url", &url])
                .args(["--storage-engine", "memory://tansu/"])
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            let mut broker = Broker {
                child,
                port,
                log: log.clone(),
                _dir: None,
            };
            match broker.wait_ready() {
                Ok(()) => {
                    broker._dir = Some(dir);
                    return Ok(broker);
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("broker did not start")))
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("tansu exited with {status}; log:\n{}", self.log_text());
            }
            if TcpStream::connect_timeout(
                &([127, 0, 0, 1], self.port).into(),
                Duration::from_millis(200),
            )
            .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "tansu did not accept connections on port {} within {START_TIMEOUT:?}; log:\n{}",
                    self.port,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:<port>`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the broker logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: libc::c_int) -> Result<()> {
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        if rc != 0 {
            bail!(
                "kill({}, {sig}): {}",
                self.child.id(),
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// Freezes the broker (SIGSTOP): connections stay open, nothing is answered.
    pub fn pause(&self) -> Result<()> {
        self.signal(libc::SIGSTOP)
    }

    /// Lets a paused broker go on (SIGCONT).
    pub fn resume(&self) -> Result<()> {
        self.signal(libc::SIGCONT)
    }

    /// Kills the broker at once (its in-memory data is gone).
    pub fn kill(&mut self) {
        let _ = self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}
