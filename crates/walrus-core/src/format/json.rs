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
//! pgoutput's Relation message does not say which columns are `NOT NULL`, so every value
//! field is `optional: true` except the key (replica identity) columns, which PostgreSQL
//! requires to be non-null; in the key schema all fields are `optional: false`. Debezium,
//! which reads the catalog, marks `NOT NULL` columns required; consumers that check this
//! should expect optional fields from walrus.
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
//! # Performance
//!
//! Encoding writes straight into the caller's reusable `Vec<u8>`s: no `serde_json::Value`
//! trees, no per-event allocation on the common path. Everything that depends only on the
//! table (schema JSON, escaped field names, column kinds) is built once per Relation and
//! cached by relation id; a new `Arc<Table>` with the same content reuses the cache.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;

use crate::config::FormatConfig;
pub use crate::config::{
    BinaryHandlingMode, DecimalHandlingMode, HstoreHandlingMode, IntervalHandlingMode,
    TimePrecisionMode,
};
use crate::event::{ChangeEvent, Column, Op, Row, Table};
use crate::lsn::Lsn;
use crate::time::{civil_from_days, now_us};
use crate::value::{builtin_array_element, PgArray, TypeDesc, Value};

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
    tables: HashMap<u32, TableEntry>,
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
}

/// One column: how its values are written.
#[derive(Debug)]
struct Field {
    kind: Kind,
    /// `"<name>":`, escaped.
    name_json: Box<[u8]>,
}

/// The Connect shape a column's values take, decided once from its type OID and typmod
/// (or its [`TypeDesc`]).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// `money`: a decimal with 2 fraction digits, per decimal mode (Debezium's
    /// `money.fraction.digits` default).
    Money,
    /// `bit(n)`/`varbit(n)`: `io.debezium.data.Bits` (little-endian bytes) for n > 1, a
    /// boolean for n = 1.
    Bits {
        length: i32,
    },
    /// `timetz`: `io.debezium.time.ZonedTime`, the time in UTC.
    ZonedTime,
    /// `point`: `io.debezium.data.geometry.Point`.
    Point,
    /// An enum: `io.debezium.data.Enum` with the allowed labels.
    Enum(Box<str>),
    /// An array of the element kind.
    Array(Box<Kind>),
    /// A composite: a struct of named fields.
    Struct(Box<[(String, Kind)]>),
    /// `hstore` as a JSON document string (`hstore.handling.mode` json).
    HstoreJson,
    /// `hstore` as a Connect map of optional strings (`hstore.handling.mode` map).
    HstoreMap,
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    /// Connect `Decimal` with a fixed scale (precise mode, `numeric(p,s)`).
    Decimal {
        precision: i32,
        scale: i32,
    },
    /// `VariableScaleDecimal` (precise mode, `numeric` without typmod).
    VariableDecimal,
    /// A JSON double (double mode).
    DecimalDouble,
    /// The exact text (string mode).
    DecimalString,
    /// A string, with a logical name (`io.debezium.data.Json`) or without.
    Str(Option<&'static str>),
    /// `bytea`, per binary mode.
    Binary,
    Date,
    /// `time`: `millis` for precision 0–3 in adaptive mode and in connect mode.
    Time {
        millis: bool,
    },
    /// `timestamp`: `millis` for precision 0–3 in adaptive modes and in connect mode.
    Timestamp {
        millis: bool,
    },
    /// `timestamptz` with the number of fraction digits to write.
    ZonedTimestamp {
        width: u8,
    },
    Interval,
}

// PostgreSQL type OIDs the encoder maps specially (see walrus-postgres `types::oid`).
const BOOL: u32 = 16;
const BYTEA: u32 = 17;
const INT8: u32 = 20;
const INT2: u32 = 21;
const INT4: u32 = 23;
const OID: u32 = 26;
const JSON: u32 = 114;
const XML: u32 = 142;
const FLOAT4: u32 = 700;
const FLOAT8: u32 = 701;
const DATE: u32 = 1082;
const TIME: u32 = 1083;
const TIMESTAMP: u32 = 1114;
const TIMESTAMPTZ: u32 = 1184;
const INTERVAL: u32 = 1186;
const NUMERIC: u32 = 1700;
const UUID: u32 = 2950;
const JSONB: u32 = 3802;
const MONEY: u32 = 790;
const BIT: u32 = 1560;
const VARBIT: u32 = 1562;
const TIMETZ: u32 = 1266;
const POINT: u32 = 600;
const TSVECTOR: u32 = 3614;

/// PostgreSQL's VARHDRSZ, the offset in varlena typmods.
const VARHDRSZ: i32 = 4;

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// Debezium's `MicroDuration.DAYS_PER_MONTH_AVG`.
const DAYS_PER_MONTH_AVG: f64 = 365.25 / 12.0;

/// `io.debezium.data.Enum` values allowed for `source.snapshot` (`SnapshotRecord`).
const SNAPSHOT_ALLOWED: &str =
    "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental";

/// Precision of `time`/`timestamp`/`timestamptz` from the typmod; PostgreSQL's default is 6
/// (the JDBC driver reports 6 for no typmod, which is what Debezium sees).
fn time_precision(type_modifier: i32) -> i32 {
    if (0..=6).contains(&type_modifier) {
        type_modifier
    } else {
        6
    }
}

fn kind_of(column: &Column, opts: &JsonOptions) -> Kind {
    match &column.type_desc {
        Some(desc) => kind_of_desc(desc, opts),
        None => kind_of_oid(column.type_oid, column.type_modifier, opts),
    }
}

fn kind_of_desc(desc: &TypeDesc, opts: &JsonOptions) -> Kind {
    match desc {
        TypeDesc::Builtin { oid, type_modifier } => kind_of_oid(*oid, *type_modifier, opts),
        TypeDesc::Enum { labels } => Kind::Enum(labels.join(",").into_boxed_str()),
        TypeDesc::Array(elem) => Kind::Array(Box::new(kind_of_desc(elem, opts))),
        TypeDesc::Composite { fields, .. } => Kind::Struct(
            fields
                .iter()
                .map(|(name, t)| (name.clone(), kind_of_desc(t, opts)))
                .collect(),
        ),
        TypeDesc::Hstore => match opts.hstore_handling {
            HstoreHandlingMode::Json => Kind::HstoreJson,
            HstoreHandlingMode::Map => Kind::HstoreMap,
        },
        TypeDesc::Ltree => Kind::Str(Some("io.debezium.data.Ltree")),
        TypeDesc::Citext | TypeDesc::Range { .. } | TypeDesc::Other { .. } => Kind::Str(None),
    }
}

fn kind_of_oid(type_oid: u32, type_modifier: i32, opts: &JsonOptions) -> Kind {
    if let Some(elem) = builtin_array_element(type_oid) {
        // Element typmods equal the array column's (numeric(10,2)[], varchar(5)[]).
        return Kind::Array(Box::new(kind_of_oid(elem, type_modifier, opts)));
    }
    match type_oid {
        BOOL => Kind::Bool,
        INT2 => Kind::Int16,
        INT4 => Kind::Int32,
        INT8 | OID => Kind::Int64,
        FLOAT4 => Kind::Float32,
        FLOAT8 => Kind::Float64,
        NUMERIC => match opts.decimal_handling {
            DecimalHandlingMode::Precise if type_modifier >= VARHDRSZ => {
                let t = type_modifier - VARHDRSZ;
                // PostgreSQL 15+ stores the scale as an 11-bit signed number (negative scales
                // are allowed); earlier versions only have 0..=1000, which decodes the same.
                let raw = t & 0x7ff;
                let scale = if raw & 0x400 != 0 { raw - 0x800 } else { raw };
                Kind::Decimal {
                    precision: (t >> 16) & 0xffff,
                    scale,
                }
            }
            DecimalHandlingMode::Precise => Kind::VariableDecimal,
            DecimalHandlingMode::Double => Kind::DecimalDouble,
            DecimalHandlingMode::String => Kind::DecimalString,
        },
        BYTEA => Kind::Binary,
        JSON | JSONB => Kind::Str(Some("io.debezium.data.Json")),
        UUID => Kind::Str(Some("io.debezium.data.Uuid")),
        XML => Kind::Str(Some("io.debezium.data.Xml")),
        DATE => Kind::Date,
        TIME => {
            let p = time_precision(type_modifier);
            Kind::Time {
                millis: match opts.time_precision {
                    TimePrecisionMode::Adaptive => p <= 3,
                    TimePrecisionMode::Connect => true,
                    TimePrecisionMode::AdaptiveTimeMicroseconds | TimePrecisionMode::Isostring => {
                        false
                    }
                },
            }
        }
        TIMESTAMP => {
            let p = time_precision(type_modifier);
            Kind::Timestamp {
                millis: match opts.time_precision {
                    TimePrecisionMode::Adaptive | TimePrecisionMode::AdaptiveTimeMicroseconds => {
                        p <= 3
                    }
                    TimePrecisionMode::Connect => true,
                    TimePrecisionMode::Isostring => false,
                },
            }
        }
        TIMESTAMPTZ => Kind::ZonedTimestamp {
            // Clamped to 0..=6 above, so the cast is lossless.
            width: time_precision(type_modifier) as u8,
        },
        INTERVAL => Kind::Interval,
        MONEY => Kind::Money,
        BIT | VARBIT => Kind::Bits {
            // bit without a length is bit(1); varbit without one is unbounded.
            length: if type_modifier >= 0 {
                type_modifier
            } else if type_oid == BIT {
                1
            } else {
                i32::MAX
            },
        },
        TIMETZ => Kind::ZonedTime,
        POINT => Kind::Point,
        TSVECTOR => Kind::Str(Some("io.debezium.data.TsVector")),
        _ => Kind::Str(None),
    }
}

/// The Connect schema of a kind: `(type, name, version)`.
fn schema_of(kind: &Kind, opts: &JsonOptions) -> (&'static str, Option<&'static str>, bool) {
    let iso = opts.time_precision == TimePrecisionMode::Isostring;
    let connect = opts.time_precision == TimePrecisionMode::Connect;
    match kind {
        Kind::Bool | Kind::Bits { length: ..=1 } => ("boolean", None, false),
        Kind::Bits { .. } => ("bytes", Some("io.debezium.data.Bits"), true),
        Kind::Money => match opts.decimal_handling {
            DecimalHandlingMode::Precise => {
                ("bytes", Some("org.apache.kafka.connect.data.Decimal"), true)
            }
            DecimalHandlingMode::Double => ("double", None, false),
            DecimalHandlingMode::String => ("string", None, false),
        },
        Kind::ZonedTime => ("string", Some("io.debezium.time.ZonedTime"), true),
        Kind::Point => ("struct", Some("io.debezium.data.geometry.Point"), true),
        Kind::Enum(_) => ("string", Some("io.debezium.data.Enum"), true),
        Kind::Array(_) => ("array", None, false),
        Kind::Struct(_) => ("struct", None, false),
        Kind::HstoreJson => ("string", Some("io.debezium.data.Json"), true),
        Kind::HstoreMap => ("map", None, false),
        Kind::Int16 => ("int16", None, false),
        Kind::Int32 => ("int32", None, false),
        Kind::Int64 => ("int64", None, false),
        Kind::Float32 => ("float", None, false),
        Kind::Float64 | Kind::DecimalDouble => ("double", None, false),
        Kind::Decimal { .. } => ("bytes", Some("org.apache.kafka.connect.data.Decimal"), true),
        Kind::VariableDecimal => (
            "struct",
            Some("io.debezium.data.VariableScaleDecimal"),
            true,
        ),
        Kind::DecimalString | Kind::Str(None) => ("string", None, false),
        Kind::Str(Some(name)) => ("string", Some(*name), true),
        Kind::Binary => match opts.binary_handling {
            BinaryHandlingMode::Bytes => ("bytes", None, false),
            _ => ("string", None, false),
        },
        Kind::Date if iso => ("string", Some("io.debezium.time.IsoDate"), true),
        Kind::Date if connect => ("int32", Some("org.apache.kafka.connect.data.Date"), true),
        Kind::Date => ("int32", Some("io.debezium.time.Date"), true),
        Kind::Time { .. } if iso => ("string", Some("io.debezium.time.IsoTime"), true),
        Kind::Time { .. } if connect => ("int32", Some("org.apache.kafka.connect.data.Time"), true),
        Kind::Time { millis: true } => ("int32", Some("io.debezium.time.Time"), true),
        Kind::Time { millis: false } => ("int64", Some("io.debezium.time.MicroTime"), true),
        Kind::Timestamp { .. } if iso => ("string", Some("io.debezium.time.IsoTimestamp"), true),
        Kind::Timestamp { .. } if connect => (
            "int64",
            Some("org.apache.kafka.connect.data.Timestamp"),
            true,
        ),
        Kind::Timestamp { millis: true } => ("int64", Some("io.debezium.time.Timestamp"), true),
        Kind::Timestamp { millis: false } => {
            ("int64", Some("io.debezium.time.MicroTimestamp"), true)
        }
        Kind::ZonedTimestamp { .. } => ("string", Some("io.debezium.time.ZonedTimestamp"), true),
        Kind::Interval => match opts.interval_handling {
            IntervalHandlingMode::Numeric => {
                ("int64", Some("io.debezium.time.MicroDuration"), true)
            }
            IntervalHandlingMode::String => ("string", Some("io.debezium.time.Interval"), true),
        },
    }
}

// ---------------------------------------------------------------------------------------
// Low-level JSON writing.

/// Writes `s` as a JSON string, escaped as Jackson does: `"` `\` and control characters
/// only; non-ASCII stays UTF-8.
fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        start = i + 1;
        if short.is_empty() {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(short);
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn write_int(out: &mut Vec<u8>, v: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

fn write_opt_int(out: &mut Vec<u8>, v: Option<impl itoa::Integer>) {
    match v {
        Some(v) => write_int(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// A double as Jackson writes it: a number, or the strings `"NaN"`, `"Infinity"`,
/// `"-Infinity"` (`QUOTE_NON_NUMERIC_NUMBERS`). Finite numbers use the shortest round-trip
/// digits, like Java's `Double.toString`, though the notation can differ (`1e20` vs `1.0E20`).
fn write_f64(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    } else {
        write_non_finite(out, v.is_nan(), v > 0.0);
    }
}

/// A float, formatted as an `f32` so that `0.1f32` stays `0.1`.
fn write_f32(out: &mut Vec<u8>, v: f32) {
    if v.is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    } else {
        write_non_finite(out, v.is_nan(), v > 0.0);
    }
}

fn write_non_finite(out: &mut Vec<u8>, nan: bool, positive: bool) {
    out.extend_from_slice(match (nan, positive) {
        (true, _) => b"\"NaN\"".as_slice(),
        (false, true) => b"\"Infinity\"",
        (false, false) => b"\"-Infinity\"",
    });
}

/// Base64 (standard alphabet, padded) of `bytes` as a JSON string.
fn write_base64(out: &mut Vec<u8>, bytes: &[u8], url_safe: bool) {
    out.push(b'"');
    let start = out.len();
    let len = base64::encoded_len(bytes.len(), true).unwrap_or(0);
    out.resize(start + len, 0);
    let written = if url_safe {
        base64::engine::general_purpose::URL_SAFE.encode_slice(bytes, &mut out[start..])
    } else {
        base64::engine::general_purpose::STANDARD.encode_slice(bytes, &mut out[start..])
    };
    // encoded_len is exact, so this cannot fail; never leave garbage if it somehow did.
    out.truncate(start + written.unwrap_or(0));
    out.push(b'"');
}

fn write_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    out.reserve(bytes.len() * 2 + 1);
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
    out.push(b'"');
}

fn push2(out: &mut Vec<u8>, v: u32) {
    out.push(b'0' + (v / 10 % 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

/// `YYYY-MM-DD` as `java.time.format.DateTimeFormatter.ISO_LOCAL_DATE` writes it: at least four
/// year digits, `+` above 9999, `-` before year 0.
fn write_iso_date(out: &mut Vec<u8>, days: i64) {
    let (y, m, d) = civil_from_days(days);
    if y > 9999 {
        out.push(b'+');
    } else if y < 0 {
        out.push(b'-');
    }
    let ya = y.unsigned_abs();
    if ya < 1000 {
        out.extend(std::iter::repeat_n(b'0', 4 - digits_u64(ya)));
    }
    write_int(out, ya);
    out.push(b'-');
    push2(out, m);
    out.push(b'-');
    push2(out, d);
}

fn digits_u64(v: u64) -> usize {
    v.checked_ilog10().map_or(1, |l| l as usize + 1)
}

/// `HH:MM:SS` then the fraction: exactly `width` digits when `width` is 1–9, else as few as
/// needed with none for a whole second (Java's `ISO_LOCAL_TIME`).
fn write_iso_time(out: &mut Vec<u8>, micros_of_day: i64, width: u8) {
    let secs = micros_of_day / MICROS_PER_SECOND;
    let frac = (micros_of_day % MICROS_PER_SECOND) as u32;
    push2(out, (secs / 3600) as u32);
    out.push(b':');
    push2(out, (secs / 60 % 60) as u32);
    out.push(b':');
    push2(out, (secs % 60) as u32);
    write_fraction(out, frac, width);
}

/// Writes `.ffffff` for `micros` (0..1_000_000): `width` digits when `width > 0` (nanosecond
/// digits past the sixth are zero), otherwise trimmed of trailing zeros and omitted for zero.
fn write_fraction(out: &mut Vec<u8>, micros: u32, width: u8) {
    let mut digits = [b'0'; 9];
    let mut v = micros;
    for slot in digits[..6].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    let n = if width > 0 {
        usize::from(width.min(9))
    } else {
        match digits[..6].iter().rposition(|&d| d != b'0') {
            Some(last) => last + 1,
            None => return,
        }
    };
    out.push(b'.');
    out.extend_from_slice(&digits[..n]);
}

/// ZonedTimestamp: the instant in UTC, `2024-01-02T03:04:05.123456Z`.
fn write_zoned_timestamp(out: &mut Vec<u8>, micros: i64, width: u8) {
    out.push(b'"');
    write_iso_date(out, micros.div_euclid(MICROS_PER_DAY));
    out.push(b'T');
    write_iso_time(out, micros.rem_euclid(MICROS_PER_DAY), width);
    out.extend_from_slice(b"Z\"");
}

/// Interval as Debezium's `Interval.toIsoString`: every component, `P1Y2M3DT4H5M6.78S`,
/// with hours, minutes and seconds carrying the sign of the time part as pgjdbc's
/// `PGInterval` splits it.
fn write_iso_interval(out: &mut Vec<u8>, months: i32, days: i32, micros: i64) {
    let neg = micros < 0;
    let a = micros.unsigned_abs();
    let hours = a / 3_600_000_000;
    let minutes = a / 60_000_000 % 60;
    let secs = a / 1_000_000 % 60;
    let frac = (a % 1_000_000) as u32;
    out.extend_from_slice(b"\"P");
    write_int(out, months / 12);
    out.push(b'Y');
    write_int(out, months % 12);
    out.push(b'M');
    write_int(out, days);
    out.extend_from_slice(b"DT");
    let signed = |out: &mut Vec<u8>, v: u64| {
        if neg && v != 0 {
            out.push(b'-');
        }
        write_int(out, v);
    };
    signed(out, hours);
    out.push(b'H');
    signed(out, minutes);
    out.push(b'M');
    if neg && (secs != 0 || frac != 0) {
        out.push(b'-');
    }
    write_int(out, secs);
    write_fraction(out, frac, 0);
    out.extend_from_slice(b"S\"");
}

/// `MicroDuration.durationMicros(years, months, days, hours, minutes, seconds,
/// DAYS_PER_MONTH_AVG)` computed with the same double arithmetic as Debezium, from the
/// fields pgjdbc's `PGInterval` would hold.
fn micro_duration(months: i32, days: i32, micros: i64) -> i64 {
    let neg = micros < 0;
    let a = micros.unsigned_abs();
    let sign = if neg { -1.0 } else { 1.0 };
    let hours = sign * (a / 3_600_000_000) as f64;
    let minutes = sign * (a / 60_000_000 % 60) as f64;
    let whole = sign * (a / 1_000_000 % 60) as f64;
    let frac = sign * (a % 1_000_000) as f64;
    // PGInterval.getSeconds(): wholeSeconds + microSeconds / 1e6.
    let seconds = whole + frac / 1e6;
    // Debezium's ((years * 12) + months), which is PostgreSQL's month count again.
    let number_of_days = f64::from(months) * DAYS_PER_MONTH_AVG + f64::from(days);
    let number_of_seconds = ((number_of_days * 24.0 + hours) * 60.0 + minutes) * 60.0 + seconds;
    // Java's (long) cast: truncation, saturating, NaN to 0; Rust's `as` does the same.
    (number_of_seconds * 1e6) as i64
}

// ---------------------------------------------------------------------------------------
// Decimals.

/// Splits canonical decimal text (`-12.340`) into sign, integer and fraction digits.
fn split_decimal(text: &str) -> Option<(bool, &[u8], &[u8])> {
    let b = text.as_bytes();
    let (neg, body) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    let (int, frac) = match body.iter().position(|&c| c == b'.') {
        Some(dot) => (&body[..dot], &body[dot + 1..]),
        None => (body, &body[body.len()..]),
    };
    let digits_ok = |d: &[u8]| d.iter().all(u8::is_ascii_digit);
    if (int.is_empty() && frac.is_empty()) || !digits_ok(int) || !digits_ok(frac) {
        return None;
    }
    Some((neg, int, frac))
}

/// The unscaled value of `text` at `scale` (rounding half up, like `BigDecimal.setScale`
/// with `HALF_UP`) as decimal digits in `out`, without leading zeros (empty for zero).
/// Returns whether it is negative (never for zero).
fn unscaled_digits(text: &str, scale: i32, out: &mut Vec<u8>) -> Option<bool> {
    let (neg, int, frac) = split_decimal(text)?;
    out.clear();
    out.extend_from_slice(int);
    out.extend_from_slice(frac);
    let keep = int.len() as i64 + i64::from(scale);
    let round_up;
    if keep >= out.len() as i64 {
        let pad = (keep - out.len() as i64) as usize;
        out.extend(std::iter::repeat_n(b'0', pad));
        round_up = false;
    } else if keep < 0 {
        out.clear();
        round_up = false;
    } else {
        let k = keep as usize;
        round_up = out[k] >= b'5';
        out.truncate(k);
    }
    if round_up {
        let mut i = out.len();
        loop {
            if i == 0 {
                out.insert(0, b'1');
                break;
            }
            i -= 1;
            if out[i] == b'9' {
                out[i] = b'0';
            } else {
                out[i] += 1;
                break;
            }
        }
    }
    let lead = out.iter().take_while(|&&d| d == b'0').count();
    out.drain(..lead);
    Some(neg && !out.is_empty())
}

/// Java's `BigInteger.toByteArray()` of `±digits`: minimal big-endian two's complement.
fn twos_complement(neg: bool, digits: &[u8], out: &mut Vec<u8>) {
    out.clear();
    if digits.len() <= 38 {
        // Fast path: fits an i128 (10^38 < 2^127).
        let mut v: i128 = 0;
        for &d in digits {
            v = v * 10 + i128::from(d - b'0');
        }
        let bytes = if neg { -v } else { v }.to_be_bytes();
        let mut start = 0;
        while start < 15 {
            let (b0, b1) = (bytes[start], bytes[start + 1]);
            if (b0 == 0x00 && b1 & 0x80 == 0) || (b0 == 0xff && b1 & 0x80 != 0) {
                start += 1;
            } else {
                break;
            }
        }
        out.extend_from_slice(&bytes[start..]);
        return;
    }
    // Big numbers (numeric allows 131072 digits before the point and 16383 after): the
    // magnitude in 64-bit limbs, little-endian, fed 19 decimal digits at a time (10^19 <
    // 2^64), then written big-endian and negated. Digit by digit into bytes would be ~50x
    // more work: seconds for one 131072-digit value, found by the value_parse fuzz target.
    const CHUNK: usize = 19;
    let mut limbs: Vec<u64> = Vec::with_capacity(digits.len() / CHUNK + 1);
    for chunk in digits.chunks(CHUNK) {
        let mut mul: u64 = 1;
        let mut add: u64 = 0;
        for &d in chunk {
            mul *= 10;
            add = add * 10 + u64::from(d - b'0');
        }
        let mut carry = u128::from(add);
        for limb in limbs.iter_mut() {
            let v = u128::from(*limb) * u128::from(mul) + carry;
            *limb = v as u64;
            carry = v >> 64;
        }
        if carry > 0 {
            limbs.push(carry as u64);
        }
    }
    out.extend(limbs.iter().rev().flat_map(|l| l.to_be_bytes()));
    let lead = out.iter().take_while(|&&b| b == 0).count();
    out.drain(..lead);
    if out.is_empty() {
        out.push(0);
        return;
    }
    if neg {
        let mut carry = 1u16;
        for byte in out.iter_mut().rev() {
            let v = u16::from(!*byte) + carry;
            *byte = v as u8;
            carry = v >> 8;
        }
        if out[0] & 0x80 == 0 {
            out.insert(0, 0xff);
        }
    } else if out[0] & 0x80 != 0 {
        out.insert(0, 0x00);
    }
}

fn is_special_numeric(text: &str) -> Option<&'static str> {
    // Debezium's SpecialValueDecimal names, which string mode writes.
    match text {
        "NaN" => Some("NAN"),
        "Infinity" => Some("POSITIVE_INFINITY"),
        "-Infinity" => Some("NEGATIVE_INFINITY"),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Schema JSON.

/// `{"type":..,"optional":..,["name":..,"version":1,]` without the closing brace, for
/// non-struct kinds; VariableScaleDecimal writes its whole struct schema.
fn write_field_schema(out: &mut Vec<u8>, kind: &Kind, optional: bool, opts: &JsonOptions) {
    let (ty, name, versioned) = schema_of(kind, opts);
    out.extend_from_slice(b"{\"type\":");
    write_str(out, ty);
    match kind {
        Kind::Array(elem) => {
            out.extend_from_slice(b",\"items\":");
            write_field_schema(out, elem, true, opts);
            out.push(b'}');
        }
        Kind::Struct(fields) => {
            out.extend_from_slice(b",\"fields\":[");
            for (i, (name, k)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_field_schema(out, k, true, opts);
                end_field(out, name);
            }
            out.push(b']');
        }
        Kind::Point => out.extend_from_slice(
            b",\"fields\":[{\"type\":\"double\",\"optional\":false,\"field\":\"x\"},\
              {\"type\":\"double\",\"optional\":false,\"field\":\"y\"},\
              {\"type\":\"bytes\",\"optional\":true,\"field\":\"wkb\"},\
              {\"type\":\"int32\",\"optional\":true,\"field\":\"srid\"}]",
        ),
        Kind::HstoreMap => out.extend_from_slice(
            b",\"keys\":{\"type\":\"string\",\"optional\":false},\
              \"values\":{\"type\":\"string\",\"optional\":true}",
        ),
        _ => {}
    }
    if *kind == Kind::VariableDecimal {
        out.extend_from_slice(
            b",\"fields\":[{\"type\":\"int32\",\"optional\":false,\"field\":\"scale\"},\
              {\"type\":\"bytes\",\"optional\":false,\"field\":\"value\"}]",
        );
    }
    out.extend_from_slice(if optional {
        b",\"optional\":true".as_slice()
    } else {
        b",\"optional\":false"
    });
    if let Some(name) = name {
        out.extend_from_slice(b",\"name\":");
        write_str(out, name);
        if versioned {
            out.extend_from_slice(b",\"version\":1");
        }
    }
    match kind {
        Kind::VariableDecimal => out.extend_from_slice(b",\"doc\":\"Variable scaled decimal\""),
        Kind::Point => out.extend_from_slice(b",\"doc\":\"Geometry (POINT)\""),
        _ => {}
    }
    match kind {
        Kind::Decimal { precision, scale } => {
            out.extend_from_slice(b",\"parameters\":{\"scale\":\"");
            write_int(out, *scale);
            out.extend_from_slice(b"\",\"connect.decimal.precision\":\"");
            write_int(out, *precision);
            out.extend_from_slice(b"\"}");
        }
        Kind::Money if opts.decimal_handling == DecimalHandlingMode::Precise => {
            out.extend_from_slice(b",\"parameters\":{\"scale\":\"2\"}");
        }
        Kind::Bits { length } if *length > 1 => {
            out.extend_from_slice(b",\"parameters\":{\"length\":\"");
            write_int(out, *length);
            out.extend_from_slice(b"\"}");
        }
        Kind::Enum(allowed) => {
            out.extend_from_slice(b",\"parameters\":{\"allowed\":");
            write_str(out, allowed);
            out.push(b'}');
        }
        _ => {}
    }
}

/// Ends a field schema started by [`write_field_schema`] or by hand with its `"field"`.
fn end_field(out: &mut Vec<u8>, field: &str) {
    out.extend_from_slice(b",\"field\":");
    write_str(out, field);
    out.push(b'}');
}

fn simple_field(out: &mut Vec<u8>, ty: &str, optional: bool, field: &str) {
    out.extend_from_slice(b"{\"type\":");
    write_str(out, ty);
    out.extend_from_slice(if optional {
        b",\"optional\":true".as_slice()
    } else {
        b",\"optional\":false"
    });
    end_field(out, field);
}

/// A struct of the given columns: `{"type":"struct","fields":[..],"optional":..,"name":..`
/// (left open for `"field"`/`"version"` and the closing brace).
fn write_columns_struct(
    out: &mut Vec<u8>,
    table: &Table,
    fields: &[Field],
    columns: &mut dyn Iterator<Item = usize>,
    key_schema: bool,
    name: &str,
    opts: &JsonOptions,
) {
    out.extend_from_slice(b"{\"type\":\"struct\",\"fields\":[");
    let mut first = true;
    for i in columns {
        let (Some(column), Some(field)) = (table.columns.get(i), fields.get(i)) else {
            continue;
        };
        if !first {
            out.push(b',');
        }
        first = false;
        // Primary-key columns are NOT NULL; pgoutput does not say which others are.
        write_field_schema(out, &field.kind, !key_schema && !column.primary_key, opts);
        end_field(out, &column.name);
    }
    out.extend_from_slice(if key_schema {
        b"],\"optional\":false,\"name\":".as_slice()
    } else {
        b"],\"optional\":true,\"name\":"
    });
    write_str(out, name);
}

fn source_schema() -> Vec<u8> {
    let mut s = Vec::with_capacity(1024);
    s.extend_from_slice(b"{\"type\":\"struct\",\"fields\":[");
    simple_field(&mut s, "string", false, "version");
    s.push(b',');
    simple_field(&mut s, "string", false, "connector");
    s.push(b',');
    simple_field(&mut s, "string", false, "name");
    s.push(b',');
    simple_field(&mut s, "int64", false, "ts_ms");
    s.extend_from_slice(
        b",{\"type\":\"string\",\"optional\":true,\"name\":\"io.debezium.data.Enum\",\"version\":1,\
          \"parameters\":{\"allowed\":",
    );
    write_str(&mut s, SNAPSHOT_ALLOWED);
    s.extend_from_slice(b"},\"default\":\"false\",\"field\":\"snapshot\"},");
    simple_field(&mut s, "string", false, "db");
    s.push(b',');
    simple_field(&mut s, "string", true, "sequence");
    s.push(b',');
    simple_field(&mut s, "int64", true, "ts_us");
    s.push(b',');
    simple_field(&mut s, "int64", true, "ts_ns");
    s.push(b',');
    simple_field(&mut s, "string", false, "schema");
    s.push(b',');
    simple_field(&mut s, "string", false, "table");
    s.push(b',');
    simple_field(&mut s, "int64", true, "txId");
    s.push(b',');
    simple_field(&mut s, "int64", true, "lsn");
    s.push(b',');
    simple_field(&mut s, "int64", true, "xmin");
    s.push(b',');
    simple_field(&mut s, "string", true, "origin");
    s.push(b',');
    simple_field(&mut s, "int64", true, "origin_lsn");
    s.extend_from_slice(
        b"],\"optional\":false,\"name\":\"io.debezium.connector.postgresql.Source\",\"version\":1",
    );
    s
}

/// Debezium's `event.block` transaction struct, as the `transaction` field.
const TRANSACTION_FIELD_SCHEMA: &[u8] = b"{\"type\":\"struct\",\"fields\":[\
    {\"type\":\"string\",\"optional\":false,\"field\":\"id\"},\
    {\"type\":\"int64\",\"optional\":false,\"field\":\"total_order\"},\
    {\"type\":\"int64\",\"optional\":false,\"field\":\"data_collection_order\"}],\
    \"optional\":true,\"name\":\"event.block\",\"version\":1,\"field\":\"transaction\"}";

fn message_key_schema() -> Vec<u8> {
    b"{\"type\":\"struct\",\"fields\":[{\"type\":\"string\",\"optional\":true,\"field\":\"prefix\"}],\
      \"optional\":false,\"name\":\"io.debezium.connector.postgresql.MessageKey\",\"version\":1}"
        .to_vec()
}

fn message_value_schema(source_schema: &[u8], opts: &JsonOptions) -> Vec<u8> {
    let mut s = Vec::with_capacity(2048);
    s.extend_from_slice(b"{\"type\":\"struct\",\"fields\":[");
    simple_field(&mut s, "string", false, "op");
    s.push(b',');
    simple_field(&mut s, "int64", true, "ts_ms");
    s.push(b',');
    s.extend_from_slice(source_schema);
    end_field(&mut s, "source");
    s.push(b',');
    s.extend_from_slice(TRANSACTION_FIELD_SCHEMA);
    s.extend_from_slice(b",{\"type\":\"struct\",\"fields\":[");
    simple_field(&mut s, "string", true, "prefix");
    s.push(b',');
    let content_type = match opts.binary_handling {
        BinaryHandlingMode::Bytes => "bytes",
        _ => "string",
    };
    simple_field(&mut s, content_type, true, "content");
    s.extend_from_slice(
        b"],\"optional\":false,\"name\":\"io.debezium.connector.postgresql.Message\",\"version\":1,\
          \"field\":\"message\"}],\"optional\":false,\
          \"name\":\"io.debezium.connector.postgresql.MessageValue\",\"version\":1}",
    );
    s
}

impl TableEntry {
    fn build(table: &Arc<Table>, opts: &JsonOptions, source_schema: &[u8]) -> TableEntry {
        let fields: Vec<Field> = table
            .columns
            .iter()
            .map(|c| {
                let mut name_json = Vec::with_capacity(c.name.len() + 3);
                write_str(&mut name_json, &c.name);
                name_json.push(b':');
                Field {
                    kind: kind_of(c, opts),
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
        let mut entry = TableEntry {
            table: Arc::clone(table),
            fields,
            source_table,
            value_schema: Vec::new(),
            key_columns: Vec::new(),
            key_schema: Vec::new(),
        };
        if opts.schemas_enable {
            entry.value_schema = entry.envelope_schema(opts, source_schema);
        }
        entry
    }

    fn schema_name(&self, opts: &JsonOptions, suffix: &str) -> String {
        format!(
            "{}.{}.{}.{}",
            opts.topic_prefix, self.table.schema, self.table.name, suffix
        )
    }

    fn envelope_schema(&self, opts: &JsonOptions, source_schema: &[u8]) -> Vec<u8> {
        let value_name = self.schema_name(opts, "Value");
        let mut row = Vec::with_capacity(256 + 64 * self.fields.len());
        write_columns_struct(
            &mut row,
            &self.table,
            &self.fields,
            &mut (0..self.table.columns.len()),
            false,
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
                true,
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
    tables: &'a mut HashMap<u32, TableEntry>,
    table: &Arc<Table>,
    opts: &JsonOptions,
    source_schema: &[u8],
) -> &'a mut TableEntry {
    let entry = tables
        .entry(table.id)
        .or_insert_with(|| TableEntry::build(table, opts, source_schema));
    if !Arc::ptr_eq(&entry.table, table) {
        if *entry.table == **table {
            // Same content in a new Arc: keep the work, remember the new pointer.
            entry.table = Arc::clone(table);
        } else {
            *entry = TableEntry::build(table, opts, source_schema);
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
            tables: HashMap::new(),
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
        let row = match ev.op {
            Op::Delete => ev.before.as_ref(),
            Op::Truncate | Op::Message => None,
            Op::Create | Op::Update | Op::Read => ev.after.as_ref(),
        };
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
        let entry = table_entry(tables, table, opts, source_schema);
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
        out.clear();
        if ev.op == Op::Message {
            self.encode_message(ev, now_us, out);
            return;
        }
        let no_table;
        let table = match &ev.table {
            Some(t) => t,
            // A row event without a table cannot come from the decoder; write a well-formed
            // envelope with empty rows rather than fail.
            None => {
                no_table = Arc::new(Table {
                    id: u32::MAX,
                    schema: String::new(),
                    name: String::new(),
                    columns: Vec::new(),
                    replica_identity: crate::event::ReplicaIdentity::Default,
                });
                &no_table
            }
        };
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
        let entry = table_entry(tables, table, opts, source_schema);
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
        let (before, after) = match ev.op {
            Op::Truncate => (None, None),
            Op::Create | Op::Read => (None, ev.after.as_ref()),
            _ => (ev.before.as_ref(), ev.after.as_ref()),
        };
        out.extend_from_slice(b"{\"before\":");
        w.write_row(out, &entry.fields, before, digits, bytes);
        out.extend_from_slice(b",\"after\":");
        w.write_row(out, &entry.fields, after, digits, bytes);
        out.extend_from_slice(b",\"source\":");
        write_source(out, ev, source_head, source_db, &entry.source_table);
        out.extend_from_slice(b",\"transaction\":null,\"op\":\"");
        out.extend_from_slice(ev.op.code().as_bytes());
        out.extend_from_slice(b"\",");
        write_timestamps(out, now_us);
        out.push(b'}');
        if schemas {
            out.push(b'}');
        }
    }

    fn encode_message(&mut self, ev: &ChangeEvent, now_us: i64, out: &mut Vec<u8>) {
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
        out.extend_from_slice(b",\"transaction\":null,\"message\":{\"prefix\":");
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
        ev: &ChangeEvent,
        key_columns: &[usize],
        out: &mut Vec<u8>,
    ) -> Result<bool, super::FormatError> {
        Ok(JsonEncoder::encode_key(self, ev, key_columns, out))
    }

    fn encode_value(
        &mut self,
        ev: &ChangeEvent,
        out: &mut Vec<u8>,
    ) -> Result<(), super::FormatError> {
        JsonEncoder::encode_value(self, ev, out);
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

fn write_binary(out: &mut Vec<u8>, bytes: &[u8], mode: BinaryHandlingMode) {
    match mode {
        BinaryHandlingMode::Bytes | BinaryHandlingMode::Base64 => write_base64(out, bytes, false),
        BinaryHandlingMode::Base64UrlSafe => write_base64(out, bytes, true),
        BinaryHandlingMode::Hex => write_hex(out, bytes),
    }
}

/// Writes values by kind; holds what value writing needs from the encoder.
struct ValueWriter<'a> {
    opts: &'a JsonOptions,
    placeholder_str: &'a [u8],
    placeholder_b64: &'a [u8],
}

impl ValueWriter<'_> {
    /// Elements nested by dimension, as Connect's (and `to_json`'s) nested lists; lower
    /// bounds are not part of the JSON form.
    fn write_array(
        &self,
        out: &mut Vec<u8>,
        elem: &Kind,
        a: &PgArray,
        digits: &mut Vec<u8>,
        bytes: &mut Vec<u8>,
    ) {
        fn level(
            w: &ValueWriter<'_>,
            out: &mut Vec<u8>,
            elem: &Kind,
            a: &PgArray,
            dim: usize,
            offset: &mut usize,
            scratch: (&mut Vec<u8>, &mut Vec<u8>),
        ) {
            let (digits, bytes) = scratch;
            out.push(b'[');
            let len = a.dims.get(dim).map_or(0, |d| d.len as usize);
            for i in 0..len {
                if i > 0 {
                    out.push(b',');
                }
                if dim + 1 < a.dims.len() {
                    level(
                        w,
                        out,
                        elem,
                        a,
                        dim + 1,
                        offset,
                        (&mut *digits, &mut *bytes),
                    );
                } else {
                    let v = a.elements.get(*offset).unwrap_or(&Value::Null);
                    *offset += 1;
                    w.write(out, elem, v, digits, bytes);
                }
            }
            out.push(b']');
        }
        let mut offset = 0;
        level(self, out, elem, a, 0, &mut offset, (digits, bytes));
    }

    fn write_row(
        &self,
        out: &mut Vec<u8>,
        fields: &[Field],
        row: Option<&Row>,
        digits: &mut Vec<u8>,
        bytes: &mut Vec<u8>,
    ) {
        let Some(row) = row else {
            out.extend_from_slice(b"null");
            return;
        };
        out.push(b'{');
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&field.name_json);
            self.write(
                out,
                &field.kind,
                row.values.get(i).unwrap_or(&Value::Null),
                digits,
                bytes,
            );
        }
        out.push(b'}');
    }

    fn write(
        &self,
        out: &mut Vec<u8>,
        kind: &Kind,
        value: &Value,
        digits: &mut Vec<u8>,
        bytes: &mut Vec<u8>,
    ) {
        let iso = self.opts.time_precision == TimePrecisionMode::Isostring;
        match (kind, value) {
            (_, Value::Null) => out.extend_from_slice(b"null"),
            (Kind::Binary, Value::Unavailable)
                if self.opts.binary_handling == BinaryHandlingMode::Bytes =>
            {
                out.extend_from_slice(self.placeholder_b64);
            }
            (_, Value::Unavailable) => out.extend_from_slice(self.placeholder_str),
            (Kind::Decimal { scale, .. }, Value::Numeric(text)) => {
                match unscaled_digits(text, *scale, digits) {
                    Some(neg) => {
                        twos_complement(neg, digits, bytes);
                        write_base64(out, bytes, false);
                    }
                    // NaN and ±Infinity have no Decimal form (Debezium fails here).
                    None => out.extend_from_slice(b"null"),
                }
            }
            (Kind::VariableDecimal, Value::Numeric(text)) => {
                match split_decimal(text) {
                    Some((neg, _, frac)) => {
                        // stripTrailingZeros, and never a negative scale (Debezium).
                        let scale = frac.iter().rposition(|&d| d != b'0').map_or(0, |p| p + 1);
                        let scale = i32::try_from(scale).unwrap_or(i32::MAX);
                        let neg = unscaled_digits(text, scale, digits).unwrap_or(neg);
                        twos_complement(neg, digits, bytes);
                        out.extend_from_slice(b"{\"scale\":");
                        write_int(out, scale);
                        out.extend_from_slice(b",\"value\":");
                        write_base64(out, bytes, false);
                        out.push(b'}');
                    }
                    None => out.extend_from_slice(b"null"),
                }
            }
            (Kind::DecimalDouble, Value::Numeric(text)) => match text.parse::<f64>() {
                Ok(v) => write_f64(out, v),
                Err(_) => out.extend_from_slice(b"null"),
            },
            (Kind::DecimalString, Value::Numeric(text)) => {
                write_str(out, is_special_numeric(text).unwrap_or(text));
            }
            (Kind::Binary, Value::Bytes(b)) => write_binary(out, b, self.opts.binary_handling),
            (Kind::Date, Value::Date(d)) if iso => {
                out.push(b'"');
                write_iso_date(out, i64::from(*d));
                out.extend_from_slice(b"Z\"");
            }
            (Kind::Time { .. }, Value::Time(us)) if iso => {
                out.push(b'"');
                write_iso_time(out, us.rem_euclid(MICROS_PER_DAY), 0);
                out.extend_from_slice(b"Z\"");
            }
            (Kind::Time { millis: true }, Value::Time(us)) => write_int(out, us.div_euclid(1000)),
            (Kind::Timestamp { .. }, Value::Timestamp(us)) if iso => {
                out.push(b'"');
                write_iso_date(out, us.div_euclid(MICROS_PER_DAY));
                out.push(b'T');
                write_iso_time(out, us.rem_euclid(MICROS_PER_DAY), 0);
                out.extend_from_slice(b"Z\"");
            }
            (Kind::Timestamp { millis: true }, Value::Timestamp(us)) => {
                write_int(out, us.div_euclid(1000));
            }
            (Kind::ZonedTimestamp { width }, Value::TimestampTz(us)) => {
                write_zoned_timestamp(out, *us, *width);
            }
            (Kind::Money, Value::Numeric(text)) => match self.opts.decimal_handling {
                DecimalHandlingMode::Precise => match unscaled_digits(text, 2, digits) {
                    Some(neg) => {
                        twos_complement(neg, digits, bytes);
                        write_base64(out, bytes, false);
                    }
                    None => out.extend_from_slice(b"null"),
                },
                DecimalHandlingMode::Double => match text.parse::<f64>() {
                    Ok(v) => write_f64(out, v),
                    Err(_) => out.extend_from_slice(b"null"),
                },
                DecimalHandlingMode::String => write_str(out, text),
            },
            (Kind::Bits { length }, Value::Bits(bits)) => {
                if *length <= 1 {
                    let set = bits.bytes().any(|b| b == b'1');
                    out.extend_from_slice(if set { b"true".as_slice() } else { b"false" });
                } else {
                    bits_le_bytes(bits, bytes);
                    write_base64(out, bytes, false);
                }
            }
            (
                Kind::ZonedTime,
                Value::TimeTz {
                    micros,
                    offset_secs,
                },
            ) => {
                let utc = (micros - i64::from(*offset_secs) * MICROS_PER_SECOND)
                    .rem_euclid(MICROS_PER_DAY);
                out.push(b'"');
                write_iso_time(out, utc, 0);
                out.extend_from_slice(b"Z\"");
            }
            (Kind::Array(elem), Value::Array(a)) => self.write_array(out, elem, a, digits, bytes),
            (Kind::Struct(fields), Value::Composite(values)) => {
                out.push(b'{');
                for (i, (name, k)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_str(out, name);
                    out.push(b':');
                    self.write(out, k, values.get(i).unwrap_or(&Value::Null), digits, bytes);
                }
                out.push(b'}');
            }
            (Kind::HstoreJson, Value::Map(pairs)) => {
                // A JSON document in a string, as Debezium writes it with Jackson.
                let mut doc = Vec::with_capacity(16 * pairs.len() + 2);
                write_map(&mut doc, pairs);
                write_str(out, std::str::from_utf8(&doc).unwrap_or("{}"));
            }
            (
                Kind::Interval,
                Value::Interval {
                    months,
                    days,
                    micros,
                },
            ) if self.opts.interval_handling == IntervalHandlingMode::String => {
                write_iso_interval(out, *months, *days, *micros);
            }
            // Everything else has one natural form: the kind and the value agree on it, or
            // the value could not be typed and is written as it is.
            (_, v) => write_natural(out, v),
        }
    }
}

/// A value in its own JSON form, independent of the column: what Debezium's default
/// converters produce for the type the value has.
fn write_natural(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null | Value::Unavailable => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true".as_slice() } else { b"false" }),
        Value::Int16(v) => write_int(out, *v),
        Value::Int32(v) => write_int(out, *v),
        Value::Int64(v) => write_int(out, *v),
        Value::Float32(v) => write_f32(out, *v),
        Value::Float64(v) => write_f64(out, *v),
        Value::Numeric(s) | Value::Text(s) | Value::Json(s) => write_str(out, s),
        Value::Bytes(b) => write_base64(out, b, false),
        Value::Date(d) => write_int(out, *d),
        Value::Time(us) | Value::Timestamp(us) => write_int(out, *us),
        Value::TimestampTz(us) => write_zoned_timestamp(out, *us, 6),
        Value::Interval {
            months,
            days,
            micros,
        } => write_int(out, micro_duration(*months, *days, *micros)),
        Value::TimeTz {
            micros,
            offset_secs,
        } => {
            let utc =
                (micros - i64::from(*offset_secs) * MICROS_PER_SECOND).rem_euclid(MICROS_PER_DAY);
            out.push(b'"');
            write_iso_time(out, utc, 0);
            out.extend_from_slice(b"Z\"");
        }
        Value::Bits(bits) => write_str(out, bits),
        Value::Point { x, y } => write_point(out, *x, *y),
        Value::Array(a) => {
            // Without a column kind: nested lists of natural values.
            fn level(out: &mut Vec<u8>, a: &PgArray, dim: usize, offset: &mut usize) {
                out.push(b'[');
                let len = a.dims.get(dim).map_or(0, |d| d.len as usize);
                for i in 0..len {
                    if i > 0 {
                        out.push(b',');
                    }
                    if dim + 1 < a.dims.len() {
                        level(out, a, dim + 1, offset);
                    } else {
                        write_natural(out, a.elements.get(*offset).unwrap_or(&Value::Null));
                        *offset += 1;
                    }
                }
                out.push(b']');
            }
            level(out, a, 0, &mut 0);
        }
        Value::Composite(values) => {
            out.push(b'[');
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_natural(out, v);
            }
            out.push(b']');
        }
        Value::Map(pairs) => write_map(out, pairs),
    }
}

/// `{"k":"v","n":null}`: an hstore as a JSON object.
fn write_map(out: &mut Vec<u8>, pairs: &[(String, Option<String>)]) {
    out.push(b'{');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        match v {
            Some(v) => write_str(out, v),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
}

/// Debezium's `Point` struct: `{"x":..,"y":..,"wkb":<base64 WKB>,"srid":null}`, the WKB a
/// little-endian OGC point (byte order 1, type 1, x, y), as `Point.createValue` builds it.
fn write_point(out: &mut Vec<u8>, x: f64, y: f64) {
    out.extend_from_slice(b"{\"x\":");
    write_f64(out, x);
    out.extend_from_slice(b",\"y\":");
    write_f64(out, y);
    out.extend_from_slice(b",\"wkb\":");
    let mut wkb = [0u8; 21];
    wkb[0] = 1;
    wkb[1..5].copy_from_slice(&1u32.to_le_bytes());
    wkb[5..13].copy_from_slice(&x.to_le_bytes());
    wkb[13..21].copy_from_slice(&y.to_le_bytes());
    write_base64(out, &wkb, false);
    out.extend_from_slice(b",\"srid\":null}");
}

/// Debezium's `Bits` bytes: the bit string read as a binary number (last bit = bit 0),
/// little-endian, as `BitSet.toByteArray()` gives it (no trailing zero bytes).
fn bits_le_bytes(bits: &str, out: &mut Vec<u8>) {
    out.clear();
    let b = bits.as_bytes();
    let n = b.len();
    for (i, &c) in b.iter().enumerate() {
        if c == b'1' {
            let k = n - 1 - i;
            let byte = k / 8;
            if out.len() <= byte {
                out.resize(byte + 1, 0);
            }
            out[byte] |= 1 << (k % 8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{LogicalMessage, ReplicaIdentity, SourcePosition};
    use serde_json::{json, Value as J};

    const NOW_US: i64 = 1_700_000_000_123_456;
    const COMMIT_US: i64 = 1_699_999_999_000_001;

    fn col(name: &str, type_oid: u32, type_modifier: i32, key: bool) -> Column {
        Column {
            name: name.to_string(),
            type_oid,
            type_name: String::new(),
            type_modifier,
            key,
            primary_key: key,
            type_desc: None,
        }
    }

    fn table(columns: Vec<Column>) -> Arc<Table> {
        Arc::new(Table {
            id: 16_384,
            schema: "public".into(),
            name: "items".into(),
            columns,
            replica_identity: ReplicaIdentity::Default,
        })
    }

    fn simple_table() -> Arc<Table> {
        table(vec![col("id", INT4, -1, true), col("name", 25, -1, false)])
    }

    fn source() -> SourcePosition {
        SourcePosition {
            lsn: Lsn(24_023_128),
            commit_lsn: Lsn(24_023_200),
            last_commit_lsn: Some(Lsn(24_023_119)),
            tx_id: Some(555),
            commit_time_us: COMMIT_US,
            tx_index: 0,
            origin: None,
            snapshot: Default::default(),
        }
    }

    fn row(values: Vec<Value>) -> Row {
        Row {
            values,
            key_only: false,
        }
    }

    fn event(op: Op, t: &Arc<Table>, before: Option<Row>, after: Option<Row>) -> ChangeEvent {
        ChangeEvent {
            op,
            table: Some(Arc::clone(t)),
            before,
            after,
            source: source(),
            message: None,
        }
    }

    fn opts() -> JsonOptions {
        JsonOptions {
            topic_prefix: "walrus".into(),
            database: "shop".into(),
            connector_version: "0.1.0".into(),
            ..JsonOptions::default()
        }
    }

    fn value_json(enc: &mut JsonEncoder, ev: &ChangeEvent) -> J {
        let mut out = Vec::new();
        enc.encode_value_at(ev, NOW_US, &mut out);
        serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
    }

    fn key_json(enc: &mut JsonEncoder, ev: &ChangeEvent, cols: &[usize]) -> Option<J> {
        let mut out = Vec::new();
        enc.encode_key(ev, cols, &mut out)
            .then(|| serde_json::from_slice(&out).unwrap())
    }

    fn expected_source(table: &str) -> J {
        json!({
            "version": "0.1.0", "connector": "postgresql", "name": "walrus",
            "ts_ms": 1_699_999_999_000_i64, "snapshot": "false", "db": "shop",
            "sequence": "[\"24023119\",\"24023128\"]",
            "ts_us": COMMIT_US, "ts_ns": COMMIT_US * 1000,
            "schema": if table.is_empty() { "" } else { "public" }, "table": table,
            "txId": 555, "lsn": 24_023_128, "xmin": null, "origin": null, "origin_lsn": null
        })
    }

    /// Encodes one value of a column of the given type (payload of `after.v`).
    fn one(opts: JsonOptions, type_oid: u32, typmod: i32, v: Value) -> J {
        let t = table(vec![col("v", type_oid, typmod, false)]);
        let mut enc = JsonEncoder::new(opts);
        let j = value_json(&mut enc, &event(Op::Create, &t, None, Some(row(vec![v]))));
        j["after"]["v"].clone()
    }

    fn one_default(type_oid: u32, typmod: i32, v: Value) -> J {
        one(opts(), type_oid, typmod, v)
    }

    /// The schema of `after.v` with schemas on.
    fn one_schema(opts: JsonOptions, type_oid: u32, typmod: i32) -> J {
        let t = table(vec![col("v", type_oid, typmod, false)]);
        let mut enc = JsonEncoder::new(JsonOptions {
            schemas_enable: true,
            ..opts
        });
        let j = value_json(
            &mut enc,
            &event(Op::Create, &t, None, Some(row(vec![Value::Null]))),
        );
        j["schema"]["fields"][1]["fields"][0].clone()
    }

    fn numeric_typmod(precision: i32, scale: i32) -> i32 {
        ((precision << 16) | (scale & 0x7ff)) + 4
    }

    #[test]
    fn create_payload_matches_debezium() {
        let t = simple_table();
        let mut enc = JsonEncoder::new(opts());
        let ev = event(
            Op::Create,
            &t,
            None,
            Some(row(vec![Value::Int32(1), Value::Text("a\"b\n".into())])),
        );
        let got = value_json(&mut enc, &ev);
        assert_eq!(
            got,
            json!({
                "before": null,
                "after": {"id": 1, "name": "a\"b\n"},
                "source": expected_source("items"),
                "transaction": null,
                "op": "c",
                "ts_ms": NOW_US / 1000, "ts_us": NOW_US, "ts_ns": NOW_US * 1000
            })
        );
        // Field order as Debezium's envelope.
        let mut out = Vec::new();
        enc.encode_value_at(&ev, NOW_US, &mut out);
        let s = String::from_utf8(out).unwrap();
        let pos = |k: &str| s.find(&format!("\"{k}\":")).unwrap();
        assert!(pos("before") < pos("after") && pos("after") < pos("source"));
        assert!(pos("source") < pos("transaction") && pos("transaction") < pos("op"));
        assert!(s.ends_with(&format!(
            "\"op\":\"c\",\"ts_ms\":{},\"ts_us\":{NOW_US},\"ts_ns\":{}}}",
            NOW_US / 1000,
            NOW_US * 1000
        )));
        assert_eq!(key_json(&mut enc, &ev, &[0]), Some(json!({"id": 1})));
    }

    #[test]
    fn update_delete_read_truncate() {
        let t = simple_table();
        let mut enc = JsonEncoder::new(opts());
        let old_key = Row {
            values: vec![Value::Int32(1), Value::Null],
            key_only: true,
        };
        let new = row(vec![Value::Int32(2), Value::Text("b".into())]);

        let upd = event(Op::Update, &t, Some(old_key.clone()), Some(new.clone()));
        let j = value_json(&mut enc, &upd);
        assert_eq!(j["op"], "u");
        assert_eq!(j["before"], json!({"id": 1, "name": null}));
        assert_eq!(j["after"], json!({"id": 2, "name": "b"}));
        assert_eq!(key_json(&mut enc, &upd, &[0]), Some(json!({"id": 2})));

        // No old tuple: before is null.
        let upd = event(Op::Update, &t, None, Some(new.clone()));
        assert_eq!(value_json(&mut enc, &upd)["before"], J::Null);

        let del = event(Op::Delete, &t, Some(old_key), None);
        let j = value_json(&mut enc, &del);
        assert_eq!(j["op"], "d");
        assert_eq!(j["before"], json!({"id": 1, "name": null}));
        assert_eq!(j["after"], J::Null);
        assert_eq!(key_json(&mut enc, &del, &[0]), Some(json!({"id": 1})));

        let mut read = event(Op::Read, &t, None, Some(new));
        read.source.snapshot = crate::event::SnapshotMarker::True;
        let j = value_json(&mut enc, &read);
        assert_eq!(j["op"], "r");
        assert_eq!(j["source"]["snapshot"], "true");
        read.source.snapshot = crate::event::SnapshotMarker::LastInDataCollection;
        let j = value_json(&mut enc, &read);
        assert_eq!(j["source"]["snapshot"], "last_in_data_collection");

        let trunc = event(Op::Truncate, &t, None, None);
        let j = value_json(&mut enc, &trunc);
        assert_eq!(j["op"], "t");
        assert_eq!(j["before"], J::Null);
        assert_eq!(j["after"], J::Null);
        assert_eq!(j["source"], expected_source("items"));
        assert_eq!(key_json(&mut enc, &trunc, &[0]), None);
    }

    #[test]
    fn null_keys() {
        let t = simple_table();
        let mut enc = JsonEncoder::new(opts());
        let ev = event(
            Op::Create,
            &t,
            None,
            Some(row(vec![Value::Int32(1), Value::Null])),
        );
        let mut out = b"stale".to_vec();
        assert!(!enc.encode_key(&ev, &[], &mut out));
        assert!(out.is_empty());
        // A delete without an old row (REPLICA IDENTITY NOTHING) has no key.
        let del = event(Op::Delete, &t, None, None);
        assert_eq!(key_json(&mut enc, &del, &[0]), None);
    }

    #[test]
    fn source_without_positions() {
        let t = simple_table();
        let mut enc = JsonEncoder::new(opts());
        let mut ev = event(
            Op::Create,
            &t,
            None,
            Some(row(vec![Value::Int32(1), Value::Null])),
        );
        ev.source.last_commit_lsn = None;
        ev.source.tx_id = None;
        ev.source.origin = Some("node_a".into());
        let j = value_json(&mut enc, &ev);
        assert_eq!(j["source"]["sequence"], "[null,\"24023128\"]");
        assert_eq!(j["source"]["txId"], J::Null);
        assert_eq!(j["source"]["origin"], "node_a");
    }

    #[test]
    fn logical_message() {
        let mut enc = JsonEncoder::new(opts());
        let ev = ChangeEvent {
            op: Op::Message,
            table: None,
            before: None,
            after: None,
            source: source(),
            message: Some(LogicalMessage {
                prefix: "audit".into(),
                content: b"hello".to_vec(),
                transactional: true,
            }),
        };
        assert_eq!(
            value_json(&mut enc, &ev),
            json!({
                "op": "m",
                "ts_ms": NOW_US / 1000,
                "source": expected_source(""),
                "transaction": null,
                "message": {"prefix": "audit", "content": "aGVsbG8="}
            })
        );
        assert_eq!(
            key_json(&mut enc, &ev, &[]),
            Some(json!({"prefix": "audit"}))
        );

        let mut enc = JsonEncoder::new(JsonOptions {
            schemas_enable: true,
            binary_handling: BinaryHandlingMode::Hex,
            ..opts()
        });
        let j = value_json(&mut enc, &ev);
        assert_eq!(j["payload"]["message"]["content"], "68656c6c6f");
        assert_eq!(
            j["schema"]["name"],
            "io.debezium.connector.postgresql.MessageValue"
        );
        let names: Vec<_> = j["schema"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].clone())
            .collect();
        assert_eq!(
            names,
            vec![
                json!("op"),
                json!("ts_ms"),
                json!("source"),
                json!("transaction"),
                json!("message")
            ]
        );
        assert_eq!(
            j["schema"]["fields"][4],
            json!({"type": "struct", "fields": [
                {"type": "string", "optional": true, "field": "prefix"},
                {"type": "string", "optional": true, "field": "content"}],
                "optional": false, "name": "io.debezium.connector.postgresql.Message", "version": 1, "field": "message"})
        );
        assert_eq!(
            key_json(&mut enc, &ev, &[]),
            Some(
                json!({"schema": {"type": "struct", "fields": [{"type": "string", "optional": true, "field": "prefix"}],
                "optional": false, "name": "io.debezium.connector.postgresql.MessageKey", "version": 1},
                "payload": {"prefix": "audit"}})
            )
        );
    }

    #[test]
    fn schemas_enabled_envelope() {
        let t = table(vec![
            col("id", INT4, -1, true),
            col("price", NUMERIC, numeric_typmod(10, 2), false),
        ]);
        let mut enc = JsonEncoder::new(JsonOptions {
            schemas_enable: true,
            ..opts()
        });
        let ev = event(
            Op::Create,
            &t,
            None,
            Some(row(vec![Value::Int32(7), Value::Numeric("-1.00".into())])),
        );
        let j = value_json(&mut enc, &ev);
        let value_struct = json!({
            "type": "struct",
            "fields": [
                {"type": "int32", "optional": false, "field": "id"},
                {"type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
                 "parameters": {"scale": "2", "connect.decimal.precision": "10"}, "field": "price"}
            ],
            "optional": true,
            "name": "walrus.public.items.Value"
        });
        let with_field = |mut v: J, f: &str| {
            v["field"] = json!(f);
            v
        };
        let source_schema = json!({
            "type": "struct",
            "fields": [
                {"type": "string", "optional": false, "field": "version"},
                {"type": "string", "optional": false, "field": "connector"},
                {"type": "string", "optional": false, "field": "name"},
                {"type": "int64", "optional": false, "field": "ts_ms"},
                {"type": "string", "optional": true, "name": "io.debezium.data.Enum", "version": 1,
                 "parameters": {"allowed": SNAPSHOT_ALLOWED}, "default": "false", "field": "snapshot"},
                {"type": "string", "optional": false, "field": "db"},
                {"type": "string", "optional": true, "field": "sequence"},
                {"type": "int64", "optional": true, "field": "ts_us"},
                {"type": "int64", "optional": true, "field": "ts_ns"},
                {"type": "string", "optional": false, "field": "schema"},
                {"type": "string", "optional": false, "field": "table"},
                {"type": "int64", "optional": true, "field": "txId"},
                {"type": "int64", "optional": true, "field": "lsn"},
                {"type": "int64", "optional": true, "field": "xmin"},
                {"type": "string", "optional": true, "field": "origin"},
                {"type": "int64", "optional": true, "field": "origin_lsn"}
            ],
            "optional": false,
            "name": "io.debezium.connector.postgresql.Source",
            "version": 1,
            "field": "source"
        });
        assert_eq!(
            j["schema"],
            json!({
                "type": "struct",
                "fields": [
                    with_field(value_struct.clone(), "before"),
                    with_field(value_struct, "after"),
                    source_schema,
                    {"type": "struct", "fields": [
                        {"type": "string", "optional": false, "field": "id"},
                        {"type": "int64", "optional": false, "field": "total_order"},
                        {"type": "int64", "optional": false, "field": "data_collection_order"}],
                     "optional": true, "name": "event.block", "version": 1, "field": "transaction"},
                    {"type": "string", "optional": false, "field": "op"},
                    {"type": "int64", "optional": true, "field": "ts_ms"},
                    {"type": "int64", "optional": true, "field": "ts_us"},
                    {"type": "int64", "optional": true, "field": "ts_ns"}
                ],
                "optional": false,
                "name": "walrus.public.items.Envelope",
                "version": 2
            })
        );
        assert_eq!(j["payload"]["after"], json!({"id": 7, "price": "nA=="}));
        assert_eq!(j.as_object().unwrap().len(), 2);

        let key = key_json(&mut enc, &ev, &[0]).unwrap();
        assert_eq!(
            key,
            json!({
                "schema": {"type": "struct", "fields": [{"type": "int32", "optional": false, "field": "id"}],
                           "optional": false, "name": "walrus.public.items.Key"},
                "payload": {"id": 7}
            })
        );
        // A different key column set (router override) gets its own schema.
        let key = key_json(&mut enc, &ev, &[1, 0]).unwrap();
        assert_eq!(key["schema"]["fields"][0]["field"], "price");
        assert_eq!(key["schema"]["fields"][0]["optional"], false);
        assert_eq!(key["payload"], json!({"price": "nA==", "id": 7}));
    }

    #[test]
    fn schema_cache_follows_relation_changes() {
        let mut enc = JsonEncoder::new(JsonOptions {
            schemas_enable: true,
            ..opts()
        });
        let t1 = simple_table();
        let ev = event(
            Op::Create,
            &t1,
            None,
            Some(row(vec![Value::Int32(1), Value::Null])),
        );
        let j = value_json(&mut enc, &ev);
        assert_eq!(
            j["schema"]["fields"][1]["fields"].as_array().unwrap().len(),
            2
        );
        // Same content, new Arc: same output.
        let t1b = Arc::new((*t1).clone());
        let ev_b = event(
            Op::Create,
            &t1b,
            None,
            Some(row(vec![Value::Int32(1), Value::Null])),
        );
        assert_eq!(value_json(&mut enc, &ev_b), j);
        // A column added (new Relation): a new schema.
        let t2 = table(vec![
            col("id", INT4, -1, true),
            col("name", 25, -1, false),
            col("qty", INT8, -1, false),
        ]);
        let ev2 = event(
            Op::Create,
            &t2,
            None,
            Some(row(vec![Value::Int32(1), Value::Null, Value::Int64(3)])),
        );
        let j2 = value_json(&mut enc, &ev2);
        assert_eq!(j2["schema"]["fields"][1]["fields"][2]["field"], "qty");
        assert_eq!(j2["payload"]["after"]["qty"], 3);
    }

    #[test]
    fn integers_bools_strings() {
        assert_eq!(one_default(BOOL, -1, Value::Bool(true)), json!(true));
        assert_eq!(one_default(INT2, -1, Value::Int16(-5)), json!(-5));
        assert_eq!(
            one_default(INT8, -1, Value::Int64(i64::MIN)),
            json!(i64::MIN)
        );
        assert_eq!(
            one_default(25, -1, Value::Text("ü\u{1}\\".into())),
            json!("ü\u{1}\\")
        );
        assert_eq!(
            one_default(JSON, -1, Value::Json("{\"a\":1}".into())),
            json!("{\"a\":1}")
        );
        assert_eq!(
            one_default(
                UUID,
                -1,
                Value::Text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into())
            ),
            json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
        );
        assert_eq!(
            one_default(1007, -1, Value::Text("{1,2}".into())),
            json!("{1,2}")
        );
        assert_eq!(
            one_schema(opts(), JSONB, -1),
            json!({"type": "string", "optional": true, "name": "io.debezium.data.Json", "version": 1, "field": "v"})
        );
        assert_eq!(
            one_schema(opts(), UUID, -1),
            json!({"type": "string", "optional": true, "name": "io.debezium.data.Uuid", "version": 1, "field": "v"})
        );
        assert_eq!(
            one_schema(opts(), INT2, -1),
            json!({"type": "int16", "optional": true, "field": "v"})
        );
        assert_eq!(
            one_schema(opts(), 1007, -1),
            json!({"type": "array", "items": {"type": "int32", "optional": true}, "optional": true, "field": "v"})
        );
        // Control characters are escaped the way Jackson does.
        let mut out = Vec::new();
        write_str(&mut out, "a\u{1}\u{8}\u{c}\t\"/é");
        assert_eq!(out, b"\"a\\u0001\\b\\f\\t\\\"/\xc3\xa9\"");
    }

    #[test]
    fn floats_and_special_values() {
        assert_eq!(one_default(FLOAT8, -1, Value::Float64(1.5)), json!(1.5));
        assert_eq!(
            one_default(FLOAT8, -1, Value::Float64(f64::NAN)),
            json!("NaN")
        );
        assert_eq!(
            one_default(FLOAT8, -1, Value::Float64(f64::INFINITY)),
            json!("Infinity")
        );
        assert_eq!(
            one_default(FLOAT8, -1, Value::Float64(f64::NEG_INFINITY)),
            json!("-Infinity")
        );
        assert_eq!(
            one_default(FLOAT4, -1, Value::Float32(f32::NAN)),
            json!("NaN")
        );
        let mut out = Vec::new();
        write_f32(&mut out, 0.1);
        assert_eq!(out, b"0.1");
        assert_eq!(one_schema(opts(), FLOAT4, -1)["type"], "float");
        assert_eq!(one_schema(opts(), FLOAT8, -1)["type"], "double");
    }

    #[test]
    fn decimals_precise() {
        let tm = numeric_typmod(10, 2);
        let n = |s: &str| Value::Numeric(s.into());
        // -1.00 at scale 2 → unscaled -100 → BigInteger.toByteArray() is the single byte
        // 0x9C (bitLength 7); [0xFF, 0x9C] ("nA==") would not be minimal. -1.50 → -150 needs
        // two bytes: [0xFF, 0x6A].
        assert_eq!(one_default(NUMERIC, tm, n("-1.00")), json!("nA=="));
        assert_eq!(one_default(NUMERIC, tm, n("-1.50")), json!("/2o="));
        assert_eq!(one_default(NUMERIC, tm, n("0.00")), json!("AA=="));
        // 1.28 → 128 → [0x00, 0x80]; -1.28 → [0x80]; -1.29 → [0xFF, 0x7F].
        assert_eq!(one_default(NUMERIC, tm, n("1.28")), json!("AIA="));
        assert_eq!(one_default(NUMERIC, tm, n("-1.28")), json!("gA=="));
        assert_eq!(one_default(NUMERIC, tm, n("-1.29")), json!("/38="));
        // Fewer digits than the scale are padded; more are rounded half up.
        assert_eq!(one_default(NUMERIC, tm, n("1.5")), json!("AJY=")); // 150
        assert_eq!(one_default(NUMERIC, tm, n("1.005")), json!("ZQ==")); // 101
        assert_eq!(one_default(NUMERIC, tm, n("NaN")), J::Null);
        assert_eq!(one_default(NUMERIC, tm, n("Infinity")), J::Null);
        // Negative scale (PostgreSQL 15+): numeric(3,-2).
        assert_eq!(
            one_default(NUMERIC, numeric_typmod(3, -2), n("12300")),
            json!("ew==")
        ); // 123
        assert_eq!(
            one_schema(opts(), NUMERIC, numeric_typmod(3, -2))["parameters"],
            json!({"scale": "-2", "connect.decimal.precision": "3"})
        );

        // Variable scale: trailing zeros stripped, never a negative scale.
        assert_eq!(
            one_default(NUMERIC, -1, n("12.3400")),
            json!({"scale": 2, "value": "BNI="})
        ); // 1234
        assert_eq!(
            one_default(NUMERIC, -1, n("1200")),
            json!({"scale": 0, "value": "BLA="})
        );
        assert_eq!(
            one_default(NUMERIC, -1, n("-0.001")),
            json!({"scale": 3, "value": "/w=="})
        );
        assert_eq!(
            one_default(NUMERIC, -1, n("0.000")),
            json!({"scale": 0, "value": "AA=="})
        );
        assert_eq!(one_default(NUMERIC, -1, n("NaN")), J::Null);
        assert_eq!(
            one_schema(opts(), NUMERIC, -1),
            json!({"type": "struct", "fields": [
                {"type": "int32", "optional": false, "field": "scale"},
                {"type": "bytes", "optional": false, "field": "value"}],
                "optional": true, "name": "io.debezium.data.VariableScaleDecimal", "version": 1,
                "doc": "Variable scaled decimal", "field": "v"})
        );
    }

    #[test]
    fn big_decimals_match_java_biginteger() {
        let check = |digits: &str, neg: bool, expected: &[u8]| {
            let mut out = Vec::new();
            twos_complement(neg, digits.as_bytes(), &mut out);
            assert_eq!(out, expected, "{}{digits}", if neg { "-" } else { "" });
        };
        check("", false, &[0]);
        check("127", false, &[0x7f]);
        check("128", true, &[0x80]);
        check("256", true, &[0xff, 0x00]);
        // 2^128 = 340282366920938463463374607431768211456 (39 digits: the slow path).
        let two_128 = "340282366920938463463374607431768211456";
        let mut pos = vec![0x01];
        pos.extend([0u8; 16]);
        check(two_128, false, &pos);
        let mut negv = vec![0xff];
        negv.extend([0u8; 16]);
        check(two_128, true, &negv);
        // 2^127 (39 digits): positive needs a leading zero byte, negative is exactly 0x80 00...
        let two_127 = "170141183460469231731687303715884105728";
        let mut pos = vec![0x00, 0x80];
        pos.extend([0u8; 15]);
        check(two_127, false, &pos);
        let mut negv = vec![0x80];
        negv.extend([0u8; 15]);
        check(two_127, true, &negv);
    }

    /// The digit-by-digit base-256 conversion the limb version replaced: slow, obviously right.
    fn twos_complement_reference(neg: bool, digits: &[u8]) -> Vec<u8> {
        let mut out: Vec<u8> = Vec::new();
        for &d in digits {
            let mut carry = u32::from(d - b'0');
            for byte in out.iter_mut().rev() {
                let v = u32::from(*byte) * 10 + carry;
                *byte = v as u8;
                carry = v >> 8;
            }
            while carry > 0 {
                out.insert(0, carry as u8);
                carry >>= 8;
            }
        }
        if out.is_empty() {
            return vec![0];
        }
        if neg {
            let mut carry = 1u16;
            for byte in out.iter_mut().rev() {
                let v = u16::from(!*byte) + carry;
                *byte = v as u8;
                carry = v >> 8;
            }
            if out[0] & 0x80 == 0 {
                out.insert(0, 0xff);
            }
        } else if out[0] & 0x80 != 0 {
            out.insert(0, 0x00);
        }
        out
    }

    #[test]
    fn big_decimals_match_the_reference_at_every_length() {
        // Lengths around the 19-digit chunks and the 38-digit fast path, leading zeros
        // included; digits from a fixed pseudo-random sequence.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in (1..=120).chain([190, 191, 1000, 1001]) {
            let digits: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    b'0' + (x % 10) as u8
                })
                .collect();
            for neg in [false, true] {
                let mut out = Vec::new();
                twos_complement(neg, &digits, &mut out);
                assert_eq!(
                    out,
                    twos_complement_reference(neg, &digits),
                    "{} digits, neg {neg}",
                    len
                );
            }
        }
        let mut out = Vec::new();
        twos_complement(false, &[b'0'; 60], &mut out);
        assert_eq!(out, [0]);
    }

    /// Regression (fuzz target value_parse): a binary numeric of 10 bytes with weight near
    /// 32767 is a legitimate 115,000-digit value, and precise mode took tens of seconds on it.
    #[test]
    fn the_largest_numeric_encodes_in_milliseconds() {
        let digits = vec![b'7'; 131_072 + 16_383];
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        twos_complement(true, &digits, &mut out);
        // log2(10) * 147455 digits = 489,834 bits: 61,230 bytes (plus none for the sign here).
        assert_eq!(out.len(), 61_230);
        assert!(out[0] & 0x80 != 0, "negative");
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_secs(2),
            "{took:?} for the largest numeric"
        );
    }

    #[test]
    fn decimals_double_and_string() {
        let d = JsonOptions {
            decimal_handling: DecimalHandlingMode::Double,
            ..opts()
        };
        assert_eq!(
            one(
                d.clone(),
                NUMERIC,
                numeric_typmod(10, 2),
                Value::Numeric("-1.25".into())
            ),
            json!(-1.25)
        );
        assert_eq!(
            one(d.clone(), NUMERIC, -1, Value::Numeric("NaN".into())),
            json!("NaN")
        );
        assert_eq!(
            one(d.clone(), NUMERIC, -1, Value::Numeric("-Infinity".into())),
            json!("-Infinity")
        );
        assert_eq!(
            one_schema(d, NUMERIC, -1),
            json!({"type": "double", "optional": true, "field": "v"})
        );
        let s = JsonOptions {
            decimal_handling: DecimalHandlingMode::String,
            ..opts()
        };
        assert_eq!(
            one(s.clone(), NUMERIC, -1, Value::Numeric("12.3400".into())),
            json!("12.3400")
        );
        assert_eq!(
            one(s.clone(), NUMERIC, -1, Value::Numeric("NaN".into())),
            json!("NAN")
        );
        assert_eq!(
            one(s.clone(), NUMERIC, -1, Value::Numeric("Infinity".into())),
            json!("POSITIVE_INFINITY")
        );
        assert_eq!(
            one_schema(s, NUMERIC, numeric_typmod(10, 2)),
            json!({"type": "string", "optional": true, "field": "v"})
        );
    }

    #[test]
    fn dates_and_times_adaptive() {
        // 2016-11-04 = day 17109.
        assert_eq!(one_default(DATE, -1, Value::Date(17_109)), json!(17_109));
        assert_eq!(
            one_default(DATE, -1, Value::Date(-719_528 - 15_933)),
            json!(-719_528 - 15_933)
        );
        assert_eq!(
            one_schema(opts(), DATE, -1)["name"],
            "io.debezium.time.Date"
        );
        let t = 49_890_123_456_i64; // 13:51:30.123456
        assert_eq!(one_default(TIME, -1, Value::Time(t)), json!(t));
        assert_eq!(
            one_schema(opts(), TIME, -1),
            json!({"type": "int64", "optional": true, "name": "io.debezium.time.MicroTime", "version": 1, "field": "v"})
        );
        assert_eq!(
            one_default(TIME, 3, Value::Time(49_890_123_000)),
            json!(49_890_123)
        );
        assert_eq!(
            one_schema(opts(), TIME, 3),
            json!({"type": "int32", "optional": true, "name": "io.debezium.time.Time", "version": 1, "field": "v"})
        );
        assert_eq!(
            one_default(TIME, -1, Value::Time(MICROS_PER_DAY)),
            json!(MICROS_PER_DAY)
        );

        let ts = 1_478_267_490_123_456_i64; // 2016-11-04T13:51:30.123456
        assert_eq!(one_default(TIMESTAMP, -1, Value::Timestamp(ts)), json!(ts));
        assert_eq!(
            one_schema(opts(), TIMESTAMP, 6)["name"],
            "io.debezium.time.MicroTimestamp"
        );
        assert_eq!(
            one_default(TIMESTAMP, 3, Value::Timestamp(1_478_267_490_123_000)),
            json!(1_478_267_490_123_i64)
        );
        assert_eq!(
            one_default(TIMESTAMP, 3, Value::Timestamp(-1_500)),
            json!(-2)
        ); // floor, as toEpochMilli
        assert_eq!(
            one_schema(opts(), TIMESTAMP, 3),
            json!({"type": "int64", "optional": true, "name": "io.debezium.time.Timestamp", "version": 1, "field": "v"})
        );
    }

    #[test]
    fn times_connect_and_micro_and_iso() {
        let c = JsonOptions {
            time_precision: TimePrecisionMode::Connect,
            ..opts()
        };
        assert_eq!(
            one(c.clone(), TIME, -1, Value::Time(49_890_123_456)),
            json!(49_890_123)
        );
        assert_eq!(
            one_schema(c.clone(), TIME, -1),
            json!({"type": "int32", "optional": true, "name": "org.apache.kafka.connect.data.Time", "version": 1, "field": "v"})
        );
        assert_eq!(
            one(
                c.clone(),
                TIMESTAMP,
                -1,
                Value::Timestamp(1_478_267_490_123_456)
            ),
            json!(1_478_267_490_123_i64)
        );
        assert_eq!(
            one_schema(c.clone(), TIMESTAMP, -1)["name"],
            "org.apache.kafka.connect.data.Timestamp"
        );
        assert_eq!(one(c.clone(), DATE, -1, Value::Date(17_109)), json!(17_109));
        assert_eq!(
            one_schema(c, DATE, -1)["name"],
            "org.apache.kafka.connect.data.Date"
        );

        let m = JsonOptions {
            time_precision: TimePrecisionMode::AdaptiveTimeMicroseconds,
            ..opts()
        };
        assert_eq!(
            one(m.clone(), TIME, 0, Value::Time(1_000_000)),
            json!(1_000_000)
        );
        assert_eq!(
            one(m, TIMESTAMP, 0, Value::Timestamp(1_000_000)),
            json!(1000)
        );

        let i = JsonOptions {
            time_precision: TimePrecisionMode::Isostring,
            ..opts()
        };
        assert_eq!(
            one(i.clone(), DATE, -1, Value::Date(17_109)),
            json!("2016-11-04Z")
        );
        assert_eq!(
            one(i.clone(), TIME, -1, Value::Time(49_890_120_000)),
            json!("13:51:30.12Z")
        );
        assert_eq!(
            one(
                i.clone(),
                TIMESTAMP,
                -1,
                Value::Timestamp(1_478_267_490_000_000)
            ),
            json!("2016-11-04T13:51:30Z")
        );
        assert_eq!(
            one_schema(i, TIMESTAMP, -1)["name"],
            "io.debezium.time.IsoTimestamp"
        );
    }

    #[test]
    fn zoned_timestamps() {
        let ts = 1_478_260_290_123_456_i64; // 2016-11-04T11:51:30.123456Z
        assert_eq!(
            one_default(TIMESTAMPTZ, -1, Value::TimestampTz(ts)),
            json!("2016-11-04T11:51:30.123456Z")
        );
        // Width follows the column precision, zeros kept (DBZ-6163).
        assert_eq!(
            one_default(TIMESTAMPTZ, -1, Value::TimestampTz(1_478_260_290_000_000)),
            json!("2016-11-04T11:51:30.000000Z")
        );
        assert_eq!(
            one_default(TIMESTAMPTZ, 3, Value::TimestampTz(1_478_260_290_120_000)),
            json!("2016-11-04T11:51:30.120Z")
        );
        assert_eq!(
            one_default(TIMESTAMPTZ, 0, Value::TimestampTz(1_478_260_290_000_000)),
            json!("2016-11-04T11:51:30Z")
        );
        assert_eq!(
            one_default(TIMESTAMPTZ, -1, Value::TimestampTz(-1)),
            json!("1969-12-31T23:59:59.999999Z")
        );
        // Years as java.time writes them: +YYYYY above 9999, astronomical negative years.
        let big = (days(21_016, 11, 4) * 86_400 + 6 * 3600 + 51 * 60 + 30) * MICROS_PER_SECOND;
        assert_eq!(
            one_default(TIMESTAMPTZ, -1, Value::TimestampTz(big)),
            json!("+21016-11-04T06:51:30.000000Z")
        );
        let bc = days(-4713, 12, 31) * MICROS_PER_DAY + MICROS_PER_DAY - 1;
        assert_eq!(
            one_default(TIMESTAMPTZ, -1, Value::TimestampTz(bc)),
            json!("-4713-12-31T23:59:59.999999Z")
        );
        let bc44 = days(-43, 3, 15) * MICROS_PER_DAY;
        assert_eq!(
            one_default(TIMESTAMPTZ, 0, Value::TimestampTz(bc44)),
            json!("-0043-03-15T00:00:00Z")
        );
        // Infinity arrives as text and is written as Debezium does.
        assert_eq!(
            one_default(TIMESTAMPTZ, -1, Value::Text("infinity".into())),
            json!("infinity")
        );
        assert_eq!(
            one_schema(opts(), TIMESTAMPTZ, -1),
            json!({"type": "string", "optional": true, "name": "io.debezium.time.ZonedTimestamp", "version": 1, "field": "v"})
        );
    }

    fn days(y: i64, m: i64, d: i64) -> i64 {
        // Inverse of civil_from_days by search around an estimate; test-only.
        let mut z = (y - 1970) * 365 + (y - 1970) / 4 + (m - 1) * 30 + d;
        loop {
            let (yy, mm, dd) = civil_from_days(z);
            let cmp = (yy, i64::from(mm), i64::from(dd)).cmp(&(y, m, d));
            match cmp {
                std::cmp::Ordering::Equal => return z,
                std::cmp::Ordering::Less => z += 1,
                std::cmp::Ordering::Greater => z -= 1,
            }
        }
    }

    #[test]
    fn bc_dates() {
        // 0044-03-15 BC is astronomical -43.
        let d = days(-43, 3, 15);
        assert_eq!(one_default(DATE, -1, Value::Date(d as i32)), json!(d));
        let i = JsonOptions {
            time_precision: TimePrecisionMode::Isostring,
            ..opts()
        };
        assert_eq!(
            one(i, DATE, -1, Value::Date(d as i32)),
            json!("-0043-03-15Z")
        );
    }

    #[test]
    fn intervals() {
        let micros = 4 * 3_600_000_000 + 5 * 60_000_000 + 6_780_000;
        let v = Value::Interval {
            months: 14,
            days: 3,
            micros,
        };
        // Debezium's own test: durationMicros(1, 2, 3, 4, 5, 6.78, DAYS_PER_MONTH_AVG).
        let expected = {
            let days = 14.0 * DAYS_PER_MONTH_AVG + 3.0;
            let secs = ((days * 24.0 + 4.0) * 60.0 + 5.0) * 60.0 + 6.78;
            (secs * 1e6) as i64
        };
        assert_eq!(one_default(INTERVAL, -1, v.clone()), json!(expected));
        assert_eq!(expected, 37_091_106_780_000);
        assert_eq!(
            one_schema(opts(), INTERVAL, -1)["name"],
            "io.debezium.time.MicroDuration"
        );
        let s = JsonOptions {
            interval_handling: IntervalHandlingMode::String,
            ..opts()
        };
        assert_eq!(one(s.clone(), INTERVAL, -1, v), json!("P1Y2M3DT4H5M6.78S"));
        assert_eq!(
            one(
                s.clone(),
                INTERVAL,
                -1,
                Value::Interval {
                    months: 0,
                    days: 0,
                    micros: 0
                }
            ),
            json!("P0Y0M0DT0H0M0S")
        );
        assert_eq!(
            one(
                s.clone(),
                INTERVAL,
                -1,
                Value::Interval {
                    months: -14,
                    days: -1,
                    micros: -(2 * 3_600_000_000 + 500_000)
                }
            ),
            json!("P-1Y-2M-1DT-2H0M-0.5S")
        );
        assert_eq!(
            one_schema(s, INTERVAL, -1)["name"],
            "io.debezium.time.Interval"
        );
        assert_eq!(
            micro_duration(0, -1, 2 * 3_600_000_000),
            -22 * 3_600_000_000
        );
    }

    #[test]
    fn binary_modes() {
        let b = Value::Bytes(vec![0xfb, 0xff, 0x00]);
        assert_eq!(one_default(BYTEA, -1, b.clone()), json!("+/8A"));
        assert_eq!(
            one_schema(opts(), BYTEA, -1),
            json!({"type": "bytes", "optional": true, "field": "v"})
        );
        let mode = |m| JsonOptions {
            binary_handling: m,
            ..opts()
        };
        assert_eq!(
            one(mode(BinaryHandlingMode::Base64), BYTEA, -1, b.clone()),
            json!("+/8A")
        );
        assert_eq!(
            one(
                mode(BinaryHandlingMode::Base64UrlSafe),
                BYTEA,
                -1,
                b.clone()
            ),
            json!("-_8A")
        );
        assert_eq!(
            one(mode(BinaryHandlingMode::Hex), BYTEA, -1, b),
            json!("fbff00")
        );
        assert_eq!(
            one_schema(mode(BinaryHandlingMode::Hex), BYTEA, -1)["type"],
            "string"
        );
    }

    #[test]
    fn unavailable_placeholder() {
        assert_eq!(
            one_default(25, -1, Value::Unavailable),
            json!("__debezium_unavailable_value")
        );
        assert_eq!(
            one_default(JSONB, -1, Value::Unavailable),
            json!("__debezium_unavailable_value")
        );
        // bytea in bytes mode: the placeholder's bytes.
        assert_eq!(
            one_default(BYTEA, -1, Value::Unavailable),
            json!("X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==")
        );
        let hex = JsonOptions {
            binary_handling: BinaryHandlingMode::Hex,
            unavailable_value_placeholder: "?toast?".into(),
            ..opts()
        };
        assert_eq!(one(hex, BYTEA, -1, Value::Unavailable), json!("?toast?"));
    }

    #[test]
    fn mismatched_values_are_written_naturally() {
        // A date column whose value stayed text (infinity) and a column typed unexpectedly.
        assert_eq!(
            one_default(DATE, -1, Value::Text("infinity".into())),
            json!("infinity")
        );
        assert_eq!(one_default(25, -1, Value::Int32(3)), json!(3));
        // Rows shorter than the table never panic.
        let t = simple_table();
        let mut enc = JsonEncoder::new(opts());
        let ev = event(Op::Create, &t, None, Some(row(vec![Value::Int32(1)])));
        assert_eq!(
            value_json(&mut enc, &ev)["after"],
            json!({"id": 1, "name": null})
        );
        assert_eq!(key_json(&mut enc, &ev, &[0, 9]), Some(json!({"id": 1})));
    }

    fn arr(dims: &[(u32, i32)], elements: Vec<Value>) -> Value {
        Value::Array(Box::new(PgArray {
            dims: dims
                .iter()
                .map(|&(len, lower)| crate::value::ArrayDim { len, lower })
                .collect(),
            elements,
        }))
    }

    #[test]
    fn arrays_nest_by_dimension() {
        let v = arr(
            &[(2, 1), (2, 0)],
            vec![
                Value::Int32(1),
                Value::Null,
                Value::Int32(3),
                Value::Int32(4),
            ],
        );
        assert_eq!(one_default(1007, -1, v), json!([[1, null], [3, 4]]));
        assert_eq!(one_default(1007, -1, arr(&[], vec![])), json!([]));
        // Elements take the element type's shape: numeric(5,2)[] as Decimal bytes.
        let n = arr(&[(1, 1)], vec![Value::Numeric("1.00".into())]);
        assert_eq!(one_default(1231, numeric_typmod(5, 2), n), json!(["ZA=="]));
        assert_eq!(
            one_schema(opts(), 1231, numeric_typmod(5, 2))["items"],
            json!({"type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal", "version": 1, "parameters": {"scale": "2", "connect.decimal.precision": "5"}})
        );
    }

    #[test]
    fn money_bits_timetz_point() {
        assert_eq!(
            one_default(MONEY, -1, Value::Numeric("-1234.5".into())),
            json!("/h3G")
        );
        assert_eq!(
            one_schema(opts(), MONEY, -1),
            json!({"type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal", "version": 1, "parameters": {"scale": "2"}, "field": "v"})
        );
        let s = JsonOptions {
            decimal_handling: DecimalHandlingMode::String,
            ..opts()
        };
        assert_eq!(
            one(s, MONEY, -1, Value::Numeric("12.30".into())),
            json!("12.30")
        );
        // bit(1) is a boolean; longer bit strings are little-endian bytes (b'101' = 5).
        assert_eq!(one_default(BIT, 1, Value::Bits("1".into())), json!(true));
        assert_eq!(
            one_default(BIT, 3, Value::Bits("101".into())),
            json!("BQ==")
        );
        assert_eq!(
            one_default(VARBIT, -1, Value::Bits("100000000".into())),
            json!("AAE=")
        );
        assert_eq!(
            one_schema(opts(), BIT, 3),
            json!({"type": "bytes", "optional": true, "name": "io.debezium.data.Bits", "version": 1, "parameters": {"length": "3"}, "field": "v"})
        );
        assert_eq!(
            one_default(
                TIMETZ,
                -1,
                Value::TimeTz {
                    micros: 3_600_000_000 + 500_000,
                    offset_secs: 2 * 3600
                }
            ),
            json!("23:00:00.5Z")
        );
        let p = one_default(POINT, -1, Value::Point { x: 1.0, y: -2.5 });
        assert_eq!(p["x"], json!(1.0));
        assert_eq!(p["y"], json!(-2.5));
        assert_eq!(p["srid"], J::Null);
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(p["wkb"].as_str().unwrap())
                .unwrap()
                .len(),
            21
        );
        assert_eq!(
            one_schema(opts(), POINT, -1)["name"],
            "io.debezium.data.geometry.Point"
        );
    }

    #[test]
    fn described_types() {
        let with = |desc: TypeDesc, v: Value, o: JsonOptions| {
            let mut c = col("v", 99_999, -1, false);
            c.type_desc = Some(Arc::new(desc));
            let t = table(vec![c]);
            let mut enc = JsonEncoder::new(o);
            value_json(&mut enc, &event(Op::Create, &t, None, Some(row(vec![v]))))
        };
        let e = TypeDesc::Enum {
            labels: vec!["sad".into(), "ok".into()],
        };
        let j = with(
            e.clone(),
            Value::Text("ok".into()),
            JsonOptions {
                schemas_enable: true,
                ..opts()
            },
        );
        assert_eq!(j["payload"]["after"]["v"], "ok");
        assert_eq!(
            j["schema"]["fields"][1]["fields"][0],
            json!({"type": "string", "optional": true, "name": "io.debezium.data.Enum", "version": 1, "parameters": {"allowed": "sad,ok"}, "field": "v"})
        );
        let comp = TypeDesc::Composite {
            name: "pair".into(),
            fields: vec![
                (
                    "a".into(),
                    TypeDesc::Builtin {
                        oid: INT4,
                        type_modifier: -1,
                    },
                ),
                ("b".into(), TypeDesc::Array(Box::new(e))),
            ],
        };
        let v = Value::Composite(vec![
            Value::Int32(7),
            arr(&[(1, 1)], vec![Value::Text("sad".into())]),
        ]);
        assert_eq!(
            with(comp, v, opts())["after"]["v"],
            json!({"a": 7, "b": ["sad"]})
        );
        let h = Value::Map(vec![("k".into(), Some("v".into())), ("n".into(), None)]);
        assert_eq!(
            with(TypeDesc::Hstore, h.clone(), opts())["after"]["v"],
            json!("{\"k\":\"v\",\"n\":null}")
        );
        let m = JsonOptions {
            hstore_handling: HstoreHandlingMode::Map,
            schemas_enable: true,
            ..opts()
        };
        let j = with(TypeDesc::Hstore, h, m);
        assert_eq!(j["payload"]["after"]["v"], json!({"k": "v", "n": null}));
        assert_eq!(
            j["schema"]["fields"][1]["fields"][0],
            json!({"type": "map", "keys": {"type": "string", "optional": false}, "values": {"type": "string", "optional": true}, "optional": true, "field": "v"})
        );
    }

    #[test]
    fn options_from_config() {
        let cfg = FormatConfig {
            schemas_enable: true,
            ..FormatConfig::default()
        };
        let o = JsonOptions::from_config(&cfg, "p", "db");
        assert!(o.schemas_enable);
        assert_eq!(o.topic_prefix, "p");
        assert_eq!(o.unavailable_value_placeholder, DEFAULT_PLACEHOLDER);
        assert_eq!(o.connector_version, env!("CARGO_PKG_VERSION"));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn strings_round_trip_through_json(s in any::<String>()) {
                let mut out = Vec::new();
                write_str(&mut out, &s);
                let back: String = serde_json::from_slice(&out).unwrap();
                prop_assert_eq!(back, s);
            }

            #[test]
            fn decimals_round_trip(unscaled in any::<i64>(), scale in 0..12_i32) {
                // Format unscaled/10^scale as PostgreSQL would, encode, decode the bytes.
                let neg = unscaled < 0;
                let a = unscaled.unsigned_abs().to_string();
                let a = format!("{a:0>width$}", width = scale as usize + 1);
                let (int, frac) = a.split_at(a.len() - scale as usize);
                let text = match (neg, frac.is_empty()) {
                    (true, true) => format!("-{int}"),
                    (false, true) => int.to_string(),
                    (true, false) => format!("-{int}.{frac}"),
                    (false, false) => format!("{int}.{frac}"),
                };
                let mut digits = Vec::new();
                let mut bytes = Vec::new();
                let n = unscaled_digits(&text, scale, &mut digits).unwrap();
                twos_complement(n, &digits, &mut bytes);
                // Sign-extend big-endian two's complement back to i64.
                let mut v: i64 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
                for b in &bytes {
                    v = (v << 8) | i64::from(*b);
                }
                prop_assert_eq!(v, unscaled);
                // Minimal length, as BigInteger.toByteArray.
                if bytes.len() > 1 {
                    let redundant = (bytes[0] == 0 && bytes[1] & 0x80 == 0) || (bytes[0] == 0xff && bytes[1] & 0x80 != 0);
                    prop_assert!(!redundant, "{:?}", bytes);
                }
            }

            #[test]
            fn zoned_timestamps_parse_back(micros in -210_866_803_200_000_000_i64..9_200_000_000_000_000_000) {
                let mut out = Vec::new();
                write_zoned_timestamp(&mut out, micros, 6);
                let s = String::from_utf8(out).unwrap();
                let s = s.trim_matches('"');
                // Recompute the instant from the fields.
                let (date, time) = s.split_once('T').unwrap();
                let (sign, date) = match date.strip_prefix('-') {
                    Some(d) => (-1, d),
                    None => (1, date.trim_start_matches('+')),
                };
                let mut it = date.split('-');
                let y: i64 = sign * it.next().unwrap().parse::<i64>().unwrap();
                let m: i64 = it.next().unwrap().parse().unwrap();
                let d: i64 = it.next().unwrap().parse().unwrap();
                let time = time.trim_end_matches('Z');
                let (hms, frac) = time.split_once('.').unwrap();
                prop_assert_eq!(frac.len(), 6);
                let mut hms = hms.split(':').map(|p| p.parse::<i64>().unwrap());
                let secs = hms.next().unwrap() * 3600 + hms.next().unwrap() * 60 + hms.next().unwrap();
                let back = days(y, m, d) * MICROS_PER_DAY + secs * MICROS_PER_SECOND + frac.parse::<i64>().unwrap();
                prop_assert_eq!(back, micros);
            }

            #[test]
            fn any_event_is_valid_json(
                ints in proptest::collection::vec(any::<i32>(), 3),
                text in any::<String>(),
                f in any::<f64>(),
                schemas in any::<bool>(),
            ) {
                let t = table(vec![
                    col("a", INT4, -1, true),
                    col("b", 25, -1, false),
                    col("c", FLOAT8, -1, false),
                    col("d", INTERVAL, -1, false),
                ]);
                let mut enc = JsonEncoder::new(JsonOptions { schemas_enable: schemas, ..opts() });
                let ev = event(Op::Update, &t, None, Some(row(vec![
                    Value::Int32(ints[0]),
                    Value::Text(text),
                    Value::Float64(f),
                    Value::Interval { months: ints[1], days: ints[2], micros: i64::from(ints[0]) * 1_000_003 },
                ])));
                let mut out = Vec::new();
                enc.encode_value_at(&ev, NOW_US, &mut out);
                prop_assert!(serde_json::from_slice::<J>(&out).is_ok(), "{}", String::from_utf8_lossy(&out));
                prop_assert!(enc.encode_key(&ev, &[0], &mut out));
                prop_assert!(serde_json::from_slice::<J>(&out).is_ok());
            }
        }
    }
}
