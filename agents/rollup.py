"""Roll-up: combine the entities' period aggregates into provinces (from stations) and the nation.

Reads the internal roll-up topic, keyed ``indicator|target``: one writer per roll-up, in order. Each
contribution replaces its source's previous one in the period's Redis hash unless that hash already
holds a newer one (``lua/rollup_apply.lua``, one call per roll-up and batch: the source's input
offset orders them), so redelivery and replay are harmless without an offset of its own. The combined
value (``stream_app.domain.rollup``) is published to the consolidated topic once per key per batch,
with the same period last year.

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
    same_period_last_year,
)
from stream_app.domain.calendar import frequency_of_label
from stream_app.domain.consolidation import consolidated_key, period_record
from stream_app.domain.entity import checked_entity
from stream_app.domain.model import CO_REPORTER_BREAKDOWN, Rejection, split_period_field
from stream_app.domain.reasons import Reason
from stream_app.domain.rollup import NATIONAL, PeriodSources, combine_sources, targets
from stream_app.kafka.dead_letters import Letter
from stream_app.kafka.lanes import Message, Received
from stream_app.kafka.publisher import Output, Publisher
from stream_app.logs import get_logger
from stream_app.ops import metrics
from stream_app.ops.failures import RecordRefusedError, refusal_reason
from stream_app.state import ledger
from stream_app.state.guard import lasts_of, marks_of, source_of
from stream_app.state.owned import OwnedState
from stream_app.state.store import Mark, PeriodKey, RollupApplied, RollupWrite, StateLayer, StateLostError
from stream_app.wire import codecs

log = get_logger(__name__)

STAGE = "rollup"


@dataclass(slots=True)
class _Write:
    index: int  # the record's position in its batch
    write: RollupWrite
    agg: Agg | None  # the write's aggregate, decoded
    source: str = ""  # the roll-up partition it arrived on (its applied mark's name)


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
        # (indicator, source, target) found to count in their roll-up: the catalogue's, so bounded by it
        self.counting: set[tuple[str, str, str]] = set()

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
        wanted = _wanted(periods)
        owner = _owners(batch.writes)
        held = self._held(wanted, owner)
        vouched = [] if self.replay else await self._check_ledger(periods, held)
        reads = [key for key in wanted if key not in (held or {})]
        applied = await self.store.apply_rollup([w.write for w in batch.writes], reads, applied=marks)
        for position, refusal in applied.refused.items():
            batch.fail(batch.writes[position].index, Reason.STATE_WRITE_FAILED, repr(refusal), refusal)
        sources: dict[PeriodKey, PeriodSources | BaseException] = dict(zip(reads, applied.reads, strict=True))
        doubtful = self._follow(batch.writes, applied, held, sources)
        if doubtful:  # read again what the writes' replies say this worker did not know (see _follow)
            again = await self.store.apply_rollup([], doubtful)
            sources.update(zip(doubtful, again.reads, strict=True))
        if self.owned is not None and held is not None:
            written = {w.write.period for w, done in zip(batch.writes, applied.written, strict=True) if done}
            fresh = [*reads, *doubtful, *(key for key in held if key in written)]
            _keep(self.owned, sources, fresh, owner, {batch.writes[p].write.period for p in applied.refused})
            if marks:
                self.owned.committed({source: offset for source, (offset, _) in marks.items()})
        if vouched:  # what the periods' hashes hold now, where it grew: the next batch's check
            grown = {
                period: n
                for period, (_, before) in zip(periods, vouched, strict=True)
                for this in [sources[period]]
                if not isinstance(this, BaseException)
                for n in [len(this.aggregates())]
                if n > (before or 0)
            }
            await self.store.vouch_rollups(grown)
        outputs: list[Output[frozenset[int]]] = []
        for period in periods:
            indicator, target, series, label = period
            last_year = (indicator, target, series, same_period_last_year(label))
            try:
                output = self._record(
                    period, sources[period], sources[last_year], now, frozenset(touched[period])
                )
            except Exception as exc:
                for index in touched[period]:
                    batch.fail(index, Reason.OUTPUT_FAILED, f"roll-up {'|'.join(period)}: {exc!r}", exc)
                continue
            if output is not None:
                outputs.append(output)
        return outputs

    def _held(
        self, wanted: Sequence[PeriodKey], owner: Mapping[tuple[str, str], str]
    ) -> dict[PeriodKey, PeriodSources] | None:
        """The periods (and last year's) this worker holds as Redis holds them; None: it keeps none
        (a replay, or the cache off)."""
        if self.replay or self.owned is None or not self.owned.enabled:
            return None
        held: dict[PeriodKey, PeriodSources] = {}
        for key in wanted:
            if _indicator_target(key) in owner:
                found = self.owned.get(key)
                if found is not None:
                    held[key] = found
        return held

    def _follow(
        self,
        writes: Sequence[_Write],
        applied: RollupApplied,
        held: dict[PeriodKey, PeriodSources] | None,
        sources: dict[PeriodKey, PeriodSources | BaseException],
    ) -> list[PeriodKey]:
        """Apply the batch's writes to the periods held (copies: the cache's are not touched) as the
        script applied them to the hashes, into ``sources``. The periods where a write was refused, or
        where the script's reply is not what the held period says it must be (it held a later sequence
        this worker did not know of, or lacked one it thought there), are not known: they are returned,
        to be read again."""
        if not held:
            return []
        views: dict[PeriodKey, PeriodSources] = {}
        doubtful: dict[PeriodKey, None] = {}
        for position, w in enumerate(writes):
            key = w.write.period
            if key not in held or key in doubtful:
                continue
            view = views.get(key)
            if view is None:
                view = views[key] = held[key].copy()
            written = applied.written[position]
            if position in applied.refused or written == view.keeps(w.write.source, w.write.seq):
                doubtful[key] = None
                continue
            if written:
                view.write(w.write.source, w.write.seq, w.write.aggregate, w.agg)
        for key, found in held.items():
            if key not in doubtful:
                sources[key] = views.get(key, found)
        return list(doubtful)

    async def _check_ledger(
        self, periods: list[PeriodKey], held: dict[PeriodKey, PeriodSources] | None = None
    ) -> list[tuple[int, int | None]]:
        """Before writing: raise StateLostError when a period's hash holds fewer sources than the
        roll-ups' ledger says it held (:mod:`stream_app.state.ledger`); else its entries.

        The hash lengths are read for the periods held too (the cache's and last year's): a period
        held that does not have the length it has here is forgotten from ``held`` and read back. The
        read stays even when every period is held, for safety: the applied marks prove that no other
        writer wrote the partition, not that the hashes are still there — a roll-up hash lost on its
        own (an operator's delete, a restore, last year's period expiring: nobody writes it) leaves
        the marks as they were, and only this check (and the audit) sees it."""
        asked = set(periods)
        extra = [key for key in held or () if key not in asked]
        found = await self.store.rollup_ledger([*periods, *extra])
        lost = [
            problem
            for period, (held_n, before) in zip(periods, found[: len(periods)], strict=True)
            for problem in [ledger.rollup_loss("|".join(period), held_n, before)]
            if problem is not None
        ]
        if lost:
            more = f" (and {len(lost) - 1} more periods)" if len(lost) > 1 else ""
            raise StateLostError(lost[0] + more)
        if held:
            for key, (length, _) in zip([*periods, *extra], found, strict=True):
                kept = held.get(key)
                if kept is not None and len(kept.entries) != length:
                    del held[key]
                    if self.owned is not None:
                        self.owned.forget([key], "length")
        return found[: len(periods)]

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
                write = _checked_write(self.catalogue, indicator, target, index, item, self.counting)
            except Exception as exc:
                batch.fail(index, Reason.CONTRIBUTION_INVALID, f"item {position}: {exc!r}", exc)
                continue
            write.source = source_of((message.topic, message.partition))
            batch.writes.append(write)

    def _record(
        self,
        period: PeriodKey,
        sources: PeriodSources | BaseException,
        last_year_sources: PeriodSources | BaseException,
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
        combined = combine_sources(indicator, sources.aggregates())
        if combined is None:
            metrics.CONSOLIDATED_EVENTS.labels("tombstone").inc()
            return Output(self.consolidated, key, None, blame=blame)
        last_year = combine_sources(indicator, last_year_sources.aggregates())
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


def _checked_write(  # noqa: PLR0917 - the item and what it is checked against
    catalogue: Any,
    indicator: Any,
    target: str,
    index: int,
    item: dict[str, Any],
    counting: set[tuple[str, str, str]],
) -> _Write:
    """One contribution item as a write, checked: a source that counts in this roll-up, a period of the
    indicator's calendar, an aggregate that decodes. Raises ``ValueError`` (or what decoding raises).
    ``counting``: the (indicator, source, target) already found to count (the check depends on the
    catalogue alone); one that passes is added."""
    source = str(item["source"])
    if (indicator.code, source, target) not in counting:
        key = checked_entity(catalogue, source)
        if key.indicator != indicator.code or target not in targets(indicator, key.region, key.station):
            raise ValueError(f"{source!r} does not count in the roll-up {indicator.code}|{target}")
        counting.add((indicator.code, source, target))
    series, label = split_period_field(str(item["period"]))
    period_by_label(label, indicator.calendar, indicator.deadline_day)
    aggregate = item["aggregate"]
    agg = Agg.decode(aggregate) if aggregate is not None else None
    return _Write(
        index, RollupWrite((indicator.code, target, series, label), source, int(item["seq"]), aggregate), agg
    )


def _wanted(periods: Sequence[PeriodKey]) -> list[PeriodKey]:
    """The periods to publish and each one's same period last year, each once, in order."""
    out: dict[PeriodKey, None] = {}
    for indicator, target, series, label in periods:
        out[(indicator, target, series, label)] = None
        out[(indicator, target, series, same_period_last_year(label))] = None
    return list(out)


def _keep(
    owned: OwnedState[Any],
    sources: Mapping[PeriodKey, PeriodSources | BaseException],
    fresh: Sequence[PeriodKey],
    owner: Mapping[tuple[str, str], str],
    refused: set[PeriodKey],
) -> None:
    """After the round trip succeeded: keep what the periods read or written in it hold now (a period
    only held and not written keeps its age: nothing renewed its hash), but for those that failed to
    read or decode, or that a refused write touched (the hash may not be one)."""
    for key in dict.fromkeys(fresh):
        found = sources[key]
        if isinstance(found, BaseException) or key in refused:
            owned.forget([key], "refused")
            continue
        owned.put(owner[_indicator_target(key)], key, found, found.size)


def _indicator_target(period: PeriodKey) -> tuple[str, str]:
    return period[0], period[1]


def _owners(writes: Sequence[_Write]) -> dict[tuple[str, str], str]:
    """Per roll-up (``indicator|target``) written, the partition it arrives on: all its periods,
    last year's too, have that one writer."""
    return {_indicator_target(w.write.period): w.source for w in writes}


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
