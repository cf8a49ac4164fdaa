//! The driver task: on its own SQL connection, writes the low watermark, reads one chunk
//! in a snapshot that sees everything committed before it, and writes the high watermark.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::Client;
use walrus_core::event::{ReplicaIdentity, Row, Table};
use walrus_core::value::Value;

use super::signals::{WINDOW_CLOSE, WINDOW_OPEN};
use super::window::row_key;
use super::INVISIBLE_GRACE;
use crate::conn::ConnParams;
use crate::decoding::text;
use crate::error::PgError;
use crate::operations::setup::{quote_ident, quote_literal};

/// One chunk to read, from the session to the driver.
#[derive(Clone, Debug)]
pub(super) struct ChunkRequest {
    pub(super) window: String,
    pub(super) table: String,
    pub(super) filter: Option<String>,
    pub(super) last: Option<Vec<String>>,
    pub(super) max: Option<Vec<String>>,
    pub(super) chunk_size: usize,
    /// Describe the table anew (its columns changed since the driver described it).
    pub(super) refresh: bool,
}

/// A chunk read between the watermarks, waiting for the high one.
#[derive(Debug)]
pub(super) struct Chunk {
    pub(super) table: Arc<Table>,
    /// The rows with their comparison keys ([`row_key`]).
    pub(super) rows: Vec<(String, Row)>,
    /// Key of the last row read; `None` when the chunk was empty.
    pub(super) last: Option<Vec<String>>,
    /// The table's maximum key (computed for the first chunk).
    pub(super) max: Vec<String>,
    /// Nothing is left to read after this chunk.
    pub(super) done: bool,
    /// `table` was read from the catalog for this chunk (not reused).
    pub(super) fresh: bool,
}

/// What the driver answers.
#[derive(Debug)]
pub(super) enum ChunkResult {
    /// Rows read between the watermarks.
    Rows { window: String, chunk: Chunk },
    /// Nothing to read: the table (or what is left of it below its maximum key) is empty.
    Empty { window: String },
    /// The table cannot be snapshotted incrementally; the message says why and the fix.
    Refused { window: String, message: String },
    /// A transient failure; the chunk is asked for again.
    Failed { window: String, message: String },
}

/// Why a chunk was not read.
pub(super) enum ReadError {
    /// The table cannot be snapshotted incrementally (message: why, and the fix).
    Refused(String),
    /// Anything else; worth another try.
    Failed(PgError),
}

impl From<PgError> for ReadError {
    fn from(e: PgError) -> Self {
        ReadError::Failed(e)
    }
}

/// A table as the driver reads it.
pub(super) struct Described {
    pub(super) table: Arc<Table>,
    /// Primary-key column names in key order, quoted.
    pub(super) key_names: Vec<String>,
    /// Their SQL types, for casting key literals.
    pub(super) key_casts: Vec<String>,
    /// Their indexes in the table's columns, in key order.
    pub(super) key_indexes: Vec<usize>,
    pub(super) from: String,
    pub(super) select_list: String,
    /// The columns' names and types as one string ([`shape_sql`]), to notice DDL.
    pub(super) shape: String,
}

/// SQL for a fingerprint of table `oid`'s columns (names, types, modifiers, in order), as
/// seen by the current snapshot.
pub(super) fn shape_sql(oid: u32) -> String {
    format!(
        "(SELECT string_agg(a.attname || ':' || a.atttypid || ':' || a.atttypmod, ',' ORDER BY a.attnum)
            FROM pg_attribute a
           WHERE a.attrelid = {oid} AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '')"
    )
}

pub(super) async fn describe(
    client: &Client,
    schema: &str,
    name: &str,
) -> Result<Described, ReadError> {
    let row = client
        .query_opt(
            "SELECT c.oid, c.relreplident::text FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&schema, &name],
        )
        .await
        .map_err(|e| PgError::sql("looking up a table for the incremental snapshot", e))?;
    let Some(row) = row else {
        return Err(ReadError::Refused(
            "no such table; name an existing table as schema.table".into(),
        ));
    };
    let oid: u32 = row.get(0);
    let identity =
        ReplicaIdentity::from_byte(row.get::<_, String>(1).bytes().next().unwrap_or(b'd'))
            .unwrap_or(ReplicaIdentity::Default);
    let pk = crate::decoding::catalog::primary_keys(client, &[oid])
        .await?
        .remove(&oid)
        .unwrap_or_default();
    if pk.is_empty() {
        return Err(ReadError::Refused(format!(
            "it has no primary key, and incremental snapshots read and match rows by primary key; add one (ALTER TABLE {}.{} ADD PRIMARY KEY (...)), or re-read the table with an initial snapshot ([snapshot] mode = \"always\"), which reads keyless tables by ctid",
            quote_ident(schema),
            quote_ident(name)
        )));
    }
    let (columns, casts) =
        crate::decoding::catalog::describe_columns(client, oid, identity, &pk).await?;
    let mut key_indexes = Vec::with_capacity(pk.len());
    for k in &pk {
        match columns.iter().position(|c| &c.name == k) {
            Some(i) => key_indexes.push(i),
            None => {
                return Err(ReadError::Refused(format!(
                    "primary-key column {k:?} is generated or unreadable"
                )))
            }
        }
    }
    let select_list = columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let shape: Option<String> = client
        .query_one(&format!("SELECT {}", shape_sql(oid)), &[])
        .await
        .map_err(|e| PgError::sql("reading a table's columns", e))?
        .get(0);
    Ok(Described {
        shape: shape.unwrap_or_default(),
        key_names: pk.iter().map(|k| quote_ident(k)).collect(),
        key_casts: key_indexes.iter().map(|&i| casts[i].clone()).collect(),
        key_indexes,
        table: Arc::new(Table {
            id: oid,
            schema: schema.to_string(),
            name: name.to_string(),
            columns,
            replica_identity: identity,
        }),
        from: format!("{}.{}", quote_ident(schema), quote_ident(name)),
        select_list,
    })
}

impl Described {
    /// `(a, b)` or `a`.
    pub(super) fn key_expr(&self) -> String {
        if self.key_names.len() == 1 {
            self.key_names[0].clone()
        } else {
            format!("({})", self.key_names.join(", "))
        }
    }

    /// A key literal with casts: `'1'::integer` or `('a'::text, '2'::integer)`.
    pub(super) fn key_literal(&self, key: &[String]) -> String {
        let lits: Vec<String> = key
            .iter()
            .zip(&self.key_casts)
            .map(|(k, t)| format!("{}::{t}", quote_literal(k)))
            .collect();
        if lits.len() == 1 {
            lits[0].clone()
        } else {
            format!("({})", lits.join(", "))
        }
    }
}

/// Reads chunks as the session asks, until the session is gone.
pub(super) async fn drive(
    params: ConnParams,
    signal: String,
    mut requests: mpsc::UnboundedReceiver<ChunkRequest>,
    results: mpsc::UnboundedSender<ChunkResult>,
) {
    let mut client: Option<Client> = None;
    // Table descriptions, reused from chunk to chunk; dropped on any failure and renewed
    // when the session finds the columns changed.
    let mut described: std::collections::HashMap<String, Arc<Described>> =
        std::collections::HashMap::new();
    while let Some(req) = requests.recv().await {
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = match connect(&params).await {
                Ok(c) => Some(c),
                Err(e) => {
                    let _ = results.send(ChunkResult::Failed {
                        window: req.window.clone(),
                        message: e.to_string(),
                    });
                    continue;
                }
            };
        }
        let Some(c) = &client else { continue };
        let window = req.window.clone();
        let answer = match read_chunk(c, &signal, &req, &results, &mut described).await {
            Ok(None) => continue,
            Ok(Some(answer)) => answer,
            Err(ReadError::Refused(message)) => ChunkResult::Refused { window, message },
            Err(ReadError::Failed(e)) => {
                // A broken transaction or connection: start clean next time.
                let _ = c.batch_execute("ROLLBACK").await;
                described.clear();
                ChunkResult::Failed {
                    window,
                    message: e.to_string(),
                }
            }
        };
        if results.send(answer).is_err() {
            break;
        }
    }
}

/// The driver's SQL connection. Its commits flush the WAL at once even where
/// `synchronous_commit` is off: the walsender sends only flushed WAL, so a watermark
/// waiting for the WAL writer (`wal_writer_delay`, 200 ms by default) would hold up every
/// chunk by that much.
pub(super) async fn connect(params: &ConnParams) -> Result<Client, PgError> {
    let client = params.connect_sql().await?;
    client
        .batch_execute("SET synchronous_commit TO on")
        .await
        .map_err(|e| PgError::sql("setting synchronous_commit for the watermarks", e))?;
    Ok(client)
}

/// One chunk between two watermarks. The rows go to the session *before* the high
/// watermark is written (`Ok(None)` then); other answers are returned.
pub(super) async fn read_chunk(
    client: &Client,
    signal: &str,
    req: &ChunkRequest,
    results: &mpsc::UnboundedSender<ChunkResult>,
    described: &mut std::collections::HashMap<String, Arc<Described>>,
) -> Result<Option<ChunkResult>, ReadError> {
    let mut fresh = false;
    let mut d = match described.get(&req.table) {
        Some(d) if !req.refresh => d.clone(),
        _ => {
            fresh = true;
            let (schema, name) = req.table.split_once('.').unwrap_or(("public", &req.table));
            let d = Arc::new(describe(client, schema, name).await?);
            described.insert(req.table.clone(), d.clone());
            d
        }
    };
    let filter = req.filter.as_deref().map(|f| format!("({f})"));
    let max = match &req.max {
        Some(m) => m.clone(),
        None => {
            // Aliased: ORDER BY "id" would otherwise sort the text output column.
            let cols: Vec<String> = d
                .key_names
                .iter()
                .enumerate()
                .map(|(i, k)| format!("{k}::text AS walrus_key_{i}"))
                .collect();
            let desc: Vec<String> = d.key_names.iter().map(|k| format!("{k} DESC")).collect();
            let sql = format!(
                "SELECT {} FROM {}{} ORDER BY {} LIMIT 1",
                cols.join(", "),
                d.from,
                filter
                    .as_deref()
                    .map(|f| format!(" WHERE {f}"))
                    .unwrap_or_default(),
                desc.join(", ")
            );
            let row = client.query_opt(&sql, &[]).await.map_err(|e| {
                PgError::sql(format!("reading the largest key of {}", req.table), e)
            })?;
            match row {
                Some(r) => (0..d.key_names.len())
                    .map(|i| r.get::<_, String>(i))
                    .collect(),
                None => {
                    return Ok(Some(ChunkResult::Empty {
                        window: req.window.clone(),
                    }))
                }
            }
        }
    };
    if req.last.as_ref() == Some(&max) {
        return Ok(Some(ChunkResult::Empty {
            window: req.window.clone(),
        }));
    }
    let open_id = format!("{}-open", req.window);
    let close_id = format!("{}-close", req.window);
    let data = serde_json::json!({ "table": req.table, "oid": d.table.id }).to_string();
    let insert = |id: &str, kind: &str| {
        format!(
            "INSERT INTO {signal} (id, type, data) VALUES ({}, {}, {})",
            quote_literal(id),
            quote_literal(kind),
            quote_literal(&data)
        )
    };
    // One round trip: the low watermark, committed, then a snapshot taken after it. (With
    // explicit BEGIN/COMMIT a multi-statement query is not one implicit transaction.)
    let messages = client
        .simple_query(&format!(
            "BEGIN; {}; COMMIT; SELECT pg_current_snapshot()::text",
            insert(&open_id, WINDOW_OPEN)
        ))
        .await
        .map_err(|e| PgError::sql("writing the low watermark into the signal table", e))?;
    let after_low = first_value(&messages).ok_or_else(|| {
        ReadError::Failed(PgError::Protocol {
            lsn: walrus_core::Lsn::ZERO,
            message: "pg_current_snapshot() returned no row".into(),
        })
    })?;
    let low_at = Instant::now();
    // Wait until every transaction that was running when the low watermark committed is
    // visible (or aborted) in the chunk's snapshot: see the module docs. The transaction
    // that passes the check reads the chunk.
    let mut retry = "";
    loop {
        let past_grace = low_at.elapsed() >= INVISIBLE_GRACE;
        let messages = client
            .simple_query(&format!(
                "{retry}BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
                 SELECT (SELECT count(*) FROM pg_snapshot_xip({}::pg_snapshot) x
                          WHERE NOT pg_visible_in_snapshot(x, pg_current_snapshot())
                            AND pg_xact_status(x) IS DISTINCT FROM 'aborted'
                            AND NOT ({past_grace} AND pg_xact_status(x) IS NOT DISTINCT FROM 'in progress')),
                        {}",
                quote_literal(&after_low),
                shape_sql(d.table.id)
            ))
            .await
            .map_err(|e| PgError::sql("checking the chunk's snapshot", e))?;
        let row = messages.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        });
        let shape = row.and_then(|r| r.get(1)).unwrap_or_default();
        if shape != d.shape {
            // DDL since the table was described: describe it as this snapshot will see it.
            client
                .batch_execute("ROLLBACK")
                .await
                .map_err(|e| PgError::sql("retrying the chunk's snapshot", e))?;
            let (schema, name) = req.table.split_once('.').unwrap_or(("public", &req.table));
            d = Arc::new(describe(client, schema, name).await?);
            described.insert(req.table.clone(), d.clone());
            fresh = true;
            retry = "";
            continue;
        }
        if row.and_then(|r| r.get(0)) == Some("0") {
            break;
        }
        retry = "ROLLBACK; ";
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let key = d.key_expr();
    let mut conds = vec![format!("{key} <= {}", d.key_literal(&max))];
    if let Some(last) = &req.last {
        conds.push(format!("{key} > {}", d.key_literal(last)));
    }
    if let Some(f) = &filter {
        conds.push(f.clone());
    }
    let sql = format!(
        "COPY (SELECT {} FROM {} WHERE {} ORDER BY {} LIMIT {}) TO STDOUT",
        d.select_list,
        d.from,
        conds.join(" AND "),
        d.key_names.join(", "),
        req.chunk_size
    );
    let (rows, last) = copy_rows(client, &d, &req.table, &sql).await?;
    tracing::debug!(%sql, rows = rows.len(), last = ?last, "chunk read");
    let done = rows.len() < req.chunk_size || last.as_ref() == Some(&max);
    let chunk = Chunk {
        table: d.table.clone(),
        rows,
        last,
        max,
        done,
        fresh,
    };
    if results
        .send(ChunkResult::Rows {
            window: req.window.clone(),
            chunk,
        })
        .is_err()
    {
        return Ok(None);
    }
    // One round trip: end the read, write the high watermark, and delete both watermark
    // rows (they are in the WAL now; the table need not keep them).
    client
        .batch_execute(&format!(
            "COMMIT; BEGIN; {}; COMMIT; DELETE FROM {signal} WHERE id IN ({}, {})",
            insert(&close_id, WINDOW_CLOSE),
            quote_literal(&open_id),
            quote_literal(&close_id)
        ))
        .await
        .map_err(|e| PgError::sql("writing the high watermark into the signal table", e))?;
    Ok(None)
}

/// The first column of the first row in a simple query's answer.
pub(super) fn first_value(messages: &[tokio_postgres::SimpleQueryMessage]) -> Option<String> {
    messages.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    })
}

/// Runs the chunk's `COPY` and parses its rows; returns them with their comparison keys,
/// and the key texts (key order) of the last one.
pub(super) async fn copy_rows(
    client: &Client,
    d: &Described,
    qualified: &str,
    sql: &str,
) -> Result<(Vec<(String, Row)>, Option<Vec<String>>), ReadError> {
    let stream = client
        .copy_out(sql)
        .await
        .map_err(|e| PgError::sql(format!("reading a chunk of {qualified}"), e))?;
    let mut stream = std::pin::pin!(stream);
    let mut rows = Vec::new();
    let mut carry: Vec<u8> = Vec::new();
    let mut fields = Vec::with_capacity(d.table.columns.len());
    let mut last = None;
    while let Some(data) = stream.next().await {
        let data = data.map_err(|e| PgError::sql(format!("reading a chunk of {qualified}"), e))?;
        carry.extend_from_slice(&data);
        let mut start = 0;
        while let Some(nl) = carry[start..].iter().position(|&b| b == b'\n') {
            let line = &carry[start..start + nl];
            start += nl + 1;
            crate::snapshots::copy::split_fields(line, &mut fields);
            if fields.len() != d.table.columns.len() {
                return Err(ReadError::Failed(PgError::Snapshot {
                    table: qualified.to_string(),
                    message: format!(
                        "COPY returned {} columns, expected {}",
                        fields.len(),
                        d.table.columns.len()
                    ),
                }));
            }
            let mut values = Vec::with_capacity(fields.len());
            for (&(s, e), col) in fields.iter().zip(&d.table.columns) {
                let raw = &line[s..e];
                if raw == b"\\N" {
                    values.push(Value::Null);
                    continue;
                }
                let text = crate::snapshots::copy::unescape(raw);
                let (value, err) = match &col.type_desc {
                    Some(desc) => text::parse_text_desc_or_text(desc, &text),
                    None => text::parse_text_or_text(col.type_oid, &text),
                };
                if let Some(err) = err {
                    tracing::warn!(table = %qualified, column = %col.name, error = %err, "value kept as text");
                }
                values.push(value);
            }
            let key_text: Vec<String> = d
                .key_indexes
                .iter()
                .map(|&i| {
                    let (s, e) = fields[i];
                    String::from_utf8_lossy(&crate::snapshots::copy::unescape(&line[s..e]))
                        .into_owned()
                })
                .collect();
            let row = Row {
                values,
                key_only: false,
            };
            let Some(key) = row_key(&d.table, &row) else {
                return Err(ReadError::Failed(PgError::Snapshot {
                    table: qualified.to_string(),
                    message: "a primary-key column is NULL".into(),
                }));
            };
            rows.push((key, row));
            last = Some(key_text);
        }
        carry.drain(..start);
    }
    Ok((rows, last))
}
