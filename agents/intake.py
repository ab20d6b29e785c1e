"""Intake: decode and validate reporters' records; dead-letter the bad ones with a reason; re-key the
good ones by entity onto the internal topic, so one writer keeps each entity's state in order.

One agent reads every reporter's input topic; the topic a record came from says which reporter sent
it, and so which indicators it may carry.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import faust

from agents._batch import Output, batch_agent, dead_letter, publish
from stream_app import codecs, metrics, registry
from stream_app.exceptions import DecodeError
from stream_app.logs import get_logger
from stream_app.model import Rejection
from stream_app.partitioning import partition_for
from stream_app.retry import retry_until_done
from stream_app.runtime import Blueprint
from stream_app.validation import observation_record, validate

log = get_logger(__name__)

MAX_RECORD_BYTES = 256 * 1024
MAX_FUTURE_SKEW_MS = 5 * 60 * 1000


class Intake:
    """Turns one batch of reporters' records into re-keyed observations and dead letters."""

    def __init__(self, app: faust.App, blueprint: Blueprint) -> None:
        self.blueprint = blueprint
        internal = blueprint.topic_by_role("repartition")
        self.rekeyed = app.topic(internal.name, key_serializer="raw", value_serializer="raw")
        self.internal_partitions = internal.partitions
        # source topic -> (reporter, its dead-letter topic)
        self.routes: dict[str, tuple[str, Any]] = {}
        for spec in blueprint.input_topics():
            assert spec.reporter is not None  # noqa: S101 - load_topics guarantees it for input topics
            dead_letters = app.topic(
                blueprint.dead_letter_topic(spec.reporter).name, key_serializer="raw", value_serializer="raw"
            )
            self.routes[spec.name] = (spec.reporter, dead_letters)
        # Confluent-framed records resolve their schema id through the registry, when one is set.
        self.confluent = registry.from_url(blueprint.settings.schema_registry_url, blueprint.schemas)
        self.observation_schema = blueprint.schemas.latest("observation")
        self.dead_letter_schema = blueprint.schemas.latest("dead_letter")

    async def prefetch_schemas(self, events: Sequence[faust.EventT[bytes]]) -> None:
        """Resolve new Confluent schema ids off the event loop; wait (never dead-letter) while the
        registry is unreachable, since the records themselves may be fine."""
        if self.confluent is None:
            return
        confluent = self.confluent

        async def fetch() -> None:
            await confluent.prefetch(e.message.value or b"" for e in events)

        await retry_until_done("schema_registry", fetch, self.blueprint.settings)

    def route(self, events: Sequence[faust.EventT[bytes]], now_ms: int) -> list[Output]:
        """Decide, for each record, where it goes. Pure apart from metrics and logs."""
        outputs: list[Output] = []
        # counted per batch, not per record: a labelled metric costs a lookup and a lock each time
        consumed: Counter[str] = Counter()
        ages: dict[str, list[float]] = {}  # per reporter accepted in this batch: its feed flows
        for event in events:
            message = event.message
            reporter, dead_letters = self.routes[message.topic]
            consumed[message.topic] += 1
            raw: bytes = message.value or b""
            try:
                record = codecs.decode_observation(
                    self.blueprint.schemas, raw, MAX_RECORD_BYTES, self.confluent
                )
            except DecodeError as exc:
                outputs.append(
                    dead_letter(
                        message,
                        reporter,
                        dead_letters,
                        self.dead_letter_schema,
                        Rejection(exc.reason, exc.message),
                        now_ms=now_ms,
                    )
                )
                continue
            result = validate(record, reporter, self.blueprint.catalogue, now_ms, MAX_FUTURE_SKEW_MS)
            if isinstance(result, Rejection):
                outputs.append(
                    dead_letter(
                        message, reporter, dead_letters, self.dead_letter_schema, result, now_ms=now_ms
                    )
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
                )
            )
        for topic, count in consumed.items():
            metrics.RECORDS_CONSUMED.labels(topic).inc(count)
        for reporter, reporter_ages in ages.items():
            metrics.RECORDS_ACCEPTED.labels(reporter).inc(len(reporter_ages))
            metrics.REPORTER_LAST_ACCEPTED.labels(reporter).set(now_ms / 1000)
            age = metrics.EVENT_AGE_SECONDS.labels(reporter)
            for seconds in reporter_ages:
                age.observe(seconds)
        return outputs


def register(app: faust.App, blueprint: Blueprint) -> None:
    """The intake agent, subscribed to every reporter's input topic."""
    settings = blueprint.settings
    intake = Intake(app, blueprint)
    source = app.topic(*intake.routes, key_serializer="raw", value_serializer="raw")

    async def handle(events: Sequence[faust.EventT[bytes]]) -> None:
        await intake.prefetch_schemas(events)
        await publish(intake.route(events, int(time.time() * 1000)), settings)

    batch_agent(app, source, "intake", handle, settings)
