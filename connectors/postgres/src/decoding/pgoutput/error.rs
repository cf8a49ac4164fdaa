//! Why a pgoutput message could not be decoded.
//!
//! Every failure names the message kind, the byte offset (from the start of the message, tag
//! included) of the field that failed, and the reason. Offsets let an operator line an error up
//! with a hex dump of the offending frame; the kind tells them which part of the
//! [protocol](https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html)
//! to read. A decode error means the server sent something this decoder does not understand (or
//! the bytes were damaged in transit), so callers should treat it as fatal for the stream rather
//! than skip the message: skipping would silently lose or misattribute changes.

use std::fmt;

/// Which pgoutput message was being decoded, named as in the PostgreSQL documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// `B`: start of a (non-streamed) transaction.
    Begin,
    /// `M`: a logical decoding message from `pg_logical_emit_message`.
    Message,
    /// `C`: end of a (non-streamed) transaction.
    Commit,
    /// `O`: the replication origin of the current transaction.
    Origin,
    /// `R`: a table's schema.
    Relation,
    /// `Y`: a non-built-in data type's name.
    Type,
    /// `I`: a new row.
    Insert,
    /// `U`: a changed row.
    Update,
    /// `D`: a removed row.
    Delete,
    /// `T`: tables emptied by `TRUNCATE`.
    Truncate,
    /// `S`: start of a chunk of an in-progress transaction.
    StreamStart,
    /// `E`: end of a chunk of an in-progress transaction.
    StreamStop,
    /// `c`: a streamed transaction committed.
    StreamCommit,
    /// `A`: a streamed transaction or subtransaction aborted.
    StreamAbort,
    /// `b`: start of a prepared (two-phase) transaction.
    BeginPrepare,
    /// `P`: a transaction was prepared.
    Prepare,
    /// `K`: a prepared transaction committed.
    CommitPrepared,
    /// `r`: a prepared transaction rolled back.
    RollbackPrepared,
    /// `p`: a streamed transaction was prepared.
    StreamPrepare,
    /// The tag byte was missing or not one this decoder knows.
    Unknown,
}

impl MessageKind {
    /// The kind for a message tag byte, or `None` for a tag this decoder does not know.
    pub fn from_tag(tag: u8) -> Option<MessageKind> {
        Some(match tag {
            b'B' => MessageKind::Begin,
            b'M' => MessageKind::Message,
            b'C' => MessageKind::Commit,
            b'O' => MessageKind::Origin,
            b'R' => MessageKind::Relation,
            b'Y' => MessageKind::Type,
            b'I' => MessageKind::Insert,
            b'U' => MessageKind::Update,
            b'D' => MessageKind::Delete,
            b'T' => MessageKind::Truncate,
            b'S' => MessageKind::StreamStart,
            b'E' => MessageKind::StreamStop,
            b'c' => MessageKind::StreamCommit,
            b'A' => MessageKind::StreamAbort,
            b'b' => MessageKind::BeginPrepare,
            b'P' => MessageKind::Prepare,
            b'K' => MessageKind::CommitPrepared,
            b'r' => MessageKind::RollbackPrepared,
            b'p' => MessageKind::StreamPrepare,
            _ => return None,
        })
    }

    /// The name used in the PostgreSQL documentation, e.g. `"Stream Commit"`.
    pub fn name(self) -> &'static str {
        match self {
            MessageKind::Begin => "Begin",
            MessageKind::Message => "Message",
            MessageKind::Commit => "Commit",
            MessageKind::Origin => "Origin",
            MessageKind::Relation => "Relation",
            MessageKind::Type => "Type",
            MessageKind::Insert => "Insert",
            MessageKind::Update => "Update",
            MessageKind::Delete => "Delete",
            MessageKind::Truncate => "Truncate",
            MessageKind::StreamStart => "Stream Start",
            MessageKind::StreamStop => "Stream Stop",
            MessageKind::StreamCommit => "Stream Commit",
            MessageKind::StreamAbort => "Stream Abort",
            MessageKind::BeginPrepare => "Begin Prepare",
            MessageKind::Prepare => "Prepare",
            MessageKind::CommitPrepared => "Commit Prepared",
            MessageKind::RollbackPrepared => "Rollback Prepared",
            MessageKind::StreamPrepare => "Stream Prepare",
            MessageKind::Unknown => "unrecognised",
        }
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A pgoutput message could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode pgoutput {kind} message at byte {offset}: {reason}")]
pub struct DecodeError {
    /// The message being decoded.
    pub kind: MessageKind,
    /// Offset from the start of the message (the tag is byte 0) of the field that failed.
    pub offset: usize,
    /// What was wrong.
    pub reason: DecodeErrorReason,
}

/// What was wrong with the bytes; part of [`DecodeError`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorReason {
    /// The message ended in the middle of a field.
    #[error("truncated: field {field} needs {needed} bytes but only {remaining} remain")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the message.
        remaining: usize,
    },
    /// A NUL-terminated string had no terminating NUL before the end of the message.
    #[error("truncated: field {field} is a string with no terminating NUL")]
    UnterminatedString {
        /// The field being read.
        field: &'static str,
    },
    /// A string field was not valid UTF-8. The server encodes names and prefixes in the
    /// database encoding, and walrus requires UTF-8 databases rather than guessing.
    #[error("invalid UTF-8 in field {field}")]
    InvalidUtf8 {
        /// The field being read.
        field: &'static str,
    },
    /// The message was empty, so there was no tag byte.
    #[error("empty message")]
    Empty,
    /// The first byte is not a pgoutput message tag.
    #[error("unknown message tag 0x{0:02x}")]
    UnknownTag(u8),
    /// A tuple column started with a kind byte other than `n`, `u`, `t` or `b`.
    #[error("unknown tuple column kind 0x{kind:02x} in column {column}")]
    UnknownColumnKind {
        /// The byte found.
        kind: u8,
        /// Zero-based column index within the tuple.
        column: usize,
    },
    /// A marker byte (such as Update's `K`/`O`/`N`) had an unexpected value.
    #[error("expected {expected} but found byte 0x{found:02x}")]
    UnexpectedMarker {
        /// What the protocol allows here.
        expected: &'static str,
        /// The byte found.
        found: u8,
    },
    /// A Relation's replica identity was not `d`, `n`, `f` or `i`.
    #[error("unknown replica identity 0x{0:02x}")]
    UnknownReplicaIdentity(u8),
    /// A length or count field was negative.
    #[error("negative length {length} in field {field}")]
    NegativeLength {
        /// The field being read.
        field: &'static str,
        /// The value found.
        length: i32,
    },
    /// The message had bytes left over after its last field.
    #[error("{0} trailing bytes after the last field")]
    TrailingBytes(usize),
}
