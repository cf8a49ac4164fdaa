//! `[transforms.*]`: the Kafka Connect transforms Debezium users configure, done by walrus
//! itself. `[transforms.unwrap]` is Debezium's `ExtractNewRecordState` (see `crate::unwrap`)
//! for every table; a table's `[tables."schema.table"] unwrap` ([`TableUnwrap`]) turns it on
//! or off for that table, or gives it its own options, as a predicate on the SMT would.

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

/// `[tables."schema.table"] unwrap`: `true` (flatten this table with `[transforms.unwrap]`'s
/// options, or the defaults without that section), `false` (keep the envelope), or a table
/// of the `[transforms.unwrap]` keys (flatten with these options instead).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "toml::Value")]
pub enum TableUnwrap {
    /// `unwrap = true` / `false`.
    Switch(bool),
    /// `[tables."schema.table".unwrap]` with its own options.
    Options(UnwrapConfig),
}

impl TryFrom<toml::Value> for TableUnwrap {
    type Error = String;

    fn try_from(v: toml::Value) -> Result<Self, String> {
        match v {
            toml::Value::Boolean(on) => Ok(TableUnwrap::Switch(on)),
            toml::Value::Table(_) => UnwrapConfig::deserialize(v)
                .map(TableUnwrap::Options)
                .map_err(|e| e.to_string()),
            other => Err(format!(
                "expected true, false or a table of [transforms.unwrap] keys, found {}",
                other.type_str()
            )),
        }
    }
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
