//! What pgoutput does not say, read from the catalog on walrus's ordinary SQL connection:
//! each published table's **primary key** and **`NOT NULL` columns**, and the structure of
//! **non-built-in types**.
//!
//! Why the primary key: Debezium's message key is the primary key, but pgoutput's Relation
//! message only flags the *replica identity* columns — the primary key under `REPLICA
//! IDENTITY DEFAULT`, the index columns under `USING INDEX`, every column under `FULL`, none
//! under `NOTHING`. So walrus reads `pg_index.indisprimary` for every published table when a
//! session starts, and again (before the change that needs it is converted) whenever a
//! Relation message describes a table it has not seen, or one it has already seen on this
//! session: pgoutput sends a table's Relation message again only after DDL invalidated it.
//!
//! Why `NOT NULL`: Debezium reads the column's nullability from the catalog and makes
//! `NOT NULL` columns required in its schemas (`optional: false`, no Avro null union), and
//! fills them with a fallback when the old tuple lacks them. pgoutput never says, and
//! `ALTER TABLE ... SET/DROP NOT NULL` changes nothing the Relation message lists, so the
//! second and later Relation messages for a table always re-read it.
//!
//! Why types: a Relation message gives each column's type OID, and a Type message gives the
//! name of a non-built-in type, but not what it is. Domains must be read as their base type,
//! enums carry their labels into the schema, composites need field names and types, arrays
//! of user types need their element, ranges their subtype. [`resolve_type`] reads `pg_type`
//! (and `pg_enum`, `pg_range`, `pg_attribute`) recursively into a [`TypeDesc`].
//!
//! The catalog is read *now*, while the WAL being decoded may be older: a primary key or a
//! type changed between the change and its decoding is seen in its current form. The
//! Relation message (which is historic) still decides the columns.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio_postgres::Client;
use walrus_core::event::{Column, ReplicaIdentity};
use walrus_core::value::TypeDesc;

use crate::decoding::pgoutput::Relation;
use crate::decoding::text;
use crate::error::PgError;
use crate::server::{server_num, ServerInfo};

/// OIDs below this are built into PostgreSQL (`FirstNormalObjectId`); the rest were created
/// by users or extensions.
pub const FIRST_NORMAL_OID: u32 = 16_384;

/// Deepest nesting of type descriptions followed (domain of array of composite ...).
const MAX_TYPE_DEPTH: usize = 8;

/// What the catalog says about a table that pgoutput does not: its primary key and its
/// `NOT NULL` columns, as last read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrimaryKey {
    /// Key column names in key order; empty when the table has no primary key.
    pub columns: Vec<String>,
    /// Names of the columns declared `NOT NULL` (`pg_attribute.attnotnull`).
    pub not_null: Vec<String>,
    /// (column, `DEFAULT` expression) of the columns that have one (`pg_attrdef`).
    pub defaults: Vec<(String, String)>,
    /// The Relation column names this was checked against; `None` after the prefetch,
    /// before any Relation message for the table arrived.
    pub relation_columns: Option<Vec<String>>,
}

/// Primary keys, `NOT NULL` columns and type descriptions known so far on this session.
#[derive(Clone, Debug, Default)]
pub struct CatalogCache {
    /// By relation OID.
    pub primary_keys: HashMap<u32, PrimaryKey>,
    /// By type OID; `None` for types that need no description (built-in).
    pub types: HashMap<u32, Option<Arc<TypeDesc>>>,
}

impl CatalogCache {
    /// The description of a column type; `None` for built-in types and types not resolved.
    pub fn type_desc(&self, type_oid: u32) -> Option<Arc<TypeDesc>> {
        self.types.get(&type_oid).cloned().flatten()
    }

    /// The primary-key column names of a relation, if known.
    pub fn primary_key(&self, rel_id: u32) -> Option<&[String]> {
        self.primary_keys.get(&rel_id).map(|p| p.columns.as_slice())
    }

    /// Whether column `name` of a relation is declared `NOT NULL`; `None` when the catalog
    /// was not read for the relation.
    pub fn not_null(&self, rel_id: u32, name: &str) -> Option<bool> {
        self.primary_keys
            .get(&rel_id)
            .map(|p| p.not_null.iter().any(|n| n == name))
    }

    /// The `DEFAULT` expression of column `name` of a relation, if it has one and the
    /// catalog was read for the relation.
    pub fn default_expr(&self, rel_id: u32, name: &str) -> Option<String> {
        self.primary_keys.get(&rel_id).and_then(|p| {
            p.defaults
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, e)| e.clone())
        })
    }

    /// Whether a Relation message needs a catalog lookup before its changes are converted:
    /// a table never read, a table already described by a Relation message on this session
    /// (pgoutput sends another one only after the relation cache entry was invalidated,
    /// which DDL such as `ALTER TABLE ... SET NOT NULL` does without changing the columns
    /// the message lists), or a type not yet described.
    pub fn needs_lookup(&self, rel: &Relation) -> bool {
        let stale = match self.primary_keys.get(&rel.rel_id) {
            None => true,
            Some(p) => p.relation_columns.is_some(),
        };
        stale
            || rel
                .columns
                .iter()
                .any(|c| c.type_oid >= FIRST_NORMAL_OID && !self.types.contains_key(&c.type_oid))
    }

    /// Records that a Relation message for `rel` was applied, so that the next one for the
    /// same table (after DDL) re-reads the catalog.
    pub fn mark_seen(&mut self, rel: &Relation) {
        if let Some(p) = self.primary_keys.get_mut(&rel.rel_id) {
            if p.relation_columns.is_none() {
                p.relation_columns = Some(rel.columns.iter().map(|c| c.name.clone()).collect());
            }
        }
    }

    /// Reads what [`Self::needs_lookup`] found missing for `rel`.
    pub async fn refresh(&mut self, client: &Client, rel: &Relation) -> Result<(), PgError> {
        let names: Vec<String> = rel.columns.iter().map(|c| c.name.clone()).collect();
        let fresh = match self.primary_keys.get(&rel.rel_id) {
            Some(p) => p.relation_columns.is_some(),
            None => true,
        };
        if fresh {
            let mut facts = table_facts(client, &[rel.rel_id]).await?;
            let TableFacts {
                primary_key: columns,
                not_null,
                defaults,
            } = facts.remove(&rel.rel_id).unwrap_or_default();
            tracing::debug!(table = %format!("{}.{}", rel.namespace, rel.name), key = ?columns, ?not_null, "primary key and NOT NULL columns read");
            self.primary_keys.insert(
                rel.rel_id,
                PrimaryKey {
                    columns,
                    not_null,
                    defaults,
                    relation_columns: Some(names),
                },
            );
        } else if let Some(p) = self.primary_keys.get_mut(&rel.rel_id) {
            p.relation_columns = Some(names);
        }
        for c in &rel.columns {
            if c.type_oid >= FIRST_NORMAL_OID && !self.types.contains_key(&c.type_oid) {
                let desc = resolve_type(client, c.type_oid, c.type_modifier, 0).await?;
                tracing::debug!(type_oid = c.type_oid, ?desc, "type described");
                self.types.insert(c.type_oid, Some(Arc::new(desc)));
            }
        }
        Ok(())
    }

    /// Reads the primary keys and `NOT NULL` columns of every table in `publication` (the
    /// session-start prefetch).
    pub async fn prefetch(&mut self, client: &Client, publication: &str) -> Result<(), PgError> {
        let rows = client
            .query(
                "SELECT c.oid FROM pg_publication_tables pt
                   JOIN pg_namespace n ON n.nspname = pt.schemaname
                   JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
                  WHERE pt.pubname = $1",
                &[&publication],
            )
            .await
            .map_err(|e| PgError::sql("listing published tables", e))?;
        let oids: Vec<u32> = rows.iter().map(|r| r.get(0)).collect();
        let mut facts = table_facts(client, &oids).await?;
        for oid in oids {
            let TableFacts {
                primary_key: columns,
                not_null,
                defaults,
            } = facts.remove(&oid).unwrap_or_default();
            self.primary_keys.insert(
                oid,
                PrimaryKey {
                    columns,
                    not_null,
                    defaults,
                    relation_columns: None,
                },
            );
        }
        Ok(())
    }
}

/// Primary-key column names, in key order, of the given relations (absent: no primary key).
pub async fn primary_keys(
    client: &Client,
    rel_ids: &[u32],
) -> Result<HashMap<u32, Vec<String>>, PgError> {
    let rows = client
        .query(
            "SELECT i.indrelid, array_agg(a.attname::text ORDER BY k.ord)
               FROM pg_index i
               CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              WHERE i.indisprimary AND i.indrelid = ANY($1)
              GROUP BY i.indrelid",
            &[&rel_ids],
        )
        .await
        .map_err(|e| PgError::sql("reading primary keys (pg_index)", e))?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<_, u32>(0), r.get::<_, Vec<String>>(1)))
        .collect())
}

/// What [`table_facts`] reads about one table.
#[derive(Clone, Debug, Default)]
pub struct TableFacts {
    /// Primary-key column names in key order (empty: none).
    pub primary_key: Vec<String>,
    /// `NOT NULL` column names in `attnum` order.
    pub not_null: Vec<String>,
    /// (column, `DEFAULT` expression) in `attnum` order; generated columns excluded.
    pub defaults: Vec<(String, String)>,
}

/// The primary key, `NOT NULL` columns and column defaults of the given relations; a
/// relation absent from the answer has none of them.
pub async fn table_facts(
    client: &Client,
    rel_ids: &[u32],
) -> Result<HashMap<u32, TableFacts>, PgError> {
    let mut out: HashMap<u32, TableFacts> = primary_keys(client, rel_ids)
        .await?
        .into_iter()
        .map(|(oid, pk)| {
            (
                oid,
                TableFacts {
                    primary_key: pk,
                    ..TableFacts::default()
                },
            )
        })
        .collect();
    // Generated columns (`attgenerated`, 12+) keep their expression in pg_attrdef too.
    let not_generated = if server_num(client).await? >= ServerInfo::num_of(12) {
        "AND a.attgenerated = ''"
    } else {
        ""
    };
    let rows = client
        .query(
            &format!(
                "SELECT a.attrelid, a.attname::text, a.attnotnull, pg_get_expr(d.adbin, d.adrelid)
                   FROM pg_attribute a
                   LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                  WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped
                    AND (a.attnotnull OR (a.atthasdef {not_generated}))
                  ORDER BY a.attrelid, a.attnum"
            ),
            &[&rel_ids],
        )
        .await
        .map_err(|e| PgError::sql("reading NOT NULL columns and defaults (pg_attribute)", e))?;
    for r in &rows {
        let facts = out.entry(r.get::<_, u32>(0)).or_default();
        let name: String = r.get(1);
        if let Some(expr) = r.get::<_, Option<String>>(3) {
            facts.defaults.push((name.clone(), expr));
        }
        if r.get::<_, bool>(2) {
            facts.not_null.push(name);
        }
    }
    Ok(out)
}

type DescFuture<'a> = Pin<Box<dyn Future<Output = Result<TypeDesc, PgError>> + Send + 'a>>;

/// Describes a type from the catalog, following domains, arrays, composites and ranges.
pub fn resolve_type(
    client: &Client,
    type_oid: u32,
    type_modifier: i32,
    depth: usize,
) -> DescFuture<'_> {
    Box::pin(async move {
        if type_oid < FIRST_NORMAL_OID {
            return Ok(TypeDesc::Builtin {
                oid: type_oid,
                type_modifier,
            });
        }
        if depth > MAX_TYPE_DEPTH {
            return Ok(TypeDesc::Other {
                name: format!("oid{type_oid}"),
            });
        }
        // Multiranges (and `pg_range.rngmultitypid`) exist from PostgreSQL 14.
        let multirange = if server_num(client).await? >= ServerInfo::num_of(14) {
            "(SELECT r.rngsubtype FROM pg_range r WHERE r.rngmultitypid = t.oid)"
        } else {
            "NULL::oid"
        };
        let row = client
            .query_opt(
                &format!(
                    "SELECT t.typname::text, t.typtype::text, t.typbasetype, t.typtypmod, t.typelem,
                            t.typrelid, t.typcategory::text,
                            (SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
                               FROM pg_enum e WHERE e.enumtypid = t.oid),
                            (SELECT r.rngsubtype FROM pg_range r WHERE r.rngtypid = t.oid),
                            {multirange}
                       FROM pg_type t WHERE t.oid = $1"
                ),
                &[&type_oid],
            )
            .await
            .map_err(|e| PgError::sql("describing a type (pg_type)", e))?;
        let Some(row) = row else {
            return Ok(TypeDesc::Other {
                name: format!("oid{type_oid}"),
            });
        };
        let name: String = row.get(0);
        let typtype: String = row.get(1);
        let base: u32 = row.get(2);
        let typtypmod: i32 = row.get(3);
        let elem: u32 = row.get(4);
        let relid: u32 = row.get(5);
        let category: String = row.get(6);
        let labels: Option<Vec<String>> = row.get(7);
        let range_sub: Option<u32> = row.get(8);
        let multi_sub: Option<u32> = row.get(9);
        Ok(match typtype.as_str() {
            "d" => resolve_type(client, base, typtypmod, depth + 1).await?,
            "e" => TypeDesc::Enum {
                labels: labels.unwrap_or_default(),
            },
            "c" => {
                let attrs = client
                    .query(
                        "SELECT attname::text, atttypid, atttypmod FROM pg_attribute
                          WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped
                          ORDER BY attnum",
                        &[&relid],
                    )
                    .await
                    .map_err(|e| PgError::sql("describing a composite type", e))?;
                let mut fields = Vec::with_capacity(attrs.len());
                for a in &attrs {
                    let fname: String = a.get(0);
                    let desc = resolve_type(client, a.get(1), a.get(2), depth + 1).await?;
                    fields.push((fname, desc));
                }
                TypeDesc::Composite { name, fields }
            }
            "r" | "m" => {
                let sub = range_sub.or(multi_sub).unwrap_or(0);
                TypeDesc::Range {
                    name,
                    subtype: Box::new(resolve_type(client, sub, -1, depth + 1).await?),
                    multi: typtype == "m",
                }
            }
            "b" if category == "A" && elem != 0 => TypeDesc::Array(Box::new(
                resolve_type(client, elem, type_modifier, depth + 1).await?,
            )),
            "b" => match name.as_str() {
                "hstore" => TypeDesc::Hstore,
                "ltree" => TypeDesc::Ltree,
                "citext" => TypeDesc::Citext,
                _ => TypeDesc::Other { name },
            },
            _ => TypeDesc::Other { name },
        })
    })
}

/// The columns of table `oid` as events describe them (in `attnum` order, without dropped
/// and generated columns, as pgoutput sends them), with each column's SQL type
/// (`format_type`) for casting key literals.
pub(crate) async fn describe_columns(
    client: &Client,
    oid: u32,
    identity: ReplicaIdentity,
    pk_names: &[String],
) -> Result<(Vec<Column>, Vec<String>), PgError> {
    // Generated columns (and `attgenerated`) exist from PostgreSQL 12.
    let not_generated = if server_num(client).await? >= ServerInfo::num_of(12) {
        "AND a.attgenerated = ''"
    } else {
        ""
    };
    let cols = client
        .query(
            &format!(
                "SELECT a.attname::text, a.atttypid, a.atttypmod,
                        format_type(a.atttypid, a.atttypmod), t.typname::text, a.attnotnull,
                        pg_get_expr(d.adbin, d.adrelid)
                   FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                   LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                  WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
                    {not_generated}
                  ORDER BY a.attnum"
            ),
            &[&oid],
        )
        .await
        .map_err(|e| PgError::sql("reading columns for the snapshot", e))?;
    let mut columns = Vec::with_capacity(cols.len());
    let mut casts = Vec::with_capacity(cols.len());
    for c in &cols {
        let col_name: String = c.get(0);
        let type_oid: u32 = c.get(1);
        let type_modifier: i32 = c.get(2);
        casts.push(c.get::<_, String>(3));
        let typname: String = c.get(4);
        let not_null: bool = c.get(5);
        let default: Option<String> = c.get(6);
        let type_desc = if type_oid >= FIRST_NORMAL_OID {
            Some(Arc::new(
                resolve_type(client, type_oid, type_modifier, 0).await?,
            ))
        } else {
            None
        };
        let primary_key = pk_names.contains(&col_name);
        columns.push(Column {
            key: match identity {
                ReplicaIdentity::Full => true,
                ReplicaIdentity::Nothing => false,
                _ => primary_key,
            },
            primary_key,
            not_null: not_null || primary_key,
            default,
            type_desc,
            type_name: text::type_name(type_oid)
                .map(str::to_string)
                .unwrap_or(typname),
            name: col_name,
            type_oid,
            type_modifier,
        });
    }
    Ok((columns, casts))
}
