//! The Connect shape of each column, decided once per table version from its type OID and
//! typmod (or its [`TypeDesc`]) under the handling modes. Both formats start from it: JSON
//! writes the shape's Connect schema and values, Avro renders the same Connect schema as
//! Avro and the values in Avro binary.

use crate::config::{DecimalHandlingMode, HstoreHandlingMode, TimePrecisionMode};
use crate::event::Column;
use crate::format::json::JsonOptions;
use crate::value::{builtin_array_element, PgArray, TypeDesc, Value};

/// The Connect shape a column's values take, decided once from its type OID and typmod
/// (or its [`TypeDesc`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `money`: a decimal with 2 fraction digits, per decimal mode (Debezium's
    /// `money.fraction.digits` default).
    Money,
    /// `bit(n)`/`varbit(n)`: `io.debezium.data.Bits` (little-endian bytes) for n > 1, a
    /// boolean for n = 1.
    Bits {
        length: i32,
    },
    /// `timetz`: `io.debezium.time.ZonedTime`, the time in UTC.
    ZonedTime,
    /// `point`: `io.debezium.data.geometry.Point`.
    Point,
    /// An enum: `io.debezium.data.Enum` with the allowed labels.
    Enum(Box<str>),
    /// An array of the element kind.
    Array(Box<Kind>),
    /// A composite: a struct of named fields.
    Struct(Box<[(String, Kind)]>),
    /// `hstore` as a JSON document string (`hstore.handling.mode` json).
    HstoreJson,
    /// `hstore` as a Connect map of optional strings (`hstore.handling.mode` map).
    HstoreMap,
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    /// Connect `Decimal` with a fixed scale (precise mode, `numeric(p,s)`).
    Decimal {
        precision: i32,
        scale: i32,
    },
    /// `VariableScaleDecimal` (precise mode, `numeric` without typmod).
    VariableDecimal,
    /// A JSON double (double mode).
    DecimalDouble,
    /// The exact text (string mode).
    DecimalString,
    /// A string, with a logical name (`io.debezium.data.Json`) or without.
    Str(Option<&'static str>),
    /// `bytea`, per binary mode.
    Binary,
    Date,
    /// `time`: `millis` for precision 0–3 in adaptive mode and in connect mode.
    Time {
        millis: bool,
    },
    /// `timestamp`: `millis` for precision 0–3 in adaptive modes and in connect mode.
    Timestamp {
        millis: bool,
    },
    /// `timestamptz` with the number of fraction digits to write.
    ZonedTimestamp {
        width: u8,
    },
    Interval,
}

// PostgreSQL type OIDs the encoder maps specially (see walrus-postgres `types::oid`).
pub(crate) const BOOL: u32 = 16;
pub(crate) const BYTEA: u32 = 17;
pub(crate) const INT8: u32 = 20;
pub(crate) const INT2: u32 = 21;
pub(crate) const INT4: u32 = 23;
pub(crate) const OID: u32 = 26;
pub(crate) const JSON: u32 = 114;
pub(crate) const XML: u32 = 142;
pub(crate) const FLOAT4: u32 = 700;
pub(crate) const FLOAT8: u32 = 701;
pub(crate) const DATE: u32 = 1082;
pub(crate) const TIME: u32 = 1083;
pub(crate) const TIMESTAMP: u32 = 1114;
pub(crate) const TIMESTAMPTZ: u32 = 1184;
pub(crate) const INTERVAL: u32 = 1186;
pub(crate) const NUMERIC: u32 = 1700;
pub(crate) const UUID: u32 = 2950;
pub(crate) const JSONB: u32 = 3802;
pub(crate) const MONEY: u32 = 790;
pub(crate) const BIT: u32 = 1560;
pub(crate) const VARBIT: u32 = 1562;
pub(crate) const TIMETZ: u32 = 1266;
pub(crate) const POINT: u32 = 600;
pub(crate) const TSVECTOR: u32 = 3614;

/// PostgreSQL's VARHDRSZ, the offset in varlena typmods.
pub(crate) const VARHDRSZ: i32 = 4;

/// `io.debezium.data.Enum` values allowed for `source.snapshot` (`SnapshotRecord`).
pub(crate) const SNAPSHOT_ALLOWED: &str =
    "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental";

/// Precision of `time`/`timestamp`/`timestamptz` from the typmod; PostgreSQL's default is 6
/// (the JDBC driver reports 6 for no typmod, which is what Debezium sees).
pub(crate) fn time_precision(type_modifier: i32) -> i32 {
    if (0..=6).contains(&type_modifier) {
        type_modifier
    } else {
        6
    }
}

pub(crate) fn kind_of(column: &Column, opts: &JsonOptions) -> Kind {
    match &column.type_desc {
        Some(desc) => kind_of_desc(desc, opts),
        None => kind_of_oid(column.type_oid, column.type_modifier, opts),
    }
}

pub(crate) fn kind_of_desc(desc: &TypeDesc, opts: &JsonOptions) -> Kind {
    match desc {
        TypeDesc::Builtin { oid, type_modifier } => kind_of_oid(*oid, *type_modifier, opts),
        TypeDesc::Enum { labels } => Kind::Enum(labels.join(",").into_boxed_str()),
        TypeDesc::Array(elem) => Kind::Array(Box::new(kind_of_desc(elem, opts))),
        TypeDesc::Composite { fields, .. } => Kind::Struct(
            fields
                .iter()
                .map(|(name, t)| (name.clone(), kind_of_desc(t, opts)))
                .collect(),
        ),
        TypeDesc::Hstore => match opts.hstore_handling {
            HstoreHandlingMode::Json => Kind::HstoreJson,
            HstoreHandlingMode::Map => Kind::HstoreMap,
        },
        TypeDesc::Ltree => Kind::Str(Some("io.debezium.data.Ltree")),
        TypeDesc::Citext | TypeDesc::Range { .. } | TypeDesc::Other { .. } => Kind::Str(None),
    }
}

pub(crate) fn kind_of_oid(type_oid: u32, type_modifier: i32, opts: &JsonOptions) -> Kind {
    if let Some(elem) = builtin_array_element(type_oid) {
        // Element typmods equal the array column's (numeric(10,2)[], varchar(5)[]).
        return Kind::Array(Box::new(kind_of_oid(elem, type_modifier, opts)));
    }
    match type_oid {
        BOOL => Kind::Bool,
        INT2 => Kind::Int16,
        INT4 => Kind::Int32,
        INT8 | OID => Kind::Int64,
        FLOAT4 => Kind::Float32,
        FLOAT8 => Kind::Float64,
        NUMERIC => match opts.decimal_handling {
            DecimalHandlingMode::Precise if type_modifier >= VARHDRSZ => {
                let t = type_modifier - VARHDRSZ;
                // PostgreSQL 15+ stores the scale as an 11-bit signed number (negative scales
                // are allowed); earlier versions only have 0..=1000, which decodes the same.
                let raw = t & 0x7ff;
                let scale = if raw & 0x400 != 0 { raw - 0x800 } else { raw };
                Kind::Decimal {
                    precision: (t >> 16) & 0xffff,
                    scale,
                }
            }
            DecimalHandlingMode::Precise => Kind::VariableDecimal,
            DecimalHandlingMode::Double => Kind::DecimalDouble,
            DecimalHandlingMode::String => Kind::DecimalString,
        },
        BYTEA => Kind::Binary,
        JSON | JSONB => Kind::Str(Some("io.debezium.data.Json")),
        UUID => Kind::Str(Some("io.debezium.data.Uuid")),
        XML => Kind::Str(Some("io.debezium.data.Xml")),
        DATE => Kind::Date,
        TIME => {
            let p = time_precision(type_modifier);
            Kind::Time {
                millis: match opts.time_precision {
                    TimePrecisionMode::Adaptive => p <= 3,
                    TimePrecisionMode::Connect => true,
                    TimePrecisionMode::AdaptiveTimeMicroseconds | TimePrecisionMode::Isostring => {
                        false
                    }
                },
            }
        }
        TIMESTAMP => {
            let p = time_precision(type_modifier);
            Kind::Timestamp {
                millis: match opts.time_precision {
                    TimePrecisionMode::Adaptive | TimePrecisionMode::AdaptiveTimeMicroseconds => {
                        p <= 3
                    }
                    TimePrecisionMode::Connect => true,
                    TimePrecisionMode::Isostring => false,
                },
            }
        }
        TIMESTAMPTZ => Kind::ZonedTimestamp {
            // Clamped to 0..=6 above, so the cast is lossless.
            width: time_precision(type_modifier) as u8,
        },
        INTERVAL => Kind::Interval,
        MONEY => Kind::Money,
        BIT | VARBIT => Kind::Bits {
            // bit without a length is bit(1); varbit without one is unbounded.
            length: if type_modifier >= 0 {
                type_modifier
            } else if type_oid == BIT {
                1
            } else {
                i32::MAX
            },
        },
        TIMETZ => Kind::ZonedTime,
        POINT => Kind::Point,
        // Debezium's `TsVector.LOGICAL_NAME`, spelled so.
        TSVECTOR => Kind::Str(Some("io.debezium.data.Tsvector")),
        _ => Kind::Str(None),
    }
}

/// Whether an array's elements are optional in the Connect schema: Debezium builds enum
/// arrays as `SchemaBuilder.array(Enum.builder(..))`, whose items are required; every other
/// element schema it builds is optional.
pub(crate) fn array_items_optional(elem: &Kind) -> bool {
    !matches!(elem, Kind::Enum(_))
}

/// The value Debezium writes for a required (`NOT NULL`) column whose value is missing, as
/// in the `before` image of a delete or key change under `REPLICA IDENTITY DEFAULT`, which
/// carries the key columns only: each converter's fallback in Debezium's
/// `JdbcValueConverters.convertValue` / `PostgresValueConverter` (zero, `false`, `""`, the
/// epoch, an empty array or map). `None` where Debezium has no fallback walrus can write
/// (composites), which leaves the value null.
///
/// A column `DEFAULT` would come first in Debezium (the schema's default value); walrus does
/// not put defaults into its schemas yet (docs/compat.md), so the fallback is used.
pub(crate) fn fallback_value(column: &Column, kind: &Kind) -> Option<Value> {
    Some(match kind {
        Kind::Bool => Value::Bool(false),
        Kind::Bits { .. } => Value::Bits(String::new()),
        Kind::Int16 => Value::Int16(0),
        Kind::Int32 => Value::Int32(0),
        Kind::Int64 => Value::Int64(0),
        Kind::Float32 => Value::Float32(0.0),
        Kind::Float64 => Value::Float64(0.0),
        // BigDecimal.ZERO with the column's scale (`withScaleAdjustedIfNeeded`).
        Kind::Decimal { .. }
        | Kind::VariableDecimal
        | Kind::DecimalDouble
        | Kind::DecimalString => Value::Numeric(zero_with_scale(numeric_scale(column))),
        Kind::Money => Value::Numeric(zero_with_scale(2)),
        Kind::Str(_) | Kind::Enum(_) => Value::Text(String::new()),
        Kind::Binary => Value::Bytes(Vec::new()),
        Kind::Date => Value::Date(0),
        Kind::Time { .. } => Value::Time(0),
        Kind::Timestamp { .. } => Value::Timestamp(0),
        // `ZonedTimestamp.toIsoString` of the epoch, without a fraction.
        Kind::ZonedTimestamp { .. } => Value::Text("1970-01-01T00:00:00Z".to_owned()),
        Kind::ZonedTime => Value::Text("00:00:00Z".to_owned()),
        Kind::Interval => Value::Interval {
            months: 0,
            days: 0,
            micros: 0,
        },
        Kind::Point => Value::Point { x: 0.0, y: 0.0 },
        Kind::Array(_) => Value::Array(Box::new(PgArray::from_elements(Vec::new()))),
        Kind::HstoreJson => Value::Text("{}".to_owned()),
        Kind::HstoreMap => Value::Map(Vec::new()),
        Kind::Struct(_) => return None,
    })
}

/// The scale of a `numeric(p,s)` column (0 without a typmod or for a domain over one).
fn numeric_scale(column: &Column) -> i32 {
    let typmod = match &column.type_desc {
        Some(desc) => match desc.as_ref() {
            TypeDesc::Builtin { type_modifier, .. } => *type_modifier,
            _ => -1,
        },
        None => column.type_modifier,
    };
    if typmod < VARHDRSZ {
        return 0;
    }
    let raw = (typmod - VARHDRSZ) & 0x7ff;
    if raw & 0x400 != 0 {
        raw - 0x800
    } else {
        raw
    }
}

/// `0` with `scale` fraction digits, as `BigDecimal.ZERO.setScale(scale).toPlainString()`.
fn zero_with_scale(scale: i32) -> String {
    match usize::try_from(scale) {
        Ok(s) if s > 0 => format!("0.{}", "0".repeat(s)),
        _ => "0".to_owned(),
    }
}

/// A column's `DEFAULT` as the typed value Debezium's `PostgresDefaultValueConverter` puts
/// into the Connect schema (`"default"`), for the simple types: integers, `bool`, and
/// `text`/`varchar`/`char` without a logical name. `None` for every other type, and for
/// expressions that are not a constant (`nextval(..)`, `now()`), which Debezium leaves out
/// too.
pub(crate) fn default_value(column: &Column, kind: &Kind) -> Option<Value> {
    let literal = constant_literal(column.default.as_deref()?)?;
    Some(match kind {
        Kind::Int16 => Value::Int16(literal.parse().ok()?),
        Kind::Int32 => Value::Int32(literal.parse().ok()?),
        Kind::Int64 => Value::Int64(literal.parse().ok()?),
        Kind::Bool => match literal.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return None,
        },
        Kind::Str(None) if column.type_desc.is_none() => Value::Text(literal),
        _ => return None,
    })
}

/// The constant of a default expression as `pg_get_expr` renders it: `42`, `true`,
/// `'-5'::integer`, `'it''s'::text`, `'x'::character varying`; `None` for anything else.
fn constant_literal(expr: &str) -> Option<String> {
    let expr = expr.trim();
    if let Some(rest) = expr.strip_prefix('\'') {
        // A quoted literal, then `::type` casts (possibly several) and nothing else.
        let mut out = String::new();
        let mut chars = rest.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '\'' {
                if chars.peek().map(|(_, n)| *n) == Some('\'') {
                    out.push('\'');
                    chars.next();
                    continue;
                }
                let tail = &rest[i + 1..];
                let casts_only = tail.is_empty()
                    || (tail.starts_with("::")
                        && tail.split("::").skip(1).all(|t| {
                            !t.is_empty()
                                && t.chars().all(|c| {
                                    c.is_ascii_alphanumeric()
                                        || c == ' '
                                        || c == '_'
                                        || c == '('
                                        || c == ')'
                                        || c == ','
                                })
                        }));
                return casts_only.then_some(out);
            }
            out.push(c);
        }
        return None;
    }
    let bare = expr.trim_start_matches('(').trim_end_matches(')');
    let numeric = bare
        .strip_prefix('-')
        .unwrap_or(bare)
        .chars()
        .all(|c| c.is_ascii_digit());
    (numeric && !bare.is_empty() || bare == "true" || bare == "false").then(|| bare.to_owned())
}

#[cfg(test)]
mod default_tests {
    use super::constant_literal;

    #[test]
    fn constants_are_read_and_expressions_are_not() {
        assert_eq!(constant_literal("0").as_deref(), Some("0"));
        assert_eq!(constant_literal("'-5'::integer").as_deref(), Some("-5"));
        assert_eq!(constant_literal("true").as_deref(), Some("true"));
        assert_eq!(constant_literal("'it''s'::text").as_deref(), Some("it's"));
        assert_eq!(
            constant_literal("'x'::character varying").as_deref(),
            Some("x")
        );
        assert_eq!(constant_literal("''::text").as_deref(), Some(""));
        assert_eq!(constant_literal("nextval('t_id_seq'::regclass)"), None);
        assert_eq!(constant_literal("now()"), None);
        assert_eq!(constant_literal("('a'::text || 'b'::text)"), None);
        assert_eq!(constant_literal("'a'::text || 'b'::text"), None);
    }
}
