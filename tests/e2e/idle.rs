//! A quiet database must not pin WAL while another database on the same cluster writes:
//! walrus confirms keepalive positions when it has nothing in flight.

use std::time::Duration;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_database_slot_keeps_up_with_busy_neighbour() {
    let env = Env::new().await;
    env.sql()
        .await
        .batch_execute("CREATE TABLE quiet (id int PRIMARY KEY)")
        .await
        .unwrap();
    let busy_db = walrus_testkit::unique_name("busy");
    env.cluster.create_database(&busy_db).await.unwrap();
    let busy = env.cluster.connect(&busy_db).await.unwrap();
    busy.batch_execute("CREATE TABLE noise (id serial PRIMARY KEY, v text)")
        .await
        .unwrap();

    let cfg = env.write_config(&env.config(r#"["public.quiet"]"#, ""));
    let walrus = Walrus::start(&cfg);
    wait_until(Duration::from_secs(30), "replication start", || {
        walrus.log().contains("starting replication")
    })
    .await;
    let start = env.confirmed_flush_lsn().await.unwrap();

    for round in 0..5 {
        busy.batch_execute(
            "INSERT INTO noise (v) SELECT repeat('n', 200) FROM generate_series(1, 5000)",
        )
        .await
        .unwrap();
        let target: String = busy
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await
            .unwrap()
            .get(0);
        let target = parse_lsn(&target);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let confirmed = env.confirmed_flush_lsn().await.unwrap();
            if confirmed >= target {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: quiet slot stuck at {confirmed:X} while the cluster is at {target:X}\n{}",
                walrus.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let end = env.confirmed_flush_lsn().await.unwrap();
    assert!(end > start);
    // Nothing of the busy database leaks into the quiet one's stream.
    assert!(read_events(&env.out_path())
        .iter()
        .all(|e| e["topic"] != "app.public.noise"));
}
