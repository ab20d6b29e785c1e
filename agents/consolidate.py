"""Consolidate: the stateful step. One writer per entity, in order, for three kinds of record on the
internal topic: observations (aggregates, alert rules, consolidated values), ticks (timer-driven
rules and closing reporting periods at their deadline) and the center's directives.

Per batch: read what the batch touches (each entity's state, its observations' ids, the periods they
count in) in one pipelined round trip; apply records in order (pure: ``stream_app.entity``) — if a
step needs more (a correction needs the values of its period to recompute a min; a closing period
its final value), read that and run the batch again from the states as read; publish alerts,
consolidated records (once per key per batch) and roll-up contributions; then commit each entity's
state together with the input offset it includes, atomically.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import faust

from agents._batch import Output, batch_agent, dead_letter, observe_latency, publish
from stream_app import codecs, metrics
from stream_app.alerting import RuleBook
from stream_app.consolidation import contributions, entity_records
from stream_app.entity import (
    Context,
    DirectiveRefusedError,
    EntityKey,
    EntityState,
    StepResult,
    Touched,
    apply,
    direct,
    needed_periods,
    tick,
)
from stream_app.exceptions import DecodeError
from stream_app.logs import get_logger
from stream_app.model import Observation, Rejection
from stream_app.partitioning import partition_for
from stream_app.rollup import rollup_key, targets
from stream_app.runtime import Blueprint
from stream_app.state import Commit, EntityReads, ReadRequest, StateStore
from stream_app.validation import observation_from_record

log = get_logger(__name__)

MAX_PASSES = 4  # reads a batch may discover: the batch's own, then a correction's range, then ...


@dataclass(slots=True)
class _Batch:
    """One batch's records, decoded and routed to entities, and what to read for them."""

    items: list[tuple[Any, str, Any]] = field(default_factory=list)  # (message, kind, payload)
    observation_events: list[Any] = field(default_factory=list)
    requests: dict[str, ReadRequest] = field(default_factory=dict)

    def request(self, entity: str) -> ReadRequest:
        found = self.requests.get(entity)
        if found is None:
            found = self.requests[entity] = ReadRequest(state=True)
        return found


@dataclass(slots=True)
class _Run:
    """One pass over a batch: the states after it, what each record did, what is still missing."""

    states: dict[str, EntityState]
    results: list[tuple[Any, str, Any, Any]] = field(default_factory=list)  # (message, kind, payload, result)
    touched: dict[str, Touched] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    partitions: dict[str, int] = field(default_factory=dict)  # entity -> internal partition

    def missing(self) -> dict[str, ReadRequest]:
        out: dict[str, ReadRequest] = {}
        for entity, state in self.states.items():
            for kind, first, second in state.missing:
                request = out.setdefault(entity, ReadRequest())
                if kind == "period":
                    request.periods.add((first, second))
                else:
                    request.ranges.add((first, second))
        return out


class Consolidator:
    """Applies one batch of internal records to Redis state and publishes the results."""

    def __init__(self, app: faust.App, blueprint: Blueprint, store: StateStore, rulebook: RuleBook) -> None:
        self.blueprint = blueprint
        self.catalogue = blueprint.catalogue
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
        rollups = blueprint.topic_by_role("rollup")
        self.rollups, self.rollup_partitions = raw_topic(rollups.name), rollups.partitions
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
            name: blueprint.schemas.latest(name)
            for name in ("alert", "consolidated", "dead_letter", "contribution")
        }

    async def process(self, events: Sequence[faust.EventT[bytes]]) -> None:
        """Read, apply in order, publish outputs, then commit states with their offsets.

        Publishing before the commit means a crash in between republishes the same records (with
        the same deterministic alert ids, and consolidated values that are the same) rather than
        losing them.
        """
        now = int(time.time() * 1000)
        batch = await self._decode(events)
        reads: dict[str, EntityReads] = {}
        requests = batch.requests
        for _ in range(MAX_PASSES):
            await self.store.read(requests, reads)
            run = self._run(batch, reads, now)
            requests = run.missing()
            if not requests:
                break
        else:
            raise RuntimeError(f"a batch still needs reads after {MAX_PASSES} passes: {sorted(requests)[:5]}")
        outputs, before = self._outputs(run, now)
        await publish(outputs, self.blueprint.settings)
        start = time.perf_counter()
        await self.store.commit(list(run.commits.values()), before)
        metrics.REDIS_APPLY_SECONDS.observe(time.perf_counter() - start)
        observe_latency(batch.observation_events)

    async def _decode(self, events: Sequence[faust.EventT[bytes]]) -> _Batch:
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
                request = batch.request(obs.entity)
                request.ids.add(obs.observation_id)
                request.periods.update(needed_periods(self.catalogue.indicators[obs.indicator], obs))
                batch.observation_events.append(event)
            elif subject == "tick":
                partition = int(record["partition"])
                now = _ms(record["now"])
                due = await self._due(partition, now)
                entities = sorted(set(self.timer_entities.get(partition, [])) | set(due))
                batch.items.append((message, subject, (now, entities)))
                for entity in entities:
                    batch.request(entity)
            elif subject == "directive":
                entity = str(message.key.decode()) if message.key else ""
                batch.items.append((message, subject, (entity, record)))
                batch.request(entity)
        return batch

    async def _due(self, partition: int, now_ms: int) -> list[str]:
        """Entities of a partition with a period whose deadline has passed (the periods-due registry)."""
        key = self._due_key(partition)

        async def read() -> list[Any]:
            return list(await self.store.client.zrangebyscore(key, "-inf", now_ms))

        return [
            e.decode() if isinstance(e, bytes) else str(e) for e in await self.store.with_retry("load", read)
        ]

    def _due_key(self, partition: int) -> str:
        return self.store.global_key("due", str(partition))

    def _ctx(self, now_ms: int) -> Context:
        return Context(self.catalogue, self.rulebook, now_ms)

    def _run(self, batch: _Batch, reads: dict[str, EntityReads], now: int) -> _Run:
        """One pure pass over the batch from the states as read."""
        run = _Run(states={entity: r.build() for entity, r in reads.items()})
        for message, kind, payload in batch.items:
            source = f"{message.topic}:{message.partition}"
            if kind == "observation":
                obs: Observation = payload
                result = apply(
                    run.states[obs.entity],
                    obs,
                    source=source,
                    offset=message.offset,
                    ctx=self._ctx(now),
                    touched=self._touched(run, obs.entity, message.partition),
                )
                run.results.append((message, kind, payload, result))
                if not (result.skipped and not (result.duplicate or result.stale or result.beyond_retention)):
                    # Duplicates and refused records still advance the applied offset: they were processed.
                    self._commit(run, obs.entity, source, message.offset)
            elif kind == "tick":
                tick_now, entities = payload
                for entity in entities:
                    result = tick(
                        run.states[entity],
                        EntityKey.parse(entity),
                        source=source,
                        offset=message.offset,
                        ctx=self._ctx(tick_now),
                        touched=self._touched(run, entity, message.partition),
                    )
                    run.results.append((message, kind, entity, result))
                    if not result.skipped:
                        self._commit(run, entity, source, message.offset)
            else:
                entity, directive = payload
                state = run.states[entity]
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
                    self._commit(run, entity, source, message.offset)
                    run.results.append((message, kind, payload, refused))
                    continue
                run.results.append((message, kind, payload, result))
                if not result.skipped:
                    self._commit(run, entity, source, message.offset)
        return run

    def _touched(self, run: _Run, entity: str, partition: int) -> Touched:
        run.partitions[entity] = partition
        found = run.touched.get(entity)
        if found is None:
            found = run.touched[entity] = Touched()
        return found

    def _commit(self, run: _Run, entity: str, source: str, offset: int) -> None:
        indicator = self.catalogue.indicators[EntityKey.parse(entity).indicator]
        run.commits[entity] = Commit(entity, run.states[entity], source, offset, indicator)

    # ------------------------------------------------------------------------------------ outputs

    def _outputs(self, run: _Run, now: int) -> tuple[list[Output], list[tuple[Any, ...]]]:
        """The records to publish and the index writes to send before the commit."""
        outputs: list[Output] = []
        before: list[tuple[Any, ...]] = []
        for message, kind, payload, result in run.results:
            if isinstance(result, DirectiveRefusedError):
                outputs.append(
                    dead_letter(
                        message,
                        "CENTER",
                        self.directive_dead_letters,
                        self.schemas["dead_letter"],
                        Rejection(result.reason, str(result)),
                        now_ms=now,
                    )
                )
            elif kind == "observation":
                outputs.extend(self._observation_outputs(message, payload, result, now))
                if not result.skipped:
                    self._alerts(outputs, before, result, message)
            elif not result.skipped:
                self._alerts(outputs, before, result, message)
                if kind == "directive":
                    # The ministry concerned receives the directive on its own topic, and only its own.
                    entity, directive = payload
                    topic = self.reporter_directives.get(run.states[entity].reporter)
                    if topic is not None:
                        outputs.append(Output(topic, directive["alert_key"].encode(), message.value or b""))
        self._aggregate_outputs(run, now, outputs, before)
        return outputs, before

    def _observation_outputs(
        self, message: Any, obs: Observation, result: StepResult, now: int
    ) -> list[Output]:
        if result.skipped and not (result.duplicate or result.stale or result.beyond_retention):
            metrics.OBSERVATIONS_SKIPPED.inc()
            return []
        if result.duplicate:
            metrics.DUPLICATES.inc()
            return []
        if result.stale or result.beyond_retention:
            rejection = (
                Rejection(
                    "stale_revision",
                    f"revision {obs.revision} of {obs.observation_id} arrived after a later revision",
                )
                if result.stale
                else Rejection(
                    "beyond_retention",
                    f"{obs.observation_id} is older than the previous reporting year of the newest value "
                    "of its entity: neither a duplicate nor a correction can be recognised there",
                )
            )
            record = dead_letter(
                message,
                obs.reporter,
                self.dead_letters[obs.reporter],
                self.schemas["dead_letter"],
                rejection,
                now_ms=now,
            )
            return [record]
        if result.revision:
            metrics.REVISIONS.inc()
        if result.late:
            metrics.LATE_OBSERVATIONS.labels(obs.reporter).inc()
        return []

    def _aggregate_outputs(
        self, run: _Run, now: int, outputs: list[Output], before: list[tuple[Any, ...]]
    ) -> None:
        """Consolidated records and roll-up contributions, once per key; index writes."""
        ctx = self._ctx(now)
        by_rollup: dict[str, list[dict[str, Any]]] = {}  # one contribution record per roll-up and batch
        for entity, touched in run.touched.items():
            state = run.states[entity]
            if entity not in run.commits:
                continue
            key = EntityKey.parse(entity)
            metrics.PERIODS_CLOSED.inc(len(touched.closed))
            for record_key, record in entity_records(state, key, touched, ctx):
                value = None if record is None else codecs.encode(self.schemas["consolidated"], record)
                outputs.append(Output(self.consolidated, record_key.encode(), value))
                metrics.CONSOLIDATED_EVENTS.labels(
                    "tombstone" if record is None else record["kind"].lower()
                ).inc()
            items = contributions(state, touched)
            if items:
                seq = run.commits[entity].offset
                indicator = self.catalogue.indicators[key.indicator]
                for target in targets(indicator, key.region, key.station):
                    by_rollup.setdefault(rollup_key(key.indicator, target), []).extend(
                        {"source": entity, "seq": seq, "period": p, "aggregate": a} for p, a in items
                    )
            # the periods-due registry: the earliest deadline of the entity's open periods
            due = self._due_key(run.partitions[entity])
            if state.open_periods:
                before.append(("ZADD", due, min(state.open_periods.values()), entity))
            else:
                before.append(("ZREM", due, entity))
            if state.reporter:
                before.append(("SADD", self.store.global_key("reporter", state.reporter, "entities"), entity))
        for routing, rollup_items in by_rollup.items():
            indicator_code, target = routing.split("|")
            record = {
                "indicator": indicator_code,
                "target": target,
                "processing_time": now,
                "items": rollup_items,
            }
            outputs.append(
                Output(
                    self.rollups,
                    routing.encode(),
                    codecs.encode(self.schemas["contribution"], record),
                    partition=partition_for(routing, self.rollup_partitions),
                )
            )

    def _alerts(
        self, outputs: list[Output], before: list[tuple[Any, ...]], result: StepResult, message: Any
    ) -> None:
        active_index = self.store.global_key("alerts", "active")
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
            outputs.append(Output(self.alerts, key, encoded))
            domain_topic = self.domain_topics.get(alert["domain"])
            if domain_topic is not None:
                outputs.append(Output(domain_topic, key, encoded))
            # The compacted active-alerts topic: the current record of an open alert, a tombstone
            # once it is resolved, so a new subscriber rebuilds the live picture from it. The query
            # API reads the same picture from a Redis hash.
            resolved = alert["event_type"] == "TRANSITION" and alert["transition"] == "RESOLVED"
            outputs.append(Output(self.active, key, None if resolved else encoded))
            if resolved:
                before.append(("HDEL", active_index, alert["alert_key"]))
            else:
                before.append(("HSET", active_index, alert["alert_key"], json.dumps(alert, default=str)))


def _ms(value: Any) -> int:
    return int(value.timestamp() * 1000) if hasattr(value, "timestamp") else int(value)


def register(app: faust.App, blueprint: Blueprint, store: StateStore, rulebook: RuleBook) -> None:
    """The consolidate agent on the internal re-keyed topic."""
    settings = blueprint.settings
    consolidator = Consolidator(app, blueprint, store, rulebook)
    source = app.topic(
        blueprint.topic_by_role("repartition").name, key_serializer="raw", value_serializer="raw"
    )

    async def handle(events: Sequence[faust.EventT[bytes]]) -> None:
        metrics.RECORDS_CONSUMED.labels(source.get_topic_name()).inc(len(events))
        await consolidator.process(events)

    batch_agent(app, source, "consolidate", handle, settings)
