//! Maps keyed by PostgreSQL object and transaction ids.
//!
//! Every change event is looked up by its relation id several times on its way (the
//! relation cache, the converter, the route, the event counter, each encoder's table
//! cache). The standard `HashMap` hashes each key with SipHash, which resists keys chosen to
//! collide; these keys come from the server walrus is configured to read, not from an
//! adversary, and SipHash on a `u32` cost more than the lookups' other work in profiles.
//! [`IdMap`] hashes with one multiply-rotate per word instead (the scheme of rustc's
//! `FxHasher`).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` for small integer keys (relation OIDs, transaction ids, tuples of them),
/// hashed with [`IdHasher`]. Build one with `IdMap::default()`.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Multiplier of the hash (from rustc's `FxHasher`): odd, with bits spread across the word.
const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// A fast, non-cryptographic hasher for trusted integer keys; see the module docs.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHasher {
    hash: u64,
}

impl IdHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn write_isize(&mut self, i: isize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_find_what_they_hold() {
        let mut m: IdMap<u32, u32> = IdMap::default();
        for i in 0..10_000u32 {
            m.insert(i.wrapping_mul(2_654_435_761), i);
        }
        for i in 0..10_000u32 {
            assert_eq!(m.get(&i.wrapping_mul(2_654_435_761)), Some(&i));
        }
        let mut pairs: IdMap<(u32, u8), u8> = IdMap::default();
        pairs.insert((16_384, 1), 1);
        pairs.insert((16_384, 2), 2);
        assert_eq!(pairs.get(&(16_384, 2)), Some(&2));
        assert_eq!(pairs.len(), 2);
    }

    #[test]
    fn nearby_ids_hash_apart() {
        let hash = |v: u32| {
            let mut h = IdHasher::default();
            h.write_u32(v);
            h.finish()
        };
        let hashes: std::collections::HashSet<u64> = (16_384..17_384).map(hash).collect();
        assert_eq!(hashes.len(), 1000);
    }
}
