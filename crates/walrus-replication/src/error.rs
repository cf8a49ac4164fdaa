//! The crate's one error type, and its classification: whether trying again can help.
//!
//! A replication client meets three kinds of failure. The network and the server going away
//! (I/O errors, a closed connection, `57P01 admin_shutdown`) are *transient*: reconnecting
//! later may work. Errors the server answers a command with are mostly *definite*: an
//! unknown pgoutput option, a publication or slot that does not exist, a slot of another
//! output plugin, a wrong password: the same request fails the same way until an operator
//! changes something, so retrying forever only hides them. [`ReplicationError::is_retryable`]
//! is the one place that decides, from the SQLSTATE class (PostgreSQL's Appendix A).

use std::fmt;

/// A server `ErrorResponse`, with the fields an operator needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerError {
    /// `S`: ERROR, FATAL or PANIC.
    pub severity: String,
    /// `C`: the SQLSTATE, e.g. `42704`.
    pub code: String,
    /// `M`: the primary message.
    pub message: String,
    /// `D`: detail, when given.
    pub detail: Option<String>,
    /// `H`: the server's hint, when given.
    pub hint: Option<String>,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (SQLSTATE {})",
            self.severity, self.message, self.code
        )?;
        if let Some(d) = &self.detail {
            write!(f, "; detail: {d}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "; hint: {h}")?;
        }
        Ok(())
    }
}

impl ServerError {
    /// Whether the same request may succeed later without anyone changing anything.
    ///
    /// Class 08 (connection exception), 53 (insufficient resources: too many connections,
    /// out of memory or disk), 57 (operator intervention: shutdown, crash recovery,
    /// `cannot connect now`), 40 (serialization and deadlock) and 55006 (object in use: the
    /// slot is active for another PID, which ends when that session does) are transient.
    /// Everything else — an unknown option (`XX000` from pgoutput's option parser, `42704`
    /// for a missing publication or slot, `28P01` for a bad password, `55000` for a slot of
    /// another plugin or lost WAL) — is definite.
    pub fn is_retryable(&self) -> bool {
        let class = self.code.get(..2).unwrap_or("");
        matches!(class, "08" | "53" | "57" | "40") || self.code == "55006"
    }
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The socket failed (connect, read or write).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// TLS could not be set up: the server refused it where it is required, or the
    /// handshake failed (certificate not trusted, wrong name).
    #[error("TLS: {0}")]
    Tls(String),
    /// Authentication could not proceed on this side: no password for a method that needs
    /// one, a method this client does not speak, a SCRAM exchange that did not verify.
    #[error("authentication: {0}")]
    Auth(String),
    /// The server answered with an `ErrorResponse`.
    #[error("server {0}")]
    Server(ServerError),
    /// The server sent something the protocol does not allow here, or a frame that does not
    /// parse. Definite: the same server sends the same again.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The server closed the connection.
    #[error("the server closed the connection{0}")]
    Closed(&'static str),
    /// A request this server version cannot serve (for example `FAILOVER` before 17).
    #[error("{feature} needs PostgreSQL {needs} or later; the server is {server}")]
    Unsupported {
        /// The feature asked for.
        feature: &'static str,
        /// The first major that has it.
        needs: u32,
        /// The server's version.
        server: String,
    },
    /// Bad configuration passed in by the caller (a name with a NUL, ...).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// An operation did not finish in time.
    #[error("timed out: {0}")]
    Timeout(&'static str),
}

impl ReplicationError {
    /// Whether reconnecting later may succeed; see the module doc.
    pub fn is_retryable(&self) -> bool {
        match self {
            ReplicationError::Io { .. } | ReplicationError::Closed(_) => true,
            ReplicationError::Timeout(_) => true,
            ReplicationError::Server(e) => e.is_retryable(),
            ReplicationError::Tls(_)
            | ReplicationError::Auth(_)
            | ReplicationError::Protocol(_)
            | ReplicationError::Unsupported { .. }
            | ReplicationError::Invalid(_) => false,
        }
    }

    /// The server's error, when that is what this is.
    pub fn server(&self) -> Option<&ServerError> {
        match self {
            ReplicationError::Server(e) => Some(e),
            _ => None,
        }
    }

    pub(crate) fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        move |source| ReplicationError::Io { context, source }
    }
}

/// The crate's result type.
pub type Result<T, E = ReplicationError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str) -> ReplicationError {
        ReplicationError::Server(ServerError {
            severity: "ERROR".into(),
            code: code.into(),
            message: "m".into(),
            ..ServerError::default()
        })
    }

    #[test]
    fn classifies_by_sqlstate() {
        // unrecognized pgoutput option, missing publication/slot, bad password, slot of
        // another plugin: definite.
        for code in ["XX000", "42704", "28P01", "55000", "42710"] {
            assert!(!server(code).is_retryable(), "{code}");
        }
        // shutdown, too many connections, slot active elsewhere, connection failure: transient.
        for code in ["57P01", "53300", "55006", "08006", "57P03"] {
            assert!(server(code).is_retryable(), "{code}");
        }
        assert!(ReplicationError::Closed("").is_retryable());
        assert!(!ReplicationError::Protocol("x".into()).is_retryable());
    }

    #[test]
    fn displays_every_field() {
        let e = ServerError {
            severity: "ERROR".into(),
            code: "XX000".into(),
            message: "unrecognized pgoutput option: messages".into(),
            detail: Some("d".into()),
            hint: Some("h".into()),
        };
        assert_eq!(
            e.to_string(),
            "ERROR: unrecognized pgoutput option: messages (SQLSTATE XX000); detail: d; hint: h"
        );
    }
}
