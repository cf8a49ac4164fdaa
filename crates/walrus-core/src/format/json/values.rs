//! Values by kind: rows, arrays, maps, geometry and the natural JSON form of untyped values,
//! written straight into the output buffer.

use super::*;

pub(super) fn write_binary(out: &mut Vec<u8>, bytes: &[u8], mode: BinaryHandlingMode) {
    match mode {
        BinaryHandlingMode::Bytes | BinaryHandlingMode::Base64 => write_base64(out, bytes, false),
        BinaryHandlingMode::Base64UrlSafe => write_base64(out, bytes, true),
        BinaryHandlingMode::Hex => write_hex(out, bytes),
    }
}

/// Writes values by kind; holds what value writing needs from the encoder.
pub(super) struct ValueWriter<'a> {
    pub(super) opts: &'a JsonOptions,
    pub(super) placeholder_str: &'a [u8],
    pub(super) placeholder_b64: &'a [u8],
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

    pub(super) fn write_row(
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
            let value = match (row.values.get(i), &field.fallback) {
                (None | Some(Value::Null), Some(fallback)) => fallback,
                (Some(v), _) => v,
                (None, None) => &Value::Null,
            };
            self.write(out, &field.kind, value, digits, bytes);
        }
        out.push(b'}');
    }

    pub(super) fn write(
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
                    crate::format::logical::bits_le_bytes(bits, bytes);
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
pub(super) fn write_natural(out: &mut Vec<u8>, value: &Value) {
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
pub(super) fn write_map(out: &mut Vec<u8>, pairs: &[(String, Option<String>)]) {
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
pub(super) fn write_point(out: &mut Vec<u8>, x: f64, y: f64) {
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
