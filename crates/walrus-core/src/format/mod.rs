//! Event formats: how a [`crate::event::ChangeEvent`] becomes the key and value bytes of a
//! [`crate::sink::Record`].
//!
//! walrus writes Debezium's PostgreSQL connector shapes, as Kafka Connect's converters
//! serialise them, so that consumers built for Debezium keep working (see
//! `shared/reference/debezium-envelope.md`):
//!
//! ```text
//!  ChangeEvent ──▶ crate::emit (route, project) ──▶ key Encoder   ──▶ key bytes
//!                                                └─▶ value Encoder ──▶ value bytes
//! ```
//!
//! A format is an [`Encoder`]: keys and values are encoded by separate instances (chosen
//! separately, as Kafka Connect's `key.converter` and `value.converter`), each caching what
//! depends only on the table (schemas, field names) per table version. [`encoders`] builds
//! the pair from the `[format]` configuration; sources and sinks only see the trait.
//!
//! - [`json`]: Debezium JSON, with or without the Connect schema envelope (`schemas.enable`).
//! - [`logical`]: Debezium's logical-type conversions (decimal bytes, durations, ISO times)
//!   as plain values, shared by the formats.
//! - [`avro`]: Confluent-framed Avro with a schema registry, schemas as Debezium's
//!   `AvroConverter` derives them.
//!
//! Tombstones (the null value Debezium sends after a delete) are not encoded: a sink writes a
//! record whose value is `None` as Kafka's null value, or as JSON `null` in text sinks.

pub mod avro;
pub mod json;
pub(crate) mod kinds;
pub mod logical;

use bytes::Bytes;

use crate::error::ErrorKind;
use crate::event::ChangeEvent;

pub use json::{JsonEncoder, JsonOptions};

/// A table routed by a logical-table route (Debezium's `ByLogicalTableRouter`): several
/// physical tables share one topic, so the formats name the key and value schemas after the
/// topic (`<topic>.Key`, `<topic>.Value`, `<topic>.Envelope`) and may add a key field that
/// tells the tables apart. Given to [`Encoder::encode_key`] and [`Encoder::encode_value`]
/// by the emitter from the table's [`crate::router::TableRoute`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogicalTable {
    /// The first part of the schema names: the merged topic.
    pub schema_base: String,
    /// The key field added after the key columns (`key.enforce.uniqueness`): its name and
    /// this table's value (by default its topic before routing, `<prefix>.<schema>.<table>`).
    pub key_field: Option<(String, String)>,
}

/// Turns change events into key or value bytes. One instance per pipeline (and per snapshot
/// worker, see [`Encoder::fork`]), reused for every event so its per-table caches pay off.
pub trait Encoder: Send {
    /// Writes the key of `ev`, bound for `topic`, into `out` (cleared first) and returns
    /// `true`, or returns `false` for a null key (no key columns, a truncate, no row to take
    /// the key from). `key_columns` index the columns of `ev`'s table. The topic is the
    /// routed one (formats with a schema registry name subjects after it). `logical`: the
    /// table is merged into its topic with others (schema names and key field, see
    /// [`LogicalTable`]).
    fn encode_key(
        &mut self,
        topic: &str,
        logical: Option<&LogicalTable>,
        ev: &ChangeEvent,
        key_columns: &[usize],
        out: &mut Vec<u8>,
    ) -> Result<bool, FormatError>;

    /// Writes the value of `ev` (Debezium's envelope, or the message event), bound for
    /// `topic`, into `out`, cleared first. `logical` as for [`Encoder::encode_key`].
    fn encode_value(
        &mut self,
        topic: &str,
        logical: Option<&LogicalTable>,
        ev: &ChangeEvent,
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError>;

    /// [`Encoder::encode_value`] with Debezium's `transaction` block (`id`, `total_order`,
    /// `data_collection_order`) filled in (`[transactions] enabled`).
    fn encode_value_in_transaction(
        &mut self,
        topic: &str,
        logical: Option<&LogicalTable>,
        ev: &ChangeEvent,
        tx: &crate::transactions::TransactionBlock,
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError>;

    /// Writes the key of a `BEGIN`/`END` event of transaction `id`, bound for the
    /// transaction topic `topic`, into `out` (cleared first).
    fn encode_transaction_key(
        &mut self,
        topic: &str,
        id: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError>;

    /// Writes the value of a `BEGIN`/`END` event, bound for `topic`, into `out` (cleared
    /// first).
    fn encode_transaction_value(
        &mut self,
        topic: &str,
        ev: &crate::transactions::TransactionEvent,
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError>;

    /// Debezium's `ExtractNewRecordState` done by the format itself: writes the flat value
    /// of `ev` into `out` and the `add.headers` headers into `headers`, and says what the
    /// record becomes. `Ok(None)` (the default): the format leaves it to
    /// [`crate::unwrap::Unwrap::value`] on its JSON value, as the JSON format does.
    #[allow(clippy::too_many_arguments)] // the event, where it goes, and what to do with it
    fn encode_unwrapped(
        &mut self,
        _topic: &str,
        _logical: Option<&LogicalTable>,
        _ev: &ChangeEvent,
        _tx: Option<&crate::transactions::TransactionBlock>,
        _unwrap: &crate::unwrap::Unwrap,
        _out: &mut Vec<u8>,
        _headers: &mut Vec<(std::sync::Arc<str>, Bytes)>,
    ) -> Result<Option<crate::unwrap::Flattened>, FormatError> {
        Ok(None)
    }

    /// An encoder with the same options and empty caches, for another task.
    fn fork(&self) -> Box<dyn Encoder>;

    /// A key this encoder wrote, as the value of Debezium's `__debezium.newkey` and
    /// `__debezium.oldkey` headers: Kafka Connect's header converter writes the key's fields
    /// without a schema, whatever the key converter.
    fn key_header(&self, key: &Bytes) -> Bytes;
}

/// Why an event could not be encoded. Each variant maps itself to one [`ErrorKind`]
/// (retried or fatal, with the operator hint) through [`FormatError::kind`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// A value of a table has no representation in the configured format.
    #[error("cannot encode {table}: {message}")]
    Unencodable {
        /// `schema.table`.
        table: String,
        /// What could not be written, and what to change.
        message: String,
    },
    /// Avro: the schema registry refused a schema or could not be reached.
    #[error(transparent)]
    Avro(#[from] avro::AvroError),
}

impl crate::error::Classify for FormatError {
    fn kind(&self) -> ErrorKind {
        match self {
            FormatError::Unencodable { .. } => ErrorKind::Config,
            FormatError::Avro(e) => e.kind(),
        }
    }
}

/// The key and value encoders for a source's events: `[format]` options, the topic prefix
/// (`source.name`, schema names) and the database name (`source.db`).
pub fn encoders(
    config: &crate::config::FormatConfig,
    topic_prefix: &str,
    database: &str,
) -> (Box<dyn Encoder>, Box<dyn Encoder>) {
    let opts = JsonOptions::from_config(config, topic_prefix, database);
    // Key and value Avro encoders share one registry client and its id cache.
    let registry: Option<std::sync::Arc<dyn avro::SchemaRegistry>> = config
        .uses_avro()
        .then(|| std::sync::Arc::new(avro::ConfiguredRegistry::new(config.registry.clone())) as _);
    let make = |kind: crate::config::FormatKind| -> Box<dyn Encoder> {
        match (kind, &registry) {
            (crate::config::FormatKind::Avro, Some(registry)) => Box::new(avro::AvroEncoder::new(
                avro::AvroOptions {
                    format: opts.clone(),
                    subject_strategy: config
                        .registry
                        .as_ref()
                        .map(|r| r.subject_name_strategy)
                        .unwrap_or_default(),
                },
                std::sync::Arc::clone(registry),
            )),
            _ => Box::new(JsonEncoder::new(opts.clone())),
        }
    };
    (make(config.key), make(config.value))
}
