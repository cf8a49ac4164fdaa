//! End-to-end checks of the harness against the machine's real PostgreSQL: what other crates'
//! tests rely on (logical wal_level, data surviving restarts, several clusters at once).

use std::sync::Arc;

use walrus_testkit::{unique_name, PgCluster, WalLevel};

async fn show(pg: &PgCluster, setting: &str) -> String {
    let client = pg.connect("postgres").await.unwrap();
    let row = client
        .query_one(&format!("SHOW {setting}"), &[])
        .await
        .unwrap();
    row.get(0)
}

#[tokio::test]
async fn starts_logical_cluster_and_creates_database() {
    let pg = PgCluster::new().unwrap();
    assert_eq!(pg.host(), "127.0.0.1");
    assert_eq!(
        pg.url("app"),
        format!("postgres://postgres@127.0.0.1:{}/app", pg.port())
    );
    assert_eq!(show(&pg, "wal_level").await, "logical");
    assert_eq!(show(&pg, "max_replication_slots").await, "20");
    assert_eq!(show(&pg, "fsync").await, "off");

    let db = unique_name("testkit");
    pg.create_database(&db).await.unwrap();
    let client = pg.connect(&db).await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE t (id int primary key, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b');",
        )
        .await
        .unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);

    // A logical slot can be created: the point of wal_level=logical.
    let slot = unique_name("slot");
    client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await
        .unwrap();

    assert_eq!(
        pg.psql(&db, "SELECT v FROM t ORDER BY id").unwrap(),
        "a\nb\n"
    );
    assert!(pg.bin("pg_recvlogical").is_file());
    assert!(pg.bindir().join("psql").is_file());
}

#[tokio::test]
async fn restart_keeps_port_and_data() {
    let pg = PgCluster::builder()
        .setting("synchronous_commit", "on")
        .start()
        .unwrap();
    let port = pg.port();
    pg.psql(
        "postgres",
        "CREATE TABLE kept (id int); INSERT INTO kept VALUES (7);",
    )
    .unwrap();

    pg.restart().unwrap();
    assert_eq!(pg.port(), port);
    assert_eq!(pg.psql("postgres", "SELECT id FROM kept").unwrap(), "7\n");

    // A crash and a start: committed data (synchronous_commit=on here) survives recovery.
    pg.kill().unwrap();
    assert!(!pg.is_running());
    assert!(pg.psql("postgres", "SELECT 1").is_err());
    pg.start().unwrap();
    assert!(pg.is_running());
    assert_eq!(pg.psql("postgres", "SELECT id FROM kept").unwrap(), "7\n");
    assert!(pg.log_tail(100).contains("database system was interrupted"));

    // Stopping twice, or starting a running server, is harmless.
    pg.stop().unwrap();
    pg.stop().unwrap();
    pg.start().unwrap();
    pg.start().unwrap();
    assert_eq!(show(&pg, "wal_level").await, "logical");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_from_another_thread_while_a_client_waits() {
    let pg = Arc::new(PgCluster::new().unwrap());
    let client = pg.connect("postgres").await.unwrap();
    client.batch_execute("SELECT 1").await.unwrap();

    let pg2 = Arc::clone(&pg);
    tokio::task::spawn_blocking(move || pg2.restart())
        .await
        .unwrap()
        .unwrap();

    // The old session was terminated by the restart; a new one works.
    assert!(client.batch_execute("SELECT 1").await.is_err());
    let client = pg.connect("postgres").await.unwrap();
    client.batch_execute("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn replica_cluster_reports_replica() {
    let pg = PgCluster::builder()
        .wal_level(WalLevel::Replica)
        .setting("wal_sender_timeout", "5s")
        .start()
        .unwrap();
    assert_eq!(pg.wal_level(), WalLevel::Replica);
    assert_eq!(show(&pg, "wal_level").await, "replica");
    assert_eq!(show(&pg, "wal_sender_timeout").await, "5s");
    // What walrus's start-up check will meet: no logical slot on a replica-level server.
    let err = pg
        .psql(
            "postgres",
            "SELECT pg_create_logical_replication_slot('s', 'pgoutput')",
        )
        .unwrap_err();
    assert!(format!("{err:#}").contains("wal_level"), "{err:#}");
}

#[tokio::test]
async fn two_clusters_run_at_once() {
    let a = PgCluster::new().unwrap();
    let b = PgCluster::new().unwrap();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.data_dir(), b.data_dir());
    a.psql("postgres", "CREATE TABLE only_in_a (id int)")
        .unwrap();
    assert!(b.psql("postgres", "SELECT * FROM only_in_a").is_err());
    assert_eq!(show(&a, "port").await, a.port().to_string());
    assert_eq!(show(&b, "port").await, b.port().to_string());
}

#[test]
fn drop_stops_the_server_and_removes_its_files() {
    let pg = PgCluster::new().unwrap();
    let dir = pg.socket_dir().to_path_buf();
    let url = pg.url("postgres");
    drop(pg);
    assert!(!dir.exists(), "{} left behind", dir.display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert!(rt
        .block_on(tokio_postgres::connect(&url, tokio_postgres::NoTls))
        .is_err());
}
