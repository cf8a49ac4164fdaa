//! Debezium's logical-type conversions, as plain values rather than JSON text: the unscaled
//! bytes of a `Decimal`, `MicroDuration` micros, the ISO strings of `ZonedTimestamp`,
//! `ZonedTime`, `Interval` and the `Iso*` time modes, `Bits` bytes and a `Point`'s WKB.
//!
//! One copy for every format: the JSON encoder (`format::json`) writes these values inside
//! its quotes and base64, the Avro encoder as Avro values, so an Avro record decodes to the
//! JSON path's values.

use crate::time::civil_from_days;

/// Microseconds per second and per day.
pub(crate) const MICROS_PER_SECOND: i64 = 1_000_000;
pub(crate) const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// Debezium's `MicroDuration.DAYS_PER_MONTH_AVG`.
pub(crate) const DAYS_PER_MONTH_AVG: f64 = 365.25 / 12.0;

/// Splits canonical decimal text (`-12.340`) into sign, integer and fraction digits; `None`
/// for `NaN`, `Infinity` and anything that is not a plain decimal.
pub(crate) fn split_decimal(text: &str) -> Option<(bool, &[u8], &[u8])> {
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
pub(crate) fn unscaled_digits(text: &str, scale: i32, out: &mut Vec<u8>) -> Option<bool> {
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
pub(crate) fn twos_complement(neg: bool, digits: &[u8], out: &mut Vec<u8>) {
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

/// The `Decimal` bytes of `text` at `scale` into `bytes`; false for NaN and ±Infinity,
/// which have no Decimal form.
pub(crate) fn decimal_bytes(
    text: &str,
    scale: i32,
    digits: &mut Vec<u8>,
    bytes: &mut Vec<u8>,
) -> bool {
    match unscaled_digits(text, scale, digits) {
        Some(neg) => {
            twos_complement(neg, digits, bytes);
            true
        }
        None => false,
    }
}

/// `VariableScaleDecimal`: the scale (trailing zeros stripped, never negative) and the
/// unscaled bytes into `bytes`; `None` for NaN and ±Infinity.
pub(crate) fn variable_decimal(
    text: &str,
    digits: &mut Vec<u8>,
    bytes: &mut Vec<u8>,
) -> Option<i32> {
    let (neg, _, frac) = split_decimal(text)?;
    let scale = frac.iter().rposition(|&d| d != b'0').map_or(0, |p| p + 1);
    let scale = i32::try_from(scale).unwrap_or(i32::MAX);
    let neg = unscaled_digits(text, scale, digits).unwrap_or(neg);
    twos_complement(neg, digits, bytes);
    Some(scale)
}

/// Debezium's `SpecialValueDecimal` names, which string mode writes for numeric specials.
pub(crate) fn special_numeric(text: &str) -> Option<&'static str> {
    match text {
        "NaN" => Some("NAN"),
        "Infinity" => Some("POSITIVE_INFINITY"),
        "-Infinity" => Some("NEGATIVE_INFINITY"),
        _ => None,
    }
}

/// `MicroDuration.durationMicros` with Debezium's double arithmetic, from the fields
/// pgjdbc's `PGInterval` would hold.
pub(crate) fn micro_duration(months: i32, days: i32, micros: i64) -> i64 {
    let neg = micros < 0;
    let a = micros.unsigned_abs();
    let sign = if neg { -1.0 } else { 1.0 };
    let hours = sign * (a / 3_600_000_000) as f64;
    let minutes = sign * (a / 60_000_000 % 60) as f64;
    let whole = sign * (a / 1_000_000 % 60) as f64;
    let frac = sign * (a % 1_000_000) as f64;
    let seconds = whole + frac / 1e6;
    let number_of_days = f64::from(months) * DAYS_PER_MONTH_AVG + f64::from(days);
    let number_of_seconds = ((number_of_days * 24.0 + hours) * 60.0 + minutes) * 60.0 + seconds;
    (number_of_seconds * 1e6) as i64
}

/// Appends what `write` writes to `out`: the String forms of the writers below, for the
/// Avro encoder's text scratch. The writers emit ASCII only.
fn to_string(out: &mut String, write: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::mem::take(out).into_bytes();
    write(&mut bytes);
    *out = String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
}

fn push2(out: &mut Vec<u8>, v: u32) {
    out.push(b'0' + (v / 10 % 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

fn write_int(out: &mut Vec<u8>, v: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// `YYYY-MM-DD` as Java's `DateTimeFormatter.ISO_LOCAL_DATE` writes it: at least four year
/// digits, `+` above 9999, `-` before year 0.
pub(crate) fn write_iso_date(out: &mut Vec<u8>, days: i64) {
    let (y, m, d) = civil_from_days(days);
    if y > 9999 {
        out.push(b'+');
    } else if y < 0 {
        out.push(b'-');
    }
    let ya = y.unsigned_abs();
    let digits = ya.checked_ilog10().map_or(1, |l| l as usize + 1);
    out.extend(std::iter::repeat_n(b'0', 4usize.saturating_sub(digits)));
    write_int(out, ya);
    out.push(b'-');
    push2(out, m);
    out.push(b'-');
    push2(out, d);
}

/// `HH:MM:SS` then the fraction: exactly `width` digits when `width` is 1–9, else as few as
/// needed with none for a whole second (Java's `ISO_LOCAL_TIME`).
pub(crate) fn write_iso_time(out: &mut Vec<u8>, micros_of_day: i64, width: u8) {
    let secs = micros_of_day / MICROS_PER_SECOND;
    let frac = (micros_of_day % MICROS_PER_SECOND) as u32;
    push2(out, (secs / 3600) as u32);
    out.push(b':');
    push2(out, (secs / 60 % 60) as u32);
    out.push(b':');
    push2(out, (secs % 60) as u32);
    write_fraction(out, frac, width);
}

/// `.ffffff` for `micros` (0..1_000_000): `width` digits when `width > 0` (nanosecond digits
/// past the sixth are zero), otherwise trimmed of trailing zeros and omitted for zero.
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

/// `ZonedTimestamp`: the instant in UTC, `2024-01-02T03:04:05.123456Z`.
pub(crate) fn write_zoned_timestamp(out: &mut Vec<u8>, micros: i64, width: u8) {
    write_iso_date(out, micros.div_euclid(MICROS_PER_DAY));
    out.push(b'T');
    write_iso_time(out, micros.rem_euclid(MICROS_PER_DAY), width);
    out.push(b'Z');
}

/// `ZonedTime`: the time of day in UTC, `23:00:00.5Z`.
pub(crate) fn write_zoned_time(out: &mut Vec<u8>, micros: i64, offset_secs: i32) {
    let utc = (micros - i64::from(offset_secs) * MICROS_PER_SECOND).rem_euclid(MICROS_PER_DAY);
    write_iso_time(out, utc, 0);
    out.push(b'Z');
}

/// Debezium's `Interval.toIsoString`: every component, `P1Y2M3DT4H5M6.78S`, with hours,
/// minutes and seconds carrying the sign of the time part as pgjdbc's `PGInterval` splits it.
pub(crate) fn write_iso_interval(out: &mut Vec<u8>, months: i32, days: i32, micros: i64) {
    let neg = micros < 0;
    let a = micros.unsigned_abs();
    let hours = a / 3_600_000_000;
    let minutes = a / 60_000_000 % 60;
    let secs = a / 1_000_000 % 60;
    let frac = (a % 1_000_000) as u32;
    out.push(b'P');
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
    out.push(b'S');
}

/// [`write_iso_date`] into a `String`.
pub(crate) fn iso_date(out: &mut String, days: i64) {
    to_string(out, |b| write_iso_date(b, days));
}

/// [`write_iso_time`] into a `String`.
pub(crate) fn iso_time(out: &mut String, micros_of_day: i64, width: u8) {
    to_string(out, |b| write_iso_time(b, micros_of_day, width));
}

/// [`write_zoned_timestamp`] into a `String`.
pub(crate) fn zoned_timestamp(out: &mut String, micros: i64, width: u8) {
    to_string(out, |b| write_zoned_timestamp(b, micros, width));
}

/// [`write_zoned_time`] into a `String`.
pub(crate) fn zoned_time(out: &mut String, micros: i64, offset_secs: i32) {
    to_string(out, |b| write_zoned_time(b, micros, offset_secs));
}

/// [`write_iso_interval`] into a `String`.
pub(crate) fn iso_interval(out: &mut String, months: i32, days: i32, micros: i64) {
    to_string(out, |b| write_iso_interval(b, months, days, micros));
}

/// Debezium's `Bits` bytes: the bit string as a binary number, little-endian, as
/// `BitSet.toByteArray()` gives it.
pub(crate) fn bits_le_bytes(bits: &str, out: &mut Vec<u8>) {
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

/// The WKB of a point: little-endian OGC point (byte order 1, type 1, x, y), as
/// Debezium's `Point.createValue` builds it.
pub(crate) fn point_wkb(x: f64, y: f64) -> [u8; 21] {
    let mut wkb = [0u8; 21];
    wkb[0] = 1;
    wkb[1..5].copy_from_slice(&1u32.to_le_bytes());
    wkb[5..13].copy_from_slice(&x.to_le_bytes());
    wkb[13..21].copy_from_slice(&y.to_le_bytes());
    wkb
}

/// An hstore as the JSON document Debezium writes in `hstore.handling.mode` json.
pub(crate) fn hstore_json(pairs: &[(String, Option<String>)]) -> String {
    let mut doc = String::with_capacity(16 * pairs.len() + 2);
    doc.push('{');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            doc.push(',');
        }
        json_str(&mut doc, k);
        doc.push(':');
        match v {
            Some(v) => json_str(&mut doc, v),
            None => doc.push_str("null"),
        }
    }
    doc.push('}');
    doc
}

/// `s` as a JSON string, escaped as Jackson does (`"`, `\` and control characters only).
pub(crate) fn json_str(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut String)) -> String {
        let mut out = String::new();
        f(&mut out);
        out
    }

    #[test]
    fn decimals() {
        let (mut d, mut b) = (Vec::new(), Vec::new());
        assert!(decimal_bytes("1.00", 2, &mut d, &mut b));
        assert_eq!(b, vec![0x64]);
        assert!(decimal_bytes("-1234.5", 2, &mut d, &mut b));
        assert_eq!(b, vec![0xfe, 0x1d, 0xc6]);
        assert!(!decimal_bytes("NaN", 2, &mut d, &mut b));
        assert_eq!(variable_decimal("12.3400", &mut d, &mut b), Some(2));
        assert_eq!(b, 1234_i16.to_be_bytes().to_vec());
        assert_eq!(variable_decimal("Infinity", &mut d, &mut b), None);
    }

    #[test]
    fn times() {
        assert_eq!(
            s(|o| zoned_timestamp(o, 1_704_164_645_123_456, 6)),
            "2024-01-02T03:04:05.123456Z"
        );
        assert_eq!(
            s(|o| zoned_timestamp(o, 1_704_164_645_000_000, 0)),
            "2024-01-02T03:04:05Z"
        );
        assert_eq!(
            s(|o| zoned_time(o, 3_600_000_000 + 500_000, 7200)),
            "23:00:00.5Z"
        );
        assert_eq!(
            s(|o| iso_interval(o, 14, 3, ((4 * 60 + 5) * 60 + 6) * 1_000_000 + 780_000)),
            "P1Y2M3DT4H5M6.78S"
        );
        assert_eq!(
            s(|o| iso_interval(o, -14, -1, -(2 * 3_600_000_000 + 500_000))),
            "P-1Y-2M-1DT-2H0M-0.5S"
        );
        assert_eq!(s(|o| iso_date(o, -719_529)), "-0001-12-31");
        assert_eq!(
            micro_duration(0, -1, 2 * 3_600_000_000),
            -22 * 3_600_000_000
        );
    }

    #[test]
    fn bits_points_hstore() {
        let mut b = Vec::new();
        bits_le_bytes("100000000", &mut b);
        assert_eq!(b, vec![0, 1]);
        assert_eq!(point_wkb(1.0, -2.5)[..5], [1, 1, 0, 0, 0]);
        assert_eq!(
            hstore_json(&[("k".into(), Some("v\"".into())), ("n".into(), None)]),
            r#"{"k":"v\"","n":null}"#
        );
    }
}
