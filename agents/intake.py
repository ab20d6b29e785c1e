"""Intake: decode and validate reporters' records; dead-letter the bad ones with a reason; re-key the
good ones by entity onto the internal topic, so one writer keeps each entity's state in order."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import faust

from agents._batch import Output, publish, withhold_acks
from stream_app import codecs, metrics
from stream_app.exceptions import DecodeError
from stream_app.logs import get_logger
from stream_app.model import Rejection
from stream_app.runtime import Blueprint
from stream_app.topics import TopicSpec
from stream_app.validation import observation_record, validate

log = get_logger(__name__)

MAX_RECORD_BYTES = 256 * 1024
MAX_FUTURE_SKEW_MS = 5 * 60 * 1000


class Intake:
    """Turns one batch of a reporter's records into re-keyed observations and dead letters."""

    def __init__(self, app: faust.App, blueprint: Blueprint, source: TopicSpec) -> None:
        assert source.reporter is not None  # noqa: S101 - load_topics guarantees it for input topics
        self.reporter = source.reporter
        self.source = source
        self.blueprint = blueprint
        self.rekeyed = app.topic(
            blueprint.topic_by_role("repartition").name, key_serializer="raw", value_serializer="raw"
        )
        self.dead_letters = app.topic(
            blueprint.dead_letter_topic(self.reporter).name, key_serializer="raw", value_serializer="raw"
        )
        self.observation_schema = blueprint.schemas.latest("observation")
        self.dead_letter_schema = blueprint.schemas.latest("dead_letter")

    def route(self, events: Sequence[faust.EventT[bytes]], now_ms: int) -> list[Output]:
        """Decide, for each record, where it goes. Pure apart from metrics."""
        outputs: list[Output] = []
        for event in events:
            message = event.message
            raw: bytes = message.value or b""
            try:
                record = codecs.decode_observation(self.blueprint.schemas, raw, MAX_RECORD_BYTES)
            except DecodeError as exc:
                outputs.append(self.dead_letter(message, Rejection(exc.reason, exc.message), now_ms))
                continue
            result = validate(record, self.reporter, self.blueprint.catalogue, now_ms, MAX_FUTURE_SKEW_MS)
            if isinstance(result, Rejection):
                outputs.append(self.dead_letter(message, result, now_ms))
                continue
            metrics.RECORDS_ACCEPTED.labels(self.reporter).inc()
            outputs.append(
                Output(
                    topic=self.rekeyed,
                    key=result.entity.encode(),
                    value=codecs.encode(self.observation_schema, observation_record(result)),
                    timestamp=message.timestamp,  # keep the reporter's produce time for end-to-end latency
                )
            )
        return outputs

    def dead_letter(self, message: Any, rejection: Rejection, now_ms: int) -> Output:
        """The dead-letter record of a rejected input record: original bytes, reason and position."""
        metrics.RECORDS_REJECTED.labels(self.reporter, rejection.reason).inc()
        log.info(
            "record_rejected",
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            reason=rejection.reason,
            detail=rejection.message[:200],
        )
        record = {
            "reason": rejection.reason,
            "message": rejection.message,
            "source_topic": message.topic,
            "source_partition": message.partition,
            "source_offset": message.offset,
            "source_key": message.key,
            "original": message.value or b"",
            "rejected_at": now_ms,
        }
        return Output(self.dead_letters, message.key, codecs.encode(self.dead_letter_schema, record))


def register(app: faust.App, blueprint: Blueprint) -> None:
    """One intake agent per reporter input topic."""
    settings = blueprint.settings
    for spec in blueprint.topics:
        if spec.role != "input":
            continue
        intake = Intake(app, blueprint, spec)
        source = app.topic(spec.name, key_serializer="raw", value_serializer="raw")

        async def run(stream: Any, intake: Intake = intake) -> None:
            async for events in stream.take_events(settings.batch_max, within=settings.batch_within_s):
                try:
                    metrics.RECORDS_CONSUMED.labels(intake.source.name).inc(len(events))
                    metrics.BATCH_SIZE.labels("intake").observe(len(events))
                    await publish(intake.route(events, int(time.time() * 1000)))
                except BaseException:
                    withhold_acks(events)
                    raise

        run.__name__ = run.__qualname__ = f"intake_{spec.reporter}"
        app.agent(source, name=f"intake-{spec.reporter}")(run)
