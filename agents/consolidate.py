"""Consolidate: the stateful step. Per entity, in order: rolling aggregates and alert level in Redis,
alert transitions to the center's alerts topic, consolidated values to its compacted topic."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import faust

from agents._batch import Output, dead_letter, observe_latency, publish, withhold_acks
from stream_app import codecs, metrics
from stream_app.entity import StepResult, apply
from stream_app.exceptions import DecodeError
from stream_app.logs import get_logger
from stream_app.model import Observation, Rejection
from stream_app.runtime import Blueprint
from stream_app.state import Commit, StateStore
from stream_app.validation import observation_from_record

log = get_logger(__name__)


class Consolidator:
    """Applies one batch of re-keyed observations to Redis state and publishes the results."""

    def __init__(self, app: faust.App, blueprint: Blueprint, store: StateStore) -> None:
        self.blueprint = blueprint
        self.store = store
        self.alerts = app.topic(
            blueprint.topic_by_role("alerts").name, key_serializer="raw", value_serializer="raw"
        )
        self.consolidated = app.topic(
            blueprint.topic_by_role("consolidated").name, key_serializer="raw", value_serializer="raw"
        )
        self.dead_letters = {
            spec.reporter: app.topic(spec.name, key_serializer="raw", value_serializer="raw")
            for spec in blueprint.topics
            if spec.role == "dead_letter" and spec.reporter is not None
        }
        self.dead_letter_schema = blueprint.schemas.latest("dead_letter")
        self.alert_schema = blueprint.schemas.latest("alert")
        self.consolidated_schema = blueprint.schemas.latest("consolidated")

    async def process(self, events: Sequence[faust.EventT[bytes]]) -> None:
        """Read states, apply in order, publish outputs, then commit states with their offsets.

        Publishing before the commit means a crash in between republishes the same records (with
        the same deterministic alert ids) rather than losing them.
        """
        now_ms = int(time.time() * 1000)
        observations = []
        for event in events:
            message = event.message
            try:
                record = codecs.decode(self.blueprint.schemas, "observation", message.value or b"")
            except DecodeError as exc:  # our own topic: only a bug or a foreign writer gets here
                log.exception(
                    "internal_record_undecodable",
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                    error=exc.message,
                )
                continue
            observations.append((message, observation_from_record(record)))

        states = await self.store.load({obs.entity for _, obs in observations})
        commits: dict[str, Commit] = {}
        outputs: list[Output] = []
        latest: dict[str, Output] = {}
        for message, obs in observations:
            source = f"{message.topic}:{message.partition}"
            state = states[obs.entity]
            result: StepResult = apply(
                state,
                obs,
                source=source,
                offset=message.offset,
                catalogue=self.blueprint.catalogue,
                now_ms=now_ms,
            )
            if result.skipped and not (result.duplicate or result.stale):
                metrics.OBSERVATIONS_SKIPPED.inc()
                continue
            # Duplicates and stale revisions still advance the applied offset: they were processed.
            commits[obs.entity] = Commit(obs.entity, state, source, message.offset)
            if result.duplicate:
                metrics.DUPLICATES.inc()
                continue
            if result.stale:
                outputs.append(self.stale_revision(message, obs, now_ms))
                continue
            if result.alert is not None:
                metrics.ALERTS_EMITTED.labels(result.alert["transition"]).inc()
                log.info(
                    "alert",
                    alert_id=result.alert["alert_id"],
                    transition=result.alert["transition"],
                    indicator=obs.indicator,
                    region=obs.region,
                    station=obs.station,
                    alert_level=result.alert["level_code"],
                    value=obs.value,
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                )
                outputs.append(
                    Output(
                        self.alerts,
                        result.alert["alert_key"].encode(),
                        codecs.encode(self.alert_schema, result.alert),
                    )
                )
            if result.consolidated is not None:
                key = result.consolidated["key"]
                # Within a batch only the newest consolidated value of a key matters (compacted topic).
                latest[key] = Output(
                    self.consolidated,
                    key.encode(),
                    codecs.encode(self.consolidated_schema, result.consolidated),
                )
        outputs.extend(latest.values())
        await publish(outputs, self.blueprint.settings)
        start = time.perf_counter()
        await self.store.commit(list(commits.values()))
        metrics.REDIS_APPLY_SECONDS.observe(time.perf_counter() - start)
        observe_latency(events)

    def stale_revision(self, message: Any, obs: Observation, now_ms: int) -> Output:
        """A dead letter for a revision older than the one already applied (a correction won)."""
        rejection = Rejection(
            "stale_revision",
            f"revision {obs.revision} of {obs.observation_id} arrived after a later revision",
        )
        topic = self.dead_letters[obs.reporter]
        return dead_letter(message, obs.reporter, topic, self.dead_letter_schema, rejection, now_ms=now_ms)


def register(app: faust.App, blueprint: Blueprint, store: StateStore) -> None:
    """The consolidate agent on the internal re-keyed topic."""
    settings = blueprint.settings
    consolidator = Consolidator(app, blueprint, store)
    source = app.topic(
        blueprint.topic_by_role("repartition").name, key_serializer="raw", value_serializer="raw"
    )

    async def run(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_max, within=settings.batch_within_s):
            try:
                metrics.RECORDS_CONSUMED.labels(source.get_topic_name()).inc(len(events))
                metrics.BATCH_SIZE.labels("consolidate").observe(len(events))
                await consolidator.process(events)
            except BaseException:
                withhold_acks(events)
                raise

    run.__name__ = run.__qualname__ = "consolidate"
    app.agent(source, name="consolidate")(run)
