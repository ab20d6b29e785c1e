"""A second worker joining a librdkafka group mid-stream: the first gives its partitions up within
moments, having committed what it processed. The revoke callback's commit, made from another thread,
once never completed: every rebalance stalled the group for the commit's 11 s bound and committed
nothing, so the new owners read it all again (docs/performance.md, the librdkafka driver)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import pytest

from stream_app.config.blueprint import Blueprint
from stream_app.settings import Settings
from stream_app.wire import codecs

from .support import WorkerProcess, free_port, observation, produce


def _times(worker: WorkerProcess, event: str) -> list[float]:
    """When ``worker`` logged ``event`` (seconds since the epoch), in order."""
    found = []
    for line in worker.log().splitlines():
        if f'"{event}"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == event:
            found.append(datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp())
    return found


@pytest.mark.parametrize("consumer_driver", ["librdkafka"], indirect=True)
@pytest.mark.timeout(180)
def test_a_worker_joining_mid_stream_takes_over_within_moments(
    settings: Settings, blueprint: Blueprint, start_worker: Any, consumer_driver: str
) -> None:
    topic = blueprint.input_topic("MAE").name
    schema = blueprint.schemas.latest("observation")
    base = int(time.time() * 1000) - 3_600_000
    records = [
        (
            b"HN-AQ-HOANKIEM",
            codecs.encode(schema, observation(observation_id=f"join-{i}", value=50.0, event_time=base + i)),
        )
        for i in range(3000)
    ]
    # small batches: the first worker is still working through them when the second joins, with
    # records processed since its last commit (what its revoke callback commits)
    first = start_worker(settings.model_copy(update={"batch_max": 20}))
    produce(settings, topic, records)
    second = start_worker(settings.model_copy(update={"web_port": free_port()}))
    deadline = time.monotonic() + 60
    while len(_times(first, "rdkafka_assigned")) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assigned, revoked = _times(first, "rdkafka_assigned"), _times(first, "rdkafka_revoked")
    assert len(assigned) >= 2, first.log()[-3000:]
    assert revoked, first.log()[-3000:]
    assert assigned[1] - revoked[0] < 5.0  # was 11 s: the revoke's commit given up at its bound
    assert "rdkafka_commit_timed_out" not in first.log()
    assert "rdkafka_rebalance_slow" not in first.log()
    assert "rdkafka_assigned" in second.log()
