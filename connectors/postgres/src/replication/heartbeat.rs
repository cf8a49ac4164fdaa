//! Heartbeats: a non-transactional logical message on walrus's database every
//! `[heartbeat].interval_ms`, on an ordinary SQL connection.
//!
//! `pg_logical_emit_message(false, '<prefix>', '<µs since the Unix epoch>')` writes a WAL
//! record that PostgreSQL decodes for walrus's slot at once, outside any transaction (see
//! PostgreSQL's docs, "Generic WAL / logical messages"). The source recognises the prefix,
//! emits no event for it (unless `[heartbeat].emit_events`), and treats its position as
//! delivered once everything before it is, so:
//!
//! - the slot's confirmed position advances even when nothing else makes walrus confirm
//!   (the walsender's keepalives also let walrus confirm on a quiet database, but only when
//!   the walsender sends them; a heartbeat is a position walrus itself put in the stream);
//! - the time lag (now minus the newest delivered commit time) stays a true end-to-end
//!   measure on a quiet database: a heartbeat that does not come back through the sink
//!   within a few intervals means the pipeline is stuck, not that the database is quiet.
//!
//! The content is walrus's own clock, so the time lag of a heartbeat is free of clock skew
//! between walrus and the server. `[heartbeat].action_query` (Debezium's
//! `heartbeat.action.query`) runs in the same round, e.g. to update a published table.

use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::Client;
use tracing::Instrument;
use walrus_core::config::{HeartbeatConfig, SourceConfig};
use walrus_core::status::Status;
use walrus_core::telemetry;

use crate::conn::ConnParams;

/// Writes one heartbeat when `message` (the server's pgoutput sends logical messages),
/// and runs the action query, if any.
pub async fn beat(
    client: &Client,
    heartbeat: &HeartbeatConfig,
    message: bool,
) -> Result<(), tokio_postgres::Error> {
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
        .to_string();
    if message {
        client
            .execute(
                "SELECT pg_logical_emit_message(false, $1::text, $2::text)",
                &[&heartbeat.prefix, &now_us],
            )
            .await?;
    }
    if let Some(q) = &heartbeat.action_query {
        client.batch_execute(q).await?;
    }
    Ok(())
}

/// Emits heartbeats until `shutdown` turns true. Runs beside the retry loop: a heartbeat
/// written while walrus is not streaming is read when it streams again.
pub async fn run(
    source: SourceConfig,
    heartbeat: HeartbeatConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let span = tracing::info_span!("heartbeat", slot = %source.slot);
    async move {
        let params = match ConnParams::from_config(&source) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "heartbeats cannot start");
                return;
            }
        };
        let mut ticker = tokio::time::interval(Duration::from_millis(heartbeat.interval_ms));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut client: Option<Client> = None;
        let mut failing = false;
        // Whether the server's pgoutput sends logical messages (14+); a heartbeat message
        // walrus never receives back would only fill WAL.
        let mut messages = true;
        tracing::info!(
            interval_ms = heartbeat.interval_ms,
            prefix = %heartbeat.prefix,
            "heartbeats started"
        );
        loop {
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                    continue;
                }
                _ = ticker.tick() => {}
            }
            if client.as_ref().is_none_or(|c| c.is_closed()) {
                client = params.connect_sql().await.ok();
                if let Some(c) = &client {
                    messages = match crate::server::ServerInfo::query(c).await {
                        Ok(server) => {
                            if !server.has_pgoutput_messages() && messages {
                                tracing::info!(server = %server.text, "pgoutput sends logical messages from PostgreSQL 14 on: no heartbeat messages (keepalives confirm the slot on a quiet database); the action query, if any, still runs");
                            }
                            server.has_pgoutput_messages()
                        }
                        Err(_) => messages,
                    };
                }
            }
            let result = match &client {
                Some(c) => beat(c, &heartbeat, messages).await.map_err(|e| e.to_string()),
                None => Err("cannot connect".to_string()),
            };
            match result {
                Ok(()) => {
                    if messages {
                        metrics::counter!(telemetry::HEARTBEATS_SENT_TOTAL).increment(1);
                        Status::global().heartbeat_sent();
                    }
                    if failing {
                        tracing::info!("heartbeats succeed again");
                        failing = false;
                    }
                }
                Err(error) => {
                    client = None;
                    if !failing {
                        tracing::warn!(%error, "heartbeat failed; retrying every interval");
                        failing = true;
                    }
                }
            }
        }
    }
    .instrument(span)
    .await;
}
