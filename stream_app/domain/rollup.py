"""Roll-ups: a province from its stations, the nation from its provinces (or stations). Pure.

Each entity contributes its aggregate of a period; a roll-up keeps the newest contribution of each
source (by the source's input offset, so a redelivered or reordered contribution never replaces a
newer one) and combines them with the indicator's declared semantics:

- ``sum`` (counts, amounts): the exact sum of the sources' sums;
- ``mean`` and ``weighted_mean`` (rates): the mean of the sources' values (the reporters do not yet
  send weights, so a weighted mean is a plain mean of units until the contract carries them);
- ``max`` (levels): the highest value;
- ``last`` (national peaks and stocks reported nationally): not rolled up.

Pre-2025 province codes are already today's units here: the intake maps them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from stream_app.domain.aggregates import Agg, combine
from stream_app.domain.catalogue import Indicator
from stream_app.domain.consolidation import time_aggregation
from stream_app.domain.entity import EntityKey

NATIONAL = "VN"


def targets(indicator: Indicator, region: str, station: str | None) -> list[str]:
    """The roll-ups an entity's values count in."""
    if indicator.aggregation == "last" or indicator.region_level == "national" or region == NATIONAL:
        return []
    if station is not None:
        return [region, NATIONAL]
    return [NATIONAL]


def rollup_key(indicator: str, target: str) -> str:
    """The roll-up's partitioning key: one writer per indicator and target region."""
    return f"{indicator}|{target}"


MAX_ATTEMPTS = 255  # publishing attempts a contribution's sequence tells apart


def contribution_seq(top_offset: int, attempt: int) -> int:
    """A contribution's sequence: the highest input offset of its entity's records in the batch (charged
    or not), times 256, plus the publishing attempt. A roll-up keeps the newest per source, so a batch
    run again after a refused output supersedes what its abandoned run contributed."""
    return top_offset * 256 + min(attempt, MAX_ATTEMPTS)


@dataclass(frozen=True, slots=True)
class Contribution:
    """One contribution record: what some entities add to one roll-up (``indicator|target``)."""

    routing: str
    record: dict[str, Any]  # Avro ``contribution``
    sources: frozenset[str]  # the entities whose items it carries


@dataclass(frozen=True, slots=True)
class Contributed:
    """What one entity contributes in a batch: its (series|label, aggregate) items and its sequence."""

    seq: int
    items: Sequence[tuple[str, str | None]]


def contribution_records(
    indicators: Mapping[str, Indicator], contributed: Mapping[str, Contributed], now_ms: int, budget: int
) -> list[Contribution]:
    """Roll-up contributions of a batch's entities: one record per roll-up, split where a record would
    exceed ``budget`` bytes (estimated generously); entities and roll-ups in a stable order."""
    by_rollup: dict[str, list[dict[str, Any]]] = {}
    for entity in sorted(contributed):
        given = contributed[entity]
        if not given.items:
            continue
        key = EntityKey.parse(entity)
        for target in targets(indicators[key.indicator], key.region, key.station):
            by_rollup.setdefault(rollup_key(key.indicator, target), []).extend(
                {"source": entity, "seq": given.seq, "period": p, "aggregate": a} for p, a in given.items
            )
    out = []
    for routing, items in by_rollup.items():
        indicator_code, target = routing.split("|")
        for chunk in _chunks(items, budget):
            record = {
                "indicator": indicator_code,
                "target": target,
                "processing_time": now_ms,
                "items": chunk,
            }
            out.append(Contribution(routing, record, frozenset(item["source"] for item in chunk)))
    return out


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


@dataclass(frozen=True, slots=True)
class Combined:
    """A roll-up of one period: the merged aggregate, the value by the indicator's semantics and how
    many sources it combines."""

    agg: Agg
    value: float
    contributors: int


def combine_sources(indicator: Indicator, sources: Mapping[str, Agg]) -> Combined | None:
    """Combine the sources' aggregates of one period (None without any)."""
    ordered = [sources[name] for name in sorted(sources)]
    merged = combine(ordered)
    if merged is None:
        return None
    if indicator.aggregation == "sum":
        value = merged.sum
    elif indicator.aggregation == "max":
        value = merged.high
    else:
        values = [a.value_by(time_aggregation(indicator)) for a in ordered]
        value = math.fsum(values) / len(values)
    return Combined(merged, value, len(ordered))


def encode_entry(seq: int, aggregate: str | None) -> str:
    """A roll-up hash value: the source's sequence and its aggregate (empty once emptied)."""
    return f"{seq};{aggregate or ''}"


def decode_entries(raw: Mapping[bytes, bytes]) -> dict[str, Agg]:
    """The sources of a roll-up hash that hold values."""
    out = {}
    for name, value in raw.items():
        _, _, aggregate = value.decode().partition(";")
        if aggregate:
            out[name.decode()] = Agg.decode(aggregate)
    return out


_SEQ = re.compile(r"(-?[0-9]+);")


def entry_seq(value: str) -> int | None:
    """A roll-up hash value's sequence as the apply script reads it (None: not a number)."""
    found = _SEQ.match(value)
    return int(found.group(1)) if found else None


SOURCE_OVERHEAD = 480
"""Bytes a decoded source costs beyond its raw entry (its ``Agg``, the tuple, the name and the dict's
slot: about 540 bytes measured for a 60-byte entry), so a period's ``size`` bounds what it holds."""


class SourceEntry(NamedTuple):
    """One source's entry in a roll-up hash, decoded."""

    seq: int | None  # None: not a number, which any contribution replaces (as the apply script does)
    agg: Agg | None  # None once emptied
    size: int  # the raw entry's bytes (name and value) plus SOURCE_OVERHEAD


@dataclass(slots=True)
class PeriodSources:
    """A roll-up period's hash, decoded: every source's entry (emptied ones too: they still hold their
    sequence and count in the hash's length), so that a contribution can be applied to it exactly as
    ``lua/rollup_apply.lua`` applies it to the hash."""

    entries: dict[str, SourceEntry]
    size: int = 0  # the entries' sizes: roughly the bytes it takes to keep

    @staticmethod
    def decode(raw: Mapping[bytes, bytes]) -> PeriodSources:
        """The hash as read (raises what a malformed aggregate raises)."""
        entries: dict[str, SourceEntry] = {}
        size = 0
        for name, value in raw.items():
            text = value.decode()
            _, _, aggregate = text.partition(";")
            n = len(name) + len(value) + SOURCE_OVERHEAD
            entries[name.decode()] = SourceEntry(
                entry_seq(text), Agg.decode(aggregate) if aggregate else None, n
            )
            size += n
        return PeriodSources(entries, size)

    def aggregates(self) -> dict[str, Agg]:
        """The sources that hold values (what :func:`combine_sources` combines)."""
        return {name: entry.agg for name, entry in self.entries.items() if entry.agg is not None}

    def keeps(self, source: str, seq: int) -> bool:
        """Whether the apply script keeps ``source``'s entry against a contribution of sequence ``seq``:
        the hash holds this sequence or a later one."""
        entry = self.entries.get(source)
        return entry is not None and entry.seq is not None and entry.seq >= seq

    def copy(self) -> PeriodSources:
        return PeriodSources(dict(self.entries), self.size)

    def write(self, source: str, seq: int, aggregate: str | None, agg: Agg | None) -> None:
        """Replace ``source``'s entry as the script does when it writes (``agg``: ``aggregate`` decoded)."""
        n = len(source.encode()) + len(encode_entry(seq, aggregate).encode()) + SOURCE_OVERHEAD
        old = self.entries.get(source)
        self.size += n - (old.size if old is not None else 0)
        self.entries[source] = SourceEntry(seq, agg, n)
