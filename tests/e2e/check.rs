//! `walrus check` against a cluster that is not set up for logical decoding.

use std::process::Command;

use walrus_testkit::{PgCluster, WalLevel};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_on_wal_level_replica_and_prints_the_fix() {
    let cluster = PgCluster::builder()
        .wal_level(WalLevel::Replica)
        .start()
        .unwrap();
    let env = Env::with_cluster(cluster).await;
    env.sql()
        .await
        .batch_execute("CREATE TABLE nopk (v int); CREATE TABLE ok (id int PRIMARY KEY)")
        .await
        .unwrap();
    let cfg = env.write_config(&env.config(r#"["public.*"]"#, ""));
    let out = Command::new(env!("CARGO_BIN_EXE_walrus"))
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "check must fail:\n{stdout}");
    assert!(stdout.contains("FAIL wal_level"), "{stdout}");
    assert!(
        stdout.contains("ALTER SYSTEM SET wal_level = logical"),
        "{stdout}"
    );
    // The table without a key is named, with both fixes.
    assert!(stdout.contains("table public.nopk"), "{stdout}");
    assert!(stdout.contains("REPLICA IDENTITY FULL"), "{stdout}");
    assert!(stdout.contains("ok   table public.ok"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_on_a_ready_cluster() {
    let env = Env::new().await;
    env.sql()
        .await
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let cfg = env.write_config(&env.config(r#"["public.t"]"#, ""));
    let out = Command::new(env!("CARGO_BIN_EXE_walrus"))
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok   wal_level"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("walrus.toml");
    std::fs::write(
        &cfg,
        "[source]\nurl = \"postgres://u@127.0.0.1:1/db\"\nslot = \"x\"\nslott = 1\n[sink]\ntype = \"stdout\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_walrus"))
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("slott"), "{stderr}");
}
