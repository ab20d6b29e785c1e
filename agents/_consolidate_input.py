"""The consolidate stage's input: each record of the internal topic decoded and checked (an observation,
a tick or a directive) and routed to the entities it touches, with what to read for them. A record that
is not one of ours, or sits on a partition that does not own its entity, is refused before any step.

Also what the batch's failures are charged to (:class:`EntityCharges`: a record at one entity) and what
the reads of its entities give: their states, what a run still needs, a state lost under its ledger.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stream_app.agents._stage import Charges, check_owner, poison_letter
from stream_app.config.blueprint import Blueprint
from stream_app.domain.alerting import RuleBook
from stream_app.domain.catalogue import Catalogue
from stream_app.domain.clock import as_ms
from stream_app.domain.directives import TextLimits, too_long
from stream_app.domain.entity import (
    EntityKey,
    EntityState,
    checked_entity,
    entity_of_alert_key,
    needed_periods,
)
from stream_app.domain.model import Observation, Rejection
from stream_app.domain.reasons import Reason
from stream_app.domain.validation import EARLIEST_EVENT_MS, Limits, observation_from_record, times_error
from stream_app.kafka.dead_letters import Letter
from stream_app.kafka.lanes import Message, Received
from stream_app.kafka.partitioning import partition_for
from stream_app.kafka.publisher import received_at_of
from stream_app.logs import get_logger
from stream_app.ops.failures import RecordRefusedError, refusal_reason
from stream_app.state import ledger
from stream_app.state.guard import source_of
from stream_app.state.owned import OwnedState
from stream_app.state.store import EntityReads, ReadRequest, StateLayer, StateLostError
from stream_app.wire import codecs

log = get_logger(__name__)

STAGE = "consolidate"


@dataclass(slots=True)
class Item:
    """One record of the batch, decoded and checked, and the entities it touches; its kind is its
    class: :class:`ObservationItem`, :class:`TickItem` or :class:`DirectiveItem`."""

    index: int
    message: Message
    entities: tuple[str, ...]


@dataclass(slots=True)
class ObservationItem(Item):
    observation: Observation


@dataclass(slots=True)
class TickItem(Item):
    now_ms: int  # the tick's time


@dataclass(slots=True)
class DirectiveItem(Item):
    directive: dict[str, Any]  # the Avro ``directive`` record


@dataclass(slots=True)
class Batch:
    """One batch's records, decoded and routed to entities, and what to read for them."""

    items: list[Item] = field(default_factory=list)
    by_entity: dict[str, list[Item]] = field(default_factory=dict)  # each entity's records, in order
    letters: list[Letter] = field(default_factory=list)  # records refused before any step
    observation_events: list[Received] = field(default_factory=list)
    requests: dict[str, ReadRequest] = field(default_factory=dict)

    def add(self, item: Item) -> None:
        self.items.append(item)
        for entity in item.entities:
            self.by_entity.setdefault(entity, []).append(item)
            if entity not in self.requests:
                self.requests[entity] = ReadRequest(state=True)


@dataclass(frozen=True, slots=True)
class Cause:
    """What a consolidate output is blamed on: one record at one entity (an alert, a forwarded
    directive: ``record`` set), or every record of some entities (their consolidated records, their
    roll-up contributions)."""

    entities: frozenset[str]
    record: int | None = None


@dataclass(slots=True)
class EntityCharges:
    """What the batch's failures are charged to: a record at one entity. Only grows: a record charged
    once is left out of every later run of its entity in the batch."""

    batch: Batch
    charges: Charges = field(default_factory=Charges)

    def __contains__(self, charge: tuple[int, str]) -> bool:
        return charge in self.charges

    def record(self, index: int, entity: str, reason: Reason, error: BaseException, detail: str) -> None:
        self.charges.record((index, entity), reason, error, f"{entity}: {detail}")

    def entity(self, entity: str, reason: Reason, error: BaseException, detail: str) -> None:
        """Every record of the batch at ``entity`` (not charged already)."""
        for item in self.batch.by_entity.get(entity, ()):
            self.record(item.index, entity, reason, error, detail)

    def output(self, cause: Cause | None, reason: Reason, error: BaseException, detail: str) -> set[str]:
        """What an output names as its cause. Returns the entities concerned (to run again)."""
        if cause is not None and cause.record is not None:
            for entity in cause.entities:
                self.record(cause.record, entity, reason, error, detail)
            return set(cause.entities)
        entities = set(cause.entities) if cause is not None else set()
        if not entities:  # every output of this stage names its cause; one that did not: the whole batch
            log.error("output_failure_unattributed", reason=reason, error=repr(error)[:300])
            entities = set(self.batch.by_entity)
        for entity in entities:
            self.entity(entity, reason, error, detail)
        return entities

    def letters(self, topic: str, now_ms: int) -> list[Letter]:
        """The dead letters of the records charged and not sent yet: one per record."""
        messages = {item.index: item.message for item in self.batch.items}
        return self.charges.letters(messages, topic, now_ms, STAGE)


class Reader:
    """Decodes and checks a batch of the internal topic's records for the consolidate stage."""

    def __init__(
        self, blueprint: Blueprint, store: StateLayer, rulebook: RuleBook, poison_topic: str
    ) -> None:
        self.schemas = blueprint.schemas
        self.catalogue: Catalogue = blueprint.catalogue
        self.settings = blueprint.settings
        self.limits = Limits.from_settings(blueprint.settings)
        self.store = store
        self.poison_topic = poison_topic
        self.partitions = blueprint.topic_by_role("repartition").partitions
        # timer entities by partition: each tick visits the watched feeds that live there
        self.timer_entities: dict[int, list[str]] = {}
        for entity in rulebook.timer_entities():
            key = str(EntityKey(entity.indicator, entity.region, entity.station))
            self.timer_entities.setdefault(partition_for(key, self.partitions), []).append(key)

    async def decode(self, events: Sequence[Received], now: int) -> Batch:
        """Decode and check each record; refuse what is not one of ours or is misrouted."""
        batch = Batch()
        for index, event in enumerate(events):
            message = event.message
            try:
                item = self._item(index, message, now)
                if isinstance(item, TickItem):
                    item.entities = await self._tick_entities(message.partition, item.now_ms)
            except Exception as exc:  # whatever it is, it is this record's: refuse it, keep going
                rejection = Rejection(refusal_reason(exc, Reason.UNDECODABLE), str(exc))
                batch.letters.append(poison_letter(message, self.poison_topic, rejection, exc, now, STAGE))
                continue
            batch.add(item)
            if isinstance(item, ObservationItem):
                obs = item.observation
                request = batch.requests[obs.entity]
                request.ids.add(obs.seen_key)
                request.periods.update(needed_periods(self.catalogue.indicators[obs.indicator], obs))
                batch.observation_events.append(event)
        return batch

    async def read_first(
        self,
        batch: Batch,
        todo: set[str],
        reads: dict[str, EntityReads],
        owned: OwnedState[dict[bytes, bytes]] | None = None,
    ) -> dict[str, BaseException]:
        """Read what the batch needs of the entities of ``todo`` into ``reads``, with their partitions'
        ledger; returns the entities that could not be read, with why. Raises StateLostError when a
        state holds less than its ledger says.

        The state hash of an entity ``owned`` holds (what this worker committed last, its partition's
        mark still the one it wrote: :mod:`stream_app.state.owned`) is taken from there, a copy,
        instead of Redis; the rest of its reads (and the ledger's word, checked against the cached
        offset field as against a read one) still come from Redis, with the hash's number of fields:
        a hash gone on its own (expired, deleted: the marks do not see that) does not have the held
        one's, is forgotten and read, so the loss is judged as without the cache."""
        requests: dict[str, ReadRequest] = {}
        kept: dict[str, dict[bytes, bytes]] = {}
        for entity in todo:
            request = batch.requests[entity]
            cached = owned.get(entity) if owned is not None and owned.enabled else None
            if cached is not None:
                kept[entity] = cached
                request = dataclasses.replace(request, state=False, length=True)
            requests[entity] = request
        sources = {entity: _source_of(batch.by_entity[entity][0].message) for entity in todo}
        vouched: dict[str, list[str]] = {}
        for entity in sorted(todo):
            vouched.setdefault(sources[entity], []).append(entity)
        unreadable = dict(await self.store.read(requests, reads, vouched))
        changed = {
            entity
            for entity, cached in kept.items()
            if entity not in unreadable and (entity not in reads or reads[entity].length != len(cached))
        }
        if changed and owned is not None:
            owned.forget(changed, "length")
            unreadable.update(await self.store.read({e: ReadRequest(state=True) for e in changed}, reads))
        for entity, cached in kept.items():
            if entity not in changed:
                reads.setdefault(entity, EntityReads()).state = dict(cached)
        _check_vouched(sources, reads, unreadable)
        return unreadable

    def _item(self, index: int, message: Message, now: int) -> Item:
        """One record decoded and checked (a tick's entities are looked up by ``_tick_entities``)."""
        subject, record = codecs.decode_any(self.schemas, message.value or b"", epoch_ms=True)
        if subject == "observation":
            obs = observation_from_record(record)
            _checked(self.catalogue, obs.entity)
            if not math.isfinite(obs.value):
                raise RecordRefusedError(Reason.RECORD_INVALID, f"value {obs.value!r} is not finite")
            # the intake's own time check and bound (STREAM_APP_MAX_FUTURE_SKEW_S), against the intake's
            # clock when it stamped it: another worker's clock, or a replay later, gives the same verdict
            received = received_at_of(message) or now
            refused = times_error(obs.event_time, obs.report_time, now_ms=received, limits=self.limits)
            if refused is not None:
                raise RecordRefusedError(Reason.RECORD_INVALID, f"{refused.reason}: {refused.message}")
            reporter = self.catalogue.reporters.get(obs.reporter)
            if reporter is None or obs.indicator not in reporter.indicators:
                raise RecordRefusedError(
                    Reason.UNKNOWN_ENTITY, f"{obs.reporter!r} may not report {obs.indicator}"
                )
            check_owner(obs.entity, self.partitions, message.partition)
            return ObservationItem(index, message, (obs.entity,), obs)
        if subject == "tick":
            latest = now + int(self.settings.tick_max_future_s * 1000)
            partition, tick_now = int(record["partition"]), as_ms(record["now"])
            if partition != message.partition:
                raise RecordRefusedError(
                    Reason.TICK_INVALID, f"a tick for partition {partition} on partition {message.partition}"
                )
            if not EARLIEST_EVENT_MS <= tick_now <= latest:
                raise RecordRefusedError(
                    Reason.TICK_INVALID, f"tick time {tick_now} outside [{EARLIEST_EVENT_MS}, {latest}]"
                )
            return TickItem(index, message, (), tick_now)
        if subject == "directive":
            entity = (message.key or b"").decode()
            key = _checked(self.catalogue, entity)
            alert_key = str(record["alert_key"])
            if entity_of_alert_key(alert_key) != str(key):
                raise RecordRefusedError(
                    Reason.UNKNOWN_ENTITY, f"directive about {alert_key!r} keyed by {entity!r}"
                )
            self._check_directive_text(record)
            check_owner(entity, self.partitions, message.partition)
            return DirectiveItem(index, message, (entity,), record)
        raise RecordRefusedError(
            Reason.UNDECODABLE, f"a {subject!r} record does not belong on the internal topic"
        )

    def _check_directive_text(self, record: dict[str, Any]) -> None:
        """A directive's text ends up in the entity's state and in every later alert of its rule."""
        problem = too_long(record, TextLimits.configured(self.settings))
        if problem is not None:
            raise RecordRefusedError(Reason.RECORD_INVALID, f"directive {problem}")

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


def source_of_entity(batch: Batch, entity: str) -> str:
    """The internal partition (``topic:partition``) an entity's records of ``batch`` came from."""
    return _source_of(batch.by_entity[entity][0].message)


def _source_of(message: Message) -> str:
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


def state_of(entity: str, reads: dict[str, EntityReads], unreadable: dict[str, BaseException]) -> EntityState:
    """An entity's state as read (a fresh one for an entity never stored); raises what made it unreadable."""
    error = unreadable.get(entity)
    if error is not None:
        raise error
    found = reads.get(entity)
    return found.build() if found is not None else EntityState()


def missing(state: EntityState) -> ReadRequest | None:
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


def _checked(catalogue: Catalogue, entity: str) -> EntityKey:
    try:
        return checked_entity(catalogue, entity)
    except ValueError as exc:
        raise RecordRefusedError(Reason.UNKNOWN_ENTITY, str(exc)) from exc
