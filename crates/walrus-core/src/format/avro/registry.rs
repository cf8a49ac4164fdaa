//! The schema registry: subject names, the Confluent REST subset walrus uses, and the id
//! cache.
//!
//! walrus speaks the Confluent Schema Registry API (also served by Apicurio Registry at
//! `/apis/ccompat/v7` and by Karapace):
//!
//! - `POST /subjects/{subject}/versions` `{"schema": ..}` → `{"id": n}`: registers a schema
//!   (or finds it, when the subject already has it) and gives its global id. `409` means the
//!   subject's compatibility level refuses it; `422` that the schema is invalid.
//! - `GET /config/{subject}`, falling back to `GET /config`: the compatibility level, for
//!   error messages and `walrus check`.
//!
//! Registration happens on the encoding path (a table's first event, or its first event
//! after a schema change), which is synchronous: the client blocks the calling worker
//! thread with `tokio::task::block_in_place` on a multi-threaded runtime. That is rare and
//! short, and it is what keeps a new schema version registered before the first record of
//! the new shape. Transient failures (connection errors, timeouts, `5xx`, `429`) are retried
//! with backoff a few times, then reported as retryable: the pipeline restarts and resumes
//! from the slot.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;

use crate::config::Secret;
pub use crate::config::SubjectNameStrategy;
use crate::error::ErrorKind;

impl SubjectNameStrategy {
    /// The subject of a key or value schema whose record is `record` on `topic`.
    pub fn subject(self, topic: &str, is_key: bool, record: &str) -> String {
        match self {
            SubjectNameStrategy::TopicNameStrategy => {
                format!("{topic}-{}", if is_key { "key" } else { "value" })
            }
            SubjectNameStrategy::RecordNameStrategy => record.to_string(),
            SubjectNameStrategy::TopicRecordNameStrategy => format!("{topic}-{record}"),
        }
    }
}

/// Errors talking to a schema registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The subject's compatibility level refuses the schema (`409`), or the registry found
    /// the schema invalid (`422`).
    #[error("subject {subject:?} refused the schema under compatibility level {level}: {message}")]
    Incompatible {
        /// The subject.
        subject: String,
        /// Its compatibility level, as the registry reports it.
        level: String,
        /// The registry's message.
        message: String,
    },
    /// The registry could not be reached or answered with a transient error, after retries.
    #[error("schema registry at {url} unavailable: {message}")]
    Unavailable {
        /// The registry's base URL.
        url: String,
        /// The last error.
        message: String,
    },
    /// The registry refused the request otherwise (authentication, authorisation, a bad
    /// URL or TLS setting).
    #[error("schema registry at {url} refused {what}: {message}")]
    Rejected {
        /// The registry's base URL.
        url: String,
        /// The request.
        what: String,
        /// The status and message.
        message: String,
    },
}

impl RegistryError {
    /// Its place in walrus's error policy.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RegistryError::Incompatible { .. } => ErrorKind::SchemaIncompatible,
            RegistryError::Unavailable { .. } => ErrorKind::SchemaRegistry,
            RegistryError::Rejected { .. } => ErrorKind::SchemaRegistryRejected,
        }
    }
}

/// A place that gives schema ids. Shared by every encoder of a pipeline.
pub trait SchemaRegistry: Send + Sync {
    /// Registers `schema` (Avro schema JSON) under `subject`, or finds it there; its id.
    fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError>;
}

/// An in-process registry: ids from 1 in registration order, one per distinct schema,
/// every subject accepting everything. For tests, benchmarks and a registry-less `null` run.
#[derive(Debug, Default)]
pub struct MemoryRegistry {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    ids: HashMap<String, u32>,
    subjects: HashMap<String, Vec<u32>>,
}

impl MemoryRegistry {
    /// The schema JSON of an id.
    pub fn schema(&self, id: u32) -> Option<String> {
        let s = self.state.lock().ok()?;
        s.ids
            .iter()
            .find(|(_, v)| **v == id)
            .map(|(k, _)| k.clone())
    }

    /// The ids registered under a subject, in version order.
    pub fn versions(&self, subject: &str) -> Vec<u32> {
        self.state
            .lock()
            .map(|s| s.subjects.get(subject).cloned().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl SchemaRegistry for MemoryRegistry {
    fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let mut s = self.state.lock().map_err(|_| RegistryError::Unavailable {
            url: "memory".into(),
            message: "poisoned".into(),
        })?;
        let next = s.ids.len() as u32 + 1;
        let id = *s.ids.entry(schema.to_string()).or_insert(next);
        let versions = s.subjects.entry(subject.to_string()).or_default();
        if !versions.contains(&id) {
            versions.push(id);
        }
        Ok(id)
    }
}

/// The registry of `[format.registry]`, its client built on first use: building it reads
/// PEM files, and an error there is reported by the first registration (as a fatal
/// [`RegistryError::Rejected`] naming the key) rather than when encoders are made.
pub struct ConfiguredRegistry {
    config: Option<crate::config::RegistryConfig>,
    client: std::sync::OnceLock<Result<RegistryClient, String>>,
}

impl ConfiguredRegistry {
    /// For `[format.registry]` (`None` when it is missing: every registration fails).
    pub fn new(config: Option<crate::config::RegistryConfig>) -> Self {
        ConfiguredRegistry {
            config,
            client: std::sync::OnceLock::new(),
        }
    }
}

impl SchemaRegistry for ConfiguredRegistry {
    fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let Some(cfg) = &self.config else {
            return Err(RegistryError::Rejected {
                url: String::new(),
                what: format!("subject {subject:?}"),
                message: "format.registry.url is not set".into(),
            });
        };
        let client = self
            .client
            .get_or_init(|| RegistryClient::from_config(cfg).map_err(|e| e.to_string()));
        match client {
            Ok(c) => c.register(subject, schema),
            Err(message) => Err(RegistryError::Rejected {
                url: cfg.url.clone(),
                what: "the client settings".into(),
                message: message.clone(),
            }),
        }
    }
}

/// TLS and authentication for [`RegistryClient`].
#[derive(Clone, Debug, Default)]
pub struct RegistryAuth {
    /// HTTP basic auth user.
    pub username: Option<String>,
    /// HTTP basic auth password.
    pub password: Option<Secret>,
    /// PEM CA bundle to trust (besides the system's roots).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate chain and private key, concatenated.
    pub identity_pem: Option<Vec<u8>>,
}

/// How many times a transient failure is retried, and the first backoff (doubling).
pub const REGISTRY_RETRIES: u32 = 5;
/// First backoff between retries; doubles each time.
pub const REGISTRY_BACKOFF: Duration = Duration::from_millis(200);
/// Timeout of one request.
pub const REGISTRY_TIMEOUT: Duration = Duration::from_secs(10);

/// A Confluent-compatible registry over HTTP(S), with an id cache.
pub struct RegistryClient {
    base: String,
    http: reqwest::Client,
    username: Option<String>,
    password: Option<Secret>,
    cache: Mutex<HashMap<(String, String), u32>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("base", &self.base)
            .field("username", &self.username)
            .finish()
    }
}

#[derive(Deserialize)]
struct IdAnswer {
    id: u32,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct ConfigAnswer {
    #[serde(rename = "compatibilityLevel", alias = "compatibility")]
    level: String,
}

/// Percent-encodes a path segment (subjects may hold any character).
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Runs `fut` to completion from synchronous code inside or outside a tokio runtime.
fn block_on<F: std::future::Future + Send>(fut: F) -> F::Output
where
    F::Output: Send,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| h.block_on(fut))
        }
        // A current-thread runtime cannot be blocked in place: run on a helper thread.
        _ => std::thread::scope(|s| {
            s.spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map(|rt| rt.block_on(fut))
            })
            .join()
        })
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
        .unwrap_or_else(|e| panic!("cannot start a runtime for the schema registry: {e}")),
    }
}

impl RegistryClient {
    /// A client for the registry at `url` (e.g. `http://127.0.0.1:8081`, or Apicurio's
    /// `http://host:8080/apis/ccompat/v7`).
    pub fn new(url: &str, auth: RegistryAuth) -> Result<RegistryClient, RegistryError> {
        let rejected = |message: String| RegistryError::Rejected {
            url: url.to_string(),
            what: "the TLS settings".into(),
            message,
        };
        let mut b = reqwest::Client::builder().timeout(REGISTRY_TIMEOUT);
        if let Some(ca) = &auth.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(ca)
                .map_err(|e| rejected(format!("format.registry.ca: {e}")))?
            {
                b = b.add_root_certificate(cert);
            }
        }
        if let Some(id) = &auth.identity_pem {
            b = b.identity(
                reqwest::Identity::from_pem(id)
                    .map_err(|e| rejected(format!("format.registry.cert/key: {e}")))?,
            );
        }
        let http = b.build().map_err(|e| rejected(e.to_string()))?;
        Ok(RegistryClient {
            base: url.trim_end_matches('/').to_string(),
            http,
            username: auth.username,
            password: auth.password,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// A client for `[format.registry]`, reading its PEM files.
    pub fn from_config(
        cfg: &crate::config::RegistryConfig,
    ) -> Result<RegistryClient, RegistryError> {
        let read = |key: &str, path: &std::path::Path| {
            std::fs::read(path).map_err(|e| RegistryError::Rejected {
                url: cfg.url.clone(),
                what: format!("format.registry.{key}"),
                message: format!("reading {}: {e}", path.display()),
            })
        };
        let ca_pem = cfg.ca.as_deref().map(|p| read("ca", p)).transpose()?;
        let identity_pem = match (&cfg.cert, &cfg.key) {
            (Some(c), Some(k)) => {
                let mut pem = read("cert", c)?;
                pem.push(b'\n');
                pem.extend(read("key", k)?);
                Some(pem)
            }
            _ => None,
        };
        RegistryClient::new(
            &cfg.url,
            RegistryAuth {
                username: cfg.username.clone(),
                password: cfg.password.clone(),
                ca_pem,
                identity_pem,
            },
        )
    }

    /// Every subject the registry holds (`GET /subjects`).
    pub async fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        let (status, body) = self
            .send("GET /subjects", || {
                self.request(reqwest::Method::GET, "/subjects")
            })
            .await?;
        if status != 200 {
            return Err(self.rejected("GET /subjects", status, &body));
        }
        serde_json::from_str(&body)
            .map_err(|e| self.rejected("GET /subjects", status, &format!("{e}: {body}")))
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(
                "Accept",
                "application/vnd.schemaregistry.v1+json, application/json",
            );
        if let Some(user) = &self.username {
            r = r.basic_auth(user, self.password.as_ref().map(Secret::expose));
        }
        r
    }

    /// Sends with retries on transient failures: the status and body of the last answer.
    async fn send(
        &self,
        what: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(u16, String), RegistryError> {
        let mut backoff = REGISTRY_BACKOFF;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt > REGISTRY_RETRIES;
            match make().send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let body = resp.text().await.unwrap_or_default();
                    let transient = status >= 500 || status == 429 || status == 408;
                    if !transient || last {
                        if transient {
                            return Err(RegistryError::Unavailable {
                                url: self.base.clone(),
                                message: format!("{what}: HTTP {status}: {body}"),
                            });
                        }
                        return Ok((status, body));
                    }
                    tracing::warn!(
                        status,
                        what,
                        "schema registry answered a transient error; retrying"
                    );
                }
                Err(e) if e.is_builder() => {
                    return Err(RegistryError::Rejected {
                        url: self.base.clone(),
                        what: what.to_string(),
                        message: e.to_string(),
                    })
                }
                Err(e) => {
                    if last {
                        return Err(RegistryError::Unavailable {
                            url: self.base.clone(),
                            message: format!("{what}: {e}"),
                        });
                    }
                    tracing::warn!(error = %e, what, "schema registry unreachable; retrying");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    fn message(body: &str) -> String {
        serde_json::from_str::<ErrorAnswer>(body)
            .map(|e| e.message)
            .ok()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| body.to_string())
    }

    /// The compatibility level of `subject` (`None`: the registry-wide level).
    pub async fn compatibility(&self, subject: Option<&str>) -> Result<String, RegistryError> {
        if let Some(s) = subject {
            let path = format!("/config/{}", path_segment(s));
            let (status, body) = self
                .send("GET /config/{subject}", || {
                    self.request(reqwest::Method::GET, &path)
                })
                .await?;
            if status == 200 {
                if let Ok(c) = serde_json::from_str::<ConfigAnswer>(&body) {
                    return Ok(c.level);
                }
            } else if status != 404 {
                return Err(self.rejected("GET /config/{subject}", status, &body));
            }
        }
        let (status, body) = self
            .send("GET /config", || {
                self.request(reqwest::Method::GET, "/config")
            })
            .await?;
        if status != 200 {
            return Err(self.rejected("GET /config", status, &body));
        }
        serde_json::from_str::<ConfigAnswer>(&body)
            .map(|c| c.level)
            .map_err(|e| self.rejected("GET /config", status, &format!("{e}: {body}")))
    }

    fn rejected(&self, what: &str, status: u16, body: &str) -> RegistryError {
        RegistryError::Rejected {
            url: self.base.clone(),
            what: what.to_string(),
            message: format!("HTTP {status}: {}", Self::message(body)),
        }
    }

    /// Registers `schema` under `subject`: its id.
    pub async fn register_async(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let path = format!("/subjects/{}/versions", path_segment(subject));
        let body = serde_json::json!({ "schema": schema }).to_string();
        let (status, answer) = self
            .send("POST /subjects/{subject}/versions", || {
                self.request(reqwest::Method::POST, &path)
                    .header("Content-Type", "application/vnd.schemaregistry.v1+json")
                    .body(body.clone())
            })
            .await?;
        match status {
            200 => serde_json::from_str::<IdAnswer>(&answer)
                .map(|a| a.id)
                .map_err(|e| {
                    self.rejected(
                        "POST /subjects/{subject}/versions",
                        status,
                        &format!("{e}: {answer}"),
                    )
                }),
            409 | 422 => {
                let level = self
                    .compatibility(Some(subject))
                    .await
                    .unwrap_or_else(|e| format!("unknown ({e})"));
                Err(RegistryError::Incompatible {
                    subject: subject.to_string(),
                    level,
                    message: Self::message(&answer),
                })
            }
            _ => Err(self.rejected("POST /subjects/{subject}/versions", status, &answer)),
        }
    }
}

impl SchemaRegistry for RegistryClient {
    fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let key = (subject.to_string(), schema.to_string());
        if let Some(id) = self.cache.lock().ok().and_then(|c| c.get(&key).copied()) {
            return Ok(id);
        }
        let id = block_on(self.register_async(subject, schema))?;
        tracing::info!(subject, id, "registered schema");
        if let Ok(mut c) = self.cache.lock() {
            c.insert(key, id);
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects() {
        use SubjectNameStrategy::*;
        assert_eq!(TopicNameStrategy.subject("t", true, "a.B"), "t-key");
        assert_eq!(TopicNameStrategy.subject("t", false, "a.B"), "t-value");
        assert_eq!(RecordNameStrategy.subject("t", false, "a.B"), "a.B");
        assert_eq!(TopicRecordNameStrategy.subject("t", true, "a.B"), "t-a.B");
        assert_eq!(path_segment("a b/c.d-e"), "a%20b%2Fc.d-e");
    }

    #[test]
    fn memory_registry_ids() {
        let r = MemoryRegistry::default();
        assert_eq!(r.register("s", "A").unwrap(), 1);
        assert_eq!(r.register("s", "A").unwrap(), 1);
        assert_eq!(r.register("s", "B").unwrap(), 2);
        assert_eq!(r.register("u", "A").unwrap(), 1);
        assert_eq!(r.versions("s"), vec![1, 2]);
        assert_eq!(r.schema(2).as_deref(), Some("B"));
    }
}
