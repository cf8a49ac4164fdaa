//! The type zoo: a table with a column of (almost) every built-in type, arrays, an enum, domains,
//! a composite, ranges, multiranges and the hstore/citext/ltree extensions, written with edge
//! values and NULLs. Every value walrus emits is compared with PostgreSQL's *own* rendering of
//! the same row (`to_jsonb`, `::text`, `extract(epoch ...)`), never with hand-typed
//! expectations, and the same stream received in binary format (`[source] binary = true`) must
//! give identical events.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// Expected value: a PostgreSQL expression over `{c}` returning JSON (as text), or a special
/// comparison.
#[derive(Clone, Copy)]
enum Expect {
    /// `to_jsonb({c})`.
    Json,
    /// `to_jsonb({c}::text)`: PostgreSQL's text rendering.
    Text,
    /// Another expression over `{c}`.
    Expr(&'static str),
    /// Debezium `Bits`: little-endian bytes of the bit string `{c}::text`, base64.
    Bits,
    /// Debezium `Point`: `x`, `y` compared with `{c}[0]`, `{c}[1]`.
    Point,
    /// hstore as a JSON document string, compared with `hstore_to_jsonb({c})`.
    Hstore,
    /// Microseconds that Debezium computes in double arithmetic (a month is 365.25/12 days,
    /// `MicroDuration.DAYS_PER_MONTH_AVG`, unlike `extract(epoch)`'s 30): within 1 of the
    /// exact value computed by PostgreSQL from the interval's fields.
    Micros(&'static str),
}

use Expect::*;

/// (column, type, row 1 value, row 2 value, expectation). Row 3 is all NULL.
const ZOO: &[ZooColumn] = &[
    ("b", "bool", "true", "false", Json),
    ("i2", "int2", "-32768", "32767", Json),
    ("i4", "int4", "-2147483648", "2147483647", Json),
    ("i8", "int8", "-9223372036854775808", "9223372036854775807", Json),
    ("f4", "float4", "1.1", "'-Infinity'", Json),
    ("f8", "float8", "'NaN'", "1e-300", Json),
    ("f8b", "float8", "-0.000123456789", "'Infinity'", Json),
    ("n", "numeric(12,3)", "-123456.789", "0", Text),
    ("nv", "numeric", "'NaN'", "1234567890123456789012345678901234567890.0000000001",
        Expr("to_jsonb(CASE {c}::text WHEN 'NaN' THEN 'NAN' WHEN 'Infinity' THEN 'POSITIVE_INFINITY' WHEN '-Infinity' THEN 'NEGATIVE_INFINITY' ELSE {c}::text END)")),
    ("ninf", "numeric", "'-Infinity'", "-0.5",
        Expr("to_jsonb(CASE {c}::text WHEN 'NaN' THEN 'NAN' WHEN 'Infinity' THEN 'POSITIVE_INFINITY' WHEN '-Infinity' THEN 'NEGATIVE_INFINITY' ELSE {c}::text END)")),
    ("m", "money", "'-1234.56'", "'92233720368547758.07'", Expr("to_jsonb({c}::numeric::text)")),
    ("t", "text", "E'h\\u00e9llo ''q'' \"d\" \\\\ \\U0001F9AD\\n'", "''", Text),
    ("vc", "varchar(5)", "'abc'", "'x'", Text),
    ("bp", "char(4)", "'ab'", "'abcd'", Json),
    ("ch", "\"char\"", "'a'", "'z'", Text),
    ("nm", "name", "'nm'", "'n2'", Text),
    ("by", "bytea", "'\\x00ff10'", "''", Expr("to_jsonb(encode({c}, 'hex'))")),
    ("bit1", "bit(1)", "B'1'", "B'0'", Expr("to_jsonb({c} = B'1')")),
    ("bits", "bit(10)", "B'1000000001'", "B'0000000000'", Bits),
    ("vb", "varbit", "B'101'", "B''", Bits),
    ("d", "date", "'2024-02-29'", "'0044-03-15 BC'", Expr("to_jsonb({c} - date '1970-01-01')")),
    ("dinf", "date", "'infinity'", "'-infinity'", Text),
    ("tm", "time", "'23:59:59.999999'", "'00:00:00'", Expr("to_jsonb((extract(epoch from {c}) * 1000000)::bigint)")),
    ("tm3", "time(3)", "'12:00:00.123'", "'24:00:00'", Expr("to_jsonb((extract(epoch from {c}) * 1000)::bigint)")),
    ("ttz", "timetz", "'12:34:56.5+05:30'", "'00:00:00-08'", Expr("to_jsonb((({c} AT TIME ZONE 'UTC')::time)::text || 'Z')")),
    ("ts", "timestamp", "'2024-01-02 03:04:05.123456'", "'0044-03-15 12:00:00 BC'", Expr("to_jsonb((extract(epoch from {c}) * 1000000)::bigint)")),
    ("tsinf", "timestamp", "'infinity'", "'-infinity'", Text),
    ("tstz", "timestamptz", "'2024-01-02 03:04:05.123456+02'", "'1900-01-01 00:00:00+00'", Expr("to_jsonb(to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))")),
    ("tstzinf", "timestamptz", "'-infinity'", "'infinity'", Text),
    ("iv", "interval", "'1 year 2 mons 3 days 04:05:06.789'", "'-1 days +02:03:00'", Micros("((extract(year from {c}) * 12 + extract(month from {c})) * 30.4375 * 86400 + extract(day from {c}) * 86400 + extract(hour from {c}) * 3600 + extract(minute from {c}) * 60 + extract(second from {c})) * 1000000")),
    ("u", "uuid", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'00000000-0000-0000-0000-000000000000'", Text),
    ("j", "json", "'{\"a\": [1, 2.5, null]}'", "'[]'", Text),
    ("jb", "jsonb", "'{\"b\": {\"c\": \"\u{e9}\"}}'", "'null'", Text),
    ("x", "xml", "'<a>1</a>'", "'<b/>'", Text),
    ("ip", "inet", "'192.168.0.1/24'", "'::ffff:1.2.3.4'", Json),
    ("ip6", "inet", "'2001:db8::1'", "'fe80::1:0:0:0:1'", Json),
    ("cidr", "cidr", "'10.0.0.0/8'", "'2001:db8::/32'", Json),
    ("mac", "macaddr", "'08:00:2b:01:02:03'", "'ff:ff:ff:ff:ff:ff'", Text),
    ("mac8", "macaddr8", "'08:00:2b:01:02:03:04:05'", "'00:00:00:00:00:00:00:00'", Text),
    ("pt", "point", "'(1.5,-2)'", "'(0,1e-05)'", Point),
    ("ls", "lseg", "'[(0,0),(1,1)]'", "'[(1.5,2),(3,4)]'", Text),
    ("bx", "box", "'(1,1),(0,0)'", "'(2.5,3),(1,1)'", Text),
    ("pa", "path", "'((0,0),(1,1),(2,0))'", "'[(0,0),(1,1)]'", Text),
    ("pg", "polygon", "'((0,0),(1,1),(1,0))'", "'((0,0),(1e+20,1))'", Text),
    ("ci", "circle", "'<(1,2),3>'", "'<(0,0),0.5>'", Text),
    ("li", "line", "'{1,-1,0}'", "'{0.1,2,3}'", Text),
    ("tv", "tsvector", "'a fat:2A cat''s:3 sat'", "''", Text),
    ("tq", "tsquery", "'fat & (rat | cat)'", "'!a'", Text),
    ("lsn", "pg_lsn", "'16/B374D848'", "'0/0'", Text),
    ("o", "oid", "4294967295", "0", Expr("to_jsonb({c}::bigint)")),
    ("rc", "regclass", "'pg_class'", "'pg_type'", Text),
    ("xi", "xid", "'123'", "'0'", Text),
    ("i4r", "int4range", "'[1,10)'", "'empty'", Text),
    ("i8r", "int8range", "'(,5]'", "'[-3,)'", Text),
    ("nr", "numrange", "'[1.5,2.25]'", "'(,)'", Text),
    ("dr", "daterange", "'[2024-01-01,2024-02-01)'", "'[0044-03-15 BC,infinity)'", Text),
    ("tsr", "tsrange", "'[\"2024-01-01 10:00\",\"2024-01-02 00:00:00.5\")'", "'(,\"2024-01-01\"]'", Text),
    ("tzr", "tstzrange", "'[2024-01-01 10:00+00,)'", "'empty'", Text),
    ("imr", "int4multirange", "'{[1,3),[5,7)}'", "'{}'", Text),
    ("dmr", "datemultirange", "'{[2024-01-01,2024-01-05)}'", "'{}'", Text),
    ("ia", "int4[]", "'[0:1][2:3]={{1,NULL},{3,4}}'", "'{}'", Json),
    ("i8a", "int8[]", "'{1,-9223372036854775808}'", "'{NULL}'", Json),
    ("ta", "text[]", "'{\"a b\",NULL,\"q\\\"\",\"\",\"NULL\"}'", "'{{x,y},{z,w}}'", Json),
    ("na", "numeric[]", "'{1.50,-2,NaN}'", "'{}'", Expr("to_jsonb(array(SELECT CASE x::text WHEN 'NaN' THEN 'NAN' ELSE x::text END FROM unnest({c}) x))")),
    ("ba", "bool[]", "'{t,f,NULL}'", "'{}'", Json),
    ("fa", "float8[]", "'{1.5,NaN,-Infinity}'", "'{0}'", Json),
    ("ua", "uuid[]", "'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'", "'{}'", Expr("to_jsonb({c}::text[])")),
    ("jba", "jsonb[]", "ARRAY['{\"a\": 1}'::jsonb, '[]']", "'{}'", Expr("to_jsonb({c}::text[])")),
    ("da", "date[]", "'{2024-01-01,NULL}'", "'{}'", Expr("COALESCE((SELECT jsonb_agg(x - date '1970-01-01' ORDER BY o) FROM unnest({c}) WITH ORDINALITY AS u(x, o)), '[]')")),
    ("vca", "varchar(3)[]", "'{ab,c}'", "'{}'", Json),
    ("e", "mood", "'ok'", "'sad'", Text),
    ("ea", "mood[]", "'{sad,ok}'", "'{}'", Expr("to_jsonb({c}::text[])")),
    ("dom", "posint", "1", "2147483647", Json),
    ("domt", "email", "'a@b'", "'c@d'", Text),
    ("comp", "pair", "'(1,\"x, y\")'", "'(,)'", Json),
    ("h", "hstore", "'a=>1, \"b c\"=>NULL, \"q\\\"\"=>\"\\\\\"'", "''", Hstore),
    ("lt", "ltree", "'Top.Science.Astronomy'", "''", Text),
    ("cit", "citext", "'MiXeD'", "''", Text),
];

/// Columns whose binary send format carries something other than their text: `reg*` send the
/// OID rather than the name, `tsquery` a tree walrus does not render. Binary mode keeps their
/// bytes as `\x` hex text (documented in docs/events.md).
const BINARY_DIFFERS: &[&str] = &["rc", "tq"];

fn config(env: &Env, slot: &str, out: &Path, binary: bool) -> String {
    format!(
        r#"topic_prefix = "app"
[source]
url = "{url}"
slot = "{slot}"
publication = "zoo"
tables = ["public.zoo"]
status_interval_ms = 200
binary = {binary}
[sink]
type = "file"
path = "{out}"
[format]
decimal_handling_mode = "string"
binary_handling_mode = "hex"
"#,
        url = env.cluster.url(&env.db),
        out = out.display(),
    )
}

async fn expected(c: &tokio_postgres::Client, col: &str, expect: Expect, id: i32) -> Value {
    let expr = match expect {
        Json => "to_jsonb({c})",
        Text => "to_jsonb({c}::text)",
        Expr(e) => e,
        Bits => "to_jsonb({c}::text)",
        Point => "jsonb_build_object('x', {c}[0], 'y', {c}[1])",
        Hstore => "hstore_to_jsonb({c})",
        Micros(e) => e,
    }
    .replace("{c}", col);
    let sql = format!("SELECT ({expr})::text FROM zoo WHERE id = $1 AND ({col})::text IS NOT NULL");
    let row = c
        .query_opt(&sql, &[&id])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    match row {
        None => Value::Null,
        Some(r) => {
            let s: String = r.get(0);
            match expect {
                Micros(_) => Value::String(s),
                _ => serde_json::from_str(&s).unwrap_or_else(|e| panic!("{col}: {s}: {e}")),
            }
        }
    }
}

/// Debezium's Bits from PostgreSQL's bit string text.
fn bits_base64(text: &str) -> String {
    use base64::Engine as _;
    let n = text.len();
    let mut out: Vec<u8> = Vec::new();
    for (i, ch) in text.bytes().enumerate() {
        if ch == b'1' {
            let k = n - 1 - i;
            if out.len() <= k / 8 {
                out.resize(k / 8 + 1, 0);
            }
            out[k / 8] |= 1 << (k % 8);
        }
    }
    base64::engine::general_purpose::STANDARD.encode(out)
}

fn check(col: &str, expect: Expect, got: &Value, want: &Value) {
    if want.is_null() {
        assert!(got.is_null(), "{col}: expected null, got {got}");
        return;
    }
    match expect {
        Bits => assert_eq!(
            got,
            &Value::String(bits_base64(want.as_str().unwrap())),
            "{col}"
        ),
        Point => {
            assert_eq!(got["x"].as_f64(), want["x"].as_f64(), "{col}: {got}");
            assert_eq!(got["y"].as_f64(), want["y"].as_f64(), "{col}: {got}");
        }
        Hstore => {
            let doc: Value = serde_json::from_str(got.as_str().expect("hstore string")).unwrap();
            assert_eq!(&doc, want, "{col}");
        }
        Micros(_) => {
            let exact: f64 = want.as_str().unwrap().parse().unwrap();
            let got = got.as_i64().unwrap_or_else(|| panic!("{col}: {got}"));
            assert!((got as f64 - exact).abs() <= 1.0, "{col}: {got} vs {exact}");
        }
        _ => assert!(same(got, want), "{col}: walrus {got} vs PostgreSQL {want}"),
    }
}

/// JSON equality with numbers compared by value (`0.0` from a double equals PostgreSQL's `0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Creates the zoo's types and the `zoo` table with every column of [`ZOO`] but `except`.
pub(crate) async fn create_zoo(c: &tokio_postgres::Client, except: &[&str]) {
    c.batch_execute(
        "SET timezone = 'UTC';
         CREATE EXTENSION hstore; CREATE EXTENSION citext; CREATE EXTENSION ltree;
         CREATE TYPE mood AS ENUM ('sad', 'ok');
         CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);
         CREATE DOMAIN email AS text;
         CREATE TYPE pair AS (a int4, b text);",
    )
    .await
    .unwrap();
    let cols: Vec<String> = zoo_columns(except)
        .map(|(n, t, ..)| format!("{n} {t}"))
        .collect();
    c.batch_execute(&format!(
        "CREATE TABLE zoo (id int PRIMARY KEY, {})",
        cols.join(", ")
    ))
    .await
    .unwrap();
}

type ZooColumn = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Expect,
);

fn zoo_columns<'a>(except: &'a [&'a str]) -> impl Iterator<Item = &'static ZooColumn> + 'a {
    ZOO.iter().filter(move |z| !except.contains(&z.0))
}

/// Rows 1 and 2 with the zoo's two sets of edge values, row 3 all NULL.
pub(crate) async fn insert_zoo_rows(c: &tokio_postgres::Client, except: &[&str]) {
    let names: Vec<&str> = zoo_columns(except).map(|z| z.0).collect();
    for (id, pick) in [(1, 2usize), (2, 3usize)] {
        let values: Vec<&str> = zoo_columns(except)
            .map(|z| if pick == 2 { z.2 } else { z.3 })
            .collect();
        c.execute(
            &format!(
                "INSERT INTO zoo (id, {}) VALUES ({id}, {})",
                names.join(", "),
                values.join(", ")
            ),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("row {id}: {e}"));
    }
    c.batch_execute("INSERT INTO zoo (id) VALUES (3)")
        .await
        .unwrap();
}

/// `after` of each event with op `op`, by the row's id.
fn rows_by_id(events: &[Value], op: &str) -> BTreeMap<i64, Value> {
    events
        .iter()
        .filter(|e| e["value"]["op"] == op)
        .map(|e| {
            (
                e["value"]["after"]["id"].as_i64().unwrap(),
                e["value"]["after"].clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_matches_postgres_rendering_in_text_and_binary() {
    let env = Env::new().await;
    let c = env.sql().await;
    create_zoo(&c, &[]).await;
    assert!(ZOO.len() >= 60, "the zoo covers {} column types", ZOO.len());

    let text_out = env.dir.path().join("text.jsonl");
    let bin_out = env.dir.path().join("binary.jsonl");
    let text_cfg = env.dir.path().join("text.toml");
    let bin_cfg = env.dir.path().join("binary.toml");
    std::fs::write(&text_cfg, config(&env, "zoo_text", &text_out, false)).unwrap();
    std::fs::write(&bin_cfg, config(&env, "zoo_binary", &bin_out, true)).unwrap();
    let mut text = Walrus::start(&text_cfg);
    wait_until(Duration::from_secs(30), "text walrus", || {
        text.log().contains("starting replication")
    })
    .await;
    let mut bin = Walrus::start(&bin_cfg);
    wait_until(Duration::from_secs(30), "binary walrus", || {
        bin.log().contains("starting replication")
    })
    .await;

    insert_zoo_rows(&c, &[]).await;

    let text_events = wait_for_events(&text_out, 3, Duration::from_secs(30), |e| {
        e["value"]["op"] == "c"
    })
    .await;
    let bin_events = wait_for_events(&bin_out, 3, Duration::from_secs(30), |e| {
        e["value"]["op"] == "c"
    })
    .await;
    text.interrupt();
    bin.interrupt();
    assert!(text.wait(Duration::from_secs(30)).success());
    assert!(bin.wait(Duration::from_secs(30)).success());
    assert!(
        !text.log().contains("kept as"),
        "text values fell back: {}",
        text.log()
    );

    let text_rows = rows_by_id(&text_events, "c");
    let bin_rows = rows_by_id(&bin_events, "c");
    for id in 1..=3 {
        let t = &text_rows[&id];
        let b = &bin_rows[&id];
        for (col, _, _, _, expect) in ZOO {
            let want = expected(&c, col, *expect, id as i32).await;
            check(col, *expect, &t[*col], &want);
            if !BINARY_DIFFERS.contains(col) {
                assert_eq!(&t[*col], &b[*col], "row {id} column {col}: text vs binary");
            }
        }
    }
}

/// The initial snapshot reads tables with `COPY ... (FORMAT binary)` when walrus decodes
/// every column's type from binary: the zoo (without the two types binary keeps as hex)
/// snapshotted both ways gives identical events, each matching PostgreSQL's rendering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_reads_every_type_alike_through_binary_and_text_copy() {
    let env = Env::new().await;
    let c = env.sql().await;
    create_zoo(&c, BINARY_DIFFERS).await;
    insert_zoo_rows(&c, BINARY_DIFFERS).await;

    let mut rows = Vec::new();
    for (name, binary_copy) in [("text", false), ("binary", true)] {
        let out = env.dir.path().join(format!("snap-{name}.jsonl"));
        let cfg = env.dir.path().join(format!("snap-{name}.toml"));
        let text = config(&env, &format!("snap_{name}"), &out, false)
            + &format!("[snapshot]\nmode = \"initial_only\"\nbinary_copy = {binary_copy}\n");
        std::fs::write(&cfg, text).unwrap();
        let mut walrus = Walrus::start(&cfg);
        assert!(
            walrus.wait(Duration::from_secs(60)).success(),
            "{}",
            walrus.log()
        );
        let log = walrus.log();
        assert!(
            log.lines()
                .any(|l| l.contains("table planned") && l.contains(&format!("\"{name}\""))),
            "the snapshot must read with {name} COPY:\n{log}"
        );
        assert!(!log.contains("kept as"), "values fell back:\n{log}");
        let got = rows_by_id(&read_events(&out), "r");
        assert_eq!(got.len(), 3, "{name}: {got:#?}");
        rows.push(got);
    }
    for id in 1..=3 {
        for (col, _, _, _, expect) in zoo_columns(BINARY_DIFFERS) {
            let want = expected(&c, col, *expect, id as i32).await;
            check(col, *expect, &rows[0][&id][*col], &want);
            assert_eq!(
                &rows[0][&id][*col], &rows[1][&id][*col],
                "row {id} column {col}: text vs binary COPY"
            );
        }
    }
}
