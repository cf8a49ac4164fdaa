//! Regenerates the captured streams under `tests/fixtures/streams/` (ignored by default).
//!
//! Each `<name>.sql` there holds set-up statements, a `-- capture --` line, then the
//! statements whose changes are captured. This starts a throwaway PostgreSQL (walrus-testkit),
//! runs the set-up in a fresh database, creates a publication for all tables and one pgoutput
//! slot per format, runs the captured part, and writes what the slot decodes — protocol 1, in
//! text and in binary format — to `<name>_text.hex` and `<name>_binary.hex`, one message per
//! line as in `tests/fixtures/pgoutput/`. The session time zone is UTC, as on walrus's
//! replication connection, so timestamptz text matches what walrus receives.
//!
//! `captured_zoo_parses_identically_in_text_and_binary` checks the zoo's capture offline.
//! The streams feed the hot-path benchmark (`benches/hot_path.rs`) and the seed corpus of the
//! `value_parse` fuzz target (`fuzz/`). Regenerate with
//! `cargo test -p walrus-postgres --test capture_streams -- --ignored`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use walrus_core::value::TypeDesc;
use walrus_postgres::decoding::binary::parse_binary_or_hex;
use walrus_postgres::decoding::pgoutput::{ColumnData, Decoder, PgOutputMessage};
use walrus_postgres::decoding::text::{parse_text_desc_or_text, parse_text_or_text, type_name};
use walrus_testkit::PgCluster;

fn streams_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/streams")
}

#[test]
#[ignore = "rewrites the fixtures; run on purpose"]
fn capture_streams() {
    let pg = PgCluster::new().expect("start PostgreSQL");
    let version = pg.psql("postgres", "SELECT version()").unwrap();
    let mut names: Vec<String> = std::fs::read_dir(streams_dir())
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "sql").then(|| p.file_stem().unwrap().to_string_lossy().into())
        })
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no .sql files in {:?}", streams_dir());
    for name in names {
        let sql = std::fs::read_to_string(streams_dir().join(format!("{name}.sql"))).unwrap();
        let (setup, captured) = sql
            .split_once("-- capture --\n")
            .unwrap_or_else(|| panic!("{name}.sql has no '-- capture --' line"));
        let db = format!("cap_{name}");
        pg.psql("postgres", &format!("CREATE DATABASE {db}"))
            .unwrap();
        pg.psql(&db, setup).unwrap();
        pg.psql(
            &db,
            &format!(
                "CREATE PUBLICATION pub FOR ALL TABLES;
                 SELECT pg_create_logical_replication_slot('{db}_text', 'pgoutput');
                 SELECT pg_create_logical_replication_slot('{db}_binary', 'pgoutput');"
            ),
        )
        .unwrap();
        // The harness runs with synchronous_commit off; the slot only decodes flushed WAL.
        pg.psql(&db, &format!("SET synchronous_commit = on;\n{captured}"))
            .unwrap();
        for (format, binary) in [("text", "false"), ("binary", "true")] {
            let query = format!(
                "SELECT encode(data, 'hex') FROM pg_logical_slot_peek_binary_changes('{db}_{format}', \
                 NULL, NULL, 'proto_version', '1', 'publication_names', 'pub', 'binary', '{binary}')"
            );
            let hex = pg
                .psql(&db, &format!("SET timezone = 'UTC';\n{query};"))
                .unwrap();
            let mut out = format!(
                "# Captured from {} with (session TimeZone UTC):\n#   {query}\n\
                 # after running tests/fixtures/streams/{name}.sql (publication pub FOR ALL TABLES).\n",
                version.trim()
            );
            out.push_str(&hex);
            std::fs::write(streams_dir().join(format!("{name}_{format}.hex")), out).unwrap();
        }
    }
}

/// The type zoo's column values, per row, decoded from a captured stream: `(type name, bytes)`
/// per column, `None` for NULL.
fn zoo_values(format: &str) -> Vec<Vec<Option<(String, u32, Bytes)>>> {
    let text = std::fs::read_to_string(streams_dir().join(format!("zoo_{format}.hex"))).unwrap();
    let mut decoder = Decoder::new(1);
    let mut names: HashMap<u32, String> = HashMap::new();
    let mut columns: Vec<u32> = Vec::new();
    let mut rows = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let frame: Vec<u8> = (0..line.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&line[i..i + 2], 16).unwrap())
            .collect();
        match decoder.decode(&Bytes::from(frame)).unwrap() {
            PgOutputMessage::Type(t) => {
                names.insert(t.oid, t.name);
            }
            PgOutputMessage::Relation(r) => {
                columns = r.columns.iter().map(|c| c.type_oid).collect();
            }
            PgOutputMessage::Insert(i) => rows.push(
                columns
                    .iter()
                    .zip(i.new.columns)
                    .map(|(oid, data)| {
                        let name = type_name(*oid)
                            .map(str::to_owned)
                            .or_else(|| names.get(oid).cloned())
                            .unwrap_or_default();
                        match data {
                            ColumnData::Text(b) | ColumnData::Binary(b) => Some((name, *oid, b)),
                            _ => None,
                        }
                    })
                    .collect(),
            ),
            _ => {}
        }
    }
    rows
}

/// What the catalog says about the zoo's user-defined types (see `tests/e2e/types.rs`).
fn zoo_desc(name: &str) -> Option<TypeDesc> {
    let builtin = |oid| TypeDesc::Builtin {
        oid,
        type_modifier: -1,
    };
    let mood = TypeDesc::Enum {
        labels: vec!["sad".into(), "ok".into()],
    };
    Some(match name {
        "mood" => mood,
        "_mood" => TypeDesc::Array(Box::new(mood)),
        "pair" => TypeDesc::Composite {
            name: "pair".into(),
            fields: vec![("a".into(), builtin(23)), ("b".into(), builtin(25))],
        },
        "hstore" => TypeDesc::Hstore,
        "ltree" => TypeDesc::Ltree,
        "citext" => TypeDesc::Citext,
        // pgoutput names a domain by its base type (`logicalrep_write_typ`).
        base => builtin((0..10_000).find(|&oid| type_name(oid) == Some(base))?),
    })
}

/// The committed capture of the type zoo parses without a single fallback in text, and to
/// the same values in binary, except the types whose send format carries something else
/// (`regclass` sends the OID, `tsquery` a tree): the e2e zoo test's claim, offline.
#[test]
fn captured_zoo_parses_identically_in_text_and_binary() {
    let text = zoo_values("text");
    let binary = zoo_values("binary");
    assert_eq!(text.len(), 3, "three rows");
    assert_eq!(text.len(), binary.len());
    let mut compared = 0;
    for (t_row, b_row) in text.iter().zip(&binary) {
        assert_eq!(t_row.len(), 79, "id and 78 zoo columns");
        for (t, b) in t_row.iter().zip(b_row) {
            let (Some((name, oid, t)), Some((_, _, b))) = (t, b) else {
                assert_eq!(t.is_none(), b.is_none(), "NULL in one format only");
                continue;
            };
            let desc = zoo_desc(name);
            let (tv, terr) = match &desc {
                Some(d) => parse_text_desc_or_text(d, t),
                None => parse_text_or_text(*oid, t),
            };
            assert!(terr.is_none(), "{name}: {terr:?}");
            let (bv, berr) = parse_binary_or_hex(desc.as_ref(), *oid, b);
            if matches!(name.as_str(), "regclass" | "tsquery") {
                assert!(berr.is_some(), "{name} is expected to stay hex");
                continue;
            }
            assert!(berr.is_none(), "{name}: {berr:?}");
            // Compared as Debug text: NaN is not equal to itself, but prints the same.
            assert_eq!(
                format!("{tv:?}"),
                format!("{bv:?}"),
                "{name}: text vs binary"
            );
            compared += 1;
        }
    }
    assert!(compared > 150, "{compared} values compared");
}
