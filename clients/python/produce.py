#!/usr/bin/env python3
"""Send one record, given as a JSON document, to a topic, Confluent-framed through the schema registry.

    python produce.py CLIENT_PROPERTIES TOPIC KEY JSON

Needs only ``confluent-kafka[avro,schemaregistry]``. The record is written with the newest schema of
the subject ``<topic>-value`` and its id (registering nothing); fields the document leaves out take
their schema defaults, times are epoch milliseconds. CLIENT_PROPERTIES: as for ``subscribe.py``. Prints
``topic partition offset`` once the broker has the record (``acks=all``).
"""

from __future__ import annotations

import json
import sys

from confluent_kafka import KafkaException, Message, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from subscribe import load


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 64
    kafka, registry = load(argv[1])
    topic, key, document = argv[2], argv[3], json.loads(argv[4])
    # the subject's newest schema and its id; registering nothing: a reporter writes the registry's contract
    serialize = AvroSerializer(
        SchemaRegistryClient(registry),
        conf={"auto.register.schemas": False, "use.latest.version": True},
    )
    value = serialize(document, SerializationContext(topic, MessageField.VALUE))
    delivered: list[Message] = []

    def on_delivery(error: object, message: Message) -> None:
        if error is not None:
            raise KafkaException(error)
        delivered.append(message)

    producer = Producer({"acks": "all", **kafka})
    producer.produce(topic, key=key.encode(), value=value, on_delivery=on_delivery)
    if producer.flush(30) != 0 or not delivered:
        print("not delivered within 30 s", file=sys.stderr)
        return 1
    sent = delivered[0]
    print(sent.topic(), sent.partition(), sent.offset())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
