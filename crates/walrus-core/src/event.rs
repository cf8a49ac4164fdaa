//! The change-event model: what one committed row change (or truncate, or logical message)
//! looks like inside walrus, independent of the source protocol and of the output format.
//!
//! Flow: the PostgreSQL connector decodes pgoutput messages, resolves the relation from its
//! cache into a shared [`Table`], parses columns into [`Value`]s and builds a
//! [`ChangeEvent`]; the router picks the topic and key; a format (Debezium JSON) encodes the
//! event into a [`crate::sink::Record`] for a sink.

use std::sync::Arc;

use crate::lsn::Lsn;
use crate::value::{TypeDesc, Value};

/// What happened, with Debezium's one-letter codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// A row was inserted (`c`).
    Create,
    /// A row was updated (`u`).
    Update,
    /// A row was deleted (`d`).
    Delete,
    /// A table was truncated (`t`).
    Truncate,
    /// A logical decoding message from `pg_logical_emit_message` (`m`).
    Message,
    /// A row read by a snapshot (`r`).
    Read,
}

impl Op {
    /// Debezium's code for the operation, as written in the `op` field.
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Truncate => "t",
            Op::Message => "m",
            Op::Read => "r",
        }
    }
}

/// Debezium's `source.snapshot` (`SnapshotRecord`): whether an event was read by a snapshot,
/// and where in it. Formats write it as given; snapshots set it, streaming leaves `False`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SnapshotMarker {
    /// A streamed change (`false`).
    #[default]
    False,
    /// A row of the initial snapshot (`true`).
    True,
    /// The first row of the whole initial snapshot (`first`).
    First,
    /// The first row of a table, not the snapshot's first (`first_in_data_collection`).
    FirstInDataCollection,
    /// The last row of a table, not the snapshot's last (`last_in_data_collection`).
    LastInDataCollection,
    /// The last row of the whole initial snapshot (`last`).
    Last,
    /// A row read by an incremental snapshot (`incremental`).
    Incremental,
}

impl SnapshotMarker {
    /// The value as Debezium writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotMarker::False => "false",
            SnapshotMarker::True => "true",
            SnapshotMarker::First => "first",
            SnapshotMarker::FirstInDataCollection => "first_in_data_collection",
            SnapshotMarker::LastInDataCollection => "last_in_data_collection",
            SnapshotMarker::Last => "last",
            SnapshotMarker::Incremental => "incremental",
        }
    }
}

/// A table's replica identity (`REPLICA IDENTITY`), which decides what the WAL carries as
/// the old row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplicaIdentity {
    /// The primary key (`d`): the old row holds key columns only, and only when they change.
    Default,
    /// No old row at all (`n`).
    Nothing,
    /// The whole old row (`f`).
    Full,
    /// The columns of a chosen unique index (`i`).
    Index,
}

impl ReplicaIdentity {
    /// From `pg_class.relreplident` (and pgoutput's Relation message byte); `None` for a
    /// byte PostgreSQL does not use.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'd' => Some(ReplicaIdentity::Default),
            b'n' => Some(ReplicaIdentity::Nothing),
            b'f' => Some(ReplicaIdentity::Full),
            b'i' => Some(ReplicaIdentity::Index),
            _ => None,
        }
    }

    /// The `relreplident` byte.
    pub fn as_byte(self) -> u8 {
        match self {
            ReplicaIdentity::Default => b'd',
            ReplicaIdentity::Nothing => b'n',
            ReplicaIdentity::Full => b'f',
            ReplicaIdentity::Index => b'i',
        }
    }
}

/// One column of a table, as the last Relation message described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// PostgreSQL type OID (`pg_type.oid`).
    pub type_oid: u32,
    /// Type name for schemas and pass-through values (`int4`, `text`, or the name a Type
    /// message gave for a user-defined type).
    pub type_name: String,
    /// `atttypmod`: precision/scale of numeric, precision of time types, length of
    /// varchar; -1 when none.
    pub type_modifier: i32,
    /// Part of the replica identity (the primary key under DEFAULT, the chosen index under
    /// USING INDEX, every column under FULL), as the Relation message flags it.
    pub key: bool,
    /// Part of the table's primary key (from `pg_index.indisprimary`); the default message
    /// key. Independent of the replica identity.
    pub primary_key: bool,
    /// Declared `NOT NULL` (`pg_attribute.attnotnull`, read from the catalog: pgoutput's
    /// Relation message does not carry it). Decides `optional` in the value schemas, as
    /// Debezium's do, and which missing values are filled (see [`Column::value_required`]).
    pub not_null: bool,
    /// The column's `DEFAULT` expression as `pg_get_expr` renders it (`0`, `'x'::text`,
    /// `nextval(...)`), read from the catalog with `not_null`; `None` without one.
    pub default: Option<String>,
    /// How to read the values of a type that is not built in (enum, domain, composite,
    /// array of those, extension type); `None` for built-in types.
    pub type_desc: Option<Arc<TypeDesc>>,
}

impl Column {
    /// Whether the column's value field is required (`optional: false`, no null union):
    /// declared `NOT NULL`, or part of the primary key (which implies it).
    pub fn value_required(&self) -> bool {
        self.not_null || self.primary_key
    }
}

/// A table as the source currently sees it; shared by every event of that table until its
/// schema changes (a new Relation message makes a new `Table`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// The relation OID.
    pub id: u32,
    /// Schema (namespace) name.
    pub schema: String,
    /// Table name.
    pub name: String,
    /// Columns in table order; every [`Row`] of this table lines up with them.
    pub columns: Vec<Column>,
    /// What the WAL carries as the old row.
    pub replica_identity: ReplicaIdentity,
}

impl Table {
    /// `schema.table`, as used in config patterns and messages.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// Indexes of the primary-key columns, in table order: the default message key (a
    /// table without a primary key has a null key unless the router configures key
    /// columns). Not the replica identity, which under FULL flags every column.
    pub fn primary_key_indexes(&self) -> impl Iterator<Item = usize> + '_ {
        self.columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.primary_key)
            .map(|(i, _)| i)
    }

    /// Indexes of the key (replica identity) columns, in table order.
    pub fn key_indexes(&self) -> impl Iterator<Item = usize> + '_ {
        self.columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.key)
            .map(|(i, _)| i)
    }
}

/// The values of one row, index-aligned with [`Table::columns`]. An old row that carries
/// only key columns has [`Value::Null`] in the others and `key_only` set.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// One value per column.
    pub values: Vec<Value>,
    /// True when only the key columns are meaningful (an old key from replica identity
    /// DEFAULT or USING INDEX).
    pub key_only: bool,
}

/// Where an event sits in the WAL and in its transaction: Debezium's `source` block, plus
/// what the router needs for a stable event id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourcePosition {
    /// LSN of the change record itself (`source.lsn`).
    pub lsn: Lsn,
    /// Commit LSN of the event's own transaction (known from Begin with protocol 1).
    pub commit_lsn: Lsn,
    /// End LSN of the previous transaction processed, the first half of `source.sequence`.
    pub last_commit_lsn: Option<Lsn>,
    /// Transaction id (`source.txId`), when known.
    pub tx_id: Option<u32>,
    /// Commit time in microseconds since the Unix epoch (`source.ts_ms` = this / 1000).
    pub commit_time_us: i64,
    /// Zero-based index of the event within its transaction; with `commit_lsn` it makes a
    /// stable id that is the same on re-delivery.
    pub tx_index: u64,
    /// Replication origin of the transaction, when set.
    pub origin: Option<String>,
    /// Whether (and where) a snapshot read the event (`source.snapshot`).
    pub snapshot: SnapshotMarker,
}

/// A logical decoding message (`pg_logical_emit_message`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogicalMessage {
    /// The prefix the application chose.
    pub prefix: String,
    /// The content bytes.
    pub content: Vec<u8>,
    /// Whether it was emitted inside a transaction (else it is delivered at once).
    pub transactional: bool,
}

/// One change, ready to route and encode.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeEvent {
    /// The operation.
    pub op: Op,
    /// The table, for row changes and truncates; `None` for logical messages.
    pub table: Option<Arc<Table>>,
    /// The old row: key columns (replica identity DEFAULT/INDEX) or the whole row (FULL);
    /// `None` for inserts, and for updates whose key did not change under DEFAULT.
    pub before: Option<Row>,
    /// The new row; `None` for deletes, truncates and messages.
    pub after: Option<Row>,
    /// WAL and transaction position.
    pub source: SourcePosition,
    /// The message, for [`Op::Message`].
    pub message: Option<LogicalMessage>,
}

impl ChangeEvent {
    /// The row a record key is taken from: the old row of a delete, the new row otherwise;
    /// `None` for truncates and messages.
    pub fn key_row(&self) -> Option<&Row> {
        match self.op {
            Op::Delete => self.before.as_ref(),
            Op::Truncate | Op::Message => None,
            Op::Create | Op::Update | Op::Read => self.after.as_ref(),
        }
    }

    /// The envelope's `before` and `after` rows: no `before` for inserts and snapshot reads
    /// (whatever the decoder kept), neither for truncates.
    pub fn envelope_rows(&self) -> (Option<&Row>, Option<&Row>) {
        match self.op {
            Op::Truncate => (None, None),
            Op::Create | Op::Read => (None, self.after.as_ref()),
            Op::Update | Op::Delete | Op::Message => (self.before.as_ref(), self.after.as_ref()),
        }
    }

    /// The event's table, or for a row event without one (which the decoder never produces)
    /// a table with no name and no columns, so an encoder still writes a well-formed envelope
    /// with empty rows rather than fail.
    pub fn table_or_placeholder(&self) -> &Arc<Table> {
        static NO_TABLE: std::sync::LazyLock<Arc<Table>> = std::sync::LazyLock::new(|| {
            Arc::new(Table {
                id: u32::MAX,
                schema: String::new(),
                name: String::new(),
                columns: Vec::new(),
                replica_identity: ReplicaIdentity::Default,
            })
        });
        self.table.as_ref().unwrap_or(&NO_TABLE)
    }
}
