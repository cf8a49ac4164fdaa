//! The decoded form of each pgoutput message.
//!
//! The types mirror the
//! [logical replication message formats](https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html)
//! field for field, so that the documentation can be read next to them. Column values stay as
//! [`Bytes`] slices of the frame they arrived in: the decoder never copies or allocates per
//! column, and the value's meaning (text or binary send format of its type) is decided later by
//! whoever knows the column's type. Fields carried only inside a streamed transaction (the
//! leading xid) are `Option`s that are `Some` exactly when the message arrived between Stream
//! Start and Stream Stop.

use std::sync::Arc;

use bytes::Bytes;
use walrus_core::Lsn;

use super::error::MessageKind;

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01 00:00:00 UTC).
pub const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// A PostgreSQL timestamp as sent on the wire: microseconds since 2000-01-01 00:00:00 UTC.
///
/// Kept in PostgreSQL's own epoch so decoding is a plain integer read; convert with
/// [`PgTimestamp::to_unix_micros`] where a Unix time is needed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PgTimestamp(pub i64);

impl PgTimestamp {
    /// Microseconds since the Unix epoch. Saturates rather than overflowing, so PostgreSQL's
    /// `infinity` (`i64::MAX`) stays the largest representable time.
    pub fn to_unix_micros(self) -> i64 {
        self.0.saturating_add(PG_EPOCH_OFFSET_MICROS)
    }
}

/// One decoded pgoutput message.
#[derive(Clone, Debug, PartialEq)]
pub enum PgOutputMessage {
    /// `B`: a transaction starts; its changes follow until [`PgOutputMessage::Commit`].
    Begin(Begin),
    /// `M`: a message from `pg_logical_emit_message`.
    Message(LogicalMessage),
    /// `C`: the transaction opened by the last Begin committed.
    Commit(Commit),
    /// `O`: the transaction came from another node through a replication origin.
    Origin(Origin),
    /// `R`: a table's schema, sent before the first change to it and again after it changes.
    /// Shared so that a [`RelationCache`](super::RelationCache) and the caller can both keep it.
    Relation(Arc<Relation>),
    /// `Y`: the name of a non-built-in type used by a later Relation.
    Type(TypeMessage),
    /// `I`: a row was inserted.
    Insert(Insert),
    /// `U`: a row was updated.
    Update(Update),
    /// `D`: a row was deleted.
    Delete(Delete),
    /// `T`: tables were truncated.
    Truncate(Truncate),
    /// `S`: a chunk of an in-progress transaction starts (protocol 2+).
    StreamStart(StreamStart),
    /// `E`: the current chunk of an in-progress transaction ends (protocol 2+).
    StreamStop,
    /// `c`: a streamed transaction committed (protocol 2+).
    StreamCommit(StreamCommit),
    /// `A`: a streamed transaction or one of its subtransactions aborted (protocol 2+).
    StreamAbort(StreamAbort),
    /// `b`: a transaction that will be prepared starts (protocol 3+, `two_phase`).
    BeginPrepare(BeginPrepare),
    /// `P`: the transaction opened by Begin Prepare was prepared (protocol 3+).
    Prepare(Prepare),
    /// `K`: a prepared transaction committed (`COMMIT PREPARED`, protocol 3+).
    CommitPrepared(CommitPrepared),
    /// `r`: a prepared transaction rolled back (`ROLLBACK PREPARED`, protocol 3+).
    RollbackPrepared(RollbackPrepared),
    /// `p`: a streamed transaction was prepared (protocol 3+, streaming and `two_phase`).
    StreamPrepare(Prepare),
}

impl PgOutputMessage {
    /// Which kind of message this is.
    pub fn kind(&self) -> MessageKind {
        match self {
            PgOutputMessage::Begin(_) => MessageKind::Begin,
            PgOutputMessage::Message(_) => MessageKind::Message,
            PgOutputMessage::Commit(_) => MessageKind::Commit,
            PgOutputMessage::Origin(_) => MessageKind::Origin,
            PgOutputMessage::Relation(_) => MessageKind::Relation,
            PgOutputMessage::Type(_) => MessageKind::Type,
            PgOutputMessage::Insert(_) => MessageKind::Insert,
            PgOutputMessage::Update(_) => MessageKind::Update,
            PgOutputMessage::Delete(_) => MessageKind::Delete,
            PgOutputMessage::Truncate(_) => MessageKind::Truncate,
            PgOutputMessage::StreamStart(_) => MessageKind::StreamStart,
            PgOutputMessage::StreamStop => MessageKind::StreamStop,
            PgOutputMessage::StreamCommit(_) => MessageKind::StreamCommit,
            PgOutputMessage::StreamAbort(_) => MessageKind::StreamAbort,
            PgOutputMessage::BeginPrepare(_) => MessageKind::BeginPrepare,
            PgOutputMessage::Prepare(_) => MessageKind::Prepare,
            PgOutputMessage::CommitPrepared(_) => MessageKind::CommitPrepared,
            PgOutputMessage::RollbackPrepared(_) => MessageKind::RollbackPrepared,
            PgOutputMessage::StreamPrepare(_) => MessageKind::StreamPrepare,
        }
    }
}

/// `B`: start of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Begin {
    /// LSN of the transaction's commit record.
    pub final_lsn: Lsn,
    /// When the transaction committed.
    pub commit_time: PgTimestamp,
    /// Transaction id.
    pub xid: u32,
}

/// `C`: end of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    /// Currently unused by PostgreSQL (always 0).
    pub flags: u8,
    /// LSN of the commit record.
    pub commit_lsn: Lsn,
    /// LSN just past the commit record: the position to confirm once the transaction is
    /// durably delivered.
    pub end_lsn: Lsn,
    /// When the transaction committed.
    pub commit_time: PgTimestamp,
}

/// `O`: the transaction was replayed from another node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// LSN of the commit on the origin server.
    pub commit_lsn: Lsn,
    /// The replication origin's name.
    pub name: String,
}

/// `M`: a logical decoding message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogicalMessage {
    /// Xid of the streamed transaction carrying it; `Some` only inside a stream.
    pub xid: Option<u32>,
    /// Bit 0 set means transactional; other bits unused.
    pub flags: u8,
    /// LSN of the message's WAL record.
    pub lsn: Lsn,
    /// The prefix given to `pg_logical_emit_message`.
    pub prefix: String,
    /// The payload, uninterpreted.
    pub content: Bytes,
}

impl LogicalMessage {
    /// True when the message is part of its transaction (delivered at commit, dropped on
    /// abort); false when it was decoded immediately regardless of the transaction's fate.
    pub fn transactional(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// How a table identifies the old row in Update and Delete: the event model's type.
pub use walrus_core::event::ReplicaIdentity;

/// `R`: a table's schema as published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relation {
    /// Xid of the streamed transaction carrying it; `Some` only inside a stream.
    pub xid: Option<u32>,
    /// The table's OID, used by changes to refer to it.
    pub rel_id: u32,
    /// Schema name; empty for `pg_catalog`.
    pub namespace: String,
    /// Table name.
    pub name: String,
    /// How old rows are identified.
    pub replica_identity: ReplicaIdentity,
    /// Published columns, in the order tuple data lists them.
    pub columns: Vec<Column>,
}

/// One column of a [`Relation`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Bit 0 set means the column is part of the replica identity key.
    pub flags: u8,
    /// Column name.
    pub name: String,
    /// OID of the column's type; look non-built-in ones up in the
    /// [`RelationCache`](super::RelationCache).
    pub type_oid: u32,
    /// `atttypmod` (e.g. varchar length + 4, numeric precision/scale); -1 when none.
    pub type_modifier: i32,
}

impl Column {
    /// True when the column is part of the key that identifies old rows.
    pub fn is_key(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// `Y`: a data type's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeMessage {
    /// Xid of the streamed transaction carrying it; `Some` only inside a stream.
    pub xid: Option<u32>,
    /// The type's OID.
    pub oid: u32,
    /// Schema name; empty for `pg_catalog`.
    pub namespace: String,
    /// Type name.
    pub name: String,
}

/// The value of one column in a [`TupleData`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnData {
    /// `n`: SQL NULL.
    Null,
    /// `u`: a TOASTed value that did not change; the actual value is not sent.
    UnchangedToast,
    /// `t`: the value in its type's text output format.
    Text(Bytes),
    /// `b`: the value in its type's binary send format (only with the `binary` option).
    Binary(Bytes),
}

impl ColumnData {
    /// The value's bytes for `Text` and `Binary`, `None` otherwise.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            ColumnData::Text(b) | ColumnData::Binary(b) => Some(b),
            ColumnData::Null | ColumnData::UnchangedToast => None,
        }
    }
}

/// A row's column values, in the order of its [`Relation`]'s columns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TupleData {
    /// One entry per published column.
    pub columns: Vec<ColumnData>,
}

/// The old row sent with an Update or Delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OldTuple {
    /// `K`: only the replica identity key columns are meaningful; the others are null.
    Key(TupleData),
    /// `O`: the whole old row (`REPLICA IDENTITY FULL`).
    Full(TupleData),
}

impl OldTuple {
    /// The tuple, whichever kind it is.
    pub fn tuple(&self) -> &TupleData {
        match self {
            OldTuple::Key(t) | OldTuple::Full(t) => t,
        }
    }
}

/// `I`: a row was inserted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Insert {
    /// Xid of the streamed transaction carrying it; `Some` only inside a stream.
    pub xid: Option<u32>,
    /// The table's OID.
    pub rel_id: u32,
    /// The new row.
    pub new: TupleData,
}

/// `U`: a row was updated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    /// Xid of the streamed transaction carrying it; `Some` only inside a stream.
    pub xid: Option<u32>,
    /// The table's OID.
    pub rel_id: u32,
    /// The old row: the key when the key changed (identity default/index), the full row with
    /// `REPLICA IDENTITY FULL`, otherwise absent.
    pub old: Option<OldTuple>,
    /// The new row; unchanged TOASTed columns arrive as [`ColumnData::UnchangedToast`].
    pub new: TupleData,
}

/// `D`: a row was deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delete {
    /// Xid of the streamed transaction carrying it; `Some` only inside a stream.
    pub xid: Option<u32>,
    /// The table's OID.
    pub rel_id: u32,
    /// The old row's key (`K`) or whole row (`O`).
    pub old: OldTuple,
}

/// `T`: tables were truncated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncate {
    /// Xid of the streamed transaction carrying it; `Some` only inside a stream.
    pub xid: Option<u32>,
    /// Bit 0: `CASCADE`; bit 1: `RESTART IDENTITY`.
    pub options: u8,
    /// OIDs of the truncated tables (including ones reached through `CASCADE`).
    pub rel_ids: Vec<u32>,
}

impl Truncate {
    /// `TRUNCATE ... CASCADE`.
    pub fn cascade(&self) -> bool {
        self.options & 1 != 0
    }

    /// `TRUNCATE ... RESTART IDENTITY`.
    pub fn restart_identity(&self) -> bool {
        self.options & 2 != 0
    }
}

/// `S`: a chunk of an in-progress transaction starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamStart {
    /// The streamed (top-level) transaction's id.
    pub xid: u32,
    /// True for the transaction's first chunk.
    pub first_segment: bool,
}

/// `c`: a streamed transaction committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamCommit {
    /// The streamed transaction's id.
    pub xid: u32,
    /// Currently unused by PostgreSQL (always 0).
    pub flags: u8,
    /// LSN of the commit record.
    pub commit_lsn: Lsn,
    /// LSN just past the commit record.
    pub end_lsn: Lsn,
    /// When the transaction committed.
    pub commit_time: PgTimestamp,
}

/// `A`: a streamed transaction, or one of its subtransactions, aborted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamAbort {
    /// The top-level transaction's id.
    pub xid: u32,
    /// The aborted subtransaction's id; equal to `xid` when the whole transaction aborted.
    pub subxid: u32,
    /// Present with protocol 4 when `streaming = parallel`.
    pub abort: Option<StreamAbortInfo>,
}

/// The extra Stream Abort fields of protocol 4 with parallel streaming.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamAbortInfo {
    /// LSN of the abort record.
    pub abort_lsn: Lsn,
    /// When the transaction aborted.
    pub abort_time: PgTimestamp,
}

/// `b`: a transaction that will be prepared starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BeginPrepare {
    /// LSN of the prepare record.
    pub prepare_lsn: Lsn,
    /// LSN just past the prepare record.
    pub end_lsn: Lsn,
    /// When the transaction was prepared.
    pub prepare_time: PgTimestamp,
    /// Transaction id.
    pub xid: u32,
    /// The global transaction identifier given to `PREPARE TRANSACTION`.
    pub gid: String,
}

/// `P` and `p`: a transaction (streamed, for `p`) was prepared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepare {
    /// Currently unused by PostgreSQL (always 0).
    pub flags: u8,
    /// LSN of the prepare record.
    pub prepare_lsn: Lsn,
    /// LSN just past the prepare record.
    pub end_lsn: Lsn,
    /// When the transaction was prepared.
    pub prepare_time: PgTimestamp,
    /// Transaction id.
    pub xid: u32,
    /// The global transaction identifier.
    pub gid: String,
}

/// `K`: a prepared transaction committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitPrepared {
    /// Currently unused by PostgreSQL (always 0).
    pub flags: u8,
    /// LSN of the commit record.
    pub commit_lsn: Lsn,
    /// LSN just past the commit record.
    pub end_lsn: Lsn,
    /// When the transaction committed.
    pub commit_time: PgTimestamp,
    /// Transaction id.
    pub xid: u32,
    /// The global transaction identifier.
    pub gid: String,
}

/// `r`: a prepared transaction rolled back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollbackPrepared {
    /// Currently unused by PostgreSQL (always 0).
    pub flags: u8,
    /// LSN just past the prepare record.
    pub prepare_end_lsn: Lsn,
    /// LSN just past the rollback record.
    pub rollback_end_lsn: Lsn,
    /// When the transaction was prepared.
    pub prepare_time: PgTimestamp,
    /// When the transaction rolled back.
    pub rollback_time: PgTimestamp,
    /// Transaction id.
    pub xid: u32,
    /// The global transaction identifier.
    pub gid: String,
}
