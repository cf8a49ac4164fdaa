//! Resuming after what an exactly-once sink already committed.
//!
//! A sink that commits atomically (Kafka transactions, `[sink] exactly_once`) stores, in
//! each commit, the position of the last unit of source work the commit holds — the
//! commit end LSN of its last transaction — as an [`OffsetRecord`]. PostgreSQL's
//! `confirmed_flush_lsn` follows the broker only after the commit succeeded and a status
//! update went out, so after a crash it may lag behind that position, and PostgreSQL then
//! resends transactions the destination already has. The source drops them with a
//! [`ResumeFilter`] built from the stored position:
//!
//! ```text
//!  slot confirmed_flush_lsn ──▶ PostgreSQL resends ──▶ T1 T2 T3 │ T4 T5 ...
//!                                                     dropped  │ sent
//!                         stored offset (end LSN of T3) ───────┘
//! ```
//!
//! A transaction is held when its commit end LSN is at or before the stored position.
//! Begin carries only the commit record's *start* (`final_lsn`); since WAL records do not
//! overlap, a commit that starts before the stored end LSN belongs to a transaction that
//! ended at or before it, so `final_lsn < stored` is the same test, decided before any of
//! the transaction's changes arrive. It is also PostgreSQL's own rule for the slot: a
//! transaction whose commit record starts before the confirmed position is not sent
//! (`SnapBuildXactNeedsSkip`). A non-transactional message, stored by its own LSN, is held
//! when its LSN is at or before the stored position.

use serde::{Deserialize, Serialize};

use crate::lsn::Lsn;

/// Which units of source work to drop because the sink already committed them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResumeFilter {
    /// Units ending at or before this position are held by the sink.
    through: Option<Lsn>,
}

impl ResumeFilter {
    /// A filter for a session that starts from the slot's `confirmed_flush_lsn` with the
    /// sink's stored position `stored` (if any). A stored position at or behind the slot's
    /// drops nothing: PostgreSQL does not resend what it confirmed.
    pub fn new(slot_confirmed: Lsn, stored: Option<Lsn>) -> Self {
        ResumeFilter {
            through: stored.filter(|s| *s > slot_confirmed),
        }
    }

    /// The position the sink holds everything through, when it is ahead of the slot.
    pub fn through(&self) -> Option<Lsn> {
        self.through
    }

    /// Whether the transaction whose commit record starts at `final_lsn` (the Begin
    /// message's final LSN) is already committed at the sink, so its changes are dropped.
    pub fn skips_transaction(&self, final_lsn: Lsn) -> bool {
        self.through.is_some_and(|t| final_lsn < t)
    }

    /// Whether the transaction committing with end LSN `end_lsn` is already held: the same
    /// answer as [`Self::skips_transaction`] for its commit start, by the stored rule.
    pub fn skips_commit_end(&self, end_lsn: Lsn) -> bool {
        self.through.is_some_and(|t| end_lsn <= t)
    }

    /// Whether a unit outside any transaction (a non-transactional logical message) at
    /// `lsn` is already held.
    pub fn skips_standalone(&self, lsn: Lsn) -> bool {
        self.through.is_some_and(|t| lsn <= t)
    }
}

/// The position an exactly-once sink commits with its records: the value of a record in
/// the offsets topic (its key is the sink's transactional id), in JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetRecord {
    /// The replication slot the position belongs to.
    pub slot: String,
    /// Commit end LSN of the last source transaction (or LSN of the last non-transactional
    /// message) whose records the same commit holds, as text (`16/B374D848`); `None` when
    /// nothing positioned has been committed yet (only snapshot rows, or the probe commit
    /// at start).
    #[serde(with = "lsn_text")]
    pub lsn: Option<Lsn>,
    /// When the commit was made, ms since the Unix epoch.
    pub ts_ms: i64,
}

impl OffsetRecord {
    /// The JSON value.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an offset record always serialises")
    }

    /// Parses a value written by [`Self::to_json`].
    pub fn from_json(bytes: &[u8]) -> Result<OffsetRecord, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

mod lsn_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::lsn::Lsn;

    pub fn serialize<S: Serializer>(lsn: &Option<Lsn>, s: S) -> Result<S::Ok, S::Error> {
        match lsn {
            Some(l) => s.collect_str(l),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Lsn>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| t.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stored_position_behind_the_slot_drops_nothing() {
        let f = ResumeFilter::new(Lsn(500), Some(Lsn(400)));
        assert_eq!(f.through(), None);
        assert!(!f.skips_transaction(Lsn(100)));
        assert!(!f.skips_standalone(Lsn(100)));
        let f = ResumeFilter::new(Lsn(500), None);
        assert!(!f.skips_transaction(Lsn(100)));
        let f = ResumeFilter::new(Lsn(500), Some(Lsn(500)));
        assert_eq!(
            f.through(),
            None,
            "equal to the slot: PostgreSQL resends nothing held"
        );
    }

    #[test]
    fn drops_transactions_committed_through_the_stored_end_lsn() {
        // Three transactions: commit records at [100, 130), [200, 230), [300, 330).
        let f = ResumeFilter::new(Lsn(50), Some(Lsn(230)));
        assert_eq!(f.through(), Some(Lsn(230)));
        assert!(f.skips_transaction(Lsn(100)));
        assert!(f.skips_commit_end(Lsn(130)));
        assert!(
            f.skips_transaction(Lsn(200)),
            "the stored transaction itself"
        );
        assert!(f.skips_commit_end(Lsn(230)));
        assert!(!f.skips_transaction(Lsn(300)), "the next one is sent");
        assert!(!f.skips_commit_end(Lsn(330)));
        // A non-transactional message stored by its own LSN.
        let f = ResumeFilter::new(Lsn(50), Some(Lsn(240)));
        assert!(f.skips_standalone(Lsn(240)));
        assert!(!f.skips_standalone(Lsn(241)));
    }

    #[test]
    fn offset_record_round_trips_as_json() {
        let r = OffsetRecord {
            slot: "walrus".into(),
            lsn: Some(Lsn(0x16_B374_D848)),
            ts_ms: 1_700_000_000_000,
        };
        let json = r.to_json();
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            r#"{"slot":"walrus","lsn":"16/B374D848","ts_ms":1700000000000}"#
        );
        assert_eq!(OffsetRecord::from_json(&json).unwrap(), r);
        let none = OffsetRecord { lsn: None, ..r };
        assert_eq!(OffsetRecord::from_json(&none.to_json()).unwrap(), none);
        assert!(OffsetRecord::from_json(br#"{"slot":"s","lsn":"zz","ts_ms":1}"#).is_err());
    }

    proptest! {
        /// Over any sequence of non-overlapping commit records, testing Begin's commit
        /// start and testing the commit's end LSN drop exactly the same transactions, and
        /// exactly those committed through the stored position.
        #[test]
        fn begin_and_commit_tests_agree(
            gaps in proptest::collection::vec((1u64..50, 1u64..40), 1..40),
            pick in any::<prop::sample::Index>(),
            slot_back in 0u64..20,
        ) {
            let mut commits = Vec::new(); // (start, end) of commit records
            let mut at = 100u64;
            for (gap, len) in gaps {
                let start = at + gap;
                commits.push((start, start + len));
                at = start + len;
            }
            let stored = commits[pick.index(commits.len())].1;
            let slot = commits[0].0.saturating_sub(slot_back);
            let f = ResumeFilter::new(Lsn(slot), Some(Lsn(stored)));
            for &(start, end) in &commits {
                prop_assert_eq!(
                    f.skips_transaction(Lsn(start)),
                    f.skips_commit_end(Lsn(end))
                );
                prop_assert_eq!(f.skips_commit_end(Lsn(end)), end <= stored);
            }
        }
    }
}
