"""The librdkafka driver's bounded reader of the reporters' topics (stream_app/kafka/rdlanes/bounded.py)
on its own, against the real broker: over mTLS with the app's certificate (the client certificate of
``STREAM_APP_KAFKA_CLIENT_PROPERTIES``, as librdkafka takes it), assigned by hand at an offset, a gzip
bomb withheld as one stand-in, the records behind it read, a seek obeyed, a revoked partition's
records never handed over."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import Producer
from faust.types import TP
from yarl import URL

from stream_app.config.blueprint import Blueprint
from stream_app.kafka import fetch_bounds
from stream_app.kafka.config import confluent_config, faust_credentials, ssl_context
from stream_app.kafka.fetch_bounds import FetchLimits, Withheld
from stream_app.kafka.rdlanes.bounded import BoundedReader, reader_for
from stream_app.settings import Settings

MIB = 1 << 20


def _mtls(settings: Settings) -> Settings:
    """The app's identity on the mTLS listener: its certificate, no SASL."""
    bootstrap = os.environ.get("SERVICES_KAFKA_MTLS_BOOTSTRAP")
    certificate = (
        Path(os.environ.get("SERVICES_KAFKA_CLIENT_CERT", "")).parent / f"{settings.acl_app_user}.pem"
    )
    if not bootstrap or not certificate.is_file():
        pytest.skip("no mTLS listener or no certificate for the app's principal")
    return settings.model_copy(
        update={
            "kafka_bootstrap": bootstrap,
            "kafka_security_protocol": "SSL",
            "kafka_client_properties": {
                **settings.kafka_client_properties,
                "ssl.certificate.location": str(certificate),
                "ssl.key.location": str(certificate.with_suffix(".key")),
            },
        }
    )


def _reader(settings: Settings, topic: str) -> BoundedReader:
    fetch_bounds.install(FetchLimits.from_settings(settings))
    conf = SimpleNamespace(
        broker=[URL(f"kafka://{settings.kafka_bootstrap}")],
        broker_client_id="test-bounded",
        broker_credentials=faust_credentials(settings),
        ssl_context=ssl_context(settings),
        consumer_auto_offset_reset="earliest",
        broker_request_timeout=30.0,
        consumer_max_fetch_size=4 * MIB,
    )
    reader = reader_for(SimpleNamespace(conf=conf), settings, {topic})
    assert reader is not None
    reader.start()
    return reader


def _take_until(reader: BoundedReader, tp: TP, offset: int, timeout: float = 30.0) -> list[Any]:
    """What the reader hands over of ``tp`` until the record at ``offset``."""
    taken: list[Any] = []
    deadline = time.monotonic() + timeout
    while not any(r.offset >= offset for r in taken) and time.monotonic() < deadline:
        found, _ = reader.take({tp})
        taken.extend(found.get(tp, []))
        time.sleep(0.05)
    return taken


def test_the_bounded_reader_reads_over_mtls_withholds_a_bomb_and_follows_its_assignment(
    settings: Settings, blueprint: Blueprint
) -> None:
    topic = blueprint.input_topic("MAE").name
    tp = TP(topic, 0)
    produce_to = Producer(
        {
            **confluent_config(settings),
            "acks": "all",
            "compression.type": "gzip",
            "linger.ms": 500,
            "message.max.bytes": 1_000_000_000,
            "batch.size": 1_000_000_000,
        }
    )
    for i in range(3):
        produce_to.produce(topic, value=f"before-{i}".encode(), partition=0)
    assert produce_to.flush(30) == 0
    zeros = bytes(16 * MIB)
    for _ in range(4):  # one gzip batch of 64 MiB of zeros: past the 8 MiB budget
        produce_to.produce(topic, value=zeros, partition=0)
    assert produce_to.flush(60) == 0
    produce_to.produce(topic, value=b"after", partition=0)
    assert produce_to.flush(30) == 0
    # offsets: 0-2 before, 3-6 the bomb (one batch, or cut in a few), 7 after (the topic is the test's own)

    mtls = _mtls(settings)
    assert ssl_context(mtls) is not None
    reader = _reader(mtls, topic)
    try:
        reader.assign({tp: 1})  # the group's committed offset, say
        values = [(r.offset, r.value) for r in _take_until(reader, tp, 7)]
        assert values[:2] == [(1, b"before-1"), (2, b"before-2")]
        assert values[-1] == (7, b"after")
        withheld = [v for _, v in values[2:-1]]
        assert all(isinstance(v, Withheld) for v in withheld), values  # nothing of the bomb inflated
        spans = [(v.first_offset, v.last_offset) for v in withheld if isinstance(v, Withheld)]
        assert spans[0][0] == 3, spans
        assert spans[-1][1] == 6, spans
        assert {v.reason for v in withheld if isinstance(v, Withheld)} == {"decompressed_too_large"}
        assert {v.codec for v in withheld if isinstance(v, Withheld)} == {"gzip"}
        assert reader.highwater(tp) == 8
        assert reader.position(tp) == 8

        reader.seek(tp, 0)  # Faust's recovery seek
        assert [r.offset for r in _take_until(reader, tp, 0)][:1] == [0]

        reader.seek(tp, 7)
        time.sleep(1.0)  # fetched, not taken
        reader.revoke({tp})
        assert reader.assigned == frozenset()
        assert reader.take({tp}) == ({}, {})
    finally:
        reader.stop()
