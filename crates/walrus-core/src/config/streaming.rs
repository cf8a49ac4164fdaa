//! `[source] streaming`, `spool_dir`, `spool_memory_bytes`, `spool_max_bytes`: large
//! transactions sent by PostgreSQL while they still run (pgoutput protocol 2+, PostgreSQL
//! 14+).
//!
//! With streaming, PostgreSQL does not spill a transaction larger than
//! `logical_decoding_work_mem` to its own disk (`pg_replslot/<slot>/`) and replay it after
//! the commit: it sends the changes in chunks (Stream Start … Stream Stop) as it decodes
//! them, and ends with Stream Commit or Stream Abort. walrus keeps each streamed
//! transaction's messages in a spool — in memory up to `spool_memory_bytes`, then in a file
//! under `spool_dir` — and turns them into events only at Stream Commit, so the events and
//! the confirmed LSN are exactly those of the same transaction sent after its commit
//! (`walrus_postgres::replication::spool`, docs/operations.md "Large transactions").
//! `spool_max_bytes` bounds the disk all open spools may take together: past it walrus
//! stops (fatal, the slot holding the WAL) rather than fill the disk or skip anything.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Config, ConfigError};

/// Default of `[source] streaming`: on where the server can (14+), off before.
pub const DEFAULT_STREAMING: StreamingMode = StreamingMode::Auto;
/// Default of `[source] spool_memory_bytes`: a streamed transaction's messages kept in
/// memory before its spool moves to a file (per open streamed transaction). PostgreSQL
/// streams a transaction once it passes `logical_decoding_work_mem` (64 MiB by default),
/// so most streamed transactions go to disk; small ones (a low `logical_decoding_work_mem`)
/// stay in memory.
pub const DEFAULT_SPOOL_MEMORY_BYTES: usize = 8 * 1024 * 1024;
/// The most `[source] spool_memory_bytes` may be: several streamed transactions may be open
/// at once, each holding up to this much.
pub const MAX_SPOOL_MEMORY_BYTES: usize = 1 << 30;
/// Default of `[source] spool_max_bytes`: the bytes the spools of all open streamed
/// transactions may hold together. Generous — a transaction of tens of millions of rows
/// fits (pgoutput sends roughly the row's text plus a few bytes a column) — yet bounded, so
/// one runaway transaction cannot fill the disk `spool_dir` shares with the config and the
/// logs. `0` means no limit.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 16 * 1024 * 1024 * 1024;
/// The first PostgreSQL major that streams in-progress transactions (pgoutput protocol 2).
pub const STREAMING_MIN_MAJOR: u32 = 14;

/// `[source] streaming`: whether PostgreSQL sends large transactions while they run.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StreamingMode {
    /// On where the server supports it (PostgreSQL 14+), off before.
    #[default]
    Auto,
    /// Always on; refused on a server before PostgreSQL 14.
    On,
    /// Off: PostgreSQL sends each transaction after it commits, spilling large ones to
    /// its own disk while decoding.
    Off,
}

impl StreamingMode {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamingMode::Auto => "auto",
            StreamingMode::On => "on",
            StreamingMode::Off => "off",
        }
    }

    /// Whether to ask a server of PostgreSQL major `major` for streaming. `on` answers true
    /// whatever the major: the caller refuses it before 14 with the key named
    /// (`walrus_postgres::server::refuse_unsupported`).
    pub fn enabled_for(self, major: u32) -> bool {
        match self {
            StreamingMode::Auto => major >= STREAMING_MIN_MAJOR,
            StreamingMode::On => true,
            StreamingMode::Off => false,
        }
    }
}

impl Config {
    /// Where streamed transactions are spooled: `[source] spool_dir`, resolved against the
    /// config file's directory, by default `walrus-spool-<slot>` next to the config file
    /// (beside the snapshot state files). One directory per slot, so two walrus processes
    /// on different slots never share spool files; walrus empties it when a session starts.
    pub fn spool_dir(&self) -> PathBuf {
        let base = self.snapshot.base_dir.clone().unwrap_or_default();
        match &self.source.spool_dir {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => base.join(p),
            None => base.join(format!("walrus-spool-{}", self.source.slot)),
        }
    }
}

/// Checks the streaming keys of `[source]`.
pub(super) fn validate(config: &Config) -> Result<(), ConfigError> {
    let s = &config.source;
    if s.spool_dir
        .as_ref()
        .is_some_and(|d| d.as_os_str().is_empty())
    {
        return Err(ConfigError::Key {
            key: "source.spool_dir".into(),
            message: "must name a directory (or leave it out for walrus-spool-<slot> next to the config file)".into(),
        });
    }
    if s.spool_memory_bytes > MAX_SPOOL_MEMORY_BYTES {
        return Err(ConfigError::Key {
            key: "source.spool_memory_bytes".into(),
            message: format!(
                "{} is more than the {MAX_SPOOL_MEMORY_BYTES} allowed: each open streamed transaction may hold this much in memory",
                s.spool_memory_bytes
            ),
        });
    }
    Ok(())
}

pub(super) fn default_streaming() -> StreamingMode {
    DEFAULT_STREAMING
}

pub(super) fn default_spool_memory_bytes() -> usize {
    DEFAULT_SPOOL_MEMORY_BYTES
}

pub(super) fn default_spool_max_bytes() -> u64 {
    DEFAULT_SPOOL_MAX_BYTES
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(source_extra: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "[source]\nurl = \"postgres://u@h/d\"\nslot = \"app\"\n{source_extra}\n[sink]\ntype = \"stdout\"\n"
        );
        Config::parse_with_env(&text, |_| None)
    }

    #[test]
    fn defaults_are_auto_with_a_spool_next_to_the_config() {
        let mut c = parse("").unwrap();
        assert_eq!(c.source.streaming, StreamingMode::Auto);
        assert_eq!(c.source.spool_memory_bytes, DEFAULT_SPOOL_MEMORY_BYTES);
        assert_eq!(c.source.spool_max_bytes, DEFAULT_SPOOL_MAX_BYTES);
        assert_eq!(
            parse("spool_max_bytes = 0").unwrap().source.spool_max_bytes,
            0,
            "0 is no limit"
        );
        assert_eq!(
            parse("spool_max_bytes = 1048576")
                .unwrap()
                .source
                .spool_max_bytes,
            1 << 20
        );
        let err = parse("spool_max_bytes = -1").unwrap_err().to_string();
        assert!(err.contains("spool_max_bytes"), "{err}");
        c.snapshot
            .set_base_dir(Path::new("/etc/walrus/walrus.toml"));
        assert_eq!(c.spool_dir(), Path::new("/etc/walrus/walrus-spool-app"));
        let mut c = parse("spool_dir = \"spool\"").unwrap();
        c.snapshot
            .set_base_dir(Path::new("/etc/walrus/walrus.toml"));
        assert_eq!(c.spool_dir(), Path::new("/etc/walrus/spool"));
        let c = parse("spool_dir = \"/var/tmp/w\"").unwrap();
        assert_eq!(c.spool_dir(), Path::new("/var/tmp/w"));
    }

    #[test]
    fn modes_parse_and_decide_by_major() {
        for (text, mode) in [
            ("auto", StreamingMode::Auto),
            ("on", StreamingMode::On),
            ("off", StreamingMode::Off),
        ] {
            let c = parse(&format!("streaming = \"{text}\"")).unwrap();
            assert_eq!(c.source.streaming, mode);
            assert_eq!(mode.as_str(), text);
        }
        assert!(!StreamingMode::Auto.enabled_for(13));
        assert!(StreamingMode::Auto.enabled_for(14));
        assert!(StreamingMode::On.enabled_for(13));
        assert!(!StreamingMode::Off.enabled_for(18));
        let err = parse("streaming = \"yes\"").unwrap_err().to_string();
        assert!(err.contains("source.streaming"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = parse("spool_dir = \"\"").unwrap_err().to_string();
        assert!(err.contains("source.spool_dir"), "{err}");
        let err = parse(&format!(
            "spool_memory_bytes = {}",
            MAX_SPOOL_MEMORY_BYTES + 1
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("source.spool_memory_bytes"), "{err}");
        assert_eq!(
            parse("spool_memory_bytes = 0")
                .unwrap()
                .source
                .spool_memory_bytes,
            0
        );
    }
}
