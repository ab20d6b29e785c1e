"""An idle worker's fetch (``STREAM_APP_FETCH_IDLE_WAIT_MS``, ``lanes.IdleAwareFetch``): with nothing to
fetch it asks the broker to answer at the first byte or after 500 ms, not every 20 ms, and the first
record after a quiet spell is not held."""

from __future__ import annotations

import statistics
import time
from typing import Any

from confluent_kafka import OFFSET_END, TopicPartition

from stream_app.config.blueprint import Blueprint
from stream_app.settings import Settings
from stream_app.wire import codecs

from .support import metric_value, observation, produce, reader

QUIET_S = 1.5
PROBES = 3


def _consumer_thread_cpu(worker: Any) -> float:
    """CPU seconds of the worker's consumer thread (Faust's ``Thread``), and on librdkafka of the
    bounded reader's thread beside it (``bounded-reader``: the reporters' topics' aiokafka fetch)."""
    exposition = worker.metrics()
    return sum(
        metric_value(exposition, "stream_app_thread_cpu_seconds_total", thread=thread)
        for thread in ("Thread", "bounded-reader")
    )


def test_an_idle_worker_fetches_cheaply_and_takes_the_first_record_after_a_quiet_spell_at_once(
    settings: Settings, blueprint: Blueprint, start_worker: Any
) -> None:
    worker = start_worker(settings)
    time.sleep(QUIET_S)
    cpu0, wall0 = _consumer_thread_cpu(worker), time.monotonic()
    time.sleep(5.0)
    share = (_consumer_thread_cpu(worker) - cpu0) / (time.monotonic() - wall0)
    print(f"idle consumer thread(s): {share:.1%} of a core")
    # fifty fetches a second naming every partition cost about a tenth of a core here; idle, about 1 %
    assert share < 0.05, f"the idle consumer thread used {share:.1%} of a core"

    internal = blueprint.topic_by_role("repartition").name
    watcher = reader(settings)
    metadata = watcher.list_topics(internal, timeout=10).topics[internal]
    watcher.assign([TopicPartition(internal, p, OFFSET_END) for p in metadata.partitions])
    try:
        watcher.consume(num_messages=100, timeout=1.0)  # the assignment at the end, before the first probe
        taken: list[float] = []
        for probe in range(PROBES):
            time.sleep(QUIET_S)  # quiet: the fetch in flight is the idle one
            record = observation(value=40.0 + probe, event_time=int(time.time() * 1000) - 60_000)
            encoded = codecs.encode(blueprint.schemas.latest("observation"), record)
            sent = time.monotonic()
            produce(settings, blueprint.input_topic("MAE").name, [(b"HN-AQ-HOANKIEM", encoded)])
            deadline = sent + 10.0
            while time.monotonic() < deadline:
                if any(m.error() is None for m in watcher.consume(num_messages=10, timeout=0.05)):
                    taken.append(time.monotonic() - sent)
                    break
            else:
                raise AssertionError(f"probe {probe}: not re-keyed within 10 s")
    finally:
        watcher.close()
    # held for 64 KiB or the idle wait, each would take at least 0.5 s; answered at once, tens of ms
    assert statistics.median(taken) < 0.3, [f"{t * 1000:.0f} ms" for t in taken]
