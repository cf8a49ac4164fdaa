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

/// The `spool` line: with streaming on for this server, `source.spool_dir` must exist and
/// be writable or be creatable (check creates nothing), with its free space against
/// `source.spool_max_bytes`; with streaming off it is not used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_verifies_the_spool_dir_when_streaming_is_on() {
    let env = Env::new().await;
    env.sql()
        .await
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let spool_line = |extra: &str| {
        let cfg = env.write_config(&env.config(r#"["public.t"]"#, extra));
        let out = walrus_check(&cfg);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some("spool"))
            .unwrap_or_else(|| panic!("no spool line:\n{stdout}"))
            .to_string();
        (out.status.success(), line, stdout)
    };

    // Not there yet: fine, it is created when needed; check itself creates nothing. (A
    // small limit: the default 16 GiB may be more than this machine's free space.)
    let missing = env.dir.path().join("later/spool");
    let (ok, line, all) = spool_line(&format!(
        "streaming = \"on\"\nspool_dir = \"{}\"\nspool_max_bytes = 1048576",
        missing.display()
    ));
    assert!(ok, "{all}");
    assert!(line.starts_with("ok   spool"), "{all}");
    assert!(line.contains("does not exist yet"), "{all}");
    assert!(
        line.contains("free, source.spool_max_bytes = 1.0 MiB"),
        "{all}"
    );
    assert!(!env.dir.path().join("later").exists(), "check created it");

    // Under a plain file: it can never be created.
    let file = env.dir.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    let (ok, line, all) = spool_line(&format!(
        "streaming = \"on\"\nspool_dir = \"{}\"",
        file.join("spool").display()
    ));
    assert!(
        !ok,
        "a spool dir that cannot exist must fail the check:\n{all}"
    );
    assert!(line.starts_with("FAIL spool"), "{all}");
    assert!(line.contains("source.spool_dir"), "{all}");
    assert!(line.contains("not a directory"), "{all}");

    // An existing directory on a disk with less free space than the limit: a warning.
    let (ok, line, all) = spool_line(&format!(
        "streaming = \"auto\"\nspool_dir = \"{}\"\nspool_max_bytes = {}",
        env.dir.path().display(),
        i64::MAX
    ));
    assert!(ok, "a warning, not a failure:\n{all}");
    assert!(line.starts_with("WARN spool"), "{all}");
    assert!(line.contains("is writable"), "{all}");
    assert!(line.contains("less than source.spool_max_bytes"), "{all}");

    // Streaming off: no spool, whatever spool_dir says.
    let (ok, line, all) = spool_line(&format!(
        "streaming = \"off\"\nspool_dir = \"{}\"",
        file.join("spool").display()
    ));
    assert!(ok, "{all}");
    assert!(line.starts_with("ok   spool"), "{all}");
    assert!(line.contains("not used"), "{all}");
}
