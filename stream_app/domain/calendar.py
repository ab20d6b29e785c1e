"""Reporting periods of Decree 09/2019/NĐ-CP: which period an observation belongs to, and its deadline.

Pure functions, no I/O. Regulations speak of local dates in Vietnam (UTC+7, no daylight saving since
1975), so every period is computed on the local date of the event time: 2024-11-14 20:00 UTC is
2024-11-15 03:00 locally and belongs to the December 2024 monthly period (15/11 .. 14/12).

Two calendars:

- ``decree09``: the cut-off periods of Art. 12. Month M = 15th of month M-1 .. 14th of month M;
  a quarter = 15th of the month before it .. 14th of its last month; H1 = 15/12 of the previous year
  .. 14/06; H2 = 15/06 .. 14/12; the year = 15/12 of the previous year .. 14/12 (so 20/12/2024 is
  in year 2025). The deadline (Art. 13) is ``deadline_day`` of the month holding the cut-off.
- ``calendar_month``: plain calendar months, quarters, halves and years, for regimes that close their
  books on the last day of the month (tax, state budget, metered output). The deadline is
  ``deadline_day`` of the month after the period: a deadline inside the period would be before its
  data exist.

Labels: ``2024-11-15T08`` (hourly, local hour), ``2024-11-15`` (daily and event), ``2024-12``,
``2024-Q4``, ``2024-H2``, ``2024``. Sub-monthly periods are due the next local day; ``deadline_day``
applies to monthly and longer periods only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from stream_app.domain.clock import DAY_MS, HOUR_MS, local_date, local_hour, local_midnight_ms

FREQUENCIES = ("hourly", "daily", "monthly", "quarterly", "half_yearly", "annual", "event")
CALENDARS = ("decree09", "calendar_month")
# Records of these frequencies may omit their period: the event time alone places them.
PERIOD_OPTIONAL = frozenset({"hourly", "daily", "event"})

_CUT_OFF_DAY = 14  # decree09: a period ends on the 14th and the next starts on the 15th
# Months per period, for the frequencies that span whole months.
_MONTHS = {"monthly": 1, "quarterly": 3, "half_yearly": 6, "annual": 12}

_LABEL = {
    "hourly": re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2})"),
    "daily": re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})"),
    "monthly": re.compile(r"([0-9]{4})-([0-9]{2})"),
    "quarterly": re.compile(r"([0-9]{4})-Q([1-4])"),
    "half_yearly": re.compile(r"([0-9]{4})-H([12])"),
    "annual": re.compile(r"([0-9]{4})"),
}


@dataclass(frozen=True, slots=True)
class ReportingPeriod:
    """One reporting period: local dates ``start`` .. ``end`` (inclusive) and its deadline.

    ``start_ms`` .. ``end_ms`` are the same bounds as epoch milliseconds (end exclusive), to compare
    with event times without converting them; for an hourly period they bound the hour.
    """

    label: str
    start: date
    end: date
    start_ms: int
    end_ms: int
    deadline: date

    def contains(self, event_time_ms: int) -> bool:
        """Whether an event at ``event_time_ms`` falls in this period."""
        return self.start_ms <= event_time_ms < self.end_ms


def period_of(frequency: str, calendar: str, event_time_ms: int, deadline_day: int = 25) -> ReportingPeriod:
    """The period of ``frequency`` under ``calendar`` holding the event time ``event_time_ms``.

    ``event`` indicators have no periodic regime: they are placed in their local day, like daily
    ones. Raises ``ValueError`` for an unknown frequency or calendar, or a deadline day that is not
    in every month (1..28).
    """
    _check(frequency, calendar, deadline_day)
    day = local_date(event_time_ms)
    if frequency == "hourly":
        return _hour_period(day, local_hour(event_time_ms))
    if frequency in ("daily", "event"):
        return _day_period(day)
    year, month = day.year, day.month
    if calendar == "decree09" and day.day > _CUT_OFF_DAY:
        year, month = _add_months(year, month, 1)
    span = _MONTHS[frequency]
    number = (month - 1) // span + 1
    return _month_period(frequency, calendar, year, number, deadline_day)


def parse_period(label: str, frequency: str, calendar: str, deadline_day: int = 25) -> ReportingPeriod:
    """The period a label names, for an indicator of ``frequency`` under ``calendar``.

    The inverse of ``period_of(...).label``. Raises ``ValueError`` when the label does not have the
    shape of that frequency (``2024-Q4`` for a monthly indicator) or names no real date.
    """
    _check(frequency, calendar, deadline_day)
    shape = _LABEL["daily" if frequency == "event" else frequency]
    found = shape.fullmatch(label)
    if found is None:
        raise ValueError(f"period {label!r} is not a {frequency} period label")
    try:
        return _parsed(frequency, calendar, [int(part) for part in found.groups()], deadline_day)
    except ValueError as exc:  # a day or month that does not exist: 2024-11-31, 2024-13
        raise ValueError(f"period {label!r}: {exc}") from None


def _parsed(frequency: str, calendar: str, numbers: list[int], deadline_day: int) -> ReportingPeriod:
    if frequency == "hourly":
        if numbers[3] > 23:
            raise ValueError(f"hour {numbers[3]} is not 00..23")
        return _hour_period(date(numbers[0], numbers[1], numbers[2]), numbers[3])
    if frequency in ("daily", "event"):
        return _day_period(date(*numbers))
    year, number = numbers[0], numbers[1] if len(numbers) > 1 else 1
    if frequency == "monthly" and not 1 <= number <= 12:
        raise ValueError(f"month {number} is not 01..12")
    return _month_period(frequency, calendar, year, number, deadline_day)


def frequency_of_label(label: str) -> str:
    """The frequency a monthly-or-longer or daily period label names (its shape says it)."""
    if "-Q" in label:
        return "quarterly"
    if "-H" in label:
        return "half_yearly"
    return {4: "annual", 7: "monthly", 10: "daily"}[len(label)]


# A year of periods of each frequency (a year of days: 365, the same days of last year's year).
PERIODS_PER_YEAR = {"daily": 365, "monthly": 12, "quarterly": 4, "half_yearly": 2, "annual": 1}


def periods_up_to(
    frequency: str, calendar: str, event_time_ms: int, count: int, deadline_day: int = 25
) -> tuple[ReportingPeriod, ...]:
    """The ``count`` periods of ``frequency`` up to and including the one holding ``event_time_ms``,
    oldest first: a series' last year of periods (``PERIODS_PER_YEAR``) to draw against the year before."""
    periods = [period_of(frequency, calendar, event_time_ms, deadline_day)]
    while len(periods) < count:
        periods.append(period_of(frequency, calendar, periods[-1].start_ms - 1, deadline_day))
    return tuple(reversed(periods))


def period_matches(label: str | None, frequency: str, calendar: str, event_time_ms: int) -> bool:
    """Whether a record's period label fits its indicator's frequency and holds its event time.

    A missing label is fine for hourly, daily and event indicators (the event time places them) and
    wrong for the others, whose figures mean nothing without the period they cover. Raises
    ``ValueError`` for an unknown frequency or calendar.
    """
    _check(frequency, calendar, 25)  # a wrong frequency or calendar is a bug, not a bad record
    if label is None or label == "":
        return frequency in PERIOD_OPTIONAL
    try:
        period = parse_period(label, frequency, calendar)
    except ValueError:
        return False
    return period.contains(event_time_ms)


def _check(frequency: str, calendar: str, deadline_day: int) -> None:
    if frequency not in FREQUENCIES:
        raise ValueError(f"unknown frequency {frequency!r}; expected one of {', '.join(FREQUENCIES)}")
    if calendar not in CALENDARS:
        raise ValueError(f"unknown calendar {calendar!r}; expected one of {', '.join(CALENDARS)}")
    if not 1 <= deadline_day <= 28:
        raise ValueError(f"deadline day {deadline_day} is not in every month (1..28)")


def _hour_period(day: date, hour: int) -> ReportingPeriod:
    start_ms = local_midnight_ms(day) + hour * HOUR_MS
    label = f"{day.isoformat()}T{hour:02d}"
    return ReportingPeriod(label, day, day, start_ms, start_ms + HOUR_MS, day + timedelta(days=1))


def _day_period(day: date) -> ReportingPeriod:
    start_ms = local_midnight_ms(day)
    return ReportingPeriod(day.isoformat(), day, day, start_ms, start_ms + DAY_MS, day + timedelta(days=1))


def _month_period(
    frequency: str, calendar: str, year: int, number: int, deadline_day: int
) -> ReportingPeriod:
    """Period ``number`` (month, quarter or half, 1-based; 1 for a year) of ``year``."""
    span = _MONTHS[frequency]
    first = (number - 1) * span + 1
    last = first + span - 1
    if calendar == "decree09":
        start = date(*_add_months(year, first, -1), _CUT_OFF_DAY + 1)
        end = date(year, last, _CUT_OFF_DAY)
        deadline = date(year, last, deadline_day)
    else:
        start = date(year, first, 1)
        end = date(*_add_months(year, last, 1), 1) - timedelta(days=1)
        deadline = date(*_add_months(year, last, 1), deadline_day)
    label = {
        "monthly": f"{year:04d}-{number:02d}",
        "quarterly": f"{year:04d}-Q{number}",
        "half_yearly": f"{year:04d}-H{number}",
        "annual": f"{year:04d}",
    }[frequency]
    return ReportingPeriod(
        label, start, end, local_midnight_ms(start), local_midnight_ms(end) + DAY_MS, deadline
    )


def _add_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + month - 1 + months
    return index // 12, index % 12 + 1
