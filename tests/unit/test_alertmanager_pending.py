"""The alert bridge's posts to Alertmanager stay bounded: one pending post per alert (the newest state),
at most a limit, and a 4xx is final (the alerts at fault isolated in a few requests, logged, dropped)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stream_app.agents.alert_bridge import ISOLATE_MAX_SPLITS, AlertBridge
from stream_app.config.blueprint import load_blueprint
from stream_app.ops import metrics
from stream_app.ops.alertmanager import AlertmanagerRefusedError, PendingPosts, Queued, refused_for_good
from stream_app.settings import Settings


def _post(station: str, level: str = "BAD", ends: str = "2025-10-20T03:04:00Z") -> dict[str, Any]:
    return {
        "labels": {"alertname": "center:levels:ENV.AQI", "station": station, "level": level},
        "annotations": {"value": "175"},
        "startsAt": "2025-10-20T02:55:00Z",
        "endsAt": ends,
    }


def test_a_newer_state_of_an_alert_replaces_the_waiting_one() -> None:
    pending = PendingPosts(limit=100)
    flood = [_post("HN-AQ-HOANKIEM", ends=f"2025-10-20T03:{m:02d}:00Z") for m in range(50)]
    assert pending.add(flood) == Queued(superseded=49)
    [only] = pending.posts()
    assert only["endsAt"] == "2025-10-20T03:49:00Z", "the newest state wins"
    # another level is another alert in Alertmanager (the level is a label): both wait
    assert pending.add([_post("HN-AQ-HOANKIEM", level="VERY_BAD")]) == Queued()
    assert len(pending) == 2


def test_past_the_limit_the_longest_waiting_post_is_dropped() -> None:
    pending = PendingPosts(limit=3)
    assert pending.add([_post(f"S{i}") for i in range(5)]) == Queued(overflowed=2)
    assert [p["labels"]["station"] for p in pending.posts()] == ["S2", "S3", "S4"]
    pending.add([_post("S2", ends="later")])  # updated: last in line now
    assert pending.add([_post("S5")]) == Queued(overflowed=1)
    assert [p["labels"]["station"] for p in pending.posts()] == ["S4", "S2", "S5"]
    pending.clear()
    assert (len(pending), pending.posts()) == (0, [])
    with pytest.raises(ValueError, match="limit"):
        PendingPosts(0)


@pytest.mark.parametrize(
    ("status", "final"),
    [
        (400, True),
        (401, True),
        (404, True),
        (413, True),
        (422, True),
        (408, False),
        (429, False),
        (500, False),
        (503, False),
        (302, False),
    ],
)
def test_which_answers_are_final(status: int, final: bool) -> None:
    assert refused_for_good(status) is final


class FakeAlertmanager:
    """Refuses (with ``status``) any batch holding an alert of a station in ``bad``; counts requests."""

    url = "http://alertmanager.test/api/v2/alerts"

    def __init__(self, bad: set[str], status: int = 400) -> None:
        self.bad = bad
        self.status = status
        self.requests = 0
        self.accepted: list[dict[str, Any]] = []

    async def post(self, alerts: list[dict[str, Any]]) -> None:
        self.requests += 1
        if any(a["labels"]["station"] in self.bad for a in alerts):
            raise AlertmanagerRefusedError(self.status, "bad alert (test)")
        self.accepted += alerts

    async def close(self) -> None:
        """Nothing to close."""


@pytest.fixture
def bridge() -> AlertBridge:
    return AlertBridge(load_blueprint(Settings(alertmanager_max_pending=500)), "http://alertmanager.test")


def _flush(bridge: AlertBridge, client: FakeAlertmanager, posts: list[dict[str, Any]]) -> None:
    bridge.client = client  # type: ignore[assignment]
    bridge._queue(posts)
    asyncio.run(bridge._flush())


def test_a_bad_alert_is_isolated_and_dropped_and_the_others_are_sent(bridge: AlertBridge) -> None:
    dropped = metrics.ALERTMANAGER_DROPPED.labels("refused")
    before = dropped._value.get()
    client = FakeAlertmanager(bad={"S137"})
    _flush(bridge, client, [_post(f"S{i}") for i in range(300)])
    assert len(client.accepted) == 299
    assert "S137" not in {a["labels"]["station"] for a in client.accepted}
    assert client.requests <= 1 + 2 * 9, "halving 300 alerts finds one in about log2(300) rounds"
    assert len(bridge._pending) == 0, "refused for good: not retried"
    assert dropped._value.get() - before == 1
    _flush(bridge, client, [])
    assert client.requests <= 1 + 2 * 9, "nothing left to post"


def test_a_refusal_about_no_one_alert_drops_the_batch_in_one_request(bridge: AlertBridge) -> None:
    client = FakeAlertmanager(bad={f"S{i}" for i in range(300)}, status=401)
    _flush(bridge, client, [_post(f"S{i}") for i in range(300)])
    assert (client.requests, client.accepted, len(bridge._pending)) == (1, [], 0)


def test_isolating_costs_a_bounded_number_of_requests_even_if_all_are_refused(bridge: AlertBridge) -> None:
    client = FakeAlertmanager(bad={f"S{i}" for i in range(500)})
    _flush(bridge, client, [_post(f"S{i}") for i in range(500)])
    assert client.requests == 1 + 2 * ISOLATE_MAX_SPLITS
    assert (client.accepted, len(bridge._pending)) == ([], 0)


def test_a_flood_while_alertmanager_is_away_keeps_one_post_per_alert(bridge: AlertBridge) -> None:
    superseded = metrics.ALERTMANAGER_DROPPED.labels("superseded")
    before = superseded._value.get()
    for minute in range(1000):
        bridge._queue([_post(f"S{minute % 10}", ends=f"m{minute}")])
    assert len(bridge._pending) == 10
    assert superseded._value.get() - before == 990
    client = FakeAlertmanager(bad=set())
    _flush(bridge, client, [])
    assert sorted(a["endsAt"] for a in client.accepted) == sorted(f"m{m}" for m in range(990, 1000))
