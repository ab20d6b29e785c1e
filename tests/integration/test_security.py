"""Who may do what, on the real secured broker and Redis: authentication, per-reporter ACLs, the Redis
user's limits, the API's tokens and roles, and the audit trail of a directive taken over HTTP."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from pydantic import SecretStr

from stream_app.config.blueprint import Blueprint
from stream_app.kafka import acl
from stream_app.kafka.config import confluent_config
from stream_app.settings import Settings
from stream_app.wire import codecs

from .conftest import as_principal, secured
from .support import (
    api,
    collect,
    direct,
    free_port,
    observation,
    open_aqi_alert,
    produce,
    worker_address,
)


@pytest.fixture(autouse=True)
def _secured_services(base_settings: Settings) -> None:
    if not secured(base_settings):
        pytest.skip("the services do not authenticate (SASL off): nothing to prove here")


@pytest.fixture
def blueprint(blueprint: Blueprint) -> Blueprint:
    """The namespace's topics with every principal's ACLs (the shared fixture grants the app's only)."""
    acl.apply(blueprint)
    return blueprint


def _send(settings: Settings, topic: str, value: bytes = b"{}") -> str | None:
    """Produce one record; the error Kafka answered, or None when it was accepted."""
    outcome: list[str | None] = []
    producer = Producer(confluent_config(settings, **{"log_level": 0, "message.timeout.ms": 10_000}))
    producer.produce(
        topic, value=value, on_delivery=lambda err, _m: outcome.append(err.name() if err else None)
    )
    producer.flush(15)
    return outcome[0] if outcome else "TIMED_OUT"


def _read(settings: Settings, topic: str, group: str, admin: Settings) -> str:
    """Put a record in ``topic`` (as the admin), then try to read it as ``settings``' principal, in
    consumer group ``group`` (under the test's namespace: a principal may use only groups named for it).
    "read" when it could; else the error Kafka answered, or "nothing" (a topic one may not describe is
    simply not there for that principal)."""
    assert _send(admin, topic) is None
    consumer = Consumer(
        confluent_config(settings, **{"group.id": f"{settings.topic_namespace}{group}", "log_level": 0})
    )
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(4)])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is None:
                return "read"
            if error.code() != KafkaError._PARTITION_EOF:
                return str(error.name())
        return "nothing"
    finally:
        consumer.close()


def test_a_client_that_does_not_authenticate_is_refused(settings: Settings, blueprint: Blueprint) -> None:
    topic = blueprint.input_topic("MAE").name
    plain = settings.model_copy(update={"kafka_security_protocol": "SSL"})  # TLS, but who?
    assert _send(plain, topic) is not None
    stranger = settings.model_copy(
        update={"kafka_sasl_username": "mae", "kafka_sasl_password": SecretStr("guess")}
    )
    errors: list[Any] = []
    producer = Producer(confluent_config(stranger, **{"log_level": 0, "error_cb": errors.append}))
    deadline = time.monotonic() + 15
    while not errors and time.monotonic() < deadline:
        producer.poll(0.5)
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors


def test_each_reporter_writes_its_own_topic_and_nothing_else(
    settings: Settings, blueprint: Blueprint
) -> None:
    mae = as_principal(settings, "mae")
    assert _send(mae, blueprint.input_topic("MAE").name) is None, "MAE writes its own input topic"
    refused = {
        "MPS's input topic": blueprint.input_topic("MPS").name,
        "the center's directives": blueprint.topic_by_role("directives").name,
        "the internal topic": blueprint.topic_by_role("repartition").name,
        "the alerts": blueprint.topic_by_role("alerts").name,
    }
    for what, topic in refused.items():
        assert _send(mae, topic) == "TOPIC_AUTHORIZATION_FAILED", what


def test_a_reporter_reads_its_own_dead_letters_only(settings: Settings, blueprint: Blueprint) -> None:
    mae = as_principal(settings, "mae")
    group = "reporter.mae.test"
    assert _read(mae, blueprint.dead_letter_topic("MAE").name, group, settings) == "read"
    assert _read(mae, blueprint.dead_letter_topic("MPS").name, group, settings) != "read"
    assert _read(mae, blueprint.directives_topic("MPS").name, group, settings) != "read"


def test_the_center_and_the_sre_read_and_write_nothing(settings: Settings, blueprint: Blueprint) -> None:
    center, sre = as_principal(settings, "center"), as_principal(settings, "sre")
    assert _read(center, blueprint.topic_by_role("alerts").name, "center.test", settings) == "read"
    assert _send(center, blueprint.input_topic("MAE").name) == "TOPIC_AUTHORIZATION_FAILED"
    assert _read(sre, blueprint.dead_letter_topic("MPS").name, "sre.test", settings) == "read"


def _credentials(principal: str) -> str:
    """The local services' secrets file of a ``User:<name>`` principal (``stream-app`` for the app)."""
    return principal.removeprefix("User:")


def test_only_the_workers_principal_writes_directives_and_audit_as_the_acl_plan_says(
    settings: Settings, blueprint: Blueprint
) -> None:
    """The forged-actor and forged-audit cases: the center's shared credential (and every other
    principal of the plan) can write neither topic; the workers', whose API authenticates people, can."""
    plan = acl.grants(blueprint)
    who = acl.principals(settings, blueprint)
    topics = {role: blueprint.topic_by_role(role).name for role in ("directives", "audit")}
    writers = {
        role: {g.principal for g in plan if g.name == topic and g.operation == "WRITE"}
        for role, topic in topics.items()
    }
    assert writers == {"directives": {who["app"]}, "audit": {who["app"]}}, "the plan: one writer each"
    outcomes = {}
    for name, principal in sorted(who.items()):
        kafka_user = as_principal(settings, _credentials(principal))
        for role, topic in topics.items():
            outcomes[name, role] = _send(kafka_user, topic)
    expected = {
        (name, role): None if principal in writers[role] else "TOPIC_AUTHORIZATION_FAILED"
        for name, principal in who.items()
        for role in topics
    }
    assert outcomes == expected
    assert len(outcomes) == 2 * (3 + len(blueprint.catalogue.reporters))


def test_acl_apply_is_idempotent(settings: Settings, blueprint: Blueprint) -> None:
    assert acl.plan(blueprint).empty, "the fixture applied them: nothing left to do"
    assert acl.apply(blueprint).empty


def test_the_apps_redis_user_touches_its_own_keys_with_its_own_commands(
    settings: Settings, blueprint: Blueprint, app_redis_url: str
) -> None:
    app = redis.Redis.from_url(app_redis_url)
    prefix = settings.redis_key_prefix
    app.hset(f"{prefix}:{{x}}:state", "a", "1")
    assert app.hget(f"{prefix}:{{x}}:state", "a") == b"1"
    for refused in (
        lambda: app.hset("sa:{x}:state", "a", "1"),  # another prefix: production's keys
        app.flushall,
        lambda: app.keys("*"),
        lambda: app.config_get("*"),
        app.acl_list,
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            refused()


def test_the_api_wants_a_token_and_a_directive_wants_an_operator(
    settings: Settings, blueprint: Blueprint, start_worker: Any, start_screen: Any
) -> None:
    start_screen()
    start_worker(settings)
    status, body = api(settings, "/alerts/active", role=None)
    assert (status, body["error"]) == (401, "unauthorized")
    assert api(settings, "/alerts/active", role="viewer")[0] == 200

    # an open VN_AQI alert at Hoàn Kiếm (two consecutive readings at "bad")
    key = open_aqi_alert(settings, blueprint)["alert_key"]
    alerts = blueprint.topic_by_role("alerts").name

    path = f"/alerts/{key.replace('|', '%7C')}/directives"
    status, body = api(settings, path, role="viewer", body={"action": "ACKNOWLEDGE"})
    assert (status, body["error"]) == (403, "forbidden")
    status, body = api(
        settings, path, role="operator", body={"action": "ACKNOWLEDGE", "actor": "someone-else"}
    )
    assert status == 202, body
    assert body["actor"] == "test-operator", "the directive names who authenticated, not what the body claims"

    acknowledged = collect(
        settings, alerts, "alert", lambda r: any(a["event_type"] == "ACKNOWLEDGE" for a in r)
    )
    ack = next(a for a in acknowledged.records if a["event_type"] == "ACKNOWLEDGE")
    assert (ack["alert_key"], ack["acknowledged_by"]) == (key, "test-operator")

    trail = collect(settings, blueprint.topic_by_role("audit").name, "audit", lambda r: len(r) >= 2)
    outcomes = {(a["actor"], a["role"], a["action"], a["outcome"]) for a in trail.records}
    assert ("test-operator", "operator", "directive", "accepted") in outcomes
    assert ("test-viewer", "viewer", "directive", "refused") in outcomes
    accepted = next(a for a in trail.records if a["outcome"] == "accepted")
    assert (accepted["subject"], accepted["details"]["action"]) == (key, "ACKNOWLEDGE")
    assert accepted["details"]["directive_id"] == body["directive_id"]


def test_a_malformed_directive_is_a_400_naming_the_problem(
    settings: Settings, blueprint: Blueprint, start_worker: Any
) -> None:
    start_worker(settings)  # its directive intake, where the screen forwards directives
    status, body = direct(settings, "levels:ENV.AQI|NO.SUCH|01|-", action="COMMENT")
    assert status == 400
    assert "NO.SUCH" in body["detail"]
    status, body = direct(settings, "levels:ENV.AQI|ENV.AQI|01|HN-AQ-HOANKIEM", action="NUKE")
    assert status == 400
    assert "action" in body["detail"]


def test_no_secret_reaches_a_log_line(
    settings: Settings, blueprint: Blueprint, start_worker: Any, worker_env: dict[str, str]
) -> None:
    """A worker at debug level with every kind of secret set, talking to a dead Alertmanager (errors
    name its URL) and asked with a bad token: none of the secrets is in its log."""
    am_password, registry_password, bad_token = "AmS3cret-x9", "RegS3cret-x9", "sat_NotARealToken-x9"
    silent_port = free_port()
    worker = start_worker(
        settings,
        STREAM_APP_LOG_LEVEL="debug",
        STREAM_APP_ALERTMANAGER_URL=f"http://bridge:{am_password}@127.0.0.1:{silent_port}",
        STREAM_APP_ALERTMANAGER_RESEND_S="1",
        STREAM_APP_SCHEMA_REGISTRY_URL="mock://secured",
        STREAM_APP_OUTPUT_FRAMING="single_object",  # a mock registry's ids: in the worker's process only
        STREAM_APP_SCHEMA_REGISTRY_AUTH=f"registry:{registry_password}",
    )
    schema = blueprint.schemas.latest("observation")
    now = int(time.time() * 1000)
    readings = [
        (b"HN-AQ-HOANKIEM", codecs.encode(schema, observation(value=v, event_time=now - (3 - i) * 60_000)))
        for i, v in enumerate((180.0, 190.0))
    ]
    produce(settings, blueprint.input_topic("MAE").name, readings)
    collect(settings, blueprint.topic_by_role("alerts").name, "alert", lambda r: len(r) >= 1)
    request = urllib.request.Request(  # noqa: S310 - http to the local worker
        f"{worker_address(settings)}/api/v1/alerts/x/directives",  # what a worker still takes
        data=b'{"action": "COMMENT"}',
        headers={"Authorization": f"Bearer {bad_token}", "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError, match="401"):
        urllib.request.urlopen(request, timeout=5)  # noqa: S310 - http to the local worker

    time.sleep(4)  # the bridge fails to post a few times, with its URL in the error
    worker.stop()
    log = worker.log()
    assert "alertmanager" in log.lower(), "the bridge ran and logged"
    secrets = {
        "the SASL password": worker_env["STREAM_APP_KAFKA_SASL_PASSWORD"],
        "the Redis password": urlsplit(worker_env["STREAM_APP_REDIS_URL"]).password or "",
        "the Alertmanager password": am_password,
        "the registry password": registry_password,
        "a bearer token": bad_token,
    }
    for what, secret in secrets.items():
        assert secret
        assert secret not in log, f"{what} is in the worker's log"
