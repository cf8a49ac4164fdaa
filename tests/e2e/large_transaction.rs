//! One transaction of 1,000,000 rows streams to the file sink with bounded memory, and
//! every row is present.

use std::io::BufRead;
use std::time::{Duration, Instant};

use crate::common::*;

const ROWS: usize = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_transaction_of_a_million_rows_streams_with_bounded_memory() {
    let env = Env::new().await;
    let c = env.sql().await;
    c.batch_execute(
        "CREATE TABLE big (id int PRIMARY KEY, v text, n numeric(12,2), t timestamptz)",
    )
    .await
    .unwrap();
    // A small in-flight budget: memory must stay bounded by it, not by the transaction.
    let cfg = env.write_config(&format!(
        "{}\n[pipeline]\nmax_in_flight_bytes = 8388608\n",
        env.config(r#"["public.big"]"#, "")
    ));
    let mut walrus = Walrus::start(&cfg);
    wait_until(Duration::from_secs(30), "replication start", || {
        walrus.log().contains("starting replication")
    })
    .await;
    let started = Instant::now();
    c.batch_execute(&format!(
        "INSERT INTO big SELECT g, md5(g::text), g / 100.0, now() FROM generate_series(1, {ROWS}) g"
    ))
    .await
    .unwrap();
    let committed = started.elapsed();

    let out = env.out_path();
    let mut seen = vec![false; ROWS + 1];
    let mut count = 0usize;
    let mut offset = 0u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut peak_kib = 0;
    while count < ROWS {
        assert!(
            Instant::now() < deadline,
            "only {count} of {ROWS} rows after 600 s\n{}",
            walrus.log()
        );
        assert!(walrus.is_running(), "walrus exited:\n{}", walrus.log());
        peak_kib = peak_kib.max(walrus.peak_rss_kib().unwrap_or(0));
        // Read only what is new, line by line: the file is large.
        let mut file =
            std::fs::File::open(&out).unwrap_or_else(|_| std::fs::File::open("/dev/null").unwrap());
        use std::io::{Seek, SeekFrom};
        file.seek(SeekFrom::Start(offset)).unwrap();
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader.read_line(&mut line).unwrap();
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            offset += n as u64;
            let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON line");
            let id = v["value"]["after"]["id"].as_i64().expect("id") as usize;
            if !seen[id] {
                seen[id] = true;
                count += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let streamed = started.elapsed();
    peak_kib = peak_kib.max(walrus.peak_rss_kib().unwrap_or(0));
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(60)).success());
    eprintln!(
        "1M-row transaction: committed in {:.1} s, all rows in the file after {:.1} s ({:.0} rows/s end to end), walrus peak RSS {} MiB",
        committed.as_secs_f64(),
        streamed.as_secs_f64(),
        ROWS as f64 / streamed.as_secs_f64(),
        peak_kib / 1024
    );
    assert!(seen[1..].iter().all(|s| *s));
    assert!(
        peak_kib < 160 * 1024,
        "peak RSS {peak_kib} KiB is not bounded by the 8 MiB budget"
    );
}
