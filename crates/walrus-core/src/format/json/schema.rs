//! The Connect schema JSON (`schemas.enable`): field schemas by kind, the row struct, the
//! `source` block, the envelope and the logical message's key and value schemas, built once
//! per table version.

use super::*;

/// `{"type":..,"optional":..,["name":..,"version":1,]` without the closing brace, for
/// non-struct kinds; VariableScaleDecimal writes its whole struct schema.
pub(super) fn write_field_schema(
    out: &mut Vec<u8>,
    kind: &Kind,
    optional: bool,
    opts: &JsonOptions,
) {
    let (ty, name, versioned) = schema_of(kind, opts);
    out.extend_from_slice(b"{\"type\":");
    write_str(out, ty);
    match kind {
        Kind::Array(elem) => {
            out.extend_from_slice(b",\"items\":");
            write_field_schema(out, elem, array_items_optional(elem), opts);
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
pub(super) fn end_field(out: &mut Vec<u8>, field: &str) {
    out.extend_from_slice(b",\"field\":");
    write_str(out, field);
    out.push(b'}');
}

pub(super) fn simple_field(out: &mut Vec<u8>, ty: &str, optional: bool, field: &str) {
    out.extend_from_slice(b"{\"type\":");
    write_str(out, ty);
    out.extend_from_slice(if optional {
        b",\"optional\":true".as_slice()
    } else {
        b",\"optional\":false"
    });
    end_field(out, field);
}

/// Which struct [`write_columns_struct`] writes.
#[derive(Clone, Copy, Debug)]
pub(super) enum StructShape<'a> {
    /// A row (`before`/`after`): optional, optionality and defaults per column.
    Value,
    /// A key: required, every field required; `extra` is a string field after the columns
    /// (a logical table's key field).
    Key {
        /// The added field's name.
        extra: Option<&'a str>,
    },
}

/// A struct of the given columns: `{"type":"struct","fields":[..],"optional":..,"name":..`
/// (left open for `"field"`/`"version"` and the closing brace).
pub(super) fn write_columns_struct(
    out: &mut Vec<u8>,
    table: &Table,
    fields: &[Field],
    columns: &mut dyn Iterator<Item = usize>,
    shape: StructShape<'_>,
    name: &str,
    opts: &JsonOptions,
) {
    let (key_schema, extra) = match shape {
        StructShape::Value => (false, None),
        StructShape::Key { extra } => (true, extra),
    };
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
        // NOT NULL (from the catalog) and primary-key columns are required, as in Debezium.
        write_field_schema(
            out,
            &field.kind,
            !key_schema && !column.value_required(),
            opts,
        );
        if let (false, Some(default)) = (key_schema, &field.default) {
            // JsonConverter writes `default` after `parameters`, before `field`.
            out.extend_from_slice(b",\"default\":");
            super::values::write_natural(out, default);
        }
        end_field(out, &column.name);
    }
    if let Some(extra) = extra {
        if !first {
            out.push(b',');
        }
        simple_field(out, "string", false, extra);
    }
    out.extend_from_slice(if key_schema {
        b"],\"optional\":false,\"name\":".as_slice()
    } else {
        b"],\"optional\":true,\"name\":"
    });
    write_str(out, name);
}

pub(super) fn source_schema() -> Vec<u8> {
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
pub(super) const TRANSACTION_FIELD_SCHEMA: &[u8] = b"{\"type\":\"struct\",\"fields\":[\
    {\"type\":\"string\",\"optional\":false,\"field\":\"id\"},\
    {\"type\":\"int64\",\"optional\":false,\"field\":\"total_order\"},\
    {\"type\":\"int64\",\"optional\":false,\"field\":\"data_collection_order\"}],\
    \"optional\":true,\"name\":\"event.block\",\"version\":1,\"field\":\"transaction\"}";

pub(super) fn message_key_schema() -> Vec<u8> {
    b"{\"type\":\"struct\",\"fields\":[{\"type\":\"string\",\"optional\":true,\"field\":\"prefix\"}],\
      \"optional\":false,\"name\":\"io.debezium.connector.postgresql.MessageKey\",\"version\":1}"
        .to_vec()
}

pub(super) fn message_value_schema(source_schema: &[u8], opts: &JsonOptions) -> Vec<u8> {
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

/// The Connect schema of a kind: `(type, name, version)`.
pub(super) fn schema_of(
    kind: &Kind,
    opts: &JsonOptions,
) -> (&'static str, Option<&'static str>, bool) {
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
