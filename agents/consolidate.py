"""Consolidate: the stateful step. One writer per entity, in order, for three kinds of record on the
internal topic: observations (aggregates, alert rules, consolidated values), ticks (timer-driven
rules and closing reporting periods at their deadline) and the center's directives.

Per batch: read what the batch touches (each entity's state, its observations' ids, the periods they
count in) in one pipelined round trip; apply records in order (pure: ``stream_app.entity``) — if a
step needs more (a correction needs the values of its period to recompute a min; a closing period
its final value), read that and run the batch again from the states as read; publish alerts,
consolidated records (once per key per batch) and roll-up contributions; then commit each entity's
state together with the input offset it includes, atomically.

Poison never jams a partition. A record that cannot be processed for a reason retrying cannot cure
— undecodable, forged (a tick for another partition, an entity the catalogue cannot have, a record on
a partition that does not own its entity), a step that raises, an entity whose stored state cannot be
read, an output too large or refused by Kafka, a commit Redis refuses — goes to
``internal.consolidate.dlq`` with its bytes, reason and exception type; the batch is run again from the
states as read without it (the step is pure, so nothing it half-did survives), and the partition
moves on. Only a dependency that is down (Redis, Kafka) makes the partition wait.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust

from agents._batch import Letter, Output, Publisher, batch_agent, dead_letter, observe_latency
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
    checked_entity,
    direct,
    entity_of_alert_key,
    needed_periods,
    tick,
)
from stream_app.failures import Reasons, RecordRefusedError, refusal_reason
from stream_app.logs import get_logger
from stream_app.model import Observation, Rejection
from stream_app.partitioning import partition_for
from stream_app.rollup import rollup_key, targets
from stream_app.runtime import Blueprint
from stream_app.state import Commit, EntityReads, ReadRequest, StateStore
from stream_app.validation import EARLIEST_EVENT_MS, observation_from_record

log = get_logger(__name__)

STAGE = "consolidate"
MAX_READ_PASSES = 6  # reads a batch may discover: its own, then a correction's range, then ...

Blame = tuple[int, str]  # (the record's index in its batch, the entity): what a failure is charged to


@dataclass(slots=True)
class _Item:
    """One record of the batch, decoded and checked: its kind, payload and the entities it touches."""

    index: int
    message: Any
    kind: str  # observation | tick | directive
    payload: Any
    entities: tuple[str, ...]


@dataclass(slots=True)
class _Batch:
    """One batch's records, decoded and routed to entities, and what to read for them."""

    items: list[_Item] = field(default_factory=list)
    letters: list[Letter] = field(default_factory=list)  # records refused before any step
    observation_events: list[Any] = field(default_factory=list)
    requests: dict[str, ReadRequest] = field(default_factory=dict)

    def request(self, entity: str) -> ReadRequest:
        found = self.requests.get(entity)
        if found is None:
            found = self.requests[entity] = ReadRequest(state=True)
        return found


@dataclass(slots=True)
class _Poison:
    """Why a record could not be processed for one entity."""

    rejection: Rejection
    error: BaseException


@dataclass(slots=True)
class _Charges:
    """What the batch's failures are charged to: a record at one entity (``Blame``). Only grows: a
    record charged once is left out of every later pass of the batch."""

    items: list[_Item]
    found: dict[Blame, _Poison] = field(default_factory=dict)

    def __contains__(self, blame: Blame) -> bool:
        return blame in self.found

    def record(self, blame: Blame, reason: str, error: BaseException, detail: str) -> None:
        self.found.setdefault(blame, _Poison(Rejection(reason, f"{blame[1]}: {detail}"[:500]), error))

    def entity(self, entity: str, reason: str, error: BaseException, detail: str) -> None:
        """Every record of the batch at ``entity``."""
        for item in self.items:
            if entity in item.entities:
                self.record((item.index, entity), reason, error, detail)

    def output(self, blame: Hashable | None, reason: str, error: BaseException, detail: str) -> None:
        """What an output names as its cause: a record, an entity, or the entities of a contribution."""
        if isinstance(blame, tuple):
            self.record(blame, reason, error, detail)
        elif isinstance(blame, str):
            self.entity(blame, reason, error, detail)
        elif isinstance(blame, frozenset):
            for entity in blame:
                self.entity(entity, reason, error, detail)
        else:  # every output of this stage names its cause; one that did not: the whole batch
            log.error("output_failure_unattributed", reason=reason, error=repr(error)[:300])
            for item in self.items:
                for entity in item.entities:
                    self.record((item.index, entity), reason, error, detail)


@dataclass(slots=True)
class _Run:
    """One pass over a batch: the states after it, what each record did, what is still missing."""

    states: dict[str, EntityState] = field(default_factory=dict)
    results: list[tuple[_Item, str, Any]] = field(default_factory=list)  # (item, entity, result)
    touched: dict[str, Touched] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    partitions: dict[str, int] = field(default_factory=dict)  # entity -> internal partition
    poisoned: bool = False  # a record failed in this pass: the pass must be run again without it

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

    def __init__(
        self, blueprint: Blueprint, store: StateStore, rulebook: RuleBook, publisher: Publisher
    ) -> None:
        self.blueprint = blueprint
        self.catalogue = blueprint.catalogue
        self.settings = blueprint.settings
        self.store = store
        self.rulebook = rulebook
        self.publisher = publisher
        internal = blueprint.topic_by_role("repartition")
        self.partitions = internal.partitions
        # timer entities by partition: each tick visits the watched feeds that live there
        self.timer_entities: dict[int, list[str]] = {}
        for entity in rulebook.timer_entities():
            key = str(EntityKey(entity.indicator, entity.region, entity.station))
            self.timer_entities.setdefault(partition_for(key, self.partitions), []).append(key)
        self.alerts = blueprint.topic_by_role("alerts").name
        self.active = blueprint.topic_by_role("active_alerts").name
        self.consolidated = blueprint.topic_by_role("consolidated").name
        rollups = blueprint.topic_by_role("rollup")
        self.rollups, self.rollup_partitions = rollups.name, rollups.partitions
        self.domain_topics = {
            t.domain: t.name for t in blueprint.topics if t.role == "domain_alerts" and t.domain
        }
        self.reporter_directives = {
            t.reporter: t.name for t in blueprint.topics if t.role == "reporter_directives" and t.reporter
        }
        self.dead_letters = {
            t.reporter: t.name for t in blueprint.topics if t.role == "dead_letter" and t.reporter
        }
        self.directive_dead_letters = blueprint.topic_by_role("directives_dead_letter").name
        self.poison_topic = blueprint.topic_by_role("consolidate_dead_letter").name
        self.schemas = {
            name: blueprint.schemas.latest(name) for name in ("alert", "consolidated", "contribution")
        }

    async def process(self, events: Sequence[faust.EventT[bytes]]) -> None:
        """Read, apply in order, publish outputs and dead letters, then commit states with their offsets.

        Publishing before the commit means a crash in between republishes the same records (with
        the same deterministic alert ids, and consolidated values that are the same) rather than
        losing them.
        """
        now = int(time.time() * 1000)
        batch = await self._decode(events, now)
        charges = _Charges(batch.items)
        reads: dict[str, EntityReads] = {}
        unreadable: dict[str, BaseException] = {}
        requests = batch.requests
        read_passes = 0
        sent: set[Hashable] = set()  # dead letters already published (a refused output runs the batch again)
        while True:
            if requests:
                read_passes += 1
                unreadable.update(await self.store.read(requests, reads))
                requests = {}
            run = self._run(batch, reads, unreadable, now, charges)
            if run.poisoned:
                continue  # run again from the states as read, without what failed
            requests = run.missing()
            if requests:
                if read_passes >= MAX_READ_PASSES:
                    error = RuntimeError(f"still needed reads after {MAX_READ_PASSES} passes")
                    for entity in requests:
                        charges.entity(entity, Reasons.READS_EXHAUSTED, error, str(error))
                    requests = {}
                continue
            outputs, before = self._outputs(run, now, charges)
            if outputs is None:
                continue  # building an entity's outputs failed: run again without its records
            letters = self._letters(batch, run, charges, now, sent)
            refused = await self.publisher.publish(outputs, [letter for _, letter in letters])
            sent.update(key for key, _ in letters)
            if not refused:
                break
            for output, refusal in refused:
                charges.output(output.blame, Reasons.OUTPUT_REFUSED, refusal, str(refusal))
        start = time.perf_counter()
        _, failed = await self.store.commit(list(run.commits.values()), before)
        metrics.REDIS_APPLY_SECONDS.observe(time.perf_counter() - start)
        if failed:
            late = _Charges(batch.items)
            for entity, refusal in failed.items():
                late.entity(entity, Reasons.STATE_WRITE_FAILED, refusal, repr(refusal))
            await self.publisher.publish_dead_letters(
                [letter for _, letter in self._poison_letters(late, now, set())]
            )
        observe_latency(batch.observation_events)

    # ------------------------------------------------------------------------------------ decoding

    async def _decode(self, events: Sequence[faust.EventT[bytes]], now: int) -> _Batch:
        """Decode and check each record; refuse what is not one of ours or is misrouted."""
        batch = _Batch()
        for index, event in enumerate(events):
            message = event.message
            try:
                item = await self._item(index, message, now)
            except (
                Exception
            ) as exc:  # whatever it is, it is this record's: refuse it, keep the partition going
                reason = refusal_reason(exc, Reasons.UNDECODABLE)
                batch.letters.append(self._refuse(message, reason, str(exc), exc, now))
                continue
            batch.items.append(item)
            for entity in item.entities:
                request = batch.request(entity)
                if item.kind == "observation":
                    obs: Observation = item.payload
                    request.ids.add(obs.seen_key)
                    request.periods.update(needed_periods(self.catalogue.indicators[obs.indicator], obs))
            if item.kind == "observation":
                batch.observation_events.append(event)
        return batch

    async def _item(self, index: int, message: Any, now: int) -> _Item:
        subject, record = codecs.decode_any(self.blueprint.schemas, message.value or b"")
        if subject == "observation":
            obs = observation_from_record(record)
            _checked(self.catalogue, obs.entity)
            latest = now + int(self.settings.tick_max_future_s * 1000)
            if not (EARLIEST_EVENT_MS <= obs.event_time <= latest and math.isfinite(obs.value)):
                raise RecordRefusedError(
                    Reasons.RECORD_INVALID,
                    f"event time {obs.event_time} or value {obs.value!r} out of bounds",
                )
            reporter = self.catalogue.reporters.get(obs.reporter)
            if reporter is None or obs.indicator not in reporter.indicators:
                raise RecordRefusedError(
                    Reasons.UNKNOWN_ENTITY, f"{obs.reporter!r} may not report {obs.indicator}"
                )
            self._check_partition(obs.entity, message.partition)
            return _Item(index, message, subject, obs, (obs.entity,))
        if subject == "tick":
            partition, tick_now = int(record["partition"]), _ms(record["now"])
            if partition != message.partition:
                raise RecordRefusedError(
                    Reasons.TICK_INVALID, f"a tick for partition {partition} on partition {message.partition}"
                )
            latest = now + int(self.settings.tick_max_future_s * 1000)
            if not EARLIEST_EVENT_MS <= tick_now <= latest:
                raise RecordRefusedError(
                    Reasons.TICK_INVALID, f"tick time {tick_now} outside [{EARLIEST_EVENT_MS}, {latest}]"
                )
            try:
                due = await self._due(partition, tick_now)
            except Exception as exc:  # Redis refused the read for good (not a connection error)
                raise RecordRefusedError(Reasons.STATE_UNREADABLE, f"periods-due registry: {exc!r}") from exc
            entities = sorted(set(self.timer_entities.get(partition, [])) | set(due))
            return _Item(index, message, subject, tick_now, tuple(entities))
        if subject == "directive":
            entity = (message.key or b"").decode()
            key = _checked(self.catalogue, entity)
            alert_key = str(record["alert_key"])
            if entity_of_alert_key(alert_key) != str(key):
                raise RecordRefusedError(
                    Reasons.UNKNOWN_ENTITY, f"directive about {alert_key!r} keyed by {entity!r}"
                )
            self._check_partition(entity, message.partition)
            return _Item(index, message, subject, record, (entity,))
        raise RecordRefusedError(
            Reasons.UNDECODABLE, f"a {subject!r} record does not belong on the internal topic"
        )

    def _check_partition(self, entity: str, partition: int) -> None:
        owner = partition_for(entity, self.partitions)
        if owner != partition:
            raise RecordRefusedError(
                Reasons.MISROUTED, f"{entity!r} lives on partition {owner}, read from {partition}"
            )

    async def _due(self, partition: int, now_ms: int) -> list[str]:
        """Entities of a partition with a period whose deadline has passed (the periods-due registry).
        An entity in it that the catalogue cannot have is left out (and logged), never stepped."""
        key = self._due_key(partition)

        async def read() -> list[Any]:
            return list(await self.store.client.zrangebyscore(key, "-inf", now_ms))

        out = []
        for raw in await self.store.with_retry("load", read):
            entity = raw.decode() if isinstance(raw, bytes) else str(raw)
            try:
                checked_entity(self.catalogue, entity)
            except ValueError as exc:
                log.warning("due_entity_unknown", key=key, entity=entity[:120], error=str(exc))
                continue
            out.append(entity)
        return out

    def _due_key(self, partition: int) -> str:
        return self.store.global_key("due", str(partition))

    def _ctx(self, now_ms: int) -> Context:
        return Context(self.catalogue, self.rulebook, now_ms)

    # ------------------------------------------------------------------------------------ the step

    def _run(
        self,
        batch: _Batch,
        reads: dict[str, EntityReads],
        unreadable: dict[str, BaseException],
        now: int,
        charges: _Charges,
    ) -> _Run:
        """One pure pass over the batch from the states as read.

        A record whose step raises is charged with the failure; its entity is left alone for the
        rest of the pass (its state may be half-changed), and ``poisoned`` says the pass must be run
        again from the states as read.
        """
        run = _Run()
        spoiled: set[str] = set()
        for item in batch.items:
            for entity in item.entities:
                blame = (item.index, entity)
                if blame in charges or entity in spoiled:
                    continue
                state = run.states.get(entity)
                if state is None:
                    try:
                        state = self._build(entity, reads, unreadable)
                    except Exception as exc:
                        charges.entity(entity, Reasons.STATE_UNREADABLE, exc, repr(exc))
                        run.poisoned = True
                        spoiled.add(entity)
                        continue
                    run.states[entity] = state
                try:
                    self._step(run, item, entity, state, now)
                except Exception as exc:
                    charges.record(blame, Reasons.STEP_FAILED, exc, repr(exc))
                    run.poisoned = True
                    spoiled.add(entity)
        return run

    def _build(
        self, entity: str, reads: dict[str, EntityReads], unreadable: dict[str, BaseException]
    ) -> EntityState:
        error = unreadable.get(entity)
        if error is not None:
            raise error
        found = reads.get(entity)
        return found.build() if found is not None else EntityState()

    def _step(self, run: _Run, item: _Item, entity: str, state: EntityState, now: int) -> None:
        message = item.message
        source = f"{message.topic}:{message.partition}"
        touched = self._touched(run, entity, message.partition)
        if item.kind == "observation":
            obs: Observation = item.payload
            result = apply(
                state, obs, source=source, offset=message.offset, ctx=self._ctx(now), touched=touched
            )
            if not (result.skipped and not (result.duplicate or result.stale or result.beyond_retention)):
                # Duplicates and refused records still advance the applied offset: they were processed.
                self._commit(run, entity, state, source, message.offset)
        elif item.kind == "tick":
            result = tick(
                state,
                EntityKey.parse(entity),
                source=source,
                offset=message.offset,
                ctx=self._ctx(item.payload),
                touched=touched,
            )
            if not result.skipped:
                self._commit(run, entity, state, source, message.offset)
        else:
            try:
                result = direct(
                    state,
                    EntityKey.parse(entity),
                    item.payload,
                    source=source,
                    offset=message.offset,
                    ctx=self._ctx(now),
                )
            except DirectiveRefusedError as refused:
                self._commit(run, entity, state, source, message.offset)
                run.results.append((item, entity, refused))
                return
            if not result.skipped:
                self._commit(run, entity, state, source, message.offset)
        run.results.append((item, entity, result))

    def _touched(self, run: _Run, entity: str, partition: int) -> Touched:
        run.partitions[entity] = partition
        found = run.touched.get(entity)
        if found is None:
            found = run.touched[entity] = Touched()
        return found

    def _commit(self, run: _Run, entity: str, state: EntityState, source: str, offset: int) -> None:
        indicator = self.catalogue.indicators[EntityKey.parse(entity).indicator]
        run.commits[entity] = Commit(entity, state, source, offset, indicator)

    # ------------------------------------------------------------------------------------ poison

    def _refuse(self, message: Any, reason: str, detail: str, error: BaseException, now: int) -> Letter:
        return dead_letter(
            message,
            self.poison_topic,
            Rejection(reason, detail),
            now_ms=now,
            stage=STAGE,
            error=error,
            poison=True,
        )

    def _letters(
        self, batch: _Batch, run: _Run, charges: _Charges, now: int, sent: set[Hashable]
    ) -> list[tuple[Hashable, Letter]]:
        """The batch's dead letters not sent yet, each with a key that names it across passes."""
        letters: list[tuple[Hashable, Letter]] = [
            (("decode", i), letter) for i, letter in enumerate(batch.letters) if ("decode", i) not in sent
        ]
        letters.extend(self._poison_letters(charges, now, sent))
        for item, _entity, result in run.results:
            if ("refused", item.index) in sent:
                continue
            if isinstance(result, DirectiveRefusedError):
                letter = dead_letter(
                    item.message,
                    self.directive_dead_letters,
                    Rejection(result.reason, str(result)),
                    now_ms=now,
                    stage=STAGE,
                    reporter="CENTER",
                )
                letters.append((("refused", item.index), letter))
            elif item.kind == "observation" and (result.stale or result.beyond_retention):
                obs: Observation = item.payload
                letter = dead_letter(
                    item.message,
                    self.dead_letters[obs.reporter],
                    _refusal(obs, result),
                    now_ms=now,
                    stage=STAGE,
                    reporter=obs.reporter,
                )
                letters.append((("refused", item.index), letter))
        return letters

    def _poison_letters(
        self, charges: _Charges, now: int, sent: set[Hashable]
    ) -> list[tuple[Hashable, Letter]]:
        by_index = {item.index: item for item in charges.items}
        out: list[tuple[Hashable, Letter]] = []
        for (index, entity), why in sorted(charges.found.items(), key=lambda kv: kv[0]):
            if ("poison", index, entity) in sent:
                continue
            letter = dead_letter(
                by_index[index].message,
                self.poison_topic,
                why.rejection,
                now_ms=now,
                stage=STAGE,
                error=why.error,
                poison=True,
            )
            out.append((("poison", index, entity), letter))
        return out

    # ------------------------------------------------------------------------------------ outputs

    def _outputs(
        self, run: _Run, now: int, charges: _Charges
    ) -> tuple[list[Output] | None, list[tuple[Any, ...]]]:
        """The records to publish and the index writes to send before the commit; None when building
        an entity's outputs failed (its records are charged, the batch must run again)."""
        outputs: list[Output] = []
        before: list[tuple[Any, ...]] = []
        failed = False
        by_entity: dict[str, list[tuple[_Item, Any]]] = {}
        for item, entity, result in run.results:
            by_entity.setdefault(entity, []).append((item, result))
        for entity, results in by_entity.items():
            mark = len(outputs), len(before)
            try:
                for item, result in results:
                    self._record_outputs(run, entity, item, result, outputs=outputs, before=before)
                self._aggregate_outputs(run, entity, now, outputs, before)
            except Exception as exc:
                del outputs[mark[0] :], before[mark[1] :]
                charges.entity(entity, Reasons.OUTPUT_FAILED, exc, repr(exc))
                failed = True
        try:
            self._rollup_outputs(run, now, outputs)
        except Exception as exc:  # a defect in building the contributions: charge every entity of the batch
            for entity in run.touched:
                charges.entity(entity, Reasons.OUTPUT_FAILED, exc, repr(exc))
            failed = True
        too_large = [o for o in outputs if o.size > self.publisher.max_bytes]
        for output in too_large:
            detail = f"an output of {output.size} bytes to {output.topic} exceeds {self.publisher.max_bytes}"
            charges.output(output.blame, Reasons.OUTPUT_TOO_LARGE, ValueError(detail), detail)
        if failed or too_large:
            return None, []
        return outputs, before

    def _record_outputs(
        self,
        run: _Run,
        entity: str,
        item: _Item,
        result: Any,
        *,
        outputs: list[Output],
        before: list[tuple[Any, ...]],
    ) -> None:
        if isinstance(result, DirectiveRefusedError):
            return
        blame = (item.index, entity)
        if item.kind == "observation":
            _count_observation(item.payload, result)
            if not result.skipped:
                self._alerts(outputs, before, result, item.message, blame)
        elif not result.skipped:
            self._alerts(outputs, before, result, item.message, blame)
            if item.kind == "directive":
                # The ministry concerned receives the directive on its own topic, and only its own.
                topic = self.reporter_directives.get(run.states[entity].reporter)
                if topic is not None:
                    key = str(item.payload["alert_key"]).encode()
                    outputs.append(Output(topic, key, item.message.value or b"", blame=blame))

    def _aggregate_outputs(
        self, run: _Run, entity: str, now: int, outputs: list[Output], before: list[tuple[Any, ...]]
    ) -> None:
        """An entity's consolidated records, once per key, and its index writes."""
        if entity not in run.commits:
            return
        touched, state = run.touched[entity], run.states[entity]
        key = EntityKey.parse(entity)
        metrics.PERIODS_CLOSED.inc(len(touched.closed))
        for record_key, record in entity_records(state, key, touched, self._ctx(now)):
            value = None if record is None else codecs.encode(self.schemas["consolidated"], record)
            outputs.append(Output(self.consolidated, record_key.encode(), value, blame=entity))
            metrics.CONSOLIDATED_EVENTS.labels(
                "tombstone" if record is None else record["kind"].lower()
            ).inc()
        # the periods-due registry: the earliest deadline of the entity's open periods
        due = self._due_key(run.partitions[entity])
        if state.open_periods:
            before.append(("ZADD", due, min(state.open_periods.values()), entity))
        else:
            before.append(("ZREM", due, entity))
        for reporter in sorted(touched.reporters):
            before.append(("SADD", self.store.global_key("reporter", reporter, "entities"), entity))

    def _rollup_outputs(self, run: _Run, now: int, outputs: list[Output]) -> None:
        """Roll-up contributions: one record per roll-up and batch, split where it would not fit."""
        by_rollup: dict[str, list[dict[str, Any]]] = {}
        for entity, touched in run.touched.items():
            if entity not in run.commits:
                continue
            items = contributions(run.states[entity], touched)
            if not items:
                continue
            key = EntityKey.parse(entity)
            seq = run.commits[entity].offset
            for target in targets(self.catalogue.indicators[key.indicator], key.region, key.station):
                by_rollup.setdefault(rollup_key(key.indicator, target), []).extend(
                    {"source": entity, "seq": seq, "period": p, "aggregate": a} for p, a in items
                )
        budget = self.publisher.max_bytes - 1024
        for routing, rollup_items in by_rollup.items():
            indicator_code, target = routing.split("|")
            partition = partition_for(routing, self.rollup_partitions)
            for chunk in _chunks(rollup_items, budget):
                record = {
                    "indicator": indicator_code,
                    "target": target,
                    "processing_time": now,
                    "items": chunk,
                }
                outputs.append(
                    Output(
                        self.rollups,
                        routing.encode(),
                        codecs.encode(self.schemas["contribution"], record),
                        partition=partition,
                        blame=frozenset(item["source"] for item in chunk),
                    )
                )

    def _alerts(
        self,
        outputs: list[Output],
        before: list[tuple[Any, ...]],
        result: StepResult,
        message: Any,
        blame: Blame,
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
            outputs.append(Output(self.alerts, key, encoded, blame=blame))
            domain_topic = self.domain_topics.get(alert["domain"])
            if domain_topic is not None:
                outputs.append(Output(domain_topic, key, encoded, blame=blame))
            # The compacted active-alerts topic: the current record of an open alert, a tombstone
            # once it is resolved, so a new subscriber rebuilds the live picture from it. The query
            # API reads the same picture from a Redis hash.
            resolved = alert["event_type"] == "TRANSITION" and alert["transition"] == "RESOLVED"
            outputs.append(Output(self.active, key, None if resolved else encoded, blame=blame))
            if resolved:
                before.append(("HDEL", active_index, alert["alert_key"]))
            else:
                before.append(("HSET", active_index, alert["alert_key"], json.dumps(alert, default=str)))


def _checked(catalogue: Any, entity: str) -> EntityKey:
    try:
        return checked_entity(catalogue, entity)
    except ValueError as exc:
        raise RecordRefusedError(Reasons.UNKNOWN_ENTITY, str(exc)) from exc


def _refusal(obs: Observation, result: StepResult) -> Rejection:
    if result.stale:
        return Rejection(
            "stale_revision",
            f"revision {obs.revision} of {obs.observation_id} arrived after a later revision",
        )
    return Rejection(
        "beyond_retention",
        f"{obs.observation_id} is older than the previous reporting year of the newest value "
        "of its entity: neither a duplicate nor a correction can be recognised there",
    )


def _count_observation(obs: Observation, result: StepResult) -> None:
    if result.skipped and not (result.duplicate or result.stale or result.beyond_retention):
        metrics.OBSERVATIONS_SKIPPED.inc()
    elif result.duplicate:
        metrics.DUPLICATES.inc()
    elif not result.skipped:
        if result.revision:
            metrics.REVISIONS.inc()
        if result.late:
            metrics.LATE_OBSERVATIONS.labels(obs.reporter).inc()


def _chunks(items: list[dict[str, Any]], budget: int) -> list[list[dict[str, Any]]]:
    """Split contribution items so each record stays under ``budget`` bytes (estimated generously)."""
    chunks: list[list[dict[str, Any]]] = [[]]
    size = 0
    for item in items:
        estimate = 32 + len(item["source"]) + len(item["period"]) + len(item["aggregate"] or "")
        if chunks[-1] and size + estimate > budget:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += estimate
    return chunks


def _ms(value: Any) -> int:
    return int(value.timestamp() * 1000) if hasattr(value, "timestamp") else int(value)


def register(
    app: faust.App, blueprint: Blueprint, store: StateStore, rulebook: RuleBook, publisher: Publisher
) -> None:
    """The consolidate agent on the internal re-keyed topic."""
    consolidator = Consolidator(blueprint, store, rulebook, publisher)
    name = blueprint.topic_by_role("repartition").name
    source = app.topic(name, key_serializer="raw", value_serializer="raw")

    async def handle(events: Sequence[faust.EventT[bytes]]) -> None:
        metrics.RECORDS_CONSUMED.labels(name).inc(len(events))
        await consolidator.process(events)

    batch_agent(app, source, STAGE, handle, blueprint.settings)
