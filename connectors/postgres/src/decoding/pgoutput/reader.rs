//! A bounds-checked cursor over one pgoutput message.
//!
//! All reads go through here so that the decoder proper never indexes a slice or does
//! arithmetic on a length taken from the wire: each read checks the remaining bytes first and
//! turns a shortfall into a [`DecodeError`] carrying the field name and its offset. Byte-string
//! reads return [`Bytes::slice`]s of the frame, so column values are reference-counted views,
//! not copies.

use bytes::Bytes;

use super::error::{DecodeError, DecodeErrorReason, MessageKind};

/// Cursor over one message; `pos` never exceeds `data.len()`.
pub(crate) struct Reader<'a> {
    frame: &'a Bytes,
    data: &'a [u8],
    pos: usize,
    kind: MessageKind,
}

impl<'a> Reader<'a> {
    /// A cursor positioned after the tag byte of `frame`.
    pub(crate) fn after_tag(frame: &'a Bytes, kind: MessageKind) -> Self {
        Reader {
            frame,
            data: frame.as_ref(),
            pos: 1.min(frame.len()),
            kind,
        }
    }

    /// An error of `reason` at `offset`, attributed to this message's kind.
    pub(crate) fn error_at(&self, offset: usize, reason: DecodeErrorReason) -> DecodeError {
        DecodeError {
            kind: self.kind,
            offset,
            reason,
        }
    }

    /// The current offset from the start of the message.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        match rest.first_chunk::<N>() {
            Some(chunk) => {
                self.pos += N;
                Ok(*chunk)
            }
            None => Err(self.error_at(
                self.pos,
                DecodeErrorReason::Truncated {
                    field,
                    needed: N,
                    remaining: rest.len(),
                },
            )),
        }
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    /// An Int32 length or count that must not be negative, as a `usize`.
    pub(crate) fn len_i32(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let at = self.pos;
        let length = self.i32(field)?;
        usize::try_from(length)
            .map_err(|_| self.error_at(at, DecodeErrorReason::NegativeLength { field, length }))
    }

    /// `len` bytes as a zero-copy slice of the frame. The length is checked against what
    /// remains before anything is sliced, so a huge length is an error, not an allocation.
    pub(crate) fn bytes(&mut self, len: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        let remaining = self.remaining();
        if len > remaining {
            return Err(self.error_at(
                self.pos,
                DecodeErrorReason::Truncated {
                    field,
                    needed: len,
                    remaining,
                },
            ));
        }
        let start = self.pos;
        self.pos += len;
        Ok(self.frame.slice(start..self.pos))
    }

    /// A NUL-terminated UTF-8 string (the NUL is consumed, not returned).
    pub(crate) fn cstring(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let start = self.pos;
        let rest = self.data.get(start..).unwrap_or_default();
        let Some(nul) = rest.iter().position(|&b| b == 0) else {
            return Err(self.error_at(start, DecodeErrorReason::UnterminatedString { field }));
        };
        let text = rest.get(..nul).unwrap_or_default();
        let text = std::str::from_utf8(text)
            .map_err(|_| self.error_at(start, DecodeErrorReason::InvalidUtf8 { field }))?;
        self.pos = start + nul + 1;
        Ok(text.to_owned())
    }

    /// Fails unless every byte has been read.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(self.error_at(self.pos, DecodeErrorReason::TrailingBytes(n))),
        }
    }
}
