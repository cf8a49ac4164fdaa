//! The version matrix: one real scenario on every PostgreSQL major walrus supports, 10 to
//! 18, each on a throwaway cluster of that major (walrus-testkit, binaries cached by
//! `scripts/install-deps.sh`).
//!
//! The scenario covers what differs between majors: the replication protocol (pgoutput
//! options, slot command syntax), the catalog queries (generated columns from 12,
//! partitioned tables in publications from 13, TID range scans from 14), and feedback.
//! It creates a table with a key, one without (replica identity full) and a partitioned
//! one; lets walrus take the initial snapshot; inserts, updates and deletes while it
//! streams; stops it cleanly, changes more while it is down, starts it again; and checks
//! that the events rebuild every table exactly as PostgreSQL has it, and that the slot's
//! `confirmed_flush_lsn` moved past the last transaction both while streaming and at
//! each stop. `walrus check` must report the major, and a setting the major cannot serve
//! must stop `walrus run` at once with the key and the version it needs.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use walrus_testkit::PgCluster;

use crate::common::*;

/// The tables of the scenario and the column that identifies a row in each.
const TABLES: [(&str, &str); 4] = [
    ("items", "id"),
    ("notes", "body"),
    ("m1", "id"),
    ("m2", "id"),
];

/// The rows of `table` as its events rebuild them, by identifying column.
fn rebuild(events: &[Value], table: &str, key: &str) -> BTreeMap<String, Value> {
    let mut rows = BTreeMap::new();
    for v in values_for(events, &format!("app.public.{table}")) {
        if v["before"].is_object() {
            rows.remove(&v["before"][key].to_string());
        }
        match v["op"].as_str() {
            Some("r" | "c" | "u") => {
                rows.insert(v["after"][key].to_string(), v["after"].clone());
            }
            Some("d") => {
                rows.remove(&v["before"][key].to_string());
            }
            _ => {}
        }
    }
    rows
}

/// The rows of `table` in PostgreSQL, by identifying column, as JSON.
async fn rows(c: &tokio_postgres::Client, table: &str, key: &str) -> BTreeMap<String, Value> {
    c.query(&format!("SELECT to_jsonb(t)::text FROM {table} t"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_str(&r.get::<_, String>(0)).unwrap();
            (v[key].to_string(), v)
        })
        .collect()
}

/// Waits until the events rebuild every table as PostgreSQL has it.
async fn wait_converged(env: &Env, c: &tokio_postgres::Client, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let events = read_events(&env.out_path());
        let mut differing = Vec::new();
        for (table, key) in TABLES {
            let (want, got) = (rows(c, table, key).await, rebuild(&events, table, key));
            if want != got {
                differing.push(format!("{table}: want {want:?}\n got {got:?}"));
            }
        }
        if differing.is_empty() {
            return;
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "{what}: events do not rebuild the tables:\n{}",
                differing.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the slot confirmed a position past `past` (the WAL position before the
/// last transaction, so only its commit can get the slot there).
async fn wait_confirmed_past(env: &Env, past: u64, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let confirmed = env.confirmed_flush_lsn().await.unwrap_or(0);
        if confirmed > past {
            return;
        }
        if std::time::Instant::now() > deadline {
            panic!("{what}: confirmed_flush_lsn {confirmed:X} never passed {past:X}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn scenario(major: u32) {
    let cluster = PgCluster::builder()
        .major(major)
        .start()
        .unwrap_or_else(|e| panic!("PostgreSQL {major} (run scripts/install-deps.sh): {e:#}"));
    assert_eq!(cluster.major(), major);
    let env = Env::with_cluster(cluster).await;
    let c = env.sql().await;
    // A partitioned table's partitions carry the keys: a partitioned table itself can have
    // none before 11.
    c.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, qty int);
         CREATE TABLE notes (body text NOT NULL);
         ALTER TABLE notes REPLICA IDENTITY FULL;
         CREATE TABLE m (id int NOT NULL, v text) PARTITION BY RANGE (id);
         CREATE TABLE m1 PARTITION OF m FOR VALUES FROM (0) TO (100);
         CREATE TABLE m2 PARTITION OF m FOR VALUES FROM (100) TO (200);
         ALTER TABLE m1 ADD PRIMARY KEY (id);
         ALTER TABLE m2 ADD PRIMARY KEY (id);
         INSERT INTO items SELECT g, 'item ' || g, g FROM generate_series(1, 50) g;
         INSERT INTO notes SELECT 'note ' || g FROM generate_series(1, 5) g;
         INSERT INTO m SELECT g, 'm ' || g FROM generate_series(90, 110) g;",
    )
    .await
    .unwrap();
    let cfg = env.write_config(&env.config(r#"["public.*"]"#, ""));

    let out = walrus_check(&cfg);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("(major {major}")), "{stdout}");
    assert!(stdout.contains("ok   server version"), "{stdout}");

    // Initial snapshot, then changes while streaming.
    let mut walrus = Walrus::start(&cfg);
    wait_converged(&env, &c, "initial snapshot").await;
    c.batch_execute(
        "INSERT INTO items SELECT g, 'item ' || g, g FROM generate_series(51, 70) g;
         UPDATE items SET qty = qty + 100 WHERE id <= 10;
         DELETE FROM items WHERE id BETWEEN 41 AND 45;
         INSERT INTO notes VALUES ('note 6');
         UPDATE notes SET body = 'note 1 again' WHERE body = 'note 1';
         DELETE FROM notes WHERE body = 'note 2';
         UPDATE m SET v = 'changed' WHERE id IN (95, 105);
         DELETE FROM m WHERE id IN (90, 110);",
    )
    .await
    .unwrap();
    let before_last = wal_end_lsn(&c).await;
    c.batch_execute("UPDATE items SET name = 'last' WHERE id = 70")
        .await
        .unwrap();
    wait_converged(&env, &c, "streaming").await;
    wait_confirmed_past(&env, before_last, "while streaming").await;
    walrus.interrupt();
    assert!(
        walrus.wait(Duration::from_secs(30)).success(),
        "{}",
        walrus.log()
    );
    wait_confirmed_past(&env, before_last, "after a clean stop").await;

    // Changes while walrus is down arrive after it starts again.
    c.batch_execute(
        "INSERT INTO items SELECT g, 'item ' || g, g FROM generate_series(71, 80) g;
         UPDATE items SET qty = -qty WHERE id BETWEEN 11 AND 15;
         DELETE FROM items WHERE id BETWEEN 46 AND 50;
         DELETE FROM notes WHERE body = 'note 3';
         INSERT INTO m VALUES (88, 'new'), (188, 'new');",
    )
    .await
    .unwrap();
    let mut walrus = Walrus::start(&cfg);
    let before_last = wal_end_lsn(&c).await;
    c.batch_execute("INSERT INTO items VALUES (81, 'after restart', 0)")
        .await
        .unwrap();
    wait_converged(&env, &c, "after restart").await;
    wait_confirmed_past(&env, before_last, "after restart").await;
    walrus.interrupt();
    assert!(
        walrus.wait(Duration::from_secs(30)).success(),
        "{}",
        walrus.log()
    );
    // A clean stop repeats nothing: every streamed change arrived exactly once.
    let events = read_events(&env.out_path());
    let creates = values_for(&events, "app.public.items")
        .iter()
        .filter(|v| v["op"] == "c")
        .count();
    assert_eq!(
        creates,
        20 + 10 + 1,
        "inserts into items delivered once each"
    );
}

macro_rules! per_major {
    ($($name:ident: $major:literal),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            scenario($major).await;
        }
    )*};
}

per_major!(
    pg10: 10,
    pg11: 11,
    pg12: 12,
    pg13: 13,
    pg14: 14,
    pg15: 15,
    pg16: 16,
    pg17: 17,
    pg18: 18
);
