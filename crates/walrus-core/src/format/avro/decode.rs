//! Reading back what [`super::encode`] wrote, as Kafka Connect's `JsonConverter` would write
//! the same Connect value without its schema: bytes as base64, non-finite doubles as
//! `"NaN"`/`"Infinity"`/`"-Infinity"`, structs as objects in field order.
//!
//! Debezium's key-change headers (`__debezium.newkey`, `__debezium.oldkey`) carry the key in
//! that form whatever the key converter, so an Avro key encoder renders its own keys back
//! through this. Only walrus's own output is read; malformed bytes give `None`.

use base64::Engine as _;

use super::schema::{ConnectSchema, ConnectType};
use crate::format::logical::json_str;

/// Reads one Avro datum of `schema` from `bytes` and appends its JSON to `out`; the rest of
/// `bytes`, or `None` when they do not hold such a datum.
pub(crate) fn to_json<'a>(
    schema: &ConnectSchema,
    bytes: &'a [u8],
    out: &mut String,
) -> Option<&'a [u8]> {
    let mut rest = bytes;
    if schema.optional {
        let branch = long(&mut rest)?;
        // `["null", T]`, or `[T, "null"]` for schemas with a default.
        let null_branch = if schema.default.is_some() { 1 } else { 0 };
        if branch == null_branch {
            out.push_str("null");
            return Some(rest);
        }
    }
    match &schema.ty {
        ConnectType::Boolean => {
            let (&b, r) = rest.split_first()?;
            out.push_str(if b != 0 { "true" } else { "false" });
            rest = r;
        }
        ConnectType::Int16 | ConnectType::Int32 | ConnectType::Int64 => {
            out.push_str(itoa::Buffer::new().format(long(&mut rest)?));
        }
        ConnectType::Float32 => {
            let (b, r) = rest.split_at_checked(4)?;
            let v = f32::from_le_bytes(b.try_into().ok()?);
            number(
                out,
                f64::from(v),
                v.is_finite()
                    .then(|| ryu::Buffer::new().format_finite(v).to_string()),
            );
            rest = r;
        }
        ConnectType::Float64 => {
            let (b, r) = rest.split_at_checked(8)?;
            let v = f64::from_le_bytes(b.try_into().ok()?);
            number(
                out,
                v,
                v.is_finite()
                    .then(|| ryu::Buffer::new().format_finite(v).to_string()),
            );
            rest = r;
        }
        ConnectType::String => {
            let b = bytes_of(&mut rest)?;
            json_str(out, std::str::from_utf8(b).ok()?);
        }
        ConnectType::Bytes => {
            let b = bytes_of(&mut rest)?;
            out.push('"');
            base64::engine::general_purpose::STANDARD.encode_string(b, out);
            out.push('"');
        }
        ConnectType::Array(items) => {
            out.push('[');
            let mut first = true;
            loop {
                let n = long(&mut rest)?;
                if n == 0 {
                    break;
                }
                for _ in 0..n.unsigned_abs() {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    rest = to_json(items, rest, out)?;
                }
            }
            out.push(']');
        }
        ConnectType::Map(values) => {
            out.push('{');
            let mut first = true;
            loop {
                let n = long(&mut rest)?;
                if n == 0 {
                    break;
                }
                for _ in 0..n.unsigned_abs() {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    let k = bytes_of(&mut rest)?;
                    json_str(out, std::str::from_utf8(k).ok()?);
                    out.push(':');
                    rest = to_json(values, rest, out)?;
                }
            }
            out.push('}');
        }
        ConnectType::Struct(fields) => {
            out.push('{');
            for (i, (name, f)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_str(out, name);
                out.push(':');
                rest = to_json(f, rest, out)?;
            }
            out.push('}');
        }
    }
    Some(rest)
}

/// The byte ranges of the fields of a struct datum (`fields` its Connect fields) at the
/// start of `bytes`; `None` when they do not hold one.
pub(crate) fn struct_ranges(
    fields: &[(String, ConnectSchema)],
    bytes: &[u8],
) -> Option<Vec<std::ops::Range<usize>>> {
    let mut ranges = Vec::with_capacity(fields.len());
    let mut at = 0;
    for (_, f) in fields {
        let rest = skip(f, bytes.get(at..)?)?;
        let end = bytes.len() - rest.len();
        ranges.push(at..end);
        at = end;
    }
    Some(ranges)
}

/// Steps over one Avro datum of `schema` at the start of `bytes` without rendering it: the
/// rest, or `None` when they do not hold such a datum.
pub(crate) fn skip<'a>(schema: &ConnectSchema, bytes: &'a [u8]) -> Option<&'a [u8]> {
    let mut rest = bytes;
    if schema.optional {
        let branch = long(&mut rest)?;
        let null_branch = if schema.default.is_some() { 1 } else { 0 };
        if branch == null_branch {
            return Some(rest);
        }
    }
    match &schema.ty {
        ConnectType::Boolean => rest = rest.get(1..)?,
        ConnectType::Int16 | ConnectType::Int32 | ConnectType::Int64 => {
            long(&mut rest)?;
        }
        ConnectType::Float32 => rest = rest.get(4..)?,
        ConnectType::Float64 => rest = rest.get(8..)?,
        ConnectType::String | ConnectType::Bytes => {
            bytes_of(&mut rest)?;
        }
        ConnectType::Array(items) => loop {
            let n = long(&mut rest)?;
            if n == 0 {
                break;
            }
            for _ in 0..n.unsigned_abs() {
                rest = skip(items, rest)?;
            }
        },
        ConnectType::Map(values) => loop {
            let n = long(&mut rest)?;
            if n == 0 {
                break;
            }
            for _ in 0..n.unsigned_abs() {
                bytes_of(&mut rest)?;
                rest = skip(values, rest)?;
            }
        },
        ConnectType::Struct(fields) => {
            for (_, f) in fields {
                rest = skip(f, rest)?;
            }
        }
    }
    Some(rest)
}

fn number(out: &mut String, v: f64, finite: Option<String>) {
    match finite {
        Some(text) => out.push_str(&text),
        None if v.is_nan() => out.push_str("\"NaN\""),
        None if v > 0.0 => out.push_str("\"Infinity\""),
        None => out.push_str("\"-Infinity\""),
    }
}

/// A zig-zag varint.
fn long(rest: &mut &[u8]) -> Option<i64> {
    let mut n: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&b, r) = rest.split_first()?;
        *rest = r;
        n |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((n >> 1) as i64 ^ -((n & 1) as i64));
        }
    }
    None
}

fn bytes_of<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let n = usize::try_from(long(rest)?).ok()?;
    let (b, r) = rest.split_at_checked(n)?;
    *rest = r;
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::super::encode;
    use super::*;

    #[test]
    fn reads_back_varints_and_structs() {
        for v in [0, -1, 1, 63, -64, 64, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            encode::long(&mut out, v);
            assert_eq!(long(&mut out.as_slice()), Some(v));
        }
        let s = ConnectSchema::of(ConnectType::Struct(vec![
            ConnectSchema::field("id", ConnectType::Int32, false),
            ConnectSchema::field("b", ConnectType::Bytes, true),
            ConnectSchema::field("f", ConnectType::Float64, false),
        ]));
        let mut bytes = Vec::new();
        encode::int(&mut bytes, -5);
        encode::some(&mut bytes);
        encode::bytes(&mut bytes, &[0xfb, 0xff]);
        encode::double(&mut bytes, f64::NAN);
        let mut out = String::new();
        assert_eq!(to_json(&s, &bytes, &mut out), Some(&[][..]));
        assert_eq!(out, r#"{"id":-5,"b":"+/8=","f":"NaN"}"#);
        // Truncated input is refused, never read past.
        assert_eq!(to_json(&s, &bytes[..3], &mut String::new()), None);
        // Skipping steps over exactly what rendering reads.
        let ConnectType::Struct(fields) = &s.ty else {
            unreachable!()
        };
        assert_eq!(skip(&s, &bytes), Some(&[][..]));
        assert_eq!(skip(&s, &bytes[..3]), None);
        let ranges = struct_ranges(fields, &bytes).unwrap();
        assert_eq!(ranges, vec![0..1, 1..5, 5..13]);
    }
}
