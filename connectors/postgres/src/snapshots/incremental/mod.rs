//! Incremental snapshots: re-reading chosen tables, chunk by chunk, while streaming goes on,
//! with the watermark algorithm of DBLog (Netflix) that Debezium uses.
//!
//! ```text
//!  signal table ◀── INSERT execute-snapshot (user, `walrus snapshot --table`)
//!       │ (published: its rows arrive through the replication stream, ordered with the data)
//!       ▼
//!  Session (source.rs) ── signal row? ──▶ Incremental ── ChunkRequest ──▶ driver task (own SQL conn)
//!       │                                   ▲    │                        1. INSERT window-open  (L)
//!       │ streamed change to the            │    │                        2. SELECT … WHERE pk > last
//!       │ window's table: note its key ─────┘    │                           ORDER BY pk LIMIT n
//!       │                                        │◀──── ChunkResult ────── 3. (rows sent here)
//!       │                                        │                        4. INSERT window-close (H)
//!       ▼ H arrives in the stream: chunk rows minus the noted keys ──▶ op `r` events at H's position
//! ```
//!
//! **Why it is exact.** Every change committed before the low watermark L is visible to the
//! chunk's `SELECT`, and every change committed after the high watermark H streams after the
//! chunk's events, which are emitted where H is in the stream. A change committed between L
//! and H may or may not be visible to the `SELECT`, so the chunk row of that key is dropped:
//! the streamed change, which is in the stream anyway, wins over a possibly stale read. What
//! is emitted at H is therefore each remaining row exactly as it is at H.
//!
//! One gap in the textbook algorithm is closed here: PostgreSQL writes a commit record to
//! the WAL before the transaction stops being "in progress" for new snapshots, so a
//! transaction whose commit precedes L in the stream could, for a few microseconds, still
//! be invisible to a `SELECT` that starts after L committed. The driver therefore takes
//! `pg_current_snapshot()` right after L commits, and reads the chunk only in a snapshot in
//! which each transaction that was in progress then is visible, aborted, or — after
//! [`INVISIBLE_GRACE`] — still running (a transaction still running that long after L did
//! not commit before it).
//!
//! **Acknowledgements.** The chunk's events are produced inside H's transaction, so the
//! [`walrus_core::ack::AckTracker`] confirms H's commit only once they, and everything
//! before them, are delivered: the confirmed LSN never runs ahead of an undelivered read.
//!
//! **Progress** (tables queued, the current table's last delivered key and its maximum key
//! at the start, paused or not, the signal ids already acted on) is kept in a JSON file
//! beside the initial snapshot's state file ([`walrus_core::config::SnapshotConfig::incremental_state_path`]).
//! A change of progress is written only once the records produced up to it are delivered,
//! so after a kill -9 the snapshot resumes after the last delivered chunk; watermarks of the
//! dead process that PostgreSQL sends again are ignored (their window ids are unknown), and
//! replayed signals are recognised by their id. See `docs/snapshots.md`.

use std::time::Duration;

mod driver;
mod signals;
mod state;
mod window;

pub use signals::{
    ensure_signal_table, send_signal, Command, Signal, EXECUTE_SNAPSHOT, PAUSE_SNAPSHOT,
    RESUME_SNAPSHOT, STOP_SNAPSHOT, WINDOW_CLOSE, WINDOW_OPEN,
};
pub use state::{IncrementalState, TableProgress};
pub use window::{row_key, Incremental};

/// How long a transaction that was running when the low watermark committed may stay
/// invisible to the chunk's snapshot before walrus concludes it committed after the
/// watermark (see the module docs).
pub const INVISIBLE_GRACE: Duration = Duration::from_secs(2);
/// Pause before asking again for a chunk whose read failed.
const RETRY_DELAY: Duration = Duration::from_secs(2);
/// Least time between two writes of the progress file.
const SAVE_INTERVAL: Duration = Duration::from_millis(200);

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Arc;

    use tokio::sync::mpsc;
    use walrus_core::config::Config;
    use walrus_core::event::{ChangeEvent, Op, ReplicaIdentity, Row, SourcePosition, Table};
    use walrus_core::value::Value;

    use super::driver::{Chunk, ChunkResult};
    use super::signals::{qualify, SignalData};
    use super::state::SIGNALS_REMEMBERED;
    use super::*;
    use walrus_core::event::Column;

    fn table() -> Arc<Table> {
        let col = |name: &str, pk: bool| Column {
            name: name.into(),
            type_oid: 23,
            type_name: "int4".into(),
            type_modifier: -1,
            key: pk,
            primary_key: pk,
            not_null: pk,
            default: None,
            type_desc: None,
        };
        Arc::new(Table {
            id: 42,
            schema: "public".into(),
            name: "t".into(),
            columns: vec![col("id", true), col("v", false)],
            replica_identity: ReplicaIdentity::Default,
        })
    }

    fn row(id: i32, v: i32) -> Row {
        Row {
            values: vec![Value::Int32(id), Value::Int32(v)],
            key_only: false,
        }
    }

    #[test]
    fn keys_compare_primary_key_values_only() {
        let t = table();
        assert_eq!(row_key(&t, &row(1, 5)), row_key(&t, &row(1, 6)));
        assert_ne!(row_key(&t, &row(1, 5)), row_key(&t, &row(2, 5)));
        let key_only = Row {
            values: vec![Value::Int32(1), Value::Null],
            key_only: true,
        };
        assert_eq!(row_key(&t, &key_only), row_key(&t, &row(1, 0)));
        let no_key = Row {
            values: vec![Value::Null, Value::Int32(1)],
            key_only: true,
        };
        assert_eq!(row_key(&t, &no_key), None);
    }

    fn signal_event(id: &str, kind: &str, data: Option<&str>) -> ChangeEvent {
        let col = |name: &str| Column {
            name: name.into(),
            type_oid: 25,
            type_name: "text".into(),
            type_modifier: -1,
            key: name == "id",
            primary_key: name == "id",
            not_null: name == "id",
            default: None,
            type_desc: None,
        };
        let text = |s: Option<&str>| s.map_or(Value::Null, |s| Value::Text(s.into()));
        ChangeEvent {
            op: Op::Create,
            table: Some(Arc::new(Table {
                id: 7,
                schema: "public".into(),
                name: "walrus_signal".into(),
                columns: vec![col("id"), col("type"), col("data")],
                replica_identity: ReplicaIdentity::Default,
            })),
            before: None,
            after: Some(Row {
                values: vec![text(Some(id)), text(Some(kind)), text(data)],
                key_only: false,
            }),
            source: SourcePosition::default(),
            message: None,
        }
    }

    fn change(op: Op, before: Option<Row>, after: Option<Row>) -> ChangeEvent {
        ChangeEvent {
            op,
            table: Some(table()),
            before,
            after,
            source: SourcePosition::default(),
            message: None,
        }
    }

    /// The session side without a database: the driver's answers are put on the channel
    /// by hand, the stream's rows are passed to `on_signal` and `observe` in stream order.
    #[tokio::test]
    async fn streamed_changes_in_the_window_win_and_progress_waits_for_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inc.json");
        let (requests, mut request_rx) = mpsc::unbounded_channel();
        let (result_tx, results) = mpsc::unbounded_channel();
        let config = Config::parse_with_env(
            "[source]\nurl = \"postgres://u@h/db\"\ntables = [\"public.*\"]\n[sink]\ntype = \"stdout\"\n",
            |_| None,
        )
        .unwrap();
        let mut inc = Incremental {
            signal_oid: 7,
            chunk_size: 5,
            state: IncrementalState::default(),
            path: path.clone(),
            requests,
            results,
            driver: tokio::spawn(async {}),
            outstanding: None,
            window: None,
            retry_at: None,
            pending_saves: VecDeque::new(),
            dirty: false,
            last_save: None,
            refresh: false,
        };
        let no_table = |_: u32| None;
        let exec = signal_event(
            "s1",
            EXECUTE_SNAPSHOT,
            Some(r#"{"data-collections": ["public.t"], "type": "incremental"}"#),
        );
        assert!(inc.on_signal(&exec, &config, no_table).is_empty());
        inc.after_emit(10);
        let req = request_rx.try_recv().expect("a chunk is asked for");
        assert_eq!((req.table.as_str(), req.last.as_ref()), ("public.t", None));
        // A replayed signal is not acted on again.
        assert!(inc.on_signal(&exec, &config, no_table).is_empty());
        assert_eq!(inc.state.tables.len(), 1);

        let open = signal_event(
            &format!("{}-open", req.window),
            WINDOW_OPEN,
            Some(r#"{"table": "public.t", "oid": 42}"#),
        );
        assert!(inc.on_signal(&open, &config, no_table).is_empty());
        assert_eq!(inc.window_oid(), 42);
        // The driver read rows 1..=5 (with stale values) and sent them before the close.
        let t = table();
        let rows: Vec<(String, Row)> = (1..=5)
            .map(|i| (row_key(&t, &row(i, 0)).unwrap(), row(i, 0)))
            .collect();
        result_tx
            .send(ChunkResult::Rows {
                window: req.window.clone(),
                chunk: Chunk {
                    table: t,
                    rows,
                    last: Some(vec!["5".into()]),
                    max: vec!["9".into()],
                    done: false,
                    fresh: true,
                },
            })
            .unwrap();
        // In the window: an update of 2, a delete of 3, a key change 4 -> 40.
        inc.observe(&change(Op::Update, None, Some(row(2, 1))));
        inc.observe(&change(
            Op::Delete,
            Some(Row {
                values: vec![Value::Int32(3), Value::Null],
                key_only: true,
            }),
            None,
        ));
        inc.observe(&change(Op::Delete, Some(row(4, 0)), None));
        inc.observe(&change(Op::Create, None, Some(row(40, 0))));
        let close = signal_event(&format!("{}-close", req.window), WINDOW_CLOSE, None);
        let reads = inc.on_signal(&close, &config, no_table);
        let ids: Vec<&Value> = reads
            .iter()
            .map(|e| &e.after.as_ref().unwrap().values[0])
            .collect();
        assert_eq!(ids, [&Value::Int32(1), &Value::Int32(5)]);
        assert!(reads.iter().all(|e| e.op == Op::Read));
        assert_eq!(inc.window_oid(), 0, "the window is closed");
        inc.after_emit(12);
        let next = request_rx.try_recv().expect("the next chunk is asked for");
        assert_eq!(next.last, Some(vec!["5".to_string()]));
        assert_eq!(next.max, Some(vec!["9".to_string()]));

        // Progress is written only once the records up to it are delivered.
        inc.on_tick(11);
        let saved = IncrementalState::load(&path, "", "").unwrap();
        assert_eq!(
            saved.signals_seen,
            ["s1"],
            "the signal is durable, the chunk is not"
        );
        assert_eq!(saved.tables[0].last, None);
        inc.finish(12);
        let saved = IncrementalState::load(&path, "", "").unwrap();
        assert_eq!(saved.tables[0].last, Some(vec!["5".to_string()]));
        assert_eq!(saved.tables[0].rows, 2);

        // A watermark of another window (an earlier process) is ignored.
        let stale = signal_event(
            "walrus-window-old-open",
            WINDOW_OPEN,
            Some(r#"{"oid": 42}"#),
        );
        inc.on_signal(&stale, &config, no_table);
        assert_eq!(inc.window_oid(), 0);
    }

    #[test]
    fn signals_are_acted_on_once() {
        let mut s = IncrementalState::default();
        assert!(s.first_sight("a"));
        assert!(!s.first_sight("a"));
        for i in 0..SIGNALS_REMEMBERED {
            s.first_sight(&i.to_string());
        }
        assert_eq!(s.signals_seen.len(), SIGNALS_REMEMBERED);
        assert!(s.first_sight("a"), "the oldest ids are forgotten");
    }

    #[test]
    fn signal_data_has_debeziums_shape() {
        let d: SignalData = serde_json::from_str(
            r#"{"data-collections": ["public.t"], "type": "incremental",
                "additional-conditions": [{"data-collection": "public.t", "filter": "id > 3"}]}"#,
        )
        .unwrap();
        assert_eq!(d.data_collections, vec!["public.t"]);
        assert_eq!(d.kind.as_deref(), Some("incremental"));
        assert_eq!(d.additional_conditions[0].filter, "id > 3");
        assert_eq!(qualify("t"), "public.t");
        assert_eq!(qualify("s.t"), "s.t");
    }
}
