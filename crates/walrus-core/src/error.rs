//! Error classification: the one place that decides whether a failure is retried or stops
//! walrus, and what an operator should do about it.
//!
//! Each crate keeps its own `thiserror` enum with the details (which table, which key, which
//! LSN); each such error maps itself to an [`ErrorKind`]. [`ErrorKind::class`] and
//! [`ErrorKind::hint`] are the single policy table. The runner restarts the pipeline with
//! backoff on [`ErrorClass::Retryable`] — resuming from the slot, so nothing is lost — and
//! exits non-zero on [`ErrorClass::Fatal`], holding the slot (and so the WAL) for an operator.

use std::fmt;

/// What a failure means for the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient: reconnect and resume from the slot after a backoff.
    Retryable,
    /// Needs a person: stop, keep the slot, explain.
    Fatal,
}

/// The kinds of failure walrus knows, each with one policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The configuration is invalid.
    Config,
    /// PostgreSQL could not be reached or the connection dropped.
    SourceConnection,
    /// PostgreSQL refused the credentials.
    SourceAuth,
    /// TLS to PostgreSQL failed: the server's certificate, the CA, or the TLS settings.
    SourceTls,
    /// The role lacks a privilege (REPLICATION, SELECT, ownership for publications).
    SourcePermission,
    /// The server is not set up for logical replication (`wal_level`, slot/sender limits).
    SourceSetup,
    /// The server's PostgreSQL major lacks something the configuration asks for (a
    /// publication option, a pgoutput option, incremental snapshots), or is older than 10.
    /// Retrying cannot help: the server answers the same until it is upgraded or the key
    /// is changed.
    ServerVersion,
    /// The replication slot is missing or of the wrong kind (not logical, not pgoutput).
    SlotUnavailable,
    /// The replication slot is active for another process (often the walsender of a
    /// walrus that just died, which PostgreSQL notices within seconds).
    SlotInUse,
    /// The slot has been invalidated (`wal_status = lost`): WAL walrus needs is gone.
    SlotLost,
    /// The sink held delivery while the slot's WAL passed `max_slot_wal_keep_size`, so
    /// walrus closed its replication connection: a walsender whose client does not read
    /// would block the checkpoint that invalidates the slot.
    SlotReleased,
    /// A table or column changed under a read (DDL while the snapshot reads it).
    SchemaChanged,
    /// The publication is missing or does not cover the configured tables.
    Publication,
    /// A pgoutput message could not be decoded, or referenced an unknown relation.
    Decode,
    /// A sink's destination is temporarily unavailable (I/O hiccup, broker down, timeout).
    SinkTransient,
    /// A sink's destination rejected data in a way retrying will not fix.
    SinkRejected,
    /// The schema registry could not be reached or answered with a transient error.
    SchemaRegistry,
    /// The schema registry refused a new schema under the subject's compatibility level.
    SchemaIncompatible,
    /// The schema registry refused walrus's requests (credentials, TLS, URL).
    SchemaRegistryRejected,
    /// A bug: an invariant inside walrus did not hold.
    Internal,
}

impl ErrorKind {
    /// Retry or stop.
    pub fn class(self) -> ErrorClass {
        use ErrorKind::*;
        match self {
            // A stale walsender holding the slot goes away once PostgreSQL notices its
            // client is gone; a second walrus on the same slot keeps this retrying loudly.
            SourceConnection | SinkTransient | SlotInUse | SlotReleased | SchemaChanged
            | SchemaRegistry => ErrorClass::Retryable,
            Config
            | SlotUnavailable
            | SourceAuth
            | SourceTls
            | SourcePermission
            | SourceSetup
            | ServerVersion
            | SlotLost
            | Publication
            | Decode
            | SinkRejected
            | SchemaIncompatible
            | SchemaRegistryRejected
            | Internal => ErrorClass::Fatal,
        }
    }

    /// What an operator should do, in one sentence.
    pub fn hint(self) -> &'static str {
        use ErrorKind::*;
        match self {
            Config => "fix the named configuration key and start walrus again",
            SourceConnection => {
                "walrus retries by itself; check that PostgreSQL is up and reachable at [source].url"
            }
            SourceAuth => "check the user and password in [source].url (or [source].password_file)",
            SourceTls => {
                "check source.sslmode, source.sslrootcert (and source.sslcert/sslkey for a client certificate) against the server's certificate (walrus check shows the TLS error)"
            }
            SourcePermission => {
                "grant the missing privilege shown above (walrus check prints the exact SQL)"
            }
            SourceSetup => "run `walrus check` and apply the settings it prints, then restart PostgreSQL",
            ServerVersion => {
                "turn off the configuration key named above or upgrade PostgreSQL to the version it names; `walrus check` prints the server's major and docs/operations.md what each major supports"
            }
            SlotUnavailable => "run `walrus check`: it shows the slot's state and the SQL that fixes it",
            SlotInUse => {
                "walrus retries by itself; if it persists, another process uses the slot (see pg_replication_slots.active_pid)"
            }
            SlotLost => {
                "the slot lost WAL it needed: drop it (SELECT pg_drop_replication_slot('<slot>')), start walrus again and re-snapshot; raise max_slot_wal_keep_size to avoid this"
            }
            SlotReleased => {
                "the sink is not delivering and the slot passed max_slot_wal_keep_size: fix the sink now; walrus reconnects by itself, but the next checkpoint invalidates the slot"
            }
            SchemaChanged => {
                "walrus retries by itself: it reads the catalog again and resumes the snapshot from the last delivered chunk"
            }
            Publication => "create or alter the publication as shown above, or let walrus create it",
            Decode => "this is a bug or an unsupported server version; report it with the message above",
            SinkTransient => "walrus retries by itself; check the sink's destination",
            SinkRejected => "fix the destination or the event named above; the slot holds the WAL meanwhile",
            SchemaRegistry => {
                "walrus retries by itself; check that the schema registry at format.registry.url is up"
            }
            SchemaIncompatible => {
                "nothing of the new shape was written and the slot holds the WAL: undo the table change, or change the subject's compatibility level (PUT /config/<subject> {\"compatibility\": \"NONE\"}) and start walrus again"
            }
            SchemaRegistryRejected => {
                "check format.registry.url, its username/password and TLS settings (walrus check reaches the registry)"
            }
            Internal => "this is a bug in walrus; report it with the log above",
        }
    }
}

/// Implemented by every walrus error type so the runner can apply the policy.
pub trait Classify {
    /// The kind of failure.
    fn kind(&self) -> ErrorKind;
}

/// Errors from sinks (shared by all sink connectors).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Writing to a file or stream failed.
    #[error("{sink} sink: writing {target}: {source}")]
    Io {
        /// Sink name.
        sink: &'static str,
        /// The path or stream.
        target: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The destination refused a record.
    #[error("{sink} sink: topic {topic:?}: {message}")]
    Rejected {
        /// Sink name.
        sink: &'static str,
        /// The record's topic.
        topic: String,
        /// What went wrong and how to fix it.
        message: String,
        /// Whether retrying may succeed.
        retryable: bool,
    },
    /// The destination is temporarily unavailable.
    #[error("{sink} sink: {message}")]
    Unavailable {
        /// Sink name.
        sink: &'static str,
        /// What happened.
        message: String,
    },
}

impl Classify for SinkError {
    fn kind(&self) -> ErrorKind {
        match self {
            SinkError::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::NotFound => {
                    ErrorKind::SinkRejected
                }
                _ => ErrorKind::SinkTransient,
            },
            SinkError::Rejected { retryable, .. } => {
                if *retryable {
                    ErrorKind::SinkTransient
                } else {
                    ErrorKind::SinkRejected
                }
            }
            SinkError::Unavailable { .. } => ErrorKind::SinkTransient,
        }
    }
}

/// What a Kafka error means for the record it hit: the one table the Kafka sink consults.
///
/// Codes are librdkafka's `rd_kafka_resp_err_t`: negative for the client's own errors
/// (`RD_KAFKA_RESP_ERR__*`), positive for the broker's protocol error codes. Kept here, by
/// number, so the policy sits next to [`ErrorKind`] and core needs no Kafka dependency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerErrorClass {
    /// The producer's queue is full: wait for deliveries and offer the same record again.
    /// Never an error, never a drop.
    BackPressure,
    /// Transient (broker down, leader moving, timeouts): librdkafka retries by itself;
    /// once it gives up, the session restarts after a backoff and resumes from the slot.
    Retryable,
    /// This record cannot be delivered as it is (too large, invalid, its topic missing
    /// with creation off): it goes to the dead-letter topic when one is configured, else
    /// the pipeline stops.
    Rejected,
    /// The producer itself cannot go on (authentication, authorisation, a fatal
    /// idempotence error): stop; a dead-letter topic would not help.
    Fatal,
}

/// librdkafka codes the classification refers to, by name.
pub mod kafka_codes {
    #![allow(missing_docs)]
    pub const BAD_MSG: i32 = -199;
    pub const DESTROY: i32 = -197;
    pub const FAIL: i32 = -196;
    pub const TRANSPORT: i32 = -195;
    pub const RESOLVE: i32 = -193;
    pub const MSG_TIMED_OUT: i32 = -192;
    pub const UNKNOWN_PARTITION: i32 = -190;
    pub const UNKNOWN_TOPIC_LOCAL: i32 = -188;
    pub const ALL_BROKERS_DOWN: i32 = -187;
    pub const INVALID_ARG: i32 = -186;
    pub const TIMED_OUT: i32 = -185;
    pub const QUEUE_FULL: i32 = -184;
    pub const ISR_INSUFF: i32 = -183;
    pub const NODE_UPDATE: i32 = -182;
    pub const SSL: i32 = -181;
    pub const UNSUPPORTED_FEATURE: i32 = -165;
    pub const AUTHENTICATION: i32 = -169;
    pub const FENCED: i32 = -144;
    pub const TIMED_OUT_QUEUE: i32 = -166;
    pub const RETRY: i32 = -153;
    pub const PURGE_QUEUE: i32 = -152;
    pub const PURGE_INFLIGHT: i32 = -151;
    pub const FATAL: i32 = -150;
    pub const INVALID_MSG: i32 = 2;
    pub const UNKNOWN_TOPIC_OR_PART: i32 = 3;
    pub const INVALID_MSG_SIZE: i32 = 4;
    pub const LEADER_NOT_AVAILABLE: i32 = 5;
    pub const NOT_LEADER_FOR_PARTITION: i32 = 6;
    pub const REQUEST_TIMED_OUT: i32 = 7;
    pub const BROKER_NOT_AVAILABLE: i32 = 8;
    pub const REPLICA_NOT_AVAILABLE: i32 = 9;
    pub const MSG_SIZE_TOO_LARGE: i32 = 10;
    pub const NETWORK_EXCEPTION: i32 = 13;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i32 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i32 = 15;
    pub const NOT_COORDINATOR: i32 = 16;
    pub const TOPIC_EXCEPTION: i32 = 17;
    pub const RECORD_LIST_TOO_LARGE: i32 = 18;
    pub const NOT_ENOUGH_REPLICAS: i32 = 19;
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i32 = 20;
    pub const TOPIC_AUTHORIZATION_FAILED: i32 = 29;
    pub const CLUSTER_AUTHORIZATION_FAILED: i32 = 31;
    pub const INVALID_TIMESTAMP: i32 = 32;
    pub const UNSUPPORTED_SASL_MECHANISM: i32 = 33;
    pub const ILLEGAL_SASL_STATE: i32 = 34;
    pub const TOPIC_ALREADY_EXISTS: i32 = 36;
    pub const POLICY_VIOLATION: i32 = 44;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i32 = 45;
    pub const INVALID_PRODUCER_EPOCH: i32 = 47;
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i32 = 53;
    pub const KAFKA_STORAGE_ERROR: i32 = 56;
    pub const SASL_AUTHENTICATION_FAILED: i32 = 58;
    pub const UNKNOWN_PRODUCER_ID: i32 = 59;
    pub const FENCED_LEADER_EPOCH: i32 = 74;
    pub const UNKNOWN_LEADER_EPOCH: i32 = 75;
    pub const UNSUPPORTED_COMPRESSION_TYPE: i32 = 76;
    pub const PREFERRED_LEADER_NOT_AVAILABLE: i32 = 80;
    pub const INVALID_RECORD: i32 = 87;
    pub const THROTTLING_QUOTA_EXCEEDED: i32 = 89;
    pub const PRODUCER_FENCED: i32 = 90;
    pub const REBOOTSTRAP_REQUIRED: i32 = 129;
}

impl BrokerErrorClass {
    /// Classifies a librdkafka error code. Unknown codes count as retryable: the session
    /// restarts and the slot keeps the WAL, which is safe, and a persistent error shows in
    /// the retry log.
    pub fn of(code: i32) -> BrokerErrorClass {
        use kafka_codes::*;
        match code {
            QUEUE_FULL => BrokerErrorClass::BackPressure,
            MSG_SIZE_TOO_LARGE
            | INVALID_MSG_SIZE
            | RECORD_LIST_TOO_LARGE
            | INVALID_MSG
            | BAD_MSG
            | INVALID_RECORD
            | INVALID_TIMESTAMP
            | POLICY_VIOLATION
            | TOPIC_EXCEPTION
            | UNKNOWN_TOPIC_OR_PART
            | UNKNOWN_TOPIC_LOCAL
            | UNKNOWN_PARTITION
            | UNSUPPORTED_COMPRESSION_TYPE
            | INVALID_ARG => BrokerErrorClass::Rejected,
            TOPIC_AUTHORIZATION_FAILED
            | CLUSTER_AUTHORIZATION_FAILED
            | TRANSACTIONAL_ID_AUTHORIZATION_FAILED
            | AUTHENTICATION
            | SASL_AUTHENTICATION_FAILED
            | UNSUPPORTED_SASL_MECHANISM
            | ILLEGAL_SASL_STATE
            | SSL
            | FATAL
            | PRODUCER_FENCED
            | FENCED
            | INVALID_PRODUCER_EPOCH
            // librdkafka calls a broker without transactions "retriable"; it never
            // gains them by retrying.
            | UNSUPPORTED_FEATURE => BrokerErrorClass::Fatal,
            _ => BrokerErrorClass::Retryable,
        }
    }

    /// The [`ErrorKind`] a sink error of this class maps to.
    pub fn kind(self) -> ErrorKind {
        match self {
            BrokerErrorClass::BackPressure | BrokerErrorClass::Retryable => {
                ErrorKind::SinkTransient
            }
            BrokerErrorClass::Rejected | BrokerErrorClass::Fatal => ErrorKind::SinkRejected,
        }
    }

    /// What fixes an error with this code, in one sentence, for the error message.
    pub fn fix(code: i32) -> &'static str {
        use kafka_codes::*;
        match code {
            MSG_SIZE_TOO_LARGE | INVALID_MSG_SIZE | RECORD_LIST_TOO_LARGE => {
                "raise the topic's max.message.bytes (and the broker's message.max.bytes) and walrus's [sink.properties] \"message.max.bytes\", exclude large columns with [tables.\"<schema>.<table>\"] exclude_columns, or set [sink] dead_letter_topic"
            }
            UNKNOWN_TOPIC_OR_PART | UNKNOWN_TOPIC_LOCAL | UNKNOWN_PARTITION => {
                "create the topic, or enable [sink.topic_creation] (enabled = true) so walrus creates it"
            }
            TOPIC_AUTHORIZATION_FAILED | CLUSTER_AUTHORIZATION_FAILED => {
                "grant the walrus principal WRITE (and DESCRIBE, CREATE for topic creation) on the topic, and IDEMPOTENT_WRITE on the cluster"
            }
            AUTHENTICATION | SASL_AUTHENTICATION_FAILED | UNSUPPORTED_SASL_MECHANISM
            | ILLEGAL_SASL_STATE => {
                "check [sink] sasl_mechanism, sasl_username and sasl_password against the broker's listener"
            }
            SSL => "check [sink] security_protocol and the ssl_* certificate paths",
            PRODUCER_FENCED | FENCED | INVALID_PRODUCER_EPOCH => {
                "another producer with the same transactional id took over (fenced this one): run one walrus per [sink] transactional_id (it defaults to walrus-<slot>), and stop the other instance or give each its own slot"
            }
            UNSUPPORTED_FEATURE => {
                "the broker lacks a feature walrus needs; [sink] exactly_once = true needs Kafka transactions (Apache Kafka 0.11 or later, or a compatible broker that implements them): set exactly_once = false or use such a broker"
            }
            POLICY_VIOLATION | INVALID_RECORD | INVALID_TIMESTAMP | TOPIC_EXCEPTION => {
                "the broker refused the record (topic policy, name or timestamp rules); fix the topic's configuration or route the table elsewhere, or set [sink] dead_letter_topic"
            }
            _ => "walrus retries by itself; check that the brokers in [sink] brokers are up and reachable",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::Fatal => "fatal",
        })
    }
}

/// A configuration problem, naming the key path.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path given.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TOML syntax is wrong.
    #[error("config is not valid TOML: {0}")]
    Syntax(String),
    /// A key has the wrong type, is unknown, or is missing.
    #[error("config key `{key}`: {message}")]
    Key {
        /// Dotted key path, e.g. `source.slot`.
        key: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// `${VAR}` names a variable that is not set and has no default.
    #[error("config key `{key}`: environment variable {var} is not set (set it, or write ${{{var}:-default}})")]
    MissingEnv {
        /// Dotted key path.
        key: String,
        /// The variable.
        var: String,
    },
}

impl Classify for ConfigError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_kinds_retry() {
        assert_eq!(ErrorKind::SourceConnection.class(), ErrorClass::Retryable);
        assert_eq!(ErrorKind::SinkTransient.class(), ErrorClass::Retryable);
        assert_eq!(ErrorKind::SlotLost.class(), ErrorClass::Fatal);
        assert_eq!(ErrorKind::Decode.class(), ErrorClass::Fatal);
    }

    #[test]
    fn kafka_errors_classify_by_code() {
        use kafka_codes::*;
        assert_eq!(
            BrokerErrorClass::of(QUEUE_FULL),
            BrokerErrorClass::BackPressure
        );
        for code in [
            TRANSPORT,
            ALL_BROKERS_DOWN,
            MSG_TIMED_OUT,
            TIMED_OUT,
            LEADER_NOT_AVAILABLE,
            NOT_LEADER_FOR_PARTITION,
            REQUEST_TIMED_OUT,
            NOT_ENOUGH_REPLICAS,
            NETWORK_EXCEPTION,
            KAFKA_STORAGE_ERROR,
            -9999,
        ] {
            assert_eq!(
                BrokerErrorClass::of(code),
                BrokerErrorClass::Retryable,
                "{code}"
            );
            assert_eq!(
                BrokerErrorClass::of(code).kind().class(),
                ErrorClass::Retryable
            );
        }
        for code in [
            MSG_SIZE_TOO_LARGE,
            RECORD_LIST_TOO_LARGE,
            UNKNOWN_TOPIC_OR_PART,
            UNKNOWN_TOPIC_LOCAL,
            INVALID_RECORD,
        ] {
            assert_eq!(
                BrokerErrorClass::of(code),
                BrokerErrorClass::Rejected,
                "{code}"
            );
            assert_eq!(BrokerErrorClass::of(code).kind().class(), ErrorClass::Fatal);
        }
        for code in [
            TOPIC_AUTHORIZATION_FAILED,
            SASL_AUTHENTICATION_FAILED,
            FATAL,
            PRODUCER_FENCED,
            FENCED,
            UNSUPPORTED_FEATURE,
        ] {
            assert_eq!(
                BrokerErrorClass::of(code),
                BrokerErrorClass::Fatal,
                "{code}"
            );
        }
        assert!(BrokerErrorClass::fix(MSG_SIZE_TOO_LARGE).contains("max.message.bytes"));
        assert!(BrokerErrorClass::fix(UNKNOWN_TOPIC_OR_PART).contains("topic_creation"));
        assert!(BrokerErrorClass::fix(FENCED).contains("transactional_id"));
        assert!(BrokerErrorClass::fix(UNSUPPORTED_FEATURE).contains("exactly_once"));
    }

    #[test]
    fn io_errors_classify_by_cause() {
        let e = SinkError::Io {
            sink: "file",
            target: "x".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert_eq!(e.kind(), ErrorKind::SinkRejected);
        assert!(!ErrorKind::SinkRejected.hint().is_empty());
    }
}
