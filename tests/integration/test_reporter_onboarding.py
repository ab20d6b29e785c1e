"""A new reporter, from its catalogue entry to its first accepted observation, as an operator does it:
``stream-app reporter add`` on the running broker, a worker (re)started, the reporter sending with the
credentials that were printed; then ``reporter rotate`` and ``reporter remove``.

The shipped reporters all have users on the local broker (made when it was formatted) and are shared
with every other test, so the reporter here is a new catalogue entry of the test's own (a copy of the
catalogue and of topics.toml with one more reporter, its indicator and its four topics, as the runbook
says to add them), with a code no one else uses."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from stream_app.config.blueprint import Blueprint, load_blueprint
from stream_app.kafka import acl, credentials
from stream_app.settings import Settings
from stream_app.tools.cli import main
from stream_app.wire import codecs

from .conftest import secured
from .support import collect, observation, settings_env

pytestmark = pytest.mark.integration

INDICATOR = "ZT.ONBOARD"


def _catalogue_with(settings: Settings, code: str, folder: Path) -> tuple[Path, Path]:
    """A copy of the catalogue with reporter ``code`` and an indicator of its own, and of topics.toml
    with its four topics: the edits the runbook's "Add a reporter" asks for."""
    catalogue = folder / "catalogue"
    shutil.copytree(settings.catalogue_dir, catalogue)
    with (catalogue / "reporters.toml").open("a", encoding="utf-8") as out:
        out.write(f'\n[[reporter]]\ncode = "{code}"\nname_vi = "Đơn vị thử"\nname_en = "Test onboarding"\n')
    with (catalogue / "indicators.toml").open("a", encoding="utf-8") as out:
        out.write(
            f'\n[[indicator]]\ncode = "{INDICATOR}"\nname_vi = "Chỉ tiêu thử"\nname_en = "Onboarding test"\n'
            f'domain = "traffic"\nowner = "{code}"\nreporters = ["{code}"]\nunit = "persons"\nmin = 0\n'
            'max = 1000\nregion_level = "province"\naggregation = "sum"\nfrequency = "daily"\n'
            'calendar = "decree09"\n'
        )
    topics_file = folder / "topics.toml"
    shutil.copyfile(settings.topics_file, topics_file)
    lower = code.lower()
    with topics_file.open("a", encoding="utf-8") as out:
        for suffix, role in (
            ("observations", "input"),
            ("bulk", "bulk_input"),
            ("dlq", "dead_letter"),
            ("directives", "reporter_directives"),
        ):
            out.write(
                f'\n[[topic]]\nname = "reporter.{lower}.{suffix}"\nrole = "{role}"\nreporter = "{code}"\n'
                f'doc = "test reporter {code}: {suffix}"\n'
            )
    return catalogue, topics_file


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    """``stream-app ARGV --output json`` in this process (the environment says which catalogue)."""
    capsys.readouterr()
    code = main([*argv, "--output", "json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if code == 0 else out


def _logs_in(properties: dict[str, str]) -> bool:
    """Whether a client with these properties gets in: True once the broker answers, False when it
    refuses the credentials (librdkafka reports that to the error callback, served by ``poll``)."""
    refused: list[KafkaError] = []
    client = Producer({**properties, "log_level": 0, "error_cb": refused.append})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        client.poll(0.1)
        if any(e.code() == KafkaError._AUTHENTICATION for e in refused):
            return False
        try:
            client.list_topics(timeout=0.5)
        except KafkaException:
            continue
        return True
    pytest.fail(f"neither in nor refused within 20 s: {refused}")


def _send(bp: Blueprint, properties: dict[str, str], topic: str, record: dict[str, Any]) -> None:
    failures: list[str] = []
    producer = Producer({**properties, "acks": "all", "log_level": 3})
    producer.produce(
        topic,
        key=record["observation_id"].encode(),
        value=codecs.encode(bp.schemas.latest("observation"), record),
        on_delivery=lambda err, _m: failures.append(str(err)) if err else None,
    )
    assert producer.flush(30) == 0
    assert not failures, failures


@pytest.mark.usefixtures("blueprint")  # the namespace's shipped topics and the app's grants
def test_reporter_add_takes_a_catalogue_entry_to_its_first_accepted_observation(
    settings: Settings,
    start_worker: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if not secured(settings):
        pytest.skip("the reporter's credentials need the secured services (SASL/SCRAM)")
    code = f"ZT{uuid.uuid4().hex[:6].upper()}"
    catalogue, topics_file = _catalogue_with(settings, code, tmp_path)
    own = settings.model_copy(update={"catalogue_dir": catalogue, "topics_file": topics_file})
    paths = {"STREAM_APP_CATALOGUE_DIR": str(catalogue), "STREAM_APP_TOPICS_FILE": str(topics_file)}
    for name, value in {**settings_env(own), **paths}.items():
        monkeypatch.setenv(name, value)
    bp = load_blueprint(own)
    live = bp.input_topic(code).name
    try:
        status, added = _cli(capsys, "reporter", "add", code)
        assert status == 0, added
        assert sorted(added["topics"]) == sorted(t.name for t in bp.topics if t.reporter == code)
        assert added["credential"] == "created"
        assert added["quotas"]
        assert added["granted"]
        properties = added["client"]["properties"]
        password = properties["sasl.password"]
        assert properties["sasl.username"] == code.lower()
        assert added["client"]["topics"]["live"] == live

        # a second run changes nothing and shows no password
        status, again = _cli(capsys, "reporter", "add", code)
        assert status == 0
        assert (again["topics"], again["granted"], again["quotas"], again["credential"]) == (
            [],
            [],
            [],
            "unchanged",
        )
        assert "sasl.password" not in again["client"]["properties"]

        # the worker learns of the reporter's topics at start: started (restarted, in production) after
        start_worker(own, **paths)
        first = observation(reporter=code, indicator=INDICATOR, unit="persons", station=None, value=3.0)
        _send(bp, properties, live, first)
        consolidated = collect(
            own,
            bp.topic_by_role("consolidated").name,
            "consolidated",
            lambda records: any(r["reporter"] == code for r in records),
        )
        assert any(r["indicator"] == INDICATOR and r["reporter"] == code for r in consolidated.records)

        status, rotated = _cli(capsys, "reporter", "rotate", code)
        assert status == 0
        fresh = rotated["client"]["properties"]
        assert fresh["sasl.password"] != password
        assert not _logs_in(properties), "the old password still logs in after rotate"
        assert _logs_in(fresh)

        status, removed = _cli(capsys, "reporter", "remove", code)
        assert status == 0
        assert removed["credential"] == "deleted"
        assert removed["revoked"]
        assert removed["topics"] == []  # kept without --delete-topics
        assert not _logs_in(fresh), "the reporter still logs in after remove"
        assert not [g for g in acl.current(own) if g.principal == f"User:{code.lower()}"]
        assert main(["reporter", "rotate", code]) == 1  # refused: it has no user any more

        audit_topic = bp.topic_by_role("audit").name
        trail = collect(
            own, audit_topic, "audit", lambda rs: sum(r["subject"] == code for r in rs) >= 3, timeout=20
        )
        mine = [r for r in trail.records if r["subject"] == code]
        assert [r["action"] for r in mine] == ["reporter_add", "reporter_rotate", "reporter_remove"]
        assert {r["actor"] for r in mine} == {settings.kafka_sasl_username}
        assert not any(secret in repr(r) for r in mine for secret in (password, fresh["sasl.password"]))
    finally:
        assert main(["reporter", "remove", code, "--delete-topics"]) == 0
        assert not credentials.exists(own, code.lower())
