"""Exact aggregates by event time, with retraction: an entity's hours, days and reporting periods.

Pure arithmetic, no I/O. An :class:`Agg` holds count, exact sum, min, max, the last value and counts
per data quality; the rolling windows of an entity combine its hours (24 h) or days (7 and 30 days) up
to its newest observation; hours and days older than their retention are dropped.
"""

from __future__ import annotations

import decimal
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import quote, unquote

from stream_app.domain.calendar import ReportingPeriod, frequency_of_label, parse_period, period_of
from stream_app.domain.clock import HOUR_MS, end_of_local_day_ms, local_date, local_midnight_ms

RETENTION_HOURS = 48


def hour_of(event_time_ms: int) -> int:
    """The hourly bucket an event time falls in (hours since the epoch)."""
    return event_time_ms // HOUR_MS


# ------------------------------------------------------------------------------------------------
# Exact aggregates with retraction: hours, days and reporting periods of one entity.

DAY_RETENTION_DAYS = 32  # the 30-day rolling window and the deviation rules' 30-day baselines
ROLLING_WINDOWS: tuple[tuple[str, str, int], ...] = (
    ("rolling-24h", "hour", 24),
    ("rolling-7d", "day", 7),
    ("rolling-30d", "day", 30),
)
_DECIMALS = decimal.Context(prec=60)  # enough for any sum of doubles' shortest decimal forms
_QUALITIES = ("FINAL", "PROVISIONAL", "TEST")


def exact(value: float) -> Decimal:
    """The decimal a double was written as (its shortest repr): sums of these are exact and do not
    depend on the order values arrive in, so retracting a value restores the sum bit for bit."""
    return Decimal(repr(value))


@dataclass(slots=True)  # not frozen (its __init__ would cost a setattr per field); never mutated
class Agg:
    """count, exact sum, min, max, the last value by event time, and counts per data quality.

    ``last`` is the value with the greatest (event time, observation id): a total order, so the
    result does not depend on arrival order (late records, redeliveries, revisions).
    ``first_arrival`` is when a value first arrived (processing time, for reporting compliance).
    """

    count: int
    total: Decimal
    low: float
    high: float
    last_time: int
    last_id: str
    last_value: float
    n_final: int = 0
    n_provisional: int = 0
    n_test: int = 0
    first_arrival: int = 0

    @property
    def mean(self) -> float:
        return float(_DECIMALS.divide(self.total, self.count)) if self.count else 0.0

    @property
    def sum(self) -> float:
        return float(self.total)

    @staticmethod
    def of(
        value: float,
        event_time: int,
        observation_id: str,
        quality: str,
        arrival: int = 0,
        *,
        exact_value: Decimal | None = None,
    ) -> Agg:
        final, provisional, test = (int(quality == q) for q in _QUALITIES)
        return Agg(
            1,
            exact(value) if exact_value is None else exact_value,
            value,
            value,
            event_time,
            observation_id,
            value,
            final,
            provisional,
            test,
            arrival,
        )

    def add(
        self,
        value: float,
        event_time: int,
        observation_id: str,
        quality: str,
        arrival: int = 0,
        *,
        exact_value: Decimal | None = None,
    ) -> Agg:
        """With one more value; ``exact_value`` is ``exact(value)`` when the caller has it already."""
        newer = (event_time, observation_id) > (self.last_time, self.last_id)
        return Agg(
            self.count + 1,
            _DECIMALS.add(self.total, exact(value) if exact_value is None else exact_value),
            min(self.low, value),
            max(self.high, value),
            event_time if newer else self.last_time,
            observation_id if newer else self.last_id,
            value if newer else self.last_value,
            self.n_final + (quality == "FINAL"),
            self.n_provisional + (quality == "PROVISIONAL"),
            self.n_test + (quality == "TEST"),
            min(self.first_arrival, arrival)
            if self.first_arrival and arrival
            else (self.first_arrival or arrival),
        )

    def absorb(
        self,
        value: float,
        event_time: int,
        observation_id: str,
        quality: str,
        *,
        arrival: int,
        number: Decimal,
    ) -> None:
        """Count one more value in place (``number`` is ``exact(value)``): what :meth:`add` returns,
        without a new object. Only for an aggregate its caller owns (a state decoded for one run)."""
        self.count += 1
        self.total = _DECIMALS.add(self.total, number)
        if value < self.low:  # noqa: PLR1730 - a comparison is cheaper than min() on the hot path
            self.low = value
        if value > self.high:  # noqa: PLR1730
            self.high = value
        if event_time > self.last_time or (event_time == self.last_time and observation_id > self.last_id):
            self.last_time, self.last_id, self.last_value = event_time, observation_id, value
        if quality == "FINAL":
            self.n_final += 1
        elif quality == "PROVISIONAL":
            self.n_provisional += 1
        elif quality == "TEST":
            self.n_test += 1
        if arrival and (not self.first_arrival or arrival < self.first_arrival):
            self.first_arrival = arrival

    def needs_rescan(self, value: float, event_time: int, observation_id: str) -> bool:
        """Whether removing this value may change min, max or last: only the remaining values can say."""
        return (
            value <= self.low
            or value >= self.high
            or (event_time, observation_id) == (self.last_time, self.last_id)
        )

    def remove(self, value: float, quality: str, rest: Iterable[tuple[float, int, str]] | None) -> Agg | None:
        """This aggregate without one value; None once empty. ``rest`` (value, event time, id) are the
        values that remain, needed when ``needs_rescan`` said so."""
        if self.count <= 1:
            return None
        low, high, last = self.low, self.high, (self.last_time, self.last_id, self.last_value)
        if rest is not None:
            remaining = list(rest)
            low = min(v for v, _, _ in remaining)
            high = max(v for v, _, _ in remaining)
            top = max(remaining, key=lambda r: (r[1], r[2]))
            last = (top[1], top[2], top[0])
        return Agg(
            self.count - 1,
            _DECIMALS.subtract(self.total, exact(value)),
            low,
            high,
            last[0],
            last[1],
            last[2],
            self.n_final - (quality == "FINAL"),
            self.n_provisional - (quality == "PROVISIONAL"),
            self.n_test - (quality == "TEST"),
            self.first_arrival,
        )

    def merge(self, other: Agg) -> Agg:
        """The aggregate of both sets of values (rolling windows from hours or days)."""
        newer = (other.last_time, other.last_id) > (self.last_time, self.last_id)
        arrivals = [a for a in (self.first_arrival, other.first_arrival) if a]
        return Agg(
            self.count + other.count,
            _DECIMALS.add(self.total, other.total),
            min(self.low, other.low),
            max(self.high, other.high),
            other.last_time if newer else self.last_time,
            other.last_id if newer else self.last_id,
            other.last_value if newer else self.last_value,
            self.n_final + other.n_final,
            self.n_provisional + other.n_provisional,
            self.n_test + other.n_test,
            min(arrivals) if arrivals else 0,
        )

    @property
    def quality(self) -> str:
        """FINAL when every value is final, TEST when every value is test data, else PROVISIONAL."""
        if self.n_final == self.count:
            return "FINAL"
        if self.n_test == self.count:
            return "TEST"
        return "PROVISIONAL"

    def value_by(self, aggregation: str) -> float:
        """The one figure of the aggregate over time, by the indicator's semantics: sum for counts
        and amounts, max for levels, last for stocks and ratios, mean for rates."""
        if aggregation == "sum":
            return self.sum
        if aggregation == "max":
            return self.high
        if aggregation == "last":
            return self.last_value
        return self.mean

    # encode / decode stay here although Redis stores this text (hours, days, periods, roll-ups): it is
    # also the ``aggregate`` of a roll-up contribution record (domain/consolidation.contributions,
    # checked and merged by the roll-up stage), a record format rather than only a storage one.
    def encode(self) -> str:
        return (
            f"{self.count},{self.total},{self.low!r},{self.high!r},{self.last_time},{self.last_value!r},"
            f"{self.n_final},{self.n_provisional},{self.n_test},{self.first_arrival},{self.last_id}"
        )

    @staticmethod
    def decode(text: str) -> Agg:
        # positional, unpacked: an entity visit decodes a dozen of these, a roll-up item one
        count, total, low, high, last_time, last_value, n_final, n_provisional, n_test, first, last_id = (
            text.split(",", 10)
        )
        return Agg(
            int(count),
            Decimal(total),
            float(low),
            float(high),
            int(last_time),
            last_id,
            float(last_value),
            int(n_final),
            int(n_provisional),
            int(n_test),
            int(first),
        )

    def copy(self) -> Agg:
        """A new aggregate equal to this one (``copy.copy`` of a slotted dataclass costs ten times more)."""
        return Agg(
            self.count,
            self.total,
            self.low,
            self.high,
            self.last_time,
            self.last_id,
            self.last_value,
            self.n_final,
            self.n_provisional,
            self.n_test,
            self.first_arrival,
        )


def combine(aggs: Iterable[Agg]) -> Agg | None:
    """Merge aggregates (None when there are none): what folding ``merge`` gives, built in one new
    aggregate rather than one per step (rolling windows merge up to 30 days)."""
    result: Agg | None = None
    for agg in aggs:
        if result is None:
            result = agg.copy()
            continue
        result.count += agg.count
        result.total = _DECIMALS.add(result.total, agg.total)
        if agg.low < result.low:  # noqa: PLR1730 - cheaper than min() here
            result.low = agg.low
        if agg.high > result.high:  # noqa: PLR1730
            result.high = agg.high
        if (agg.last_time, agg.last_id) > (result.last_time, result.last_id):
            result.last_time, result.last_id, result.last_value = agg.last_time, agg.last_id, agg.last_value
        result.n_final += agg.n_final
        result.n_provisional += agg.n_provisional
        result.n_test += agg.n_test
        if agg.first_arrival and (not result.first_arrival or agg.first_arrival < result.first_arrival):
            result.first_arrival = agg.first_arrival
    return result


def series_of(breakdowns: Mapping[str, str]) -> str:
    """The aggregate series a record counts in: "" for records without breakdowns (the indicator's
    own series), else its breakdown values ("source=hydro"). A record with breakdowns is a part, so
    it counts only in its own series: a reporter may send the total and the parts."""
    if not breakdowns:
        return ""
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted(breakdowns.items()))


def breakdowns_of(series: str) -> dict[str, str]:
    """The inverse of ``series_of``."""
    if not series:
        return {}
    return {unquote(k): unquote(v) for k, v in (part.split("=", 1) for part in series.split("&"))}


_PERIOD_LADDER = ("daily", "monthly", "quarterly", "half_yearly", "annual")


def period_frequencies(frequency: str) -> tuple[str, ...]:
    """The reporting periods an indicator's values are aggregated over: its own and every longer one
    (hourly and event indicators: from the local day up)."""
    if frequency in ("hourly", "event"):
        return _PERIOD_LADDER
    return _PERIOD_LADDER[_PERIOD_LADDER.index(frequency) :]


def chart_frequency(frequency: str) -> str:
    """The periods an indicator's year is drawn in: its own, or months for one reported daily or more
    often (a year of months reads at a glance; a year of days stays available on request)."""
    return next(f for f in period_frequencies(frequency) if f != "daily")


@functools.lru_cache(maxsize=65536)
def periods_at(
    frequency: str, calendar: str, deadline_day: int, local_day_ordinal: int
) -> tuple[ReportingPeriod, ...]:
    """The periods (own frequency first, then longer ones) holding a local day."""
    noon = _noon_ms(local_day_ordinal)
    return tuple(period_of(f, calendar, noon, deadline_day) for f in period_frequencies(frequency))


def periods_of(
    frequency: str, calendar: str, deadline_day: int, event_time_ms: int
) -> tuple[ReportingPeriod, ...]:
    """The periods an observation at ``event_time_ms`` counts in (cached per local day)."""
    return periods_at(frequency, calendar, deadline_day, local_date(event_time_ms).toordinal())


@functools.lru_cache(maxsize=65536)
def period_by_label(label: str, calendar: str, deadline_day: int) -> ReportingPeriod:
    """The period a label names; the label's shape says its frequency."""
    return parse_period(label, frequency_of_label(label), calendar, deadline_day)


@functools.lru_cache(maxsize=65536)
def same_period_last_year(label: str) -> str:
    """The label of the same period one year earlier ("so với cùng kỳ"); 29 February → 28th."""
    year, rest = int(label[:4]), label[4:]
    if rest == "-02-29":
        rest = "-02-28"
    return f"{year - 1:04d}{rest}"


@functools.lru_cache(maxsize=65536)
def close_time_ms(period: ReportingPeriod) -> int:
    """When a period closes: the end of its reporting deadline's local day. Values arriving later
    still update it, counted as late."""
    return end_of_local_day_ms(period.deadline)


def yoy_change_pct(value: float, last_year: float | None) -> float | None:
    """Year-on-year change in % (None without a base or with a zero base)."""
    if last_year is None or last_year == 0:
        return None
    return (value - last_year) / abs(last_year) * 100.0


def _noon_ms(local_day_ordinal: int) -> int:
    return local_midnight_ms(local_day_ordinal) + 12 * HOUR_MS
