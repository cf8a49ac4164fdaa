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
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(v).as_bytes();
    // A few digits: pushed in a loop that stays inline, where `extend_from_slice` called
    // libc's memmove for every number (visible in profiles of the envelope's timestamps).
    out.reserve(digits.len());
    for &d in digits {
        out.push(d);
    }
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

/// ZonedTimestamp as a JSON string: the instant in UTC, `"2024-01-02T03:04:05.123456Z"`.
pub(super) fn write_zoned_timestamp(out: &mut Vec<u8>, micros: i64, width: u8) {
    out.push(b'"');
    logical::write_zoned_timestamp(out, micros, width);
    out.push(b'"');
}

/// Interval as a JSON string, as Debezium's `Interval.toIsoString`: `"P1Y2M3DT4H5M6.78S"`.
pub(super) fn write_iso_interval(out: &mut Vec<u8>, months: i32, days: i32, micros: i64) {
    out.push(b'"');
    logical::write_iso_interval(out, months, days, micros);
    out.push(b'"');
}
