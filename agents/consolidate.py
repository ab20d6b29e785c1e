"""Consolidate: the stateful step. One writer per entity, in order, for three kinds of record on the
internal topic: observations (aggregates, alert rules, consolidated values), ticks (timer-driven
rules: absence, late reports) and the center's directives (acknowledge, assign, comment ...).

Per batch: read the states of every entity it touches in one pipelined round trip, apply records in
order (pure: ``stream_app.entity``), publish alerts and consolidated values, then commit each
entity's state together with the input offset it includes, atomically.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import faust

from agents._batch import Output, dead_letter, observe_latency, publish, withhold_acks
from stream_app import codecs, metrics
from stream_app.alerting import RuleBook
from stream_app.entity import (
    Context,
    DirectiveRefusedError,
    EntityKey,
    EntityState,
    StepResult,
    apply,
    direct,
    tick,
)
from stream_app.exceptions import DecodeError
from stream_app.logs import get_logger
from stream_app.model import Observation, Rejection
from stream_app.partitioning import partition_for
from stream_app.runtime import Blueprint
from stream_app.state import Commit, StateStore
from stream_app.validation import observation_from_record

log = get_logger(__name__)


@dataclass(slots=True)
class _Batch:
    """One batch's work: records decoded and routed to entities, then their outputs."""

    items: list[tuple[Any, str, Any]] = field(default_factory=list)  # (message, kind, payload)
    observation_events: list[Any] = field(default_factory=list)
    entities: set[str] = field(default_factory=set)
    seen_ids: dict[str, list[str]] = field(default_factory=dict)  # per entity: its observations' ids
    outputs: list[Output] = field(default_factory=list)
    latest: dict[str, Output] = field(default_factory=dict)  # consolidated: newest per key wins
    commits: dict[str, Commit] = field(default_factory=dict)


class Consolidator:
    """Applies one batch of internal records to Redis state and publishes the results."""

    def __init__(self, app: faust.App, blueprint: Blueprint, store: StateStore, rulebook: RuleBook) -> None:
        self.blueprint = blueprint
        self.store = store
        self.rulebook = rulebook
        internal = blueprint.topic_by_role("repartition")
        self.partitions = internal.partitions
        # timer entities by partition: each tick visits the watched feeds that live there
        self.timer_entities: dict[int, list[str]] = {}
        for entity in rulebook.timer_entities():
            key = str(EntityKey(entity.indicator, entity.region, entity.station))
            self.timer_entities.setdefault(partition_for(key, self.partitions), []).append(key)

        def raw_topic(name: str) -> Any:
            return app.topic(name, key_serializer="raw", value_serializer="raw")

        self.alerts = raw_topic(blueprint.topic_by_role("alerts").name)
        self.active = raw_topic(blueprint.topic_by_role("active_alerts").name)
        self.consolidated = raw_topic(blueprint.topic_by_role("consolidated").name)
        self.domain_topics = {
            t.domain: raw_topic(t.name) for t in blueprint.topics if t.role == "domain_alerts" and t.domain
        }
        self.reporter_directives = {
            t.reporter: raw_topic(t.name)
            for t in blueprint.topics
            if t.role == "reporter_directives" and t.reporter
        }
        self.dead_letters = {
            t.reporter: raw_topic(t.name) for t in blueprint.topics if t.role == "dead_letter" and t.reporter
        }
        self.directive_dead_letters = raw_topic(blueprint.topic_by_role("directives_dead_letter").name)
        self.schemas = {
            name: blueprint.schemas.latest(name) for name in ("alert", "consolidated", "dead_letter")
        }

    async def process(self, events: Sequence[faust.EventT[bytes]]) -> None:
        """Read states, apply in order, publish outputs, then commit states with their offsets.

        Publishing before the commit means a crash in between republishes the same records (with
        the same deterministic alert ids) rather than losing them.
        """
        ctx_now = int(time.time() * 1000)
        batch = self._decode(events)
        states = await self.store.load(batch.entities, batch.seen_ids)
        for message, kind, payload in batch.items:
            source = f"{message.topic}:{message.partition}"
            if kind == "observation":
                self._observation(batch, states, message, source=source, obs=payload, now=ctx_now)
            elif kind == "tick":
                self._tick(batch, states, message, source, payload)
            else:
                self._directive(batch, states, message, source=source, payload=payload, now=ctx_now)
        batch.outputs.extend(batch.latest.values())
        await publish(batch.outputs, self.blueprint.settings)
        start = time.perf_counter()
        await self.store.commit(list(batch.commits.values()))
        metrics.REDIS_APPLY_SECONDS.observe(time.perf_counter() - start)
        observe_latency(batch.observation_events)

    def _decode(self, events: Sequence[faust.EventT[bytes]]) -> _Batch:
        batch = _Batch()
        for event in events:
            message = event.message
            try:
                subject, record = codecs.decode_any(self.blueprint.schemas, message.value or b"")
            except DecodeError as exc:  # our own topic: only a bug or a foreign writer gets here
                log.exception(
                    "internal_record_undecodable",
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                    error=exc.message,
                )
                continue
            if subject == "observation":
                obs = observation_from_record(record)
                batch.items.append((message, subject, obs))
                batch.entities.add(obs.entity)
                batch.seen_ids.setdefault(obs.entity, []).append(obs.observation_id)
                batch.observation_events.append(event)
            elif subject == "tick":
                entities = self.timer_entities.get(int(record["partition"]), [])
                batch.items.append((message, subject, (int(_ms(record["now"])), entities)))
                batch.entities.update(entities)
            elif subject == "directive":
                entity = str(message.key.decode()) if message.key else ""
                batch.items.append((message, subject, (entity, record)))
                batch.entities.add(entity)
        return batch

    def _ctx(self, now_ms: int) -> Context:
        return Context(self.blueprint.catalogue, self.rulebook, now_ms)

    def _observation(
        self,
        batch: _Batch,
        states: dict[str, EntityState],
        message: Any,
        *,
        source: str,
        obs: Observation,
        now: int,
    ) -> None:
        state = states[obs.entity]
        result = apply(state, obs, source=source, offset=message.offset, ctx=self._ctx(now))
        if result.skipped and not (result.duplicate or result.stale):
            metrics.OBSERVATIONS_SKIPPED.inc()
            return
        # Duplicates and stale revisions still advance the applied offset: they were processed.
        batch.commits[obs.entity] = Commit(obs.entity, state, source, message.offset)
        if result.duplicate:
            metrics.DUPLICATES.inc()
            return
        if result.stale:
            rejection = Rejection(
                "stale_revision",
                f"revision {obs.revision} of {obs.observation_id} arrived after a later revision",
            )
            batch.outputs.append(
                dead_letter(
                    message,
                    obs.reporter,
                    self.dead_letters[obs.reporter],
                    self.schemas["dead_letter"],
                    rejection,
                    now_ms=now,
                )
            )
            return
        self._alerts(batch, result, message)
        if result.consolidated is not None:
            key = result.consolidated["key"]
            batch.latest[key] = Output(
                self.consolidated,
                key.encode(),
                codecs.encode(self.schemas["consolidated"], result.consolidated),
            )

    def _tick(
        self, batch: _Batch, states: dict[str, EntityState], message: Any, source: str, payload: Any
    ) -> None:
        now, entities = payload
        ctx = self._ctx(now)
        for entity in entities:
            state = states[entity]
            result = tick(state, EntityKey.parse(entity), source=source, offset=message.offset, ctx=ctx)
            if result.skipped:
                continue
            batch.commits[entity] = Commit(entity, state, source, message.offset)
            self._alerts(batch, result, message)

    def _directive(
        self,
        batch: _Batch,
        states: dict[str, EntityState],
        message: Any,
        *,
        source: str,
        payload: Any,
        now: int,
    ) -> None:
        entity, directive = payload
        state = states[entity]
        try:
            result = direct(
                state,
                EntityKey.parse(entity),
                directive,
                source=source,
                offset=message.offset,
                ctx=self._ctx(now),
            )
        except DirectiveRefusedError as refused:
            batch.commits[entity] = Commit(entity, state, source, message.offset)
            batch.outputs.append(
                dead_letter(
                    message,
                    "CENTER",
                    self.directive_dead_letters,
                    self.schemas["dead_letter"],
                    Rejection(refused.reason, str(refused)),
                    now_ms=now,
                )
            )
            return
        if result.skipped:
            return
        batch.commits[entity] = Commit(entity, state, source, message.offset)
        self._alerts(batch, result, message)
        # The ministry concerned receives the directive on its own topic, and only its own.
        topic = self.reporter_directives.get(state.reporter)
        if topic is not None:
            batch.outputs.append(Output(topic, directive["alert_key"].encode(), message.value or b""))

    def _alerts(self, batch: _Batch, result: StepResult, message: Any) -> None:
        for alert in result.alerts:
            encoded = codecs.encode(self.schemas["alert"], alert)
            key = alert["alert_key"].encode()
            if alert["event_type"] == "TRANSITION":
                metrics.ALERTS_EMITTED.labels(alert["transition"]).inc()
            log.info(
                "alert",
                alert_id=alert["alert_id"],
                event_type=alert["event_type"],
                transition=alert["transition"],
                rule=alert["rule"],
                indicator=alert["indicator"],
                region=alert["region"],
                station=alert["station"],
                alert_level=alert["level_code"],
                value=alert["value"],
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
            )
            batch.outputs.append(Output(self.alerts, key, encoded))
            domain_topic = self.domain_topics.get(alert["domain"])
            if domain_topic is not None:
                batch.outputs.append(Output(domain_topic, key, encoded))
            # The compacted active-alerts topic: the current record of an open alert, a tombstone
            # once it is resolved, so a new subscriber rebuilds the live picture from it.
            resolved = alert["event_type"] == "TRANSITION" and alert["transition"] == "RESOLVED"
            batch.outputs.append(Output(self.active, key, None if resolved else encoded))


def _ms(value: Any) -> int:
    return int(value.timestamp() * 1000) if hasattr(value, "timestamp") else int(value)


def register(app: faust.App, blueprint: Blueprint, store: StateStore, rulebook: RuleBook) -> None:
    """The consolidate agent on the internal re-keyed topic."""
    settings = blueprint.settings
    consolidator = Consolidator(app, blueprint, store, rulebook)
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
