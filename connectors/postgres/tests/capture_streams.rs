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
//! The streams feed the hot-path benchmark (`benches/hot_path.rs`) and the seed corpus of the
//! `value_parse` fuzz target (`fuzz/`). Regenerate with
//! `cargo test -p walrus-postgres --test capture_streams -- --ignored`.

use std::path::{Path, PathBuf};

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
