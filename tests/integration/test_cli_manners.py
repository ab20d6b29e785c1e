"""The command line against the real secured broker, as a script drives it: ``topics plan`` and ``acl
plan`` exit 2 while something would change and 0 once applied; ``tail`` and ``alerts tail`` run as the
center's and the SRE's principals, which may read the center's topics but not join the app's groups
(they read by assignment); Kafka's own tools run against the broker (``services kafka-tool``)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from stream_app.config.blueprint import Blueprint, load_blueprint
from stream_app.exit_codes import ExitCode
from stream_app.kafka import acl, topics
from stream_app.kafka.config import confluent_config
from stream_app.settings import REPO_ROOT, Settings
from stream_app.tools.launch import command

from .conftest import as_principal, secured
from .support import encode_alert, produce, settings_env

pytestmark = pytest.mark.integration


def _stream_app(settings: Settings, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings_env(settings)}
    return subprocess.run(
        command(*args), env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_topics_plan_exits_2_while_topics_are_missing_and_0_once_applied(settings: Settings) -> None:
    bp = load_blueprint(settings)  # a fresh namespace: none of its topics exists yet
    try:
        missing = _stream_app(settings, "topics", "plan", "--output", "json")
        assert missing.returncode == ExitCode.CHANGES, missing.stderr
        planned = json.loads(missing.stdout)
        assert planned["action"] == "plan"
        assert {c["topic"] for c in planned["changes"] if c["action"] == "create"} == {
            t.name for t in bp.topics
        }

        topics.apply(settings, bp.topics)
        done = _stream_app(settings, "topics", "plan")
        assert done.returncode == ExitCode.OK, done.stderr
        assert done.stdout.strip().endswith("0 to change")
    finally:
        admin = AdminClient(confluent_config(settings, **{"log_level": 3}))
        for future in admin.delete_topics([t.name for t in bp.topics], operation_timeout=10).values():
            with contextlib.suppress(Exception):  # best-effort cleanup of a throwaway namespace
                future.result()


def test_acl_plan_exits_2_with_grants_to_make_and_0_once_applied(
    settings: Settings, blueprint: Blueprint
) -> None:
    if not secured(settings):
        pytest.skip("the broker has no authorizer")
    # the blueprint fixture granted the app's ACLs only: the center's, the SRE's, the reporters' are missing
    pending = _stream_app(settings, "acl", "plan", "--output", "json")
    assert pending.returncode == ExitCode.CHANGES, pending.stderr
    grants = json.loads(pending.stdout)["grant"]
    assert any(g["principal"] == f"User:{settings.acl_center_user}" for g in grants)

    acl.apply(blueprint)
    done = _stream_app(settings, "acl", "plan", "--output", "json")
    assert done.returncode == ExitCode.OK, done.stderr
    assert json.loads(done.stdout) == {"action": "plan", "grant": [], "revoke": []}


def test_a_usage_error_and_an_unreachable_broker_have_their_own_codes(settings: Settings) -> None:
    usage = _stream_app(settings, "topics", "plan", "--output", "yaml")
    assert usage.returncode == ExitCode.USAGE
    gone = _stream_app(
        settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:1", "startup_timeout_s": 2.0}),
        "topics",
        "plan",
    )
    assert gone.returncode == ExitCode.UNAVAILABLE, gone.stderr
    assert "Traceback" not in gone.stderr
    # librdkafka logs its own connection failures first; the command's verdict is one line, the last
    assert (
        gone.stderr.strip().splitlines()[-1].startswith("stream-app topics: Kafka at 127.0.0.1:1 unreachable")
    )


@pytest.mark.parametrize(
    ("principal", "verb"),
    [
        pytest.param("center", ("tail",), id="center-tail"),
        pytest.param("sre", ("alerts", "tail"), id="sre-alerts"),
    ],
)
def test_tail_reads_by_assignment_as_a_principal_that_may_not_join_the_apps_groups(
    settings: Settings, blueprint: Blueprint, principal: str, verb: tuple[str, ...]
) -> None:
    if not secured(settings):
        pytest.skip("the broker has no authorizer")
    acl.apply(blueprint, only={f"User:{settings.acl_center_user}", f"User:{settings.acl_sre_user}"})
    alert_id = f"tail-{uuid.uuid4().hex[:8]}"
    produce(settings, blueprint.topic_by_role("alerts").name, [(b"k", encode_alert(blueprint, alert_id))])

    who = as_principal(settings, principal)
    done = _stream_app(who, *verb, "--from-beginning", "--duration", "6")
    assert done.returncode == ExitCode.OK, done.stderr
    assert alert_id in done.stdout
    assert done.stderr == "", "no authorization error: no group joined, none described, nothing committed"


def test_kafka_tools_run_against_the_secured_broker(settings: Settings, blueprint: Blueprint) -> None:
    if not secured(settings):
        pytest.skip("kafka-tool speaks SASL_SSL to the local services")
    state = Path(os.environ["SERVICES_SECRETS_DIR"]).parent
    env = {**os.environ, "SERVICES_STATE_DIR": str(state)}
    tool = [str(REPO_ROOT / "deploy/local/services"), "kafka-tool"]

    acls = subprocess.run(
        [*tool, "acls", "--list", "--topic", blueprint.topic_by_role("alerts").name],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert acls.returncode == 0, acls.stderr
    assert f"principal=User:{settings.acl_app_user}" in acls.stdout  # the blueprint fixture's grants

    group, topic = f"{settings.topic_namespace}kafka-tool", blueprint.topic_by_role("alerts").name
    committer = Consumer(confluent_config(settings, **{"group.id": group, "log_level": 3}))
    committer.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)  # a group, never joined
    committer.close()
    groups = subprocess.run(
        [*tool, "consumer-groups", "--describe", "--group", group],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert groups.returncode == 0, groups.stderr
    assert f"Consumer group '{group}' has no active members." in groups.stderr
    assert any(line.split()[:3] == [group, topic, "0"] for line in groups.stdout.splitlines()), groups.stdout
