"""A worker killed mid-stream: its successor redelivers, and nothing is counted twice or lost."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from stream_app.config.blueprint import Blueprint
from stream_app.settings import Settings
from stream_app.wire import codecs

from .support import collect, observation, produce, redis_hash, wait_consumed

pytestmark = pytest.mark.chaos

STATION_KEY = "{ENV.AQI|01|HN-AQ-HOANKIEM}"


def _count_in_redis(settings: Settings) -> int:
    state = redis_hash(
        redis.Redis.from_url(settings.redis_url.get_secret_value()),
        f"{settings.redis_key_prefix}:{STATION_KEY}:state",
    )
    return sum(int(v.split(b",")[0]) for k, v in state.items() if k.startswith(b"h::"))


# on both Kafka clients a worker may consume with (aiokafka, the default, and librdkafka)
@pytest.mark.parametrize("consumer_driver", ["aiokafka", "librdkafka"], indirect=True)
def test_sigkill_mid_stream_counts_each_observation_once(
    settings: Settings, blueprint: Blueprint, start_worker: Any, consumer_driver: str
) -> None:
    topic = blueprint.input_topic("MAE").name
    schema = blueprint.schemas.latest("observation")
    base = int(time.time() * 1000) - 3_600_000
    # 200 readings one minute apart; values cross "bad" (151) several times.
    values = [100.0 + 80.0 * ((i // 25) % 2) for i in range(200)]
    records = [
        (
            b"HN-AQ-HOANKIEM",
            codecs.encode(
                schema, observation(observation_id=f"crash-{i}", value=v, event_time=base + i * 1000)
            ),
        )
        for i, v in enumerate(values)
    ]
    first = start_worker(settings.model_copy(update={"batch_max": 10}))
    produce(settings, topic, records)
    deadline = time.monotonic() + 30
    while _count_in_redis(settings) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.kill()  # SIGKILL: no commit, no goodbye to the group
    assert _count_in_redis(settings) < len(records), "the first worker finished before it was killed"

    second = start_worker(settings)
    deadline = time.monotonic() + 60
    while _count_in_redis(settings) < len(records) and time.monotonic() < deadline:
        time.sleep(0.2)
    # anything redelivered is applied before its offset is committed: once the group has committed every
    # record (of the input and of the internal topic), nothing more can come (rather than a fixed 2 s)
    internal = blueprint.topic_by_role("repartition").name
    wait_consumed(settings, blueprint, [topic, internal], 60)
    assert _count_in_redis(settings) == len(records)

    # Alerts may be republished after the crash, but only with the same ids: distinct ids match
    # the transitions in the input exactly (FIRING at 180, RESOLVED at 100, repeated).
    expected = sum(1 for a, b in zip([0.0, *values], values, strict=False) if (a >= 151) != (b >= 151))
    alerts = collect(
        settings,
        blueprint.topic_by_role("alerts").name,
        "alert",
        lambda r: len({a["alert_id"] for a in r}) >= expected,
    )
    assert len({a["alert_id"] for a in alerts.records}) == expected
    # and the worker consumed with the client the test asked for
    assert ("rdkafka_assigned" in second.log()) == (consumer_driver == "librdkafka")
