"""A ``History`` over the hourly aggregates the entity state already keeps, and daily totals.

Pure: the caller hands over what the state holds. The hours are kept 48 h
(``stream_app.domain.aggregates.RETENTION_HOURS``), enough for rate_of_change; a deviation baseline of
30 days reads the daily totals, kept longer (``DAY_RETENTION_DAYS``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Protocol

from stream_app.domain.aggregates import hour_of


class Ranged(Protocol):
    """What the rules read of an hour's aggregate."""

    @property
    def low(self) -> float: ...

    @property
    def high(self) -> float: ...


@dataclass(frozen=True, slots=True)
class BucketHistory:
    """``History`` from hourly buckets (hour since the epoch -> bucket) and daily totals (local
    day -> the day's sum). Hour-granular: ``min_since`` covers the whole hour holding ``since_ms``."""

    buckets: Mapping[int, Ranged]
    totals: Mapping[date, float] = field(default_factory=dict)

    def min_since(self, since_ms: int) -> float | None:
        """Lowest value from the hour holding ``since_ms`` on; None without data."""
        first = hour_of(since_ms)
        return min((b.low for hour, b in self.buckets.items() if hour >= first), default=None)

    def max_since(self, since_ms: int) -> float | None:
        """Highest value from the hour holding ``since_ms`` on; None without data."""
        first = hour_of(since_ms)
        return max((b.high for hour, b in self.buckets.items() if hour >= first), default=None)

    def daily_values(self, before_local_day: date, days: int) -> list[float]:
        """The totals of the ``days`` local days before ``before_local_day``, oldest first,
        skipping days without data."""
        wanted = (before_local_day - timedelta(days=n) for n in range(days, 0, -1))
        return [self.totals[day] for day in wanted if day in self.totals]
