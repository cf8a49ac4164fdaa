//! Fuzz target: arbitrary bytes as a column value of every type walrus parses, in the text and
//! the binary format, then through the Debezium JSON encoder.
//!
//! The first four bytes pick the format, the type (every built-in OID walrus names, arrays,
//! ranges and multiranges included, plus catalog-described enums, composites, ranges and
//! extension types) and the encoder's handling modes; see `walrus_fuzz::run_value`. A panic,
//! an allocation sized by a length field in the bytes (libFuzzer's `-rss_limit_mb` /
//! `-malloc_limit_mb` catch those), or an encoder output that is not JSON is a finding; parse
//! errors are the expected outcome for most inputs and fall back to text as in walrus.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| walrus_fuzz::run_value(data));
