//! The order service: one request handler, `place_order`, in two modes.
//!
//! - [`Mode::Outbox`]: the order row and its `OrderCreated` event go into PostgreSQL in one
//!   transaction; the outbox row is deleted in that same transaction, so the table stays
//!   empty while the WAL keeps the insert for walrus to relay. If the transaction commits,
//!   the event exists; if it rolls back, neither does. The service never talks to the broker.
//! - [`Mode::Naive`]: commit the order, then publish the event to the broker and wait for the
//!   acknowledgement for as long as a request may take. A failed or timed-out publish is
//!   logged and the request still answers success — the order is committed, and failing the
//!   request would make the client retry an order that exists. This is how the dual write
//!   loses events: the producer's delivery timeout is the request's, so a broker that stops
//!   answering for longer than that drops what was waiting. (A longer producer timeout only
//!   moves the loss: messages buffered in the process die with it on the next deploy or
//!   crash.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use serde_json::json;
use tokio::sync::Mutex;

/// The service's tables and the fulfillment consumer's. In production the consumer's tables
/// live in the consumer's own database; here one throwaway database holds both.
pub const SCHEMA: &str = "
CREATE TABLE orders (
    id          bigserial PRIMARY KEY,
    path        text NOT NULL,          -- 'outbox' or 'naive': which service wrote it
    customer    text NOT NULL,
    total_cents bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE outbox (
    id            uuid PRIMARY KEY,
    aggregatetype text NOT NULL,
    aggregateid   text NOT NULL,
    type          text NOT NULL,
    payload       jsonb
);
-- The fulfillment consumer's idempotency table: one row per processed event id.
CREATE TABLE processed_events (
    event_id     uuid PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT now()
);
-- The consumer's effect. No unique constraint on order_id: a second shipment of an order
-- would show here, so the dedupe is what prevents it.
CREATE TABLE shipments (
    id       bigserial PRIMARY KEY,
    order_id bigint NOT NULL,
    path     text NOT NULL,
    event_id uuid NOT NULL
);
";

/// The aggregate type of order events: walrus routes them to `outbox.event.Order`.
pub const AGGREGATE_TYPE: &str = "Order";
/// The topic walrus's outbox router sends order events to (its default template,
/// `outbox.event.{aggregatetype}`).
pub const OUTBOX_TOPIC: &str = "outbox.event.Order";
/// The topic the naive service publishes to itself.
pub const NAIVE_TOPIC: &str = "orders.naive";
/// The event type.
pub const EVENT_TYPE: &str = "OrderCreated";

/// How the service tells the world about an order.
pub enum Mode {
    /// Order and outbox event in one transaction; walrus relays the event.
    Outbox,
    /// Commit, then publish directly, waiting at most `timeout` for the acknowledgement.
    Naive {
        /// The producer.
        producer: FutureProducer,
        /// The topic.
        topic: String,
        /// The request-sized publish timeout (also the producer's `message.timeout.ms`).
        timeout: Duration,
    },
}

impl Mode {
    /// Naive mode with a producer for `brokers` whose delivery timeout is `timeout`.
    pub fn naive(brokers: &str, topic: &str, timeout: Duration) -> Result<Mode> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("acks", "all")
            // The request handler waits this long; a message still undelivered after it is
            // given up by the producer too (otherwise it would outlive the request silently).
            .set("message.timeout.ms", timeout.as_millis().to_string())
            .set("linger.ms", "5")
            .create()
            .context("creating the naive service's producer")?;
        Ok(Mode::Naive {
            producer,
            topic: topic.to_string(),
            timeout,
        })
    }

    /// The `orders.path` value of this mode.
    pub fn path(&self) -> &'static str {
        match self {
            Mode::Outbox => "outbox",
            Mode::Naive { .. } => "naive",
        }
    }
}

/// The order service: a database connection and a mode.
pub struct OrderService {
    db: Mutex<tokio_postgres::Client>,
    mode: Mode,
    failed_publishes: AtomicU64,
}

impl OrderService {
    /// A service writing through `db`.
    pub fn new(db: tokio_postgres::Client, mode: Mode) -> OrderService {
        OrderService {
            db: Mutex::new(db),
            mode,
            failed_publishes: AtomicU64::new(0),
        }
    }

    /// Publishes that failed or timed out (naive mode), each logged and answered with success.
    pub fn failed_publishes(&self) -> u64 {
        self.failed_publishes.load(Ordering::Relaxed)
    }

    /// The request handler: stores the order and announces it. Returns the order id; an error
    /// means the order was not stored (the client would see a 5xx and retry).
    pub async fn place_order(&self, customer: &str, total_cents: i64) -> Result<i64> {
        match &self.mode {
            Mode::Outbox => self.place_with_outbox(customer, total_cents).await,
            Mode::Naive {
                producer,
                topic,
                timeout,
            } => {
                let (id, event_id) = {
                    let db = self.db.lock().await;
                    let row = db
                        .query_one(
                            "INSERT INTO orders (path, customer, total_cents) VALUES ('naive', $1, $2) \
                             RETURNING id, gen_random_uuid()::text",
                            &[&customer, &total_cents],
                        )
                        .await
                        .context("storing the order")?;
                    (row.get::<_, i64>(0), row.get::<_, String>(1))
                };
                // Committed. Now the second write.
                let payload = order_payload(id, customer, total_cents);
                let key = id.to_string();
                let record = FutureRecord::to(topic).key(&key).payload(&payload).headers(
                    OwnedHeaders::new()
                        .insert(Header {
                            key: "id",
                            value: Some(&event_id),
                        })
                        .insert(Header {
                            key: "eventType",
                            value: Some(EVENT_TYPE),
                        }),
                );
                let sent = tokio::time::timeout(
                    *timeout + Duration::from_millis(500),
                    producer.send(record, Timeout::After(*timeout)),
                )
                .await;
                let error = match sent {
                    Ok(Ok(_)) => None,
                    Ok(Err((e, _))) => Some(e.to_string()),
                    Err(_) => Some(format!("no acknowledgement within {timeout:?}")),
                };
                if let Some(error) = error {
                    self.failed_publishes.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        order_id = id,
                        %error,
                        "publishing OrderCreated failed; the order is committed, answering success"
                    );
                }
                Ok(id)
            }
        }
    }

    async fn place_with_outbox(&self, customer: &str, total_cents: i64) -> Result<i64> {
        let mut db = self.db.lock().await;
        let tx = db.transaction().await?;
        let id: i64 = tx
            .query_one(
                "INSERT INTO orders (path, customer, total_cents) VALUES ('outbox', $1, $2) RETURNING id",
                &[&customer, &total_cents],
            )
            .await
            .context("storing the order")?
            .get(0);
        let payload = order_payload(id, customer, total_cents);
        let event_id: String = tx
            .query_one(
                "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) \
                 VALUES (gen_random_uuid(), $1, $2, $3, $4::text::jsonb) RETURNING id::text",
                &[&AGGREGATE_TYPE, &id.to_string(), &EVENT_TYPE, &payload],
            )
            .await
            .context("storing the outbox event")?
            .get(0);
        // The WAL keeps the insert, which is all walrus reads; the table stays empty.
        tx.execute("DELETE FROM outbox WHERE id = $1::text::uuid", &[&event_id])
            .await
            .context("deleting the outbox row")?;
        tx.commit().await.context("committing the order")?;
        Ok(id)
    }
}

/// The event payload: what fulfillment needs to ship the order.
fn order_payload(id: i64, customer: &str, total_cents: i64) -> String {
    json!({"order_id": id, "customer": customer, "total_cents": total_cents}).to_string()
}
