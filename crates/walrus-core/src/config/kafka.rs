//! `[sink] type = "kafka"`: the Kafka sink's settings.
//!
//! walrus fixes what its delivery guarantee rests on — `enable.idempotence = true`,
//! `acks = all`, at most 5 requests in flight per connection (so per-partition order holds
//! through retries) — and rejects `[sink.properties]` that would undo it. Everything else
//! librdkafka knows can be passed through `[sink.properties]`, which win over the named
//! keys below.
//!
//! `exactly_once = true` switches the producer to Kafka transactions (see the Kafka sink's
//! docs and docs/kafka.md): `transactional.id` then comes from `transactional_id` (by
//! default `walrus-<slot>`), never from `[sink.properties]`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, Secret};

/// Default `compression.type`.
pub const DEFAULT_KAFKA_COMPRESSION: KafkaCompression = KafkaCompression::Lz4;
/// Default `linger.ms`: a few milliseconds of batching cost little latency and save a lot
/// of requests.
pub const DEFAULT_KAFKA_LINGER_MS: u64 = 5;
/// Default of `[sink] event_headers`: row records carry walrus's `id`, `op`, `table` and
/// `txId` headers.
pub const DEFAULT_KAFKA_EVENT_HEADERS: bool = true;
/// Default `client.id`.
pub const DEFAULT_KAFKA_CLIENT_ID: &str = "walrus";
/// Default longest wait for outstanding deliveries when walrus stops.
pub const DEFAULT_KAFKA_SHUTDOWN_TIMEOUT_MS: u64 = 30_000;
/// Default partitions of topics walrus creates (-1: the broker's `num.partitions`).
pub const DEFAULT_TOPIC_PARTITIONS: i32 = -1;
/// Default replication factor of topics walrus creates (-1: the broker's
/// `default.replication.factor`).
pub const DEFAULT_TOPIC_REPLICATION_FACTOR: i32 = -1;
/// Default topic that holds the exactly-once mode's committed positions (like Kafka
/// Connect's `offset.storage.topic`): one compacted partition, keyed by transactional id.
pub const DEFAULT_KAFKA_OFFSETS_TOPIC: &str = "walrus.offsets";
/// Default longest time a Kafka transaction of the exactly-once mode stays open while
/// source transactions keep coming: it commits at the first source-transaction boundary
/// after this (Kafka Streams' `commit.interval.ms` under exactly-once is 100 ms too).
/// Shorter means lower latency for `read_committed` consumers and more commits (each
/// costs the broker transaction markers in every partition written).
pub const DEFAULT_KAFKA_TRANSACTION_INTERVAL_MS: u64 = 100;
/// Prefix of the default `transactional_id`, followed by the slot name.
pub const DEFAULT_TRANSACTIONAL_ID_PREFIX: &str = "walrus-";
/// Most requests in flight per broker connection that keeps per-partition order with the
/// idempotent producer.
pub const MAX_IN_FLIGHT_IDEMPOTENT: u32 = 5;

/// `compression.type`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KafkaCompression {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4 (the default: cheap on CPU, good on JSON).
    #[default]
    Lz4,
    /// Zstandard.
    Zstd,
}

impl KafkaCompression {
    /// librdkafka's name.
    pub fn as_str(self) -> &'static str {
        match self {
            KafkaCompression::None => "none",
            KafkaCompression::Gzip => "gzip",
            KafkaCompression::Snappy => "snappy",
            KafkaCompression::Lz4 => "lz4",
            KafkaCompression::Zstd => "zstd",
        }
    }
}

/// `security.protocol`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// No TLS, no SASL.
    #[default]
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL without TLS.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// librdkafka's name.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// A librdkafka property value: TOML strings, integers and booleans are all accepted.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum PropertyValue {
    /// A string.
    String(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A float.
    Float(f64),
}

impl std::fmt::Display for PropertyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PropertyValue::String(s) => f.write_str(s),
            PropertyValue::Int(i) => write!(f, "{i}"),
            PropertyValue::Bool(b) => write!(f, "{b}"),
            PropertyValue::Float(x) => write!(f, "{x}"),
        }
    }
}

/// `[sink.topic_creation]`: topics that do not exist are created through the admin API
/// (Kafka Connect's `topic.creation.*`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicCreationConfig {
    /// Create missing topics. When off, a missing topic stops walrus with an error naming
    /// it (or sends its records to the dead-letter topic).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Partitions of new topics; -1 for the broker's default.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of new topics; -1 for the broker's default.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
    /// Topic configs of new topics (`cleanup.policy`, `retention.ms`, ...).
    #[serde(default)]
    pub config: BTreeMap<String, PropertyValue>,
}

impl Default for TopicCreationConfig {
    fn default() -> Self {
        TopicCreationConfig {
            enabled: true,
            partitions: DEFAULT_TOPIC_PARTITIONS,
            replication_factor: DEFAULT_TOPIC_REPLICATION_FACTOR,
            config: BTreeMap::new(),
        }
    }
}

/// `[sink] type = "kafka"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers, `host:port,host:port`.
    pub brokers: String,
    /// `client.id`.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// `compression.type`: none, gzip, snappy, lz4, zstd.
    #[serde(default)]
    pub compression: KafkaCompression,
    /// `linger.ms`.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// Whether row records carry walrus's headers (`id`, `op`, `table`, `txId`; docs/kafka.md).
    /// Off, records carry only the headers Debezium would write (key changes, the outbox
    /// router's and `unwrap`'s), and each costs less CPU and fewer bytes.
    #[serde(default = "default_event_headers")]
    pub event_headers: bool,
    /// `security.protocol`: plaintext, ssl, sasl_plaintext, sasl_ssl.
    #[serde(default)]
    pub security_protocol: SecurityProtocol,
    /// `sasl.mechanism`: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512.
    #[serde(default)]
    pub sasl_mechanism: Option<String>,
    /// `sasl.username`.
    #[serde(default)]
    pub sasl_username: Option<String>,
    /// `sasl.password` (use `${ENV_VAR}`).
    #[serde(default)]
    pub sasl_password: Option<Secret>,
    /// `ssl.ca.location`.
    #[serde(default)]
    pub ssl_ca_location: Option<PathBuf>,
    /// `ssl.certificate.location` (client certificate).
    #[serde(default)]
    pub ssl_certificate_location: Option<PathBuf>,
    /// `ssl.key.location` (client key).
    #[serde(default)]
    pub ssl_key_location: Option<PathBuf>,
    /// `ssl.key.password`.
    #[serde(default)]
    pub ssl_key_password: Option<Secret>,
    /// Records the broker rejects for good (too large, invalid, topic missing with creation
    /// off) go here, with the error in headers, instead of stopping walrus.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Longest wait for outstanding deliveries when walrus stops, in milliseconds; what is
    /// not delivered by then is not confirmed and is sent again on the next start.
    #[serde(default = "default_shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
    /// Creation of missing topics.
    #[serde(default)]
    pub topic_creation: TopicCreationConfig,
    /// Exactly-once delivery: records go out in Kafka transactions, each committed at a
    /// source-transaction boundary together with the position it reached (in
    /// `offsets_topic`), so a restart after a crash skips what was committed and
    /// `read_committed` consumers see every change once. Needs a broker with transactions.
    #[serde(default)]
    pub exactly_once: bool,
    /// `transactional.id` of the exactly-once mode; default `walrus-<slot>`. Another
    /// producer with the same id fences this one, so give each walrus its own.
    #[serde(default)]
    pub transactional_id: Option<String>,
    /// Topic holding the exactly-once mode's committed positions.
    #[serde(default = "default_offsets_topic")]
    pub offsets_topic: String,
    /// Longest time a Kafka transaction stays open while changes keep coming, in
    /// milliseconds (exactly-once mode); it commits at the next source-transaction end.
    #[serde(default = "default_transaction_interval_ms")]
    pub transaction_interval_ms: u64,
    /// The replication slot, for the exactly-once mode's offset records; set by
    /// [`Self::for_slot`], not read from the file.
    #[serde(skip)]
    pub slot: String,
    /// Any librdkafka producer property, passed through; wins over the keys above.
    #[serde(default)]
    pub properties: BTreeMap<String, PropertyValue>,
}

fn yes() -> bool {
    true
}
fn default_partitions() -> i32 {
    DEFAULT_TOPIC_PARTITIONS
}
fn default_replication_factor() -> i32 {
    DEFAULT_TOPIC_REPLICATION_FACTOR
}
fn default_client_id() -> String {
    DEFAULT_KAFKA_CLIENT_ID.into()
}
fn default_event_headers() -> bool {
    DEFAULT_KAFKA_EVENT_HEADERS
}

fn default_linger_ms() -> u64 {
    DEFAULT_KAFKA_LINGER_MS
}
fn default_shutdown_timeout_ms() -> u64 {
    DEFAULT_KAFKA_SHUTDOWN_TIMEOUT_MS
}
fn default_offsets_topic() -> String {
    DEFAULT_KAFKA_OFFSETS_TOPIC.into()
}
fn default_transaction_interval_ms() -> u64 {
    DEFAULT_KAFKA_TRANSACTION_INTERVAL_MS
}

fn valid_topic_name(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 249
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl KafkaSinkConfig {
    /// A config with defaults for everything but the brokers.
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaSinkConfig {
            brokers: brokers.into(),
            client_id: default_client_id(),
            compression: KafkaCompression::default(),
            linger_ms: DEFAULT_KAFKA_LINGER_MS,
            event_headers: DEFAULT_KAFKA_EVENT_HEADERS,
            security_protocol: SecurityProtocol::default(),
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            ssl_key_password: None,
            dead_letter_topic: None,
            shutdown_timeout_ms: DEFAULT_KAFKA_SHUTDOWN_TIMEOUT_MS,
            topic_creation: TopicCreationConfig::default(),
            exactly_once: false,
            transactional_id: None,
            offsets_topic: default_offsets_topic(),
            transaction_interval_ms: DEFAULT_KAFKA_TRANSACTION_INTERVAL_MS,
            slot: String::new(),
            properties: BTreeMap::new(),
        }
    }

    /// This config for the replication slot `slot`: `transactional_id` defaulted to
    /// `walrus-<slot>`, and `slot` set.
    pub fn for_slot(&self, slot: &str) -> KafkaSinkConfig {
        let mut c = self.clone();
        c.slot = slot.to_string();
        c.transactional_id
            .get_or_insert_with(|| format!("{DEFAULT_TRANSACTIONAL_ID_PREFIX}{slot}"));
        c
    }

    /// Checks what the types cannot; errors name the key under `sink.`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Key {
            key: format!("sink.{key}"),
            message,
        };
        if self.brokers.trim().is_empty()
            || self
                .brokers
                .split(',')
                .any(|b| b.trim().is_empty() || !b.contains(':'))
        {
            return Err(bad(
                "brokers",
                format!("{:?}: expected host:port[,host:port...]", self.brokers),
            ));
        }
        if self.security_protocol.uses_sasl()
            && (self.sasl_username.is_none() || self.sasl_password.is_none())
            && !self.properties.contains_key("sasl.username")
            && self.sasl_mechanism.as_deref() != Some("GSSAPI")
            && self.sasl_mechanism.as_deref() != Some("OAUTHBEARER")
        {
            return Err(bad(
                "sasl_username",
                "security_protocol uses SASL: set sasl_mechanism, sasl_username and sasl_password"
                    .into(),
            ));
        }
        if let Some(t) = &self.dead_letter_topic {
            if !valid_topic_name(t) {
                return Err(bad(
                    "dead_letter_topic",
                    format!("{t:?} is not a valid topic name (letters, digits, '.', '_', '-')"),
                ));
            }
        }
        if !valid_topic_name(&self.offsets_topic) {
            return Err(bad(
                "offsets_topic",
                format!(
                    "{:?} is not a valid topic name (letters, digits, '.', '_', '-')",
                    self.offsets_topic
                ),
            ));
        }
        if !self.exactly_once {
            if self.transactional_id.is_some() {
                return Err(bad(
                    "transactional_id",
                    "only used with exactly_once = true; set that too, or remove this key".into(),
                ));
            }
            if self.offsets_topic != DEFAULT_KAFKA_OFFSETS_TOPIC {
                return Err(bad(
                    "offsets_topic",
                    "only used with exactly_once = true; set that too, or remove this key".into(),
                ));
            }
        }
        if let Some(id) = &self.transactional_id {
            if id.trim().is_empty() {
                return Err(bad("transactional_id", "must not be empty".into()));
            }
        }
        if self.transaction_interval_ms == 0 {
            return Err(bad("transaction_interval_ms", "must be at least 1".into()));
        }
        if self.exactly_once && self.dead_letter_topic.as_deref() == Some(&self.offsets_topic) {
            return Err(bad(
                "offsets_topic",
                "must differ from dead_letter_topic".into(),
            ));
        }
        let tc = &self.topic_creation;
        if tc.partitions == 0 || tc.partitions < -1 {
            return Err(bad(
                "topic_creation.partitions",
                "must be -1 (broker default) or at least 1".into(),
            ));
        }
        if tc.replication_factor == 0 || tc.replication_factor < -1 {
            return Err(bad(
                "topic_creation.replication_factor",
                "must be -1 (broker default) or at least 1".into(),
            ));
        }
        for (k, v) in &self.properties {
            let key = format!("properties.\"{k}\"");
            let v = v.to_string();
            let broken = match k.as_str() {
                "enable.idempotence" => (v != "true").then_some(
                    "walrus needs the idempotent producer for per-key order and no duplicates from retries",
                ),
                "acks" | "request.required.acks" => (v != "all" && v != "-1").then_some(
                    "walrus confirms WAL only for records every in-sync replica has (acks=all)",
                ),
                "max.in.flight.requests.per.connection" | "max.in.flight" => v
                    .parse::<u32>()
                    .map_or(true, |n| n == 0 || n > MAX_IN_FLIGHT_IDEMPOTENT)
                    .then_some("must be 1..=5 with the idempotent producer"),
                "delivery.report.only.error" | "dr_msg_cb" | "dr_cb" => {
                    Some("walrus needs every delivery report")
                }
                "bootstrap.servers" | "metadata.broker.list" => {
                    Some("set [sink] brokers instead")
                }
                "transactional.id" => Some(
                    "set [sink] exactly_once = true (and transactional_id, which defaults to walrus-<slot>) instead",
                ),
                _ => None,
            };
            if let Some(why) = broken {
                return Err(bad(&key, format!("{k} = {v:?} is not allowed: {why}")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_headers_only_where_a_sink_carries_them() {
        use crate::config::SinkConfig;
        let kafka = |extra: &str| {
            let c: SinkConfig =
                toml::from_str(&format!("type = \"kafka\"\nbrokers = \"b:9092\"\n{extra}"))
                    .unwrap();
            c.event_headers()
        };
        assert!(kafka(""));
        assert!(!kafka("event_headers = false"));
        for other in [
            "type = \"stdout\"",
            "type = \"null\"",
            "type = \"file\"\npath = \"x.jsonl\"",
        ] {
            let c: SinkConfig = toml::from_str(other).unwrap();
            assert!(!c.event_headers(), "{other}");
        }
    }

    fn parse(text: &str) -> Result<KafkaSinkConfig, ConfigError> {
        let c: KafkaSinkConfig = toml::from_str(text).map_err(|e| ConfigError::Key {
            key: "sink".into(),
            message: e.to_string(),
        })?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn defaults_and_properties() {
        let c = parse(
            r#"
brokers = "127.0.0.1:9092"
[properties]
"queue.buffering.max.ms" = 10
"socket.keepalive.enable" = true
"#,
        )
        .unwrap();
        assert_eq!(c.compression, DEFAULT_KAFKA_COMPRESSION);
        assert!(c.event_headers);
        assert!(c.topic_creation.enabled);
        assert_eq!(c.properties["queue.buffering.max.ms"].to_string(), "10");
        assert_eq!(c.properties["socket.keepalive.enable"].to_string(), "true");
    }

    #[test]
    fn guarantees_cannot_be_turned_off() {
        for (k, v) in [
            ("acks", "\"1\""),
            ("enable.idempotence", "false"),
            ("max.in.flight.requests.per.connection", "10"),
            ("bootstrap.servers", "\"x:1\""),
        ] {
            let err = parse(&format!("brokers = \"h:1\"\n[properties]\n\"{k}\" = {v}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("sink.properties.\"{k}\"")), "{err}");
        }
        assert!(parse("brokers = \"h:1\"\n[properties]\nacks = \"all\"\n").is_ok());
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = parse("brokers = \"nohostport\"").unwrap_err().to_string();
        assert!(err.contains("sink.brokers"), "{err}");
        let err = parse("brokers = \"h:1\"\ndead_letter_topic = \"a b\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sink.dead_letter_topic"), "{err}");
        let err = parse("brokers = \"h:1\"\n[topic_creation]\npartitions = 0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sink.topic_creation.partitions"), "{err}");
        let err = parse("brokers = \"h:1\"\nsecurity_protocol = \"sasl_ssl\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sink.sasl_username"), "{err}");
        assert!(parse("brokers = \"h:1\"\nlingr_ms = 3").is_err());
    }

    #[test]
    fn exactly_once_keys() {
        let c = parse("brokers = \"h:1\"").unwrap();
        assert!(!c.exactly_once);
        assert_eq!(c.offsets_topic, DEFAULT_KAFKA_OFFSETS_TOPIC);
        assert_eq!(
            c.transaction_interval_ms,
            DEFAULT_KAFKA_TRANSACTION_INTERVAL_MS
        );
        assert_eq!(
            c.for_slot("orders").transactional_id.as_deref(),
            Some("walrus-orders")
        );
        let c = parse(
            "brokers = \"h:1\"\nexactly_once = true\ntransactional_id = \"cdc-1\"\noffsets_topic = \"cdc.offsets\"",
        )
        .unwrap();
        assert_eq!(
            c.for_slot("orders").transactional_id.as_deref(),
            Some("cdc-1")
        );
        // transactional.id through the properties: pointed at the option.
        let err = parse("brokers = \"h:1\"\n[properties]\n\"transactional.id\" = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sink.properties.\"transactional.id\"") && err.contains("exactly_once"),
            "{err}"
        );
        let err = parse("brokers = \"h:1\"\ntransactional_id = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sink.transactional_id"), "{err}");
        let err = parse("brokers = \"h:1\"\nexactly_once = true\noffsets_topic = \"a b\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sink.offsets_topic"), "{err}");
        let err = parse("brokers = \"h:1\"\nexactly_once = true\ntransaction_interval_ms = 0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sink.transaction_interval_ms"), "{err}");
    }
}
