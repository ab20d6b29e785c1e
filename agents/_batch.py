"""What every agent shares: batches of records in, acked only once handled.

:func:`batch_agent` runs a handler per batch taken from the stage's lane (the handler dead-letters what
it cannot process, see :mod:`stream_app.kafka.publisher`); a batch that fails or is cancelled is not
acked.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import faust
from faust.types import TP

from stream_app.kafka.lanes import Lanes, Received, lane_consumer
from stream_app.kafka.registry import ConfluentSchemas, SchemaRegistryUnavailable
from stream_app.logs import get_logger
from stream_app.ops import metrics
from stream_app.ops.failures import Failure
from stream_app.ops.retry import retry_until_done
from stream_app.settings import Settings
from stream_app.state.guard import CommittedOffsets, EarliestOffsets, Partition, PartitionMovedError

log = get_logger(__name__)


def observe_latency(events: Sequence[Received]) -> None:
    """Record end-to-end latency from each input record's Kafka timestamp to now."""
    now = time.time()
    metrics.observe_many(
        metrics.END_TO_END_SECONDS,
        [max(0.0, now - ts) for ts in (e.message.timestamp for e in events) if ts],
    )


async def prefetch_schemas(
    confluent: ConfluentSchemas | None, events: Sequence[Received], settings: Settings
) -> None:
    """Resolve the new Confluent schema ids of a batch off the event loop, at most
    ``STREAM_APP_SCHEMA_REGISTRY_MAX_LOOKUPS_PER_BATCH`` of them taken in turn from each topic (the
    others' records are dead-lettered by decoding, ``schema_not_looked_up``); wait (never dead-letter)
    while the registry is unreachable, since the records themselves may be fine."""
    if confluent is None:
        return
    resolver = confluent

    async def fetch() -> None:
        await resolver.prefetch_from((e.message.topic, e.message.value or b"") for e in events)

    def classify(exc: BaseException) -> Failure:
        return Failure.TRANSIENT if isinstance(exc, SchemaRegistryUnavailable) else Failure.PERMANENT

    try:
        await retry_until_done("schema_registry", fetch, settings, classify)
    except Exception as exc:  # decoding each record will meet it again, and dead-letter that record
        log.warning("schema_prefetch_failed", error=repr(exc)[:300])


def batch_agent(
    app: faust.App,
    source: Any,
    name: str,
    handle: Callable[[Sequence[Received]], Awaitable[None]],
    settings: Settings,
    *,
    halt: Callable[[], None] | None = None,
    wait: Callable[[], Awaitable[None]] | None = None,
    age_budget: float = 0.0,
) -> None:
    """Register stage ``name`` on ``source``: batches of up to ``STREAM_APP_BATCH_MAX`` records handed
    to ``handle``; the records of a batch are acked only once ``handle`` returned.

    The stage takes its records a fetch at a time from its lane (:mod:`stream_app.kafka.lanes`; a
    worker's app, :class:`stream_app.pipeline.app.StreamApp`, has them).

    ``handle`` dead-letters what it cannot process, so an exception escaping it is a defect. Letting
    Faust restart the agent would be worse than stopping: the restarted agent would go on with later
    records, commit their entities' offsets to Redis, and the failed batch — redelivered after the
    next rebalance — would then be skipped as already applied. So the batch is not acked, the crash is
    logged and counted (``stream_app_agent_crashes_total``), the worker is stopped (``halt``, by default
    a SIGTERM to itself: a graceful stop) and the stage consumes nothing more. Its partitions are
    redelivered from their committed offsets to the next owner.

    ``wait``: awaited before each batch of a lane (the intake's gates); a batch whose partitions
    were revoked meanwhile is dropped, not processed. ``age_budget``: a batch gathers records until its
    oldest is this old, when that is longer than ``STREAM_APP_BATCH_WITHIN_S`` (:meth:`Lane.take`).
    """
    stop = halt or _stop_worker

    async def crashed(records: int) -> None:
        metrics.AGENT_CRASHES.labels(name).inc()
        log.critical(
            "agent_crashed", agent=name, records=records, action="stopping the worker", exc_info=True
        )
        stop()
        await asyncio.Event().wait()  # never consume again; the worker's stop cancels this

    lanes: Lanes | None = getattr(app, "lanes", None)
    if lanes is None:
        raise TypeError(
            f"stage {name}: a stage runs on an app with lanes (stream_app.pipeline.app.StreamApp)"
        )
    _lane_stage(app, lanes, source, name, handle, settings, crashed, wait, age_budget)


def _lane_stage(  # noqa: PLR0917 - batch_agent's own arguments, passed on
    app: faust.App,
    lanes: Lanes,
    source: Any,
    name: str,
    handle: Callable[[Sequence[Received]], Awaitable[None]],
    settings: Settings,
    crashed: Callable[[int], Awaitable[None]],
    wait: Callable[[], Awaitable[None]] | None,
    age_budget: float,
) -> None:
    """Stage ``name`` as a task taking batches from its lane (see :func:`batch_agent`)."""
    lane = lanes.open(
        name, source.topics, capacity=settings.batch_max * 4, capacity_bytes=settings.lane_max_bytes
    )
    app.topics.add(source)  # subscribed as an agent's topic would be; the lane consumer delivers it

    async def run_lane() -> None:
        consumer = lane_consumer(app)
        batch_size = metrics.BATCH_SIZE.labels(name)
        busy = metrics.STAGE_SECONDS.labels(name)
        while True:
            if wait is not None:  # before taking: once the gate opens, the batch is the freshest fair one
                await wait()
            deliveries = await lane.take(settings.batch_max, settings.batch_within_s, age_budget)
            current = [d for d in deliveries if consumer.current(d)]
            if not current:
                continue  # fetched before a rebalance: read again from the committed offsets
            events = [event for delivery in current for event in delivery.events]
            started = time.perf_counter()
            try:
                batch_size.observe(len(events))
                await handle(events)
            except asyncio.CancelledError:
                raise  # not acked: redelivered to the next owner
            except PartitionMovedError as exc:  # a zombie: the new owner has these records
                _fenced(name, len(events), exc)
                continue  # not acked; the rebalance that follows takes the partitions away
            except Exception:
                await crashed(len(events))
            consumer.ack_batch(current)
            busy.observe(time.perf_counter() - started)

    run_lane.__name__ = run_lane.__qualname__ = name
    app.task(run_lane)


def _fenced(stage: str, records: int, exc: PartitionMovedError) -> None:
    metrics.BATCHES_FENCED.labels(stage).inc()
    log.warning("batch_fenced", stage=stage, records=records, reason=str(exc)[:300])


def _stop_worker() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def earliest_offsets(app: faust.App) -> EarliestOffsets:
    """The first offset still in the log of each partition asked (the state guard's "start of the log")."""

    async def earliest(partitions: Sequence[Partition]) -> Mapping[Partition, int]:
        found = await app.consumer.earliest_offsets(*(TP(topic, p) for topic, p in partitions))
        return {(tp.topic, tp.partition): int(offset) for tp, offset in found.items()}

    return earliest


def committed_offsets(app: faust.App) -> CommittedOffsets:
    """What Kafka says the group committed for each partition asked (None: nothing), fetched from the
    group's coordinator by the worker's own consumer, whichever its driver (bounded in time)."""

    async def committed(partitions: Sequence[Partition]) -> Mapping[Partition, int | None]:
        return await lane_consumer(app).committed_offsets(partitions)

    return committed
