"""Redis goes away mid-stream: the partition waits (never acks what it could not store), /health says
so, and once Redis is back every observation is applied exactly once."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from stream_app.config.blueprint import Blueprint
from stream_app.settings import Settings
from stream_app.wire import codecs

from .support import ServicesRedis, metric_value, observation, probe, produce, redis_hash

pytestmark = pytest.mark.chaos

STATE_KEY = "{ENV.AQI|01|HN-AQ-HOANKIEM}:state"


@pytest.fixture
def own_redis(shipped_redis: Callable[..., ServicesRedis]) -> ServicesRedis:
    """A private Redis as shipped (the app's ACL user, TLS, AOF): this test stops and starts it."""
    return shipped_redis()


def _applied(url: str, prefix: str) -> int:
    state = redis_hash(redis.Redis.from_url(url), f"{prefix}:{STATE_KEY}")
    return sum(int(v.split(b",")[0]) for k, v in state.items() if k.startswith(b"h::"))


def test_partition_waits_for_redis_and_applies_everything_once_when_it_returns(
    settings: Settings, blueprint: Blueprint, start_worker: Any, own_redis: ServicesRedis
) -> None:
    local = settings.model_copy(update={"retry_max_s": 0.5, "redis_key_prefix": own_redis.PREFIX})
    worker = start_worker(
        local, STREAM_APP_REDIS_URL=own_redis.url(), STREAM_APP_RETRY_MAX_S="0.5", STREAM_APP_BATCH_MAX="5"
    )
    schema = blueprint.schemas.latest("observation")
    topic = blueprint.input_topic("MAE").name
    start = int(time.time() * 1000) - 3_600_000

    def readings(first: int, count: int) -> list[tuple[bytes, bytes]]:
        return [
            (
                b"HN-AQ-HOANKIEM",
                codecs.encode(
                    schema,
                    observation(
                        observation_id=f"outage-{i}", value=40.0 + i % 7, event_time=start + i * 10_000
                    ),
                ),
            )
            for i in range(first, first + count)
        ]

    produce(local, topic, readings(0, 20))
    deadline = time.monotonic() + 30
    while _applied(own_redis.url(), local.redis_key_prefix) < 20 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _applied(own_redis.url(), local.redis_key_prefix) == 20

    own_redis.stop()
    produce(local, topic, readings(20, 30))
    deadline = time.monotonic() + 30
    status, body = probe(local, "/health")
    while status == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
        status, body = probe(local, "/health")
    assert status == 503
    assert any(op.startswith("redis") for op in body["waiting_for"])

    def stateful_retries() -> float:
        # the roll-up's writes may be the first to wait (redis_rollup): the stateful step's come soon
        exposition = worker.metrics()
        # the state guard's checkpoint read comes first in a batch, then the reads and the commit
        return sum(
            metric_value(exposition, "stream_app_retries_total", operation=f"redis_{operation}")
            for operation in ("checkpoint", "load", "commit")
        )

    deadline = time.monotonic() + 15
    while stateful_retries() < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stateful_retries() >= 1
    time.sleep(2)  # the partition keeps waiting: nothing is acked, nothing skipped
    assert worker.proc.poll() is None

    own_redis.start()  # back, with what it had persisted (append-only file)
    deadline = time.monotonic() + 60
    while _applied(own_redis.url(), local.redis_key_prefix) < 50 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)
    assert _applied(own_redis.url(), local.redis_key_prefix) == 50
    assert probe(local, "/health")[0] == 200
