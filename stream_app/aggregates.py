"""Rolling aggregates by event time, in hourly buckets: pure arithmetic, no I/O.

A bucket holds count, sum, min and max of one hour; the rolling 24 h window of an entity is the
combination of the 24 buckets up to the hour of its newest observation. Buckets older than the
retention are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

HOUR_MS = 3_600_000
WINDOW_HOURS = 24
RETENTION_HOURS = 48


@dataclass(frozen=True, slots=True)
class Bucket:
    """count, sum, min, max of the values in one hour."""

    count: int
    total: float
    low: float
    high: float

    def add(self, value: float) -> Bucket:
        return Bucket(self.count + 1, self.total + value, min(self.low, value), max(self.high, value))

    def encode(self) -> str:
        return f"{self.count},{self.total!r},{self.low!r},{self.high!r}"

    @staticmethod
    def decode(text: str) -> Bucket:
        count, total, low, high = text.split(",")
        return Bucket(int(count), float(total), float(low), float(high))

    @staticmethod
    def of(value: float) -> Bucket:
        return Bucket(1, value, value, value)


@dataclass(frozen=True, slots=True)
class WindowAggregate:
    """Aggregate of a rolling window."""

    count: int
    total: float
    low: float
    high: float

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0


def hour_of(event_time_ms: int) -> int:
    """The hourly bucket an event time falls in (hours since the epoch)."""
    return event_time_ms // HOUR_MS


def rolling(buckets: dict[int, Bucket], end_hour: int, hours: int = WINDOW_HOURS) -> WindowAggregate:
    """Combine the buckets of the ``hours`` hours ending with ``end_hour`` (inclusive)."""
    selected = [b for h, b in buckets.items() if end_hour - hours < h <= end_hour]
    if not selected:
        return WindowAggregate(0, 0.0, 0.0, 0.0)
    return WindowAggregate(
        count=sum(b.count for b in selected),
        total=sum(b.total for b in selected),
        low=min(b.low for b in selected),
        high=max(b.high for b in selected),
    )


def expired(
    buckets: dict[int, Bucket], newest_hour: int, retention_hours: int = RETENTION_HOURS
) -> list[int]:
    """Hours whose buckets fall out of retention once ``newest_hour`` has been seen."""
    return [h for h in buckets if h <= newest_hour - retention_hours]
