//! walrus's four standard headers of a row event (`id`, `op`, `table`, `txId`), kept as one
//! buffer per record.
//!
//! Every row record into Kafka carries them, so their cost is paid per row: as a list of
//! named values each record needed a `Vec`, a reference-counted name per header and a
//! reference-counted value per header, about 0.2 CPU-µs per row on the benchmark's W1
//! (docs/benchmarks.md). Here the four values are written back to back into the records'
//! arena ([`crate::arena::Arena`]) with their lengths beside them; the names are constants.
//! Sinks that write headers read them through [`EventHeaders::iter`] (or
//! [`crate::sink::Record::header_pairs`], which adds the record's other headers after them).
//!
//! ```text
//!  router (values) ─▶ Arena::concat ─▶ EventHeaders { values, ends } ─▶ Record ─▶ sink: iter()
//! ```

use bytes::Bytes;

/// The stable event id header.
pub const HEADER_ID: &str = "id";
/// The operation header.
pub const HEADER_OP: &str = "op";
/// The `schema.table` header.
pub const HEADER_TABLE: &str = "table";
/// The transaction id header.
pub const HEADER_TX_ID: &str = "txId";

/// The standard headers of one record: `id`, `op`, `table` and, when the event has a
/// transaction, `txId`, in that order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventHeaders {
    /// The values back to back: id, op, table, txId.
    values: Bytes,
    /// Where id, op and table end in `values`; txId runs from the last to the end.
    ends: [u32; 3],
    /// Whether a `txId` header is present (its value is never empty when it is).
    tx_id: bool,
}

impl EventHeaders {
    /// Headers from values laid out back to back in `values`: `id_len` bytes of id, then
    /// `op_len` of op, `table_len` of table, and the rest txId (present only if `tx_id`).
    ///
    /// # Panics
    /// If the lengths overrun `values` (a bug in the caller).
    pub fn from_parts(
        values: Bytes,
        id_len: usize,
        op_len: usize,
        table_len: usize,
        tx_id: bool,
    ) -> EventHeaders {
        let ends = [id_len, id_len + op_len, id_len + op_len + table_len];
        assert!(
            ends[2] <= values.len(),
            "header lengths overrun their values"
        );
        let narrow = |n: usize| u32::try_from(n).expect("header values under 4 GiB");
        EventHeaders {
            values,
            ends: ends.map(narrow),
            tx_id,
        }
    }

    /// The headers as (name, value) pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        let [id, op, table] = self.ends.map(|e| e as usize);
        let v = &self.values[..];
        [
            Some((HEADER_ID, &v[..id])),
            Some((HEADER_OP, &v[id..op])),
            Some((HEADER_TABLE, &v[op..table])),
            self.tx_id.then(|| (HEADER_TX_ID, &v[table..])),
        ]
        .into_iter()
        .flatten()
    }

    /// How many headers there are (3 or 4).
    pub fn len(&self) -> usize {
        3 + usize::from(self.tx_id)
    }

    /// Always false: there are at least three.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Bytes of names and values, for the in-flight budget.
    pub fn size(&self) -> usize {
        self.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// The value of header `name`, if present.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_split_at_their_lengths() {
        let h = EventHeaders::from_parts(Bytes::from_static(b"12:3cpublic.t77"), 4, 1, 8, true);
        let pairs: Vec<_> = h.iter().collect();
        assert_eq!(
            pairs,
            [
                ("id", &b"12:3"[..]),
                ("op", b"c"),
                ("table", b"public.t"),
                ("txId", b"77")
            ]
        );
        assert_eq!(h.len(), 4);
        assert_eq!(h.get("table"), Some(&b"public.t"[..]));
        assert_eq!(h.size(), 2 + 4 + 2 + 1 + 5 + 8 + 4 + 2);
    }

    #[test]
    fn without_a_transaction_there_is_no_tx_id() {
        let h = EventHeaders::from_parts(Bytes::from_static(b"1:0tpublic.t"), 3, 1, 8, false);
        assert_eq!(h.len(), 3);
        assert_eq!(h.get("txId"), None);
        assert_eq!(h.iter().last(), Some(("table", &b"public.t"[..])));
    }

    #[test]
    #[should_panic(expected = "overrun")]
    fn lengths_past_the_values_are_refused() {
        EventHeaders::from_parts(Bytes::from_static(b"abc"), 2, 1, 1, false);
    }
}
