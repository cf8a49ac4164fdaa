//! Unit and property tests for the pgoutput decoder and relation cache.
//!
//! Messages are assembled by hand with [`Frame`] so each test shows the wire layout it
//! exercises; [`encode`] is an independent encoder used by the round-trip property test.

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use walrus_core::Lsn;

use super::*;

/// Builds a message byte by byte in network order.
#[derive(Default)]
struct Frame(Vec<u8>);

impl Frame {
    fn tag(tag: u8) -> Self {
        Frame(vec![tag])
    }
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i32(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i64(mut self, v: i64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn raw(mut self, v: &[u8]) -> Self {
        self.0.extend_from_slice(v);
        self
    }
    fn cstr(self, s: &str) -> Self {
        self.raw(s.as_bytes()).u8(0)
    }
    /// A `t` column.
    fn text(self, s: &str) -> Self {
        self.u8(b't').i32(s.len() as i32).raw(s.as_bytes())
    }
    fn bytes(self) -> Bytes {
        Bytes::from(self.0)
    }
}

fn decode(version: u32, frame: &Bytes) -> Result<PgOutputMessage, DecodeError> {
    Decoder::new(version).decode(frame)
}

/// A decoder that has seen Stream Start for `xid`.
fn streaming_decoder(version: u32, xid: u32) -> Decoder {
    let mut d = Decoder::new(version);
    let start = Frame::tag(b'S').u32(xid).u8(1).bytes();
    d.decode(&start).expect("stream start");
    assert!(d.in_stream());
    d
}

fn text(s: &str) -> ColumnData {
    ColumnData::Text(Bytes::copy_from_slice(s.as_bytes()))
}

// ---- hand-assembled frames for every message kind ----

fn begin_frame() -> Bytes {
    Frame::tag(b'B')
        .u64(0x1_0000_0010)
        .i64(700_000_000_000_000)
        .u32(742)
        .bytes()
}

fn commit_frame() -> Bytes {
    Frame::tag(b'C').u8(0).u64(0x10).u64(0x40).i64(-5).bytes()
}

fn origin_frame() -> Bytes {
    Frame::tag(b'O').u64(0xABCDEF).cstr("upstream").bytes()
}

fn relation_frame(xid: Option<u32>) -> Bytes {
    let f = Frame::tag(b'R');
    let f = match xid {
        Some(x) => f.u32(x),
        None => f,
    };
    f.u32(16384)
        .cstr("public")
        .cstr("users")
        .u8(b'd')
        .u16(2)
        .u8(1)
        .cstr("id")
        .u32(23)
        .i32(-1)
        .u8(0)
        .cstr("name")
        .u32(1043)
        .i32(68)
        .bytes()
}

fn type_frame() -> Bytes {
    Frame::tag(b'Y')
        .u32(90001)
        .cstr("public")
        .cstr("mood")
        .bytes()
}

fn insert_frame() -> Bytes {
    Frame::tag(b'I')
        .u32(16384)
        .u8(b'N')
        .u16(4)
        .text("1")
        .u8(b'n')
        .u8(b'u')
        .u8(b'b')
        .i32(2)
        .raw(&[0xde, 0xad])
        .bytes()
}

fn update_frame(marker: Option<u8>) -> Bytes {
    let f = Frame::tag(b'U').u32(16384);
    let f = match marker {
        Some(m) => f.u8(m).u16(2).text("1").u8(b'n'),
        None => f,
    };
    f.u8(b'N').u16(2).text("2").text("bob").bytes()
}

fn delete_frame(marker: u8) -> Bytes {
    Frame::tag(b'D')
        .u32(16384)
        .u8(marker)
        .u16(2)
        .text("7")
        .u8(b'n')
        .bytes()
}

fn truncate_frame() -> Bytes {
    Frame::tag(b'T').i32(2).u8(3).u32(1).u32(2).bytes()
}

fn message_frame(xid: Option<u32>) -> Bytes {
    let f = Frame::tag(b'M');
    let f = match xid {
        Some(x) => f.u32(x),
        None => f,
    };
    f.u8(1).u64(0x99).cstr("walrus").i32(3).raw(b"a\0b").bytes()
}

fn stream_commit_frame() -> Bytes {
    Frame::tag(b'c')
        .u32(900)
        .u8(0)
        .u64(0x100)
        .u64(0x180)
        .i64(12)
        .bytes()
}

fn begin_prepare_frame() -> Bytes {
    Frame::tag(b'b')
        .u64(0x10)
        .u64(0x20)
        .i64(1)
        .u32(55)
        .cstr("gid-1")
        .bytes()
}

fn prepare_frame(tag: u8) -> Bytes {
    Frame::tag(tag)
        .u8(0)
        .u64(0x10)
        .u64(0x20)
        .i64(1)
        .u32(55)
        .cstr("gid-1")
        .bytes()
}

fn commit_prepared_frame() -> Bytes {
    Frame::tag(b'K')
        .u8(0)
        .u64(0x30)
        .u64(0x38)
        .i64(2)
        .u32(55)
        .cstr("gid-1")
        .bytes()
}

fn rollback_prepared_frame() -> Bytes {
    Frame::tag(b'r')
        .u8(0)
        .u64(0x20)
        .u64(0x48)
        .i64(1)
        .i64(3)
        .u32(56)
        .cstr("gid-2")
        .bytes()
}

/// Every valid frame above that decodes outside a stream, with the protocol version to use.
fn valid_frames() -> Vec<(u32, Bytes)> {
    vec![
        (1, begin_frame()),
        (1, commit_frame()),
        (1, origin_frame()),
        (1, relation_frame(None)),
        (1, type_frame()),
        (1, insert_frame()),
        (1, update_frame(None)),
        (1, update_frame(Some(b'K'))),
        (1, update_frame(Some(b'O'))),
        (1, delete_frame(b'K')),
        (1, delete_frame(b'O')),
        (1, truncate_frame()),
        (1, message_frame(None)),
        (2, Frame::tag(b'S').u32(900).u8(1).bytes()),
        (2, Frame::tag(b'E').bytes()),
        (2, stream_commit_frame()),
        (2, Frame::tag(b'A').u32(900).u32(901).bytes()),
        (4, Frame::tag(b'A').u32(900).u32(901).u64(5).i64(6).bytes()),
        (3, begin_prepare_frame()),
        (3, prepare_frame(b'P')),
        (3, prepare_frame(b'p')),
        (3, commit_prepared_frame()),
        (3, rollback_prepared_frame()),
    ]
}

// ---- one test per message kind ----

#[test]
fn begin() {
    let m = decode(1, &begin_frame()).unwrap();
    assert_eq!(
        m,
        PgOutputMessage::Begin(Begin {
            final_lsn: Lsn(0x1_0000_0010),
            commit_time: PgTimestamp(700_000_000_000_000),
            xid: 742,
        })
    );
    assert_eq!(m.kind(), MessageKind::Begin);
}

#[test]
fn commit() {
    assert_eq!(
        decode(1, &commit_frame()).unwrap(),
        PgOutputMessage::Commit(Commit {
            flags: 0,
            commit_lsn: Lsn(0x10),
            end_lsn: Lsn(0x40),
            commit_time: PgTimestamp(-5),
        })
    );
}

#[test]
fn origin() {
    assert_eq!(
        decode(1, &origin_frame()).unwrap(),
        PgOutputMessage::Origin(Origin {
            commit_lsn: Lsn(0xABCDEF),
            name: "upstream".into(),
        })
    );
}

#[test]
fn relation() {
    let PgOutputMessage::Relation(rel) = decode(1, &relation_frame(None)).unwrap() else {
        panic!("not a relation")
    };
    assert_eq!(rel.xid, None);
    assert_eq!(rel.rel_id, 16384);
    assert_eq!(
        (rel.namespace.as_str(), rel.name.as_str()),
        ("public", "users")
    );
    assert_eq!(rel.replica_identity, ReplicaIdentity::Default);
    assert_eq!(rel.columns.len(), 2);
    assert!(rel.columns[0].is_key());
    assert_eq!(rel.columns[0].name, "id");
    assert_eq!(rel.columns[0].type_oid, 23);
    assert_eq!(rel.columns[0].type_modifier, -1);
    assert!(!rel.columns[1].is_key());
    assert_eq!(rel.columns[1].type_modifier, 68);
}

#[test]
fn relation_replica_identities() {
    for (byte, want) in [
        (b'd', ReplicaIdentity::Default),
        (b'n', ReplicaIdentity::Nothing),
        (b'f', ReplicaIdentity::Full),
        (b'i', ReplicaIdentity::Index),
    ] {
        let f = Frame::tag(b'R')
            .u32(1)
            .cstr("")
            .cstr("t")
            .u8(byte)
            .u16(0)
            .bytes();
        let PgOutputMessage::Relation(rel) = decode(1, &f).unwrap() else {
            panic!("not a relation")
        };
        assert_eq!(rel.replica_identity, want);
        assert_eq!(want.as_byte(), byte);
    }
    let bad = Frame::tag(b'R')
        .u32(1)
        .cstr("")
        .cstr("t")
        .u8(b'x')
        .u16(0)
        .bytes();
    let err = decode(1, &bad).unwrap_err();
    assert_eq!(err.reason, DecodeErrorReason::UnknownReplicaIdentity(b'x'));
    assert_eq!(err.offset, 8);
}

#[test]
fn type_message() {
    assert_eq!(
        decode(1, &type_frame()).unwrap(),
        PgOutputMessage::Type(TypeMessage {
            xid: None,
            oid: 90001,
            namespace: "public".into(),
            name: "mood".into(),
        })
    );
}

#[test]
fn insert_with_every_column_kind() {
    let frame = insert_frame();
    let PgOutputMessage::Insert(ins) = decode(1, &frame).unwrap() else {
        panic!("not an insert")
    };
    assert_eq!(ins.rel_id, 16384);
    assert_eq!(
        ins.new.columns,
        vec![
            text("1"),
            ColumnData::Null,
            ColumnData::UnchangedToast,
            ColumnData::Binary(Bytes::from_static(&[0xde, 0xad])),
        ]
    );
    // Zero-copy: the value points into the frame.
    let value = ins.new.columns[0].as_bytes().unwrap();
    let frame_range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
    assert!(frame_range.contains(&(value.as_ptr() as usize)));
}

#[test]
fn update_without_old_tuple() {
    let PgOutputMessage::Update(u) = decode(1, &update_frame(None)).unwrap() else {
        panic!("not an update")
    };
    assert_eq!(u.old, None);
    assert_eq!(u.new.columns, vec![text("2"), text("bob")]);
}

#[test]
fn update_with_old_key_and_old_row() {
    let PgOutputMessage::Update(u) = decode(1, &update_frame(Some(b'K'))).unwrap() else {
        panic!("not an update")
    };
    assert_eq!(
        u.old,
        Some(OldTuple::Key(TupleData {
            columns: vec![text("1"), ColumnData::Null]
        }))
    );
    let PgOutputMessage::Update(u) = decode(1, &update_frame(Some(b'O'))).unwrap() else {
        panic!("not an update")
    };
    assert!(matches!(u.old, Some(OldTuple::Full(_))));
    assert_eq!(u.old.unwrap().tuple().columns[0], text("1"));
}

#[test]
fn delete_key_and_full() {
    let PgOutputMessage::Delete(d) = decode(1, &delete_frame(b'K')).unwrap() else {
        panic!("not a delete")
    };
    assert_eq!(
        d.old,
        OldTuple::Key(TupleData {
            columns: vec![text("7"), ColumnData::Null]
        })
    );
    let PgOutputMessage::Delete(d) = decode(1, &delete_frame(b'O')).unwrap() else {
        panic!("not a delete")
    };
    assert!(matches!(d.old, OldTuple::Full(_)));
    let err = decode(1, &delete_frame(b'N')).unwrap_err();
    assert_eq!(err.kind, MessageKind::Delete);
    assert_eq!(err.offset, 5);
    assert!(matches!(
        err.reason,
        DecodeErrorReason::UnexpectedMarker { found: b'N', .. }
    ));
}

#[test]
fn truncate() {
    let PgOutputMessage::Truncate(t) = decode(1, &truncate_frame()).unwrap() else {
        panic!("not a truncate")
    };
    assert_eq!(t.rel_ids, vec![1, 2]);
    assert!(t.cascade());
    assert!(t.restart_identity());
    let none = Frame::tag(b'T').i32(1).u8(0).u32(9).bytes();
    let PgOutputMessage::Truncate(t) = decode(1, &none).unwrap() else {
        panic!("not a truncate")
    };
    assert!(!t.cascade() && !t.restart_identity());
}

#[test]
fn logical_message() {
    assert_eq!(
        decode(1, &message_frame(None)).unwrap(),
        PgOutputMessage::Message(LogicalMessage {
            xid: None,
            flags: 1,
            lsn: Lsn(0x99),
            prefix: "walrus".into(),
            content: Bytes::from_static(b"a\0b"),
        })
    );
    let nontx = Frame::tag(b'M').u8(0).u64(1).cstr("p").i32(0).bytes();
    let PgOutputMessage::Message(m) = decode(1, &nontx).unwrap() else {
        panic!("not a message")
    };
    assert!(!m.transactional());
    assert!(m.content.is_empty());
}

#[test]
fn stream_start_and_stop_toggle_state() {
    let mut d = Decoder::new(2);
    assert!(!d.in_stream());
    let m = d.decode(&Frame::tag(b'S').u32(900).u8(1).bytes()).unwrap();
    assert_eq!(
        m,
        PgOutputMessage::StreamStart(StreamStart {
            xid: 900,
            first_segment: true
        })
    );
    assert!(d.in_stream());
    assert_eq!(
        d.decode(&Frame::tag(b'E').bytes()).unwrap(),
        PgOutputMessage::StreamStop
    );
    assert!(!d.in_stream());
    let m = d.decode(&Frame::tag(b'S').u32(900).u8(0).bytes()).unwrap();
    assert!(matches!(
        m,
        PgOutputMessage::StreamStart(StreamStart {
            first_segment: false,
            ..
        })
    ));
}

#[test]
fn streamed_messages_carry_leading_xid() {
    let mut d = streaming_decoder(2, 900);
    let PgOutputMessage::Relation(rel) = d.decode(&relation_frame(Some(900))).unwrap() else {
        panic!("not a relation")
    };
    assert_eq!(rel.xid, Some(900));
    assert_eq!(rel.name, "users");

    let ins = Frame::tag(b'I')
        .u32(901)
        .u32(16384)
        .u8(b'N')
        .u16(1)
        .text("x")
        .bytes();
    let PgOutputMessage::Insert(i) = d.decode(&ins).unwrap() else {
        panic!("not an insert")
    };
    assert_eq!((i.xid, i.rel_id), (Some(901), 16384));

    let upd = Frame::tag(b'U').u32(900).u32(16384).u8(b'N').u16(0).bytes();
    let PgOutputMessage::Update(u) = d.decode(&upd).unwrap() else {
        panic!("not an update")
    };
    assert_eq!(u.xid, Some(900));

    let del = Frame::tag(b'D').u32(900).u32(16384).u8(b'K').u16(0).bytes();
    let PgOutputMessage::Delete(x) = d.decode(&del).unwrap() else {
        panic!("not a delete")
    };
    assert_eq!(x.xid, Some(900));

    let trunc = Frame::tag(b'T').u32(900).i32(1).u8(0).u32(5).bytes();
    let PgOutputMessage::Truncate(t) = d.decode(&trunc).unwrap() else {
        panic!("not a truncate")
    };
    assert_eq!((t.xid, t.rel_ids.as_slice()), (Some(900), &[5][..]));

    let ty = Frame::tag(b'Y').u32(900).u32(7).cstr("s").cstr("t").bytes();
    let PgOutputMessage::Type(t) = d.decode(&ty).unwrap() else {
        panic!("not a type")
    };
    assert_eq!(t.xid, Some(900));

    let PgOutputMessage::Message(m) = d.decode(&message_frame(Some(900))).unwrap() else {
        panic!("not a message")
    };
    assert_eq!(m.xid, Some(900));

    // The same streamed bytes outside a stream are misaligned and must not decode.
    assert!(decode(2, &relation_frame(Some(900))).is_err());
}

#[test]
fn stream_commit() {
    assert_eq!(
        decode(2, &stream_commit_frame()).unwrap(),
        PgOutputMessage::StreamCommit(StreamCommit {
            xid: 900,
            flags: 0,
            commit_lsn: Lsn(0x100),
            end_lsn: Lsn(0x180),
            commit_time: PgTimestamp(12),
        })
    );
}

#[test]
fn stream_abort_by_protocol_version() {
    let short = Frame::tag(b'A').u32(900).u32(901).bytes();
    let long = Frame::tag(b'A').u32(900).u32(901).u64(0x77).i64(88).bytes();
    for version in [2, 3, 4] {
        assert_eq!(
            decode(version, &short).unwrap(),
            PgOutputMessage::StreamAbort(StreamAbort {
                xid: 900,
                subxid: 901,
                abort: None
            })
        );
    }
    assert_eq!(
        decode(4, &long).unwrap(),
        PgOutputMessage::StreamAbort(StreamAbort {
            xid: 900,
            subxid: 901,
            abort: Some(StreamAbortInfo {
                abort_lsn: Lsn(0x77),
                abort_time: PgTimestamp(88),
            }),
        })
    );
    // Before protocol 4 the extra fields do not exist.
    let err = decode(3, &long).unwrap_err();
    assert_eq!(err.reason, DecodeErrorReason::TrailingBytes(16));
}

#[test]
fn two_phase_messages() {
    assert_eq!(
        decode(3, &begin_prepare_frame()).unwrap(),
        PgOutputMessage::BeginPrepare(BeginPrepare {
            prepare_lsn: Lsn(0x10),
            end_lsn: Lsn(0x20),
            prepare_time: PgTimestamp(1),
            xid: 55,
            gid: "gid-1".into(),
        })
    );
    let prepare = Prepare {
        flags: 0,
        prepare_lsn: Lsn(0x10),
        end_lsn: Lsn(0x20),
        prepare_time: PgTimestamp(1),
        xid: 55,
        gid: "gid-1".into(),
    };
    assert_eq!(
        decode(3, &prepare_frame(b'P')).unwrap(),
        PgOutputMessage::Prepare(prepare.clone())
    );
    assert_eq!(
        decode(3, &prepare_frame(b'p')).unwrap(),
        PgOutputMessage::StreamPrepare(prepare)
    );
    assert_eq!(
        decode(3, &commit_prepared_frame()).unwrap(),
        PgOutputMessage::CommitPrepared(CommitPrepared {
            flags: 0,
            commit_lsn: Lsn(0x30),
            end_lsn: Lsn(0x38),
            commit_time: PgTimestamp(2),
            xid: 55,
            gid: "gid-1".into(),
        })
    );
    assert_eq!(
        decode(3, &rollback_prepared_frame()).unwrap(),
        PgOutputMessage::RollbackPrepared(RollbackPrepared {
            flags: 0,
            prepare_end_lsn: Lsn(0x20),
            rollback_end_lsn: Lsn(0x48),
            prepare_time: PgTimestamp(1),
            rollback_time: PgTimestamp(3),
            xid: 56,
            gid: "gid-2".into(),
        })
    );
}

#[test]
fn timestamps_convert_to_unix() {
    assert_eq!(PgTimestamp(0).to_unix_micros(), 946_684_800_000_000);
    assert_eq!(PgTimestamp(i64::MAX).to_unix_micros(), i64::MAX);
}

// ---- malformed input ----

#[test]
fn every_truncation_of_a_valid_message_is_an_error() {
    for (version, frame) in valid_frames() {
        decode(version, &frame).unwrap_or_else(|e| panic!("{frame:02x?}: {e}"));
        for len in 0..frame.len() {
            // Protocol 4's long Stream Abort has a valid short form as its prefix.
            if version == 4 && frame[0] == b'A' && len == 9 {
                continue;
            }
            let prefix = frame.slice(..len);
            assert!(
                decode(version, &prefix).is_err(),
                "prefix of {len} bytes of {frame:02x?} decoded"
            );
        }
        let mut longer = frame.to_vec();
        longer.push(0);
        let err = decode(version, &Bytes::from(longer)).unwrap_err();
        assert_eq!(err.reason, DecodeErrorReason::TrailingBytes(1));
        assert_eq!(err.offset, frame.len());
    }
}

#[test]
fn truncated_streamed_messages_are_errors() {
    for frame in [relation_frame(Some(1)), message_frame(Some(1))] {
        for len in 0..frame.len() {
            let mut d = streaming_decoder(2, 1);
            assert!(d.decode(&frame.slice(..len)).is_err());
            assert!(d.in_stream(), "a failed decode must not change state");
        }
    }
}

#[test]
fn empty_and_unknown_tag() {
    let err = decode(1, &Bytes::new()).unwrap_err();
    assert_eq!(err.reason, DecodeErrorReason::Empty);
    let err = decode(1, &Bytes::from_static(b"Z\x00")).unwrap_err();
    assert_eq!(err.kind, MessageKind::Unknown);
    assert_eq!(err.reason, DecodeErrorReason::UnknownTag(b'Z'));
    assert!(
        err.to_string().contains("unknown message tag 0x5a"),
        "{err}"
    );
}

#[test]
fn truncation_error_names_kind_field_and_offset() {
    let frame = update_frame(Some(b'K'));
    let err = decode(1, &frame.slice(..frame.len() - 1)).unwrap_err();
    assert_eq!(err.kind, MessageKind::Update);
    assert!(matches!(
        err.reason,
        DecodeErrorReason::Truncated {
            field: "column value",
            needed: 3,
            remaining: 2
        }
    ));
    let shown = err.to_string();
    assert!(
        shown.contains("Update") && shown.contains("byte"),
        "{shown}"
    );
}

#[test]
fn unknown_column_kind() {
    let f = Frame::tag(b'I')
        .u32(1)
        .u8(b'N')
        .u16(2)
        .u8(b'n')
        .u8(b'x')
        .bytes();
    let err = decode(1, &f).unwrap_err();
    assert_eq!(err.kind, MessageKind::Insert);
    assert_eq!(err.offset, 9);
    assert_eq!(
        err.reason,
        DecodeErrorReason::UnknownColumnKind {
            kind: b'x',
            column: 1
        }
    );
}

#[test]
fn negative_and_huge_lengths_are_errors_not_allocations() {
    let neg = Frame::tag(b'I')
        .u32(1)
        .u8(b'N')
        .u16(1)
        .u8(b't')
        .i32(-1)
        .bytes();
    let err = decode(1, &neg).unwrap_err();
    assert_eq!(
        err.reason,
        DecodeErrorReason::NegativeLength {
            field: "column value length",
            length: -1
        }
    );
    let huge = Frame::tag(b'I')
        .u32(1)
        .u8(b'N')
        .u16(1)
        .u8(b'b')
        .i32(i32::MAX)
        .bytes();
    assert!(matches!(
        decode(1, &huge).unwrap_err().reason,
        DecodeErrorReason::Truncated { .. }
    ));
    // A Truncate claiming i32::MAX relations must fail on the data, not on allocation.
    let many = Frame::tag(b'T').i32(i32::MAX).u8(0).bytes();
    assert!(decode(1, &many).is_err());
    let negative = Frame::tag(b'T').i32(-3).u8(0).bytes();
    assert!(matches!(
        decode(1, &negative).unwrap_err().reason,
        DecodeErrorReason::NegativeLength { .. }
    ));
    // And a tuple claiming 65535 columns in a few bytes.
    let wide = Frame::tag(b'I').u32(1).u8(b'N').u16(u16::MAX).bytes();
    assert!(decode(1, &wide).is_err());
}

#[test]
fn invalid_utf8_names_the_field() {
    let f = Frame::tag(b'R')
        .u32(1)
        .cstr("public")
        .raw(&[0xff, 0xfe, 0])
        .u8(b'd')
        .u16(0)
        .bytes();
    let err = decode(1, &f).unwrap_err();
    assert_eq!(
        err.reason,
        DecodeErrorReason::InvalidUtf8 {
            field: "relation name"
        }
    );
    assert_eq!(err.offset, 12);
    let unterminated = Frame::tag(b'O').u64(1).raw(b"abc").bytes();
    assert_eq!(
        decode(1, &unterminated).unwrap_err().reason,
        DecodeErrorReason::UnterminatedString {
            field: "origin name"
        }
    );
}

#[test]
fn update_requires_new_tuple_marker() {
    let f = Frame::tag(b'U')
        .u32(1)
        .u8(b'K')
        .u16(0)
        .u8(b'K')
        .u16(0)
        .bytes();
    let err = decode(1, &f).unwrap_err();
    assert_eq!(err.offset, 8);
    assert!(matches!(
        err.reason,
        DecodeErrorReason::UnexpectedMarker { found: b'K', .. }
    ));
    let f = Frame::tag(b'U').u32(1).u8(b'X').bytes();
    assert!(matches!(
        decode(1, &f).unwrap_err().reason,
        DecodeErrorReason::UnexpectedMarker { found: b'X', .. }
    ));
}

// ---- relation cache ----

fn sample_relation(rel_id: u32, name: &str, columns: &[&str]) -> Arc<Relation> {
    Arc::new(Relation {
        xid: None,
        rel_id,
        namespace: "public".into(),
        name: name.into(),
        replica_identity: ReplicaIdentity::Default,
        columns: columns
            .iter()
            .map(|c| Column {
                flags: 0,
                name: (*c).into(),
                type_oid: 25,
                type_modifier: -1,
            })
            .collect(),
    })
}

#[test]
fn cache_replaces_relation_on_schema_change() {
    let mut cache = RelationCache::new();
    assert!(cache.is_empty());
    assert_eq!(
        cache.get(7).unwrap_err(),
        RelationError::UnknownRelation { rel_id: 7 }
    );
    let v1 = sample_relation(7, "t", &["id", "a"]);
    cache.observe(&PgOutputMessage::Relation(Arc::clone(&v1)));
    let held = Arc::clone(cache.get(7).unwrap());
    cache.observe(&PgOutputMessage::Relation(sample_relation(
        7,
        "t",
        &["id", "a", "b"],
    )));
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.get(7).unwrap().columns.len(), 3);
    // A change decoded before the schema change keeps the schema it was decoded with.
    assert_eq!(held.columns.len(), 2);

    let two = TupleData {
        columns: vec![ColumnData::Null, ColumnData::Null],
    };
    let err = cache.get_for_tuple(7, &two).unwrap_err();
    assert!(matches!(
        err,
        RelationError::ColumnCountMismatch {
            expected: 3,
            found: 2,
            ..
        }
    ));
    assert!(err.to_string().contains("public.t"), "{err}");
    assert!(cache.get_for_tuple(8, &two).is_err());
}

#[test]
fn cache_records_type_names() {
    let mut cache = RelationCache::new();
    assert!(cache.type_name(90001).is_none());
    cache.observe(&decode(1, &type_frame()).unwrap());
    assert_eq!(
        cache.type_name(90001),
        Some(&TypeName {
            namespace: "public".into(),
            name: "mood".into()
        })
    );
    // Other messages leave the cache alone.
    cache.observe(&decode(1, &begin_frame()).unwrap());
    assert!(cache.is_empty());
}

// ---- property tests ----

/// An independent encoder for the round-trip property; writes the xid for streamable
/// messages whenever it is `Some`.
fn encode(m: &PgOutputMessage) -> Bytes {
    fn xid(f: Frame, x: Option<u32>) -> Frame {
        match x {
            Some(x) => f.u32(x),
            None => f,
        }
    }
    fn tuple(mut f: Frame, t: &TupleData) -> Frame {
        f = f.u16(t.columns.len() as u16);
        for c in &t.columns {
            f = match c {
                ColumnData::Null => f.u8(b'n'),
                ColumnData::UnchangedToast => f.u8(b'u'),
                ColumnData::Text(b) => f.u8(b't').i32(b.len() as i32).raw(b),
                ColumnData::Binary(b) => f.u8(b'b').i32(b.len() as i32).raw(b),
            };
        }
        f
    }
    fn old(f: Frame, o: &OldTuple) -> Frame {
        match o {
            OldTuple::Key(t) => tuple(f.u8(b'K'), t),
            OldTuple::Full(t) => tuple(f.u8(b'O'), t),
        }
    }
    fn prepare(f: Frame, p: &Prepare) -> Frame {
        f.u8(p.flags)
            .u64(p.prepare_lsn.0)
            .u64(p.end_lsn.0)
            .i64(p.prepare_time.0)
            .u32(p.xid)
            .cstr(&p.gid)
    }
    let f = match m {
        PgOutputMessage::Begin(b) => Frame::tag(b'B')
            .u64(b.final_lsn.0)
            .i64(b.commit_time.0)
            .u32(b.xid),
        PgOutputMessage::Message(x) => xid(Frame::tag(b'M'), x.xid)
            .u8(x.flags)
            .u64(x.lsn.0)
            .cstr(&x.prefix)
            .i32(x.content.len() as i32)
            .raw(&x.content),
        PgOutputMessage::Commit(c) => Frame::tag(b'C')
            .u8(c.flags)
            .u64(c.commit_lsn.0)
            .u64(c.end_lsn.0)
            .i64(c.commit_time.0),
        PgOutputMessage::Origin(o) => Frame::tag(b'O').u64(o.commit_lsn.0).cstr(&o.name),
        PgOutputMessage::Relation(r) => {
            let mut f = xid(Frame::tag(b'R'), r.xid)
                .u32(r.rel_id)
                .cstr(&r.namespace)
                .cstr(&r.name)
                .u8(r.replica_identity.as_byte())
                .u16(r.columns.len() as u16);
            for c in &r.columns {
                f = f
                    .u8(c.flags)
                    .cstr(&c.name)
                    .u32(c.type_oid)
                    .i32(c.type_modifier);
            }
            f
        }
        PgOutputMessage::Type(t) => xid(Frame::tag(b'Y'), t.xid)
            .u32(t.oid)
            .cstr(&t.namespace)
            .cstr(&t.name),
        PgOutputMessage::Insert(i) => {
            tuple(xid(Frame::tag(b'I'), i.xid).u32(i.rel_id).u8(b'N'), &i.new)
        }
        PgOutputMessage::Update(u) => {
            let mut f = xid(Frame::tag(b'U'), u.xid).u32(u.rel_id);
            if let Some(o) = &u.old {
                f = old(f, o);
            }
            tuple(f.u8(b'N'), &u.new)
        }
        PgOutputMessage::Delete(d) => old(xid(Frame::tag(b'D'), d.xid).u32(d.rel_id), &d.old),
        PgOutputMessage::Truncate(t) => {
            let mut f = xid(Frame::tag(b'T'), t.xid)
                .i32(t.rel_ids.len() as i32)
                .u8(t.options);
            for id in &t.rel_ids {
                f = f.u32(*id);
            }
            f
        }
        PgOutputMessage::StreamStart(s) => {
            Frame::tag(b'S').u32(s.xid).u8(u8::from(s.first_segment))
        }
        PgOutputMessage::StreamStop => Frame::tag(b'E'),
        PgOutputMessage::StreamCommit(c) => Frame::tag(b'c')
            .u32(c.xid)
            .u8(c.flags)
            .u64(c.commit_lsn.0)
            .u64(c.end_lsn.0)
            .i64(c.commit_time.0),
        PgOutputMessage::StreamAbort(a) => {
            let f = Frame::tag(b'A').u32(a.xid).u32(a.subxid);
            match &a.abort {
                Some(i) => f.u64(i.abort_lsn.0).i64(i.abort_time.0),
                None => f,
            }
        }
        PgOutputMessage::BeginPrepare(b) => Frame::tag(b'b')
            .u64(b.prepare_lsn.0)
            .u64(b.end_lsn.0)
            .i64(b.prepare_time.0)
            .u32(b.xid)
            .cstr(&b.gid),
        PgOutputMessage::Prepare(p) => prepare(Frame::tag(b'P'), p),
        PgOutputMessage::StreamPrepare(p) => prepare(Frame::tag(b'p'), p),
        PgOutputMessage::CommitPrepared(c) => Frame::tag(b'K')
            .u8(c.flags)
            .u64(c.commit_lsn.0)
            .u64(c.end_lsn.0)
            .i64(c.commit_time.0)
            .u32(c.xid)
            .cstr(&c.gid),
        PgOutputMessage::RollbackPrepared(r) => Frame::tag(b'r')
            .u8(r.flags)
            .u64(r.prepare_end_lsn.0)
            .u64(r.rollback_end_lsn.0)
            .i64(r.prepare_time.0)
            .i64(r.rollback_time.0)
            .u32(r.xid)
            .cstr(&r.gid),
    };
    f.bytes()
}

fn name() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,12}"
}

fn lsn() -> impl Strategy<Value = Lsn> {
    any::<u64>().prop_map(Lsn)
}

fn ts() -> impl Strategy<Value = PgTimestamp> {
    any::<i64>().prop_map(PgTimestamp)
}

fn payload() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn tuple_data() -> impl Strategy<Value = TupleData> {
    let column = prop_oneof![
        Just(ColumnData::Null),
        Just(ColumnData::UnchangedToast),
        payload().prop_map(ColumnData::Text),
        payload().prop_map(ColumnData::Binary),
    ];
    proptest::collection::vec(column, 0..8).prop_map(|columns| TupleData { columns })
}

fn old_tuple() -> impl Strategy<Value = OldTuple> {
    prop_oneof![
        tuple_data().prop_map(OldTuple::Key),
        tuple_data().prop_map(OldTuple::Full)
    ]
}

fn prepare_strategy() -> impl Strategy<Value = Prepare> {
    (any::<u8>(), lsn(), lsn(), ts(), any::<u32>(), name()).prop_map(
        |(flags, prepare_lsn, end_lsn, prepare_time, xid, gid)| Prepare {
            flags,
            prepare_lsn,
            end_lsn,
            prepare_time,
            xid,
            gid,
        },
    )
}

/// Messages whose layout depends on being inside a stream get `xid` when `in_stream`.
fn message(in_stream: bool) -> impl Strategy<Value = PgOutputMessage> {
    let sx = move |x: u32| in_stream.then_some(x);
    let identity = prop_oneof![
        Just(ReplicaIdentity::Default),
        Just(ReplicaIdentity::Nothing),
        Just(ReplicaIdentity::Full),
        Just(ReplicaIdentity::Index),
    ];
    let column = (any::<u8>(), name(), any::<u32>(), any::<i32>()).prop_map(
        |(flags, name, type_oid, type_modifier)| Column {
            flags,
            name,
            type_oid,
            type_modifier,
        },
    );
    prop_oneof![
        (lsn(), ts(), any::<u32>()).prop_map(|(final_lsn, commit_time, xid)| {
            PgOutputMessage::Begin(Begin {
                final_lsn,
                commit_time,
                xid,
            })
        }),
        (any::<u32>(), any::<u8>(), lsn(), name(), payload()).prop_map(
            move |(x, flags, lsn, prefix, content)| PgOutputMessage::Message(LogicalMessage {
                xid: sx(x),
                flags,
                lsn,
                prefix,
                content,
            })
        ),
        (any::<u8>(), lsn(), lsn(), ts()).prop_map(|(flags, commit_lsn, end_lsn, commit_time)| {
            PgOutputMessage::Commit(Commit {
                flags,
                commit_lsn,
                end_lsn,
                commit_time,
            })
        }),
        (lsn(), name())
            .prop_map(|(commit_lsn, name)| PgOutputMessage::Origin(Origin { commit_lsn, name })),
        (
            any::<u32>(),
            any::<u32>(),
            name(),
            name(),
            identity,
            proptest::collection::vec(column, 0..6)
        )
            .prop_map(
                move |(x, rel_id, namespace, name, replica_identity, columns)| {
                    PgOutputMessage::Relation(Arc::new(Relation {
                        xid: sx(x),
                        rel_id,
                        namespace,
                        name,
                        replica_identity,
                        columns,
                    }))
                }
            ),
        (any::<u32>(), any::<u32>(), name(), name()).prop_map(move |(x, oid, namespace, name)| {
            PgOutputMessage::Type(TypeMessage {
                xid: sx(x),
                oid,
                namespace,
                name,
            })
        }),
        (any::<u32>(), any::<u32>(), tuple_data()).prop_map(move |(x, rel_id, new)| {
            PgOutputMessage::Insert(Insert {
                xid: sx(x),
                rel_id,
                new,
            })
        }),
        (
            any::<u32>(),
            any::<u32>(),
            proptest::option::of(old_tuple()),
            tuple_data()
        )
            .prop_map(
                move |(x, rel_id, old, new)| PgOutputMessage::Update(Update {
                    xid: sx(x),
                    rel_id,
                    old,
                    new,
                })
            ),
        (any::<u32>(), any::<u32>(), old_tuple()).prop_map(move |(x, rel_id, old)| {
            PgOutputMessage::Delete(Delete {
                xid: sx(x),
                rel_id,
                old,
            })
        }),
        (
            any::<u32>(),
            any::<u8>(),
            proptest::collection::vec(any::<u32>(), 0..6)
        )
            .prop_map(
                move |(x, options, rel_ids)| PgOutputMessage::Truncate(Truncate {
                    xid: sx(x),
                    options,
                    rel_ids,
                })
            ),
        (any::<u32>(), any::<bool>()).prop_map(|(xid, first_segment)| {
            PgOutputMessage::StreamStart(StreamStart { xid, first_segment })
        }),
        Just(PgOutputMessage::StreamStop),
        (any::<u32>(), any::<u8>(), lsn(), lsn(), ts()).prop_map(
            |(xid, flags, commit_lsn, end_lsn, commit_time)| {
                PgOutputMessage::StreamCommit(StreamCommit {
                    xid,
                    flags,
                    commit_lsn,
                    end_lsn,
                    commit_time,
                })
            }
        ),
        (
            any::<u32>(),
            any::<u32>(),
            proptest::option::of((lsn(), ts()))
        )
            .prop_map(
                |(xid, subxid, abort)| PgOutputMessage::StreamAbort(StreamAbort {
                    xid,
                    subxid,
                    abort: abort.map(|(abort_lsn, abort_time)| StreamAbortInfo {
                        abort_lsn,
                        abort_time
                    }),
                })
            ),
        (lsn(), lsn(), ts(), any::<u32>(), name()).prop_map(
            |(prepare_lsn, end_lsn, prepare_time, xid, gid)| {
                PgOutputMessage::BeginPrepare(BeginPrepare {
                    prepare_lsn,
                    end_lsn,
                    prepare_time,
                    xid,
                    gid,
                })
            }
        ),
        prepare_strategy().prop_map(PgOutputMessage::Prepare),
        prepare_strategy().prop_map(PgOutputMessage::StreamPrepare),
        (any::<u8>(), lsn(), lsn(), ts(), any::<u32>(), name()).prop_map(
            |(flags, commit_lsn, end_lsn, commit_time, xid, gid)| {
                PgOutputMessage::CommitPrepared(CommitPrepared {
                    flags,
                    commit_lsn,
                    end_lsn,
                    commit_time,
                    xid,
                    gid,
                })
            }
        ),
        (any::<u8>(), lsn(), lsn(), ts(), ts(), any::<u32>(), name()).prop_map(
            |(flags, prepare_end_lsn, rollback_end_lsn, prepare_time, rollback_time, xid, gid)| {
                PgOutputMessage::RollbackPrepared(RollbackPrepared {
                    flags,
                    prepare_end_lsn,
                    rollback_end_lsn,
                    prepare_time,
                    rollback_time,
                    xid,
                    gid,
                })
            }
        ),
    ]
}

fn message_in_either_state() -> impl Strategy<Value = (bool, PgOutputMessage)> {
    any::<bool>().prop_flat_map(|in_stream| (Just(in_stream), message(in_stream)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..256),
        version in 1u32..=4,
        in_stream in any::<bool>(),
    ) {
        let mut d = if in_stream { streaming_decoder(version, 1) } else { Decoder::new(version) };
        let mut cache = RelationCache::new();
        if let Ok(m) = d.decode(&Bytes::from(data)) {
            cache.observe(&m);
        }
    }

    #[test]
    fn tagged_garbage_never_panics(
        tag in proptest::sample::select(b"BMCORYIUDTSEcAbPKrp".to_vec()),
        rest in proptest::collection::vec(any::<u8>(), 0..128),
        in_stream in any::<bool>(),
    ) {
        let mut data = vec![tag];
        data.extend(rest);
        let mut d = if in_stream { streaming_decoder(4, 1) } else { Decoder::new(4) };
        let _ = d.decode(&Bytes::from(data));
    }

    #[test]
    fn encoded_messages_round_trip((in_stream, msg) in message_in_either_state()) {
        let mut d = if in_stream { streaming_decoder(4, 1) } else { Decoder::new(4) };
        let frame = encode(&msg);
        let decoded = d.decode(&frame);
        prop_assert_eq!(decoded.as_ref(), Ok(&msg), "frame {:02x?}", frame.as_ref());
        // Every strict prefix is rejected, except the protocol 4 Stream Abort whose short
        // form is its own prefix.
        for len in 0..frame.len() {
            let mut d = if in_stream { streaming_decoder(4, 1) } else { Decoder::new(4) };
            let short_abort = matches!(msg, PgOutputMessage::StreamAbort(_)) && len == 9;
            prop_assert!(short_abort || d.decode(&frame.slice(..len)).is_err());
        }
    }
}
