//! Shared blocks that records' bytes are carved from.
//!
//! Every record has a key, a value and a few header values. Allocating each on its own costs
//! an allocation per piece on the emitting thread and a free per piece wherever the record is
//! dropped (often another thread). [`Arena`] copies the pieces into 64 KiB blocks instead and
//! hands out [`Bytes`] that share their block: a block is freed when the last record carved
//! from it is dropped.
//!
//! ```text
//!  encoder buffer ─copy─▶ [ block: key | value | id | txId | key | value | ... ]
//!                                   ╰── Bytes ──╯ (reference-counted slices)
//! ```

use bytes::{Bytes, BytesMut};

/// Size of the blocks pieces are copied into.
const BLOCK: usize = 64 * 1024;

/// The current block; see the module docs.
#[derive(Debug, Default)]
pub struct Arena {
    block: BytesMut,
}

impl Arena {
    /// An arena with no block yet: the first piece allocates one.
    pub fn new() -> Arena {
        Arena::default()
    }

    /// Makes room for `len` more bytes, starting a block when the current one is full. The
    /// old block stays alive while pieces carved from it are.
    fn reserve(&mut self, len: usize) {
        if self.block.capacity() < len {
            self.block = BytesMut::with_capacity(BLOCK.max(len));
        }
    }

    /// A copy of `bytes` in the arena.
    pub fn copy(&mut self, bytes: &[u8]) -> Bytes {
        self.reserve(bytes.len());
        self.block.extend_from_slice(bytes);
        self.block.split().freeze()
    }

    /// The concatenation of `parts`, as one piece of the arena.
    pub fn concat(&mut self, parts: &[&[u8]]) -> Bytes {
        self.reserve(parts.iter().map(|p| p.len()).sum());
        for p in parts {
            self.block.extend_from_slice(p);
        }
        self.block.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_share_blocks_and_outlive_them() {
        let mut a = Arena::new();
        let x = a.copy(b"hello");
        let y = a.concat(&[b"12", b":", b"3"]);
        assert_eq!(&x[..], b"hello");
        assert_eq!(&y[..], b"12:3");
        // Adjacent in one block.
        assert_eq!(x.as_ptr().wrapping_add(5), y.as_ptr());
        // A piece larger than a block gets a block of its own; earlier pieces stay valid.
        let big = vec![7u8; BLOCK + 1];
        let z = a.copy(&big);
        assert_eq!(z.len(), BLOCK + 1);
        assert_eq!(&x[..], b"hello");
        assert_eq!(a.copy(b"").len(), 0);
    }
}
