#!/usr/bin/env python3
"""Print the records of a topic as JSON lines, decoded through the schema registry.

    python subscribe.py CLIENT_PROPERTIES TOPIC [MAX [TIMEOUT_S]]

Needs only ``confluent-kafka[avro,schemaregistry]``. CLIENT_PROPERTIES is a ``key=value`` file of
librdkafka settings (``bootstrap.servers``, ``security.protocol``, ``sasl.*``, ``ssl.ca.location``,
``group.id`` ...) and of ``schema.registry.*`` settings for Confluent's ``SchemaRegistryClient``
(``schema.registry.url``, ``schema.registry.ssl.ca.location``, ``schema.registry.basic.auth.user.info``).
Each line is ``{"topic", "partition", "offset", "key", "value"}``, ``value`` null for a tombstone.
Exits after MAX records (0: no limit) or TIMEOUT_S seconds (status 2 if fewer than MAX came).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

REGISTRY_PREFIX = "schema.registry."


def load(path: str) -> tuple[dict[str, str], dict[str, str]]:
    """The Kafka client's settings and the registry client's, from one properties file."""
    kafka: dict[str, str] = {}
    registry: dict[str, str] = {}
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if key.startswith(REGISTRY_PREFIX):
            registry[key.removeprefix(REGISTRY_PREFIX)] = value
        else:
            kafka[key] = value
    return kafka, registry


def as_json(value: Any) -> Any:
    """Avro's logical types as JSON: timestamps as epoch milliseconds."""
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 64
    kafka, registry = load(argv[1])
    topic = argv[2]
    limit = int(argv[3]) if len(argv) > 3 else 0
    deadline = time.monotonic() + float(argv[4]) if len(argv) > 4 else float("inf")
    deserialize = AvroDeserializer(SchemaRegistryClient(registry))
    consumer = Consumer({"auto.offset.reset": "earliest", **kafka})
    consumer.subscribe([topic])
    seen = 0
    try:
        while time.monotonic() < deadline and (limit == 0 or seen < limit):
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise RuntimeError(str(error))
            context = SerializationContext(topic, MessageField.VALUE)
            value = deserialize(message.value(), context)
            key = message.key()
            line = {
                "topic": topic,
                "partition": message.partition(),
                "offset": message.offset(),
                "key": key.decode() if key is not None else None,
                "value": value,
            }
            print(json.dumps(line, ensure_ascii=False, default=as_json), flush=True)
            seen += 1
    finally:
        consumer.close()
    return 2 if limit and seen < limit else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
