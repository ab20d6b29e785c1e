"""Roll-up: combine the entities' period aggregates into provinces (from stations) and the nation.

Reads the internal roll-up topic, keyed ``indicator|target``: one writer per roll-up, in order. Each
contribution replaces its source's previous one in the period's Redis hash unless that hash already
holds a newer one (``lua/rollup_apply.lua``: the source's input offset orders them), so redelivery
and replay are harmless without an offset of its own. The combined value (``stream_app.rollup``)
is published to the consolidated topic once per key per batch, with the same period last year.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import faust

from agents._batch import Output, batch_agent, publish
from stream_app import codecs, metrics
from stream_app.aggregates import close_time_ms, period_by_label, period_frequencies, same_period_last_year
from stream_app.consolidation import consolidated_key, frequency_of, period_record
from stream_app.exceptions import DecodeError
from stream_app.logs import get_logger
from stream_app.rollup import NATIONAL, combine_sources, decode_entries, encode_entry
from stream_app.runtime import Blueprint
from stream_app.state import STATE_TTL_S, StateStore, lua_script

log = get_logger(__name__)

PeriodKey = tuple[str, str, str, str]  # (indicator, target, series, label)


class Rollup:
    """Applies a batch of contributions and publishes the roll-ups they change."""

    def __init__(self, app: faust.App, blueprint: Blueprint, store: StateStore) -> None:
        self.blueprint = blueprint
        self.catalogue = blueprint.catalogue
        self.store = store
        self.consolidated = app.topic(
            blueprint.topic_by_role("consolidated").name, key_serializer="raw", value_serializer="raw"
        )
        self.schema = blueprint.schemas.latest("consolidated")
        self.script = store.client.register_script(lua_script("rollup_apply.lua"))

    def key(self, period: PeriodKey) -> str:
        indicator, target, series, label = period
        return self.store.key(f"rollup|{indicator}|{target}", f"{series}|{label}")

    async def process(self, events: Sequence[faust.EventT[bytes]]) -> None:
        now = int(time.time() * 1000)
        writes: list[tuple[PeriodKey, str, int, str | None]] = []
        for event in events:
            message = event.message
            try:
                subject, record = codecs.decode_any(self.blueprint.schemas, message.value or b"")
            except DecodeError as exc:  # our own topic: only a bug or a foreign writer gets here
                log.exception(
                    "internal_record_undecodable",
                    topic=message.topic,
                    offset=message.offset,
                    error=exc.message,
                )
                continue
            if subject != "contribution":
                continue
            for item in record["items"]:
                series, _, label = item["period"].rpartition("|")
                period = (record["indicator"], record["target"], series, label)
                writes.append((period, item["source"], int(item["seq"]), item["aggregate"]))
        touched = sorted({w[0] for w in writes})
        if not touched:
            return

        async def apply_and_read() -> list[Any]:
            async with self.store.client.pipeline(transaction=False) as pipe:
                for period, source, seq, aggregate in writes:
                    await self.script(
                        keys=[self.key(period)],
                        args=[source, seq, encode_entry(seq, aggregate), STATE_TTL_S],
                        client=pipe,
                    )
                for indicator, target, series, label in touched:
                    pipe.hgetall(self.key((indicator, target, series, label)))
                    pipe.hgetall(self.key((indicator, target, series, same_period_last_year(label))))
                result: list[Any] = await pipe.execute()
                return result

        replies = (await self.store.with_retry("rollup", apply_and_read))[len(writes) :]
        outputs = []
        for index, period in enumerate(touched):
            output = self._record(period, replies[2 * index], replies[2 * index + 1], now)
            if output is not None:
                outputs.append(output)
        await publish(outputs, self.blueprint.settings)

    def _record(
        self, period: PeriodKey, raw: dict[bytes, bytes], raw_last_year: dict[bytes, bytes], now: int
    ) -> Output | None:
        indicator_code, target, series, label = period
        indicator = self.catalogue.indicators[indicator_code]
        reporting = period_by_label(label, indicator.calendar, indicator.deadline_day)
        closed = close_time_ms(reporting) <= now
        if not closed and frequency_of(label) != period_frequencies(indicator.frequency)[0]:
            return None  # a longer period still open: published when it closes
        key = consolidated_key(indicator_code, target, None, series, label).encode()
        combined = combine_sources(indicator, decode_entries(raw))
        if combined is None:
            metrics.CONSOLIDATED_EVENTS.labels("tombstone").inc()
            return Output(self.consolidated, key, None)
        last_year = combine_sources(indicator, decode_entries(raw_last_year))
        record = period_record(
            indicator,
            key.decode(),
            combined.agg,
            reporting,
            last_year=None,
            last_year_value=last_year.value if last_year is not None else None,
            kind="PERIOD_CLOSE" if closed else "UPDATE",
            scope="NATIONAL" if target == NATIONAL else "PROVINCE",
            region=target,
            station=None,
            series=series,
            reporter=indicator.owner,
            revision=0,
            now_ms=now,
            contributors=combined.contributors,
            value=combined.value,
        )
        metrics.CONSOLIDATED_EVENTS.labels("rollup").inc()
        return Output(self.consolidated, key, codecs.encode(self.schema, record))


def register(app: faust.App, blueprint: Blueprint, store: StateStore) -> None:
    """The roll-up agent on the internal roll-up topic."""
    settings = blueprint.settings
    rollup = Rollup(app, blueprint, store)
    source = app.topic(blueprint.topic_by_role("rollup").name, key_serializer="raw", value_serializer="raw")

    async def handle(events: Sequence[faust.EventT[bytes]]) -> None:
        metrics.RECORDS_CONSUMED.labels(source.get_topic_name()).inc(len(events))
        await rollup.process(events)

    batch_agent(app, source, "rollup", handle, settings)
