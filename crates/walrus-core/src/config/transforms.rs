//! `[transforms.*]`: the Kafka Connect transforms Debezium users configure, done by walrus
//! itself. `[transforms.unwrap]` is Debezium's `ExtractNewRecordState` (see `crate::unwrap`).

use serde::Deserialize;

/// Default prefix of added fields and headers (`add.fields.prefix`, `add.headers.prefix`).
pub const DEFAULT_UNWRAP_PREFIX: &str = "__";

/// `[transforms]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TransformsConfig {
    /// `[transforms.unwrap]`: flat rows instead of the envelope (Debezium's
    /// `io.debezium.transforms.ExtractNewRecordState`), for every table.
    #[serde(default)]
    pub unwrap: Option<UnwrapConfig>,
}

/// What becomes of deletes and tombstones (`delete.tombstone.handling.mode`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DeleteTombstoneHandling {
    /// Deletes and tombstones are dropped.
    Drop,
    /// A delete becomes a record whose value is the row's null (Debezium's default); the
    /// tombstone after it is dropped.
    #[default]
    Tombstone,
    /// A delete becomes its old row with `__deleted: "true"` (others get `"false"`); the
    /// tombstone is dropped.
    Rewrite,
    /// As `rewrite`, and the tombstone is kept.
    RewriteWithTombstone,
    /// A delete becomes a Kafka tombstone (null value); the tombstone after it is dropped.
    DeleteToTombstone,
}

/// `[transforms.unwrap]`: Debezium's `ExtractNewRecordState` options, with its 3.x names
/// and defaults.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UnwrapConfig {
    /// `delete.tombstone.handling.mode`.
    #[serde(default)]
    pub delete_tombstone_handling_mode: DeleteTombstoneHandling,
    /// `add.fields`: envelope fields added to the row, `op`, `ts_ms`, `table`,
    /// `source.ts_ms`, `transaction.id`, ..., each optionally renamed with `:new_name`.
    #[serde(default)]
    pub add_fields: Vec<String>,
    /// `add.fields.prefix` (default `__`).
    #[serde(default)]
    pub add_fields_prefix: Option<String>,
    /// `add.headers`: envelope fields added as headers, same syntax as `add_fields`.
    #[serde(default)]
    pub add_headers: Vec<String>,
    /// `add.headers.prefix` (default `__`).
    #[serde(default)]
    pub add_headers_prefix: Option<String>,
}
