//! Avro: change events in the Confluent wire format, with schemas as Debezium's users get
//! them from Kafka Connect's `AvroConverter` and a Confluent-compatible schema registry.
//!
//! ```text
//!  ChangeEvent ─▶ AvroEncoder ─┬─ per table version: Kinds, Connect schemas ─▶ Avro schema JSON
//!                              │        └─▶ SchemaRegistry::register(subject, schema) ─▶ id (cached)
//!                              └─▶ [0x00][id: u32 BE][Avro binary body]
//! ```
//!
//! - [`schema`]: Connect schemas as Debezium builds them and their Avro rendering
//!   (`AvroData.fromConnectSchema`): record names `<prefix>.<schema>.<table>.Key`,
//!   `.Value`, `.Envelope`, `io.debezium.connector.postgresql.Source`, logical types,
//!   `connect.*` properties, optional fields as `["null", T]` with a null default.
//! - [`encode`]: the Avro binary body, written by hand into the caller's buffer.
//! - [`logical`]: Debezium's logical-type values (decimal bytes, ISO strings, durations).
//! - [`registry`]: subjects, the registry client, its id cache and its errors.
//!
//! A table's schemas are built when its first event (or first event after a Relation
//! message changed it) is encoded, and registered right then, so the new version exists in
//! the registry before any record of the new shape is handed to a sink. A schema the
//! registry refuses stops the pipeline with [`AvroError::Incompatible`]: nothing of the new
//! shape is written and the slot keeps the WAL until an operator acts.
//!
//! Tombstones stay Kafka null values: the sink writes a record whose value is `None`.

pub mod decode;
pub mod encode;
pub mod registry;
pub mod schema;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::DeleteTombstoneHandling;
use crate::error::{Classify, ErrorKind};
use crate::event::{ChangeEvent, Op, Row, Table};
use crate::format::json::JsonOptions;
use crate::format::kinds::{default_value, fallback_value};
use crate::format::LogicalTable;
use crate::ids::IdMap;
use crate::lsn::Lsn;
use crate::unwrap::{Flattened, Unwrap};
use crate::value::Value;

use encode::ValueWriter;
pub use registry::{
    ConfiguredRegistry, MemoryRegistry, RegistryAuth, RegistryClient, RegistryError,
    SchemaRegistry, SubjectNameStrategy,
};
use schema::{AvroSchemaWriter, ConnectSchema, ConnectType, Kind};

/// The Confluent wire format's magic byte.
pub const MAGIC_BYTE: u8 = 0;

/// Errors of the Avro format.
#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    /// The registry refused a schema of a table (incompatible under the subject's level).
    #[error(
        "the schema registry refused the new {} schema of {} ({}) for subject {:?} under its compatibility level {}: {}",
        .0.part, .0.table, .0.change, .0.subject, .0.level, .0.message
    )]
    Incompatible(Box<Refusal>),
    /// The envelope walrus wrote could not be read back to flatten it
    /// (`ExtractNewRecordState`): a defect, never retried.
    #[error("{table}: walrus could not read back its own Avro envelope to flatten it ([transforms.unwrap]); this is a walrus defect, please report it")]
    Unflattenable {
        /// `schema.table`.
        table: String,
    },
    /// Talking to the registry failed otherwise.
    #[error("{table}: {source}")]
    Registry {
        /// `schema.table`, or `logical messages`.
        table: String,
        /// What went wrong.
        #[source]
        source: RegistryError,
    },
}

/// A schema the registry refused, and why.
#[derive(Debug)]
pub struct Refusal {
    /// `schema.table`, or `logical messages`.
    pub table: String,
    /// `key` or `value`.
    pub part: &'static str,
    /// What changed in the table since the schema walrus registered before.
    pub change: String,
    /// The subject.
    pub subject: String,
    /// The subject's compatibility level (or the registry's default).
    pub level: String,
    /// The registry's own words.
    pub message: String,
}

impl Classify for AvroError {
    fn kind(&self) -> ErrorKind {
        match self {
            AvroError::Incompatible(_) => ErrorKind::SchemaIncompatible,
            AvroError::Unflattenable { .. } => ErrorKind::Decode,
            AvroError::Registry { source, .. } => source.kind(),
        }
    }
}

/// What the Avro encoder needs beyond the event.
#[derive(Clone, Debug)]
pub struct AvroOptions {
    /// The handling modes, topic prefix, database name and connector version, shared with
    /// the JSON format (`schemas_enable` is ignored: Avro always has its schema).
    pub format: JsonOptions,
    /// How subjects are named.
    pub subject_strategy: SubjectNameStrategy,
}

/// Encodes events as Confluent-framed Avro. Holds per-table schemas and their ids; keep
/// one per pipeline (or [`AvroEncoder::fork`] one per worker: the registry's id cache is
/// shared).
pub struct AvroEncoder {
    opts: AvroOptions,
    registry: Arc<dyn SchemaRegistry>,
    tables: IdMap<u32, TableEntry>,
    message_key: Registered,
    message_value: Registered,
    /// `TransactionMetadataKey` and `TransactionMetadataValue` (`[transactions]`).
    transaction_key: Registered,
    transaction_value: Registered,
    /// `<prefix>.message`.
    message_topic: String,
    digits: Vec<u8>,
    scratch: Vec<u8>,
    text: String,
    /// The envelope body a flat value is cut from (reused).
    envelope_scratch: Vec<u8>,
}

impl std::fmt::Debug for AvroEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroEncoder")
            .field("opts", &self.opts)
            .field("tables", &self.tables.len())
            .finish()
    }
}

/// A schema, its Avro JSON, its record full name, and the ids it got per topic.
#[derive(Debug)]
struct Registered {
    schema: ConnectSchema,
    json: String,
    record_name: String,
    ids: Vec<(String, u32)>,
}

impl Registered {
    fn new(schema: &ConnectSchema) -> Self {
        Registered {
            schema: schema.clone(),
            json: AvroSchemaWriter::render(schema),
            record_name: AvroSchemaWriter::record_full_name(schema),
            ids: Vec::new(),
        }
    }
}

/// One table version: column kinds, and the key and value schemas with their ids.
#[derive(Debug)]
struct TableEntry {
    table: Arc<Table>,
    /// Kind, value-side optionality and, for a required column, the fallback for a missing
    /// value (Debezium's, [`fallback_value`]) per column.
    fields: Vec<(Kind, bool, Option<Value>)>,
    value: Registered,
    key_columns: Vec<usize>,
    key: Option<Registered>,
    /// What changed since the previous version of this table, for error messages.
    change: String,
    /// The table's default topic, `<prefix>.<schema>.<table>`, for subjects when the
    /// caller names no topic.
    topic: String,
    /// The logical table the schemas were built for (see [`LogicalTable`]).
    logical: Option<LogicalTable>,
    /// The flat value schema (`ExtractNewRecordState`) and the options it was built for.
    flat: Option<(Unwrap, Registered)>,
}

impl TableEntry {
    fn build(
        table: &Arc<Table>,
        opts: &JsonOptions,
        previous: Option<&Table>,
        logical: Option<&LogicalTable>,
    ) -> TableEntry {
        let fields: Vec<(Kind, bool, Option<Value>)> = table
            .columns
            .iter()
            .map(|c| {
                let kind = schema::kind_of(c, opts);
                let optional = value_optional(c);
                let fallback = if optional {
                    None
                } else {
                    default_value(c, &kind).or_else(|| fallback_value(c, &kind))
                };
                (kind, optional, fallback)
            })
            .collect();
        let value_schema = schema::row_schema(
            schema_name(opts, table, logical, "Value"),
            table
                .columns
                .iter()
                .zip(&fields)
                .map(|(c, (k, opt, _))| (c.name.as_str(), k, *opt)),
            true,
            opts,
        );
        let envelope =
            schema::envelope_schema(value_schema, schema_name(opts, table, logical, "Envelope"));
        TableEntry {
            table: Arc::clone(table),
            value: Registered::new(&envelope),
            fields,
            key_columns: Vec::new(),
            key: None,
            change: describe_change(previous, table),
            topic: format!("{}.{}.{}", opts.topic_prefix, table.schema, table.name),
            logical: logical.cloned(),
            flat: None,
        }
    }

    /// Builds the key schema for `key_columns` unless the last one was for them.
    fn ensure_key(&mut self, key_columns: &[usize], opts: &JsonOptions) {
        if self.key.is_none() || self.key_columns != key_columns {
            // A logical table's key field is a required string after the key columns.
            let extra = self
                .logical
                .as_ref()
                .and_then(|l| l.key_field.as_ref())
                .map(|(name, _)| (name.as_str(), &Kind::Str(None), false));
            let key = schema::row_schema(
                schema_name(opts, &self.table, self.logical.as_ref(), "Key"),
                key_columns
                    .iter()
                    .filter_map(|&i| {
                        let c = self.table.columns.get(i)?;
                        let (k, _, _) = self.fields.get(i)?;
                        Some((c.name.as_str(), k, false))
                    })
                    .chain(extra),
                false,
                opts,
            );
            self.key = Some(Registered::new(&key));
            self.key_columns.clear();
            self.key_columns.extend_from_slice(key_columns);
        }
    }
}

/// Whether a column's value field is optional (a `["null", T]` union): all but `NOT NULL`
/// and primary-key columns, as the JSON format and Debezium decide.
fn value_optional(c: &crate::event::Column) -> bool {
    !c.value_required()
}

/// `<prefix>.<schema>.<table>.<suffix>`, or `<merged topic>.<suffix>` for a logical table.
fn schema_name(
    opts: &JsonOptions,
    table: &Table,
    logical: Option<&LogicalTable>,
    suffix: &str,
) -> String {
    match logical {
        Some(l) => format!("{}.{suffix}", l.schema_base),
        None => format!(
            "{}.{}.{}.{}",
            opts.topic_prefix, table.schema, table.name, suffix
        ),
    }
}

/// Column differences between two versions of a table, in words.
fn describe_change(previous: Option<&Table>, table: &Table) -> String {
    let Some(prev) = previous else {
        return "its first schema in this run; the subject's latest version differs".into();
    };
    let mut parts = Vec::new();
    for c in &table.columns {
        match prev.columns.iter().find(|p| p.name == c.name) {
            None => parts.push(format!(
                "column {} {} added{}",
                c.name,
                c.type_name,
                if value_optional(c) { "" } else { " (required)" }
            )),
            Some(p) if p.type_oid != c.type_oid || p.type_modifier != c.type_modifier => parts
                .push(format!(
                    "column {} changed from {} to {}",
                    c.name, p.type_name, c.type_name
                )),
            Some(p) if value_optional(p) != value_optional(c) => parts.push(format!(
                "column {} is now {}",
                c.name,
                if value_optional(c) {
                    "optional"
                } else {
                    "required"
                }
            )),
            Some(_) => {}
        }
    }
    for p in &prev.columns {
        if !table.columns.iter().any(|c| c.name == p.name) {
            parts.push(format!("column {} dropped", p.name));
        }
    }
    if parts.is_empty() {
        "the table's shape changed".into()
    } else {
        parts.join(", ")
    }
}

/// The id of `reg` for `topic`, registering it under the strategy's subject on first use.
fn schema_id(
    registry: &dyn SchemaRegistry,
    strategy: SubjectNameStrategy,
    reg: &mut Registered,
    topic: &str,
    part: &'static str,
    table: Option<&Table>,
    change: &str,
) -> Result<u32, AvroError> {
    if let Some((_, id)) = reg.ids.iter().find(|(t, _)| t == topic) {
        return Ok(*id);
    }
    let subject = strategy.subject(topic, part == "key", &reg.record_name);
    let table = || table.map_or_else(|| MESSAGES.to_string(), Table::qualified_name);
    match registry.register(&subject, &reg.json) {
        Ok(id) => {
            reg.ids.push((topic.to_string(), id));
            Ok(id)
        }
        Err(RegistryError::Incompatible { level, message, .. }) => {
            Err(AvroError::Incompatible(Box::new(Refusal {
                table: table(),
                part,
                change: change.to_string(),
                subject,
                level,
                message,
            })))
        }
        Err(source) => Err(AvroError::Registry {
            table: table(),
            source,
        }),
    }
}

/// The optional `transaction` block (`["null", event.block]`).
fn write_transaction_block(out: &mut Vec<u8>, tx: Option<&crate::transactions::TransactionBlock>) {
    match tx {
        None => encode::null(out),
        Some(tx) => {
            encode::some(out);
            encode::string(out, &tx.id);
            encode::long(out, tx.total_order as i64);
            encode::long(out, tx.data_collection_order as i64);
        }
    }
}

/// `[0][id BE]`.
fn frame(out: &mut Vec<u8>, id: u32) {
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&id.to_be_bytes());
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn lsn_opt(lsn: Lsn) -> Option<u64> {
    (!lsn.is_zero()).then_some(lsn.as_u64())
}

const MESSAGES: &str = "logical messages";

/// The cache entry of `table`, built on first use and rebuilt (remembering what changed)
/// when a Relation message changed the table; a new `Arc` with the same content keeps it.
fn table_entry<'a>(
    tables: &'a mut IdMap<u32, TableEntry>,
    table: &Arc<Table>,
    opts: &JsonOptions,
    logical: Option<&LogicalTable>,
) -> &'a mut TableEntry {
    let entry = tables
        .entry(table.id)
        .or_insert_with(|| TableEntry::build(table, opts, None, logical));
    if entry.logical.as_ref() != logical {
        *entry = TableEntry::build(table, opts, None, logical);
    } else if !Arc::ptr_eq(&entry.table, table) {
        if *entry.table == **table {
            entry.table = Arc::clone(table);
        } else {
            let previous = Arc::clone(&entry.table);
            *entry = TableEntry::build(table, opts, Some(&previous), logical);
        }
    }
    entry
}

impl AvroEncoder {
    /// An encoder registering its schemas with `registry`.
    pub fn new(opts: AvroOptions, registry: Arc<dyn SchemaRegistry>) -> Self {
        let message_key = Registered::new(&schema::message_key_schema());
        let message_value = Registered::new(&schema::message_value_schema(&opts.format));
        AvroEncoder {
            message_topic: format!("{}.message", opts.format.topic_prefix),
            opts,
            registry,
            tables: IdMap::default(),
            message_key,
            message_value,
            transaction_key: Registered::new(&schema::transaction_key_schema()),
            transaction_value: Registered::new(&schema::transaction_value_schema()),
            digits: Vec::with_capacity(64),
            scratch: Vec::with_capacity(32),
            text: String::with_capacity(64),
            envelope_scratch: Vec::new(),
        }
    }

    /// A sibling with the same options and registry (its id cache is shared), with its
    /// own per-table cache.
    pub fn fork(&self) -> AvroEncoder {
        AvroEncoder::new(self.opts.clone(), Arc::clone(&self.registry))
    }

    /// The JSON form of a key this encoder wrote (framed), as Kafka Connect's
    /// `JsonConverter` writes it without a schema: Debezium's key-change headers carry keys
    /// so whatever the key converter. `None` for bytes this encoder did not write.
    pub fn key_json(&self, key: &[u8]) -> Option<String> {
        let (&magic, rest) = key.split_first()?;
        if magic != MAGIC_BYTE {
            return None;
        }
        let (id, body) = rest.split_at_checked(4)?;
        let id = u32::from_be_bytes(id.try_into().ok()?);
        let reg = std::iter::once(&self.message_key)
            .chain(std::iter::once(&self.transaction_key))
            .chain(self.tables.values().filter_map(|e| e.key.as_ref()))
            .find(|r| r.ids.iter().any(|(_, i)| *i == id))?;
        let mut out = String::with_capacity(2 * body.len() + 16);
        let rest = decode::to_json(&reg.schema, body, &mut out)?;
        rest.is_empty().then_some(out)
    }

    /// The options this encoder was built with.
    pub fn options(&self) -> &AvroOptions {
        &self.opts
    }

    /// The topic an event goes to when no route changes it: `<prefix>.<schema>.<table>`,
    /// `<prefix>.message` for logical messages (Debezium's defaults).
    pub fn default_topic(&self, ev: &ChangeEvent) -> String {
        let p = &self.opts.format.topic_prefix;
        match &ev.table {
            Some(t) if ev.op != Op::Message => format!("{p}.{}.{}", t.schema, t.name),
            _ => format!("{p}.message"),
        }
    }

    /// Writes the key of `ev` for `topic` into `out` (cleared first) and returns true, or
    /// false for a null key (no key columns, a truncate, no row). Logical messages get
    /// Debezium's `MessageKey` (`prefix`). The topic names the subject under the topic
    /// strategies; `None` means the event's default topic (see [`Self::default_topic`]).
    pub fn encode_key(
        &mut self,
        topic: Option<&str>,
        ev: &ChangeEvent,
        key_columns: &[usize],
        out: &mut Vec<u8>,
    ) -> Result<bool, AvroError> {
        self.encode_logical_key(topic, None, ev, key_columns, out)
    }

    /// [`Self::encode_key`] of a table merged into one topic with others: the key record is
    /// named `<topic>.Key` and ends with the logical table's key field, if any.
    pub fn encode_logical_key(
        &mut self,
        topic: Option<&str>,
        logical: Option<&LogicalTable>,
        ev: &ChangeEvent,
        key_columns: &[usize],
        out: &mut Vec<u8>,
    ) -> Result<bool, AvroError> {
        out.clear();
        let strategy = self.opts.subject_strategy;
        if ev.op == Op::Message {
            let id = schema_id(
                &*self.registry,
                strategy,
                &mut self.message_key,
                topic.unwrap_or(&self.message_topic),
                "key",
                None,
                "",
            )?;
            frame(out, id);
            encode::opt_string(out, ev.message.as_ref().map(|m| m.prefix.as_str()));
            return Ok(true);
        }
        let Some(table) = &ev.table else {
            return Ok(false);
        };
        let row = ev.key_row();
        let (Some(row), false) = (row, key_columns.is_empty()) else {
            return Ok(false);
        };
        let AvroEncoder {
            opts,
            registry,
            tables,
            digits,
            scratch,
            text,
            ..
        } = self;
        let entry = table_entry(tables, table, &opts.format, logical);
        entry.ensure_key(key_columns, &opts.format);
        let TableEntry {
            table: t,
            fields,
            key,
            change,
            topic: default_topic,
            logical,
            ..
        } = entry;
        let Some(reg) = key.as_mut() else {
            return Ok(false);
        };
        let topic = topic.unwrap_or(default_topic);
        let id = schema_id(&**registry, strategy, reg, topic, "key", Some(t), change)?;
        frame(out, id);
        let mut w = ValueWriter {
            opts: &opts.format,
            digits,
            scratch,
            text,
        };
        for &i in key_columns {
            if let Some((kind, _, _)) = fields.get(i) {
                w.write(out, kind, false, row.values.get(i).unwrap_or(&Value::Null));
            }
        }
        if let Some((_, value)) = logical.as_ref().and_then(|l| l.key_field.as_ref()) {
            encode::string(out, value);
        }
        Ok(true)
    }

    /// Writes the value of `ev` for `topic` (`None`: its default topic) into `out`
    /// (cleared first), stamped now.
    pub fn encode_value(
        &mut self,
        topic: Option<&str>,
        ev: &ChangeEvent,
        out: &mut Vec<u8>,
    ) -> Result<(), AvroError> {
        self.encode_value_at(topic, ev, now_us(), out)
    }

    /// [`Self::encode_value`] with the processing time given, for deterministic output.
    pub fn encode_value_at(
        &mut self,
        topic: Option<&str>,
        ev: &ChangeEvent,
        now_us: i64,
        out: &mut Vec<u8>,
    ) -> Result<(), AvroError> {
        self.encode_value_in_transaction_at(topic, ev, None, now_us, out)
    }

    /// [`Self::encode_value_at`] with Debezium's `transaction` block (`null` when `tx` is
    /// `None`).
    pub fn encode_value_in_transaction_at(
        &mut self,
        topic: Option<&str>,
        ev: &ChangeEvent,
        tx: Option<&crate::transactions::TransactionBlock>,
        now_us: i64,
        out: &mut Vec<u8>,
    ) -> Result<(), AvroError> {
        self.encode_logical_value_at(topic, None, ev, tx, now_us, out)
    }

    /// [`Self::encode_value_in_transaction_at`] of a table merged into one topic with
    /// others: the envelope is named `<topic>.Envelope`, its rows `<topic>.Value`.
    pub fn encode_logical_value_at(
        &mut self,
        topic: Option<&str>,
        logical: Option<&LogicalTable>,
        ev: &ChangeEvent,
        tx: Option<&crate::transactions::TransactionBlock>,
        now_us: i64,
        out: &mut Vec<u8>,
    ) -> Result<(), AvroError> {
        out.clear();
        let strategy = self.opts.subject_strategy;
        if ev.op == Op::Message {
            let id = schema_id(
                &*self.registry,
                strategy,
                &mut self.message_value,
                topic.unwrap_or(&self.message_topic),
                "value",
                None,
                "",
            )?;
            frame(out, id);
            self.write_message(ev, tx, now_us, out);
            return Ok(());
        }
        let table = ev.table_or_placeholder();
        let entry = table_entry(&mut self.tables, table, &self.opts.format, logical);
        let id = schema_id(
            &*self.registry,
            strategy,
            &mut entry.value,
            topic.unwrap_or(&entry.topic),
            "value",
            Some(&entry.table),
            &entry.change,
        )?;
        frame(out, id);
        self.envelope_body(logical, ev, tx, now_us, out);
        Ok(())
    }

    /// Appends the Avro body of `ev`'s envelope (no frame) to `out`.
    fn envelope_body(
        &mut self,
        logical: Option<&LogicalTable>,
        ev: &ChangeEvent,
        tx: Option<&crate::transactions::TransactionBlock>,
        now_us: i64,
        out: &mut Vec<u8>,
    ) {
        let table = ev.table_or_placeholder();
        let AvroEncoder {
            opts,
            tables,
            digits,
            scratch,
            text,
            ..
        } = self;
        let entry = table_entry(tables, table, &opts.format, logical);
        let mut w = ValueWriter {
            opts: &opts.format,
            digits,
            scratch,
            text,
        };
        let (before, after) = ev.envelope_rows();
        write_row(&mut w, out, &entry.fields, before);
        write_row(&mut w, out, &entry.fields, after);
        write_source(
            out,
            ev,
            &opts.format,
            &entry.table.schema,
            &entry.table.name,
            text,
        );
        write_transaction_block(out, tx);
        encode::string(out, ev.op.code());
        write_timestamps(out, now_us);
    }

    /// Debezium's `ExtractNewRecordState` as `AvroConverter` then writes it: the flat value
    /// of `ev` for `topic` into `out` (cleared first) and the `add.headers` headers into
    /// `headers`, or what else the record becomes (see [`crate::unwrap`]).
    ///
    /// The value schema is the table's `Value` record — as the SMT extracts the optional
    /// `after` field, a `["null", Value]` union — or, when `__deleted` or added fields
    /// change it, a copy of that record, required, with `__deleted` (optional string) and
    /// the added fields (their envelope schemas, optional, without defaults) appended, as
    /// Kafka Connect's `SchemaUtil` copies them. A delete in `tombstone` mode is a Kafka
    /// tombstone: `AvroConverter` writes a null value as null bytes. The body is cut from
    /// the envelope's own Avro body, so every value is written as in the envelope.
    #[allow(clippy::too_many_arguments)] // the event, where it goes, and what to do with it
    pub fn encode_unwrapped_at(
        &mut self,
        topic: Option<&str>,
        logical: Option<&LogicalTable>,
        ev: &ChangeEvent,
        tx: Option<&crate::transactions::TransactionBlock>,
        unwrap: &Unwrap,
        now_us: i64,
        out: &mut Vec<u8>,
        headers: &mut Vec<(Arc<str>, bytes::Bytes)>,
    ) -> Result<Flattened, AvroError> {
        out.clear();
        let mut body = std::mem::take(&mut self.envelope_scratch);
        body.clear();
        self.envelope_body(logical, ev, tx, now_us, &mut body);
        let result = self.flatten(topic, logical, ev, unwrap, &body, out, headers);
        self.envelope_scratch = body;
        result
    }

    /// [`Self::encode_unwrapped_at`] from the envelope body `body`.
    #[allow(clippy::too_many_arguments)]
    fn flatten(
        &mut self,
        topic: Option<&str>,
        logical: Option<&LogicalTable>,
        ev: &ChangeEvent,
        unwrap: &Unwrap,
        body: &[u8],
        out: &mut Vec<u8>,
        headers: &mut Vec<(Arc<str>, bytes::Bytes)>,
    ) -> Result<Flattened, AvroError> {
        let table = ev.table_or_placeholder();
        let strategy = self.opts.subject_strategy;
        let entry = table_entry(&mut self.tables, table, &self.opts.format, logical);
        let envelope = &entry.value.schema;
        let ConnectType::Struct(env_fields) = &envelope.ty else {
            return Ok(Flattened::Drop);
        };
        let unreadable = || AvroError::Unflattenable {
            table: table.qualified_name(),
        };
        let fields = decode::struct_ranges(env_fields, body).ok_or_else(unreadable)?;
        let field = |name: &str| {
            env_fields
                .iter()
                .position(|(n, _)| n == name)
                .map(|i| (&env_fields[i].1, &body[fields[i].clone()]))
        };
        // An added field or header: its schema and bytes in the envelope; a field of a
        // null struct (`transaction` outside transaction metadata) is null.
        let lookup =
            |parent: Option<&str>, name: &str| -> Option<(&ConnectSchema, Option<&[u8]>)> {
                match parent {
                    None => field(name).map(|(s, b)| (s, Some(b))),
                    Some(p) => {
                        let (ps, pb) = field(p)?;
                        let ConnectType::Struct(inner) = &ps.ty else {
                            return None;
                        };
                        let i = inner.iter().position(|(n, _)| n == name)?;
                        let mut pb = pb;
                        if ps.optional {
                            // `["null", struct]`: 0 is null.
                            let (&branch, rest) = pb.split_first()?;
                            if branch == 0 {
                                return Some((&inner[i].1, None));
                            }
                            pb = rest;
                        }
                        let ranges = decode::struct_ranges(inner, pb)?;
                        Some((&inner[i].1, Some(&pb[ranges[i].clone()])))
                    }
                }
            };
        let mut json = String::new();
        for (parent, name, header) in unwrap.added_headers() {
            let raw = match lookup(parent, name) {
                Some((s, Some(b))) => {
                    json.clear();
                    decode::to_json(s, b, &mut json).ok_or_else(unreadable)?;
                    json.as_bytes()
                }
                _ => b"null".as_slice(),
            };
            headers.push((Arc::from(header), Unwrap::header_value(raw)));
        }
        let (Some((_, before)), Some((_, after))) = (field("before"), field("after")) else {
            return Ok(Flattened::Drop);
        };
        // `["null", Value]`: a single 0 byte is null.
        let null = |b: &[u8]| b == [0];
        let rewrites = unwrap.rewrites_deletes();
        let (row, deleted) = match (null(after), null(before)) {
            (true, true) => return Ok(Flattened::Drop),
            (true, false) => match unwrap.mode() {
                DeleteTombstoneHandling::Drop => return Ok(Flattened::Drop),
                DeleteTombstoneHandling::Tombstone | DeleteTombstoneHandling::DeleteToTombstone => {
                    return Ok(Flattened::Tombstone)
                }
                DeleteTombstoneHandling::Rewrite
                | DeleteTombstoneHandling::RewriteWithTombstone => (before, Some("true")),
            },
            (false, _) => (after, rewrites.then_some("false")),
        };
        let changed = rewrites || unwrap.added_fields().next().is_some();
        // The flat schema, built once per table version and options.
        if entry.flat.as_ref().is_none_or(|(u, _)| u != unwrap) {
            let mut flat = env_fields[0].1.clone();
            if changed {
                flat.optional = false;
                if let ConnectType::Struct(fs) = &mut flat.ty {
                    if rewrites {
                        fs.push(ConnectSchema::field("__deleted", ConnectType::String, true));
                    }
                    for (parent, name, added) in unwrap.added_fields() {
                        if let Some((s, _)) = lookup(parent, name) {
                            let mut s = s.clone();
                            s.optional = true;
                            s.default = None;
                            fs.push((added.to_string(), s));
                        }
                    }
                }
            }
            entry.flat = Some((unwrap.clone(), Registered::new(&flat)));
        }
        let mut added: Vec<(&ConnectSchema, Option<&[u8]>)> = Vec::new();
        if changed {
            for (parent, name, _) in unwrap.added_fields() {
                if let Some(f) = lookup(parent, name) {
                    added.push(f);
                }
            }
        }
        let Some((_, reg)) = entry.flat.as_mut() else {
            return Ok(Flattened::Drop);
        };
        let id = schema_id(
            &*self.registry,
            strategy,
            reg,
            topic.unwrap_or(&entry.topic),
            "value",
            Some(&entry.table),
            &entry.change,
        )?;
        frame(out, id);
        if !changed {
            // The optional row as the envelope holds it: the union and the record.
            out.extend_from_slice(row);
            return Ok(Flattened::Value);
        }
        // A required record: the row without its union branch, then the added fields.
        out.extend_from_slice(&row[1..]);
        if let Some(d) = deleted {
            encode::some(out);
            encode::string(out, d);
        }
        for (s, bytes) in added {
            match bytes {
                None => encode::null(out),
                Some(b) if !s.optional => {
                    encode::some(out);
                    out.extend_from_slice(b);
                }
                // `[T, "null"]` (a schema with a default) becomes `["null", T]`.
                Some(b) if s.default.is_some() => match b.split_first() {
                    Some((0, rest)) => {
                        encode::some(out);
                        out.extend_from_slice(rest);
                    }
                    _ => encode::null(out),
                },
                Some(b) => out.extend_from_slice(b),
            }
        }
        Ok(Flattened::Value)
    }

    /// Writes the key of a transaction event (`TransactionMetadataKey`) for `topic` into
    /// `out` (cleared first).
    pub fn encode_transaction_key(
        &mut self,
        topic: &str,
        id: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), AvroError> {
        out.clear();
        let id_ = schema_id(
            &*self.registry,
            self.opts.subject_strategy,
            &mut self.transaction_key,
            topic,
            "key",
            None,
            "",
        )?;
        frame(out, id_);
        encode::string(out, id);
        Ok(())
    }

    /// Writes a `BEGIN`/`END` event (`TransactionMetadataValue`) for `topic` into `out`
    /// (cleared first).
    pub fn encode_transaction_value(
        &mut self,
        topic: &str,
        ev: &crate::transactions::TransactionEvent,
        out: &mut Vec<u8>,
    ) -> Result<(), AvroError> {
        out.clear();
        let id = schema_id(
            &*self.registry,
            self.opts.subject_strategy,
            &mut self.transaction_value,
            topic,
            "value",
            None,
            "",
        )?;
        frame(out, id);
        encode::string(out, ev.status.as_str());
        encode::string(out, &ev.id);
        encode::opt_long(out, ev.event_count.map(|c| c as i64));
        match &ev.data_collections {
            None => encode::null(out),
            Some(tables) => {
                encode::some(out);
                if !tables.is_empty() {
                    encode::long(out, tables.len() as i64);
                    for (name, count) in tables {
                        // Items are optional structs (`["null", event.collection]`).
                        encode::some(out);
                        encode::string(out, name);
                        encode::long(out, *count as i64);
                    }
                }
                encode::long(out, 0);
            }
        }
        encode::long(out, ev.ts_ms);
        Ok(())
    }

    fn write_message(
        &mut self,
        ev: &ChangeEvent,
        tx: Option<&crate::transactions::TransactionBlock>,
        now_us: i64,
        out: &mut Vec<u8>,
    ) {
        encode::string(out, "m");
        encode::opt_long(out, Some(now_us.div_euclid(1000)));
        write_source(out, ev, &self.opts.format, "", "", &mut self.text);
        write_transaction_block(out, tx);
        match &ev.message {
            Some(m) => {
                encode::opt_string(out, Some(&m.prefix));
                encode::some(out);
                let mut w = ValueWriter {
                    opts: &self.opts.format,
                    digits: &mut self.digits,
                    scratch: &mut self.scratch,
                    text: &mut self.text,
                };
                w.binary(out, &m.content);
            }
            None => {
                encode::null(out);
                encode::null(out);
            }
        }
    }
}

fn write_row(
    w: &mut ValueWriter<'_>,
    out: &mut Vec<u8>,
    fields: &[(Kind, bool, Option<Value>)],
    row: Option<&Row>,
) {
    let Some(row) = row else {
        encode::null(out);
        return;
    };
    encode::some(out);
    for (i, (kind, optional, fallback)) in fields.iter().enumerate() {
        let value = match (row.values.get(i), fallback) {
            (None | Some(Value::Null), Some(fallback)) => fallback,
            (Some(v), _) => v,
            (None, None) => &Value::Null,
        };
        w.write(out, kind, *optional, value);
    }
}

fn write_timestamps(out: &mut Vec<u8>, micros: i64) {
    encode::opt_long(out, Some(micros.div_euclid(1000)));
    encode::opt_long(out, Some(micros));
    encode::opt_long(out, Some(micros.saturating_mul(1000)));
}

/// The `source` record, field by field as [`schema::source_schema`] declares it.
fn write_source(
    out: &mut Vec<u8>,
    ev: &ChangeEvent,
    opts: &JsonOptions,
    schema: &str,
    table: &str,
    text: &mut String,
) {
    let src = &ev.source;
    let commit_us = src.commit_time_us;
    encode::string(out, &opts.connector_version);
    encode::string(out, "postgresql");
    encode::string(out, &opts.topic_prefix);
    encode::long(out, commit_us.div_euclid(1000));
    // `[string, "null"]`: the string branch is 0.
    out.push(0);
    encode::string(out, ev.source.snapshot.as_str());
    encode::string(out, &opts.database);
    // The JSON array ["<last commit lsn>","<lsn>"] as a string, built in reused scratch.
    let push_lsn = |text: &mut String, l: Option<u64>| match l {
        Some(l) => {
            text.push('"');
            text.push_str(itoa::Buffer::new().format(l));
            text.push('"');
        }
        None => text.push_str("null"),
    };
    text.clear();
    text.push('[');
    push_lsn(text, src.last_commit_lsn.and_then(lsn_opt));
    text.push(',');
    push_lsn(text, lsn_opt(src.lsn));
    text.push(']');
    encode::opt_string(out, Some(text));
    encode::opt_long(out, Some(commit_us));
    encode::opt_long(out, Some(commit_us.saturating_mul(1000)));
    encode::string(out, schema);
    encode::string(out, table);
    encode::opt_long(out, src.tx_id.map(i64::from));
    encode::opt_long(out, lsn_opt(src.lsn).map(|l| l as i64));
    encode::null(out); // xmin
    encode::opt_string(out, src.origin.as_deref());
    encode::null(out); // origin_lsn
}

/// Kafka Connect's `AvroConverter` as a key or value [`super::Encoder`]: subjects are named
/// after the event's default topic (`<prefix>.<schema>.<table>`, `<prefix>.message`).
impl super::Encoder for AvroEncoder {
    fn encode_key(
        &mut self,
        topic: &str,
        logical: Option<&LogicalTable>,
        ev: &ChangeEvent,
        key_columns: &[usize],
        out: &mut Vec<u8>,
    ) -> Result<bool, super::FormatError> {
        self.encode_logical_key(Some(topic), logical, ev, key_columns, out)
            .map_err(Into::into)
    }

    fn encode_value(
        &mut self,
        topic: &str,
        logical: Option<&LogicalTable>,
        ev: &ChangeEvent,
        out: &mut Vec<u8>,
    ) -> Result<(), super::FormatError> {
        self.encode_logical_value_at(Some(topic), logical, ev, None, now_us(), out)
            .map_err(Into::into)
    }

    fn encode_value_in_transaction(
        &mut self,
        topic: &str,
        logical: Option<&LogicalTable>,
        ev: &ChangeEvent,
        tx: &crate::transactions::TransactionBlock,
        out: &mut Vec<u8>,
    ) -> Result<(), super::FormatError> {
        self.encode_logical_value_at(Some(topic), logical, ev, Some(tx), now_us(), out)
            .map_err(Into::into)
    }

    fn encode_transaction_key(
        &mut self,
        topic: &str,
        id: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), super::FormatError> {
        AvroEncoder::encode_transaction_key(self, topic, id, out).map_err(Into::into)
    }

    fn encode_transaction_value(
        &mut self,
        topic: &str,
        ev: &crate::transactions::TransactionEvent,
        out: &mut Vec<u8>,
    ) -> Result<(), super::FormatError> {
        AvroEncoder::encode_transaction_value(self, topic, ev, out).map_err(Into::into)
    }

    fn encode_unwrapped(
        &mut self,
        topic: &str,
        logical: Option<&LogicalTable>,
        ev: &ChangeEvent,
        tx: Option<&crate::transactions::TransactionBlock>,
        unwrap: &Unwrap,
        out: &mut Vec<u8>,
        headers: &mut Vec<(Arc<str>, bytes::Bytes)>,
    ) -> Result<Option<Flattened>, super::FormatError> {
        self.encode_unwrapped_at(Some(topic), logical, ev, tx, unwrap, now_us(), out, headers)
            .map(Some)
            .map_err(Into::into)
    }

    fn fork(&self) -> Box<dyn super::Encoder> {
        Box::new(AvroEncoder::fork(self))
    }

    fn key_header(&self, key: &bytes::Bytes) -> bytes::Bytes {
        match self.key_json(key) {
            Some(json) => bytes::Bytes::from(json),
            None => key.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
