//! The dual-write problem, end to end, on your machine.
//!
//! An order service must store an order and tell fulfillment about it. Two writes — the
//! database and the broker — and no transaction spanning both. This crate runs the same
//! service two ways, side by side, through the same broker hiccup:
//!
//! ```text
//!  outbox path:  OrderService ──(order + outbox row, one txn; row deleted in it)──▶ PostgreSQL
//!                PostgreSQL WAL ──▶ walrus ([[outbox]] router) ──▶ outbox.event.Order ─┐
//!  naive path:   OrderService ──(order, committed)──▶ PostgreSQL                        │
//!                OrderService ──(publish, wait ≤ request timeout)──▶ orders.naive ──┐   │
//!                                                                                   ▼   ▼
//!                        Fulfillment consumer (idempotent: processed_events + shipment, one txn)
//! ```
//!
//! - [`service`]: the order service, in [`service::Mode::Outbox`] and
//!   [`service::Mode::Naive`] mode, and the schema both use.
//! - [`fulfillment`]: the idempotent consumer: it records each event id in its own table in
//!   the same transaction as the shipment it creates, so a re-delivered event does nothing.
//! - [`scenario`]: a throwaway PostgreSQL and Apache Kafka broker (walrus-testkit), the real
//!   `walrus` binary, N orders at a steady rate, the broker frozen (SIGSTOP) in the middle,
//!   walrus killed (`kill -9`) and restarted once, and the side-by-side [`scenario::Report`].
//!
//! The binary (`cargo run --release -p walrus-example-orders -- scenario`, or
//! `scripts/dual-write-demo.sh`) prints the report; `tests/e2e/dual_write.rs` runs it small in
//! CI. The pattern and its operational duties are in `docs/outbox.md`.

pub mod fulfillment;
pub mod scenario;
pub mod service;
