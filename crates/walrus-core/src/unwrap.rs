//! Debezium's new-record-state extraction (`io.debezium.transforms.ExtractNewRecordState`,
//! `[transforms.unwrap]`): flat rows instead of the envelope, with Debezium 3.x's delete and
//! tombstone handling, added fields and added headers.
//!
//! ```text
//!  envelope JSON (from the value Encoder) ─▶ Unwrap::value ─▶ Drop | Tombstone | flat row JSON
//!                                          └▶ Unwrap::headers ─▶ __op, __source_ts_ms, ... headers
//! ```
//!
//! It works on the JSON the encoder wrote, as the SMT works on the Connect record the
//! connector made: the row object is copied byte for byte (`after`, or `before` for a
//! rewritten delete), added fields are copied from the envelope's `source`, `transaction`
//! and top level, and with `schemas_enable` the row's schema is the envelope's `Value`
//! schema with the added fields' schemas appended, as Kafka Connect's `SchemaUtil` copies
//! them (name, version, parameters; optional; no default). What the SMT does, record by
//! record:
//!
//! | record | `drop` | `tombstone` (default) | `rewrite` | `rewrite-with-tombstone` | `delete-to-tombstone` |
//! |---|---|---|---|---|---|
//! | create, update, read | row | row | row + `__deleted: "false"` | same as `rewrite` | row |
//! | delete | dropped | value `null` (with the row schema when schemas are on; not a Kafka tombstone) | old row + `__deleted: "true"` | same as `rewrite` | Kafka tombstone |
//! | tombstone | dropped | dropped | dropped | kept | dropped |
//! | truncate | dropped | dropped | dropped | dropped | dropped |
//!
//! Logical messages and transaction events are not envelopes and pass unchanged.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use crate::config::{DeleteTombstoneHandling, UnwrapConfig, DEFAULT_UNWRAP_PREFIX};

/// Fields of the top level of the envelope that `add.fields` may name without a struct.
const TOP_LEVEL: &[&str] = &["op", "ts_ms", "ts_us", "ts_ns"];
/// Fields of the `transaction` block.
const TRANSACTION_FIELDS: &[&str] = &["id", "total_order", "data_collection_order"];
/// Fields of PostgreSQL's `source` block.
const SOURCE_FIELDS: &[&str] = &[
    "version",
    "connector",
    "name",
    "ts_ms",
    "snapshot",
    "db",
    "sequence",
    "ts_us",
    "ts_ns",
    "schema",
    "table",
    "txId",
    "lsn",
    "xmin",
    "origin",
    "origin_lsn",
];

/// One entry of `add.fields` / `add.headers`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FieldRef {
    /// `source` or `transaction`; `None` for top-level fields.
    parent: Option<&'static str>,
    field: String,
    /// The added field's or header's name.
    name: String,
}

impl FieldRef {
    /// Debezium's `FieldReference`: `field`, `struct.field`, either with `:new_name`; an
    /// unqualified field belongs to `transaction` (`id`, `total_order`,
    /// `data_collection_order`), the top level (`op`, `ts_*`) or `source`.
    fn parse(prefix: &str, spec: &str) -> Result<FieldRef, String> {
        let spec = spec.trim();
        let (path, rename) = match spec.split_once(':') {
            Some((p, n)) if !n.is_empty() && !n.contains(':') => (p, Some(n)),
            Some(_) => return Err(format!("{spec:?}: expected field[:new_name]")),
            None => (spec, None),
        };
        let (parent, field) = match path.split_once('.') {
            Some((s, f)) => {
                let parent = match s {
                    "source" => "source",
                    "transaction" => "transaction",
                    _ => {
                        return Err(format!(
                            "{spec:?}: only fields of source and transaction, or op and ts_ms, can be added"
                        ))
                    }
                };
                (Some(parent), f)
            }
            None if TRANSACTION_FIELDS.contains(&path) => (Some("transaction"), path),
            None if TOP_LEVEL.contains(&path) => (None, path),
            None => (Some("source"), path),
        };
        let known = match parent {
            None => TOP_LEVEL,
            Some("transaction") => TRANSACTION_FIELDS,
            Some(_) => SOURCE_FIELDS,
        };
        if !known.contains(&field) {
            return Err(format!(
                "{spec:?}: {} has no field {field:?} (it has {})",
                parent.unwrap_or("the envelope"),
                known.join(", ")
            ));
        }
        let name = match (rename, parent, path.contains('.')) {
            (Some(n), _, _) => format!("{prefix}{n}"),
            (None, Some(p), true) => format!("{prefix}{p}_{field}"),
            _ => format!("{prefix}{field}"),
        };
        Ok(FieldRef {
            parent,
            field: field.to_owned(),
            name,
        })
    }
}

/// What a record becomes.
#[derive(Debug, PartialEq, Eq)]
pub enum Flattened {
    /// Not published.
    Drop,
    /// A Kafka tombstone (null value).
    Tombstone,
    /// The flat value, written into the output buffer.
    Value,
}

/// A configured `ExtractNewRecordState`; see the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unwrap {
    mode: DeleteTombstoneHandling,
    fields: Vec<FieldRef>,
    headers: Vec<FieldRef>,
}

impl Unwrap {
    /// From `[transforms.unwrap]`; the error names the bad entry.
    pub fn new(config: &UnwrapConfig) -> Result<Unwrap, String> {
        let fields_prefix = config
            .add_fields_prefix
            .as_deref()
            .unwrap_or(DEFAULT_UNWRAP_PREFIX);
        let headers_prefix = config
            .add_headers_prefix
            .as_deref()
            .unwrap_or(DEFAULT_UNWRAP_PREFIX);
        let parse = |prefix: &str, list: &[String], key: &str| {
            list.iter()
                .map(|s| FieldRef::parse(prefix, s).map_err(|e| format!("{key}: {e}")))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Unwrap {
            mode: config.delete_tombstone_handling_mode,
            fields: parse(fields_prefix, &config.add_fields, "add_fields")?,
            headers: parse(headers_prefix, &config.add_headers, "add_headers")?,
        })
    }

    /// Whether the tombstone after a delete is kept (`rewrite-with-tombstone` only).
    pub fn keeps_tombstones(&self) -> bool {
        self.mode == DeleteTombstoneHandling::RewriteWithTombstone
    }

    /// Whether deletes become rows with `__deleted` (`rewrite`, `rewrite-with-tombstone`).
    pub fn rewrites_deletes(&self) -> bool {
        self.rewrites()
    }

    /// `delete.tombstone.handling.mode`.
    pub fn mode(&self) -> DeleteTombstoneHandling {
        self.mode
    }

    /// The `add.fields` entries, in order: (`source`, `transaction` or `None` for the top
    /// level, the envelope field, the added field's name). For formats that flatten
    /// themselves (Avro).
    pub fn added_fields(&self) -> impl Iterator<Item = (Option<&'static str>, &str, &str)> {
        self.fields
            .iter()
            .map(|f| (f.parent, f.field.as_str(), f.name.as_str()))
    }

    /// The `add.headers` entries, as [`Unwrap::added_fields`].
    pub fn added_headers(&self) -> impl Iterator<Item = (Option<&'static str>, &str, &str)> {
        self.headers
            .iter()
            .map(|f| (f.parent, f.field.as_str(), f.name.as_str()))
    }

    /// A header's value from the JSON of the envelope field it names, as Kafka Connect's
    /// `SimpleHeaderConverter` writes it: a string as its text, a number as its digits,
    /// null as an empty value.
    pub fn header_value(raw: &[u8]) -> Bytes {
        if raw.first() == Some(&b'"') {
            serde_json::from_slice::<String>(raw)
                .map(Bytes::from)
                .unwrap_or_else(|_| Bytes::copy_from_slice(raw))
        } else if is_null(raw) {
            Bytes::new()
        } else {
            Bytes::copy_from_slice(raw)
        }
    }

    fn rewrites(&self) -> bool {
        matches!(
            self.mode,
            DeleteTombstoneHandling::Rewrite | DeleteTombstoneHandling::RewriteWithTombstone
        )
    }

    /// Writes the flat value of `envelope` (the value encoder's JSON, with or without its
    /// schema) into `out` (cleared first), or says that the record is dropped or becomes a
    /// tombstone. A value that is not an envelope is copied unchanged.
    pub fn value(&self, envelope: &[u8], out: &mut Vec<u8>) -> Flattened {
        out.clear();
        let (schema, payload) = split_schema(envelope);
        let p = members(payload);
        let (Some(before), Some(after)) = (get(payload, &p, "before"), get(payload, &p, "after"))
        else {
            out.extend_from_slice(envelope);
            return Flattened::Value;
        };
        let (row, deleted) = match (is_null(after), is_null(before)) {
            (true, true) => return Flattened::Drop,
            (true, false) => match self.mode {
                DeleteTombstoneHandling::Drop => return Flattened::Drop,
                DeleteTombstoneHandling::DeleteToTombstone => return Flattened::Tombstone,
                DeleteTombstoneHandling::Tombstone => {
                    // ExtractField of the null `after`: a null value that keeps the row's
                    // schema, which JsonConverter writes as such.
                    match schema {
                        Some(s) => {
                            out.extend_from_slice(b"{\"schema\":");
                            self.row_schema(s, false, out);
                            out.extend_from_slice(b",\"payload\":null}");
                        }
                        None => out.extend_from_slice(b"null"),
                    }
                    return Flattened::Value;
                }
                DeleteTombstoneHandling::Rewrite
                | DeleteTombstoneHandling::RewriteWithTombstone => (before, Some("true")),
            },
            (false, _) => (after, self.rewrites().then_some("false")),
        };
        let changed = deleted.is_some() || !self.fields.is_empty();
        if let Some(s) = schema {
            out.extend_from_slice(b"{\"schema\":");
            self.row_schema(s, changed, out);
            out.extend_from_slice(b",\"payload\":");
        }
        if changed {
            let open = row.len() - 1; // without the closing brace
            out.extend_from_slice(&row[..open]);
            let mut empty = row[1..open].iter().all(u8::is_ascii_whitespace);
            let mut sep = |out: &mut Vec<u8>| {
                if !empty {
                    out.push(b',');
                }
                empty = false;
            };
            if let Some(d) = deleted {
                sep(out);
                out.extend_from_slice(b"\"__deleted\":\"");
                out.extend_from_slice(d.as_bytes());
                out.push(b'"');
            }
            for f in &self.fields {
                sep(out);
                write_json_str(out, &f.name);
                out.push(b':');
                out.extend_from_slice(lookup(payload, &p, f).unwrap_or(b"null"));
            }
            out.push(b'}');
        } else {
            out.extend_from_slice(row);
        }
        if schema.is_some() {
            out.push(b'}');
        }
        Flattened::Value
    }

    /// Adds the `add.headers` headers of a record to `out`: from its envelope, or for a
    /// tombstone (`None`) only `op`, as `d`. Values as Kafka Connect's
    /// `SimpleHeaderConverter` writes them: strings as their text, numbers as digits, null
    /// as an empty value.
    pub fn headers(&self, envelope: Option<&[u8]>, out: &mut Vec<(Arc<str>, Bytes)>) {
        if self.headers.is_empty() {
            return;
        }
        let Some(envelope) = envelope else {
            for h in &self.headers {
                if h.parent.is_none() && h.field == "op" {
                    out.push((Arc::from(h.name.as_str()), Bytes::from_static(b"d")));
                }
            }
            return;
        };
        let (_, payload) = split_schema(envelope);
        let p = members(payload);
        if get(payload, &p, "after").is_none() {
            return; // not an envelope
        }
        for h in &self.headers {
            let raw = lookup(payload, &p, h).unwrap_or(b"null");
            out.push((Arc::from(h.name.as_str()), Unwrap::header_value(raw)));
        }
    }

    /// The row's schema from the envelope schema `s`: the `before` field's struct without
    /// its `field` member; when `changed` (fields added), required, as `SchemaUtil` copies
    /// it, with `__deleted` and the added fields' schemas appended.
    fn row_schema(&self, s: &[u8], changed: bool, out: &mut Vec<u8>) {
        let top = members(s);
        let Some(fields) = get(s, &top, "fields") else {
            out.extend_from_slice(b"null");
            return;
        };
        let Some(before) = elements(fields).first().map(|r| &fields[r.clone()]) else {
            out.extend_from_slice(b"null");
            return;
        };
        out.push(b'{');
        let mut first = true;
        for (key, range) in members(before) {
            let k = &before[key.clone()];
            if k == b"field" {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'"');
            out.extend_from_slice(k);
            out.extend_from_slice(b"\":");
            let v = &before[range];
            match k {
                b"optional" if changed => out.extend_from_slice(b"false"),
                b"fields" if changed => {
                    let open = v.len() - 1;
                    out.extend_from_slice(&v[..open]);
                    let mut empty = elements(v).is_empty();
                    let mut sep = |out: &mut Vec<u8>| {
                        if !empty {
                            out.push(b',');
                        }
                        empty = false;
                    };
                    if self.rewrites() {
                        sep(out);
                        out.extend_from_slice(
                            b"{\"type\":\"string\",\"optional\":true,\"field\":\"__deleted\"}",
                        );
                    }
                    for f in &self.fields {
                        if let Some(schema) = field_schema(s, &top, f) {
                            sep(out);
                            added_field_schema(schema, &f.name, out);
                        }
                    }
                    out.push(b']');
                }
                _ => out.extend_from_slice(v),
            }
        }
        out.push(b'}');
    }
}

/// `(schema, payload)` of `{"schema":..,"payload":..}`; `(None, value)` otherwise.
fn split_schema(value: &[u8]) -> (Option<&[u8]>, &[u8]) {
    if !value.starts_with(b"{\"schema\":") {
        return (None, value);
    }
    let m = members(value);
    match (get(value, &m, "schema"), get(value, &m, "payload")) {
        (Some(s), Some(p)) => (Some(s), p),
        _ => (None, value),
    }
}

/// The raw value of field `f` in the envelope `payload` (members `p`); a field of a null
/// struct (`transaction` outside transaction metadata) is null.
fn lookup<'a>(
    payload: &'a [u8],
    p: &[(Range<usize>, Range<usize>)],
    f: &FieldRef,
) -> Option<&'a [u8]> {
    match f.parent {
        None => get(payload, p, &f.field),
        Some(parent) => {
            let s = get(payload, p, parent)?;
            if is_null(s) {
                return Some(b"null");
            }
            get(s, &members(s), &f.field)
        }
    }
}

/// The schema of field `f` in the envelope schema `s` (members `top`).
fn field_schema<'a>(
    s: &'a [u8],
    top: &[(Range<usize>, Range<usize>)],
    f: &FieldRef,
) -> Option<&'a [u8]> {
    let named = |list: &'a [u8], name: &str| -> Option<&'a [u8]> {
        elements(list).into_iter().map(|r| &list[r]).find(|e| {
            get(e, &members(e), "field").is_some_and(|n| n == format!("\"{name}\"").as_bytes())
        })
    };
    let fields = get(s, top, "fields")?;
    match f.parent {
        None => named(fields, &f.field),
        Some(parent) => {
            let p = named(fields, parent)?;
            let inner = get(p, &members(p), "fields")?;
            named(inner, &f.field)
        }
    }
}

/// A field's schema copied as `SchemaUtil.copySchemaBasics(..).optional()`: optional, no
/// default, under the new name.
fn added_field_schema(schema: &[u8], name: &str, out: &mut Vec<u8>) {
    out.push(b'{');
    let mut first = true;
    for (key, range) in members(schema) {
        let k = &schema[key];
        if k == b"field" || k == b"default" {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'"');
        out.extend_from_slice(k);
        out.extend_from_slice(b"\":");
        if k == b"optional" {
            out.extend_from_slice(b"true");
        } else {
            out.extend_from_slice(&schema[range]);
        }
    }
    out.extend_from_slice(b",\"field\":");
    write_json_str(out, name);
    out.push(b'}');
}

fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // serde_json writes a &str as a JSON string and cannot fail into a Vec.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn is_null(raw: &[u8]) -> bool {
    raw == b"null"
}

/// The value of member `name` of the object `obj` whose members are `m`.
fn get<'a>(obj: &'a [u8], m: &[(Range<usize>, Range<usize>)], name: &str) -> Option<&'a [u8]> {
    m.iter()
        .find(|(k, _)| &obj[k.clone()] == name.as_bytes())
        .map(|(_, v)| &obj[v.clone()])
}

/// The members of the JSON object `obj` (walrus's own, well-formed output) as (key without
/// quotes, value) byte ranges; empty when `obj` is not an object.
fn members(obj: &[u8]) -> Vec<(Range<usize>, Range<usize>)> {
    let mut out = Vec::new();
    let mut i = skip_ws(obj, 0);
    if obj.get(i) != Some(&b'{') {
        return out;
    }
    i += 1;
    loop {
        i = skip_ws(obj, i);
        if obj.get(i) != Some(&b'"') {
            return out;
        }
        let key_end = string_end(obj, i);
        let key = i + 1..key_end - 1;
        i = skip_ws(obj, key_end);
        if obj.get(i) != Some(&b':') {
            return out;
        }
        let start = skip_ws(obj, i + 1);
        let end = value_end(obj, start);
        out.push((key, start..end));
        i = skip_ws(obj, end);
        if obj.get(i) != Some(&b',') {
            return out;
        }
        i += 1;
    }
}

/// The elements of the JSON array `arr` as byte ranges.
fn elements(arr: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut i = skip_ws(arr, 0);
    if arr.get(i) != Some(&b'[') {
        return out;
    }
    i = skip_ws(arr, i + 1);
    if arr.get(i) == Some(&b']') {
        return out;
    }
    loop {
        let start = skip_ws(arr, i);
        let end = value_end(arr, start);
        if end == start {
            return out;
        }
        out.push(start..end);
        i = skip_ws(arr, end);
        if arr.get(i) != Some(&b',') {
            return out;
        }
        i += 1;
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// The index after the string starting at `i` (a `"`).
fn string_end(b: &[u8], mut i: usize) -> usize {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// The index after the value starting at `i`.
fn value_end(b: &[u8], i: usize) -> usize {
    match b.get(i) {
        Some(b'"') => string_end(b, i),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return j + 1;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            b.len()
        }
        Some(_) => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']') && !b[j].is_ascii_whitespace()
            {
                j += 1;
            }
            j
        }
        None => i,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn unwrap(mode: DeleteTombstoneHandling, fields: &[&str], headers: &[&str]) -> Unwrap {
        Unwrap::new(&UnwrapConfig {
            delete_tombstone_handling_mode: mode,
            add_fields: fields.iter().map(|s| s.to_string()).collect(),
            add_headers: headers.iter().map(|s| s.to_string()).collect(),
            ..UnwrapConfig::default()
        })
        .unwrap()
    }

    const SOURCE: &str = r#"{"version":"1","connector":"postgresql","name":"p","ts_ms":1700,"snapshot":"false","db":"d","sequence":"[null,\"7\"]","ts_us":1700000,"ts_ns":1700000000,"schema":"public","table":"t","txId":9,"lsn":7,"xmin":null,"origin":null,"origin_lsn":null}"#;

    fn envelope(op: &str, before: &str, after: &str) -> Vec<u8> {
        format!(
            r#"{{"before":{before},"after":{after},"source":{SOURCE},"transaction":null,"op":"{op}","ts_ms":5,"ts_us":5000,"ts_ns":5000000}}"#
        )
        .into_bytes()
    }

    fn run(u: &Unwrap, env: &[u8]) -> (Flattened, Option<Value>) {
        let mut out = Vec::new();
        let f = u.value(env, &mut out);
        let v = (f == Flattened::Value).then(|| serde_json::from_slice(&out).unwrap());
        (f, v)
    }

    #[test]
    fn rows_deletes_and_truncates_by_mode() {
        let create = envelope("c", "null", r#"{"id":1,"v":"a"}"#);
        let delete = envelope("d", r#"{"id":1,"v":"a"}"#, "null");
        let truncate = envelope("t", "null", "null");
        let u = unwrap(DeleteTombstoneHandling::Tombstone, &[], &[]);
        assert_eq!(run(&u, &create).1, Some(json!({"id": 1, "v": "a"})));
        assert_eq!(run(&u, &delete), (Flattened::Value, Some(Value::Null)));
        assert_eq!(run(&u, &truncate).0, Flattened::Drop);
        assert!(!u.keeps_tombstones());
        let u = unwrap(DeleteTombstoneHandling::Drop, &[], &[]);
        assert_eq!(run(&u, &delete).0, Flattened::Drop);
        let u = unwrap(DeleteTombstoneHandling::DeleteToTombstone, &[], &[]);
        assert_eq!(run(&u, &delete).0, Flattened::Tombstone);
        let u = unwrap(DeleteTombstoneHandling::RewriteWithTombstone, &[], &[]);
        assert!(u.keeps_tombstones());
        assert_eq!(
            run(&u, &delete).1,
            Some(json!({"id": 1, "v": "a", "__deleted": "true"}))
        );
        assert_eq!(
            run(&u, &create).1,
            Some(json!({"id": 1, "v": "a", "__deleted": "false"}))
        );
    }

    #[test]
    fn added_fields_and_headers_use_debezium_names() {
        let u = unwrap(
            DeleteTombstoneHandling::Rewrite,
            &["op", "table", "source.ts_ms", "lsn:LSN", "id"],
            &["op", "db", "source.txId", "transaction.id"],
        );
        let create = envelope("c", "null", r#"{"id":1}"#);
        assert_eq!(
            run(&u, &create).1,
            Some(
                json!({"id": 1, "__deleted": "false", "__op": "c", "__table": "t",
                "__source_ts_ms": 1700, "__LSN": 7, "__id": null})
            )
        );
        let mut h = Vec::new();
        u.headers(Some(&create), &mut h);
        let h: Vec<(String, String)> = h
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        assert_eq!(
            h,
            vec![
                ("__op".into(), "c".into()),
                ("__db".into(), "d".into()),
                ("__source_txId".into(), "9".into()),
                ("__transaction_id".into(), String::new()),
            ]
        );
        let mut h = Vec::new();
        u.headers(None, &mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(&*h[0].0, "__op");
        assert_eq!(&h[0].1[..], b"d");
    }

    #[test]
    fn bad_field_references_are_named() {
        for (spec, needle) in [
            ("source.nope", "nope"),
            ("after.id", "after.id"),
            ("op:a:b", "op:a:b"),
        ] {
            let err = Unwrap::new(&UnwrapConfig {
                add_fields: vec![spec.into()],
                ..UnwrapConfig::default()
            })
            .unwrap_err();
            assert!(err.contains("add_fields") && err.contains(needle), "{err}");
        }
    }

    #[test]
    fn the_row_schema_gets_the_added_fields_schemas() {
        let schema = r#"{"type":"struct","fields":[{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":true,"name":"p.public.t.Value","field":"before"},{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":true,"name":"p.public.t.Value","field":"after"},{"type":"struct","fields":[{"type":"int64","optional":false,"field":"ts_ms"},{"type":"string","optional":true,"name":"io.debezium.data.Enum","version":1,"parameters":{"allowed":"true,false"},"default":"false","field":"snapshot"}],"optional":false,"name":"io.debezium.connector.postgresql.Source","field":"source"},{"type":"string","optional":false,"field":"op"}],"optional":false,"name":"p.public.t.Envelope","version":2}"#;
        let payload = envelope("c", "null", r#"{"id":1}"#);
        let env = format!(
            r#"{{"schema":{schema},"payload":{}}}"#,
            String::from_utf8(payload).unwrap()
        );
        let plain = unwrap(DeleteTombstoneHandling::Tombstone, &[], &[]);
        let v = run(&plain, env.as_bytes()).1.unwrap();
        assert_eq!(
            v["schema"],
            json!({"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":true,"name":"p.public.t.Value"})
        );
        assert_eq!(v["payload"], json!({"id": 1}));
        let u = unwrap(
            DeleteTombstoneHandling::Rewrite,
            &["op", "source.ts_ms", "snapshot"],
            &[],
        );
        let v = run(&u, env.as_bytes()).1.unwrap();
        assert_eq!(
            v["schema"],
            json!({"type":"struct","fields":[
                {"type":"int32","optional":false,"field":"id"},
                {"type":"string","optional":true,"field":"__deleted"},
                {"type":"string","optional":true,"field":"__op"},
                {"type":"int64","optional":true,"field":"__source_ts_ms"},
                {"type":"string","optional":true,"name":"io.debezium.data.Enum","version":1,"parameters":{"allowed":"true,false"},"field":"__snapshot"}
            ],"optional":false,"name":"p.public.t.Value"})
        );
        assert_eq!(
            v["payload"],
            json!({"id": 1, "__deleted": "false", "__op": "c", "__source_ts_ms": 1700, "__snapshot": "false"})
        );
        // A delete under the default mode: the null row keeps its schema.
        let del = env.replace(
            r#""before":null,"after":{"id":1}"#,
            r#""before":{"id":1},"after":null"#,
        );
        let v = run(&plain, del.as_bytes()).1.unwrap();
        assert_eq!(v["payload"], Value::Null);
        assert_eq!(v["schema"]["name"], "p.public.t.Value");
    }
}
