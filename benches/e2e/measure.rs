//! What the harness measures about a pipeline while it runs, and after.
//!
//! A [`Sampler`] polls `/proc` every few milliseconds for each process involved (walrus,
//! `pg_recvlogical`, the line producer, and PostgreSQL's walsender serving the slot), keeping
//! the last CPU time and the peak RSS it saw: a process that exited reads as nothing, so the
//! last sample stands. A zombie (exited, not yet reaped) still reads, which is why children are
//! reaped only after the sampler saw them exit. [`latency_quantiles`] reads walrus's
//! commit-to-delivery histogram from `/metrics`; [`count_messages`] counts what reached the
//! broker by consuming it (the test broker's offsets are not reliable).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::TopicPartitionList;
use walrus_testkit::process::{cpu_seconds, peak_rss_kib};

/// CPU and memory of the processes of one pipeline run.
#[derive(Default)]
pub struct Sampler {
    /// (role, pid) of every process watched; a role may be added late (the walsender).
    procs: Vec<(&'static str, u32)>,
    /// Last CPU-seconds seen per role.
    pub cpu: BTreeMap<&'static str, f64>,
    /// Peak RSS in KiB per role (not for the walsender, whose RSS is mostly shared buffers).
    pub rss_kib: BTreeMap<&'static str, u64>,
    /// CPU-seconds a role had used when watching began ([`Sampler::watch_from_now`]).
    base: BTreeMap<&'static str, f64>,
}

impl Sampler {
    /// Starts watching `pid` under `role` (CPU is counted from the process's start).
    pub fn watch(&mut self, role: &'static str, pid: u32) {
        if !self.procs.iter().any(|&(r, p)| r == role && p == pid) {
            self.procs.push((role, pid));
        }
    }

    /// Starts watching `pid` under `role`, counting its CPU from now on (a JVM started
    /// before the run, whose start-up is not the pipeline's work).
    pub fn watch_from_now(&mut self, role: &'static str, pid: u32) {
        self.watch(role, pid);
        if let Some(cpu) = cpu_seconds(pid) {
            self.base.insert(role, cpu);
        }
    }

    /// Reads every watched process once.
    pub fn sample(&mut self) {
        for &(role, pid) in &self.procs {
            if let Some(cpu) = cpu_seconds(pid) {
                let base = self.base.get(role).copied().unwrap_or(0.0);
                self.cpu.insert(role, cpu - base);
            }
            if role != "walsender" {
                if let Some(kib) = peak_rss_kib(pid) {
                    let peak = self.rss_kib.entry(role).or_default();
                    *peak = (*peak).max(kib);
                }
            }
        }
    }

    /// CPU-seconds outside PostgreSQL (everything but the walsender).
    pub fn client_cpu(&self) -> f64 {
        self.cpu
            .iter()
            .filter(|(r, _)| **r != "walsender")
            .map(|(_, c)| c)
            .sum()
    }

    /// Largest peak RSS of the processes outside PostgreSQL, in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        self.rss_kib.values().copied().max().unwrap_or(0) as f64 / 1024.0
    }
}

/// True once `pid` has exited (a zombie waiting to be reaped, or gone).
pub fn has_exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_none_or(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

/// `X/Y` as a byte position.
pub fn parse_lsn(s: &str) -> u64 {
    let (hi, lo) = s.split_once('/').expect("lsn");
    (u64::from_str_radix(hi, 16).expect("hex") << 32) | u64::from_str_radix(lo, 16).expect("hex")
}

/// The slot's `confirmed_flush_lsn` and the pid of the walsender streaming from it.
pub async fn slot_state(c: &tokio_postgres::Client, slot: &str) -> (u64, Option<u32>) {
    let row = c
        .query_one(
            "SELECT confirmed_flush_lsn::text, active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .expect("slot state");
    let lsn: Option<String> = row.get(0);
    let pid: Option<i32> = row.get(1);
    (lsn.map_or(0, |s| parse_lsn(&s)), pid.map(|p| p as u32))
}

/// Commit-to-delivery latency quantiles (seconds) read from walrus's
/// `walrus_commit_to_delivery_seconds` histogram: the `q`-quantile is interpolated linearly
/// inside the bucket that holds it, as Prometheus's `histogram_quantile` does. `None` for a
/// quantile beyond the last finite bucket; an empty `Vec` if the histogram is missing.
pub async fn latency_quantiles(admin: &str, qs: &[f64]) -> Vec<Option<f64>> {
    let Ok(resp) = reqwest::get(format!("http://{admin}/metrics")).await else {
        return vec![];
    };
    let Ok(text) = resp.text().await else {
        return vec![];
    };
    let prefix = format!(
        "{}_bucket{{le=\"",
        walrus_core::telemetry::COMMIT_TO_DELIVERY_SECONDS
    );
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let Some(&(_, total)) = buckets.last() else {
        return vec![];
    };
    if total == 0.0 {
        return vec![];
    }
    qs.iter()
        .map(|q| {
            let rank = q * total;
            let mut prev = (0.0, 0.0);
            for &(le, count) in &buckets {
                if count >= rank {
                    if le.is_infinite() {
                        return None;
                    }
                    let share = if count > prev.1 {
                        (rank - prev.1) / (count - prev.1)
                    } else {
                        1.0
                    };
                    return Some(prev.0 + (le - prev.0) * share);
                }
                prev = (le, count);
            }
            None
        })
        .collect()
}

/// Messages in `topic`, counted by consuming from the beginning until `expected` arrived or
/// nothing new came for `idle`. Blocking; run it off the async runtime.
pub fn count_messages(bootstrap: &str, topic: &str, expected: u64, idle: Duration) -> (u64, u64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bench-count-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for t in md.topics().iter().filter(|t| t.error().is_none()) {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning)
                .expect("partition");
        }
    }
    if tpl.count() == 0 {
        return (0, 0);
    }
    consumer.assign(&tpl).expect("assign");
    let mut n = 0u64;
    let mut bytes = 0u64;
    let mut last = Instant::now();
    while n < expected && last.elapsed() < idle {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                n += 1;
                bytes += (m.key_len() + m.payload_len()) as u64;
                last = Instant::now();
            }
            Some(Err(e)) => panic!("consuming {topic}: {e}"),
            None => {}
        }
    }
    (n, bytes)
}
