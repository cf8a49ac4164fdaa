//! Planning: which tables the snapshot reads, and how each is cut into units (primary-key
//! ranges sampled with `TABLESAMPLE`, or `ctid` block ranges) that workers read chunk by
//! chunk, reusing the units and progress of a resumed state file.

use std::sync::Arc;

use tokio_postgres::Client;
use walrus_core::config::Config;
use walrus_core::event::{Op, ReplicaIdentity, Table};
use walrus_core::router::TableRoute;
use walrus_core::selection::TablePattern;

use super::state::{State, TableState, UnitState};
use crate::decoding::catalog::{self, describe_columns};
use crate::error::PgError;
use crate::operations::setup::quote_ident;

/// Rows assumed per 8 kB block when the planner has no statistics.
const DEFAULT_ROWS_PER_BLOCK: f64 = 60.0;

/// How a table is cut into chunks.
#[derive(Clone, Debug)]
pub(super) enum KeyKind {
    /// By primary key: column indexes and their SQL types (`format_type`).
    Pk {
        columns: Vec<usize>,
        casts: Vec<String>,
    },
    /// By `ctid` block ranges of `step` blocks; `blocks` is the relation's size when
    /// planned (the last range reads past it).
    Ctid { step: u64, blocks: u64 },
    /// In one piece (a partitioned table without primary key, or any table without one
    /// before PostgreSQL 14, which has no TID range scans).
    Whole,
}

/// One table to read.
pub(super) struct TablePlan {
    pub(super) qualified: String,
    pub(super) table: Arc<Table>,
    pub(super) route: TableRoute,
    /// `"a", "b"` — the columns in table order; in binary mode followed by the key
    /// columns as text (the resume position of the chunk).
    pub(super) select_list: String,
    /// Read with `COPY ... (FORMAT binary)`: every column's type has a binary format
    /// walrus decodes into the same values as its text.
    pub(super) binary: bool,
    /// `"schema"."table"`.
    pub(super) from: String,
    pub(super) kind: KeyKind,
    /// Estimated rows (for the ETA).
    pub(super) estimated_rows: u64,
}

/// Where a table comes in Debezium's snapshot order: the index of the first `source.tables`
/// pattern that matches it (or, for a partition published on its own, its root `root`,
/// `schema.table`); 0 for every table without an include list.
fn include_rank(include: &[TablePattern], schema: &str, table: &str, root: Option<&str>) -> usize {
    let matches = |p: &TablePattern| {
        p.matches(schema, table)
            || root
                .and_then(|q| q.split_once('.'))
                .is_some_and(|(s, t)| p.matches(s, t))
    };
    include.iter().position(matches).unwrap_or(include.len())
}

/// Lists the published tables the config selects, and cuts each into ranges, reusing the
/// ranges (and progress) of `state` where they still apply.
pub(super) async fn plan_tables(
    client: &Client,
    config: &Config,
    state: &mut State,
    workers: usize,
) -> Result<Vec<TablePlan>, PgError> {
    let router = config.router().map_err(|e| PgError::Config {
        key: "routes",
        message: e.to_string(),
    })?;
    // Without publish_via_partition_root a publication that holds a partitioned table lists
    // its partitions in pg_publication_tables, under their own names: a partition is
    // selected when its root is (walrus's publications hold roots, never partitions).
    // `pg_partition_root` exists from 12; partitioned tables are published from 13.
    let root = if crate::server::server_num(client).await? >= crate::server::ServerInfo::num_of(13)
    {
        "(SELECT rn.nspname::text || '.' || r.relname::text FROM pg_class r
            JOIN pg_namespace rn ON rn.oid = r.relnamespace
           WHERE c.relispartition AND r.oid = pg_partition_root(c.oid))"
    } else {
        "NULL::text"
    };
    let rows = client
        .query(
            &format!(
                "SELECT c.oid, n.nspname::text, c.relname::text, c.relreplident::text,
                    c.relfilenode, c.relkind::text, c.reltuples::float8,
                    (pg_relation_size(c.oid) / current_setting('block_size')::int8)::int8,
                    {root}
               FROM pg_publication_tables pt
               JOIN pg_namespace n ON n.nspname = pt.schemaname
               JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
              WHERE pt.pubname = $1
              ORDER BY 2, 3"
            ),
            &[&config.source.publication],
        )
        .await
        .map_err(|e| PgError::sql("listing published tables for the snapshot", e))?;
    let pk_oids: Vec<u32> = rows.iter().map(|r| r.get(0)).collect();
    let keys = catalog::primary_keys(client, &pk_oids).await?;
    // Before PostgreSQL 14 a `ctid` range is no scan of its own: every chunk would read the
    // whole table, so a table without a primary key is read in one piece there.
    let tid_range_scans =
        crate::server::server_num(client).await? >= crate::server::ServerInfo::num_of(14);
    let mut plans = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let include: Vec<TablePattern> = config
        .source
        .tables
        .iter()
        .filter_map(|p| TablePattern::parse(p))
        .collect();
    for r in &rows {
        let oid: u32 = r.get(0);
        let schema: String = r.get(1);
        let name: String = r.get(2);
        let root_selected = r
            .get::<_, Option<String>>(8)
            .and_then(|q| q.split_once('.').map(|(s, t)| config.table_selected(s, t)))
            .unwrap_or(false);
        if !config.table_selected(&schema, &name) && !root_selected {
            continue;
        }
        let rank = include_rank(
            &include,
            &schema,
            &name,
            r.get::<_, Option<String>>(8).as_deref(),
        );
        let identity =
            ReplicaIdentity::from_byte(r.get::<_, String>(3).bytes().next().unwrap_or(b'd'))
                .unwrap_or(ReplicaIdentity::Default);
        let relfilenode: u32 = r.get(4);
        let relkind: String = r.get(5);
        let reltuples: f64 = r.get(6);
        let blocks = r.get::<_, i64>(7).max(0) as u64;
        let qualified = format!("{schema}.{name}");
        if config.snapshot.signal_table.as_deref() == Some(qualified.as_str()) {
            // The signal table carries commands and watermarks, not data.
            continue;
        }
        let pk_names = keys.get(&oid).cloned().unwrap_or_default();
        let (columns, casts) = describe_columns(client, oid, identity, &pk_names).await?;
        let table = Arc::new(Table {
            id: oid,
            schema: schema.clone(),
            name: name.clone(),
            columns,
            replica_identity: identity,
        });
        let route = router.resolve(&table)?;
        if route.outbox.is_some() || route.skips(Op::Read) {
            tracing::info!(table = %qualified, "not snapshotted (outbox table, or reads skipped by [tables])");
            continue;
        }
        seen.insert(qualified.clone());
        let pk_idx: Vec<usize> = pk_names
            .iter()
            .filter_map(|n| table.columns.iter().position(|c| &c.name == n))
            .collect();
        let rows_per_block = if reltuples > 0.0 && blocks > 0 {
            (reltuples / blocks as f64).max(1.0)
        } else {
            DEFAULT_ROWS_PER_BLOCK
        };
        let estimated_rows = if reltuples >= 0.0 && blocks > 0 {
            reltuples as u64
        } else {
            (blocks as f64 * rows_per_block) as u64
        };
        let chunk = config.snapshot.chunk_size as u64;
        let (kind, kind_name) = if !pk_idx.is_empty() && pk_idx.len() == pk_names.len() {
            (
                KeyKind::Pk {
                    casts: pk_idx.iter().map(|&i| casts[i].clone()).collect(),
                    columns: pk_idx,
                },
                "pk",
            )
        } else if relkind == "r" && tid_range_scans {
            let step = ((chunk as f64 / rows_per_block).ceil() as u64).max(1);
            (KeyKind::Ctid { step, blocks }, "ctid")
        } else {
            (KeyKind::Whole, "whole")
        };
        let key_columns: Vec<String> = match &kind {
            KeyKind::Pk { .. } => pk_names.clone(),
            KeyKind::Ctid { .. } => vec!["ctid".into()],
            KeyKind::Whole => Vec::new(),
        };
        // Binary values cost PostgreSQL less to produce (no text rendering of numbers and
        // timestamps) and walrus less to parse; text stays for any type walrus does not
        // decode in binary, so events are the same either way.
        let binary = config.snapshot.binary_copy
            && table.columns.iter().all(|c| match &c.type_desc {
                Some(d) => crate::decoding::binary::decodes_desc(d),
                None => crate::decoding::binary::decodes(c.type_oid),
            });
        let mut select_list = table
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        if let (true, KeyKind::Pk { columns, .. }) = (binary, &kind) {
            // Aliased: a second output column named like the key would make the chunk's
            // `ORDER BY` ambiguous.
            for (n, &i) in columns.iter().enumerate() {
                select_list.push_str(&format!(
                    ", {}::text AS walrus_resume_key_{n}",
                    quote_ident(&table.columns[i].name)
                ));
            }
        }
        let from = format!("{}.{}", quote_ident(&schema), quote_ident(&name));
        // Reuse the table's saved ranges when they still describe the same relation.
        let reusable = state.tables.get(&qualified).is_some_and(|t| {
            t.oid == oid
                && t.kind == kind_name
                && t.key_columns == key_columns
                && (kind_name != "ctid" || t.relfilenode == relfilenode)
        });
        if !reusable {
            if state.tables.contains_key(&qualified) {
                tracing::warn!(table = %qualified, "table changed since the snapshot began (recreated, rewritten or re-keyed); reading it again from the start");
            }
            let parts = if workers > 1 && estimated_rows > 2 * chunk {
                ((estimated_rows / chunk) as usize).clamp(2, workers * 4)
            } else {
                1
            };
            let units = match &kind {
                KeyKind::Pk { columns, .. } => {
                    let bounds =
                        sample_bounds(client, &table, &from, columns, parts, blocks).await?;
                    key_units(bounds)
                }
                KeyKind::Ctid { step, .. } => block_units(blocks, parts, *step),
                KeyKind::Whole => vec![UnitState {
                    lower: None,
                    upper: None,
                    last: None,
                    done: false,
                }],
            };
            state.tables.insert(
                qualified.clone(),
                TableState {
                    oid,
                    relfilenode,
                    kind: kind_name.into(),
                    key_columns,
                    rows: 0,
                    done: false,
                    units,
                },
            );
        }
        tracing::info!(
            table = %qualified,
            chunks_by = kind_name,
            copy_format = if binary { "binary" } else { "text" },
            estimated_rows,
            "table planned"
        );
        plans.push((
            rank,
            TablePlan {
                qualified,
                table,
                route,
                select_list,
                binary,
                from,
                kind,
                estimated_rows,
            },
        ));
    }
    // Debezium's order: by the first `table.include.list` entry that matches, then by
    // `schema.table` (Java's string order, which is the bytes' for these names).
    plans.sort_by(|(ra, a), (rb, b)| ra.cmp(rb).then_with(|| a.qualified.cmp(&b.qualified)));
    let plans: Vec<TablePlan> = plans.into_iter().map(|(_, p)| p).collect();
    // Tables no longer published are not read.
    state.tables.retain(|k, _| seen.contains(k));
    Ok(plans)
}

/// Split points of a table's primary key, from a `TABLESAMPLE` of about 64 blocks per
/// range: `parts - 1` keys (as text), ascending, without duplicates.
pub(super) async fn sample_bounds(
    client: &Client,
    table: &Table,
    from: &str,
    key: &[usize],
    parts: usize,
    blocks: u64,
) -> Result<Vec<Vec<String>>, PgError> {
    if parts < 2 || blocks == 0 {
        return Ok(Vec::new());
    }
    let pct = (100.0 * (64 * parts) as f64 / blocks as f64).clamp(0.0001, 100.0);
    // Qualified names: a bare name in ORDER BY would sort by the text output column of
    // the same name, i.e. lexicographically, and give overlapping ranges.
    let names: Vec<String> = key
        .iter()
        .map(|&i| format!("s.{}", quote_ident(&table.columns[i].name)))
        .collect();
    let sql = format!(
        "SELECT {} FROM {from} AS s TABLESAMPLE SYSTEM ({pct}) ORDER BY {}",
        names
            .iter()
            .map(|n| format!("{n}::text"))
            .collect::<Vec<_>>()
            .join(", "),
        names.join(", ")
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(|e| PgError::sql("sampling primary keys for the snapshot", e))?;
    let sample: Vec<Vec<String>> = rows
        .iter()
        .map(|r| (0..key.len()).map(|i| r.get::<_, String>(i)).collect())
        .collect();
    let mut bounds: Vec<Vec<String>> = Vec::new();
    for p in 1..parts {
        if let Some(k) = sample.get(sample.len() * p / parts) {
            if bounds.last() != Some(k) {
                bounds.push(k.clone());
            }
        }
    }
    Ok(bounds)
}

/// Key ranges `(-inf, b0], (b0, b1], ..., (bn, +inf)`.
pub(super) fn key_units(bounds: Vec<Vec<String>>) -> Vec<UnitState> {
    let mut units = Vec::with_capacity(bounds.len() + 1);
    let mut lower = None;
    for b in bounds {
        units.push(UnitState {
            lower: lower.take(),
            upper: Some(b.clone()),
            last: None,
            done: false,
        });
        lower = Some(b);
    }
    units.push(UnitState {
        lower,
        upper: None,
        last: None,
        done: false,
    });
    units
}

/// Block ranges over `blocks` blocks, the last one open-ended (rows may sit beyond the
/// size measured when planning).
pub(super) fn block_units(blocks: u64, parts: usize, step: u64) -> Vec<UnitState> {
    let per = (blocks / parts.max(1) as u64).max(step);
    let mut units = Vec::new();
    let mut start = 0u64;
    while start + per < blocks {
        units.push(UnitState {
            lower: Some(vec![start.to_string()]),
            upper: Some(vec![(start + per).to_string()]),
            last: None,
            done: false,
        });
        start += per;
    }
    units.push(UnitState {
        lower: Some(vec![start.to_string()]),
        upper: None,
        last: None,
        done: false,
    });
    units
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_rank_by_the_first_include_pattern_that_matches() {
        let include: Vec<TablePattern> = ["public.b", "re:public\\.(a|c)", "public.*"]
            .iter()
            .filter_map(|p| TablePattern::parse(p))
            .collect();
        assert_eq!(include_rank(&include, "public", "b", None), 0);
        assert_eq!(include_rank(&include, "public", "a", None), 1);
        assert_eq!(include_rank(&include, "public", "C", None), 1);
        assert_eq!(include_rank(&include, "public", "z", None), 2);
        // A partition published on its own ranks as its root.
        assert_eq!(
            include_rank(&include, "public", "b_2024", Some("public.b")),
            0
        );
        assert_eq!(include_rank(&include, "other", "x", None), 3);
        assert_eq!(include_rank(&[], "public", "x", None), 0);
    }

    #[test]
    fn key_and_block_units_cover_everything() {
        let u = key_units(vec![vec!["10".into()], vec!["20".into()]]);
        assert_eq!(u.len(), 3);
        assert_eq!(u[0].lower, None);
        assert_eq!(u[0].upper, Some(vec!["10".to_string()]));
        assert_eq!(u[1].lower, Some(vec!["10".to_string()]));
        assert_eq!(u[2].upper, None);
        let b = block_units(100, 4, 10);
        assert_eq!(b.len(), 4);
        assert_eq!(b[0].lower, Some(vec!["0".to_string()]));
        assert_eq!(b[3].upper, None);
        assert_eq!(block_units(0, 4, 10).len(), 1);
    }
}
