"""The accepted wire formats end to end: a real worker process, real Kafka topics, real Redis.

Avro single-object records written with observation v1 and with v2, and a JSON document, all reach the
consolidated topic; a Confluent-framed record the worker cannot resolve is dead-lettered as
``unknown_schema`` with its original bytes. (A ``mock://`` schema registry lives inside one process, so
the test cannot register a schema the worker would see: the registry path is covered by the unit tests.)

With ``STREAM_APP_OUTPUT_FRAMING=confluent`` the worker writes Confluent-framed records (consolidated,
alerts, dead letters, a directive forwarded to its ministry) that a plain confluent_kafka
``AvroDeserializer`` reads. The worker runs in its own process, so the registry both share is a small HTTP
test double of Confluent's (``tests/registry_fake.py``), spoken to by the real clients.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from stream_app.config.blueprint import Blueprint
from stream_app.kafka import registry, subjects
from stream_app.kafka.config import confluent_config
from stream_app.settings import Settings
from stream_app.wire import codecs

from ..registry_fake import FakeRegistry
from .support import collect, direct, messages, observation, produce, raw_records

REPORTER = "MAE"
KEY = b"HN-AQ-HOANKIEM"
AQI_KEY = "levels:ENV.AQI|ENV.AQI|01|HN-AQ-HOANKIEM"


def _input_topic(bp: Blueprint) -> str:
    return bp.input_topic(REPORTER).name


def _confluent_framed(bp: Blueprint, schema_id: int, record: dict[str, Any]) -> bytes:
    body = codecs.encode(bp.schemas.latest("observation"), record)[len(codecs.SINGLE_OBJECT_MARKER) + 8 :]
    return b"\x00" + schema_id.to_bytes(4, "big") + body


def _iso_in_vietnam(ms: int) -> str:
    """ISO-8601 with the +07:00 offset, as a reporter in Vietnam would write it."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone(timedelta(hours=7))).isoformat(
        timespec="milliseconds"
    )


@pytest.mark.parametrize("registry", ["mock", "none"])
def test_v1_v2_and_json_reach_consolidated_and_confluent_without_schema_is_dead_lettered(
    settings: Settings,
    blueprint: Blueprint,
    start_worker: Any,
    monkeypatch: pytest.MonkeyPatch,
    registry: str,
) -> None:
    monkeypatch.delenv("STREAM_APP_SCHEMA_REGISTRY_URL", raising=False)
    extra_env = (
        {"STREAM_APP_SCHEMA_REGISTRY_URL": f"mock://test-{uuid.uuid4().hex}"} if registry == "mock" else {}
    )
    start_worker(settings, **extra_env)
    topic = _input_topic(blueprint)
    v1 = next(v for v in blueprint.schemas.by_subject["observation"] if v.version == 1)
    v2 = blueprint.schemas.latest("observation")
    assert v2.version >= 2, "observation v2 is the reader"

    now_ms = int(time.time() * 1000)
    # Values 11, 22 and 44: their sum tells which of them were counted. Event times in order.
    from_v1 = {k: v for k, v in observation(value=11.0, event_time=now_ms - 3000).items() if k in _fields(v1)}
    from_v2 = observation(value=22.0, event_time=now_ms - 2000) | {
        "report_ref": "125/BC-BNNMT",
        "source_system": "Mạng quan trắc không khí Hà Nội",
    }
    as_json = observation(value=44.0, event_time=now_ms - 1000)
    as_json["event_time"] = _iso_in_vietnam(as_json["event_time"])
    confluent = _confluent_framed(blueprint, 7, observation(value=88.0, event_time=now_ms))
    produce(
        settings,
        topic,
        [
            (KEY, codecs.encode(v1, from_v1)),
            (KEY, codecs.encode(v2, from_v2)),
            (KEY, json.dumps(as_json, ensure_ascii=False).encode()),
            (KEY, confluent),
        ],
    )

    consolidated = collect(
        settings,
        blueprint.topic_by_role("consolidated").name,
        "consolidated",
        lambda rows: any(r["count"] >= 3 and r["scope"] == "ENTITY" for r in rows),
    )
    final = max((r for r in consolidated.records if r["scope"] == "ENTITY"), key=lambda r: r["count"])
    assert final["key"] == f"ENV.AQI:01:HN-AQ-HOANKIEM:{final['period']}"
    assert (final["count"], final["sum"], final["latest_value"]) == (3, 77.0, 44.0)
    assert final["reporter"] == REPORTER

    dead = collect(settings, blueprint.dead_letter_topic(REPORTER).name, "dead_letter", lambda r: len(r) >= 1)
    assert len(dead.records) == 1, dead.records
    letter = dead.records[0]
    assert letter["reason"] == "unknown_schema"
    assert "schema id 7" in letter["message"]
    assert letter["original"] == confluent
    assert letter["source_topic"] == topic
    assert letter["source_key"] == KEY
    late = collect(
        settings, blueprint.dead_letter_topic(REPORTER).name, "dead_letter", lambda r: False, timeout=2
    )
    assert len(late.records) == 1, "only the Confluent-framed record is dead-lettered"


def _fields(version: Any) -> set[str]:
    return {f["name"] for f in version.parsed["fields"]}


def test_lz4_compressed_batches_are_read(settings: Settings, blueprint: Blueprint, start_worker: Any) -> None:
    """Producers (``stream-app produce`` among them) compress with lz4: the worker must read it."""
    start_worker(settings)
    schema = blueprint.schemas.latest("observation")
    producer = Producer({**confluent_config(settings), "compression.type": "lz4", "linger.ms": 20})
    for i in range(20):
        record = observation(observation_id=f"lz4-{i}", value=40.0 + i)
        producer.produce(blueprint.input_topic(REPORTER).name, key=KEY, value=codecs.encode(schema, record))
    assert producer.flush(30) == 0
    consolidated = collect(
        settings,
        blueprint.topic_by_role("consolidated").name,
        "consolidated",
        lambda rows: any(r["count"] == 20 and r["scope"] == "ENTITY" for r in rows),
    )
    assert max(r["count"] for r in consolidated.records if r["scope"] == "ENTITY") == 20


def _deserialized(
    settings: Settings, topic: str, client: Any, until: Any, timeout: float = 45.0
) -> list[dict[str, Any]]:
    """``topic``'s records as a plain Confluent consumer reads them; each must be Confluent-framed."""
    deserialize = AvroDeserializer(client)
    out: list[dict[str, Any]] = []
    for message in messages(settings, topic, lambda: until(out), timeout):
        value = message.value()
        if value is None:  # a tombstone
            continue
        assert value[:1] == b"\x00", f"{topic}: not Confluent-framed: {value[:12]!r}"
        out.append(deserialize(value, SerializationContext(topic, MessageField.VALUE)))
    return out


def test_confluent_output_framing_is_read_by_a_plain_avro_deserializer(
    settings: Settings, blueprint: Blueprint, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STREAM_APP_SCHEMA_REGISTRY_URL", raising=False)
    with FakeRegistry() as fake:
        # the deployment step: every subject registered, FULL_TRANSITIVE
        report = subjects.register(
            registry.new_client(fake.url), subjects.registered_subjects(blueprint), fake.url
        )
        assert report.registered == report.versions > 0
        alerts_topic = blueprint.topic_by_role("alerts").name
        assert fake.compatibility(f"{alerts_topic}-value") == "FULL_TRANSITIVE"
        registrations = fake.count("POST", "/subjects/")

        start_worker(settings, STREAM_APP_OUTPUT_FRAMING="confluent", STREAM_APP_SCHEMA_REGISTRY_URL=fake.url)
        assert fake.count("POST", "/subjects/") > registrations, "the worker looked its ids up"
        registered = sum(1 for m, p in fake.state.requests if m == "POST" and p.endswith("/versions"))
        assert registered == report.versions, "and registered nothing new"

        now = int(time.time() * 1000)
        schema = blueprint.schemas.latest("observation")
        bad_air = [
            observation(value=170.0, event_time=now - 2000),
            observation(value=175.0, event_time=now - 1000),
        ]
        produce(
            settings,
            _input_topic(blueprint),
            [(KEY, codecs.encode(schema, r)) for r in bad_air] + [(KEY, b"not a record")],
        )

        client = SchemaRegistryClient({"url": fake.url})
        consolidated_topic = blueprint.topic_by_role("consolidated").name
        consolidated = _deserialized(
            settings,
            consolidated_topic,
            client,
            lambda rows: any(r["count"] >= 2 and r["scope"] == "ENTITY" for r in rows),
        )
        entity = max((r for r in consolidated if r["scope"] == "ENTITY"), key=lambda r: r["count"])
        assert (entity["count"], entity["sum"], entity["reporter"]) == (2, 345.0, REPORTER)

        alerts = _deserialized(settings, alerts_topic, client, lambda rows: len(rows) >= 1)
        assert alerts[0]["transition"] == "FIRING"
        assert (alerts[0]["indicator"], alerts[0]["station"]) == ("ENV.AQI", "HN-AQ-HOANKIEM")

        # a directive through the worker's API, framed too: the worker reads it (through the registry),
        # applies it, and forwards it to the ministry concerned, framed
        status, answer = direct(settings, AQI_KEY, action="ACKNOWLEDGE", alert_id=alerts[0]["alert_id"])
        assert status == 202, answer
        directive_id = answer["directive_id"]
        [(_, sent)] = raw_records(settings, blueprint.topic_by_role("directives").name)
        assert sent is not None
        assert sent[:1] == b"\x00"
        to_mae = _deserialized(
            settings, blueprint.directives_topic(REPORTER).name, client, lambda r: len(r) >= 1
        )
        assert [d["directive_id"] for d in to_mae] == [directive_id]
        changes = _deserialized(settings, alerts_topic, client, lambda rows: len(rows) >= 2)
        assert (changes[-1]["event_type"], changes[-1]["directive_id"]) == ("ACKNOWLEDGE", directive_id)

        dead_letters = blueprint.dead_letter_topic(REPORTER).name
        [letter] = _deserialized(settings, dead_letters, client, lambda rows: len(rows) >= 1)
        assert (letter["reason"], letter["original"]) == ("undecodable", b"not a record")

        # the project's own readers read the same records through the registry
        resolver = registry.connect(fake.url, blueprint.schemas)
        ours = collect(settings, alerts_topic, "alert", lambda rows: len(rows) >= 1, resolve=resolver)
        assert ours.records[0]["alert_id"] == alerts[0]["alert_id"]
        # the internal topics stay Avro single-object encoded
        internal = raw_records(settings, blueprint.topic_by_role("repartition").name)
        assert internal
        assert all(value[:2] == codecs.SINGLE_OBJECT_MARKER for _, value in internal if value)
