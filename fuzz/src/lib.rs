//! Shared by the `value_parse` fuzz target and its seed generator: the list of types walrus
//! parses, and how one fuzz input picks a type, a format and the encoder's options.
//!
//! Input layout (see [`run_value`]):
//!
//! ```text
//!  byte 0   flags: bit 0 binary format, bits 1-2 decimal mode, bits 3-4 time precision,
//!           bit 5 interval mode, bit 6 hstore mode, bit 7 schemas on
//!  byte 1   binary.handling.mode (low 2 bits), the rest picks the type modifier
//!  byte 2-3 type selector (big-endian, modulo the number of types in [`targets`])
//!  rest     the value's bytes, as pgoutput carries them in that format
//! ```
//!
//! The value goes through the same functions the converter calls ([`parse_text_or_text`] /
//! [`parse_text_desc_or_text`] or [`parse_binary_or_hex`]), then into a one-column insert event
//! that the Debezium JSON encoder writes with the chosen options, so the handling modes'
//! conversions (decimals, times, intervals, hstore, bytes) see every value the parsers can make.

use std::sync::{Arc, OnceLock};

use walrus_core::config::{
    BinaryHandlingMode, DecimalHandlingMode, HstoreHandlingMode, IntervalHandlingMode,
    TimePrecisionMode,
};
use walrus_core::event::{ChangeEvent, Column, Op, ReplicaIdentity, Row, SourcePosition, Table};
use walrus_core::format::{JsonEncoder, JsonOptions};
use walrus_core::value::TypeDesc;
use walrus_postgres::decoding::binary::parse_binary_or_hex;
use walrus_postgres::decoding::text::{parse_text_desc_or_text, parse_text_or_text, type_name};

/// Bytes before the value in one fuzz input.
pub const HEADER_LEN: usize = 4;

/// One type the target can pick: its name, its OID (0 for catalog-described types) and, for
/// types that are not built in, the catalog's description.
#[derive(Debug)]
pub struct Target {
    /// `pg_type.typname`, or the name used for a described type.
    pub name: String,
    /// The built-in OID, or 0.
    pub oid: u32,
    /// `Some` for enum, domain-free composite, range, array-of-those and extension types.
    pub desc: Option<TypeDesc>,
}

/// Highest OID scanned for built-in types; every built-in type walrus names is below it.
const MAX_BUILTIN_OID: u32 = 10_000;

fn builtin(oid: u32) -> TypeDesc {
    TypeDesc::Builtin {
        oid,
        type_modifier: -1,
    }
}

fn pair() -> TypeDesc {
    TypeDesc::Composite {
        name: "pair".into(),
        fields: vec![("a".into(), builtin(23)), ("b".into(), builtin(25))],
    }
}

/// Every built-in type [`type_name`] knows (so every OID the text and binary parsers treat
/// specially, arrays, ranges and multiranges included), then catalog-described types shaped
/// like the type zoo's (`tests/e2e/types.rs`) plus deeper nestings.
pub fn targets() -> &'static [Target] {
    static TARGETS: OnceLock<Vec<Target>> = OnceLock::new();
    TARGETS.get_or_init(|| {
        let mut t: Vec<Target> = (0..MAX_BUILTIN_OID)
            .filter_map(|oid| {
                type_name(oid).map(|n| Target {
                    name: n.to_string(),
                    oid,
                    desc: None,
                })
            })
            .collect();
        let enum_ = TypeDesc::Enum {
            labels: vec!["sad".into(), "ok".into()],
        };
        let described = [
            ("mood", enum_.clone()),
            ("_mood", TypeDesc::Array(Box::new(enum_))),
            // Domains: the catalog describes them as their base type.
            ("domain_int4", builtin(23)),
            ("domain_text", builtin(25)),
            ("pair", pair()),
            ("_pair", TypeDesc::Array(Box::new(pair()))),
            (
                "nested",
                TypeDesc::Composite {
                    name: "nested".into(),
                    fields: vec![
                        ("p".into(), pair()),
                        ("a".into(), TypeDesc::Array(Box::new(builtin(1700)))),
                        (
                            "r".into(),
                            TypeDesc::Range {
                                name: "int4range".into(),
                                subtype: Box::new(builtin(23)),
                                multi: false,
                            },
                        ),
                    ],
                },
            ),
            (
                "floatrange",
                TypeDesc::Range {
                    name: "floatrange".into(),
                    subtype: Box::new(builtin(701)),
                    multi: false,
                },
            ),
            (
                "floatmultirange",
                TypeDesc::Range {
                    name: "floatmultirange".into(),
                    subtype: Box::new(builtin(701)),
                    multi: true,
                },
            ),
            ("hstore", TypeDesc::Hstore),
            ("_hstore", TypeDesc::Array(Box::new(TypeDesc::Hstore))),
            ("ltree", TypeDesc::Ltree),
            ("citext", TypeDesc::Citext),
            (
                "other",
                TypeDesc::Other {
                    name: "other".into(),
                },
            ),
        ];
        t.extend(described.into_iter().map(|(name, desc)| Target {
            name: name.into(),
            oid: 0,
            desc: Some(desc),
        }));
        t
    })
}

/// The index in [`targets`] of a type named as a pgoutput Type message or [`type_name`]
/// names it.
pub fn target_index(name: &str) -> Option<usize> {
    targets().iter().position(|t| t.name == name)
}

/// A fuzz input for `value` of type `targets()[index]` with flags `flags` (byte 0) and
/// `modes` (byte 1).
pub fn input(index: usize, binary: bool, flags: u8, modes: u8, value: &[u8]) -> Vec<u8> {
    let sel = u16::try_from(index).expect("fewer than 65536 targets");
    let mut v = Vec::with_capacity(HEADER_LEN + value.len());
    v.push((flags & !1) | u8::from(binary));
    v.push(modes);
    v.extend_from_slice(&sel.to_be_bytes());
    v.extend_from_slice(value);
    v
}

/// Parses one input's value and JSON-encodes it; panics are the findings.
pub fn run_value(data: &[u8]) {
    let Some((header, value)) = data.split_first_chunk::<HEADER_LEN>() else {
        return;
    };
    let [flags, modes, hi, lo] = *header;
    let all = targets();
    let target = &all[usize::from(u16::from_be_bytes([hi, lo])) % all.len()];
    let binary = flags & 1 != 0;
    let (parsed, _err) = match (&target.desc, binary) {
        (None, false) => parse_text_or_text(target.oid, value),
        (Some(d), false) => parse_text_desc_or_text(d, value),
        (d, true) => parse_binary_or_hex(d.as_ref(), target.oid, value),
    };

    let opts = JsonOptions {
        schemas_enable: flags & 0x80 != 0,
        decimal_handling: match (flags >> 1) & 3 {
            0 => DecimalHandlingMode::Precise,
            1 => DecimalHandlingMode::Double,
            _ => DecimalHandlingMode::String,
        },
        time_precision: match (flags >> 3) & 3 {
            0 => TimePrecisionMode::Adaptive,
            1 => TimePrecisionMode::AdaptiveTimeMicroseconds,
            2 => TimePrecisionMode::Connect,
            _ => TimePrecisionMode::Isostring,
        },
        interval_handling: if flags & 0x20 != 0 {
            IntervalHandlingMode::String
        } else {
            IntervalHandlingMode::Numeric
        },
        hstore_handling: if flags & 0x40 != 0 {
            HstoreHandlingMode::Map
        } else {
            HstoreHandlingMode::Json
        },
        binary_handling: match modes & 3 {
            0 => BinaryHandlingMode::Bytes,
            1 => BinaryHandlingMode::Base64,
            2 => BinaryHandlingMode::Base64UrlSafe,
            _ => BinaryHandlingMode::Hex,
        },
        ..JsonOptions::default()
    };
    // -1 (none), small modifiers (time precision, varchar length + 4) and numeric's
    // `(precision << 16 | scale) + 4`.
    let type_modifier = match modes >> 2 {
        0 => -1,
        m if m < 32 => i32::from(m) - 1,
        m => ((i32::from(m) - 32) << 16 | i32::from(m & 7)) + 4,
    };
    let table = Arc::new(Table {
        id: 1,
        schema: "public".into(),
        name: "fuzz".into(),
        columns: vec![Column {
            name: "v".into(),
            type_oid: target.oid,
            type_name: target.name.clone(),
            type_modifier,
            key: true,
            primary_key: true,
            not_null: true,
            default: None,
            type_desc: target.desc.clone().map(Arc::new),
        }],
        replica_identity: ReplicaIdentity::Default,
    });
    let event = ChangeEvent {
        op: Op::Create,
        table: Some(table),
        before: None,
        after: Some(Row {
            values: vec![parsed],
            key_only: false,
        }),
        source: SourcePosition::default(),
        message: None,
    };
    let mut encoder = JsonEncoder::new(opts);
    let (mut key, mut out) = (Vec::new(), Vec::new());
    let has_key = encoder.encode_key(&event, &[0], &mut key);
    encoder.encode_value_at(&event, 0, &mut out);
    // Whatever the value, the encoder must write valid JSON documents.
    let docs = [("key", &key), ("value", &out)];
    for (what, doc) in docs.into_iter().skip(usize::from(!has_key)) {
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(doc) {
            panic!(
                "{what} of {} is not JSON ({e}): {}",
                target.name,
                String::from_utf8_lossy(doc)
            );
        }
    }
}
