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
    /// Writing or reading the spool of a streamed transaction failed (disk full, I/O
    /// error under `source.spool_dir`). Retrying may help once space is freed: PostgreSQL
    /// sends the unfinished transaction again.
    Spool,
    /// A bug: an invariant inside walrus did not hold.
    Internal,
}

impl ErrorKind {
    /// Retry or stop.
    pub fn class(self) -> ErrorClass {
        use ErrorKind::{
            Config, Decode, Internal, Publication, SchemaChanged, SchemaIncompatible,
            SchemaRegistry, SchemaRegistryRejected, ServerVersion, SinkRejected, SinkTransient,
            SlotInUse, SlotLost, SlotReleased, SlotUnavailable, SourceAuth, SourceConnection,
            SourcePermission, SourceSetup, SourceTls, Spool,
        };
        match self {
            // A stale walsender holding the slot goes away once PostgreSQL notices its
            // client is gone; a second walrus on the same slot keeps this retrying loudly.
            SourceConnection | SinkTransient | SlotInUse | SlotReleased | SchemaChanged
            | SchemaRegistry | Spool => ErrorClass::Retryable,
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
        use ErrorKind::{
            Config, Decode, Internal, Publication, SchemaChanged, SchemaIncompatible,
            SchemaRegistry, SchemaRegistryRejected, ServerVersion, SinkRejected, SinkTransient,
            SlotInUse, SlotLost, SlotReleased, SlotUnavailable, SourceAuth, SourceConnection,
            SourcePermission, SourceSetup, SourceTls, Spool,
        };
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
            Spool => {
                "walrus retries by itself and PostgreSQL sends the transaction again: free disk space under source.spool_dir (or point it at a larger disk), or set source.streaming = \"off\" to let PostgreSQL spill large transactions itself"
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
