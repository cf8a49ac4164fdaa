//! Event formats: how a [`crate::event::ChangeEvent`] becomes the key and value bytes of a
//! [`crate::sink::Record`].
//!
//! walrus writes Debezium's PostgreSQL connector shapes, as Kafka Connect's `JsonConverter`
//! serialises them, so that consumers built for Debezium keep working (see
//! `shared/reference/debezium-envelope.md`):
//!
//! ```text
//!  ChangeEvent ──▶ router (topic, key columns) ──▶ json::JsonEncoder ──▶ key bytes / value bytes
//!                                                    │ per-table schema JSON, built once
//!                                                    └ per Relation and reused
//! ```
//!
//! - [`json`]: Debezium JSON, with or without the Connect schema envelope (`schemas.enable`).
//! - [`avro`]: Confluent-framed Avro with a schema registry, schemas as Debezium's
//!   `AvroConverter` derives them.
//!
//! Tombstones (the null value Debezium sends after a delete) are not encoded: a sink writes a
//! record whose value is `None` as Kafka's null value, or as JSON `null` in text sinks.

pub mod avro;
pub mod json;

pub use json::{JsonEncoder, JsonOptions};
