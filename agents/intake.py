"""Intake: decode and validate reporters' records; dead-letter the bad ones with a reason; re-key the
good ones by entity onto the internal topic, so one writer keeps each entity's state in order.

Two stages read the reporters' topics: ``intake`` every live input topic, ``intake_bulk`` every bulk
topic (history, backfills). They check records alike; the bulk stage waits (:class:`BulkGate`) while the
stateful step has more than ``STREAM_APP_BULK_MAX_AHEAD`` of this worker's re-keyed records still to
apply, so years of history queue in Kafka, not in front of a live alert. The topic a record came from
says which reporter sent it, and so which indicators it may carry. Every record ends in exactly one
place: the internal topic, or the reporter's dead-letter topic — with a validation reason, or, when
decoding or validating it raised something unforeseen or Kafka refused its re-keyed form for good, as
poison (``intake_failed``, ``output_too_large``, ``output_refused``, with the exception type).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import faust

from stream_app.agents._batch import batch_agent
from stream_app.config.blueprint import Blueprint
from stream_app.domain.model import Rejection
from stream_app.domain.validation import observation_record
from stream_app.kafka import registry
from stream_app.kafka.lanes import Received
from stream_app.kafka.partitioning import partition_for
from stream_app.kafka.publisher import Letter, Output, Publisher, dead_letter, received_at
from stream_app.kafka.registry import SchemaRegistryUnavailable
from stream_app.logs import get_logger
from stream_app.ops import metrics
from stream_app.ops.failures import Failure, Reasons
from stream_app.ops.retry import retry_until_done
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

    async def prefetch_schemas(self, events: Sequence[Received]) -> None:
        """Resolve new Confluent schema ids off the event loop; wait (never dead-letter) while the
        registry is unreachable, since the records themselves may be fine."""
        if self.confluent is None:
            return
        confluent = self.confluent

        async def fetch() -> None:
            await confluent.prefetch(e.message.value or b"" for e in events)

        def classify(exc: BaseException) -> Failure:
            return Failure.TRANSIENT if isinstance(exc, SchemaRegistryUnavailable) else Failure.PERMANENT

        try:
            await retry_until_done("schema_registry", fetch, self.settings, classify)
        except Exception as exc:  # decoding each record will meet it again, and dead-letter that record
            log.warning("schema_prefetch_failed", error=repr(exc)[:300])

    def route(self, events: Sequence[Received], now_ms: int) -> tuple[list[Output], list[Letter]]:
        """Decide, for each record, where it goes. Pure apart from metrics and logs.

        Each re-keyed observation is blamed on its record's index in ``events``.
        """
        outputs: list[Output] = []
        letters: list[Letter] = []
        # counted per batch, not per record: a labelled metric costs a lookup and a lock each time
        consumed: Counter[str] = Counter()
        ages: dict[str, list[float]] = {}  # per reporter accepted in this batch: its feed flows
        for index, event in enumerate(events):
            message = event.message
            reporter, dead_letters = self.routes[message.topic]
            consumed[message.topic] += 1
            try:
                result = self._check(message, reporter, now_ms)
            except (
                Exception
            ) as exc:  # a defect, or an input nobody foresaw: this record's, not the partition's
                letters.append(self.poison(message, Reasons.INTAKE_FAILED, repr(exc), exc, now_ms))
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

    def _check(self, message: Any, reporter: str, now_ms: int) -> Any:
        """The validated observation of one record, or why it is refused."""
        return self.check(message.key, message.value, reporter, now_ms)

    def poison(self, message: Any, reason: str, detail: str, error: BaseException, now_ms: int) -> Letter:
        """The dead letter of a reporter's record that made this stage fail."""
        reporter, dead_letters = self.routes[message.topic]
        return dead_letter(
            message,
            dead_letters,
            Rejection(reason, detail),
            now_ms=now_ms,
            stage=STAGE,
            reporter=reporter,
            error=error,
            poison=True,
        )

    async def process(self, events: Sequence[Received]) -> None:
        """Route a batch, publish it, and dead-letter the records whose re-keyed form Kafka refused."""
        await self.prefetch_schemas(events)
        now_ms = int(time.time() * 1000)
        outputs, letters = self.route(events, now_ms)
        refused = await self.publisher.publish(outputs, letters)
        if refused:
            late = []
            for output, error in refused:
                too_large = output.size > self.publisher.max_bytes
                reason = Reasons.OUTPUT_TOO_LARGE if too_large else Reasons.OUTPUT_REFUSED
                assert isinstance(output.blame, int)  # noqa: S101 - every intake output names its record
                late.append(self.poison(events[output.blame].message, reason, str(error), error, now_ms))
            await self.publisher.publish_dead_letters(late)


class BulkGate:
    """Holds bulk records back while the stateful step is behind on what this worker re-keyed.

    Ahead = for each partition of the internal topic, the highest offset this worker's producer wrote
    there minus the partition's applied mark in the state (where the stateful step has got to, whichever
    worker runs it). Live records re-keyed after bulk ones wait behind them on the internal topic, so
    keeping this small keeps a live alert's wait small; the bulk load itself waits in Kafka.
    """

    def __init__(self, store: StateLayer, publisher: Publisher, internal: str, max_ahead: int) -> None:
        self.store = store
        self.publisher = publisher
        self.internal = internal
        self.max_ahead = max_ahead

    async def ahead(self) -> int:
        """Records this worker wrote to the internal topic that the stateful step has not applied yet."""
        written = self.publisher.written(self.internal)
        if not written:
            return 0
        sources = {source_of((self.internal, p)): offset for p, offset in written.items()}
        check = await self.store.checkpoint(sorted(sources))
        return sum(
            max(0, offset - (-1 if check.applied.get(source) is None else int(check.applied[source] or 0)))
            for source, offset in sources.items()
        )

    async def wait(self) -> None:
        """Return once the stateful step is within ``max_ahead`` records of this worker's writes."""
        held_since: float | None = None
        while await self.ahead() > self.max_ahead:
            if held_since is None:
                held_since = time.perf_counter()
                metrics.BULK_HELD.set(1)
            await asyncio.sleep(0.05)
        if held_since is not None:
            metrics.BULK_HELD.set(0)
            metrics.BULK_WAIT.inc(time.perf_counter() - held_since)


def register(app: faust.App, blueprint: Blueprint, publisher: Publisher, store: StateLayer) -> None:
    """The intake stages: ``intake`` on every live input topic, ``intake_bulk`` on every bulk topic."""
    if blueprint.settings.intake_paused:  # draining the internal topics (stream-app topics grow)
        log.warning("intake_paused", reason="STREAM_APP_INTAKE_PAUSED: no input topic is read")
        return
    intake = Intake(blueprint, publisher)
    live = [t.name for t in blueprint.input_topics()]
    source = app.topic(*live, key_serializer="raw", value_serializer="raw")
    batch_agent(app, source, STAGE, intake.process, blueprint.settings)
    bulk = [t.name for t in blueprint.bulk_topics()]
    if not bulk:
        return
    gate = BulkGate(
        store, publisher, blueprint.topic_by_role("repartition").name, blueprint.settings.bulk_max_ahead
    )

    bulk_source = app.topic(*bulk, key_serializer="raw", value_serializer="raw")
    batch_agent(app, bulk_source, f"{STAGE}_bulk", intake.process, blueprint.settings, wait=gate.wait)
