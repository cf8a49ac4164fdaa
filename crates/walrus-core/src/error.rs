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
    /// The role lacks a privilege (REPLICATION, SELECT, ownership for publications).
    SourcePermission,
    /// The server is not set up for logical replication (`wal_level`, slot/sender limits).
    SourceSetup,
    /// The replication slot is missing or of the wrong kind (not logical, not pgoutput).
    SlotUnavailable,
    /// The replication slot is active for another process (often the walsender of a
    /// walrus that just died, which PostgreSQL notices within seconds).
    SlotInUse,
    /// The slot has been invalidated (`wal_status = lost`): WAL walrus needs is gone.
    SlotLost,
    /// The publication is missing or does not cover the configured tables.
    Publication,
    /// A pgoutput message could not be decoded, or referenced an unknown relation.
    Decode,
    /// A sink's destination is temporarily unavailable (I/O hiccup, broker down, timeout).
    SinkTransient,
    /// A sink's destination rejected data in a way retrying will not fix.
    SinkRejected,
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
            SourceConnection | SinkTransient | SlotInUse => ErrorClass::Retryable,
            Config | SlotUnavailable | SourceAuth | SourcePermission | SourceSetup | SlotLost
            | Publication | Decode | SinkRejected | Internal => ErrorClass::Fatal,
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
            SourcePermission => {
                "grant the missing privilege shown above (walrus check prints the exact SQL)"
            }
            SourceSetup => "run `walrus check` and apply the settings it prints, then restart PostgreSQL",
            SlotUnavailable => "run `walrus check`: it shows the slot's state and the SQL that fixes it",
            SlotInUse => {
                "walrus retries by itself; if it persists, another process uses the slot (see pg_replication_slots.active_pid)"
            }
            SlotLost => {
                "the slot lost WAL it needed: drop it (SELECT pg_drop_replication_slot('<slot>')), start walrus again and re-snapshot; raise max_slot_wal_keep_size to avoid this"
            }
            Publication => "create or alter the publication as shown above, or let walrus create it",
            Decode => "this is a bug or an unsupported server version; report it with the message above",
            SinkTransient => "walrus retries by itself; check the sink's destination",
            SinkRejected => "fix the destination or the event named above; the slot holds the WAL meanwhile",
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
