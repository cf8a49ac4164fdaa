//! Writes the seed corpus of the `value_parse` fuzz target from the captured streams in
//! `connectors/postgres/tests/fixtures/streams/` (the type zoo, and the wide and narrow tables
//! of the benchmarks): every non-null column value of every Insert, in the format it was
//! captured in, becomes one input for its column's type.
//!
//! `cargo run --bin seed_value_parse` (from `fuzz/`, on stable) writes `corpus/value_parse/`.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use walrus_fuzz::{input, target_index, targets};
use walrus_postgres::decoding::pgoutput::{ColumnData, Decoder, PgOutputMessage};
use walrus_postgres::decoding::text::type_name;

fn main() {
    let streams =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../connectors/postgres/tests/fixtures/streams");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/value_parse");
    std::fs::create_dir_all(&out).expect("create corpus dir");
    let mut written = 0;
    let mut seen = std::collections::HashSet::new();
    let mut files: Vec<_> = std::fs::read_dir(&streams)
        .expect("streams dir")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "hex"))
        .collect();
    files.sort();
    for file in files {
        let binary = file.to_string_lossy().ends_with("_binary.hex");
        let mut decoder = Decoder::new(1);
        // Type OIDs of the stream's Type messages -> their names.
        let mut names: HashMap<u32, String> = HashMap::new();
        let mut columns: Vec<u32> = Vec::new();
        let mut inserts = 0;
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let bytes: Vec<u8> = (0..line.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&line[i..i + 2], 16).expect("hex"))
                .collect();
            let msg = decoder
                .decode(&Bytes::from(bytes))
                .expect("captured message");
            match msg {
                PgOutputMessage::Type(t) => {
                    names.insert(t.oid, t.name.clone());
                }
                PgOutputMessage::Relation(r) => {
                    columns = r.columns.iter().map(|c| c.type_oid).collect();
                }
                // The zoo has three rows of edge values; the benchmark tables' rows differ
                // only in their numbers, so two of theirs are enough.
                PgOutputMessage::Insert(ins) if inserts < 3 => {
                    inserts += 1;
                    for (oid, data) in columns.iter().zip(&ins.new.columns) {
                        let (ColumnData::Text(v) | ColumnData::Binary(v)) = data else {
                            continue;
                        };
                        let name = type_name(*oid)
                            .map(str::to_owned)
                            .or_else(|| names.get(oid).cloned());
                        let Some(index) = name.as_deref().and_then(target_index) else {
                            eprintln!("no fuzz target type for oid {oid} ({name:?})");
                            continue;
                        };
                        // Two option sets per value: the defaults, and every alternative mode.
                        for (flags, modes) in [(0u8, 0u8), (0xFE, 0x07)] {
                            let seed = input(index, binary, flags, modes, v);
                            if !seen.insert(seed.clone()) {
                                continue;
                            }
                            let fname = format!(
                                "{}-{}-{}-{written}",
                                targets()[index].name,
                                if binary { "bin" } else { "text" },
                                flags
                            );
                            std::fs::write(out.join(fname), seed).unwrap();
                            written += 1;
                        }
                    }
                }
                _ => {}
            }
        }
    }
    println!("wrote {written} seeds to {}", out.display());
}
