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
from collections.abc import Mapping
from dataclasses import dataclass

from stream_app.domain.aggregates import Agg, combine
from stream_app.domain.catalogue import Indicator
from stream_app.domain.consolidation import time_aggregation

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
