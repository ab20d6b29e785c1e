"""Roll-up: combine the entities' period aggregates into provinces (from stations) and the nation.

Reads the internal roll-up topic, keyed ``indicator|target``: one writer per roll-up, in order. Each
contribution replaces its source's previous one in the period's Redis hash unless that hash already
holds a newer one (``lua/rollup_apply.lua``: the source's input offset orders them), so redelivery
and replay are harmless without an offset of its own. The combined value (``stream_app.domain.rollup``)
is published to the consolidated topic once per key per batch, with the same period last year.

Poison never jams: a contribution that is not one of ours, names a roll-up the catalogue cannot have,
sits on a partition that does not own it, or carries an item that cannot be applied goes to
``internal.rollup.dlq`` with the reason (its good items still count: applying them again on a replay
changes nothing); so does one whose Redis write is refused or whose roll-up record cannot be built or
published.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust

from stream_app.agents._stage import Charges, Fence, check_owner, poison_letter, refusal_of, register_stateful
from stream_app.config.blueprint import Blueprint
from stream_app.domain.aggregates import (
    Agg,
    breakdowns_of,
    close_time_ms,
    period_by_label,
    period_frequencies,
)
from stream_app.domain.calendar import frequency_of_label
from stream_app.domain.consolidation import consolidated_key, period_record
from stream_app.domain.entity import checked_entity
from stream_app.domain.model import CO_REPORTER_BREAKDOWN, Rejection, split_period_field
from stream_app.domain.reasons import Reason
from stream_app.domain.rollup import NATIONAL, combine_sources, targets
from stream_app.kafka.dead_letters import Letter
from stream_app.kafka.lanes import Message, Received
from stream_app.kafka.publisher import Output, Publisher
from stream_app.logs import get_logger
from stream_app.ops import metrics
from stream_app.ops.failures import RecordRefusedError, refusal_reason
from stream_app.state import ledger
from stream_app.state.guard import lasts_of, marks_of
from stream_app.state.owned import OwnedState
from stream_app.state.store import Mark, PeriodKey, RollupWrite, StateLayer, StateLostError
from stream_app.wire import codecs

log = get_logger(__name__)

STAGE = "rollup"


@dataclass(slots=True)
class _Write:
    index: int  # the record's position in its batch
    write: RollupWrite


@dataclass(slots=True)
class _Batch:
    writes: list[_Write] = field(default_factory=list)
    letters: list[Letter] = field(default_factory=list)
    messages: dict[int, Message] = field(default_factory=dict)
    charges: Charges = field(default_factory=Charges)  # records failed, by (index, "")

    def fail(self, index: int, reason: Reason, detail: str, error: BaseException) -> None:
        self.charges.record((index, ""), reason, error, detail)


class Rollup:
    """Applies a batch of contributions and publishes the roll-ups they change."""

    def __init__(
        self,
        blueprint: Blueprint,
        store: StateLayer,
        publisher: Publisher,
        *,
        replay: bool = False,
        fence: Fence | None = None,
        owned: OwnedState[Any] | None = None,
    ) -> None:
        self.owned = owned  # what this worker wrote of its partitions' roll-ups (stream_app/state/owned.py)
        self.replay = replay  # rebuilding the state from the log: the rebuild sets the marks at its end
        self.fence = fence
        self.blueprint = blueprint
        self.catalogue = blueprint.catalogue
        self.store = store
        self.publisher = publisher
        self.consolidated = blueprint.topic_by_role("consolidated").name
        self.poison_topic = blueprint.topic_by_role("rollup_dead_letter").name
        self.partitions = blueprint.topic_by_role("rollup").partitions
        self.schema = blueprint.schemas.latest("consolidated")

    async def process(
        self, events: Sequence[Received], floors: Mapping[str, int | None] | None = None
    ) -> None:
        now = int(time.time() * 1000)
        batch = _Batch()
        for index, event in enumerate(events):
            batch.messages[index] = event.message
            try:
                self._decode(index, event.message, batch)
            except Exception as exc:  # the record as a whole is not one of ours
                rejection = Rejection(refusal_reason(exc, Reason.UNDECODABLE), str(exc))
                batch.letters.append(
                    poison_letter(event.message, self.poison_topic, rejection, exc, now, STAGE)
                )
        marks = None if self.replay else marks_of(lasts_of(e.message for e in events), floors)
        if self.fence is not None:  # before the writes: the records published come from them
            await self.fence()
        outputs = await self._apply(batch, now, marks)
        refused = await self.publisher.publish(outputs, batch.letters)
        for output, error in refused:
            for index in output.blame or ():
                batch.fail(index, refusal_of(output, self.publisher.max_bytes), str(error), error)
        await self.publisher.publish_dead_letters(
            batch.charges.letters(batch.messages, self.poison_topic, now, STAGE)
        )

    async def _apply(
        self, batch: _Batch, now: int, marks: dict[str, Mark] | None
    ) -> list[Output[frozenset[int]]]:
        """Apply the batch's writes and its partitions' applied marks; the roll-up record of every
        period they touched, each blamed on the records that touched it."""
        touched: dict[PeriodKey, set[int]] = {}
        for write in batch.writes:
            touched.setdefault(write.write.period, set()).add(write.index)
        periods = sorted(touched)
        vouched = [] if self.replay else await self._check_ledger(periods)
        applied = await self.store.apply_rollup([w.write for w in batch.writes], periods, applied=marks)
        if vouched:  # what the periods' hashes hold now, where it grew: the next batch's check
            grown = {
                period: len(this)
                for period, (this, _), (_, before) in zip(periods, applied.periods, vouched, strict=True)
                if not isinstance(this, BaseException) and len(this) > (before or 0)
            }
            await self.store.vouch_rollups(grown)
        for position, refusal in applied.refused.items():
            batch.fail(batch.writes[position].index, Reason.STATE_WRITE_FAILED, repr(refusal), refusal)
        outputs: list[Output[frozenset[int]]] = []
        for period, (this, last_year) in zip(periods, applied.periods, strict=True):
            try:
                output = self._record(period, this, last_year, now, frozenset(touched[period]))
            except Exception as exc:
                for index in touched[period]:
                    batch.fail(index, Reason.OUTPUT_FAILED, f"roll-up {'|'.join(period)}: {exc!r}", exc)
                continue
            if output is not None:
                outputs.append(output)
        return outputs

    async def _check_ledger(self, periods: list[PeriodKey]) -> list[tuple[int, int | None]]:
        """Before writing: raise StateLostError when a period's hash holds fewer sources than the
        roll-ups' ledger says it held (:mod:`stream_app.state.ledger`); else its entries."""
        found = await self.store.rollup_ledger(periods)
        lost = [
            problem
            for period, (held, before) in zip(periods, found, strict=True)
            for problem in [ledger.rollup_loss("|".join(period), held, before)]
            if problem is not None
        ]
        if lost:
            more = f" (and {len(lost) - 1} more periods)" if len(lost) > 1 else ""
            raise StateLostError(lost[0] + more)
        return found

    def _decode(self, index: int, message: Message, batch: _Batch) -> None:
        """One contribution record: its writes into ``batch``; bad items mark the record failed."""
        subject, record = codecs.decode_any(self.blueprint.schemas, message.value or b"")
        if subject != "contribution":
            raise RecordRefusedError(
                Reason.UNDECODABLE, f"a {subject!r} record does not belong on the roll-up topic"
            )
        indicator = self.catalogue.indicators.get(record["indicator"])
        target = str(record["target"])
        routing = f"{record['indicator']}|{target}"
        if indicator is None:
            raise RecordRefusedError(
                Reason.CONTRIBUTION_INVALID, f"unknown indicator {record['indicator']!r}"
            )
        check_owner(routing, self.partitions, message.partition)
        for position, item in enumerate(record["items"]):
            try:
                write = _checked_write(self.catalogue, indicator, target, index, item)
            except Exception as exc:
                batch.fail(index, Reason.CONTRIBUTION_INVALID, f"item {position}: {exc!r}", exc)
                continue
            batch.writes.append(write)

    def _record(
        self,
        period: PeriodKey,
        sources: dict[str, Agg] | BaseException,
        last_year_sources: dict[str, Agg] | BaseException,
        now: int,
        blame: frozenset[int],
    ) -> Output[frozenset[int]] | None:
        """The roll-up record of one period from its sources and last year's (or the error reading them),
        blamed on the records that touched it."""
        if isinstance(sources, BaseException):
            raise sources
        if isinstance(last_year_sources, BaseException):
            raise last_year_sources
        indicator_code, target, series, label = period
        indicator = self.catalogue.indicators[indicator_code]
        reporting = period_by_label(label, indicator.calendar, indicator.deadline_day)
        closed = close_time_ms(reporting) <= now
        if not closed and frequency_of_label(label) != period_frequencies(indicator.frequency)[0]:
            return None  # a longer period still open: published when it closes
        key = consolidated_key(indicator_code, target, None, series, label).encode()
        combined = combine_sources(indicator, sources)
        if combined is None:
            metrics.CONSOLIDATED_EVENTS.labels("tombstone").inc()
            return Output(self.consolidated, key, None, blame=blame)
        last_year = combine_sources(indicator, last_year_sources)
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
            reporter=breakdowns_of(series).get(CO_REPORTER_BREAKDOWN, indicator.owner),
            revision=0,
            now_ms=now,
            contributors=combined.contributors,
            value=combined.value,
        )
        metrics.CONSOLIDATED_EVENTS.labels("rollup").inc()
        return Output(self.consolidated, key, codecs.encode(self.schema, record), blame=blame)


def _checked_write(catalogue: Any, indicator: Any, target: str, index: int, item: dict[str, Any]) -> _Write:
    """One contribution item as a write, checked: a source that counts in this roll-up, a period of the
    indicator's calendar, an aggregate that decodes. Raises ``ValueError`` (or what decoding raises)."""
    source = str(item["source"])
    key = checked_entity(catalogue, source)
    if key.indicator != indicator.code or target not in targets(indicator, key.region, key.station):
        raise ValueError(f"{source!r} does not count in the roll-up {indicator.code}|{target}")
    series, label = split_period_field(str(item["period"]))
    period_by_label(label, indicator.calendar, indicator.deadline_day)
    aggregate = item["aggregate"]
    if aggregate is not None:
        Agg.decode(aggregate)
    return _Write(
        index, RollupWrite((indicator.code, target, series, label), source, int(item["seq"]), aggregate)
    )


def register(app: faust.App, blueprint: Blueprint, store: StateLayer, publisher: Publisher) -> None:
    """The roll-up agent on the internal roll-up topic."""
    register_stateful(
        app,
        blueprint,
        store,
        STAGE,
        "rollup",
        lambda fence, owned: Rollup(blueprint, store, publisher, fence=fence, owned=owned),
    )
