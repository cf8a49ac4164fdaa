//! The schemas that Insert, Update, Delete and Truncate refer to by relation id.
//!
//! pgoutput sends a table's schema (a Relation message) once, before the first change to it on
//! a connection, and again whenever the table's cached schema is invalidated — after `ALTER
//! TABLE ... ADD/DROP COLUMN`, a type change, a replica identity change — before the next change
//! that uses it; inside a streamed transaction it is sent again for every streamed transaction
//! that touches the table. Changes carry only the relation id and positional column values, so
//! the schema in force is always the last Relation received for that id, and the cache simply
//! replaces its entry on every Relation. Entries are `Arc`s: a change decoded under the old
//! schema that is still in flight (e.g. buffered until its stream commits) keeps the schema it
//! was decoded with, so hold the `Arc` together with the change rather than looking it up later.
//!
//! Type messages name non-built-in types (enums, domains, composite types, extension types)
//! before a Relation uses them; built-in types are never sent, so a missing type name is normal.
//! Nothing is ever evicted: PostgreSQL does not announce dropped tables, and a connection
//! publishes a bounded set of them.

use std::sync::Arc;

use walrus_core::ids::IdMap;

use super::message::{PgOutputMessage, Relation, TupleData, TypeMessage};

/// A type's schema and name from a Type message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeName {
    /// Schema name; empty for `pg_catalog`.
    pub namespace: String,
    /// Type name.
    pub name: String,
}

/// A change could not be matched to the schema it needs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RelationError {
    /// No Relation message has described this relation id on this connection. pgoutput always
    /// sends one before the first change, so the stream was joined mid-way or a message was lost.
    #[error(
        "change refers to relation id {rel_id}, but no Relation message has described it on \
         this replication connection; messages were skipped or the stream was not read from \
         its start"
    )]
    UnknownRelation {
        /// The relation id the change refers to.
        rel_id: u32,
    },
    /// A tuple has a different number of columns than its relation's schema.
    #[error(
        "tuple for relation {namespace}.{name} (id {rel_id}) has {found} columns but its schema \
         has {expected}"
    )]
    ColumnCountMismatch {
        /// The relation id.
        rel_id: u32,
        /// The relation's schema name.
        namespace: String,
        /// The relation's name.
        name: String,
        /// Columns in the Relation message.
        expected: usize,
        /// Columns in the tuple.
        found: usize,
    },
}

/// Relations and type names seen on one replication connection.
#[derive(Clone, Debug, Default)]
pub struct RelationCache {
    relations: IdMap<u32, Arc<Relation>>,
    types: IdMap<u32, TypeName>,
}

impl RelationCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the schema or type name carried by a Relation or Type message; other messages
    /// are ignored. Call it for every decoded message, in order.
    pub fn observe(&mut self, message: &PgOutputMessage) {
        match message {
            PgOutputMessage::Relation(relation) => self.insert_relation(Arc::clone(relation)),
            PgOutputMessage::Type(ty) => self.insert_type(ty),
            _ => {}
        }
    }

    /// Stores `relation` as the schema for its id, replacing any earlier one.
    pub fn insert_relation(&mut self, relation: Arc<Relation>) {
        self.relations.insert(relation.rel_id, relation);
    }

    /// Stores the name a Type message gives its OID, replacing any earlier one.
    pub fn insert_type(&mut self, ty: &TypeMessage) {
        self.types.insert(
            ty.oid,
            TypeName {
                namespace: ty.namespace.clone(),
                name: ty.name.clone(),
            },
        );
    }

    /// The current schema for `rel_id`.
    pub fn get(&self, rel_id: u32) -> Result<&Arc<Relation>, RelationError> {
        self.relations
            .get(&rel_id)
            .ok_or(RelationError::UnknownRelation { rel_id })
    }

    /// The current schema for `rel_id`, checked to have as many columns as `tuple`.
    pub fn get_for_tuple(
        &self,
        rel_id: u32,
        tuple: &TupleData,
    ) -> Result<&Arc<Relation>, RelationError> {
        let relation = self.get(rel_id)?;
        if relation.columns.len() != tuple.columns.len() {
            return Err(RelationError::ColumnCountMismatch {
                rel_id,
                namespace: relation.namespace.clone(),
                name: relation.name.clone(),
                expected: relation.columns.len(),
                found: tuple.columns.len(),
            });
        }
        Ok(relation)
    }

    /// The name a Type message gave `oid`; `None` for built-in types, which are never sent.
    pub fn type_name(&self, oid: u32) -> Option<&TypeName> {
        self.types.get(&oid)
    }

    /// Number of relations known.
    pub fn len(&self) -> usize {
        self.relations.len()
    }

    /// True when no relation is known.
    pub fn is_empty(&self) -> bool {
        self.relations.is_empty()
    }
}
