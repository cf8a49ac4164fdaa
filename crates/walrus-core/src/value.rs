//! Typed column values.
//!
//! The PostgreSQL connector parses each column of a row change (text or binary pgoutput
//! format) into a [`Value`]; the formats (`crate::format`) turn values into Debezium's
//! JSON shapes. Values keep exactly what the database holds: `numeric` stays as its exact
//! decimal text, times keep microseconds, and any type walrus does not model yet is kept as
//! PostgreSQL's own text rendering ([`Value::Text`] with the column's type name telling
//! consumers what it is) rather than failing the pipeline.
//!
//! Containers keep PostgreSQL's structure: arrays keep their dimensions and lower bounds
//! ([`PgArray`]), composite values are positional and line up with the fields of their
//! [`TypeDesc::Composite`], `hstore` is an ordered list of pairs. A column's [`TypeDesc`]
//! says how to read values whose OID alone does not (enums, domains, composites, arrays
//! of those, extension types such as `hstore`).

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
    /// `timetz`: microseconds since midnight (local) and the UTC offset in seconds east of
    /// Greenwich, as written (`+05:30` is 19800).
    TimeTz {
        /// Local time of day, microseconds.
        micros: i64,
        /// Offset east of UTC, seconds.
        offset_secs: i32,
    },
    /// `bit(n)` / `varbit`: the bits as `'0'`/`'1'` characters, first bit first (`B'101'`
    /// is `"101"`).
    Bits(String),
    /// `point`.
    Point {
        /// x.
        x: f64,
        /// y.
        y: f64,
    },
    /// An array of any element type, with its dimensions.
    Array(Box<PgArray>),
    /// A composite (row) value: one value per field of the column's
    /// [`TypeDesc::Composite`], in order.
    Composite(Vec<Value>),
    /// `hstore`: key/value pairs in PostgreSQL's order; values may be NULL.
    Map(Vec<(String, Option<String>)>),
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

/// One dimension of an array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArrayDim {
    /// Number of elements along this dimension.
    pub len: u32,
    /// Index of the first element (1 unless written as `'[0:2]={...}'`).
    pub lower: i32,
}

/// An array value: dimensions (outermost first) and the elements in row-major order. An
/// empty array (`'{}'`) has no dimensions and no elements.
#[derive(Clone, Debug, PartialEq)]
pub struct PgArray {
    /// Dimensions, outermost first.
    pub dims: Vec<ArrayDim>,
    /// The elements, row-major; `dims` multiply to their number.
    pub elements: Vec<Value>,
}

impl PgArray {
    /// A one-dimensional array with lower bound 1 (empty when `elements` is).
    pub fn from_elements(elements: Vec<Value>) -> PgArray {
        let dims = if elements.is_empty() {
            Vec::new()
        } else {
            vec![ArrayDim {
                len: u32::try_from(elements.len()).unwrap_or(u32::MAX),
                lower: 1,
            }]
        };
        PgArray { dims, elements }
    }
}

/// What a column's values are, for types whose OID alone does not say (anything not built
/// in), resolved from the catalog. Built-in types need no description: their OID is enough.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeDesc {
    /// A built-in type (also the base of a domain), with the type modifier that applies.
    Builtin {
        /// `pg_type.oid`.
        oid: u32,
        /// `atttypmod` (or the domain's `typtypmod`), -1 for none.
        type_modifier: i32,
    },
    /// An enum; values are their labels ([`Value::Text`]).
    Enum {
        /// Labels in sort order (`pg_enum.enumsortorder`).
        labels: Vec<String>,
    },
    /// An array of the element type.
    Array(Box<TypeDesc>),
    /// A composite type: field names and types, in order.
    Composite {
        /// The type's name.
        name: String,
        /// `(name, type)` per attribute.
        fields: Vec<(String, TypeDesc)>,
    },
    /// A range or multirange type; values are PostgreSQL's text ([`Value::Text`]), as
    /// Debezium writes ranges.
    Range {
        /// The type's name.
        name: String,
        /// The element (subtype) of the range.
        subtype: Box<TypeDesc>,
        /// A multirange of that range type.
        multi: bool,
    },
    /// `hstore` (extension).
    Hstore,
    /// `ltree` (extension); values are text.
    Ltree,
    /// `citext` (extension); values are text.
    Citext,
    /// Anything else; values are PostgreSQL's text.
    Other {
        /// The type's name.
        name: String,
    },
}

impl Value {
    /// True for SQL NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// The element type of a built-in array type (`_int4` -> `int4`), from PostgreSQL's
/// `pg_type.dat` (`typelem` of every `typcategory = 'A'` built-in type).
pub fn builtin_array_element(array_oid: u32) -> Option<u32> {
    let elem = match array_oid {
        1000 => 16,
        1001 => 17,
        1002 => 18,
        1003 => 19,
        1016 => 20,
        1005 => 21,
        1006 => 22,
        1007 => 23,
        1008 => 24,
        1009 => 25,
        1028 => 26,
        1010 => 27,
        1011 => 28,
        1012 => 29,
        1013 => 30,
        199 => 114,
        143 => 142,
        1017 => 600,
        1018 => 601,
        1019 => 602,
        1020 => 603,
        1027 => 604,
        629 => 628,
        651 => 650,
        1021 => 700,
        1022 => 701,
        719 => 718,
        775 => 774,
        791 => 790,
        1040 => 829,
        1041 => 869,
        1034 => 1033,
        1014 => 1042,
        1015 => 1043,
        1182 => 1082,
        1183 => 1083,
        1115 => 1114,
        1185 => 1184,
        1187 => 1186,
        1270 => 1266,
        1561 => 1560,
        1563 => 1562,
        1231 => 1700,
        2201 => 1790,
        2207 => 2202,
        2208 => 2203,
        2209 => 2204,
        2210 => 2205,
        2211 => 2206,
        2951 => 2950,
        2949 => 2970,
        3221 => 3220,
        3643 => 3614,
        3645 => 3615,
        3735 => 3734,
        3770 => 3769,
        3807 => 3802,
        3905 => 3904,
        3907 => 3906,
        3909 => 3908,
        3911 => 3910,
        3913 => 3912,
        3927 => 3926,
        4073 => 4072,
        4090 => 4089,
        4097 => 4096,
        6150 => 4451,
        6151 => 4532,
        6152 => 4533,
        6153 => 4534,
        6155 => 4535,
        6157 => 4536,
        951 => 5038,
        271 => 5069,
        _ => return None,
    };
    Some(elem)
}
