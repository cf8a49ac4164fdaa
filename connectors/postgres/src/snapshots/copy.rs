//! `COPY ... TO STDOUT` output, cut into rows and fields: the binary format's rows
//! ([`BinaryRows`]) and the text format's tab-separated, backslash-escaped fields
//! ([`split_fields`], [`unescape`]). Shared by the initial snapshot's workers and the
//! incremental snapshot's chunk reader; the values themselves are parsed by
//! [`crate::decoding`].

use bytes::Bytes;

/// Byte ranges of a binary COPY row's fields, `None` for NULL.
pub(crate) type FieldRanges = Vec<Option<(usize, usize)>>;

/// `COPY ... (FORMAT binary)`'s signature, first in the stream.
pub(crate) const COPY_BINARY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Cuts a binary COPY stream into rows as its CopyData messages arrive: after the header
/// (signature, flags, extension), each row is an i16 field count and per field an i32
/// length (-1 for NULL) and that many bytes; a count of -1 ends the stream. A row split
/// across messages waits for the rest; lengths are checked against the bytes that
/// arrived, never used to allocate.
#[derive(Default)]
pub(crate) struct BinaryRows {
    buf: bytes::BytesMut,
    header_done: bool,
    ended: bool,
}

impl BinaryRows {
    /// Appends the bytes of one CopyData message.
    pub(crate) fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// True once the end marker arrived and nothing follows it.
    pub(crate) fn is_finished(&self) -> bool {
        self.ended && self.buf.is_empty()
    }

    /// The next complete row, with each field's byte range in it (`None` for NULL) in
    /// `fields`; `Ok(None)` until more bytes arrive, and after the end.
    pub(crate) fn next_row(
        &mut self,
        fields: &mut Vec<Option<(usize, usize)>>,
    ) -> Result<Option<Bytes>, String> {
        let be_i32 =
            |b: &[u8], at: usize| i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        if !self.header_done {
            if self.buf.len() < 19 {
                return Ok(None);
            }
            if &self.buf[..11] != COPY_BINARY_SIGNATURE {
                return Err("not a binary COPY stream (bad signature)".into());
            }
            let ext = usize::try_from(be_i32(&self.buf, 15))
                .map_err(|_| "binary COPY header: negative extension length".to_string())?;
            if self.buf.len() - 19 < ext {
                return Ok(None);
            }
            let _ = self.buf.split_to(19 + ext);
            self.header_done = true;
        }
        if self.ended {
            if !self.buf.is_empty() {
                return Err("binary COPY stream: data after the end marker".into());
            }
            return Ok(None);
        }
        if self.buf.len() < 2 {
            return Ok(None);
        }
        let count = i16::from_be_bytes([self.buf[0], self.buf[1]]);
        if count == -1 {
            let _ = self.buf.split_to(2);
            self.ended = true;
            return if self.buf.is_empty() {
                Ok(None)
            } else {
                Err("binary COPY stream: data after the end marker".into())
            };
        }
        let count = usize::try_from(count)
            .map_err(|_| format!("binary COPY row: bad field count {count}"))?;
        fields.clear();
        let mut at = 2;
        for _ in 0..count {
            if self.buf.len() < at + 4 {
                return Ok(None);
            }
            let len = be_i32(&self.buf, at);
            at += 4;
            if len == -1 {
                fields.push(None);
                continue;
            }
            let len = usize::try_from(len)
                .map_err(|_| format!("binary COPY row: bad field length {len}"))?;
            if self.buf.len() - at < len {
                return Ok(None);
            }
            fields.push(Some((at, at + len)));
            at += len;
        }
        Ok(Some(self.buf.split_to(at).freeze()))
    }
}

/// Splits a COPY text line at tabs into (start, end) byte ranges.
pub(crate) fn split_fields(line: &[u8], out: &mut Vec<(usize, usize)>) {
    out.clear();
    let mut start = 0;
    while let Some(t) = memchr(b'\t', &line[start..]) {
        out.push((start, start + t));
        start += t + 1;
    }
    out.push((start, line.len()));
}

pub(crate) fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// Undoes COPY's text-format escaping (`\\`, `\n`, `\t`, `\r`, `\b`, `\f`, `\v`, octal and
/// `\x` hex bytes).
pub(crate) fn unescape(raw: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !raw.contains(&b'\\') {
        return std::borrow::Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'\\' || i + 1 == raw.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let c = raw[i + 1];
        i += 2;
        match c {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                let mut n = 1;
                while n < 3 && i < raw.len() && (b'0'..=b'7').contains(&raw[i]) {
                    v = v * 8 + u32::from(raw[i] - b'0');
                    i += 1;
                    n += 1;
                }
                out.push(v as u8);
            }
            b'x' => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 && i < raw.len() && raw[i].is_ascii_hexdigit() {
                    v = v * 16 + (raw[i] as char).to_digit(16).unwrap_or(0);
                    i += 1;
                    n += 1;
                }
                if n == 0 {
                    out.push(b'x');
                } else {
                    out.push(v as u8);
                }
            }
            other => out.push(other),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_copy_text() {
        assert_eq!(&*unescape(b"plain"), b"plain");
        assert_eq!(&*unescape(b"a\\tb\\nc\\\\d"), b"a\tb\nc\\d");
        assert_eq!(&*unescape(b"\\101\\x41\\r"), b"AA\r");
    }

    /// A binary COPY stream: header, the given rows (`None` = NULL field), end marker.
    fn binary_stream(rows: &[Vec<Option<&[u8]>>]) -> Vec<u8> {
        let mut out = COPY_BINARY_SIGNATURE.to_vec();
        out.extend_from_slice(&0i32.to_be_bytes()); // flags
        out.extend_from_slice(&4i32.to_be_bytes()); // extension length
        out.extend_from_slice(b"ext!");
        for row in rows {
            out.extend_from_slice(&(row.len() as i16).to_be_bytes());
            for f in row {
                match f {
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(b) => {
                        out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                        out.extend_from_slice(b);
                    }
                }
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    fn collect_rows(stream: &[u8], piece: usize) -> Result<Vec<Vec<Option<Vec<u8>>>>, String> {
        let mut p = BinaryRows::default();
        let mut fields = Vec::new();
        let mut rows = Vec::new();
        for chunk in stream.chunks(piece) {
            p.push(chunk);
            while let Some(row) = p.next_row(&mut fields)? {
                rows.push(
                    fields
                        .iter()
                        .map(|f| f.map(|(s, e)| row[s..e].to_vec()))
                        .collect(),
                );
            }
        }
        if !p.is_finished() {
            return Err("unfinished".into());
        }
        Ok(rows)
    }

    #[test]
    fn binary_copy_rows_survive_any_split_into_messages() {
        let stream = binary_stream(&[
            vec![Some(&b"\x00\x00\x00\x01"[..]), None, Some(b"")],
            vec![Some(b"abc"), Some(b"\xff"), None],
        ]);
        let want = vec![
            vec![Some(vec![0, 0, 0, 1]), None, Some(vec![])],
            vec![Some(b"abc".to_vec()), Some(vec![0xff]), None],
        ];
        for piece in [1, 2, 3, 7, 19, 20, stream.len()] {
            assert_eq!(
                collect_rows(&stream, piece).unwrap(),
                want,
                "split every {piece} bytes"
            );
        }
    }

    #[test]
    fn binary_copy_refuses_damage_without_allocating_from_lengths() {
        let good = binary_stream(&[vec![Some(&b"abc"[..])]]);
        // A cut stream never finishes.
        assert!(collect_rows(&good[..good.len() - 2], 4).is_err());
        // A bad signature.
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(collect_rows(&bad, 64).unwrap_err().contains("signature"));
        // A huge field length waits for bytes that never come instead of allocating.
        let mut huge = good.clone();
        let at = 11 + 4 + 4 + 4 + 2;
        huge[at..at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(collect_rows(&huge, 64).is_err());
        // Negative lengths and counts are errors.
        let mut neg = good.clone();
        neg[at..at + 4].copy_from_slice(&(-7i32).to_be_bytes());
        assert!(collect_rows(&neg, 64).unwrap_err().contains("length"));
        let mut cnt = good;
        cnt[at - 2..at].copy_from_slice(&(-3i16).to_be_bytes());
        assert!(collect_rows(&cnt, 64).unwrap_err().contains("count"));
    }

    #[test]
    fn splits_fields() {
        let mut f = Vec::new();
        split_fields(b"1\t\\N\tx", &mut f);
        assert_eq!(f, vec![(0, 1), (2, 4), (5, 6)]);
        split_fields(b"", &mut f);
        assert_eq!(f, vec![(0, 0)]);
    }
}
