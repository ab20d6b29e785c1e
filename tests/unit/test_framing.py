"""Outputs in Confluent framing, the registry's subjects and ``stream-app schemas register``, without Kafka:
against confluent_kafka's in-process mock registry (``mock://``) and against a small HTTP registry fake
(``tests/registry_fake.py``) through the real registry client."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from stream_app.agents.directives import Router
from stream_app.api import audit
from stream_app.config.blueprint import Blueprint, load_blueprint
from stream_app.config.topics import ROLES
from stream_app.domain.reasons import Reason
from stream_app.domain.records import DeadLetterRecord
from stream_app.exceptions import ConfigurationError, ServiceUnreachableError
from stream_app.exit_codes import ExitCode
from stream_app.kafka import registry
from stream_app.kafka.dead_letters import Letter
from stream_app.kafka.publisher import PUBLISH_OBSERVERS, Output, Publisher
from stream_app.kafka.subjects import (
    INPUT_ROLES,
    INTERNAL_ROLES,
    SUBJECT_OF_ROLE,
    framed_subjects,
    output_framing,
    register,
    register_from_settings,
    registered_subjects,
    registry_text,
    subject_name,
)
from stream_app.settings import Settings
from stream_app.tools import dlq
from stream_app.tools.cli import main
from stream_app.wire import codecs
from stream_app.wire.codecs import DecodeError
from stream_app.wire.framing import (
    SINGLE_OBJECT_FRAMING,
    ConfluentFraming,
    UnframedOutputError,
)
from stream_app.wire.schema_check import sample_records
from tests.registry_fake import FakeRegistry
from tests.unit.producers import AckingProducer, ProducerSender


def _mock_url() -> str:
    return f"mock://framing-{uuid.uuid4().hex}"


def _blueprint(**settings: Any) -> Blueprint:
    # the repository's data files, whatever STREAM_APP_* the developer's shell holds
    return load_blueprint(Settings.model_construct(**settings))


def _confluent(url: str | None = None, **settings: Any) -> Blueprint:
    return _blueprint(output_framing="confluent", schema_registry_url=url or _mock_url(), **settings)


def _record(bp: Blueprint, subject: str, index: int = 0) -> dict[str, Any]:
    records: list[dict[str, Any]] = sample_records(bp.schemas.latest(subject), 3, seed=index)
    return records[index]


def _dead_letter(bp: Blueprint) -> DeadLetterRecord:
    """``_record(bp, "dead_letter")``, as the publisher's letters carry it."""
    records: list[DeadLetterRecord] = sample_records(bp.schemas.latest("dead_letter"), 3, seed=0)
    return records[0]


def _deserialize(client: Any, topic: str, value: bytes) -> Any:
    """What a plain Confluent consumer gets: confluent_kafka's AvroDeserializer, no reader schema."""
    return AvroDeserializer(client)(value, SerializationContext(topic, MessageField.VALUE))


# --- which topics, which subjects ----------------------------------------------------------------


def test_every_topic_role_is_framed_internal_or_input_and_only_one() -> None:
    framed, inputs = set(SUBJECT_OF_ROLE), set(INPUT_ROLES)
    assert framed | INTERNAL_ROLES | inputs == ROLES
    assert not framed & INTERNAL_ROLES
    assert not framed & inputs
    assert not INTERNAL_ROLES & inputs


def test_subjects_follow_the_topic_name_strategy_with_every_local_version_in_order() -> None:
    bp = _blueprint(topic_namespace="t42.")
    subjects = {s.name: s for s in framed_subjects(bp)}
    alerts = subjects["t42.center.alerts-value"]
    assert alerts.topic == "t42.center.alerts" == bp.topic_by_role("alerts").name
    assert [v.file_name for v in alerts.versions] == ["alert.v1.avsc", "alert.v2.avsc"]
    assert [v.file_name for v in subjects["t42.center.consolidated-value"].versions] == [
        "consolidated.v1.avsc",
        "consolidated.v2.avsc",
    ]
    assert subjects["t42.reporter.mae.dlq-value"].versions[-1].subject == "dead_letter"
    assert subjects["t42.reporter.mae.directives-value"].versions[-1].subject == "directive"
    assert subjects["t42.center.audit-value"].versions[-1].subject == "audit"
    internal = {t.name for t in bp.topics if t.role in INTERNAL_ROLES}
    assert internal
    assert not internal & {s.topic for s in subjects.values()}
    assert not any(s.topic == bp.input_topic("MAE").name for s in subjects.values())
    # `schemas register` adds the reporters' input topics, for their Confluent serializers
    every = {s.name: s for s in registered_subjects(bp)}
    assert set(subjects) < set(every)
    assert every[subject_name(bp.input_topic("MAE").name)].versions[-1].subject == "observation"
    assert {v.subject for s in every.values() for v in s.versions} == {
        "alert",
        "audit",
        "briefing",
        "consolidated",
        "dead_letter",
        "directive",
        "observation",
    }


# --- the framing -------------------------------------------------------------------------------


def test_confluent_is_the_default_and_single_object_a_setting_that_needs_no_registry() -> None:
    assert Settings.model_fields["output_framing"].default == "confluent"
    bp = _blueprint(output_framing="single_object")
    framing = output_framing(bp, client=object())  # never asked
    assert framing is SINGLE_OBJECT_FRAMING
    value = codecs.encode(bp.schemas.latest("alert"), _record(bp, "alert"))
    assert framing.frame(bp.topic_by_role("alerts").name, value) is value
    assert framing.resolve(1) is None


def test_confluent_framing_needs_a_registry() -> None:
    bp = _blueprint(output_framing="confluent", schema_registry_url=None)
    with pytest.raises(ConfigurationError, match="STREAM_APP_SCHEMA_REGISTRY_URL"):
        output_framing(bp)


def test_public_outputs_are_confluent_framed_and_read_by_a_confluent_deserializer() -> None:
    url = _mock_url()
    bp = _confluent(url)
    framing = output_framing(bp)
    assert isinstance(framing, ConfluentFraming)
    client = registry.new_client(url)  # the same in-process registry: mock://<name> is one per process
    for role, subject in [("alerts", "alert"), ("consolidated", "consolidated"), ("audit", "audit")]:
        topic = bp.topic_by_role(role).name
        latest = bp.schemas.latest(subject)
        record = _record(bp, subject)
        single = codecs.encode(latest, record)
        framed = framing.frame(topic, single)
        assert framed is not None
        registered = client.lookup_schema(f"{topic}-value", Schema(registry_text(latest), "AVRO"))
        assert framed[:5] == b"\x00" + registered.schema_id.to_bytes(4, "big")
        assert framed[5:] == single[10:], "the same Avro body"
        assert framing.encode(topic, latest, record) == framed
        expected = codecs.decode(bp.schemas, subject, single)
        assert _deserialize(client, topic, framed) == expected
        # the project's own readers: with the worker's ids, or through the registry
        assert codecs.decode(bp.schemas, subject, framed, framing.resolve) == expected
        assert codecs.decode(bp.schemas, subject, framed, registry.connect(url, bp.schemas)) == expected
    # every local version, in order: the registry's history is the repository's
    alerts = subject_name(bp.topic_by_role("alerts").name)
    for version in bp.schemas.by_subject["alert"]:
        assert client.lookup_schema(alerts, Schema(registry_text(version), "AVRO")).version == version.version


def test_internal_topics_tombstones_and_unframeable_records() -> None:
    bp = _confluent()
    framing = output_framing(bp)
    assert isinstance(framing, ConfluentFraming)
    internal = bp.topic_by_role("repartition").name
    tick = codecs.encode(bp.schemas.latest("tick"), {"partition": 0, "now": 1, "source": "test"})
    assert framing.frame(internal, tick) is tick
    assert internal not in framing.topics
    alerts = bp.topic_by_role("alerts").name
    assert framing.frame(bp.topic_by_role("active_alerts").name, None) is None
    with pytest.raises(UnframedOutputError, match="no id under the topic's subject"):
        framing.frame(alerts, tick)
    with pytest.raises(UnframedOutputError, match="not Avro single-object"):
        framing.frame(alerts, b'{"json": true}')
    # an older local version is framed too (records forwarded as they came, during a rolling upgrade)
    v1 = bp.schemas.version("alert", 1)
    assert framing.schema_id(alerts, v1) is not None
    assert framing.schema_id(alerts, v1) != framing.schema_id(alerts, bp.schemas.latest("alert"))


def test_a_confluent_record_is_read_only_with_a_resolver() -> None:
    bp = _confluent()
    framing = output_framing(bp)
    topic = bp.topic_by_role("alerts").name
    framed = framing.encode(topic, bp.schemas.latest("alert"), _record(bp, "alert"))
    with pytest.raises(DecodeError, match=r"Confluent-framed record .* no registry configured") as info:
        codecs.decode(bp.schemas, "alert", framed)
    assert info.value.reason == Reason.UNKNOWN_SCHEMA
    with pytest.raises(DecodeError) as info:
        codecs.decode(bp.schemas, "consolidated", framed, framing.resolve)
    assert info.value.reason == Reason.SCHEMA_MISMATCH
    with pytest.raises(DecodeError) as info:
        codecs.decode(bp.schemas, "alert", b"\x00\x00\x00\x99\x99" + framed[5:], framing.resolve)
    assert info.value.reason == Reason.UNKNOWN_SCHEMA


def test_a_topic_holding_both_framings_is_read_whole_by_the_first_byte() -> None:
    bp = _confluent()
    framing = output_framing(bp)
    topic = bp.topic_by_role("alerts").name
    alert = bp.schemas.latest("alert")
    before, after = _record(bp, "alert", 0), _record(bp, "alert", 1)
    # a change-over: records of a single_object worker, then of a confluent one, on one topic
    topic_holds = [codecs.encode(alert, before), framing.encode(topic, alert, after)]
    assert [value[:2] for value in topic_holds] == [b"\xc3\x01", b"\x00" + topic_holds[1][1:2]]
    read = [codecs.decode(bp.schemas, "alert", value, framing.resolve) for value in topic_holds]
    assert read == [
        codecs.decode(bp.schemas, "alert", codecs.encode(alert, record)) for record in (before, after)
    ]


# --- start-up: waiting for the registry, and one that refuses ----------------------------------


def test_start_up_waits_for_an_unreachable_registry_then_stops() -> None:
    with FakeRegistry() as fake:
        fake.unavailable = True
        bp = _confluent(fake.url, startup_timeout_s=5.0, retry_initial_s=1.0, retry_max_s=2.0)
        now, sleeps = [0.0], []

        def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            now[0] += seconds

        client = registry.new_client(fake.url, **{"max.retries": 0})
        with pytest.raises(ServiceUnreachableError, match="schema registry unreachable at http://127"):
            output_framing(bp, client=client, sleep=sleep, clock=lambda: now[0])
        assert sleeps == [1.0, 2.0, 2.0]
        assert fake.versions(f"{bp.topic_by_role('alerts').name}-value") == []


def test_start_up_goes_on_once_the_registry_answers() -> None:
    with FakeRegistry() as fake:
        fake.unavailable = True
        bp = _confluent(fake.url, retry_initial_s=0.5)
        sleeps: list[float] = []

        def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            fake.unavailable = len(sleeps) < 2

        framing = output_framing(bp, client=registry.new_client(fake.url, **{"max.retries": 0}), sleep=sleep)
        assert sleeps == [0.5, 1.0]
        assert isinstance(framing, ConfluentFraming)
        assert framing.topics == {s.topic for s in framed_subjects(bp)}


def test_a_worker_waits_out_a_registry_outage_past_the_start_up_timeout() -> None:
    with FakeRegistry() as fake:
        fake.unavailable = True
        bp = _confluent(fake.url, startup_timeout_s=5.0, retry_initial_s=1.0, retry_max_s=2.0)
        now, sleeps = [0.0], []

        def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            now[0] += seconds
            fake.unavailable = now[0] < 60  # a minute's outage: far past STREAM_APP_STARTUP_TIMEOUT_S

        client = registry.new_client(fake.url, **{"max.retries": 0})
        framing = output_framing(bp, wait_out=True, client=client, sleep=sleep, clock=lambda: now[0])
        assert isinstance(framing, ConfluentFraming)
        assert now[0] >= 60
        assert max(sleeps) == 2.0, "backing off, never more than STREAM_APP_RETRY_MAX_S apart"


class _Refusing:
    """A registry that knows nothing and refuses every registration as incompatible."""

    def lookup_schema(self, subject: str, schema: Any) -> Any:
        raise SchemaRegistryError(404, 40401, f"Subject '{subject}' not found.")

    def register_schema(self, subject: str, schema: Any) -> int:
        raise SchemaRegistryError(409, 409, "Schema being registered is incompatible with an earlier schema")


def test_a_registry_refusing_a_version_stops_start_up_at_once() -> None:
    bp = _confluent()

    def no_retry(seconds: float) -> None:
        pytest.fail(f"retried after {seconds}s: a refused version is no outage")

    with pytest.raises(ConfigurationError, match=r"cannot register alert\.v1\.avsc under .*incompatible"):
        output_framing(bp, client=_Refusing(), sleep=no_retry)


class _Racing:
    """A registry that another process fills between this one's look-up and its registration: the
    registration is refused with 409 ("already exists", as Apicurio answers), the look-up after finds it."""

    def __init__(self) -> None:
        self.ids: dict[tuple[str, str], int] = {}
        self.races = 0

    def lookup_schema(self, subject: str, schema: Any) -> Any:
        found = self.ids.get((subject, schema.schema_str))
        if found is None:
            raise SchemaRegistryError(404, 40403, "Schema not found")
        return SimpleNamespace(schema_id=found)

    def register_schema(self, subject: str, schema: Any) -> int:
        self.ids[(subject, schema.schema_str)] = 100 + len(self.ids)  # the other process's
        self.races += 1
        raise SchemaRegistryError(409, 409, f"An artifact with ID '{subject}' already exists.")


def test_a_version_registered_meanwhile_by_another_process_is_looked_up_again() -> None:
    racing = _Racing()
    framing = output_framing(_confluent(), client=racing, sleep=lambda s: pytest.fail("no outage"))
    assert isinstance(framing, ConfluentFraming)
    assert racing.races == len(racing.ids) > 0  # every version raced, every one resolved


# --- where records leave: the publisher, the command-line writers, the readers -------------------


def test_the_publisher_frames_every_public_output_and_leaves_internal_ones() -> None:
    bp = _confluent()
    framing = output_framing(bp)
    producer = AckingProducer()
    dead_letter = bp.schemas.latest("dead_letter")
    publisher = Publisher(ProducerSender(producer), bp.settings, dead_letter, framing)
    alerts, internal = bp.topic_by_role("alerts").name, bp.topic_by_role("repartition").name
    alert = codecs.encode(bp.schemas.latest("alert"), _record(bp, "alert"))
    tick = codecs.encode(bp.schemas.latest("tick"), {"partition": 0, "now": 1, "source": "test"})
    letter = Letter(bp.dead_letter_topic("MAE").name, b"k", _dead_letter(bp))
    observed: list[bytes | None] = []
    PUBLISH_OBSERVERS[alerts] = lambda output: observed.append(output.value)
    try:
        refused = asyncio.run(
            publisher.publish([Output(alerts, b"k", alert), Output(internal, b"k", tick)], [letter])
        )
    finally:
        del PUBLISH_OBSERVERS[alerts]
    assert refused == []
    sent = producer.values()
    framed_alert = sent[alerts]
    assert framed_alert == framing.frame(alerts, alert)
    assert framed_alert is not None
    assert framed_alert[0] == 0
    assert sent[internal] == tick
    framed_letter = sent[letter.topic]
    assert framed_letter is not None
    assert framed_letter[0] == 0
    assert (
        codecs.decode(bp.schemas, "dead_letter", framed_letter, framing.resolve)["reason"]
        == letter.record["reason"]
    )
    assert observed == [alert], "the publish observers see the single-object record"


def test_the_cli_audit_record_is_framed_as_the_settings_say() -> None:
    bp = _confluent()
    record = audit.event(actor="t", action="acl_apply", subject="cluster", outcome="applied", source="cli")
    topic, _, single = audit.encode(bp, record)
    assert single[:2] == codecs.SINGLE_OBJECT_MARKER, "a worker's publisher frames it when it sends"
    _, _, framed = audit.encode(bp, record, output_framing(bp, topics=[topic]))
    assert framed[0] == 0
    assert codecs.decode(bp.schemas, "audit", framed, output_framing(bp).resolve) == codecs.decode(
        bp.schemas, "audit", single
    )


def test_the_directives_agent_and_dlq_inspect_read_confluent_framing() -> None:
    url = _mock_url()
    bp = _confluent(url)
    framing = output_framing(bp)
    directives = bp.topic_by_role("directives").name
    record = {
        "directive_id": "dir-1",
        "alert_key": "levels:ENV.AQI|ENV.AQI|01|HN-AQ-HOANKIEM",
        "alert_id": "alr-1",
        "reporter": "MAE",
        "action": "ACKNOWLEDGE",
        "actor": "truc-ban-1",
        "assignee": None,
        "comment": "Đã tiếp nhận",
        "issued_at": 1_730_419_200_000,
        "due_at": None,
        "token_id": "0123456789ab",
        "writer": f"User:{bp.settings.acl_app_user}",
    }
    framed = framing.encode(directives, bp.schemas.latest("directive"), record)
    assert framed[0] == 0
    router = Router(bp, publisher=None)  # type: ignore[arg-type]
    assert router.confluent is not None
    asyncio.run(router.confluent.prefetch([framed]))  # off the event loop, as the agent does
    routed = router._route_one(SimpleNamespace(value=framed, timestamp=None, topic=directives), 0)
    assert isinstance(routed, Output), routed
    # re-keyed onto the internal topic, single-object encoded
    assert routed.value is not None
    assert routed.value[:2] == codecs.SINGLE_OBJECT_MARKER
    assert codecs.decode(bp.schemas, "directive", routed.value)["comment"] == "Đã tiếp nhận"
    letter = framing.encode(
        bp.dead_letter_topic("MAE").name, bp.schemas.latest("dead_letter"), _record(bp, "dead_letter")
    )
    decoded = dlq._decoded(bp, letter, registry.from_settings(bp.settings, bp.schemas))
    assert decoded is not None
    assert decoded["reason"] == _record(bp, "dead_letter")["reason"]


# --- stream-app schemas register ---------------------------------------------------------------


def _lines(out: str, first_word: str) -> list[str]:
    return [line for line in out.splitlines() if line.split()[:1] == [first_word]]


def test_schemas_register_against_the_mock_registry_sets_full_transitive_and_is_idempotent(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREAM_APP_TOPIC_NAMESPACE", "u7.")
    monkeypatch.delenv("STREAM_APP_SCHEMA_REGISTRY_URL", raising=False)
    url = _mock_url()
    assert main(["schemas", "register", "--registry", url]) == 0
    out = capsys.readouterr().out
    bp = _blueprint(topic_namespace="u7.")
    subjects = registered_subjects(bp)
    versions = sum(len(s.versions) for s in subjects)
    registered = _lines(out, "registered")
    assert len(registered) == versions
    assert not _lines(out, "exists")
    assert len(_lines(out, "compatibility")) == len(subjects)
    client = registry.new_client(url)
    printed = {
        (line.split()[1], line.split()[2]): int(line.split()[3].removeprefix("id=")) for line in registered
    }
    for subject in subjects:
        assert subject.name.startswith("u7.")
        assert client.get_compatibility(subject.name) == "FULL_TRANSITIVE"
        for version in subject.versions:
            found = client.lookup_schema(subject.name, Schema(registry_text(version), "AVRO"))
            assert printed[(subject.name, f"v{version.version}")] == found.schema_id
            assert found.version == version.version, "registered oldest first"
    assert f"{len(subjects)} subjects, {versions} subject versions" in out
    assert (
        out.strip()
        .splitlines()[-1]
        .endswith(f"{versions} registered; compatibility set to FULL_TRANSITIVE on {len(subjects)}")
    )

    assert main(["schemas", "register", "--registry", url]) == 0
    again = capsys.readouterr().out
    assert not _lines(again, "registered")
    assert not _lines(again, "compatibility")
    assert len(_lines(again, "exists")) == versions
    assert "nothing new registered" in again
    assert {
        (line.split()[1], line.split()[2]): int(line.split()[3].removeprefix("id="))
        for line in _lines(again, "exists")
    } == printed


def test_schemas_register_needs_a_registry(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("STREAM_APP_SCHEMA_REGISTRY_URL", raising=False)
    assert main(["schemas", "register"]) == ExitCode.USAGE
    assert "--registry" in capsys.readouterr().err


def test_schemas_register_over_http_then_a_worker_start_up_registers_nothing_new(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def registrations(fake: FakeRegistry) -> int:
        return sum(1 for m, path in fake.state.requests if m == "POST" and path.endswith("/versions"))

    with FakeRegistry() as fake:
        bp = _confluent(fake.url)
        out = "\n".join(register_from_settings(bp, fake.url).lines)  # the real registry client, over HTTP
        subjects = registered_subjects(bp)
        versions = sum(len(s.versions) for s in subjects)
        assert len(_lines(out, "registered")) == versions == registrations(fake)
        assert fake.count("PUT", "/config/") == len(subjects)
        assert all(fake.compatibility(s.name) == "FULL_TRANSITIVE" for s in subjects)
        alerts = subject_name(bp.topic_by_role("alerts").name)
        health = subject_name(bp.domain_alerts_topic("health").name)
        assert len(fake.versions(alerts)) == 2
        assert fake.versions(alerts) == fake.versions(health), "one schema, one id, whatever the subject"

        # run again, then a worker's start-up: both only look up
        assert register(registry.new_client(fake.url), subjects, "fake").registered == 0
        framing = output_framing(bp)
        assert isinstance(framing, ConfluentFraming)
        assert registrations(fake) == versions
        assert fake.count("PUT", "/config/") == len(subjects)
        latest = bp.schemas.latest("alert")
        assert framing.schema_id(bp.topic_by_role("alerts").name, latest) == fake.versions(alerts)[-1]
