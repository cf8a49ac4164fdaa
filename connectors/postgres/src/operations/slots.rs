//! Reading `pg_replication_slots`: the one query and the one model
//! ([`walrus_core::alert::SlotReport`]) behind slot setup, `walrus check`, `walrus status`, the
//! initial snapshot's slot decisions and the watchdog.
//!
//! Columns that not every supported major has are read through `to_jsonb(s)`, so one
//! statement serves PostgreSQL 10 to 18: `wal_status` and `safe_wal_size` exist from 13 on
//! (older servers report lag and retention only), `invalidation_reason` from 17;
//! `safe_wal_size` is null unless `max_slot_wal_keep_size` is set. Lag and retention are
//! computed by the server against its current WAL position (the last received one on a
//! standby).

use tokio_postgres::Client;
use walrus_core::alert::SlotReport;

use crate::error::PgError;

/// Every slot (or the one named by `$1`), with lag and retention computed by the server.
const SLOTS_SQL: &str = "
SELECT slot_name::text, slot_type::text, plugin::text, database::text, active, active_pid,
       (to_jsonb(s) ->> 'wal_status'), confirmed_flush_lsn::text, restart_lsn::text,
       cur::text,
       GREATEST(pg_wal_lsn_diff(cur, confirmed_flush_lsn), 0)::bigint,
       GREATEST(pg_wal_lsn_diff(cur, restart_lsn), 0)::bigint,
       (to_jsonb(s) ->> 'safe_wal_size')::bigint,
       pg_size_bytes(current_setting('max_slot_wal_keep_size', true))::bigint,
       coalesce((to_jsonb(s) ->> 'invalidation_reason') IS NOT NULL, false)
  FROM pg_replication_slots s,
       LATERAL (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()
                            ELSE pg_current_wal_lsn() END AS cur) c
 WHERE $1::text IS NULL OR slot_name = $1
 ORDER BY slot_name";

/// Reads every replication slot of the cluster. `walrus_slot` marks walrus's own.
pub async fn query_slots(client: &Client, walrus_slot: &str) -> Result<Vec<SlotReport>, PgError> {
    read(client, None, walrus_slot).await
}

/// Reads one slot, if it exists.
pub async fn query_slot(client: &Client, slot: &str) -> Result<Option<SlotReport>, PgError> {
    Ok(read(client, Some(slot), slot).await?.into_iter().next())
}

async fn read(
    client: &Client,
    only: Option<&str>,
    walrus_slot: &str,
) -> Result<Vec<SlotReport>, PgError> {
    let rows = client
        .query(SLOTS_SQL, &[&only])
        .await
        .map_err(|e| PgError::sql("reading pg_replication_slots", e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let slot: String = r.get(0);
            SlotReport {
                walrus: slot == walrus_slot,
                slot,
                slot_type: r.get(1),
                plugin: r.get(2),
                database: r.get(3),
                active: r.get(4),
                active_pid: r.get(5),
                wal_status: r.get(6),
                confirmed_flush_lsn: r.get(7),
                restart_lsn: r.get(8),
                current_lsn: r.get::<_, Option<String>>(9).unwrap_or_default(),
                lag_bytes: r.get::<_, Option<i64>>(10).map(|v| v.max(0) as u64),
                retained_bytes: r.get::<_, Option<i64>>(11).map(|v| v.max(0) as u64),
                safe_wal_size: r.get(12),
                max_slot_wal_keep_size: r
                    .get::<_, Option<i64>>(13)
                    .filter(|&v| v >= 0)
                    .map(|v| v as u64),
                invalidated: r.get(14),
                stuck: false,
            }
        })
        .collect())
}
