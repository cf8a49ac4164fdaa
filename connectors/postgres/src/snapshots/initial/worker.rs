//! The worker pool: each worker imports the snapshot on its own connection and reads units
//! chunk by chunk with `COPY (SELECT ...) TO STDOUT` (binary or text), turning rows into
//! encoded records that it hands to the coordinator.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::Client;
use walrus_core::emit::Emitter;
use walrus_core::event::{ChangeEvent, Op, Row, SourcePosition};
use walrus_core::sink::Record;
use walrus_core::value::Value;

use super::plan::{KeyKind, TablePlan};
use super::state::UnitState;
use super::BATCH_RECORDS;
use crate::decoding::text;
use crate::error::PgError;
use crate::operations::setup::{quote_ident, quote_literal};
use crate::snapshots::copy::{memchr, split_fields, unescape, BinaryRows, FieldRanges};

pub(super) struct WorkItem {
    pub(super) table: usize,
    pub(super) unit: usize,
    pub(super) state: UnitState,
}

/// What a worker hands to the coordinator: encoded records of one table, and, at the end
/// of a chunk, where the chunk ended.
pub(super) struct Piece {
    pub(super) table: usize,
    pub(super) unit: usize,
    pub(super) records: Vec<Record>,
    /// The events of the first and the last record, which the coordinator encodes again
    /// when it learns that one is the table's first or last row (`source.snapshot`).
    pub(super) first: Option<ChangeEvent>,
    pub(super) last: Option<ChangeEvent>,
    pub(super) rows: u64,
    /// Set on the last piece of a chunk.
    pub(super) chunk_end: Option<ChunkEnd>,
}

#[derive(Clone, Debug)]
pub(super) struct ChunkEnd {
    /// The new resume position of the unit.
    pub(super) last: Option<Vec<String>>,
    /// The unit is complete.
    pub(super) unit_done: bool,
}

pub(super) struct Worker {
    pub(super) client: Client,
    pub(super) plans: Arc<Vec<TablePlan>>,
    pub(super) queue: Arc<Mutex<VecDeque<WorkItem>>>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) tx: mpsc::Sender<Piece>,
    /// Routes and encodes rows (`walrus_core::emit`), as streaming does.
    pub(super) emitter: Emitter,
    pub(super) chunk_size: usize,
    pub(super) position: SourcePosition,
}

/// Rows of a chunk not yet handed over: their records, and the events of the first and
/// the last (see [`Piece`]).
#[derive(Default)]
pub(super) struct PendingRows {
    pub(super) records: Vec<Record>,
    pub(super) first: Option<ChangeEvent>,
    pub(super) last: Option<ChangeEvent>,
    pub(super) rows: u64,
}

impl PendingRows {
    fn with_capacity(n: usize) -> PendingRows {
        PendingRows {
            records: Vec::with_capacity(n),
            ..PendingRows::default()
        }
    }
}

impl Worker {
    pub(super) async fn run(mut self) -> Result<(), PgError> {
        let stop = self.stop.clone();
        let result = self.read_all().await;
        if result.is_err() {
            // The others stop too; the next session resumes from what was delivered.
            stop.store(true, Ordering::SeqCst);
        }
        result
    }

    pub(super) async fn read_all(&mut self) -> Result<(), PgError> {
        loop {
            let item = match self.queue.lock() {
                Ok(mut q) => q.pop_front(),
                Err(_) => None,
            };
            let Some(item) = item else { break };
            if !self.read_unit(item).await? {
                break;
            }
        }
        // Ends the read-only transaction; the snapshot is released.
        let _ = self.client.batch_execute("COMMIT").await;
        Ok(())
    }

    /// Reads a unit chunk by chunk; `false` when the coordinator is gone or a stop was
    /// asked.
    pub(super) async fn read_unit(&mut self, item: WorkItem) -> Result<bool, PgError> {
        let plans = self.plans.clone();
        let plan = &plans[item.table];
        let mut last = item.state.last.clone().or(item.state.lower.clone());
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(false);
            }
            let (sql, open_end) = chunk_query(plan, &item.state, last.as_ref(), self.chunk_size);
            let (rows, key) = match self.copy_chunk(plan, item.table, item.unit, &sql).await? {
                Some(r) => r,
                None => return Ok(false),
            };
            let (next, done) = match &plan.kind {
                KeyKind::Pk { .. } => {
                    let done = rows < self.chunk_size as u64;
                    (if rows > 0 { key } else { last.clone() }, done)
                }
                KeyKind::Ctid { step, .. } => {
                    let start = block_of(last.as_ref());
                    let next = start + step;
                    (Some(vec![next.to_string()]), open_end)
                }
                KeyKind::Whole => (None, true),
            };
            let end = Piece {
                table: item.table,
                unit: item.unit,
                records: Vec::new(),
                first: None,
                last: None,
                rows: 0,
                chunk_end: Some(ChunkEnd {
                    last: next.clone(),
                    unit_done: done,
                }),
            };
            if self.tx.send(end).await.is_err() {
                return Ok(false);
            }
            if done {
                return Ok(true);
            }
            last = next;
        }
    }

    /// Runs one `COPY ... TO STDOUT` and sends its rows as records. Returns the number of
    /// rows and the key texts of the last row (primary-key tables); `None` when the
    /// coordinator is gone.
    pub(super) async fn copy_chunk(
        &mut self,
        plan: &TablePlan,
        table_idx: usize,
        unit: usize,
        sql: &str,
    ) -> Result<Option<(u64, Option<Vec<String>>)>, PgError> {
        if plan.binary {
            return self.copy_chunk_binary(plan, table_idx, unit, sql).await;
        }
        let stream = self
            .client
            .copy_out(sql)
            .await
            .map_err(|e| PgError::sql(format!("reading {} (COPY)", plan.qualified), e))?;
        let mut stream = std::pin::pin!(stream);
        let mut pending = PendingRows::with_capacity(BATCH_RECORDS);
        let mut rows = 0u64;
        let mut carry: Vec<u8> = Vec::new();
        let mut last_line: Option<Bytes> = None;
        let mut fields: Vec<(usize, usize)> = Vec::with_capacity(plan.table.columns.len());
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| PgError::sql(format!("reading {} (COPY)", plan.qualified), e))?;
            // One CopyData message per row in practice; a row split across messages is
            // joined here.
            let data: Bytes = if carry.is_empty() {
                chunk
            } else {
                carry.extend_from_slice(&chunk);
                Bytes::from(std::mem::take(&mut carry))
            };
            let mut start = 0;
            while let Some(nl) = memchr(b'\n', &data[start..]) {
                let line = data.slice(start..start + nl);
                start += nl + 1;
                self.row_record(plan, &line, &mut fields, &mut pending)?;
                rows += 1;
                last_line = Some(line);
                if pending.records.len() >= BATCH_RECORDS {
                    let full =
                        std::mem::replace(&mut pending, PendingRows::with_capacity(BATCH_RECORDS));
                    if !self.send_rows(table_idx, unit, full).await {
                        return Ok(None);
                    }
                }
            }
            if start < data.len() {
                carry.extend_from_slice(&data[start..]);
            }
        }
        if !pending.records.is_empty() && !self.send_rows(table_idx, unit, pending).await {
            return Ok(None);
        }
        let key = match (&plan.kind, last_line) {
            (KeyKind::Pk { columns, .. }, Some(line)) => {
                split_fields(&line, &mut fields);
                let mut key = Vec::with_capacity(columns.len());
                for &i in columns {
                    let (s, e) = fields[i];
                    let raw = &line[s..e];
                    if raw == b"\\N" {
                        return Err(PgError::Snapshot {
                            table: plan.qualified.clone(),
                            message: "a primary-key column is NULL".into(),
                        });
                    }
                    key.push(String::from_utf8_lossy(&unescape(raw)).into_owned());
                }
                Some(key)
            }
            _ => None,
        };
        Ok(Some((rows, key)))
    }

    /// Hands rows of a chunk to the coordinator; false when it is gone.
    pub(super) async fn send_rows(&mut self, table: usize, unit: usize, rows: PendingRows) -> bool {
        let piece = Piece {
            table,
            unit,
            records: rows.records,
            first: rows.first,
            last: rows.last,
            rows: rows.rows,
            chunk_end: None,
        };
        self.tx.send(piece).await.is_ok()
    }

    /// [`Self::copy_chunk`] for `COPY ... (FORMAT binary)`: the same records, with values
    /// decoded from their binary format and the resume key from the trailing text columns.
    pub(super) async fn copy_chunk_binary(
        &mut self,
        plan: &TablePlan,
        table_idx: usize,
        unit: usize,
        sql: &str,
    ) -> Result<Option<(u64, Option<Vec<String>>)>, PgError> {
        let read_err = |e| PgError::sql(format!("reading {} (COPY)", plan.qualified), e);
        let stream = self.client.copy_out(sql).await.map_err(read_err)?;
        let mut stream = std::pin::pin!(stream);
        let mut pending = PendingRows::with_capacity(BATCH_RECORDS);
        let mut rows = 0u64;
        let mut parser = BinaryRows::default();
        let mut fields: FieldRanges = Vec::new();
        let mut last_row: Option<(Bytes, FieldRanges)> = None;
        let ncols = plan.table.columns.len();
        let bad = |message: String| PgError::Snapshot {
            table: plan.qualified.clone(),
            message,
        };
        while let Some(chunk) = stream.next().await {
            parser.push(&chunk.map_err(read_err)?);
            while let Some(row) = parser.next_row(&mut fields).map_err(bad)? {
                if fields.len() < ncols {
                    return Err(bad(format!(
                        "COPY returned {} columns, expected {ncols}",
                        fields.len()
                    )));
                }
                let mut values = Vec::with_capacity(ncols);
                for (field, col) in fields.iter().zip(&plan.table.columns) {
                    let Some((s, e)) = *field else {
                        values.push(Value::Null);
                        continue;
                    };
                    let (value, err) = crate::decoding::binary::parse_binary_or_hex(
                        col.type_desc.as_deref(),
                        col.type_oid,
                        &row[s..e],
                    );
                    if let Some(err) = err {
                        tracing::warn!(table = %plan.qualified, column = %col.name, error = %err, "binary value kept as hex text");
                    }
                    values.push(value);
                }
                self.encode_row(plan, values, &mut pending)?;
                rows += 1;
                if pending.records.len() >= BATCH_RECORDS {
                    let full =
                        std::mem::replace(&mut pending, PendingRows::with_capacity(BATCH_RECORDS));
                    if !self.send_rows(table_idx, unit, full).await {
                        return Ok(None);
                    }
                }
                last_row = Some((row, fields.clone()));
            }
        }
        if !parser.is_finished() {
            return Err(bad("binary COPY stream ended early".into()));
        }
        if !pending.records.is_empty() && !self.send_rows(table_idx, unit, pending).await {
            return Ok(None);
        }
        let key = match (&plan.kind, last_row) {
            (KeyKind::Pk { columns, .. }, Some((row, fields))) => {
                let mut key = Vec::with_capacity(columns.len());
                for field in &fields[ncols..] {
                    let Some((s, e)) = *field else {
                        return Err(bad("a primary-key column is NULL".into()));
                    };
                    key.push(String::from_utf8_lossy(&row[s..e]).into_owned());
                }
                if key.len() != columns.len() {
                    return Err(bad(format!(
                        "COPY returned {} key columns, expected {}",
                        key.len(),
                        columns.len()
                    )));
                }
                Some(key)
            }
            _ => None,
        };
        Ok(Some((rows, key)))
    }

    /// Parses one COPY text line into a read event and encodes it into `pending`.
    pub(super) fn row_record(
        &mut self,
        plan: &TablePlan,
        line: &[u8],
        fields: &mut Vec<(usize, usize)>,
        pending: &mut PendingRows,
    ) -> Result<(), PgError> {
        split_fields(line, fields);
        let table = &plan.table;
        if fields.len() != table.columns.len() {
            return Err(PgError::Snapshot {
                table: plan.qualified.clone(),
                message: format!(
                    "COPY returned {} columns, expected {}",
                    fields.len(),
                    table.columns.len()
                ),
            });
        }
        let mut values = Vec::with_capacity(fields.len());
        for (&(s, e), col) in fields.iter().zip(&table.columns) {
            let raw = &line[s..e];
            if raw == b"\\N" {
                values.push(Value::Null);
                continue;
            }
            let text = unescape(raw);
            let (value, err) = match &col.type_desc {
                Some(desc) => text::parse_text_desc_or_text(desc, &text),
                None => text::parse_text_or_text(col.type_oid, &text),
            };
            if let Some(err) = err {
                tracing::warn!(table = %plan.qualified, column = %col.name, error = %err, "value kept as text");
            }
            values.push(value);
        }
        self.encode_row(plan, values, pending)
    }

    /// Encodes a row's values as a read event's record into `pending`.
    pub(super) fn encode_row(
        &mut self,
        plan: &TablePlan,
        values: Vec<Value>,
        pending: &mut PendingRows,
    ) -> Result<(), PgError> {
        let ev = ChangeEvent {
            op: Op::Read,
            table: Some(plan.table.clone()),
            before: None,
            after: Some(Row {
                values,
                key_only: false,
            }),
            source: self.position.clone(),
            message: None,
        };
        let emitted = self
            .emitter
            .emit_routed(&plan.route, &ev, &mut pending.records)?;
        if emitted.records != 1 {
            // Planning leaves out tables whose reads are skipped and outbox tables, so
            // every row is one record; the coordinator's marking relies on it.
            return Err(PgError::Snapshot {
                table: plan.qualified.clone(),
                message: format!("a row became {} records, expected 1", emitted.records),
            });
        }
        pending.rows += 1;
        if pending.first.is_none() {
            pending.first = Some(ev.clone());
        }
        pending.last = Some(ev);
        Ok(())
    }
}

/// The block number in a `ctid` position (`["123"]`); 0 when none.
pub(super) fn block_of(pos: Option<&Vec<String>>) -> u64 {
    pos.and_then(|v| v.first())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The `COPY` statement of the next chunk of a unit, and whether it reads to the unit's
/// end (`ctid` units).
pub(super) fn chunk_query(
    plan: &TablePlan,
    unit: &UnitState,
    last: Option<&Vec<String>>,
    chunk_size: usize,
) -> (String, bool) {
    let mut sql = format!("COPY (SELECT {} FROM {}", plan.select_list, plan.from);
    let mut open_end = false;
    match &plan.kind {
        KeyKind::Pk { columns, casts } => {
            let names: Vec<String> = columns
                .iter()
                .map(|&i| quote_ident(&plan.table.columns[i].name))
                .collect();
            let tuple = |key: &Vec<String>| -> String {
                let lits: Vec<String> = key
                    .iter()
                    .zip(casts)
                    .map(|(k, t)| format!("{}::{t}", quote_literal(k)))
                    .collect();
                if lits.len() == 1 {
                    lits[0].clone()
                } else {
                    format!("({})", lits.join(", "))
                }
            };
            let lhs = if names.len() == 1 {
                names[0].clone()
            } else {
                format!("({})", names.join(", "))
            };
            let mut conds = Vec::new();
            if let Some(k) = last {
                conds.push(format!("{lhs} > {}", tuple(k)));
            }
            if let Some(u) = &unit.upper {
                conds.push(format!("{lhs} <= {}", tuple(u)));
            }
            if !conds.is_empty() {
                sql.push_str(" WHERE ");
                sql.push_str(&conds.join(" AND "));
            }
            sql.push_str(&format!(
                " ORDER BY {} LIMIT {chunk_size}",
                names.join(", ")
            ));
        }
        KeyKind::Ctid { step, blocks } => {
            let start = block_of(last);
            let end = start + step;
            match unit.upper.as_ref().map(|u| block_of(Some(u))) {
                Some(h) if end >= h => {
                    sql.push_str(&format!(
                        " WHERE ctid >= '({start},0)'::tid AND ctid < '({h},0)'::tid"
                    ));
                    open_end = true;
                }
                // The last range ends with an open query once past the size measured when
                // planning (the relation may have grown; rows beyond are invisible to the
                // snapshot but cost nothing to skip).
                None if end >= *blocks => {
                    sql.push_str(&format!(" WHERE ctid >= '({start},0)'::tid"));
                    open_end = true;
                }
                _ => sql.push_str(&format!(
                    " WHERE ctid >= '({start},0)'::tid AND ctid < '({end},0)'::tid"
                )),
            }
        }
        KeyKind::Whole => open_end = true,
    }
    sql.push_str(if plan.binary {
        ") TO STDOUT (FORMAT binary)"
    } else {
        ") TO STDOUT"
    });
    (sql, open_end)
}
