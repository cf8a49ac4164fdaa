//! Outbox housekeeping: deleting rows of a keep-rows outbox table once the broker has
//! confirmed the messages made from them.
//!
//! The recommended outbox practice needs none of this: the application inserts the outbox
//! row and deletes it in the same transaction, so the table stays empty while the WAL still
//! carries the insert, which is all walrus reads (see `docs/outbox.md`). Applications that
//! keep their rows instead set `delete_after_delivery = true` on the `[[outbox]]` table,
//! and this task deletes them for them:
//!
//! ```text
//!  source (emit) ──(record seq, table, id)──▶ DeleteQueue ──▶ housekeeping task
//!                                                              │ every delete_interval_ms:
//!  sink ──▶ Delivered counter ────────────────────────────────▶│ ids with seq ≤ delivered
//!                                                              ▼
//!                          DELETE FROM <outbox> WHERE id = ANY($1)  (own SQL connection)
//! ```
//!
//! Only rows whose record the sink reported delivered (a contiguous prefix: this record and
//! every one before it) are deleted, so a row is never deleted before its message is in
//! Kafka. A crash between the broker's confirmation and the delete leaves the row in place
//! for the next pass of the next session (the insert is re-sent from the WAL if it was not
//! yet confirmed to PostgreSQL, and deleted after that delivery). The deletes themselves
//! are outbox deletes, which the outbox router ignores. A failed delete is logged and
//! retried on the next pass; it never stops replication.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use walrus_core::router::OutboxConfig;
use walrus_core::sink::Delivered;

use crate::conn::ConnParams;
use crate::operations::setup::quote_ident;

/// A delivered-then-delete entry: the record's sequence number, the outbox table's index in
/// the housekeeping list, and the row's id as text.
type Entry = (u64, usize, String);

/// Rows waiting for their record to be delivered, oldest first. Shared between the source
/// (which pushes) and the housekeeping task (which pops and deletes).
#[derive(Clone, Debug, Default)]
pub struct DeleteQueue {
    inner: Arc<Mutex<VecDeque<Entry>>>,
    tables: Arc<Vec<String>>,
}

impl DeleteQueue {
    /// A queue for the outbox tables with `delete_after_delivery`; `None` when there are
    /// none.
    pub fn for_tables<'a>(outboxes: impl Iterator<Item = &'a OutboxConfig>) -> Option<Self> {
        let tables: Vec<String> = outboxes
            .filter(|o| o.delete_after_delivery)
            .map(|o| o.table.clone())
            .collect();
        (!tables.is_empty()).then(|| DeleteQueue {
            inner: Arc::default(),
            tables: Arc::new(tables),
        })
    }

    /// Notes that the record with sequence number `seq` carries row `id` of `table`.
    pub fn push(&self, seq: u64, table: &str, id: String) {
        if let Some(i) = self.tables.iter().position(|t| t == table) {
            self.inner
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_back((seq, i, id));
        }
    }

    /// Removes and returns the entries whose records are delivered.
    fn take_delivered(&self, delivered: u64) -> Vec<Entry> {
        let mut q = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let n = q.iter().take_while(|(seq, _, _)| *seq <= delivered).count();
        q.drain(..n).collect()
    }

    /// Puts entries back at the front (a delete failed).
    fn put_back(&self, entries: Vec<Entry>) {
        let mut q = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for e in entries.into_iter().rev() {
            q.push_front(e);
        }
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Runs housekeeping until `stop` turns true, then makes one last pass.
pub async fn run(
    params: ConnParams,
    queue: DeleteQueue,
    delivered: Delivered,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut sql: Option<tokio_postgres::Client> = None;
    let mut id_types: Vec<Option<String>> = vec![None; queue.tables.len()];
    let mut stopping = false;
    loop {
        if !stopping {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                changed = stop.changed() => {
                    // A dropped sender is a stop too.
                    stopping = changed.is_err() || *stop.borrow();
                }
            }
        }
        let entries = queue.take_delivered(delivered.get());
        if !entries.is_empty() {
            if sql.is_none() {
                match params.connect_sql().await {
                    Ok(c) => sql = Some(c),
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox housekeeping: cannot connect; retrying");
                    }
                }
            }
            let ok = match &sql {
                Some(c) => delete(c, &queue.tables, &mut id_types, &entries).await,
                None => false,
            };
            if !ok {
                sql = None;
                queue.put_back(entries);
            }
        }
        if stopping {
            return;
        }
    }
}

/// Deletes the rows of `entries`, grouped by table. Returns false (and logs) on failure.
async fn delete(
    sql: &tokio_postgres::Client,
    tables: &[String],
    id_types: &mut [Option<String>],
    entries: &[Entry],
) -> bool {
    for (i, table) in tables.iter().enumerate() {
        let ids: Vec<&str> = entries
            .iter()
            .filter(|(_, t, _)| *t == i)
            .map(|(_, _, id)| id.as_str())
            .collect();
        if ids.is_empty() {
            continue;
        }
        let Some((schema, name)) = table.split_once('.') else {
            continue;
        };
        let qualified = format!("{}.{}", quote_ident(schema), quote_ident(name));
        if id_types[i].is_none() {
            // The id column's type, so the ids (text here) are cast to it and the primary
            // key index is used.
            let row = sql
                .query_opt(
                    "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) \
                     FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                     WHERE i.indrelid = $1::text::regclass AND i.indisprimary LIMIT 1",
                    &[&qualified],
                )
                .await;
            match row {
                Ok(Some(r)) => {
                    id_types[i] = Some(format!(
                        "{}\u{0}{}",
                        r.get::<_, String>(0),
                        r.get::<_, String>(1)
                    ));
                }
                Ok(None) => {
                    tracing::warn!(table, "outbox housekeeping: the outbox table has no primary key; rows are not deleted");
                    return false;
                }
                Err(e) => {
                    tracing::warn!(table, error = %e, "outbox housekeeping: looking up the id column failed; retrying");
                    return false;
                }
            }
        }
        let Some((column, ty)) = id_types[i].as_deref().and_then(|s| s.split_once('\u{0}')) else {
            return false;
        };
        let stmt = format!(
            "DELETE FROM {qualified} WHERE {} = ANY($1::text[]::{ty}[])",
            quote_ident(column)
        );
        match sql.execute(&stmt, &[&ids]).await {
            Ok(n) => tracing::debug!(
                table,
                deleted = n,
                "outbox housekeeping: deleted delivered rows"
            ),
            Err(e) => {
                tracing::warn!(table, error = %e, "outbox housekeeping: delete failed; retrying");
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_delivered_entries_are_taken() {
        let cfg: OutboxConfig =
            serde_json::from_str(r#"{"table": "public.outbox", "delete_after_delivery": true}"#)
                .unwrap();
        let q = DeleteQueue::for_tables([cfg].iter()).unwrap();
        q.push(3, "public.outbox", "a".into());
        q.push(5, "public.outbox", "b".into());
        q.push(9, "public.outbox", "c".into());
        q.push(10, "public.other", "x".into());
        assert!(q.take_delivered(2).is_empty());
        let got = q.take_delivered(5);
        assert_eq!(
            got.iter().map(|e| e.2.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        q.put_back(got);
        assert_eq!(q.len(), 3);
        assert_eq!(q.take_delivered(100).len(), 3);
    }
}
