//! Binary-format column values: from a type's *send* format (`typsend`, e.g. `int4send`,
//! `numeric_send`, `array_send`) to the same typed [`Value`]s that [`crate::decoding::text`] makes
//! from the text format.
//!
//! pgoutput sends binary values when the subscriber asks for `binary 'true'` (walrus's
//! `[source] binary = true`, PostgreSQL 14+) and the column's type has a send function; the
//! decoder hands each `(type, bytes)` pair to [`parse_binary`] / [`parse_binary_desc`]. The
//! formats are PostgreSQL's own (`src/backend/utils/adt/*.c`, the `*_send` functions), all
//! big-endian:
//!
//! | type | send format |
//! |---|---|
//! | int2/int4/int8, oid, xid | the integer |
//! | float4/float8 | IEEE 754 |
//! | numeric | `ndigits i16, weight i16, sign u16, dscale u16`, then `ndigits` base-10000 digits |
//! | date | `i32` days since 2000-01-01 (`i32::MAX`/`MIN` = ±infinity) |
//! | time / timetz | `i64` micros (+ `i32` zone, seconds *west* of UTC) |
//! | timestamp(tz) | `i64` micros since 2000-01-01 00:00 (`i64::MAX`/`MIN` = ±infinity) |
//! | interval | `i64` micros, `i32` days, `i32` months |
//! | array | `ndim i32, has_nulls i32, elem_oid u32`, `(len, lower)` per dim, then `len i32` + bytes per element (-1 = NULL) |
//! | record | `nfields i32`, then `oid u32, len i32, bytes` per field |
//! | range | flags `u8`, then `len i32` + bytes of each present bound |
//! | jsonb, ltree, jsonpath | version byte 1, then the text |
//!
//! Values that the text format carries as text (ranges, network addresses, geometry other
//! than `point`, `tsvector`, `pg_lsn`, ...) are rendered here exactly as the type's output
//! function would render them in walrus's session (`DateStyle ISO`, `TimeZone UTC`,
//! `extra_float_digits 3`), so that text and binary streams give identical events. Types
//! whose binary form cannot be rendered identically without the catalog (the `reg*` OID
//! aliases, `tsquery`, `aclitem`) are a [`TypeError`] and kept as `\x` hex text with a
//! warning.
//!
//! Every length read from the bytes is checked against what is left before anything is
//! allocated, so a corrupt value can never ask for more memory than its own size.

use std::fmt::Write as _;

use walrus_core::time::civil_from_days;
use walrus_core::value::{builtin_array_element, ArrayDim, PgArray, TypeDesc, Value};

use crate::decoding::text::{oid, TypeError, MAX_ARRAY_DIMS};

/// Microseconds between 1970-01-01 and 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days between 1970-01-01 and 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;
const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// A big-endian reader over one value's bytes.
struct Rd<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Rd<'a> {
    fn new(b: &'a [u8]) -> Self {
        Rd { b, i: 0 }
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.i..self.i.checked_add(n)?)?;
        self.i += n;
        Some(s)
    }
    fn arr<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.arr::<1>()?[0])
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.arr()?))
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.arr()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.arr()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.arr()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.arr()?))
    }
    fn f64(&mut self) -> Option<f64> {
        Some(f64::from_be_bytes(self.arr()?))
    }
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.b[self.i.min(self.b.len())..];
        self.i = self.b.len();
        s
    }
    fn done(&self) -> bool {
        self.i == self.b.len()
    }
    /// `len i32` then that many bytes; `None` inside for -1 (NULL).
    fn sized(&mut self) -> Option<Option<&'a [u8]>> {
        let len = self.i32()?;
        if len == -1 {
            return Some(None);
        }
        Some(Some(self.take(usize::try_from(len).ok()?)?))
    }
    fn finish<T>(&self, v: T) -> Option<T> {
        self.done().then_some(v)
    }
}

fn utf8(b: &[u8]) -> Option<String> {
    std::str::from_utf8(b).ok().map(str::to_owned)
}

/// Parses a built-in type's binary (send) format.
pub fn parse_binary(type_oid: u32, bytes: &[u8]) -> Result<Value, TypeError> {
    decode(type_oid, bytes)
        .ok_or_else(|| TypeError::new(type_oid, bytes, "not this type's binary send format"))
}

/// Parses the binary format of a type the catalog described (see
/// [`crate::decoding::text::parse_text_desc`]).
pub fn parse_binary_desc(desc: &TypeDesc, bytes: &[u8]) -> Result<Value, TypeError> {
    decode_desc(desc, bytes, 0)
        .ok_or_else(|| TypeError::new(0, bytes, "not this type's binary send format"))
}

/// [`parse_binary`] / [`parse_binary_desc`], keeping the bytes as `\x` hex text on error.
pub fn parse_binary_or_hex(
    desc: Option<&TypeDesc>,
    type_oid: u32,
    bytes: &[u8],
) -> (Value, Option<TypeError>) {
    let r = match desc {
        Some(d) => parse_binary_desc(d, bytes),
        None => parse_binary(type_oid, bytes),
    };
    match r {
        Ok(v) => (v, None),
        Err(e) => {
            let mut s = String::with_capacity(2 + 2 * bytes.len());
            s.push_str("\\x");
            for b in bytes {
                let _ = write!(s, "{b:02x}");
            }
            (Value::Text(s), Some(e))
        }
    }
}

/// Built-in types whose binary (send) format [`parse_binary`] decodes; arrays, ranges and
/// multiranges of them are covered by [`decodes`].
const DECODED: &[u32] = &[
    oid::BIT,
    oid::BOOL,
    oid::BOX,
    oid::BPCHAR,
    oid::BYTEA,
    oid::CHAR,
    oid::CID,
    oid::CIDR,
    oid::CIRCLE,
    oid::DATE,
    oid::DATERANGE,
    oid::FLOAT4,
    oid::FLOAT8,
    oid::INET,
    oid::INT2,
    oid::INT2VECTOR,
    oid::INT4,
    oid::INT4RANGE,
    oid::INT8,
    oid::INT8RANGE,
    oid::INTERVAL,
    oid::JSON,
    oid::JSONB,
    oid::JSONPATH,
    oid::LINE,
    oid::LSEG,
    oid::MACADDR,
    oid::MACADDR8,
    oid::MONEY,
    oid::NAME,
    oid::NUMERIC,
    oid::NUMRANGE,
    oid::OID,
    oid::OIDVECTOR,
    oid::PATH,
    oid::PG_LSN,
    oid::POINT,
    oid::POLYGON,
    oid::TEXT,
    oid::TID,
    oid::TIME,
    oid::TIMESTAMP,
    oid::TIMESTAMPTZ,
    oid::TIMETZ,
    oid::TSRANGE,
    oid::TSTZRANGE,
    oid::TSVECTOR,
    oid::UUID,
    oid::VARBIT,
    oid::VARCHAR,
    oid::XID,
    oid::XID8,
    oid::XML,
];

/// Whether [`parse_binary`] decodes this built-in type (so that a reader may ask
/// PostgreSQL for binary values of it and get the same events as from text).
pub fn decodes(type_oid: u32) -> bool {
    DECODED.contains(&type_oid)
        || builtin_array_element(type_oid).is_some_and(decodes)
        || builtin_range_subtype(type_oid).is_some_and(decodes)
        || builtin_multirange_range(type_oid)
            .and_then(builtin_range_subtype)
            .is_some_and(decodes)
}

/// [`decodes`] for a type the catalog described.
pub fn decodes_desc(desc: &TypeDesc) -> bool {
    match desc {
        TypeDesc::Builtin { oid, .. } => decodes(*oid),
        TypeDesc::Array(elem) => decodes_desc(elem),
        TypeDesc::Composite { fields, .. } => fields.iter().all(|(_, d)| decodes_desc(d)),
        TypeDesc::Range { subtype, .. } => decodes_desc(subtype),
        TypeDesc::Enum { .. } | TypeDesc::Hstore | TypeDesc::Ltree | TypeDesc::Citext => true,
        TypeDesc::Other { .. } => false,
    }
}

fn decode_desc(desc: &TypeDesc, bytes: &[u8], depth: usize) -> Option<Value> {
    if depth > 16 {
        return None;
    }
    match desc {
        TypeDesc::Builtin { oid, .. } => decode(*oid, bytes),
        TypeDesc::Array(elem) => decode_array(bytes, &mut |b| decode_desc(elem, b, depth + 1)),
        TypeDesc::Composite { fields, .. } => {
            let mut r = Rd::new(bytes);
            let n = usize::try_from(r.i32()?).ok()?;
            if n != fields.len() {
                return None;
            }
            let mut values = Vec::with_capacity(n);
            for (_, fdesc) in fields {
                let _oid = r.u32()?;
                values.push(match r.sized()? {
                    None => Value::Null,
                    Some(b) => decode_desc(fdesc, b, depth + 1)?,
                });
            }
            r.finish(Value::Composite(values))
        }
        TypeDesc::Range { subtype, multi, .. } => {
            let mut out = String::new();
            let sub = &mut |b: &[u8]| decode_desc(subtype, b, depth + 1);
            if *multi {
                render_multirange(bytes, sub, &mut out)?;
            } else {
                render_range(bytes, sub, &mut out)?;
            }
            Some(Value::Text(out))
        }
        TypeDesc::Hstore => decode_hstore(bytes).map(Value::Map),
        TypeDesc::Ltree => {
            let mut r = Rd::new(bytes);
            (r.u8()? == 1).then_some(())?;
            utf8(r.rest()).map(Value::Text)
        }
        TypeDesc::Enum { .. } | TypeDesc::Citext => utf8(bytes).map(Value::Text),
        // Unknown types have unknown send formats.
        TypeDesc::Other { .. } => None,
    }
}

fn decode(type_oid: u32, bytes: &[u8]) -> Option<Value> {
    let mut r = Rd::new(bytes);
    let v = match type_oid {
        oid::BOOL => match r.u8()? {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            _ => return None,
        },
        oid::INT2 => Value::Int16(r.i16()?),
        oid::INT4 => Value::Int32(r.i32()?),
        oid::INT8 => Value::Int64(r.i64()?),
        oid::OID => Value::Int64(i64::from(r.u32()?)),
        oid::FLOAT4 => Value::Float32(f32::from_be_bytes(r.arr()?)),
        oid::FLOAT8 => Value::Float64(r.f64()?),
        oid::NUMERIC => Value::Numeric(numeric_text(&mut r)?),
        oid::MONEY => Value::Numeric(cents_text(r.i64()?)),
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::CHAR | oid::JSON | oid::XML => {
            let s = utf8(r.rest())?;
            if type_oid == oid::JSON {
                Value::Json(s)
            } else {
                Value::Text(s)
            }
        }
        oid::JSONB | oid::JSONPATH => {
            (r.u8()? == 1).then_some(())?;
            let s = utf8(r.rest())?;
            if type_oid == oid::JSONB {
                Value::Json(s)
            } else {
                Value::Text(s)
            }
        }
        oid::BYTEA => Value::Bytes(r.rest().to_vec()),
        oid::UUID => {
            let u: [u8; 16] = r.arr()?;
            let mut s = String::with_capacity(36);
            for (i, b) in u.iter().enumerate() {
                if matches!(i, 4 | 6 | 8 | 10) {
                    s.push('-');
                }
                let _ = write!(s, "{b:02x}");
            }
            Value::Text(s)
        }
        oid::DATE => match r.i32()? {
            i32::MAX => Value::Text("infinity".into()),
            i32::MIN => Value::Text("-infinity".into()),
            d => Value::Date(d.checked_add(PG_EPOCH_DAYS)?),
        },
        oid::TIME => Value::Time(r.i64()?),
        oid::TIMETZ => {
            let micros = r.i64()?;
            let zone = r.i32()?;
            Value::TimeTz {
                micros,
                offset_secs: zone.checked_neg()?,
            }
        }
        oid::TIMESTAMP | oid::TIMESTAMPTZ => {
            let tz = type_oid == oid::TIMESTAMPTZ;
            match r.i64()? {
                i64::MAX => Value::Text("infinity".into()),
                i64::MIN => Value::Text("-infinity".into()),
                us => match us.checked_add(PG_EPOCH_MICROS) {
                    Some(unix) if tz => Value::TimestampTz(unix),
                    Some(unix) => Value::Timestamp(unix),
                    // Past the i64 range from 1970 (near 294276 AD): the text parser keeps
                    // these as PostgreSQL's text, so render that.
                    None => Value::Text(timestamp_text(i128::from(us), tz)),
                },
            }
        }
        oid::INTERVAL => {
            let micros = r.i64()?;
            let days = r.i32()?;
            let months = r.i32()?;
            Value::Interval {
                months,
                days,
                micros,
            }
        }
        oid::BIT | oid::VARBIT => {
            let n = usize::try_from(r.i32()?).ok()?;
            let data = r.take(n.div_ceil(8))?;
            let mut s = String::with_capacity(n);
            for k in 0..n {
                s.push(if data[k / 8] & (0x80 >> (k % 8)) != 0 {
                    '1'
                } else {
                    '0'
                });
            }
            Value::Bits(s)
        }
        oid::POINT => {
            let x = r.f64()?;
            let y = r.f64()?;
            Value::Point { x, y }
        }
        oid::XID | oid::CID => Value::Text(r.u32()?.to_string()),
        oid::XID8 => Value::Text((r.i64()? as u64).to_string()),
        oid::TID => {
            let block = r.u32()?;
            let off = r.u16()?;
            Value::Text(format!("({block},{off})"))
        }
        oid::PG_LSN => {
            let v = r.i64()? as u64;
            Value::Text(format!("{:X}/{:X}", v >> 32, v & 0xffff_ffff))
        }
        oid::MACADDR | oid::MACADDR8 => {
            let n = if type_oid == oid::MACADDR { 6 } else { 8 };
            let m = r.take(n)?;
            let parts: Vec<String> = m.iter().map(|b| format!("{b:02x}")).collect();
            Value::Text(parts.join(":"))
        }
        oid::INET | oid::CIDR => Value::Text(inet_text(&mut r)?),
        oid::LSEG | oid::BOX | oid::PATH | oid::POLYGON | oid::CIRCLE | oid::LINE => {
            Value::Text(geometry_text(type_oid, &mut r)?)
        }
        oid::TSVECTOR => Value::Text(tsvector_text(&mut r)?),
        oid::INT2VECTOR | oid::OIDVECTOR => {
            // array_send format, text form "1 2 3".
            let elem = if type_oid == oid::INT2VECTOR {
                oid::INT2
            } else {
                oid::OID
            };
            let Value::Array(a) = decode_array(r.rest(), &mut |b| decode(elem, b))? else {
                return None;
            };
            let parts: Vec<String> = a
                .elements
                .iter()
                .map(|v| match v {
                    Value::Int16(i) => i.to_string(),
                    Value::Int64(i) => i.to_string(),
                    _ => String::new(),
                })
                .collect();
            Value::Text(parts.join(" "))
        }
        _ => {
            if let Some(elem) = builtin_array_element(type_oid) {
                return decode_array(bytes, &mut |b| decode(elem, b));
            }
            if let Some(sub) = builtin_range_subtype(type_oid) {
                let mut out = String::new();
                render_range(bytes, &mut |b| decode(sub, b), &mut out)?;
                return Some(Value::Text(out));
            }
            if let Some(range) = builtin_multirange_range(type_oid) {
                let sub = builtin_range_subtype(range)?;
                let mut out = String::new();
                render_multirange(bytes, &mut |b| decode(sub, b), &mut out)?;
                return Some(Value::Text(out));
            }
            return None;
        }
    };
    r.finish(v)
}

/// The subtype of a built-in range type.
pub fn builtin_range_subtype(range_oid: u32) -> Option<u32> {
    Some(match range_oid {
        oid::INT4RANGE => oid::INT4,
        oid::NUMRANGE => oid::NUMERIC,
        oid::TSRANGE => oid::TIMESTAMP,
        oid::TSTZRANGE => oid::TIMESTAMPTZ,
        oid::DATERANGE => oid::DATE,
        oid::INT8RANGE => oid::INT8,
        _ => return None,
    })
}

/// The range type of a built-in multirange type.
pub fn builtin_multirange_range(multirange_oid: u32) -> Option<u32> {
    Some(match multirange_oid {
        4451 => oid::INT4RANGE,
        4532 => oid::NUMRANGE,
        4533 => oid::TSRANGE,
        4534 => oid::TSTZRANGE,
        4535 => oid::DATERANGE,
        4536 => oid::INT8RANGE,
        _ => return None,
    })
}

/// `array_send`: header, dimensions, then sized elements.
fn decode_array(bytes: &[u8], elem: &mut dyn FnMut(&[u8]) -> Option<Value>) -> Option<Value> {
    let mut r = Rd::new(bytes);
    let ndim = usize::try_from(r.i32()?).ok()?;
    if ndim > MAX_ARRAY_DIMS {
        return None;
    }
    let _has_nulls = r.i32()?;
    let _elem_oid = r.u32()?;
    let mut dims = Vec::with_capacity(ndim);
    let mut total: usize = 1;
    for _ in 0..ndim {
        let len = u32::try_from(r.i32()?).ok()?;
        let lower = r.i32()?;
        total = total.checked_mul(len as usize)?;
        dims.push(ArrayDim { len, lower });
    }
    if ndim == 0 || total == 0 {
        // A zero-length dimension makes the whole array empty, as `array_recv` reads it
        // (PostgreSQL sends empty arrays with ndim 0). Keeping the other dimensions would
        // let a 40-byte value claim `[2^31][0]`, which the JSON writer expands into 2^31
        // empty lists (found by the value_parse fuzz target).
        total = 0;
        dims.clear();
    }
    // Each element takes at least its 4-byte length: bound the allocation by the bytes.
    if total > bytes.len() / 4 {
        return None;
    }
    let mut elements = Vec::with_capacity(total);
    for _ in 0..total {
        elements.push(match r.sized()? {
            None => Value::Null,
            Some(b) => elem(b)?,
        });
    }
    r.finish(Value::Array(Box::new(PgArray { dims, elements })))
}

/// `hstore_send`: count, then sized key and value (-1 = NULL) per pair.
fn decode_hstore(bytes: &[u8]) -> Option<Vec<(String, Option<String>)>> {
    let mut r = Rd::new(bytes);
    let n = usize::try_from(r.i32()?).ok()?;
    if n > bytes.len() / 8 {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let k = utf8(r.sized()??)?;
        let v = match r.sized()? {
            None => None,
            Some(b) => Some(utf8(b)?),
        };
        out.push((k, v));
    }
    r.finish(out)
}

// ---------------------------------------------------------------------------------------
// Rendering PostgreSQL's text output from binary values.

/// `numeric_out` of a `numeric_send` value.
fn numeric_text(r: &mut Rd<'_>) -> Option<String> {
    let ndigits = usize::try_from(r.i16()?).ok()?;
    let weight = i32::from(r.i16()?);
    let sign = r.u16()?;
    let dscale = usize::from(r.u16()?);
    match sign {
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        0x0000 | 0x4000 => {}
        _ => return None,
    }
    // numeric allows 131072 digits before the point and 16383 after.
    if dscale > 16_383 || weight > 32_767 {
        return None;
    }
    let mut digits = Vec::with_capacity(ndigits);
    for _ in 0..ndigits {
        let d = r.i16()?;
        if !(0..10_000).contains(&d) {
            return None;
        }
        digits.push(d);
    }
    let digit = |i: i32| -> i16 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut s = String::with_capacity(8 + 4 * ndigits + dscale);
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for i in 0..=weight {
            let group = four_digits(digit(i));
            // The first group without its leading zeros (but at least one digit).
            let skip = if i == 0 {
                group.iter().take(3).take_while(|&&c| c == b'0').count()
            } else {
                0
            };
            group[skip..].iter().for_each(|&c| s.push(char::from(c)));
        }
    }
    if dscale > 0 {
        s.push('.');
        let mut written = 0;
        let mut i = weight + 1;
        while written < dscale {
            for c in four_digits(digit(i)) {
                if written == dscale {
                    break;
                }
                s.push(char::from(c));
                written += 1;
            }
            i += 1;
        }
    }
    Some(s)
}

/// A base-10000 digit of `numeric` as its four decimal digits (formatting machinery per
/// group showed up in snapshot profiles).
fn four_digits(d: i16) -> [u8; 4] {
    let d = d.unsigned_abs();
    [
        b'0' + (d / 1000 % 10) as u8,
        b'0' + (d / 100 % 10) as u8,
        b'0' + (d / 10 % 10) as u8,
        b'0' + (d % 10) as u8,
    ]
}

/// `money` as a plain decimal with 2 fraction digits (`lc_monetary = C`).
fn cents_text(cents: i64) -> String {
    let neg = cents < 0;
    let a = cents.unsigned_abs();
    format!("{}{}.{:02}", if neg { "-" } else { "" }, a / 100, a % 100)
}

/// `YYYY-MM-DD` (DateStyle ISO), and whether ` BC` must follow.
fn write_date(out: &mut String, days_since_1970: i64) -> bool {
    let (y, m, d) = civil_from_days(days_since_1970);
    let bc = y <= 0;
    let year = if bc { 1 - y } else { y };
    let _ = write!(out, "{year:04}-{m:02}-{d:02}");
    bc
}

/// `HH:MM:SS[.ffffff]`, trailing fraction zeros trimmed.
fn write_time(out: &mut String, micros_of_day: i64) {
    let secs = micros_of_day / MICROS_PER_SECOND;
    let frac = micros_of_day % MICROS_PER_SECOND;
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if frac != 0 {
        let f = format!("{frac:06}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
}

/// `timestamp_out` / `timestamptz_out` (UTC session) of micros since 2000-01-01.
fn timestamp_text(pg_micros: i128, tz: bool) -> String {
    let unix = pg_micros + i128::from(PG_EPOCH_MICROS);
    let day = unix.div_euclid(i128::from(MICROS_PER_DAY));
    let tod = unix.rem_euclid(i128::from(MICROS_PER_DAY));
    let mut s = String::with_capacity(32);
    let bc = write_date(&mut s, day as i64);
    s.push(' ');
    write_time(&mut s, tod as i64);
    if tz {
        s.push_str("+00");
    }
    if bc {
        s.push_str(" BC");
    }
    s
}

/// A scalar's text output, for range bounds.
fn scalar_text(v: &Value) -> Option<String> {
    Some(match v {
        Value::Int16(i) => i.to_string(),
        Value::Int32(i) => i.to_string(),
        Value::Int64(i) => i.to_string(),
        Value::Float32(f) => float4_text(*f),
        Value::Float64(f) => float8_text(*f),
        Value::Numeric(s) | Value::Text(s) | Value::Json(s) => s.clone(),
        Value::Bool(b) => if *b { "t" } else { "f" }.into(),
        Value::Date(d) => {
            let mut s = String::new();
            if write_date(&mut s, i64::from(*d)) {
                s.push_str(" BC");
            }
            s
        }
        Value::Time(us) => {
            let mut s = String::new();
            write_time(&mut s, *us);
            s
        }
        Value::Timestamp(us) => {
            timestamp_text(i128::from(*us) - i128::from(PG_EPOCH_MICROS), false)
        }
        Value::TimestampTz(us) => {
            timestamp_text(i128::from(*us) - i128::from(PG_EPOCH_MICROS), true)
        }
        _ => return None,
    })
}

/// `range_out`: `empty`, or `[lo,hi)` with bounds quoted when they contain `"\,()[]` or
/// white space (or are empty), doubling `"` and `\` inside quotes.
fn render_range(
    bytes: &[u8],
    sub: &mut dyn FnMut(&[u8]) -> Option<Value>,
    out: &mut String,
) -> Option<()> {
    const EMPTY: u8 = 0x01;
    const LB_INC: u8 = 0x02;
    const UB_INC: u8 = 0x04;
    const LB_INF: u8 = 0x08;
    const UB_INF: u8 = 0x10;
    let mut r = Rd::new(bytes);
    let flags = r.u8()?;
    if flags & EMPTY != 0 {
        out.push_str("empty");
        return r.finish(());
    }
    out.push(if flags & LB_INC != 0 { '[' } else { '(' });
    if flags & LB_INF == 0 {
        let b = r.sized()??;
        range_bound(out, &scalar_text(&sub(b)?)?);
    }
    out.push(',');
    if flags & UB_INF == 0 {
        let b = r.sized()??;
        range_bound(out, &scalar_text(&sub(b)?)?);
    }
    out.push(if flags & UB_INC != 0 { ']' } else { ')' });
    r.finish(())
}

fn range_bound(out: &mut String, s: &str) {
    let quote = s.is_empty()
        || s.chars()
            .any(|c| matches!(c, '"' | '\\' | ',' | '(' | ')' | '[' | ']') || c.is_whitespace());
    if !quote {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push(c);
        }
        out.push(c);
    }
    out.push('"');
}

/// `multirange_out`: `{range,range}`.
fn render_multirange(
    bytes: &[u8],
    sub: &mut dyn FnMut(&[u8]) -> Option<Value>,
    out: &mut String,
) -> Option<()> {
    let mut r = Rd::new(bytes);
    let n = r.i32()?;
    out.push('{');
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        let b = r.sized()??;
        render_range(b, sub, out)?;
    }
    out.push('}');
    r.finish(())
}

/// `float8out` with `extra_float_digits > 0`: the shortest digits that round-trip, in
/// `%e` style when the decimal exponent is < -4 or >= 15, else plain.
pub fn float8_text(v: f64) -> String {
    shortest_float_text(v.is_nan(), v.is_infinite(), v < 0.0, &format!("{v:e}"), 15)
}

/// `float4out`, like [`float8_text`] with exponent threshold 6.
pub fn float4_text(v: f32) -> String {
    shortest_float_text(v.is_nan(), v.is_infinite(), v < 0.0, &format!("{v:e}"), 6)
}

fn shortest_float_text(nan: bool, inf: bool, neg: bool, sci: &str, max_exp: i32) -> String {
    if nan {
        return "NaN".into();
    }
    if inf {
        return if neg { "-Infinity" } else { "Infinity" }.into();
    }
    // Rust's `{:e}` is the shortest round-trip digits: `-1.2345e-5`, `0e0`.
    let (mant, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mant) = match mant.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mant),
    };
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    if digits == "0" {
        return format!("{sign}0");
    }
    if exp < -4 || exp >= max_exp {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{dot}{rest}e{esign}{:02}", exp.abs());
    }
    let n = digits.len() as i32;
    if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        format!("{sign}0.{zeros}{digits}")
    } else if exp + 1 >= n {
        let zeros = "0".repeat((exp + 1 - n) as usize);
        format!("{sign}{digits}{zeros}")
    } else {
        let (a, b) = digits.split_at((exp + 1) as usize);
        format!("{sign}{a}.{b}")
    }
}

fn point_text(r: &mut Rd<'_>) -> Option<String> {
    let x = r.f64()?;
    let y = r.f64()?;
    Some(format!("({},{})", float8_text(x), float8_text(y)))
}

/// `lseg_out`, `box_out`, `path_out`, `poly_out`, `circle_out`, `line_out`.
fn geometry_text(type_oid: u32, r: &mut Rd<'_>) -> Option<String> {
    let points = |r: &mut Rd<'_>, n: usize| -> Option<Vec<String>> {
        (0..n).map(|_| point_text(r)).collect()
    };
    let count = |r: &mut Rd<'_>| -> Option<usize> {
        let n = usize::try_from(r.i32()?).ok()?;
        (n <= r.b.len() / 16).then_some(n)
    };
    Some(match type_oid {
        oid::LSEG => format!("[{}]", points(r, 2)?.join(",")),
        oid::BOX => points(r, 2)?.join(","),
        oid::PATH => {
            let closed = r.u8()? != 0;
            let n = count(r)?;
            let p = points(r, n)?.join(",");
            if closed {
                format!("({p})")
            } else {
                format!("[{p}]")
            }
        }
        oid::POLYGON => {
            let n = count(r)?;
            format!("({})", points(r, n)?.join(","))
        }
        oid::CIRCLE => {
            let c = point_text(r)?;
            format!("<{c},{}>", float8_text(r.f64()?))
        }
        oid::LINE => {
            let a = r.f64()?;
            let b = r.f64()?;
            let c = r.f64()?;
            format!(
                "{{{},{},{}}}",
                float8_text(a),
                float8_text(b),
                float8_text(c)
            )
        }
        _ => return None,
    })
}

/// `inet_out` / `cidr_out`: the address, with `/bits` unless an inet covers the whole
/// address.
fn inet_text(r: &mut Rd<'_>) -> Option<String> {
    let family = r.u8()?;
    let bits = r.u8()?;
    let is_cidr = r.u8()? != 0;
    let nb = usize::from(r.u8()?);
    let addr = r.take(nb)?;
    let (text, max) = match (family, nb) {
        (2, 4) => {
            let a: [u8; 4] = addr.try_into().ok()?;
            (std::net::Ipv4Addr::from(a).to_string(), 32)
        }
        (3, 16) => {
            let a: [u8; 16] = addr.try_into().ok()?;
            (std::net::Ipv6Addr::from(a).to_string(), 128)
        }
        _ => return None,
    };
    if bits > max {
        return None;
    }
    Some(if is_cidr || bits != max {
        format!("{text}/{bits}")
    } else {
        text
    })
}

/// `tsvectorout`: `'lexeme':1A,2 'other'`, quotes and backslashes doubled.
fn tsvector_text(r: &mut Rd<'_>) -> Option<String> {
    let n = usize::try_from(r.i32()?).ok()?;
    if n > r.b.len() {
        return None;
    }
    let mut out = String::new();
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        let start = r.i;
        let len = r.b[start..].iter().position(|&b| b == 0)?;
        let lexeme = std::str::from_utf8(r.take(len)?).ok()?;
        r.u8()?;
        out.push('\'');
        for c in lexeme.chars() {
            if c == '\'' || c == '\\' {
                out.push(c);
            }
            out.push(c);
        }
        out.push('\'');
        let npos = r.u16()?;
        for k in 0..npos {
            let p = r.u16()?;
            out.push(if k == 0 { ':' } else { ',' });
            let _ = write!(out, "{}", p & 0x3fff);
            match p >> 14 {
                3 => out.push('A'),
                2 => out.push('B'),
                1 => out.push('C'),
                _ => {}
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Regression (fuzz target value_parse): `[2^31 - 1][0]` has no elements and must not keep
    /// dimensions that promise 2^31 - 1 sub-arrays.
    #[test]
    fn an_array_with_a_zero_length_dimension_is_empty() {
        let mut b = Vec::new();
        for v in [2i32, 0, 23, i32::MAX, 1, 0, 1] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        let Ok(Value::Array(a)) = parse_binary(1007, &b) else {
            panic!("not an array");
        };
        assert!(a.dims.is_empty(), "{:?}", a.dims);
        assert!(a.elements.is_empty());
        // The same as PostgreSQL's own empty array.
        let mut empty = Vec::new();
        for v in [0i32, 0, 23] {
            empty.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(parse_binary(1007, &empty), parse_binary(1007, &b));
    }

    #[test]
    fn floats_render_like_float8out() {
        assert_eq!(float8_text(1.5), "1.5");
        assert_eq!(float8_text(-0.0), "-0");
        assert_eq!(float8_text(1e20), "1e+20");
        assert_eq!(float8_text(1e15), "1e+15");
        assert_eq!(float8_text(123_456_789_012_345.0), "123456789012345");
        assert_eq!(float8_text(0.0001), "0.0001");
        assert_eq!(float8_text(0.00001), "1e-05");
        assert_eq!(float8_text(1.2345e-7), "1.2345e-07");
        assert_eq!(float8_text(f64::NAN), "NaN");
        assert_eq!(float4_text(1_000_000.0), "1e+06");
        assert_eq!(float4_text(0.1), "0.1");
        assert_eq!(float8_text(1e300), "1e+300");
    }

    fn numeric(ndigits: &[i16], weight: i16, sign: u16, dscale: u16) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(ndigits.len() as i16).to_be_bytes());
        b.extend_from_slice(&weight.to_be_bytes());
        b.extend_from_slice(&sign.to_be_bytes());
        b.extend_from_slice(&dscale.to_be_bytes());
        for d in ndigits {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b
    }

    #[test]
    fn numerics() {
        let n = |d: &[i16], w, s, sc| parse_binary(oid::NUMERIC, &numeric(d, w, s, sc)).unwrap();
        assert_eq!(n(&[12, 3400], 0, 0, 4), Value::Numeric("12.3400".into()));
        assert_eq!(n(&[1], 1, 0x4000, 0), Value::Numeric("-10000".into()));
        assert_eq!(n(&[500], -1, 0, 2), Value::Numeric("0.05".into()));
        assert_eq!(n(&[5], -1, 0, 4), Value::Numeric("0.0005".into()));
        assert_eq!(n(&[5], -2, 0, 8), Value::Numeric("0.00000005".into()));
        assert_eq!(n(&[], 0, 0, 0), Value::Numeric("0".into()));
        assert_eq!(n(&[], 0, 0, 3), Value::Numeric("0.000".into()));
        assert_eq!(n(&[], 0, 0xC000, 0), Value::Numeric("NaN".into()));
        assert_eq!(n(&[], 0, 0xF000, 0), Value::Numeric("-Infinity".into()));
        assert_eq!(n(&[1, 2], 2, 0, 0), Value::Numeric("100020000".into()));
    }

    #[test]
    fn arrays_with_bounds_and_nulls() {
        let mut b = Vec::new();
        for v in [2i32, 1, 23, 2, 0, 1, 1] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.truncate(12 + 16);
        // dims: (2, lower 0), (1, lower 1); elements: 7, NULL
        let mut b = Vec::new();
        for v in [2i32, 1, 23, 2, 0, 1, 1] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&4i32.to_be_bytes());
        b.extend_from_slice(&7i32.to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        let v = parse_binary(oid::INT4_ARRAY, &b).unwrap();
        assert_eq!(
            v,
            Value::Array(Box::new(PgArray {
                dims: vec![ArrayDim { len: 2, lower: 0 }, ArrayDim { len: 1, lower: 1 }],
                elements: vec![Value::Int32(7), Value::Null],
            }))
        );
        // A huge element count with no bytes behind it is refused before allocating.
        let mut b = Vec::new();
        for v in [1i32, 0, 23, i32::MAX, 1] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        assert!(parse_binary(oid::INT4_ARRAY, &b).is_err());
    }

    #[test]
    fn times_and_specials() {
        assert_eq!(
            parse_binary(oid::DATE, &0i32.to_be_bytes()).unwrap(),
            Value::Date(10_957)
        );
        assert_eq!(
            parse_binary(oid::TIMESTAMPTZ, &i64::MAX.to_be_bytes()).unwrap(),
            Value::Text("infinity".into())
        );
        let mut tz = 1_000_000i64.to_be_bytes().to_vec();
        tz.extend_from_slice(&(-7200i32).to_be_bytes());
        assert_eq!(
            parse_binary(oid::TIMETZ, &tz).unwrap(),
            Value::TimeTz {
                micros: 1_000_000,
                offset_secs: 7200
            }
        );
        // Rendered text parses back to the same instant, BC included.
        for us in [
            -(PG_EPOCH_MICROS as i128) - 86_400_000_000 * 366 * 2000,
            1,
            -1,
        ] {
            let s = timestamp_text(us, true);
            assert_eq!(
                crate::decoding::text::parse_text(oid::TIMESTAMPTZ, s.as_bytes()).unwrap(),
                Value::TimestampTz((us + PG_EPOCH_MICROS as i128) as i64),
                "{s}"
            );
        }
        assert_eq!(
            parse_binary(oid::MONEY, &(-123_456i64).to_be_bytes()).unwrap(),
            Value::Numeric("-1234.56".into())
        );
        let mut bits = 3i32.to_be_bytes().to_vec();
        bits.push(0b1010_0000);
        assert_eq!(
            parse_binary(oid::VARBIT, &bits).unwrap(),
            Value::Bits("101".into())
        );
    }

    #[test]
    fn ranges_render_like_range_out() {
        let mut b = vec![0x02u8];
        b.extend_from_slice(&4i32.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&4i32.to_be_bytes());
        b.extend_from_slice(&5i32.to_be_bytes());
        assert_eq!(
            parse_binary(oid::INT4RANGE, &b).unwrap(),
            Value::Text("[1,5)".into())
        );
        assert_eq!(
            parse_binary(oid::INT4RANGE, &[0x01]).unwrap(),
            Value::Text("empty".into())
        );
        let mut t = vec![0x02 | 0x10];
        t.extend_from_slice(&8i32.to_be_bytes());
        t.extend_from_slice(&0i64.to_be_bytes());
        assert_eq!(
            parse_binary(oid::TSTZRANGE, &t).unwrap(),
            Value::Text("[\"2000-01-01 00:00:00+00\",)".into())
        );
    }

    const OIDS: &[u32] = &[
        16, 17, 18, 19, 20, 21, 23, 25, 26, 114, 600, 601, 602, 603, 604, 628, 650, 700, 701, 718,
        774, 790, 829, 869, 1007, 1009, 1042, 1043, 1082, 1083, 1114, 1184, 1186, 1231, 1266, 1560,
        1562, 1700, 2950, 3220, 3614, 3802, 3904, 3906, 3910, 4451, 0,
    ];

    proptest! {
        #[test]
        fn random_bytes_never_panic(oid in proptest::sample::select(OIDS), bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_binary(oid, &bytes);
            let _ = parse_binary_or_hex(None, oid, &bytes);
            let _ = parse_binary_desc(&TypeDesc::Hstore, &bytes);
            let comp = TypeDesc::Composite { name: "c".into(), fields: vec![("a".into(), TypeDesc::Builtin { oid, type_modifier: -1 })] };
            let _ = parse_binary_desc(&comp, &bytes);
        }

        #[test]
        fn int_arrays_round_trip(v in proptest::collection::vec(proptest::option::of(any::<i32>()), 0..20)) {
            let mut b = Vec::new();
            let ndim = i32::from(!v.is_empty());
            b.extend_from_slice(&ndim.to_be_bytes());
            b.extend_from_slice(&0i32.to_be_bytes());
            b.extend_from_slice(&23u32.to_be_bytes());
            if !v.is_empty() {
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(&1i32.to_be_bytes());
            }
            for e in &v {
                match e {
                    Some(x) => { b.extend_from_slice(&4i32.to_be_bytes()); b.extend_from_slice(&x.to_be_bytes()); }
                    None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                }
            }
            let want = PgArray::from_elements(v.iter().map(|e| e.map_or(Value::Null, Value::Int32)).collect());
            prop_assert_eq!(parse_binary(oid::INT4_ARRAY, &b).unwrap(), Value::Array(Box::new(want)));
        }

        #[test]
        fn floats_render_and_parse_back(v in any::<f64>().prop_filter("finite", |v| v.is_finite())) {
            let s = float8_text(v);
            prop_assert_eq!(s.parse::<f64>().unwrap(), v);
        }

        #[test]
        fn numeric_binary_matches_its_text(int in any::<u64>(), frac in 0u32..10_000, dscale in 0u16..5) {
            // Build the base-10000 digits of int.frac and compare with plain formatting.
            let mut groups = Vec::new();
            let mut n = int;
            while n > 0 { groups.push((n % 10_000) as i16); n /= 10_000; }
            groups.reverse();
            let weight = groups.len() as i16 - 1;
            let frac_digits = format!("{frac:04}");
            let mut digits = groups.clone();
            if dscale > 0 { digits.push(frac as i16); }
            let bytes = numeric(&digits, if groups.is_empty() { -1 } else { weight }, 0, dscale);
            let mut want = int.to_string();
            if dscale > 0 { want.push('.'); want.push_str(&frac_digits[..dscale as usize]); }
            let got = parse_binary(oid::NUMERIC, &bytes).unwrap();
            prop_assert_eq!(got, Value::Numeric(want));
        }
    }

    #[test]
    fn binary_decoding_covers_arrays_and_ranges_of_decoded_types_only() {
        use crate::decoding::text::oid;
        assert!(decodes(oid::INT4));
        assert!(decodes(1007)); // int4[]
        assert!(decodes(oid::INT4RANGE));
        assert!(decodes(4451)); // int4multirange
        assert!(!decodes(1033)); // aclitem: no send function
        assert!(!decodes(1034)); // aclitem[]
    }
}
