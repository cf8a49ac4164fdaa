//! Unit tests of the JSON encoder against Debezium's shapes.

use super::*;
use crate::event::{Column, LogicalMessage, ReplicaIdentity, SourcePosition};
use crate::value::TypeDesc;
use serde_json::{json, Value as J};

const NOW_US: i64 = 1_700_000_000_123_456;
const COMMIT_US: i64 = 1_699_999_999_000_001;

fn col(name: &str, type_oid: u32, type_modifier: i32, key: bool) -> Column {
    Column {
        name: name.to_string(),
        type_oid,
        type_name: String::new(),
        type_modifier,
        key,
        primary_key: key,
        not_null: key,
        default: None,
        type_desc: None,
    }
}

fn table(columns: Vec<Column>) -> Arc<Table> {
    Arc::new(Table {
        id: 16_384,
        schema: "public".into(),
        name: "items".into(),
        columns,
        replica_identity: ReplicaIdentity::Default,
    })
}

fn simple_table() -> Arc<Table> {
    table(vec![col("id", INT4, -1, true), col("name", 25, -1, false)])
}

fn source() -> SourcePosition {
    SourcePosition {
        lsn: Lsn(24_023_128),
        commit_lsn: Lsn(24_023_200),
        last_commit_lsn: Some(Lsn(24_023_119)),
        tx_id: Some(555),
        commit_time_us: COMMIT_US,
        tx_index: 0,
        origin: None,
        snapshot: Default::default(),
    }
}

fn row(values: Vec<Value>) -> Row {
    Row {
        values,
        key_only: false,
    }
}

fn event(op: Op, t: &Arc<Table>, before: Option<Row>, after: Option<Row>) -> ChangeEvent {
    ChangeEvent {
        op,
        table: Some(Arc::clone(t)),
        before,
        after,
        source: source(),
        message: None,
    }
}

fn opts() -> JsonOptions {
    JsonOptions {
        topic_prefix: "walrus".into(),
        database: "shop".into(),
        connector_version: "0.1.0".into(),
        ..JsonOptions::default()
    }
}

fn value_json(enc: &mut JsonEncoder, ev: &ChangeEvent) -> J {
    let mut out = Vec::new();
    enc.encode_value_at(ev, NOW_US, &mut out);
    serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
}

fn key_json(enc: &mut JsonEncoder, ev: &ChangeEvent, cols: &[usize]) -> Option<J> {
    let mut out = Vec::new();
    enc.encode_key(ev, cols, &mut out)
        .then(|| serde_json::from_slice(&out).unwrap())
}

fn expected_source(table: &str) -> J {
    json!({
        "version": "0.1.0", "connector": "postgresql", "name": "walrus",
        "ts_ms": 1_699_999_999_000_i64, "snapshot": "false", "db": "shop",
        "sequence": "[\"24023119\",\"24023128\"]",
        "ts_us": COMMIT_US, "ts_ns": COMMIT_US * 1000,
        "schema": if table.is_empty() { "" } else { "public" }, "table": table,
        "txId": 555, "lsn": 24_023_128, "xmin": null, "origin": null, "origin_lsn": null
    })
}

/// Encodes one value of a column of the given type (payload of `after.v`).
fn one(opts: JsonOptions, type_oid: u32, typmod: i32, v: Value) -> J {
    let t = table(vec![col("v", type_oid, typmod, false)]);
    let mut enc = JsonEncoder::new(opts);
    let j = value_json(&mut enc, &event(Op::Create, &t, None, Some(row(vec![v]))));
    j["after"]["v"].clone()
}

fn one_default(type_oid: u32, typmod: i32, v: Value) -> J {
    one(opts(), type_oid, typmod, v)
}

/// The schema of `after.v` with schemas on.
fn one_schema(opts: JsonOptions, type_oid: u32, typmod: i32) -> J {
    let t = table(vec![col("v", type_oid, typmod, false)]);
    let mut enc = JsonEncoder::new(JsonOptions {
        schemas_enable: true,
        ..opts
    });
    let j = value_json(
        &mut enc,
        &event(Op::Create, &t, None, Some(row(vec![Value::Null]))),
    );
    j["schema"]["fields"][1]["fields"][0].clone()
}

fn numeric_typmod(precision: i32, scale: i32) -> i32 {
    ((precision << 16) | (scale & 0x7ff)) + 4
}

#[test]
fn create_payload_matches_debezium() {
    let t = simple_table();
    let mut enc = JsonEncoder::new(opts());
    let ev = event(
        Op::Create,
        &t,
        None,
        Some(row(vec![Value::Int32(1), Value::Text("a\"b\n".into())])),
    );
    let got = value_json(&mut enc, &ev);
    assert_eq!(
        got,
        json!({
            "before": null,
            "after": {"id": 1, "name": "a\"b\n"},
            "source": expected_source("items"),
            "transaction": null,
            "op": "c",
            "ts_ms": NOW_US / 1000, "ts_us": NOW_US, "ts_ns": NOW_US * 1000
        })
    );
    // Field order as Debezium's envelope.
    let mut out = Vec::new();
    enc.encode_value_at(&ev, NOW_US, &mut out);
    let s = String::from_utf8(out).unwrap();
    let pos = |k: &str| s.find(&format!("\"{k}\":")).unwrap();
    assert!(pos("before") < pos("after") && pos("after") < pos("source"));
    assert!(pos("source") < pos("transaction") && pos("transaction") < pos("op"));
    assert!(s.ends_with(&format!(
        "\"op\":\"c\",\"ts_ms\":{},\"ts_us\":{NOW_US},\"ts_ns\":{}}}",
        NOW_US / 1000,
        NOW_US * 1000
    )));
    assert_eq!(key_json(&mut enc, &ev, &[0]), Some(json!({"id": 1})));
}

#[test]
fn update_delete_read_truncate() {
    let t = simple_table();
    let mut enc = JsonEncoder::new(opts());
    let old_key = Row {
        values: vec![Value::Int32(1), Value::Null],
        key_only: true,
    };
    let new = row(vec![Value::Int32(2), Value::Text("b".into())]);

    let upd = event(Op::Update, &t, Some(old_key.clone()), Some(new.clone()));
    let j = value_json(&mut enc, &upd);
    assert_eq!(j["op"], "u");
    assert_eq!(j["before"], json!({"id": 1, "name": null}));
    assert_eq!(j["after"], json!({"id": 2, "name": "b"}));
    assert_eq!(key_json(&mut enc, &upd, &[0]), Some(json!({"id": 2})));

    // No old tuple: before is null.
    let upd = event(Op::Update, &t, None, Some(new.clone()));
    assert_eq!(value_json(&mut enc, &upd)["before"], J::Null);

    let del = event(Op::Delete, &t, Some(old_key), None);
    let j = value_json(&mut enc, &del);
    assert_eq!(j["op"], "d");
    assert_eq!(j["before"], json!({"id": 1, "name": null}));
    assert_eq!(j["after"], J::Null);
    assert_eq!(key_json(&mut enc, &del, &[0]), Some(json!({"id": 1})));

    let mut read = event(Op::Read, &t, None, Some(new));
    read.source.snapshot = crate::event::SnapshotMarker::True;
    let j = value_json(&mut enc, &read);
    assert_eq!(j["op"], "r");
    assert_eq!(j["source"]["snapshot"], "true");
    read.source.snapshot = crate::event::SnapshotMarker::LastInDataCollection;
    let j = value_json(&mut enc, &read);
    assert_eq!(j["source"]["snapshot"], "last_in_data_collection");

    let trunc = event(Op::Truncate, &t, None, None);
    let j = value_json(&mut enc, &trunc);
    assert_eq!(j["op"], "t");
    assert_eq!(j["before"], J::Null);
    assert_eq!(j["after"], J::Null);
    assert_eq!(j["source"], expected_source("items"));
    assert_eq!(key_json(&mut enc, &trunc, &[0]), None);
}

#[test]
fn null_keys() {
    let t = simple_table();
    let mut enc = JsonEncoder::new(opts());
    let ev = event(
        Op::Create,
        &t,
        None,
        Some(row(vec![Value::Int32(1), Value::Null])),
    );
    let mut out = b"stale".to_vec();
    assert!(!enc.encode_key(&ev, &[], &mut out));
    assert!(out.is_empty());
    // A delete without an old row (REPLICA IDENTITY NOTHING) has no key.
    let del = event(Op::Delete, &t, None, None);
    assert_eq!(key_json(&mut enc, &del, &[0]), None);
}

#[test]
fn source_without_positions() {
    let t = simple_table();
    let mut enc = JsonEncoder::new(opts());
    let mut ev = event(
        Op::Create,
        &t,
        None,
        Some(row(vec![Value::Int32(1), Value::Null])),
    );
    ev.source.last_commit_lsn = None;
    ev.source.tx_id = None;
    ev.source.origin = Some("node_a".into());
    let j = value_json(&mut enc, &ev);
    assert_eq!(j["source"]["sequence"], "[null,\"24023128\"]");
    assert_eq!(j["source"]["txId"], J::Null);
    assert_eq!(j["source"]["origin"], "node_a");
}

#[test]
fn logical_message() {
    let mut enc = JsonEncoder::new(opts());
    let ev = ChangeEvent {
        op: Op::Message,
        table: None,
        before: None,
        after: None,
        source: source(),
        message: Some(LogicalMessage {
            prefix: "audit".into(),
            content: b"hello".to_vec(),
            transactional: true,
        }),
    };
    assert_eq!(
        value_json(&mut enc, &ev),
        json!({
            "op": "m",
            "ts_ms": NOW_US / 1000,
            "source": expected_source(""),
            "transaction": null,
            "message": {"prefix": "audit", "content": "aGVsbG8="}
        })
    );
    assert_eq!(
        key_json(&mut enc, &ev, &[]),
        Some(json!({"prefix": "audit"}))
    );

    let mut enc = JsonEncoder::new(JsonOptions {
        schemas_enable: true,
        binary_handling: BinaryHandlingMode::Hex,
        ..opts()
    });
    let j = value_json(&mut enc, &ev);
    assert_eq!(j["payload"]["message"]["content"], "68656c6c6f");
    assert_eq!(
        j["schema"]["name"],
        "io.debezium.connector.postgresql.MessageValue"
    );
    let names: Vec<_> = j["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].clone())
        .collect();
    assert_eq!(
        names,
        vec![
            json!("op"),
            json!("ts_ms"),
            json!("source"),
            json!("transaction"),
            json!("message")
        ]
    );
    assert_eq!(
        j["schema"]["fields"][4],
        json!({"type": "struct", "fields": [
            {"type": "string", "optional": true, "field": "prefix"},
            {"type": "string", "optional": true, "field": "content"}],
            "optional": false, "name": "io.debezium.connector.postgresql.Message", "version": 1, "field": "message"})
    );
    assert_eq!(
        key_json(&mut enc, &ev, &[]),
        Some(
            json!({"schema": {"type": "struct", "fields": [{"type": "string", "optional": true, "field": "prefix"}],
            "optional": false, "name": "io.debezium.connector.postgresql.MessageKey", "version": 1},
            "payload": {"prefix": "audit"}})
        )
    );
}

#[test]
fn schemas_enabled_envelope() {
    let t = table(vec![
        col("id", INT4, -1, true),
        col("price", NUMERIC, numeric_typmod(10, 2), false),
    ]);
    let mut enc = JsonEncoder::new(JsonOptions {
        schemas_enable: true,
        ..opts()
    });
    let ev = event(
        Op::Create,
        &t,
        None,
        Some(row(vec![Value::Int32(7), Value::Numeric("-1.00".into())])),
    );
    let j = value_json(&mut enc, &ev);
    let value_struct = json!({
        "type": "struct",
        "fields": [
            {"type": "int32", "optional": false, "field": "id"},
            {"type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
             "parameters": {"scale": "2", "connect.decimal.precision": "10"}, "field": "price"}
        ],
        "optional": true,
        "name": "walrus.public.items.Value"
    });
    let with_field = |mut v: J, f: &str| {
        v["field"] = json!(f);
        v
    };
    let source_schema = json!({
        "type": "struct",
        "fields": [
            {"type": "string", "optional": false, "field": "version"},
            {"type": "string", "optional": false, "field": "connector"},
            {"type": "string", "optional": false, "field": "name"},
            {"type": "int64", "optional": false, "field": "ts_ms"},
            {"type": "string", "optional": true, "name": "io.debezium.data.Enum", "version": 1,
             "parameters": {"allowed": SNAPSHOT_ALLOWED}, "default": "false", "field": "snapshot"},
            {"type": "string", "optional": false, "field": "db"},
            {"type": "string", "optional": true, "field": "sequence"},
            {"type": "int64", "optional": true, "field": "ts_us"},
            {"type": "int64", "optional": true, "field": "ts_ns"},
            {"type": "string", "optional": false, "field": "schema"},
            {"type": "string", "optional": false, "field": "table"},
            {"type": "int64", "optional": true, "field": "txId"},
            {"type": "int64", "optional": true, "field": "lsn"},
            {"type": "int64", "optional": true, "field": "xmin"},
            {"type": "string", "optional": true, "field": "origin"},
            {"type": "int64", "optional": true, "field": "origin_lsn"}
        ],
        "optional": false,
        "name": "io.debezium.connector.postgresql.Source",
        "version": 1,
        "field": "source"
    });
    assert_eq!(
        j["schema"],
        json!({
            "type": "struct",
            "fields": [
                with_field(value_struct.clone(), "before"),
                with_field(value_struct, "after"),
                source_schema,
                {"type": "struct", "fields": [
                    {"type": "string", "optional": false, "field": "id"},
                    {"type": "int64", "optional": false, "field": "total_order"},
                    {"type": "int64", "optional": false, "field": "data_collection_order"}],
                 "optional": true, "name": "event.block", "version": 1, "field": "transaction"},
                {"type": "string", "optional": false, "field": "op"},
                {"type": "int64", "optional": true, "field": "ts_ms"},
                {"type": "int64", "optional": true, "field": "ts_us"},
                {"type": "int64", "optional": true, "field": "ts_ns"}
            ],
            "optional": false,
            "name": "walrus.public.items.Envelope",
            "version": 2
        })
    );
    assert_eq!(j["payload"]["after"], json!({"id": 7, "price": "nA=="}));
    assert_eq!(j.as_object().unwrap().len(), 2);

    let key = key_json(&mut enc, &ev, &[0]).unwrap();
    assert_eq!(
        key,
        json!({
            "schema": {"type": "struct", "fields": [{"type": "int32", "optional": false, "field": "id"}],
                       "optional": false, "name": "walrus.public.items.Key"},
            "payload": {"id": 7}
        })
    );
    // A different key column set (router override) gets its own schema.
    let key = key_json(&mut enc, &ev, &[1, 0]).unwrap();
    assert_eq!(key["schema"]["fields"][0]["field"], "price");
    assert_eq!(key["schema"]["fields"][0]["optional"], false);
    assert_eq!(key["payload"], json!({"price": "nA==", "id": 7}));
}

#[test]
fn schema_cache_follows_relation_changes() {
    let mut enc = JsonEncoder::new(JsonOptions {
        schemas_enable: true,
        ..opts()
    });
    let t1 = simple_table();
    let ev = event(
        Op::Create,
        &t1,
        None,
        Some(row(vec![Value::Int32(1), Value::Null])),
    );
    let j = value_json(&mut enc, &ev);
    assert_eq!(
        j["schema"]["fields"][1]["fields"].as_array().unwrap().len(),
        2
    );
    // Same content, new Arc: same output.
    let t1b = Arc::new((*t1).clone());
    let ev_b = event(
        Op::Create,
        &t1b,
        None,
        Some(row(vec![Value::Int32(1), Value::Null])),
    );
    assert_eq!(value_json(&mut enc, &ev_b), j);
    // A column added (new Relation): a new schema.
    let t2 = table(vec![
        col("id", INT4, -1, true),
        col("name", 25, -1, false),
        col("qty", INT8, -1, false),
    ]);
    let ev2 = event(
        Op::Create,
        &t2,
        None,
        Some(row(vec![Value::Int32(1), Value::Null, Value::Int64(3)])),
    );
    let j2 = value_json(&mut enc, &ev2);
    assert_eq!(j2["schema"]["fields"][1]["fields"][2]["field"], "qty");
    assert_eq!(j2["payload"]["after"]["qty"], 3);
}

#[test]
fn integers_bools_strings() {
    assert_eq!(one_default(BOOL, -1, Value::Bool(true)), json!(true));
    assert_eq!(one_default(INT2, -1, Value::Int16(-5)), json!(-5));
    assert_eq!(
        one_default(INT8, -1, Value::Int64(i64::MIN)),
        json!(i64::MIN)
    );
    assert_eq!(
        one_default(25, -1, Value::Text("ü\u{1}\\".into())),
        json!("ü\u{1}\\")
    );
    assert_eq!(
        one_default(JSON, -1, Value::Json("{\"a\":1}".into())),
        json!("{\"a\":1}")
    );
    assert_eq!(
        one_default(
            UUID,
            -1,
            Value::Text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into())
        ),
        json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    );
    assert_eq!(
        one_default(1007, -1, Value::Text("{1,2}".into())),
        json!("{1,2}")
    );
    assert_eq!(
        one_schema(opts(), JSONB, -1),
        json!({"type": "string", "optional": true, "name": "io.debezium.data.Json", "version": 1, "field": "v"})
    );
    assert_eq!(
        one_schema(opts(), UUID, -1),
        json!({"type": "string", "optional": true, "name": "io.debezium.data.Uuid", "version": 1, "field": "v"})
    );
    assert_eq!(
        one_schema(opts(), INT2, -1),
        json!({"type": "int16", "optional": true, "field": "v"})
    );
    assert_eq!(
        one_schema(opts(), 1007, -1),
        json!({"type": "array", "items": {"type": "int32", "optional": true}, "optional": true, "field": "v"})
    );
    // Control characters are escaped the way Jackson does.
    let mut out = Vec::new();
    write_str(&mut out, "a\u{1}\u{8}\u{c}\t\"/é");
    assert_eq!(out, b"\"a\\u0001\\b\\f\\t\\\"/\xc3\xa9\"");
}

#[test]
fn floats_and_special_values() {
    assert_eq!(one_default(FLOAT8, -1, Value::Float64(1.5)), json!(1.5));
    assert_eq!(
        one_default(FLOAT8, -1, Value::Float64(f64::NAN)),
        json!("NaN")
    );
    assert_eq!(
        one_default(FLOAT8, -1, Value::Float64(f64::INFINITY)),
        json!("Infinity")
    );
    assert_eq!(
        one_default(FLOAT8, -1, Value::Float64(f64::NEG_INFINITY)),
        json!("-Infinity")
    );
    assert_eq!(
        one_default(FLOAT4, -1, Value::Float32(f32::NAN)),
        json!("NaN")
    );
    let mut out = Vec::new();
    write_f32(&mut out, 0.1);
    assert_eq!(out, b"0.1");
    assert_eq!(one_schema(opts(), FLOAT4, -1)["type"], "float");
    assert_eq!(one_schema(opts(), FLOAT8, -1)["type"], "double");
}

#[test]
fn decimals_precise() {
    let tm = numeric_typmod(10, 2);
    let n = |s: &str| Value::Numeric(s.into());
    // -1.00 at scale 2 → unscaled -100 → BigInteger.toByteArray() is the single byte
    // 0x9C (bitLength 7); [0xFF, 0x9C] ("nA==") would not be minimal. -1.50 → -150 needs
    // two bytes: [0xFF, 0x6A].
    assert_eq!(one_default(NUMERIC, tm, n("-1.00")), json!("nA=="));
    assert_eq!(one_default(NUMERIC, tm, n("-1.50")), json!("/2o="));
    assert_eq!(one_default(NUMERIC, tm, n("0.00")), json!("AA=="));
    // 1.28 → 128 → [0x00, 0x80]; -1.28 → [0x80]; -1.29 → [0xFF, 0x7F].
    assert_eq!(one_default(NUMERIC, tm, n("1.28")), json!("AIA="));
    assert_eq!(one_default(NUMERIC, tm, n("-1.28")), json!("gA=="));
    assert_eq!(one_default(NUMERIC, tm, n("-1.29")), json!("/38="));
    // Fewer digits than the scale are padded; more are rounded half up.
    assert_eq!(one_default(NUMERIC, tm, n("1.5")), json!("AJY=")); // 150
    assert_eq!(one_default(NUMERIC, tm, n("1.005")), json!("ZQ==")); // 101
    assert_eq!(one_default(NUMERIC, tm, n("NaN")), J::Null);
    assert_eq!(one_default(NUMERIC, tm, n("Infinity")), J::Null);
    // Negative scale (PostgreSQL 15+): numeric(3,-2).
    assert_eq!(
        one_default(NUMERIC, numeric_typmod(3, -2), n("12300")),
        json!("ew==")
    ); // 123
    assert_eq!(
        one_schema(opts(), NUMERIC, numeric_typmod(3, -2))["parameters"],
        json!({"scale": "-2", "connect.decimal.precision": "3"})
    );

    // Variable scale: trailing zeros stripped, never a negative scale.
    assert_eq!(
        one_default(NUMERIC, -1, n("12.3400")),
        json!({"scale": 2, "value": "BNI="})
    ); // 1234
    assert_eq!(
        one_default(NUMERIC, -1, n("1200")),
        json!({"scale": 0, "value": "BLA="})
    );
    assert_eq!(
        one_default(NUMERIC, -1, n("-0.001")),
        json!({"scale": 3, "value": "/w=="})
    );
    assert_eq!(
        one_default(NUMERIC, -1, n("0.000")),
        json!({"scale": 0, "value": "AA=="})
    );
    assert_eq!(one_default(NUMERIC, -1, n("NaN")), J::Null);
    assert_eq!(
        one_schema(opts(), NUMERIC, -1),
        json!({"type": "struct", "fields": [
            {"type": "int32", "optional": false, "field": "scale"},
            {"type": "bytes", "optional": false, "field": "value"}],
            "optional": true, "name": "io.debezium.data.VariableScaleDecimal", "version": 1,
            "doc": "Variable scaled decimal", "field": "v"})
    );
}

#[test]
fn big_decimals_match_java_biginteger() {
    let check = |digits: &str, neg: bool, expected: &[u8]| {
        let mut out = Vec::new();
        twos_complement(neg, digits.as_bytes(), &mut out);
        assert_eq!(out, expected, "{}{digits}", if neg { "-" } else { "" });
    };
    check("", false, &[0]);
    check("127", false, &[0x7f]);
    check("128", true, &[0x80]);
    check("256", true, &[0xff, 0x00]);
    // 2^128 = 340282366920938463463374607431768211456 (39 digits: the slow path).
    let two_128 = "340282366920938463463374607431768211456";
    let mut pos = vec![0x01];
    pos.extend([0u8; 16]);
    check(two_128, false, &pos);
    let mut negv = vec![0xff];
    negv.extend([0u8; 16]);
    check(two_128, true, &negv);
    // 2^127 (39 digits): positive needs a leading zero byte, negative is exactly 0x80 00...
    let two_127 = "170141183460469231731687303715884105728";
    let mut pos = vec![0x00, 0x80];
    pos.extend([0u8; 15]);
    check(two_127, false, &pos);
    let mut negv = vec![0x80];
    negv.extend([0u8; 15]);
    check(two_127, true, &negv);
}

/// The digit-by-digit base-256 conversion the limb version replaced: slow, obviously right.
fn twos_complement_reference(neg: bool, digits: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::new();
    for &d in digits {
        let mut carry = u32::from(d - b'0');
        for byte in out.iter_mut().rev() {
            let v = u32::from(*byte) * 10 + carry;
            *byte = v as u8;
            carry = v >> 8;
        }
        while carry > 0 {
            out.insert(0, carry as u8);
            carry >>= 8;
        }
    }
    if out.is_empty() {
        return vec![0];
    }
    if neg {
        let mut carry = 1u16;
        for byte in out.iter_mut().rev() {
            let v = u16::from(!*byte) + carry;
            *byte = v as u8;
            carry = v >> 8;
        }
        if out[0] & 0x80 == 0 {
            out.insert(0, 0xff);
        }
    } else if out[0] & 0x80 != 0 {
        out.insert(0, 0x00);
    }
    out
}

#[test]
fn big_decimals_match_the_reference_at_every_length() {
    // Lengths around the 19-digit chunks and the 38-digit fast path, leading zeros
    // included; digits from a fixed pseudo-random sequence.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in (1..=120).chain([190, 191, 1000, 1001]) {
        let digits: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b'0' + (x % 10) as u8
            })
            .collect();
        for neg in [false, true] {
            let mut out = Vec::new();
            twos_complement(neg, &digits, &mut out);
            assert_eq!(
                out,
                twos_complement_reference(neg, &digits),
                "{} digits, neg {neg}",
                len
            );
        }
    }
    let mut out = Vec::new();
    twos_complement(false, &[b'0'; 60], &mut out);
    assert_eq!(out, [0]);
}

/// Regression (fuzz target value_parse): a binary numeric of 10 bytes with weight near
/// 32767 is a legitimate 115,000-digit value, and precise mode took tens of seconds on it.
#[test]
fn the_largest_numeric_encodes_in_milliseconds() {
    let digits = vec![b'7'; 131_072 + 16_383];
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    twos_complement(true, &digits, &mut out);
    // log2(10) * 147455 digits = 489,834 bits: 61,230 bytes (plus none for the sign here).
    assert_eq!(out.len(), 61_230);
    assert!(out[0] & 0x80 != 0, "negative");
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(2),
        "{took:?} for the largest numeric"
    );
}

#[test]
fn decimals_double_and_string() {
    let d = JsonOptions {
        decimal_handling: DecimalHandlingMode::Double,
        ..opts()
    };
    assert_eq!(
        one(
            d.clone(),
            NUMERIC,
            numeric_typmod(10, 2),
            Value::Numeric("-1.25".into())
        ),
        json!(-1.25)
    );
    assert_eq!(
        one(d.clone(), NUMERIC, -1, Value::Numeric("NaN".into())),
        json!("NaN")
    );
    assert_eq!(
        one(d.clone(), NUMERIC, -1, Value::Numeric("-Infinity".into())),
        json!("-Infinity")
    );
    assert_eq!(
        one_schema(d, NUMERIC, -1),
        json!({"type": "double", "optional": true, "field": "v"})
    );
    let s = JsonOptions {
        decimal_handling: DecimalHandlingMode::String,
        ..opts()
    };
    assert_eq!(
        one(s.clone(), NUMERIC, -1, Value::Numeric("12.3400".into())),
        json!("12.3400")
    );
    assert_eq!(
        one(s.clone(), NUMERIC, -1, Value::Numeric("NaN".into())),
        json!("NAN")
    );
    assert_eq!(
        one(s.clone(), NUMERIC, -1, Value::Numeric("Infinity".into())),
        json!("POSITIVE_INFINITY")
    );
    assert_eq!(
        one_schema(s, NUMERIC, numeric_typmod(10, 2)),
        json!({"type": "string", "optional": true, "field": "v"})
    );
}

#[test]
fn dates_and_times_adaptive() {
    // 2016-11-04 = day 17109.
    assert_eq!(one_default(DATE, -1, Value::Date(17_109)), json!(17_109));
    assert_eq!(
        one_default(DATE, -1, Value::Date(-719_528 - 15_933)),
        json!(-719_528 - 15_933)
    );
    assert_eq!(
        one_schema(opts(), DATE, -1)["name"],
        "io.debezium.time.Date"
    );
    let t = 49_890_123_456_i64; // 13:51:30.123456
    assert_eq!(one_default(TIME, -1, Value::Time(t)), json!(t));
    assert_eq!(
        one_schema(opts(), TIME, -1),
        json!({"type": "int64", "optional": true, "name": "io.debezium.time.MicroTime", "version": 1, "field": "v"})
    );
    assert_eq!(
        one_default(TIME, 3, Value::Time(49_890_123_000)),
        json!(49_890_123)
    );
    assert_eq!(
        one_schema(opts(), TIME, 3),
        json!({"type": "int32", "optional": true, "name": "io.debezium.time.Time", "version": 1, "field": "v"})
    );
    assert_eq!(
        one_default(TIME, -1, Value::Time(MICROS_PER_DAY)),
        json!(MICROS_PER_DAY)
    );

    let ts = 1_478_267_490_123_456_i64; // 2016-11-04T13:51:30.123456
    assert_eq!(one_default(TIMESTAMP, -1, Value::Timestamp(ts)), json!(ts));
    assert_eq!(
        one_schema(opts(), TIMESTAMP, 6)["name"],
        "io.debezium.time.MicroTimestamp"
    );
    assert_eq!(
        one_default(TIMESTAMP, 3, Value::Timestamp(1_478_267_490_123_000)),
        json!(1_478_267_490_123_i64)
    );
    assert_eq!(
        one_default(TIMESTAMP, 3, Value::Timestamp(-1_500)),
        json!(-2)
    ); // floor, as toEpochMilli
    assert_eq!(
        one_schema(opts(), TIMESTAMP, 3),
        json!({"type": "int64", "optional": true, "name": "io.debezium.time.Timestamp", "version": 1, "field": "v"})
    );
}

#[test]
fn times_connect_and_micro_and_iso() {
    let c = JsonOptions {
        time_precision: TimePrecisionMode::Connect,
        ..opts()
    };
    assert_eq!(
        one(c.clone(), TIME, -1, Value::Time(49_890_123_456)),
        json!(49_890_123)
    );
    assert_eq!(
        one_schema(c.clone(), TIME, -1),
        json!({"type": "int32", "optional": true, "name": "org.apache.kafka.connect.data.Time", "version": 1, "field": "v"})
    );
    assert_eq!(
        one(
            c.clone(),
            TIMESTAMP,
            -1,
            Value::Timestamp(1_478_267_490_123_456)
        ),
        json!(1_478_267_490_123_i64)
    );
    assert_eq!(
        one_schema(c.clone(), TIMESTAMP, -1)["name"],
        "org.apache.kafka.connect.data.Timestamp"
    );
    assert_eq!(one(c.clone(), DATE, -1, Value::Date(17_109)), json!(17_109));
    assert_eq!(
        one_schema(c, DATE, -1)["name"],
        "org.apache.kafka.connect.data.Date"
    );

    let m = JsonOptions {
        time_precision: TimePrecisionMode::AdaptiveTimeMicroseconds,
        ..opts()
    };
    assert_eq!(
        one(m.clone(), TIME, 0, Value::Time(1_000_000)),
        json!(1_000_000)
    );
    assert_eq!(
        one(m, TIMESTAMP, 0, Value::Timestamp(1_000_000)),
        json!(1000)
    );

    let i = JsonOptions {
        time_precision: TimePrecisionMode::Isostring,
        ..opts()
    };
    assert_eq!(
        one(i.clone(), DATE, -1, Value::Date(17_109)),
        json!("2016-11-04Z")
    );
    assert_eq!(
        one(i.clone(), TIME, -1, Value::Time(49_890_120_000)),
        json!("13:51:30.12Z")
    );
    assert_eq!(
        one(
            i.clone(),
            TIMESTAMP,
            -1,
            Value::Timestamp(1_478_267_490_000_000)
        ),
        json!("2016-11-04T13:51:30Z")
    );
    assert_eq!(
        one_schema(i, TIMESTAMP, -1)["name"],
        "io.debezium.time.IsoTimestamp"
    );
}

#[test]
fn zoned_timestamps() {
    let ts = 1_478_260_290_123_456_i64; // 2016-11-04T11:51:30.123456Z
    assert_eq!(
        one_default(TIMESTAMPTZ, -1, Value::TimestampTz(ts)),
        json!("2016-11-04T11:51:30.123456Z")
    );
    // Width follows the column precision, zeros kept (DBZ-6163).
    assert_eq!(
        one_default(TIMESTAMPTZ, -1, Value::TimestampTz(1_478_260_290_000_000)),
        json!("2016-11-04T11:51:30.000000Z")
    );
    assert_eq!(
        one_default(TIMESTAMPTZ, 3, Value::TimestampTz(1_478_260_290_120_000)),
        json!("2016-11-04T11:51:30.120Z")
    );
    assert_eq!(
        one_default(TIMESTAMPTZ, 0, Value::TimestampTz(1_478_260_290_000_000)),
        json!("2016-11-04T11:51:30Z")
    );
    assert_eq!(
        one_default(TIMESTAMPTZ, -1, Value::TimestampTz(-1)),
        json!("1969-12-31T23:59:59.999999Z")
    );
    // Years as java.time writes them: +YYYYY above 9999, astronomical negative years.
    let big = (days(21_016, 11, 4) * 86_400 + 6 * 3600 + 51 * 60 + 30) * MICROS_PER_SECOND;
    assert_eq!(
        one_default(TIMESTAMPTZ, -1, Value::TimestampTz(big)),
        json!("+21016-11-04T06:51:30.000000Z")
    );
    let bc = days(-4713, 12, 31) * MICROS_PER_DAY + MICROS_PER_DAY - 1;
    assert_eq!(
        one_default(TIMESTAMPTZ, -1, Value::TimestampTz(bc)),
        json!("-4713-12-31T23:59:59.999999Z")
    );
    let bc44 = days(-43, 3, 15) * MICROS_PER_DAY;
    assert_eq!(
        one_default(TIMESTAMPTZ, 0, Value::TimestampTz(bc44)),
        json!("-0043-03-15T00:00:00Z")
    );
    // Infinity arrives as text and is written as Debezium does.
    assert_eq!(
        one_default(TIMESTAMPTZ, -1, Value::Text("infinity".into())),
        json!("infinity")
    );
    assert_eq!(
        one_schema(opts(), TIMESTAMPTZ, -1),
        json!({"type": "string", "optional": true, "name": "io.debezium.time.ZonedTimestamp", "version": 1, "field": "v"})
    );
}

fn days(y: i64, m: i64, d: i64) -> i64 {
    // Inverse of civil_from_days by search around an estimate; test-only.
    let mut z = (y - 1970) * 365 + (y - 1970) / 4 + (m - 1) * 30 + d;
    loop {
        let (yy, mm, dd) = civil_from_days(z);
        let cmp = (yy, i64::from(mm), i64::from(dd)).cmp(&(y, m, d));
        match cmp {
            std::cmp::Ordering::Equal => return z,
            std::cmp::Ordering::Less => z += 1,
            std::cmp::Ordering::Greater => z -= 1,
        }
    }
}

#[test]
fn bc_dates() {
    // 0044-03-15 BC is astronomical -43.
    let d = days(-43, 3, 15);
    assert_eq!(one_default(DATE, -1, Value::Date(d as i32)), json!(d));
    let i = JsonOptions {
        time_precision: TimePrecisionMode::Isostring,
        ..opts()
    };
    assert_eq!(
        one(i, DATE, -1, Value::Date(d as i32)),
        json!("-0043-03-15Z")
    );
}

#[test]
fn intervals() {
    let micros = 4 * 3_600_000_000 + 5 * 60_000_000 + 6_780_000;
    let v = Value::Interval {
        months: 14,
        days: 3,
        micros,
    };
    // Debezium's own test: durationMicros(1, 2, 3, 4, 5, 6.78, DAYS_PER_MONTH_AVG).
    let expected = {
        let days = 14.0 * DAYS_PER_MONTH_AVG + 3.0;
        let secs = ((days * 24.0 + 4.0) * 60.0 + 5.0) * 60.0 + 6.78;
        (secs * 1e6) as i64
    };
    assert_eq!(one_default(INTERVAL, -1, v.clone()), json!(expected));
    assert_eq!(expected, 37_091_106_780_000);
    assert_eq!(
        one_schema(opts(), INTERVAL, -1)["name"],
        "io.debezium.time.MicroDuration"
    );
    let s = JsonOptions {
        interval_handling: IntervalHandlingMode::String,
        ..opts()
    };
    assert_eq!(one(s.clone(), INTERVAL, -1, v), json!("P1Y2M3DT4H5M6.78S"));
    assert_eq!(
        one(
            s.clone(),
            INTERVAL,
            -1,
            Value::Interval {
                months: 0,
                days: 0,
                micros: 0
            }
        ),
        json!("P0Y0M0DT0H0M0S")
    );
    assert_eq!(
        one(
            s.clone(),
            INTERVAL,
            -1,
            Value::Interval {
                months: -14,
                days: -1,
                micros: -(2 * 3_600_000_000 + 500_000)
            }
        ),
        json!("P-1Y-2M-1DT-2H0M-0.5S")
    );
    assert_eq!(
        one_schema(s, INTERVAL, -1)["name"],
        "io.debezium.time.Interval"
    );
    assert_eq!(
        micro_duration(0, -1, 2 * 3_600_000_000),
        -22 * 3_600_000_000
    );
}

#[test]
fn binary_modes() {
    let b = Value::Bytes(vec![0xfb, 0xff, 0x00]);
    assert_eq!(one_default(BYTEA, -1, b.clone()), json!("+/8A"));
    assert_eq!(
        one_schema(opts(), BYTEA, -1),
        json!({"type": "bytes", "optional": true, "field": "v"})
    );
    let mode = |m| JsonOptions {
        binary_handling: m,
        ..opts()
    };
    assert_eq!(
        one(mode(BinaryHandlingMode::Base64), BYTEA, -1, b.clone()),
        json!("+/8A")
    );
    assert_eq!(
        one(
            mode(BinaryHandlingMode::Base64UrlSafe),
            BYTEA,
            -1,
            b.clone()
        ),
        json!("-_8A")
    );
    assert_eq!(
        one(mode(BinaryHandlingMode::Hex), BYTEA, -1, b),
        json!("fbff00")
    );
    assert_eq!(
        one_schema(mode(BinaryHandlingMode::Hex), BYTEA, -1)["type"],
        "string"
    );
}

#[test]
fn unavailable_placeholder() {
    assert_eq!(
        one_default(25, -1, Value::Unavailable),
        json!("__debezium_unavailable_value")
    );
    assert_eq!(
        one_default(JSONB, -1, Value::Unavailable),
        json!("__debezium_unavailable_value")
    );
    // bytea in bytes mode: the placeholder's bytes.
    assert_eq!(
        one_default(BYTEA, -1, Value::Unavailable),
        json!("X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==")
    );
    let hex = JsonOptions {
        binary_handling: BinaryHandlingMode::Hex,
        unavailable_value_placeholder: "?toast?".into(),
        ..opts()
    };
    assert_eq!(one(hex, BYTEA, -1, Value::Unavailable), json!("?toast?"));
}

#[test]
fn mismatched_values_are_written_naturally() {
    // A date column whose value stayed text (infinity) and a column typed unexpectedly.
    assert_eq!(
        one_default(DATE, -1, Value::Text("infinity".into())),
        json!("infinity")
    );
    assert_eq!(one_default(25, -1, Value::Int32(3)), json!(3));
    // Rows shorter than the table never panic.
    let t = simple_table();
    let mut enc = JsonEncoder::new(opts());
    let ev = event(Op::Create, &t, None, Some(row(vec![Value::Int32(1)])));
    assert_eq!(
        value_json(&mut enc, &ev)["after"],
        json!({"id": 1, "name": null})
    );
    assert_eq!(key_json(&mut enc, &ev, &[0, 9]), Some(json!({"id": 1})));
}

fn arr(dims: &[(u32, i32)], elements: Vec<Value>) -> Value {
    Value::Array(Box::new(PgArray {
        dims: dims
            .iter()
            .map(|&(len, lower)| crate::value::ArrayDim { len, lower })
            .collect(),
        elements,
    }))
}

#[test]
fn arrays_nest_by_dimension() {
    let v = arr(
        &[(2, 1), (2, 0)],
        vec![
            Value::Int32(1),
            Value::Null,
            Value::Int32(3),
            Value::Int32(4),
        ],
    );
    assert_eq!(one_default(1007, -1, v), json!([[1, null], [3, 4]]));
    assert_eq!(one_default(1007, -1, arr(&[], vec![])), json!([]));
    // Elements take the element type's shape: numeric(5,2)[] as Decimal bytes.
    let n = arr(&[(1, 1)], vec![Value::Numeric("1.00".into())]);
    assert_eq!(one_default(1231, numeric_typmod(5, 2), n), json!(["ZA=="]));
    assert_eq!(
        one_schema(opts(), 1231, numeric_typmod(5, 2))["items"],
        json!({"type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal", "version": 1, "parameters": {"scale": "2", "connect.decimal.precision": "5"}})
    );
}

#[test]
fn money_bits_timetz_point() {
    assert_eq!(
        one_default(MONEY, -1, Value::Numeric("-1234.5".into())),
        json!("/h3G")
    );
    assert_eq!(
        one_schema(opts(), MONEY, -1),
        json!({"type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal", "version": 1, "parameters": {"scale": "2"}, "field": "v"})
    );
    let s = JsonOptions {
        decimal_handling: DecimalHandlingMode::String,
        ..opts()
    };
    assert_eq!(
        one(s, MONEY, -1, Value::Numeric("12.30".into())),
        json!("12.30")
    );
    // bit(1) is a boolean; longer bit strings are little-endian bytes (b'101' = 5).
    assert_eq!(one_default(BIT, 1, Value::Bits("1".into())), json!(true));
    assert_eq!(
        one_default(BIT, 3, Value::Bits("101".into())),
        json!("BQ==")
    );
    assert_eq!(
        one_default(VARBIT, -1, Value::Bits("100000000".into())),
        json!("AAE=")
    );
    assert_eq!(
        one_schema(opts(), BIT, 3),
        json!({"type": "bytes", "optional": true, "name": "io.debezium.data.Bits", "version": 1, "parameters": {"length": "3"}, "field": "v"})
    );
    assert_eq!(
        one_default(
            TIMETZ,
            -1,
            Value::TimeTz {
                micros: 3_600_000_000 + 500_000,
                offset_secs: 2 * 3600
            }
        ),
        json!("23:00:00.5Z")
    );
    let p = one_default(POINT, -1, Value::Point { x: 1.0, y: -2.5 });
    assert_eq!(p["x"], json!(1.0));
    assert_eq!(p["y"], json!(-2.5));
    assert_eq!(p["srid"], J::Null);
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(p["wkb"].as_str().unwrap())
            .unwrap()
            .len(),
        21
    );
    assert_eq!(
        one_schema(opts(), POINT, -1)["name"],
        "io.debezium.data.geometry.Point"
    );
}

#[test]
fn described_types() {
    let with = |desc: TypeDesc, v: Value, o: JsonOptions| {
        let mut c = col("v", 99_999, -1, false);
        c.type_desc = Some(Arc::new(desc));
        let t = table(vec![c]);
        let mut enc = JsonEncoder::new(o);
        value_json(&mut enc, &event(Op::Create, &t, None, Some(row(vec![v]))))
    };
    let e = TypeDesc::Enum {
        labels: vec!["sad".into(), "ok".into()],
    };
    let j = with(
        e.clone(),
        Value::Text("ok".into()),
        JsonOptions {
            schemas_enable: true,
            ..opts()
        },
    );
    assert_eq!(j["payload"]["after"]["v"], "ok");
    assert_eq!(
        j["schema"]["fields"][1]["fields"][0],
        json!({"type": "string", "optional": true, "name": "io.debezium.data.Enum", "version": 1, "parameters": {"allowed": "sad,ok"}, "field": "v"})
    );
    let comp = TypeDesc::Composite {
        name: "pair".into(),
        fields: vec![
            (
                "a".into(),
                TypeDesc::Builtin {
                    oid: INT4,
                    type_modifier: -1,
                },
            ),
            ("b".into(), TypeDesc::Array(Box::new(e))),
        ],
    };
    let v = Value::Composite(vec![
        Value::Int32(7),
        arr(&[(1, 1)], vec![Value::Text("sad".into())]),
    ]);
    assert_eq!(
        with(comp, v, opts())["after"]["v"],
        json!({"a": 7, "b": ["sad"]})
    );
    let h = Value::Map(vec![("k".into(), Some("v".into())), ("n".into(), None)]);
    assert_eq!(
        with(TypeDesc::Hstore, h.clone(), opts())["after"]["v"],
        json!("{\"k\":\"v\",\"n\":null}")
    );
    let m = JsonOptions {
        hstore_handling: HstoreHandlingMode::Map,
        schemas_enable: true,
        ..opts()
    };
    let j = with(TypeDesc::Hstore, h, m);
    assert_eq!(j["payload"]["after"]["v"], json!({"k": "v", "n": null}));
    assert_eq!(
        j["schema"]["fields"][1]["fields"][0],
        json!({"type": "map", "keys": {"type": "string", "optional": false}, "values": {"type": "string", "optional": true}, "optional": true, "field": "v"})
    );
}

#[test]
fn options_from_config() {
    let cfg = FormatConfig {
        schemas_enable: true,
        ..FormatConfig::default()
    };
    let o = JsonOptions::from_config(&cfg, "p", "db");
    assert!(o.schemas_enable);
    assert_eq!(o.topic_prefix, "p");
    assert_eq!(o.unavailable_value_placeholder, DEFAULT_PLACEHOLDER);
    assert_eq!(o.connector_version, env!("CARGO_PKG_VERSION"));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn strings_round_trip_through_json(s in any::<String>()) {
            let mut out = Vec::new();
            write_str(&mut out, &s);
            let back: String = serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(back, s);
        }

        #[test]
        fn decimals_round_trip(unscaled in any::<i64>(), scale in 0..12_i32) {
            // Format unscaled/10^scale as PostgreSQL would, encode, decode the bytes.
            let neg = unscaled < 0;
            let a = unscaled.unsigned_abs().to_string();
            let a = format!("{a:0>width$}", width = scale as usize + 1);
            let (int, frac) = a.split_at(a.len() - scale as usize);
            let text = match (neg, frac.is_empty()) {
                (true, true) => format!("-{int}"),
                (false, true) => int.to_string(),
                (true, false) => format!("-{int}.{frac}"),
                (false, false) => format!("{int}.{frac}"),
            };
            let mut digits = Vec::new();
            let mut bytes = Vec::new();
            let n = unscaled_digits(&text, scale, &mut digits).unwrap();
            twos_complement(n, &digits, &mut bytes);
            // Sign-extend big-endian two's complement back to i64.
            let mut v: i64 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
            for b in &bytes {
                v = (v << 8) | i64::from(*b);
            }
            prop_assert_eq!(v, unscaled);
            // Minimal length, as BigInteger.toByteArray.
            if bytes.len() > 1 {
                let redundant = (bytes[0] == 0 && bytes[1] & 0x80 == 0) || (bytes[0] == 0xff && bytes[1] & 0x80 != 0);
                prop_assert!(!redundant, "{:?}", bytes);
            }
        }

        #[test]
        fn zoned_timestamps_parse_back(micros in -210_866_803_200_000_000_i64..9_200_000_000_000_000_000) {
            let mut out = Vec::new();
            write_zoned_timestamp(&mut out, micros, 6);
            let s = String::from_utf8(out).unwrap();
            let s = s.trim_matches('"');
            // Recompute the instant from the fields.
            let (date, time) = s.split_once('T').unwrap();
            let (sign, date) = match date.strip_prefix('-') {
                Some(d) => (-1, d),
                None => (1, date.trim_start_matches('+')),
            };
            let mut it = date.split('-');
            let y: i64 = sign * it.next().unwrap().parse::<i64>().unwrap();
            let m: i64 = it.next().unwrap().parse().unwrap();
            let d: i64 = it.next().unwrap().parse().unwrap();
            let time = time.trim_end_matches('Z');
            let (hms, frac) = time.split_once('.').unwrap();
            prop_assert_eq!(frac.len(), 6);
            let mut hms = hms.split(':').map(|p| p.parse::<i64>().unwrap());
            let secs = hms.next().unwrap() * 3600 + hms.next().unwrap() * 60 + hms.next().unwrap();
            let back = days(y, m, d) * MICROS_PER_DAY + secs * MICROS_PER_SECOND + frac.parse::<i64>().unwrap();
            prop_assert_eq!(back, micros);
        }

        #[test]
        fn any_event_is_valid_json(
            ints in proptest::collection::vec(any::<i32>(), 3),
            text in any::<String>(),
            f in any::<f64>(),
            schemas in any::<bool>(),
        ) {
            let t = table(vec![
                col("a", INT4, -1, true),
                col("b", 25, -1, false),
                col("c", FLOAT8, -1, false),
                col("d", INTERVAL, -1, false),
            ]);
            let mut enc = JsonEncoder::new(JsonOptions { schemas_enable: schemas, ..opts() });
            let ev = event(Op::Update, &t, None, Some(row(vec![
                Value::Int32(ints[0]),
                Value::Text(text),
                Value::Float64(f),
                Value::Interval { months: ints[1], days: ints[2], micros: i64::from(ints[0]) * 1_000_003 },
            ])));
            let mut out = Vec::new();
            enc.encode_value_at(&ev, NOW_US, &mut out);
            prop_assert!(serde_json::from_slice::<J>(&out).is_ok(), "{}", String::from_utf8_lossy(&out));
            prop_assert!(enc.encode_key(&ev, &[0], &mut out));
            prop_assert!(serde_json::from_slice::<J>(&out).is_ok());
        }
    }
}

/// A NOT NULL column that is not part of the key, as the catalog describes it.
fn not_null(name: &str, type_oid: u32, type_modifier: i32) -> Column {
    Column {
        not_null: true,
        ..col(name, type_oid, type_modifier, false)
    }
}

#[test]
fn not_null_columns_are_required_and_filled_in_a_key_only_before_image() {
    let t = table(vec![
        col("id", INT4, -1, true),
        not_null("name", 25, -1),
        not_null("qty", INT8, -1),
        not_null("price", NUMERIC, numeric_typmod(10, 2)),
        not_null("seen", TIMESTAMPTZ, -1),
        not_null("ok", BOOL, -1),
        not_null("tags", 1009, -1),
        col("note", 25, -1, false),
    ]);
    let key_only = Row {
        values: vec![
            Value::Int32(7),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        ],
        key_only: true,
    };
    let mut enc = JsonEncoder::new(JsonOptions {
        schemas_enable: true,
        ..opts()
    });
    let j = value_json(&mut enc, &event(Op::Delete, &t, Some(key_only), None));
    // Debezium's converter fallbacks: "", 0, BigDecimal.ZERO at the column's scale, the
    // epoch without a fraction, false, an empty list; a nullable column stays null.
    assert_eq!(
        j["payload"]["before"],
        json!({"id": 7, "name": "", "qty": 0, "price": "AA==",
               "seen": "1970-01-01T00:00:00Z", "ok": false, "tags": [], "note": null})
    );
    let optional: Vec<bool> = j["schema"]["fields"][0]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["optional"].as_bool().unwrap())
        .collect();
    assert_eq!(
        optional,
        vec![false, false, false, false, false, false, false, true]
    );
    // A real NULL in a nullable column, and a present value, are written as they are.
    let after = row(vec![
        Value::Int32(7),
        Value::Text("x".into()),
        Value::Int64(3),
        Value::Numeric("1.50".into()),
        Value::TimestampTz(0),
        Value::Bool(true),
        Value::Array(Box::new(crate::value::PgArray::from_elements(vec![]))),
        Value::Null,
    ]);
    let j = value_json(&mut enc, &event(Op::Create, &t, None, Some(after)));
    assert_eq!(j["payload"]["after"]["name"], "x");
    assert_eq!(j["payload"]["after"]["note"], J::Null);
}

#[test]
fn numeric_fallbacks_follow_the_decimal_mode_and_scale() {
    for (mode, expected) in [
        (DecimalHandlingMode::String, json!("0.00")),
        (DecimalHandlingMode::Double, json!(0.0)),
    ] {
        let t = table(vec![
            col("id", INT4, -1, true),
            not_null("price", NUMERIC, numeric_typmod(10, 2)),
            not_null("cash", MONEY, -1),
        ]);
        let before = Row {
            values: vec![Value::Int32(1), Value::Null, Value::Null],
            key_only: true,
        };
        let mut enc = JsonEncoder::new(JsonOptions {
            decimal_handling: mode,
            ..opts()
        });
        let j = value_json(&mut enc, &event(Op::Delete, &t, Some(before), None));
        assert_eq!(j["before"]["price"], expected, "{mode:?}");
        assert_eq!(j["before"]["cash"], expected, "{mode:?}");
    }
}
