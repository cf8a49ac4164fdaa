//! Avro end to end: the real `walrus` binary writes Confluent-framed Avro into Apache Kafka
//! (the shared test broker) and registers its schemas with a real schema registry (Apicurio
//! Registry 3.3.3, walrus-testkit's [`RegistryServer`]). Confluent's own Python client
//! (`tests/e2e/avro/judge.py`, installed by `scripts/install-deps.sh`) is the judge: it
//! fetches the schemas walrus registered and decodes every record.
//!
//! - The type zoo (`types.rs`) streamed as Avro decodes, row by row, to the values a second
//!   walrus on its own slot writes in JSON for the same rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use walrus_testkit::{KafkaBroker, RegistryServer};

use crate::common::*;

/// The venv `scripts/install-deps.sh` installs `confluent-kafka[avro,schemaregistry]` into.
fn judge_python() -> PathBuf {
    let cache = walrus_testkit::kafka::cache_dir().expect("cache dir");
    let py = cache.join("py-confluent/bin/python");
    assert!(
        py.is_file(),
        "{} is missing: run scripts/install-deps.sh (it installs confluent-kafka[avro,schemaregistry])",
        py.display()
    );
    py
}

/// Runs the judge: every record of `topics`, decoded, one JSON object per record.
fn judge(bootstrap: &str, registry: &str, expected: usize, topics: &[&str]) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/avro/judge.py");
    let out = std::process::Command::new(judge_python())
        .arg(script)
        .args([bootstrap, registry, &expected.to_string(), "20"])
        .args(topics)
        .output()
        .expect("run the judge");
    assert!(
        out.status.success(),
        "the judge failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("judge output"))
        .collect()
}

fn avro_config(env: &Env, slot: &str, brokers: &str, registry: &str, tables: &str) -> String {
    format!(
        r#"topic_prefix = "{slot}"
[source]
url = "{url}"
slot = "{slot}"
publication = "{slot}"
tables = {tables}
status_interval_ms = 200
[pipeline]
flush_interval_ms = 50
[admin]
listen = "127.0.0.1:0"
[format]
key = "avro"
value = "avro"
[format.registry]
url = "{registry}"
[sink]
type = "kafka"
brokers = "{brokers}"
linger_ms = 5
[sink.topic_creation]
partitions = 1
replication_factor = 1
"#,
        url = env.cluster.url(&env.db),
    )
}

async fn start(cfg: &Path) -> Walrus {
    let mut w = Walrus::start(cfg);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !w.log().contains("starting replication") {
        if Instant::now() > deadline || !w.is_running() {
            panic!("walrus did not start replicating; log:\n{}", w.log());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w
}

/// Numbers equal by value, floats within 1e-6 relative (a `float4` decodes to the nearest
/// double in Python, the JSON path writes its shortest decimal).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                x == y || (x - y).abs() <= 1e-6 * x.abs().max(y.abs())
            }
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_zoo_decodes_to_the_json_values_with_confluents_client() {
    let broker = KafkaBroker::shared().expect("Kafka broker");
    let registry = RegistryServer::start().expect("schema registry");
    let env = Env::new().await;
    let c = env.sql().await;
    // Every zoo column but the multi-dimensional arrays (Avro's schema has one level, so they are
    // flattened; the JSON path nests them) and values Avro cannot carry where JSON writes text
    // (date/timestamp infinities) or the placeholder.
    let except: &[&str] = &["dinf", "tsinf", "tstzinf", "ia", "ta"];
    crate::types::create_zoo(&c, except).await;
    // JSON beside Avro: two walruses, two slots, the same rows.
    let json_cfg = env.write_config(&env.config("[\"public.zoo\"]", ""));
    let avro_slot = format!("{}_avro", env.slot);
    let avro_path = env.dir.path().join("avro.toml");
    std::fs::write(
        &avro_path,
        avro_config(
            &env,
            &avro_slot,
            &broker.bootstrap(),
            &registry.url(),
            "[\"public.zoo\"]",
        ),
    )
    .unwrap();
    let _json = start(&json_cfg).await;
    let _avro = start(&avro_path).await;
    crate::types::insert_zoo_rows(&c, except).await;
    let events = wait_for_events(&env.out_path(), 3, Duration::from_secs(60), |e| {
        e["value"]["op"] == "c"
    })
    .await;
    let topic = format!("{avro_slot}.public.zoo");
    let records = judge(&broker.bootstrap(), &registry.url(), 3, &[&topic]);
    assert_eq!(records.len(), 3, "{records:?}");
    let json_rows: BTreeMap<i64, &Value> = values_for(&events, "app.public.zoo")
        .into_iter()
        .map(|v| (v["after"]["id"].as_i64().unwrap(), &v["after"]))
        .collect();
    for r in &records {
        let after = &r["value"]["after"];
        let id = after["id"].as_i64().expect("id");
        let want = json_rows[&id];
        for (col, w) in want.as_object().unwrap() {
            let g = &after[col.as_str()];
            assert!(same(g, w), "row {id} column {col}: Avro {g} vs JSON {w}");
        }
        assert_eq!(r["key"], serde_json::json!({"id": id}));
        assert_eq!(r["value"]["op"], "c");
        assert_eq!(r["value"]["source"]["table"], "zoo");
        assert_eq!(r["value"]["before"], Value::Null);
    }
    let ids = registry.versions(&format!("{topic}-value")).unwrap();
    assert_eq!(ids.len(), 1);
    assert!(records.iter().all(|r| r["value_schema_id"] == ids[0]));
}
