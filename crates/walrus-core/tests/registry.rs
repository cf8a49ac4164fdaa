//! The registry client and the Avro encoder against a real schema registry (Apicurio
//! Registry's Confluent-compatible API, started by walrus-testkit; `scripts/install-deps.sh`
//! installs it): ids, the id cache, subjects per strategy, compatibility levels, and a refused
//! schema reported with the subject's level. Registration runs from synchronous encoding code
//! inside a multi-threaded tokio runtime, as on the emit path.

use std::sync::Arc;

use walrus_core::error::{Classify, ErrorClass, ErrorKind};
use walrus_core::event::{ChangeEvent, Column, Op, ReplicaIdentity, Row, SourcePosition, Table};
use walrus_core::format::avro::{
    AvroEncoder, AvroError, AvroOptions, RegistryAuth, RegistryClient, RegistryError,
    SchemaRegistry, SubjectNameStrategy,
};
use walrus_core::format::json::JsonOptions;
use walrus_core::value::Value;
use walrus_testkit::RegistryServer;

fn col(name: &str, type_oid: u32, key: bool) -> Column {
    Column {
        name: name.into(),
        type_oid,
        type_name: if type_oid == 23 { "int4" } else { "text" }.into(),
        type_modifier: -1,
        key,
        primary_key: key,
        not_null: key,
        default: None,
        type_desc: None,
    }
}

fn insert(t: &Arc<Table>, values: Vec<Value>) -> ChangeEvent {
    ChangeEvent {
        op: Op::Create,
        table: Some(Arc::clone(t)),
        before: None,
        after: Some(Row {
            values,
            key_only: false,
        }),
        source: SourcePosition::default(),
        message: None,
    }
}

fn table(columns: Vec<Column>) -> Arc<Table> {
    Arc::new(Table {
        id: 7,
        schema: "public".into(),
        name: "items".into(),
        columns,
        replica_identity: ReplicaIdentity::Default,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_caches_and_reports_refusals_with_the_level() {
    let server = RegistryServer::start().expect("schema registry");
    let client = Arc::new(RegistryClient::new(&server.url(), RegistryAuth::default()).unwrap());
    let v1 = r#"{"type":"record","name":"V","fields":[{"name":"a","type":"int"}]}"#;
    let id = client.register("s-value", v1).unwrap();
    assert_eq!(client.register("s-value", v1).unwrap(), id);
    assert_eq!(client.register_async("s-value", v1).await.unwrap(), id);
    assert_eq!(client.compatibility(Some("s-value")).await.unwrap(), "NONE");
    server
        .set_compatibility(Some("s-value"), "BACKWARD")
        .unwrap();
    assert_eq!(
        client.compatibility(Some("s-value")).await.unwrap(),
        "BACKWARD"
    );
    let v2 = r#"{"type":"record","name":"V","fields":[{"name":"a","type":"int"},{"name":"b","type":"int"}]}"#;
    match client.register("s-value", v2) {
        Err(e @ RegistryError::Incompatible { .. }) => {
            assert!(e.to_string().contains("BACKWARD"), "{e}");
            assert_eq!(e.kind(), ErrorKind::SchemaIncompatible);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(client
        .subjects()
        .await
        .unwrap()
        .contains(&"s-value".to_string()));
    // Nothing listens here: retried, then reported as retryable.
    let dead = RegistryClient::new("http://127.0.0.1:9", RegistryAuth::default()).unwrap();
    let err = dead.compatibility(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SchemaRegistry);
    assert_eq!(err.kind().class(), ErrorClass::Retryable);

    // The encoder: version 1, a compatible ADD COLUMN (optional) as version 2, then a type
    // change BACKWARD refuses, named with the table, the change and the level.
    let mut enc = AvroEncoder::new(
        AvroOptions {
            format: JsonOptions {
                topic_prefix: "app".into(),
                ..JsonOptions::default()
            },
            subject_strategy: SubjectNameStrategy::TopicNameStrategy,
        },
        Arc::clone(&client) as Arc<dyn SchemaRegistry>,
    );
    let topic = "app.public.items";
    let mut out = Vec::new();
    let t1 = table(vec![col("id", 23, true), col("qty", 23, false)]);
    enc.encode_value(
        Some(topic),
        &insert(&t1, vec![Value::Int32(1), Value::Int32(2)]),
        &mut out,
    )
    .unwrap();
    let first = u32::from_be_bytes(out[1..5].try_into().unwrap());
    server
        .set_compatibility(Some("app.public.items-value"), "BACKWARD")
        .unwrap();
    let t2 = table(vec![
        col("id", 23, true),
        col("qty", 23, false),
        col("note", 25, false),
    ]);
    enc.encode_value(
        Some(topic),
        &insert(&t2, vec![Value::Int32(1), Value::Int32(2), Value::Null]),
        &mut out,
    )
    .unwrap();
    let second = u32::from_be_bytes(out[1..5].try_into().unwrap());
    assert_ne!(first, second);
    assert_eq!(
        server.versions("app.public.items-value").unwrap(),
        vec![u64::from(first), u64::from(second)]
    );
    let t3 = table(vec![
        col("id", 23, true),
        col("qty", 25, false),
        col("note", 25, false),
    ]);
    let err = enc
        .encode_value(
            Some(topic),
            &insert(
                &t3,
                vec![Value::Int32(1), Value::Text("x".into()), Value::Null],
            ),
            &mut out,
        )
        .unwrap_err();
    assert!(matches!(err, AvroError::Incompatible(_)));
    let msg = err.to_string();
    for needle in [
        "public.items",
        "column qty changed from int4 to text",
        "BACKWARD",
        "app.public.items-value",
    ] {
        assert!(msg.contains(needle), "{needle:?} not in {msg}");
    }
    assert_eq!(err.kind().class(), ErrorClass::Fatal);
}
