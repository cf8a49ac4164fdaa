//! Debezium beside walrus: a Kafka Connect worker (standalone mode, from the Kafka jars of
//! [`crate::kafka`]) with the Debezium PostgreSQL connector on its plugin path, so that a test
//! can run Debezium against the same PostgreSQL and the same broker as walrus and compare what
//! the two wrote.
//!
//! ```text
//! install-deps.sh ──mvn copy (plugin tar.gz)──▶ <cache>/debezium-3.6.1.Final/plugins/   (once)
//!                                                     │ plugin.path
//! KafkaConnect::start(bootstrap) ──java ConnectStandalone worker.properties──▶ REST on a free port
//!        │ PUT /connectors/<name>/config                    │
//!        ▼                                                  ▼
//! KafkaConnect::add_connector ──▶ Debezium task ──pgoutput──▶ PostgreSQL ──▶ records ──▶ broker
//! ```
//!
//! - One worker runs any number of connectors (each with its own slot, publication and topic
//!   prefix or topic rename), so a test binary starts one JVM, not one per connector.
//! - The worker's converters are Kafka Connect's JsonConverter with schemas on (its default);
//!   a connector overrides them in its own config (`key.converter.schemas.enable`, …), as a
//!   user's connector config would.
//! - Source offsets go to a file flushed every second ([`OFFSET_FLUSH_MS`]), not Connect's
//!   default minute: Debezium confirms an LSN to PostgreSQL only after that flush, and tests
//!   that stop Debezium and look at its slot should not wait a minute.
//! - A connector is RUNNING (its REST status) before its snapshot is done; tests wait for its
//!   records, not for the status alone.
//! - Like the broker, the worker has a watchdog that kills it once the test process is gone.
//!
//! # Environment
//!
//! - `WALRUS_CACHE`: the cache directory (default `$HOME/.cache/walrus`).
//! - `JAVA_HOME`: the JDK that runs Kafka Connect (Java 17+).

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tempfile::TempDir;

use crate::kafka::{
    cache_dir, free_port, java_command, java_command_deployed, read_from, spawn_watchdog, tail,
};

/// The Debezium version `scripts/install-deps.sh` fetches and the compatibility suite runs.
pub const DEBEZIUM_VERSION: &str = "3.6.1.Final";

/// The Debezium PostgreSQL connector's class, for a connector's `connector.class`.
pub const POSTGRES_CONNECTOR: &str = "io.debezium.connector.postgresql.PostgresConnector";

/// How often the worker flushes source offsets (and so how soon Debezium confirms an LSN).
pub const OFFSET_FLUSH_MS: u64 = 1_000;

/// How long the worker may take to serve its REST API.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a connector may take to reach RUNNING once submitted.
const CONNECTOR_TIMEOUT: Duration = Duration::from_secs(90);

/// Ports tried before giving up on a REST port taken between choosing and binding it.
const PORT_ATTEMPTS: usize = 4;

/// The directory holding the Debezium plugin (`plugin.path`), with an error naming
/// `scripts/install-deps.sh` when the connector is not there.
pub fn debezium_plugins_dir() -> Result<PathBuf> {
    let plugins = cache_dir()?.join(format!("debezium-{DEBEZIUM_VERSION}/plugins"));
    let marker = plugins.join(format!(
        "debezium-connector-postgres/debezium-connector-postgres-{DEBEZIUM_VERSION}.jar"
    ));
    if !marker.is_file() {
        bail!(
            "the Debezium PostgreSQL connector {DEBEZIUM_VERSION} is not in the cache ({} is \
             missing): run scripts/install-deps.sh, which fetches it with Maven",
            marker.display()
        );
    }
    Ok(plugins)
}

/// A Kafka Connect worker in standalone mode with Debezium on its plugin path; killed and
/// deleted on drop.
#[derive(Debug)]
pub struct KafkaConnect {
    rest_port: u16,
    log: PathBuf,
    child: Mutex<Option<Child>>,
    /// `None` only while dropping, so the worker dies before its files go.
    dir: Option<TempDir>,
}

impl KafkaConnect {
    /// Starts a worker writing to the broker at `bootstrap` and waits until its REST API
    /// answers.
    pub fn start(bootstrap: &str) -> Result<KafkaConnect> {
        Self::launch(bootstrap, false, &[])
    }

    /// Starts a worker as Kafka's scripts deploy it (G1, a 2 GiB heap, full JIT), with
    /// `worker` added to its properties (for example `producer.*` settings): for benchmarks,
    /// where the small test JVM would understate Connect.
    pub fn start_as_deployed(bootstrap: &str, worker: &[(&str, &str)]) -> Result<KafkaConnect> {
        Self::launch(bootstrap, true, worker)
    }

    fn launch(bootstrap: &str, deployed: bool, worker: &[(&str, &str)]) -> Result<KafkaConnect> {
        let plugins = debezium_plugins_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("walrus-testkit-connect-")
            .tempdir()
            .context("creating a temp dir for Kafka Connect")?;
        spawn_watchdog(std::process::id(), dir.path(), &[])?;
        let log = dir.path().join("connect.log");
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let rest_port = free_port()?;
            let props = dir.path().join("worker.properties");
            let mut text = worker_properties(bootstrap, rest_port, dir.path(), &plugins);
            for (key, value) in worker {
                text.push_str(&format!("{key}={value}\n"));
            }
            std::fs::write(&props, text).with_context(|| format!("writing {}", props.display()))?;
            let from = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
            let out = File::options()
                .create(true)
                .append(true)
                .open(&log)
                .with_context(|| format!("opening {}", log.display()))?;
            let err = out.try_clone()?;
            let mut java = if deployed {
                java_command_deployed(dir.path())?
            } else {
                java_command(dir.path())?
            };
            let mut child = java
                .arg("org.apache.kafka.connect.cli.ConnectStandalone")
                .arg(&props)
                .stdout(out)
                .stderr(err)
                .process_group(0)
                .spawn()
                .context("starting Kafka Connect (ConnectStandalone)")?;
            // The watchdog kills the pid it finds here once this process is gone.
            std::fs::write(dir.path().join("broker.pid"), child.id().to_string())?;
            let started = Instant::now();
            let outcome = loop {
                if let Some(status) = child.try_wait()? {
                    break Err(anyhow!("Kafka Connect exited with {status}"));
                }
                if http(rest_port, "GET", "/connectors", None).is_ok_and(|(code, _)| code == 200) {
                    break Ok(());
                }
                if started.elapsed() > START_TIMEOUT {
                    break Err(anyhow!(
                        "Kafka Connect's REST API did not answer within {START_TIMEOUT:?}"
                    ));
                }
                std::thread::sleep(Duration::from_millis(200));
            };
            match outcome {
                Ok(()) => {
                    return Ok(KafkaConnect {
                        rest_port,
                        log,
                        child: Mutex::new(Some(child)),
                        dir: Some(dir),
                    })
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let text = read_from(&log, from);
                    let error = anyhow!("{e}; Kafka Connect log:\n{}", tail(&text, 60));
                    if text.contains("Address already in use") {
                        last = Some(error);
                        continue;
                    }
                    return Err(error);
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("found no free port for Kafka Connect's REST API")))
    }

    /// The worker JVM's process id while it runs (for CPU and memory sampling).
    pub fn pid(&self) -> Option<u32> {
        self.child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(Child::id)
    }

    /// The REST API's base URL.
    pub fn rest_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rest_port)
    }

    /// Everything the worker logged so far.
    pub fn log_text(&self) -> String {
        read_from(&self.log, 0)
    }

    /// The last `lines` lines of the worker's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_text(), lines)
    }

    /// Creates (or reconfigures) connector `name` with `config` (`connector.class` included)
    /// and waits until it and its task are RUNNING; a FAILED connector is an error carrying
    /// its stack trace.
    pub fn add_connector(&self, name: &str, config: &[(&str, &str)]) -> Result<()> {
        let mut body = String::from("{");
        for (i, (key, value)) in config.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&format!("{}:{}", json_string(key), json_string(value)));
        }
        body.push('}');
        let (code, answer) = http(
            self.rest_port,
            "PUT",
            &format!("/connectors/{name}/config"),
            Some(&body),
        )?;
        if !(200..300).contains(&code) {
            bail!("Kafka Connect refused connector {name} ({code}): {answer}");
        }
        let started = Instant::now();
        loop {
            let (code, status) = http(
                self.rest_port,
                "GET",
                &format!("/connectors/{name}/status"),
                None,
            )?;
            if code == 200 {
                let status: serde_json::Value = serde_json::from_str(&status)
                    .with_context(|| format!("connector status is not JSON: {status}"))?;
                let connector = status["connector"]["state"].as_str().unwrap_or("");
                let task = status["tasks"][0]["state"].as_str().unwrap_or("");
                if connector == "FAILED" || task == "FAILED" {
                    bail!(
                        "connector {name} FAILED: {}\n{}",
                        status["tasks"][0]["trace"]
                            .as_str()
                            .or(status["connector"]["trace"].as_str())
                            .unwrap_or(""),
                        self.log_tail(40)
                    );
                }
                if connector == "RUNNING" && task == "RUNNING" {
                    return Ok(());
                }
            }
            if started.elapsed() > CONNECTOR_TIMEOUT {
                bail!(
                    "connector {name} was not RUNNING within {CONNECTOR_TIMEOUT:?}; log:\n{}",
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Deletes connector `name`: its task stops after a last offset flush. Its slot stays.
    pub fn remove_connector(&self, name: &str) -> Result<()> {
        let (code, answer) = http(
            self.rest_port,
            "DELETE",
            &format!("/connectors/{name}"),
            None,
        )?;
        if !(200..300).contains(&code) {
            bail!("Kafka Connect could not delete connector {name} ({code}): {answer}");
        }
        Ok(())
    }

    /// Stops the worker cleanly (SIGTERM: connectors stop and flush their offsets), killing
    /// it after 30 s.
    pub fn stop(&self) -> Result<()> {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut child) = guard.take() else {
            return Ok(());
        };
        // SAFETY: kill(2) on our own child, not yet reaped (we hold its handle).
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("Kafka Connect did not stop within 30 s of SIGTERM and was killed");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}

impl Drop for KafkaConnect {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.dir.take();
    }
}

/// The standalone worker's configuration (see the module docs).
fn worker_properties(bootstrap: &str, rest_port: u16, dir: &Path, plugins: &Path) -> String {
    format!(
        "# written by walrus-testkit (crates/walrus-testkit/src/debezium.rs)\n\
         bootstrap.servers={bootstrap}\n\
         key.converter=org.apache.kafka.connect.json.JsonConverter\n\
         value.converter=org.apache.kafka.connect.json.JsonConverter\n\
         key.converter.schemas.enable=true\n\
         value.converter.schemas.enable=true\n\
         offset.storage.file.filename={}\n\
         offset.flush.interval.ms={OFFSET_FLUSH_MS}\n\
         plugin.path={}\n\
         plugin.discovery=only_scan\n\
         listeners=http://127.0.0.1:{rest_port}\n\
         rest.advertised.host.name=127.0.0.1\n\
         rest.advertised.port={rest_port}\n",
        dir.join("offsets.dat").display(),
        plugins.display(),
    )
}

/// `value` as a JSON string literal.
fn json_string(value: &str) -> String {
    serde_json::Value::String(value.to_owned()).to_string()
}

/// One HTTP/1.1 request to the worker's REST API on 127.0.0.1: the status code and body.
/// Enough for Connect's small JSON answers, without an HTTP client dependency.
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .with_context(|| format!("connecting to Kafka Connect on port {port}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nAccept: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("Kafka Connect answered {method} {path} without headers"))?;
    let head = String::from_utf8_lossy(&answer[..split]);
    let rest = &answer[split + 4..];
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("Kafka Connect answered {method} {path} with {head:?}"))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}

/// The body of a chunked HTTP answer (chunk sizes count bytes, so this works on bytes).
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let Some(size) = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
        else {
            break;
        };
        let after = &rest[eol + 2..];
        if size == 0 || after.len() < size {
            break;
        }
        out.extend_from_slice(&after[..size]);
        rest = after[size..]
            .strip_prefix(b"\r\n")
            .unwrap_or(&after[size..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk(b"4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n"),
            b"{\"a\":1}"
        );
    }

    #[test]
    fn connector_configs_are_json_strings() {
        assert_eq!(json_string("a\"b\\c"), r#""a\"b\\c""#);
    }
}
