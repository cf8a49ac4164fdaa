//! `walrus import debezium`: a Kafka Connect connector config for Debezium's PostgreSQL
//! connector, turned into an equivalent `walrus.toml`.
//!
//! ```text
//! REST JSON {"name", "config": {..}} ─┐
//! flat JSON {..}                      ├─ ConnectorConfig::parse ─▶ properties ─ import ─▶ Import {
//! connector .properties               ┘                                                  toml, findings, env }
//! ```
//!
//! Every property ends in exactly one place: a walrus key (the TOML line names the property
//! it came from), or a [`Finding`] that says what the property does and what to do about it
//! (printed by the CLI and written as a comment block at the top of the file). Properties the
//! importer does not know are findings too, so nothing is dropped silently.
//!
//! Rules that come from Debezium's behaviour rather than its property names:
//!
//! - Debezium's defaults are written out where walrus's differ: `slot.name` (`debezium`),
//!   `publication.name` (`dbz_publication`), `skipped.operations` (`t`: truncates skipped),
//!   JsonConverter's `schemas.enable` (`true`), `snapshot.max.threads` (`1`).
//! - Include and exclude lists are comma-separated regular expressions that Debezium matches
//!   against the whole `schema.table` (or `schema`, `schema.table.column`), case-insensitively;
//!   they become walrus's `re:` table patterns. Without any list Debezium captures every
//!   non-system schema: `*.*`.
//! - Secrets are never written: `database.password` becomes `${PGPASSWORD}` (or the variable
//!   of a `${env:VAR}` config-provider reference), and values of secret-looking properties are
//!   shown as `(secret)` in findings. Other Kafka Connect config-provider references
//!   (`${file:...}`, `${vault:...}`) become environment variables the user must set.
//! - Only `pgoutput` is supported: `plugin.name = decoderbufs` or `wal2json` is an error,
//!   since walrus cannot read (or take over) such a slot.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{Config, ConfigError, FormatConfig, REGEX_PATTERN_PREFIX};

/// Debezium's PostgreSQL connector class.
pub const POSTGRES_CONNECTOR_CLASS: &str = "io.debezium.connector.postgresql.PostgresConnector";
/// Debezium's default `slot.name`.
pub const DEBEZIUM_DEFAULT_SLOT: &str = "debezium";
/// Debezium's default `publication.name`.
pub const DEBEZIUM_DEFAULT_PUBLICATION: &str = "dbz_publication";
/// The environment variable the database password is read from, unless the connector config
/// named one with `${env:VAR}`.
pub const PASSWORD_ENV: &str = "PGPASSWORD";
/// The environment variable the Kafka bootstrap servers are read from when `--brokers` is not
/// given (they live in the Kafka Connect worker's config, not the connector's).
pub const BROKERS_ENV: &str = "KAFKA_BOOTSTRAP_SERVERS";

const JSON_CONVERTER: &str = "org.apache.kafka.connect.json.JsonConverter";
const AVRO_CONVERTERS: &[&str] = &[
    "io.confluent.connect.avro.AvroConverter",
    "io.apicurio.registry.utils.converter.AvroConverter",
];
const REGEX_ROUTER: &str = "org.apache.kafka.connect.transforms.RegexRouter";
const LOGICAL_TABLE_ROUTER: &str = "io.debezium.transforms.ByLogicalTableRouter";
const EXTRACT_NEW_RECORD_STATE: &str = "io.debezium.transforms.ExtractNewRecordState";
const TOPIC_NAME_MATCHES: &str = "org.apache.kafka.connect.transforms.predicates.TopicNameMatches";
const OUTBOX_ROUTER: &str = "io.debezium.transforms.outbox.EventRouter";

/// A connector config that cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file is neither connector JSON nor a `.properties` file.
    #[error("cannot read the connector config: {0}")]
    Parse(String),
    /// A property whose value walrus cannot work with at all.
    #[error("{key} = {value}: {message}")]
    Unsupported {
        /// The property.
        key: String,
        /// Its value.
        value: String,
        /// Why, and what to do.
        message: String,
    },
    /// The generated walrus.toml does not load (a bug in the importer, or a value walrus
    /// refuses, such as a slot name PostgreSQL would not accept either).
    #[error("the generated walrus.toml does not load: {0}")]
    Invalid(#[from] ConfigError),
}

/// A Kafka Connect connector config: its name and its properties.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectorConfig {
    /// The connector's name (`name`), when the file gives one.
    pub name: Option<String>,
    /// Every property but `name`, as strings.
    pub properties: BTreeMap<String, String>,
}

impl ConnectorConfig {
    /// Reads the REST form `{"name": .., "config": {..}}` (as `PUT /connectors` takes and
    /// `GET /connectors/<name>` answers), a flat JSON object of properties, or a
    /// `.properties` file (as `connect-standalone` takes), whichever `text` is.
    pub fn parse(text: &str) -> Result<ConnectorConfig, ImportError> {
        if text.trim_start().starts_with('{') {
            Self::parse_json(text)
        } else {
            Ok(Self::parse_properties(text))
        }
    }

    /// Reads the REST or the flat JSON form. Numbers and booleans become their text.
    pub fn parse_json(text: &str) -> Result<ConnectorConfig, ImportError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ImportError::Parse(format!("JSON: {e}")))?;
        let serde_json::Value::Object(mut top) = value else {
            return Err(ImportError::Parse("expected a JSON object".into()));
        };
        let mut name = match top.get("name") {
            Some(serde_json::Value::String(n)) => Some(n.clone()),
            _ => None,
        };
        let props = match top.remove("config") {
            Some(serde_json::Value::Object(config)) => config,
            Some(_) => return Err(ImportError::Parse("\"config\" is not an object".into())),
            None => top,
        };
        let mut properties = BTreeMap::new();
        for (key, value) in props {
            let text = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Null => continue,
                other => {
                    return Err(ImportError::Parse(format!(
                        "property {key:?} is not a string, number or boolean: {other}"
                    )))
                }
            };
            if key == "name" {
                name = Some(text);
            } else {
                properties.insert(key, text);
            }
        }
        Ok(ConnectorConfig { name, properties })
    }

    /// Reads a Java `.properties` file: `key=value`, `key: value` or `key value`, `#` and
    /// `!` comments, `\` line continuations and escapes (`\\`, `\n`, `\uXXXX`, ...).
    pub fn parse_properties(text: &str) -> ConnectorConfig {
        let mut properties = BTreeMap::new();
        let mut name = None;
        let mut logical = String::new();
        for raw in text.lines() {
            let line = raw.trim_start();
            if logical.is_empty() && (line.is_empty() || line.starts_with(['#', '!'])) {
                continue;
            }
            let trailing = line.len() - line.trim_end_matches('\\').len();
            if trailing % 2 == 1 {
                logical.push_str(&line[..line.len() - 1]);
                continue;
            }
            logical.push_str(line);
            let (key, value) = split_property(&logical);
            if key == "name" {
                name = Some(value);
            } else if !key.is_empty() {
                properties.insert(key, value);
            }
            logical.clear();
        }
        if !logical.is_empty() {
            let (key, value) = split_property(&logical);
            properties.insert(key, value);
        }
        ConnectorConfig { name, properties }
    }
}

/// Splits one logical `.properties` line at the first unescaped `=`, `:` or whitespace, and
/// unescapes both halves.
fn split_property(line: &str) -> (String, String) {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'=' | b':' | b' ' | b'\t' | b'\x0c' => break,
            _ => i += 1,
        }
    }
    let key = &line[..i.min(line.len())];
    let mut rest = line[i.min(line.len())..].trim_start_matches([' ', '\t', '\x0c']);
    if let Some(r) = rest.strip_prefix(['=', ':']) {
        rest = r.trim_start_matches([' ', '\t', '\x0c']);
    }
    (unescape(key), unescape(rest))
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(c) => out.push(c),
                    None => {
                        out.push_str("\\u");
                        out.push_str(&hex);
                    }
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// How a property that has no walrus key is to be treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FindingKind {
    /// walrus cannot do what the property asks: the user must act (or accept the difference).
    Unmapped,
    /// Mapped, but something about it needs a look (a default assumed, a difference).
    Review,
    /// The property has no effect on walrus: it does the job itself, or the job does not
    /// exist without Kafka Connect.
    NoEffect,
}

/// One property (or fact) the user should know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What kind of finding.
    pub kind: FindingKind,
    /// The Debezium or Kafka Connect property (or a short subject).
    pub key: String,
    /// Its value, `(secret)` for secrets, empty when not a property.
    pub value: String,
    /// What it does, and what to do.
    pub text: String,
}

/// Options of an import.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// `[sink] brokers`; the worker's `bootstrap.servers` is not part of a connector config.
    /// `None`: `${KAFKA_BOOTSTRAP_SERVERS}`.
    pub brokers: Option<String>,
}

/// The result of an import.
#[derive(Clone, Debug)]
pub struct Import {
    /// The walrus.toml, findings first as a comment block.
    pub toml: String,
    /// Everything that is not a plain mapping, in [`FindingKind`] order.
    pub findings: Vec<Finding>,
    /// Environment variables the file reads, with what they must hold.
    pub env: Vec<(String, String)>,
}

impl Import {
    /// The findings of one kind.
    pub fn of_kind(&self, kind: FindingKind) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.kind == kind)
    }
}

/// Whether a property holds a secret: its value is never written or printed.
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "jaas",
        "user.info",
        "token",
        "credential",
        "apikey",
        "api.key",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// A value as a TOML string literal.
fn q(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A list as a TOML array literal.
fn q_list(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", parts.join(", "))
}

/// A literal value for a walrus string: `${` is walrus's interpolation, so it is escaped.
fn lit(s: &str) -> String {
    s.replace("${", "$${")
}

/// Splits a Debezium list (comma-separated, `\,` keeps a comma) into trimmed entries.
fn list(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek() == Some(&',') {
            cur.push(',');
            chars.next();
        } else if c == ',' {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The exact name a Debezium regex names when it has no operators but (escaped or not) dots
/// separating `parts` identifiers; `None` for a real pattern.
fn literal_name(regex: &str, parts: usize) -> Option<Vec<String>> {
    let unescaped = regex.replace("\\.", ".");
    let names: Vec<String> = unescaped.split('.').map(str::to_owned).collect();
    (names.len() == parts
        && names.iter().all(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
        }))
    .then_some(names)
}

/// Replaces a Java regex replacement (`$1`, `${name}`, `\$`) by the regex crate's syntax,
/// escaped for walrus's interpolation (`$${1}`).
fn java_replacement(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(other) => out.push(other),
                None => {}
            },
            '$' if chars.peek() == Some(&'{') => {
                chars.next();
                let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                out.push_str(&format!("$${{{name}}}"));
            }
            '$' if chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut n = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    n.push(*d);
                    chars.next();
                }
                out.push_str(&format!("$${{{n}}}"));
            }
            other => out.push(other),
        }
    }
    out
}

/// A value that may be a Kafka Connect config-provider reference (`${provider:[path:]key}`).
enum Reference {
    /// `${env:VAR}`: walrus reads `${VAR}` itself.
    Env(String),
    /// Any other provider: the user must put the value into an environment variable.
    Other(String),
    /// A plain value.
    Plain,
}

fn reference(value: &str) -> Reference {
    let Some(inner) = value
        .trim()
        .strip_prefix("${")
        .and_then(|v| v.strip_suffix('}'))
    else {
        return Reference::Plain;
    };
    match inner.split_once(':') {
        Some(("env", var)) => {
            let var = var.trim_start_matches(':');
            if !var.is_empty() && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                Reference::Env(var.to_owned())
            } else {
                Reference::Other(value.to_owned())
            }
        }
        Some(_) => Reference::Other(value.to_owned()),
        None => Reference::Plain,
    }
}

/// The environment variable a property's value is asked for in: `database.hostname` →
/// `DATABASE_HOSTNAME`.
fn env_name(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Percent-encodes a URL component (user, database).
fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Properties that have no effect on walrus, with the reason; a key ending in `.` is a
/// prefix.
const NO_EFFECT: &[(&str, &str)] = &[
    ("tasks.max", "walrus is one process with one stream per slot; Debezium's PostgreSQL connector runs one task too"),
    ("snapshot.fetch.size", "walrus reads snapshots with COPY in chunks: [snapshot] chunk_size"),
    ("max.batch.size", "walrus batches by [pipeline] batch_max_records and batch_linger_ms"),
    ("max.queue.size", "walrus bounds memory by [pipeline] max_in_flight_bytes"),
    ("max.queue.size.in.bytes", "walrus bounds memory by [pipeline] max_in_flight_bytes"),
    ("poll.interval.ms", "walrus hands batches over as they fill ([pipeline] batch_linger_ms)"),
    ("retriable.restart.connector.wait.ms", "walrus retries retryable errors itself, with backoff up to 30 s"),
    ("errors.max.retries", "walrus retries retryable errors itself, with backoff up to 30 s"),
    ("errors.retry.timeout", "walrus retries retryable errors itself, with backoff up to 30 s"),
    ("errors.retry.delay.max.ms", "walrus retries retryable errors itself, with backoff up to 30 s"),
    ("errors.log.enable", "walrus logs every error with the key at fault"),
    ("errors.log.include.messages", "walrus logs every error with the key at fault"),
    ("slot.max.retries", "walrus retries a slot held by another process (a dying walsender) with backoff"),
    ("slot.retry.delay.ms", "walrus retries a slot held by another process (a dying walsender) with backoff"),
    ("slot.failover", "walrus creates slots with FAILOVER on PostgreSQL 17+; an existing slot keeps its setting"),
    ("database.tcpKeepAlive", "walrus's standby status updates keep its connections alive"),
    ("database.query.timeout.ms", "walrus's SQL is short catalog queries and COPY"),
    ("schema.refresh.mode", "walrus follows schema changes from pgoutput's Relation messages"),
    ("table.ignore.builtin", "walrus never captures system schemas"),
    ("lsn.flush.timeout.ms", "walrus confirms positions asynchronously and never blocks on it"),
    ("lsn.flush.timeout.action", "walrus confirms positions asynchronously and never blocks on it"),
    ("header.converter", "walrus writes its headers as plain bytes"),
    ("extended.headers.enabled", "Kafka Connect's `__debezium.context.*` headers; walrus writes its own headers instead (docs/compat.md)"),
    ("topic.cache.size", "walrus caches each table's route for its lifetime"),
    ("snapshot.tables.order.by.row.count", "walrus orders snapshot work itself (one worker: tables in name order)"),
    ("guardrail.collections.max", "walrus has no limit on captured tables"),
    ("guardrail.collections.limit.action", "walrus has no limit on captured tables"),
    ("custom.metric.tags", "walrus's metrics are on the admin server's /metrics ([admin])"),
    ("config.action.reload", "Kafka Connect restarts a connector on a config change; restart walrus instead"),
    ("include.unknown.datatypes", "walrus emits columns of every type"),
    ("topic.creation.groups", "only topic.creation.default.* is mapped"),
    ("errors.tolerance", "Kafka Connect's tolerance of converter and transform errors; walrus's Kafka sink sends records the broker rejects to [sink] dead_letter_topic when set"),
    ("errors.deadletterqueue.", "a dead-letter queue of sink connectors; walrus's Kafka sink has [sink] dead_letter_topic"),
];

/// Properties walrus cannot honour, with what they do and what to do; a key ending in `.` is
/// a prefix.
const UNMAPPED: &[(&str, &str)] = &[
    ("slot.drop.on.stop", "Debezium drops its slot on a clean stop. walrus never drops its slot: drop it with SELECT pg_drop_replication_slot('<slot>') after the last walrus stop"),
    ("slot.stream.params", "extra pgoutput options; walrus sets proto_version, publication_names, messages and binary itself. Drop the property"),
    ("column.mask.", "masks column values. walrus has no masking: leave the column out with [tables.\"schema.table\"] exclude_columns, or mask in the database (a generated column)"),
    ("column.truncate.", "truncates long text values. walrus writes values whole: leave the column out, or accept full values"),
    ("column.propagate.source.type", "adds __debezium.source.column.* schema parameters. walrus does not write them: consumers that read them need another source of column types"),
    ("datatype.propagate.source.type", "adds __debezium.source.column.* schema parameters. walrus does not write them: consumers that read them need another source of column types"),
    ("money.fraction.digits", "the scale of money values. walrus uses 2 (Debezium's default)"),
    ("schema.name.adjustment.mode", "renames Connect schema names for Avro. walrus writes names unadjusted (Debezium's `none`)"),
    ("field.name.adjustment.mode", "renames field names for Avro. walrus writes names unadjusted (Debezium's `none`)"),
    ("message.prefix.include.list", "filters logical decoding messages by prefix. walrus publishes every message but its own heartbeats; filter on the consumer side"),
    ("message.prefix.exclude.list", "filters logical decoding messages by prefix. walrus publishes every message but its own heartbeats; filter on the consumer side"),
    ("skip.messages.without.change", "drops updates that change no included column. walrus publishes every update"),
    ("replica.identity.autoset.values", "sets REPLICA IDENTITY on start. walrus does not change tables: `walrus check` prints the ALTER TABLE ... REPLICA IDENTITY statements to run"),
    ("event.processing.failure.handling.mode", "skips or warns on events that cannot be processed. walrus stops with the error (Debezium's `fail`)"),
    ("topic.naming.strategy", "a custom topic naming class. walrus names topics <topic_prefix>.<schema>.<table>; rename with [[routes]] or [tables.\"schema.table\"] topic"),
    ("topic.delimiter", "the separator in topic names. walrus uses `.`; rename with [[routes]]"),
    ("snapshot.locking.mode", "table locks during the snapshot. walrus takes none (its snapshot reads an exported snapshot)"),
    ("snapshot.query.mode", "custom snapshot queries. walrus reads whole tables with COPY"),
    ("snapshot.include.collection.list", "snapshots only some tables. walrus snapshots every captured table; use `walrus snapshot --table` (incremental) for a subset"),
    ("snapshot.select.statement.overrides", "filters snapshot rows per table. walrus reads whole tables; `walrus snapshot --table T --filter SQL` filters an incremental snapshot"),
    ("snapshot.delay.ms", "waits before the snapshot. walrus starts at once: start it later instead"),
    ("snapshot.lock.timeout.ms", "walrus takes no table locks"),
    ("snapshot.mode.", "configuration_based or custom snapshot mode settings. Choose one of walrus's modes: [snapshot] mode"),
    ("streaming.delay.ms", "waits before streaming. walrus streams at once"),
    ("incremental.snapshot.watermarking.strategy", "walrus writes both watermarks (Debezium's insert_insert)"),
    ("incremental.snapshot.allow.schema.changes", "walrus re-reads a chunk's table schema from the stream; schema changes during an incremental snapshot are not specially handled"),
    ("read.only", "read-only incremental snapshots (no signal-table writes). walrus writes its watermarks to [snapshot] signal_table"),
    ("signal.enabled.channels", "signals from Kafka, JMX or files. walrus reads signals from the signal table only ([snapshot] signal_table, `walrus snapshot`)"),
    ("signal.kafka.", "signals from a Kafka topic. walrus reads signals from the signal table only"),
    ("signal.file", "signals from a file. walrus reads signals from the signal table only"),
    ("signal.poll.interval.ms", "walrus reads signals from the stream, without polling"),
    ("notification.enabled.channels", "Debezium's notifications (snapshot progress). walrus logs progress and serves /status"),
    ("notification.sink.topic.name", "Debezium's notifications. walrus logs progress and serves /status"),
    ("converters", "custom value converters. walrus has none: values follow the handling modes in [format]"),
    ("post.processors", "post processors (such as reselect columns). walrus has none"),
    ("reselector.", "the column reselector post processor. walrus has none"),
    ("flush.lsn.source", "false makes Debezium leave its slot's position to someone else. walrus always confirms what the sink delivered"),
    ("database.sslpassword", "the password of an encrypted client key. walrus reads unencrypted PEM keys: decrypt the key (openssl pkey -in key.pem -out key-plain.pem)"),
    ("database.sslfactory", "a JDBC SSL socket factory class. walrus uses source.sslmode, sslrootcert, sslcert and sslkey"),
    ("database.initial.statements", "SQL run on each JDBC connection. walrus runs none: set them as role defaults (ALTER ROLE ... SET ...)"),
    ("openlineage.", "OpenLineage integration. walrus has none"),
    ("predicates", "transform predicates. walrus applies its routes to every table event: express the condition in the route's match"),
    ("predicates.", "transform predicates. walrus applies its routes to every table event: express the condition in the route's match"),
    ("producer.override.", "Kafka producer settings of this connector. Set the matching librdkafka property in [sink.properties] (names differ: see docs/kafka.md)"),
    ("topic.creation.", "topic settings of a topic.creation group other than `default`. walrus creates every topic with [sink.topic_creation]"),
    ("exactly.once.support", "Kafka Connect's exactly-once source support. walrus has its own: [sink] exactly_once = true (docs/kafka.md)"),
    ("transaction.boundary", "Kafka Connect's exactly-once source transactions. walrus's [sink] exactly_once commits at source-transaction boundaries"),
    ("offsets.storage.topic", "the connector's own offsets topic. walrus's position is the slot's confirmed_flush_lsn"),
    ("unavailable.value.placeholder.", "placeholder options. walrus has [format] unavailable_value_placeholder only"),
];

fn lookup<'a>(table: &'a [(&str, &str)], key: &str) -> Option<&'a str> {
    table
        .iter()
        .find(|(k, _)| {
            if k.ends_with('.') {
                key.starts_with(k)
            } else {
                key == *k
            }
        })
        .map(|(_, t)| *t)
}

/// The walrus.toml being built: lines per section, each with the property it came from.
#[derive(Default)]
struct Toml {
    sections: Vec<(String, Vec<String>)>,
}

impl Toml {
    #[allow(clippy::needless_pass_by_value)] // callers build the value for this call
    fn set(&mut self, section: &str, key: &str, value: String, from: &str) {
        let line = if from.is_empty() {
            format!("{key} = {value}")
        } else {
            format!("{key} = {value}  # {from}")
        };
        match self.sections.iter_mut().find(|(s, _)| s == section) {
            Some((_, lines)) => lines.push(line),
            None => self.sections.push((section.to_owned(), vec![line])),
        }
    }

    /// An array-of-tables entry (`[[routes]]`, `[[outbox]]`): always a new section.
    fn push_entry(&mut self, header: &str, lines: Vec<String>) {
        self.sections.push((header.to_owned(), lines));
    }

    fn comment(&mut self, section: &str, text: &str) {
        let line = format!("# {text}");
        match self.sections.iter_mut().find(|(s, _)| s == section) {
            Some((_, lines)) => lines.push(line),
            None => self.sections.push((section.to_owned(), vec![line])),
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        // Top-level keys first: TOML puts everything after a header into that table.
        for (_, lines) in self.sections.iter().filter(|(s, _)| s.is_empty()) {
            for l in lines {
                out.push_str(l);
                out.push('\n');
            }
        }
        for (section, lines) in self.sections.iter().filter(|(s, _)| !s.is_empty()) {
            out.push('\n');
            out.push_str(section);
            out.push('\n');
            for l in lines {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

/// The import in progress.
struct Importer {
    props: BTreeMap<String, String>,
    toml: Toml,
    findings: Vec<Finding>,
    env: Vec<(String, String)>,
    /// Predicates mapped with their transform (`predicates` need no finding for them).
    predicates_used: Vec<String>,
}

impl Importer {
    fn take(&mut self, key: &str) -> Option<String> {
        self.props.remove(key)
    }

    fn shown(key: &str, value: &str) -> String {
        if is_secret(key) {
            "(secret)".into()
        } else {
            value.to_owned()
        }
    }

    fn finding(&mut self, kind: FindingKind, key: &str, value: &str, text: impl Into<String>) {
        self.findings.push(Finding {
            kind,
            key: key.to_owned(),
            value: Self::shown(key, value),
            text: text.into(),
        });
    }

    fn need_env(&mut self, var: &str, what: String) {
        if !self.env.iter().any(|(v, _)| v == var) {
            self.env.push((var.to_owned(), what));
        }
    }

    /// A value for a walrus string: config-provider references become `${VAR}` (with the
    /// variable listed), plain values are escaped.
    fn value(&mut self, key: &str, value: &str) -> String {
        match reference(value) {
            Reference::Env(var) => {
                self.need_env(&var, format!("{key} (was {value})"));
                format!("${{{var}}}")
            }
            Reference::Other(r) => {
                let var = env_name(key);
                self.need_env(
                    &var,
                    format!("{key}: the value Kafka Connect's config provider gave for {r}"),
                );
                self.finding(
                    FindingKind::Review,
                    key,
                    value,
                    format!("a Kafka Connect config-provider reference; walrus reads ${{{var}}} from the environment instead: set it to the value"),
                );
                format!("${{{var}}}")
            }
            Reference::Plain => lit(value),
        }
    }
}

/// Turns a Debezium PostgreSQL connector config into a walrus.toml. The result loads with
/// walrus's own config loader (checked before it is returned, with every `${VAR}` set).
pub fn import(config: &ConnectorConfig, options: &ImportOptions) -> Result<Import, ImportError> {
    let mut im = Importer {
        props: config.properties.clone(),
        toml: Toml::default(),
        findings: Vec::new(),
        env: Vec::new(),
        predicates_used: Vec::new(),
    };
    let unsupported = |key: &str, value: &str, message: &str| ImportError::Unsupported {
        key: key.into(),
        value: value.into(),
        message: message.into(),
    };

    match im.take("connector.class") {
        Some(c) if c == POSTGRES_CONNECTOR_CLASS || c == "PostgresConnector" => {}
        Some(c) => {
            return Err(unsupported(
                "connector.class",
                &c,
                "not Debezium's PostgreSQL connector; walrus imports io.debezium.connector.postgresql.PostgresConnector configs only",
            ))
        }
        None => im.finding(
            FindingKind::Review,
            "connector.class",
            "",
            "not set; assumed io.debezium.connector.postgresql.PostgresConnector",
        ),
    }

    match im.take("plugin.name") {
        Some(p) if p == "pgoutput" => {}
        Some(p) => return Err(unsupported(
            "plugin.name",
            &p,
            "walrus reads pgoutput only, and cannot take over a slot of another output plugin. \
                 Switch Debezium to pgoutput first (a new slot.name, plugin.name=pgoutput, \
                 snapshot.mode as needed), or import with plugin.name=pgoutput and a new slot.name \
                 and let walrus snapshot ([snapshot] mode = \"initial\")",
        )),
        None => im.finding(
            FindingKind::Review,
            "plugin.name",
            "",
            "not set: Debezium's default is decoderbufs, which walrus cannot read. If the slot \
             was created by decoderbufs, walrus refuses it at start: set source.slot to a new \
             name (walrus creates it and snapshots)",
        ),
    }

    // Topic prefix.
    let prefix = match (im.take("topic.prefix"), im.take("database.server.name")) {
        (Some(p), legacy) => {
            if let Some(l) = legacy {
                im.finding(
                    FindingKind::NoEffect,
                    "database.server.name",
                    &l,
                    "replaced by topic.prefix in Debezium 2.0; topic.prefix wins",
                );
            }
            im.toml.set("", "topic_prefix", q(&p), "topic.prefix");
            p
        }
        (None, Some(p)) => {
            im.toml.set(
                "",
                "topic_prefix",
                q(&p),
                "database.server.name (Debezium 1.x)",
            );
            p
        }
        (None, None) => {
            return Err(unsupported(
                "topic.prefix",
                "",
                "required by Debezium and by walrus (topic names and source.name); add it",
            ))
        }
    };

    // skipped.operations: Debezium's default skips truncates.
    let skipped = im.take("skipped.operations");
    let ops: Vec<String> = match skipped.as_deref() {
        None => vec!["t".into()],
        Some(s) => list(s)
            .into_iter()
            .filter(|o| o != "none")
            .collect::<Vec<_>>(),
    };
    for o in &ops {
        if !matches!(o.as_str(), "c" | "u" | "d" | "t") {
            return Err(unsupported(
                "skipped.operations",
                skipped.as_deref().unwrap_or(""),
                "expected a list of c, u, d, t or none",
            ));
        }
    }
    im.toml.set(
        "",
        "skip_ops",
        q_list(&ops),
        if skipped.is_some() {
            "skipped.operations"
        } else {
            "skipped.operations: Debezium's default skips truncates"
        },
    );

    source(&mut im)?;
    snapshot(&mut im);
    format(&mut im)?;
    heartbeat(&mut im, &prefix);
    transaction_metadata(&mut im, &prefix);
    sink(&mut im, options);
    transforms(&mut im, &prefix)?;
    // `predicates` lists names; when every one was mapped with its transform, it is done.
    if let Some(names) = im.props.get("predicates").cloned() {
        if list(&names).iter().all(|n| im.predicates_used.contains(n)) {
            im.take("predicates");
        }
    }

    // Whatever is left was not consumed: known unmappable, no effect, or unknown.
    let rest = std::mem::take(&mut im.props);
    for (key, value) in rest {
        if let Some(text) = lookup(UNMAPPED, &key) {
            im.finding(FindingKind::Unmapped, &key, &value, text);
        } else if let Some(text) = lookup(NO_EFFECT, &key) {
            im.finding(FindingKind::NoEffect, &key, &value, text);
        } else {
            im.finding(
                FindingKind::Unmapped,
                &key,
                &value,
                "not known to walrus's importer: check what it does in Debezium's or Kafka \
                 Connect's documentation and whether docs/configuration.md has an equivalent",
            );
        }
    }

    im.findings.sort_by_key(|f| f.kind);
    let toml = render(config.name.as_deref(), &im);
    // The file must load; every variable is set to a harmless value for the check.
    Config::parse_with_env(&toml, |var| {
        Some(if var == BROKERS_ENV {
            "localhost:9092".into()
        } else {
            "x".into()
        })
    })?;
    Ok(Import {
        toml,
        findings: im.findings,
        env: im.env,
    })
}

fn render(name: Option<&str>, im: &Importer) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# walrus.toml imported from the Debezium connector {} by `walrus import debezium`.",
        name.map(|n| format!("{n:?}"))
            .unwrap_or_else(|| "(unnamed)".into())
    );
    out.push_str("# Each key names the Debezium property it came from. See docs/migrating-from-debezium.md.\n");
    let groups = [
        (
            FindingKind::Unmapped,
            "NOT MAPPED: walrus cannot do what these properties ask; act on each before switching:",
        ),
        (
            FindingKind::Review,
            "REVIEW: mapped, with something to check:",
        ),
        (
            FindingKind::NoEffect,
            "NO EFFECT in walrus (nothing to do):",
        ),
    ];
    for (kind, title) in groups {
        let items: Vec<&Finding> = im.findings.iter().filter(|f| f.kind == kind).collect();
        if items.is_empty() {
            continue;
        }
        let _ = writeln!(out, "#\n# {title}");
        for f in items {
            if f.value.is_empty() {
                let _ = writeln!(out, "#   {}", f.key);
            } else {
                let _ = writeln!(out, "#   {} = {}", f.key, f.value.replace('\n', "\\n"));
            }
            let _ = writeln!(out, "#       {}", f.text.replace('\n', " "));
        }
    }
    if !im.env.is_empty() {
        let _ = writeln!(out, "#\n# Environment variables this file reads:");
        for (var, what) in &im.env {
            let _ = writeln!(out, "#   {var}: {what}");
        }
    }
    out.push('\n');
    out.push_str(&im.toml.render());
    out
}

fn source(im: &mut Importer) -> Result<(), ImportError> {
    const S: &str = "[source]";
    let host = im.take("database.hostname");
    let port = im.take("database.port");
    let user = im.take("database.user");
    let db = im.take("database.dbname");
    let Some(host) = host else {
        return Err(ImportError::Unsupported {
            key: "database.hostname".into(),
            value: String::new(),
            message: "required: the PostgreSQL server".into(),
        });
    };
    let host_part = {
        let h = im.value("database.hostname", &host);
        if h.contains(':') && !h.starts_with('[') && !h.starts_with("${") {
            format!("[{h}]")
        } else {
            h
        }
    };
    let port_part = match port {
        Some(p) => im.value("database.port", &p),
        None => "5432".into(),
    };
    let user_part = match &user {
        Some(u) => match reference(u) {
            Reference::Plain => pct(u),
            _ => im.value("database.user", u),
        },
        None => {
            im.finding(
                FindingKind::Review,
                "database.user",
                "",
                "not set; the URL has no user (libpq would use the OS user): add one to source.url",
            );
            String::new()
        }
    };
    let db_part = match &db {
        Some(d) => match reference(d) {
            Reference::Plain => pct(d),
            _ => im.value("database.dbname", d),
        },
        None => String::new(),
    };
    let at = if user_part.is_empty() { "" } else { "@" };
    im.toml.set(
        S,
        "url",
        q(&format!(
            "postgres://{user_part}{at}{host_part}:{port_part}/{db_part}"
        )),
        "database.hostname, database.port, database.user, database.dbname",
    );
    if let Some(pw) = im.take("database.password") {
        let var = match reference(&pw) {
            Reference::Env(var) => var,
            Reference::Other(r) => {
                im.finding(
                    FindingKind::Review,
                    "database.password",
                    "",
                    format!("read through a Kafka Connect config provider ({r}); walrus reads ${PASSWORD_ENV}: set it to the password"),
                );
                PASSWORD_ENV.to_owned()
            }
            Reference::Plain => {
                im.finding(
                    FindingKind::Review,
                    "database.password",
                    "",
                    format!("was in the connector config in clear; it is not written here: export {PASSWORD_ENV} with it (or use source.password_file)"),
                );
                PASSWORD_ENV.to_owned()
            }
        };
        im.need_env(&var, "the database password (database.password)".into());
        im.toml.set(
            S,
            "password",
            q(&format!("${{{var}}}")),
            "database.password (never written in clear)",
        );
    }
    if let Some(mode) = im.take("database.sslmode") {
        let walrus = match mode.as_str() {
            "disable" | "prefer" | "require" | "verify-ca" | "verify-full" => mode.clone(),
            "allow" => {
                im.finding(
                    FindingKind::Review,
                    "database.sslmode",
                    &mode,
                    "walrus has no `allow`; written as `prefer` (TLS when the server offers it)",
                );
                "prefer".into()
            }
            other => {
                return Err(ImportError::Unsupported {
                    key: "database.sslmode".into(),
                    value: other.into(),
                    message: "expected disable, allow, prefer, require, verify-ca or verify-full"
                        .into(),
                })
            }
        };
        im.toml.set(S, "sslmode", q(&walrus), "database.sslmode");
    }
    for (key, walrus) in [
        ("database.sslrootcert", "sslrootcert"),
        ("database.sslcert", "sslcert"),
        ("database.sslkey", "sslkey"),
    ] {
        if let Some(v) = im.take(key) {
            let value = im.value(key, &v);
            im.toml.set(S, walrus, q(&value), key);
            if key == "database.sslkey" {
                im.finding(
                    FindingKind::Review,
                    key,
                    &v,
                    "walrus reads a PEM key (PKCS#8, PKCS#1 or SEC1); pgjdbc's is often DER (.pk8): convert with openssl pkcs8 -inform DER -in key.pk8 -out key.pem -nocrypt",
                );
            }
        }
    }

    let slot = im
        .take("slot.name")
        .unwrap_or_else(|| DEBEZIUM_DEFAULT_SLOT.into());
    im.toml.set(
        S,
        "slot",
        q(&slot),
        "slot.name (Debezium's default: debezium)",
    );
    let publication = im
        .take("publication.name")
        .unwrap_or_else(|| DEBEZIUM_DEFAULT_PUBLICATION.into());
    im.toml.set(
        S,
        "publication",
        q(&publication),
        "publication.name (Debezium's default: dbz_publication)",
    );

    let filtered = tables(im)?;
    im.toml.set(
        S,
        "filter_events",
        "true".into(),
        "Debezium drops the events of tables its lists exclude, whatever the publication holds",
    );

    let mode = im.take("publication.autocreate.mode");
    match mode.as_deref().unwrap_or("all_tables") {
        "all_tables" if !filtered => {
            im.toml.set(
                S,
                "publication_all_tables",
                "true".into(),
                "publication.autocreate.mode = all_tables (Debezium's default)",
            );
        }
        "all_tables" => {
            im.finding(
                FindingKind::Review,
                "publication.autocreate.mode",
                mode.as_deref().unwrap_or("all_tables (default)"),
                "Debezium creates a publication FOR ALL TABLES and filters in the connector; \
                 walrus creates one for the matching tables only, and on Debezium's existing \
                 FOR ALL TABLES publication drops the other tables' events as Debezium does \
                 (filter_events = true); PostgreSQL still decodes them",
            );
        }
        "filtered" => im.toml.set(
            S,
            "create_publication",
            "true".into(),
            "publication.autocreate.mode = filtered",
        ),
        "disabled" => im.toml.set(
            S,
            "create_publication",
            "false".into(),
            "publication.autocreate.mode = disabled",
        ),
        "no_tables" => {
            im.toml.set(
                S,
                "create_publication",
                "false".into(),
                "publication.autocreate.mode = no_tables",
            );
            im.finding(
                FindingKind::Review,
                "publication.autocreate.mode",
                "no_tables",
                "Debezium creates an empty publication for you to fill; walrus uses the existing \
                 one as it is (create_publication = false). To let walrus add the matching tables, \
                 set create_publication = true",
            );
        }
        other => {
            return Err(ImportError::Unsupported {
                key: "publication.autocreate.mode".into(),
                value: other.into(),
                message: "expected all_tables, disabled, filtered or no_tables".into(),
            })
        }
    }

    if let Some(ms) = im.take("status.update.interval.ms") {
        match ms.parse::<u64>() {
            Ok(v) => {
                let clamped = v.clamp(1, 30_000);
                if clamped != v {
                    im.finding(
                        FindingKind::Review,
                        "status.update.interval.ms",
                        &ms,
                        format!("walrus accepts 1-30000; written as {clamped}"),
                    );
                }
                im.toml.set(
                    S,
                    "status_interval_ms",
                    clamped.to_string(),
                    "status.update.interval.ms",
                );
            }
            Err(_) => im.finding(
                FindingKind::Unmapped,
                "status.update.interval.ms",
                &ms,
                "not a number; walrus's default (1000) applies",
            ),
        }
    }
    Ok(())
}

/// Schema, table and column lists and `message.key.columns`. Returns whether any table filter
/// is set.
fn tables(im: &mut Importer) -> Result<bool, ImportError> {
    const S: &str = "[source]";
    let schema_in = im.take("schema.include.list").map(|s| list(&s));
    let schema_ex = im.take("schema.exclude.list").map(|s| list(&s));
    let table_in = im.take("table.include.list").map(|s| list(&s));
    let table_ex = im.take("table.exclude.list").map(|s| list(&s));
    let schema_re = |s: &String| format!("{REGEX_PATTERN_PREFIX}(?:{s})\\..+");
    let table_re = |t: &String| format!("{REGEX_PATTERN_PREFIX}{t}");
    let mut include: Vec<String> = Vec::new();
    let mut from = Vec::new();
    if let Some(t) = &table_in {
        include = t.iter().map(table_re).collect();
        from.push("table.include.list");
        if schema_in.is_some() {
            im.finding(
                FindingKind::Review,
                "schema.include.list",
                &schema_in.unwrap_or_default().join(","),
                "set together with table.include.list: Debezium captures tables in both lists, \
                 walrus selects by table.include.list alone. Check that every table listed is in \
                 one of the schemas",
            );
        }
    } else if let Some(s) = &schema_in {
        include = s.iter().map(schema_re).collect();
        from.push("schema.include.list");
    }
    let filtered = !include.is_empty() || schema_ex.is_some() || table_ex.is_some();
    if include.is_empty() {
        include.push("*.*".into());
        from.push("no include list: every non-system schema, as Debezium");
    }
    im.toml.set(S, "tables", q_list(&include), &from.join(", "));
    let mut exclude: Vec<String> = Vec::new();
    let mut from = Vec::new();
    if let Some(s) = &schema_ex {
        exclude.extend(s.iter().map(schema_re));
        from.push("schema.exclude.list");
    }
    if let Some(t) = &table_ex {
        exclude.extend(t.iter().map(table_re));
        from.push("table.exclude.list");
    }
    if !exclude.is_empty() {
        im.toml
            .set(S, "exclude_tables", q_list(&exclude), &from.join(", "));
    }

    for (key, walrus) in [
        ("column.include.list", "include_columns"),
        ("column.exclude.list", "exclude_columns"),
    ] {
        if let Some(value) = im.take(key) {
            let entries: Vec<String> = list(&value).iter().map(|e| lit(e)).collect();
            im.toml.set("", walrus, q_list(&entries), key);
        }
    }

    if let Some(value) = im.take("message.key.columns") {
        for entry in value.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let parsed = entry.rsplit_once(':').map(|(table, columns)| {
                let columns: Vec<String> = columns
                    .split(',')
                    .map(|c| c.trim().to_owned())
                    .filter(|c| !c.is_empty())
                    .collect();
                (table.trim(), columns)
            });
            match parsed {
                Some((table, columns)) if !table.is_empty() && !columns.is_empty() => {
                    im.toml.push_entry(
                        "[[key_columns]]",
                        vec![
                            format!("match = {}  # message.key.columns", q(&lit(table))),
                            format!("columns = {}", q_list(&columns)),
                        ],
                    );
                }
                _ => im.finding(
                    FindingKind::Unmapped,
                    "message.key.columns",
                    entry,
                    "not of the form <table regex>:<column>,<column>; add a [[key_columns]] rule by hand",
                ),
            }
        }
    }
    Ok(filtered)
}

fn snapshot(im: &mut Importer) {
    const S: &str = "[snapshot]";
    let mode = im.take("snapshot.mode");
    let walrus = match mode.as_deref().unwrap_or("initial") {
        "initial" => Some("initial"),
        "no_data" | "never" => Some("no_data"),
        "initial_only" => Some("initial_only"),
        "when_needed" => Some("when_needed"),
        "always" => {
            im.finding(
                FindingKind::Review,
                "snapshot.mode",
                "always",
                "walrus snapshots on every start too; to take over Debezium's slot without a new snapshot, start walrus with mode = \"no_data\" (or \"initial\") the first time",
            );
            Some("always")
        }
        other => {
            let other = other.to_owned();
            im.finding(
                FindingKind::Unmapped,
                "snapshot.mode",
                &other,
                "walrus's modes are initial, no_data, initial_only, when_needed and always; \
                 written as initial (snapshot only when walrus creates the slot)",
            );
            Some("initial")
        }
    };
    if let Some(w) = walrus {
        im.toml.set(
            S,
            "mode",
            q(w),
            if mode.is_some() {
                "snapshot.mode: on an existing slot (a takeover) initial does not snapshot"
            } else {
                "snapshot.mode (Debezium's default): on an existing slot (a takeover) initial does not snapshot"
            },
        );
    }
    let threads = im.take("snapshot.max.threads");
    match threads.as_deref().map(str::parse::<usize>) {
        Some(Ok(n)) if n >= 1 => im
            .toml
            .set(S, "workers", n.to_string(), "snapshot.max.threads"),
        Some(_) => im.finding(
            FindingKind::Unmapped,
            "snapshot.max.threads",
            threads.as_deref().unwrap_or(""),
            "not a positive number; walrus's default applies",
        ),
        None => im.toml.set(
            S,
            "workers",
            "1".into(),
            "snapshot.max.threads (Debezium's default: tables one after another, in Debezium's order)",
        ),
    }
    if let Some(n) = im.take("incremental.snapshot.chunk.size") {
        match n.parse::<usize>() {
            Ok(v) if v > 0 => im.toml.set(
                S,
                "incremental_chunk_size",
                v.to_string(),
                "incremental.snapshot.chunk.size",
            ),
            _ => im.finding(
                FindingKind::Unmapped,
                "incremental.snapshot.chunk.size",
                &n,
                "not a positive number; walrus's default (1024) applies",
            ),
        }
    }
    if let Some(table) = im.take("signal.data.collection") {
        // Older Debezium versions prefix the database: db.schema.table.
        let parts: Vec<&str> = table.split('.').collect();
        let name = if parts.len() == 3 {
            format!("{}.{}", parts[1], parts[2])
        } else {
            table.clone()
        };
        im.toml
            .set(S, "signal_table", q(&name), "signal.data.collection");
        im.finding(
            FindingKind::Review,
            "signal.data.collection",
            &table,
            "walrus uses the same table (id, type, data) for its signals and watermarks; it must be in the publication, which walrus adds it to",
        );
    }
}

fn format(im: &mut Importer) -> Result<(), ImportError> {
    const S: &str = "[format]";
    for (key, walrus, allowed) in [
        (
            "decimal.handling.mode",
            "decimal_handling_mode",
            &["precise", "double", "string"][..],
        ),
        (
            "time.precision.mode",
            "time_precision_mode",
            &[
                "adaptive",
                "adaptive_time_microseconds",
                "connect",
                "isostring",
            ][..],
        ),
        (
            "binary.handling.mode",
            "binary_handling_mode",
            &["bytes", "base64", "base64-url-safe", "hex"][..],
        ),
        (
            "interval.handling.mode",
            "interval_handling_mode",
            &["numeric", "string"][..],
        ),
        (
            "hstore.handling.mode",
            "hstore_handling_mode",
            &["json", "map"][..],
        ),
    ] {
        if let Some(v) = im.take(key) {
            if !allowed.contains(&v.as_str()) {
                return Err(ImportError::Unsupported {
                    key: key.into(),
                    value: v,
                    message: format!("walrus supports {}", allowed.join(", ")),
                });
            }
            im.toml.set(S, walrus, q(&v), key);
        }
    }
    if let Some(v) = im.take("tombstones.on.delete") {
        let b = v.eq_ignore_ascii_case("true");
        im.toml.set(
            S,
            "tombstones_on_delete",
            b.to_string(),
            "tombstones.on.delete",
        );
    }
    if let Some(v) = im.take("unavailable.value.placeholder") {
        let value = lit(&v);
        im.toml.set(
            S,
            "unavailable_value_placeholder",
            q(&value),
            "unavailable.value.placeholder",
        );
    }
    // Converters: the connector's own, else the worker's (unknown here).
    let mut avro = Vec::new();
    let mut schemas = Vec::new();
    for side in ["key", "value"] {
        let conv_key = format!("{side}.converter");
        let converter = im.take(&conv_key);
        let enable_key = format!("{side}.converter.schemas.enable");
        let enable = im.take(&enable_key);
        match converter.as_deref() {
            None | Some(JSON_CONVERTER) => {
                if converter.is_none() {
                    im.finding(
                        FindingKind::Review,
                        &conv_key,
                        "",
                        "not set in the connector: Kafka Connect uses the worker's. Assumed JsonConverter with schemas.enable = true (its default); set [format] schemas_enable to what your worker uses",
                    );
                }
                let on = enable
                    .as_deref()
                    .is_none_or(|e| e.eq_ignore_ascii_case("true"));
                schemas.push((side, on, enable.is_some()));
            }
            Some(c) if AVRO_CONVERTERS.contains(&c) => {
                avro.push(side);
                if let Some(e) = enable {
                    im.finding(
                        FindingKind::NoEffect,
                        &enable_key,
                        &e,
                        "Avro records always carry their schema (in the registry)",
                    );
                }
            }
            Some(c) => {
                let c = c.to_owned();
                im.finding(
                    FindingKind::Unmapped,
                    &conv_key,
                    &c,
                    "walrus writes JSON (JsonConverter) or Avro (with a schema registry); other converters have no equivalent. Consumers must read JSON or Avro",
                );
                if let Some(e) = enable {
                    im.finding(
                        FindingKind::NoEffect,
                        &enable_key,
                        &e,
                        "belongs to the converter above",
                    );
                }
            }
        }
    }
    if let Some(&(_, on, _)) = schemas.first() {
        if schemas.iter().any(|&(_, o, _)| o != on) {
            im.finding(
                FindingKind::Review,
                "key.converter.schemas.enable",
                "",
                format!("differs between key and value; walrus has one switch, written as the value's ({})", schemas.last().map(|s| s.1).unwrap_or(on)),
            );
        }
        let value_on = schemas.last().map(|s| s.1).unwrap_or(on);
        let from = match schemas.last() {
            Some((_, _, true)) => "value.converter.schemas.enable",
            _ => "JsonConverter's default schemas.enable = true",
        };
        im.toml.set(S, "schemas_enable", value_on.to_string(), from);
    }
    if !avro.is_empty() {
        let registry = ["value", "key"].iter().find_map(|side| {
            [
                format!("{side}.converter.schema.registry.url"),
                format!("{side}.converter.apicurio.registry.url"),
            ]
            .into_iter()
            .find_map(|k| im.props.get(&k).cloned().map(|v| (k, v)))
        });
        for side in ["key", "value"] {
            for k in [
                format!("{side}.converter.schema.registry.url"),
                format!("{side}.converter.apicurio.registry.url"),
            ] {
                im.take(&k);
            }
        }
        let supported = toml::from_str::<FormatConfig>(
            "key = \"avro\"\nvalue = \"avro\"\n[registry]\nurl = \"http://localhost:8081\"",
        )
        .is_ok();
        let mut lines = Vec::new();
        for side in &avro {
            lines.push((side.to_string(), q("avro"), format!("{side}.converter")));
        }
        let url = registry.as_ref().map(|(k, v)| (im.value(k, v), k.clone()));
        if supported {
            for (k, v, from) in lines {
                im.toml.set(S, &k, v, &from);
            }
            match url {
                Some((u, from)) => {
                    if from.contains("apicurio") {
                        im.finding(
                            FindingKind::Review,
                            &from,
                            &u,
                            "walrus speaks the Confluent registry API: point [format.registry] url at Apicurio's /apis/ccompat/v7",
                        );
                    }
                    im.toml.set("[format.registry]", "url", q(&u), &from);
                    registry_options(im);
                }
                None => im.finding(
                    FindingKind::Unmapped,
                    "value.converter.schema.registry.url",
                    "",
                    "the Avro converter has no registry URL in the connector config (the worker's applies): set [format.registry] url",
                ),
            }
        } else {
            for (k, v, from) in lines {
                im.toml.comment(
                    S,
                    &format!("{k} = {v}  # {from} (needs a walrus with Avro support)"),
                );
            }
            if let Some((u, from)) = url {
                im.toml.comment(
                    "[format]",
                    &format!("[format.registry] url = {}  # {from}", q(&u)),
                );
            }
            im.finding(
                FindingKind::Unmapped,
                "value.converter",
                "Avro",
                "this walrus build does not write Avro yet: the Avro keys are written commented out in [format]; until then walrus writes JSON",
            );
        }
    }
    Ok(())
}

/// The registry's subject naming and basic authentication, from the Avro converters'
/// options (the value converter's win; walrus has one registry for both).
fn registry_options(im: &mut Importer) {
    const R: &str = "[format.registry]";
    let mut strategy = None;
    let mut user_info = None;
    for side in ["key", "value"] {
        if let Some(v) = im.take(&format!("{side}.converter.{side}.subject.name.strategy")) {
            strategy = Some((v, format!("{side}.converter.{side}.subject.name.strategy")));
        }
        if let Some(v) = im.take(&format!("{side}.converter.basic.auth.user.info")) {
            user_info = Some((v, format!("{side}.converter.basic.auth.user.info")));
        }
        if let Some(source) = im.take(&format!("{side}.converter.basic.auth.credentials.source")) {
            if source != "USER_INFO" {
                im.finding(
                    FindingKind::Unmapped,
                    &format!("{side}.converter.basic.auth.credentials.source"),
                    &source,
                    "walrus authenticates to the registry with [format.registry] username and password only",
                );
            }
        }
    }
    if let Some((v, from)) = strategy {
        let name = v.rsplit('.').next().unwrap_or(&v).to_owned();
        im.toml.set(R, "subject_name_strategy", q(&name), &from);
    }
    if let Some((v, from)) = user_info {
        let user = match reference(&v) {
            Reference::Plain => v.split_once(':').map(|(u, _)| u.to_owned()),
            _ => None,
        };
        match user {
            Some(u) => im.toml.set(R, "username", q(&lit(&u)), &from),
            None => im.finding(
                FindingKind::Review,
                &from,
                &v,
                "set [format.registry] username to the user part",
            ),
        }
        im.need_env(
            "SCHEMA_REGISTRY_PASSWORD",
            format!("the schema registry password (the part after ':' of {from})"),
        );
        im.toml.set(
            R,
            "password",
            q("${SCHEMA_REGISTRY_PASSWORD}"),
            &format!("{from} (never written in clear)"),
        );
    }
}

fn heartbeat(im: &mut Importer, prefix: &str) {
    const S: &str = "[heartbeat]";
    let interval = im.take("heartbeat.interval.ms");
    let query = im.take("heartbeat.action.query");
    let topic_prefix = im
        .take("topic.heartbeat.prefix")
        .or_else(|| im.take("heartbeat.topics.prefix"));
    let ms = interval
        .as_deref()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if ms == 0 {
        im.toml.comment(
            S,
            "heartbeat.interval.ms = 0 (Debezium's default): no heartbeat records. walrus still writes a heartbeat message to the WAL every 10 s to keep the slot moving on a quiet database; nothing is published",
        );
        im.toml.set(
            S,
            "emit_events",
            "false".into(),
            "heartbeat.interval.ms = 0",
        );
        if let Some(q) = query {
            im.finding(
                FindingKind::NoEffect,
                "heartbeat.action.query",
                &q,
                "Debezium runs it only with heartbeat.interval.ms > 0",
            );
        }
        if let Some(p) = topic_prefix {
            im.finding(
                FindingKind::NoEffect,
                "topic.heartbeat.prefix",
                &p,
                "no heartbeat records with heartbeat.interval.ms = 0",
            );
        }
        return;
    }
    im.toml
        .set(S, "enabled", "true".into(), "heartbeat.interval.ms > 0");
    im.toml
        .set(S, "interval_ms", ms.to_string(), "heartbeat.interval.ms");
    im.toml.set(
        S,
        "emit_events",
        "true".into(),
        "Debezium publishes a record per heartbeat",
    );
    if let Some(p) = topic_prefix {
        let topic = format!("{p}.{prefix}");
        im.toml.set(
            S,
            "topic",
            q(&lit(&topic)),
            "topic.heartbeat.prefix + topic.prefix",
        );
    }
    if let Some(query) = query {
        let v = lit(&query);
        im.toml
            .set(S, "action_query", q(&v), "heartbeat.action.query");
    }
}

/// `provide.transaction.metadata` and `topic.transaction` → `[transactions]`.
fn transaction_metadata(im: &mut Importer, prefix: &str) {
    const S: &str = "[transactions]";
    let enabled = im.take("provide.transaction.metadata");
    let suffix = im.take("topic.transaction");
    let on = enabled
        .as_deref()
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if !on {
        if let Some(v) = &enabled {
            im.finding(
                FindingKind::NoEffect,
                "provide.transaction.metadata",
                v,
                "no transaction events, as walrus's default ([transactions] enabled = false)",
            );
        }
        if let Some(t) = &suffix {
            im.finding(
                FindingKind::NoEffect,
                "topic.transaction",
                t,
                "no transaction events with provide.transaction.metadata off",
            );
        }
        return;
    }
    im.toml
        .set(S, "enabled", "true".into(), "provide.transaction.metadata");
    if let Some(t) = suffix {
        let topic = format!("{prefix}.{}", lit(&t));
        im.toml
            .set(S, "topic", q(&topic), "topic.prefix + topic.transaction");
    }
}

fn sink(im: &mut Importer, options: &ImportOptions) {
    const S: &str = "[sink]";
    im.toml.set(S, "type", q("kafka"), "");
    match &options.brokers {
        Some(b) => im.toml.set(
            S,
            "brokers",
            q(&lit(b)),
            "--brokers (the worker's bootstrap.servers)",
        ),
        None => {
            im.need_env(
                BROKERS_ENV,
                "the Kafka bootstrap servers (the Kafka Connect worker's bootstrap.servers), host:port,host:port".into(),
            );
            im.toml.set(
                S,
                "brokers",
                q(&format!("${{{BROKERS_ENV}}}")),
                "the worker's bootstrap.servers (not in a connector config)",
            );
        }
    }
    im.finding(
        FindingKind::Review,
        "bootstrap.servers",
        "",
        "the broker connection (bootstrap.servers, security.protocol, SASL, TLS) is in the Kafka Connect worker's config, not the connector's: set [sink] brokers and the security keys (docs/kafka.md)",
    );
    if let Some(c) = im.take("producer.override.compression.type") {
        if ["none", "gzip", "snappy", "lz4", "zstd"].contains(&c.as_str()) {
            im.toml.set(
                S,
                "compression",
                q(&c),
                "producer.override.compression.type",
            );
        } else {
            im.finding(
                FindingKind::Unmapped,
                "producer.override.compression.type",
                &c,
                "walrus supports none, gzip, snappy, lz4, zstd",
            );
        }
    }
    const T: &str = "[sink.topic_creation]";
    if let Some(e) = im.take("topic.creation.enable") {
        im.toml.set(
            T,
            "enabled",
            e.eq_ignore_ascii_case("true").to_string(),
            "topic.creation.enable",
        );
    }
    for (key, walrus) in [
        ("topic.creation.default.partitions", "partitions"),
        (
            "topic.creation.default.replication.factor",
            "replication_factor",
        ),
    ] {
        if let Some(v) = im.take(key) {
            match v.parse::<i32>() {
                Ok(n) => im.toml.set(T, walrus, n.to_string(), key),
                Err(_) => im.finding(
                    FindingKind::Unmapped,
                    key,
                    &v,
                    "not a number; the broker's default applies",
                ),
            }
        }
    }
    for skip in [
        "topic.creation.default.include",
        "topic.creation.default.exclude",
    ] {
        if let Some(v) = im.take(skip) {
            im.finding(
                FindingKind::Unmapped,
                skip,
                &v,
                "walrus creates every topic it writes with [sink.topic_creation]",
            );
        }
    }
    let config_keys: Vec<String> = im
        .props
        .keys()
        .filter(|k| k.starts_with("topic.creation.default."))
        .cloned()
        .collect();
    for key in config_keys {
        if let Some(v) = im.take(&key) {
            let name = key.trim_start_matches("topic.creation.default.");
            im.toml
                .set("[sink.topic_creation.config]", &q(name), q(&lit(&v)), &key);
        }
    }
}

fn transforms(im: &mut Importer, topic_prefix: &str) -> Result<(), ImportError> {
    let Some(names) = im.take("transforms") else {
        return Ok(());
    };
    for name in list(&names) {
        let p = format!("transforms.{name}.");
        let keys: Vec<String> = im
            .props
            .keys()
            .filter(|k| k.starts_with(&p))
            .cloned()
            .collect();
        let mut own: BTreeMap<String, String> = BTreeMap::new();
        for k in keys {
            if let Some(v) = im.take(&k) {
                own.insert(k[p.len()..].to_owned(), v);
            }
        }
        let kind = own.remove("type").unwrap_or_default();
        let negate = own
            .remove("negate")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        // ExtractNewRecordState on one table's topic: that table's `unwrap`.
        let one_table = match own.get("predicate") {
            Some(pred) if kind == EXTRACT_NEW_RECORD_STATE => {
                topic_predicate_table(im, pred, topic_prefix)
            }
            _ => None,
        };
        match (own.remove("predicate"), &one_table) {
            (Some(pred), Some(_)) => {
                im.predicates_used.push(pred);
            }
            (Some(pred), None) => im.finding(
                FindingKind::Unmapped,
                &format!("{p}predicate"),
                &pred,
                "walrus applies the transform below to every record it concerns; a predicate that limits it has no equivalent (ExtractNewRecordState on the topic of one table excepted: [tables.\"schema.table\"] unwrap)",
            ),
            (None, _) => {}
        }
        match kind.as_str() {
            REGEX_ROUTER => regex_router(im, &p, &mut own)?,
            OUTBOX_ROUTER => outbox_router(im, &p, &mut own),
            EXTRACT_NEW_RECORD_STATE => match one_table {
                None => extract_new_record_state(im, &p, &mut own, "[transforms.unwrap]"),
                Some(table) if !negate => extract_new_record_state(
                    im,
                    &p,
                    &mut own,
                    &format!("[tables.{}.unwrap]", q(&table)),
                ),
                Some(table) => {
                    // Every table but this one.
                    extract_new_record_state(im, &p, &mut own, "[transforms.unwrap]");
                    im.toml.set(
                        &format!("[tables.{}]", q(&table)),
                        "unwrap",
                        "false".into(),
                        &format!("{p}negate"),
                    );
                }
            },
            LOGICAL_TABLE_ROUTER => logical_table_router(im, &p, &mut own)?,
            other => im.finding(
                FindingKind::Unmapped,
                &format!("{p}type"),
                other,
                "a Kafka Connect transform walrus has no equivalent for: apply it in the consumer or a stream processor",
            ),
        }
        for (k, v) in own {
            im.finding(
                FindingKind::Unmapped,
                &format!("{p}{k}"),
                &v,
                format!("an option of transform {name:?} ({kind}) that walrus cannot honour"),
            );
        }
    }
    Ok(())
}

/// The `schema.table` whose topic a `TopicNameMatches` predicate `name` matches, when its
/// pattern names one topic `<topic_prefix>.<schema>.<table>` literally; its properties are
/// consumed then.
fn topic_predicate_table(im: &mut Importer, name: &str, topic_prefix: &str) -> Option<String> {
    let key = |k: &str| format!("predicates.{name}.{k}");
    let ty = im.props.get(&key("type"))?;
    if ty.trim() != TOPIC_NAME_MATCHES {
        return None;
    }
    let pattern = im.props.get(&key("pattern"))?;
    let prefix_parts = topic_prefix.split('.').count();
    let parts = literal_name(pattern.trim(), prefix_parts + 2)?;
    if parts[..prefix_parts].join(".") != topic_prefix {
        return None;
    }
    let table = format!("{}.{}", parts[prefix_parts], parts[prefix_parts + 1]);
    im.take(&key("type"));
    im.take(&key("pattern"));
    Some(table)
}

/// Debezium's `ExtractNewRecordState` → `section`: `[transforms.unwrap]`, or a table's
/// `[tables."schema.table".unwrap]` (JSON and Avro values).
fn extract_new_record_state(
    im: &mut Importer,
    p: &str,
    own: &mut BTreeMap<String, String>,
    section: &str,
) {
    im.toml.comment(
        section,
        &format!("{p}type = io.debezium.transforms.ExtractNewRecordState"),
    );
    if let Some(mode) = own.remove("delete.tombstone.handling.mode") {
        let mode = mode.trim().to_ascii_lowercase();
        if matches!(
            mode.as_str(),
            "drop" | "tombstone" | "rewrite" | "rewrite-with-tombstone" | "delete-to-tombstone"
        ) {
            im.toml.set(
                section,
                "delete_tombstone_handling_mode",
                q(&mode),
                &format!("{p}delete.tombstone.handling.mode"),
            );
        } else {
            im.finding(
                FindingKind::Unmapped,
                &format!("{p}delete.tombstone.handling.mode"),
                &mode,
                "not a mode of Debezium 3.x (drop, tombstone, rewrite, rewrite-with-tombstone, delete-to-tombstone): walrus uses the default, tombstone",
            );
        }
    }
    for legacy in ["delete.handling.mode", "drop.tombstones"] {
        if let Some(v) = own.remove(legacy) {
            im.finding(
                FindingKind::NoEffect,
                &format!("{p}{legacy}"),
                &v,
                "removed in Debezium 3.0 (Debezium 3.x ignores it): set delete.tombstone.handling.mode, [transforms.unwrap] delete_tombstone_handling_mode",
            );
        }
    }
    for (prop, key) in [("add.fields", "add_fields"), ("add.headers", "add_headers")] {
        if let Some(v) = own.remove(prop) {
            im.toml
                .set(section, key, q_list(&list(&v)), &format!("{p}{prop}"));
        }
    }
    for (prop, key) in [
        ("add.fields.prefix", "add_fields_prefix"),
        ("add.headers.prefix", "add_headers_prefix"),
    ] {
        if let Some(v) = own.remove(prop) {
            im.toml.set(section, key, q(&v), &format!("{p}{prop}"));
        }
    }
    if let Some(v) = own.remove("replace.null.with.default") {
        im.finding(
            FindingKind::NoEffect,
            &format!("{p}replace.null.with.default"),
            &v,
            "walrus's schemas carry no column defaults, so nothing is replaced (docs/compat.md)",
        );
    }
}

fn regex_router(
    im: &mut Importer,
    p: &str,
    own: &mut BTreeMap<String, String>,
) -> Result<(), ImportError> {
    let (Some(regex), Some(replacement)) = (own.remove("regex"), own.remove("replacement")) else {
        im.finding(
            FindingKind::Unmapped,
            &format!("{p}type"),
            REGEX_ROUTER,
            "a RegexRouter without regex and replacement does nothing",
        );
        return Ok(());
    };
    if let Err(e) = regex::Regex::new(&format!("^(?:{regex})$")) {
        return Err(ImportError::Unsupported {
            key: format!("{p}regex"),
            value: regex,
            message: format!("walrus's regular expressions (Rust's regex crate: no look-around or back-references) cannot read it: {e}"),
        });
    }
    im.toml.push_entry(
        "[[routes]]",
        vec![
            format!(
                "match = {}  # {p}regex (Kafka's RegexRouter)",
                q(&lit(&regex))
            ),
            format!(
                "topic = {}  # {p}replacement",
                q(&java_replacement(&replacement))
            ),
            "match_on = \"topic\"  # RegexRouter matches the topic Debezium chose".into(),
        ],
    );
    im.finding(
        FindingKind::Review,
        &format!("{p}regex"),
        &regex,
        "walrus applies [[routes]] to table topics; the <prefix>.message and heartbeat topics keep their names",
    );
    Ok(())
}

/// Debezium's `ByLogicalTableRouter` → a `[[routes]]` rule with `logical_table = true`.
fn logical_table_router(
    im: &mut Importer,
    p: &str,
    own: &mut BTreeMap<String, String>,
) -> Result<(), ImportError> {
    let (Some(regex), Some(replacement)) =
        (own.remove("topic.regex"), own.remove("topic.replacement"))
    else {
        im.finding(
            FindingKind::Unmapped,
            &format!("{p}type"),
            LOGICAL_TABLE_ROUTER,
            "ByLogicalTableRouter requires topic.regex and topic.replacement (Kafka Connect refuses the connector without them)",
        );
        return Ok(());
    };
    let check = |key: &str, value: &str| {
        regex::Regex::new(&format!("^(?:{value})$")).map_err(|e| ImportError::Unsupported {
            key: format!("{p}{key}"),
            value: value.to_owned(),
            message: format!("walrus's regular expressions (Rust's regex crate: no look-around or back-references) cannot read it: {e}"),
        })
    };
    check("topic.regex", &regex)?;
    let chained = im.toml.sections.iter().any(|(s, _)| s == "[[routes]]");
    let mut lines = vec![
        format!(
            "match = {}  # {p}topic.regex (Debezium's ByLogicalTableRouter)",
            q(&lit(&regex))
        ),
        format!(
            "topic = {}  # {p}topic.replacement",
            q(&java_replacement(&replacement))
        ),
        "match_on = \"topic\"  # matched against the topic Debezium chose".into(),
        "logical_table = true  # schema names <topic>.Key/.Value/.Envelope, and the key field"
            .into(),
    ];
    if let Some(v) = own.remove("key.enforce.uniqueness") {
        let on = !v.trim().eq_ignore_ascii_case("false");
        lines.push(format!(
            "key_enforce_uniqueness = {on}  # {p}key.enforce.uniqueness"
        ));
    }
    if let Some(v) = own.remove("key.field.name") {
        lines.push(format!(
            "key_field_name = {}  # {p}key.field.name",
            q(&lit(&v))
        ));
    }
    let field_regex = own.remove("key.field.regex");
    let field_replacement = own.remove("key.field.replacement");
    if let Some(re) = field_regex.filter(|r| !r.trim().is_empty()) {
        let Some(replacement) = field_replacement.filter(|r| !r.trim().is_empty()) else {
            return Err(ImportError::Unsupported {
                key: format!("{p}key.field.replacement"),
                value: String::new(),
                message: "must be non-empty when key.field.regex is set (Debezium refuses the connector too)".into(),
            });
        };
        check("key.field.regex", re.trim())?;
        lines.push(format!(
            "key_field_regex = {}  # {p}key.field.regex",
            q(&lit(re.trim()))
        ));
        lines.push(format!(
            "key_field_replacement = {}  # {p}key.field.replacement",
            q(&java_replacement(&replacement))
        ));
    }
    if let Some(v) = own.remove("schema.name.adjustment.mode") {
        if !v.trim().eq_ignore_ascii_case("none") {
            im.finding(
                FindingKind::Unmapped,
                &format!("{p}schema.name.adjustment.mode"),
                &v,
                "walrus names a logical table's schemas <topic>.Key/.Value/.Envelope unadjusted (Debezium's default, none); with Avro it makes the record names Avro-safe itself",
            );
        }
    }
    if let Some(v) = own.remove("logical.table.cache.size") {
        im.finding(
            FindingKind::NoEffect,
            &format!("{p}logical.table.cache.size"),
            &v,
            "walrus resolves each table's route once per table version; there is no cache to size",
        );
    }
    im.toml.push_entry("[[routes]]", lines);
    im.finding(
        FindingKind::Review,
        &format!("{p}topic.regex"),
        &regex,
        if chained {
            "walrus applies [[routes]] to table topics only, and the first rule that matches wins: Kafka Connect chains routers, so check that the rules above give the topics the chain gave"
        } else {
            "walrus applies [[routes]] to table topics; the <prefix>.message and heartbeat topics keep their names and keys"
        },
    );
    Ok(())
}

fn outbox_router(im: &mut Importer, p: &str, own: &mut BTreeMap<String, String>) {
    // The outbox table: the one table the connector captures.
    let table = im
        .toml
        .sections
        .iter()
        .find(|(s, _)| s == "[source]")
        .and_then(|(_, lines)| lines.iter().find(|l| l.starts_with("tables = ")))
        .and_then(|l| {
            let v = l.trim_start_matches("tables = ");
            let v = v.split("  # ").next().unwrap_or(v);
            toml::from_str::<BTreeMap<String, Vec<String>>>(&format!("t = {v}"))
                .ok()
                .and_then(|m| m.get("t").cloned())
        })
        .and_then(|t| match t.as_slice() {
            [one] => one
                .strip_prefix(REGEX_PATTERN_PREFIX)
                .and_then(|r| literal_name(r, 2))
                .map(|n| format!("{}.{}", n[0], n[1])),
            _ => None,
        });
    let Some(table) = table else {
        im.finding(
            FindingKind::Unmapped,
            &format!("{p}type"),
            OUTBOX_ROUTER,
            "Debezium's outbox EventRouter applies to every captured table; walrus routes an outbox per table, and the connector does not capture exactly one table: add [[outbox]] table = \"schema.table\" (docs/outbox.md)",
        );
        return;
    };
    let mut lines = vec![format!(
        "table = {}  # the one table in table.include.list",
        q(&table)
    )];
    let route_by = own
        .remove("route.by.field")
        .unwrap_or_else(|| "aggregatetype".into());
    let regex = own.remove("route.topic.regex");
    let replacement = own
        .remove("route.topic.replacement")
        .unwrap_or_else(|| "outbox.event.${routedByValue}".into());
    let default_regex = regex.as_deref().is_none_or(|r| r == "(?<routedByValue>.*)");
    let column = format!("{{{route_by}}}");
    let topic = replacement
        .replace("${routedByValue}", &column)
        .replace("$1", &column);
    if default_regex && !topic.contains('$') {
        lines.push(format!(
            "topic = {}  # {p}route.topic.replacement, route.by.field",
            q(&topic)
        ));
    } else {
        im.finding(
            FindingKind::Unmapped,
            &format!("{p}route.topic.regex"),
            regex.as_deref().unwrap_or(""),
            format!("a custom topic regex; walrus's outbox topic is a template of column values ({{column}}): set [[outbox]] topic by hand (replacement was {replacement})"),
        );
    }
    for (key, walrus, default) in [
        ("table.field.event.id", "id_column", "id"),
        ("table.field.event.key", "key_column", "aggregateid"),
        ("table.field.event.payload", "payload_column", "payload"),
    ] {
        let v = own.remove(key).unwrap_or_else(|| default.to_owned());
        lines.push(format!("{walrus} = {}  # {p}{key}", q(&v)));
    }
    let expand = own
        .remove("table.expand.json.payload")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    lines.push(format!(
        "payload_format = {}  # {p}table.expand.json.payload = {expand}",
        q(if expand { "json" } else { "string" })
    ));
    if let Some(extra) = own.remove("table.fields.additional.placement") {
        let mut fields = Vec::new();
        for entry in list(&extra) {
            let parts: Vec<&str> = entry.split(':').map(str::trim).collect();
            match parts.as_slice() {
                [column, placement @ ("header" | "envelope"), rest @ ..] if rest.len() <= 1 => {
                    let name = rest
                        .first()
                        .map(|n| format!(", name = {}", q(n)))
                        .unwrap_or_default();
                    fields.push(format!(
                        "{{ column = {}, placement = {}{name} }}",
                        q(column),
                        q(placement)
                    ));
                }
                _ => im.finding(
                    FindingKind::Unmapped,
                    &format!("{p}table.fields.additional.placement"),
                    &entry,
                    "walrus places extra outbox columns in headers or the envelope only (not the partition)",
                ),
            }
        }
        if !fields.is_empty() {
            lines.push(format!(
                "fields = [{}]  # {p}table.fields.additional.placement",
                fields.join(", ")
            ));
        }
    }
    if let Some(v) = own.remove("route.tombstone.on.empty.payload") {
        lines.push(format!(
            "tombstone_on_empty_payload = {}  # {p}route.tombstone.on.empty.payload",
            v.eq_ignore_ascii_case("true")
        ));
    }
    own.remove("table.fields.additional.error.on.missing");
    im.toml.push_entry("[[outbox]]", lines);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(_: &str) -> Option<String> {
        Some("x".into())
    }

    fn run(text: &str) -> (Import, Config) {
        let cfg = ConnectorConfig::parse(text).unwrap();
        let im = import(
            &cfg,
            &ImportOptions {
                brokers: Some("kafka:9092".into()),
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let c =
            Config::parse_with_env(&im.toml, env).unwrap_or_else(|e| panic!("{e}\n{}", im.toml));
        (im, c)
    }

    fn finding<'a>(im: &'a Import, key: &str) -> &'a Finding {
        im.findings
            .iter()
            .find(|f| f.key == key)
            .unwrap_or_else(|| panic!("no finding for {key}: {:#?}", im.findings))
    }

    /// Debezium's PostgreSQL tutorial / documentation example (`inventory-connector`), in the
    /// REST form `curl -X POST .../connectors` takes.
    const INVENTORY: &str = r#"{
  "name": "inventory-connector",
  "config": {
    "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
    "tasks.max": "1",
    "database.hostname": "postgres",
    "database.port": "5432",
    "database.user": "postgres",
    "database.password": "postgres",
    "database.dbname": "postgres",
    "topic.prefix": "dbserver1",
    "schema.include.list": "inventory",
    "plugin.name": "pgoutput"
  }
}"#;

    #[test]
    fn inventory_tutorial_config() {
        let (im, c) = run(INVENTORY);
        assert_eq!(c.topic_prefix, "dbserver1");
        assert_eq!(c.source.url, "postgres://postgres@postgres:5432/postgres");
        assert_eq!(c.source.slot, "debezium");
        assert_eq!(c.source.publication, "dbz_publication");
        assert!(c.table_selected("inventory", "customers"));
        assert!(c.table_selected("INVENTORY", "orders"));
        assert!(!c.table_selected("public", "customers"));
        assert!(!c.table_selected("inventory2", "customers"));
        // Events of other tables in Debezium's FOR ALL TABLES publication are dropped.
        assert!(c.source.filter_events);
        let route = |schema: &str| {
            c.router()
                .unwrap()
                .resolve(&std::sync::Arc::new(crate::event::Table {
                    id: 1,
                    schema: schema.into(),
                    name: "customers".into(),
                    columns: vec![],
                    replica_identity: crate::event::ReplicaIdentity::Default,
                }))
                .unwrap()
        };
        assert!(!route("inventory").skips(crate::event::Op::Create));
        assert!(route("public").skips(crate::event::Op::Create));
        // Debezium's defaults, written out.
        assert_eq!(c.skip_ops, vec![crate::router::OpName::Truncate]);
        assert!(c.format.schemas_enable);
        assert_eq!(c.snapshot.workers, 1);
        assert_eq!(c.snapshot.mode, crate::config::SnapshotMode::Initial);
        assert!(!c.heartbeat.emit_events);
        // The password: an environment reference, never the value.
        assert_eq!(
            c.source.password.as_ref().map(|p| p.expose().to_owned()),
            Some("x".into())
        );
        assert!(
            im.toml.contains("password = \"${PGPASSWORD}\""),
            "{}",
            im.toml
        );
        assert!(im.env.iter().any(|(v, _)| v == "PGPASSWORD"));
        assert_eq!(finding(&im, "database.password").value, "(secret)");
        // Filtered with the default all_tables mode: a finding, no FOR ALL TABLES.
        assert!(!c.source.publication_all_tables);
        assert_eq!(
            finding(&im, "publication.autocreate.mode").kind,
            FindingKind::Review
        );
        assert_eq!(finding(&im, "tasks.max").kind, FindingKind::NoEffect);
        // Every key names its Debezium property.
        assert!(im.toml.contains("# topic.prefix"));
        assert!(im.toml.starts_with(
            "# walrus.toml imported from the Debezium connector \"inventory-connector\""
        ));
    }

    #[test]
    fn the_same_config_as_flat_json_and_properties() {
        let (flat, _) = run(
            r#"{"name": "inventory-connector", "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "database.hostname": "postgres", "database.port": 5432, "database.user": "postgres", "database.password": "postgres",
            "database.dbname": "postgres", "topic.prefix": "dbserver1", "schema.include.list": "inventory", "plugin.name": "pgoutput",
            "tasks.max": 1}"#,
        );
        let (props, _) = run("# Debezium's connect-standalone example\n\
             name=inventory-connector\n\
             connector.class=io.debezium.connector.postgresql.PostgresConnector\n\
             tasks.max=1\n\
             database.hostname = postgres\n\
             database.port: 5432\n\
             database.user postgres\n\
             database.password=postgres\n\
             database.dbname=postgres\n\
             topic.prefix=dbserver1\n\
             schema.include.list=\\\n    inventory\n\
             plugin.name=pgoutput\n");
        let (rest, _) = run(INVENTORY);
        assert_eq!(flat.toml, rest.toml);
        assert_eq!(props.toml, rest.toml);
    }

    #[test]
    fn secrets_never_reach_the_output() {
        let text = r#"{"name": "c", "config": {
            "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "plugin.name": "pgoutput", "topic.prefix": "app",
            "database.hostname": "db", "database.user": "cdc", "database.dbname": "app",
            "database.password": "hunter2-sekret",
            "database.sslpassword": "keypass-sekret",
            "value.converter": "io.confluent.connect.avro.AvroConverter",
            "value.converter.schema.registry.url": "http://registry:8081",
            "value.converter.basic.auth.user.info": "bob:registry-sekret",
            "producer.override.sasl.jaas.config": "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"u\" password=\"jaas-sekret\";"
        }}"#;
        let cfg = ConnectorConfig::parse(text).unwrap();
        let im = import(&cfg, &ImportOptions::default()).unwrap();
        let printed = format!("{}{:?}{:?}", im.toml, im.findings, im.env);
        assert!(!printed.contains("sekret"), "{printed}");
        assert_eq!(
            finding(&im, "database.sslpassword").kind,
            FindingKind::Unmapped
        );
        // The registry user is written, its password read from the environment.
        assert!(im.toml.contains("username = \"bob\""), "{}", im.toml);
        assert_eq!(
            finding(&im, "producer.override.sasl.jaas.config").value,
            "(secret)"
        );
        // The brokers come from the environment.
        assert!(im.toml.contains("brokers = \"${KAFKA_BOOTSTRAP_SERVERS}\""));
    }

    #[test]
    fn config_provider_references_become_environment_variables() {
        let (im, _) = run(
            r#"{"connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "plugin.name": "pgoutput", "topic.prefix": "app",
            "database.hostname": "${file:/opt/connect/db.properties:host}",
            "database.user": "${env:DB_USER}", "database.dbname": "app",
            "database.password": "${env:DB_PASSWORD}"}"#,
        );
        assert!(
            im.toml
                .contains("url = \"postgres://${DB_USER}@${DATABASE_HOSTNAME}:5432/app\""),
            "{}",
            im.toml
        );
        assert!(im.toml.contains("password = \"${DB_PASSWORD}\""));
        assert!(im.env.iter().any(|(v, _)| v == "DATABASE_HOSTNAME"));
        assert!(!im.env.iter().any(|(v, _)| v == "PGPASSWORD"));
    }

    #[test]
    fn other_output_plugins_are_refused() {
        for plugin in ["decoderbufs", "wal2json"] {
            let text = INVENTORY.replace("\"pgoutput\"", &format!("{plugin:?}"));
            let err = import(
                &ConnectorConfig::parse(&text).unwrap(),
                &ImportOptions::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("plugin.name") && err.contains("pgoutput"),
                "{err}"
            );
        }
        // Not set: Debezium's default is decoderbufs; a finding, not an error.
        let text = INVENTORY.replace(",\n    \"plugin.name\": \"pgoutput\"", "");
        let (im, _) = run(&text);
        assert!(finding(&im, "plugin.name").text.contains("decoderbufs"));
        let err = import(
            &ConnectorConfig::parse(
                &INVENTORY.replace("postgresql.PostgresConnector", "mysql.MySqlConnector"),
            )
            .unwrap(),
            &ImportOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("connector.class"), "{err}");
    }

    #[test]
    fn every_mapped_property() {
        let (im, c) = run(r#"{"name": "full", "config": {
            "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "plugin.name": "pgoutput", "topic.prefix": "shop",
            "database.hostname": "db.internal", "database.port": "6432", "database.user": "cdc user",
            "database.dbname": "shop", "database.sslmode": "verify-full",
            "database.sslrootcert": "/certs/ca.pem", "database.sslcert": "/certs/c.pem", "database.sslkey": "/certs/k.pem",
            "slot.name": "shop_slot", "publication.name": "shop_pub", "publication.autocreate.mode": "filtered",
            "table.include.list": "public\\.orders,public\\.order_lines,sales\\.inv.*",
            "table.exclude.list": "sales\\.inv_old",
            "column.exclude.list": "public.orders.card_number,public\\.order_lines\\.note,.*\\.secret_.*",
            "message.key.columns": "public.order_lines:order_id,line_no;(.*).purchaseorders:pk3",
            "snapshot.mode": "no_data", "snapshot.max.threads": "4", "incremental.snapshot.chunk.size": "4096",
            "signal.data.collection": "public.debezium_signal",
            "decimal.handling.mode": "string", "time.precision.mode": "connect", "binary.handling.mode": "hex",
            "interval.handling.mode": "string", "hstore.handling.mode": "map", "tombstones.on.delete": "false",
            "unavailable.value.placeholder": "__toast",
            "skipped.operations": "none",
            "heartbeat.interval.ms": "5000", "heartbeat.action.query": "UPDATE hb SET ts = now()",
            "topic.heartbeat.prefix": "hb",
            "status.update.interval.ms": "10000",
            "provide.transaction.metadata": "true",
            "key.converter": "org.apache.kafka.connect.json.JsonConverter", "key.converter.schemas.enable": "false",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter", "value.converter.schemas.enable": "false",
            "topic.creation.default.partitions": "6", "topic.creation.default.replication.factor": "3",
            "topic.creation.default.cleanup.policy": "compact",
            "slot.drop.on.stop": "true",
            "some.future.property": "1"
        }}"#);
        assert_eq!(c.source.url, "postgres://cdc%20user@db.internal:6432/shop");
        assert_eq!(c.source.sslmode, Some(crate::config::SslMode::VerifyFull));
        assert_eq!(
            c.source.sslkey.as_deref(),
            Some(std::path::Path::new("/certs/k.pem"))
        );
        assert_eq!(
            (c.source.slot.as_str(), c.source.publication.as_str()),
            ("shop_slot", "shop_pub")
        );
        assert!(c.source.create_publication && !c.source.publication_all_tables);
        assert!(c.table_selected("public", "orders"));
        assert!(!c.table_selected("public", "orders2"));
        assert!(c.table_selected("sales", "inventory"));
        assert!(!c.table_selected("sales", "inv_old"));
        assert!(!c.table_selected("public", "customers"));
        // Column lists and key columns: Debezium's regexes, applied by walrus's router.
        assert_eq!(c.exclude_columns.len(), 3);
        assert_eq!(c.key_columns.len(), 2);
        let r = c.router().unwrap();
        let cols = |names: &[&str]| {
            std::sync::Arc::new(crate::event::Table {
                id: 1,
                schema: "public".into(),
                name: String::new(),
                columns: names
                    .iter()
                    .map(|n| crate::event::Column {
                        name: (*n).into(),
                        type_oid: 25,
                        type_name: "text".into(),
                        type_modifier: -1,
                        key: *n == "id",
                        primary_key: *n == "id",
                        not_null: *n == "id",
                        default: None,
                        type_desc: None,
                    })
                    .collect(),
                replica_identity: crate::event::ReplicaIdentity::Default,
            })
        };
        let table = |name: &str, names: &[&str]| {
            let mut t = (*cols(names)).clone();
            t.name = name.into();
            r.resolve(&std::sync::Arc::new(t)).unwrap()
        };
        let orders = table("orders", &["id", "card_number", "secret_x", "total"]);
        assert_eq!(orders.projection.as_ref().unwrap().1, vec![0, 3]);
        let lines = table("order_lines", &["id", "order_id", "line_no", "note"]);
        assert_eq!(lines.projection.as_ref().unwrap().1, vec![0, 1, 2]);
        assert_eq!(lines.key_columns, vec![1, 2]);
        let po = table("purchaseorders", &["id", "pk3"]);
        assert_eq!(po.key_columns, vec![1]);
        assert_eq!(c.snapshot.mode, crate::config::SnapshotMode::NoData);
        assert_eq!(c.snapshot.workers, 4);
        assert_eq!(c.snapshot.incremental_chunk_size, 4096);
        assert_eq!(
            c.snapshot.signal_table.as_deref(),
            Some("public.debezium_signal")
        );
        let f = &c.format;
        assert_eq!(
            f.decimal_handling_mode,
            crate::config::DecimalHandlingMode::String
        );
        assert_eq!(
            f.time_precision_mode,
            crate::config::TimePrecisionMode::Connect
        );
        assert_eq!(
            f.binary_handling_mode,
            crate::config::BinaryHandlingMode::Hex
        );
        assert_eq!(
            f.interval_handling_mode,
            crate::config::IntervalHandlingMode::String
        );
        assert_eq!(
            f.hstore_handling_mode,
            crate::config::HstoreHandlingMode::Map
        );
        assert!(!f.tombstones_on_delete && !f.schemas_enable);
        assert_eq!(f.unavailable_value_placeholder, "__toast");
        assert!(c.skip_ops.is_empty());
        let h = &c.heartbeat;
        assert!(h.enabled && h.emit_events);
        assert_eq!(h.interval_ms, 5000);
        assert_eq!(h.topic.as_deref(), Some("hb.shop"));
        assert_eq!(h.action_query.as_deref(), Some("UPDATE hb SET ts = now()"));
        assert_eq!(c.source.status_interval_ms, 10000);
        let crate::config::SinkConfig::Kafka(k) = &c.sink else {
            panic!("a kafka sink")
        };
        assert_eq!(k.brokers, "kafka:9092");
        assert_eq!(k.topic_creation.partitions, 6);
        assert_eq!(k.topic_creation.replication_factor, 3);
        assert_eq!(
            k.topic_creation
                .config
                .get("cleanup.policy")
                .map(ToString::to_string),
            Some("compact".into())
        );
        assert!(c.transactions.enabled);
        assert_eq!(
            c.transactions.topic_for(&c.topic_prefix),
            "shop.transaction"
        );
        assert!(im
            .findings
            .iter()
            .all(|f| f.key != "provide.transaction.metadata"));
        assert_eq!(
            finding(&im, "slot.drop.on.stop").kind,
            FindingKind::Unmapped
        );
        assert!(finding(&im, "some.future.property")
            .text
            .contains("not known"));
        // The comment block lists the unmapped ones at the top.
        let head: String = im
            .toml
            .lines()
            .take_while(|l| l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            head.contains("NOT MAPPED") && head.contains("slot.drop.on.stop"),
            "{head}"
        );
    }

    /// Debezium's outbox example (debezium-examples/outbox: order-service's connector),
    /// in .properties form.
    #[test]
    fn outbox_example_with_event_router_and_regex_router() {
        let (im, c) = run("name=outbox-connector\n\
             connector.class=io.debezium.connector.postgresql.PostgresConnector\n\
             tasks.max=1\n\
             database.hostname=order-db\n\
             database.port=5432\n\
             database.user=postgresuser\n\
             database.password=postgrespw\n\
             database.dbname=orderdb\n\
             topic.prefix=dbserver1\n\
             schema.include.list=inventory\n\
             table.include.list=inventory.outboxevent\n\
             tombstones.on.delete=false\n\
             plugin.name=pgoutput\n\
             transforms=outbox,rename\n\
             transforms.outbox.type=io.debezium.transforms.outbox.EventRouter\n\
             transforms.outbox.route.topic.replacement=${routedByValue}.events\n\
             transforms.outbox.table.field.event.timestamp=timestamp\n\
             transforms.outbox.table.fields.additional.placement=type:header:eventType\n\
             transforms.outbox.table.expand.json.payload=true\n\
             transforms.rename.type=org.apache.kafka.connect.transforms.RegexRouter\n\
             transforms.rename.regex=dbserver1\\\\.inventory\\\\.(.*)\n\
             transforms.rename.replacement=cdc.$1x\n\
             value.converter=org.apache.kafka.connect.json.JsonConverter\n\
             value.converter.schemas.enable=false\n");
        assert_eq!(c.outbox.len(), 1);
        let o = &c.outbox[0];
        assert_eq!(o.table, "inventory.outboxevent");
        assert_eq!(o.topic, "{aggregatetype}.events");
        assert_eq!(
            (
                o.id_column.as_str(),
                o.key_column.as_str(),
                o.payload_column.as_str()
            ),
            ("id", "aggregateid", "payload")
        );
        assert_eq!(o.payload_format, crate::router::PayloadFormat::Json);
        assert_eq!(o.fields.len(), 1);
        assert_eq!(o.fields[0].name.as_deref(), Some("eventType"));
        assert_eq!(
            finding(&im, "transforms.outbox.table.field.event.timestamp").kind,
            FindingKind::Unmapped
        );
        // RegexRouter: matched on the topic, `$1x` kept as group 1 then `x`.
        assert_eq!(c.routes.len(), 1);
        assert_eq!(c.routes[0].match_on, crate::router::MatchOn::Topic);
        assert_eq!(c.routes[0].topic, "cdc.${1}x");
        let r = c.router().unwrap();
        let t = std::sync::Arc::new(crate::event::Table {
            id: 1,
            schema: "inventory".into(),
            name: "customers".into(),
            columns: vec![],
            replica_identity: crate::event::ReplicaIdentity::Default,
        });
        assert_eq!(&*r.resolve(&t).unwrap().topic, "cdc.customersx");
        assert!(!c.format.tombstones_on_delete);
    }

    /// Debezium's topic-routing documentation example (sharded `customers` tables merged
    /// into one topic, the shard number as the key field's value).
    #[test]
    fn by_logical_table_router_becomes_a_logical_table_route() {
        let (im, c) = run(
            "connector.class=io.debezium.connector.postgresql.PostgresConnector\n\
             database.hostname=db\n\
             database.user=u\n\
             database.dbname=shop\n\
             topic.prefix=myserver\n\
             transforms=Reroute\n\
             transforms.Reroute.type=io.debezium.transforms.ByLogicalTableRouter\n\
             transforms.Reroute.topic.regex=(.*)customers_shard(.*)\n\
             transforms.Reroute.topic.replacement=$1customers_all_shards\n\
             transforms.Reroute.key.field.name=shard_id\n\
             transforms.Reroute.key.field.regex=(.*)customers_shard(.*)\n\
             transforms.Reroute.key.field.replacement=$2\n\
             transforms.Reroute.logical.table.cache.size=32\n",
        );
        assert_eq!(c.routes.len(), 1);
        let rule = &c.routes[0];
        assert!(rule.logical_table);
        assert_eq!(rule.match_on, crate::router::MatchOn::Topic);
        assert_eq!(rule.topic, "${1}customers_all_shards");
        assert_eq!(rule.key_field_name.as_deref(), Some("shard_id"));
        assert_eq!(rule.key_field_replacement.as_deref(), Some("${2}"));
        assert_eq!(
            finding(&im, "transforms.Reroute.logical.table.cache.size").kind,
            FindingKind::NoEffect
        );
        let r = c.router().unwrap();
        let t = std::sync::Arc::new(crate::event::Table {
            id: 1,
            schema: "public".into(),
            name: "customers_shard7".into(),
            columns: vec![],
            replica_identity: crate::event::ReplicaIdentity::Default,
        });
        let route = r.resolve(&t).unwrap();
        assert_eq!(&*route.topic, "myserver.public.customers_all_shards");
        let logical = route.logical.as_deref().unwrap();
        assert_eq!(logical.schema_base, "myserver.public.customers_all_shards");
        assert_eq!(
            logical.key_field,
            Some(("shard_id".to_string(), "7".to_string()))
        );
        // A key regex without its replacement is refused, as Debezium refuses it.
        let cfg = ConnectorConfig::parse(
            "connector.class=io.debezium.connector.postgresql.PostgresConnector\n\
             database.hostname=db\n\
             database.user=u\n\
             database.dbname=shop\n\
             topic.prefix=p\n\
             transforms=r\n\
             transforms.r.type=io.debezium.transforms.ByLogicalTableRouter\n\
             transforms.r.topic.regex=(.*)\n\
             transforms.r.topic.replacement=all\n\
             transforms.r.key.field.regex=(.*)\n",
        )
        .unwrap();
        let err = import(&cfg, &ImportOptions { brokers: None })
            .unwrap_err()
            .to_string();
        assert!(err.contains("transforms.r.key.field.replacement"), "{err}");
    }

    #[test]
    fn unknown_transforms_and_extract_new_record_state_are_listed() {
        let (im, _) = run(
            r#"{"connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "plugin.name": "pgoutput", "topic.prefix": "app", "database.hostname": "db",
            "transforms": "unwrap,ts", "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
            "transforms.unwrap.delete.handling.mode": "rewrite",
            "transforms.ts.type": "org.apache.kafka.connect.transforms.TimestampConverter$Value"}"#,
        );
        assert_eq!(
            finding(&im, "transforms.unwrap.delete.handling.mode").kind,
            FindingKind::NoEffect
        );
        assert!(im.toml.contains("[transforms.unwrap]"), "{}", im.toml);
        assert_eq!(
            finding(&im, "transforms.ts.type").kind,
            FindingKind::Unmapped
        );
        // No include list: every non-system schema, as Debezium; a FOR ALL TABLES publication.
        let c = Config::parse_with_env(&im.toml, env).unwrap();
        assert!(c.table_selected("anything", "t"));
        assert!(c.source.publication_all_tables);
    }

    #[test]
    fn avro_converters_write_the_format_keys() {
        let (im, _) = run(
            r#"{"connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "plugin.name": "pgoutput", "topic.prefix": "app", "database.hostname": "db",
            "key.converter": "io.confluent.connect.avro.AvroConverter",
            "key.converter.schema.registry.url": "http://registry:8081",
            "value.converter": "io.confluent.connect.avro.AvroConverter",
            "value.converter.schema.registry.url": "http://registry:8081",
            "value.converter.value.subject.name.strategy": "io.confluent.kafka.serializers.subject.RecordNameStrategy",
            "value.converter.basic.auth.credentials.source": "USER_INFO",
            "value.converter.basic.auth.user.info": "walrus:registry-sekret",
            "transforms": "unwrap", "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
            "transforms.unwrap.add.fields": "op"}"#,
        );
        assert!(!im.toml.contains("sekret"), "{}", im.toml);
        let c = Config::parse_with_env(&im.toml, env).unwrap();
        // Flat Avro values are mapped like flat JSON ones.
        assert_eq!(
            c.transforms.unwrap.as_ref().map(|u| u.add_fields.clone()),
            Some(vec!["op".to_string()])
        );
        assert!(im
            .findings
            .iter()
            .all(|f| !f.key.starts_with("transforms.")));
        let r = c.format.registry.as_ref().expect("[format.registry]");
        assert_eq!(r.url, "http://registry:8081");
        assert_eq!(r.username.as_deref(), Some("walrus"));
        assert!(r.password.is_some());
        assert!(im
            .toml
            .contains("subject_name_strategy = \"RecordNameStrategy\""));
        assert!(im.env.iter().any(|(v, _)| v == "SCHEMA_REGISTRY_PASSWORD"));
        for needle in [
            "key = \"avro\"",
            "value = \"avro\"",
            "url = \"http://registry:8081\"",
        ] {
            assert!(im.toml.contains(needle), "{needle} missing:\n{}", im.toml);
        }
        assert!(!im.toml.contains("schemas_enable"));
    }

    #[test]
    fn properties_escapes_and_continuations() {
        let c = ConnectorConfig::parse_properties(
            "! comment\n  a.b = x\\\n    y\nc\\=d=\\u0041\\t\nempty\n",
        );
        assert_eq!(c.properties["a.b"], "xy");
        assert_eq!(c.properties["c=d"], "A\t");
        assert_eq!(c.properties["empty"], "");
    }

    #[test]
    fn java_replacements_become_regex_crate_syntax() {
        assert_eq!(java_replacement("dbz.$1"), "dbz.$${1}");
        assert_eq!(java_replacement("${name}_x\\$"), "$${name}_x$$");
        assert_eq!(java_replacement("$12a"), "$${12}a");
        assert_eq!(list("a, b\\,c ,,d"), vec!["a", "b,c", "d"]);
        assert_eq!(
            literal_name("public\\.orders", 2),
            Some(vec!["public".into(), "orders".into()])
        );
        assert_eq!(literal_name("public\\.order.*", 2), None);
    }

    #[test]
    fn transaction_metadata_and_its_topic_are_mapped() {
        let (im, c) = run(
            r#"{"connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "plugin.name": "pgoutput", "database.hostname": "db", "database.dbname": "shop",
            "topic.prefix": "shop",
            "provide.transaction.metadata": "true", "topic.transaction": "tx-events"}"#,
        );
        assert!(c.transactions.enabled);
        assert_eq!(c.transactions.topic_for("shop"), "shop.tx-events");
        assert!(im.toml.contains("[transactions]"), "{}", im.toml);
        let (off, c) = run(
            r#"{"connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "plugin.name": "pgoutput", "database.hostname": "db", "database.dbname": "shop",
            "topic.prefix": "shop",
            "provide.transaction.metadata": "false", "topic.transaction": "tx"}"#,
        );
        assert!(!c.transactions.enabled);
        assert_eq!(
            finding(&off, "topic.transaction").kind,
            FindingKind::NoEffect
        );
    }

    /// `ExtractNewRecordState` limited by a `TopicNameMatches` predicate to one table's
    /// topic (Debezium's documented way to flatten some tables only) becomes that table's
    /// `unwrap`; negated, every table's but that one's; a pattern over several topics stays
    /// a finding.
    #[test]
    fn extract_new_record_state_on_one_topic_becomes_the_tables_unwrap() {
        let config = |negate: &str, pattern: &str| {
            format!(
                r#"{{"connector.class": "io.debezium.connector.postgresql.PostgresConnector",
                "plugin.name": "pgoutput", "topic.prefix": "app.eu", "database.hostname": "db",
                "transforms": "unwrap", "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
                "transforms.unwrap.add.fields": "op", "transforms.unwrap.predicate": "isOrders",
                "transforms.unwrap.negate": "{negate}",
                "predicates": "isOrders",
                "predicates.isOrders.type": "org.apache.kafka.connect.transforms.predicates.TopicNameMatches",
                "predicates.isOrders.pattern": "{pattern}"}}"#
            )
        };
        let (im, c) = run(&config("false", "app\\\\.eu\\\\.shop\\\\.orders"));
        assert!(c.transforms.unwrap.is_none(), "{}", im.toml);
        assert_eq!(
            c.tables["shop.orders"].unwrap,
            Some(crate::config::TableUnwrap::Options(
                crate::config::UnwrapConfig {
                    add_fields: vec!["op".into()],
                    ..Default::default()
                }
            ))
        );
        assert!(
            im.findings
                .iter()
                .all(|f| !f.key.starts_with("predicates") && !f.key.starts_with("transforms.")),
            "{:#?}",
            im.findings
        );
        let (im, c) = run(&config("true", "app.eu.shop.orders"));
        assert_eq!(
            c.transforms.unwrap.as_ref().map(|u| u.add_fields.clone()),
            Some(vec!["op".to_string()]),
            "{}",
            im.toml
        );
        assert_eq!(
            c.tables["shop.orders"].unwrap,
            Some(crate::config::TableUnwrap::Switch(false))
        );
        let (im, c) = run(&config("false", "app\\\\.eu\\\\.shop\\\\.(orders|items)"));
        assert!(c.transforms.unwrap.is_some());
        assert_eq!(
            finding(&im, "transforms.unwrap.predicate").kind,
            FindingKind::Unmapped
        );
        assert_eq!(finding(&im, "predicates").kind, FindingKind::Unmapped);
    }

    #[test]
    fn extract_new_record_state_is_mapped() {
        let (im, c) = run(
            r#"{"connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "plugin.name": "pgoutput", "topic.prefix": "app", "database.hostname": "db",
            "transforms": "unwrap", "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
            "transforms.unwrap.delete.tombstone.handling.mode": "rewrite-with-tombstone",
            "transforms.unwrap.add.fields": "op, source.ts_ms,table:T",
            "transforms.unwrap.add.headers": "db", "transforms.unwrap.add.headers.prefix": "h_"}"#,
        );
        let u = c.transforms.unwrap.expect("[transforms.unwrap]");
        assert_eq!(
            u.delete_tombstone_handling_mode,
            crate::config::DeleteTombstoneHandling::RewriteWithTombstone
        );
        assert_eq!(u.add_fields, ["op", "source.ts_ms", "table:T"]);
        assert_eq!(u.add_headers, ["db"]);
        assert_eq!(u.add_headers_prefix.as_deref(), Some("h_"));
        assert!(im
            .findings
            .iter()
            .all(|f| !f.key.starts_with("transforms.unwrap")));
    }
}
