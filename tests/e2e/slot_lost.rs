//! `max_slot_wal_keep_size` set low: the watchdog warns while the slot is still usable;
//! with the sink still held walrus lets go of the replication connection once the slot is
//! past the limit (so PostgreSQL's checkpoint is not blocked), and once PostgreSQL
//! invalidates the slot walrus stops with a message that says so and how to recover,
//! instead of retrying or silently starting over.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use walrus_testkit::PgCluster;

use crate::common::*;
use crate::watchdog::{free_port, wait_ready, FifoReader, Webhook};

/// Awaits one step of the scenario, failing with its name instead of hanging.
async fn step<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| panic!("{what} took over 30 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_keep_warns_before_the_slot_is_lost_then_walrus_stops_with_the_fix() {
    let cluster = PgCluster::builder()
        .setting("max_slot_wal_keep_size", "64MB")
        // Checkpoints (which invalidate the slot) only when the test asks for them.
        .setting("max_wal_size", "4GB")
        .setting("checkpoint_timeout", "1h")
        .setting("min_wal_size", "32MB")
        .setting("wal_keep_size", "0")
        .start()
        .unwrap();
    let env = Env::with_cluster(cluster).await;
    let sql = env.sql().await;
    sql.batch_execute("CREATE TABLE t (id serial PRIMARY KEY, v text)")
        .await
        .unwrap();
    let hook = Webhook::start().await;
    let admin = free_port();
    let fifo = env.dir.path().join("events.fifo");
    let reader = FifoReader::start(&fifo);
    let text = env
        .config(r#"["public.t"]"#, "")
        .replace(
            &env.out_path().display().to_string(),
            &fifo.display().to_string(),
        )
        .replace("127.0.0.1:0", &format!("127.0.0.1:{admin}"))
        + &format!(
            r#"
[pipeline]
# Small, so the held sink stops walrus reading the replication connection early.
max_in_flight_bytes = 1048576
[watchdog]
interval_ms = 200
lag_warning_bytes = 10000000000
lag_critical_bytes = 20000000000
stuck_after_ms = 0
[alerts]
webhook_url = "{url}"
"#,
            url = hook.url()
        );
    let cfg = env.write_config(&text);
    let mut walrus = Walrus::start(&cfg);
    step("ready", wait_ready(admin, &walrus)).await;

    // The sink holds; WAL grows towards max_slot_wal_keep_size in steps the watchdog sees.
    reader.paused.store(true, Ordering::SeqCst);
    let wal_status = || async {
        let c = env.sql().await;
        c.query_one(
            "SELECT coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1",
            &[&env.slot],
        )
        .await
        .unwrap()
        .get::<_, String>(0)
    };
    let insert =
        "INSERT INTO t (v) SELECT repeat(md5(g::text), 30) FROM generate_series(1, 4000) g";
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let warned = hook.alerts().iter().any(|a| {
            a["alert"] == "wal_keep" && a["status"] == "firing" && a["slot"] == env.slot.as_str()
        });
        let status = step("slot state", wal_status()).await;
        if warned {
            assert_ne!(
                status, "lost",
                "the warning must come while the slot is usable"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no wal_keep warning (wal_status {status}); webhook got {:#?}",
            hook.alerts()
        );
        step("insert", sql.batch_execute(insert)).await.unwrap();
        // Let the watchdog poll at each step.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Nobody fixes the sink and WAL keeps growing past the limit. Once the slot is
    // `unreserved`, walrus closes its replication connection by itself, so the checkpoint
    // that invalidates the slot is not left waiting on a walsender whose client does not
    // read (each CHECKPOINT must finish within the step's 30 s).
    let deadline = Instant::now() + Duration::from_secs(120);
    while step("slot state", wal_status()).await != "unreserved" {
        assert!(Instant::now() < deadline, "the slot never passed the limit");
        step("insert", sql.batch_execute(insert)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !walrus.log().contains("closed the replication connection") {
        assert!(
            Instant::now() < deadline,
            "walrus kept the replication connection of a slot past the limit while its sink was held:\n{}",
            walrus.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    while step("slot state", wal_status()).await != "lost" {
        assert!(Instant::now() < deadline, "the slot was never invalidated");
        step("checkpoint", sql.batch_execute("CHECKPOINT"))
            .await
            .unwrap();
        step("insert", sql.batch_execute(insert)).await.unwrap();
    }

    // The sink comes back: walrus finishes the session, reconnects, and refuses the lost
    // slot with the recovery spelled out instead of retrying or silently starting over.
    reader.paused.store(false, Ordering::SeqCst);
    let status = walrus.wait(Duration::from_secs(90));
    assert!(!status.success(), "walrus must stop on a lost slot");
    let log = walrus.log();
    assert!(log.contains("invalidated"), "{log}");
    assert!(
        log.contains("pg_drop_replication_slot"),
        "the recovery must be spelled out:\n{log}"
    );
    assert!(log.contains("re-snapshot"), "{log}");

    // Started again, it refuses at once.
    let mut walrus = Walrus::start(&cfg);
    let status = walrus.wait(Duration::from_secs(60));
    assert!(!status.success(), "walrus must stop on a lost slot");
    assert!(walrus.log().contains("pg_drop_replication_slot"));
}
