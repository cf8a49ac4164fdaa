//! Apache Kafka for tests: a one-node KRaft broker (combined broker and controller) on free
//! ports of 127.0.0.1, from the jars `scripts/install-deps.sh` puts in the cache, and the
//! `java` command line that Kafka Connect (or any other Kafka tool) runs from the same jars.
//!
//! ```text
//! install-deps.sh ──mvn copy-dependencies──▶ <cache>/kafka-4.4.0/libs/*.jar   (once per machine)
//!                                                │
//! template (kafka-storage format, once) ──cp -a──▶ <broker dir>/data ──java kafka.Kafka──▶ broker
//!  <tmp>/walrus-testkit-kafka-template-…          KafkaBroker        on 127.0.0.1:<free ports>
//! ```
//!
//! - The cache is `$WALRUS_CACHE/kafka-4.4.0/libs`, else `$HOME/.cache/walrus/kafka-4.4.0/libs`:
//!   one flat directory holding the broker, the tools, Kafka Connect (runtime, JSON converter,
//!   transforms) and the log4j2 binding, as Kafka's own distribution does. [`kafka_libs_dir`]
//!   finds it; [`java_command`] is `java <small-JVM options> -cp <libs>/*`, to which a caller
//!   appends a main class (`kafka.Kafka`, `org.apache.kafka.connect.cli.ConnectStandalone`, …).
//! - Formatting a log directory (`kafka-storage format`) is a JVM start of its own, 2–4 s on
//!   two cores. The broker uses a static quorum (`controller.quorum.voters`), whose formatted
//!   directory names no port, so it is formatted once into a per-machine template, under an
//!   `flock`, and every broker copies it, as [`crate::PgCluster`] does with `initdb`.
//! - The broker is set up for transactions on one replica (the internal topics' replication
//!   factor and `min.insync.replicas` are 1), with few partitions for the internal topics, so
//!   that the first consumer group or transaction does not create fifty partitions.
//! - It is ready when its log says `Kafka Server started`. The JVM is kept small: 512 MiB
//!   heap at most, the serial collector, and only the C1 compiler (`TieredStopAtLevel=1`),
//!   which starts faster and is fast enough for tests; [`KafkaBrokerBuilder::full_jit`] turns
//!   the C2 compiler back on for benchmarks.
//!
//! # Two ways to get a broker
//!
//! A JVM broker takes several seconds and a few hundred MiB to start, and cargo-nextest runs
//! every test in its own process. So:
//!
//! - [`KafkaBroker::shared`] gives the broker shared by every test process of one test run:
//!   the first process to ask starts it, the others wait on a lock file and reuse it. A run is
//!   `$NEXTEST_RUN_ID` under nextest (whose process is then the parent of every test process),
//!   else the test process itself (`cargo test` runs a binary's tests in one process). It is
//!   stopped when the run's process exits. Tests sharing it must use their own topics,
//!   consumer groups and transactional ids (e.g. from [`crate::unique_name`]); a
//!   [`SharedKafkaBroker`] cannot be paused, stopped or killed.
//! - [`KafkaBroker::start`] gives a test its own broker, for tests that pause, stop, restart or
//!   kill it (or configure it differently). It is killed and deleted on drop.
//!
//! A test process killed from outside (a nextest timeout) cannot run `Drop`; every broker
//! therefore has a watchdog, a small `sh` loop that kills the broker and deletes its directory
//! once the process owning it (the test, or the run for the shared broker) is gone.
//!
//! # TLS and SASL/SCRAM
//!
//! [`KafkaBrokerBuilder::tls`] and [`KafkaBrokerBuilder::scram_user`] add a third listener,
//! `SECURE` (the plaintext one stays, for the broker's own traffic and for tests that read
//! back what a client wrote): `SSL` with TLS only, `SASL_PLAINTEXT` with SCRAM users only,
//! `SASL_SSL` with both ([`KafkaBroker::secure_protocol`], in librdkafka's spelling).
//!
//! - TLS: a CA of its own signs the broker's certificate (for `127.0.0.1` and `localhost`,
//!   so clients verifying the host name accept it); the broker reads key and chain from one
//!   PEM file (`ssl.keystore.type=PEM`), clients trust [`KafkaBroker::ca_file`].
//! - SCRAM: the users get SCRAM-SHA-256 and SCRAM-SHA-512 credentials when the log directory
//!   is formatted (`kafka-storage format --add-scram`, KIP-900: KRaft keeps credentials in
//!   its metadata log), so such a broker formats its own directory instead of copying the
//!   template, a JVM start more.
//!
//! # Faults
//!
//! [`KafkaBroker::pause`] / [`KafkaBroker::resume`] stop and continue the JVM (SIGSTOP /
//! SIGCONT): connections stay open and nothing is answered, like a hung broker or a network
//! partition. [`KafkaBroker::stop`] is a clean shutdown (SIGTERM), [`KafkaBroker::kill`] a crash
//! (SIGKILL); [`KafkaBroker::start_again`] starts it on the same ports and data, and
//! [`KafkaBroker::restart`] does both.
//!
//! # Environment
//!
//! - `WALRUS_CACHE`: the cache directory (default `$HOME/.cache/walrus`).
//! - `JAVA_HOME`: the JDK whose `bin/java` runs Kafka (default: `java` on `PATH`; Java 17+).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tempfile::TempDir;

use crate::privileges::euid;
use crate::template::Flock;

/// The Apache Kafka version `scripts/install-deps.sh` fetches and the tests run.
pub const KAFKA_VERSION: &str = "4.4.0";

/// Options for every JVM started from the cache: a small heap, the serial collector (one
/// thread, no background GC threads competing for two cores), no perf-data file.
const JVM_OPTS: &[&str] = &[
    "-Xms64m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:-UsePerfData",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
];

/// Only the C1 compiler: a JVM that lives for a test starts faster and uses less CPU without
/// C2, whose better code pays off only under sustained load (see
/// [`KafkaBrokerBuilder::full_jit`]).
const QUICK_START_OPT: &str = "-XX:TieredStopAtLevel=1";

/// The address every listener binds.
const HOST: &str = "127.0.0.1";

/// The line Kafka logs once the broker serves clients.
const READY_LINE: &str = "Kafka Server started";

/// How long a broker may take to become ready (a loaded two-core machine takes ~10 s).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a clean shutdown may take before the broker is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How many port pairs a first start tries when a port was taken in the gap.
const PORT_ATTEMPTS: usize = 4;

/// The cluster id every broker shares (they never meet): Kafka's base64url form of 16 bytes.
const CLUSTER_ID: &str = "d2FscnVzLXRlc3RraXQtMQ";

/// Bumped whenever the template's format step changes, so old templates are not reused.
const TEMPLATE_FORMAT: u32 = 1;

/// Console logging to stdout at INFO, which the broker's stdout redirect puts in its log file.
const LOG4J_CONFIG: &str = "\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.target = SYSTEM_OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
";

/// The watchdog: `$1` is the owner's pid, `$2` the broker directory, further arguments files
/// to delete with it. While the owner and the directory exist it sleeps; then it kills the
/// pid in `$2/broker.pid` (continuing it first, in case it was paused, and giving it a few
/// seconds to exit cleanly) and deletes the directory and the files.
const WATCHDOG: &str = r#"
owner=$1; dir=$2; shift 2
while kill -0 "$owner" 2>/dev/null && [ -d "$dir" ]; do sleep 1; done
[ -d "$dir" ] || exit 0
pid=$(cat "$dir/broker.pid" 2>/dev/null)
if [ -n "$pid" ]; then
    kill -CONT "$pid" 2>/dev/null; kill -TERM "$pid" 2>/dev/null
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 10 ]; do sleep 1; i=$((i+1)); done
    kill -KILL "$pid" 2>/dev/null
fi
rm -rf "$dir" "$@"
"#;

/// The cache directory: `$WALRUS_CACHE`, else `$HOME/.cache/walrus`.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("WALRUS_CACHE").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| anyhow!("neither WALRUS_CACHE nor HOME is set: cannot find the cache"))?;
    Ok(PathBuf::from(home).join(".cache/walrus"))
}

/// The directory of Kafka's jars (broker, tools, Kafka Connect, log4j2 binding), with an
/// error naming `scripts/install-deps.sh` when they are not there.
pub fn kafka_libs_dir() -> Result<PathBuf> {
    let libs = cache_dir()?.join(format!("kafka-{KAFKA_VERSION}/libs"));
    let marker = libs.join(format!("kafka_2.13-{KAFKA_VERSION}.jar"));
    if !marker.is_file() {
        bail!(
            "Apache Kafka {KAFKA_VERSION} is not in the cache ({} is missing): run \
             scripts/install-deps.sh, which fetches it with Maven (or set WALRUS_CACHE to the \
             cache that holds kafka-{KAFKA_VERSION}/libs)",
            marker.display()
        );
    }
    Ok(libs)
}

/// The `java` binary: `$JAVA_HOME/bin/java` when set, else `java` from `PATH`.
pub fn java_binary() -> PathBuf {
    if let Some(home) = std::env::var_os("JAVA_HOME").filter(|h| !h.is_empty()) {
        let java = PathBuf::from(home).join("bin/java");
        if java.is_file() {
            return java;
        }
    }
    PathBuf::from("java")
}

/// `java <options> -Dlog4j2.configurationFile=<work_dir>/log4j2.properties -cp <libs>/*`,
/// run in `work_dir` with stdin closed: append further JVM options (`-D…`), then the main
/// class and its arguments, and redirect stdout (where log4j2 writes, at INFO) to a log file.
///
/// The options are the small JVM the module docs describe (C1 only). This is how Kafka
/// Connect is started from the same cache, e.g. with main class
/// `org.apache.kafka.connect.cli.ConnectStandalone` and its worker and connector files (add
/// the connector's own jars with `-Dplugin.path` in the worker file, not to this classpath).
pub fn java_command(work_dir: &Path) -> Result<Command> {
    java_command_with(work_dir, true)
}

fn java_command_with(work_dir: &Path, quick_start: bool) -> Result<Command> {
    if quick_start {
        java_command_opts(work_dir, &[JVM_OPTS, &[QUICK_START_OPT]].concat())
    } else {
        java_command_opts(work_dir, JVM_OPTS)
    }
}

/// The JVM options Kafka's own scripts start Kafka Connect with (`connect-standalone.sh`:
/// a 256 MiB–2 GiB heap; `kafka-run-class.sh`: G1 with its pause target, full JIT), for
/// benchmarks that should measure Connect as it is deployed, not the small test JVM.
const DEPLOYED_JVM_OPTS: &[&str] = &[
    "-Xms256M",
    "-Xmx2G",
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
];

/// [`java_command`] with Kafka's deployed JVM options ([`DEPLOYED_JVM_OPTS`]).
pub(crate) fn java_command_deployed(work_dir: &Path) -> Result<Command> {
    java_command_opts(work_dir, DEPLOYED_JVM_OPTS)
}

fn java_command_opts(work_dir: &Path, opts: &[&str]) -> Result<Command> {
    let libs = kafka_libs_dir()?;
    let log4j = work_dir.join("log4j2.properties");
    std::fs::write(&log4j, LOG4J_CONFIG).with_context(|| format!("writing {}", log4j.display()))?;
    let mut cmd = Command::new(java_binary());
    cmd.args(opts);
    cmd.arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
        .arg("-cp")
        .arg(format!("{}/*", libs.display()))
        .current_dir(work_dir)
        .stdin(Stdio::null());
    Ok(cmd)
}

/// A port that was free when asked; see [`KafkaBroker::start`] for the race this leaves.
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((HOST, 0)).context("binding a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// The `SECURE` listener of a broker with TLS or SCRAM users (see the module docs).
#[derive(Debug, Clone)]
struct SecureListener {
    port: u16,
    tls: bool,
    sasl: bool,
    /// The broker's key and certificate chain, one PEM file (TLS only).
    keystore: Option<PathBuf>,
}

impl SecureListener {
    /// Kafka's name of the listener's security protocol.
    fn protocol(&self) -> &'static str {
        match (self.tls, self.sasl) {
            (true, true) => "SASL_SSL",
            (true, false) => "SSL",
            (false, true) => "SASL_PLAINTEXT",
            (false, false) => "PLAINTEXT",
        }
    }
}

/// The SCRAM mechanisms every [`KafkaBrokerBuilder::scram_user`] gets credentials for.
const SCRAM_MECHANISMS: [&str; 2] = ["SCRAM-SHA-256", "SCRAM-SHA-512"];

/// The broker's `server.properties`.
fn server_properties(
    data: &Path,
    port: u16,
    controller_port: u16,
    secure: Option<&SecureListener>,
    extra: &[(String, String)],
) -> String {
    let (mut listeners, mut advertised, mut protocols) = (
        format!("PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}"),
        format!("PLAINTEXT://{HOST}:{port}"),
        "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT".to_owned(),
    );
    let mut security = Vec::new();
    if let Some(sec) = secure {
        listeners.push_str(&format!(",SECURE://{HOST}:{}", sec.port));
        advertised.push_str(&format!(",SECURE://{HOST}:{}", sec.port));
        protocols.push_str(&format!(",SECURE:{}", sec.protocol()));
        if let Some(keystore) = &sec.keystore {
            security.push(("ssl.keystore.type".to_owned(), "PEM".to_owned()));
            security.push((
                "ssl.keystore.location".to_owned(),
                keystore.display().to_string(),
            ));
            security.push(("ssl.client.auth".to_owned(), "none".to_owned()));
        }
        if sec.sasl {
            security.push((
                "sasl.enabled.mechanisms".to_owned(),
                SCRAM_MECHANISMS.join(","),
            ));
            for mechanism in SCRAM_MECHANISMS {
                security.push((
                    format!(
                        "listener.name.secure.{}.sasl.jaas.config",
                        mechanism.to_ascii_lowercase()
                    ),
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;".to_owned(),
                ));
            }
        }
    }
    let mut props = vec![
        ("process.roles".to_owned(), "broker,controller".to_owned()),
        ("node.id".to_owned(), "1".to_owned()),
        (
            "controller.quorum.voters".to_owned(),
            format!("1@{HOST}:{controller_port}"),
        ),
        ("listeners".to_owned(), listeners),
        ("advertised.listeners".to_owned(), advertised),
        ("listener.security.protocol.map".to_owned(), protocols),
        (
            "controller.listener.names".to_owned(),
            "CONTROLLER".to_owned(),
        ),
        (
            "inter.broker.listener.name".to_owned(),
            "PLAINTEXT".to_owned(),
        ),
        ("log.dirs".to_owned(), data.display().to_string()),
        ("num.partitions".to_owned(), "1".to_owned()),
        // One broker: every internal topic has one replica, and needs only that one in sync.
        (
            "offsets.topic.replication.factor".to_owned(),
            "1".to_owned(),
        ),
        ("offsets.topic.num.partitions".to_owned(), "4".to_owned()),
        (
            "transaction.state.log.replication.factor".to_owned(),
            "1".to_owned(),
        ),
        ("transaction.state.log.min.isr".to_owned(), "1".to_owned()),
        (
            "transaction.state.log.num.partitions".to_owned(),
            "4".to_owned(),
        ),
        (
            "share.coordinator.state.topic.replication.factor".to_owned(),
            "1".to_owned(),
        ),
        (
            "share.coordinator.state.topic.min.isr".to_owned(),
            "1".to_owned(),
        ),
        ("min.insync.replicas".to_owned(), "1".to_owned()),
        (
            "group.initial.rebalance.delay.ms".to_owned(),
            "0".to_owned(),
        ),
    ];
    props.extend(security);
    for (key, value) in extra {
        match props.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.clone(),
            None => props.push((key.clone(), value.clone())),
        }
    }
    let mut out =
        String::from("# written by walrus-testkit (crates/walrus-testkit/src/kafka.rs)\n");
    for (key, value) in props {
        out.push_str(&format!("{key}={value}\n"));
    }
    out
}

/// Returns the per-machine template log directory, formatting it when needed (see the module
/// docs). Concurrent test processes serialise on an `flock`; the template is formatted in a
/// staging directory and renamed into place, so one under the final name is complete.
fn ensure_template() -> Result<PathBuf> {
    let base = std::env::temp_dir();
    let key = format!("v{TEMPLATE_FORMAT}-{KAFKA_VERSION}-{}", euid());
    let dir = base.join(format!("walrus-testkit-kafka-template-{key}"));
    let complete = |dir: &Path| dir.join("data/meta.properties").is_file();
    if complete(&dir) {
        return Ok(dir.join("data"));
    }
    let lock_path = base.join(format!("walrus-testkit-kafka-template-{key}.lock"));
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    let _guard =
        Flock::exclusive(&lock).with_context(|| format!("locking {}", lock_path.display()))?;
    if complete(&dir) {
        return Ok(dir.join("data"));
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("removing incomplete template {}", dir.display()))?;
    }
    let staging = tempfile::Builder::new()
        .prefix(&format!("walrus-testkit-kafka-template-{key}.staging-"))
        .tempdir_in(&base)
        .with_context(|| format!("creating a staging directory in {}", base.display()))?;
    format_log_dir(staging.path(), &staging.path().join("data"), &[])?;
    std::fs::rename(staging.path(), &dir)
        .with_context(|| format!("moving the template into {}", dir.display()))?;
    let _ = staging.keep();
    Ok(dir.join("data"))
}

/// Formats the log directory `data` (`kafka-storage format`, run in `work`), with SCRAM
/// credentials for `scram_users` (names and passwords without `,`, `[` or `]`).
fn format_log_dir(work: &Path, data: &Path, scram_users: &[(String, String)]) -> Result<()> {
    let props = work.join("format.properties");
    // The ports only have to parse: a static quorum's formatted directory does not hold them.
    std::fs::write(&props, server_properties(data, 1, 2, None, &[]))
        .with_context(|| format!("writing {}", props.display()))?;
    let mut cmd = java_command(work)?;
    cmd.args(["kafka.tools.StorageTool", "format", "-t", CLUSTER_ID, "-c"])
        .arg(&props);
    for (name, password) in scram_users {
        for mechanism in SCRAM_MECHANISMS {
            cmd.arg("--add-scram")
                .arg(format!("{mechanism}=[name={name},password={password}]"));
        }
    }
    let out = cmd
        .output()
        .context("running kafka-storage format (java kafka.tools.StorageTool)")?;
    if !out.status.success() || !data.join("meta.properties").is_file() {
        bail!(
            "kafka-storage format failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Writes a CA and a broker certificate it signs (for `127.0.0.1` and `localhost`) into
/// `dir`: `ca.pem`, and `server.pem` with the broker's key and chain. Returns their paths.
fn write_tls_files(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "walrus-testkit Kafka CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::V4(
            std::net::Ipv4Addr::LOCALHOST,
        )));
    let cert = params.signed_by(&key, &ca)?;
    let ca_file = dir.join("ca.pem");
    let keystore = dir.join("server.pem");
    std::fs::write(&ca_file, ca.pem()).with_context(|| format!("writing {}", ca_file.display()))?;
    std::fs::write(
        &keystore,
        format!("{}{}{}", key.serialize_pem(), cert.pem(), ca.pem()),
    )
    .with_context(|| format!("writing {}", keystore.display()))?;
    Ok((ca_file, keystore))
}

/// Copies directory `from` into the new directory `to`.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Options for a broker of one's own: extra `server.properties` settings, listeners beyond
/// the plaintext one, the JIT.
#[derive(Debug, Default, Clone)]
pub struct KafkaBrokerBuilder {
    settings: Vec<(String, String)>,
    full_jit: bool,
    tls: bool,
    scram_users: Vec<(String, String)>,
    /// The process whose end the watchdog waits for, and extra files it deletes then
    /// (`None`: this process, nothing extra).
    owner: Option<(u32, Vec<PathBuf>)>,
}

impl KafkaBrokerBuilder {
    /// Sets one `server.properties` key, overriding the default the module docs describe.
    pub fn setting(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((key.into(), value.into()));
        self
    }

    /// Runs the JVM with its C2 compiler: slower to start, faster under sustained load (for
    /// benchmarks, whose numbers should not depend on a broker handicapped for quick tests).
    pub fn full_jit(mut self) -> Self {
        self.full_jit = true;
        self
    }

    /// Adds the `SECURE` listener with TLS (see the module docs): `SSL`, or `SASL_SSL` with
    /// [`KafkaBrokerBuilder::scram_user`].
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Adds a SCRAM user (SCRAM-SHA-256 and SCRAM-SHA-512) and the `SECURE` listener with
    /// SASL (see the module docs): `SASL_PLAINTEXT`, or `SASL_SSL` with
    /// [`KafkaBrokerBuilder::tls`]. Name and password must not contain `,`, `[` or `]`.
    pub fn scram_user(mut self, name: impl Into<String>, password: impl Into<String>) -> Self {
        self.scram_users.push((name.into(), password.into()));
        self
    }

    /// Starts the broker and waits until it serves clients.
    ///
    /// The ports are chosen by binding port 0 and releasing it; another process can take one
    /// in the gap, so a first start that fails with "Address already in use" is retried on
    /// new ports. After that the ports never change: tests that restart the broker reconnect
    /// to the same address.
    pub fn start(self) -> Result<KafkaBroker> {
        let dir = tempfile::Builder::new()
            .prefix("walrus-testkit-kafka-")
            .tempdir()
            .context("creating a temp dir for the broker")?;
        let data = dir.path().join("data");
        if self.scram_users.is_empty() {
            copy_dir(&ensure_template()?, &data)?;
        } else {
            // The credentials are part of the formatted metadata: no shared template.
            format_log_dir(dir.path(), &data, &self.scram_users)?;
        }
        let (ca_file, keystore) = if self.tls {
            let (ca, keystore) = write_tls_files(&dir.path().join("tls"))?;
            (Some(ca), Some(keystore))
        } else {
            (None, None)
        };
        let (owner, extra) = self
            .owner
            .clone()
            .unwrap_or_else(|| (std::process::id(), Vec::new()));
        spawn_watchdog(owner, dir.path(), &extra)?;
        let files = BrokerFiles::new(dir.path());
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let controller_port = free_port()?;
            let secure = (self.tls || !self.scram_users.is_empty())
                .then(|| -> Result<SecureListener> {
                    Ok(SecureListener {
                        port: free_port()?,
                        tls: self.tls,
                        sasl: !self.scram_users.is_empty(),
                        keystore: keystore.clone(),
                    })
                })
                .transpose()?;
            let mut ports = vec![port, controller_port];
            ports.extend(secure.as_ref().map(|s| s.port));
            ports.sort_unstable();
            ports.dedup();
            if ports.len() < 2 + usize::from(secure.is_some()) {
                continue;
            }
            std::fs::write(
                &files.props,
                server_properties(
                    &data,
                    port,
                    controller_port,
                    secure.as_ref(),
                    &self.settings,
                ),
            )
            .with_context(|| format!("writing {}", files.props.display()))?;
            match launch(&files, self.full_jit) {
                Ok(child) => {
                    return Ok(KafkaBroker {
                        port,
                        secure,
                        ca_file,
                        files,
                        full_jit: self.full_jit,
                        child: Mutex::new(Some(child)),
                        dir: Some(dir),
                    })
                }
                Err(e) if e.port_in_use => last = Some(e.error),
                Err(e) => return Err(e.error),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("found no two free ports")))
    }
}

/// The files of one broker, inside its directory.
#[derive(Debug)]
struct BrokerFiles {
    /// `server.properties`.
    props: PathBuf,
    /// Everything the JVM printed (log4j2 writes to stdout), appended on every start.
    log: PathBuf,
    /// The running JVM's pid, for the watchdog.
    pid: PathBuf,
    /// The broker directory, where the JVM runs.
    dir: PathBuf,
}

impl BrokerFiles {
    fn new(dir: &Path) -> BrokerFiles {
        BrokerFiles {
            props: dir.join("server.properties"),
            log: dir.join("broker.log"),
            pid: dir.join("broker.pid"),
            dir: dir.to_owned(),
        }
    }
}

/// A start failure, with whether it was a port being taken (worth retrying elsewhere).
struct StartError {
    error: anyhow::Error,
    port_in_use: bool,
}

/// Starts the JVM on the broker's files and waits for [`READY_LINE`] in what it logs from now
/// on; kills it when it does not get there.
fn launch(files: &BrokerFiles, full_jit: bool) -> std::result::Result<Child, StartError> {
    let fail = |error: anyhow::Error| StartError {
        error,
        port_in_use: false,
    };
    let log = File::options()
        .create(true)
        .append(true)
        .open(&files.log)
        .with_context(|| format!("opening {}", files.log.display()))
        .map_err(fail)?;
    let from = log.metadata().map(|m| m.len()).unwrap_or(0);
    let err = log
        .try_clone()
        .context("cloning the log handle")
        .map_err(fail)?;
    let started = Instant::now();
    let mut child = java_command_with(&files.dir, !full_jit)
        .map_err(fail)?
        .arg("kafka.Kafka")
        .arg(&files.props)
        .stdout(log)
        .stderr(err)
        // Its own process group: a signal for the test's group (a nextest timeout) leaves
        // the broker to the watchdog, which also covers a shared broker outliving its starter.
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {} kafka.Kafka", java_binary().display()))
        .map_err(fail)?;
    std::fs::write(&files.pid, child.id().to_string())
        .with_context(|| format!("writing {}", files.pid.display()))
        .map_err(fail)?;
    let failure = |child: &mut Child, error: anyhow::Error| {
        let _ = child.kill();
        let _ = child.wait();
        let text = read_from(&files.log, from);
        StartError {
            port_in_use: text.contains("Address already in use"),
            error: anyhow!("{error}; broker log:\n{}", tail(&text, 60)),
        }
    };
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Err(failure(
                    &mut child,
                    anyhow!("the Kafka broker exited with {status}"),
                ))
            }
            Ok(None) => {}
            Err(e) => return Err(failure(&mut child, e.into())),
        }
        if read_from(&files.log, from).contains(READY_LINE) {
            return Ok(child);
        }
        if started.elapsed() > START_TIMEOUT {
            return Err(failure(
                &mut child,
                anyhow!("the Kafka broker was not ready within {START_TIMEOUT:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What `path` holds from byte `from` on (lossily decoded), or nothing.
pub(crate) fn read_from(path: &Path, from: u64) -> String {
    let mut out = Vec::new();
    if let Ok(mut f) = File::open(path) {
        if f.seek(SeekFrom::Start(from)).is_ok() {
            let _ = f.read_to_end(&mut out);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Starts the watchdog of the module docs for the broker in `dir`, owned by process `owner`.
/// `extra` files are deleted with the directory.
pub(crate) fn spawn_watchdog(owner: u32, dir: &Path, extra: &[PathBuf]) -> Result<()> {
    Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("walrus-kafka-watchdog")
        .arg(owner.to_string())
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("starting the broker's watchdog (sh)")?;
    Ok(())
}

/// A one-node Apache Kafka broker of one's own, on 127.0.0.1; killed and deleted on drop.
///
/// Lifecycle calls take `&self`, so a test can share the broker in an `Arc` and restart it
/// from `tokio::task::spawn_blocking` while its own tasks keep running.
#[derive(Debug)]
pub struct KafkaBroker {
    port: u16,
    /// The `SECURE` listener, with TLS or SCRAM users.
    secure: Option<SecureListener>,
    /// The CA that signed the broker's certificate (TLS only).
    ca_file: Option<PathBuf>,
    files: BrokerFiles,
    full_jit: bool,
    /// The running JVM; `None` after [`KafkaBroker::stop`] or [`KafkaBroker::kill`].
    child: Mutex<Option<Child>>,
    /// `None` only while dropping, so the broker dies before its files go.
    dir: Option<TempDir>,
}

impl KafkaBroker {
    /// Starts a broker of one's own with the default settings (see the module docs).
    pub fn start() -> Result<KafkaBroker> {
        Self::builder().start()
    }

    /// Options for a broker with other settings.
    pub fn builder() -> KafkaBrokerBuilder {
        KafkaBrokerBuilder::default()
    }

    /// The broker shared by every test process of this test run (see the module docs).
    pub fn shared() -> Result<SharedKafkaBroker> {
        SharedKafkaBroker::get()
    }

    /// `127.0.0.1:<port>`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("{HOST}:{}", self.port)
    }

    /// The plaintext listener's port; the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>` of the `SECURE` listener, when the broker was built with
    /// [`KafkaBrokerBuilder::tls`] or [`KafkaBrokerBuilder::scram_user`].
    pub fn secure_bootstrap(&self) -> Option<String> {
        self.secure.as_ref().map(|s| format!("{HOST}:{}", s.port))
    }

    /// The `SECURE` listener's `security.protocol` in librdkafka's spelling (`ssl`,
    /// `sasl_plaintext`, `sasl_ssl`).
    pub fn secure_protocol(&self) -> Option<String> {
        self.secure
            .as_ref()
            .map(|s| s.protocol().to_ascii_lowercase())
    }

    /// The PEM file of the CA that signed the broker's certificate (for `ssl.ca.location`),
    /// when the broker has TLS.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// The JVM's pid, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.lock().as_ref().map(Child::id)
    }

    /// The broker's directory (`server.properties`, `broker.log`, `data/`).
    pub fn dir(&self) -> &Path {
        &self.files.dir
    }

    /// The broker log, appended to on every start.
    pub fn log_path(&self) -> &Path {
        &self.files.log
    }

    /// Everything the broker logged.
    pub fn log_text(&self) -> String {
        read_from(&self.files.log, 0)
    }

    /// The last `lines` lines of the broker log, for a failing test's message.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_text(), lines)
    }

    /// Whether the JVM is running (paused counts as running).
    pub fn is_running(&self) -> bool {
        let mut child = self.lock();
        match child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Freezes the broker (SIGSTOP): connections stay open, nothing is answered. Returns once
    /// every thread of the JVM is stopped: `kill(2)` returns before the signal has reached
    /// them, and a network thread still running for those microseconds answers a request.
    pub fn pause(&self) -> Result<()> {
        self.signal(libc::SIGSTOP)?;
        let Some(pid) = self.pid() else {
            bail!("the Kafka broker is not running");
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !all_threads_stopped(pid) {
            if Instant::now() > deadline {
                bail!("the Kafka broker's threads did not all stop within 5 s of SIGSTOP");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Lets a paused broker go on (SIGCONT).
    pub fn resume(&self) -> Result<()> {
        self.signal(libc::SIGCONT)
    }

    /// Shuts the broker down cleanly (SIGTERM: it closes its logs and leaves the quorum),
    /// killing it if that takes longer than 30 s. Does nothing if it is not running.
    pub fn stop(&self) -> Result<()> {
        let mut guard = self.lock();
        let Some(mut child) = guard.take() else {
            return Ok(());
        };
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child, which has not been reaped (we hold its handle).
        unsafe {
            libc::kill(pid, libc::SIGCONT);
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the Kafka broker did not stop within {STOP_TIMEOUT:?} of SIGTERM and was \
                     killed; log:\n{}",
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the broker at once (SIGKILL), like a crash: what it had not written to its log
    /// segments is lost, and the next start recovers them. Does nothing if it is not running.
    pub fn kill(&self) {
        if let Some(mut child) = self.lock().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again after [`KafkaBroker::stop`] or [`KafkaBroker::kill`], on the
    /// same ports and data, and waits until it serves clients. Does nothing if it runs.
    pub fn start_again(&self) -> Result<()> {
        let mut guard = self.lock();
        if let Some(child) = guard.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                return Ok(());
            }
        }
        // The ports were ours a moment ago, but a client's ephemeral port may have landed on
        // one since; such a socket goes away soon, so wait rather than move.
        let mut last = None;
        for _ in 0..10 {
            match launch(&self.files, self.full_jit) {
                Ok(child) => {
                    *guard = Some(child);
                    return Ok(());
                }
                Err(e) if e.port_in_use => {
                    last = Some(e.error);
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(e.error),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("the Kafka broker did not start again")))
    }

    /// [`KafkaBroker::stop`] then [`KafkaBroker::start_again`], keeping the ports and data.
    pub fn restart(&self) -> Result<()> {
        self.stop()?;
        self.start_again()
    }

    fn signal(&self, sig: libc::c_int) -> Result<()> {
        let guard = self.lock();
        let Some(child) = guard.as_ref() else {
            bail!("the Kafka broker is not running");
        };
        // SAFETY: kill(2) on our own child, not yet reaped, with a valid signal number.
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        if rc != 0 {
            bail!(
                "kill({}, {sig}): {}",
                child.id(),
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        // A panic while holding the lock leaves nothing half-done that matters here.
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        self.kill();
        // The TempDir's own drop deletes the directory; the watchdog then exits.
        self.dir.take();
    }
}

/// The broker shared by the test processes of one run (see the module docs): only its
/// address is exposed, because every test of the run depends on it staying up.
#[derive(Debug, Clone)]
pub struct SharedKafkaBroker {
    bootstrap: String,
}

impl SharedKafkaBroker {
    /// Returns this run's shared broker, starting it if no process of the run has.
    pub fn get() -> Result<SharedKafkaBroker> {
        static IN_PROCESS: OnceLock<SharedKafkaBroker> = OnceLock::new();
        if let Some(shared) = IN_PROCESS.get() {
            return Ok(shared.clone());
        }
        let shared = Self::find_or_start()?;
        Ok(IN_PROCESS.get_or_init(|| shared).clone())
    }

    /// `127.0.0.1:<port>`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    fn find_or_start() -> Result<SharedKafkaBroker> {
        // Under nextest the run is its process, the parent of every test process; otherwise
        // this process is the run.
        let (key, owner) = match std::env::var("NEXTEST_RUN_ID") {
            Ok(run) if !run.is_empty() => {
                // SAFETY: getppid cannot fail.
                (format!("nextest-{run}"), unsafe { libc::getppid() } as u32)
            }
            _ => (
                format!("process-{}", std::process::id()),
                std::process::id(),
            ),
        };
        let base = std::env::temp_dir();
        let lock_path = base.join(format!("walrus-testkit-kafka-shared-{key}.lock"));
        let state = base.join(format!("walrus-testkit-kafka-shared-{key}.bootstrap"));
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        let _guard =
            Flock::exclusive(&lock).with_context(|| format!("locking {}", lock_path.display()))?;
        if let Ok(text) = std::fs::read_to_string(&state) {
            if let Some((bootstrap, dir)) = text.trim().split_once(' ') {
                if Path::new(dir).is_dir() && answers(bootstrap) {
                    return Ok(SharedKafkaBroker {
                        bootstrap: bootstrap.to_owned(),
                    });
                }
            }
        }
        let mut broker = KafkaBrokerBuilder {
            owner: Some((owner, vec![lock_path.clone(), state.clone()])),
            ..KafkaBrokerBuilder::default()
        }
        .start()?;
        // The run's watchdog owns the broker now: let it outlive this process.
        let dir = broker
            .dir
            .take()
            .expect("a started broker owns its dir")
            .keep();
        let bootstrap = broker.bootstrap();
        broker.lock().take();
        drop(broker);
        std::fs::write(&state, format!("{bootstrap} {}\n", dir.display()))
            .with_context(|| format!("writing {}", state.display()))?;
        Ok(SharedKafkaBroker { bootstrap })
    }
}

/// Whether every thread of process `pid` is stopped (state `T` in `/proc/<pid>/task/*/stat`);
/// false when it cannot tell.
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let mut any = false;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            return false;
        };
        // `pid (comm) state ...`: comm may hold spaces and parentheses, so the state is the
        // first field after the last `)`.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        if state != Some("T") && state != Some("t") {
            return false;
        }
        any = true;
    }
    any
}

/// Whether a Kafka broker answers at `addr` (see [`probe`]).
fn answers(addr: &str) -> bool {
    probe(addr, Duration::from_secs(2)).is_ok()
}

/// Asks the broker at `addr` (`host:port`) for its API versions, the first request every
/// Kafka client sends, and checks the answer: that the broker serves clients, with no Kafka
/// client library needed. Fails when nothing answers within `timeout` (a paused broker).
pub fn probe(addr: &str, timeout: Duration) -> Result<()> {
    use std::io::Write;
    const API_VERSIONS: i16 = 18;
    const CORRELATION_ID: i32 = 0x5741_4c52;
    let sockaddr: std::net::SocketAddr = addr
        .parse()
        .with_context(|| format!("{addr} is not host:port"))?;
    let mut stream = TcpStream::connect_timeout(&sockaddr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // Request header v1 (api key, version 0, correlation id, client id); v0 has no body.
    let client_id = b"walrus-testkit";
    let mut request = Vec::new();
    request.extend_from_slice(&API_VERSIONS.to_be_bytes());
    request.extend_from_slice(&0i16.to_be_bytes());
    request.extend_from_slice(&CORRELATION_ID.to_be_bytes());
    request.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    request.extend_from_slice(client_id);
    let mut framed = (request.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&request);
    stream
        .write_all(&framed)
        .with_context(|| format!("writing to {addr}"))?;
    // Response: size, correlation id (header v0), error code, then the API list.
    let mut head = [0u8; 10];
    stream
        .read_exact(&mut head)
        .with_context(|| format!("reading the ApiVersions answer from {addr}"))?;
    let correlation = i32::from_be_bytes(head[4..8].try_into().expect("4 bytes"));
    let error = i16::from_be_bytes(head[8..10].try_into().expect("2 bytes"));
    if correlation != CORRELATION_ID || error != 0 {
        bail!("{addr} answered ApiVersions with correlation id {correlation}, error code {error}");
    }
    Ok(())
}
