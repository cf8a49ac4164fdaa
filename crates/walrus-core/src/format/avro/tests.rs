//! The Avro encoder against Apache Avro's own decoder (`apache-avro`) and against the JSON
//! encoder: every record must decode with the schema it was registered under, to the values
//! the JSON path writes for the same event.

use std::sync::Arc;

use apache_avro::types::Value as A;
use base64::Engine as _;
use serde_json::{json, Value as J};

use super::*;
use crate::config::{
    BinaryHandlingMode, DecimalHandlingMode, HstoreHandlingMode, IntervalHandlingMode,
    TimePrecisionMode,
};
use crate::event::{Column, LogicalMessage, ReplicaIdentity, SourcePosition};
use crate::format::json::JsonEncoder;
use crate::value::{ArrayDim, PgArray, TypeDesc};

const NOW_US: i64 = 1_700_000_000_123_456;
const TOPIC: &str = "walrus.public.items";

fn col(name: &str, type_oid: u32, type_modifier: i32, key: bool) -> Column {
    Column {
        name: name.to_string(),
        type_oid,
        type_name: format!("t{type_oid}"),
        type_modifier,
        key,
        primary_key: key,
        not_null: key,
        default: None,
        type_desc: None,
    }
}

fn described(name: &str, desc: TypeDesc) -> Column {
    Column {
        type_desc: Some(Arc::new(desc)),
        ..col(name, 99_999, -1, false)
    }
}

fn table(id: u32, columns: Vec<Column>) -> Arc<Table> {
    Arc::new(Table {
        id,
        schema: "public".into(),
        name: "items".into(),
        columns,
        replica_identity: ReplicaIdentity::Default,
    })
}

fn source() -> SourcePosition {
    SourcePosition {
        lsn: Lsn(24_023_128),
        commit_lsn: Lsn(24_023_200),
        last_commit_lsn: Some(Lsn(24_023_119)),
        tx_id: Some(555),
        commit_time_us: 1_699_999_999_000_001,
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

fn json_opts() -> JsonOptions {
    JsonOptions {
        topic_prefix: "walrus".into(),
        database: "shop".into(),
        connector_version: "0.1.0".into(),
        ..JsonOptions::default()
    }
}

fn encoder(format: JsonOptions) -> (AvroEncoder, Arc<MemoryRegistry>) {
    let reg = Arc::new(MemoryRegistry::default());
    let enc = AvroEncoder::new(
        AvroOptions {
            format,
            subject_strategy: SubjectNameStrategy::TopicNameStrategy,
        },
        Arc::clone(&reg) as Arc<dyn SchemaRegistry>,
    );
    (enc, reg)
}

/// Splits the Confluent frame, parses the registered schema and decodes the body with
/// `apache-avro`; fails on trailing bytes.
fn decode(reg: &MemoryRegistry, bytes: &[u8]) -> (u32, A) {
    assert_eq!(bytes[0], MAGIC_BYTE);
    let id = u32::from_be_bytes(bytes[1..5].try_into().unwrap());
    let text = reg.schema(id).expect("registered schema");
    let schema = apache_avro::Schema::parse_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let mut body = &bytes[5..];
    let v = apache_avro::from_avro_datum(&schema, &mut body, None)
        .unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(body.is_empty(), "{} trailing bytes", body.len());
    (id, v)
}

fn b64(b: &[u8]) -> J {
    J::String(base64::engine::general_purpose::STANDARD.encode(b))
}

/// An Avro value as the JSON path writes the same Connect value (bytes as base64).
fn to_json(v: &A) -> J {
    match v {
        A::Null => J::Null,
        A::Boolean(b) => json!(b),
        A::Int(i) | A::Date(i) | A::TimeMillis(i) => json!(i),
        A::Long(i) | A::TimestampMillis(i) | A::TimeMicros(i) | A::TimestampMicros(i) => json!(i),
        A::Float(f) => {
            if f.is_finite() {
                // Rust prints a whole f32 without a fraction ("0"), Jackson with one ("0.0").
                let mut text = f.to_string();
                if !text.contains(['.', 'e']) {
                    text.push_str(".0");
                }
                serde_json::from_str(&text).unwrap()
            } else {
                json!(non_finite(f64::from(*f)))
            }
        }
        A::Double(f) => {
            if f.is_finite() {
                json!(f)
            } else {
                json!(non_finite(*f))
            }
        }
        A::Bytes(b) | A::Fixed(_, b) => b64(b),
        A::Decimal(d) => b64(&<Vec<u8>>::try_from(d.clone()).unwrap()),
        A::String(s) | A::Enum(_, s) => json!(s),
        A::Union(_, v) => to_json(v),
        A::Array(items) => J::Array(items.iter().map(to_json).collect()),
        A::Map(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
        A::Record(fields) => J::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
        other => panic!("unexpected Avro value {other:?}"),
    }
}

fn non_finite(f: f64) -> &'static str {
    if f.is_nan() {
        "NaN"
    } else if f > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

fn arr(elements: Vec<Value>) -> Value {
    Value::Array(Box::new(PgArray::from_elements(elements)))
}

/// The type zoo: one column per shape, and a row of values.
fn zoo() -> (Arc<Table>, Vec<Value>) {
    let numeric = |p: i32, s: i32| ((p << 16) | s) + 4;
    let cols = vec![
        col("id", 23, -1, true),
        col("b", 16, -1, false),
        col("i2", 21, -1, false),
        col("i8", 20, -1, false),
        col("f4", 700, -1, false),
        col("f8", 701, -1, false),
        col("f8nan", 701, -1, false),
        col("dec", 1700, numeric(10, 2), false),
        col("decneg", 1700, numeric(5, 3), false),
        col("vdec", 1700, -1, false),
        col("vnan", 1700, -1, false),
        col("txt", 25, -1, false),
        col("nul", 25, -1, false),
        col("by", 17, -1, false),
        col("js", 3802, -1, false),
        col("uu", 2950, -1, false),
        col("d", 1082, -1, false),
        col("t", 1083, -1, false),
        col("t3", 1083, 3, false),
        col("ts", 1114, -1, false),
        col("ts3", 1114, 3, false),
        col("tz", 1184, -1, false),
        col("tz2", 1184, 2, false),
        col("iv", 1186, -1, false),
        col("money", 790, -1, false),
        col("bit1", 1560, 1, false),
        col("bits", 1562, -1, false),
        col("ttz", 1266, -1, false),
        col("pt", 600, -1, false),
        col("ints", 1007, -1, false),
        col("texts", 1009, -1, false),
        col("decs", 1231, numeric(5, 2), false),
        col("toast", 25, -1, false),
        col("weird name-1", 25, -1, false),
        described(
            "mood",
            TypeDesc::Enum {
                labels: vec!["sad".into(), "ok".into()],
            },
        ),
        described(
            "pair",
            TypeDesc::Composite {
                name: "pair".into(),
                fields: vec![
                    (
                        "a".into(),
                        TypeDesc::Builtin {
                            oid: 23,
                            type_modifier: -1,
                        },
                    ),
                    ("s".into(), TypeDesc::Other { name: "x".into() }),
                ],
            },
        ),
        described("hs", TypeDesc::Hstore),
    ];
    let values = vec![
        Value::Int32(7),
        Value::Bool(true),
        Value::Int16(-3),
        Value::Int64(i64::MIN),
        Value::Float32(0.1),
        Value::Float64(-2.5e300),
        Value::Float64(f64::NAN),
        Value::Numeric("12345678.90".into()),
        Value::Numeric("-1.5".into()),
        Value::Numeric("-1234.5600".into()),
        Value::Numeric("NaN".into()),
        Value::Text("héllo \"w\"\n".into()),
        Value::Null,
        Value::Bytes(vec![0, 0xff, 0x10]),
        Value::Json("{\"a\": [1, 2]}".into()),
        Value::Text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into()),
        Value::Date(-1),
        Value::Time(45_296_789_012),
        Value::Time(45_296_789_000),
        Value::Timestamp(1_704_164_645_123_456),
        Value::Timestamp(-1_000),
        Value::TimestampTz(1_704_164_645_123_456),
        Value::TimestampTz(1_704_164_645_120_000),
        Value::Interval {
            months: 14,
            days: 3,
            micros: 14_706_780_000,
        },
        Value::Numeric("-1234.5".into()),
        Value::Bits("1".into()),
        Value::Bits("100000000".into()),
        Value::TimeTz {
            micros: 3_600_000_000,
            offset_secs: -19_800,
        },
        Value::Point { x: 1.5, y: -2.0 },
        Value::Array(Box::new(PgArray {
            dims: vec![ArrayDim { len: 3, lower: 1 }],
            elements: vec![Value::Int32(1), Value::Null, Value::Int32(3)],
        })),
        arr(vec![]),
        arr(vec![Value::Numeric("1.005".into())]),
        Value::Unavailable,
        Value::Text("w".into()),
        Value::Text("ok".into()),
        Value::Composite(vec![Value::Int32(1), Value::Null]),
        Value::Map(vec![("k".into(), Some("v".into())), ("n".into(), None)]),
    ];
    (table(16_384, cols), values)
}

/// JSON field names adjusted as the Avro schema adjusts them.
fn adjust_names(j: J) -> J {
    match j {
        J::Object(m) => J::Object(
            m.into_iter()
                .map(|(k, v)| (schema::avro_name(&k), v))
                .collect(),
        ),
        other => other,
    }
}

fn check_same_as_json(format: JsonOptions) {
    let (t, values) = zoo();
    let mut avro = encoder(format.clone());
    let mut json = JsonEncoder::new(format);
    for ev in [
        event(Op::Create, &t, None, Some(row(values.clone()))),
        event(
            Op::Update,
            &t,
            Some(row(values.clone())),
            Some(row(values.clone())),
        ),
        event(Op::Delete, &t, Some(row(values.clone())), None),
        event(Op::Read, &t, None, Some(row(values))),
        event(Op::Truncate, &t, None, None),
    ] {
        let mut out = Vec::new();
        avro.0
            .encode_value_at(Some(TOPIC), &ev, NOW_US, &mut out)
            .unwrap();
        let (_, decoded) = decode(&avro.1, &out);
        let got = to_json(&decoded);
        let mut jout = Vec::new();
        json.encode_value_at(&ev, NOW_US, &mut jout);
        let mut want: J = serde_json::from_slice(&jout).unwrap();
        for side in ["before", "after"] {
            want[side] = adjust_names(want[side].take());
        }
        assert_eq!(got, want, "op {:?}", ev.op);
        let mut kout = Vec::new();
        // A composite key of an int, a decimal, a text and a uuid.
        let key_columns = [0, 7, 11, 15];
        if avro
            .0
            .encode_key(Some(TOPIC), &ev, &key_columns, &mut kout)
            .unwrap()
        {
            let (_, k) = decode(&avro.1, &kout);
            let mut jk = Vec::new();
            assert!(json.encode_key(&ev, &key_columns, &mut jk));
            assert_eq!(to_json(&k), serde_json::from_slice::<J>(&jk).unwrap());
            // The key as Debezium's key-change headers carry it: the JSON key's fields.
            let header: J = serde_json::from_str(&avro.0.key_json(&kout).unwrap()).unwrap();
            assert_eq!(header, serde_json::from_slice::<J>(&jk).unwrap());
        }
    }
}

/// The zoo with every column `NOT NULL` (but the composite, which Debezium has no fallback
/// for, and a NaN numeric), deleted under `REPLICA IDENTITY DEFAULT`: the before image carries the key only, and
/// both formats fill the rest with Debezium's fallbacks, as required fields.
fn check_required_fallbacks_same_as_json(format: JsonOptions) {
    let (t, values) = zoo();
    let required = table(
        t.id,
        t.columns
            .iter()
            .map(|c| Column {
                // NaN has no form under VariableScaleDecimal (docs/avro.md: Avro writes the
                // zero in a required field, JSON null).
                not_null: c.name != "vnan"
                    && !matches!(c.type_desc.as_deref(), Some(TypeDesc::Composite { .. })),
                ..c.clone()
            })
            .collect(),
    );
    let mut key_only: Vec<Value> = vec![Value::Null; values.len()];
    key_only[0] = values[0].clone();
    let mut avro = encoder(format.clone());
    let mut json = JsonEncoder::new(format);
    for ev in [
        event(
            Op::Delete,
            &required,
            Some(Row {
                values: key_only,
                key_only: true,
            }),
            None,
        ),
        event(Op::Create, &required, None, Some(row(values))),
    ] {
        let mut out = Vec::new();
        avro.0
            .encode_value_at(Some(TOPIC), &ev, NOW_US, &mut out)
            .unwrap();
        let (_, decoded) = decode(&avro.1, &out);
        let got = to_json(&decoded);
        let mut jout = Vec::new();
        json.encode_value_at(&ev, NOW_US, &mut jout);
        let mut want: J = serde_json::from_slice(&jout).unwrap();
        for side in ["before", "after"] {
            want[side] = adjust_names(want[side].take());
        }
        assert_eq!(got, want, "op {:?}", ev.op);
    }
}

#[test]
fn required_fallbacks_decode_to_the_json_values_in_every_mode() {
    check_required_fallbacks_same_as_json(json_opts());
    for (d, b, t, i, h) in [
        (
            DecimalHandlingMode::Double,
            BinaryHandlingMode::Base64,
            TimePrecisionMode::Connect,
            IntervalHandlingMode::String,
            HstoreHandlingMode::Map,
        ),
        (
            DecimalHandlingMode::String,
            BinaryHandlingMode::Hex,
            TimePrecisionMode::Isostring,
            IntervalHandlingMode::Numeric,
            HstoreHandlingMode::Json,
        ),
    ] {
        check_required_fallbacks_same_as_json(JsonOptions {
            decimal_handling: d,
            binary_handling: b,
            time_precision: t,
            interval_handling: i,
            hstore_handling: h,
            ..json_opts()
        });
    }
}

#[test]
fn zoo_decodes_to_the_json_values() {
    check_same_as_json(json_opts());
}

#[test]
fn zoo_decodes_to_the_json_values_in_every_mode() {
    for (d, b, t, i, h) in [
        (
            DecimalHandlingMode::Double,
            BinaryHandlingMode::Base64,
            TimePrecisionMode::Connect,
            IntervalHandlingMode::String,
            HstoreHandlingMode::Map,
        ),
        (
            DecimalHandlingMode::String,
            BinaryHandlingMode::Hex,
            TimePrecisionMode::Isostring,
            IntervalHandlingMode::Numeric,
            HstoreHandlingMode::Json,
        ),
        (
            DecimalHandlingMode::Precise,
            BinaryHandlingMode::Base64UrlSafe,
            TimePrecisionMode::AdaptiveTimeMicroseconds,
            IntervalHandlingMode::String,
            HstoreHandlingMode::Map,
        ),
    ] {
        check_same_as_json(JsonOptions {
            decimal_handling: d,
            binary_handling: b,
            time_precision: t,
            interval_handling: i,
            hstore_handling: h,
            ..json_opts()
        });
    }
}

#[test]
fn schemas_are_named_as_debezium_names_them() {
    let (t, values) = zoo();
    let (mut enc, reg) = encoder(json_opts());
    let ev = event(Op::Create, &t, None, Some(row(values)));
    let mut out = Vec::new();
    enc.encode_value_at(Some(TOPIC), &ev, NOW_US, &mut out)
        .unwrap();
    assert!(enc.encode_key(Some(TOPIC), &ev, &[0], &mut out).unwrap());
    assert_eq!(reg.versions("walrus.public.items-value"), vec![1]);
    assert_eq!(reg.versions("walrus.public.items-key"), vec![2]);
    let value: J = serde_json::from_str(&reg.schema(1).unwrap()).unwrap();
    assert_eq!(value["name"], "Envelope");
    assert_eq!(value["namespace"], "walrus.public.items");
    let key: J = serde_json::from_str(&reg.schema(2).unwrap()).unwrap();
    assert_eq!(
        key,
        json!({"type": "record", "name": "Key", "namespace": "walrus.public.items",
               "fields": [{"name": "id", "type": "int"}], "connect.name": "walrus.public.items.Key"})
    );
    // `before` defines the Value record; `after` refers to it by name.
    assert_eq!(
        value["fields"][1]["type"],
        json!(["null", "walrus.public.items.Value"])
    );
    let row = &value["fields"][0]["type"][1];
    let field = |n: &str| {
        row["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == n)
            .unwrap_or_else(|| panic!("no field {n}"))
            .clone()
    };
    assert_eq!(field("id")["type"], "int");
    assert_eq!(field("weird_name_1")["type"], json!(["null", "string"]));
    assert_eq!(field("weird_name_1")["default"], J::Null);
    assert_eq!(field("dec")["type"][1]["logicalType"], "decimal");
    assert_eq!(field("vdec")["type"][1]["name"], "VariableScaleDecimal");
    // The second VariableScaleDecimal column refers to the record by name.
    assert_eq!(
        field("vnan")["type"],
        json!(["null", "io.debezium.data.VariableScaleDecimal"])
    );
    assert_eq!(
        field("pt")["type"][1]["connect.name"],
        "io.debezium.data.geometry.Point"
    );
    assert_eq!(field("pair")["type"][1]["name"], "ConnectDefault");
}

#[test]
fn a_new_table_shape_registers_a_new_version_before_its_first_record() {
    let t1 = table(1, vec![col("id", 23, -1, true)]);
    let (mut enc, reg) = encoder(json_opts());
    let mut out = Vec::new();
    enc.encode_value_at(
        Some(TOPIC),
        &event(Op::Create, &t1, None, Some(row(vec![Value::Int32(1)]))),
        NOW_US,
        &mut out,
    )
    .unwrap();
    assert_eq!(decode(&reg, &out).0, 1);
    // The same shape in a new Arc (a repeated Relation message) keeps the id.
    let same = table(1, vec![col("id", 23, -1, true)]);
    enc.encode_value_at(
        Some(TOPIC),
        &event(Op::Create, &same, None, Some(row(vec![Value::Int32(2)]))),
        NOW_US,
        &mut out,
    )
    .unwrap();
    assert_eq!(decode(&reg, &out).0, 1);
    let t2 = table(
        1,
        vec![col("id", 23, -1, true), col("extra", 25, -1, false)],
    );
    let ev = event(
        Op::Create,
        &t2,
        None,
        Some(row(vec![Value::Int32(3), Value::Text("x".into())])),
    );
    enc.encode_value_at(Some(TOPIC), &ev, NOW_US, &mut out)
        .unwrap();
    let (id, v) = decode(&reg, &out);
    assert_eq!(id, 2);
    assert_eq!(to_json(&v)["after"], json!({"id": 3, "extra": "x"}));
    assert_eq!(reg.versions("walrus.public.items-value"), vec![1, 2]);
}

/// A registry that refuses everything, as a subject under BACKWARD refuses an added
/// required field.
struct Refusing;

impl SchemaRegistry for Refusing {
    fn register(&self, subject: &str, _schema: &str) -> Result<u32, RegistryError> {
        Err(RegistryError::Incompatible {
            subject: subject.into(),
            level: "BACKWARD".into(),
            message: "incompatible".into(),
        })
    }
}

#[test]
fn a_refused_schema_names_table_change_and_level_and_is_fatal() {
    let opts = AvroOptions {
        format: json_opts(),
        subject_strategy: SubjectNameStrategy::TopicNameStrategy,
    };
    let mut enc = AvroEncoder::new(opts, Arc::new(MemoryRegistry::default()));
    let t1 = table(1, vec![col("id", 23, -1, true)]);
    let mut out = Vec::new();
    enc.encode_value(
        Some(TOPIC),
        &event(Op::Create, &t1, None, Some(row(vec![Value::Int32(1)]))),
        &mut out,
    )
    .unwrap();
    // Swap the registry for one that refuses, keeping the table cache (the previous shape).
    enc.registry = Arc::new(Refusing);
    let t2 = table(1, vec![col("id", 23, -1, true), col("qty", 23, -1, true)]);
    let err = enc
        .encode_value(
            Some(TOPIC),
            &event(
                Op::Create,
                &t2,
                None,
                Some(row(vec![Value::Int32(1), Value::Int32(2)])),
            ),
            &mut out,
        )
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("public.items"), "{msg}");
    assert!(msg.contains("column qty t23 added (required)"), "{msg}");
    assert!(msg.contains("BACKWARD"), "{msg}");
    assert!(msg.contains("walrus.public.items-value"), "{msg}");
    assert_eq!(
        crate::error::ErrorKind::class(err.kind()),
        crate::error::ErrorClass::Fatal
    );
}

#[test]
fn messages_and_tombstone_free_truncates() {
    let (mut enc, reg) = encoder(json_opts());
    let ev = ChangeEvent {
        op: Op::Message,
        table: None,
        before: None,
        after: None,
        source: source(),
        message: Some(LogicalMessage {
            prefix: "p".into(),
            content: b"hi".to_vec(),
            transactional: true,
        }),
    };
    let mut out = Vec::new();
    enc.encode_value_at(Some("walrus.message"), &ev, NOW_US, &mut out)
        .unwrap();
    let (_, v) = decode(&reg, &out);
    let mut json = JsonEncoder::new(json_opts());
    let mut jout = Vec::new();
    json.encode_value_at(&ev, NOW_US, &mut jout);
    assert_eq!(to_json(&v), serde_json::from_slice::<J>(&jout).unwrap());
    assert!(enc.encode_key(None, &ev, &[], &mut out).unwrap());
    assert_eq!(to_json(&decode(&reg, &out).1), json!({"prefix": "p"}));
    assert_eq!(enc.default_topic(&ev), "walrus.message");
    // No topic given: the subject is the default topic's.
    assert_eq!(reg.versions("walrus.message-key").len(), 1);
    // A truncate has no key.
    let t = table(1, vec![col("id", 23, -1, true)]);
    assert!(!enc
        .encode_key(
            Some(TOPIC),
            &event(Op::Truncate, &t, None, None),
            &[0],
            &mut out
        )
        .unwrap());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_row_decodes(
            i in any::<i32>(),
            l in any::<i64>(),
            s in any::<String>(),
            f in any::<f64>(),
            bytes in proptest::collection::vec(any::<u8>(), 0..40),
            ints in proptest::collection::vec(proptest::option::of(any::<i32>()), 0..10),
            unscaled in any::<i64>(),
        ) {
            let t = table(9, vec![
                col("a", 23, -1, true),
                col("b", 20, -1, false),
                col("c", 25, -1, false),
                col("d", 701, -1, false),
                col("e", 17, -1, false),
                col("f", 1007, -1, false),
                col("g", 1700, -1, false),
            ]);
            let elements = ints.iter().map(|v| v.map_or(Value::Null, Value::Int32)).collect();
            let values = vec![
                Value::Int32(i),
                Value::Int64(l),
                Value::Text(s.clone()),
                Value::Float64(f),
                Value::Bytes(bytes.clone()),
                arr(elements),
                Value::Numeric(format!("{}.{:03}", unscaled / 1000, (unscaled % 1000).unsigned_abs())),
            ];
            let (mut enc, reg) = encoder(json_opts());
            let mut out = Vec::new();
            enc.encode_value_at(Some(TOPIC), &event(Op::Update, &t, Some(row(values.clone())), Some(row(values))), NOW_US, &mut out).unwrap();
            let (_, v) = decode(&reg, &out);
            let j = to_json(&v);
            prop_assert_eq!(&j["after"]["a"], &json!(i));
            prop_assert_eq!(&j["after"]["b"], &json!(l));
            prop_assert_eq!(&j["after"]["c"], &json!(s));
            prop_assert_eq!(&j["before"]["e"], &b64(&bytes));
            prop_assert_eq!(j["after"]["f"].as_array().map(Vec::len), Some(ints.len()));
        }
    }
}

/// Transaction metadata: the `transaction` block and the `BEGIN`/`END` key and value
/// decode with their registered schemas to what the JSON path writes.
#[test]
fn transaction_metadata_matches_the_json_path() {
    use crate::transactions::{TransactionBlock, TransactionEvent, TransactionStatus};
    let format = json_opts();
    let (mut avro, reg) = encoder(format.clone());
    let json = JsonEncoder::new(format);
    let topic = "walrus.transaction";
    for ev in [
        TransactionEvent {
            status: TransactionStatus::Begin,
            id: "555:100".into(),
            event_count: None,
            data_collections: None,
            ts_ms: 1_699_999_999_000,
        },
        TransactionEvent {
            status: TransactionStatus::End,
            id: "555:200".into(),
            event_count: Some(3),
            data_collections: Some(vec![("public.a".into(), 2), ("public.b".into(), 1)]),
            ts_ms: 1_699_999_999_000,
        },
        TransactionEvent {
            status: TransactionStatus::End,
            id: "556:300".into(),
            event_count: Some(0),
            data_collections: Some(Vec::new()),
            ts_ms: 1,
        },
    ] {
        let mut out = Vec::new();
        avro.encode_transaction_value(topic, &ev, &mut out).unwrap();
        let (_, v) = decode(&reg, &out);
        let mut jout = Vec::new();
        json.encode_transaction_value(&ev, &mut jout);
        assert_eq!(to_json(&v), serde_json::from_slice::<J>(&jout).unwrap());
        avro.encode_transaction_key(topic, &ev.id, &mut out)
            .unwrap();
        let (_, k) = decode(&reg, &out);
        json.encode_transaction_key(&ev.id, &mut jout);
        assert_eq!(to_json(&k), serde_json::from_slice::<J>(&jout).unwrap());
        assert_eq!(
            avro.key_json(&out).unwrap(),
            String::from_utf8(jout).unwrap()
        );
    }
    assert!(reg
        .schema(1)
        .into_iter()
        .chain(reg.schema(2))
        .any(|s| s.contains("TransactionMetadataValue")));
    // A data event with its block.
    let t = table(7, vec![col("id", 23, -1, true)]);
    let ev = ChangeEvent {
        op: Op::Create,
        table: Some(t),
        before: None,
        after: Some(Row {
            values: vec![Value::Int32(1)],
            key_only: false,
        }),
        source: source(),
        message: None,
    };
    let block = TransactionBlock {
        id: "555:24023128".into(),
        total_order: 4,
        data_collection_order: 2,
    };
    let mut out = Vec::new();
    avro.encode_value_in_transaction_at(Some(TOPIC), &ev, Some(&block), NOW_US, &mut out)
        .unwrap();
    let (_, v) = decode(&reg, &out);
    let mut json = JsonEncoder::new(json_opts());
    let mut jout = Vec::new();
    json.encode_value_in_transaction_at(&ev, Some(&block), NOW_US, &mut jout);
    let want: J = serde_json::from_slice(&jout).unwrap();
    assert_eq!(
        want["transaction"],
        json!({"id": "555:24023128", "total_order": 4, "data_collection_order": 2})
    );
    assert_eq!(to_json(&v), want);
}

#[test]
fn logical_tables_are_named_after_their_topic_with_the_key_field() {
    let t = table(7, vec![col("id", 23, -1, true), col("n", 23, -1, false)]);
    let (mut enc, reg) = encoder(json_opts());
    let logical = LogicalTable {
        schema_base: "walrus.all".into(),
        key_field: Some(("__dbz__physicalTableIdentifier".into(), TOPIC.into())),
    };
    let ev = event(
        Op::Create,
        &t,
        None,
        Some(row(vec![Value::Int32(4), Value::Int32(5)])),
    );
    let mut key = Vec::new();
    assert!(enc
        .encode_logical_key(Some("walrus.all"), Some(&logical), &ev, &[0], &mut key)
        .unwrap());
    let mut value = Vec::new();
    enc.encode_logical_value_at(
        Some("walrus.all"),
        Some(&logical),
        &ev,
        None,
        NOW_US,
        &mut value,
    )
    .unwrap();
    assert_eq!(reg.versions("walrus.all-key").len(), 1);
    assert_eq!(reg.versions("walrus.all-value").len(), 1);
    let (kid, k) = decode(&reg, &key);
    let key_schema: J = serde_json::from_str(&reg.schema(kid).unwrap()).unwrap();
    assert_eq!(
        key_schema,
        json!({"type": "record", "name": "Key", "namespace": "walrus.all",
               "fields": [{"name": "id", "type": "int"},
                          {"name": "__dbz__physicalTableIdentifier", "type": "string"}],
               "connect.name": "walrus.all.Key"})
    );
    assert_eq!(
        k,
        A::Record(vec![
            ("id".into(), A::Int(4)),
            (
                "__dbz__physicalTableIdentifier".into(),
                A::String(TOPIC.into())
            ),
        ])
    );
    let (vid, _) = decode(&reg, &value);
    let value_schema: J = serde_json::from_str(&reg.schema(vid).unwrap()).unwrap();
    assert_eq!(value_schema["connect.name"], "walrus.all.Envelope");
    assert_eq!(value_schema["fields"][0]["type"][1]["name"], "Value");
    assert_eq!(
        value_schema["fields"][0]["type"][1]["namespace"],
        "walrus.all"
    );
    // The key-change header form of the key holds the field too (the emitter drops it).
    let header = enc.key_json(&key).unwrap();
    assert_eq!(
        serde_json::from_str::<J>(&header).unwrap(),
        json!({"id": 4, "__dbz__physicalTableIdentifier": TOPIC})
    );
    // Without the logical table, the same encoder goes back to the table's own names.
    enc.encode_value_at(Some(TOPIC), &ev, NOW_US, &mut value)
        .unwrap();
    let (vid, _) = decode(&reg, &value);
    let value_schema: J = serde_json::from_str(&reg.schema(vid).unwrap()).unwrap();
    assert_eq!(value_schema["connect.name"], "walrus.public.items.Envelope");
}

/// `ExtractNewRecordState` in Avro against the JSON path: every flat value decodes with its
/// registered schema to the JSON flat value, in every mode, with added fields of every kind
/// (top level, `source` with and without a default, a null `transaction`), and the headers
/// are the JSON path's.
#[test]
fn flat_values_decode_to_the_json_flat_values() {
    use crate::config::UnwrapConfig;
    let (t, values) = zoo();
    let mut old = values.clone();
    old[1] = Value::Bool(false);
    let events = [
        event(Op::Create, &t, None, Some(row(values.clone()))),
        event(Op::Update, &t, Some(row(old.clone())), Some(row(values))),
        event(Op::Delete, &t, Some(row(old)), None),
        event(Op::Truncate, &t, None, None),
    ];
    let fields = |mode: &str| UnwrapConfig {
        delete_tombstone_handling_mode: toml::from_str::<std::collections::BTreeMap<String, _>>(
            &format!("m = \"{mode}\""),
        )
        .unwrap()
        .remove("m")
        .unwrap(),
        add_fields: vec![
            "op".into(),
            "table".into(),
            "source.ts_ms".into(),
            "lsn".into(),
            "snapshot:snap".into(),
            "transaction.id".into(),
        ],
        add_headers: vec![
            "op".into(),
            "db".into(),
            "txId".into(),
            "transaction.id".into(),
        ],
        ..UnwrapConfig::default()
    };
    let configs = [
        UnwrapConfig::default(),
        fields("rewrite"),
        fields("drop"),
        fields("rewrite-with-tombstone"),
        fields("delete-to-tombstone"),
        fields("tombstone"),
    ];
    let mut compared = 0;
    for config in &configs {
        let unwrap = Unwrap::new(config).unwrap();
        let (mut enc, reg) = encoder(json_opts());
        let mut json = JsonEncoder::new(json_opts());
        for ev in &events {
            let (mut out, mut headers) = (Vec::new(), Vec::new());
            let flat = enc
                .encode_unwrapped_at(
                    Some(TOPIC),
                    None,
                    ev,
                    None,
                    &unwrap,
                    NOW_US,
                    &mut out,
                    &mut headers,
                )
                .unwrap();
            let mut envelope = Vec::new();
            json.encode_value_at(ev, NOW_US, &mut envelope);
            let mut jflat = Vec::new();
            let jkind = unwrap.value(&envelope, &mut jflat);
            let mut jheaders = Vec::new();
            unwrap.headers(Some(&envelope), &mut jheaders);
            let what = format!("{config:?} {:?}", ev.op);
            assert_eq!(headers, jheaders, "{what}");
            match (&flat, &jkind) {
                (Flattened::Value, Flattened::Value) => {
                    let (id, _) = decode(&reg, &out);
                    let entry = enc.tables.get(&t.id).unwrap();
                    let (_, registered) = entry.flat.as_ref().unwrap();
                    assert_eq!(registered.ids[0].1, id, "{what}");
                    let mut text = String::new();
                    let rest = decode::to_json(&registered.schema, &out[5..], &mut text).unwrap();
                    assert!(rest.is_empty(), "{what}");
                    let a: J = serde_json::from_str(&text).unwrap();
                    let j: J = serde_json::from_slice(&jflat).unwrap();
                    assert_eq!(a, j, "{what}");
                    assert!(a.get("id").is_some(), "{what}: {a}");
                    compared += 1;
                }
                // A delete in `tombstone` mode: JSON writes the value null, AvroConverter
                // null bytes.
                (Flattened::Tombstone, Flattened::Value) => {
                    assert_eq!(unwrap.mode(), DeleteTombstoneHandling::Tombstone, "{what}");
                    assert_eq!(jflat, b"null", "{what}");
                }
                (a, j) => assert_eq!(a, j, "{what}"),
            }
        }
    }
    // create and update in 6 modes, deletes rewritten in 2.
    assert_eq!(compared, 14);
    // The flat schema: unchanged, the optional Value record; with fields, a required copy
    // with the added fields optional and without defaults.
    let (mut enc, reg) = encoder(json_opts());
    let (mut out, mut headers) = (Vec::new(), Vec::new());
    let unwrap = Unwrap::new(&UnwrapConfig::default()).unwrap();
    enc.encode_unwrapped_at(
        Some(TOPIC),
        None,
        &events[0],
        None,
        &unwrap,
        NOW_US,
        &mut out,
        &mut headers,
    )
    .unwrap();
    let (id, _) = decode(&reg, &out);
    let s: J = serde_json::from_str(&reg.schema(id).unwrap()).unwrap();
    assert_eq!(s[0], "null");
    assert_eq!(s[1]["connect.name"], "walrus.public.items.Value");
    let (mut enc, reg) = encoder(json_opts());
    let unwrap = Unwrap::new(&fields("rewrite")).unwrap();
    enc.encode_unwrapped_at(
        Some(TOPIC),
        None,
        &events[0],
        None,
        &unwrap,
        NOW_US,
        &mut out,
        &mut headers,
    )
    .unwrap();
    let (id, _) = decode(&reg, &out);
    let s: J = serde_json::from_str(&reg.schema(id).unwrap()).unwrap();
    assert_eq!(s["connect.name"], "walrus.public.items.Value");
    let field = |n: &str| {
        s["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("no field {n}: {s}"))
    };
    assert_eq!(field("__deleted")["type"], json!(["null", "string"]));
    assert_eq!(field("__op")["type"], json!(["null", "string"]));
    assert_eq!(field("__lsn")["type"], json!(["null", "long"]));
    assert_eq!(field("__snap")["type"][0], "null");
    assert_eq!(field("__snap")["default"], J::Null);
    assert_eq!(reg.versions("walrus.public.items-value").len(), 1);
}

/// With transaction metadata, added `transaction.*` fields and headers come from the
/// envelope's `transaction` block, as in the JSON path.
#[test]
fn flat_values_take_transaction_fields_from_the_block() {
    use crate::config::UnwrapConfig;
    let t = table(3, vec![col("id", 23, -1, true), col("n", 20, -1, false)]);
    let ev = event(
        Op::Create,
        &t,
        None,
        Some(row(vec![Value::Int32(1), Value::Int64(-7)])),
    );
    let block = crate::transactions::TransactionBlock {
        id: "555:24023128".into(),
        total_order: 3,
        data_collection_order: 2,
    };
    let unwrap = Unwrap::new(&UnwrapConfig {
        add_fields: vec!["transaction.id".into(), "data_collection_order".into()],
        add_headers: vec!["total_order".into(), "transaction.id".into()],
        ..UnwrapConfig::default()
    })
    .unwrap();
    let (mut enc, reg) = encoder(json_opts());
    let (mut out, mut headers) = (Vec::new(), Vec::new());
    let flat = enc
        .encode_unwrapped_at(
            Some(TOPIC),
            None,
            &ev,
            Some(&block),
            &unwrap,
            NOW_US,
            &mut out,
            &mut headers,
        )
        .unwrap();
    assert_eq!(flat, Flattened::Value);
    let mut json = JsonEncoder::new(json_opts());
    let mut envelope = Vec::new();
    json.encode_value_in_transaction_at(&ev, Some(&block), NOW_US, &mut envelope);
    let mut jflat = Vec::new();
    unwrap.value(&envelope, &mut jflat);
    let mut jheaders = Vec::new();
    unwrap.headers(Some(&envelope), &mut jheaders);
    assert_eq!(headers, jheaders);
    assert_eq!(headers[0].1, bytes::Bytes::from("3"));
    let (_, _) = decode(&reg, &out);
    let (_, registered) = enc.tables.get(&t.id).unwrap().flat.as_ref().unwrap();
    let mut text = String::new();
    decode::to_json(&registered.schema, &out[5..], &mut text).unwrap();
    let a: J = serde_json::from_str(&text).unwrap();
    assert_eq!(a, serde_json::from_slice::<J>(&jflat).unwrap());
    assert_eq!(
        a,
        json!({"id": 1, "n": -7, "__transaction_id": "555:24023128", "__data_collection_order": 2})
    );
}
