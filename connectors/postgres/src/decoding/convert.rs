//! From decoded pgoutput messages to change events.
//!
//! The [`Converter`] follows the stream's Relation and Type messages (through the
//! [`RelationCache`]) and keeps, per relation, the engine's shared [`Table`] built from the
//! newest Relation message; a schema change mid-stream (ALTER TABLE) arrives as a new
//! Relation before the next change and simply replaces the entry, so every event carries
//! the columns that were current when its row was written. Column values are parsed into
//! typed [`Value`]s (text or binary format); a value that fails to parse is kept as its
//! text with a warning, never dropped.
//!
//! Keys: each column is marked `key` (replica identity, from the Relation message) and
//! `primary_key` (from the catalog, see [`crate::decoding::catalog`]). The message key is the primary
//! key. An update that changes the primary key — visible only when the WAL carries the old
//! key, i.e. identity DEFAULT (the old key is sent when it changes), FULL, or an index that
//! contains the key — becomes a delete for the old key and a create for the new one, as
//! Debezium emits it ([`UpdateOutcome::KeyChange`]).

use std::sync::Arc;

use walrus_core::event::{
    ChangeEvent, Column, LogicalMessage as EventMessage, Op, ReplicaIdentity, Row, SourcePosition,
    Table,
};
use walrus_core::ids::IdMap;
use walrus_core::value::Value;

use crate::decoding::catalog::CatalogCache;
use crate::decoding::pgoutput::{
    ColumnData, Delete, Insert, LogicalMessage, OldTuple, PgOutputMessage, Relation, RelationCache,
    RelationError, Truncate, TupleData, Update,
};
use crate::decoding::{binary, text};

/// A table as events see it, with the topic-independent bits walrus derives once.
#[derive(Clone, Debug)]
pub struct TableEntry {
    /// The shared table description.
    pub table: Arc<Table>,
    /// Key column indexes (replica identity), in table order.
    pub key_columns: Arc<[usize]>,
}

/// Turns pgoutput changes into [`ChangeEvent`]s.
#[derive(Debug, Default)]
pub struct Converter {
    cache: RelationCache,
    /// Primary keys and type descriptions from the catalog; fill it before a Relation is
    /// observed (see [`crate::decoding::catalog::CatalogCache::needs_lookup`]).
    pub catalog: CatalogCache,
    tables: IdMap<u32, TableEntry>,
}

/// What an Update becomes. Returned once per update and taken apart at once, so the size
/// difference between the variants costs nothing.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum UpdateOutcome {
    /// An ordinary update (`op: "u"`).
    Update(ChangeEvent),
    /// The primary key changed: a delete for the old key (followed by its tombstone, with a
    /// `__debezium.newkey` header) and a create for the new key (with `__debezium.oldkey`).
    KeyChange {
        /// The old row, deleted.
        delete: ChangeEvent,
        /// The new row, created.
        create: ChangeEvent,
    },
}

/// Whether the primary key differs between the old row the WAL carried and the new row.
/// False when it cannot be known: no primary key, or a key column the old row lacks (an
/// index identity without it). An unchanged TOASTed key value counts as unchanged.
pub fn primary_key_changed(table: &Table, before: &Row, after: &Row) -> bool {
    let mut changed = false;
    let mut any = false;
    for i in table.primary_key_indexes() {
        any = true;
        let (Some(b), Some(a)) = (before.values.get(i), after.values.get(i)) else {
            return false;
        };
        if before.key_only && !table.columns[i].key {
            return false;
        }
        if matches!(a, Value::Unavailable) || matches!(b, Value::Unavailable) {
            continue;
        }
        changed |= a != b;
    }
    any && changed
}

/// A change whose row does not match its relation.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The change names a relation never described.
    #[error(transparent)]
    Relation(#[from] RelationError),
    /// The tuple has a different number of columns than the relation.
    #[error("table {table}: row has {got} columns, the relation describes {expected}")]
    ColumnCount {
        /// Table name.
        table: String,
        /// Columns in the tuple.
        got: usize,
        /// Columns in the relation.
        expected: usize,
    },
}

impl Converter {
    /// An empty converter.
    pub fn new() -> Self {
        Self::default()
    }

    /// A converter that starts with what the catalog said (see
    /// [`CatalogCache::prefetch`]).
    pub fn with_catalog(catalog: CatalogCache) -> Self {
        Converter {
            catalog,
            ..Self::default()
        }
    }

    /// Records Relation and Type messages; returns the table entry for a Relation.
    pub fn observe(&mut self, msg: &PgOutputMessage) -> Option<&TableEntry> {
        self.cache.observe(msg);
        if let PgOutputMessage::Relation(rel) = msg {
            self.catalog.mark_seen(rel);
            let entry = self.build_table(rel);
            self.tables.insert(rel.rel_id, entry);
            return self.tables.get(&rel.rel_id);
        }
        None
    }

    fn build_table(&self, rel: &Relation) -> TableEntry {
        let identity = rel.replica_identity;
        let pk = self.catalog.primary_key(rel.rel_id);
        let columns: Vec<Column> = rel
            .columns
            .iter()
            .map(|c| {
                // Without a catalog answer, the identity columns are the primary key only
                // under DEFAULT.
                let primary_key = match pk {
                    Some(pk) => pk.contains(&c.name),
                    None => identity == ReplicaIdentity::Default && c.is_key(),
                };
                Column {
                    primary_key,
                    not_null: primary_key
                        || self.catalog.not_null(rel.rel_id, &c.name).unwrap_or(false),
                    default: self.catalog.default_expr(rel.rel_id, &c.name),
                    type_desc: self.catalog.type_desc(c.type_oid),
                    name: c.name.clone(),
                    type_oid: c.type_oid,
                    type_name: text::type_name(c.type_oid)
                        .map(str::to_string)
                        .or_else(|| self.cache.type_name(c.type_oid).map(|t| t.name.clone()))
                        .unwrap_or_else(|| format!("oid{}", c.type_oid)),
                    type_modifier: c.type_modifier,
                    key: c.is_key(),
                }
            })
            .collect();
        let key_columns: Arc<[usize]> = columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.key)
            .map(|(i, _)| i)
            .collect();
        let table = Table {
            id: rel.rel_id,
            // pgoutput sends an empty namespace for pg_catalog.
            schema: if rel.namespace.is_empty() {
                "pg_catalog".to_string()
            } else {
                rel.namespace.clone()
            },
            name: rel.name.clone(),
            columns,
            replica_identity: identity,
        };
        TableEntry {
            table: Arc::new(table),
            key_columns,
        }
    }

    /// The table entry for a relation id.
    pub fn table(&self, rel_id: u32) -> Result<&TableEntry, ConvertError> {
        self.tables
            .get(&rel_id)
            .ok_or(ConvertError::Relation(RelationError::UnknownRelation {
                rel_id,
            }))
    }

    fn row(
        &self,
        entry: &TableEntry,
        tuple: &TupleData,
        key_only: bool,
    ) -> Result<Row, ConvertError> {
        let table = &entry.table;
        if tuple.columns.len() != table.columns.len() {
            return Err(ConvertError::ColumnCount {
                table: table.qualified_name(),
                got: tuple.columns.len(),
                expected: table.columns.len(),
            });
        }
        let values = tuple
            .columns
            .iter()
            .zip(&table.columns)
            .map(|(data, col)| match data {
                ColumnData::Null => Value::Null,
                ColumnData::UnchangedToast => Value::Unavailable,
                ColumnData::Text(bytes) => {
                    let (value, err) = match &col.type_desc {
                        Some(desc) => text::parse_text_desc_or_text(desc, bytes),
                        None => text::parse_text_or_text(col.type_oid, bytes),
                    };
                    if let Some(err) = err {
                        tracing::warn!(table = %table.qualified_name(), column = %col.name, error = %err, "value kept as text");
                    }
                    value
                }
                ColumnData::Binary(bytes) => {
                    let (value, err) =
                        binary::parse_binary_or_hex(col.type_desc.as_deref(), col.type_oid, bytes);
                    if let Some(err) = err {
                        tracing::warn!(table = %table.qualified_name(), column = %col.name, error = %err, "binary value kept as hex text");
                    }
                    value
                }
            })
            .collect();
        Ok(Row { values, key_only })
    }

    fn old_row(&self, entry: &TableEntry, old: &OldTuple) -> Result<Row, ConvertError> {
        match old {
            OldTuple::Key(t) => self.row(entry, t, true),
            OldTuple::Full(t) => self.row(entry, t, false),
        }
    }

    /// An Insert as a create event.
    pub fn insert(&self, m: &Insert, source: SourcePosition) -> Result<ChangeEvent, ConvertError> {
        let entry = self.table(m.rel_id)?;
        Ok(ChangeEvent {
            op: Op::Create,
            table: Some(entry.table.clone()),
            before: None,
            after: Some(self.row(entry, &m.new, false)?),
            source,
            message: None,
        })
    }

    /// An Update as an update event; `before` is the old key or row when the WAL has it.
    /// A changed primary key gives [`UpdateOutcome::KeyChange`]; its `create` carries
    /// `source` too, and the caller gives it the next position in the transaction.
    pub fn update(
        &self,
        m: &Update,
        source: SourcePosition,
    ) -> Result<UpdateOutcome, ConvertError> {
        let entry = self.table(m.rel_id)?;
        let before = m.old.as_ref().map(|o| self.old_row(entry, o)).transpose()?;
        let mut after = self.row(entry, &m.new, false)?;
        // An unchanged TOASTed value is not in the new tuple; under REPLICA IDENTITY FULL the
        // old tuple carries it (PostgreSQL inlines it there), so it is taken from there, as
        // Debezium does. Without it (other identities, a NULL old value) the placeholder stays.
        if let Some(old) = before.as_ref().filter(|b| !b.key_only) {
            for (new, old) in after.values.iter_mut().zip(&old.values) {
                if *new == Value::Unavailable && !matches!(old, Value::Null | Value::Unavailable) {
                    *new = old.clone();
                }
            }
        }
        if let Some(old) = before
            .as_ref()
            .filter(|b| primary_key_changed(&entry.table, b, &after))
        {
            return Ok(UpdateOutcome::KeyChange {
                delete: ChangeEvent {
                    op: Op::Delete,
                    table: Some(entry.table.clone()),
                    before: Some(old.clone()),
                    after: None,
                    source: source.clone(),
                    message: None,
                },
                create: ChangeEvent {
                    op: Op::Create,
                    table: Some(entry.table.clone()),
                    before: None,
                    after: Some(after),
                    source,
                    message: None,
                },
            });
        }
        Ok(UpdateOutcome::Update(ChangeEvent {
            op: Op::Update,
            table: Some(entry.table.clone()),
            before,
            after: Some(after),
            source,
            message: None,
        }))
    }

    /// A Delete as a delete event.
    pub fn delete(&self, m: &Delete, source: SourcePosition) -> Result<ChangeEvent, ConvertError> {
        let entry = self.table(m.rel_id)?;
        Ok(ChangeEvent {
            op: Op::Delete,
            table: Some(entry.table.clone()),
            before: Some(self.old_row(entry, &m.old)?),
            after: None,
            source,
            message: None,
        })
    }

    /// A Truncate as one truncate event per table.
    pub fn truncate(
        &self,
        m: &Truncate,
        source: &SourcePosition,
    ) -> Result<Vec<ChangeEvent>, ConvertError> {
        m.rel_ids
            .iter()
            .map(|id| {
                let entry = self.table(*id)?;
                Ok(ChangeEvent {
                    op: Op::Truncate,
                    table: Some(entry.table.clone()),
                    before: None,
                    after: None,
                    source: source.clone(),
                    message: None,
                })
            })
            .collect()
    }

    /// A logical decoding message as a message event.
    pub fn message(m: &LogicalMessage, source: SourcePosition) -> ChangeEvent {
        ChangeEvent {
            op: Op::Message,
            table: None,
            before: None,
            after: None,
            source,
            message: Some(EventMessage {
                prefix: m.prefix.clone(),
                content: m.content.to_vec(),
                transactional: m.transactional(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::Arc as StdArc;

    use crate::decoding::pgoutput::{Column as RelColumn, ReplicaIdentity as RelIdentity};

    fn relation(identity: RelIdentity, key_flags: [u8; 3]) -> PgOutputMessage {
        PgOutputMessage::Relation(StdArc::new(Relation {
            xid: None,
            rel_id: 7,
            namespace: "public".into(),
            name: "t".into(),
            replica_identity: identity,
            columns: ["id", "u", "v"]
                .iter()
                .zip(key_flags)
                .map(|(n, flags)| RelColumn {
                    flags,
                    name: (*n).into(),
                    type_oid: 23,
                    type_modifier: -1,
                })
                .collect(),
        }))
    }

    fn tuple(vals: [Option<&'static str>; 3]) -> TupleData {
        TupleData {
            columns: vals
                .iter()
                .map(|v| match v {
                    Some(s) => ColumnData::Text(Bytes::from_static(s.as_bytes())),
                    None => ColumnData::Null,
                })
                .collect(),
        }
    }

    fn converter(identity: RelIdentity, flags: [u8; 3], pk: &[&str]) -> Converter {
        let mut c = Converter::new();
        c.catalog.primary_keys.insert(
            7,
            crate::decoding::catalog::PrimaryKey {
                columns: pk.iter().map(|s| s.to_string()).collect(),
                not_null: vec!["u".to_string()],
                defaults: vec![("u".to_string(), "7".to_string())],
                relation_columns: None,
            },
        );
        c.observe(&relation(identity, flags));
        c
    }

    #[test]
    fn unchanged_toast_is_taken_from_the_full_old_tuple() {
        let c = converter(RelIdentity::Full, [1, 1, 1], &["id"]);
        let unchanged = |old: Option<&'static str>| Update {
            xid: None,
            rel_id: 7,
            old: Some(OldTuple::Full(tuple([Some("1"), old, Some("3")]))),
            new: TupleData {
                columns: vec![
                    ColumnData::Text(Bytes::from_static(b"1")),
                    ColumnData::UnchangedToast,
                    ColumnData::Text(Bytes::from_static(b"4")),
                ],
            },
        };
        match c
            .update(&unchanged(Some("2")), SourcePosition::default())
            .unwrap()
        {
            UpdateOutcome::Update(ev) => {
                assert_eq!(ev.after.unwrap().values[1], Value::Int32(2));
            }
            other => panic!("{other:?}"),
        }
        // A NULL old value is no value to take: the placeholder stays, as in Debezium.
        match c
            .update(&unchanged(None), SourcePosition::default())
            .unwrap()
        {
            UpdateOutcome::Update(ev) => {
                assert_eq!(ev.after.unwrap().values[1], Value::Unavailable);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn full_identity_keys_on_the_primary_key_only() {
        let c = converter(RelIdentity::Full, [1, 1, 1], &["id"]);
        let t = &c.table(7).unwrap().table;
        assert_eq!(t.primary_key_indexes().collect::<Vec<_>>(), vec![0]);
        assert_eq!(t.key_indexes().count(), 3);
        // Unchanged key under FULL: an ordinary update with the whole before image.
        let m = Update {
            xid: None,
            rel_id: 7,
            old: Some(OldTuple::Full(tuple([Some("1"), Some("2"), Some("3")]))),
            new: tuple([Some("1"), Some("2"), Some("4")]),
        };
        match c.update(&m, SourcePosition::default()).unwrap() {
            UpdateOutcome::Update(ev) => assert_eq!(ev.before.unwrap().values[2], Value::Int32(3)),
            other => panic!("{other:?}"),
        }
        // Changed key: delete of the old row, create of the new.
        let m = Update {
            new: tuple([Some("9"), Some("2"), Some("4")]),
            ..m
        };
        match c.update(&m, SourcePosition::default()).unwrap() {
            UpdateOutcome::KeyChange { delete, create } => {
                assert_eq!(delete.op, Op::Delete);
                assert_eq!(delete.before.unwrap().values[0], Value::Int32(1));
                assert_eq!(create.op, Op::Create);
                assert_eq!(create.after.unwrap().values[0], Value::Int32(9));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn key_changes_need_the_old_key_in_the_wal() {
        // USING INDEX on (u): the old tuple lacks id, so a change of id cannot be seen.
        let c = converter(RelIdentity::Index, [0, 1, 0], &["id"]);
        let m = Update {
            xid: None,
            rel_id: 7,
            old: Some(OldTuple::Key(tuple([None, Some("2"), None]))),
            new: tuple([Some("5"), Some("3"), Some("4")]),
        };
        assert!(matches!(
            c.update(&m, SourcePosition::default()).unwrap(),
            UpdateOutcome::Update(_)
        ));
        // DEFAULT: the old key is sent when it changes.
        let c = converter(RelIdentity::Default, [1, 0, 0], &["id"]);
        let m = Update {
            xid: None,
            rel_id: 7,
            old: Some(OldTuple::Key(tuple([Some("1"), None, None]))),
            new: tuple([Some("2"), Some("3"), Some("4")]),
        };
        assert!(matches!(
            c.update(&m, SourcePosition::default()).unwrap(),
            UpdateOutcome::KeyChange { .. }
        ));
        // No primary key: never a key change, and no key.
        let c = converter(RelIdentity::Full, [1, 1, 1], &[]);
        assert_eq!(c.table(7).unwrap().table.primary_key_indexes().count(), 0);
        let m = Update {
            xid: None,
            rel_id: 7,
            old: Some(OldTuple::Full(tuple([Some("1"), Some("2"), Some("3")]))),
            new: tuple([Some("2"), Some("3"), Some("4")]),
        };
        assert!(matches!(
            c.update(&m, SourcePosition::default()).unwrap(),
            UpdateOutcome::Update(_)
        ));
    }

    #[test]
    fn without_the_catalog_default_identity_is_the_key() {
        let mut c = Converter::new();
        c.observe(&relation(RelIdentity::Default, [1, 0, 0]));
        assert_eq!(
            c.table(7)
                .unwrap()
                .table
                .primary_key_indexes()
                .collect::<Vec<_>>(),
            vec![0]
        );
        let mut c = Converter::new();
        c.observe(&relation(RelIdentity::Full, [1, 1, 1]));
        assert_eq!(c.table(7).unwrap().table.primary_key_indexes().count(), 0);
    }

    #[test]
    fn not_null_follows_the_catalog_and_a_repeated_relation_rereads_it() {
        let c = converter(RelIdentity::Default, [1, 0, 0], &["id"]);
        let t = &c.table(7).unwrap().table;
        let required: Vec<bool> = t.columns.iter().map(|c| c.value_required()).collect();
        // id: primary key; u: NOT NULL in the catalog; v: nullable.
        assert_eq!(required, vec![true, true, false]);
        assert!(!t.columns[1].primary_key && t.columns[1].not_null);
        // The prefetch answered for the first Relation message; a second one for the same
        // table comes only after DDL (SET/DROP NOT NULL lists the same columns) and must
        // read the catalog again.
        let PgOutputMessage::Relation(rel) = relation(RelIdentity::Default, [1, 0, 0]) else {
            unreachable!()
        };
        assert!(c.catalog.needs_lookup(&rel));
        let fresh = Converter::new();
        assert!(fresh.catalog.needs_lookup(&rel), "a table never read");
    }

    #[test]
    fn without_a_catalog_answer_only_the_primary_key_is_required() {
        let mut c = Converter::new();
        c.observe(&relation(RelIdentity::Default, [1, 0, 0]));
        let t = &c.table(7).unwrap().table;
        let required: Vec<bool> = t.columns.iter().map(|c| c.value_required()).collect();
        assert_eq!(required, vec![true, false, false]);
    }
}
