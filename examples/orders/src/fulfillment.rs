//! The fulfillment consumer: ships each order once, however often its event arrives.
//!
//! Kafka delivery from walrus is at-least-once: after walrus is killed, PostgreSQL sends again
//! everything after the slot's confirmed position, and events that were already in Kafka
//! arrive a second time (with the same `id` header). A consumer that acts on every message
//! would ship those orders twice. This one is idempotent:
//!
//! ```text
//!  BEGIN;
//!  INSERT INTO processed_events (event_id) VALUES ($id) ON CONFLICT DO NOTHING;  -- 0 rows: seen
//!  INSERT INTO shipments (...) ...;                                              -- only if 1 row
//!  COMMIT;
//! ```
//!
//! The event id and the effect are committed together: a crash between the two cannot leave
//! a shipment without its id (shipped again later) or an id without its shipment (never
//! shipped). Kafka offsets need no care then: reading from too early only costs time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

/// What the consumer saw, for the report.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Messages received.
    pub received: u64,
    /// Orders shipped (events processed the first time).
    pub shipped: u64,
    /// Messages whose event id was already processed: re-deliveries that did nothing.
    pub duplicates_suppressed: u64,
    /// Messages without an `id` header or an order id in the payload (skipped).
    pub malformed: u64,
    /// Deliveries per event id.
    deliveries: HashMap<String, u32>,
}

impl Stats {
    /// Events delivered more than once: orders a consumer without dedupe would have
    /// fulfilled twice (or more).
    pub fn delivered_more_than_once(&self) -> u64 {
        self.deliveries.values().filter(|n| **n > 1).count() as u64
    }
}

/// Shared stats of a running consumer.
pub type SharedStats = Arc<Mutex<Stats>>;

/// Consumes `topic` (all of `partitions`, from the beginning) and ships the orders of `path`
/// until `stop` turns true.
pub async fn run(
    brokers: &str,
    topic: &str,
    partitions: i32,
    path: &str,
    db: tokio_postgres::Client,
    stats: SharedStats,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let mut db = db;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("fulfillment-{path}"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("creating the fulfillment consumer")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl).context("assigning partitions")?;
    loop {
        let msg = tokio::select! {
            _ = stop.changed() => return Ok(()),
            m = consumer.recv() => m,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                // The broker may be frozen or restarting: librdkafka reconnects by itself.
                tracing::debug!(topic, error = %e, "consume error; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let event_id = msg.headers().and_then(|h| {
            h.iter()
                .find(|h| h.key == "id")
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_owned)
        });
        let order_id = msg
            .payload()
            .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
            .and_then(|v| v["order_id"].as_i64());
        let (Some(event_id), Some(order_id)) = (event_id, order_id) else {
            tracing::warn!(
                topic,
                offset = msg.offset(),
                "message without an id header or order_id; skipped"
            );
            stats.lock().unwrap_or_else(|p| p.into_inner()).malformed += 1;
            continue;
        };
        let fresh = ship_once(&mut db, &event_id, order_id, path).await?;
        let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
        s.received += 1;
        *s.deliveries.entry(event_id).or_default() += 1;
        if fresh {
            s.shipped += 1;
        } else {
            s.duplicates_suppressed += 1;
        }
    }
}

/// Ships order `order_id` unless event `event_id` was processed already; the event id and the
/// shipment are committed in one transaction. Returns whether it shipped.
pub async fn ship_once(
    db: &mut tokio_postgres::Client,
    event_id: &str,
    order_id: i64,
    path: &str,
) -> Result<bool> {
    let tx = db.transaction().await?;
    let fresh = tx
        .execute(
            "INSERT INTO processed_events (event_id) VALUES ($1::text::uuid) ON CONFLICT DO NOTHING",
            &[&event_id],
        )
        .await
        .context("recording the event id")?
        == 1;
    if fresh {
        tx.execute(
            "INSERT INTO shipments (order_id, path, event_id) VALUES ($1, $2, $3::text::uuid)",
            &[&order_id, &path, &event_id],
        )
        .await
        .context("shipping the order")?;
    }
    tx.commit().await.context("committing the shipment")?;
    Ok(fresh)
}
