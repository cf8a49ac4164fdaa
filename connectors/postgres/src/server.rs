//! The connected server's PostgreSQL major, and what walrus does differently on it.
//!
//! walrus runs on PostgreSQL 10 and later. Later majors added what some of its features
//! stand on (PostgreSQL release notes and the docs of each view and function):
//!
//! | feature | from | on older servers walrus |
//! |---|---|---|
//! | logical replication, pgoutput protocol 1 | 10 | refuses to start (9.x has no pgoutput) |
//! | generated columns (`pg_attribute.attgenerated`) | 12 | has none to leave out |
//! | partitioned tables in publications, `publish_via_partition_root` | 13 | publishes the partitions themselves; refuses `source.publish_via_partition_root` |
//! | `pg_replication_slots.wal_status`, `safe_wal_size`, `max_slot_wal_keep_size` | 13 | watches the slot without WAL-retention alerts |
//! | `pg_current_snapshot()`, `pg_visible_in_snapshot()` | 13 | refuses incremental snapshots (`snapshot.signal_table`) |
//! | pgoutput protocol 2: logical messages, `binary` | 14 | gets no logical messages (heartbeats are not sent; keepalives confirm an idle slot) and receives text values; refuses `heartbeat.emit_events` |
//! | TID range scans | 14 | reads tables without a primary key in one piece in the initial snapshot |
//!
//! Everything that differs is decided here, from `server_version_num`, so a query never
//! names a column or function the server lacks, and a setting the server cannot serve
//! stops walrus at startup with the key and the version it needs ([`PgError::Unsupported`],
//! fatal) instead of failing later in a retry loop. The replication protocol's own
//! differences (pgoutput options, slot command syntax) live in `walrus_replication::version`.

use tokio_postgres::Client;
use walrus_core::config::Config;

use crate::error::PgError;

/// The oldest major walrus runs on.
pub const MIN_MAJOR: u32 = 10;

/// The server's version, as `server_version_num` and `server_version` report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// `server_version_num`: `130023` for 13.23.
    pub num: u32,
    /// The major: `13`; `9` for any 9.x.
    pub major: u32,
    /// `server_version`, e.g. `13.23` or `16.4 (Debian 16.4-1.pgdg120+2)`.
    pub text: String,
}

impl ServerInfo {
    /// Reads the version of the server `client` is connected to.
    pub async fn query(client: &Client) -> Result<Self, PgError> {
        let row = client
            .query_one(
                "SELECT current_setting('server_version_num')::int, current_setting('server_version')",
                &[],
            )
            .await
            .map_err(|e| PgError::sql("reading the server version", e))?;
        Ok(Self::new(row.get::<_, i32>(0).max(0) as u32, row.get(1)))
    }

    /// `num` for a major (`130000` for 13), to compare with [`server_num`].
    pub const fn num_of(major: u32) -> u32 {
        major * 10_000
    }

    /// From `server_version_num` and `server_version`.
    pub fn new(num: u32, text: String) -> Self {
        ServerInfo {
            num,
            major: num / 10_000,
            text,
        }
    }

    /// Whether the server's major is `major` or later.
    pub fn at_least(&self, major: u32) -> bool {
        self.major >= major
    }

    /// `pg_attribute.attgenerated` (generated columns), 12+.
    pub fn has_generated_columns(&self) -> bool {
        self.at_least(12)
    }

    /// Partitioned tables in publications and `publish_via_partition_root`, 13+.
    pub fn publishes_partitioned_tables(&self) -> bool {
        self.at_least(13)
    }

    /// `wal_status` and `safe_wal_size` in `pg_replication_slots`, 13+.
    pub fn has_wal_status(&self) -> bool {
        self.at_least(13)
    }

    /// Logical messages (and `binary`) in pgoutput, 14+.
    pub fn has_pgoutput_messages(&self) -> bool {
        self.at_least(14)
    }

    /// TID range scans (`WHERE ctid >= ... AND ctid < ...` reads only those blocks), 14+.
    pub fn has_tid_range_scans(&self) -> bool {
        self.at_least(14)
    }

    /// Fails with [`PgError::Unsupported`] naming `key` when the server is older than
    /// `needs`.
    pub fn require(
        &self,
        key: &'static str,
        feature: &'static str,
        needs: u32,
    ) -> Result<(), PgError> {
        if self.at_least(needs) {
            Ok(())
        } else {
            Err(PgError::Unsupported {
                key,
                feature,
                needs,
                server: self.text.clone(),
            })
        }
    }

    /// What walrus does differently on this server, one sentence each (for `walrus check`
    /// and the startup log); empty on a current server.
    pub fn differences(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !self.has_generated_columns() {
            out.push("no generated columns to leave out");
        }
        if !self.publishes_partitioned_tables() {
            out.push("partitioned tables are published as their partitions (no publish_via_partition_root)");
        }
        if !self.has_wal_status() {
            out.push("no wal_status/safe_wal_size: the watchdog cannot warn before max_slot_wal_keep_size invalidates the slot");
            out.push("no incremental snapshots (pg_current_snapshot() is 13+)");
        }
        if !self.has_pgoutput_messages() {
            out.push("pgoutput protocol 1: no logical messages (no heartbeats or message events; keepalives confirm an idle slot), column values as text");
        }
        if !self.has_tid_range_scans() {
            out.push("the initial snapshot reads tables without a primary key in one piece (no TID range scans)");
        }
        out
    }
}

/// `server_version_num` of the server `client` is connected to: for the few catalog
/// queries whose text depends on the major (one round trip; they run rarely).
pub async fn server_num(client: &Client) -> Result<u32, PgError> {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| PgError::sql("reading the server version", e))?;
    Ok(row.get::<_, i32>(0).max(0) as u32)
}

/// Refuses, at startup, configuration the server's major cannot serve: each error names
/// the key and the version it needs.
pub fn refuse_unsupported(config: &Config, server: &ServerInfo) -> Result<(), PgError> {
    server.require("source.url", "logical replication with pgoutput", MIN_MAJOR)?;
    if config.source.publish_via_partition_root {
        server.require(
            "source.publish_via_partition_root",
            "publish_via_partition_root",
            13,
        )?;
    }
    if config.snapshot.signal_table.is_some() {
        server.require(
            "snapshot.signal_table",
            "incremental snapshots (pg_current_snapshot())",
            13,
        )?;
    }
    if config.source.streaming == walrus_core::config::StreamingMode::On {
        server.require(
            "source.streaming",
            "streaming of in-progress transactions (use \"auto\" to stream only where the server can)",
            walrus_core::config::STREAMING_MIN_MAJOR,
        )?;
    }
    if config.heartbeat.enabled && config.heartbeat.emit_events {
        server.require(
            "heartbeat.emit_events",
            "heartbeat events (logical messages in pgoutput)",
            14,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra_source: &str, extra: &str) -> Config {
        let text = format!(
            "[source]\nurl = \"postgres://u@h/d\"\n{extra_source}\n{extra}\n[sink]\ntype = \"stdout\"\n"
        );
        Config::parse_with_env(&text, |_| None).unwrap()
    }

    #[test]
    fn majors_from_version_numbers() {
        assert_eq!(ServerInfo::new(130023, "13.23".into()).major, 13);
        assert_eq!(ServerInfo::new(100023, "10.23".into()).major, 10);
        assert_eq!(ServerInfo::new(90624, "9.6.24".into()).major, 9);
        assert_eq!(ServerInfo::new(180004, "18.4".into()).major, 18);
    }

    #[test]
    fn refuses_what_the_major_lacks_naming_key_and_version() {
        let v12 = ServerInfo::new(120022, "12.22".into());
        let v13 = ServerInfo::new(130023, "13.23".into());
        let v14 = ServerInfo::new(140023, "14.23".into());
        let c = config("publish_via_partition_root = true", "");
        let e = refuse_unsupported(&c, &v12).unwrap_err().to_string();
        assert!(
            e.contains("source.publish_via_partition_root")
                && e.contains("PostgreSQL 13")
                && e.contains("12.22"),
            "{e}"
        );
        refuse_unsupported(&c, &v13).unwrap();

        let c = config("", "[snapshot]\nsignal_table = \"public.walrus_signals\"");
        let e = refuse_unsupported(&c, &v12).unwrap_err().to_string();
        assert!(e.contains("snapshot.signal_table"), "{e}");
        refuse_unsupported(&c, &v13).unwrap();

        let c = config("", "[heartbeat]\nemit_events = true");
        let e = refuse_unsupported(&c, &v13).unwrap_err().to_string();
        assert!(
            e.contains("heartbeat.emit_events") && e.contains("PostgreSQL 14"),
            "{e}"
        );
        refuse_unsupported(&c, &v14).unwrap();

        let c = config("streaming = \"on\"", "");
        let e = refuse_unsupported(&c, &v13).unwrap_err().to_string();
        assert!(
            e.contains("source.streaming") && e.contains("PostgreSQL 14") && e.contains("13.23"),
            "{e}"
        );
        refuse_unsupported(&c, &v14).unwrap();
        // `auto` (the default) is never refused: it stays off before 14.
        refuse_unsupported(&config("streaming = \"auto\"", ""), &v12).unwrap();

        let e = refuse_unsupported(&config("", ""), &ServerInfo::new(90624, "9.6.24".into()))
            .unwrap_err();
        assert!(e.to_string().contains("PostgreSQL 10"), "{e}");
        assert_eq!(
            walrus_core::error::Classify::kind(&e).class(),
            walrus_core::error::ErrorClass::Fatal
        );
        // The defaults run everywhere from 10.
        refuse_unsupported(&config("", ""), &ServerInfo::new(100023, "10.23".into())).unwrap();
    }

    #[test]
    fn differences_shrink_with_the_major() {
        let counts: Vec<usize> = [10, 12, 13, 14, 18]
            .iter()
            .map(|m| {
                ServerInfo::new(m * 10_000, format!("{m}.0"))
                    .differences()
                    .len()
            })
            .collect();
        assert!(counts.windows(2).all(|w| w[0] >= w[1]), "{counts:?}");
        assert_eq!(counts[4], 0);
        assert!(counts[0] >= 5);
    }
}
