//! PostgreSQL restarting under walrus, and a clean stop: nothing is lost, and a clean stop
//! confirms everything delivered so the next run repeats nothing.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::*;

fn created_ids(path: &std::path::Path) -> Vec<i64> {
    read_events(path)
        .iter()
        .filter(|e| e["value"]["op"] == "c")
        .filter_map(|e| e["value"]["after"]["id"].as_i64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_mid_stream_loses_nothing() {
    let env = Env::new().await;
    env.sql()
        .await
        .batch_execute("CREATE TABLE r (id int PRIMARY KEY)")
        .await
        .unwrap();
    let cfg = env.write_config(&env.config(r#"["public.r"]"#, ""));
    let mut walrus = Walrus::start(&cfg);
    wait_until(Duration::from_secs(30), "replication start", || {
        walrus.log().contains("starting replication")
    })
    .await;
    let c = env.sql().await;
    for i in 1..=200 {
        c.execute("INSERT INTO r VALUES ($1)", &[&i]).await.unwrap();
    }
    env.cluster.restart().expect("restart PostgreSQL");
    let c = env.sql().await;
    for i in 201..=400 {
        c.execute("INSERT INTO r VALUES ($1)", &[&i]).await.unwrap();
    }
    let out = env.out_path();
    wait_until(Duration::from_secs(60), "all 400 rows", || {
        created_ids(&out).into_iter().collect::<HashSet<_>>().len() >= 400
    })
    .await;
    assert!(
        walrus.is_running(),
        "walrus must survive a PostgreSQL restart:\n{}",
        walrus.log()
    );
    assert!(
        walrus.log().contains("retrying"),
        "the restart should have been noticed:\n{}",
        walrus.log()
    );
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(30)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_stop_confirms_everything_delivered() {
    let env = Env::new().await;
    env.sql()
        .await
        .batch_execute("CREATE TABLE s (id int PRIMARY KEY)")
        .await
        .unwrap();
    let cfg = env.write_config(&env.config(r#"["public.s"]"#, ""));
    let mut walrus = Walrus::start(&cfg);
    wait_until(Duration::from_secs(30), "replication start", || {
        walrus.log().contains("starting replication")
    })
    .await;
    let c = env.sql().await;
    c.batch_execute("INSERT INTO s SELECT generate_series(1, 1000)")
        .await
        .unwrap();
    let end: String = c
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let out = env.out_path();
    wait_for_events(&out, 1000, Duration::from_secs(30), |e| {
        e["value"]["op"] == "c"
    })
    .await;
    walrus.interrupt();
    let status = walrus.wait(Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{}", walrus.log());
    let confirmed = env.confirmed_flush_lsn().await.unwrap();
    // The commit of the insert ends before `end`; a clean stop must have confirmed it.
    let commit_confirmed = {
        let c = env.sql().await;
        let row = c
            .query_one("SELECT $1::text::pg_lsn <= (SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $2)", &[&end, &env.slot])
            .await;
        row.map(|r| r.get::<_, bool>(0)).unwrap_or(false)
    };
    assert!(confirmed > 0);
    // Restart: nothing is sent twice.
    let mut walrus = Walrus::start(&cfg);
    wait_until(Duration::from_secs(30), "replication start", || {
        walrus.log().contains("starting replication")
    })
    .await;
    c.batch_execute("INSERT INTO s VALUES (1001)")
        .await
        .unwrap();
    wait_for_events(&out, 1001, Duration::from_secs(30), |e| {
        e["value"]["op"] == "c"
    })
    .await;
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(30)).success());
    let ids = created_ids(&out);
    assert_eq!(
        ids.len(),
        1001,
        "a clean stop must leave nothing to repeat (commit confirmed: {commit_confirmed})"
    );
}
