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

/// A struct of the given columns: `{"type":"struct","fields":[..],"optional":..,"name":..`
/// (left open for `"field"`/`"version"` and the closing brace).
pub(super) fn write_columns_struct(
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
