//! `walrus status`: every replication slot of the cluster with its lag, `wal_status` and
//! whether it is active, and walrus's pipeline state — read from the admin server's
//! `/status` when walrus runs, else "not running". `--json` prints one object for scripts.

use std::process::ExitCode;
use std::time::Duration;

use walrus_core::alert::SlotReport;
use walrus_core::config::Config;
use walrus_postgres::conn::ConnParams;

/// Runs the command.
pub async fn run(config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let slots = match read_slots(config).await {
        Ok(s) => Ok(s),
        Err(e) => Err(e.to_string()),
    };
    let walrus = read_admin_status(config).await;
    let state = walrus
        .as_ref()
        .and_then(|w| w["state"].as_str().map(str::to_string))
        .unwrap_or_else(|| "not running".into());
    if json {
        let out = serde_json::json!({
            "slot": config.source.slot,
            "pipeline_state": state,
            "walrus": walrus,
            "slots": slots.as_ref().ok(),
            "error": slots.as_ref().err(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_table(config, &state, walrus.as_ref(), &slots);
    }
    Ok(if slots.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn read_slots(config: &Config) -> anyhow::Result<Vec<SlotReport>> {
    let params = ConnParams::from_config(&config.source)?;
    let client = params.connect_sql().await?;
    Ok(walrus_postgres::operations::slots::query_slots(&client, &config.source.slot).await?)
}

async fn read_admin_status(config: &Config) -> Option<serde_json::Value> {
    if !config.admin.enabled {
        return None;
    }
    let mut addr = config.admin.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    let mut req = client.get(format!("http://{addr}/status"));
    if let Some(t) = &config.admin.token {
        req = req.bearer_auth(t.expose());
    }
    let resp = req.send().await.ok()?.error_for_status().ok()?;
    let value: serde_json::Value = resp.json().await.ok()?;
    // Another program on the port is not walrus.
    (value["slot"] == config.source.slot.as_str()).then_some(value)
}

fn size(b: Option<u64>) -> String {
    match b {
        None => "-".into(),
        Some(b) if b < 1024 => format!("{b} B"),
        Some(b) if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        Some(b) if b < 1024 * 1024 * 1024 => format!("{:.1} MiB", b as f64 / 1048576.0),
        Some(b) => format!("{:.2} GiB", b as f64 / 1073741824.0),
    }
}

fn print_table(
    config: &Config,
    state: &str,
    walrus: Option<&serde_json::Value>,
    slots: &Result<Vec<SlotReport>, String>,
) {
    println!("walrus slot {:?}: pipeline {state}", config.source.slot);
    if let Some(w) = walrus {
        let p = &w["progress"];
        println!(
            "  confirmed {}  received {}  lag {}  time lag {}",
            p["confirmed_lsn"].as_str().unwrap_or("-"),
            p["received_lsn"].as_str().unwrap_or("-"),
            size(w["lag_bytes"].as_u64()),
            w["lag_ms"]
                .as_u64()
                .map_or("-".into(), |ms| format!("{:.1} s", ms as f64 / 1000.0)),
        );
        if let Some(e) = w["last_error"].as_object() {
            println!(
                "  last error: {} ({})",
                e.get("message").and_then(|m| m.as_str()).unwrap_or("?"),
                e.get("kind").and_then(|m| m.as_str()).unwrap_or("?")
            );
        }
        for a in w["alerts"].as_array().into_iter().flatten() {
            println!(
                "  ALERT {} {}",
                a["severity"].as_str().unwrap_or("?").to_uppercase(),
                a["summary"].as_str().unwrap_or("")
            );
        }
    }
    println!();
    match slots {
        Err(e) => println!("cannot read pg_replication_slots: {e}"),
        Ok(slots) if slots.is_empty() => println!("no replication slots"),
        Ok(slots) => {
            let w = slots.iter().map(|s| s.slot.len()).max().unwrap_or(4).max(4);
            let d = slots
                .iter()
                .map(|s| s.database.as_deref().map_or(1, str::len))
                .max()
                .unwrap_or(8)
                .max(8);
            println!(
                "  {:<w$}  {:<8}  {:<d$}  {:>11}  {:>11}  {:<10}  {:<6}  pid",
                "slot", "type", "database", "lag", "retained", "wal_status", "active"
            );
            for s in slots {
                println!(
                    "{} {:<w$}  {:<8}  {:<d$}  {:>11}  {:>11}  {:<10}  {:<6}  {}",
                    if s.walrus { "*" } else { " " },
                    s.slot,
                    s.slot_type,
                    s.database.as_deref().unwrap_or("-"),
                    size(s.lag_bytes),
                    size(s.retained_bytes),
                    s.wal_status.as_deref().unwrap_or("-"),
                    if s.active { "yes" } else { "no" },
                    s.active_pid.map_or("-".into(), |p| p.to_string()),
                );
            }
            println!("\n* walrus's slot");
        }
    }
}
