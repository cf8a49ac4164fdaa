//! Typed column values.
//!
//! The PostgreSQL connector parses each column of a row change (text or binary pgoutput
//! format) into a [`Value`]; the formats (`crate::format`) turn values into Debezium's
//! JSON shapes. Values keep exactly what the database holds: `numeric` stays as its exact
//! decimal text, times keep microseconds, and any type walrus does not model yet is kept as
//! PostgreSQL's own text rendering ([`Value::Text`] with the column's type name telling
//! consumers what it is) rather than failing the pipeline.

/// One column value of a row, typed.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// An unchanged TOASTed value that the WAL record does not carry. Formats write the
    /// configured placeholder (Debezium's `__debezium_unavailable_value` by default), never
    /// null and never a guess.
    Unavailable,
    /// `bool`.
    Bool(bool),
    /// `int2`.
    Int16(i16),
    /// `int4`.
    Int32(i32),
    /// `int8`.
    Int64(i64),
    /// `float4`, including NaN and ±Infinity.
    Float32(f32),
    /// `float8`, including NaN and ±Infinity.
    Float64(f64),
    /// `numeric`, exact: PostgreSQL's decimal text, e.g. `-12.3400`, or `NaN`, `Infinity`,
    /// `-Infinity`.
    Numeric(String),
    /// `text`, `varchar`, `bpchar`, `name`, `uuid` and every type passed through as text.
    Text(String),
    /// `bytea`, the raw bytes.
    Bytes(Vec<u8>),
    /// `json` / `jsonb`: the JSON document's text, as PostgreSQL renders it.
    Json(String),
    /// `date`: days since 1970-01-01 (negative before).
    Date(i32),
    /// `time`: microseconds since midnight.
    Time(i64),
    /// `timestamp` (without time zone): microseconds since 1970-01-01 00:00:00, wall clock.
    Timestamp(i64),
    /// `timestamptz`: microseconds since 1970-01-01 00:00:00 UTC.
    TimestampTz(i64),
    /// `interval`, as PostgreSQL stores it: months, days and microseconds are independent.
    Interval {
        /// Whole months (years are 12 months).
        months: i32,
        /// Whole days.
        days: i32,
        /// Microseconds (hours, minutes, seconds).
        micros: i64,
    },
}

impl Value {
    /// True for SQL NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}
