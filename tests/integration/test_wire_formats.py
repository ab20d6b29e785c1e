"""The wire formats end to end: a real worker process, real Kafka topics, real Redis, the real schema
registry of the local services (Apicurio, Confluent's API).

In: Avro single-object records written with observation v1 and with v2, and a JSON document, all reach
the consolidated topic; a Confluent-framed record the worker cannot resolve is dead-lettered as
``unknown_schema`` with its original bytes; one whose schema a reporter's Confluent serializer found in
the registry is accepted.

Out: with the default framing (Confluent), every public topic the worker writes (consolidated, alerts,
domain and active alerts, the briefing, dead letters, directives, the directives' dead letters, audit)
is read by Confluent's own ``SchemaRegistryClient`` + ``AvroDeserializer``, which know nothing of this
project but the registry's address. The ids are resolved once, at start-up: an unreachable registry is
waited out (the worker not ready meanwhile), and once running the worker never asks it again.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from stream_app.config.blueprint import Blueprint
from stream_app.kafka import subjects
from stream_app.kafka.config import confluent_config
from stream_app.settings import Settings
from stream_app.tools.launch import READY_LINE
from stream_app.wire import codecs

from .support import (
    all_to_the_end,
    collect,
    direct,
    observation,
    produce,
    to_the_end,
    wait_settled,
    wait_until,
)

REPORTER = "MAE"
KEY = b"HN-AQ-HOANKIEM"
AQI_KEY = "levels:ENV.AQI|ENV.AQI|01|HN-AQ-HOANKIEM"
NOT_A_DIRECTIVE = b"no directive"  # written to center.directives by the test, dead-lettered by the worker


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
    # the inputs are the subject here: outputs self-describing (no registry at all with "none")
    start_worker(settings, STREAM_APP_OUTPUT_FRAMING="single_object", **extra_env)
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
    # once every record is consumed (the worker dead-letters before it commits), rather than 2 s more
    wait_settled(settings, blueprint, REPORTER)
    late = to_the_end(settings, blueprint.dead_letter_topic(REPORTER).name)
    assert len(late) == 1, "only the Confluent-framed record is dead-lettered"


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


# --- Confluent framing (the default) against the real registry ---------------------------------


@pytest.fixture
def confluent_client(settings: Settings) -> Iterator[SchemaRegistryClient]:
    """Confluent's own client for the local services' registry, configured as a subscriber would: its
    address and the CA its certificate is checked against. Skips without one."""
    url = (settings.schema_registry_url or "").strip()
    if not url or url.startswith("mock://"):
        pytest.skip("no schema registry (STREAM_APP_SCHEMA_REGISTRY_URL): run `deploy/local/services up`")
    conf = {"url": url}
    if settings.schema_registry_ca_file is not None:
        conf["ssl.ca.location"] = str(settings.schema_registry_ca_file)
    with SchemaRegistryClient(conf) as client:
        yield client


def _public_topics(blueprint: Blueprint) -> dict[str, list[str]]:
    """The topics the worker writes in Confluent framing, by role."""
    out: dict[str, list[str]] = {}
    for topic in blueprint.topics:
        if topic.role in subjects.SUBJECT_OF_ROLE:
            out.setdefault(topic.role, []).append(topic.name)
    return out


def _empty_roles(settings: Settings, roles: dict[str, list[str]]) -> set[str]:
    """The roles none of whose topics holds a record yet (watermarks: no group, no waiting)."""
    consumer = Consumer({**confluent_config(settings), "group.id": "unused", "log_level": 0})
    try:
        holding = set()
        for topic in (t for names in roles.values() for t in names):
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            if any(consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1] for p in partitions):
                holding.add(topic)
    finally:
        consumer.close()
    return {role for role, names in roles.items() if not holding & set(names)}


def _deserialized(
    settings: Settings, topic: str, client: SchemaRegistryClient, sent: bytes, read: list[Any] | None = None
) -> list[dict[str, Any]]:
    """``topic``'s records to its end now (or its messages ``read`` already), as a plain Confluent consumer
    reads them; each the worker wrote must be Confluent-framed (tombstones, and the test's own ``sent``,
    skipped)."""
    deserialize = AvroDeserializer(client)
    out = []
    for message in to_the_end(settings, topic) if read is None else read:
        value = message.value()
        if value is None or value == sent:
            continue
        assert value[:1] == b"\x00", f"{topic}: not Confluent-framed: {value[:12]!r}"
        out.append(deserialize(value, SerializationContext(topic, MessageField.VALUE)))
    return out


def test_every_public_topic_is_read_by_confluents_deserializer_through_the_real_registry(
    settings: Settings,
    blueprint: Blueprint,
    start_worker: Any,
    confluent_client: SchemaRegistryClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STREAM_APP_OUTPUT_FRAMING", raising=False)  # the default
    client = confluent_client
    # the deployment step (`stream-app schemas register`, as `deploy/local/services up` runs it): the
    # reporters' input subjects; the worker looks its own outputs' ids up, or registers them
    subjects.register(client, subjects.registered_subjects(blueprint), "local registry")
    # the day's briefing at the briefing timer's first tick, a second after start (the timer runs every
    # tick interval, at most a minute: 30 s by default, waited for here in vain)
    worker = start_worker(settings, STREAM_APP_BRIEFING_TIME="00:00", STREAM_APP_TICK_INTERVAL_S="1")
    assert '"output_framing": "confluent"' in worker.log()

    # a reporter with Confluent's serializer: the schema is the registry's, looked up, never registered
    mae = _input_topic(blueprint)
    serializer = AvroSerializer(
        client,
        subjects.registry_text(blueprint.schemas.latest("observation")),
        conf={"auto.register.schemas": False, "use.latest.version": False},
    )
    context = SerializationContext(mae, MessageField.VALUE)
    now = int(time.time() * 1000)
    bad_air = [
        serializer(observation(value=v, event_time=now - (3 - i) * 1000), context)
        for i, v in enumerate((170.0, 175.0))
    ]
    unknown = _confluent_framed(blueprint, 2**31 - 7, observation(value=90.0, event_time=now))
    produce(settings, mae, [(KEY, v) for v in bad_air if v is not None] + [(KEY, unknown), (KEY, b"junk")])

    fired = collect(settings, blueprint.topic_by_role("alerts").name, "alert", lambda r: len(r) >= 1)
    status, answer = direct(settings, AQI_KEY, action="ACKNOWLEDGE", alert_id=fired.records[0]["alert_id"])
    assert status == 202, answer
    produce(settings, blueprint.topic_by_role("directives").name, [(AQI_KEY.encode(), NOT_A_DIRECTIVE)])

    roles = _public_topics(blueprint)
    wait_until(lambda: not _empty_roles(settings, roles), 45, "a record on every public topic")
    messages = all_to_the_end(settings, [t for names in roles.values() for t in names])
    read = {
        role: [r for t in names for r in _deserialized(settings, t, client, NOT_A_DIRECTIVE, messages[t])]
        for role, names in roles.items()
    }

    consolidated = max((r for r in read["consolidated"] if r["scope"] == "ENTITY"), key=lambda r: r["count"])
    assert (consolidated["count"], consolidated["sum"], consolidated["reporter"]) == (2, 345.0, REPORTER)
    firing = read["alerts"][0]
    assert (firing["transition"], firing["indicator"], firing["station"]) == (
        "FIRING",
        "ENV.AQI",
        KEY.decode(),
    )
    assert firing["alert_id"] in {a["alert_id"] for a in read["domain_alerts"]}
    assert firing["alert_id"] in {a["alert_id"] for a in read["active_alerts"]}
    directive_id = answer["directive_id"]
    assert [d["directive_id"] for d in read["directives"]] == [directive_id]
    assert [d["directive_id"] for d in read["reporter_directives"]] == [directive_id]
    assert any(a["event_type"] == "ACKNOWLEDGE" for a in read["alerts"])
    letters = {d["reason"]: d for d in read["dead_letter"]}
    assert letters["unknown_schema"]["original"] == unknown
    assert f"schema id {2**31 - 7}" in letters["unknown_schema"]["message"]
    assert letters["undecodable"]["original"] == b"junk"
    assert len(read["dead_letter"]) == 2, "the reporter's Confluent-framed readings were accepted"
    assert read["directives_dead_letter"][0]["original"] == NOT_A_DIRECTIVE
    assert any(a["action"] == "directive" and a["outcome"] for a in read["audit"]), read["audit"]
    assert read["briefings"][0]["briefing_id"].startswith("briefing-")
    # the internal topics stay Avro single-object encoded
    # (read to its end as it is now: the readings went through it before they were consolidated)
    internal = [m.value() for m in to_the_end(settings, blueprint.topic_by_role("repartition").name)]
    assert internal
    assert all(value[:2] == codecs.SINGLE_OBJECT_MARKER for value in internal if value)


class RegistryProxy:
    """A TCP proxy in front of the real registry that can be cut: while cut it accepts each connection
    and closes it at once (the registry "down"); ``connections`` counts every one a client opened."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.forwarding = False
        self.connections = 0
        self._open: list[socket.socket] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:  # closed
                return
            self.connections += 1
            if not self.forwarding:
                client.close()
                continue
            upstream = socket.create_connection(self.target, timeout=5)
            self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        self.forwarding = False
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.close()
        self._open.clear()

    def close(self) -> None:
        self.cut()
        self._server.close()


def test_a_registry_outage_at_start_up_is_waited_out_and_a_running_worker_never_needs_it(
    settings: Settings,
    blueprint: Blueprint,
    start_worker: Any,
    confluent_client: SchemaRegistryClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STREAM_APP_OUTPUT_FRAMING", raising=False)  # the default: confluent
    real = urlsplit(str(settings.schema_registry_url))
    proxy = RegistryProxy((real.hostname or "127.0.0.1", real.port or 443))
    try:
        through_proxy = real._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()
        worker = start_worker(
            settings,
            wait=False,
            STREAM_APP_SCHEMA_REGISTRY_URL=through_proxy,
            STREAM_APP_STARTUP_TIMEOUT_S="2",  # an outage longer than this is waited out all the same
            STREAM_APP_RETRY_MAX_S="0.5",
        )
        worker.wait_for_line("schema_registry_waiting", 30)
        time.sleep(3)  # past STREAM_APP_STARTUP_TIMEOUT_S: still waiting, not exited, not ready
        assert worker.alive(), worker.log_tail()
        assert worker.log().count("schema_registry_waiting") >= 2
        assert READY_LINE not in worker.log()
        with pytest.raises(urllib.error.URLError):  # nothing serves /readyz before the ids are known
            urllib.request.urlopen(f"http://{settings.web_host}:{settings.web_port}/readyz", timeout=2)

        proxy.forwarding = True  # the registry is back
        worker.wait_ready()
        schema = blueprint.schemas.latest("observation")
        now = int(time.time() * 1000)
        alerts = blueprint.topic_by_role("alerts").name
        readings = enumerate((170.0, 175.0))
        bad_air = [observation(value=v, event_time=now - (3 - i) * 1000) for i, v in readings]
        produce(settings, _input_topic(blueprint), [(KEY, codecs.encode(schema, r)) for r in bad_air])
        wait_until(lambda: _empty_roles(settings, {"alerts": [alerts]}) == set(), 30, "an alert")

        proxy.cut()  # and gone again: the running worker never asks it
        asked = proxy.connections
        later = [observation(value=v, event_time=now + i * 1000) for i, v in enumerate((20.0, 21.0, 22.0))]
        produce(settings, _input_topic(blueprint), [(KEY, codecs.encode(schema, r)) for r in later])
        consolidated = blueprint.topic_by_role("consolidated").name

        def entity_count() -> int:
            records = _deserialized(settings, consolidated, confluent_client, b"")
            return max((r["count"] for r in records if r["scope"] == "ENTITY"), default=0)

        wait_until(lambda: entity_count() >= 5, 30, "the readings applied with the registry gone")
        framed = _deserialized(settings, alerts, confluent_client, b"")
        assert [a["transition"] for a in framed if a["station"] == KEY.decode()][:1] == ["FIRING"]
        assert proxy.connections == asked, "the running worker opened no connection to the registry"
        assert worker.alive()
    finally:
        proxy.close()
