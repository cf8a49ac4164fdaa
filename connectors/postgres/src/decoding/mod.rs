//! Decoding: from the bytes PostgreSQL sends to walrus's change events.
//!
//! ```text
//!  XLogData ──▶ pgoutput::Decoder ──▶ PgOutputMessage ──▶ convert::Converter ──▶ ChangeEvent
//!                                        column bytes ──▶ text / binary ──▶ Value
//!                     catalog (primary keys, non-built-in types) ──▶ convert
//! ```
//!
//! Everything here but [`catalog`]'s queries is pure (bytes in, values out) and fuzzed
//! (`fuzz/`): it parses untrusted input and never panics on it.
//!
//! - [`pgoutput`]: decoding of every pgoutput message, and the relation cache.
//! - [`text`]: typed values from pgoutput's text format; [`binary`]: from its binary format.
//! - [`convert`]: from decoded messages to [`walrus_core::event::ChangeEvent`]s.
//! - [`catalog`]: primary keys and non-built-in types, read from the catalog.

pub mod binary;
pub mod catalog;
pub mod convert;
pub mod pgoutput;
pub mod text;
