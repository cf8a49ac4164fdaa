//! The dual-write scenario (`examples/orders`) at a small scale, against the real `walrus`
//! binary, a throwaway PostgreSQL and an Apache Kafka broker of its own: 150 orders per service over 15 s, the
//! broker frozen (SIGSTOP) for 5 s in the middle, walrus killed (`kill -9`) and restarted once
//! just after the broker resumes (so events delivered but not yet confirmed arrive again).
//!
//! - the outbox path (order + outbox row in one transaction, relayed by walrus) loses no order
//!   and, thanks to the consumer's dedupe table, fulfills none twice;
//! - the naive path (commit, then publish with a 2 s request-sized timeout, failures logged
//!   and answered with success) loses at least one order under the same freeze — the reason
//!   the outbox exists. Only orders whose publish was reported failed can be lost.
//!
//! Arrival waits are generous (a loaded 2-core machine); the loss and duplication checks are
//! exact.

use std::time::Duration;

use walrus_example_orders::scenario::{self, Config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_write_outbox_loses_nothing_and_naive_dual_write_loses_orders() {
    let cfg = Config {
        orders: 150,
        rate: 10.0,
        freeze_after: Duration::from_secs(5),
        freeze_for: Duration::from_secs(5),
        kill_after_resume: Duration::from_millis(300),
        publish_timeout: Duration::from_secs(2),
        arrival_timeout: Duration::from_secs(90),
        walrus_bin: env!("CARGO_BIN_EXE_walrus").into(),
    };
    let report = scenario::run(&cfg, |t, what| eprintln!("[{t:6.1} s] {what}"))
        .await
        .expect("the scenario ran");
    eprintln!("{report}");

    let outbox = &report.outbox;
    assert_eq!(outbox.written, 150, "every outbox order was committed");
    assert_eq!(outbox.lost, 0, "the outbox path lost orders:\n{report}");
    assert_eq!(outbox.fulfilled, 150, "{report}");
    assert_eq!(
        outbox.fulfilled_twice, 0,
        "an outbox order was fulfilled twice:\n{report}"
    );
    // Every re-delivery was recognised as one.
    assert!(outbox.duplicates_suppressed >= outbox.delivered_twice);

    let naive = &report.naive;
    assert_eq!(naive.written, 150, "every naive order was committed");
    assert!(
        naive.lost >= 1,
        "the naive dual write lost nothing under a 5 s broker freeze with a 2 s publish timeout:\n{report}"
    );
    let failed = naive.failed_publishes.unwrap_or(0);
    assert!(
        naive.lost <= failed,
        "an order whose publish was acknowledged was lost ({} lost, {failed} failed publishes)",
        naive.lost
    );
    assert_eq!(naive.fulfilled_twice, 0, "{report}");
}
