"""How long a live record may wait for company (``STREAM_APP_BATCH_AGE_BUDGET_S``, ``lanes.batch_window``):
at a trickle the consolidate stage's batches gather records until the oldest is the budget old, so they
carry several records rather than one or two, and a record alone still reaches its output within the
budget and the pipeline's own hops."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import OFFSET_END, Producer, TopicPartition

from stream_app.config.blueprint import Blueprint
from stream_app.kafka.config import confluent_config
from stream_app.settings import Settings
from stream_app.wire import codecs

from .support import metric_value, observation, reader

BUDGET_S = 0.5
TRICKLE_PER_S = 40
TRICKLE_S = 3.0
QUIET_S = 1.5
# a lone record's path besides its wait: the intake's window, the re-key and its fetch, the step, the
# publish and the read here (tens of ms each on a quiet machine; the margin is for a loaded one)
PATH_MARGIN_S = 2.0


def _consolidate_batches(worker: Any) -> tuple[float, float]:
    """Batches the consolidate stage took so far, and the records in them."""
    exposition = worker.metrics()
    return (
        metric_value(exposition, "stream_app_batch_size_count", agent="consolidate"),
        metric_value(exposition, "stream_app_batch_size_sum", agent="consolidate"),
    )


def _trickle(settings: Settings, blueprint: Blueprint, worker: Any) -> float:
    """Records per consolidate batch while a trickle of ``TRICKLE_PER_S`` records/s goes through."""
    topic = blueprint.input_topic("MAE").name
    schema = blueprint.schemas.latest("observation")
    producer = Producer({**confluent_config(settings), "acks": "all", "linger.ms": 0})
    count = round(TRICKLE_PER_S * TRICKLE_S)
    batches0, records0 = _consolidate_batches(worker)
    start = time.monotonic()
    for n in range(count):
        time.sleep(max(0.0, start + n / TRICKLE_PER_S - time.monotonic()))
        record = observation(value=30.0 + n % 7, event_time=int(time.time() * 1000) - 60_000)
        producer.produce(topic, key=b"HN-AQ-HOANKIEM", value=codecs.encode(schema, record))
        producer.poll(0)
    assert producer.flush(30) == 0
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline:
        batches, records = _consolidate_batches(worker)
        if records - records0 >= count:
            return (records - records0) / (batches - batches0)
        time.sleep(0.2)
    raise AssertionError(f"{records - records0:.0f} of {count} records through the consolidate stage")


def _lone_record(settings: Settings, blueprint: Blueprint) -> float:
    """Seconds from producing one record, after a quiet spell, to its consolidated record being read."""
    consolidated = blueprint.topic_by_role("consolidated").name
    watcher = reader(settings)
    metadata = watcher.list_topics(consolidated, timeout=10).topics[consolidated]
    watcher.assign([TopicPartition(consolidated, p, OFFSET_END) for p in metadata.partitions])
    producer = Producer({**confluent_config(settings), "acks": "all", "linger.ms": 0})
    try:
        watcher.consume(num_messages=100, timeout=1.0)  # the assignment at the end, before the probe
        time.sleep(QUIET_S)
        record = observation(value=55.0, event_time=int(time.time() * 1000) - 30_000)
        sent = time.monotonic()
        producer.produce(
            blueprint.input_topic("MAE").name,
            key=b"HN-AQ-HOANKIEM",
            value=codecs.encode(blueprint.schemas.latest("observation"), record),
        )
        assert producer.flush(10) == 0
        deadline = sent + 10.0
        while time.monotonic() < deadline:
            if any(m.error() is None for m in watcher.consume(num_messages=10, timeout=0.01)):
                return time.monotonic() - sent
        raise AssertionError("the lone record was not consolidated within 10 s")
    finally:
        watcher.close()


def test_a_trickle_waits_for_company_and_a_lone_record_still_arrives_within_the_budget(
    settings: Settings, blueprint: Blueprint, start_worker: Any
) -> None:
    off = start_worker(settings, STREAM_APP_BATCH_AGE_BUDGET_S="0")
    per_batch_off = _trickle(settings, blueprint, off)
    off.stop()

    on = start_worker(settings, STREAM_APP_BATCH_AGE_BUDGET_S=str(BUDGET_S))
    per_batch_on = _trickle(settings, blueprint, on)
    alone = _lone_record(settings, blueprint)

    # at 40/s a batch of the (tests') 20 ms window holds one to three records; gathering until the oldest is
    # 0.5 s old, about fifteen
    assert per_batch_on >= 2 * per_batch_off, (per_batch_off, per_batch_on)
    assert per_batch_on >= 6, (per_batch_off, per_batch_on)
    # alone, the record waited for company (most of the budget) and no longer than the budget allows
    assert BUDGET_S - 0.15 <= alone <= BUDGET_S + PATH_MARGIN_S, f"{alone * 1000:.0f} ms"
