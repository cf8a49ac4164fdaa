//! A real schema registry for tests: Apicurio Registry 3.3.3 (in-memory storage) with its
//! Confluent-compatible API at `/apis/ccompat/v7`.
//!
//! - The runnable archive `io.apicurio:apicurio-registry-app:3.3.3:tar.gz:all` is fetched from
//!   Maven Central and unpacked by `scripts/install-deps.sh` into
//!   `$WALRUS_CACHE/apicurio-registry-3.3.3` (`quarkus-run.jar` and its `lib/`, `app/`,
//!   `quarkus/` folders).
//! - It is compiled for Java 21 (class file version 65): the JVM is `$WALRUS_REGISTRY_JAVA`,
//!   else the first of `/usr/lib/jvm/*` whose major is at least 21, else `java` from `PATH`.
//! - Each [`RegistryServer`] runs on free ports (HTTP and Quarkus's management interface),
//!   logs to a file in its own temporary directory, and is killed on drop. Startup takes
//!   about 5 s on two cores.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::kafka::{cache_dir, free_port};

/// The Apicurio Registry version `scripts/install-deps.sh` installs.
pub const APICURIO_VERSION: &str = "3.3.3";
/// The Confluent-compatible API's path.
pub const CCOMPAT_PATH: &str = "/apis/ccompat/v7";

const HOST: &str = "127.0.0.1";

/// The unpacked Apicurio Registry, with an error naming `scripts/install-deps.sh`.
pub fn apicurio_dir() -> Result<PathBuf> {
    let dir = cache_dir()?.join(format!("apicurio-registry-{APICURIO_VERSION}"));
    if !dir.join("quarkus-run.jar").is_file() {
        bail!(
            "Apicurio Registry {APICURIO_VERSION} is not in the cache ({}/quarkus-run.jar is \
             missing): run scripts/install-deps.sh, which fetches it with Maven",
            dir.display()
        );
    }
    Ok(dir)
}

/// A JVM of major 21 or later (see the module docs).
pub fn java21() -> Result<PathBuf> {
    if let Some(j) = std::env::var_os("WALRUS_REGISTRY_JAVA").filter(|j| !j.is_empty()) {
        return Ok(PathBuf::from(j));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/jvm")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let major = name
                .split(|c: char| !c.is_ascii_digit())
                .find(|p| !p.is_empty())?
                .parse::<u32>()
                .ok()?;
            let java = e.path().join("bin/java");
            (major >= 21 && java.is_file()).then_some((major, java))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, java)) => Ok(java),
        None => {
            let out = Command::new("java").arg("-version").output();
            let text = out
                .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .unwrap_or_default();
            let major = text
                .split('"')
                .nth(1)
                .and_then(|v| v.split('.').next())
                .and_then(|m| m.parse::<u32>().ok())
                .unwrap_or(0);
            if major >= 21 {
                Ok(PathBuf::from("java"))
            } else {
                bail!(
                    "Apicurio Registry needs Java 21 or later and none was found (java on PATH \
                     is {text:?}): install one under /usr/lib/jvm or set WALRUS_REGISTRY_JAVA"
                )
            }
        }
    }
}

/// A running Apicurio Registry; killed on drop.
#[derive(Debug)]
pub struct RegistryServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl RegistryServer {
    /// Starts a registry and waits until its API answers.
    pub fn start() -> Result<RegistryServer> {
        let home = apicurio_dir()?;
        let java = java21()?;
        let dir = tempfile::Builder::new()
            .prefix("walrus-registry-")
            .tempdir()
            .context("creating the registry's directory")?;
        let port = free_port()?;
        let management = free_port()?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child = Command::new(&java)
            .args(["-XX:TieredStopAtLevel=1", "-Xss512k", "-Xmx512m"])
            .arg(format!("-Dquarkus.http.host={HOST}"))
            .arg(format!("-Dquarkus.http.port={port}"))
            .arg(format!("-Dquarkus.management.host={HOST}"))
            .arg(format!("-Dquarkus.management.port={management}"))
            .arg("-jar")
            .arg(home.join("quarkus-run.jar"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting Apicurio Registry with {}", java.display()))?;
        let mut server = RegistryServer { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok((200, _)) = server.http("GET", "/config", None) {
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!(
                    "Apicurio Registry exited ({status}) before answering:\n{}",
                    server.log_tail(30)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "Apicurio Registry did not answer within 120 s:\n{}",
                    server.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The Confluent-compatible base URL, for `[format.registry] url`.
    pub fn url(&self) -> String {
        format!("http://{HOST}:{}{CCOMPAT_PATH}", self.port)
    }

    /// The last lines of the registry's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// Sets a subject's compatibility level (`PUT /config/{subject}`), or the registry's
    /// when `subject` is `None`.
    pub fn set_compatibility(&self, subject: Option<&str>, level: &str) -> Result<()> {
        let path = match subject {
            Some(s) => format!("/config/{s}"),
            None => "/config".into(),
        };
        let body = format!("{{\"compatibility\":\"{level}\"}}");
        match self.http("PUT", &path, Some(&body))? {
            (200, _) => Ok(()),
            (status, text) => bail!("PUT {path}: HTTP {status}: {text}"),
        }
    }

    /// The ids of a subject's versions, oldest first (`GET /subjects/{s}/versions`, then
    /// each version's id).
    pub fn versions(&self, subject: &str) -> Result<Vec<u64>> {
        let (status, text) = self.http("GET", &format!("/subjects/{subject}/versions"), None)?;
        if status == 404 {
            return Ok(Vec::new());
        }
        if status != 200 {
            bail!("GET versions of {subject}: HTTP {status}: {text}");
        }
        let versions: Vec<u64> = serde_json::from_str(&text)?;
        let mut ids = Vec::new();
        for v in versions {
            let (_, t) = self.http("GET", &format!("/subjects/{subject}/versions/{v}"), None)?;
            let j: serde_json::Value = serde_json::from_str(&t)?;
            ids.push(j["id"].as_u64().ok_or_else(|| anyhow!("no id in {t}"))?);
        }
        Ok(ids)
    }

    /// A plain HTTP/1.1 request to the Confluent API: status and body.
    pub fn http(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String)> {
        http(self.port, method, &format!("{CCOMPAT_PATH}{path}"), body)
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with `Connection: close`, read to the end.
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String)> {
    let mut s = TcpStream::connect((HOST, port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\
         Content-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| anyhow!("not an HTTP answer: {text:?}"))?;
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Whether the registry can run here (archive installed, Java 21+ found).
pub fn available() -> bool {
    apicurio_dir().is_ok() && java21().is_ok()
}
