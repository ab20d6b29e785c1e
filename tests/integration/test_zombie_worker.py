"""A worker stopped (SIGSTOP) past its session while another serves the group: the other takes its
partitions over, the zombie wakes and goes on, and every observation fed before, meanwhile and after is
counted exactly once; on both drivers (on librdkafka the reporters' partitions are the bounded
reader's: they are handed over and back through the group's callbacks)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from stream_app.config.blueprint import Blueprint
from stream_app.settings import Settings
from stream_app.wire import codecs

from .support import free_port, observation, produce, wait_consumed
from .test_crash_recovery import _count_in_redis

pytestmark = pytest.mark.chaos


def _feed(settings: Settings, blueprint: Blueprint, tag: str, count: int, base: int) -> None:
    schema = blueprint.schemas.latest("observation")
    produce(
        settings,
        blueprint.input_topic("MAE").name,
        [
            (
                b"HN-AQ-HOANKIEM",
                codecs.encode(
                    schema,
                    observation(observation_id=f"{tag}-{i}", value=100.0, event_time=base + i * 1000),
                ),
            )
            for i in range(count)
        ],
    )


def _counted(settings: Settings, count: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while _count_in_redis(settings) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return _count_in_redis(settings)


@pytest.mark.parametrize("consumer_driver", ["aiokafka", "librdkafka"], indirect=True)
def test_a_zombie_worker_s_partitions_are_taken_over_and_nothing_is_counted_twice(
    settings: Settings, blueprint: Blueprint, start_worker: Any, consumer_driver: str
) -> None:
    base = int(time.time() * 1000) - 3_600_000
    first = start_worker(settings)
    second = start_worker(settings.model_copy(update={"web_port": free_port()}))
    _feed(settings, blueprint, "before", 100, base)
    assert _counted(settings, 100, 60) == 100

    os.kill(first.proc.pid, signal.SIGSTOP)  # past its 6 s session: the group moves on without it
    try:
        _feed(settings, blueprint, "meanwhile", 200, base + 200_000)
        assert _counted(settings, 300, 90) == 300, "the records fed while the zombie slept"
    finally:
        os.kill(first.proc.pid, signal.SIGCONT)
    _feed(settings, blueprint, "after", 100, base + 500_000)
    assert _counted(settings, 400, 90) == 400
    internal = blueprint.topic_by_role("repartition").name
    wait_consumed(settings, blueprint, [blueprint.input_topic("MAE").name, internal], 90)
    assert _count_in_redis(settings) == 400
    assert first.proc.poll() is None, "the zombie woke and went on"
    assert second.proc.poll() is None
    if consumer_driver == "librdkafka":
        assert "bounded_reader_assigned" in second.log()
