//! Turns the bytes of one pgoutput message into a [`PgOutputMessage`].
//!
//! The decoder is a small state machine because the format is not context-free: between
//! Stream Start and Stream Stop (protocol 2+, `streaming` on) the messages that belong to the
//! streamed transaction — Relation, Type, Insert, Update, Delete, Truncate and Message — carry
//! an extra leading Int32 xid, and nothing in those messages says so. The decoder therefore
//! remembers whether it is inside a stream and must see every message of the replication
//! stream, in order. Messages are accepted whatever the negotiated protocol version; the version
//! only selects between layouts that differ (Stream Abort's protocol 4 fields).

use std::sync::Arc;

use bytes::Bytes;
use walrus_core::Lsn;

use super::error::{DecodeError, DecodeErrorReason, MessageKind};
use super::message::{
    Begin, BeginPrepare, Column, ColumnData, Commit, CommitPrepared, Delete, Insert,
    LogicalMessage, OldTuple, Origin, PgOutputMessage, PgTimestamp, Prepare, Relation,
    ReplicaIdentity, RollbackPrepared, StreamAbort, StreamAbortInfo, StreamCommit, StreamStart,
    Truncate, TupleData, TypeMessage, Update,
};
use super::reader::Reader;

/// Size of Stream Abort's protocol 4 parallel-streaming fields (abort LSN and timestamp).
const STREAM_ABORT_INFO_LEN: usize = 16;

/// Decodes a replication stream's pgoutput messages, one at a time and in order.
#[derive(Clone, Debug)]
pub struct Decoder {
    protocol_version: u32,
    in_stream: bool,
}

impl Decoder {
    /// A decoder for a stream started with `proto_version` `protocol_version` (1 to 4; later
    /// versions are decoded as 4), outside any streamed transaction.
    pub fn new(protocol_version: u32) -> Self {
        Decoder {
            protocol_version,
            in_stream: false,
        }
    }

    /// The protocol version given to [`Decoder::new`].
    pub fn protocol_version(&self) -> u32 {
        self.protocol_version
    }

    /// True between a Stream Start and the following Stream Stop.
    pub fn in_stream(&self) -> bool {
        self.in_stream
    }

    /// Decodes one message (the payload of one XLogData frame). Column values in the result
    /// are slices of `frame`. On error the decoder's state is unchanged.
    pub fn decode(&mut self, frame: &Bytes) -> Result<PgOutputMessage, DecodeError> {
        let Some(&tag) = frame.first() else {
            return Err(DecodeError {
                kind: MessageKind::Unknown,
                offset: 0,
                reason: DecodeErrorReason::Empty,
            });
        };
        let Some(kind) = MessageKind::from_tag(tag) else {
            return Err(DecodeError {
                kind: MessageKind::Unknown,
                offset: 0,
                reason: DecodeErrorReason::UnknownTag(tag),
            });
        };
        let mut r = Reader::after_tag(frame, kind);
        let message = self.decode_body(tag, kind, &mut r)?;
        r.finish()?;
        match message {
            PgOutputMessage::StreamStart(_) => self.in_stream = true,
            PgOutputMessage::StreamStop => self.in_stream = false,
            _ => {}
        }
        Ok(message)
    }

    fn decode_body(
        &self,
        tag: u8,
        kind: MessageKind,
        r: &mut Reader<'_>,
    ) -> Result<PgOutputMessage, DecodeError> {
        Ok(match kind {
            MessageKind::Begin => PgOutputMessage::Begin(Begin {
                final_lsn: lsn(r, "final LSN")?,
                commit_time: timestamp(r, "commit timestamp")?,
                xid: r.u32("xid")?,
            }),
            MessageKind::Message => PgOutputMessage::Message(LogicalMessage {
                xid: self.stream_xid(r)?,
                flags: r.u8("flags")?,
                lsn: lsn(r, "LSN")?,
                prefix: r.cstring("prefix")?,
                content: {
                    let len = r.len_i32("content length")?;
                    r.bytes(len, "content")?
                },
            }),
            MessageKind::Commit => PgOutputMessage::Commit(Commit {
                flags: r.u8("flags")?,
                commit_lsn: lsn(r, "commit LSN")?,
                end_lsn: lsn(r, "end LSN")?,
                commit_time: timestamp(r, "commit timestamp")?,
            }),
            MessageKind::Origin => PgOutputMessage::Origin(Origin {
                commit_lsn: lsn(r, "origin commit LSN")?,
                name: r.cstring("origin name")?,
            }),
            MessageKind::Relation => PgOutputMessage::Relation(Arc::new(self.relation(r)?)),
            MessageKind::Type => PgOutputMessage::Type(TypeMessage {
                xid: self.stream_xid(r)?,
                oid: r.u32("type OID")?,
                namespace: r.cstring("namespace")?,
                name: r.cstring("type name")?,
            }),
            MessageKind::Insert => {
                let xid = self.stream_xid(r)?;
                let rel_id = r.u32("relation OID")?;
                expect_marker(r, b'N', "'N' (new tuple)")?;
                PgOutputMessage::Insert(Insert {
                    xid,
                    rel_id,
                    new: tuple(r)?,
                })
            }
            MessageKind::Update => {
                let xid = self.stream_xid(r)?;
                let rel_id = r.u32("relation OID")?;
                let at = r.pos();
                let old = match r.u8("tuple marker")? {
                    b'K' => Some(OldTuple::Key(tuple(r)?)),
                    b'O' => Some(OldTuple::Full(tuple(r)?)),
                    b'N' => None,
                    found => {
                        return Err(r.error_at(
                            at,
                            DecodeErrorReason::UnexpectedMarker {
                                expected: "'K', 'O' or 'N'",
                                found,
                            },
                        ))
                    }
                };
                if old.is_some() {
                    expect_marker(r, b'N', "'N' (new tuple)")?;
                }
                PgOutputMessage::Update(Update {
                    xid,
                    rel_id,
                    old,
                    new: tuple(r)?,
                })
            }
            MessageKind::Delete => {
                let xid = self.stream_xid(r)?;
                let rel_id = r.u32("relation OID")?;
                let at = r.pos();
                let old = match r.u8("tuple marker")? {
                    b'K' => OldTuple::Key(tuple(r)?),
                    b'O' => OldTuple::Full(tuple(r)?),
                    found => {
                        return Err(r.error_at(
                            at,
                            DecodeErrorReason::UnexpectedMarker {
                                expected: "'K' or 'O'",
                                found,
                            },
                        ))
                    }
                };
                PgOutputMessage::Delete(Delete { xid, rel_id, old })
            }
            MessageKind::Truncate => {
                let xid = self.stream_xid(r)?;
                let count = r.len_i32("relation count")?;
                let options = r.u8("options")?;
                // Cap the pre-size by what the message can hold, so a lying count cannot make
                // us allocate before the reads below fail.
                let mut rel_ids = Vec::with_capacity(count.min(r.remaining() / 4));
                for _ in 0..count {
                    rel_ids.push(r.u32("relation OID")?);
                }
                PgOutputMessage::Truncate(Truncate {
                    xid,
                    options,
                    rel_ids,
                })
            }
            MessageKind::StreamStart => PgOutputMessage::StreamStart(StreamStart {
                xid: r.u32("xid")?,
                first_segment: r.u8("first segment")? == 1,
            }),
            MessageKind::StreamStop => PgOutputMessage::StreamStop,
            MessageKind::StreamCommit => PgOutputMessage::StreamCommit(StreamCommit {
                xid: r.u32("xid")?,
                flags: r.u8("flags")?,
                commit_lsn: lsn(r, "commit LSN")?,
                end_lsn: lsn(r, "end LSN")?,
                commit_time: timestamp(r, "commit timestamp")?,
            }),
            MessageKind::StreamAbort => {
                let xid = r.u32("xid")?;
                let subxid = r.u32("subtransaction xid")?;
                // Protocol 4 sends the abort LSN and time only with streaming = parallel, which
                // the decoder is not told about; the message length says which layout it is.
                let abort = if self.protocol_version >= 4 && r.remaining() >= STREAM_ABORT_INFO_LEN
                {
                    Some(StreamAbortInfo {
                        abort_lsn: lsn(r, "abort LSN")?,
                        abort_time: timestamp(r, "abort timestamp")?,
                    })
                } else {
                    None
                };
                PgOutputMessage::StreamAbort(StreamAbort { xid, subxid, abort })
            }
            MessageKind::BeginPrepare => PgOutputMessage::BeginPrepare(BeginPrepare {
                prepare_lsn: lsn(r, "prepare LSN")?,
                end_lsn: lsn(r, "end LSN")?,
                prepare_time: timestamp(r, "prepare timestamp")?,
                xid: r.u32("xid")?,
                gid: r.cstring("gid")?,
            }),
            MessageKind::Prepare => PgOutputMessage::Prepare(prepare(r)?),
            MessageKind::StreamPrepare => PgOutputMessage::StreamPrepare(prepare(r)?),
            MessageKind::CommitPrepared => PgOutputMessage::CommitPrepared(CommitPrepared {
                flags: r.u8("flags")?,
                commit_lsn: lsn(r, "commit LSN")?,
                end_lsn: lsn(r, "end LSN")?,
                commit_time: timestamp(r, "commit timestamp")?,
                xid: r.u32("xid")?,
                gid: r.cstring("gid")?,
            }),
            MessageKind::RollbackPrepared => PgOutputMessage::RollbackPrepared(RollbackPrepared {
                flags: r.u8("flags")?,
                prepare_end_lsn: lsn(r, "prepare end LSN")?,
                rollback_end_lsn: lsn(r, "rollback end LSN")?,
                prepare_time: timestamp(r, "prepare timestamp")?,
                rollback_time: timestamp(r, "rollback timestamp")?,
                xid: r.u32("xid")?,
                gid: r.cstring("gid")?,
            }),
            MessageKind::Unknown => {
                // from_tag never yields Unknown; report it as what it would mean rather than
                // panic.
                return Err(r.error_at(0, DecodeErrorReason::UnknownTag(tag)));
            }
        })
    }

    /// The leading xid that messages of a streamed transaction carry.
    fn stream_xid(&self, r: &mut Reader<'_>) -> Result<Option<u32>, DecodeError> {
        if self.in_stream {
            Ok(Some(r.u32("streamed transaction xid")?))
        } else {
            Ok(None)
        }
    }

    fn relation(&self, r: &mut Reader<'_>) -> Result<Relation, DecodeError> {
        let xid = self.stream_xid(r)?;
        let rel_id = r.u32("relation OID")?;
        let namespace = r.cstring("namespace")?;
        let name = r.cstring("relation name")?;
        let at = r.pos();
        let identity = r.u8("replica identity")?;
        let replica_identity = ReplicaIdentity::from_byte(identity)
            .ok_or_else(|| r.error_at(at, DecodeErrorReason::UnknownReplicaIdentity(identity)))?;
        let count = usize::from(r.u16("column count")?);
        // Each column takes at least 10 bytes (flags, empty name's NUL, OID, typmod).
        let mut columns = Vec::with_capacity(count.min(r.remaining() / 10));
        for _ in 0..count {
            columns.push(Column {
                flags: r.u8("column flags")?,
                name: r.cstring("column name")?,
                type_oid: r.u32("column type OID")?,
                type_modifier: r.i32("column type modifier")?,
            });
        }
        Ok(Relation {
            xid,
            rel_id,
            namespace,
            name,
            replica_identity,
            columns,
        })
    }
}

fn lsn(r: &mut Reader<'_>, field: &'static str) -> Result<Lsn, DecodeError> {
    Ok(Lsn(r.u64(field)?))
}

fn timestamp(r: &mut Reader<'_>, field: &'static str) -> Result<PgTimestamp, DecodeError> {
    Ok(PgTimestamp(r.i64(field)?))
}

fn expect_marker(r: &mut Reader<'_>, want: u8, expected: &'static str) -> Result<(), DecodeError> {
    let at = r.pos();
    let found = r.u8("tuple marker")?;
    if found == want {
        Ok(())
    } else {
        Err(r.error_at(at, DecodeErrorReason::UnexpectedMarker { expected, found }))
    }
}

fn prepare(r: &mut Reader<'_>) -> Result<Prepare, DecodeError> {
    Ok(Prepare {
        flags: r.u8("flags")?,
        prepare_lsn: lsn(r, "prepare LSN")?,
        end_lsn: lsn(r, "end LSN")?,
        prepare_time: timestamp(r, "prepare timestamp")?,
        xid: r.u32("xid")?,
        gid: r.cstring("gid")?,
    })
}

/// TupleData: Int16 column count, then per column a kind byte and, for `t`/`b`, an Int32
/// length and that many bytes.
fn tuple(r: &mut Reader<'_>) -> Result<TupleData, DecodeError> {
    let count = usize::from(r.u16("tuple column count")?);
    // Every column takes at least its kind byte.
    let mut columns = Vec::with_capacity(count.min(r.remaining()));
    for column in 0..count {
        let at = r.pos();
        let data = match r.u8("tuple column kind")? {
            b'n' => ColumnData::Null,
            b'u' => ColumnData::UnchangedToast,
            b't' => {
                let len = r.len_i32("column value length")?;
                ColumnData::Text(r.bytes(len, "column value")?)
            }
            b'b' => {
                let len = r.len_i32("column value length")?;
                ColumnData::Binary(r.bytes(len, "column value")?)
            }
            kind => {
                return Err(r.error_at(at, DecodeErrorReason::UnknownColumnKind { kind, column }))
            }
        };
        columns.push(data);
    }
    Ok(TupleData { columns })
}
