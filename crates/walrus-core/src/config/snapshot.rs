//! `[snapshot]`: the initial snapshot that gives a stream the tables' current contents
//! before their changes, with Debezium's mode names.
//!
//! See `docs/snapshots.md` for the consistency and resume guarantees.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

/// Default number of parallel readers (SQL connections) during a snapshot.
pub const DEFAULT_SNAPSHOT_WORKERS: usize = 2;
/// Default rows per chunk: one `COPY` query, and the unit of resumption.
pub const DEFAULT_SNAPSHOT_CHUNK_SIZE: usize = 20_000;
/// Default time between two progress log lines per table.
pub const DEFAULT_SNAPSHOT_PROGRESS_INTERVAL_MS: u64 = 10_000;
/// Default rows per chunk of an incremental snapshot (Debezium's
/// `incremental.snapshot.chunk.size`): the rows held in memory while a window is open.
pub const DEFAULT_INCREMENTAL_CHUNK_SIZE: usize = 1024;

/// Default of `[snapshot] binary_copy`.
pub const DEFAULT_SNAPSHOT_BINARY_COPY: bool = true;

/// When walrus snapshots the tables (Debezium's `snapshot.mode` names).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// Snapshot when walrus creates the slot (or an interrupted snapshot is to be resumed),
    /// then stream.
    #[default]
    Initial,
    /// Never snapshot: stream changes from the slot only.
    NoData,
    /// Snapshot like `initial`, then exit without streaming (no slot is kept).
    InitialOnly,
    /// Snapshot when there is no usable stream position: the slot is missing, or lost its
    /// WAL (walrus then drops and recreates it), or a snapshot was interrupted.
    WhenNeeded,
    /// Snapshot on every start, then stream.
    Always,
}

impl SnapshotMode {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotMode::Initial => "initial",
            SnapshotMode::NoData => "no_data",
            SnapshotMode::InitialOnly => "initial_only",
            SnapshotMode::WhenNeeded => "when_needed",
            SnapshotMode::Always => "always",
        }
    }
}

/// How snapshot progress is shown (`[snapshot] progress`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProgressMode {
    /// Bars when standard error is a terminal, log lines otherwise.
    #[default]
    Auto,
    /// Always bars on standard error.
    Bar,
    /// Always log lines, every `progress_interval_ms`.
    Log,
}

/// `[snapshot]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// When to snapshot: `initial` (default), `no_data`, `initial_only`, `when_needed`,
    /// `always`.
    #[serde(default)]
    pub mode: SnapshotMode,
    /// Parallel readers, each on its own SQL connection in the same exported snapshot.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Rows per chunk (one `COPY` query; progress is saved per delivered chunk).
    #[serde(default = "default_chunk_size")]
    pub chunk_size: usize,
    /// Where snapshot progress is kept. Default: `walrus-snapshot-<slot>.json` next to the
    /// config file. A relative path is relative to the config file's directory.
    #[serde(default)]
    pub state_file: Option<PathBuf>,
    /// Read tables with `COPY ... (FORMAT binary)` when walrus decodes every column's type
    /// from binary (events are the same; PostgreSQL and walrus spend less CPU); `false`
    /// reads text always.
    #[serde(default = "default_binary_copy")]
    pub binary_copy: bool,
    /// Progress bars or log lines (`auto`: bars on a terminal).
    #[serde(default)]
    pub progress: ProgressMode,
    /// Time between two progress log lines, in milliseconds.
    #[serde(default = "default_progress_interval_ms")]
    pub progress_interval_ms: u64,
    /// Most rows read per second over all workers, to spare a busy primary; 0: no limit.
    #[serde(default)]
    pub max_rows_per_second: u64,
    /// The signal table (`schema.table`, Debezium's `signal.data.collection`) through which
    /// incremental snapshots are started, stopped, paused and resumed, and where their
    /// watermarks are written. walrus creates it (`id text primary key, type text, data
    /// text`) and adds it to the publication. Unset: no incremental snapshots.
    #[serde(default)]
    pub signal_table: Option<String>,
    /// Rows per chunk of an incremental snapshot (one `SELECT` between two watermarks).
    #[serde(default = "default_incremental_chunk_size")]
    pub incremental_chunk_size: usize,
    /// Directory of the config file, for relative paths (set by `Config::load`).
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            mode: SnapshotMode::default(),
            workers: DEFAULT_SNAPSHOT_WORKERS,
            chunk_size: DEFAULT_SNAPSHOT_CHUNK_SIZE,
            state_file: None,
            binary_copy: DEFAULT_SNAPSHOT_BINARY_COPY,
            progress: ProgressMode::default(),
            progress_interval_ms: DEFAULT_SNAPSHOT_PROGRESS_INTERVAL_MS,
            max_rows_per_second: 0,
            signal_table: None,
            incremental_chunk_size: DEFAULT_INCREMENTAL_CHUNK_SIZE,
            base_dir: None,
        }
    }
}

impl SnapshotConfig {
    /// The state file for `slot`, resolved against the config file's directory.
    pub fn state_path(&self, slot: &str) -> PathBuf {
        let base = self.base_dir.clone().unwrap_or_default();
        match &self.state_file {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => base.join(p),
            None => base.join(format!("walrus-snapshot-{slot}.json")),
        }
    }

    /// Where incremental snapshot progress is kept: `<state_file stem>.incremental.json`
    /// beside `state_file` when that is set, else `walrus-incremental-<slot>.json` next to
    /// the config file.
    pub fn incremental_state_path(&self, slot: &str) -> PathBuf {
        let initial = self.state_path(slot);
        match &self.state_file {
            Some(_) => {
                let stem = initial
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "walrus-snapshot".into());
                initial.with_file_name(format!("{stem}.incremental.json"))
            }
            None => initial.with_file_name(format!("walrus-incremental-{slot}.json")),
        }
    }

    /// The signal table as (schema, table), when configured.
    pub fn signal_table_parts(&self) -> Option<(&str, &str)> {
        self.signal_table.as_deref().and_then(|t| t.split_once('.'))
    }

    /// Remembers the config file's directory for relative paths.
    pub fn set_base_dir(&mut self, config_path: &Path) {
        self.base_dir = config_path.parent().map(Path::to_path_buf);
    }
}

fn default_workers() -> usize {
    DEFAULT_SNAPSHOT_WORKERS
}
fn default_chunk_size() -> usize {
    DEFAULT_SNAPSHOT_CHUNK_SIZE
}
fn default_binary_copy() -> bool {
    DEFAULT_SNAPSHOT_BINARY_COPY
}
fn default_progress_interval_ms() -> u64 {
    DEFAULT_SNAPSHOT_PROGRESS_INTERVAL_MS
}
fn default_incremental_chunk_size() -> usize {
    DEFAULT_INCREMENTAL_CHUNK_SIZE
}

/// Checks `[snapshot]`.
pub(super) fn validate(s: &SnapshotConfig) -> Result<(), ConfigError> {
    let bad = |key: &str, message: &str| ConfigError::Key {
        key: key.into(),
        message: message.into(),
    };
    if s.workers == 0 || s.workers > 64 {
        return Err(bad("snapshot.workers", "must be between 1 and 64"));
    }
    if s.chunk_size == 0 {
        return Err(bad("snapshot.chunk_size", "must be at least 1"));
    }
    if s.progress_interval_ms == 0 {
        return Err(bad("snapshot.progress_interval_ms", "must be at least 1"));
    }
    if s.incremental_chunk_size == 0 {
        return Err(bad("snapshot.incremental_chunk_size", "must be at least 1"));
    }
    if let Some(t) = &s.signal_table {
        let ok = t
            .split_once('.')
            .is_some_and(|(schema, table)| !schema.is_empty() && !table.is_empty());
        if !ok {
            return Err(bad(
                "snapshot.signal_table",
                "must be a qualified table name, e.g. \"public.walrus_signal\"",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_with_debezium_names() {
        #[derive(Deserialize)]
        struct W {
            snapshot: SnapshotConfig,
        }
        for (name, mode) in [
            ("initial", SnapshotMode::Initial),
            ("no_data", SnapshotMode::NoData),
            ("initial_only", SnapshotMode::InitialOnly),
            ("when_needed", SnapshotMode::WhenNeeded),
            ("always", SnapshotMode::Always),
        ] {
            let w: W = toml::from_str(&format!("[snapshot]\nmode = \"{name}\"\n")).unwrap();
            assert_eq!(w.snapshot.mode, mode);
            assert_eq!(mode.as_str(), name);
        }
        assert!(toml::from_str::<W>("[snapshot]\nmode = \"never\"\n").is_err());
    }

    #[test]
    fn state_path_is_next_to_the_config() {
        let mut s = SnapshotConfig::default();
        s.set_base_dir(Path::new("/etc/walrus/walrus.toml"));
        assert_eq!(
            s.state_path("app"),
            Path::new("/etc/walrus/walrus-snapshot-app.json")
        );
        s.state_file = Some("state/snap.json".into());
        assert_eq!(
            s.state_path("app"),
            Path::new("/etc/walrus/state/snap.json")
        );
        s.state_file = Some("/var/lib/w.json".into());
        assert_eq!(s.state_path("app"), Path::new("/var/lib/w.json"));
    }

    #[test]
    fn incremental_state_sits_beside_the_initial_state() {
        let mut s = SnapshotConfig::default();
        s.set_base_dir(Path::new("/etc/walrus/walrus.toml"));
        assert_eq!(
            s.incremental_state_path("app"),
            Path::new("/etc/walrus/walrus-incremental-app.json")
        );
        s.state_file = Some("/var/lib/w.json".into());
        assert_eq!(
            s.incremental_state_path("app"),
            Path::new("/var/lib/w.incremental.json")
        );
    }

    #[test]
    fn signal_table_must_be_qualified() {
        let mut s = SnapshotConfig {
            signal_table: Some("walrus_signal".into()),
            ..SnapshotConfig::default()
        };
        let err = validate(&s).unwrap_err().to_string();
        assert!(err.contains("snapshot.signal_table"), "{err}");
        s.signal_table = Some("public.walrus_signal".into());
        assert!(validate(&s).is_ok());
        assert_eq!(s.signal_table_parts(), Some(("public", "walrus_signal")));
    }
}
