//! Decoding of PostgreSQL's `pgoutput` logical replication messages, protocol versions 1 to 4.
//!
//! Data flow: the replication connection yields one XLogData payload per pgoutput message, as
//! [`Bytes`](bytes::Bytes). [`Decoder::decode`] turns each into a [`PgOutputMessage`] whose column
//! values are zero-copy slices of that payload; [`RelationCache::observe`] records the schemas
//! (Relation) and type names (Type) the stream announces; changes (Insert, Update, Delete,
//! Truncate) are then resolved against the cache by relation id with [`RelationCache::get`] and
//! handed on to be turned into events.
//!
//! ```text
//! XLogData bytes ──► Decoder::decode ──► PgOutputMessage ──► RelationCache::observe
//!                    (in_stream state)        │                     │
//!                                             └── change ── get(rel_id) ──► schema + values
//! ```
//!
//! The formats are those of
//! <https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html>. The decoder
//! is stateful only for the streaming rule (see [`decoder`]): inside Stream Start … Stream Stop,
//! Relation, Type, Insert, Update, Delete, Truncate and Message carry a leading xid.
//!
//! Errors: the decoder never panics; malformed input yields a [`DecodeError`] naming the message
//! kind, byte offset and reason. A change for an unknown relation yields a [`RelationError`].

pub mod decoder;
pub mod error;
pub mod message;
mod reader;
pub mod relation_cache;

#[cfg(test)]
mod tests;

pub use decoder::Decoder;
pub use error::{DecodeError, DecodeErrorReason, MessageKind};
pub use message::{
    Begin, BeginPrepare, Column, ColumnData, Commit, CommitPrepared, Delete, Insert,
    LogicalMessage, OldTuple, Origin, PgOutputMessage, PgTimestamp, Prepare, Relation,
    ReplicaIdentity, RollbackPrepared, StreamAbort, StreamAbortInfo, StreamCommit, StreamStart,
    Truncate, TupleData, TypeMessage, Update, PG_EPOCH_OFFSET_MICROS,
};
pub use relation_cache::{RelationCache, RelationError, TypeName};
