//! walrus's configuration: a TOML file, with `${ENV_VAR}` interpolation, unknown keys
//! rejected and every error naming the key path.
//!
//! Loading runs in three steps: the text is parsed as TOML (syntax errors carry line and
//! column), `${VAR}` / `${VAR:-default}` are substituted inside string values only (so a
//! secret containing quotes cannot break the syntax; `$${` is a literal `${`), and the tree
//! is deserialised into [`Config`] with `deny_unknown_fields` everywhere, then
//! [`Config::validate`] checks what types cannot (names, patterns, ranges). Defaults are the named constants below.
//!
//! The minimal form used by tools outside this repository must keep working:
//!
//! ```toml
//! topic_prefix = "app"
//! [source]
//! url = "postgres://user@127.0.0.1:5432/app"
//! slot = "walrus"
//! publication = "walrus"
//! tables = ["public.*"]
//! [sink]
//! type = "file"
//! path = "events.jsonl"
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::error::ConfigError;
use crate::pipeline;
pub use crate::selection::{TablePattern, TableSelection, REGEX_PATTERN_PREFIX};

mod observability;
pub use observability::*;

mod kafka;
pub use kafka::*;

mod snapshot;
pub use snapshot::*;

mod transactions;
pub use transactions::*;

mod transforms;
pub use transforms::*;

pub mod debezium;

mod registry;
pub use registry::*;

mod streaming;
pub use streaming::*;

/// Default topic prefix (Debezium's `topic.prefix`), also `source.name` in events.
pub const DEFAULT_TOPIC_PREFIX: &str = "walrus";
/// Default replication slot name.
pub const DEFAULT_SLOT: &str = "walrus";
/// Default publication name.
pub const DEFAULT_PUBLICATION: &str = "walrus";
/// Default table include pattern.
pub const DEFAULT_TABLES: &str = "public.*";
/// Default interval between standby status updates to PostgreSQL. Well inside the
/// server's default `wal_sender_timeout` of 60 s.
pub const DEFAULT_STATUS_INTERVAL_MS: u64 = 1000;
/// Default application name shown in `pg_stat_replication`.
pub const DEFAULT_APPLICATION_NAME: &str = "walrus";
/// Default placeholder for unchanged TOASTed values (Debezium's).
pub const DEFAULT_UNAVAILABLE_VALUE_PLACEHOLDER: &str = "__debezium_unavailable_value";
/// Default most records per batch handed from the source to the sink.
pub const DEFAULT_BATCH_MAX_RECORDS: usize = 2048;
/// Default longest time a record waits in the source before it is handed to the sink.
pub const DEFAULT_BATCH_LINGER_MS: u64 = 5;

/// A secret string: never printed by `Debug` or `Display`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Prefix of every topic name, and `source.name` in events (Debezium's `topic.prefix`).
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    /// Operations not published for any table (Debezium's `skipped.operations`); a table's
    /// own `skip_ops` adds to these.
    #[serde(default)]
    pub skip_ops: Vec<crate::router::OpName>,
    /// Regexes over `schema.table.column` (anchored, case-insensitive): only matching
    /// columns are written, in tables without their own column list (Debezium's
    /// `column.include.list`).
    #[serde(default)]
    pub include_columns: Vec<String>,
    /// Regexes over `schema.table.column` left out, in tables without their own column list
    /// (Debezium's `column.exclude.list`).
    #[serde(default)]
    pub exclude_columns: Vec<String>,
    /// `[[key_columns]]`: key columns for the tables a regex matches (Debezium's
    /// `message.key.columns`), unless their `[tables]` section sets `key_columns`.
    #[serde(default)]
    pub key_columns: Vec<crate::router::KeyColumnsRule>,
    /// Where changes come from.
    pub source: SourceConfig,
    /// Where events go.
    pub sink: SinkConfig,
    /// How events are encoded.
    #[serde(default)]
    pub format: FormatConfig,
    /// Batching and memory bounds.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// The slot watchdog: lag, retained WAL, stuck slots.
    #[serde(default)]
    pub watchdog: WatchdogConfig,
    /// Where alerts go besides the log.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// Heartbeats that keep walrus's slot moving on a quiet database.
    #[serde(default)]
    pub heartbeat: HeartbeatConfig,
    /// The admin HTTP server.
    #[serde(default)]
    pub admin: AdminConfig,
    /// `[[routes]]`: regex rules from `schema.table` to topics (see [`crate::router`]).
    #[serde(default)]
    pub routes: Vec<crate::router::RouteRule>,
    /// `[tables."schema.table"]`: per-table topic, key, columns and skipped operations.
    #[serde(default)]
    pub tables: std::collections::BTreeMap<String, crate::router::TableConfig>,
    /// `[[outbox]]`: tables routed with Debezium's outbox event router.
    #[serde(default)]
    pub outbox: Vec<crate::router::OutboxConfig>,
    /// `[snapshot]`: the initial snapshot (mode, parallelism, where progress is kept).
    #[serde(default)]
    pub snapshot: SnapshotConfig,
    /// `[transactions]`: Debezium's transaction metadata (`BEGIN`/`END` events and the
    /// `transaction` block).
    #[serde(default)]
    pub transactions: TransactionsConfig,
    /// `[transforms]`: Kafka Connect transforms done by walrus (`[transforms.unwrap]`:
    /// Debezium's `ExtractNewRecordState`).
    #[serde(default)]
    pub transforms: TransformsConfig,
    /// `source.tables` / `exclude_tables` compiled on first use by [`Config::table_selected`]
    /// (regex patterns are costly to compile once per table of a large catalog).
    #[serde(skip)]
    selection_cache: std::sync::OnceLock<TableSelection>,
}

/// TLS mode for connections to PostgreSQL, as libpq's `sslmode`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, else plain.
    #[default]
    Prefer,
    /// TLS, without checking the certificate.
    Require,
    /// TLS, certificate checked against the CA, not the host name.
    VerifyCa,
    /// TLS, certificate and host name checked.
    VerifyFull,
}

/// The PostgreSQL source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Connection URL, `postgres://user[:password]@host:port/database[?sslmode=...]`.
    pub url: String,
    /// Password, when not in the URL (use `${ENV_VAR}`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// File holding the password (first line), when not in the URL.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Logical replication slot (created with pgoutput when missing).
    #[serde(default = "default_slot")]
    pub slot: String,
    /// Publication (created for the configured tables when missing).
    #[serde(default = "default_publication")]
    pub publication: String,
    /// Include patterns `schema.table`, with `*` and `?` wildcards, or `re:<regex>`
    /// matched against the whole `schema.table`, case-insensitively (Debezium's lists).
    #[serde(default = "default_tables")]
    pub tables: Vec<String>,
    /// Exclude patterns, same syntax; applied after `tables`.
    #[serde(default)]
    pub exclude_tables: Vec<String>,
    /// Drop the change events of tables that `tables` / `exclude_tables` do not select,
    /// whatever the publication publishes (Debezium's filtering, which a FOR ALL TABLES
    /// publication relies on). Off by default: the publications walrus creates hold the
    /// selected tables only, and a partition's changes arrive under the partition's own
    /// name unless `publish_via_partition_root`, so a pattern naming only the partitioned
    /// table would drop them.
    #[serde(default)]
    pub filter_events: bool,
    /// Create the publication `FOR ALL TABLES` (needs superuser) instead of a table list.
    #[serde(default)]
    pub publication_all_tables: bool,
    /// Create the publication when it does not exist.
    #[serde(default = "yes")]
    pub create_publication: bool,
    /// Create the slot when it does not exist.
    #[serde(default = "yes")]
    pub create_slot: bool,
    /// TLS mode; overrides `sslmode` in the URL when set.
    #[serde(default)]
    pub sslmode: Option<SslMode>,
    /// CA certificate file for `verify-ca` / `verify-full`.
    #[serde(default)]
    pub sslrootcert: Option<PathBuf>,
    /// Client certificate (PEM, may hold the chain) presented to the server, for
    /// `cert` authentication in `pg_hba.conf`; on the SQL and the replication connection
    /// alike. Needs `sslkey`.
    #[serde(default)]
    pub sslcert: Option<PathBuf>,
    /// The client certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1). Needs `sslcert`.
    #[serde(default)]
    pub sslkey: Option<PathBuf>,
    /// Interval between standby status updates, in milliseconds.
    #[serde(default = "default_status_interval_ms")]
    pub status_interval_ms: u64,
    /// `application_name` of walrus's connections.
    #[serde(default = "default_application_name")]
    pub application_name: String,
    /// Receive column values in PostgreSQL's binary (send) format instead of text
    /// (pgoutput `binary 'true'`, PostgreSQL 14+). Events are identical either way; binary
    /// is cheaper to decode for numbers, timestamps and arrays.
    #[serde(default)]
    pub binary: bool,
    /// Create the publication `WITH (publish_via_partition_root = true)`, so that changes
    /// on partitions are reported as their partitioned (root) table. Applies when walrus
    /// creates the publication; for an existing one run
    /// `ALTER PUBLICATION ... SET (publish_via_partition_root = true)`.
    #[serde(default)]
    pub publish_via_partition_root: bool,
    /// Large transactions sent while they run (PostgreSQL 14+): `"auto"` (on where the
    /// server supports it), `"on"` (refused before 14) or `"off"`.
    #[serde(default = "streaming::default_streaming")]
    pub streaming: StreamingMode,
    /// Directory of the spool files of streamed transactions; relative paths are resolved
    /// against the config file's directory. Default: `walrus-spool-<slot>` next to the
    /// config file ([`Config::spool_dir`]).
    #[serde(default)]
    pub spool_dir: Option<PathBuf>,
    /// Bytes of a streamed transaction's messages kept in memory before its spool moves to
    /// a file (per open streamed transaction; 0 writes every one to a file).
    #[serde(default = "streaming::default_spool_memory_bytes")]
    pub spool_memory_bytes: usize,
    /// Bytes the spools of all open streamed transactions may hold together (memory and
    /// files); a transaction that would pass it stops walrus with a fatal error, the slot
    /// holding its WAL. `0`: no limit. Default [`DEFAULT_SPOOL_MAX_BYTES`].
    #[serde(default = "streaming::default_spool_max_bytes")]
    pub spool_max_bytes: u64,
}

/// Where events go: `type = "stdout" | "file" | "kafka" | "null"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkConfig {
    /// JSON Lines on standard output.
    Stdout(StdoutSinkConfig),
    /// JSON Lines appended to a file.
    File(FileSinkConfig),
    /// Apache Kafka (or any broker speaking its protocol).
    Kafka(Box<KafkaSinkConfig>),
    /// Nowhere: events are encoded and dropped, and count as delivered (benchmarks).
    Null(NullSinkConfig),
}

impl SinkConfig {
    /// Whether row records get walrus's event headers: only a Kafka sink carries headers
    /// (the JSON Lines and null sinks drop them), and it can be told not to
    /// (`[sink] event_headers = false`).
    pub fn event_headers(&self) -> bool {
        match self {
            SinkConfig::Kafka(k) => k.event_headers,
            SinkConfig::Stdout(_) | SinkConfig::File(_) | SinkConfig::Null(_) => false,
        }
    }

    /// The sink's type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkConfig::Stdout(_) => "stdout",
            SinkConfig::File(_) => "file",
            SinkConfig::Kafka(_) => "kafka",
            SinkConfig::Null(_) => "null",
        }
    }
}

/// `[sink] type = "stdout"`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {}

/// `[sink] type = "null"`: encode, drop, confirm. Loses every change; for benchmarks.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NullSinkConfig {}

/// `[sink] type = "file"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file; created if missing, appended to otherwise.
    pub path: PathBuf,
    /// fsync after each flush, so delivered means on disk even across a power loss.
    #[serde(default)]
    pub fsync: bool,
}

/// `decimal.handling.mode`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DecimalHandlingMode {
    /// Connect `Decimal` (exact, base64 bytes in JSON).
    #[default]
    Precise,
    /// A JSON double (may lose precision).
    Double,
    /// The exact decimal text.
    String,
}

/// `time.precision.mode`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TimePrecisionMode {
    /// Millis or micros depending on the column's precision.
    #[default]
    Adaptive,
    /// Like adaptive, but `time` always in micros.
    AdaptiveTimeMicroseconds,
    /// Kafka Connect's logical types, millisecond precision.
    Connect,
    /// ISO-8601 strings.
    Isostring,
}

/// `binary.handling.mode`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BinaryHandlingMode {
    /// Connect bytes (base64 in JSON).
    #[default]
    Bytes,
    /// A base64 string.
    Base64,
    /// A URL-safe base64 string.
    Base64UrlSafe,
    /// A hex string.
    Hex,
}

/// `interval.handling.mode`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IntervalHandlingMode {
    /// Approximate microseconds (`io.debezium.time.MicroDuration`).
    #[default]
    Numeric,
    /// ISO-8601 duration string.
    String,
}

/// `hstore.handling.mode`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HstoreHandlingMode {
    /// A JSON document in a string (`io.debezium.data.Json`).
    #[default]
    Json,
    /// A map of string keys to optional string values.
    Map,
}

/// `[format]`: event encoding, with Debezium's option names in snake case.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatConfig {
    /// Wrap key and value as `{"schema": ..., "payload": ...}` (JsonConverter
    /// `schemas.enable`).
    #[serde(default)]
    pub schemas_enable: bool,
    /// Follow each delete with a tombstone (`tombstones.on.delete`).
    #[serde(default = "yes")]
    pub tombstones_on_delete: bool,
    /// `decimal.handling.mode`.
    #[serde(default)]
    pub decimal_handling_mode: DecimalHandlingMode,
    /// `time.precision.mode`.
    #[serde(default)]
    pub time_precision_mode: TimePrecisionMode,
    /// `binary.handling.mode`.
    #[serde(default)]
    pub binary_handling_mode: BinaryHandlingMode,
    /// `interval.handling.mode`.
    #[serde(default)]
    pub interval_handling_mode: IntervalHandlingMode,
    /// `hstore.handling.mode`.
    #[serde(default)]
    pub hstore_handling_mode: HstoreHandlingMode,
    /// `unavailable.value.placeholder` for unchanged TOASTed values.
    #[serde(default = "default_placeholder")]
    pub unavailable_value_placeholder: String,
    /// How keys are encoded: `json` (default) or `avro` (`key.converter`).
    #[serde(default)]
    pub key: FormatKind,
    /// How values are encoded: `json` (default) or `avro` (`value.converter`).
    #[serde(default)]
    pub value: FormatKind,
    /// The schema registry Avro schemas are registered with; required for `avro`.
    #[serde(default)]
    pub registry: Option<RegistryConfig>,
}

impl Default for FormatConfig {
    fn default() -> Self {
        FormatConfig {
            schemas_enable: false,
            tombstones_on_delete: true,
            decimal_handling_mode: DecimalHandlingMode::default(),
            time_precision_mode: TimePrecisionMode::default(),
            binary_handling_mode: BinaryHandlingMode::default(),
            interval_handling_mode: IntervalHandlingMode::default(),
            hstore_handling_mode: HstoreHandlingMode::default(),
            unavailable_value_placeholder: DEFAULT_UNAVAILABLE_VALUE_PLACEHOLDER.to_string(),
            key: FormatKind::default(),
            value: FormatKind::default(),
            registry: None,
        }
    }
}

/// `[pipeline]`: batching and memory bounds.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Bound on encoded bytes handed to the sink and not yet delivered.
    #[serde(default = "default_max_in_flight_bytes")]
    pub max_in_flight_bytes: usize,
    /// Longest time between sink flushes while input keeps coming, in milliseconds.
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// Most records per batch handed to the sink.
    #[serde(default = "default_batch_max_records")]
    pub batch_max_records: usize,
    /// Longest time a record waits before its batch is handed over, in milliseconds.
    #[serde(default = "default_batch_linger_ms")]
    pub batch_linger_ms: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            max_in_flight_bytes: default_max_in_flight_bytes(),
            flush_interval_ms: default_flush_interval_ms(),
            batch_max_records: DEFAULT_BATCH_MAX_RECORDS,
            batch_linger_ms: DEFAULT_BATCH_LINGER_MS,
        }
    }
}

fn default_topic_prefix() -> String {
    DEFAULT_TOPIC_PREFIX.into()
}
fn default_slot() -> String {
    DEFAULT_SLOT.into()
}
fn default_publication() -> String {
    DEFAULT_PUBLICATION.into()
}
fn default_tables() -> Vec<String> {
    vec![DEFAULT_TABLES.into()]
}
fn yes() -> bool {
    true
}
fn default_status_interval_ms() -> u64 {
    DEFAULT_STATUS_INTERVAL_MS
}
fn default_application_name() -> String {
    DEFAULT_APPLICATION_NAME.into()
}
fn default_placeholder() -> String {
    DEFAULT_UNAVAILABLE_VALUE_PLACEHOLDER.into()
}
fn default_max_in_flight_bytes() -> usize {
    pipeline::DEFAULT_MAX_IN_FLIGHT_BYTES
}
fn default_flush_interval_ms() -> u64 {
    pipeline::DEFAULT_FLUSH_INTERVAL.as_millis() as u64
}
fn default_batch_max_records() -> usize {
    DEFAULT_BATCH_MAX_RECORDS
}
fn default_batch_linger_ms() -> u64 {
    DEFAULT_BATCH_LINGER_MS
}

impl Config {
    /// Reads, interpolates, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::parse_with_env(&text, |k| std::env::var(k).ok())?;
        config.snapshot.set_base_dir(path);
        Ok(config)
    }

    /// Parses config text, taking `${VAR}` values from `env`.
    pub fn parse_with_env(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut tree: toml::Value = text
            .parse::<toml::Table>()
            .map(toml::Value::Table)
            .map_err(|e| ConfigError::Syntax(e.to_string()))?;
        interpolate(&mut tree, &mut String::new(), &env)?;
        let config: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Key {
                key: if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                message: e.into_inner().to_string(),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Key {
            key: key.into(),
            message,
        };
        if self.topic_prefix.is_empty()
            || !self
                .topic_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(bad(
                "topic_prefix",
                format!(
                    "{:?} is not a valid topic prefix: use letters, digits, '.', '_' and '-'",
                    self.topic_prefix
                ),
            ));
        }
        if let Some(topic) = &self.transactions.topic {
            if topic.is_empty()
                || !topic
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            {
                return Err(bad(
                    "transactions.topic",
                    format!(
                        "{topic:?} is not a valid topic name: use letters, digits, '.', '_' and '-', or leave it out for \"<topic_prefix>.transaction\""
                    ),
                ));
            }
        }
        let s = &self.source;
        if !(s.url.starts_with("postgres://") || s.url.starts_with("postgresql://")) {
            return Err(bad(
                "source.url",
                "expected a URL like postgres://user@host:5432/database".into(),
            ));
        }
        if s.slot.is_empty()
            || s.slot.len() > 63
            || !s
                .slot
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(bad(
                "source.slot",
                format!(
                    "{:?} is not a valid slot name: PostgreSQL allows 1-63 lower-case letters, digits and underscores",
                    s.slot
                ),
            ));
        }
        if s.publication.is_empty() || s.publication.len() > 63 {
            return Err(bad("source.publication", "must be 1-63 characters".into()));
        }
        if s.password.is_some() && s.password_file.is_some() {
            return Err(bad(
                "source.password_file",
                "set either source.password or source.password_file, not both".into(),
            ));
        }
        if s.tables.is_empty() && !s.publication_all_tables {
            return Err(bad(
                "source.tables",
                "list at least one pattern such as \"public.*\"".into(),
            ));
        }
        for (key, list) in [
            ("source.tables", &s.tables),
            ("source.exclude_tables", &s.exclude_tables),
        ] {
            for (i, p) in list.iter().enumerate() {
                if let Err(message) = TablePattern::try_parse(p) {
                    return Err(bad(&format!("{key}[{i}]"), message));
                }
            }
        }
        if s.status_interval_ms == 0 || s.status_interval_ms > 30_000 {
            return Err(bad(
                "source.status_interval_ms",
                "must be between 1 and 30000 (keep it well under wal_sender_timeout)".into(),
            ));
        }
        if s.sslcert.is_some() != s.sslkey.is_some() {
            return Err(bad(
                if s.sslcert.is_some() {
                    "source.sslkey"
                } else {
                    "source.sslcert"
                },
                "a client certificate needs both source.sslcert and source.sslkey".into(),
            ));
        }
        if let SinkConfig::File(f) = &self.sink {
            if f.path.as_os_str().is_empty() {
                return Err(bad("sink.path", "must name a file".into()));
            }
        }
        let p = &self.pipeline;
        if p.max_in_flight_bytes < 1024 {
            return Err(bad(
                "pipeline.max_in_flight_bytes",
                "must be at least 1024".into(),
            ));
        }
        if p.batch_max_records == 0 {
            return Err(bad(
                "pipeline.batch_max_records",
                "must be at least 1".into(),
            ));
        }
        if p.flush_interval_ms == 0 {
            return Err(bad(
                "pipeline.flush_interval_ms",
                "must be at least 1".into(),
            ));
        }
        streaming::validate(self)?;
        observability::validate(&self.watchdog, &self.alerts, &self.heartbeat)?;
        snapshot::validate(&self.snapshot)?;
        registry::validate(&self.format)?;
        if self.format.uses_avro()
            && matches!(self.sink, SinkConfig::File(_) | SinkConfig::Stdout(_))
        {
            return Err(bad(
                if self.format.value == FormatKind::Avro {
                    "format.value"
                } else {
                    "format.key"
                },
                "Avro is binary and the stdout and file sinks write JSON Lines: use the kafka (or null) sink, or \"json\"".into(),
            ));
        }
        if let SinkConfig::Kafka(k) = &self.sink {
            k.validate()?;
        }
        self.router()?;
        Ok(())
    }

    /// The compiled router for `topic_prefix`, `[[routes]]`, `[tables]` and `[[outbox]]`.
    pub fn router(&self) -> Result<crate::router::Router, ConfigError> {
        crate::router::Router::new(&crate::router::RoutingConfig {
            topic_prefix: &self.topic_prefix,
            routes: &self.routes,
            tables: Some(&self.tables),
            outbox: &self.outbox,
            skip_ops: &self.skip_ops,
            selection: self.source.filter_events.then(|| self.selection()),
            key_columns: &self.key_columns,
            include_columns: &self.include_columns,
            exclude_columns: &self.exclude_columns,
            unwrap: self.transforms.unwrap.as_ref(),
        })
    }

    /// Whether a table is selected by `source.tables` minus `source.exclude_tables`.
    pub fn table_selected(&self, schema: &str, table: &str) -> bool {
        self.selection_cache
            .get_or_init(|| self.selection())
            .selects(schema, table)
    }

    /// `source.tables` minus `source.exclude_tables` (everything with
    /// `publication_all_tables`, less the exclusions), compiled.
    pub fn selection(&self) -> TableSelection {
        TableSelection::new(
            &self.source.tables,
            &self.source.exclude_tables,
            self.source.publication_all_tables,
        )
    }
}

/// Replaces `${VAR}` and `${VAR:-default}` in every string of the tree; `$${` stands for a
/// literal `${`.
fn interpolate(
    v: &mut toml::Value,
    path: &mut String,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match v {
        toml::Value::String(s) if s.contains("${") => {
            *s = substitute(s, path, env)?;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                interpolate(item, path, env)?;
                path.truncate(len);
            }
        }
        toml::Value::Table(t) => {
            for (k, item) in t.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                interpolate(item, path, env)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

fn substitute(
    s: &str,
    path: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        if let Some(literal) = rest[..start].strip_suffix('$') {
            // `$${` is a literal `${` (regex replacements such as `$${1}` in [[routes]]).
            out.push_str(literal);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(ConfigError::Key {
                key: path.into(),
                message: "unterminated ${...}".into(),
            });
        };
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (expr, None),
        };
        match (env(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(ConfigError::MissingEnv {
                    key: path.into(),
                    var: name.into(),
                })
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
topic_prefix = "app"
[source]
url = "postgres://user@127.0.0.1:5432/app"
slot = "walrus"
publication = "walrus"
tables = ["public.*"]
[sink]
type = "file"
path = "events.jsonl"
"#;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn minimal_form_parses_with_defaults() {
        let c = Config::parse_with_env(MINIMAL, no_env).unwrap();
        assert_eq!(c.topic_prefix, "app");
        assert!(
            matches!(c.sink, SinkConfig::File(ref f) if f.path == Path::new("events.jsonl") && !f.fsync)
        );
        assert_eq!(c.source.status_interval_ms, DEFAULT_STATUS_INTERVAL_MS);
        assert!(c.format.tombstones_on_delete);
        assert!(c.table_selected("public", "orders"));
        assert!(!c.table_selected("other", "orders"));
    }

    #[test]
    fn unknown_keys_name_their_path() {
        let text = MINIMAL.replace("slot = \"walrus\"", "slot = \"walrus\"\nslots = 1");
        let err = Config::parse_with_env(&text, no_env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("source") && err.contains("slots"), "{err}");
        let text = MINIMAL.replace("path = \"events.jsonl\"", "path = \"e\"\nfsynk = true");
        let err = Config::parse_with_env(&text, no_env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("fsynk"), "{err}");
    }

    #[test]
    fn env_interpolation_and_defaults() {
        let text = MINIMAL
            .replace("user@", "${PGUSER}@")
            .replace("\"walrus\"\npub", "\"${SLOT:-s1}\"\npub");
        let c = Config::parse_with_env(&text, |k| (k == "PGUSER").then(|| "alice".to_string()))
            .unwrap();
        assert!(c.source.url.contains("alice@"));
        assert_eq!(c.source.slot, "s1");
        // `$${` is a literal `${`, for regex replacements.
        let escaped = MINIMAL.replace(
            "\"app\"",
            "\"app\"\n[[routes]]\nmatch = '(.*)'\ntopic = 'x.$${1}y'",
        );
        let c = Config::parse_with_env(&escaped, no_env).unwrap();
        assert_eq!(c.routes[0].topic, "x.${1}y");
        let err = Config::parse_with_env(&text, no_env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PGUSER") && err.contains("source.url"),
            "{err}"
        );
    }

    #[test]
    fn validation_names_the_key() {
        let text = MINIMAL.replace("slot = \"walrus\"", "slot = \"Bad-Slot\"");
        let err = Config::parse_with_env(&text, no_env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("source.slot"), "{err}");
        let text = MINIMAL.replace("[\"public.*\"]", "[\"nodot\"]");
        let err = Config::parse_with_env(&text, no_env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("source.tables[0]"), "{err}");
        let text = MINIMAL.replace("type = \"file\"", "type = \"carrier-pigeon\"");
        let err = Config::parse_with_env(&text, no_env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sink"), "{err}");
        // A client certificate without its key (or the reverse) names the missing key.
        let text = MINIMAL.replace(
            "slot = \"walrus\"",
            "slot = \"walrus\"\nsslcert = \"c.pem\"",
        );
        let err = Config::parse_with_env(&text, no_env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("source.sslkey"), "{err}");
        let text = MINIMAL.replace("slot = \"walrus\"", "slot = \"walrus\"\nsslkey = \"k.pem\"");
        let err = Config::parse_with_env(&text, no_env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("source.sslcert"), "{err}");
    }

    #[test]
    fn secrets_are_not_printed() {
        let text = MINIMAL.replace(
            "slot = \"walrus\"",
            "slot = \"walrus\"\npassword = \"hunter2\"",
        );
        let c = Config::parse_with_env(&text, no_env).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn regex_patterns_are_anchored_and_case_insensitive() {
        let p = TablePattern::parse(r"re:inventory\.(customers|orders)").unwrap();
        assert!(p.matches("inventory", "customers"));
        assert!(p.matches("Inventory", "ORDERS"));
        assert!(!p.matches("inventory", "customers_old"));
        assert!(!p.matches("xinventory", "orders"));
        assert_eq!(p.literal(), None);
        assert_eq!(
            TablePattern::parse("public.t").unwrap().literal(),
            Some(("public", "t"))
        );
        assert_eq!(TablePattern::parse("public.t*").unwrap().literal(), None);
        let text = MINIMAL.replace(
            "[\"public.*\"]",
            "['re:public\\.o.*']\nexclude_tables = ['re:.*\\.orders_old']",
        );
        let c = Config::parse_with_env(&text, no_env).unwrap();
        assert!(c.table_selected("public", "orders"));
        assert!(c.table_selected("PUBLIC", "Others"));
        assert!(!c.table_selected("public", "orders_old"));
        assert!(!c.table_selected("public", "users"));
        let text = MINIMAL.replace("[\"public.*\"]", "['re:(']");
        let err = Config::parse_with_env(&text, no_env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("source.tables[0]") && err.contains("regular expression"),
            "{err}"
        );
    }

    #[test]
    fn global_skip_ops_add_to_the_tables_own() {
        let text =
            format!("skip_ops = [\"t\"]\n{MINIMAL}\n[tables.\"public.a\"]\nskip_ops = [\"d\"]\n");
        let c = Config::parse_with_env(&text, no_env).unwrap();
        assert_eq!(c.skip_ops, vec![crate::router::OpName::Truncate]);
        let r = c.router().unwrap();
        let table = |name: &str| {
            std::sync::Arc::new(crate::event::Table {
                id: 1,
                schema: "public".into(),
                name: name.into(),
                columns: vec![],
                replica_identity: crate::event::ReplicaIdentity::Default,
            })
        };
        let a = r.resolve(&table("a")).unwrap();
        assert!(a.skips(crate::event::Op::Truncate) && a.skips(crate::event::Op::Delete));
        let b = r.resolve(&table("b")).unwrap();
        assert!(b.skips(crate::event::Op::Truncate) && !b.skips(crate::event::Op::Delete));
    }

    #[test]
    fn globs() {
        let p = TablePattern::parse("public.order*").unwrap();
        assert!(p.matches("public", "orders"));
        assert!(p.matches("public", "order"));
        assert!(!p.matches("public", "xorders"));
        let p = TablePattern::parse("*.t?").unwrap();
        assert!(p.matches("a", "t1"));
        assert!(!p.matches("a", "t12"));
    }
}
