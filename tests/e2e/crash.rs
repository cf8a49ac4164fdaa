//! kill -9 in the middle of a workload, then a restart: every committed row arrives, the
//! confirmed LSN was never ahead of what the file held, and duplicates come only from the
//! window after the last confirmed position.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;

const TRANSACTIONS: usize = 1500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_workload_loses_nothing_and_never_confirms_early() {
    let env = Env::new().await;
    let c = env.sql().await;
    c.batch_execute("CREATE TABLE items (id bigint PRIMARY KEY, payload text NOT NULL)")
        .await
        .unwrap();
    let cfg = env.write_config(&env.config(r#"["public.items"]"#, ""));
    let mut walrus = Walrus::start(&cfg);
    wait_until(Duration::from_secs(30), "slot creation", || {
        walrus.log().contains("starting replication")
    })
    .await;

    // Serial transactions of 1..=8 rows; after each commit, the WAL insert position, which is
    // at or past the commit's end LSN.
    let commits: Arc<Mutex<Vec<(i64, u64)>>> = Arc::default();
    let workload = {
        let commits = commits.clone();
        let client = env.sql().await;
        tokio::spawn(async move {
            let mut next_id = 1i64;
            for t in 0..TRANSACTIONS {
                let rows = (t % 8) as i64 + 1;
                let sql = format!(
                    "BEGIN; INSERT INTO items SELECT g, repeat('x', 100) || g FROM generate_series({}, {}) g; COMMIT;",
                    next_id,
                    next_id + rows - 1
                );
                client.batch_execute(&sql).await.unwrap();
                next_id += rows;
                let lsn: String = client
                    .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
                    .await
                    .unwrap()
                    .get(0);
                commits.lock().unwrap().push((next_id - 1, parse_lsn(&lsn)));
                if t % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            next_id - 1
        })
    };

    // While walrus runs: whatever PostgreSQL has confirmed must already be in the file.
    let out = env.out_path();
    let check_confirmed_prefix = |confirmed: u64| {
        let present = ids_in(&read_events(&out));
        for &(last_id, lsn) in commits.lock().unwrap().iter() {
            if lsn <= confirmed {
                for id in 1..=last_id {
                    assert!(
                        present.contains_key(&id),
                        "confirmed_flush_lsn {confirmed:X} covers a commit at {lsn:X} whose row {id} is not in the file"
                    );
                }
            }
        }
    };
    let mut checks = 0;
    while commits.lock().unwrap().len() < TRANSACTIONS / 3 {
        if let Some(confirmed) = env.confirmed_flush_lsn().await {
            check_confirmed_prefix(confirmed);
            checks += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    walrus.kill9();
    // The walsender notices its client is gone; read the slot once it is released.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let confirmed_at_kill = env.confirmed_flush_lsn().await.expect("slot");
    check_confirmed_prefix(confirmed_at_kill);
    assert!(confirmed_at_kill > 0);

    let mut walrus = Walrus::start(&cfg);
    let last_id = workload.await.unwrap();
    wait_until(Duration::from_secs(60), "every row after restart", || {
        ids_in(&read_events(&out)).len() as i64 >= last_id
    })
    .await;
    let final_confirmed = env.confirmed_flush_lsn().await.unwrap();
    check_confirmed_prefix(final_confirmed);
    walrus.interrupt();
    let status = walrus.wait(Duration::from_secs(30));
    assert!(status.success(), "clean stop: {status:?}\n{}", walrus.log());

    let events = read_events(&out);
    let ids = ids_in(&events);
    for id in 1..=last_id {
        assert!(ids.contains_key(&id), "row {id} missing");
    }
    // Duplicates only from the unconfirmed window: a row of a transaction whose commit was
    // confirmed before the kill must not be sent again. (A later transaction may be repeated
    // even if some of its changes lie before the confirmed position: keepalives confirm
    // positions between a transaction's changes and its commit.)
    let commits = commits.lock().unwrap().clone();
    for (id, lsns) in &ids {
        if lsns.len() > 1 {
            let txn_lsn = commits
                .iter()
                .find(|(last_id, _)| last_id >= id)
                .map(|&(_, lsn)| lsn)
                .expect("row from the workload");
            assert!(
                txn_lsn > confirmed_at_kill,
                "row {id} delivered {} times, but its transaction (at or before {txn_lsn:X}) was confirmed ({confirmed_at_kill:X}) before the kill",
                lsns.len()
            );
        }
    }
    assert!(checks > 0, "the confirmed-prefix check never ran");
}

/// id → the `source.lsn` of each create event carrying it.
fn ids_in(events: &[serde_json::Value]) -> HashMap<i64, Vec<u64>> {
    let mut ids: HashMap<i64, Vec<u64>> = HashMap::new();
    for e in events {
        let v = &e["value"];
        if v["op"] == "c" {
            if let Some(id) = v["after"]["id"].as_i64() {
                ids.entry(id)
                    .or_default()
                    .push(v["source"]["lsn"].as_u64().unwrap_or(0));
            }
        }
    }
    ids
}
