//! Debezium's transaction metadata (`provide.transaction.metadata`): a `BEGIN` and an `END`
//! event per transaction on `<prefix>.transaction`, and the `transaction` block (`id`,
//! `total_order`, `data_collection_order`) in every data event of a transaction.
//!
//! ```text
//!  session: Begin(xid) ──▶ Emitter::begin_transaction ──▶ TransactionMonitor::begin ─▶ BEGIN record
//!           row event  ──▶ Emitter::emit ──▶ TransactionMonitor::event ─▶ block in the envelope
//!           Commit     ──▶ Emitter::end_transaction ──▶ TransactionMonitor::end ─▶ END record
//!                          (same batch and unit as the transaction's last records)
//! ```
//!
//! The state is kept per transaction id (`xid`), not globally: with streamed in-progress
//! transactions, events of several transactions arrive interleaved before their commits.
//!
//! What Debezium's PostgreSQL connector writes, and walrus with it (`PostgresTransactionMonitor`):
//! the `id` is `"<xid>:<lsn>"`, where the LSN is that of the message being processed — the
//! `Begin` message's for `BEGIN`, each change's own (`source.lsn`) for the block, the `Commit`
//! message's for `END`. The counts are of published data events and transactional logical
//! messages (skipped operations are not counted; snapshot reads carry no block).
//! `data_collections` lists `schema.table` with its count in the iteration order of Java's
//! `HashMap`, which Debezium uses, so that the `END` records are byte-equal to Debezium's;
//! each logical message is listed as a collection of its own (see [`MESSAGE_COLLECTION`]).

use std::collections::HashMap;

use crate::ids::IdMap;
use crate::lsn::Lsn;

/// Debezium's `transaction` block of a data event (`event.block`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionBlock {
    /// `"<xid>:<lsn of the event>"`.
    pub id: String,
    /// Position of the event in its transaction, from 1.
    pub total_order: u64,
    /// Position of the event among its table's events in its transaction, from 1.
    pub data_collection_order: u64,
}

/// Whether a transaction event opens or closes its transaction (`status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionStatus {
    /// `BEGIN`.
    Begin,
    /// `END`.
    End,
}

impl TransactionStatus {
    /// The value of `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionStatus::Begin => "BEGIN",
            TransactionStatus::End => "END",
        }
    }
}

/// A `BEGIN` or `END` event on the transaction topic (Debezium's
/// `TransactionMetadataValue`); its key is `{"id": id}` (`TransactionMetadataKey`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionEvent {
    /// `BEGIN` or `END`.
    pub status: TransactionStatus,
    /// `"<xid>:<lsn of the Begin or Commit message>"`.
    pub id: String,
    /// Data events of the transaction (`END` only).
    pub event_count: Option<u64>,
    /// Per table (`schema.table`), its data events (`END` only).
    pub data_collections: Option<Vec<(String, u64)>>,
    /// Commit time, milliseconds since the epoch.
    pub ts_ms: i64,
}

/// The counts of one open transaction.
#[derive(Debug, Default)]
struct Open {
    total: u64,
    /// Per table: (count, insertion rank), for Java's iteration order at the end.
    per_table: HashMap<String, (u64, usize)>,
}

/// Counts the events of open transactions, keyed by xid; see the module docs.
#[derive(Debug, Default)]
pub struct TransactionMonitor {
    open: IdMap<u32, Open>,
}

/// What Debezium's END event names a transactional logical message's "data collection":
/// each message is its own `LogicalDecodingMessageId` object, listed by Java's default
/// `toString`, the class name and the object's identity hash (random per JVM; walrus writes
/// a hash of the message's position in its place).
pub const MESSAGE_COLLECTION: &str =
    "io.debezium.connector.postgresql.LogicalDecodingMessageMonitor$LogicalDecodingMessageId";

/// `"<xid>:<lsn>"`, Debezium's PostgreSQL transaction id, the LSN as a decimal number.
pub fn transaction_id(xid: u32, lsn: Lsn) -> String {
    format!("{xid}:{}", lsn.0)
}

impl TransactionMonitor {
    /// A monitor with no open transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens transaction `xid` (its `Begin` message at `lsn`) and returns its `BEGIN` event.
    /// A transaction opened again (a replay) starts its counts afresh.
    pub fn begin(&mut self, xid: u32, lsn: Lsn, commit_time_us: i64) -> TransactionEvent {
        self.open.insert(xid, Open::default());
        TransactionEvent {
            status: TransactionStatus::Begin,
            id: transaction_id(xid, lsn),
            event_count: None,
            data_collections: None,
            ts_ms: commit_time_us.div_euclid(1000),
        }
    }

    /// Counts a data event of `table` (`schema.table`) at `lsn` in transaction `xid` and
    /// returns its block; `None` when `xid` was not opened (nothing to count it in).
    pub fn event(&mut self, xid: u32, lsn: Lsn, table: &str) -> Option<TransactionBlock> {
        let open = self.open.get_mut(&xid)?;
        open.total += 1;
        let rank = open.per_table.len();
        let order = match open.per_table.get_mut(table) {
            Some((count, _)) => {
                *count += 1;
                *count
            }
            None => {
                open.per_table.insert(table.to_owned(), (1, rank));
                1
            }
        };
        Some(TransactionBlock {
            id: transaction_id(xid, lsn),
            total_order: open.total,
            data_collection_order: order,
        })
    }

    /// Counts a transactional logical message at `lsn` in transaction `xid` and returns its
    /// block: as in Debezium, each message is a data collection of its own, so its
    /// `data_collection_order` is 1 and the `END` event lists it with a count of 1.
    pub fn message(&mut self, xid: u32, lsn: Lsn) -> Option<TransactionBlock> {
        let open = self.open.get_mut(&xid)?;
        open.total += 1;
        // A 31-bit number like a Java identity hash, distinct per message of a transaction.
        let mut seed = lsn.0 ^ (u64::from(xid) << 32) ^ open.total.rotate_left(17);
        let name = loop {
            seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let hash = (seed.wrapping_mul(0xbf58_476d_1ce4_e5b9) >> 33) as u32;
            let name = format!("{MESSAGE_COLLECTION}@{hash:x}");
            if !open.per_table.contains_key(&name) {
                break name;
            }
        };
        let rank = open.per_table.len();
        open.per_table.insert(name, (1, rank));
        Some(TransactionBlock {
            id: transaction_id(xid, lsn),
            total_order: open.total,
            data_collection_order: 1,
        })
    }

    /// Closes transaction `xid` (its `Commit` message at `lsn`) and returns its `END` event;
    /// `None` when it was not opened.
    pub fn end(&mut self, xid: u32, lsn: Lsn, commit_time_us: i64) -> Option<TransactionEvent> {
        let open = self.open.remove(&xid)?;
        let mut tables: Vec<(String, u64, usize)> = open
            .per_table
            .into_iter()
            .map(|(name, (count, rank))| (name, count, rank))
            .collect();
        let capacity = java_hash_map_capacity(tables.len());
        tables.sort_by_key(|(name, _, rank)| (java_bucket(name, capacity), *rank));
        Some(TransactionEvent {
            status: TransactionStatus::End,
            id: transaction_id(xid, lsn),
            event_count: Some(open.total),
            data_collections: Some(
                tables
                    .into_iter()
                    .map(|(name, count, _)| (name, count))
                    .collect(),
            ),
            ts_ms: commit_time_us.div_euclid(1000),
        })
    }

    /// Forgets every open transaction (a new session replays them from their `Begin`).
    pub fn clear(&mut self) {
        self.open.clear();
    }
}

/// The table size of a `java.util.HashMap` holding `entries` keys inserted one by one: 16,
/// doubled whenever the size exceeds three quarters of it.
fn java_hash_map_capacity(entries: usize) -> usize {
    let mut capacity = 16;
    while entries > capacity * 3 / 4 {
        capacity *= 2;
    }
    capacity
}

/// The bucket of `key` in a `java.util.HashMap` of `capacity` slots: `String.hashCode` over
/// UTF-16 code units, spread by `h ^ (h >>> 16)`. Iteration goes by bucket, and within one
/// in insertion order (resizing keeps the relative order of a bucket's entries).
fn java_bucket(key: &str, capacity: usize) -> usize {
    let mut h: i32 = 0;
    for unit in key.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    let h = h as u32;
    ((h ^ (h >> 16)) as usize) & (capacity - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_java_string_hash_codes() {
        // "hello".hashCode() is 99162322 in Java; spread and masked to 16 slots.
        let h: u32 = 99_162_322;
        assert_eq!(java_bucket("hello", 16), ((h ^ (h >> 16)) & 15) as usize);
        // A character beyond Latin-1 counts as its UTF-16 unit: "é".hashCode() is 233.
        assert_eq!(java_bucket("\u{e9}", 256), 233);
    }

    #[test]
    fn a_transaction_counts_its_events_per_table() {
        let mut m = TransactionMonitor::new();
        let begin = m.begin(771, Lsn(100), 1_700_000_000_123_456);
        assert_eq!(begin.id, "771:100");
        assert_eq!(begin.status, TransactionStatus::Begin);
        assert_eq!(begin.ts_ms, 1_700_000_000_123);
        assert_eq!(begin.event_count, None);
        let b = m.event(771, Lsn(110), "public.a").unwrap();
        assert_eq!(
            (b.id.as_str(), b.total_order, b.data_collection_order),
            ("771:110", 1, 1)
        );
        let b = m.event(771, Lsn(120), "public.b").unwrap();
        assert_eq!((b.total_order, b.data_collection_order), (2, 1));
        let b = m.event(771, Lsn(130), "public.a").unwrap();
        assert_eq!((b.total_order, b.data_collection_order), (3, 2));
        let end = m.end(771, Lsn(140), 1_700_000_000_123_456).unwrap();
        assert_eq!(end.id, "771:140");
        assert_eq!(end.event_count, Some(3));
        let mut tables = end.data_collections.unwrap();
        tables.sort();
        assert_eq!(
            tables,
            vec![("public.a".to_string(), 2), ("public.b".to_string(), 1)]
        );
        // Closed: nothing more is counted in it.
        assert!(m.event(771, Lsn(150), "public.a").is_none());
        assert!(m.end(771, Lsn(150), 0).is_none());
    }

    #[test]
    fn interleaved_transactions_keep_their_own_counts() {
        let mut m = TransactionMonitor::new();
        m.begin(1, Lsn(10), 0);
        m.begin(2, Lsn(11), 0);
        m.event(1, Lsn(12), "public.a");
        m.event(2, Lsn(13), "public.a");
        m.event(2, Lsn(14), "public.a");
        let b = m.event(1, Lsn(15), "public.a").unwrap();
        assert_eq!((b.total_order, b.data_collection_order), (2, 2));
        assert_eq!(m.end(2, Lsn(16), 0).unwrap().event_count, Some(2));
        assert_eq!(m.end(1, Lsn(17), 0).unwrap().event_count, Some(2));
    }

    #[test]
    fn tables_are_listed_in_java_hash_map_order() {
        let mut m = TransactionMonitor::new();
        m.begin(1, Lsn(10), 0);
        let names: Vec<String> = (0..20).map(|i| format!("s.t{i}")).collect();
        for n in &names {
            m.event(1, Lsn(11), n);
        }
        let end = m.end(1, Lsn(12), 0).unwrap();
        let listed: Vec<String> = end
            .data_collections
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        // 20 entries: the table grew to 32 slots; iteration is by bucket, then insertion.
        let mut expected = names.clone();
        expected.sort_by_key(|n| {
            (
                java_bucket(n, 32),
                names.iter().position(|x| x == n).unwrap(),
            )
        });
        assert_eq!(listed, expected);
        assert_eq!(java_hash_map_capacity(12), 16);
        assert_eq!(java_hash_map_capacity(13), 32);
    }

    #[test]
    fn each_logical_message_is_a_collection_of_its_own() {
        let mut m = TransactionMonitor::new();
        m.begin(5, Lsn(10), 0);
        m.event(5, Lsn(11), "public.a");
        let b = m.message(5, Lsn(12)).unwrap();
        assert_eq!(
            (b.id.as_str(), b.total_order, b.data_collection_order),
            ("5:12", 2, 1)
        );
        let b = m.message(5, Lsn(13)).unwrap();
        assert_eq!((b.total_order, b.data_collection_order), (3, 1));
        let end = m.end(5, Lsn(14), 0).unwrap();
        assert_eq!(end.event_count, Some(3));
        let tables = end.data_collections.unwrap();
        assert_eq!(tables.len(), 3);
        let messages: Vec<_> = tables
            .iter()
            .filter(|(n, c)| n.starts_with(MESSAGE_COLLECTION) && *c == 1)
            .collect();
        assert_eq!(messages.len(), 2);
        assert_ne!(messages[0].0, messages[1].0);
        // Outside a transaction (a non-transactional message): nothing counted.
        assert!(m.message(5, Lsn(15)).is_none());
    }
}
