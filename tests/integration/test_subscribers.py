"""Proof from outside this project's Python: clients that know nothing of it but the broker's client
settings and the schema registry's address produce observations a worker accepts and decode the alert
it raises (docs/contracts.md, "Subscribing" and "Producing").

- ``clients/java``: kafka-clients and Apache Avro from Maven Central, with a small serde for Confluent's
  framing that asks the registry's Confluent API (``GET /schemas/ids/{id}``); built once per session
  with ``mvn package`` (offline when the local Maven repository already has everything);
- ``clients/python``: Confluent's ``AvroSerializer`` / ``AvroDeserializer`` and ``SchemaRegistryClient``,
  run as separate processes without this project on their path.

On the secured local services (SASL_SSL with SCRAM, TLS with the local CA for Kafka and the registry)
the producers write as the reporter MAE and the subscribers read as the center, each with only the
grants ``stream-app acl apply`` gives it; the worker writes Confluent-framed outputs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from stream_app.config.blueprint import Blueprint
from stream_app.kafka import acl, registry, subjects
from stream_app.settings import REPO_ROOT, Settings

from .conftest import principal_env, secured
from .support import collect, observation

JAVA_CLIENTS = REPO_ROOT / "clients" / "java"
PYTHON_CLIENTS = REPO_ROOT / "clients" / "python"
REPORTER = "MAE"
STATION = "HN-AQ-HOANKIEM"


@pytest.fixture(scope="session")
def java_classpath() -> str:
    """The Java examples built (``mvn package``), as a class path; skipped only without Maven."""
    mvn = shutil.which("mvn")
    if mvn is None:
        pytest.skip("mvn not found: the Java client examples (clients/java) need Maven and a JDK 17")
    build = [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(JAVA_CLIENTS / "pom.xml"), "package"]
    # offline first: a second build needs nothing from Maven Central; a first one downloads it
    done = subprocess.run(
        [*build[:1], "-o", *build[1:]], check=False, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        done = subprocess.run(build, check=False, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"mvn package failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    target = JAVA_CLIENTS / "target"
    return os.pathsep.join([str(target / "classes"), str(target / "lib" / "*")])


def _credentials(name: str) -> tuple[str, str]:
    env = principal_env(name)
    return env["STREAM_APP_KAFKA_SASL_USERNAME"], env["STREAM_APP_KAFKA_SASL_PASSWORD"]


def java_properties(settings: Settings, principal: str) -> dict[str, str]:
    """A Java client's settings (kafka-clients, and the registry's with Confluent's names)."""
    props = {"bootstrap.servers": settings.kafka_bootstrap, "schema.registry.url": _registry_url(settings)}
    props["security.protocol"] = settings.kafka_security_protocol
    if secured(settings):
        user, password = _credentials(principal)
        module = {"PLAIN": "plain.PlainLoginModule"}.get(
            settings.kafka_sasl_mechanism, "scram.ScramLoginModule"
        )
        props["sasl.mechanism"] = settings.kafka_sasl_mechanism
        props["sasl.jaas.config"] = (
            f'org.apache.kafka.common.security.{module} required username="{user}" password="{password}";'
        )
    if settings.kafka_ssl_ca_file is not None:
        props["ssl.truststore.type"] = "PEM"
        props["ssl.truststore.location"] = str(settings.kafka_ssl_ca_file)
    if settings.schema_registry_ca_file is not None:
        props["schema.registry.ssl.truststore.type"] = "PEM"
        props["schema.registry.ssl.truststore.location"] = str(settings.schema_registry_ca_file)
    if settings.schema_registry_auth is not None:
        props["basic.auth.user.info"] = settings.schema_registry_auth.get_secret_value()
    return props


def librdkafka_properties(settings: Settings, principal: str) -> dict[str, str]:
    """A librdkafka client's settings (confluent-kafka), and ``schema.registry.*`` for its registry client."""
    props = {"bootstrap.servers": settings.kafka_bootstrap, "schema.registry.url": _registry_url(settings)}
    props["security.protocol"] = settings.kafka_security_protocol
    if secured(settings):
        props["sasl.mechanism"] = settings.kafka_sasl_mechanism
        props["sasl.username"], props["sasl.password"] = _credentials(principal)
    if settings.kafka_ssl_ca_file is not None:
        props["ssl.ca.location"] = str(settings.kafka_ssl_ca_file)
    if settings.schema_registry_ca_file is not None:
        props["schema.registry.ssl.ca.location"] = str(settings.schema_registry_ca_file)
    if settings.schema_registry_auth is not None:
        props["schema.registry.basic.auth.user.info"] = settings.schema_registry_auth.get_secret_value()
    return props


def _registry_url(settings: Settings) -> str:
    return (settings.schema_registry_url or "").strip()


def _write(path: Path, props: dict[str, str]) -> str:
    # java.util.Properties reads backslashes as escapes; none of these values has one
    path.write_text("".join(f"{key}={value}\n" for key, value in props.items()), encoding="utf-8")
    return str(path)


def _outsider_env() -> dict[str, str]:
    """The environment of a client that is not this project: none of its settings, not on its path."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STREAM_APP_") and k != "PYTHONPATH"}


def _run(args: list[str], cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        args, cwd=cwd, env=_outsider_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{args[:4]} exited {done.returncode}:\n{done.stdout}\n{done.stderr[-4000:]}"
    return done


def _lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_java_and_python_clients_produce_an_observation_and_decode_the_alert_it_raises(  # noqa: PLR0917 - fixtures
    settings: Settings,
    blueprint: Blueprint,
    real_registry: tuple[SchemaRegistryClient, Blueprint],
    start_worker: Any,
    java_classpath: str,
    tmp_path: Path,
) -> None:
    client, _ = real_registry
    if secured(settings):
        acl.apply(blueprint, only={acl.reporter_principal(REPORTER), f"User:{settings.acl_center_user}"})
    input_topic = blueprint.input_topic(REPORTER).name
    # the deployment step `stream-app schemas register` does for every reporter; the outputs' subjects
    # the worker itself registers at start-up
    subjects.register(
        client, [s for s in subjects.registered_subjects(blueprint) if s.topic == input_topic], "registry"
    )
    start_worker(settings, STREAM_APP_OUTPUT_FRAMING="confluent")

    for example in PYTHON_CLIENTS.glob("*.py"):
        assert "stream_app" not in example.read_text(encoding="utf-8"), f"{example} knows the project"
    reporter = REPORTER.lower()
    java_mae = _write(tmp_path / "mae-java.properties", java_properties(settings, reporter))
    python_mae = _write(tmp_path / "mae-python.properties", librdkafka_properties(settings, reporter))
    java_center = _write(tmp_path / "center-java.properties", java_properties(settings, "center"))
    python_center = _write(
        tmp_path / "center-python.properties",
        {
            **librdkafka_properties(settings, "center"),
            # the center may join the groups named center.… of its namespace only
            "group.id": f"{settings.topic_namespace}center.python-subscriber",
        },
    )

    # two 'bad' readings in a row fire the levels rule: the first written from Java, the second from
    # Python, in that order (one station's feed, one key)
    now = int(time.time() * 1000)
    first = observation(value=170.0, event_time=now - 120_000, report_time=now)
    second = observation(value=175.0, event_time=now - 60_000, report_time=now)
    started = time.monotonic()
    java_sent = _run(
        ["java", "-cp", java_classpath, "example.Produce", java_mae, input_topic, STATION, json.dumps(first)],
        tmp_path,
    )
    python_sent = _run(
        [
            sys.executable,
            str(PYTHON_CLIENTS / "produce.py"),
            python_mae,
            input_topic,
            STATION,
            json.dumps(second),
        ],
        tmp_path,
    )
    for sent in (java_sent, python_sent):
        assert sent.stdout.split()[0] == input_topic, sent.stdout
    produced = time.monotonic() - started

    alerts_topic = blueprint.topic_by_role("alerts").name
    resolver = registry.ConfluentSchemas(client, blueprint.schemas)
    ours = collect(settings, alerts_topic, "alert", lambda rows: len(rows) >= 1, resolve=resolver).records
    [alert] = ours
    assert alert["transition"] == "FIRING"
    # the levels rule fires on the second of two consecutive bad readings (min_count = 2): no alert
    # unless the worker accepted both, the Java producer's and the Python producer's
    assert (alert["station"], alert["value"]) == (STATION, second["value"])
    assert second["observation_id"] in alert["cause_observation_ids"]

    # the subscribers, side by side: Java by assignment (no group), Python in a center.… group
    started = time.monotonic()
    java = subprocess.Popen(
        ["java", "-cp", java_classpath, "example.Subscribe", java_center, alerts_topic, "1", "60"],
        cwd=tmp_path,
        env=_outsider_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    python = _run(
        [sys.executable, str(PYTHON_CLIENTS / "subscribe.py"), python_center, alerts_topic, "1", "60"],
        tmp_path,
    )
    java_out, java_err = java.communicate(timeout=90)
    assert java.returncode == 0, f"Subscribe exited {java.returncode}:\n{java_out}\n{java_err[-4000:]}"
    subscribed = time.monotonic() - started

    for output in (java_out, python.stdout):
        [line] = _lines(output)
        assert (line["topic"], line["key"]) == (alerts_topic, alert["alert_key"])
        decoded = line["value"]
        assert (decoded["alert_id"], decoded["level_code"], decoded["transition"]) == (
            alert["alert_id"],
            alert["level_code"],
            "FIRING",
        )
        assert decoded["cause_observation_ids"] == alert["cause_observation_ids"]
    print(f"producers {produced:.1f} s, subscribers {subscribed:.1f} s")
