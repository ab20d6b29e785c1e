"""Stage plumbing every stage shares: the dead letter of a record that made a stage fail, what the
failures of a batch are charged to, why Kafka refused an output, the check that a record sits on the
partition owning it, the registration of a stateful stage behind its state guard, and the stateless
stages' round (schema prefetch, route, publish, dead-letter what Kafka refused).

Stages differ in what they do with a record; how they refuse one is the same everywhere, so it is here.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import faust

from stream_app.agents._batch import batch_agent, earliest_offsets, prefetch_schemas
from stream_app.config.blueprint import Blueprint
from stream_app.domain.model import Rejection
from stream_app.domain.reasons import Reason
from stream_app.kafka.dead_letters import Letter, dead_letter
from stream_app.kafka.lanes import Message, Received
from stream_app.kafka.partitioning import partition_for
from stream_app.kafka.publisher import Output, Publisher
from stream_app.kafka.registry import ConfluentSchemas
from stream_app.ops import metrics
from stream_app.ops.failures import RecordRefusedError
from stream_app.settings import Settings
from stream_app.state.guard import StateGuard, firsts_of
from stream_app.state.owned import OwnedState
from stream_app.state.store import StateLayer

Fence = Callable[[], Awaitable[None]]
"""Before publishing: that the batch's partitions are still this worker's (:meth:`StateGuard.fence`)."""

Charge = tuple[int, str]
"""What a failure is charged to: a record (its index in the batch) at one entity ("" for a stage
whose records are not about entities)."""


def poison_letter(  # noqa: PLR0917 - the letter's parts, each needed
    message: Message,
    topic: str,
    rejection: Rejection,
    error: BaseException | None,
    now_ms: int,
    stage: str,
    reporter: str | None = None,
) -> Letter:
    """The dead letter of a record that made ``stage`` fail (poison), with the exception's type."""
    return dead_letter(
        message, topic, rejection, now_ms=now_ms, stage=stage, reporter=reporter, error=error, poison=True
    )


def refusal_of(output: Output[object], max_bytes: int) -> Reason:
    """Why an output was refused for good: over the size budget, or refused by Kafka."""
    return Reason.OUTPUT_TOO_LARGE if output.size > max_bytes else Reason.OUTPUT_REFUSED


def check_owner(key: str, partitions: int, partition: int) -> None:
    """Refuse (``misrouted``) a record read from a partition that does not own its key."""
    owner = partition_for(key, partitions)
    if owner != partition:
        raise RecordRefusedError(
            Reason.MISROUTED, f"{key!r} lives on partition {owner}, read from {partition}"
        )


@dataclass(slots=True)
class Poison:
    """Why a record could not be processed (at one entity)."""

    rejection: Rejection
    error: BaseException


@dataclass(slots=True)
class Charges:
    """What a batch's failures are charged to (:data:`Charge`). Only grows: a record charged once stays
    charged; the first reason charged to a record at an entity is the one kept."""

    found: dict[Charge, Poison] = field(default_factory=dict)
    sent: set[Charge] = field(default_factory=set)  # charges whose dead letter was built already

    def __contains__(self, charge: Charge) -> bool:
        return charge in self.found

    def record(self, charge: Charge, reason: Reason, error: BaseException, detail: str) -> None:
        self.found.setdefault(charge, Poison(Rejection(reason, detail[:500]), error))

    def letters(self, messages: Mapping[int, Message], topic: str, now_ms: int, stage: str) -> list[Letter]:
        """The dead letters of the records charged since the last call: one per record (a record
        charged at several entities names them all, with the first reason)."""
        by_index: dict[int, list[Poison]] = {}
        for charge, why in sorted(self.found.items()):
            if charge not in self.sent:
                by_index.setdefault(charge[0], []).append(why)
                self.sent.add(charge)
        return [
            poison_letter(
                messages[index],
                topic,
                Rejection(charged[0].rejection.reason, "; ".join(w.rejection.message for w in charged)),
                charged[0].error,
                now_ms,
                stage,
            )
            for index, charged in by_index.items()
        ]


class StatefulStage(Protocol):
    """A stage that applies batches to the state, admitted by its state guard."""

    async def process(
        self, events: Sequence[Received], floors: Mapping[str, int | None] | None = None
    ) -> None: ...


def register_stateful(  # noqa: PLR0917 - the stage, its topic and what it is built from
    app: faust.App,
    blueprint: Blueprint,
    store: StateLayer,
    stage: str,
    role: str,
    build: Callable[[Fence, OwnedState[Any]], StatefulStage],
    age_budget: float = 0.0,
) -> None:
    """Stage ``stage`` on the topic of ``role``: each batch counted, then processed once the state guard
    admitted it; ``build`` makes the stage with the guard's fence and what it keeps of what it wrote
    (checked by the guard at each admission: :mod:`stream_app.state.owned`). ``age_budget``: how long a
    record may wait for company in a batch (:func:`batch_agent`)."""
    name = blueprint.topic_by_role(role).name
    source = app.topic(name, key_serializer="raw", value_serializer="raw")
    settings = blueprint.settings
    owned: OwnedState[Any] = OwnedState(stage, settings.owned_state_max_bytes, settings.owned_state_max_age_s)
    guard = StateGuard(store, settings, earliest_offsets(app), stage=stage, owned=owned)
    processor = build(guard.fence, owned)

    async def handle(events: Sequence[Received]) -> None:
        metrics.RECORDS_CONSUMED.labels(name).inc(len(events))
        await guard.run(
            firsts_of(e.message for e in events), lambda floors: processor.process(events, floors)
        )

    batch_agent(app, source, stage, handle, blueprint.settings, age_budget=age_budget)


class RoutingStage(Protocol):
    """A stateless stage: it routes each record of a batch to an output blamed on its index, or to a
    dead letter."""

    @property
    def confluent(self) -> ConfluentSchemas | None: ...

    @property
    def publisher(self) -> Publisher: ...

    def route(self, events: Sequence[Received], now_ms: int) -> tuple[list[Output[int]], list[Letter]]: ...

    def poison(self, message: Message, rejection: Rejection, error: BaseException, now_ms: int) -> Letter: ...


async def route_and_publish(stage: RoutingStage, events: Sequence[Received], settings: Settings) -> None:
    """Resolve the batch's new schema ids, route it, publish it, and dead-letter the records whose
    output Kafka refused for good."""
    await prefetch_schemas(stage.confluent, events, settings)
    now_ms = int(time.time() * 1000)
    outputs, letters = stage.route(events, now_ms)
    publisher = stage.publisher
    refused = await publisher.publish(outputs, letters)
    late = [
        stage.poison(
            events[output.blame].message,
            Rejection(refusal_of(output, publisher.max_bytes), str(error)),
            error,
            now_ms,
        )
        for output, error in refused
        if output.blame is not None  # every output of a routing stage names its record
    ]
    await publisher.publish_dead_letters(late)
