//! The incremental snapshot's progress file: tables queued, the current table's last
//! delivered key and maximum key, paused or not, and the signal ids already acted on.

use std::collections::VecDeque;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::PgError;

/// Version of the progress file format.
pub(super) const STATE_VERSION: u32 = 1;
/// Signal ids remembered so that a signal PostgreSQL sends again is not acted on twice.
pub(super) const SIGNALS_REMEMBERED: usize = 256;

/// Incremental snapshot progress, as kept in its file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct IncrementalState {
    /// Format version.
    pub version: u32,
    /// The slot whose stream carries the snapshot.
    pub slot: String,
    /// The database.
    pub database: String,
    /// No chunks are read while paused.
    #[serde(default)]
    pub paused: bool,
    /// Tables still to read, the current one first.
    #[serde(default)]
    pub tables: VecDeque<TableProgress>,
    /// Ids of the newest signals acted on.
    #[serde(default)]
    pub signals_seen: VecDeque<String>,
}

/// One table of an incremental snapshot.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableProgress {
    /// `schema.table`.
    pub table: String,
    /// Extra SQL condition on the rows read (`additional-conditions`).
    #[serde(default)]
    pub filter: Option<String>,
    /// Primary key (as text, in key order) of the last row of the last delivered chunk.
    #[serde(default)]
    pub last: Option<Vec<String>>,
    /// The largest primary key when the table's snapshot began; rows above it are inserts
    /// that streaming delivers anyway.
    #[serde(default)]
    pub max: Option<Vec<String>>,
    /// Rows emitted so far.
    #[serde(default)]
    pub rows: u64,
}

impl IncrementalState {
    /// Reads the progress for `slot` in `database`; a fresh state when there is no file or
    /// it belongs to another slot or database.
    pub fn load(path: &Path, slot: &str, database: &str) -> Result<IncrementalState, PgError> {
        let fresh = IncrementalState {
            version: STATE_VERSION,
            slot: slot.to_string(),
            database: database.to_string(),
            ..IncrementalState::default()
        };
        let state = crate::snapshots::state_file::load_json(
            path,
            "walrus incremental snapshot state",
            "move it away to forget the incremental snapshot",
            |s: &IncrementalState| s.slot == slot && s.database == database,
        )?;
        Ok(state.unwrap_or(fresh))
    }

    /// Writes the progress atomically (temporary file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<(), PgError> {
        crate::snapshots::state_file::save_json_atomically(self, path)
    }

    /// Remembers a signal id; false when it was acted on already.
    pub(super) fn first_sight(&mut self, id: &str) -> bool {
        if self.signals_seen.iter().any(|s| s == id) {
            return false;
        }
        self.signals_seen.push_back(id.to_string());
        while self.signals_seen.len() > SIGNALS_REMEMBERED {
            self.signals_seen.pop_front();
        }
        true
    }
}
