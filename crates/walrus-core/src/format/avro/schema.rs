//! Connect schemas as Debezium builds them, and their Avro form as Confluent's `AvroData`
//! (the converter Debezium's Avro users run) renders them.
//!
//! Two steps, as in Kafka Connect:
//!
//! 1. A column becomes a [`Kind`] (from its type OID, typmod or [`TypeDesc`] and the handling
//!    modes) and the kind a [`ConnectSchema`]: the same schema the JSON encoder writes with
//!    `schemas.enable` (`format::json`).
//! 2. [`AvroSchemaWriter`] renders a Connect schema as Avro schema JSON, following
//!    `AvroData.fromConnectSchema`:
//!    - `int8`/`int16` become `int` with `"connect.type"`, `int32` `int`, `int64` `long`,
//!      `float32` `float`, `float64` `double`; a `map` with string keys an Avro `map`.
//!    - A struct named `a.b.C` becomes a record `C` in namespace `a.b` (unnamed ones
//!      `io.confluent.connect.avro.ConnectDefault`); a record defined once is referred to by
//!      its full name afterwards (`"after": ["null", "app.public.t.Value"]`).
//!    - Connect metadata rides along as properties: `connect.doc`, `connect.version`,
//!      `connect.parameters`, `connect.default`, `connect.name`; a `Decimal` also gets
//!      `scale`, `precision` (64 without `connect.decimal.precision`) and
//!      `"logicalType": "decimal"`, Connect's `Date`/`Time`/`Timestamp` their Avro logical types.
//!    - An optional schema is the union `["null", T]` with field default `null`; an optional
//!      schema with a default (`source.snapshot`) is `[T, "null"]` with that default.
//! 3. Names Avro forbids (`[A-Za-z_][A-Za-z0-9_]*` per name part) are adjusted as Debezium's
//!    `field.name.adjustment.mode=avro` / `schema.name.adjustment.mode=avro` do: every other
//!    character, and a leading digit, becomes `_` ([`avro_name`]).

use std::collections::HashSet;
use std::fmt::Write as _;

use crate::config::{
    BinaryHandlingMode, DecimalHandlingMode, IntervalHandlingMode, TimePrecisionMode,
};
use crate::format::json::JsonOptions;
use crate::format::kinds::SNAPSHOT_ALLOWED;
pub(crate) use crate::format::kinds::{kind_of, Kind};

/// `AvroData.CONNECT_AVRO_DECIMAL_PRECISION_DEFAULT`: the Avro precision of a `Decimal`
/// whose Connect schema has no `connect.decimal.precision`.
pub const DECIMAL_PRECISION_DEFAULT: i32 = 64;

/// Namespace and name of unnamed Connect structs (`AvroData.NAMESPACE`, `DEFAULT_SCHEMA_NAME`).
const DEFAULT_NAMESPACE: &str = "io.confluent.connect.avro";
const DEFAULT_RECORD_NAME: &str = "ConnectDefault";

/// A Connect schema type.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ConnectType {
    Boolean,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    String,
    Bytes,
    /// Items.
    Array(Box<ConnectSchema>),
    /// A map with required string keys and these values.
    Map(Box<ConnectSchema>),
    /// Fields in order.
    Struct(Vec<(String, ConnectSchema)>),
}

/// A Connect schema: what Debezium's `SchemaBuilder` calls produce.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ConnectSchema {
    pub ty: ConnectType,
    pub optional: bool,
    pub name: Option<String>,
    pub version: Option<i32>,
    pub doc: Option<&'static str>,
    pub parameters: Vec<(&'static str, String)>,
    /// The default as JSON text (only strings are used: `source.snapshot`).
    pub default: Option<String>,
}

impl ConnectSchema {
    pub(crate) fn of(ty: ConnectType) -> Self {
        ConnectSchema {
            ty,
            optional: false,
            name: None,
            version: None,
            doc: None,
            parameters: Vec::new(),
            default: None,
        }
    }

    pub(crate) fn optional(mut self, optional: bool) -> Self {
        self.optional = optional;
        self
    }

    fn named(mut self, name: impl Into<String>, version: Option<i32>) -> Self {
        self.name = Some(name.into());
        self.version = version;
        self
    }

    #[allow(clippy::needless_pass_by_value)] // numbers and strings alike, by value
    fn param(mut self, key: &'static str, value: impl ToString) -> Self {
        self.parameters.push((key, value.to_string()));
        self
    }

    pub(crate) fn field(name: &str, ty: ConnectType, optional: bool) -> (String, Self) {
        (name.to_string(), ConnectSchema::of(ty).optional(optional))
    }
}

/// The Connect schema of a kind, as `format::json` writes it.
pub(crate) fn connect_schema(kind: &Kind, optional: bool, opts: &JsonOptions) -> ConnectSchema {
    use ConnectType as T;
    let iso = opts.time_precision == TimePrecisionMode::Isostring;
    let connect = opts.time_precision == TimePrecisionMode::Connect;
    let s = |ty| ConnectSchema::of(ty).optional(optional);
    let logical = |ty, name: &str| s(ty).named(name, Some(1));
    match kind {
        Kind::Bool | Kind::Bits { length: ..=1 } => s(T::Boolean),
        Kind::Bits { length } => logical(T::Bytes, "io.debezium.data.Bits").param("length", length),
        Kind::Money => match opts.decimal_handling {
            DecimalHandlingMode::Precise => {
                logical(T::Bytes, "org.apache.kafka.connect.data.Decimal").param("scale", 2)
            }
            DecimalHandlingMode::Double => s(T::Float64),
            DecimalHandlingMode::String => s(T::String),
        },
        Kind::ZonedTime => logical(T::String, "io.debezium.time.ZonedTime"),
        Kind::Point => {
            let mut p = logical(
                T::Struct(vec![
                    ConnectSchema::field("x", T::Float64, false),
                    ConnectSchema::field("y", T::Float64, false),
                    ConnectSchema::field("wkb", T::Bytes, true),
                    ConnectSchema::field("srid", T::Int32, true),
                ]),
                "io.debezium.data.geometry.Point",
            );
            p.doc = Some("Geometry (POINT)");
            p
        }
        Kind::Enum(allowed) => {
            logical(T::String, "io.debezium.data.Enum").param("allowed", allowed)
        }
        Kind::Array(elem) => s(T::Array(Box::new(connect_schema(
            elem,
            crate::format::kinds::array_items_optional(elem),
            opts,
        )))),
        Kind::Struct(fields) => s(T::Struct(
            fields
                .iter()
                .map(|(name, k)| (name.clone(), connect_schema(k, true, opts)))
                .collect(),
        )),
        Kind::HstoreJson => logical(T::String, "io.debezium.data.Json"),
        Kind::HstoreMap => s(T::Map(Box::new(
            ConnectSchema::of(T::String).optional(true),
        ))),
        Kind::Int16 => s(T::Int16),
        Kind::Int32 => s(T::Int32),
        Kind::Int64 => s(T::Int64),
        Kind::Float32 => s(T::Float32),
        Kind::Float64 | Kind::DecimalDouble => s(T::Float64),
        Kind::Decimal { precision, scale } => {
            logical(T::Bytes, "org.apache.kafka.connect.data.Decimal")
                .param("scale", scale)
                .param("connect.decimal.precision", precision)
        }
        Kind::VariableDecimal => {
            let mut v = logical(
                T::Struct(vec![
                    ConnectSchema::field("scale", T::Int32, false),
                    ConnectSchema::field("value", T::Bytes, false),
                ]),
                "io.debezium.data.VariableScaleDecimal",
            );
            v.doc = Some("Variable scaled decimal");
            v
        }
        Kind::DecimalString | Kind::Str(None) => s(T::String),
        Kind::Str(Some(name)) => logical(T::String, name),
        Kind::Binary => match opts.binary_handling {
            BinaryHandlingMode::Bytes => s(T::Bytes),
            _ => s(T::String),
        },
        Kind::Date if iso => logical(T::String, "io.debezium.time.IsoDate"),
        Kind::Date if connect => logical(T::Int32, "org.apache.kafka.connect.data.Date"),
        Kind::Date => logical(T::Int32, "io.debezium.time.Date"),
        Kind::Time { .. } if iso => logical(T::String, "io.debezium.time.IsoTime"),
        Kind::Time { .. } if connect => logical(T::Int32, "org.apache.kafka.connect.data.Time"),
        Kind::Time { millis: true } => logical(T::Int32, "io.debezium.time.Time"),
        Kind::Time { millis: false } => logical(T::Int64, "io.debezium.time.MicroTime"),
        Kind::Timestamp { .. } if iso => logical(T::String, "io.debezium.time.IsoTimestamp"),
        Kind::Timestamp { .. } if connect => {
            logical(T::Int64, "org.apache.kafka.connect.data.Timestamp")
        }
        Kind::Timestamp { millis: true } => logical(T::Int64, "io.debezium.time.Timestamp"),
        Kind::Timestamp { millis: false } => logical(T::Int64, "io.debezium.time.MicroTimestamp"),
        Kind::ZonedTimestamp { .. } => logical(T::String, "io.debezium.time.ZonedTimestamp"),
        Kind::Interval => match opts.interval_handling {
            IntervalHandlingMode::Numeric => logical(T::Int64, "io.debezium.time.MicroDuration"),
            IntervalHandlingMode::String => logical(T::String, "io.debezium.time.Interval"),
        },
    }
}

/// `io.debezium.connector.postgresql.Source`.
pub(crate) fn source_schema() -> ConnectSchema {
    use ConnectType as T;
    let f = ConnectSchema::field;
    let mut snapshot = ConnectSchema::of(T::String)
        .optional(true)
        .named("io.debezium.data.Enum", Some(1))
        .param("allowed", SNAPSHOT_ALLOWED);
    snapshot.default = Some("\"false\"".into());
    ConnectSchema::of(T::Struct(vec![
        f("version", T::String, false),
        f("connector", T::String, false),
        f("name", T::String, false),
        f("ts_ms", T::Int64, false),
        ("snapshot".into(), snapshot),
        f("db", T::String, false),
        f("sequence", T::String, true),
        f("ts_us", T::Int64, true),
        f("ts_ns", T::Int64, true),
        f("schema", T::String, false),
        f("table", T::String, false),
        f("txId", T::Int64, true),
        f("lsn", T::Int64, true),
        f("xmin", T::Int64, true),
        f("origin", T::String, true),
        f("origin_lsn", T::Int64, true),
    ]))
    .named("io.debezium.connector.postgresql.Source", Some(1))
}

/// Debezium's `event.block` transaction struct, optional.
pub(crate) fn transaction_schema() -> ConnectSchema {
    use ConnectType as T;
    let f = ConnectSchema::field;
    ConnectSchema::of(T::Struct(vec![
        f("id", T::String, false),
        f("total_order", T::Int64, false),
        f("data_collection_order", T::Int64, false),
    ]))
    .optional(true)
    .named("event.block", Some(1))
}

/// `io.debezium.connector.common.TransactionMetadataKey`: the key of `BEGIN`/`END` events.
pub(crate) fn transaction_key_schema() -> ConnectSchema {
    ConnectSchema::of(ConnectType::Struct(vec![ConnectSchema::field(
        "id",
        ConnectType::String,
        false,
    )]))
    .named(
        "io.debezium.connector.common.TransactionMetadataKey",
        Some(1),
    )
}

/// `io.debezium.connector.common.TransactionMetadataValue`: `BEGIN`/`END` events.
pub(crate) fn transaction_value_schema() -> ConnectSchema {
    use ConnectType as T;
    let f = ConnectSchema::field;
    let per_table = ConnectSchema::of(T::Struct(vec![
        f("data_collection", T::String, false),
        f("event_count", T::Int64, false),
    ]))
    .optional(true)
    .named("event.collection", Some(1));
    ConnectSchema::of(T::Struct(vec![
        f("status", T::String, false),
        f("id", T::String, false),
        f("event_count", T::Int64, true),
        (
            "data_collections".into(),
            ConnectSchema::of(T::Array(Box::new(per_table))).optional(true),
        ),
        f("ts_ms", T::Int64, false),
    ]))
    .named(
        "io.debezium.connector.common.TransactionMetadataValue",
        Some(1),
    )
}

/// A struct of `columns` (name, kind, optional) named `name`: a table's `Key` or `Value`.
pub(crate) fn row_schema<'a>(
    name: String,
    columns: impl Iterator<Item = (&'a str, &'a Kind, bool)>,
    optional: bool,
    opts: &JsonOptions,
) -> ConnectSchema {
    ConnectSchema::of(ConnectType::Struct(
        columns
            .map(|(n, k, opt)| (n.to_string(), connect_schema(k, opt, opts)))
            .collect(),
    ))
    .optional(optional)
    .named(name, None)
}

/// The envelope of a table: `before`, `after`, `source`, `transaction`, `op`, `ts_*`.
pub(crate) fn envelope_schema(value: ConnectSchema, name: String) -> ConnectSchema {
    use ConnectType as T;
    let f = ConnectSchema::field;
    ConnectSchema::of(T::Struct(vec![
        ("before".into(), value.clone()),
        ("after".into(), value),
        ("source".into(), source_schema()),
        ("transaction".into(), transaction_schema()),
        f("op", T::String, false),
        f("ts_ms", T::Int64, true),
        f("ts_us", T::Int64, true),
        f("ts_ns", T::Int64, true),
    ]))
    .named(name, Some(2))
}

/// `io.debezium.connector.postgresql.MessageKey`.
pub(crate) fn message_key_schema() -> ConnectSchema {
    ConnectSchema::of(ConnectType::Struct(vec![ConnectSchema::field(
        "prefix",
        ConnectType::String,
        true,
    )]))
    .named("io.debezium.connector.postgresql.MessageKey", Some(1))
}

/// `io.debezium.connector.postgresql.MessageValue`.
pub(crate) fn message_value_schema(opts: &JsonOptions) -> ConnectSchema {
    use ConnectType as T;
    let f = ConnectSchema::field;
    let content = match opts.binary_handling {
        BinaryHandlingMode::Bytes => T::Bytes,
        _ => T::String,
    };
    let message = ConnectSchema::of(T::Struct(vec![
        f("prefix", T::String, true),
        f("content", content, true),
    ]))
    .named("io.debezium.connector.postgresql.Message", Some(1));
    ConnectSchema::of(T::Struct(vec![
        f("op", T::String, false),
        f("ts_ms", T::Int64, true),
        ("source".into(), source_schema()),
        ("transaction".into(), transaction_schema()),
        ("message".into(), message),
    ]))
    .named("io.debezium.connector.postgresql.MessageValue", Some(1))
}

/// One name part adjusted to Avro's `[A-Za-z_][A-Za-z0-9_]*`, as Debezium's avro
/// adjustment mode does: each other character, and a leading digit, becomes `_`.
pub fn avro_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, c) in name.chars().enumerate() {
        let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
        out.push(if ok { c } else { '_' });
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// A dotted full name with every part adjusted by [`avro_name`].
pub fn avro_full_name(name: &str) -> String {
    name.split('.').map(avro_name).collect::<Vec<_>>().join(".")
}

/// Renders Connect schemas as Avro schema JSON. One writer per top-level schema: it
/// remembers the records already defined, which later uses name instead of redefining.
#[derive(Default)]
pub(crate) struct AvroSchemaWriter {
    defined: HashSet<String>,
    /// Unnamed structs seen: the first is `ConnectDefault`, then `ConnectDefault2`, ...
    unnamed: u32,
}

impl AvroSchemaWriter {
    /// The Avro schema JSON of a top-level Connect schema.
    pub(crate) fn render(schema: &ConnectSchema) -> String {
        let mut out = String::with_capacity(1024);
        AvroSchemaWriter::default().write(&mut out, schema);
        out
    }

    /// The Avro full name a struct schema gets.
    pub(crate) fn record_full_name(schema: &ConnectSchema) -> String {
        match &schema.name {
            Some(n) => avro_full_name(n),
            None => format!("{DEFAULT_NAMESPACE}.{DEFAULT_RECORD_NAME}"),
        }
    }

    fn write(&mut self, out: &mut String, s: &ConnectSchema) {
        if s.optional {
            if s.default.is_some() {
                out.push('[');
                self.write_base(out, s);
                out.push_str(",\"null\"]");
            } else {
                out.push_str("[\"null\",");
                self.write_base(out, s);
                out.push(']');
            }
        } else {
            self.write_base(out, s);
        }
    }

    fn write_base(&mut self, out: &mut String, s: &ConnectSchema) {
        let (avro_type, connect_type) = match &s.ty {
            ConnectType::Boolean => ("boolean", None),
            ConnectType::Int16 => ("int", Some("int16")),
            ConnectType::Int32 => ("int", None),
            ConnectType::Int64 => ("long", None),
            ConnectType::Float32 => ("float", None),
            ConnectType::Float64 => ("double", None),
            ConnectType::String => ("string", None),
            ConnectType::Bytes => ("bytes", None),
            ConnectType::Array(_) => ("array", None),
            ConnectType::Map(_) => ("map", None),
            ConnectType::Struct(_) => ("record", None),
        };
        let decimal = s.name.as_deref() == Some("org.apache.kafka.connect.data.Decimal");
        let logical_type = match s.name.as_deref() {
            Some("org.apache.kafka.connect.data.Date") => Some("date"),
            Some("org.apache.kafka.connect.data.Time") => Some("time-millis"),
            Some("org.apache.kafka.connect.data.Timestamp") => Some("timestamp-millis"),
            _ => None,
        };
        let has_props = s.doc.is_some()
            || s.version.is_some()
            || !s.parameters.is_empty()
            || s.default.is_some()
            || s.name.is_some()
            || connect_type.is_some();
        if matches!(
            s.ty,
            ConnectType::Boolean
                | ConnectType::Int16
                | ConnectType::Int32
                | ConnectType::Int64
                | ConnectType::Float32
                | ConnectType::Float64
                | ConnectType::String
                | ConnectType::Bytes
        ) && !has_props
        {
            let _ = write!(out, "\"{avro_type}\"");
            return;
        }
        if let ConnectType::Struct(fields) = &s.ty {
            let full = match &s.name {
                Some(n) => avro_full_name(n),
                None => {
                    self.unnamed += 1;
                    if self.unnamed == 1 {
                        format!("{DEFAULT_NAMESPACE}.{DEFAULT_RECORD_NAME}")
                    } else {
                        format!("{DEFAULT_NAMESPACE}.{DEFAULT_RECORD_NAME}{}", self.unnamed)
                    }
                }
            };
            if !self.defined.insert(full.clone()) {
                let _ = write!(out, "\"{full}\"");
                return;
            }
            let (namespace, name) = match full.rsplit_once('.') {
                Some((ns, n)) => (Some(ns), n),
                None => (None, full.as_str()),
            };
            let _ = write!(out, "{{\"type\":\"record\",\"name\":\"{name}\"");
            if let Some(ns) = namespace {
                let _ = write!(out, ",\"namespace\":\"{ns}\"");
            }
            out.push_str(",\"fields\":[");
            for (i, (fname, fs)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{{\"name\":\"{}\",\"type\":", avro_name(fname));
                self.write(out, fs);
                match (&fs.default, fs.optional) {
                    (Some(d), _) => {
                        let _ = write!(out, ",\"default\":{d}");
                    }
                    (None, true) => out.push_str(",\"default\":null"),
                    (None, false) => {}
                }
                out.push('}');
            }
            out.push(']');
        } else {
            let _ = write!(out, "{{\"type\":\"{avro_type}\"");
            match &s.ty {
                ConnectType::Array(items) => {
                    out.push_str(",\"items\":");
                    self.write(out, items);
                }
                ConnectType::Map(values) => {
                    out.push_str(",\"values\":");
                    self.write(out, values);
                }
                _ => {}
            }
            if decimal {
                let param = |k: &str| {
                    s.parameters
                        .iter()
                        .find(|(key, _)| *key == k)
                        .and_then(|(_, v)| v.parse::<i32>().ok())
                };
                let _ = write!(
                    out,
                    ",\"scale\":{},\"precision\":{}",
                    param("scale").unwrap_or(0),
                    param("connect.decimal.precision").unwrap_or(DECIMAL_PRECISION_DEFAULT)
                );
            }
        }
        if let Some(doc) = s.doc {
            out.push_str(",\"connect.doc\":");
            crate::format::logical::json_str(out, doc);
        }
        if let Some(v) = s.version {
            let _ = write!(out, ",\"connect.version\":{v}");
        }
        if !s.parameters.is_empty() {
            out.push_str(",\"connect.parameters\":{");
            for (i, (k, v)) in s.parameters.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                crate::format::logical::json_str(out, k);
                out.push(':');
                crate::format::logical::json_str(out, v);
            }
            out.push('}');
        }
        if let Some(d) = &s.default {
            let _ = write!(out, ",\"connect.default\":{d}");
        }
        if let Some(n) = &s.name {
            // Debezium adjusts schema names before the converter sees them.
            out.push_str(",\"connect.name\":");
            crate::format::logical::json_str(out, &avro_full_name(n));
        }
        if let Some(t) = connect_type {
            let _ = write!(out, ",\"connect.type\":\"{t}\"");
        }
        if decimal {
            out.push_str(",\"logicalType\":\"decimal\"");
        } else if let Some(l) = logical_type {
            let _ = write!(out, ",\"logicalType\":\"{l}\"");
        }
        out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value as J};

    fn opts() -> JsonOptions {
        JsonOptions {
            topic_prefix: "app".into(),
            ..JsonOptions::default()
        }
    }

    #[allow(clippy::needless_pass_by_value)]
    fn avro(kind: Kind, optional: bool) -> J {
        let s = connect_schema(&kind, optional, &opts());
        serde_json::from_str(&AvroSchemaWriter::render(&s)).unwrap()
    }

    #[test]
    fn primitives_and_logical_types() {
        assert_eq!(avro(Kind::Int32, false), json!("int"));
        assert_eq!(avro(Kind::Int32, true), json!(["null", "int"]));
        assert_eq!(
            avro(Kind::Int16, false),
            json!({"type": "int", "connect.type": "int16"})
        );
        assert_eq!(
            avro(Kind::Date, true),
            json!(["null", {"type": "int", "connect.version": 1, "connect.name": "io.debezium.time.Date"}])
        );
        assert_eq!(
            avro(
                Kind::Decimal {
                    precision: 10,
                    scale: 2
                },
                false
            ),
            json!({"type": "bytes", "scale": 2, "precision": 10, "connect.version": 1,
                   "connect.parameters": {"scale": "2", "connect.decimal.precision": "10"},
                   "connect.name": "org.apache.kafka.connect.data.Decimal", "logicalType": "decimal"})
        );
        // money: no precision parameter, so Avro's precision is AvroData's default.
        assert_eq!(avro(Kind::Money, false)["precision"], json!(64));
        assert_eq!(
            avro(Kind::VariableDecimal, false),
            json!({"type": "record", "name": "VariableScaleDecimal", "namespace": "io.debezium.data",
                   "fields": [{"name": "scale", "type": "int"}, {"name": "value", "type": "bytes"}],
                   "connect.doc": "Variable scaled decimal", "connect.version": 1,
                   "connect.name": "io.debezium.data.VariableScaleDecimal"})
        );
        assert_eq!(
            avro(Kind::Array(Box::new(Kind::Str(None))), true),
            json!(["null", {"type": "array", "items": ["null", "string"]}])
        );
        assert_eq!(
            avro(Kind::HstoreMap, false),
            json!({"type": "map", "values": ["null", "string"]})
        );
        assert_eq!(
            avro(Kind::Enum("a,b".into()), false),
            json!({"type": "string", "connect.version": 1, "connect.parameters": {"allowed": "a,b"}, "connect.name": "io.debezium.data.Enum"})
        );
        let connect = JsonOptions {
            time_precision: TimePrecisionMode::Connect,
            ..opts()
        };
        let s = connect_schema(&Kind::Date, false, &connect);
        let j: J = serde_json::from_str(&AvroSchemaWriter::render(&s)).unwrap();
        assert_eq!(j["logicalType"], "date");
    }

    #[test]
    fn envelope_refers_to_value_record_by_name() {
        let o = opts();
        let id = Kind::Int32;
        let name = Kind::Str(None);
        let value = row_schema(
            "app.public.my-t.Value".into(),
            [("id", &id, false), ("1st name", &name, true)].into_iter(),
            true,
            &o,
        );
        let env = envelope_schema(value, "app.public.my-t.Envelope".into());
        let j: J = serde_json::from_str(&AvroSchemaWriter::render(&env)).unwrap();
        assert_eq!(j["name"], "Envelope");
        assert_eq!(j["namespace"], "app.public.my_t");
        assert_eq!(j["connect.version"], 2);
        assert_eq!(j["connect.name"], "app.public.my_t.Envelope");
        let before = &j["fields"][0];
        assert_eq!(before["default"], J::Null);
        assert_eq!(before["type"][0], "null");
        assert_eq!(before["type"][1]["name"], "Value");
        assert_eq!(
            before["type"][1]["fields"],
            json!([{"name": "id", "type": "int"}, {"name": "_st_name", "type": ["null", "string"], "default": null}])
        );
        assert_eq!(
            j["fields"][1]["type"],
            json!(["null", "app.public.my_t.Value"])
        );
        let source = &j["fields"][2]["type"];
        assert_eq!(source["name"], "Source");
        assert_eq!(
            source["fields"][4],
            json!({"name": "snapshot", "type": [{"type": "string", "connect.version": 1,
                "connect.parameters": {"allowed": SNAPSHOT_ALLOWED}, "connect.default": "false",
                "connect.name": "io.debezium.data.Enum"}, "null"], "default": "false"})
        );
        assert_eq!(j["fields"][3]["type"][1]["name"], "block");
        assert_eq!(j["fields"][3]["type"][1]["namespace"], "event");
    }

    #[test]
    fn names() {
        assert_eq!(avro_name("a-b c"), "a_b_c");
        assert_eq!(avro_name("9lives"), "_lives");
        assert_eq!(avro_name("ok_9"), "ok_9");
        assert_eq!(avro_name("é"), "_");
        assert_eq!(avro_full_name("app.public.1t"), "app.public._t");
    }
}
