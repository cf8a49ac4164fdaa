//! The router: which topic, which key, which columns and which headers each change event
//! gets, decided by configuration alone.
//!
//! Everything here is a pure function of the configuration and the event (or its table), so
//! it is unit-tested without a database or a broker. The source calls [`Router::resolve`]
//! once per table version (a Relation message) and caches the [`TableRoute`]; per event it
//! asks the route whether the operation is skipped, projects the columns, and takes the
//! headers from [`TableRoute::headers`]. Outbox tables are routed by
//! [`OutboxRoute::message`] instead (Debezium's outbox `EventRouter`).
//!
//! ```text
//!  Table ──resolve──▶ TableRoute { topic, key columns, projection, skipped ops, outbox? }
//!  ChangeEvent + TableRoute ──▶ skip? │ headers (id, op, table, txId) │ outbox message
//! ```
//!
//! # Topics
//!
//! In order of precedence:
//! 1. `[tables."<schema>.<table>"] topic = "..."`;
//! 2. the first `[[routes]]` rule whose `match` regex matches the whole `<schema>.<table>`,
//!    with `$1`, `${name}` expanded from its capture groups (`public\.orders_(.*)` →
//!    `orders.$1`);
//! 3. Debezium's default, `<topic_prefix>.<schema>.<table>`.
//!
//! Characters Kafka does not allow in a topic name (anything but ASCII letters, digits, `.`,
//! `_` and `-`) are replaced by `_`, as Debezium's topic naming strategies do, and names are
//! cut at 249 characters.
//!
//! # Keys
//!
//! The message key is Debezium's: an object of the key columns, by default the primary key
//! (a table without one has a null key), or `key_columns` from the table's section; the
//! JSON encoder writes it in Debezium's key shape.
//!
//! # Headers
//!
//! Every row event carries `id` (a stable event id: `<commit LSN>:<index in transaction>`,
//! both decimal, identical when PostgreSQL sends the transaction again after a restart, so
//! consumers can deduplicate), `op` (`c`, `u`, `d`, `t`), `table` (`schema.table`) and `txId`
//! (when known). A delete's tombstone gets the id suffixed with `:tombstone`; truncates of
//! several tables in one statement share a position, so their ids end with `:<schema>.<table>`.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use regex::Regex;
use serde::Deserialize;

use crate::arena::Arena;
use crate::config::TableUnwrap;
use crate::error::ConfigError;
use crate::event::{ChangeEvent, Op, Row, Table};
use crate::format::LogicalTable;
use crate::headers::EventHeaders;
use crate::unwrap::Unwrap;
use crate::value::Value;

/// Default topic template of an outbox table (Debezium's `outbox.event.${routedByValue}`,
/// routed by the `aggregatetype` column).
pub const DEFAULT_OUTBOX_TOPIC: &str = "outbox.event.{aggregatetype}";
/// Default event-id column of an outbox table (header `id`).
pub const DEFAULT_OUTBOX_ID_COLUMN: &str = "id";
/// Default aggregate-id column of an outbox table (the message key).
pub const DEFAULT_OUTBOX_KEY_COLUMN: &str = "aggregateid";
/// Default payload column of an outbox table (the message value).
pub const DEFAULT_OUTBOX_PAYLOAD_COLUMN: &str = "payload";
/// Longest topic name Kafka accepts.
pub const MAX_TOPIC_LEN: usize = 249;

pub use crate::headers::{HEADER_ID, HEADER_OP, HEADER_TABLE, HEADER_TX_ID};

/// `[[routes]]`: a regex rule mapping tables to topics.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// Regex matched against the whole `schema.table` (or the default topic name, see
    /// `match_on`).
    #[serde(rename = "match")]
    pub pattern: String,
    /// Topic, with `$1` / `${name}` replaced by capture groups.
    pub topic: String,
    /// What `match` is matched against: the table's `schema.table` (default), or its
    /// default topic name `<topic_prefix>.<schema>.<table>`, as Kafka's `RegexRouter`
    /// transform matches the topic Debezium gave the record.
    #[serde(default)]
    pub match_on: MatchOn,
    /// Debezium's `ByLogicalTableRouter` instead of Kafka's `RegexRouter`: the tables this
    /// rule merges into one topic get schema names after the topic (`<topic>.Key`,
    /// `<topic>.Value`, `<topic>.Envelope`) and, unless `key_enforce_uniqueness = false`,
    /// a key field telling them apart.
    #[serde(default)]
    pub logical_table: bool,
    /// `key.enforce.uniqueness`: add the key field (logical tables only; default true).
    #[serde(default)]
    pub key_enforce_uniqueness: Option<bool>,
    /// `key.field.name`: the added key field (default `__dbz__physicalTableIdentifier`).
    #[serde(default)]
    pub key_field_name: Option<String>,
    /// `key.field.regex`: matched against the table's default topic
    /// `<topic_prefix>.<schema>.<table>`; when it matches, `key_field_replacement` (with
    /// `$1`, `${name}`) is the key field's value instead of that topic.
    #[serde(default)]
    pub key_field_regex: Option<String>,
    /// `key.field.replacement`, required with `key_field_regex`.
    #[serde(default)]
    pub key_field_replacement: Option<String>,
}

/// Default name of a logical table's key field (`ByLogicalTableRouter`'s `key.field.name`).
pub const DEFAULT_KEY_FIELD_NAME: &str = "__dbz__physicalTableIdentifier";

/// `[[key_columns]]`: the message key of the tables a regex matches (Debezium's
/// `message.key.columns` entries `<table regex>:<col>,<col>`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyColumnsRule {
    /// Regex matched against the whole `schema.table`, case-insensitively.
    #[serde(rename = "match")]
    pub pattern: String,
    /// The key columns, in key order.
    pub columns: Vec<String>,
}

/// What a `[[routes]]` rule's `match` is matched against.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MatchOn {
    /// `schema.table`.
    #[default]
    Table,
    /// The default topic name, `<topic_prefix>.<schema>.<table>` (Kafka's `RegexRouter`).
    Topic,
}

/// An operation as written in `skip_ops`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum OpName {
    /// Inserts.
    #[serde(rename = "c", alias = "create", alias = "insert")]
    Create,
    /// Updates.
    #[serde(rename = "u", alias = "update")]
    Update,
    /// Deletes (and their tombstones).
    #[serde(rename = "d", alias = "delete")]
    Delete,
    /// Truncates.
    #[serde(rename = "t", alias = "truncate")]
    Truncate,
}

impl OpName {
    fn op(self) -> Op {
        match self {
            OpName::Create => Op::Create,
            OpName::Update => Op::Update,
            OpName::Delete => Op::Delete,
            OpName::Truncate => Op::Truncate,
        }
    }
}

/// `[tables."schema.table"]`: overrides for one table.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// The table's topic, used as is.
    #[serde(default)]
    pub topic: Option<String>,
    /// Columns of the message key, instead of the primary key.
    #[serde(default)]
    pub key_columns: Option<Vec<String>>,
    /// Only these columns go into `before`/`after` (the key is unaffected).
    #[serde(default)]
    pub include_columns: Option<Vec<String>>,
    /// These columns are left out of `before`/`after` (the key is unaffected).
    #[serde(default)]
    pub exclude_columns: Vec<String>,
    /// Operations not to publish: `c`, `u`, `d`, `t` (or `create`, `update`, `delete`,
    /// `truncate`).
    #[serde(default)]
    pub skip_ops: Vec<OpName>,
    /// Debezium's `ExtractNewRecordState` for this table: on, off, or with its own options,
    /// instead of `[transforms.unwrap]`.
    #[serde(default)]
    pub unwrap: Option<crate::config::TableUnwrap>,
}

/// How an outbox row's payload becomes the message value.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// The JSON document itself (Debezium's `expand.json.payload`); a text payload that is
    /// not valid JSON is written as a JSON string.
    #[default]
    Json,
    /// The payload's text as a JSON string.
    String,
}

/// How an outbox row's aggregate id becomes the message key.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OutboxKeyFormat {
    /// A JSON string: Debezium's key with `key.converter = JsonConverter` (the default
    /// converter, `schemas.enable = false`).
    #[default]
    Json,
    /// The bare text: Debezium's key with `key.converter = StringConverter`.
    String,
}

/// Where an extra outbox column goes.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// A message header (its text).
    Header,
    /// A field next to `payload`: the value becomes `{"payload": .., "<name>": ..}`.
    Envelope,
}

/// One extra outbox column (Debezium's `table.fields.additional.placement`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxField {
    /// The column.
    pub column: String,
    /// Header or envelope field.
    pub placement: Placement,
    /// Header or field name; the column name by default.
    #[serde(default)]
    pub name: Option<String>,
}

/// `[[outbox]]`: a table routed with Debezium's outbox event router.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// The outbox table, `schema.table`.
    pub table: String,
    /// Topic template; `{column}` is replaced by that column's value.
    #[serde(default = "default_outbox_topic")]
    pub topic: String,
    /// Event-id column: header `id`, for consumers to deduplicate.
    #[serde(default = "default_outbox_id")]
    pub id_column: String,
    /// Aggregate-id column: the message key (its text).
    #[serde(default = "default_outbox_key")]
    pub key_column: String,
    /// Payload column: the message value.
    #[serde(default = "default_outbox_payload")]
    pub payload_column: String,
    /// `json` (the document) or `string` (a JSON string).
    #[serde(default)]
    pub payload_format: PayloadFormat,
    /// `json`: the key is a JSON string (`"17"`), as Debezium with Kafka Connect's
    /// `JsonConverter`; `string`: its bare text (`17`), as with `StringConverter`.
    #[serde(default)]
    pub key_format: OutboxKeyFormat,
    /// A null payload becomes a tombstone (a null value) instead of the JSON `null`
    /// Debezium's `JsonConverter` writes by default (`route.tombstone.on.empty.payload`).
    #[serde(default)]
    pub tombstone_on_empty_payload: bool,
    /// Extra columns as headers or envelope fields.
    #[serde(default)]
    pub fields: Vec<OutboxField>,
    /// Delete each row once the broker confirmed its message (for outboxes whose writers
    /// do not delete rows themselves).
    #[serde(default)]
    pub delete_after_delivery: bool,
    /// How often the housekeeping task deletes delivered rows, in milliseconds.
    #[serde(default = "default_outbox_delete_interval_ms")]
    pub delete_interval_ms: u64,
}

/// Default interval of outbox housekeeping.
pub const DEFAULT_OUTBOX_DELETE_INTERVAL_MS: u64 = 1000;

fn default_outbox_topic() -> String {
    DEFAULT_OUTBOX_TOPIC.into()
}
fn default_outbox_id() -> String {
    DEFAULT_OUTBOX_ID_COLUMN.into()
}
fn default_outbox_key() -> String {
    DEFAULT_OUTBOX_KEY_COLUMN.into()
}
fn default_outbox_payload() -> String {
    DEFAULT_OUTBOX_PAYLOAD_COLUMN.into()
}
fn default_outbox_delete_interval_ms() -> u64 {
    DEFAULT_OUTBOX_DELETE_INTERVAL_MS
}

/// The routing parts of the configuration, gathered for [`Router::new`].
#[derive(Clone, Debug, Default)]
pub struct RoutingConfig<'a> {
    /// `topic_prefix`.
    pub topic_prefix: &'a str,
    /// `[[routes]]`.
    pub routes: &'a [RouteRule],
    /// `[tables."schema.table"]`.
    pub tables: Option<&'a BTreeMap<String, TableConfig>>,
    /// `[[outbox]]`.
    pub outbox: &'a [OutboxConfig],
    /// Top-level `skip_ops`: operations skipped for every table.
    pub skip_ops: &'a [OpName],
    /// With `source.filter_events`: the captured tables; the events of any other table are
    /// dropped. `None`: every table the publication sends is routed.
    pub selection: Option<crate::selection::TableSelection>,
    /// `[[key_columns]]`: key columns by table regex, for tables whose section sets none.
    pub key_columns: &'a [KeyColumnsRule],
    /// Top-level `include_columns`: regexes over `schema.table.column`; only matching
    /// columns are written (Debezium's `column.include.list`), unless the table's section
    /// lists its own.
    pub include_columns: &'a [String],
    /// Top-level `exclude_columns`: regexes over `schema.table.column` left out (Debezium's
    /// `column.exclude.list`), unless the table's section lists its own.
    pub exclude_columns: &'a [String],
    /// `[transforms.unwrap]`: `ExtractNewRecordState` for every table whose section does
    /// not say otherwise.
    pub unwrap: Option<&'a crate::config::UnwrapConfig>,
}

/// A table's events could not be routed: configuration that does not fit the table.
#[derive(Debug, thiserror::Error)]
#[error("routing {table}: {message} (config key `{key}`)")]
pub struct RouteError {
    /// `schema.table`.
    pub table: String,
    /// The config key at fault.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl crate::error::Classify for RouteError {
    fn kind(&self) -> crate::error::ErrorKind {
        crate::error::ErrorKind::Config
    }
}

/// One compiled `[[routes]]` rule.
#[derive(Clone, Debug)]
struct Rule {
    re: Regex,
    topic: String,
    on: MatchOn,
    /// Set for `logical_table` rules.
    logical: Option<LogicalRule>,
}

/// The `ByLogicalTableRouter` part of a rule.
#[derive(Clone, Debug)]
struct LogicalRule {
    /// `None` with `key_enforce_uniqueness = false`.
    key_field: Option<String>,
    /// `key_field_regex` (anchored) and `key_field_replacement`.
    key_value: Option<(Regex, String)>,
}

/// Compiled routing configuration.
#[derive(Clone, Debug)]
pub struct Router {
    prefix: String,
    rules: Vec<Rule>,
    skip: Vec<Op>,
    selection: Option<crate::selection::TableSelection>,
    key_rules: Vec<(Regex, Vec<String>)>,
    include_columns: Vec<Regex>,
    exclude_columns: Vec<Regex>,
    tables: BTreeMap<String, TableConfig>,
    outbox: BTreeMap<String, OutboxConfig>,
    /// `[transforms.unwrap]`, compiled.
    unwrap: Option<Arc<Unwrap>>,
    /// Tables whose section sets `unwrap`: on with the global or default options, off, or
    /// with their own.
    table_unwrap: BTreeMap<String, Option<Arc<Unwrap>>>,
}

/// How one table version is routed.
#[derive(Clone, Debug)]
pub struct TableRoute {
    /// The table this route was resolved for.
    pub table: Arc<Table>,
    /// The topic.
    pub topic: Arc<str>,
    /// Key column indexes into the full table; empty for a null key.
    pub key_columns: Vec<usize>,
    /// The projected table and the kept column indexes, when columns are filtered.
    pub projection: Option<(Arc<Table>, Vec<usize>)>,
    /// Operations not published.
    pub skip: Vec<Op>,
    /// Set for outbox tables: events go through [`OutboxRoute::message`] instead.
    pub outbox: Option<Arc<OutboxRoute>>,
    /// Set when a `logical_table` rule routed the table: schema names after the topic and
    /// the added key field, for the encoders.
    pub logical: Option<Arc<LogicalTable>>,
    /// Set when the table's values are flattened (`ExtractNewRecordState`).
    pub unwrap: Option<Arc<Unwrap>>,
    table_header: Bytes,
}

impl TableRoute {
    /// Whether events with this operation are left out by configuration.
    pub fn skips(&self, op: Op) -> bool {
        self.skip.contains(&op)
    }

    /// The event with only the projected columns, or `None` when nothing is filtered.
    pub fn project(&self, ev: &ChangeEvent) -> Option<ChangeEvent> {
        let (table, keep) = self.projection.as_ref()?;
        let project_row = |row: &Row| Row {
            values: keep
                .iter()
                .map(|&i| row.values.get(i).cloned().unwrap_or(Value::Null))
                .collect(),
            key_only: row.key_only,
        };
        Some(ChangeEvent {
            op: ev.op,
            table: Some(table.clone()),
            before: ev.before.as_ref().map(project_row),
            after: ev.after.as_ref().map(project_row),
            source: ev.source.clone(),
            message: ev.message.clone(),
        })
    }

    /// Headers of the event's record (`tombstone` for the null-value record after a delete).
    pub fn headers(&self, ev: &ChangeEvent, tombstone: bool) -> EventHeaders {
        self.headers_in(ev, tombstone, &mut Arena::new())
    }

    /// [`TableRoute::headers`], the values written into `arena` back to back: the
    /// emitter's hot path (`crate::headers`).
    pub fn headers_in(&self, ev: &ChangeEvent, tombstone: bool, arena: &mut Arena) -> EventHeaders {
        let mut lsn = itoa::Buffer::new();
        let mut index = itoa::Buffer::new();
        let mut tx = itoa::Buffer::new();
        // A truncate of several tables is one event per table: the table tells them apart.
        let [sep, schema, dot, name]: [&[u8]; 4] = if ev.op == Op::Truncate {
            [
                b":",
                self.table.schema.as_bytes(),
                b".",
                self.table.name.as_bytes(),
            ]
        } else {
            [b""; 4]
        };
        let op = op_bytes(ev.op);
        let tx_id = ev.source.tx_id.map(|x| tx.format(x).as_bytes());
        // The id's pieces, then op, table and txId: one copy into the arena.
        let parts: [&[u8]; 11] = [
            lsn.format(ev.source.commit_lsn.as_u64()).as_bytes(),
            b":",
            index.format(ev.source.tx_index).as_bytes(),
            sep,
            schema,
            dot,
            name,
            if tombstone { b":tombstone" } else { b"" },
            op,
            &self.table_header,
            tx_id.unwrap_or_default(),
        ];
        let id_len = parts[..8].iter().map(|p| p.len()).sum();
        let values = arena.concat(&parts);
        EventHeaders::from_parts(
            values,
            id_len,
            op.len(),
            self.table_header.len(),
            tx_id.is_some(),
        )
    }
}

fn op_bytes(op: Op) -> &'static [u8] {
    match op {
        Op::Create => b"c",
        Op::Update => b"u",
        Op::Delete => b"d",
        Op::Truncate => b"t",
        Op::Message => b"m",
        Op::Read => b"r",
    }
}

/// The stable id of an event: `<commit LSN>:<index in its transaction>`, both decimal.
pub fn event_id(ev: &ChangeEvent) -> String {
    format!("{}:{}", ev.source.commit_lsn.as_u64(), ev.source.tx_index)
}

/// Replaces characters Kafka does not allow in topic names by `_` and cuts the name at
/// [`MAX_TOPIC_LEN`].
pub fn sanitize_topic(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.truncate(MAX_TOPIC_LEN);
    if s.is_empty() {
        s.push('_');
    }
    s
}

/// The `ByLogicalTableRouter` options of rule `i`, checked; `None` for a plain rule (which
/// must set none of them).
fn logical_rule(i: usize, r: &RouteRule) -> Result<Option<LogicalRule>, ConfigError> {
    let bad = |k: &str, message: String| ConfigError::Key {
        key: format!("routes[{i}].{k}"),
        message,
    };
    if !r.logical_table {
        for (k, set) in [
            ("key_enforce_uniqueness", r.key_enforce_uniqueness.is_some()),
            ("key_field_name", r.key_field_name.is_some()),
            ("key_field_regex", r.key_field_regex.is_some()),
            ("key_field_replacement", r.key_field_replacement.is_some()),
        ] {
            if set {
                return Err(bad(
                    k,
                    "applies to logical tables only: set logical_table = true on this rule".into(),
                ));
            }
        }
        return Ok(None);
    }
    let name = r
        .key_field_name
        .clone()
        .unwrap_or_else(|| DEFAULT_KEY_FIELD_NAME.to_string());
    if name.is_empty() {
        return Err(bad("key_field_name", "must not be empty".into()));
    }
    let key_value = match (
        r.key_field_regex.as_deref().map(str::trim),
        &r.key_field_replacement,
    ) {
        (None | Some(""), _) => None,
        (Some(re), Some(replacement)) if !replacement.trim().is_empty() => {
            let re = Regex::new(&format!("^(?:{re})$")).map_err(|e| {
                bad(
                    "key_field_regex",
                    format!("{re:?} is not a valid regex: {e}"),
                )
            })?;
            Some((re, replacement.clone()))
        }
        (Some(_), _) => {
            return Err(bad(
                "key_field_replacement",
                "must be set and non-empty when key_field_regex is set".into(),
            ))
        }
    };
    let enforce = r.key_enforce_uniqueness.unwrap_or(true);
    Ok(Some(LogicalRule {
        key_field: enforce.then_some(name),
        key_value,
    }))
}

fn is_exact_table_name(name: &str) -> bool {
    matches!(name.split_once('.'), Some((s, t)) if !s.is_empty() && !t.is_empty() && !t.contains('.'))
}

impl Router {
    /// Compiles the routing configuration; errors name the config key.
    pub fn new(cfg: &RoutingConfig<'_>) -> Result<Router, ConfigError> {
        let bad = |key: String, message: String| ConfigError::Key { key, message };
        let mut rules = Vec::with_capacity(cfg.routes.len());
        for (i, r) in cfg.routes.iter().enumerate() {
            let re = Regex::new(&format!("^(?:{})$", r.pattern)).map_err(|e| {
                bad(
                    format!("routes[{i}].match"),
                    format!("{:?} is not a valid regex: {e}", r.pattern),
                )
            })?;
            if r.topic.is_empty() {
                return Err(bad(
                    format!("routes[{i}].topic"),
                    "must not be empty".into(),
                ));
            }
            rules.push(Rule {
                re,
                topic: r.topic.clone(),
                on: r.match_on,
                logical: logical_rule(i, r)?,
            });
        }
        let anchored = |key: String, pattern: &str| {
            regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
                .case_insensitive(true)
                .build()
                .map_err(|e| bad(key, format!("{pattern:?} is not a valid regex: {e}")))
        };
        let mut key_rules = Vec::with_capacity(cfg.key_columns.len());
        for (i, k) in cfg.key_columns.iter().enumerate() {
            let re = anchored(format!("key_columns[{i}].match"), &k.pattern)?;
            if k.columns.is_empty() {
                return Err(bad(
                    format!("key_columns[{i}].columns"),
                    "list at least one column".into(),
                ));
            }
            key_rules.push((re, k.columns.clone()));
        }
        let compile_all = |key: &str, list: &[String]| {
            list.iter()
                .enumerate()
                .map(|(i, p)| anchored(format!("{key}[{i}]"), p))
                .collect::<Result<Vec<_>, _>>()
        };
        let include_columns = compile_all("include_columns", cfg.include_columns)?;
        let exclude_columns = compile_all("exclude_columns", cfg.exclude_columns)?;
        if !include_columns.is_empty() && !exclude_columns.is_empty() {
            return Err(bad(
                "exclude_columns".into(),
                "set either include_columns or exclude_columns, not both".into(),
            ));
        }
        let tables = cfg.tables.cloned().unwrap_or_default();
        for (name, t) in &tables {
            let key = |k: &str| format!("tables.\"{name}\".{k}");
            if !is_exact_table_name(name) {
                return Err(bad(
                    format!("tables.\"{name}\""),
                    "expected a table name of the form schema.table (use [[routes]] for patterns)"
                        .into(),
                ));
            }
            if t.topic.as_deref() == Some("") {
                return Err(bad(key("topic"), "must not be empty".into()));
            }
            if t.key_columns.as_ref().is_some_and(Vec::is_empty) {
                return Err(bad(
                    key("key_columns"),
                    "list at least one column (leave the key out for the primary key)".into(),
                ));
            }
            if t.include_columns.is_some() && !t.exclude_columns.is_empty() {
                return Err(bad(
                    key("exclude_columns"),
                    "set either include_columns or exclude_columns, not both".into(),
                ));
            }
        }
        let unwrap = cfg
            .unwrap
            .map(|u| Unwrap::new(u).map(Arc::new))
            .transpose()
            .map_err(|e| bad("transforms.unwrap".into(), e))?;
        let mut table_unwrap = BTreeMap::new();
        for (name, t) in &tables {
            let compiled = match &t.unwrap {
                None => continue,
                Some(TableUnwrap::Switch(false)) => None,
                Some(TableUnwrap::Switch(true)) => Some(match &unwrap {
                    Some(u) => u.clone(),
                    None => Arc::new(
                        Unwrap::new(&crate::config::UnwrapConfig::default())
                            .map_err(|e| bad(format!("tables.\"{name}\".unwrap"), e))?,
                    ),
                }),
                Some(TableUnwrap::Options(u)) => Some(Arc::new(
                    Unwrap::new(u).map_err(|e| bad(format!("tables.\"{name}\".unwrap"), e))?,
                )),
            };
            table_unwrap.insert(name.clone(), compiled);
        }
        let mut outbox = BTreeMap::new();
        for (i, o) in cfg.outbox.iter().enumerate() {
            let key = |k: &str| format!("outbox[{i}].{k}");
            if !is_exact_table_name(&o.table) {
                return Err(bad(
                    key("table"),
                    format!("{:?} is not a table name of the form schema.table", o.table),
                ));
            }
            if tables.contains_key(&o.table) {
                return Err(bad(
                    key("table"),
                    format!(
                        "{} has a [tables] section too; an outbox table is routed by [[outbox]] only",
                        o.table
                    ),
                ));
            }
            if let Err(m) = parse_template(&o.topic) {
                return Err(bad(key("topic"), m));
            }
            for (k, v) in [
                ("id_column", &o.id_column),
                ("key_column", &o.key_column),
                ("payload_column", &o.payload_column),
            ] {
                if v.is_empty() {
                    return Err(bad(key(k), "must name a column".into()));
                }
            }
            if o.delete_interval_ms == 0 {
                return Err(bad(key("delete_interval_ms"), "must be at least 1".into()));
            }
            if outbox.insert(o.table.clone(), o.clone()).is_some() {
                return Err(bad(key("table"), format!("{} is listed twice", o.table)));
            }
        }
        Ok(Router {
            prefix: cfg.topic_prefix.to_string(),
            rules,
            skip: cfg.skip_ops.iter().map(|o| o.op()).collect(),
            selection: cfg.selection.clone(),
            key_rules,
            include_columns,
            exclude_columns,
            tables,
            outbox,
            unwrap,
            table_unwrap,
        })
    }

    /// The outbox tables, for housekeeping.
    pub fn outbox_tables(&self) -> impl Iterator<Item = &OutboxConfig> {
        self.outbox.values()
    }

    /// The topic of a table, and the logical table when a `logical_table` rule chose it.
    fn topic_for(&self, schema: &str, table: &str) -> (String, Option<LogicalTable>) {
        let qualified = format!("{schema}.{table}");
        if let Some(t) = self.tables.get(&qualified).and_then(|t| t.topic.as_ref()) {
            return (sanitize_topic(t), None);
        }
        let default = format!("{}.{schema}.{table}", self.prefix);
        for rule in &self.rules {
            let input = match rule.on {
                MatchOn::Table => &qualified,
                MatchOn::Topic => &default,
            };
            if let Some(caps) = rule.re.captures(input) {
                let mut out = String::new();
                caps.expand(&rule.topic, &mut out);
                let topic = sanitize_topic(&out);
                let logical = rule.logical.as_ref().map(|l| LogicalTable {
                    schema_base: topic.clone(),
                    key_field: l.key_field.as_ref().map(|name| {
                        // Debezium's value is the record's topic before the transform,
                        // rewritten by key.field.regex when that matches it whole.
                        let old = sanitize_topic(&default);
                        let value = match &l.key_value {
                            Some((re, replacement)) => match re.captures(&old) {
                                Some(c) => {
                                    let mut v = String::new();
                                    c.expand(replacement, &mut v);
                                    v
                                }
                                None => old,
                            },
                            None => old,
                        };
                        (name.clone(), value)
                    }),
                });
                return (topic, logical);
            }
        }
        (sanitize_topic(&default), None)
    }

    /// Resolves how a table version is routed. Fails when its section names columns the
    /// table does not have.
    pub fn resolve(&self, table: &Arc<Table>) -> Result<TableRoute, RouteError> {
        let qualified = table.qualified_name();
        let err = |key: String, message: String| RouteError {
            table: qualified.clone(),
            key,
            message,
        };
        let index_of = |key: &str, name: &str| {
            table
                .columns
                .iter()
                .position(|c| c.name == name)
                .ok_or_else(|| {
                    err(
                        key.to_string(),
                        format!(
                            "the table has no column {name:?} (columns: {})",
                            table
                                .columns
                                .iter()
                                .map(|c| c.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })
        };
        let section = self.tables.get(&qualified);
        let skey = |k: &str| format!("tables.\"{qualified}\".{k}");
        let rule = self
            .key_rules
            .iter()
            .position(|(re, _)| re.is_match(&qualified));
        let key_columns = match (section.and_then(|s| s.key_columns.as_ref()), rule) {
            (Some(names), _) => names
                .iter()
                .map(|n| index_of(&skey("key_columns"), n))
                .collect::<Result<Vec<_>, _>>()?,
            (None, Some(i)) => self.key_rules[i]
                .1
                .iter()
                .map(|n| index_of(&format!("key_columns[{i}].columns"), n))
                .collect::<Result<Vec<_>, _>>()?,
            (None, None) => table.primary_key_indexes().collect(),
        };
        let mut projection = None;
        let own_columns =
            section.is_some_and(|s| s.include_columns.is_some() || !s.exclude_columns.is_empty());
        let global_columns = !self.include_columns.is_empty() || !self.exclude_columns.is_empty();
        if global_columns && !own_columns {
            let full = |c: &crate::event::Column| format!("{qualified}.{}", c.name);
            let keep: Vec<usize> = (0..table.columns.len())
                .filter(|&i| {
                    let name = full(&table.columns[i]);
                    if self.include_columns.is_empty() {
                        !self.exclude_columns.iter().any(|re| re.is_match(&name))
                    } else {
                        self.include_columns.iter().any(|re| re.is_match(&name))
                    }
                })
                .collect();
            if keep.len() != table.columns.len() {
                let projected = Table {
                    columns: keep.iter().map(|&i| table.columns[i].clone()).collect(),
                    ..(**table).clone()
                };
                projection = Some((Arc::new(projected), keep));
            }
        }
        if let Some(s) = section.filter(|_| own_columns) {
            let keep: Option<Vec<usize>> = if let Some(include) = &s.include_columns {
                let mut idx = include
                    .iter()
                    .map(|n| index_of(&skey("include_columns"), n))
                    .collect::<Result<Vec<_>, _>>()?;
                idx.sort_unstable();
                idx.dedup();
                Some(idx)
            } else if !s.exclude_columns.is_empty() {
                let excluded = s
                    .exclude_columns
                    .iter()
                    .map(|n| index_of(&skey("exclude_columns"), n))
                    .collect::<Result<Vec<_>, _>>()?;
                Some(
                    (0..table.columns.len())
                        .filter(|i| !excluded.contains(i))
                        .collect(),
                )
            } else {
                None
            };
            if let Some(keep) = keep {
                let projected = Table {
                    columns: keep.iter().map(|&i| table.columns[i].clone()).collect(),
                    ..(**table).clone()
                };
                projection = Some((Arc::new(projected), keep));
            }
        }
        let mut skip = self.skip.clone();
        for op in section.iter().flat_map(|s| &s.skip_ops) {
            if !skip.contains(&op.op()) {
                skip.push(op.op());
            }
        }
        if self
            .selection
            .as_ref()
            .is_some_and(|s| !s.selects(&table.schema, &table.name))
        {
            // Not captured: published (a FOR ALL TABLES publication, say) but filtered out,
            // as Debezium filters.
            skip = vec![Op::Create, Op::Update, Op::Delete, Op::Truncate, Op::Read];
        }
        let outbox = match self.outbox.get(&qualified) {
            Some(o) => Some(Arc::new(OutboxRoute::new(o, table, &self.outbox_index(o))?)),
            None => None,
        };
        let (topic, logical) = self.topic_for(&table.schema, &table.name);
        Ok(TableRoute {
            table: table.clone(),
            topic: Arc::from(topic),
            key_columns,
            projection,
            skip,
            outbox,
            logical: logical.map(Arc::new),
            unwrap: match self.table_unwrap.get(&qualified) {
                Some(own) => own.clone(),
                None => self.unwrap.clone(),
            },
            table_header: Bytes::from(qualified.clone()),
        })
    }

    fn outbox_index(&self, o: &OutboxConfig) -> String {
        let i = self
            .outbox
            .keys()
            .position(|k| *k == o.table)
            .unwrap_or_default();
        format!("outbox[{i}]")
    }
}

/// A piece of a topic template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Lit(String),
    Col(String),
}

fn parse_template(t: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = t;
    while let Some(start) = rest.find('{') {
        if start > 0 {
            parts.push(Part::Lit(rest[..start].to_string()));
        }
        let after = &rest[start + 1..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("{t:?}: unterminated {{column}}"))?;
        let name = &after[..end];
        if name.is_empty() {
            return Err(format!("{t:?}: empty {{}}; write {{column_name}}"));
        }
        parts.push(Part::Col(name.to_string()));
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Lit(rest.to_string()));
    }
    if parts.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(parts)
}

/// A compiled outbox table: Debezium's `EventRouter`.
#[derive(Clone, Debug)]
pub struct OutboxRoute {
    template: Vec<(Option<usize>, String)>,
    id: usize,
    key: usize,
    payload: usize,
    format: PayloadFormat,
    key_format: OutboxKeyFormat,
    tombstone_on_empty_payload: bool,
    headers: Vec<(usize, Arc<str>)>,
    /// Envelope fields: the column and the field's name, JSON-quoted once here.
    envelope: Vec<(usize, String)>,
    /// Whether rows are deleted once delivered.
    pub delete_after_delivery: bool,
    id_header: Arc<str>,
    table: String,
}

/// One routed outbox event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxMessage {
    /// Topic from the template.
    pub topic: String,
    /// The aggregate id's text; `None` when the column is null.
    pub key: Option<Bytes>,
    /// The payload (or the envelope); `None` for a null payload.
    pub value: Option<Bytes>,
    /// `id` and the configured header fields.
    pub headers: Vec<(Arc<str>, Bytes)>,
    /// The event id's text, for housekeeping.
    pub id: Option<String>,
}

impl OutboxRoute {
    fn new(o: &OutboxConfig, table: &Table, key_prefix: &str) -> Result<OutboxRoute, RouteError> {
        let find = |key: &str, name: &str| {
            table
                .columns
                .iter()
                .position(|c| c.name == name)
                .ok_or_else(|| RouteError {
                    table: table.qualified_name(),
                    key: format!("{key_prefix}.{key}"),
                    message: format!("the outbox table has no column {name:?}"),
                })
        };
        let template = parse_template(&o.topic)
            .map_err(|message| RouteError {
                table: table.qualified_name(),
                key: format!("{key_prefix}.topic"),
                message,
            })?
            .into_iter()
            .map(|p| match p {
                Part::Lit(s) => Ok((None, s)),
                Part::Col(c) => Ok((Some(find("topic", &c)?), c)),
            })
            .collect::<Result<Vec<_>, RouteError>>()?;
        let mut headers = Vec::new();
        let mut envelope = Vec::new();
        for f in &o.fields {
            let i = find("fields", &f.column)?;
            let name = f.name.clone().unwrap_or_else(|| f.column.clone());
            match f.placement {
                Placement::Header => headers.push((i, Arc::from(name.as_str()))),
                Placement::Envelope => {
                    envelope.push((i, serde_json::Value::String(name).to_string()));
                }
            }
        }
        Ok(OutboxRoute {
            template,
            id: find("id_column", &o.id_column)?,
            key: find("key_column", &o.key_column)?,
            payload: find("payload_column", &o.payload_column)?,
            format: o.payload_format,
            key_format: o.key_format,
            tombstone_on_empty_payload: o.tombstone_on_empty_payload,
            headers,
            envelope,
            delete_after_delivery: o.delete_after_delivery,
            id_header: Arc::from(HEADER_ID),
            table: table.qualified_name(),
        })
    }

    /// The message for an outbox event: inserts (and snapshot reads) only; deletes and
    /// updates produce nothing (`Ok(None)`), as Debezium's router ignores them. An error
    /// when a column the topic needs is null or of an unsupported type.
    pub fn message(&self, ev: &ChangeEvent) -> Result<Option<OutboxMessage>, RouteError> {
        if !matches!(ev.op, Op::Create | Op::Read) {
            return Ok(None);
        }
        let Some(row) = ev.after.as_ref() else {
            return Ok(None);
        };
        let get = |i: usize| row.values.get(i).unwrap_or(&Value::Null);
        let mut topic = String::new();
        for (col, text) in &self.template {
            match col {
                None => topic.push_str(text),
                Some(i) => match scalar_text(get(*i)) {
                    Some(v) => topic.push_str(&v),
                    None => {
                        return Err(RouteError {
                            table: self.table.clone(),
                            key: "outbox.topic".into(),
                            message: format!(
                                "column {text:?} is null or not text-like in the event at {}; the topic needs it",
                                event_id(ev)
                            ),
                        })
                    }
                },
            }
        }
        let id = scalar_text(get(self.id));
        let mut headers = Vec::with_capacity(1 + self.headers.len());
        if let Some(id) = &id {
            headers.push((self.id_header.clone(), Bytes::from(id.clone())));
        }
        for (i, name) in &self.headers {
            if let Some(v) = scalar_text(get(*i)) {
                headers.push((name.clone(), Bytes::from(v)));
            }
        }
        let payload = self.payload_json(get(self.payload));
        let value = if self.envelope.is_empty() {
            match payload {
                Some(p) => Some(Bytes::from(p)),
                None if self.tombstone_on_empty_payload => None,
                None => Some(Bytes::from_static(b"null")),
            }
        } else {
            // Debezium's order: the payload first, then the fields as configured.
            let mut v = Vec::with_capacity(payload.as_ref().map_or(4, Vec::len) + 64);
            v.extend_from_slice(b"{\"payload\":");
            v.extend_from_slice(payload.as_deref().unwrap_or(b"null"));
            for (i, name) in &self.envelope {
                v.push(b',');
                v.extend_from_slice(name.as_bytes());
                v.push(b':');
                v.extend_from_slice(natural_json(get(*i)).to_string().as_bytes());
            }
            v.push(b'}');
            Some(Bytes::from(v))
        };
        let key = scalar_text(get(self.key)).map(|k| match self.key_format {
            OutboxKeyFormat::Json => Bytes::from(serde_json::Value::String(k).to_string()),
            OutboxKeyFormat::String => Bytes::from(k),
        });
        Ok(Some(OutboxMessage {
            topic: sanitize_topic(&topic),
            key,
            value,
            headers,
            id,
        }))
    }

    fn payload_json(&self, v: &Value) -> Option<Vec<u8>> {
        match (self.format, v) {
            (_, Value::Null | Value::Unavailable) => None,
            (PayloadFormat::Json, Value::Json(s)) => Some(expanded_json(s)),
            (PayloadFormat::Json, Value::Text(s))
                if serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok() =>
            {
                Some(expanded_json(s))
            }
            (_, v) => match scalar_text(v) {
                Some(s) => serde_json::to_vec(&s).ok(),
                None => Some(natural_json(v).to_string().into_bytes()),
            },
        }
    }
}

/// A JSON document without the whitespace between its tokens, members and numbers as
/// written: what Debezium's expanded payload looks like after `JsonConverter` (PostgreSQL
/// prints `jsonb` as `{"a": 1, "b": [1, 2]}`, Debezium writes `{"a":1,"b":[1,2]}`).
/// Expects valid JSON; only whitespace outside strings is dropped.
fn compact_json(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut in_string = false;
    let mut escaped = false;
    for &b in s.as_bytes() {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
            out.push(b);
        } else if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            out.push(b);
        }
    }
    out
}

/// A valid JSON document as Debezium's `expand.json.payload` writes it through
/// `JsonConverter`: compact ([`compact_json`]) and without object members whose value is
/// `null` (Debezium derives a Connect schema from the document, and a null gives none, so the
/// member is left out at every depth). Array elements are kept as they are.
fn expanded_json(s: &str) -> Vec<u8> {
    let compact = compact_json(s);
    let mut out = Vec::with_capacity(compact.len());
    let mut i = 0;
    copy_without_null_members(&compact, &mut i, &mut out);
    out
}

/// Copies the compact JSON value at `b[*i..]` into `out`, dropping `null` object members,
/// and moves `*i` past it.
fn copy_without_null_members(b: &[u8], i: &mut usize, out: &mut Vec<u8>) {
    let string_end = |b: &[u8], start: usize| {
        let mut j = start + 1;
        while j < b.len() && b[j] != b'"' {
            j += if b[j] == b'\\' { 2 } else { 1 };
        }
        (j + 1).min(b.len())
    };
    match b.get(*i) {
        Some(b'{') => {
            out.push(b'{');
            *i += 1;
            let mut first = true;
            while *i < b.len() && b[*i] != b'}' {
                let key_start = *i;
                let key_end = string_end(b, key_start);
                let value_start = key_end + 1; // past ':'
                let rest = &b[value_start.min(b.len())..];
                if rest.starts_with(b"null") && matches!(rest.get(4), Some(b',' | b'}')) {
                    *i = value_start + 4;
                } else {
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    out.extend_from_slice(&b[key_start..value_start.min(b.len())]);
                    *i = value_start;
                    copy_without_null_members(b, i, out);
                }
                if b.get(*i) == Some(&b',') {
                    *i += 1;
                }
            }
            out.push(b'}');
            *i += 1;
        }
        Some(b'[') => {
            out.push(b'[');
            *i += 1;
            while *i < b.len() && b[*i] != b']' {
                copy_without_null_members(b, i, out);
                if b.get(*i) == Some(&b',') {
                    out.push(b',');
                    *i += 1;
                }
            }
            out.push(b']');
            *i += 1;
        }
        Some(b'"') => {
            let end = string_end(b, *i);
            out.extend_from_slice(&b[*i..end]);
            *i = end;
        }
        Some(_) => {
            let start = *i;
            while *i < b.len() && !matches!(b[*i], b',' | b'}' | b']') {
                *i += 1;
            }
            out.extend_from_slice(&b[start..*i]);
        }
        None => {}
    }
}

/// The text of a scalar value, for keys, ids, headers and topic names.
pub fn scalar_text(v: &Value) -> Option<String> {
    Some(match v {
        Value::Text(s) | Value::Json(s) | Value::Numeric(s) | Value::Bits(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Int16(i) => i.to_string(),
        Value::Int32(i) => i.to_string(),
        Value::Int64(i) => i.to_string(),
        Value::Float32(f) => f.to_string(),
        Value::Float64(f) => f.to_string(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Date(d) => d.to_string(),
        Value::Time(t) | Value::Timestamp(t) | Value::TimestampTz(t) => t.to_string(),
        _ => return None,
    })
}

fn natural_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null | Value::Unavailable => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int16(i) => J::from(*i),
        Value::Int32(i) => J::from(*i),
        Value::Int64(i) => J::from(*i),
        Value::Float32(f) => J::from(f64::from(*f)),
        Value::Float64(f) => J::from(*f),
        Value::Date(d) => J::from(*d),
        Value::Time(t) | Value::Timestamp(t) | Value::TimestampTz(t) => J::from(*t),
        Value::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| J::String(s.clone())),
        other => match scalar_text(other) {
            Some(s) => J::String(s),
            None => J::Null,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Column, ReplicaIdentity, SourcePosition};
    use crate::lsn::Lsn;

    fn col(name: &str, pk: bool) -> Column {
        Column {
            name: name.into(),
            type_oid: 25,
            type_name: "text".into(),
            type_modifier: -1,
            key: pk,
            primary_key: pk,
            not_null: pk,
            default: None,
            type_desc: None,
        }
    }

    fn table(schema: &str, name: &str, cols: &[(&str, bool)]) -> Arc<Table> {
        Arc::new(Table {
            id: 7,
            schema: schema.into(),
            name: name.into(),
            columns: cols.iter().map(|(n, k)| col(n, *k)).collect(),
            replica_identity: ReplicaIdentity::Default,
        })
    }

    fn ev(op: Op, t: &Arc<Table>, values: Vec<Value>) -> ChangeEvent {
        let row = Row {
            values,
            key_only: false,
        };
        ChangeEvent {
            op,
            table: Some(t.clone()),
            before: (op == Op::Delete).then(|| row.clone()),
            after: (op != Op::Delete).then_some(row),
            source: SourcePosition {
                lsn: Lsn(120),
                commit_lsn: Lsn(500),
                tx_id: Some(42),
                tx_index: 3,
                ..SourcePosition::default()
            },
            message: None,
        }
    }

    fn parse(
        text: &str,
    ) -> (
        Vec<RouteRule>,
        BTreeMap<String, TableConfig>,
        Vec<OutboxConfig>,
    ) {
        #[derive(Deserialize)]
        struct Doc {
            #[serde(default)]
            routes: Vec<RouteRule>,
            #[serde(default)]
            tables: BTreeMap<String, TableConfig>,
            #[serde(default)]
            outbox: Vec<OutboxConfig>,
        }
        let d: Doc = toml::from_str(text).unwrap();
        (d.routes, d.tables, d.outbox)
    }

    fn router(text: &str) -> Result<Router, ConfigError> {
        let (routes, tables, outbox) = parse(text);
        Router::new(&RoutingConfig {
            topic_prefix: "app",
            routes: &routes,
            tables: Some(&tables),
            outbox: &outbox,
            skip_ops: &[],
            selection: None,
            key_columns: &[],
            include_columns: &[],
            exclude_columns: &[],
            unwrap: None,
        })
    }

    #[test]
    fn default_topic_and_primary_key() {
        let r = router("").unwrap();
        let t = table("public", "orders", &[("id", true), ("total", false)]);
        let route = r.resolve(&t).unwrap();
        assert_eq!(&*route.topic, "app.public.orders");
        assert_eq!(route.key_columns, vec![0]);
        assert!(route.projection.is_none());
        assert!(!route.skips(Op::Delete));
    }

    #[test]
    fn regex_rules_with_capture_groups_then_overrides() {
        let r = router(
            r#"
[[routes]]
match = 'public\.orders_(.*)'
topic = "orders.$1"
[[routes]]
match = '(?P<s>\w+)\.audit_.*'
topic = "${s}.audit"
[tables."public.orders_eu"]
topic = "orders-europe"
"#,
        )
        .unwrap();
        let topic = |s: &str, n: &str| r.resolve(&table(s, n, &[("id", true)])).unwrap().topic;
        assert_eq!(&*topic("public", "orders_us"), "orders.us");
        assert_eq!(&*topic("public", "orders_eu"), "orders-europe");
        assert_eq!(&*topic("sales", "audit_log"), "sales.audit");
        // The match is anchored: a prefix match is not enough.
        assert_eq!(&*topic("xpublic", "orders_us"), "app.xpublic.orders_us");
    }

    #[test]
    fn column_regexes_and_key_rules_apply_unless_the_table_has_its_own() {
        let tables: BTreeMap<String, TableConfig> =
            toml::from_str("[\"public.own\"]\nexclude_columns = [\"id\"]\nkey_columns = [\"x\"]")
                .unwrap();
        let keys: Vec<KeyColumnsRule> = vec![KeyColumnsRule {
            pattern: "(.*)\\.purchase.*".into(),
            columns: vec!["x".into()],
        }];
        let exclude = vec![".*\\.secret".into(), "public\\.t\\.X".into()];
        let r = Router::new(&RoutingConfig {
            topic_prefix: "app",
            tables: Some(&tables),
            key_columns: &keys,
            exclude_columns: &exclude,
            ..RoutingConfig::default()
        })
        .unwrap();
        let cols = &[("id", true), ("x", false), ("secret", false)];
        let t = r.resolve(&table("public", "t", cols)).unwrap();
        // x (case-insensitively) and secret are left out; the key is the primary key.
        assert_eq!(t.projection.as_ref().unwrap().1, vec![0]);
        assert_eq!(t.key_columns, vec![0]);
        let p = r.resolve(&table("sales", "Purchases", cols)).unwrap();
        assert_eq!(p.key_columns, vec![1]);
        assert_eq!(p.projection.as_ref().unwrap().1, vec![0, 1]);
        // The table's own section wins over both.
        let own = r.resolve(&table("public", "own", cols)).unwrap();
        assert_eq!(own.projection.as_ref().unwrap().1, vec![1, 2]);
        assert_eq!(own.key_columns, vec![1]);
        // Nothing matched: no projection.
        let plain = r
            .resolve(&table("public", "plain", &[("id", true)]))
            .unwrap();
        assert!(plain.projection.is_none());
        // Include lists keep only what they match; a missing key column names the rule.
        let include = vec!["public\\.t\\.(id|x)".into()];
        let r = Router::new(&RoutingConfig {
            topic_prefix: "app",
            include_columns: &include,
            key_columns: &keys,
            ..RoutingConfig::default()
        })
        .unwrap();
        let t = r.resolve(&table("public", "t", cols)).unwrap();
        assert_eq!(t.projection.as_ref().unwrap().1, vec![0, 1]);
        let err = r
            .resolve(&table("s", "purchase", &[("id", true)]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("key_columns[0].columns"), "{err}");
        let err = Router::new(&RoutingConfig {
            include_columns: &include,
            exclude_columns: &exclude,
            ..RoutingConfig::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("exclude_columns"), "{err}");
    }

    #[test]
    fn unselected_tables_are_dropped_with_a_selection() {
        let r = Router::new(&RoutingConfig {
            topic_prefix: "app",
            selection: Some(crate::selection::TableSelection::new(
                &["re:inventory\\..*".into()],
                &[],
                false,
            )),
            ..RoutingConfig::default()
        })
        .unwrap();
        let captured = r
            .resolve(&table("inventory", "orders", &[("id", true)]))
            .unwrap();
        assert!(!captured.skips(Op::Create) && !captured.skips(Op::Truncate));
        let other = r
            .resolve(&table("public", "orders", &[("id", true)]))
            .unwrap();
        for op in [Op::Create, Op::Update, Op::Delete, Op::Truncate, Op::Read] {
            assert!(other.skips(op), "{op:?}");
        }
    }

    #[test]
    fn rules_can_match_the_default_topic_like_regex_router() {
        let r = router(
            r#"
[[routes]]
match = 'app\.public\.(.*)'
topic = "dbz.${1}x"
match_on = "topic"
"#,
        )
        .unwrap();
        let topic = |s: &str, n: &str| r.resolve(&table(s, n, &[("id", true)])).unwrap().topic;
        assert_eq!(&*topic("public", "orders"), "dbz.ordersx");
        // No match: the default topic, as RegexRouter leaves a topic it does not match.
        assert_eq!(&*topic("sales", "orders"), "app.sales.orders");
    }

    #[test]
    fn logical_table_rules_name_schemas_after_the_topic_and_add_the_key_field() {
        let r = router(
            r#"
[[routes]]
match = 'app\.(shard\d+)\.orders'
match_on = "topic"
topic = "app.orders"
logical_table = true
key_field_regex = 'app\.(shard\d+)\..*'
key_field_replacement = "$1"
[[routes]]
match = 'public\.(a|b)'
topic = "app.ab"
logical_table = true
[[routes]]
match = 'public\.(c|d)'
topic = "app.cd"
logical_table = true
key_enforce_uniqueness = false
key_field_name = "ignored"
[[routes]]
match = 'public\.e'
topic = "app.e"
"#,
        )
        .unwrap();
        let logical = |s: &str, n: &str| {
            r.resolve(&table(s, n, &[("id", true)]))
                .unwrap()
                .logical
                .map(|l| (*l).clone())
        };
        let lt = |base: &str, field: Option<(&str, &str)>| {
            Some(LogicalTable {
                schema_base: base.into(),
                key_field: field.map(|(n, v)| (n.to_string(), v.to_string())),
            })
        };
        assert_eq!(
            logical("shard1", "orders"),
            lt("app.orders", Some((DEFAULT_KEY_FIELD_NAME, "shard1")))
        );
        // The default value is the table's topic before routing.
        assert_eq!(
            logical("public", "b"),
            lt("app.ab", Some((DEFAULT_KEY_FIELD_NAME, "app.public.b")))
        );
        assert_eq!(logical("public", "c"), lt("app.cd", None));
        // RegexRouter rules and unrouted tables keep Debezium's per-table names.
        assert_eq!(logical("public", "e"), None);
        assert_eq!(logical("public", "z"), None);
        let err = router("[[routes]]\nmatch = 'x'\ntopic = 'y'\nkey_field_name = 'k'")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("routes[0].key_field_name") && err.contains("logical_table"),
            "{err}"
        );
        let err = router(
            "[[routes]]\nmatch = 'x'\ntopic = 'y'\nlogical_table = true\nkey_field_regex = '(.*)'",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("routes[0].key_field_replacement"), "{err}");
        let err = router(
            "[[routes]]\nmatch = 'x'\ntopic = 'y'\nlogical_table = true\nkey_field_regex = '('\nkey_field_replacement = 'z'",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("routes[0].key_field_regex"), "{err}");
    }

    #[test]
    fn unwrap_is_global_unless_a_table_says_otherwise() {
        let tables: BTreeMap<String, TableConfig> = toml::from_str(
            r#"
["public.off"]
unwrap = false
["public.on"]
unwrap = true
["public.own"]
unwrap = { delete_tombstone_handling_mode = "rewrite", add_fields = ["op"] }
"#,
        )
        .unwrap();
        let unwrap_of = |r: &Router, n: &str| {
            r.resolve(&table("public", n, &[("id", true)]))
                .unwrap()
                .unwrap
        };
        // Without [transforms.unwrap]: only the tables that ask, `true` with the defaults.
        let r = Router::new(&RoutingConfig {
            tables: Some(&tables),
            ..RoutingConfig::default()
        })
        .unwrap();
        assert!(unwrap_of(&r, "plain").is_none() && unwrap_of(&r, "off").is_none());
        let defaults = Unwrap::new(&crate::config::UnwrapConfig::default()).unwrap();
        assert_eq!(unwrap_of(&r, "on").as_deref(), Some(&defaults));
        let own = unwrap_of(&r, "own").unwrap();
        assert!(own.rewrites_deletes() && *own != defaults);
        // With it: every table but the one switched off; `true` takes the global options.
        let global = crate::config::UnwrapConfig {
            add_fields: vec!["table".into()],
            ..Default::default()
        };
        let r = Router::new(&RoutingConfig {
            tables: Some(&tables),
            unwrap: Some(&global),
            ..RoutingConfig::default()
        })
        .unwrap();
        let g = Unwrap::new(&global).unwrap();
        assert_eq!(unwrap_of(&r, "plain").as_deref(), Some(&g));
        assert_eq!(unwrap_of(&r, "on").as_deref(), Some(&g));
        assert!(unwrap_of(&r, "off").is_none());
        assert_eq!(unwrap_of(&r, "own").as_deref(), Some(&*own));
        // Bad options name the table's key; a bad value type says what is expected.
        let bad: BTreeMap<String, TableConfig> =
            toml::from_str("[\"public.t\"]\nunwrap = { add_fields = [\"nope\"] }").unwrap();
        let err = Router::new(&RoutingConfig {
            tables: Some(&bad),
            ..RoutingConfig::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("tables.\"public.t\".unwrap") && err.contains("nope"),
            "{err}"
        );
        let err = toml::from_str::<BTreeMap<String, TableConfig>>("[\"public.t\"]\nunwrap = 3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected true, false or a table"), "{err}");
        let err = toml::from_str::<BTreeMap<String, TableConfig>>(
            "[\"public.t\".unwrap]\nadd_feilds = []",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("add_feilds"), "{err}");
    }

    #[test]
    fn key_columns_projection_and_skipped_ops() {
        let r = router(
            r#"
[tables."public.users"]
key_columns = ["email"]
exclude_columns = ["password"]
skip_ops = ["d", "truncate"]
"#,
        )
        .unwrap();
        let t = table(
            "public",
            "users",
            &[("id", true), ("email", false), ("password", false)],
        );
        let route = r.resolve(&t).unwrap();
        assert_eq!(route.key_columns, vec![1]);
        assert!(route.skips(Op::Delete) && route.skips(Op::Truncate));
        assert!(!route.skips(Op::Create) && !route.skips(Op::Update));
        let e = ev(
            Op::Create,
            &t,
            vec![
                Value::Int32(1),
                Value::Text("a@b".into()),
                Value::Text("secret".into()),
            ],
        );
        let p = route.project(&e).unwrap();
        let pt = p.table.as_ref().unwrap();
        assert_eq!(
            pt.columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["id", "email"]
        );
        assert_eq!(p.after.unwrap().values.len(), 2);

        let r = router("[tables.\"public.users\"]\ninclude_columns = [\"email\", \"id\"]").unwrap();
        let route = r.resolve(&t).unwrap();
        assert_eq!(route.projection.as_ref().unwrap().1, vec![0, 1]);
    }

    #[test]
    fn missing_columns_and_bad_config_name_the_key() {
        let r = router("[tables.\"public.users\"]\nkey_columns = [\"nope\"]").unwrap();
        let err = r
            .resolve(&table("public", "users", &[("id", true)]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tables.\"public.users\".key_columns") && err.contains("nope"),
            "{err}"
        );
        let err = router("[[routes]]\nmatch = '('\ntopic = 'x'")
            .unwrap_err()
            .to_string();
        assert!(err.contains("routes[0].match"), "{err}");
        let err = router("[tables.\"users\"]\ntopic = 'x'")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tables.\"users\""), "{err}");
        let err = router("[tables.\"a.b\"]\ninclude_columns = ['x']\nexclude_columns = ['y']")
            .unwrap_err()
            .to_string();
        assert!(err.contains("exclude_columns"), "{err}");
        let err = router("[[outbox]]\ntable = 'public.outbox'\ntopic = 'x.{'")
            .unwrap_err()
            .to_string();
        assert!(err.contains("outbox[0].topic"), "{err}");
    }

    #[test]
    fn headers_are_stable_ids() {
        let r = router("").unwrap();
        let t = table("public", "t", &[("id", true)]);
        let route = r.resolve(&t).unwrap();
        let e = ev(Op::Delete, &t, vec![Value::Int32(1)]);
        let h = route.headers(&e, false);
        let get =
            |h: &EventHeaders, k: &str| h.get(k).map(|v| String::from_utf8(v.to_vec()).unwrap());
        assert_eq!(
            h.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            ["id", "op", "table", "txId"]
        );
        assert_eq!(get(&h, "id").as_deref(), Some("500:3"));
        assert_eq!(get(&h, "op").as_deref(), Some("d"));
        assert_eq!(get(&h, "table").as_deref(), Some("public.t"));
        assert_eq!(get(&h, "txId").as_deref(), Some("42"));
        // The same event again (re-delivery) has the same id; the tombstone its own.
        assert_eq!(route.headers(&e, false), h);
        let tomb = route.headers(&e, true);
        assert_eq!(get(&tomb, "id").as_deref(), Some("500:3:tombstone"));
        let mut tr = ev(Op::Truncate, &t, vec![]);
        tr.after = None;
        assert_eq!(
            get(&route.headers(&tr, false), "id").as_deref(),
            Some("500:3:public.t")
        );
    }

    #[test]
    fn topics_are_sanitized() {
        assert_eq!(sanitize_topic("a b/c.d-e_f"), "a_b_c.d-e_f");
        assert_eq!(sanitize_topic(&"x".repeat(300)).len(), MAX_TOPIC_LEN);
        assert_eq!(sanitize_topic(""), "_");
    }

    fn outbox_table() -> Arc<Table> {
        table(
            "public",
            "outbox",
            &[
                ("id", true),
                ("aggregatetype", false),
                ("aggregateid", false),
                ("type", false),
                ("payload", false),
            ],
        )
    }

    fn outbox_row() -> Vec<Value> {
        vec![
            Value::Text("5d3c1e6a-0000-4000-8000-000000000001".into()),
            Value::Text("Order".into()),
            Value::Text("o-17".into()),
            Value::Text("OrderCreated".into()),
            Value::Json("{\"total\": 12}".into()),
        ]
    }

    #[test]
    fn outbox_inserts_route_by_aggregate_type() {
        let r = router("[[outbox]]\ntable = 'public.outbox'").unwrap();
        let t = outbox_table();
        let route = r.resolve(&t).unwrap();
        let ob = route.outbox.as_ref().unwrap();
        let m = ob
            .message(&ev(Op::Create, &t, outbox_row()))
            .unwrap()
            .unwrap();
        assert_eq!(m.topic, "outbox.event.Order");
        // The key as JsonConverter writes a string, the document without PostgreSQL's spaces.
        assert_eq!(m.key.as_deref(), Some(b"\"o-17\"".as_slice()));
        assert_eq!(m.value.as_deref(), Some(b"{\"total\":12}".as_slice()));
        assert_eq!(
            m.headers,
            vec![(
                Arc::from("id"),
                Bytes::from("5d3c1e6a-0000-4000-8000-000000000001")
            )]
        );
        assert_eq!(
            m.id.as_deref(),
            Some("5d3c1e6a-0000-4000-8000-000000000001")
        );
        // Deletes and updates produce nothing.
        assert_eq!(ob.message(&ev(Op::Delete, &t, outbox_row())).unwrap(), None);
        assert_eq!(ob.message(&ev(Op::Update, &t, outbox_row())).unwrap(), None);
    }

    #[test]
    fn outbox_fields_string_payload_and_templates() {
        let r = router(
            r#"
[[outbox]]
table = "public.outbox"
topic = "events.{aggregatetype}.{type}"
payload_format = "string"
fields = [
  { column = "type", placement = "header", name = "eventType" },
  { column = "aggregateid", placement = "envelope" },
]
"#,
        )
        .unwrap();
        let t = outbox_table();
        let ob = r.resolve(&t).unwrap().outbox.unwrap();
        let m = ob
            .message(&ev(Op::Create, &t, outbox_row()))
            .unwrap()
            .unwrap();
        assert_eq!(m.topic, "events.Order.OrderCreated");
        assert!(m
            .headers
            .iter()
            .any(|(k, v)| &**k == "eventType" && v == "OrderCreated"));
        // Debezium's member order: the payload, then the fields as configured.
        assert_eq!(
            m.value.as_deref(),
            Some(br#"{"payload":"{\"total\": 12}","aggregateid":"o-17"}"#.as_slice())
        );
        // The bare key with `key_format = "string"` (StringConverter).
        let r3 = router("[[outbox]]\ntable = 'public.outbox'\nkey_format = 'string'").unwrap();
        let ob3 = r3.resolve(&t).unwrap().outbox.unwrap();
        let m3 = ob3
            .message(&ev(Op::Create, &t, outbox_row()))
            .unwrap()
            .unwrap();
        assert_eq!(m3.key.as_deref(), Some(b"o-17".as_slice()));
        // A null aggregate type cannot make a topic: an error, not a silent skip.
        let mut row = outbox_row();
        row[1] = Value::Null;
        assert!(ob.message(&ev(Op::Create, &t, row)).is_err());
        // A null payload is JSON's null (JsonConverter), or a tombstone when asked for.
        let mut row = outbox_row();
        row[4] = Value::Null;
        let r2 = router("[[outbox]]\ntable = 'public.outbox'").unwrap();
        let ob2 = r2.resolve(&t).unwrap().outbox.unwrap();
        assert_eq!(
            ob2.message(&ev(Op::Create, &t, row.clone()))
                .unwrap()
                .unwrap()
                .value
                .as_deref(),
            Some(b"null".as_slice())
        );
        let r4 = router("[[outbox]]\ntable = 'public.outbox'\ntombstone_on_empty_payload = true")
            .unwrap();
        let ob4 = r4.resolve(&t).unwrap().outbox.unwrap();
        assert_eq!(
            ob4.message(&ev(Op::Create, &t, row))
                .unwrap()
                .unwrap()
                .value,
            None
        );
    }

    #[test]
    fn compact_json_drops_whitespace_between_tokens_only() {
        let doc = "{\"a b\": [1, 2.50, {\"c\" : \"x \\\" y\"}],\n\t\"d\": null}";
        assert_eq!(
            String::from_utf8(compact_json(doc)).unwrap(),
            "{\"a b\":[1,2.50,{\"c\":\"x \\\" y\"}],\"d\":null}"
        );
        assert_eq!(compact_json("\"\\\\\" "), b"\"\\\\\"");
    }

    #[test]
    fn expanded_json_drops_null_members_at_every_depth() {
        let doc = r#"{"a": null, "b": {"c": null, "d": [null, 1, {"e": null}], "f": "null, }"}, "g": null}"#;
        assert_eq!(
            String::from_utf8(expanded_json(doc)).unwrap(),
            r#"{"b":{"d":[null,1,{}],"f":"null, }"}}"#
        );
        assert_eq!(
            expanded_json(r#"{"x": "a\"b", "y": null}"#),
            br#"{"x":"a\"b"}"#
        );
        assert_eq!(expanded_json("[]"), b"[]");
        assert_eq!(expanded_json("{}"), b"{}");
        assert_eq!(expanded_json("12.50"), b"12.50");
    }

    #[test]
    fn outbox_columns_are_checked_against_the_table() {
        let r = router("[[outbox]]\ntable = 'public.outbox'\npayload_column = 'body'").unwrap();
        let err = r.resolve(&outbox_table()).unwrap_err().to_string();
        assert!(
            err.contains("outbox[0].payload_column") && err.contains("body"),
            "{err}"
        );
    }
}
