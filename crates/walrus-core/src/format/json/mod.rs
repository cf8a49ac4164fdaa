//! Debezium JSON: change events encoded exactly as Debezium's PostgreSQL connector and Kafka
//! Connect's `JsonConverter` would write them.
//!
//! # Shapes
//!
//! The value of a row change is Debezium's envelope, fields in the order of Debezium's
//! envelope schema (`TableSchemaBuilder` + `SchemaFactory.datatypeEnvelopeSchema`):
//!
//! ```text
//! {"before":{..}|null, "after":{..}|null, "source":{..}, "transaction":null,
//!  "op":"c|u|d|r|t", "ts_ms":now, "ts_us":now, "ts_ns":now}
//! ```
//!
//! `source` follows `PostgresSourceInfoStructMaker`: `version, connector, name, ts_ms,
//! snapshot, db, sequence, ts_us, ts_ns, schema, table, txId, lsn, xmin, origin, origin_lsn`.
//! `JsonConverter` writes every field of a struct schema, so absent values are JSON `null`,
//! except `snapshot`, whose schema default `"false"` is written instead of null.
//!
//! - `before` is the old row the WAL carried: the replica-identity columns under DEFAULT or
//!   USING INDEX (the other columns are written as `null`, as Debezium does; they are optional
//!   in the schema) or the whole row under FULL; `null` when the WAL carried no old row (an
//!   insert, or an update that did not change the key).
//! - Truncates (`op: "t"`) have `before` and `after` null and a null key.
//! - Logical messages (`op: "m"`) use Debezium's `MessageValue` shape
//!   `{"op":"m","ts_ms":..,"source":{..,"schema":"","table":""},"transaction":null,
//!   "message":{"prefix":..,"content":<bytes>}}` and the key `{"prefix":..}`.
//!
//! With `schemas_enable`, key and value are wrapped as `{"schema":{..},"payload":{..}}`, the
//! schema in `JsonConverter.asJsonSchema` form: `type` (`int32`, `float`, `double`, `bytes`,
//! `string`, `struct`, ...), `fields`, `optional`, `name`, `version`, `doc`, `parameters`,
//! `default`, and `field` for struct members, in that order.
//!
//! # Optionality
//!
//! As Debezium's: a value field is `optional: false` when its column is declared `NOT NULL`
//! (`pg_attribute.attnotnull`, read from the catalog because pgoutput's Relation message
//! does not carry it) or is part of the primary key, `optional: true` otherwise; in the key
//! schema all fields are `optional: false`. A required column whose value the WAL did not
//! carry (the `before` image of a delete or key change under `REPLICA IDENTITY DEFAULT`
//! holds the key columns only) is written as Debezium's fallback for its type: `0`,
//! `false`, `""`, the epoch, `[]`, `{}`.
//!
//! # Types (Debezium defaults in brackets)
//!
//! | PostgreSQL | JSON | schema |
//! |---|---|---|
//! | bool, int2, int4, int8, oid | boolean / number | `boolean`, `int16`, `int32`, `int64` |
//! | float4, float8 | number; `"NaN"`, `"Infinity"`, `"-Infinity"` as Jackson writes them | `float`, `double` |
//! | numeric(p,s) (precise) | base64 of the unscaled value's big-endian two's complement | `org.apache.kafka.connect.data.Decimal` with `scale`, `connect.decimal.precision` |
//! | numeric (precise) | `{"scale":s,"value":base64}` (trailing zeros stripped) | `io.debezium.data.VariableScaleDecimal` |
//! | numeric (double / string) | number / exact text | `double` / `string` |
//! | date | days since epoch | `io.debezium.time.Date` (Connect: `org.apache.kafka.connect.data.Date`) |
//! | time(p) | p ≤ 3: millis (`io.debezium.time.Time`), else micros (`io.debezium.time.MicroTime`) | |
//! | timestamp(p) | p ≤ 3: millis (`io.debezium.time.Timestamp`), else micros (`io.debezium.time.MicroTimestamp`) | |
//! | timestamptz(p) | UTC ISO-8601 with exactly p fraction digits (6 when unspecified), e.g. `2024-01-02T03:04:05.123456Z` | `io.debezium.time.ZonedTimestamp` |
//! | interval (numeric) | micros, months as 365.25/12 days (`MicroDuration.DAYS_PER_MONTH_AVG`) | `io.debezium.time.MicroDuration` |
//! | interval (string) | `P1Y2M3DT4H5M6.78S` | `io.debezium.time.Interval` |
//! | json, jsonb / uuid / xml | the text | `string` named `io.debezium.data.Json` / `Uuid` / `Xml` |
//! | bytea (bytes) | base64 | `bytes` (base64, base64-url-safe, hex: `string`) |
//! | everything else | PostgreSQL's text | `string` |
//!
//! Where walrus cannot do what Debezium does it degrades rather than fails:
//! - `numeric` NaN/±Infinity in precise mode is written as `null` (Debezium stops the
//!   connector); in string mode it is `"NAN"`, `"POSITIVE_INFINITY"`, `"NEGATIVE_INFINITY"`
//!   as Debezium writes it.
//! - A value that the source could not type (e.g. `infinity` timestamps, kept as
//!   [`Value::Text`]) is written in its natural JSON form, here a string, as Debezium does for
//!   `timestamptz` infinities.
//! - [`Value::Unavailable`] (unchanged TOAST) is the placeholder string in every column, and
//!   the placeholder's bytes (base64) in a `bytea` column in `bytes` mode (Debezium's
//!   `UnchangedToastedPlaceholder`).
//!
//! # Layout
//!
//! This module holds the options, the encoder and its per-table cache, and the envelope and
//! `source` writing; the rest sits beside it, each part used by the encoder only (the column type →
//! Connect shape mapping, `format::kinds`, is shared with Avro):
//! `schema` (Connect schema JSON), `values` (values
//! by kind), `writers` (escaping, numbers,
//! dates and times), and `tests`.
//!
//! # Performance
//!
//! Encoding writes straight into the caller's reusable `Vec<u8>`s: no `serde_json::Value`
//! trees, no per-event allocation on the common path. Everything that depends only on the
//! table (schema JSON, escaped field names, column kinds) is built once per Relation and
//! cached by relation id; a new `Arc<Table>` with the same content reuses the cache.

mod schema;
#[cfg(test)]
mod tests;
mod transaction;
mod values;
mod writers;

use crate::format::kinds::*;
#[cfg(test)]
use crate::format::logical::DAYS_PER_MONTH_AVG;
use crate::format::logical::{
    self, micro_duration, special_numeric as is_special_numeric, split_decimal, twos_complement,
    unscaled_digits, write_iso_date, write_iso_time, MICROS_PER_DAY, MICROS_PER_SECOND,
};
use schema::*;
use transaction::write_transaction_block;
use values::*;
use writers::*;

use std::sync::Arc;

use base64::Engine as _;

use crate::config::FormatConfig;
pub use crate::config::{
    BinaryHandlingMode, DecimalHandlingMode, HstoreHandlingMode, IntervalHandlingMode,
    TimePrecisionMode,
};
use crate::event::{ChangeEvent, Op, Row, Table};
use crate::format::LogicalTable;
use crate::ids::IdMap;
use crate::lsn::Lsn;
#[cfg(test)]
use crate::time::civil_from_days;
use crate::time::now_us;
use crate::value::{PgArray, Value};

/// Debezium's default `unavailable.value.placeholder`.
pub const DEFAULT_PLACEHOLDER: &str = "__debezium_unavailable_value";

/// What the encoder needs to know beyond the event: Debezium's converter options and the
/// constant parts of `source`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonOptions {
    /// Wrap key and value as `{"schema":..,"payload":..}` (`schemas.enable`).
    pub schemas_enable: bool,
    /// `topic.prefix`: `source.name`, and the first part of schema names.
    pub topic_prefix: String,
    /// The database name (`source.db`).
    pub database: String,
    /// `decimal.handling.mode`.
    pub decimal_handling: DecimalHandlingMode,
    /// `binary.handling.mode`.
    pub binary_handling: BinaryHandlingMode,
    /// `time.precision.mode`.
    pub time_precision: TimePrecisionMode,
    /// `interval.handling.mode`.
    pub interval_handling: IntervalHandlingMode,
    /// `hstore.handling.mode`.
    pub hstore_handling: HstoreHandlingMode,
    /// `unavailable.value.placeholder`, written for unchanged TOASTed values.
    pub unavailable_value_placeholder: String,
    /// `source.version`; walrus's own version by default.
    pub connector_version: String,
}

impl Default for JsonOptions {
    fn default() -> Self {
        JsonOptions {
            schemas_enable: false,
            topic_prefix: String::new(),
            database: String::new(),
            decimal_handling: DecimalHandlingMode::default(),
            binary_handling: BinaryHandlingMode::default(),
            time_precision: TimePrecisionMode::default(),
            interval_handling: IntervalHandlingMode::default(),
            hstore_handling: HstoreHandlingMode::default(),
            unavailable_value_placeholder: DEFAULT_PLACEHOLDER.to_string(),
            connector_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

impl JsonOptions {
    /// Options from the `[format]` config section, the topic prefix and the database name.
    pub fn from_config(
        config: &FormatConfig,
        topic_prefix: impl Into<String>,
        database: impl Into<String>,
    ) -> Self {
        JsonOptions {
            schemas_enable: config.schemas_enable,
            topic_prefix: topic_prefix.into(),
            database: database.into(),
            decimal_handling: config.decimal_handling_mode,
            binary_handling: config.binary_handling_mode,
            time_precision: config.time_precision_mode,
            interval_handling: config.interval_handling_mode,
            hstore_handling: config.hstore_handling_mode,
            unavailable_value_placeholder: config.unavailable_value_placeholder.clone(),
            ..JsonOptions::default()
        }
    }
}

/// Encodes [`ChangeEvent`]s as Debezium JSON keys and values. Holds a cache of per-table
/// schema JSON, so keep one encoder per pipeline and reuse it.
#[derive(Debug)]
pub struct JsonEncoder {
    opts: JsonOptions,
    /// `{"version":..,"connector":"postgresql","name":..,"ts_ms":`
    source_head: Vec<u8>,
    /// `"db":<database>,"sequence":`
    source_db: Vec<u8>,
    /// The placeholder as a JSON string.
    placeholder_str: Vec<u8>,
    /// The placeholder's bytes base64-encoded, as a JSON string.
    placeholder_b64: Vec<u8>,
    /// The source struct's schema JSON (without the trailing `"field"`).
    source_schema: Vec<u8>,
    /// Key and value schema JSON of logical messages.
    message_key_schema: Vec<u8>,
    message_value_schema: Vec<u8>,
    /// Per relation id.
    tables: IdMap<u32, TableEntry>,
    /// Scratch space for decimal digits and two's complement bytes.
    digits: Vec<u8>,
    bytes: Vec<u8>,
}

/// Everything about one table version that does not change from event to event.
#[derive(Debug)]
struct TableEntry {
    table: Arc<Table>,
    fields: Vec<Field>,
    /// `"schema":..,"table":..,"txId":`
    source_table: Vec<u8>,
    /// The envelope schema JSON; empty unless schemas are enabled.
    value_schema: Vec<u8>,
    /// The last key column list seen and its key schema JSON.
    key_columns: Vec<usize>,
    key_schema: Vec<u8>,
    /// The logical table the schemas were built for (names after the merged topic, the
    /// added key field); `None` for Debezium's per-table names.
    logical: Option<LogicalTable>,
    /// `,"<key field>":"<value>"`, the added key field's payload; empty without one.
    key_field_json: Vec<u8>,
}

/// One column: how its values are written.
#[derive(Debug)]
struct Field {
    kind: Kind,
    /// `"<name>":`, escaped.
    name_json: Box<[u8]>,
    /// What a required (`NOT NULL`) column's missing value is written as, as Debezium
    /// fills it ([`fallback_value`]); `None` for optional columns, whose null stays null.
    fallback: Option<Value>,
    /// The column's `DEFAULT` for the schema's `"default"` ([`default_value`]).
    default: Option<Value>,
}

impl TableEntry {
    fn build(
        table: &Arc<Table>,
        opts: &JsonOptions,
        source_schema: &[u8],
        logical: Option<&LogicalTable>,
    ) -> TableEntry {
        let fields: Vec<Field> = table
            .columns
            .iter()
            .map(|c| {
                let mut name_json = Vec::with_capacity(c.name.len() + 3);
                write_str(&mut name_json, &c.name);
                name_json.push(b':');
                let kind = kind_of(c, opts);
                let default = default_value(c, &kind);
                Field {
                    // Debezium fills a missing required value with the schema's default
                    // first, then the type's fallback.
                    fallback: c
                        .value_required()
                        .then(|| default.clone().or_else(|| fallback_value(c, &kind)))
                        .flatten(),
                    default,
                    kind,
                    name_json: name_json.into_boxed_slice(),
                }
            })
            .collect();
        let mut source_table = Vec::with_capacity(64);
        source_table.extend_from_slice(b"\"schema\":");
        write_str(&mut source_table, &table.schema);
        source_table.extend_from_slice(b",\"table\":");
        write_str(&mut source_table, &table.name);
        source_table.extend_from_slice(b",\"txId\":");
        let mut key_field_json = Vec::new();
        if let Some((name, value)) = logical.and_then(|l| l.key_field.as_ref()) {
            key_field_json.push(b',');
            write_str(&mut key_field_json, name);
            key_field_json.push(b':');
            write_str(&mut key_field_json, value);
        }
        let mut entry = TableEntry {
            table: Arc::clone(table),
            fields,
            source_table,
            value_schema: Vec::new(),
            key_columns: Vec::new(),
            key_schema: Vec::new(),
            logical: logical.cloned(),
            key_field_json,
        };
        if opts.schemas_enable {
            entry.value_schema = entry.envelope_schema(opts, source_schema);
        }
        entry
    }

    /// `<prefix>.<schema>.<table>.<suffix>`, or `<merged topic>.<suffix>` for a logical
    /// table (as `ByLogicalTableRouter` renames them).
    fn schema_name(&self, opts: &JsonOptions, suffix: &str) -> String {
        match &self.logical {
            Some(l) => format!("{}.{suffix}", l.schema_base),
            None => format!(
                "{}.{}.{}.{}",
                opts.topic_prefix, self.table.schema, self.table.name, suffix
            ),
        }
    }

    fn envelope_schema(&self, opts: &JsonOptions, source_schema: &[u8]) -> Vec<u8> {
        let value_name = self.schema_name(opts, "Value");
        let mut row = Vec::with_capacity(256 + 64 * self.fields.len());
        write_columns_struct(
            &mut row,
            &self.table,
            &self.fields,
            &mut (0..self.table.columns.len()),
            StructShape::Value,
            &value_name,
            opts,
        );
        let mut s = Vec::with_capacity(2 * row.len() + source_schema.len() + 512);
        s.extend_from_slice(b"{\"type\":\"struct\",\"fields\":[");
        s.extend_from_slice(&row);
        end_field(&mut s, "before");
        s.push(b',');
        s.extend_from_slice(&row);
        end_field(&mut s, "after");
        s.push(b',');
        s.extend_from_slice(source_schema);
        end_field(&mut s, "source");
        s.push(b',');
        s.extend_from_slice(TRANSACTION_FIELD_SCHEMA);
        s.push(b',');
        simple_field(&mut s, "string", false, "op");
        s.push(b',');
        simple_field(&mut s, "int64", true, "ts_ms");
        s.push(b',');
        simple_field(&mut s, "int64", true, "ts_us");
        s.push(b',');
        simple_field(&mut s, "int64", true, "ts_ns");
        s.extend_from_slice(b"],\"optional\":false,\"name\":");
        write_str(&mut s, &self.schema_name(opts, "Envelope"));
        s.extend_from_slice(b",\"version\":2}");
        s
    }

    fn key_schema_for(&mut self, key_columns: &[usize], opts: &JsonOptions) -> &[u8] {
        if self.key_schema.is_empty() || self.key_columns != key_columns {
            let name = self.schema_name(opts, "Key");
            let mut s = Vec::with_capacity(128 + 64 * key_columns.len());
            write_columns_struct(
                &mut s,
                &self.table,
                &self.fields,
                &mut key_columns.iter().copied(),
                StructShape::Key {
                    extra: self
                        .logical
                        .as_ref()
                        .and_then(|l| l.key_field.as_ref())
                        .map(|(n, _)| n.as_str()),
                },
                &name,
                opts,
            );
            s.push(b'}');
            self.key_schema = s;
            self.key_columns.clear();
            self.key_columns.extend_from_slice(key_columns);
        }
        &self.key_schema
    }
}

/// `ts_ms`, `ts_us`, `ts_ns` from microseconds, each preceded by its name.
fn write_timestamps(out: &mut Vec<u8>, micros: i64) {
    out.extend_from_slice(b"\"ts_ms\":");
    write_int(out, micros.div_euclid(1000));
    out.extend_from_slice(b",\"ts_us\":");
    write_int(out, micros);
    out.extend_from_slice(b",\"ts_ns\":");
    write_int(out, micros.saturating_mul(1000));
}

fn lsn_opt(lsn: Lsn) -> Option<u64> {
    (!lsn.is_zero()).then_some(lsn.as_u64())
}

/// The cache entry for `table`, built on first use and rebuilt when a Relation message
/// changed the table. A free function so that callers can hold other encoder fields at the
/// same time.
fn table_entry<'a>(
    tables: &'a mut IdMap<u32, TableEntry>,
    table: &Arc<Table>,
    opts: &JsonOptions,
    source_schema: &[u8],
    logical: Option<&LogicalTable>,
) -> &'a mut TableEntry {
    let entry = tables
        .entry(table.id)
        .or_insert_with(|| TableEntry::build(table, opts, source_schema, logical));
    if entry.logical.as_ref() != logical {
        // Routed otherwise (a rename moved the table to another rule): other names.
        *entry = TableEntry::build(table, opts, source_schema, logical);
    } else if !Arc::ptr_eq(&entry.table, table) {
        if *entry.table == **table {
            // Same content in a new Arc: keep the work, remember the new pointer.
            entry.table = Arc::clone(table);
        } else {
            *entry = TableEntry::build(table, opts, source_schema, logical);
        }
    }
    entry
}

impl JsonEncoder {
    /// An encoder for the given options; schema JSON is built lazily, per table.
    pub fn new(opts: JsonOptions) -> Self {
        let mut source_head = Vec::with_capacity(128);
        source_head.extend_from_slice(b"{\"version\":");
        write_str(&mut source_head, &opts.connector_version);
        source_head.extend_from_slice(b",\"connector\":\"postgresql\",\"name\":");
        write_str(&mut source_head, &opts.topic_prefix);
        source_head.extend_from_slice(b",\"ts_ms\":");
        let mut source_db = Vec::with_capacity(32);
        source_db.extend_from_slice(b"\"db\":");
        write_str(&mut source_db, &opts.database);
        source_db.extend_from_slice(b",\"sequence\":");
        let mut placeholder_str = Vec::new();
        write_str(&mut placeholder_str, &opts.unavailable_value_placeholder);
        let mut placeholder_b64 = Vec::new();
        write_base64(
            &mut placeholder_b64,
            opts.unavailable_value_placeholder.as_bytes(),
            false,
        );
        let source_schema = source_schema();
        let message_value_schema = message_value_schema(&source_schema, &opts);
        JsonEncoder {
            source_head,
            source_db,
            placeholder_str,
            placeholder_b64,
            message_key_schema: message_key_schema(),
            message_value_schema,
            source_schema,
            opts,
            tables: IdMap::default(),
            digits: Vec::with_capacity(64),
            bytes: Vec::with_capacity(32),
        }
    }

    /// The options this encoder was built with.
    pub fn options(&self) -> &JsonOptions {
        &self.opts
    }

    /// Writes the key of `ev` into `out` (cleared first) and returns `true`, or returns
    /// `false` for a null key: no key columns, a truncate, or no row to take the key from.
    ///
    /// `key_columns` are column indexes, chosen by the router (by default
    /// [`Table::key_indexes`]); the key is taken from `after`, or from `before` for deletes.
    /// Logical messages ignore `key_columns` and get Debezium's `{"prefix":..}` key.
    pub fn encode_key(
        &mut self,
        ev: &ChangeEvent,
        key_columns: &[usize],
        out: &mut Vec<u8>,
    ) -> bool {
        self.encode_logical_key(None, ev, key_columns, out)
    }

    /// [`Self::encode_key`] of a table merged into one topic with others: the key schema
    /// is named `<topic>.Key` and ends with the logical table's key field, if any.
    pub fn encode_logical_key(
        &mut self,
        logical: Option<&LogicalTable>,
        ev: &ChangeEvent,
        key_columns: &[usize],
        out: &mut Vec<u8>,
    ) -> bool {
        out.clear();
        if ev.op == Op::Message {
            if self.opts.schemas_enable {
                out.extend_from_slice(b"{\"schema\":");
                out.extend_from_slice(&self.message_key_schema);
                out.extend_from_slice(b",\"payload\":");
            }
            out.extend_from_slice(b"{\"prefix\":");
            match &ev.message {
                Some(m) => write_str(out, &m.prefix),
                None => out.extend_from_slice(b"null"),
            }
            out.push(b'}');
            if self.opts.schemas_enable {
                out.push(b'}');
            }
            return true;
        }
        let Some(table) = &ev.table else {
            return false;
        };
        let row = ev.key_row();
        let Some(row) = row else {
            return false;
        };
        if key_columns.is_empty() {
            return false;
        }
        let schemas = self.opts.schemas_enable;
        // Split borrows: the entry lives in `self.tables`, the rest is read-only.
        let JsonEncoder {
            opts,
            tables,
            source_schema,
            placeholder_str,
            placeholder_b64,
            digits,
            bytes,
            ..
        } = self;
        let entry = table_entry(tables, table, opts, source_schema, logical);
        if schemas {
            out.extend_from_slice(b"{\"schema\":");
            out.extend_from_slice(entry.key_schema_for(key_columns, opts));
            out.extend_from_slice(b",\"payload\":");
        }
        let w = ValueWriter {
            opts,
            placeholder_str,
            placeholder_b64,
        };
        out.push(b'{');
        let mut first = true;
        for &i in key_columns {
            let Some(field) = entry.fields.get(i) else {
                continue;
            };
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(&field.name_json);
            w.write(
                out,
                &field.kind,
                row.values.get(i).unwrap_or(&Value::Null),
                digits,
                bytes,
            );
        }
        out.extend_from_slice(&entry.key_field_json);
        out.push(b'}');
        if schemas {
            out.push(b'}');
        }
        true
    }

    /// Writes the value of `ev` into `out` (cleared first), stamped with the current time.
    pub fn encode_value(&mut self, ev: &ChangeEvent, out: &mut Vec<u8>) {
        self.encode_value_at(ev, now_us(), out);
    }

    /// [`Self::encode_value`] with the processing time (`ts_ms`/`ts_us`/`ts_ns` at the top
    /// level) given in microseconds since the epoch, for deterministic output.
    pub fn encode_value_at(&mut self, ev: &ChangeEvent, now_us: i64, out: &mut Vec<u8>) {
        self.encode_value_in_transaction_at(ev, None, now_us, out);
    }

    /// [`Self::encode_value_at`] with Debezium's `transaction` block (`null` when `tx` is
    /// `None`).
    pub fn encode_value_in_transaction_at(
        &mut self,
        ev: &ChangeEvent,
        tx: Option<&crate::transactions::TransactionBlock>,
        now_us: i64,
        out: &mut Vec<u8>,
    ) {
        self.encode_logical_value_at(None, ev, tx, now_us, out);
    }

    /// [`Self::encode_value_in_transaction_at`] of a table merged into one topic with
    /// others: the envelope is named `<topic>.Envelope`, its rows `<topic>.Value`.
    pub fn encode_logical_value_at(
        &mut self,
        logical: Option<&LogicalTable>,
        ev: &ChangeEvent,
        tx: Option<&crate::transactions::TransactionBlock>,
        now_us: i64,
        out: &mut Vec<u8>,
    ) {
        out.clear();
        if ev.op == Op::Message {
            self.encode_message(ev, tx, now_us, out);
            return;
        }
        let table = ev.table_or_placeholder();
        let schemas = self.opts.schemas_enable;
        let JsonEncoder {
            opts,
            tables,
            source_schema,
            source_head,
            source_db,
            placeholder_str,
            placeholder_b64,
            digits,
            bytes,
            ..
        } = self;
        let entry = table_entry(tables, table, opts, source_schema, logical);
        if schemas {
            out.extend_from_slice(b"{\"schema\":");
            out.extend_from_slice(&entry.value_schema);
            out.extend_from_slice(b",\"payload\":");
        }
        let w = ValueWriter {
            opts,
            placeholder_str,
            placeholder_b64,
        };
        let (before, after) = ev.envelope_rows();
        out.extend_from_slice(b"{\"before\":");
        w.write_row(out, &entry.fields, before, digits, bytes);
        out.extend_from_slice(b",\"after\":");
        w.write_row(out, &entry.fields, after, digits, bytes);
        out.extend_from_slice(b",\"source\":");
        write_source(out, ev, source_head, source_db, &entry.source_table);
        out.extend_from_slice(b",\"transaction\":");
        write_transaction_block(out, tx);
        out.extend_from_slice(b",\"op\":\"");
        out.extend_from_slice(ev.op.code().as_bytes());
        out.extend_from_slice(b"\",");
        write_timestamps(out, now_us);
        out.push(b'}');
        if schemas {
            out.push(b'}');
        }
    }

    fn encode_message(
        &mut self,
        ev: &ChangeEvent,
        tx: Option<&crate::transactions::TransactionBlock>,
        now_us: i64,
        out: &mut Vec<u8>,
    ) {
        let schemas = self.opts.schemas_enable;
        if schemas {
            out.extend_from_slice(b"{\"schema\":");
            out.extend_from_slice(&self.message_value_schema);
            out.extend_from_slice(b",\"payload\":");
        }
        out.extend_from_slice(b"{\"op\":\"m\",\"ts_ms\":");
        write_int(out, now_us.div_euclid(1000));
        out.extend_from_slice(b",\"source\":");
        write_source(
            out,
            ev,
            &self.source_head,
            &self.source_db,
            b"\"schema\":\"\",\"table\":\"\",\"txId\":",
        );
        out.extend_from_slice(b",\"transaction\":");
        write_transaction_block(out, tx);
        out.extend_from_slice(b",\"message\":{\"prefix\":");
        match &ev.message {
            Some(m) => {
                write_str(out, &m.prefix);
                out.extend_from_slice(b",\"content\":");
                write_binary(out, &m.content, self.opts.binary_handling);
            }
            None => out.extend_from_slice(b"null,\"content\":null"),
        }
        out.extend_from_slice(b"}}");
        if schemas {
            out.push(b'}');
        }
    }
}

impl super::Encoder for JsonEncoder {
    fn encode_key(
        &mut self,
        _topic: &str,
        logical: Option<&LogicalTable>,
        ev: &ChangeEvent,
        key_columns: &[usize],
        out: &mut Vec<u8>,
    ) -> Result<bool, super::FormatError> {
        Ok(self.encode_logical_key(logical, ev, key_columns, out))
    }

    fn encode_value(
        &mut self,
        _topic: &str,
        logical: Option<&LogicalTable>,
        ev: &ChangeEvent,
        out: &mut Vec<u8>,
    ) -> Result<(), super::FormatError> {
        self.encode_logical_value_at(logical, ev, None, now_us(), out);
        Ok(())
    }

    fn encode_value_in_transaction(
        &mut self,
        _topic: &str,
        logical: Option<&LogicalTable>,
        ev: &ChangeEvent,
        tx: &crate::transactions::TransactionBlock,
        out: &mut Vec<u8>,
    ) -> Result<(), super::FormatError> {
        self.encode_logical_value_at(logical, ev, Some(tx), now_us(), out);
        Ok(())
    }

    fn encode_transaction_key(
        &mut self,
        _topic: &str,
        id: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), super::FormatError> {
        JsonEncoder::encode_transaction_key(self, id, out);
        Ok(())
    }

    fn encode_transaction_value(
        &mut self,
        _topic: &str,
        ev: &crate::transactions::TransactionEvent,
        out: &mut Vec<u8>,
    ) -> Result<(), super::FormatError> {
        JsonEncoder::encode_transaction_value(self, ev, out);
        Ok(())
    }

    fn fork(&self) -> Box<dyn super::Encoder> {
        Box::new(JsonEncoder::new(self.opts.clone()))
    }

    /// The key's `payload` when it is written with its schema (`{"schema":…,"payload":…}`);
    /// the key itself otherwise.
    fn key_header(&self, key: &bytes::Bytes) -> bytes::Bytes {
        // The schema part holds no `,"payload":` member (its members are type, fields,
        // optional, name, field, version, parameters), so the first one starts the payload.
        const MEMBER: &[u8] = b",\"payload\":";
        if !self.opts.schemas_enable || !key.starts_with(b"{\"schema\":") || !key.ends_with(b"}") {
            return key.clone();
        }
        match key.windows(MEMBER.len()).position(|w| w == MEMBER) {
            Some(at) => key.slice(at + MEMBER.len()..key.len() - 1),
            None => key.clone(),
        }
    }
}

/// The `source` block. `table_part` is `"schema":..,"table":..,"txId":`.
fn write_source(out: &mut Vec<u8>, ev: &ChangeEvent, head: &[u8], db: &[u8], table_part: &[u8]) {
    let src = &ev.source;
    let commit_us = src.commit_time_us;
    out.extend_from_slice(head);
    write_int(out, commit_us.div_euclid(1000));
    out.extend_from_slice(b",\"snapshot\":\"");
    out.extend_from_slice(src.snapshot.as_str().as_bytes());
    out.extend_from_slice(b"\",");
    out.extend_from_slice(db);
    // A JSON string holding the JSON array ["<last commit lsn>","<lsn>"], as SourceInfo
    // serialises it with Jackson.
    out.extend_from_slice(b"\"[");
    match src.last_commit_lsn.and_then(lsn_opt) {
        Some(l) => {
            out.extend_from_slice(b"\\\"");
            write_int(out, l);
            out.extend_from_slice(b"\\\"");
        }
        None => out.extend_from_slice(b"null"),
    }
    out.push(b',');
    match lsn_opt(src.lsn) {
        Some(l) => {
            out.extend_from_slice(b"\\\"");
            write_int(out, l);
            out.extend_from_slice(b"\\\"");
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b"]\",\"ts_us\":");
    write_int(out, commit_us);
    out.extend_from_slice(b",\"ts_ns\":");
    write_int(out, commit_us.saturating_mul(1000));
    out.push(b',');
    out.extend_from_slice(table_part);
    write_opt_int(out, src.tx_id);
    out.extend_from_slice(b",\"lsn\":");
    write_opt_int(out, lsn_opt(src.lsn));
    out.extend_from_slice(b",\"xmin\":null,\"origin\":");
    match &src.origin {
        Some(o) => write_str(out, o),
        None => out.extend_from_slice(b"null"),
    }
    // The origin's own LSN is not tracked by walrus.
    out.extend_from_slice(b",\"origin_lsn\":null}");
}
