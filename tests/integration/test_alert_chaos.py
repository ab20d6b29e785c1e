"""Alert transitions survive a worker SIGKILLed again and again: none lost, none invented, same ids.

One VN_AQI station, ~300 hourly-style readings (one minute apart in event time) that climb and fall
through the levels many times, hover inside the hysteresis band and spike for single readings that
``min_count`` must ignore. A worker with small batches is killed at several random moments while it
works through them, and restarted each time. The transitions it published, deduplicated by
``alert_id``, must be exactly the ones the pure engine computes from the input — and the ones a tiny
reference written here computes, as an independent check of the engine itself.

``ALERT_CHAOS_SEED`` picks another scenario and other kill moments (the seed is in every failure).
"""

from __future__ import annotations

import os
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from stream_app.config.blueprint import Blueprint
from stream_app.domain.aggregates import hour_of
from stream_app.domain.alerting import BucketHistory, RuleState, load_rules, on_observation
from stream_app.domain.catalogue import load_catalogue
from stream_app.settings import Settings
from stream_app.wire import codecs
from tests.unit.core_support import Hour

from .support import (
    WorkerProcess,
    decode_public,
    observation,
    produce,
    redis_hash,
    to_the_end,
    wait_consumed,
)

pytestmark = pytest.mark.chaos

SEED = int(os.environ.get("ALERT_CHAOS_SEED", "20251129"))
RULE_ID = "levels:ENV.AQI"
INDICATOR, REGION, STATION = "ENV.AQI", "01", "HN-AQ-HOANKIEM"
MINUTE_MS = 60_000
COUNT = 300

# VN_AQI (catalogue/indicators.toml) and its rule (catalogue/rules.toml), written out again here
# for the reference below; the test checks they still match the files.
BOUNDS = (0.0, 51.0, 101.0, 151.0, 201.0, 301.0)  # GOOD MODERATE POOR BAD VERY_BAD HAZARDOUS
ALERT_FROM = 3  # BAD
MARGIN = 5.0
MIN_COUNT = 2


@dataclass(frozen=True)
class Change:
    """One published transition, as far as the input decides it."""

    observation_id: str
    transition: str
    previous_level: int
    level: int
    value: float


# --- the input ----------------------------------------------------------------------------------


def _scenario(rng: random.Random) -> list[float]:
    """COUNT readings: a scripted part covering each edge case, then seeded random episodes."""
    scripted = [
        # clean air, then poor: levels below BAD move but publish nothing
        *(35, 42, 48, 60, 72, 90, 110, 118, 125),
        # a single-reading spike into BAD and one into VERY_BAD: min_count holds them back
        *(180, 120, 124, 230, 119),
        # BAD twice in a row: FIRING; then hovering in the band 146..151 keeps it
        *(160, 165, 150.5, 148, 146, 149, 155),
        # 145.9 is past 151 - 5: RESOLVED at once; back up twice: FIRING again
        *(145.9, 152, 157),
        # VERY_BAD once, back to BAD, then twice: ESCALATED; 197 is inside 201 - 5, 195 is not
        *(240, 170, 210, 225, 197, 196, 195),
        # a streak straight to HAZARDOUS from BAD: one ESCALATED by two levels
        *(320, 340, 310),
        # 290 falls out of HAZARDOUS (296) to VERY_BAD, 100 out of everything to POOR
        *(290, 100, 98),
        # a broken streak (130 is at POOR again), then a streak through two levels: it rises to the
        # lowest level the streak reached, then needs a fresh streak for the next one
        *(160, 130, 160, 250, 260, 270),
        # exactly on the bounds
        *(201, 196, 151, 146, 145, 151, 151, 50, 51, 40),
    ]
    values = [float(v) for v in scripted]
    centres = (30.0, 75.0, 125.0, 148.0, 165.0, 199.0, 230.0, 300.0, 350.0)
    while len(values) < COUNT:
        centre = rng.choice(centres)
        for _ in range(rng.randint(2, 9)):
            values.append(round(min(500.0, max(0.0, centre + rng.uniform(-9.0, 9.0))), 1))
        if rng.random() < 0.35:  # a single-reading spike (fireworks, a truck at the inlet)
            values.append(round(min(500.0, values[-1] + rng.uniform(60.0, 140.0)), 1))
    return values[:COUNT]


def _observation_ids(values: list[float]) -> list[str]:
    run = uuid.uuid4().hex[:8]
    return [f"chaos-{run}-{i:03d}" for i in range(len(values))]


# --- the expected transitions, twice ------------------------------------------------------------


def _levels_rule(settings: Settings) -> Any:
    catalogue = load_catalogue(settings.catalogue_dir)
    rules_file = getattr(settings, "rules_file", None) or settings.catalogue_dir / "rules.toml"
    book = load_rules(rules_file, catalogue)
    return next(r for r in book.rules_for(INDICATOR, REGION, STATION) if r.rule_id == RULE_ID)


def _by_engine(rule: Any, values: list[float], ids: list[str], start_ms: int) -> list[Change]:
    """The transitions ``stream_app.domain.alerting`` computes, from a fresh state."""
    state, buckets, out = RuleState(), dict[int, Hour](), []
    for i, (value, obs_id) in enumerate(zip(values, ids, strict=True)):
        at = start_ms + i * MINUTE_MS
        hour = hour_of(at)
        buckets[hour] = buckets[hour].add(value) if hour in buckets else Hour.of(value)
        verdict = on_observation(
            rule, state, value=value, event_time_ms=at, history=BucketHistory(dict(buckets)), now_ms=at
        )
        if verdict.transition is not None:
            change = str(verdict.transition.value)
            out.append(Change(obs_id, change, verdict.previous_level, verdict.level, value))
    return out


def _by_reference(
    values: list[float], ids: list[str], *, margin: float = MARGIN, min_count: int = MIN_COUNT
) -> list[Change]:
    """Levels with hysteresis and min_count, from the rule's documentation: a rise needs
    ``min_count`` consecutive readings above the level and goes to the lowest level they all reached
    (a streak still above that starts afresh); a fall is immediate once past the bound less ``margin``."""
    level, streak, out = 0, list[int](), []
    for value, obs_id in zip(values, ids, strict=True):
        raw = max(k for k, bound in enumerate(BOUNDS) if value >= bound)
        new = level
        if raw > level:
            streak.append(raw)
            if len(streak) >= min_count:
                new = min(streak)
                streak = [raw] if raw > new else []
        else:
            streak = []
            while new > 0 and value < BOUNDS[new] - margin:
                new -= 1
        was, now = level >= ALERT_FROM, new >= ALERT_FROM
        kind = None
        if now and not was:
            kind = "FIRING"
        elif was and not now:
            kind = "RESOLVED"
        elif was and new > level:
            kind = "ESCALATED"
        elif was and new < level:
            kind = "DEESCALATED"
        if kind is not None:
            out.append(Change(obs_id, kind, level, new, value))
        level = new
    return out


# --- the chaos ----------------------------------------------------------------------------------


def _applied(client: redis.Redis, settings: Settings) -> int:
    """Observations counted into the station's hourly buckets (``b:<hour>`` = ``count,...``)."""
    total = 0
    for key in client.scan_iter(match=f"{settings.redis_key_prefix}:*{STATION}*", count=1000):
        if INDICATOR.encode() not in key or client.type(key) != b"hash":
            continue
        fields = redis_hash(client, key)
        total += sum(int(v.split(b",")[0]) for k, v in fields.items() if k.startswith(b"h::"))
    return total


def _wait_applied(client: redis.Redis, settings: Settings, at_least: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    count = _applied(client, settings)
    while count < at_least and time.monotonic() < deadline:
        time.sleep(0.01)
        count = _applied(client, settings)
    return count


# --- what was published -------------------------------------------------------------------------


def _read_alerts(
    settings: Settings, blueprint: Blueprint
) -> list[tuple[int, int, bytes | None, dict[str, Any]]]:
    """Every record of the alerts topic, up to its end now: (partition, offset, key, record)."""
    return [
        (
            message.partition() or 0,
            message.offset() or 0,
            message.key(),
            decode_public(blueprint, "alert", message.value() or b""),
        )
        for message in to_the_end(settings, blueprint.topic_by_role("alerts").name)
    ]


def _change(record: dict[str, Any]) -> Change:
    return Change(
        record["observation_id"],
        record["transition"],
        record["previous_level"],
        record["level"],
        record["value"],
    )


def _diff(expected: list[Change], got: list[Change]) -> str:
    lines = []
    for i in range(max(len(expected), len(got))):
        want = expected[i] if i < len(expected) else None
        have = got[i] if i < len(got) else None
        mark = "  " if want == have else "!!"
        lines.append(f"{mark} {i:3d} expected {want}  published {have}")
    return "\n".join(lines)


# --- the test -----------------------------------------------------------------------------------


def test_alert_transitions_survive_repeated_sigkill(
    settings: Settings, blueprint: Blueprint, start_worker: Any
) -> None:
    rng = random.Random(SEED)
    where = f"(ALERT_CHAOS_SEED={SEED})"
    values = _scenario(rng)
    ids = _observation_ids(values)
    start_ms = int(time.time() * 1000) - 6 * 3_600_000

    # The expected sequence, from the engine and from the reference, and a scenario that needs both
    # the hysteresis and min_count to come out right.
    rule = _levels_rule(settings)
    assert tuple(level.lower for level in rule.levels) == BOUNDS
    assert (rule.alert_from, rule.params.hysteresis, rule.params.min_count) == (ALERT_FROM, MARGIN, MIN_COUNT)
    assert rule.params.min_minutes == 0
    expected = _by_engine(rule, values, ids, start_ms)
    reference = _by_reference(values, ids)
    assert expected == reference, f"engine and reference disagree {where}:\n{_diff(reference, expected)}"
    assert {c.transition for c in expected} == {"FIRING", "ESCALATED", "DEESCALATED", "RESOLVED"}
    assert len(expected) >= 25, f"too few transitions to be a test {where}: {len(expected)}"
    assert _by_reference(values, ids, min_count=1) != expected, "no spike for min_count to suppress"
    assert _by_reference(values, ids, margin=0.0) != expected, "nothing inside the hysteresis band"

    schema = blueprint.schemas.latest("observation")
    records: list[tuple[bytes | None, bytes]] = [
        (
            STATION.encode(),
            codecs.encode(
                schema,
                observation(
                    observation_id=obs_id,
                    value=value,
                    event_time=start_ms + i * MINUTE_MS,
                    report_time=start_ms + i * MINUTE_MS,
                ),
            ),
        )
        for i, (value, obs_id) in enumerate(zip(values, ids, strict=True))
    ]
    produce(settings, blueprint.input_topic("MAE").name, records)

    # Kill the worker 3 or 4 times while it works through the input, each time after some progress
    # in Redis, sometimes straight away and sometimes after a short random wait; restart it each time.
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    small_batches = settings.model_copy(update={"batch_max": 5})
    workers: list[WorkerProcess] = [start_worker(small_batches)]
    kills: list[str] = []
    for _ in range(rng.choice((3, 4))):
        before = _applied(client, settings)
        step, pause = rng.randint(10, 45), rng.choice((0.0, 0.0, rng.uniform(0.02, 0.3)))
        reached = _wait_applied(client, settings, min(before + step, COUNT - 1), timeout=30)
        if pause:
            time.sleep(pause)
        workers[-1].kill()
        kills.append(f"at {_applied(client, settings)} (waited for {before}+{step}, then {pause:.2f}s)")
        assert reached < COUNT, f"the worker finished before kill {len(kills)} {where}: {kills}"
        workers.append(start_worker(small_batches))
    done = _wait_applied(client, settings, COUNT, timeout=45)
    # a redelivery counted twice would show up before the group commits the last record (rather than 1 s)
    wait_consumed(
        settings, blueprint, [blueprint.input_topic("MAE").name, blueprint.topic_by_role("repartition").name]
    )
    assert _applied(client, settings) == done == COUNT, (
        f"{done} of {COUNT} applied after kills {kills} {where}\n{workers[-1].log()[-3000:]}"
    )
    mid_stream = [k for k in kills if not k.startswith(f"at {COUNT} ")]
    assert len(mid_stream) >= 3, f"too few kills mid-stream {where}: {kills}"

    # What was published for this station's levels rule, in topic order.
    mine = [
        (partition, offset, key, record)
        for partition, offset, key, record in _read_alerts(settings, blueprint)
        if record["rule"] == RULE_ID
        and record["station"] == STATION
        and record.get("event_type", "TRANSITION") == "TRANSITION"
    ]
    assert len({(p, k) for p, _, k, _ in mine}) <= 1, "one alert key, one partition"
    assert all(key == record["alert_key"].encode() for _, _, key, record in mine), "keyed by alert key"
    ids_of: dict[tuple[str, str], set[str]] = {}
    change_of: dict[str, Change] = {}
    published: list[Change] = []
    for _, _, _, record in mine:
        change = _change(record)
        ids_of.setdefault((change.observation_id, change.transition), set()).add(record["alert_id"])
        if record["alert_id"] in change_of:
            assert change_of[record["alert_id"]] == change, f"one alert id, two transitions {where}"
            continue
        change_of[record["alert_id"]] = change
        published.append(change)
    twice = {k: v for k, v in ids_of.items() if len(v) > 1}
    assert not twice, f"the same transition under different alert ids {where}: {twice}"
    print(  # shown with -rP: how hard this run was on the worker
        f"{where} kills {kills}; {len(mine)} alert records, {len(published)} distinct transitions, "
        f"{len(mine) - len(published)} republished"
    )
    assert published == expected, (
        f"published transitions differ from the input's {where}; kills {kills}; "
        f"{len(mine)} records, {len(published)} distinct:\n{_diff(expected, published)}"
    )
