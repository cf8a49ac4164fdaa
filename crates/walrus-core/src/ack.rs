//! From "the sink has these records" to "PostgreSQL may forget this WAL".
//!
//! Records get sequence numbers in the order the source produced them (1, 2, 3, ... per
//! session). The sink reports how many are delivered as a contiguous prefix
//! ([`crate::sink::Delivered`]); sinks whose deliveries complete out of order turn their
//! completions into that prefix with a [`DeliveryWindow`].
//!
//! The [`AckTracker`] remembers, for every transaction the source finished, how many records
//! had been produced by its commit and the commit's end LSN. The LSN it confirms is the end
//! LSN of the newest transaction such that it and every transaction before it are fully
//! delivered; it never moves backwards. When nothing is open or in flight, a keepalive's WAL
//! end may be confirmed too, so an idle or fully filtered database does not pin WAL.
//!
//! Why the *end* LSN of the commit: on restart PostgreSQL skips a transaction only when its
//! commit record starts before the confirmed position, so confirming the commit's end LSN
//! skips exactly the delivered transactions, and confirming less would repeat the last one.
//!
//! The tracker also remembers each transaction's commit time, so that the time lag — now
//! minus the commit time of the newest delivered transaction (or heartbeat) — can be
//! published for the slot watchdog ([`AckTracker::delivered_commit_time_us`]).

use std::collections::VecDeque;

use crate::lsn::Lsn;

/// Tracks transaction boundaries against sink deliveries. One per pipeline session, owned
/// by the source task.
#[derive(Debug)]
pub struct AckTracker {
    /// (records produced through this commit, commit end LSN, commit time in µs since the
    /// Unix epoch if known), oldest first.
    commits: VecDeque<(u64, Lsn, Option<i64>)>,
    produced: u64,
    confirmed: Lsn,
    in_transaction: bool,
    /// Commit time of the newest fully delivered unit of work.
    delivered_commit_time_us: Option<i64>,
}

impl AckTracker {
    /// Starts from the slot's confirmed position.
    pub fn new(confirmed: Lsn) -> Self {
        AckTracker {
            commits: VecDeque::new(),
            produced: 0,
            confirmed,
            in_transaction: false,
            delivered_commit_time_us: None,
        }
    }

    /// Commit time (µs since the Unix epoch) of the newest transaction or standalone unit
    /// that is fully delivered, when its time was given.
    pub fn delivered_commit_time_us(&self) -> Option<i64> {
        self.delivered_commit_time_us
    }

    /// True when no transaction is open, nothing is waiting for the sink and every record
    /// produced is delivered: walrus has everything the server sent.
    pub fn caught_up(&self, delivered: u64) -> bool {
        !self.in_transaction && self.commits.is_empty() && delivered >= self.produced
    }

    /// The LSN that may be confirmed now.
    pub fn confirmed(&self) -> Lsn {
        self.confirmed
    }

    /// Records produced so far (the next record's sequence number minus one).
    pub fn produced(&self) -> u64 {
        self.produced
    }

    /// Transactions finished at the source but not yet fully delivered.
    pub fn pending_transactions(&self) -> usize {
        self.commits.len()
    }

    /// A transaction started.
    pub fn begin(&mut self) {
        self.in_transaction = true;
    }

    /// `n` more records were produced (inside the current transaction, or standalone).
    pub fn produced_records(&mut self, n: u64) {
        self.produced += n;
    }

    /// The current transaction committed, ending at `end_lsn`.
    pub fn commit(&mut self, end_lsn: Lsn) {
        self.in_transaction = false;
        self.finish(end_lsn, None);
    }

    /// [`Self::commit`], remembering the commit time (µs since the Unix epoch) for the time
    /// lag.
    pub fn commit_at(&mut self, end_lsn: Lsn, commit_time_us: i64) {
        self.in_transaction = false;
        self.finish(end_lsn, Some(commit_time_us));
    }

    /// A unit of work outside any transaction (a non-transactional logical message) is
    /// complete at `lsn` once its records are delivered.
    pub fn standalone(&mut self, lsn: Lsn) {
        self.finish(lsn, None);
    }

    /// [`Self::standalone`] with the time the work was done (a heartbeat's emit time).
    pub fn standalone_at(&mut self, lsn: Lsn, time_us: i64) {
        self.finish(lsn, Some(time_us));
    }

    fn finish(&mut self, lsn: Lsn, time_us: Option<i64>) {
        // A position at or behind what is already confirmed adds nothing (it can happen
        // right after a restart, when PostgreSQL resends from an older point).
        let newest = self.commits.back().map_or(self.confirmed, |&(_, l, _)| l);
        if lsn > newest {
            self.commits.push_back((self.produced, lsn, time_us));
        } else if let Some(last) = self.commits.back_mut() {
            // Still must wait for this work's records before confirming the newest LSN.
            last.0 = self.produced;
            last.2 = last.2.max(time_us);
        }
    }

    /// The sink has delivered the first `delivered` records. Returns the new confirmable
    /// LSN if it advanced.
    pub fn on_delivered(&mut self, delivered: u64) -> Option<Lsn> {
        let before = self.confirmed;
        while let Some(&(needed, lsn, time_us)) = self.commits.front() {
            if needed > delivered {
                break;
            }
            self.commits.pop_front();
            if lsn > self.confirmed {
                self.confirmed = lsn;
            }
            if time_us.is_some() {
                self.delivered_commit_time_us = self.delivered_commit_time_us.max(time_us);
            }
        }
        (self.confirmed > before).then_some(self.confirmed)
    }

    /// A keepalive says the server has sent everything up to `wal_end`. If no transaction is
    /// open and everything produced is delivered, that position may be confirmed.
    pub fn on_keepalive(&mut self, wal_end: Lsn, delivered: u64) -> Option<Lsn> {
        let advanced = self.on_delivered(delivered);
        if !self.in_transaction
            && self.commits.is_empty()
            && delivered >= self.produced
            && wal_end > self.confirmed
        {
            self.confirmed = wal_end;
            return Some(wal_end);
        }
        advanced
    }
}

/// Turns out-of-order per-record completions into a contiguous delivered count.
///
/// Memory is one byte per record between the oldest undelivered record and the newest
/// completed one, which the in-flight budget bounds.
#[derive(Debug, Default)]
pub struct DeliveryWindow {
    /// Records 1..=base are delivered.
    base: u64,
    /// done[i] says whether record base + 1 + i is delivered.
    done: VecDeque<bool>,
}

impl DeliveryWindow {
    /// An empty window: nothing delivered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks record `seq` (1-based) delivered; returns the contiguous delivered count.
    /// Completing a record twice or one already below the prefix is harmless.
    pub fn complete(&mut self, seq: u64) -> u64 {
        if seq > self.base {
            let idx = (seq - self.base - 1) as usize;
            if idx >= self.done.len() {
                self.done.resize(idx + 1, false);
            }
            self.done[idx] = true;
            while self.done.front() == Some(&true) {
                self.done.pop_front();
                self.base += 1;
            }
        }
        self.base
    }

    /// Records delivered contiguously.
    pub fn delivered(&self) -> u64 {
        self.base
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn confirms_only_fully_delivered_transactions() {
        let mut t = AckTracker::new(Lsn(100));
        t.begin();
        t.produced_records(3);
        t.commit(Lsn(200));
        t.begin();
        t.produced_records(2);
        t.commit(Lsn(300));
        assert_eq!(t.on_delivered(2), None);
        assert_eq!(t.on_delivered(3), Some(Lsn(200)));
        assert_eq!(t.on_delivered(4), None);
        assert_eq!(t.on_delivered(5), Some(Lsn(300)));
        assert_eq!(t.confirmed(), Lsn(300));
    }

    #[test]
    fn empty_transactions_confirm_once_predecessors_are_delivered() {
        let mut t = AckTracker::new(Lsn(0));
        t.begin();
        t.produced_records(1);
        t.commit(Lsn(10));
        t.begin();
        t.commit(Lsn(20));
        assert_eq!(t.on_delivered(0), None);
        assert_eq!(t.on_delivered(1), Some(Lsn(20)));
    }

    #[test]
    fn keepalive_confirms_only_when_idle() {
        let mut t = AckTracker::new(Lsn(10));
        assert_eq!(t.on_keepalive(Lsn(50), 0), Some(Lsn(50)));
        t.begin();
        t.produced_records(1);
        assert_eq!(t.on_keepalive(Lsn(60), 1), None, "transaction open");
        t.commit(Lsn(70));
        assert_eq!(t.on_keepalive(Lsn(80), 0), None, "not delivered");
        assert_eq!(t.on_keepalive(Lsn(80), 1), Some(Lsn(80)));
        assert_eq!(t.on_keepalive(Lsn(75), 1), None, "never backwards");
    }

    #[test]
    fn remembers_commit_time_of_newest_delivered_transaction() {
        let mut t = AckTracker::new(Lsn(0));
        assert_eq!(t.delivered_commit_time_us(), None);
        t.begin();
        t.produced_records(2);
        t.commit_at(Lsn(10), 1_000);
        t.standalone_at(Lsn(20), 2_000);
        t.begin();
        t.produced_records(1);
        t.commit_at(Lsn(30), 3_000);
        assert!(!t.caught_up(2));
        t.on_delivered(1);
        assert_eq!(t.delivered_commit_time_us(), None);
        t.on_delivered(2);
        assert_eq!(t.delivered_commit_time_us(), Some(2_000));
        t.on_delivered(3);
        assert_eq!(t.delivered_commit_time_us(), Some(3_000));
        assert!(t.caught_up(3));
    }

    #[test]
    fn stale_commits_after_restart_do_not_move_backwards() {
        let mut t = AckTracker::new(Lsn(500));
        t.begin();
        t.produced_records(1);
        t.commit(Lsn(400));
        assert_eq!(t.on_delivered(1), None);
        assert_eq!(t.confirmed(), Lsn(500));
    }

    #[test]
    fn window_tracks_contiguous_prefix() {
        let mut w = DeliveryWindow::new();
        assert_eq!(w.complete(2), 0);
        assert_eq!(w.complete(3), 0);
        assert_eq!(w.complete(1), 3);
        assert_eq!(w.complete(1), 3);
        assert_eq!(w.complete(5), 3);
        assert_eq!(w.complete(4), 5);
    }

    proptest! {
        /// Whatever the delivery order, the confirmed LSN is exactly the end LSN of the
        /// newest transaction whose records and all earlier records are delivered.
        #[test]
        fn confirmed_lsn_is_newest_fully_delivered_commit(
            sizes in proptest::collection::vec(0u64..5, 1..30),
            seed in any::<u64>(),
        ) {
            let mut t = AckTracker::new(Lsn(0));
            let mut ends = Vec::new(); // (records through commit, lsn)
            for (i, n) in sizes.iter().enumerate() {
                t.begin();
                t.produced_records(*n);
                let lsn = Lsn(((i + 1) * 100) as u64);
                t.commit(lsn);
                ends.push((t.produced(), lsn));
            }
            let total = t.produced();
            // A deterministic shuffle of completion order.
            let mut order: Vec<u64> = (1..=total).collect();
            let mut s = seed | 1;
            for i in (1..order.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                order.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let mut w = DeliveryWindow::new();
            let mut last = Lsn(0);
            for seq in order {
                let delivered = w.complete(seq);
                t.on_delivered(delivered);
                let expected = ends.iter().filter(|(need, _)| *need <= delivered)
                    .map(|&(_, l)| l).max().unwrap_or(Lsn(0));
                prop_assert_eq!(t.confirmed(), expected);
                prop_assert!(t.confirmed() >= last);
                last = t.confirmed();
            }
            // Transactions with no records at the end need one more delivery report.
            t.on_delivered(w.delivered());
            prop_assert_eq!(t.confirmed(), ends.last().unwrap().1);
        }
    }
}
