//! Decodes pgoutput bytes captured from a real PostgreSQL 15 and checks what they say.
//!
//! Each fixture under `tests/fixtures/pgoutput/` holds one hex-encoded message per line, in
//! the order the server produced them, with `#` comment lines giving the SQL that produced
//! them (the tables are described in that directory's README). Decoding a whole file in order
//! through one [`Decoder`] and one [`RelationCache`] is exactly what the replication path does,
//! so these tests catch layout mistakes that hand-assembled bytes would share with the decoder.

use std::path::Path;

use bytes::Bytes;
use walrus_core::Lsn;
use walrus_postgres::decoding::pgoutput::{
    ColumnData, Decoder, OldTuple, PgOutputMessage, RelationCache, ReplicaIdentity, TupleData,
};

/// Every message of a fixture, decoded in order; the relation cache has observed them all.
struct Capture {
    messages: Vec<PgOutputMessage>,
    cache: RelationCache,
}

fn unhex(line: &str) -> Vec<u8> {
    line.as_bytes()
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).expect("ascii hex");
            assert_eq!(pair.len(), 2, "odd hex line {line}");
            u8::from_str_radix(pair, 16).expect("hex")
        })
        .collect()
}

fn capture(name: &str, protocol_version: u32) -> Capture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pgoutput")
        .join(format!("{name}.hex"));
    let text = std::fs::read_to_string(&path).expect("fixture");
    let mut decoder = Decoder::new(protocol_version);
    let mut cache = RelationCache::new();
    let mut messages = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let frame = Bytes::from(unhex(line));
        let message = decoder
            .decode(&frame)
            .unwrap_or_else(|e| panic!("{name}.hex line {}: {e}", n + 1));
        cache.observe(&message);
        // Every change must resolve against the schema announced before it.
        match &message {
            PgOutputMessage::Insert(i) => {
                cache
                    .get_for_tuple(i.rel_id, &i.new)
                    .expect("insert schema");
            }
            PgOutputMessage::Update(u) => {
                cache
                    .get_for_tuple(u.rel_id, &u.new)
                    .expect("update schema");
            }
            PgOutputMessage::Delete(d) => {
                cache
                    .get_for_tuple(d.rel_id, d.old.tuple())
                    .expect("delete schema");
            }
            _ => {}
        }
        messages.push(message);
    }
    assert!(!decoder.in_stream(), "{name}: ends inside a stream");
    Capture { messages, cache }
}

/// The tuple's values as text, `None` for NULL; panics on unchanged TOAST or binary.
fn texts(t: &TupleData) -> Vec<Option<&str>> {
    t.columns
        .iter()
        .map(|c| match c {
            ColumnData::Null => None,
            ColumnData::Text(b) => Some(std::str::from_utf8(b).expect("utf8")),
            other => panic!("not text: {other:?}"),
        })
        .collect()
}

impl Capture {
    fn table(&self, rel_id: u32) -> String {
        let rel = self.cache.get(rel_id).expect("known relation");
        format!("{}.{}", rel.namespace, rel.name)
    }

    fn kinds(&self) -> String {
        self.messages
            .iter()
            .map(|m| m.kind().name())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Begin and Commit pair up, with matching LSNs.
    fn assert_transactions_well_formed(&self) {
        let mut open = None;
        for m in &self.messages {
            match m {
                PgOutputMessage::Begin(b) => {
                    assert!(open.is_none(), "nested Begin");
                    open = Some(b.final_lsn);
                }
                PgOutputMessage::Commit(c) => {
                    assert_eq!(open.take(), Some(c.commit_lsn));
                    assert!(c.end_lsn > c.commit_lsn);
                }
                _ => {}
            }
        }
        assert!(open.is_none(), "unterminated transaction");
    }
}

#[test]
fn dml_on_default_and_full_replica_identity() {
    let cap = capture("proto1_dml", 1);
    cap.assert_transactions_well_formed();
    let changes: Vec<&PgOutputMessage> = cap
        .messages
        .iter()
        .filter(|m| {
            matches!(
                m,
                PgOutputMessage::Insert(_)
                    | PgOutputMessage::Update(_)
                    | PgOutputMessage::Delete(_)
            )
        })
        .collect();
    assert_eq!(changes.len(), 9);

    let rels: Vec<_> = cap
        .messages
        .iter()
        .filter_map(|m| match m {
            PgOutputMessage::Relation(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(rels.len(), 2);
    let (def, full) = (rels[0], rels[1]);
    assert_eq!(
        (def.namespace.as_str(), def.name.as_str()),
        ("public", "t_default")
    );
    assert_eq!(def.replica_identity, ReplicaIdentity::Default);
    let cols: Vec<_> = def
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.is_key(), c.type_oid, c.type_modifier))
        .collect();
    assert_eq!(
        cols,
        vec![
            ("id", true, 23, -1),
            ("name", false, 25, -1),
            ("qty", false, 23, -1)
        ]
    );
    assert_eq!(full.name, "t_full");
    assert_eq!(full.replica_identity, ReplicaIdentity::Full);
    // With REPLICA IDENTITY FULL every column is part of the identity.
    assert!(full.columns.iter().all(|c| c.is_key()));

    let PgOutputMessage::Insert(i) = changes[0] else {
        panic!()
    };
    assert_eq!(cap.table(i.rel_id), "public.t_default");
    assert_eq!(texts(&i.new), [Some("1"), Some("alice"), Some("10")]);
    let PgOutputMessage::Insert(i) = changes[1] else {
        panic!()
    };
    assert_eq!(texts(&i.new), [Some("2"), None, Some("20")]);

    // A non-key update under the default identity sends no old tuple.
    let PgOutputMessage::Update(u) = changes[2] else {
        panic!()
    };
    assert_eq!(u.old, None);
    assert_eq!(texts(&u.new), [Some("1"), Some("alice"), Some("11")]);

    // Changing the primary key sends the old key ('K'), other columns null.
    let PgOutputMessage::Update(u) = changes[3] else {
        panic!()
    };
    let Some(OldTuple::Key(old)) = &u.old else {
        panic!("want old key, got {:?}", u.old)
    };
    assert_eq!(texts(old), [Some("2"), None, None]);
    assert_eq!(texts(&u.new), [Some("3"), None, Some("20")]);

    let PgOutputMessage::Delete(d) = changes[4] else {
        panic!()
    };
    let OldTuple::Key(old) = &d.old else {
        panic!("want key")
    };
    assert_eq!(texts(old), [Some("1"), None, None]);

    let PgOutputMessage::Insert(i) = changes[5] else {
        panic!()
    };
    assert_eq!(cap.table(i.rel_id), "public.t_full");

    // REPLICA IDENTITY FULL sends the whole old row ('O') on every update and delete.
    let PgOutputMessage::Update(u) = changes[6] else {
        panic!()
    };
    let Some(OldTuple::Full(old)) = &u.old else {
        panic!("want old row")
    };
    assert_eq!(texts(old), [Some("1"), Some("first")]);
    assert_eq!(texts(&u.new), [Some("1"), Some("second")]);
    let PgOutputMessage::Update(u) = changes[7] else {
        panic!()
    };
    let Some(OldTuple::Full(old)) = &u.old else {
        panic!("want old row")
    };
    assert_eq!(texts(old), [Some("1"), Some("second")]);
    assert_eq!(texts(&u.new), [Some("5"), Some("second")]);
    let PgOutputMessage::Delete(d) = changes[8] else {
        panic!()
    };
    let OldTuple::Full(old) = &d.old else {
        panic!("want old row")
    };
    assert_eq!(texts(old), [Some("5"), Some("second")]);
}

#[test]
fn binary_mode_values() {
    let cap = capture("proto1_binary", 1);
    let ins = cap
        .messages
        .iter()
        .find_map(|m| match m {
            PgOutputMessage::Insert(i) => Some(i),
            _ => None,
        })
        .expect("insert");
    let values: Vec<&[u8]> = ins
        .new
        .columns
        .iter()
        .map(|c| match c {
            ColumnData::Binary(b) => b.as_ref(),
            other => panic!("not binary: {other:?}"),
        })
        .collect();
    assert_eq!(
        values,
        [&100i32.to_be_bytes()[..], b"bin", &42i32.to_be_bytes()[..]]
    );
}

#[test]
fn unchanged_toast_column() {
    let cap = capture("proto1_toast", 1);
    cap.assert_transactions_well_formed();
    let mut it = cap.messages.iter().filter_map(|m| match m {
        PgOutputMessage::Insert(i) => Some((None, &i.new)),
        PgOutputMessage::Update(u) => Some((Some(&u.old), &u.new)),
        _ => None,
    });
    let (_, inserted) = it.next().expect("insert");
    let ColumnData::Text(big) = &inserted.columns[1] else {
        panic!("big value")
    };
    assert_eq!(big.len(), 200 * 32);
    let (old, updated) = it.next().expect("update");
    assert_eq!(old, Some(&None));
    assert_eq!(
        updated.columns[0],
        ColumnData::Text(Bytes::from_static(b"1"))
    );
    assert_eq!(updated.columns[1], ColumnData::UnchangedToast);
    assert_eq!(
        updated.columns[2],
        ColumnData::Text(Bytes::from_static(b"1"))
    );
}

#[test]
fn schema_changes_send_new_relations() {
    let cap = capture("proto1_schema_change", 1);
    cap.assert_transactions_well_formed();
    // Replay the stream, resolving each insert against the schema in force at that point.
    let mut cache = RelationCache::new();
    let mut seen = Vec::new();
    for m in &cap.messages {
        cache.observe(m);
        if let PgOutputMessage::Insert(i) = m {
            let rel = cache.get_for_tuple(i.rel_id, &i.new).expect("schema");
            let names: Vec<&str> = rel.columns.iter().map(|c| c.name.as_str()).collect();
            seen.push((names.join(","), texts(&i.new)));
        }
    }
    assert_eq!(
        seen,
        vec![
            ("id,a".to_string(), vec![Some("1"), Some("before")]),
            (
                "id,a,b".to_string(),
                vec![Some("2"), Some("added"), Some("7")]
            ),
            ("id,b".to_string(), vec![Some("3"), Some("8")]),
        ]
    );
    let relations = cap
        .messages
        .iter()
        .filter(|m| matches!(m, PgOutputMessage::Relation(_)))
        .count();
    assert_eq!(relations, 3);
}

#[test]
fn truncate_with_options() {
    let cap = capture("proto1_truncate", 1);
    cap.assert_transactions_well_formed();
    let truncates: Vec<_> = cap
        .messages
        .iter()
        .filter_map(|m| match m {
            PgOutputMessage::Truncate(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(truncates.len(), 2);
    let t = truncates[0];
    assert!(t.cascade() && t.restart_identity());
    assert_eq!(t.xid, None);
    let names: Vec<String> = t.rel_ids.iter().map(|id| cap.table(*id)).collect();
    assert_eq!(names, ["public.t_parent", "public.t_child"]);
    let t = truncates[1];
    assert!(!t.cascade() && !t.restart_identity());
    let names: Vec<String> = t.rel_ids.iter().map(|id| cap.table(*id)).collect();
    assert_eq!(names, ["public.t_default"]);
}

#[test]
fn logical_messages_transactional_and_not() {
    let cap = capture("proto1_messages", 1);
    cap.assert_transactions_well_formed();
    assert_eq!(cap.kinds(), "Message,Begin,Message,Commit");
    let PgOutputMessage::Message(m) = &cap.messages[0] else {
        panic!()
    };
    assert!(!m.transactional());
    assert_eq!(m.prefix, "walrus.nontx");
    assert_eq!(m.content.as_ref(), [0x00, 0xff]);
    let PgOutputMessage::Message(m) = &cap.messages[2] else {
        panic!()
    };
    assert!(m.transactional());
    assert_eq!(m.prefix, "walrus.tx");
    assert_eq!(m.content.as_ref(), b"hello");
    let PgOutputMessage::Begin(b) = &cap.messages[1] else {
        panic!()
    };
    assert!(m.lsn <= b.final_lsn);
}

#[test]
fn user_defined_enum_type() {
    let cap = capture("proto1_enum_type", 1);
    assert_eq!(cap.kinds(), "Begin,Type,Relation,Insert,Commit");
    let PgOutputMessage::Type(ty) = &cap.messages[1] else {
        panic!()
    };
    assert_eq!(
        (ty.namespace.as_str(), ty.name.as_str()),
        ("public", "mood")
    );
    let PgOutputMessage::Relation(rel) = &cap.messages[2] else {
        panic!()
    };
    assert_eq!(rel.columns[1].name, "m");
    assert_eq!(rel.columns[1].type_oid, ty.oid);
    let name = cap.cache.type_name(ty.oid).expect("type name cached");
    assert_eq!(name.name, "mood");
    let PgOutputMessage::Insert(i) = &cap.messages[3] else {
        panic!()
    };
    assert_eq!(texts(&i.new), [Some("1"), Some("happy")]);
}

#[test]
fn replication_origin() {
    let cap = capture("proto1_origin", 1);
    cap.assert_transactions_well_formed();
    assert_eq!(cap.kinds(), "Begin,Origin,Relation,Insert,Commit");
    let PgOutputMessage::Origin(o) = &cap.messages[1] else {
        panic!()
    };
    assert_eq!(o.name, "upstream_a");
    assert_eq!(o.commit_lsn, "0/ABCDEF".parse::<Lsn>().unwrap());
    // pg_replication_origin_xact_setup set the commit time to 2024-01-02 03:04:05 UTC.
    let PgOutputMessage::Begin(b) = &cap.messages[0] else {
        panic!()
    };
    assert_eq!(b.commit_time.to_unix_micros(), 1_704_164_645_000_000);
}

/// Inserts with their xid, from a streamed capture.
fn streamed_inserts(cap: &Capture) -> Vec<(Option<u32>, i64)> {
    cap.messages
        .iter()
        .filter_map(|m| match m {
            PgOutputMessage::Insert(i) => {
                let id = texts(&i.new)[0].expect("id").parse().expect("int");
                Some((i.xid, id))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn streamed_transaction_commit() {
    let cap = capture("proto2_stream_commit", 2);
    let PgOutputMessage::StreamStart(first) = &cap.messages[0] else {
        panic!()
    };
    assert!(first.first_segment);
    let xid = first.xid;
    let starts: Vec<bool> = cap
        .messages
        .iter()
        .filter_map(|m| match m {
            PgOutputMessage::StreamStart(s) => {
                assert_eq!(s.xid, xid);
                Some(s.first_segment)
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        starts,
        [true, false],
        "the transaction was streamed in two chunks"
    );

    let PgOutputMessage::Message(m) = &cap.messages[1] else {
        panic!()
    };
    assert_eq!((m.xid, m.prefix.as_str()), (Some(xid), "walrus.stream"));
    assert_eq!(m.content.as_ref(), b"in stream");
    let PgOutputMessage::Relation(r) = &cap.messages[2] else {
        panic!()
    };
    assert_eq!((r.xid, r.name.as_str()), (Some(xid), "t_stream"));

    let inserts = streamed_inserts(&cap);
    assert_eq!(inserts.len(), 600);
    assert!(inserts.iter().all(|(x, _)| *x == Some(xid)));
    assert_eq!(
        inserts.iter().map(|(_, id)| *id).collect::<Vec<_>>(),
        (1..=600).collect::<Vec<_>>()
    );

    let Some(PgOutputMessage::StreamCommit(c)) = cap.messages.last() else {
        panic!()
    };
    assert_eq!(c.xid, xid);
    assert!(c.end_lsn > c.commit_lsn);
}

#[test]
fn streamed_subtransaction_abort() {
    let cap = capture("proto2_stream_subxact_abort", 2);
    let abort = cap
        .messages
        .iter()
        .find_map(|m| match m {
            PgOutputMessage::StreamAbort(a) => Some(a),
            _ => None,
        })
        .expect("stream abort");
    assert_ne!(
        abort.xid, abort.subxid,
        "only the savepoint was rolled back"
    );
    assert_eq!(abort.abort, None, "protocol 2 has no abort LSN");
    // Changes made inside the subtransaction carry the subtransaction's xid.
    let inserts = streamed_inserts(&cap);
    assert_eq!(inserts.first(), Some(&(Some(abort.xid), 2000)));
    // ROLLBACK TO SAVEPOINT leaves the savepoint in place, so the later insert runs in a new
    // subtransaction: neither the top-level xid nor the aborted one.
    let &(last_xid, last_id) = inserts.last().expect("inserts");
    assert_eq!(last_id, 2999);
    assert!(last_xid.is_some() && last_xid != Some(abort.subxid));
    let in_sub: Vec<i64> = inserts
        .iter()
        .filter(|(x, _)| *x == Some(abort.subxid))
        .map(|(_, id)| *id)
        .collect();
    assert!(!in_sub.is_empty());
    assert!(in_sub.iter().all(|id| (2001..=2600).contains(id)));
    let Some(PgOutputMessage::StreamCommit(c)) = cap.messages.last() else {
        panic!()
    };
    assert_eq!(c.xid, abort.xid);
}

#[test]
fn two_phase_commit_and_rollback() {
    let cap = capture("proto3_two_phase", 3);
    assert_eq!(
        cap.kinds(),
        "Begin Prepare,Relation,Insert,Prepare,Commit Prepared,\
         Begin Prepare,Insert,Prepare,Rollback Prepared"
    );
    let PgOutputMessage::BeginPrepare(b) = &cap.messages[0] else {
        panic!()
    };
    let PgOutputMessage::Prepare(p) = &cap.messages[3] else {
        panic!()
    };
    let PgOutputMessage::CommitPrepared(c) = &cap.messages[4] else {
        panic!()
    };
    assert_eq!(b.gid, "walrus_gid_commit");
    assert_eq!((p.gid.as_str(), p.xid), (b.gid.as_str(), b.xid));
    assert_eq!((p.prepare_lsn, p.end_lsn), (b.prepare_lsn, b.end_lsn));
    assert_eq!((c.gid.as_str(), c.xid), (b.gid.as_str(), b.xid));
    assert!(c.commit_lsn >= p.end_lsn);
    let PgOutputMessage::Insert(i) = &cap.messages[2] else {
        panic!()
    };
    assert_eq!(texts(&i.new)[1], Some("prepared"));

    let PgOutputMessage::BeginPrepare(b) = &cap.messages[5] else {
        panic!()
    };
    let PgOutputMessage::RollbackPrepared(r) = &cap.messages[8] else {
        panic!()
    };
    assert_eq!(b.gid, "walrus_gid_rollback");
    assert_eq!((r.gid.as_str(), r.xid), (b.gid.as_str(), b.xid));
    assert_eq!(r.prepare_end_lsn, b.end_lsn);
    assert!(r.rollback_end_lsn > r.prepare_end_lsn);
    assert!(r.rollback_time >= r.prepare_time);
}

#[test]
fn streamed_prepare() {
    let cap = capture("proto3_stream_prepare", 3);
    let PgOutputMessage::StreamStart(s) = &cap.messages[0] else {
        panic!()
    };
    let inserts = streamed_inserts(&cap);
    assert_eq!(inserts.len(), 600);
    assert!(inserts.iter().all(|(x, _)| *x == Some(s.xid)));
    let n = cap.messages.len();
    let PgOutputMessage::StreamPrepare(p) = &cap.messages[n - 2] else {
        panic!()
    };
    let PgOutputMessage::CommitPrepared(c) = &cap.messages[n - 1] else {
        panic!()
    };
    assert_eq!((p.xid, p.gid.as_str()), (s.xid, "walrus_gid_stream"));
    assert_eq!((c.xid, c.gid.as_str()), (s.xid, "walrus_gid_stream"));
}

#[test]
fn every_truncation_of_every_captured_message_is_an_error() {
    for (name, version) in [
        ("proto1_dml", 1),
        ("proto1_toast", 1),
        ("proto1_truncate", 1),
        ("proto1_messages", 1),
        ("proto3_two_phase", 3),
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/pgoutput")
            .join(format!("{name}.hex"));
        let text = std::fs::read_to_string(path).expect("fixture");
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let frame = Bytes::from(unhex(line));
            for len in 0..frame.len() {
                let mut d = Decoder::new(version);
                assert!(
                    d.decode(&frame.slice(..len)).is_err(),
                    "{name}: {line} at {len}"
                );
            }
        }
    }
}
