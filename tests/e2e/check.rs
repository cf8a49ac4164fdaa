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
    let out = walrus_check(&cfg);
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
    let out = walrus_check(&cfg);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_warns_about_replica_identity_nothing() {
    let env = Env::new().await;
    env.sql()
        .await
        .batch_execute(
            "CREATE TABLE quiet (id int PRIMARY KEY, v text);
             ALTER TABLE quiet REPLICA IDENTITY NOTHING;
             CREATE TABLE keyed (id int PRIMARY KEY)",
        )
        .await
        .unwrap();
    let cfg = env.write_config(&env.config(r#"["public.quiet", "public.keyed"]"#, ""));
    let out = walrus_check(&cfg);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // A warning, not a failure: inserts still flow.
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.contains("table public.quiet"))
        .unwrap_or_else(|| panic!("no line for public.quiet:\n{stdout}"));
    assert!(line.starts_with("WARN"), "{stdout}");
    assert!(line.contains("REPLICA IDENTITY NOTHING"), "{stdout}");
    assert!(line.contains("no before image"), "{stdout}");
    assert!(
        stdout.contains(r#"fix: ALTER TABLE "public"."quiet" REPLICA IDENTITY DEFAULT"#),
        "{stdout}"
    );
    assert!(stdout.contains("ok   table public.keyed"), "{stdout}");

    // The JSON form says the same.
    let out = Command::new(env!("CARGO_BIN_EXE_walrus"))
        .args(["check", "--json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success());
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let quiet = results
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "table public.quiet")
        .unwrap_or_else(|| panic!("{results}"));
    assert_eq!(quiet["status"], "warn", "{quiet}");
    let keyed = results
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "table public.keyed")
        .unwrap_or_else(|| panic!("{results}"));
    assert_eq!(keyed["status"], "ok", "{keyed}");
}
