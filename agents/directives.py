"""Directives: the center acknowledges, assigns, comments on, escalates or closes an alert.

A directive names an alert by its key; the alert's state belongs to its entity's single writer, so
the directive is re-keyed onto the internal topic, next to that entity's observations, and applied
there in order. A directive that cannot be routed goes to the directives' dead-letter topic.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import faust

from agents._batch import Output, batch_agent, dead_letter, publish
from stream_app import codecs, metrics
from stream_app.exceptions import DecodeError
from stream_app.model import Rejection
from stream_app.partitioning import partition_for
from stream_app.runtime import Blueprint

CENTER = "CENTER"  # the reporter label of the center's own records in metrics


def entity_of_alert_key(alert_key: str) -> str | None:
    """``<rule id>|<indicator>|<region>|<station or ->`` -> ``<indicator>|<region>|<station or ->``."""
    parts = alert_key.split("|")
    if len(parts) != 4 or not all(parts):
        return None
    return "|".join(parts[1:])


class Router:
    """Turns a batch of directives into re-keyed internal records and dead letters."""

    def __init__(self, app: faust.App, blueprint: Blueprint) -> None:
        self.blueprint = blueprint
        internal = blueprint.topic_by_role("repartition")
        self.internal = app.topic(internal.name, key_serializer="raw", value_serializer="raw")
        self.partitions = internal.partitions
        self.dead_letters = app.topic(
            blueprint.topic_by_role("directives_dead_letter").name,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.directive_schema = blueprint.schemas.latest("directive")
        self.dead_letter_schema = blueprint.schemas.latest("dead_letter")

    def route(self, events: Sequence[faust.EventT[bytes]], now_ms: int) -> list[Output]:
        outputs: list[Output] = []
        for event in events:
            message = event.message
            metrics.RECORDS_CONSUMED.labels(message.topic).inc()
            try:
                directive = codecs.decode(self.blueprint.schemas, "directive", message.value or b"")
            except DecodeError as exc:
                outputs.append(self._reject(message, Rejection(exc.reason, exc.message), now_ms))
                continue
            entity = entity_of_alert_key(directive["alert_key"])
            if entity is None:
                rejection = Rejection("unknown_alert", f"alert key {directive['alert_key']!r} is malformed")
                outputs.append(self._reject(message, rejection, now_ms))
                continue
            outputs.append(
                Output(
                    self.internal,
                    entity.encode(),
                    codecs.encode(self.directive_schema, directive),
                    timestamp=message.timestamp,
                    partition=partition_for(entity, self.partitions),
                )
            )
        return outputs

    def _reject(self, message: Any, rejection: Rejection, now_ms: int) -> Output:
        return dead_letter(
            message, CENTER, self.dead_letters, self.dead_letter_schema, rejection, now_ms=now_ms
        )


def register(app: faust.App, blueprint: Blueprint) -> None:
    """The directives agent on the center's directives topic."""
    settings = blueprint.settings
    router = Router(app, blueprint)
    source = app.topic(
        blueprint.topic_by_role("directives").name, key_serializer="raw", value_serializer="raw"
    )

    async def handle(events: Sequence[faust.EventT[bytes]]) -> None:
        await publish(router.route(events, int(time.time() * 1000)), settings)

    batch_agent(app, source, "directives", handle, settings)
