//! Errors of the PostgreSQL source, each mapped to the engine's one classification policy
//! ([`walrus_core::error::ErrorKind`]).

use walrus_core::error::{Classify, ErrorKind, SinkError};
use walrus_core::Lsn;
use walrus_replication::{ReplicationError, ServerError};

use crate::decoding::pgoutput::{DecodeError, RelationError};

/// A failure of the PostgreSQL source.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// `source.*` configuration is unusable.
    #[error("config key `{key}`: {message}")]
    Config {
        /// The key path.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Connecting or querying over the ordinary SQL connection failed.
    #[error("{what}: {}", describe_sql_error(source))]
    Sql {
        /// What walrus was doing.
        what: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The replication connection failed.
    #[error("replication connection: {0}")]
    Replication(#[from] walrus_replication::ReplicationError),
    /// The configuration asks for something this server's PostgreSQL major does not have.
    #[error(
        "config key `{key}`: {feature} needs PostgreSQL {needs} or later; the server runs {server}"
    )]
    Unsupported {
        /// The key that asks for it.
        key: &'static str,
        /// What it needs.
        feature: &'static str,
        /// The first major that has it.
        needs: u32,
        /// The server's version.
        server: String,
    },
    /// The slot does not exist and `source.create_slot` is off.
    #[error("replication slot {slot:?} does not exist; create it with SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput'), or set source.create_slot = true")]
    SlotMissing {
        /// Slot name.
        slot: String,
    },
    /// The slot exists but cannot be used by walrus.
    #[error("replication slot {slot:?} cannot be used: {reason}")]
    SlotUnusable {
        /// Slot name.
        slot: String,
        /// Why, with the fix.
        reason: String,
    },
    /// The slot is invalidated: PostgreSQL removed WAL it needed.
    #[error("replication slot {slot:?} is invalidated (wal_status = lost): WAL needed to resume from {confirmed} was removed")]
    SlotLost {
        /// Slot name.
        slot: String,
        /// Where walrus would have resumed.
        confirmed: Lsn,
    },
    /// walrus let go of the replication connection because the sink held delivery while
    /// the slot's WAL passed `max_slot_wal_keep_size` (see `ErrorKind::SlotReleased`).
    #[error("replication slot {slot:?} is {wal_status} (past max_slot_wal_keep_size) while the sink holds delivery at {confirmed}; closed the replication connection so PostgreSQL's checkpoint is not blocked")]
    SlotReleased {
        /// Slot name.
        slot: String,
        /// `wal_status` as the watchdog saw it.
        wal_status: String,
        /// The last confirmed position.
        confirmed: Lsn,
    },
    /// The slot is in use by another connection.
    #[error("replication slot {slot:?} is active for PID {pid}")]
    SlotInUse {
        /// Slot name.
        slot: String,
        /// The walsender holding it.
        pid: i32,
    },
    /// The publication is missing and `source.create_publication` is off, or cannot be
    /// created.
    #[error("publication {publication:?}: {message}")]
    Publication {
        /// Publication name.
        publication: String,
        /// What is wrong, with the SQL that fixes it.
        message: String,
    },
    /// The server is not set up for logical replication.
    #[error("{0}")]
    Setup(String),
    /// A pgoutput message could not be decoded.
    #[error("pgoutput at {lsn}: {source}")]
    Decode {
        /// WAL position of the message.
        lsn: Lsn,
        /// The decoder's error.
        #[source]
        source: DecodeError,
    },
    /// A change referenced a relation the stream never described.
    #[error("pgoutput at {lsn}: {source}")]
    Relation {
        /// WAL position of the message.
        lsn: Lsn,
        /// The cache's error.
        #[source]
        source: RelationError,
    },
    /// The stream did something walrus does not expect from protocol version 1.
    #[error("unexpected replication stream at {lsn}: {message}")]
    Protocol {
        /// WAL position.
        lsn: Lsn,
        /// What happened.
        message: String,
    },
    /// The sink failed; the pipeline stopped without confirming past the last delivery.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The routing configuration does not fit a table (a key or filtered column it does
    /// not have, an outbox row the topic template cannot use).
    #[error(transparent)]
    Route(#[from] walrus_core::router::RouteError),
    /// The configured format could not encode an event.
    #[error(transparent)]
    Format(#[from] walrus_core::format::FormatError),
    /// The snapshot's progress file cannot be read or written.
    #[error("snapshot state file {path}: {message}")]
    SnapshotState {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong, with the fix.
        message: String,
    },
    /// A snapshot read returned data walrus cannot use.
    #[error("snapshot of {table}: {message}")]
    Snapshot {
        /// `schema.table`.
        table: String,
        /// What went wrong.
        message: String,
    },
    /// Spooling a streamed transaction failed (`crate::replication::spool`).
    #[error(transparent)]
    Spool(#[from] crate::replication::spool::SpoolError),
    /// A streamed transaction outgrew `source.spool_max_bytes`.
    #[error(transparent)]
    SpoolLimit(#[from] crate::replication::spool::SpoolLimitError),
}

impl PgError {
    /// Wraps a driver error with what walrus was doing.
    pub fn sql(what: impl Into<String>, source: tokio_postgres::Error) -> Self {
        PgError::Sql {
            what: what.into(),
            source,
        }
    }
}

/// The driver's error with the server's message, detail and hint when there is one (its
/// own `Display` says only "db error").
fn describe_sql_error(e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        return match std::error::Error::source(e) {
            Some(inner) => format!("{e}: {inner}"),
            None => e.to_string(),
        };
    };
    let mut s = format!("{} ({})", db.message(), db.code().code());
    if let Some(detail) = db.detail() {
        s.push_str("; detail: ");
        s.push_str(detail);
    }
    if let Some(hint) = db.hint() {
        s.push_str("; hint: ");
        s.push_str(hint);
    }
    s
}

fn sqlstate_kind(e: &tokio_postgres::Error) -> ErrorKind {
    use tokio_postgres::error::SqlState;
    match e.code() {
        // The driver has no public error kind; its TLS failures say so.
        None if e.to_string().contains("TLS") => ErrorKind::SourceTls,
        None => ErrorKind::SourceConnection,
        Some(c)
            if *c == SqlState::INVALID_PASSWORD
                || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
        {
            ErrorKind::SourceAuth
        }
        Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => ErrorKind::SourcePermission,
        Some(c) if *c == SqlState::OBJECT_IN_USE => ErrorKind::SlotInUse,
        Some(c)
            if *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::TOO_MANY_CONNECTIONS
                || c.code().starts_with("08") =>
        {
            ErrorKind::SourceConnection
        }
        Some(c)
            if *c == SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE
                || *c == SqlState::CONFIGURATION_LIMIT_EXCEEDED =>
        {
            ErrorKind::SourceSetup
        }
        Some(c) if *c == SqlState::UNDEFINED_OBJECT => ErrorKind::SlotUnavailable,
        // A column renamed or dropped, or a table dropped, between planning a read and
        // running it: planning again from the catalog resolves it.
        Some(c) if *c == SqlState::UNDEFINED_COLUMN || *c == SqlState::UNDEFINED_TABLE => {
            ErrorKind::SchemaChanged
        }
        Some(_) => ErrorKind::Internal,
    }
}

/// The kind of a replication connection failure: by SQLSTATE for the server's errors
/// (PostgreSQL's Appendix A), by what failed for the client's own.
fn replication_kind(e: &ReplicationError) -> ErrorKind {
    match e {
        ReplicationError::Io { .. }
        | ReplicationError::Closed(_)
        | ReplicationError::Timeout(_) => ErrorKind::SourceConnection,
        ReplicationError::Tls(_) => ErrorKind::SourceTls,
        ReplicationError::Auth(_) => ErrorKind::SourceAuth,
        ReplicationError::Unsupported { .. } => ErrorKind::ServerVersion,
        ReplicationError::Invalid(_) => ErrorKind::Config,
        ReplicationError::Protocol(_) => ErrorKind::Decode,
        ReplicationError::Server(s) => server_error_kind(s),
    }
}

/// A server `ErrorResponse` on the replication connection, classified. Definite errors (the
/// same request fails the same way until someone changes something) are fatal with the
/// hint of their kind; only the connection and resource classes are retried.
fn server_error_kind(e: &ServerError) -> ErrorKind {
    let code = e.code.as_str();
    let message = e.message.as_str();
    match code {
        // invalid_password, invalid_authorization_specification (pg_hba.conf rejects).
        "28P01" | "28000" => ErrorKind::SourceAuth,
        "42501" => ErrorKind::SourcePermission,
        // object_in_use: the slot is active for another walsender.
        "55006" => ErrorKind::SlotInUse,
        // undefined_object: a publication or a slot that does not exist.
        "42704" if message.contains("publication") => ErrorKind::Publication,
        "42704" => ErrorKind::SlotUnavailable,
        // object_not_in_prerequisite_state: an invalidated slot, a physical slot, a slot of
        // another database, or wal_level too low.
        "55000" if message.contains("wal_level") => ErrorKind::SourceSetup,
        "55000"
            if message.contains("invalidated")
                || message.contains("can no longer get changes")
                || message.contains("has been removed") =>
        {
            ErrorKind::SlotLost
        }
        "55000" => ErrorKind::SlotUnavailable,
        // The output plugin rejected an option (pgoutput raises XX000 "unrecognized pgoutput
        // option", another plugin 22023): an option the server's version does not have.
        "XX000" | "22023" if message.contains("option") => ErrorKind::ServerVersion,
        // undefined_file: the slot's output plugin is not installed.
        "58P01" => ErrorKind::SlotUnavailable,
        _ if e.is_retryable() => ErrorKind::SourceConnection,
        _ => ErrorKind::Internal,
    }
}

impl Classify for PgError {
    fn kind(&self) -> ErrorKind {
        match self {
            PgError::Config { .. } => ErrorKind::Config,
            PgError::Sql { source, .. } => sqlstate_kind(source),
            PgError::Replication(e) => replication_kind(e),
            PgError::Unsupported { .. } => ErrorKind::ServerVersion,
            PgError::SlotMissing { .. } | PgError::SlotUnusable { .. } => {
                ErrorKind::SlotUnavailable
            }
            PgError::SlotLost { .. } => ErrorKind::SlotLost,
            PgError::SlotReleased { .. } => ErrorKind::SlotReleased,
            PgError::SlotInUse { .. } => ErrorKind::SlotInUse,
            PgError::Publication { .. } => ErrorKind::Publication,
            PgError::Setup(_) => ErrorKind::SourceSetup,
            PgError::Decode { .. } | PgError::Relation { .. } | PgError::Protocol { .. } => {
                ErrorKind::Decode
            }
            PgError::Sink(e) => e.kind(),
            PgError::Route(e) => e.kind(),
            PgError::Format(e) => e.kind(),
            PgError::SnapshotState { .. } => ErrorKind::Config,
            PgError::Snapshot { .. } => ErrorKind::Decode,
            PgError::Spool(e) => e.kind(),
            PgError::SpoolLimit(e) => e.kind(),
        }
    }
}

impl From<walrus_core::emit::EmitError> for PgError {
    fn from(e: walrus_core::emit::EmitError) -> Self {
        match e {
            walrus_core::emit::EmitError::Route(e) => PgError::Route(e),
            walrus_core::emit::EmitError::Format(e) => PgError::Format(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use walrus_core::error::ErrorClass;

    fn server(code: &str, message: &str) -> PgError {
        PgError::Replication(ReplicationError::Server(ServerError {
            severity: "ERROR".into(),
            code: code.into(),
            message: message.into(),
            ..ServerError::default()
        }))
    }

    #[test]
    fn definite_server_errors_are_fatal_with_their_kind() {
        let cases = [
            // PostgreSQL 13 refusing a 14+ option.
            (
                server("XX000", "unrecognized pgoutput option: messages"),
                ErrorKind::ServerVersion,
            ),
            (
                server("42704", "publication \"walrus\" does not exist"),
                ErrorKind::Publication,
            ),
            (
                server("42704", "replication slot \"walrus\" does not exist"),
                ErrorKind::SlotUnavailable,
            ),
            (
                server(
                    "55000",
                    "cannot use physical replication slot for logical decoding",
                ),
                ErrorKind::SlotUnavailable,
            ),
            (
                server(
                    "55000",
                    "can no longer get changes from replication slot \"s\"",
                ),
                ErrorKind::SlotLost,
            ),
            (
                server("55000", "logical decoding requires wal_level >= logical"),
                ErrorKind::SourceSetup,
            ),
            (
                server("28P01", "password authentication failed for user \"w\""),
                ErrorKind::SourceAuth,
            ),
            (
                server("28000", "no pg_hba.conf entry for replication connection"),
                ErrorKind::SourceAuth,
            ),
            (
                server("42501", "permission denied to start WAL sender"),
                ErrorKind::SourcePermission,
            ),
        ];
        for (e, kind) in cases {
            assert_eq!(e.kind(), kind, "{e}");
            assert_eq!(e.kind().class(), ErrorClass::Fatal, "{e}");
        }
    }

    #[test]
    fn connection_drops_are_retried() {
        let cases = [
            server(
                "57P01",
                "terminating connection due to administrator command",
            ),
            server("53300", "sorry, too many clients already"),
            server("08006", "connection failure"),
            PgError::Replication(ReplicationError::Closed("")),
            PgError::Replication(ReplicationError::Io {
                context: "reading from the server",
                source: std::io::Error::from(std::io::ErrorKind::ConnectionReset),
            }),
        ];
        for e in cases {
            assert_eq!(e.kind().class(), ErrorClass::Retryable, "{e}");
        }
        // Another walsender holds the slot: retried (it goes away when that one does).
        assert_eq!(
            server("55006", "replication slot \"s\" is active for PID 7").kind(),
            ErrorKind::SlotInUse
        );
    }

    #[test]
    fn a_feature_the_server_lacks_names_key_and_version() {
        let e = PgError::Unsupported {
            key: "source.publish_via_partition_root",
            feature: "publish_via_partition_root",
            needs: 13,
            server: "12.22".into(),
        };
        let text = e.to_string();
        assert!(text.contains("source.publish_via_partition_root"), "{text}");
        assert!(text.contains("PostgreSQL 13"), "{text}");
        assert!(text.contains("12.22"), "{text}");
        assert_eq!(e.kind().class(), ErrorClass::Fatal);
    }
}
