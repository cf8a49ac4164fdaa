//! Low-level JSON writing: strings escaped as Jackson escapes them, numbers, base64 and hex,
//! ISO dates, times, timestamps and intervals, as Debezium and Kafka Connect render them.

use super::*;

/// Writes `s` as a JSON string, escaped as Jackson does: `"` `\` and control characters
/// only; non-ASCII stays UTF-8.
pub(super) fn write_str(out: &mut Vec<u8>, s: &str) {
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

pub(super) fn write_int(out: &mut Vec<u8>, v: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

pub(super) fn write_opt_int(out: &mut Vec<u8>, v: Option<impl itoa::Integer>) {
    match v {
        Some(v) => write_int(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// A double as Jackson writes it: a number, or the strings `"NaN"`, `"Infinity"`,
/// `"-Infinity"` (`QUOTE_NON_NUMERIC_NUMBERS`). Finite numbers use the shortest round-trip
/// digits, like Java's `Double.toString`, though the notation can differ (`1e20` vs `1.0E20`).
pub(super) fn write_f64(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    } else {
        write_non_finite(out, v.is_nan(), v > 0.0);
    }
}

/// A float, formatted as an `f32` so that `0.1f32` stays `0.1`.
pub(super) fn write_f32(out: &mut Vec<u8>, v: f32) {
    if v.is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    } else {
        write_non_finite(out, v.is_nan(), v > 0.0);
    }
}

pub(super) fn write_non_finite(out: &mut Vec<u8>, nan: bool, positive: bool) {
    out.extend_from_slice(match (nan, positive) {
        (true, _) => b"\"NaN\"".as_slice(),
        (false, true) => b"\"Infinity\"",
        (false, false) => b"\"-Infinity\"",
    });
}

/// Base64 (standard alphabet, padded) of `bytes` as a JSON string.
pub(super) fn write_base64(out: &mut Vec<u8>, bytes: &[u8], url_safe: bool) {
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

pub(super) fn write_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    out.reserve(bytes.len() * 2 + 1);
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
    out.push(b'"');
}

pub(super) fn push2(out: &mut Vec<u8>, v: u32) {
    out.push(b'0' + (v / 10 % 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

/// `YYYY-MM-DD` as `java.time.format.DateTimeFormatter.ISO_LOCAL_DATE` writes it: at least four
/// year digits, `+` above 9999, `-` before year 0.
pub(super) fn write_iso_date(out: &mut Vec<u8>, days: i64) {
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

pub(super) fn digits_u64(v: u64) -> usize {
    v.checked_ilog10().map_or(1, |l| l as usize + 1)
}

/// `HH:MM:SS` then the fraction: exactly `width` digits when `width` is 1–9, else as few as
/// needed with none for a whole second (Java's `ISO_LOCAL_TIME`).
pub(super) fn write_iso_time(out: &mut Vec<u8>, micros_of_day: i64, width: u8) {
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
pub(super) fn write_fraction(out: &mut Vec<u8>, micros: u32, width: u8) {
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
pub(super) fn write_zoned_timestamp(out: &mut Vec<u8>, micros: i64, width: u8) {
    out.push(b'"');
    write_iso_date(out, micros.div_euclid(MICROS_PER_DAY));
    out.push(b'T');
    write_iso_time(out, micros.rem_euclid(MICROS_PER_DAY), width);
    out.extend_from_slice(b"Z\"");
}

/// Interval as Debezium's `Interval.toIsoString`: every component, `P1Y2M3DT4H5M6.78S`,
/// with hours, minutes and seconds carrying the sign of the time part as pgjdbc's
/// `PGInterval` splits it.
pub(super) fn write_iso_interval(out: &mut Vec<u8>, months: i32, days: i32, micros: i64) {
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
