//! The one emit path: a change event in, the records it becomes out. Streaming, the initial
//! snapshot and incremental snapshots all go through [`Emitter`], so routing, projection,
//! encoding, headers, tombstones, the outbox router and key-change headers are written once.
//!
//! ```text
//!  ChangeEvent ─▶ route (topic, key columns, projection, skipped ops; cached per table version)
//!              ├─ outbox table ─▶ OutboxRoute::message ─▶ 1 record
//!              └─ otherwise ─▶ key Encoder (full row) + value Encoder (projected row)
//!                              ─▶ record (+ tombstone after a delete) ─▶ out
//! ```
//!
//! Encoded bytes are copied into shared arena blocks, so records of a batch share a few
//! allocations instead of two each; the encoders write into reused buffers. Where the
//! records go (a source's batch, a snapshot worker's piece) is the caller's business: the
//! emitter only extends what it is given.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::arena::Arena;
use crate::error::{Classify, ErrorKind};
use crate::event::{ChangeEvent, Op};
use crate::format::{Encoder, FormatError, LogicalTable};
use crate::ids::IdMap;
use crate::router::{OutboxRoute, RouteError, Router, TableRoute, HEADER_ID, HEADER_OP};
use crate::sink::Record;
use crate::telemetry;
use crate::transactions::{TransactionBlock, TransactionEvent, TransactionMonitor};
use crate::unwrap::Flattened;

/// `key` (a key as JSON, see [`Encoder::key_header`]) without the logical table's key field,
/// which the encoders write last: `{..,"<name>":"<value>"}` becomes `{..}`.
fn without_key_field(key: Bytes, logical: Option<&LogicalTable>) -> Bytes {
    let Some((name, value)) = logical.and_then(|l| l.key_field.as_ref()) else {
        return key;
    };
    let (Ok(name), Ok(value)) = (serde_json::to_string(name), serde_json::to_string(value)) else {
        return key;
    };
    let suffix = format!(",{name}:{value}}}");
    if key.ends_with(suffix.as_bytes()) {
        let mut out = BytesMut::with_capacity(key.len() + 1 - suffix.len());
        out.extend_from_slice(&key[..key.len() - suffix.len()]);
        out.extend_from_slice(b"}");
        out.freeze()
    } else {
        key
    }
}

/// Largest encode buffer kept between events: one huge value (a large TOASTed column)
/// should not pin its size for the pipeline's life.
const MAX_KEPT_BUFFER: usize = 1024 * 1024;
/// Header of the delete half of a primary-key change: the new key.
pub const PK_UPDATE_NEWKEY_HEADER: &str = "__debezium.newkey";
/// Header of the create half of a primary-key change: the old key.
pub const PK_UPDATE_OLDKEY_HEADER: &str = "__debezium.oldkey";

/// What the emitter does beyond encoding.
#[derive(Clone, Debug)]
pub struct EmitOptions {
    /// Follow each delete with a tombstone (`[format] tombstones_on_delete`).
    pub tombstones_on_delete: bool,
    /// Give row records walrus's headers (id, op, table, txId).
    pub headers: bool,
    /// Topic of logical messages (`<prefix>.message`).
    pub message_topic: Arc<str>,
    /// Count row events in `walrus_events_total` (streaming; snapshots count their rows in
    /// `walrus_snapshot_rows_total`).
    pub count_events: bool,
    /// Debezium's transaction metadata (`[transactions]`): the topic of `BEGIN`/`END`
    /// events, `None` when off. When on, data events of transactions opened with
    /// [`Emitter::begin_transaction`] carry the `transaction` block.
    pub transaction_topic: Option<Arc<str>>,
}

/// What one event became.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Emitted {
    /// Records added (an event and its tombstone count two).
    pub records: u64,
    /// Whether the event was published at all (not skipped by configuration, not an outbox
    /// update).
    pub event: bool,
    /// For an outbox table that deletes delivered rows: the event id of the row to delete
    /// once its record (the last one added) is delivered.
    pub outbox_delete: Option<String>,
}

/// Why an event could not become records. Either way nothing after it may be confirmed.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// The configuration does not fit the table (a key column it lacks, an outbox column
    /// that is null).
    #[error(transparent)]
    Route(#[from] RouteError),
    /// The format could not encode the event.
    #[error(transparent)]
    Format(#[from] FormatError),
}

impl Classify for EmitError {
    fn kind(&self) -> ErrorKind {
        match self {
            EmitError::Route(e) => e.kind(),
            EmitError::Format(e) => e.kind(),
        }
    }
}

/// Turns change events into records: see the module docs. One per task that produces
/// records; [`Emitter::fork`] makes another with the same configuration.
pub struct Emitter {
    key: Box<dyn Encoder>,
    value: Box<dyn Encoder>,
    opts: EmitOptions,
    /// Routes by relation id, resolved once per table version.
    routes: IdMap<u32, Arc<TableRoute>>,
    /// `walrus_events_total` per table and operation, registered once: building the labels
    /// (an allocated table name) and looking them up per event cost more than encoding it.
    counters: IdMap<(u32, Op), metrics::Counter>,
    key_buf: Vec<u8>,
    value_buf: Vec<u8>,
    /// Blocks that records' keys, values and header values are carved from.
    arena: Arena,
    /// Whether an ignored outbox update was logged.
    outbox_update_warned: bool,
    /// Event counts of open transactions, when transaction metadata is on.
    transactions: TransactionMonitor,
    /// The flat value written by `[transforms.unwrap]` (reused).
    unwrap_buf: Vec<u8>,
    /// The `transaction` block of the event being emitted (reused).
    block: Option<TransactionBlock>,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("opts", &self.opts)
            .field("routes", &self.routes.len())
            .finish_non_exhaustive()
    }
}

impl Emitter {
    /// An emitter writing keys with `key` and values with `value` (see
    /// [`crate::format::encoders`]).
    pub fn new(key: Box<dyn Encoder>, value: Box<dyn Encoder>, opts: EmitOptions) -> Self {
        Emitter {
            key,
            value,
            opts,
            routes: IdMap::default(),
            counters: IdMap::default(),
            key_buf: Vec::with_capacity(256),
            value_buf: Vec::with_capacity(4096),
            arena: Arena::new(),
            outbox_update_warned: false,
            transactions: TransactionMonitor::new(),
            unwrap_buf: Vec::new(),
            block: None,
        }
    }

    /// Another emitter with the same encoders' options and emit options, and empty caches.
    pub fn fork(&self) -> Emitter {
        Emitter::new(self.key.fork(), self.value.fork(), self.opts.clone())
    }

    /// The options given to [`Emitter::new`].
    pub fn options(&self) -> &EmitOptions {
        &self.opts
    }

    /// Routes `ev` with `router` (cached per table version) and adds its records to `out`.
    /// Logical messages go to the message topic.
    pub fn emit(
        &mut self,
        router: &Router,
        ev: &ChangeEvent,
        out: &mut impl Extend<Record>,
    ) -> Result<Emitted, EmitError> {
        let Some(table) = &ev.table else {
            return self.emit_message(ev, out);
        };
        let route = match self.routes.get(&table.id) {
            Some(r) if Arc::ptr_eq(&r.table, table) => r.clone(),
            _ => {
                let r = Arc::new(router.resolve(table)?);
                self.routes.insert(table.id, r.clone());
                // A new version of the table (renamed, say) gets counters of its name.
                self.counters.retain(|(id, _), _| *id != table.id);
                r
            }
        };
        self.emit_routed(&route, ev, out)
    }

    /// Adds the records of `ev` to `out` along a route resolved beforehand (snapshots
    /// resolve each table's route when they plan it).
    pub fn emit_routed(
        &mut self,
        route: &TableRoute,
        ev: &ChangeEvent,
        out: &mut impl Extend<Record>,
    ) -> Result<Emitted, EmitError> {
        if route.skips(ev.op) {
            return Ok(Emitted::default());
        }
        self.block = match (&self.opts.transaction_topic, ev.source.tx_id, &ev.table) {
            // Snapshot reads (initial and incremental) are no part of a transaction's events.
            (Some(_), Some(xid), Some(table)) if ev.op != Op::Read => {
                self.transactions
                    .event(xid, ev.source.lsn, &table.qualified_name())
            }
            _ => None,
        };
        let timestamp_ms = ev.source.commit_time_us / 1000;
        if let Some(outbox) = &route.outbox {
            return self.emit_outbox(ev, outbox, timestamp_ms, out);
        }
        // The key comes from the whole row (key columns index the full table); the value
        // from the projected row, so the two encoders each see one shape per table.
        let key = if ev.op == Op::Truncate {
            None
        } else if self.key.encode_key(
            &route.topic,
            route.logical.as_deref(),
            ev,
            &route.key_columns,
            &mut self.key_buf,
        )? {
            Some(self.arena.copy(&self.key_buf))
        } else {
            None
        };
        let projected = route.project(ev);
        let ev_value = projected.as_ref().unwrap_or(ev);
        let mut extra_headers = Vec::new();
        // A format that flattens itself (Avro) writes the flat value directly.
        let native = match &route.unwrap {
            Some(unwrap) => self.value.encode_unwrapped(
                &route.topic,
                route.logical.as_deref(),
                ev_value,
                self.block.as_ref(),
                unwrap,
                &mut self.unwrap_buf,
                &mut extra_headers,
            )?,
            None => None,
        };
        if native.is_none() {
            match &self.block {
                Some(block) => self.value.encode_value_in_transaction(
                    &route.topic,
                    route.logical.as_deref(),
                    ev_value,
                    block,
                    &mut self.value_buf,
                )?,
                None => self.value.encode_value(
                    &route.topic,
                    route.logical.as_deref(),
                    ev_value,
                    &mut self.value_buf,
                )?,
            }
        }
        let mut tombstone = ev.op == Op::Delete && self.opts.tombstones_on_delete;
        // `None`: the record is dropped; `Some(None)`: it becomes a Kafka tombstone.
        let value = match &route.unwrap {
            None => Some(Some(self.arena.copy(&self.value_buf))),
            Some(unwrap) => {
                tombstone = tombstone && unwrap.keeps_tombstones();
                let flattened = match native {
                    Some(f) => f,
                    None => {
                        // The JSON envelope, flattened as bytes.
                        unwrap.headers(Some(&self.value_buf), &mut extra_headers);
                        unwrap.value(&self.value_buf, &mut self.unwrap_buf)
                    }
                };
                match flattened {
                    Flattened::Drop => None,
                    Flattened::Tombstone => Some(None),
                    Flattened::Value => Some(Some(self.arena.copy(&self.unwrap_buf))),
                }
            }
        };
        if self.value_buf.capacity() > MAX_KEPT_BUFFER {
            self.value_buf = Vec::with_capacity(4096);
        }
        let arena = &mut self.arena;
        let opts_headers = self.opts.headers;
        let mut standard_headers =
            |tombstone| opts_headers.then(|| route.headers_in(ev, tombstone, arena));
        let headers = |tombstone| {
            let mut h = Vec::new();
            if let Some(unwrap) = &route.unwrap {
                if tombstone {
                    unwrap.headers(None, &mut h);
                } else {
                    h.extend(extra_headers.iter().cloned());
                }
            }
            h
        };
        let mut records = 0;
        if let Some(value) = value {
            let record = Record {
                topic: route.topic.clone(),
                key: key.clone(),
                value,
                event_headers: standard_headers(false),
                headers: headers(false),
                timestamp_ms,
            };
            out.extend(std::iter::once(record));
            records += 1;
        }
        if tombstone {
            let tomb = Record {
                topic: route.topic.clone(),
                key,
                value: None,
                event_headers: standard_headers(true),
                headers: headers(true),
                timestamp_ms,
            };
            out.extend(std::iter::once(tomb));
            records += 1;
        }
        if self.opts.count_events {
            if let Some(table) = &ev.table {
                self.counters
                    .entry((table.id, ev.op))
                    .or_insert_with(|| {
                        metrics::counter!(telemetry::EVENTS_TOTAL, "table" => table.qualified_name(), "op" => ev.op.code())
                    })
                    .increment(1);
            }
        }
        Ok(Emitted {
            records,
            event: true,
            outbox_delete: None,
        })
    }

    /// Opens transaction `xid`, whose `Begin` message is at `lsn`, and adds its `BEGIN` event
    /// to `out` when transaction metadata is on (`crate::transactions`). Returns the records
    /// added (0 or 1).
    pub fn begin_transaction(
        &mut self,
        xid: u32,
        lsn: crate::lsn::Lsn,
        commit_time_us: i64,
        out: &mut impl Extend<Record>,
    ) -> Result<u64, EmitError> {
        if self.opts.transaction_topic.is_none() {
            return Ok(0);
        }
        let ev = self.transactions.begin(xid, lsn, commit_time_us);
        self.emit_transaction_event(&ev, out)?;
        Ok(1)
    }

    /// Closes transaction `xid`, whose `Commit` message is at `lsn`, and adds its `END`
    /// event, with its event counts, to `out`. Called before the commit ends the
    /// transaction's unit, so that the `END` record is confirmed with the transaction's
    /// last records. Returns the records added (0, or 1 for a transaction opened with
    /// [`Emitter::begin_transaction`]).
    pub fn end_transaction(
        &mut self,
        xid: u32,
        lsn: crate::lsn::Lsn,
        commit_time_us: i64,
        out: &mut impl Extend<Record>,
    ) -> Result<u64, EmitError> {
        if self.opts.transaction_topic.is_none() {
            return Ok(0);
        }
        let Some(ev) = self.transactions.end(xid, lsn, commit_time_us) else {
            return Ok(0);
        };
        self.emit_transaction_event(&ev, out)?;
        Ok(1)
    }

    /// A `BEGIN` or `END` record on the transaction topic, keyed by the transaction id.
    fn emit_transaction_event(
        &mut self,
        ev: &TransactionEvent,
        out: &mut impl Extend<Record>,
    ) -> Result<(), EmitError> {
        let Some(topic) = self.opts.transaction_topic.clone() else {
            return Ok(());
        };
        self.key
            .encode_transaction_key(&topic, &ev.id, &mut self.key_buf)?;
        let key = self.arena.copy(&self.key_buf);
        self.value
            .encode_transaction_value(&topic, ev, &mut self.value_buf)?;
        let value = self.arena.copy(&self.value_buf);
        out.extend(std::iter::once(Record {
            topic,
            key: Some(key),
            value: Some(value),
            event_headers: None,
            headers: Vec::new(),
            timestamp_ms: ev.ts_ms,
        }));
        Ok(())
    }

    /// A primary-key change, which Debezium publishes as a delete (and its tombstone) of
    /// the old key and a create of the new one, each carrying the other key as a header
    /// (`__debezium.newkey` on the delete half, `__debezium.oldkey` on the create). Returns
    /// what the delete and the create each became.
    pub fn emit_key_change(
        &mut self,
        router: &Router,
        delete: &ChangeEvent,
        create: &ChangeEvent,
        out: &mut impl Extend<Record>,
    ) -> Result<[Emitted; 2], EmitError> {
        let mut records = Vec::with_capacity(3);
        let d = self.emit(router, delete, &mut records)?;
        let c = self.emit(router, create, &mut records)?;
        if d.records > 0 && c.records > 0 {
            let logical = create
                .table
                .as_ref()
                .and_then(|t| self.routes.get(&t.id))
                .and_then(|r| r.logical.clone());
            self.mark_key_change(&mut records, logical.as_deref());
        }
        out.extend(records);
        Ok([d, c])
    }

    /// Adds the key-change headers to `records`: the delete, its tombstone if any, then the
    /// create. The headers carry the table's own key: Debezium sets them before
    /// `ByLogicalTableRouter` adds its key field to the record key, so a logical table's
    /// key field is taken out again.
    fn mark_key_change(&self, records: &mut [Record], logical: Option<&LogicalTable>) {
        let Some((create, deletes)) = records.split_last_mut() else {
            return;
        };
        let header = |k: &Bytes| without_key_field(self.key.key_header(k), logical);
        let old_key = deletes.first().and_then(|d| d.key.as_ref()).map(header);
        if let Some(new_key) = create.key.as_ref().map(header) {
            for d in deletes.iter_mut() {
                d.headers
                    .push((Arc::from(PK_UPDATE_NEWKEY_HEADER), new_key.clone()));
            }
        }
        if let Some(old_key) = old_key {
            create
                .headers
                .push((Arc::from(PK_UPDATE_OLDKEY_HEADER), old_key));
        }
    }

    /// A logical message (`pg_logical_emit_message`): Debezium's message topic and shapes,
    /// with the stable event id and the op as headers.
    fn emit_message(
        &mut self,
        ev: &ChangeEvent,
        out: &mut impl Extend<Record>,
    ) -> Result<Emitted, EmitError> {
        let topic = self.opts.message_topic.clone();
        let key = if self
            .key
            .encode_key(&topic, None, ev, &[], &mut self.key_buf)?
        {
            Some(self.arena.copy(&self.key_buf))
        } else {
            None
        };
        // Transactional messages count among their transaction's events, as in Debezium.
        let block = match (&self.opts.transaction_topic, ev.source.tx_id) {
            (Some(_), Some(xid)) => self.transactions.message(xid, ev.source.lsn),
            _ => None,
        };
        if let Some(block) = &block {
            self.value
                .encode_value_in_transaction(&topic, None, ev, block, &mut self.value_buf)?;
        } else {
            self.value
                .encode_value(&topic, None, ev, &mut self.value_buf)?;
        }
        let value = self.arena.copy(&self.value_buf);
        out.extend(std::iter::once(Record {
            topic,
            key,
            value: Some(value),
            event_headers: None,
            headers: vec![
                (
                    Arc::from(HEADER_ID),
                    Bytes::from(crate::router::event_id(ev)),
                ),
                (Arc::from(HEADER_OP), Bytes::from_static(b"m")),
            ],
            timestamp_ms: ev.source.commit_time_us / 1000,
        }));
        Ok(Emitted {
            records: 1,
            event: true,
            outbox_delete: None,
        })
    }

    /// An event of an outbox table: inserts (and snapshot reads) become the outbox message;
    /// deletes (and updates, as Debezium's router does) produce nothing.
    fn emit_outbox(
        &mut self,
        ev: &ChangeEvent,
        outbox: &OutboxRoute,
        timestamp_ms: i64,
        out: &mut impl Extend<Record>,
    ) -> Result<Emitted, EmitError> {
        let Some(message) = outbox.message(ev)? else {
            if ev.op == Op::Update && !self.outbox_update_warned {
                self.outbox_update_warned = true;
                tracing::warn!(
                    table = ev.table.as_ref().map(|t| t.qualified_name()).unwrap_or_default(),
                    "an outbox row was updated; the outbox router publishes inserts only and ignores updates (logged once per session)"
                );
            }
            return Ok(Emitted::default());
        };
        let outbox_delete = if outbox.delete_after_delivery {
            message.id
        } else {
            None
        };
        out.extend(std::iter::once(Record {
            topic: Arc::from(message.topic),
            key: message.key,
            value: message.value,
            event_headers: None,
            headers: message.headers,
            timestamp_ms,
        }));
        Ok(Emitted {
            records: 1,
            event: true,
            outbox_delete,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::FormatConfig;
    use crate::event::{Column, ReplicaIdentity, Row, SnapshotMarker, SourcePosition, Table};
    use crate::router::{RoutingConfig, TableConfig};
    use crate::value::Value;

    fn column(name: &str, key: bool) -> Column {
        Column {
            name: name.into(),
            type_oid: 23,
            type_name: "int4".into(),
            type_modifier: -1,
            key,
            primary_key: key,
            not_null: key,
            default: None,
            type_desc: None,
        }
    }

    /// `public.t (note int4, id int4 primary key)`: the key is not the first column.
    fn table() -> Arc<Table> {
        Arc::new(Table {
            id: 9,
            schema: "public".into(),
            name: "t".into(),
            columns: vec![column("note", false), column("id", true)],
            replica_identity: ReplicaIdentity::Default,
        })
    }

    fn event(op: Op, t: &Arc<Table>, note: i32, id: i32) -> ChangeEvent {
        let row = Some(Row {
            values: vec![Value::Int32(note), Value::Int32(id)],
            key_only: false,
        });
        ChangeEvent {
            op,
            table: Some(t.clone()),
            before: if op == Op::Delete { row.clone() } else { None },
            after: if op == Op::Delete { None } else { row },
            source: SourcePosition::default(),
            message: None,
        }
    }

    fn emitter(schemas_enable: bool) -> Emitter {
        let format = FormatConfig {
            schemas_enable,
            ..FormatConfig::default()
        };
        let (key, value) = crate::format::encoders(&format, "p", "db");
        Emitter::new(
            key,
            value,
            EmitOptions {
                tombstones_on_delete: true,
                headers: true,
                message_topic: Arc::from("p.message"),
                count_events: false,
                transaction_topic: None,
            },
        )
    }

    fn router(tables: &BTreeMap<String, TableConfig>) -> Router {
        Router::new(&RoutingConfig {
            topic_prefix: "p",
            routes: &[],
            tables: Some(tables),
            outbox: &[],
            ..RoutingConfig::default()
        })
        .unwrap()
    }

    fn json(b: &Option<Bytes>) -> serde_json::Value {
        serde_json::from_slice(b.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn a_delete_becomes_the_event_and_its_tombstone() {
        let t = table();
        let mut e = emitter(false);
        let mut out = Vec::new();
        let emitted = e
            .emit(
                &router(&BTreeMap::new()),
                &event(Op::Delete, &t, 5, 1),
                &mut out,
            )
            .unwrap();
        assert_eq!(emitted.records, 2);
        assert!(emitted.event);
        assert_eq!(&*out[0].topic, "p.public.t");
        assert_eq!(json(&out[0].key), serde_json::json!({"id": 1}));
        assert_eq!(json(&out[0].value)["op"], "d");
        assert_eq!(out[1].key, out[0].key);
        assert!(out[1].value.is_none());
        let id = |r: &Record| {
            r.event_headers
                .as_ref()
                .unwrap()
                .get("id")
                .unwrap()
                .to_vec()
        };
        assert!(id(&out[1]).ends_with(b":tombstone"));
    }

    #[test]
    fn the_key_comes_from_the_whole_row_when_columns_are_filtered() {
        let t = table();
        let mut tables = BTreeMap::new();
        tables.insert(
            "public.t".to_string(),
            TableConfig {
                exclude_columns: vec!["note".into()],
                ..TableConfig::default()
            },
        );
        let r = router(&tables);
        let mut e = emitter(false);
        let mut out = Vec::new();
        e.emit(&r, &event(Op::Create, &t, 5, 1), &mut out).unwrap();
        assert_eq!(json(&out[0].key), serde_json::json!({"id": 1}));
        assert_eq!(json(&out[0].value)["after"], serde_json::json!({"id": 1}));
        // A snapshot row along a route resolved beforehand: the same records.
        let route = r.resolve(&t).unwrap();
        let mut read = event(Op::Read, &t, 6, 2);
        read.source.snapshot = SnapshotMarker::First;
        let mut out = Vec::new();
        e.emit_routed(&route, &read, &mut out).unwrap();
        assert_eq!(json(&out[0].key), serde_json::json!({"id": 2}));
        let v = json(&out[0].value);
        assert_eq!(v["after"], serde_json::json!({"id": 2}));
        assert_eq!(v["source"]["snapshot"], "first");
    }

    #[test]
    fn logical_tables_share_a_topic_with_the_key_field_and_their_own_key_headers() {
        let rules: Vec<crate::router::RouteRule> = toml::from_str::<BTreeMap<String, Vec<_>>>(
            "r = [{ match = 'public\\.(t|u)', topic = 'p.tu', logical_table = true }]",
        )
        .unwrap()
        .remove("r")
        .unwrap();
        let r = Router::new(&RoutingConfig {
            topic_prefix: "p",
            routes: &rules,
            ..RoutingConfig::default()
        })
        .unwrap();
        let t = table();
        let u = Arc::new(Table {
            id: 10,
            name: "u".into(),
            ..(*t).clone()
        });
        let mut e = emitter(true);
        let mut out = Vec::new();
        e.emit(&r, &event(Op::Create, &t, 5, 1), &mut out).unwrap();
        e.emit(&r, &event(Op::Delete, &u, 5, 1), &mut out).unwrap();
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|r| &*r.topic == "p.tu"));
        let key = json(&out[0].key);
        assert_eq!(
            key["payload"],
            serde_json::json!({"id": 1, "__dbz__physicalTableIdentifier": "p.public.t"})
        );
        assert_eq!(key["schema"]["name"], "p.tu.Key");
        assert_eq!(
            key["schema"]["fields"][1],
            serde_json::json!({"type": "string", "optional": false, "field": "__dbz__physicalTableIdentifier"})
        );
        let value = json(&out[0].value);
        assert_eq!(value["schema"]["name"], "p.tu.Envelope");
        assert_eq!(value["schema"]["fields"][0]["name"], "p.tu.Value");
        assert_eq!(value["schema"]["fields"][1]["name"], "p.tu.Value");
        // The other table's key differs by the field; its tombstone has the same key.
        assert_eq!(
            json(&out[1].key)["payload"]["__dbz__physicalTableIdentifier"],
            "p.public.u"
        );
        assert_eq!(out[2].key, out[1].key);
        // A key change: the records' keys carry the field, the headers the table's key only.
        let mut delete = event(Op::Delete, &t, 5, 1);
        delete.source.tx_index = 1;
        let create = event(Op::Create, &t, 5, 2);
        let mut out = Vec::new();
        e.emit_key_change(&r, &delete, &create, &mut out).unwrap();
        let header = |r: &Record, name: &str| {
            r.headers
                .iter()
                .find(|(n, _)| &**n == name)
                .map(|(_, v)| serde_json::from_slice::<serde_json::Value>(v).unwrap())
        };
        assert_eq!(
            header(&out[0], PK_UPDATE_NEWKEY_HEADER),
            Some(serde_json::json!({"id": 2}))
        );
        assert_eq!(
            header(&out[2], PK_UPDATE_OLDKEY_HEADER),
            Some(serde_json::json!({"id": 1}))
        );
        assert_eq!(
            json(&out[2].key)["payload"],
            serde_json::json!({"id": 2, "__dbz__physicalTableIdentifier": "p.public.t"})
        );
    }

    #[test]
    fn skipped_operations_become_nothing() {
        let t = table();
        let mut tables = BTreeMap::new();
        tables.insert(
            "public.t".to_string(),
            TableConfig {
                skip_ops: vec![crate::router::OpName::Update],
                ..TableConfig::default()
            },
        );
        let mut out = Vec::new();
        let emitted = emitter(false)
            .emit(&router(&tables), &event(Op::Update, &t, 5, 1), &mut out)
            .unwrap();
        assert_eq!(emitted, Emitted::default());
        assert!(out.is_empty());
    }

    fn headers(r: &Record) -> Vec<(String, String)> {
        r.headers
            .iter()
            .filter(|(k, _)| k.starts_with("__debezium"))
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).into_owned()))
            .collect()
    }

    #[test]
    fn key_changes_carry_debezium_key_headers_without_the_key_schema() {
        for schemas_enable in [false, true] {
            let t = table();
            let mut e = emitter(schemas_enable);
            let mut out = Vec::new();
            let [d, c] = e
                .emit_key_change(
                    &router(&BTreeMap::new()),
                    &event(Op::Delete, &t, 5, 1),
                    &event(Op::Create, &t, 5, 2),
                    &mut out,
                )
                .unwrap();
            assert_eq!((d.records, c.records), (2, 1));
            let new_key = vec![("__debezium.newkey".to_string(), r#"{"id":2}"#.to_string())];
            assert_eq!(headers(&out[0]), new_key);
            assert_eq!(headers(&out[1]), new_key);
            assert_eq!(
                headers(&out[2]),
                vec![("__debezium.oldkey".to_string(), r#"{"id":1}"#.to_string())]
            );
            // As they go out: walrus's standard headers, then Debezium's.
            let names: Vec<&str> = out[2].header_pairs().map(|(k, _)| k).collect();
            assert_eq!(names[..3], ["id", "op", "table"]);
            assert_eq!(names.last(), Some(&"__debezium.oldkey"));
            assert_eq!(out[2].header_count(), names.len());
            if schemas_enable {
                assert!(out[0].key.as_ref().unwrap().starts_with(b"{\"schema\":"));
            }
        }
    }

    #[test]
    fn logical_messages_go_to_the_message_topic() {
        let ev = ChangeEvent {
            op: Op::Message,
            table: None,
            before: None,
            after: None,
            source: SourcePosition::default(),
            message: Some(crate::event::LogicalMessage {
                prefix: "audit".into(),
                content: b"hi".to_vec(),
                transactional: true,
            }),
        };
        let mut out = Vec::new();
        emitter(false)
            .emit(&router(&BTreeMap::new()), &ev, &mut out)
            .unwrap();
        assert_eq!(&*out[0].topic, "p.message");
        assert_eq!(json(&out[0].key), serde_json::json!({"prefix": "audit"}));
        assert_eq!(json(&out[0].value)["message"]["prefix"], "audit");
    }

    /// Records the topics it is asked to encode for, and writes nothing else.
    struct TopicProbe(Arc<std::sync::Mutex<Vec<String>>>);

    impl Encoder for TopicProbe {
        fn encode_key(
            &mut self,
            topic: &str,
            _: Option<&LogicalTable>,
            _: &ChangeEvent,
            _: &[usize],
            out: &mut Vec<u8>,
        ) -> Result<bool, FormatError> {
            self.0.lock().unwrap().push(format!("key {topic}"));
            out.clear();
            Ok(true)
        }

        fn encode_value(
            &mut self,
            topic: &str,
            _: Option<&LogicalTable>,
            _: &ChangeEvent,
            out: &mut Vec<u8>,
        ) -> Result<(), FormatError> {
            self.0.lock().unwrap().push(format!("value {topic}"));
            out.clear();
            Ok(())
        }

        fn encode_value_in_transaction(
            &mut self,
            topic: &str,
            logical: Option<&LogicalTable>,
            ev: &ChangeEvent,
            _: &TransactionBlock,
            out: &mut Vec<u8>,
        ) -> Result<(), FormatError> {
            self.encode_value(topic, logical, ev, out)
        }

        fn encode_transaction_key(
            &mut self,
            topic: &str,
            _: &str,
            out: &mut Vec<u8>,
        ) -> Result<(), FormatError> {
            self.0.lock().unwrap().push(format!("key {topic}"));
            out.clear();
            Ok(())
        }

        fn encode_transaction_value(
            &mut self,
            topic: &str,
            _: &TransactionEvent,
            out: &mut Vec<u8>,
        ) -> Result<(), FormatError> {
            self.0.lock().unwrap().push(format!("value {topic}"));
            out.clear();
            Ok(())
        }

        fn fork(&self) -> Box<dyn Encoder> {
            Box::new(TopicProbe(self.0.clone()))
        }

        fn key_header(&self, key: &Bytes) -> Bytes {
            key.clone()
        }
    }

    #[test]
    fn encoders_are_told_the_routed_topic() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut e = Emitter::new(
            Box::new(TopicProbe(seen.clone())),
            Box::new(TopicProbe(seen.clone())),
            EmitOptions {
                tombstones_on_delete: false,
                headers: false,
                message_topic: Arc::from("p.message"),
                count_events: false,
                transaction_topic: None,
            },
        );
        let mut tables = BTreeMap::new();
        tables.insert(
            "public.t".to_string(),
            TableConfig {
                topic: Some("orders.all".into()),
                ..TableConfig::default()
            },
        );
        let mut out = Vec::new();
        e.emit(
            &router(&tables),
            &event(Op::Create, &table(), 1, 2),
            &mut out,
        )
        .unwrap();
        assert_eq!(&*out[0].topic, "orders.all");
        assert_eq!(
            *seen.lock().unwrap(),
            vec!["key orders.all".to_string(), "value orders.all".to_string()]
        );
    }

    #[test]
    fn transaction_metadata_brackets_a_transaction_with_begin_and_end() {
        let format = FormatConfig::default();
        let (key, value) = crate::format::encoders(&format, "p", "db");
        let mut e = Emitter::new(
            key,
            value,
            EmitOptions {
                tombstones_on_delete: true,
                headers: false,
                message_topic: Arc::from("p.message"),
                count_events: false,
                transaction_topic: Some(Arc::from("p.transaction")),
            },
        );
        let t = table();
        let mut tables = BTreeMap::new();
        tables.insert(
            "public.t".to_string(),
            TableConfig {
                skip_ops: vec![crate::router::OpName::Update],
                ..TableConfig::default()
            },
        );
        let r = router(&tables);
        let at = |op, lsn: u64| {
            let mut ev = event(op, &t, 5, 1);
            ev.source.tx_id = Some(42);
            ev.source.lsn = crate::lsn::Lsn(lsn);
            ev.source.commit_time_us = 7_000_123;
            ev
        };
        let mut out = Vec::new();
        assert_eq!(
            e.begin_transaction(42, crate::lsn::Lsn(90), 7_000_123, &mut out)
                .unwrap(),
            1
        );
        e.emit(&r, &at(Op::Create, 100), &mut out).unwrap();
        // Skipped: not counted.
        e.emit(&r, &at(Op::Update, 110), &mut out).unwrap();
        e.emit(&r, &at(Op::Delete, 120), &mut out).unwrap();
        assert_eq!(
            e.end_transaction(42, crate::lsn::Lsn(130), 7_000_123, &mut out)
                .unwrap(),
            1
        );
        let topics: Vec<&str> = out.iter().map(|r| &*r.topic).collect();
        assert_eq!(
            topics,
            [
                "p.transaction",
                "p.public.t",
                "p.public.t",
                "p.public.t",
                "p.transaction"
            ]
        );
        assert_eq!(json(&out[0].key), serde_json::json!({"id": "42:90"}));
        assert_eq!(
            json(&out[0].value),
            serde_json::json!({"status": "BEGIN", "id": "42:90", "event_count": null,
                "data_collections": null, "ts_ms": 7000})
        );
        assert_eq!(out[0].timestamp_ms, 7000);
        assert_eq!(
            json(&out[1].value)["transaction"],
            serde_json::json!({"id": "42:100", "total_order": 1, "data_collection_order": 1})
        );
        assert_eq!(
            json(&out[2].value)["transaction"],
            serde_json::json!({"id": "42:120", "total_order": 2, "data_collection_order": 2})
        );
        assert!(out[3].value.is_none(), "the delete's tombstone");
        assert_eq!(json(&out[4].key), serde_json::json!({"id": "42:130"}));
        assert_eq!(
            json(&out[4].value),
            serde_json::json!({"status": "END", "id": "42:130", "event_count": 2,
                "data_collections": [{"data_collection": "public.t", "event_count": 2}],
                "ts_ms": 7000})
        );
        // Outside an opened transaction (a snapshot read, or metadata for another xid):
        // no block.
        let mut out = Vec::new();
        e.emit(&r, &at(Op::Create, 140), &mut out).unwrap();
        assert!(json(&out[0].value)["transaction"].is_null());
        // Off: nothing added.
        let mut off = emitter(false);
        assert_eq!(
            off.begin_transaction(1, crate::lsn::Lsn(1), 0, &mut out)
                .unwrap(),
            0
        );
        assert_eq!(
            off.end_transaction(1, crate::lsn::Lsn(1), 0, &mut out)
                .unwrap(),
            0
        );
    }
}
