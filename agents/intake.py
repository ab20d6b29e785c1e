"""Intake: decode and validate reporters' records; dead-letter the bad ones with a reason; re-key the
good ones by entity onto the internal topic, so one writer keeps each entity's state in order.

Two stages read the reporters' topics: ``intake`` every live input topic, ``intake_bulk`` every bulk
topic (history, backfills). They check records alike; the bulk stage waits (:class:`ApplyGate`) while the
stateful step has more than ``STREAM_APP_BULK_MAX_AHEAD`` of this worker's re-keyed records still to
apply, so years of history queue in Kafka, not in front of a live alert. The topic a record came from
says which reporter sent it, and so which indicators it may carry. Every record ends in exactly one
place: the internal topic, or the reporter's dead-letter topic — with a validation reason, by position
for a record batch the consumer would not inflate (:mod:`stream_app.kafka.fetch_bounds`), or, when
decoding or validating it raised something unforeseen or Kafka refused its re-keyed form for good, as
poison (``intake_failed``, ``output_too_large``, ``output_refused``, with the exception type).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import faust

from stream_app.agents._batch import batch_agent
from stream_app.agents._stage import poison_letter, route_and_publish
from stream_app.config.blueprint import Blueprint
from stream_app.domain.model import Rejection
from stream_app.domain.reasons import Reason
from stream_app.domain.validation import observation_record
from stream_app.kafka import registry
from stream_app.kafka.dead_letters import Letter, dead_letter
from stream_app.kafka.fetch_bounds import Withheld
from stream_app.kafka.lanes import Message, Received
from stream_app.kafka.partitioning import partition_for
from stream_app.kafka.publisher import Output, Publisher, received_at
from stream_app.logs import get_logger
from stream_app.ops import metrics
from stream_app.settings import Settings
from stream_app.state.guard import source_of
from stream_app.state.store import StateLayer
from stream_app.wire import codecs
from stream_app.wire.intake import IntakeCheck

log = get_logger(__name__)

STAGE = "intake"


class Intake:
    """Turns one batch of reporters' records into re-keyed observations and dead letters."""

    def __init__(self, blueprint: Blueprint, publisher: Publisher) -> None:
        self.blueprint = blueprint
        self.settings = blueprint.settings
        self.publisher = publisher
        internal = blueprint.topic_by_role("repartition")
        self.rekeyed = internal.name
        self.internal_partitions = internal.partitions
        # source topic -> (reporter, its dead-letter topic)
        self.routes: dict[str, tuple[str, str]] = {}
        self.bulk_topics = frozenset(t.name for t in blueprint.bulk_topics())
        for spec in [*blueprint.input_topics(), *blueprint.bulk_topics()]:
            assert spec.reporter is not None  # noqa: S101 - load_topics guarantees it for input topics
            self.routes[spec.name] = (spec.reporter, blueprint.dead_letter_topic(spec.reporter).name)
        # Confluent-framed records resolve their schema id through the registry, when one is set.
        self.confluent = registry.from_settings(blueprint.settings, blueprint.schemas)
        # the same check `stream-app produce --dry-run` runs on each row it would send
        self.check = IntakeCheck.from_settings(
            blueprint.settings, blueprint.catalogue, blueprint.schemas, self.confluent
        )
        self.observation_schema = blueprint.schemas.latest("observation")

    def route(self, events: Sequence[Received], now_ms: int) -> tuple[list[Output[int]], list[Letter]]:
        """Decide, for each record, where it goes. Pure apart from metrics and logs.

        Each re-keyed observation is blamed on its record's index in ``events``.
        """
        outputs: list[Output[int]] = []
        letters: list[Letter] = []
        # counted per batch, not per record: a labelled metric costs a lookup and a lock each time
        consumed: Counter[str] = Counter()
        ages: dict[str, list[float]] = {}  # per reporter accepted in this batch: its feed flows
        for index, event in enumerate(events):
            message = event.message
            reporter, dead_letters = self.routes[message.topic]
            consumed[message.topic] += 1
            if isinstance(message.value, Withheld):  # a record batch never inflated: by its position
                withheld = message.value
                refused = Rejection(withheld.reason, withheld.detail)
                letters.append(
                    dead_letter(message, dead_letters, refused, now_ms=now_ms, stage=STAGE, reporter=reporter)
                )
                continue
            try:
                result = self._check(message, reporter, now_ms)
            except (
                Exception
            ) as exc:  # a defect, or an input nobody foresaw: this record's, not the partition's
                letters.append(self.poison(message, Rejection(Reason.INTAKE_FAILED, repr(exc)), exc, now_ms))
                continue
            if isinstance(result, Rejection):
                letters.append(
                    dead_letter(message, dead_letters, result, now_ms=now_ms, stage=STAGE, reporter=reporter)
                )
                continue
            ages.setdefault(reporter, []).append(max(0.0, (now_ms - result.event_time) / 1000))
            outputs.append(
                Output(
                    topic=self.rekeyed,
                    partition=partition_for(result.entity, self.internal_partitions),
                    key=result.entity.encode(),
                    value=codecs.encode(self.observation_schema, observation_record(result)),
                    timestamp=message.timestamp,  # keep the reporter's produce time for end-to-end latency
                    blame=index,
                    # the stateful step's clock for this record, and whether it is history
                    headers=received_at(now_ms, bulk=message.topic in self.bulk_topics),
                )
            )
        for topic, count in consumed.items():
            metrics.RECORDS_CONSUMED.labels(topic).inc(count)
        for reporter, reporter_ages in ages.items():
            metrics.RECORDS_ACCEPTED.labels(reporter).inc(len(reporter_ages))
            metrics.REPORTER_LAST_ACCEPTED.labels(reporter).set(now_ms / 1000)
            metrics.observe_many(metrics.EVENT_AGE_SECONDS.labels(reporter), reporter_ages)
        return outputs, letters

    def _check(self, message: Message, reporter: str, now_ms: int) -> Any:
        """The validated observation of one record, or why it is refused."""
        return self.check(message.key, message.value, reporter, now_ms)

    def poison(self, message: Message, rejection: Rejection, error: BaseException, now_ms: int) -> Letter:
        """The dead letter of a reporter's record that made this stage fail."""
        reporter, dead_letters = self.routes[message.topic]
        return poison_letter(message, dead_letters, rejection, error, now_ms, STAGE, reporter)

    async def process(self, events: Sequence[Received]) -> None:
        """Route a batch, publish it, and dead-letter the records whose re-keyed form Kafka refused."""
        await route_and_publish(self, events, self.settings)


class ApplyGate:
    """Holds an intake stage back while the stateful step is behind on what this worker re-keyed.

    Ahead = for each partition of the internal topic, the highest offset this worker's producer wrote
    there minus the partition's applied mark in the state (where the stateful step has got to, whichever
    worker runs it). The live intake waits past ``STREAM_APP_LIVE_MAX_AHEAD``: a reporter's flood then
    queues in its own topic, where the intake's lane shares each batch fairly between reporters, instead
    of on the internal topic, where another reporter's alarm would wait behind all of it. The bulk intake
    waits past the smaller ``STREAM_APP_BULK_MAX_AHEAD``: live records re-keyed after bulk ones wait
    behind them, so history queues in Kafka, not in front of a live alert.

    A partition whose applied mark has not moved for ``STALL_S`` while records wait is not waited for
    any more (logged once): the mark can lag what was processed for good — the last records of a
    partition dead-lettered, the last second of marks lost in a Redis crash, marks restored from a
    backup — and a gate waiting for it would stop the intake for ever. The stage then writes as it would
    without a gate, and lag, not the gate, says the stateful step is slow.
    """

    STALL_S = 10.0

    def __init__(  # noqa: PLR0917 - what the gate reads, and what it reports
        self,
        name: str,
        store: StateLayer,
        publisher: Publisher,
        internal: str,
        max_ahead: int,
        poll_s: float,
        held: Callable[[bool], None],
        waited: Callable[[float], None],
    ) -> None:
        self.name = name
        self.store = store
        self.publisher = publisher
        self.internal = internal
        self.max_ahead = max_ahead
        self.poll_s = poll_s
        self.held = held
        self.waited = waited
        self._marks: dict[str, tuple[int, float]] = {}  # per partition behind: its mark, since when
        self._stalled: set[str] = set()  # partitions not waited for any more (logged once)

    async def ahead(self) -> int:
        """Records this worker wrote to the internal topic that the stateful step has not applied yet
        (on partitions whose mark still moves)."""
        written = self.publisher.written(self.internal)
        if not written:
            return 0
        sources = {source_of((self.internal, p)): offset for p, offset in written.items()}
        check = await self.store.checkpoint(sorted(sources))
        now = time.monotonic()
        total = 0
        for source, offset in sources.items():
            mark = check.applied.get(source)
            applied = -1 if mark is None else int(mark)
            if offset <= applied:
                self._marks.pop(source, None)
                self._stalled.discard(source)
                continue
            seen = self._marks.get(source)
            if seen is None or seen[0] != applied:
                self._marks[source] = (applied, now)
                self._stalled.discard(source)
            elif now - seen[1] > self.STALL_S:
                if source not in self._stalled:
                    self._stalled.add(source)
                    log.warning("apply_gate_partition_stalled", gate=self.name, source=source, mark=applied)
                continue
            total += offset - applied
        return total

    async def wait(self) -> None:
        """Return once the stateful step is within ``max_ahead`` records of this worker's writes."""
        held_since: float | None = None
        while await self.ahead() > self.max_ahead:
            if held_since is None:
                held_since = time.perf_counter()
                self.held(True)
            await asyncio.sleep(self.poll_s)
        if held_since is not None:
            self.held(False)
            self.waited(time.perf_counter() - held_since)


def _gate(name: str, store: StateLayer, publisher: Publisher, internal: str, settings: Settings) -> ApplyGate:
    """The ``live`` or the ``bulk`` intake's gate; the live one is polled more often than the bulk
    one's: a live alarm may be waiting at it."""
    max_ahead, poll_s, held, waited = {
        "live": (settings.live_max_ahead, 0.01, metrics.LIVE_HELD, metrics.LIVE_WAIT),
        "bulk": (settings.bulk_max_ahead, 0.05, metrics.BULK_HELD, metrics.BULK_WAIT),
    }[name]
    return ApplyGate(
        name, store, publisher, internal, max_ahead, poll_s, lambda on: held.set(1 if on else 0), waited.inc
    )


def register(app: faust.App, blueprint: Blueprint, publisher: Publisher, store: StateLayer) -> None:
    """The intake stages: ``intake`` on every live input topic, ``intake_bulk`` on every bulk topic."""
    if blueprint.settings.intake_paused:  # draining the internal topics (stream-app topics grow)
        log.warning("intake_paused", reason="STREAM_APP_INTAKE_PAUSED: no input topic is read")
        return
    settings = blueprint.settings
    intake = Intake(blueprint, publisher)
    internal = blueprint.topic_by_role("repartition").name
    live = [t.name for t in blueprint.input_topics()]
    source = app.topic(*live, key_serializer="raw", value_serializer="raw")
    live_gate = _gate("live", store, publisher, internal, settings)
    batch_agent(app, source, STAGE, intake.process, settings, wait=live_gate.wait)
    bulk = [t.name for t in blueprint.bulk_topics()]
    if not bulk:
        return
    bulk_gate = _gate("bulk", store, publisher, internal, settings)
    bulk_source = app.topic(*bulk, key_serializer="raw", value_serializer="raw")
    batch_agent(app, bulk_source, f"{STAGE}_bulk", intake.process, settings, wait=bulk_gate.wait)
