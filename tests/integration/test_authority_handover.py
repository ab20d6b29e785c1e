"""Authority follows time (issue 26), on the real pipeline: NSMO's live grid figures stop; EVN's history of
June 2024 (EVN was the authority for PWR.* until 2024-07-01) arrives through EVN's bulk topic meanwhile.
The history counts, but it neither takes the feed over nor makes it look alive: the absence alert fires 36 h
after NSMO's last figure arrived, names NSMO, and the center's acknowledgement reaches NSMO's directives
topic, not EVN's.

The live figures are of July 2024 (the month of the handover) so that EVN's June is within the entity's
retention (this and the previous reporting year of its newest value); what makes them live is the topic
they come through and their arrival, which the absence rule counts from."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

import redis

from stream_app.config.blueprint import Blueprint
from stream_app.settings import Settings
from stream_app.state.keys import Keys
from stream_app.tools import control
from stream_app.wire import codecs

from .support import collect, direct, observation, produce, redis_hash, to_the_end, wait_consumed, wait_until

HOUR_MS = 3_600_000
VIETNAM = timezone(timedelta(hours=7))
GRID = "PWR.OUTPUT_GWH|VN|-"
ABSENCE_KEY = f"absence:PWR.OUTPUT_GWH|{GRID}"


def _noon(month: int, day: int) -> int:
    return int(datetime(2024, month, day, 12, tzinfo=VIETNAM).timestamp() * 1000)


def _figure(reporter: str, month: int, day: int) -> dict[str, Any]:
    at = _noon(month, day)
    return observation(
        observation_id=f"{reporter.lower()}-output-2024-{month:02d}-{day:02d}",
        reporter=reporter,
        indicator="PWR.OUTPUT_GWH",
        region="VN",
        station=None,
        unit="GWh",
        value=900.0 + day,
        event_time=at,
        report_time=at,
    )


def test_history_of_the_earlier_authority_neither_silences_the_absence_nor_takes_the_directives(
    settings: Settings, blueprint: Blueprint, start_worker: Any
) -> None:
    start_worker(settings)
    schema = blueprint.schemas.latest("observation")
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    keys = Keys(settings.redis_key_prefix)

    def state() -> dict[bytes, bytes]:
        return redis_hash(client, keys.entity(GRID))

    live = [_figure("NSMO", 7, day) for day in range(10, 15)]
    produce(settings, blueprint.input_topic("NSMO").name, [(b"VN", codecs.encode(schema, r)) for r in live])
    newest = str(_noon(7, 14)).encode()
    wait_until(lambda: state().get(b"authority_event_time") == newest, 30, "NSMO's live figures applied")
    live_seen = int(state()[b"last_seen"])
    assert state()[b"reporter"] == b"NSMO"

    # a moment later, so that a history arrival that did refresh liveness would show
    time.sleep(max(0.0, (live_seen + 1_000 - time.time() * 1000) / 1000))
    history = [_figure("EVN", 6, day) for day in range(1, 31)]
    produce(settings, blueprint.bulk_topic("EVN").name, [(b"VN", codecs.encode(schema, r)) for r in history])
    seen_key = keys.entity(GRID, "seen")
    wait_until(lambda: client.hlen(seen_key) >= len(live) + len(history), 60, "EVN's history applied")
    after = state()
    assert (after[b"reporter"], int(after[b"last_seen"])) == (b"NSMO", live_seen)
    assert after[b"authority_event_time"] == newest

    # 36 h after NSMO's last figure arrived (and less than 36 h after the history did)
    control.send_ticks(blueprint, live_seen + 36 * HOUR_MS + 500, source="test")
    alerts_topic = blueprint.topic_by_role("alerts").name
    fired = collect(
        settings, alerts_topic, "alert", lambda r: any(a["alert_key"] == ABSENCE_KEY for a in r), timeout=30
    )
    absence = [a for a in fired.records if a["alert_key"] == ABSENCE_KEY]
    assert [(a["transition"], a["reporter"]) for a in absence] == [("FIRING", "NSMO")]

    status, answer = direct(
        settings,
        ABSENCE_KEY,
        action="ACKNOWLEDGE",
        alert_id=absence[0]["alert_id"],
        comment="Đề nghị NSMO kiểm tra đường truyền số liệu",
    )
    assert status == 202, answer
    directive_id = answer["directive_id"]
    to_nsmo = collect(settings, blueprint.directives_topic("NSMO").name, "directive", lambda r: len(r) >= 1)
    assert [d["directive_id"] for d in to_nsmo.records] == [directive_id]
    # EVN told nothing, once every record is consumed (the worker publishes before it commits, not 2 s)
    given = [blueprint.input_topic("NSMO").name, blueprint.bulk_topic("EVN").name]
    given += [blueprint.topic_by_role(role).name for role in ("directives", "repartition")]
    wait_consumed(settings, blueprint, given)
    assert to_the_end(settings, blueprint.directives_topic("EVN").name) == []
