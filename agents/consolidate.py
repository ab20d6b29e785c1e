"""Consolidate: the stateful step. One writer per entity, in order, for three kinds of record on the
internal topic: observations (aggregates, alert rules, consolidated values), ticks (timer-driven
rules and closing reporting periods at their deadline) and the center's directives.

Per batch: read what the batch touches (each entity's state, its observations' ids, the periods they
count in) in one pipelined round trip; apply each entity's records in order (pure:
``stream_app.domain.entity``) — if a step needs more (a correction needs the values of its period to
recompute a min; a closing period its final value), read that and run that entity's records again
from its state as read; publish alerts, consolidated records (once per key per batch) and roll-up
contributions; then commit each entity's state together with the input offset it includes, atomically.

Poison never jams a partition. A record that cannot be processed for a reason retrying cannot cure
— undecodable, forged (a tick for another partition, an entity the catalogue cannot have, a record on
a partition that does not own its entity), a step that raises, an entity whose stored state cannot be
read, an output too large or refused by Kafka, a commit Redis refuses — is *charged* with the failure
and goes to ``internal.consolidate.dlq`` with its bytes, reason and exception type. Entities are
independent, so only the entity concerned is run again from its state as read, without what was
charged (the step is pure: nothing a failing step half-did survives); after ``MAX_STEP_FAILURES`` at
one entity in one batch, the rest of its records are charged too, so a batch costs at most a few runs
of each entity. Only a dependency that is down (Redis, Kafka) makes the partition wait.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust

from stream_app.agents._batch import batch_agent, earliest_offsets, observe_latency
from stream_app.config.blueprint import Blueprint
from stream_app.domain.alerting import RuleBook
from stream_app.domain.clock import as_ms
from stream_app.domain.consolidation import contributions, entity_records
from stream_app.domain.directives import TextLimits, too_long
from stream_app.domain.entity import (
    Context,
    DirectiveRefusedError,
    EntityKey,
    EntityState,
    Outcome,
    StepResult,
    Touched,
    apply,
    checked_entity,
    direct,
    entity_of_alert_key,
    needed_periods,
    tick,
)
from stream_app.domain.model import Observation, Rejection
from stream_app.domain.reasons import Reason
from stream_app.domain.rollup import rollup_key, targets
from stream_app.domain.validation import EARLIEST_EVENT_MS, observation_from_record
from stream_app.kafka.dead_letters import Letter, dead_letter
from stream_app.kafka.lanes import Received
from stream_app.kafka.partitioning import partition_for
from stream_app.kafka.publisher import Output, Publisher, is_bulk, received_at_of
from stream_app.logs import get_logger
from stream_app.ops import metrics
from stream_app.ops.failures import RecordRefusedError, refusal_reason
from stream_app.state import ledger
from stream_app.state.guard import StateGuard, firsts_of, lasts_of, marks_of, source_of
from stream_app.state.store import (
    ActiveAlert,
    Commit,
    DueAt,
    EntityReads,
    IndexWrite,
    PreparedCommit,
    ReadRequest,
    ReporterSent,
    StateLayer,
    StateLostError,
)
from stream_app.wire import codecs

log = get_logger(__name__)

STAGE = "consolidate"
MAX_READ_PASSES = 6  # reads an entity may discover in one batch: its own, a correction's range, ...
MAX_STEP_FAILURES = 3  # step failures at one entity in one batch before the rest of its records are charged

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
    by_entity: dict[str, list[_Item]] = field(default_factory=dict)  # each entity's records, in order
    letters: list[Letter] = field(default_factory=list)  # records refused before any step
    observation_events: list[Any] = field(default_factory=list)
    requests: dict[str, ReadRequest] = field(default_factory=dict)

    def add(self, item: _Item) -> None:
        self.items.append(item)
        for entity in item.entities:
            self.by_entity.setdefault(entity, []).append(item)
            if entity not in self.requests:
                self.requests[entity] = ReadRequest(state=True)


@dataclass(slots=True)
class _Poison:
    """Why a record could not be processed for one entity."""

    rejection: Rejection
    error: BaseException


@dataclass(slots=True)
class _Charges:
    """What the batch's failures are charged to: a record at one entity (``Blame``). Only grows: a
    record charged once is left out of every later run of its entity in the batch."""

    batch: _Batch
    found: dict[Blame, _Poison] = field(default_factory=dict)

    def __contains__(self, blame: Blame) -> bool:
        return blame in self.found

    def record(self, blame: Blame, reason: str, error: BaseException, detail: str) -> None:
        self.found.setdefault(blame, _Poison(Rejection(reason, f"{blame[1]}: {detail}"[:500]), error))

    def entity(self, entity: str, reason: str, error: BaseException, detail: str) -> None:
        """Every record of the batch at ``entity`` (not charged already)."""
        for item in self.batch.by_entity.get(entity, ()):
            self.record((item.index, entity), reason, error, detail)

    def output(self, blame: Hashable | None, reason: str, error: BaseException, detail: str) -> set[str]:
        """What an output names as its cause: a record, an entity, or the entities of a contribution.
        Returns the entities concerned (to run again)."""
        if isinstance(blame, tuple):
            self.record(blame, reason, error, detail)
            return {blame[1]}
        entities = (
            {blame} if isinstance(blame, str) else set(blame) if isinstance(blame, frozenset) else set()
        )
        if not entities:  # every output of this stage names its cause; one that did not: the whole batch
            log.error("output_failure_unattributed", reason=reason, error=repr(error)[:300])
            entities = set(self.batch.by_entity)
        for entity in entities:
            self.entity(entity, reason, error, detail)
        return entities


@dataclass(slots=True)
class _EntityRun:
    """One entity's records applied in order from its state as read, and what that produced."""

    state: EntityState
    touched: Touched = field(default_factory=Touched)
    results: list[tuple[_Item, Any]] = field(default_factory=list)  # StepResult or DirectiveRefusedError
    commit: Commit | None = None
    top_offset: int = -1  # the highest offset of the entity's records in the batch, charged or not


@dataclass(slots=True)
class _Built:
    """What an entity's run publishes and writes, built before anything is sent."""

    outputs: list[Output] = field(default_factory=list)
    indexes: list[IndexWrite] = field(default_factory=list)
    contributions: list[tuple[str, str | None]] = field(default_factory=list)
    prepared: PreparedCommit | None = None
    consolidated: Counter[str] = field(default_factory=Counter)  # records by kind, for the metric


class Consolidator:
    """Applies one batch of internal records to Redis state and publishes the results."""

    def __init__(
        self,
        blueprint: Blueprint,
        store: StateLayer,
        rulebook: RuleBook,
        publisher: Publisher,
        *,
        replay: bool = False,
    ) -> None:
        self.replay = replay  # rebuilding the state from the log: its alerts were logged the first time
        # before publishing: that the batch's partitions are still this worker's (StateGuard.fence)
        self.fence: Callable[[], Awaitable[None]] | None = None
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
        self.settle_ms = round(self.settings.bulk_settle_s * 1000)

    async def process(
        self, events: Sequence[Received], floors: Mapping[str, int | None] | None = None
    ) -> None:
        """Read, apply in order, publish outputs and dead letters, then commit states with their offsets.

        Publishing before the commit means a crash in between republishes the same records (with
        the same deterministic alert ids, and consolidated values that are the same) rather than
        losing them. An output Kafka refuses for good (possible only when a topic's limit changed
        under a running worker: sizes are checked before sending) makes its entity run again without
        the record that caused it; what the abandoned run already published stays published (an
        alert transition it raised is in ``center.alerts``), while roll-ups converge: every run's
        contribution carries a higher sequence than the one before.
        """
        now = int(time.time() * 1000)
        batch = await self._decode(events, now)
        charges = _Charges(batch)
        runs: dict[str, _EntityRun] = {}
        built: dict[str, _Built] = {}
        sent: set[Hashable] = set()  # poison letters already published
        todo, attempt = set(batch.by_entity), 0
        while True:
            await self._settle(batch, todo, now, charges, runs=runs, built=built)
            outputs = [o for entity in sorted(built) for o in built[entity].outputs]
            outputs += self._rollup_outputs(runs, built, now, attempt)
            if self.fence is not None:
                await self.fence()
            refused = await self.publisher.publish(outputs, self._poison_letters(charges, now, sent))
            if not refused:
                break
            attempt += 1
            for output, error in refused:
                todo |= charges.output(output.blame, Reason.OUTPUT_REFUSED, error, str(error))
            for entity in todo:
                runs.pop(entity, None)
                built.pop(entity, None)
        # Rejections (not poison) come from the final runs only, once their outputs are published.
        await self.publisher.publish_dead_letters(
            self._rejection_letters(runs, now) + self._poison_letters(charges, now, sent)
        )
        self._count(runs, built)
        start = time.perf_counter()
        prepared = [b.prepared for b in built.values() if b.prepared is not None]
        indexes = [write for b in built.values() for write in b.indexes]
        # the partitions' applied marks go last (a replay sets its marks at its end): every record of
        # the batch is now processed; ``floors``: what the state guard admitted the batch on
        marks = None if self.replay else marks_of(lasts_of(e.message for e in events), floors)
        written, failed = await self.store.commit(prepared, indexes, applied=marks)
        metrics.REDIS_APPLY_SECONDS.observe(time.perf_counter() - start)
        fenced = len(prepared) - written - len(failed)
        if fenced:  # the offset-in-commit rule: a writer behind the state writes nothing
            metrics.COMMITS_FENCED.inc(fenced)
            log.info("state_commits_fenced", entities=fenced, batch=len(events))
        if failed:  # Redis refused an entity's commit (nothing of it written): its records are poison
            late = _Charges(batch)
            for entity, refusal in failed.items():
                late.entity(entity, Reason.STATE_WRITE_FAILED, refusal, repr(refusal))
            await self.publisher.publish_dead_letters(self._poison_letters(late, now, set()))
        observe_latency(batch.observation_events)

    async def _settle(
        self,
        batch: _Batch,
        todo: set[str],
        now: int,
        charges: _Charges,
        *,
        runs: dict[str, _EntityRun],
        built: dict[str, _Built],
    ) -> None:
        """Run every entity of ``todo`` until it has all it needs and its outputs are built; reads
        what the runs discover in one round trip per round, and yields to the event loop between."""
        reads: dict[str, EntityReads] = {}
        unreadable: dict[str, BaseException] = {}
        passes: Counter[str] = Counter()
        requests = {entity: batch.requests[entity] for entity in todo}
        sources = {entity: _source_of(batch.by_entity[entity][0].message) for entity in todo}
        vouched: dict[str, list[str]] = {}
        for entity in sorted(todo):
            vouched.setdefault(sources[entity], []).append(entity)
        unreadable.update(await self.store.read(requests, reads, vouched))
        _check_vouched(sources, reads, unreadable)
        passes.update(requests.keys())
        requests = {}
        while todo:
            if requests:
                unreadable.update(await self.store.read(requests, reads))
                passes.update(requests.keys())
                requests = {}
            for entity in sorted(todo):
                run = self._run_entity(entity, batch.by_entity[entity], reads, unreadable, now, charges)
                if run is None:  # every record of the entity was charged
                    todo.discard(entity)
                    continue
                missing = _missing(run.state)
                if missing:
                    if passes[entity] < MAX_READ_PASSES:
                        requests[entity] = missing
                        continue
                    error = RuntimeError(f"still needed reads after {MAX_READ_PASSES} passes")
                    charges.entity(entity, Reason.READS_EXHAUSTED, error, str(error))
                    todo.discard(entity)
                    continue
                outputs = self._build(entity, run, now, charges)
                if outputs is None:
                    continue  # building its outputs failed, a record was charged: run it again
                runs[entity], built[entity] = run, outputs
                todo.discard(entity)
            await asyncio.sleep(0)

    # ------------------------------------------------------------------------------------ decoding

    async def _decode(self, events: Sequence[Received], now: int) -> _Batch:
        """Decode and check each record; refuse what is not one of ours or is misrouted."""
        batch = _Batch()
        for index, event in enumerate(events):
            message = event.message
            try:
                item = self._item(index, message, now)
                if item.kind == "tick":
                    item.entities = await self._tick_entities(message.partition, item.payload)
            except Exception as exc:  # whatever it is, it is this record's: refuse it, keep going
                reason = refusal_reason(exc, Reason.UNDECODABLE)
                batch.letters.append(self._refuse(message, reason, str(exc), exc, now))
                continue
            batch.add(item)
            if item.kind == "observation":
                obs: Observation = item.payload
                request = batch.requests[obs.entity]
                request.ids.add(obs.seen_key)
                request.periods.update(needed_periods(self.catalogue.indicators[obs.indicator], obs))
                batch.observation_events.append(event)
        return batch

    def _item(self, index: int, message: Any, now: int) -> _Item:
        """One record decoded and checked (a tick's entities are looked up by ``_tick_entities``)."""
        subject, record = codecs.decode_any(self.blueprint.schemas, message.value or b"", epoch_ms=True)
        latest = now + int(self.settings.tick_max_future_s * 1000)
        if subject == "observation":
            obs = observation_from_record(record)
            _checked(self.catalogue, obs.entity)
            if not (EARLIEST_EVENT_MS <= obs.event_time <= latest and math.isfinite(obs.value)):
                raise RecordRefusedError(
                    Reason.RECORD_INVALID,
                    f"event time {obs.event_time} or value {obs.value!r} out of bounds",
                )
            reporter = self.catalogue.reporters.get(obs.reporter)
            if reporter is None or obs.indicator not in reporter.indicators:
                raise RecordRefusedError(
                    Reason.UNKNOWN_ENTITY, f"{obs.reporter!r} may not report {obs.indicator}"
                )
            self._check_partition(obs.entity, message.partition)
            return _Item(index, message, subject, obs, (obs.entity,))
        if subject == "tick":
            partition, tick_now = int(record["partition"]), as_ms(record["now"])
            if partition != message.partition:
                raise RecordRefusedError(
                    Reason.TICK_INVALID, f"a tick for partition {partition} on partition {message.partition}"
                )
            if not EARLIEST_EVENT_MS <= tick_now <= latest:
                raise RecordRefusedError(
                    Reason.TICK_INVALID, f"tick time {tick_now} outside [{EARLIEST_EVENT_MS}, {latest}]"
                )
            return _Item(index, message, subject, tick_now, ())
        if subject == "directive":
            entity = (message.key or b"").decode()
            key = _checked(self.catalogue, entity)
            alert_key = str(record["alert_key"])
            if entity_of_alert_key(alert_key) != str(key):
                raise RecordRefusedError(
                    Reason.UNKNOWN_ENTITY, f"directive about {alert_key!r} keyed by {entity!r}"
                )
            self._check_directive_text(record)
            self._check_partition(entity, message.partition)
            return _Item(index, message, subject, record, (entity,))
        raise RecordRefusedError(
            Reason.UNDECODABLE, f"a {subject!r} record does not belong on the internal topic"
        )

    def _check_directive_text(self, record: dict[str, Any]) -> None:
        """A directive's text ends up in the entity's state and in every later alert of its rule."""
        limits = TextLimits.configured(self.settings)
        problem = too_long(record, limits)
        if problem is not None:
            raise RecordRefusedError(Reason.RECORD_INVALID, f"directive {problem}")

    def _check_partition(self, entity: str, partition: int) -> None:
        owner = partition_for(entity, self.partitions)
        if owner != partition:
            raise RecordRefusedError(
                Reason.MISROUTED, f"{entity!r} lives on partition {owner}, read from {partition}"
            )

    async def _tick_entities(self, partition: int, tick_now: int) -> tuple[str, ...]:
        """The entities a tick visits: the partition's watched feeds and those with a period due."""
        try:
            due = await self._due(partition, tick_now)
        except Exception as exc:  # Redis refused the read for good (not a connection error)
            raise RecordRefusedError(Reason.STATE_UNREADABLE, f"periods-due registry: {exc!r}") from exc
        return tuple(sorted(set(self.timer_entities.get(partition, [])) | set(due)))

    async def _due(self, partition: int, now_ms: int) -> list[str]:
        """Entities of a partition with a period whose deadline has passed (the periods-due registry).
        An entity in it that the catalogue cannot have is left out (and logged), never stepped."""
        out = []
        for entity in await self.store.due_entities(partition, now_ms):
            try:
                checked_entity(self.catalogue, entity)
            except ValueError as exc:
                log.warning("due_entity_unknown", partition=partition, entity=entity[:120], error=str(exc))
                continue
            out.append(entity)
        return out

    def _ctx(self, now_ms: int) -> Context:
        return Context(self.catalogue, self.rulebook, now_ms)

    # ------------------------------------------------------------------------------------ the step

    def _run_entity(  # noqa: PLR0917 - the run's inputs, each needed
        self,
        entity: str,
        items: list[_Item],
        reads: dict[str, EntityReads],
        unreadable: dict[str, BaseException],
        now: int,
        charges: _Charges,
    ) -> _EntityRun | None:
        """Apply the entity's uncharged records in order from its state as read (pure). A record whose
        step raises is charged and the entity run again without it, from its state as read; after
        ``MAX_STEP_FAILURES`` the rest of its records are charged. None: nothing left to apply."""
        failures = 0
        while True:
            live = [item for item in items if (item.index, entity) not in charges]
            if not live:
                return None
            try:
                state = _state_of(entity, reads, unreadable)
            except Exception as exc:
                charges.entity(entity, Reason.STATE_UNREADABLE, exc, repr(exc))
                return None
            run = _EntityRun(state, top_offset=max(item.message.offset for item in items))
            for item in live:
                try:
                    self._step(run, item, entity, now)
                except Exception as exc:
                    failures += 1
                    charges.record((item.index, entity), Reason.STEP_FAILED, exc, repr(exc))
                    if failures >= MAX_STEP_FAILURES:
                        detail = f"its step failed {failures} times in one batch: {exc!r}"
                        charges.entity(entity, Reason.STEP_FAILED, exc, detail)
                    break
            else:
                return run

    def _step(self, run: _EntityRun, item: _Item, entity: str, now: int) -> None:
        message = item.message
        source = f"{message.topic}:{message.partition}"
        # each record runs at the time it was received, so a replay of the log rebuilds the same state
        now = received_at_of(message) or now
        state, touched = run.state, run.touched
        if item.kind == "observation":
            bulk = is_bulk(message)
            result = apply(
                state,
                item.payload,
                source=source,
                offset=message.offset,
                ctx=Context(self.catalogue, self.rulebook, now, self.settle_ms if bulk else 0, bulk=bulk),
                touched=touched,
            )
            if result.outcome is not Outcome.ALREADY_APPLIED:
                # Duplicates and refused records still advance the applied offset: they were processed.
                self._commit(run, entity, source, message.offset)
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
                self._commit(run, entity, source, message.offset)
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
                self._commit(run, entity, source, message.offset)
                run.results.append((item, refused))
                return
            if not result.skipped:
                self._commit(run, entity, source, message.offset)
        run.results.append((item, result))

    def _commit(self, run: _EntityRun, entity: str, source: str, offset: int) -> None:
        indicator = self.catalogue.indicators[entity.partition("|")[0]]
        run.commit = Commit(entity, run.state, source, offset, indicator)

    # ------------------------------------------------------------------------------------ outputs

    def _build(self, entity: str, run: _EntityRun, now: int, charges: _Charges) -> _Built | None:
        """The entity's outputs, index writes, contributions and serialised commit, all checked before
        anything is sent; None when that failed (what caused it is charged)."""
        built = _Built()
        try:
            for item, result in run.results:
                self._record_outputs(run, entity, item, result, built)
            if run.commit is not None:
                self._aggregate_outputs(run, entity, now, built)
                built.prepared = self.store.prepare(run.commit)
        except Exception as exc:
            charges.entity(entity, Reason.OUTPUT_FAILED, exc, repr(exc))
            return None
        oversized = [o for o in built.outputs if o.size > self.publisher.max_bytes]
        for output in oversized:
            detail = f"an output of {output.size} bytes to {output.topic} exceeds {self.publisher.max_bytes}"
            charges.output(output.blame, Reason.OUTPUT_TOO_LARGE, ValueError(detail), detail)
        return None if oversized else built

    def _record_outputs(self, run: _EntityRun, entity: str, item: _Item, result: Any, built: _Built) -> None:
        if isinstance(result, DirectiveRefusedError) or result.skipped:
            return
        blame = (item.index, entity)
        self._alerts(built, result, blame)
        if item.kind == "directive":
            # The ministry responsible now receives the directive on its own topic, and only it.
            topic = self.reporter_directives.get(result.addressee)
            if topic is not None:
                key = str(item.payload["alert_key"]).encode()
                built.outputs.append(Output(topic, key, item.message.value or b"", blame=blame))

    def _aggregate_outputs(self, run: _EntityRun, entity: str, now: int, built: _Built) -> None:
        """An entity's consolidated records, once per key, its contributions and its index writes."""
        state, touched = run.state, run.touched
        for record_key, record in entity_records(state, EntityKey.parse(entity), touched, self._ctx(now)):
            value = None if record is None else codecs.encode(self.schemas["consolidated"], record)
            built.outputs.append(Output(self.consolidated, record_key.encode(), value, blame=entity))
            built.consolidated["tombstone" if record is None else record["kind"].lower()] += 1
        built.contributions = contributions(state, touched)
        # the periods-due registry: the earliest deadline of the entity's open periods
        deadline = min(state.open_periods.values()) if state.open_periods else None
        built.indexes.append(DueAt(partition_for(entity, self.partitions), entity, deadline))
        built.indexes.extend(ReporterSent(reporter, entity) for reporter in sorted(touched.reporters))

    def _alerts(self, built: _Built, result: StepResult, blame: Blame) -> None:
        for alert in result.alerts:
            encoded = codecs.encode(self.schemas["alert"], alert)
            key = alert["alert_key"].encode()
            built.outputs.append(Output(self.alerts, key, encoded, blame=blame))
            domain_topic = self.domain_topics.get(alert["domain"])
            if domain_topic is not None:
                built.outputs.append(Output(domain_topic, key, encoded, blame=blame))
            # The compacted active-alerts topic: the current record of an open alert, a tombstone
            # once it is resolved, so a new subscriber rebuilds the live picture from it. The query
            # API reads the same picture from a Redis hash.
            resolved = alert["event_type"] == "TRANSITION" and alert["transition"] == "RESOLVED"
            built.outputs.append(Output(self.active, key, None if resolved else encoded, blame=blame))
            record_json = None if resolved else json.dumps(alert, default=str)
            built.indexes.append(ActiveAlert(alert["alert_key"], record_json))

    def _rollup_outputs(
        self, runs: dict[str, _EntityRun], built: dict[str, _Built], now: int, attempt: int
    ) -> list[Output]:
        """Roll-up contributions: one record per roll-up and batch, split where it would not fit.

        A contribution's sequence is the highest offset of its entity's records in the batch (charged
        or not), times 256, plus the publishing attempt: a roll-up keeps the newest per source, so a
        batch run again after a refused output supersedes what its abandoned run contributed.
        """
        by_rollup: dict[str, list[dict[str, Any]]] = {}
        for entity in sorted(built):
            items = built[entity].contributions
            if not items:
                continue
            key = EntityKey.parse(entity)
            seq = runs[entity].top_offset * 256 + min(attempt, 255)
            for target in targets(self.catalogue.indicators[key.indicator], key.region, key.station):
                by_rollup.setdefault(rollup_key(key.indicator, target), []).extend(
                    {"source": entity, "seq": seq, "period": p, "aggregate": a} for p, a in items
                )
        outputs = []
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
        return outputs

    # ------------------------------------------------------------------------------------ dead letters

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

    def _poison_letters(self, charges: _Charges, now: int, sent: set[Hashable]) -> list[Letter]:
        """The dead letters of records refused or charged and not sent yet: one per record (a tick
        charged at several entities names them all)."""
        letters = [letter for i, letter in enumerate(charges.batch.letters) if ("decode", i) not in sent]
        sent.update(("decode", i) for i in range(len(charges.batch.letters)))
        by_index: dict[int, list[tuple[str, _Poison]]] = {}
        for (index, entity), why in sorted(charges.found.items()):
            if ("poison", index, entity) not in sent:
                by_index.setdefault(index, []).append((entity, why))
                sent.add(("poison", index, entity))
        items = {item.index: item for item in charges.batch.items}
        for index, charged in by_index.items():
            first = charged[0][1]
            detail = "; ".join(why.rejection.message for _, why in charged)
            letters.append(
                dead_letter(
                    items[index].message,
                    self.poison_topic,
                    Rejection(first.rejection.reason, detail),
                    now_ms=now,
                    stage=STAGE,
                    error=first.error,
                    poison=True,
                )
            )
        return letters

    def _rejection_letters(self, runs: dict[str, _EntityRun], now: int) -> list[Letter]:
        """Records the final runs refused (not poison): stale or too old observations, to their
        reporter's dead-letter topic; directives about no open alert, to the directives' one."""
        letters = []
        for run in runs.values():
            for item, result in run.results:
                if isinstance(result, DirectiveRefusedError):
                    letters.append(
                        dead_letter(
                            item.message,
                            self.directive_dead_letters,
                            Rejection(result.reason, str(result)),
                            now_ms=now,
                            stage=STAGE,
                            reporter="CENTER",
                        )
                    )
                elif item.kind == "observation" and result.refused:
                    obs: Observation = item.payload
                    letters.append(
                        dead_letter(
                            item.message,
                            self.dead_letters[obs.reporter],
                            _refusal(obs, result),
                            now_ms=now,
                            stage=STAGE,
                            reporter=obs.reporter,
                        )
                    )
        return letters

    # ------------------------------------------------------------------------------------ metrics

    def _count(self, runs: dict[str, _EntityRun], built: dict[str, _Built]) -> None:
        """Count what the final runs did, once, after their outputs were published."""
        for entity, run in runs.items():
            metrics.PERIODS_CLOSED.inc(len(run.touched.closed))
            for kind, count in built[entity].consolidated.items():
                metrics.CONSOLIDATED_EVENTS.labels(kind).inc(count)
            for item, result in run.results:
                if isinstance(result, DirectiveRefusedError):
                    continue
                if item.kind == "observation":
                    _count_observation(item.payload, result)
                if not result.skipped and not self.replay:
                    _log_alerts(result.alerts, item.message)


def _source_of(message: Any) -> str:
    return source_of((message.topic, message.partition))


def _check_vouched(
    sources: Mapping[str, str], reads: Mapping[str, EntityReads], unreadable: Mapping[str, BaseException]
) -> None:
    """Raise StateLostError when an entity's state holds less than its partition's ledger says: its
    keys were lost while the applied mark was kept (:mod:`stream_app.state.ledger`). Nothing of the
    batch is applied; the state guard waits on the state."""
    lost = [
        problem
        for entity, source in sorted(sources.items())
        if entity in reads and entity not in unreadable
        for problem in [ledger.loss(entity, source, reads[entity].state, reads[entity].vouched)]
        if problem is not None
    ]
    if lost:
        more = f" (and {len(lost) - 1} more entities)" if len(lost) > 1 else ""
        raise StateLostError(lost[0] + more)


def _state_of(
    entity: str, reads: dict[str, EntityReads], unreadable: dict[str, BaseException]
) -> EntityState:
    """An entity's state as read (a fresh one for an entity never stored); raises what made it unreadable."""
    error = unreadable.get(entity)
    if error is not None:
        raise error
    found = reads.get(entity)
    return found.build() if found is not None else EntityState()


def _missing(state: EntityState) -> ReadRequest | None:
    """What a run found it needs to read (None: it has everything)."""
    if not state.missing:
        return None
    request = ReadRequest()
    for kind, first, second in state.missing:
        if kind == "period":
            request.periods.add((first, second))
        else:
            request.ranges.add((first, second))
    return request


def _log_alerts(alerts: Iterable[dict[str, Any]], message: Any) -> None:
    for alert in alerts:
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


def _checked(catalogue: Any, entity: str) -> EntityKey:
    try:
        return checked_entity(catalogue, entity)
    except ValueError as exc:
        raise RecordRefusedError(Reason.UNKNOWN_ENTITY, str(exc)) from exc


def _refusal(obs: Observation, result: StepResult) -> Rejection:
    if result.outcome is Outcome.STALE:
        return Rejection(
            Reason.STALE_REVISION,
            f"revision {obs.revision} of {obs.observation_id} arrived after a later revision",
        )
    return Rejection(
        Reason.BEYOND_RETENTION,
        f"{obs.observation_id} is older than the previous reporting year of the newest value "
        "of its entity: neither a duplicate nor a correction can be recognised there",
    )


def _count_observation(obs: Observation, result: StepResult) -> None:
    if result.outcome is Outcome.ALREADY_APPLIED:
        metrics.OBSERVATIONS_SKIPPED.inc()
    elif result.outcome is Outcome.DUPLICATE:
        metrics.DUPLICATES.inc()
    elif not result.skipped:
        if result.outcome is Outcome.CORRECTED:
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


def register(
    app: faust.App, blueprint: Blueprint, store: StateLayer, rulebook: RuleBook, publisher: Publisher
) -> None:
    """The consolidate agent on the internal re-keyed topic."""
    consolidator = Consolidator(blueprint, store, rulebook, publisher)
    name = blueprint.topic_by_role("repartition").name
    source = app.topic(name, key_serializer="raw", value_serializer="raw")
    guard = StateGuard(store, blueprint.settings, earliest_offsets(app), stage=STAGE)
    consolidator.fence = guard.fence

    async def handle(events: Sequence[Received]) -> None:
        metrics.RECORDS_CONSUMED.labels(name).inc(len(events))
        await guard.run(
            firsts_of(e.message for e in events), lambda floors: consolidator.process(events, floors)
        )

    batch_agent(app, source, STAGE, handle, blueprint.settings)
