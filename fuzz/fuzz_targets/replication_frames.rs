//! Fuzz target: arbitrary bytes as the copy-both stream of a replication connection.
//!
//! The first byte picks read sizes (1 to 256 bytes), so the same input reaches the framer
//! cut at many boundaries, as socket reads cut it: `split_complete` over a growing buffer,
//! then every frame of each batch parsed. Any panic is a bug; protocol errors are the
//! expected outcome for most inputs. The frames must also not depend on where the reads
//! were cut.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use walrus_replication::frame::{parse_all, split_complete, Frames};

fuzz_target!(|data: &[u8]| {
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(step) + 1;
    let mut buf = BytesMut::new();
    let mut cut = Vec::new();
    let mut failed = false;
    for chunk in rest.chunks(step) {
        buf.extend_from_slice(chunk);
        match split_complete(&mut buf) {
            Ok((batch, _)) => {
                for frame in Frames::new(batch) {
                    match frame {
                        Ok(f) => cut.push(f),
                        Err(_) => failed = true,
                    }
                }
            }
            Err(_) => failed = true,
        }
        if failed {
            break;
        }
    }
    if !failed {
        let (whole, _) = parse_all(rest);
        let whole: Vec<_> = whole.into_iter().map_while(Result::ok).collect();
        assert_eq!(cut, whole, "frames depend on read boundaries");
    }
});
