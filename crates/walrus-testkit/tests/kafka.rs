//! End-to-end checks of the Kafka harness against the Apache Kafka jars in the cache: what the
//! Kafka tests rely on (a broker that answers, pauses, restarts on the same port and data,
//! one broker shared by a run, the `java` command Kafka Connect is started with).

use std::time::{Duration, Instant};

use walrus_testkit::kafka::{java_command, probe};
use walrus_testkit::{KafkaBroker, KafkaConnect, PgCluster};

/// How long a probe waits: long enough for a loaded machine, short enough for a paused broker.
const PROBE: Duration = Duration::from_secs(3);

#[test]
fn own_broker_answers_pauses_restarts_and_is_deleted_on_drop() {
    let started = Instant::now();
    let broker = KafkaBroker::start().unwrap();
    eprintln!("broker ready in {:?}", started.elapsed());
    let addr = broker.bootstrap();
    assert_eq!(addr, format!("127.0.0.1:{}", broker.port()));
    probe(&addr, PROBE).unwrap();
    assert!(broker.is_running());

    broker.pause().unwrap();
    assert!(probe(&addr, PROBE).is_err(), "a paused broker answered");
    broker.resume().unwrap();
    probe(&addr, PROBE).unwrap();

    let started = Instant::now();
    broker.stop().unwrap();
    eprintln!("broker stopped in {:?}", started.elapsed());
    assert!(!broker.is_running());
    assert!(probe(&addr, PROBE).is_err(), "a stopped broker answered");
    let started = Instant::now();
    broker.start_again().unwrap();
    eprintln!("broker started again in {:?}", started.elapsed());
    probe(&addr, PROBE).unwrap();

    broker.kill();
    assert!(!broker.is_running());
    broker.restart().unwrap();
    probe(&addr, PROBE).unwrap();
    assert_eq!(
        broker.log_text().matches("Kafka Server started").count(),
        3,
        "one start, then two starts again on the same log"
    );

    let dir = broker.dir().to_owned();
    let pid = broker.pid().unwrap();
    drop(broker);
    assert!(!dir.exists(), "{} left behind", dir.display());
    // Reaped by the drop, so its /proc entry is gone (not merely a zombie).
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "broker pid {pid} still alive"
    );
}

#[test]
fn shared_broker_is_one_per_run() {
    let a = KafkaBroker::shared().unwrap();
    let b = KafkaBroker::shared().unwrap();
    assert_eq!(a.bootstrap(), b.bootstrap());
    probe(&a.bootstrap(), PROBE).unwrap();
}

#[test]
fn java_command_runs_kafka_connect_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    // Without arguments ConnectStandalone prints its usage and exits non-zero: enough to show
    // the classpath holds Kafka Connect and the JVM options are accepted.
    let out = java_command(dir.path())
        .unwrap()
        .arg("org.apache.kafka.connect.cli.ConnectStandalone")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Usage"), "unexpected output: {text}");
}

/// Debezium on a Kafka Connect worker against a real PostgreSQL: the connector starts, takes
/// its snapshot, and its record for the one row reaches the broker (read back with the console
/// consumer from the same jars, so no Kafka client library is involved).
#[test]
fn kafka_connect_runs_debezium_against_postgres() {
    let broker = KafkaBroker::shared().unwrap();
    let pg = PgCluster::new().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sql = pg.connect("postgres").await.unwrap();
        sql.batch_execute(
            "CREATE TABLE smoke (id int PRIMARY KEY, name text); INSERT INTO smoke VALUES (1, 'one');",
        )
        .await
        .unwrap();
    });
    let prefix = walrus_testkit::unique_name("dbz");
    let connect = KafkaConnect::start(&broker.bootstrap()).unwrap();
    let port = pg.port().to_string();
    connect
        .add_connector(
            "smoke",
            &[
                (
                    "connector.class",
                    walrus_testkit::debezium::POSTGRES_CONNECTOR,
                ),
                ("database.hostname", "127.0.0.1"),
                ("database.port", &port),
                ("database.user", "postgres"),
                ("database.password", "unused"),
                ("database.dbname", "postgres"),
                ("topic.prefix", &prefix),
                ("plugin.name", "pgoutput"),
                ("slot.name", &prefix),
                ("publication.name", &prefix),
                ("publication.autocreate.mode", "filtered"),
                ("table.include.list", "public.smoke"),
                (
                    "key.converter",
                    "org.apache.kafka.connect.json.JsonConverter",
                ),
                ("key.converter.schemas.enable", "false"),
                (
                    "value.converter",
                    "org.apache.kafka.connect.json.JsonConverter",
                ),
                ("value.converter.schemas.enable", "false"),
            ],
        )
        .unwrap();
    let topic = format!("{prefix}.public.smoke");
    let dir = tempfile::tempdir().unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = java_command(dir.path())
            .unwrap()
            .arg("org.apache.kafka.tools.consumer.ConsoleConsumer")
            .args(["--bootstrap-server", &broker.bootstrap(), "--topic", &topic])
            .args([
                "--from-beginning",
                "--max-messages",
                "1",
                "--timeout-ms",
                "10000",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Some(line) = text.lines().find(|l| l.starts_with('{')) {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(value["op"], "r", "{line}");
            assert_eq!(value["after"]["name"], "one", "{line}");
            assert_eq!(value["source"]["connector"], "postgresql", "{line}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no Debezium record on {topic}; Connect log:\n{}",
            connect.log_tail(60)
        );
    }
}
