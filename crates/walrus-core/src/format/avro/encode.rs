//! Avro binary encoding, written by hand into the caller's buffer (the Avro specification,
//! "Binary Encoding"): `int`/`long` as zig-zag varints, `float`/`double` little-endian,
//! `bytes`/`string` length-prefixed, records as their fields in order, unions as the branch
//! index then the value, arrays and maps as one block of items then a zero count.
//!
//! [`ValueWriter`] writes a column value by its [`Kind`], in the shape
//! [`super::schema::connect_schema`] declares for it. A value that does not fit its column's
//! schema (a `date` column holding the text `infinity`, a numeric NaN under a `Decimal`)
//! is written as null when the field is optional, and as the type's zero otherwise: Avro
//! has no way to carry it, and a record must still decode with its schema.

use super::schema::Kind;
use crate::config::{
    BinaryHandlingMode, DecimalHandlingMode, IntervalHandlingMode, TimePrecisionMode,
};
use crate::format::json::JsonOptions;
use crate::format::logical;
use crate::value::{PgArray, Value};

/// `long`: zig-zag, then a little-endian base-128 varint.
#[inline]
pub(crate) fn long(out: &mut Vec<u8>, v: i64) {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// `int`: the same encoding as `long`.
#[inline]
pub(crate) fn int(out: &mut Vec<u8>, v: i32) {
    long(out, i64::from(v));
}

/// `bytes`: length, then the bytes.
#[inline]
pub(crate) fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    long(out, b.len() as i64);
    out.extend_from_slice(b);
}

/// `string`: length, then UTF-8.
#[inline]
pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    bytes(out, s.as_bytes());
}

#[inline]
pub(crate) fn boolean(out: &mut Vec<u8>, b: bool) {
    out.push(u8::from(b));
}

#[inline]
pub(crate) fn float(out: &mut Vec<u8>, v: f32) {
    out.extend_from_slice(&v.to_le_bytes());
}

#[inline]
pub(crate) fn double(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// The null branch of a `["null", T]` union.
#[inline]
pub(crate) fn null(out: &mut Vec<u8>) {
    out.push(0);
}

/// The value branch of a `["null", T]` union; the value follows.
#[inline]
pub(crate) fn some(out: &mut Vec<u8>) {
    out.push(2);
}

/// An optional string (`["null","string"]`).
pub(crate) fn opt_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            some(out);
            string(out, s);
        }
        None => null(out),
    }
}

/// An optional long (`["null","long"]`).
pub(crate) fn opt_long(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        Some(v) => {
            some(out);
            long(out, v);
        }
        None => null(out),
    }
}

/// Writes column values by kind; holds the options and scratch space.
pub(crate) struct ValueWriter<'a> {
    pub opts: &'a JsonOptions,
    pub digits: &'a mut Vec<u8>,
    pub scratch: &'a mut Vec<u8>,
    pub text: &'a mut String,
}

impl ValueWriter<'_> {
    /// Writes `value` for a field of `kind`, inside its `["null", T]` union when `optional`.
    pub(crate) fn write(&mut self, out: &mut Vec<u8>, kind: &Kind, optional: bool, value: &Value) {
        if optional {
            if value.is_null() {
                null(out);
                return;
            }
            let mark = out.len();
            some(out);
            if !self.write_present(out, kind, value) {
                out.truncate(mark);
                null(out);
            }
        } else if !self.write_present(out, kind, value) {
            zero(out, kind, self.opts);
        }
    }

    /// Writes a non-null value; false (and nothing written) when it has no form under
    /// `kind`.
    fn write_present(&mut self, out: &mut Vec<u8>, kind: &Kind, value: &Value) -> bool {
        let opts = self.opts;
        let iso = opts.time_precision == TimePrecisionMode::Isostring;
        let placeholder = opts.unavailable_value_placeholder.as_str();
        match (kind, value) {
            (Kind::Binary, Value::Unavailable) => {
                match opts.binary_handling {
                    BinaryHandlingMode::Bytes => bytes(out, placeholder.as_bytes()),
                    _ => string(out, placeholder),
                }
                true
            }
            (k, Value::Unavailable) if is_string_kind(k, opts) => {
                string(out, placeholder);
                true
            }
            (Kind::Bool, Value::Bool(b)) => {
                boolean(out, *b);
                true
            }
            (Kind::Int16 | Kind::Int32, v) => match int_of(v).and_then(|i| i32::try_from(i).ok()) {
                Some(i) => {
                    int(out, i);
                    true
                }
                None => false,
            },
            (Kind::Int64, v) => match int_of(v) {
                Some(i) => {
                    long(out, i);
                    true
                }
                None => false,
            },
            (Kind::Float32, Value::Float32(f)) => {
                float(out, *f);
                true
            }
            (Kind::Float64, Value::Float64(f)) => {
                double(out, *f);
                true
            }
            (Kind::Float64, Value::Float32(f)) => {
                double(out, f64::from(*f));
                true
            }
            (Kind::Decimal { scale, .. }, Value::Numeric(t)) => self.decimal(out, t, *scale),
            (Kind::VariableDecimal, Value::Numeric(t)) => {
                match logical::variable_decimal(t, self.digits, self.scratch) {
                    Some(scale) => {
                        int(out, scale);
                        bytes(out, self.scratch);
                        true
                    }
                    None => false,
                }
            }
            (Kind::DecimalDouble, Value::Numeric(t)) => match t.parse::<f64>() {
                Ok(v) => {
                    double(out, v);
                    true
                }
                Err(_) => false,
            },
            (Kind::DecimalString, Value::Numeric(t)) => {
                string(out, logical::special_numeric(t).unwrap_or(t));
                true
            }
            (Kind::Money, Value::Numeric(t)) => match opts.decimal_handling {
                DecimalHandlingMode::Precise => self.decimal(out, t, 2),
                DecimalHandlingMode::Double => match t.parse::<f64>() {
                    Ok(v) => {
                        double(out, v);
                        true
                    }
                    Err(_) => false,
                },
                DecimalHandlingMode::String => {
                    string(out, t);
                    true
                }
            },
            (Kind::Binary, Value::Bytes(b)) => {
                self.binary(out, b);
                true
            }
            (Kind::Date, Value::Date(d)) => {
                if iso {
                    self.text.clear();
                    logical::iso_date(self.text, i64::from(*d));
                    self.text.push('Z');
                    string(out, self.text);
                } else {
                    int(out, *d);
                }
                true
            }
            (Kind::Time { millis }, Value::Time(us)) => {
                if iso {
                    self.text.clear();
                    logical::iso_time(self.text, us.rem_euclid(logical::MICROS_PER_DAY), 0);
                    self.text.push('Z');
                    string(out, self.text);
                } else if *millis {
                    int(out, us.div_euclid(1000) as i32);
                } else {
                    long(out, *us);
                }
                true
            }
            (Kind::Timestamp { millis }, Value::Timestamp(us)) => {
                if iso {
                    self.text.clear();
                    logical::iso_date(self.text, us.div_euclid(logical::MICROS_PER_DAY));
                    self.text.push('T');
                    logical::iso_time(self.text, us.rem_euclid(logical::MICROS_PER_DAY), 0);
                    self.text.push('Z');
                    string(out, self.text);
                } else if *millis {
                    long(out, us.div_euclid(1000));
                } else {
                    long(out, *us);
                }
                true
            }
            (Kind::ZonedTimestamp { width }, Value::TimestampTz(us)) => {
                self.text.clear();
                logical::zoned_timestamp(self.text, *us, *width);
                string(out, self.text);
                true
            }
            (
                Kind::Interval,
                Value::Interval {
                    months,
                    days,
                    micros,
                },
            ) => {
                match opts.interval_handling {
                    IntervalHandlingMode::Numeric => {
                        long(out, logical::micro_duration(*months, *days, *micros));
                    }
                    IntervalHandlingMode::String => {
                        self.text.clear();
                        logical::iso_interval(self.text, *months, *days, *micros);
                        string(out, self.text);
                    }
                }
                true
            }
            (Kind::Bits { length }, Value::Bits(bits)) => {
                if *length <= 1 {
                    boolean(out, bits.bytes().any(|b| b == b'1'));
                } else {
                    logical::bits_le_bytes(bits, self.scratch);
                    bytes(out, self.scratch);
                }
                true
            }
            (
                Kind::ZonedTime,
                Value::TimeTz {
                    micros,
                    offset_secs,
                },
            ) => {
                self.text.clear();
                logical::zoned_time(self.text, *micros, *offset_secs);
                string(out, self.text);
                true
            }
            (Kind::Point, Value::Point { x, y }) => {
                double(out, *x);
                double(out, *y);
                some(out);
                bytes(out, &logical::point_wkb(*x, *y));
                null(out);
                true
            }
            (Kind::Array(elem), Value::Array(a)) => {
                self.array(out, elem, a);
                true
            }
            (Kind::Struct(fields), Value::Composite(values)) => {
                for (i, (_, k)) in fields.iter().enumerate() {
                    self.write(out, k, true, values.get(i).unwrap_or(&Value::Null));
                }
                true
            }
            (Kind::HstoreJson, Value::Map(pairs)) => {
                string(out, &logical::hstore_json(pairs));
                true
            }
            (Kind::HstoreMap, Value::Map(pairs)) => {
                if !pairs.is_empty() {
                    long(out, pairs.len() as i64);
                    for (k, v) in pairs {
                        string(out, k);
                        opt_string(out, v.as_deref());
                    }
                }
                long(out, 0);
                true
            }
            (k, Value::Text(s) | Value::Json(s) | Value::Numeric(s) | Value::Bits(s))
                if is_string_kind(k, opts) =>
            {
                string(out, s);
                true
            }
            _ => false,
        }
    }

    fn decimal(&mut self, out: &mut Vec<u8>, text: &str, scale: i32) -> bool {
        if logical::decimal_bytes(text, scale, self.digits, self.scratch) {
            bytes(out, self.scratch);
            true
        } else {
            false
        }
    }

    /// `bytea` (or message content) per binary mode: bytes, or base64/hex text.
    pub(crate) fn binary(&mut self, out: &mut Vec<u8>, b: &[u8]) {
        use base64::Engine as _;
        match self.opts.binary_handling {
            BinaryHandlingMode::Bytes => bytes(out, b),
            BinaryHandlingMode::Base64 => {
                string(out, &base64::engine::general_purpose::STANDARD.encode(b));
            }
            BinaryHandlingMode::Base64UrlSafe => {
                string(out, &base64::engine::general_purpose::URL_SAFE.encode(b));
            }
            BinaryHandlingMode::Hex => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                long(out, 2 * b.len() as i64);
                for &x in b {
                    out.push(HEX[usize::from(x >> 4)]);
                    out.push(HEX[usize::from(x & 0xf)]);
                }
            }
        }
    }

    /// The elements in row-major order as one Avro array (of optional elements but for
    /// enums, as the schema says): the schema has one level of items, so a
    /// multi-dimensional array is flattened.
    fn array(&mut self, out: &mut Vec<u8>, elem: &Kind, a: &PgArray) {
        if !a.elements.is_empty() {
            long(out, a.elements.len() as i64);
            let optional = crate::format::kinds::array_items_optional(elem);
            for v in &a.elements {
                self.write(out, elem, optional, v);
            }
        }
        long(out, 0);
    }
}

/// Kinds whose Avro type is `string` under `opts`.
fn is_string_kind(kind: &Kind, opts: &JsonOptions) -> bool {
    let iso = opts.time_precision == TimePrecisionMode::Isostring;
    match kind {
        Kind::Str(_)
        | Kind::DecimalString
        | Kind::ZonedTime
        | Kind::Enum(_)
        | Kind::HstoreJson
        | Kind::ZonedTimestamp { .. } => true,
        Kind::Money => opts.decimal_handling == DecimalHandlingMode::String,
        Kind::Binary => opts.binary_handling != BinaryHandlingMode::Bytes,
        Kind::Date | Kind::Time { .. } | Kind::Timestamp { .. } => iso,
        Kind::Interval => opts.interval_handling == IntervalHandlingMode::String,
        _ => false,
    }
}

fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Int16(i) => Some(i64::from(*i)),
        Value::Int32(i) => Some(i64::from(*i)),
        Value::Int64(i) => Some(*i),
        _ => None,
    }
}

/// The zero of a required field's type, for a value its schema cannot carry.
fn zero(out: &mut Vec<u8>, kind: &Kind, opts: &JsonOptions) {
    if is_string_kind(kind, opts) {
        string(out, "");
        return;
    }
    match kind {
        Kind::Bool | Kind::Bits { length: ..=1 } => boolean(out, false),
        Kind::Int16 | Kind::Int32 | Kind::Int64 | Kind::Date | Kind::Time { .. } => out.push(0),
        Kind::Timestamp { .. } | Kind::Interval => out.push(0),
        Kind::Float32 => float(out, 0.0),
        Kind::Float64 | Kind::DecimalDouble => double(out, 0.0),
        Kind::Money => match opts.decimal_handling {
            DecimalHandlingMode::Double => double(out, 0.0),
            _ => bytes(out, &[0]),
        },
        Kind::Decimal { .. } | Kind::Bits { .. } | Kind::Binary => bytes(out, &[0]),
        Kind::VariableDecimal => {
            int(out, 0);
            bytes(out, &[0]);
        }
        Kind::Point => {
            double(out, 0.0);
            double(out, 0.0);
            null(out);
            null(out);
        }
        Kind::Array(_) | Kind::HstoreMap => long(out, 0),
        Kind::Struct(fields) => {
            for _ in fields.iter() {
                null(out);
            }
        }
        // String kinds were handled above.
        _ => string(out, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_zig_zag() {
        let enc = |v: i64| {
            let mut out = Vec::new();
            long(&mut out, v);
            out
        };
        assert_eq!(enc(0), vec![0]);
        assert_eq!(enc(-1), vec![1]);
        assert_eq!(enc(1), vec![2]);
        assert_eq!(enc(-64), vec![0x7f]);
        assert_eq!(enc(64), vec![0x80, 0x01]);
        assert_eq!(enc(i64::MIN).len(), 10);
        let mut out = Vec::new();
        string(&mut out, "ab");
        assert_eq!(out, vec![4, b'a', b'b']);
    }
}
