//! The slot watchdog, alerts, heartbeats and the admin endpoints, against real PostgreSQL.
//!
//! - A held sink: the file sink writes into a FIFO whose reader the test stops, so writes
//!   block and nothing is delivered while walrus stays up. The slot's lag rises, `/metrics`
//!   shows it, `/readyz` turns 503 at critical, the webhook gets one firing alert, and
//!   after the reader resumes one resolve.
//! - An abandoned slot created by the test raises its own alerts, and `walrus status` lists
//!   it.
//! - A quiet database on a busy cluster, with and without heartbeats (see that test's doc).

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

/// A webhook receiver: every JSON body POSTed to it, in order.
pub(crate) struct Webhook {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Value>>>,
}

impl Webhook {
    pub(crate) async fn start() -> Webhook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let store = got.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        // One request: headers, then Content-Length bytes of body.
                        let head_end = loop {
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            let mut chunk = [0u8; 4096];
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        while buf.len() < head_end + len {
                            let mut chunk = [0u8; 4096];
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        if let Ok(v) = serde_json::from_slice(&buf[head_end..head_end + len]) {
                            store.lock().unwrap().push(v);
                        }
                        buf.drain(..head_end + len);
                        let _ = sock
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .await;
                    }
                });
            }
        });
        Webhook { addr, got }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub(crate) fn alerts(&self) -> Vec<Value> {
        self.got.lock().unwrap().clone()
    }

    async fn wait_for(&self, timeout: Duration, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self.alerts().into_iter().find(|a| f(a)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "no webhook call for {what} within {timeout:?}; got {:#?}",
                self.alerts()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET on the admin server: (status code, body).
async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let code = r.status().as_u16();
    Some((code, r.text().await.ok()?))
}

/// Parses Prometheus text format strictly enough to catch a broken exposition: every line
/// is a comment (`# HELP`/`# TYPE`) or `name{labels} value`. Returns (name, labels, value).
fn parse_prometheus(text: &str) -> Vec<(String, String, f64)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# ") {
            assert!(
                rest.starts_with("HELP ") || rest.starts_with("TYPE "),
                "bad comment line {line:?}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => {
                assert!(l.ends_with('}'), "bad labels in {line:?}");
                (n, l.trim_end_matches('}'))
            }
            None => (series, ""),
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        out.push((name.to_string(), labels.to_string(), value));
    }
    out
}

async fn metric(port: u16, name: &str, label: &str) -> Option<f64> {
    let (_, text) = get(port, "/metrics").await?;
    parse_prometheus(&text)
        .into_iter()
        .find(|(n, l, _)| n == name && l.contains(label))
        .map(|(_, _, v)| v)
}

pub(crate) async fn wait_ready(port: u16, walrus: &Walrus) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((200, _)) = get(port, "/readyz").await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "walrus never became ready; log:\n{}",
            walrus.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A FIFO reader that can be paused: while paused it reads nothing, so once the pipe's
/// buffer is full the file sink's writes block — a sink that delivers nothing, with no
/// test hook in walrus.
pub(crate) struct FifoReader {
    pub(crate) paused: Arc<AtomicBool>,
    lines: Arc<AtomicU64>,
}

impl FifoReader {
    pub(crate) fn start(path: &Path) -> FifoReader {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success(), "mkfifo");
        let paused = Arc::new(AtomicBool::new(false));
        let lines = Arc::new(AtomicU64::new(0));
        let (p, n, path) = (paused.clone(), lines.clone(), path.to_path_buf());
        std::thread::spawn(move || {
            // Blocks until walrus opens the FIFO for writing.
            let Ok(mut f) = std::fs::File::open(&path) else {
                return;
            };
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                if p.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                match f.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(k) => {
                        let nl = buf[..k].iter().filter(|&&b| b == b'\n').count();
                        n.fetch_add(nl as u64, Ordering::SeqCst);
                    }
                }
            }
        });
        FifoReader { paused, lines }
    }
}

/// The sink stops delivering while a workload writes: the lag rises on `/metrics`, the
/// webhook gets a firing alert within the polling interval of the threshold being passed,
/// `/readyz` turns 503 at critical, and after the sink recovers the alert resolves (once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_sink_raises_and_resolves_a_lag_alert() {
    let env = Env::new().await;
    let sql = env.sql().await;
    sql.batch_execute("CREATE TABLE t (id serial PRIMARY KEY, v text)")
        .await
        .unwrap();
    let hook = Webhook::start().await;
    let admin = free_port();
    let fifo = env.dir.path().join("events.fifo");
    let reader = FifoReader::start(&fifo);
    let warning = 1_000_000u64;
    let critical = 3_000_000u64;
    let text = env.config(r#"["public.t"]"#, "").replace(
        &env.out_path().display().to_string(),
        &fifo.display().to_string(),
    ) + &format!(
        r#"
[watchdog]
interval_ms = 200
lag_warning_bytes = {warning}
lag_critical_bytes = {critical}
stuck_after_ms = 0
[alerts]
webhook_url = "{url}"
[heartbeat]
interval_ms = 500
"#,
        url = hook.url()
    );
    let text = text.replace("127.0.0.1:0", &format!("127.0.0.1:{admin}"));
    let cfg = env.write_config(&text);
    let walrus = Walrus::start(&cfg);
    wait_ready(admin, &walrus).await;

    // /metrics is Prometheus text and carries the documented names.
    let wanted = [
        "walrus_slot_lag_bytes",
        "walrus_lag_bytes",
        "walrus_pipeline_state",
        "walrus_heartbeats_sent_total",
        "walrus_watchdog_polls_total",
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    let names: Vec<String> = loop {
        let (code, text) = get(admin, "/metrics").await.unwrap();
        assert_eq!(code, 200);
        let names: Vec<String> = parse_prometheus(&text).into_iter().map(|m| m.0).collect();
        if wanted.iter().all(|n| names.iter().any(|m| m == n)) {
            break names;
        }
        assert!(
            Instant::now() < deadline,
            "{wanted:?} not all in /metrics:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md")).unwrap();
    for n in names.iter().filter(|n| n.starts_with("walrus_")) {
        let base = n.trim_end_matches("_sum").trim_end_matches("_count");
        assert!(
            docs.contains(base),
            "{base} is not documented in docs/metrics.md"
        );
    }

    // Hold the sink, then write well past the critical threshold.
    reader.paused.store(true, Ordering::SeqCst);
    let started = Instant::now();
    for _ in 0..10 {
        sql.batch_execute(
            "INSERT INTO t (v) SELECT repeat('x', 300) FROM generate_series(1, 2000)",
        )
        .await
        .unwrap();
    }
    let firing = hook
        .wait_for(Duration::from_secs(20), "a firing slot_lag alert", |a| {
            a["status"] == "firing" && a["alert"] == "slot_lag" && a["slot"] == env.slot.as_str()
        })
        .await;
    assert_eq!(firing["walrus_slot"], true);
    assert!(firing["value"].as_f64().unwrap() >= warning as f64);
    eprintln!("firing alert after {:?}: {firing}", started.elapsed());
    let lag = metric(admin, "walrus_slot_lag_bytes", &env.slot)
        .await
        .unwrap();
    assert!(
        lag >= critical as f64,
        "lag metric {lag} should pass {critical}"
    );
    // The sink really holds: nothing is confirmed while it does, and the lag stays. The
    // pipe's own buffer takes the first few records after the pause, and their confirmation
    // reaches PostgreSQL up to a status interval later: let that settle first.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let held_at = env.confirmed_flush_lsn().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.confirmed_flush_lsn().await,
        held_at,
        "nothing confirmed while held"
    );
    let lag = metric(admin, "walrus_slot_lag_bytes", &env.slot)
        .await
        .unwrap();
    assert!(lag >= critical as f64, "lag stays while held: {lag}");
    // Critical on walrus's own slot: not ready.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = get(admin, "/readyz").await.unwrap();
        if code == 503 {
            assert!(body.contains("critical"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "/readyz stayed {code}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status: Value = serde_json::from_str(&get(admin, "/status").await.unwrap().1).unwrap();
    assert_eq!(status["slot"], env.slot.as_str());
    assert!(status["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["alert"] == "slot_lag"));
    // Firing alerts are not repeated on every poll (200 ms).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let firings = hook
        .alerts()
        .iter()
        .filter(|a| a["id"] == firing["id"] && a["status"] == "firing")
        .count();
    assert!(
        firings <= 2,
        "one firing per severity, got {firings}: {:#?}",
        hook.alerts()
    );

    // Recover: the sink delivers, walrus confirms, the alert resolves.
    reader.paused.store(false, Ordering::SeqCst);
    let resolved = hook
        .wait_for(Duration::from_secs(30), "the resolve", |a| {
            a["status"] == "resolved" && a["id"] == firing["id"]
        })
        .await;
    assert!(resolved["resolved_at_ms"].as_i64().is_some());
    wait_ready(admin, &walrus).await;
    assert!(reader.lines.load(Ordering::SeqCst) >= 20_000);
    let (code, _) = get(admin, "/healthz").await.unwrap();
    assert_eq!(code, 200);
}

/// A slot nobody consumes (as left behind by a removed replica or tool) raises its own
/// alerts — lag and stuck — while walrus's slot stays healthy; `walrus status` lists it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_slot_raises_its_alert() {
    let env = Env::new().await;
    let sql = env.sql().await;
    sql.batch_execute("CREATE TABLE t (id serial PRIMARY KEY, v text)")
        .await
        .unwrap();
    let abandoned = walrus_testkit::unique_name("abandoned");
    sql.execute(
        "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
        &[&abandoned],
    )
    .await
    .unwrap();
    let hook = Webhook::start().await;
    let admin = free_port();
    let text = env.config(r#"["public.t"]"#, "")
        + &format!(
            r#"
[watchdog]
interval_ms = 200
lag_warning_bytes = 1000000
lag_critical_bytes = 100000000
stuck_after_ms = 1000
[alerts]
webhook_url = "{url}"
webhook_format = "json"
"#,
            url = hook.url()
        );
    let text = text.replace("127.0.0.1:0", &format!("127.0.0.1:{admin}"));
    let cfg = env.write_config(&text);
    let walrus = Walrus::start(&cfg);
    wait_ready(admin, &walrus).await;
    sql.batch_execute("INSERT INTO t (v) SELECT repeat('x', 300) FROM generate_series(1, 10000)")
        .await
        .unwrap();
    let a = hook
        .wait_for(
            Duration::from_secs(20),
            "the abandoned slot's lag alert",
            |a| {
                a["status"] == "firing"
                    && a["alert"] == "slot_lag"
                    && a["slot"] == abandoned.as_str()
            },
        )
        .await;
    assert_eq!(a["walrus_slot"], false);
    assert_eq!(a["severity"], "warning");
    hook.wait_for(
        Duration::from_secs(20),
        "the abandoned slot's stuck alert",
        |a| {
            a["status"] == "firing" && a["alert"] == "slot_stuck" && a["slot"] == abandoned.as_str()
        },
    )
    .await;
    eprintln!("alerts: {:#}", Value::Array(hook.alerts()));
    // walrus's own slot keeps up: it may lag during the burst, but it is never stuck, and
    // any alert on it resolves while the abandoned slot's stay.
    assert!(
        !hook
            .alerts()
            .iter()
            .any(|a| a["slot"] == env.slot.as_str() && a["alert"] == "slot_stuck"),
        "{:#?}",
        hook.alerts()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = get(admin, "/status").await.unwrap();
        let s: Value = serde_json::from_str(&body).unwrap();
        let alerts = s["alerts"].as_array().unwrap().clone();
        let own = alerts.iter().any(|a| a["slot"] == env.slot.as_str());
        let theirs = alerts
            .iter()
            .filter(|a| a["slot"] == abandoned.as_str())
            .count();
        if !own {
            assert_eq!(theirs, 2, "{alerts:#?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "walrus's slot alert did not resolve: {alerts:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_walrus"))
        .args(["status", "--json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pipeline_state"], "streaming");
    let slots = v["slots"].as_array().unwrap();
    let ab = slots
        .iter()
        .find(|s| s["slot"] == abandoned.as_str())
        .unwrap();
    assert_eq!(ab["active"], false);
    assert!(ab["lag_bytes"].as_u64().unwrap() > 1_000_000);
    assert!(slots
        .iter()
        .any(|s| s["slot"] == env.slot.as_str() && s["active"] == true));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_walrus"))
        .args(["status", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    eprintln!("{table}");
    assert!(
        table.contains("pipeline streaming") && table.contains(&abandoned),
        "{table}"
    );
}

/// A quiet database on a busy cluster, with and without heartbeats.
///
/// Why the slot's *byte* lag is not what differs here: walrus already confirms the WAL
/// position of the walsender's keepalives whenever it has nothing in flight (see idle.rs),
/// and a PostgreSQL 10+ walsender sends one whenever it waits for WAL while the client's
/// flush position is behind, which on a busy cluster is all the time; so walrus's slot
/// keeps up either way (asserted below for both runs). Heartbeats matter where keepalives
/// cannot help: they are the only thing that flows *through* the pipeline on a quiet
/// database. Without them the time lag — now minus the commit time of the newest delivered
/// transaction, the one measure that tells "quiet" from "stuck" end to end — grows without
/// bound; with them it stays near the heartbeat interval, and a heartbeat that does not
/// come back means the pipeline is stuck. Heartbeats are also what moves the slot where
/// the walsender sends keepalives rarely (a walsender busy reading a long backlog sends
/// one only every `wal_sender_timeout / 2`), which a test cannot cause reliably.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_database_time_lag_stays_bounded_with_heartbeats() {
    let env = Env::new().await;
    let sql = env.sql().await;
    sql.batch_execute("CREATE TABLE quiet (id int PRIMARY KEY)")
        .await
        .unwrap();
    let busy_db = walrus_testkit::unique_name("busy");
    env.cluster.create_database(&busy_db).await.unwrap();
    let busy = env.cluster.connect(&busy_db).await.unwrap();
    busy.batch_execute("CREATE TABLE noise (id serial PRIMARY KEY, v text)")
        .await
        .unwrap();

    let mut results = Vec::new();
    for (round, heartbeats) in [(0, false), (1, true)] {
        let admin = free_port();
        let text = env.config(r#"["public.quiet"]"#, "")
            + &format!(
                r#"
[watchdog]
interval_ms = 200
[heartbeat]
enabled = {heartbeats}
interval_ms = 300
"#
            );
        let text = text.replace("127.0.0.1:0", &format!("127.0.0.1:{admin}"));
        let cfg = env.write_config(&text);
        let mut walrus = Walrus::start(&cfg);
        wait_ready(admin, &walrus).await;
        // One change, so there is a delivered commit to measure from; then silence.
        sql.execute("INSERT INTO quiet VALUES ($1)", &[&round])
            .await
            .unwrap();
        let until = Instant::now() + Duration::from_secs(6);
        let mut max_byte_lag = 0u64;
        while Instant::now() < until {
            busy.batch_execute(
                "INSERT INTO noise (v) SELECT repeat('n', 200) FROM generate_series(1, 2000)",
            )
            .await
            .unwrap();
            let (_, body) = get(admin, "/status").await.unwrap();
            let s: Value = serde_json::from_str(&body).unwrap();
            max_byte_lag = max_byte_lag.max(s["lag_bytes"].as_u64().unwrap_or(0));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (_, body) = get(admin, "/status").await.unwrap();
        let s: Value = serde_json::from_str(&body).unwrap();
        let lag_ms = s["lag_ms"].as_u64().expect("a delivered commit");
        let metric_ms = metric(admin, "walrus_lag_milliseconds", "").await.unwrap();
        eprintln!(
            "heartbeats {heartbeats}: time lag {lag_ms} ms (metric {metric_ms}), max slot lag {max_byte_lag} B, heartbeats received {}",
            s["progress"]["heartbeats_received"]
        );
        results.push((
            heartbeats,
            lag_ms,
            max_byte_lag,
            s["progress"]["heartbeats_received"].as_u64().unwrap_or(0),
        ));
        walrus.interrupt();
        assert!(
            walrus.wait(Duration::from_secs(20)).success(),
            "{}",
            walrus.log()
        );
    }
    let (_, off_lag, off_bytes, off_beats) = results[0];
    let (_, on_lag, on_bytes, on_beats) = results[1];
    assert!(
        off_lag >= 5_000,
        "without heartbeats the time lag grows: {off_lag} ms"
    );
    assert_eq!(off_beats, 0);
    assert!(
        on_lag < 2_000,
        "with heartbeats the time lag stays bounded: {on_lag} ms"
    );
    assert!(
        on_beats >= 10,
        "heartbeats came back through the slot: {on_beats}"
    );
    // Both runs keep the slot itself bounded (keepalives; see the doc above).
    for b in [off_bytes, on_bytes] {
        assert!(b < 64 * 1024 * 1024, "slot lag stayed bounded: {b}");
    }
    // Heartbeats are not events.
    assert!(read_events(&env.out_path())
        .iter()
        .all(|e| e["topic"] == "app.public.quiet"));
}
