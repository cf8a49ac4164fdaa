//! Fuzz target: arbitrary bytes through the pgoutput decoder and the relation cache.
//!
//! The input is split into frames at every 0xFF 0x00 pair so that one run feeds a sequence of
//! messages through one decoder, as a replication connection does: that reaches the streamed
//! layouts (after a Stream Start), schema replacement in the cache, and lookups of changes
//! against relations announced earlier. The first byte picks the protocol version. Any panic
//! is a bug; decode and lookup errors are the expected outcome for most inputs.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use walrus_postgres::decoding::pgoutput::{Decoder, PgOutputMessage, RelationCache};

fuzz_target!(|data: &[u8]| {
    let Some((&version, rest)) = data.split_first() else {
        return;
    };
    let mut decoder = Decoder::new(u32::from(version % 4) + 1);
    let mut cache = RelationCache::new();
    let input = Bytes::copy_from_slice(rest);
    let mut start = 0;
    while start <= input.len() {
        let end = input[start..]
            .windows(2)
            .position(|w| w == [0xFF, 0x00])
            .map_or(input.len(), |p| start + p);
        let frame = input.slice(start..end);
        start = end + 2;
        let Ok(message) = decoder.decode(&frame) else {
            continue;
        };
        cache.observe(&message);
        let _ = match &message {
            PgOutputMessage::Insert(m) => cache.get_for_tuple(m.rel_id, &m.new).map(|_| ()),
            PgOutputMessage::Update(m) => cache.get_for_tuple(m.rel_id, &m.new).map(|_| ()),
            PgOutputMessage::Delete(m) => cache.get_for_tuple(m.rel_id, m.old.tuple()).map(|_| ()),
            PgOutputMessage::Truncate(m) => m
                .rel_ids
                .iter()
                .try_for_each(|id| cache.get(*id).map(|_| ())),
            PgOutputMessage::Relation(r) => {
                r.columns.iter().for_each(|c| {
                    let _ = cache.type_name(c.type_oid);
                });
                Ok(())
            }
            _ => Ok(()),
        };
    }
});
