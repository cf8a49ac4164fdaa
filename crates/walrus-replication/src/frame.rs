//! Framing of the copy-both stream: the bytes the socket delivered, cut into backend
//! messages, and the replication messages inside `CopyData`.
//!
//! ```text
//! socket ──read──▶ BytesMut ──split_complete──▶ Bytes (whole messages only) ──Frames──▶ Frame
//!                  (partial tail stays)          one batch, zero-copy             XLogData / Keepalive
//! ```
//!
//! Every backend message is a tag byte, a big-endian `i32` length that counts itself, and the
//! body. During `START_REPLICATION` the server sends `CopyData` (`d`) messages whose body is
//! `XLogData` (`w`: start, end, send time, then the output plugin's bytes) or a primary
//! keepalive (`k`: end, send time, reply-requested flag), and at the end `CopyDone`,
//! `CommandComplete` and `ReadyForQuery`; an `ErrorResponse` can come at any time
//! (PostgreSQL docs, "Streaming Replication Protocol").
//!
//! [`split_complete`] takes the whole messages off the front of the read buffer as one
//! `Bytes`, walking only the headers (and noting keepalives that ask for a reply, which the
//! stream must answer), and [`Frames`] parses that batch lazily. XLogData payloads are
//! slices of the same allocation: nothing is copied per message and nothing crosses a task
//! boundary. The input comes from the network, so every length is checked; a malformed
//! frame is a [`ReplicationError::Protocol`], never a panic (`fuzz/fuzz_targets/replication_frames.rs`).

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{ReplicationError, Result, ServerError};
use crate::lsn::Lsn;

/// Largest backend message accepted: PostgreSQL's own limit for a field is 1 GB, and a
/// length beyond that is a corrupt stream, not a message to allocate for.
pub const MAX_MESSAGE_LEN: usize = 1 << 30;

/// Bytes of the tag and length that start every backend message.
const HEADER_LEN: usize = 5;

/// One message of the replication stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// WAL data: one output plugin message (a pgoutput message for walrus).
    XLogData {
        /// WAL position the data starts at (0 for messages that have no own position, such
        /// as pgoutput's Relation).
        wal_start: Lsn,
        /// The server's current end of WAL.
        wal_end: Lsn,
        /// Server clock when sent, microseconds since 2000-01-01.
        send_time: i64,
        /// The plugin's bytes.
        data: Bytes,
    },
    /// Primary keepalive: where the server is; `reply` asks for a status update now.
    Keepalive {
        /// The server's current end of WAL sent.
        wal_end: Lsn,
        /// Server clock when sent, microseconds since 2000-01-01.
        send_time: i64,
        /// The server wants a standby status update at once (or it disconnects us after
        /// `wal_sender_timeout`).
        reply: bool,
    },
    /// The server ended the copy: `CopyDone` (after ours, or on its own), or
    /// `CommandComplete` without one, which is how a walsender ends replication when the
    /// server shuts down (`WalSndDone` in walsender.c).
    CopyDone,
}

/// What the header walk of a batch noticed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchScan {
    /// Whole messages in the batch.
    pub messages: usize,
    /// A keepalive in the batch asked for a reply.
    pub reply_requested: bool,
}

/// Takes every whole message off the front of `buf` as one `Bytes`; a partial message at the
/// end stays in `buf` for the next read.
pub fn split_complete(buf: &mut BytesMut) -> Result<(Bytes, BatchScan)> {
    let mut scan = BatchScan::default();
    let mut at = 0;
    loop {
        let rest = &buf[at..];
        if rest.len() < HEADER_LEN {
            break;
        }
        let len = message_len(rest)?;
        if rest.len() < 1 + len {
            break;
        }
        // A keepalive's reply flag is its last byte: tag 'd', len 4+18, body 'k' ... flag.
        if rest[0] == b'd' && len == 4 + 18 && rest[HEADER_LEN] == b'k' {
            scan.reply_requested |= rest[1 + len - 1] != 0;
        }
        scan.messages += 1;
        at += 1 + len;
    }
    Ok((buf.split_to(at).freeze(), scan))
}

/// The length field of the message starting at `bytes` (at least [`HEADER_LEN`] long),
/// checked.
fn message_len(bytes: &[u8]) -> Result<usize> {
    let len = i32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    if len < 4 || len as usize > MAX_MESSAGE_LEN {
        return Err(ReplicationError::Protocol(format!(
            "backend message {:?} with length {len}",
            char::from(bytes[0])
        )));
    }
    Ok(len as usize)
}

/// The messages of one batch from [`split_complete`], parsed as they are taken.
#[derive(Debug, Default)]
pub struct Frames {
    rest: Bytes,
}

impl Frames {
    /// Iterates over `batch`, which must hold whole messages.
    pub fn new(batch: Bytes) -> Self {
        Frames { rest: batch }
    }

    /// Whether every message was taken.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

impl Iterator for Frames {
    type Item = Result<Frame>;

    fn next(&mut self) -> Option<Result<Frame>> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            match next_message(&mut self.rest) {
                Ok(Some(frame)) => return Some(Ok(frame)),
                // A notice or parameter status: nothing for the caller.
                Ok(None) => continue,
                Err(e) => {
                    // Nothing after a broken frame can be trusted.
                    self.rest = Bytes::new();
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Parses the message at the front of `rest` and advances past it.
fn next_message(rest: &mut Bytes) -> Result<Option<Frame>> {
    if rest.len() < HEADER_LEN {
        return Err(ReplicationError::Protocol(
            "truncated message header".into(),
        ));
    }
    let tag = rest[0];
    let len = message_len(rest)?;
    if rest.len() < 1 + len {
        return Err(ReplicationError::Protocol(format!(
            "message {:?} cut short: {} of {} bytes",
            char::from(tag),
            rest.len() - 1,
            len
        )));
    }
    rest.advance(HEADER_LEN);
    let mut body = rest.split_to(len - 4);
    match tag {
        b'd' => copy_data(&mut body).map(Some),
        b'c' | b'C' => Ok(Some(Frame::CopyDone)),
        // The command ended (after CopyDone / CommandComplete): nothing more follows.
        b'Z' => Ok(None),
        b'E' => Err(ReplicationError::Server(parse_error_fields(&body))),
        b'N' => {
            let notice = parse_error_fields(&body);
            tracing::info!(notice = %notice, "server notice on the replication connection");
            Ok(None)
        }
        // Parameter changes (a reload changing a reported GUC) mean nothing here.
        b'S' => Ok(None),
        other => Err(ReplicationError::Protocol(format!(
            "unexpected message {:?} in the replication stream",
            char::from(other)
        ))),
    }
}

/// The replication message inside a `CopyData` body.
fn copy_data(body: &mut Bytes) -> Result<Frame> {
    if body.is_empty() {
        return Err(ReplicationError::Protocol("empty CopyData".into()));
    }
    let kind = body.get_u8();
    match kind {
        b'w' => {
            if body.len() < 24 {
                return Err(ReplicationError::Protocol(format!(
                    "XLogData header of {} bytes (24 expected)",
                    body.len()
                )));
            }
            let wal_start = Lsn(body.get_u64());
            let wal_end = Lsn(body.get_u64());
            let send_time = body.get_i64();
            Ok(Frame::XLogData {
                wal_start,
                wal_end,
                send_time,
                data: std::mem::take(body),
            })
        }
        b'k' => {
            if body.len() != 17 {
                return Err(ReplicationError::Protocol(format!(
                    "keepalive of {} bytes (17 expected)",
                    body.len()
                )));
            }
            let wal_end = Lsn(body.get_u64());
            let send_time = body.get_i64();
            let reply = body.get_u8() != 0;
            Ok(Frame::Keepalive {
                wal_end,
                send_time,
                reply,
            })
        }
        other => Err(ReplicationError::Protocol(format!(
            "unknown CopyData message {:?}",
            char::from(other)
        ))),
    }
}

/// Reads the fields of an `ErrorResponse` or `NoticeResponse` body: a code byte and a
/// NUL-terminated string each, ending with a 0 byte. Lenient: a damaged body still yields
/// what could be read, since it is reported, not acted on field by field.
pub fn parse_error_fields(body: &[u8]) -> ServerError {
    let mut e = ServerError::default();
    let mut rest = body;
    while let Some((&code, tail)) = rest.split_first() {
        if code == 0 {
            break;
        }
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        let value = String::from_utf8_lossy(&tail[..end]).into_owned();
        match code {
            b'S' if e.severity.is_empty() => e.severity = value,
            // V: the severity never localised (9.6+); preferred over S.
            b'V' => e.severity = value,
            b'C' => e.code = value,
            b'M' => e.message = value,
            b'D' => e.detail = Some(value),
            b'H' => e.hint = Some(value),
            _ => {}
        }
        rest = tail.get(end + 1..).unwrap_or(&[]);
    }
    e
}

/// Parses a whole byte string as the stream would: split, then every frame. For the fuzz
/// target and tests; the stream itself uses [`split_complete`] and [`Frames`].
pub fn parse_all(bytes: &[u8]) -> (Vec<Result<Frame>>, usize) {
    let mut buf = BytesMut::from(bytes);
    match split_complete(&mut buf) {
        Ok((batch, _)) => (Frames::new(batch).collect(), buf.len()),
        Err(e) => (vec![Err(e)], buf.len()),
    }
}

/// Encodes a standby status update (`r`) inside a CopyData message.
pub fn standby_status_update(
    write: Lsn,
    flush: Lsn,
    apply: Lsn,
    now: i64,
    reply: bool,
    out: &mut BytesMut,
) {
    use bytes::BufMut;
    out.put_u8(b'd');
    out.put_i32(4 + 1 + 8 * 4 + 1);
    out.put_u8(b'r');
    out.put_u64(write.0);
    out.put_u64(flush.0);
    out.put_u64(apply.0);
    out.put_i64(now);
    out.put_u8(u8::from(reply));
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::BufMut;
    use proptest::prelude::*;

    pub(crate) fn xlog(start: u64, end: u64, data: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.put_u8(b'd');
        out.put_i32((4 + 1 + 24 + data.len()) as i32);
        out.put_u8(b'w');
        out.put_u64(start);
        out.put_u64(end);
        out.put_i64(7);
        out.put_slice(data);
        out.to_vec()
    }

    pub(crate) fn keepalive(end: u64, reply: bool) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.put_u8(b'd');
        out.put_i32(4 + 18);
        out.put_u8(b'k');
        out.put_u64(end);
        out.put_i64(9);
        out.put_u8(u8::from(reply));
        out.to_vec()
    }

    fn error(code: &str, message: &str) -> Vec<u8> {
        let mut body = Vec::new();
        for (c, v) in [(b'S', "ERROR"), (b'C', code), (b'M', message)] {
            body.push(c);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut out = vec![b'E'];
        out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn splits_whole_messages_and_keeps_the_tail() {
        let mut bytes = xlog(1, 2, b"B123");
        bytes.extend(keepalive(5, false));
        let third = xlog(3, 4, b"I-row");
        bytes.extend(&third[..10]);
        let mut buf = BytesMut::from(&bytes[..]);
        let (batch, scan) = split_complete(&mut buf).unwrap();
        assert_eq!(scan.messages, 2);
        assert!(!scan.reply_requested);
        assert_eq!(&buf[..], &third[..10]);
        let frames: Vec<Frame> = Frames::new(batch).map(Result::unwrap).collect();
        assert_eq!(
            frames,
            vec![
                Frame::XLogData {
                    wal_start: Lsn(1),
                    wal_end: Lsn(2),
                    send_time: 7,
                    data: Bytes::from_static(b"B123"),
                },
                Frame::Keepalive {
                    wal_end: Lsn(5),
                    send_time: 9,
                    reply: false
                },
            ]
        );
        // The rest arrives: the third frame completes.
        buf.extend_from_slice(&third[10..]);
        let (batch, scan) = split_complete(&mut buf).unwrap();
        assert_eq!(scan.messages, 1);
        assert!(buf.is_empty());
        let frames: Vec<Frame> = Frames::new(batch).map(Result::unwrap).collect();
        assert!(matches!(&frames[0], Frame::XLogData { data, .. } if &data[..] == b"I-row"));
    }

    #[test]
    fn notices_reply_requests_in_the_header_walk() {
        let mut bytes = keepalive(5, false);
        bytes.extend(keepalive(6, true));
        let mut buf = BytesMut::from(&bytes[..]);
        let (_, scan) = split_complete(&mut buf).unwrap();
        assert!(scan.reply_requested);
    }

    #[test]
    fn errors_and_bad_frames() {
        let (frames, _) = parse_all(&error("XX000", "unrecognized pgoutput option: messages"));
        let err = frames.into_iter().next().unwrap().unwrap_err();
        assert_eq!(err.server().unwrap().code, "XX000");
        assert!(!err.is_retryable());

        // Length below 4, and above the limit.
        assert!(parse_all(&[b'd', 0, 0, 0, 3]).0[0].is_err());
        assert!(parse_all(&[b'd', 0x7f, 0, 0, 0]).0[0].is_err());
        // Short XLogData header, short keepalive, unknown CopyData kind, unknown tag.
        assert!(parse_all(&[b'd', 0, 0, 0, 6, b'w', 1]).0[0].is_err());
        assert!(parse_all(&[b'd', 0, 0, 0, 6, b'k', 1]).0[0].is_err());
        assert!(parse_all(&[b'd', 0, 0, 0, 5, b'x']).0[0].is_err());
        assert!(parse_all(&[b'Q', 0, 0, 0, 4]).0[0].is_err());
        assert!(parse_all(&[b'd', 0, 0, 0, 4]).0[0].is_err());
        // Notices and parameter statuses are skipped; CopyDone is a frame.
        let mut bytes = vec![b'N', 0, 0, 0, 5, 0, b'S', 0, 0, 0, 4];
        bytes.extend([b'c', 0, 0, 0, 4]);
        let (frames, rest) = parse_all(&bytes);
        assert_eq!(rest, 0);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].as_ref().unwrap(), &Frame::CopyDone);
        // A walsender at server shutdown ends with CommandComplete ("COPY 0") and
        // ReadyForQuery, without CopyDone: the copy ended all the same.
        let mut bytes = vec![b'C', 0, 0, 0, 11];
        bytes.extend(b"COPY 0\0");
        bytes.extend([b'Z', 0, 0, 0, 5, b'I']);
        let (frames, rest) = parse_all(&bytes);
        assert_eq!(rest, 0);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].as_ref().unwrap(), &Frame::CopyDone);
    }

    #[test]
    fn encodes_status_updates() {
        let mut out = BytesMut::new();
        standby_status_update(Lsn(1), Lsn(2), Lsn(3), 4, true, &mut out);
        assert_eq!(out.len(), 1 + 4 + 34);
        assert_eq!(&out[..6], &[b'd', 0, 0, 0, 38, b'r']);
        assert_eq!(&out[6..14], &1u64.to_be_bytes());
        assert_eq!(&out[14..22], &2u64.to_be_bytes());
        assert_eq!(&out[22..30], &3u64.to_be_bytes());
        assert_eq!(&out[30..38], &4i64.to_be_bytes());
        assert_eq!(out[38], 1);
    }

    proptest! {
        /// However the stream is cut into reads, the same frames come out in order.
        #[test]
        fn any_read_boundaries_give_the_same_frames(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..20),
            cuts in proptest::collection::vec(1usize..50, 1..40),
        ) {
            let mut stream = Vec::new();
            for (i, p) in payloads.iter().enumerate() {
                if i % 3 == 2 {
                    stream.extend(keepalive(i as u64, i % 2 == 0));
                } else {
                    stream.extend(xlog(i as u64, i as u64 + 1, p));
                }
            }
            let whole: Vec<Frame> = parse_all(&stream).0.into_iter().map(Result::unwrap).collect();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut at = 0;
            let mut cut = cuts.iter().cycle();
            while at < stream.len() {
                let n = (*cut.next().unwrap()).min(stream.len() - at);
                buf.extend_from_slice(&stream[at..at + n]);
                at += n;
                let (batch, _) = split_complete(&mut buf).unwrap();
                got.extend(Frames::new(batch).map(Result::unwrap));
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(got, whole);
        }

        /// Arbitrary bytes never panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_all(&bytes);
        }
    }
}
