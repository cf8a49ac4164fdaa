"""Confluent's own client as the judge of walrus's Avro output (tests/e2e/avro.rs).

Reads every record of the given topics from the beginning, deserialises keys and values with
confluent_kafka's AvroDeserializer (which fetches each writer schema by the id in the record
from the registry), and prints one JSON line per record:
{"topic", "partition", "offset", "key", "value", "key_schema_id", "value_schema_id"}.
Values are rendered as the Debezium JSON path writes them: bytes and decimals as base64 of the
(unscaled) big-endian two's complement, non-finite floats as "NaN"/"Infinity"/"-Infinity".
Exits non-zero when a record does not decode.

usage: judge.py <bootstrap> <registry url> <expected records> <idle seconds> <topic>...
"""
import base64
import decimal
import json
import math
import struct
import sys
import time

from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def twos_complement(n):
    length = max(1, (n + (n < 0)).bit_length() // 8 + 1)
    return n.to_bytes(length, "big", signed=True)


def plain(v):
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, (bytes, bytearray)):
        return base64.b64encode(bytes(v)).decode()
    if isinstance(v, decimal.Decimal):
        sign, digits, exp = v.as_tuple()
        unscaled = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
        return base64.b64encode(twos_complement(unscaled)).decode()
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    return v


def schema_id(raw):
    if raw is None or len(raw) < 5:
        return None
    assert raw[0] == 0, "magic byte"
    return struct.unpack(">I", raw[1:5])[0]


def main():
    bootstrap, url, expected, idle = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    topics = sys.argv[5:]
    registry = SchemaRegistryClient({"url": url})
    deser = AvroDeserializer(registry)
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "walrus-avro-judge-%d" % time.time_ns(),
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe(topics)
    seen, last = 0, time.time()
    while seen < expected and time.time() - last < idle:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            continue
        last = time.time()
        seen += 1
        t = msg.topic()
        key = deser(msg.key(), SerializationContext(t, MessageField.KEY)) if msg.key() else None
        value = deser(msg.value(), SerializationContext(t, MessageField.VALUE)) if msg.value() else None
        print(json.dumps({
            "topic": t,
            "partition": msg.partition(),
            "offset": msg.offset(),
            "key": plain(key),
            "value": plain(value),
            "key_schema_id": schema_id(msg.key()),
            "value_schema_id": schema_id(msg.value()),
        }), flush=True)
    consumer.close()


if __name__ == "__main__":
    main()
