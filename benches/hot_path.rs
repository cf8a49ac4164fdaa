//! The per-row hot path without I/O: pgoutput Insert frame → decode → convert (typed values)
//! → Debezium JSON key and value, for the same rows in text and in binary format.
//!
//! `cargo bench --bench hot_path`. Two row shapes: `narrow` (id, text, bool, int8) and
//! `types` (a mix of numeric, timestamptz, timestamp, float8, jsonb, uuid, text[] and
//! interval), each as text-format and binary-format pgoutput tuples. Throughput is reported
//! per row and in bytes of the frame.

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use walrus_core::event::SourcePosition;
use walrus_core::format::json::{JsonEncoder, JsonOptions};
use walrus_postgres::convert::Converter;
use walrus_postgres::pgoutput::{Decoder, PgOutputMessage};

/// One column: name, type OID, typmod, text form, binary form.
type Col = (&'static str, u32, i32, &'static str, Vec<u8>);

fn array_int_text(elems: &[&str]) -> Vec<u8> {
    // text[] in array_send format.
    let mut b = Vec::new();
    b.put_i32(1);
    b.put_i32(0);
    b.put_u32(25);
    b.put_i32(elems.len() as i32);
    b.put_i32(1);
    for e in elems {
        b.put_i32(e.len() as i32);
        b.put_slice(e.as_bytes());
    }
    b
}

fn narrow() -> Vec<Col> {
    vec![
        ("id", 23, -1, "123456", 123_456i32.to_be_bytes().to_vec()),
        (
            "name",
            25,
            -1,
            "a customer name",
            b"a customer name".to_vec(),
        ),
        ("active", 16, -1, "t", vec![1]),
        (
            "counter",
            20,
            -1,
            "9876543210",
            9_876_543_210i64.to_be_bytes().to_vec(),
        ),
    ]
}

fn types() -> Vec<Col> {
    // numeric(12,2) 12345.67: digits 1|2345|6700, weight 1, dscale 2.
    let mut numeric = Vec::new();
    for v in [3i16, 1, 0, 2, 1, 2345, 6700] {
        numeric.put_i16(v);
    }
    let ts_pg = 757_382_645_123_456i64; // 2024-01-01 01:24:05.123456 since 2000
    let mut interval = Vec::new();
    interval.put_i64(14_706_789_000);
    interval.put_i32(3);
    interval.put_i32(14);
    let mut jsonb = vec![1u8];
    jsonb.extend_from_slice(br#"{"a": 1, "b": [true, null]}"#);
    let uuid = [
        0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a,
        0x11,
    ];
    vec![
        ("id", 23, -1, "123456", 123_456i32.to_be_bytes().to_vec()),
        ("amount", 1700, (12 << 16 | 2) + 4, "12345.67", numeric),
        (
            "created",
            1184,
            -1,
            "2024-01-01 01:24:05.123456+00",
            ts_pg.to_be_bytes().to_vec(),
        ),
        (
            "local",
            1114,
            -1,
            "2024-01-01 01:24:05.123456",
            ts_pg.to_be_bytes().to_vec(),
        ),
        ("score", 701, -1, "0.1", 0.1f64.to_be_bytes().to_vec()),
        ("payload", 3802, -1, r#"{"a": 1, "b": [true, null]}"#, jsonb),
        (
            "uid",
            2950,
            -1,
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            uuid.to_vec(),
        ),
        (
            "tags",
            1009,
            -1,
            "{red,green,\"light blue\"}",
            array_int_text(&["red", "green", "light blue"]),
        ),
        (
            "wait",
            1186,
            -1,
            "1 year 2 mons 3 days 04:05:06.789",
            interval,
        ),
    ]
}

fn relation(cols: &[Col]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(b'R');
    b.put_u32(16_384);
    b.put_slice(b"public\0items\0");
    b.put_u8(b'd');
    b.put_i16(cols.len() as i16);
    for (i, (name, oid, typmod, ..)) in cols.iter().enumerate() {
        b.put_u8(u8::from(i == 0));
        b.put_slice(name.as_bytes());
        b.put_u8(0);
        b.put_u32(*oid);
        b.put_i32(*typmod);
    }
    b.freeze()
}

fn insert(cols: &[Col], binary: bool) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(b'I');
    b.put_u32(16_384);
    b.put_u8(b'N');
    b.put_i16(cols.len() as i16);
    for (_, _, _, text, bin) in cols {
        let data: &[u8] = if binary { bin } else { text.as_bytes() };
        b.put_u8(if binary { b'b' } else { b't' });
        b.put_i32(data.len() as i32);
        b.put_slice(data);
    }
    b.freeze()
}

fn bench(c: &mut Criterion) {
    for (shape, cols) in [("narrow", narrow()), ("types", types())] {
        for binary in [false, true] {
            let rel = relation(&cols);
            let frame = insert(&cols, binary);
            let mut decoder = Decoder::new(1);
            let mut converter = Converter::new();
            let msg = decoder.decode(&rel).expect("relation");
            converter.observe(&msg);
            let mut encoder = JsonEncoder::new(JsonOptions::default());
            let (mut key, mut value) = (Vec::with_capacity(64), Vec::with_capacity(1024));
            let mut group = c.benchmark_group(format!(
                "{shape}/{}",
                if binary { "binary" } else { "text" }
            ));
            group.throughput(Throughput::Elements(1));
            group.bench_function("decode+convert+encode", |bch| {
                bch.iter(|| {
                    let Ok(PgOutputMessage::Insert(m)) = decoder.decode(&frame) else {
                        panic!("not an insert");
                    };
                    let ev = converter
                        .insert(&m, SourcePosition::default())
                        .expect("convert");
                    encoder.encode_key(&ev, &[0], &mut key);
                    encoder.encode_value_at(&ev, 0, &mut value);
                    value.len()
                })
            });
            group.throughput(Throughput::Bytes(frame.len() as u64));
            group.bench_function("decode+convert", |bch| {
                bch.iter(|| {
                    let Ok(PgOutputMessage::Insert(m)) = decoder.decode(&frame) else {
                        panic!("not an insert");
                    };
                    converter
                        .insert(&m, SourcePosition::default())
                        .expect("convert")
                })
            });
            group.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
