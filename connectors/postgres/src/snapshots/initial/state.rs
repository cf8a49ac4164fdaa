//! The initial snapshot's state file: where the snapshot stands (phase, tables, and per key
//! or block range the last position the sink delivered), so that a restarted walrus resumes
//! after the last delivered chunk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use walrus_core::config::Config;

use crate::error::PgError;
use crate::snapshots::state_file::save_json_atomically;

/// Version of the state file format.
const STATE_VERSION: u32 = 1;

/// Where a snapshot stands, as kept in the state file.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// walrus was about to create the slot; the snapshot has not started.
    Creating,
    /// Chunks are being read; `tables` says which are delivered.
    Running,
    /// Every chunk was delivered.
    Done,
}

/// The snapshot's progress: what has been *delivered* by the sink, per key range.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    /// Format version.
    pub version: u32,
    /// The slot whose stream this snapshot precedes.
    pub slot: String,
    /// The database.
    pub database: String,
    /// Where the snapshot stands.
    pub phase: Phase,
    /// The LSN streaming starts from (the slot's consistent point, or its confirmed
    /// position when the snapshot was taken over an existing slot).
    #[serde(default)]
    pub stream_from: Option<String>,
    /// Per table (`schema.table`).
    #[serde(default)]
    pub tables: BTreeMap<String, TableState>,
}

/// One table's progress.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableState {
    /// `pg_class.oid`: a table dropped and recreated under the same name starts again.
    pub oid: u32,
    /// `pg_class.relfilenode`: block positions of a keyless table are void after a rewrite.
    pub relfilenode: u32,
    /// `pk`, `ctid` or `whole`.
    pub kind: String,
    /// The key columns the positions refer to.
    pub key_columns: Vec<String>,
    /// Rows delivered.
    pub rows: u64,
    /// Every range delivered.
    pub done: bool,
    /// The ranges the table was split into.
    pub units: Vec<UnitState>,
}

/// One key (or block) range of a table.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnitState {
    /// Exclusive lower bound (key texts, or the first block for `ctid`); `None`: unbounded.
    pub lower: Option<Vec<String>>,
    /// Inclusive upper bound (key texts), or the exclusive end block for `ctid`; `None`:
    /// unbounded.
    pub upper: Option<Vec<String>>,
    /// Last key delivered (or the next block to read for `ctid`); `None`: nothing yet.
    pub last: Option<Vec<String>>,
    /// Delivered completely.
    pub done: bool,
}

impl State {
    /// A new state for `slot`.
    pub fn new(slot: &str, database: &str, phase: Phase) -> State {
        State {
            version: STATE_VERSION,
            slot: slot.to_string(),
            database: database.to_string(),
            phase,
            stream_from: None,
            tables: BTreeMap::new(),
        }
    }

    /// Reads the state for `slot` in `database`; `None` when there is no file or it belongs
    /// to another slot or database.
    pub fn load(path: &Path, slot: &str, database: &str) -> Result<Option<State>, PgError> {
        crate::snapshots::state_file::load_json(
            path,
            "walrus snapshot state",
            "move it away to start over",
            |s: &State| s.slot == slot && s.database == database,
        )
    }

    /// Writes the state atomically (see [`save_json_atomically`]).
    pub fn save(&self, path: &Path) -> Result<(), PgError> {
        save_json_atomically(self, path)
    }

    /// Forgets all table progress (the next snapshot reads everything again).
    pub fn reset_tables(&mut self) {
        self.tables.clear();
    }
}

/// The default state file path for a config (for `walrus status` and docs).
pub fn state_path(config: &Config) -> PathBuf {
    config.snapshot.state_path(&config.source.slot)
}

#[cfg(test)]
mod tests {
    use super::super::plan::key_units;
    use super::*;
    #[test]
    fn state_round_trips_and_ignores_other_slots() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let mut s = State::new("slot", "db", Phase::Running);
        s.tables.insert(
            "public.t".into(),
            TableState {
                oid: 1,
                relfilenode: 2,
                kind: "pk".into(),
                key_columns: vec!["id".into()],
                rows: 5,
                done: false,
                units: key_units(vec![]),
            },
        );
        s.save(&path).unwrap();
        let back = State::load(&path, "slot", "db").unwrap().unwrap();
        assert_eq!(back.tables, s.tables);
        assert!(State::load(&path, "other", "db").unwrap().is_none());
        assert!(State::load(&dir.path().join("none"), "slot", "db")
            .unwrap()
            .is_none());
    }
}
