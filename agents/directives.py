"""Directives: the center acknowledges, assigns, comments on, escalates or closes an alert.

A directive names an alert by its key; the alert's state belongs to its entity's single writer, so
the directive is re-keyed onto the internal topic, next to that entity's observations, and applied
there in order. A directive that cannot be routed (undecodable, an alert key of no entity the catalogue
can have) goes to the directives' dead-letter topic, and so does one that made this stage fail.

A directive is a person's act: only the HTTP API, which authenticated the person, writes them, naming
the person (``actor``), the token (``token_id``) and its own Kafka principal (``writer``). One that no
API authenticated, or written by a principal that may not issue directives
(:func:`stream_app.kafka.acl.directive_writers`), is refused: ``unauthenticated_directive``, counted in
``stream_app_records_rejected_total{reporter="CENTER"}`` (alert StreamAppUnauthenticatedDirective).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import faust

from stream_app.agents._batch import batch_agent
from stream_app.agents._stage import poison_letter, route_and_publish
from stream_app.config.blueprint import Blueprint
from stream_app.domain import clock
from stream_app.domain.directives import TextLimits, too_long
from stream_app.domain.entity import checked_entity, entity_of_alert_key
from stream_app.domain.model import Rejection
from stream_app.domain.reasons import Reason
from stream_app.kafka import registry
from stream_app.kafka.acl import directive_writers
from stream_app.kafka.dead_letters import Letter, dead_letter
from stream_app.kafka.lanes import Message, Received
from stream_app.kafka.partitioning import partition_for
from stream_app.kafka.publisher import Output, Publisher, received_at
from stream_app.ops import metrics
from stream_app.wire import codecs
from stream_app.wire.codecs import DecodeError

CENTER = "CENTER"  # the reporter label of the center's own records in metrics
STAGE = "directives"


class Router:
    """Turns a batch of directives into re-keyed internal records and dead letters."""

    def __init__(self, blueprint: Blueprint, publisher: Publisher) -> None:
        self.blueprint = blueprint
        self.publisher = publisher
        internal = blueprint.topic_by_role("repartition")
        self.internal = internal.name
        self.partitions = internal.partitions
        self.dead_letters = blueprint.topic_by_role("directives_dead_letter").name
        self.directive_schema = blueprint.schemas.latest("directive")
        self.writers = directive_writers(blueprint.settings)
        self.limits = TextLimits.configured(blueprint.settings)
        # Directives in Confluent framing (the API's with STREAM_APP_OUTPUT_FRAMING=confluent, or another
        # system of the center's) resolve their schema id through the registry, when one is set.
        self.confluent = registry.from_settings(blueprint.settings, blueprint.schemas)

    def route(self, events: Sequence[Received], now_ms: int) -> tuple[list[Output[int]], list[Letter]]:
        """Each directive re-keyed to its alert's entity (blamed on its index), or a dead letter."""
        outputs: list[Output[int]] = []
        letters: list[Letter] = []
        for index, event in enumerate(events):
            message = event.message
            metrics.RECORDS_CONSUMED.labels(message.topic).inc()
            try:
                routed = self._route_one(message, index)
            except Exception as exc:  # a defect or an input nobody foresaw: this directive's alone
                letters.append(self.poison(message, Rejection(Reason.INTAKE_FAILED, repr(exc)), exc, now_ms))
                continue
            if isinstance(routed, Rejection):
                letters.append(self._reject(message, routed, now_ms))
            else:
                outputs.append(routed)
        return outputs, letters

    def _route_one(self, message: Message, index: int) -> Output[int] | Rejection:
        try:
            directive = codecs.decode(
                self.blueprint.schemas, "directive", message.value or b"", self.confluent
            )
        except DecodeError as exc:
            return Rejection(exc.reason, exc.message)
        forged = unauthenticated(directive, self.writers)
        if forged is not None:
            return Rejection(Reason.UNAUTHENTICATED_DIRECTIVE, forged)
        overlong = too_long(directive, self.limits)
        if overlong is not None:
            return Rejection(Reason.TEXT_TOO_LONG, overlong)
        entity = entity_of_alert_key(directive["alert_key"])
        if entity is None:
            return Rejection(Reason.UNKNOWN_ALERT, f"alert key {directive['alert_key']!r} is malformed")
        try:
            checked_entity(self.blueprint.catalogue, entity)
        except ValueError as exc:
            return Rejection(Reason.UNKNOWN_ALERT, f"alert key {directive['alert_key']!r}: {exc}")
        return Output(
            self.internal,
            entity.encode(),
            codecs.encode(self.directive_schema, directive),
            timestamp=message.timestamp,
            partition=partition_for(entity, self.partitions),
            blame=index,
            headers=received_at(clock.now_ms()),  # the stateful step's clock for this record
        )

    def _reject(self, message: Message, rejection: Rejection, now_ms: int) -> Letter:
        return dead_letter(message, self.dead_letters, rejection, now_ms=now_ms, stage=STAGE, reporter=CENTER)

    def poison(self, message: Message, rejection: Rejection, error: BaseException, now_ms: int) -> Letter:
        """The dead letter of a directive that made this stage fail."""
        return poison_letter(message, self.dead_letters, rejection, error, now_ms, STAGE, CENTER)

    async def process(self, events: Sequence[Received]) -> None:
        await route_and_publish(self, events, self.blueprint.settings)


def unauthenticated(directive: dict[str, Any], writers: frozenset[str]) -> str | None:
    """Why ``directive`` is not an authenticated person's act, or None when it is."""
    writer = directive.get("writer") or ""
    if writer not in writers:
        allowed = ", ".join(sorted(writers))
        return f"written by {writer[:100]!r}, not by a principal that may issue directives ({allowed})"
    if not directive.get("token_id") or not directive.get("actor"):
        return "no authenticated person: the directive names no token or no actor"
    return None


def register(app: faust.App, blueprint: Blueprint, publisher: Publisher) -> None:
    """The directives agent on the center's directives topic."""
    if blueprint.settings.intake_paused:  # draining the internal topics: nothing new goes there
        return
    router = Router(blueprint, publisher)
    source = app.topic(
        blueprint.topic_by_role("directives").name, key_serializer="raw", value_serializer="raw"
    )
    batch_agent(app, source, STAGE, router.process, blueprint.settings)
