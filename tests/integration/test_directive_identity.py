"""Who really said it (issue 26), on the secured services as shipped: a directive is an authenticated
person's act from the token to the record.

- A directive written onto ``center.directives`` outside the workers' API (by the super user here: no
  other principal may write it, ``test_security``) changes nothing: the workers refuse it
  (``unauthenticated_directive``), count it, and the alert stays unacknowledged.
- ``stream-app directive`` is a client of the workers' API with the person's own token: the alert shows
  the token's name, and ``center.audit`` holds exactly one record of it, naming the token and the
  principal that wrote it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from stream_app.config.blueprint import Blueprint
from stream_app.settings import Settings

from .conftest import secured
from .support import (
    API_TOKENS,
    api,
    audit_trail,
    collect,
    directive_on_topic,
    metric_value,
    open_aqi_alert,
    settings_env,
    to_the_end,
    wait_settled,
    wait_until,
)

AQI_KEY = "levels:ENV.AQI|ENV.AQI|01|HN-AQ-HOANKIEM"


@pytest.fixture(autouse=True)
def _secured_services(base_settings: Settings) -> None:
    if not secured(base_settings):
        pytest.skip("the services do not authenticate (SASL off): no principal to prove anything about")


def _active(settings: Settings) -> dict[str, Any]:
    status, body = api(settings, "/alerts/active", role="viewer")
    assert status == 200, body
    return next(a for a in body["alerts"] if a["alert_key"] == AQI_KEY)


def test_a_directive_written_outside_the_api_is_refused_and_changes_nothing(
    settings: Settings, blueprint: Blueprint, start_worker: Any, start_screen: Any
) -> None:
    start_screen()
    worker = start_worker(settings)
    fired = open_aqi_alert(settings, blueprint)
    claims: list[dict[str, str]] = [
        {},  # the case: a free-text actor, no token, no writer (what `stream-app directive` sent)
        # a token's id and a writer claimed, but the center's screens may not issue directives
        {"token_id": "0123456789ab", "writer": f"User:{settings.acl_center_user}"},
        # the workers' principal claimed, but no token: no person was authenticated
        {"writer": f"User:{settings.acl_app_user}"},
    ]
    forged = [
        directive_on_topic(
            settings, blueprint, alert_key=AQI_KEY, alert_id=fired["alert_id"], actor="nguyen.van.a", **claim
        )
        for claim in claims
    ]
    dead = collect(
        settings,
        blueprint.topic_by_role("directives_dead_letter").name,
        "dead_letter",
        lambda r: len(r) >= len(forged),
    )
    assert [d["reason"] for d in dead.records] == ["unauthenticated_directive"] * len(forged)
    assert "not by a principal that may issue directives" in dead.records[1]["message"]
    assert "no authenticated person" in dead.records[2]["message"]
    # counted for the alert rule StreamAppUnauthenticatedDirective
    wait_until(
        lambda: (
            metric_value(
                worker.metrics(),
                "stream_app_records_rejected_total",
                reporter="CENTER",
                reason="unauthenticated_directive",
            )
            == len(forged)
        ),
        10,
        "the refusals counted",
    )
    # nothing changed: no acknowledgement anywhere, the ministry told nothing (once every directive is
    # consumed: the worker publishes what one causes before it commits it, rather than a fixed 2 s)
    wait_settled(settings, blueprint, "MAE")
    assert _active(settings)["acknowledged_by"] is None
    assert to_the_end(settings, blueprint.directives_topic("MAE").name) == []


def test_the_cli_directs_through_the_api_in_the_tokens_name_with_one_audit_record(
    settings: Settings, blueprint: Blueprint, start_worker: Any, start_screen: Any
) -> None:
    start_screen()
    start_worker(settings)
    fired = open_aqi_alert(settings, blueprint)
    command = [
        sys.executable, "-m", "stream_app", "directive", "--alert-key", AQI_KEY,
        "--alert-id", fired["alert_id"], "--action", "ACKNOWLEDGE", "--comment", "Đã tiếp nhận",
    ]  # fmt: skip
    env = {**os.environ, **settings_env(settings)}
    env.pop("STREAM_APP_API_TOKEN", None)
    without = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert without.returncode != 0
    assert "STREAM_APP_API_TOKEN" in without.stderr

    env["STREAM_APP_API_TOKEN"] = API_TOKENS["operator"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "as test-operator" in done.stdout
    directive_id = done.stdout.split()[2]

    acknowledged = collect(
        settings,
        blueprint.topic_by_role("alerts").name,
        "alert",
        lambda r: any(a["event_type"] == "ACKNOWLEDGE" for a in r),
    )
    ack = next(a for a in acknowledged.records if a["event_type"] == "ACKNOWLEDGE")
    assert (ack["acknowledged_by"], ack["directive_id"]) == ("test-operator", directive_id)
    assert _active(settings)["acknowledged_by"] == "test-operator"

    [written] = collect(
        settings, blueprint.topic_by_role("directives").name, "directive", lambda r: len(r) >= 1
    ).records
    assert (written["actor"], written["writer"]) == ("test-operator", f"User:{settings.acl_app_user}")
    assert len(written["token_id"]) == 12

    # the worker audits a directive before it answers (the CLI's 202); once every directive is consumed,
    # nothing else can audit this one: the audit topic read to its end, not for a fixed 3 s
    wait_settled(settings, blueprint, "MAE")
    trail = audit_trail(settings, blueprint)
    mine = [a for a in trail if a["details"].get("directive_id") == directive_id]
    assert len(mine) == 1, trail
    [record] = mine
    assert (record["actor"], record["role"], record["outcome"]) == ("test-operator", "operator", "accepted")
    assert record["details"]["token_id"] == written["token_id"]
    assert record["details"]["writer"] == written["writer"]
