//! End-to-end checks of the Kafka harness against the Apache Kafka jars in the cache: what the
//! Kafka tests rely on (a broker that answers, pauses, restarts on the same port and data,
//! one broker shared by a run, the `java` command Kafka Connect is started with).

use std::time::{Duration, Instant};

use walrus_testkit::kafka::{java_command, probe};
use walrus_testkit::KafkaBroker;

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
