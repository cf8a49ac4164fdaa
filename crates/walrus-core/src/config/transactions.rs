//! `[transactions]`: Debezium's transaction metadata (`provide.transaction.metadata`), a
//! `BEGIN` and an `END` event per transaction on the transaction topic and the
//! `transaction` block in every data event (see `crate::transactions`).

use serde::Deserialize;

/// Default of `[transactions] enabled`: off, as Debezium's `provide.transaction.metadata`.
pub const DEFAULT_TRANSACTIONS_ENABLED: bool = false;
/// Suffix of the default transaction topic, `<topic_prefix>.transaction` (Debezium's
/// `topic.transaction` default).
pub const DEFAULT_TRANSACTION_TOPIC_SUFFIX: &str = "transaction";

/// `[transactions]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TransactionsConfig {
    /// Publish `BEGIN`/`END` events and the `transaction` block (Debezium's
    /// `provide.transaction.metadata`).
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// The whole name of the transaction topic; `<topic_prefix>.transaction` when unset
    /// (Debezium's `topic.prefix` + `.` + `topic.transaction`).
    #[serde(default)]
    pub topic: Option<String>,
}

fn default_enabled() -> bool {
    DEFAULT_TRANSACTIONS_ENABLED
}

impl Default for TransactionsConfig {
    fn default() -> Self {
        TransactionsConfig {
            enabled: DEFAULT_TRANSACTIONS_ENABLED,
            topic: None,
        }
    }
}

impl TransactionsConfig {
    /// The transaction topic for `topic_prefix`.
    pub fn topic_for(&self, topic_prefix: &str) -> String {
        match &self.topic {
            Some(t) => t.clone(),
            None => format!("{topic_prefix}.{DEFAULT_TRANSACTION_TOPIC_SUFFIX}"),
        }
    }
}
