"""stream_app.domain.calendar: Decree 09 cut-off periods on local (UTC+7) dates, labels, deadlines."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from stream_app.domain.calendar import (
    CALENDARS,
    FREQUENCIES,
    ReportingPeriod,
    parse_period,
    period_matches,
    period_of,
)
from stream_app.domain.clock import local_date

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc(text: str) -> int:
    """Epoch milliseconds of a UTC time written "2024-11-14 16:59:59.999"."""
    moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def local_midnight(day: date) -> int:
    """Epoch milliseconds of 00:00 in Vietnam on ``day`` (17:00 UTC the day before)."""
    return (datetime(day.year, day.month, day.day, tzinfo=UTC) - _EPOCH) // timedelta(
        milliseconds=1
    ) - 7 * 3_600_000


# 2024-11-14 20:00 UTC is 2024-11-15 03:00 in Vietnam.
LATE_14TH = utc("2024-11-14 20:00")


def test_the_decree_example_falls_in_the_next_month() -> None:
    assert local_date(LATE_14TH) == date(2024, 11, 15)
    period = period_of("monthly", "decree09", LATE_14TH)
    assert period == ReportingPeriod(
        label="2024-12",
        start=date(2024, 11, 15),
        end=date(2024, 12, 14),
        start_ms=utc("2024-11-14 17:00"),
        end_ms=utc("2024-12-14 17:00"),
        deadline=date(2024, 12, 25),
    )
    assert period.contains(LATE_14TH)


def test_eleven_months_of_2024() -> None:
    # "11 months of 2024" = the year-to-date of the November 2024 period: 15/12/2023 .. 14/11/2024
    year = parse_period("2024", "annual", "decree09")
    november = parse_period("2024-11", "monthly", "decree09")
    assert (year.start, november.end) == (date(2023, 12, 15), date(2024, 11, 14))
    assert period_of("annual", "decree09", utc("2023-12-14 17:00")).label == "2024"
    assert period_of("monthly", "decree09", utc("2024-11-14 16:59:59.999")).label == "2024-11"


@pytest.mark.parametrize("month", range(1, 13))
def test_every_decree09_month_boundary(month: int) -> None:
    # The last millisecond of the 14th in Vietnam is 16:59:59.999 UTC; 17:00 UTC is already the 15th.
    before = utc(f"2024-{month:02d}-14 16:59:59.999")
    after = utc(f"2024-{month:02d}-14 17:00")
    this = period_of("monthly", "decree09", before)
    following = period_of("monthly", "decree09", after)
    next_label = f"{2024 + month // 12}-{month % 12 + 1:02d}"
    assert (this.label, following.label) == (f"2024-{month:02d}", next_label)
    assert this.end == date(2024, month, 14)
    assert following.start == date(2024, month, 15)
    assert this.end_ms == following.start_ms == after
    previous = date(2023, 12, 15) if month == 1 else date(2024, month - 1, 15)
    assert this.start == previous
    assert this.start_ms == local_midnight(previous)
    assert this.deadline == date(2024, month, 25)


@pytest.mark.parametrize(
    ("moment", "label", "start", "end"),
    [
        (utc("2024-03-14 16:59"), "2024-Q1", date(2023, 12, 15), date(2024, 3, 14)),
        (utc("2024-03-14 17:00"), "2024-Q2", date(2024, 3, 15), date(2024, 6, 14)),
        (utc("2024-06-15"), "2024-Q3", date(2024, 6, 15), date(2024, 9, 14)),
        (utc("2024-09-15"), "2024-Q4", date(2024, 9, 15), date(2024, 12, 14)),
        (utc("2024-12-14 16:59:59.999"), "2024-Q4", date(2024, 9, 15), date(2024, 12, 14)),
        (utc("2024-12-14 17:00"), "2025-Q1", date(2024, 12, 15), date(2025, 3, 14)),
        (utc("2025-01-01"), "2025-Q1", date(2024, 12, 15), date(2025, 3, 14)),
    ],
)
def test_decree09_quarters(moment: int, label: str, start: date, end: date) -> None:
    period = period_of("quarterly", "decree09", moment)
    assert (period.label, period.start, period.end) == (label, start, end)
    assert period.deadline == date(end.year, end.month, 25)


@pytest.mark.parametrize(
    ("moment", "label", "start", "end"),
    [
        (utc("2024-01-10"), "2024-H1", date(2023, 12, 15), date(2024, 6, 14)),
        (utc("2024-06-14 16:59:59.999"), "2024-H1", date(2023, 12, 15), date(2024, 6, 14)),
        (utc("2024-06-14 17:00"), "2024-H2", date(2024, 6, 15), date(2024, 12, 14)),
        (utc("2024-12-14 16:00"), "2024-H2", date(2024, 6, 15), date(2024, 12, 14)),
        (utc("2024-12-20"), "2025-H1", date(2024, 12, 15), date(2025, 6, 14)),
    ],
)
def test_decree09_halves(moment: int, label: str, start: date, end: date) -> None:
    period = period_of("half_yearly", "decree09", moment)
    assert (period.label, period.start, period.end) == (label, start, end)
    assert period.deadline == date(end.year, end.month, 25)


@pytest.mark.parametrize(
    ("moment", "label", "start", "end"),
    [
        (utc("2024-01-01"), "2024", date(2023, 12, 15), date(2024, 12, 14)),
        (utc("2024-12-14 16:59:59.999"), "2024", date(2023, 12, 15), date(2024, 12, 14)),
        (utc("2024-12-14 17:00"), "2025", date(2024, 12, 15), date(2025, 12, 14)),
        (utc("2024-12-20"), "2025", date(2024, 12, 15), date(2025, 12, 14)),
        (utc("2010-01-01"), "2010", date(2009, 12, 15), date(2010, 12, 14)),
    ],
)
def test_decree09_years(moment: int, label: str, start: date, end: date) -> None:
    period = period_of("annual", "decree09", moment)
    assert (period.label, period.start, period.end) == (label, start, end)
    assert period.deadline == date(end.year, 12, 25)


@pytest.mark.parametrize(
    ("frequency", "moment", "expected"),
    [
        # expected: label, start, end, deadline (deadline_day of the month after the period)
        ("monthly", LATE_14TH, ("2024-11", "2024-11-01", "2024-11-30", "2024-12-25")),
        ("monthly", utc("2024-11-30 16:59:59.999"), ("2024-11", "2024-11-01", "2024-11-30", "2024-12-25")),
        ("monthly", utc("2024-11-30 17:00"), ("2024-12", "2024-12-01", "2024-12-31", "2025-01-25")),
        ("monthly", utc("2024-02-10"), ("2024-02", "2024-02-01", "2024-02-29", "2024-03-25")),
        ("monthly", utc("2023-12-31 17:00"), ("2024-01", "2024-01-01", "2024-01-31", "2024-02-25")),
        ("quarterly", LATE_14TH, ("2024-Q4", "2024-10-01", "2024-12-31", "2025-01-25")),
        ("quarterly", utc("2024-03-31 17:00"), ("2024-Q2", "2024-04-01", "2024-06-30", "2024-07-25")),
        ("half_yearly", utc("2024-06-30 16:00"), ("2024-H1", "2024-01-01", "2024-06-30", "2024-07-25")),
        ("half_yearly", LATE_14TH, ("2024-H2", "2024-07-01", "2024-12-31", "2025-01-25")),
        ("annual", utc("2024-12-20"), ("2024", "2024-01-01", "2024-12-31", "2025-01-25")),
        ("annual", utc("2024-12-31 17:00"), ("2025", "2025-01-01", "2025-12-31", "2026-01-25")),
    ],
)
def test_calendar_month_periods(frequency: str, moment: int, expected: tuple[str, str, str, str]) -> None:
    period = period_of(frequency, "calendar_month", moment)
    label, start, end, deadline = expected
    assert (period.label, period.start, period.end, period.deadline) == (
        label,
        date.fromisoformat(start),
        date.fromisoformat(end),
        date.fromisoformat(deadline),
    )
    next_day = period.end + timedelta(days=1)
    assert (period.start_ms, period.end_ms) == (local_midnight(period.start), local_midnight(next_day))


@pytest.mark.parametrize(
    ("frequency", "calendar", "deadline_day", "deadline"),
    [
        ("monthly", "decree09", 25, date(2024, 12, 25)),
        ("monthly", "decree09", 20, date(2024, 12, 20)),
        ("quarterly", "decree09", 25, date(2024, 12, 25)),
        ("half_yearly", "decree09", 18, date(2024, 12, 18)),
        ("annual", "decree09", 25, date(2024, 12, 25)),
        ("monthly", "calendar_month", 20, date(2024, 12, 20)),
        ("annual", "calendar_month", 1, date(2025, 1, 1)),
        # sub-monthly periods are due the next local day, whatever the deadline day
        ("hourly", "decree09", 25, date(2024, 11, 16)),
        ("daily", "calendar_month", 25, date(2024, 11, 16)),
        ("event", "decree09", 25, date(2024, 11, 16)),
    ],
)
def test_deadlines(frequency: str, calendar: str, deadline_day: int, deadline: date) -> None:
    assert period_of(frequency, calendar, LATE_14TH, deadline_day).deadline == deadline


def test_hourly_and_daily_periods_use_the_local_clock() -> None:
    hour = period_of("hourly", "decree09", LATE_14TH + 59 * 60_000)
    assert (hour.label, hour.start, hour.end) == ("2024-11-15T03", date(2024, 11, 15), date(2024, 11, 15))
    assert (hour.start_ms, hour.end_ms) == (LATE_14TH, LATE_14TH + 3_600_000)
    day = period_of("daily", "decree09", LATE_14TH)
    assert (day.label, day.start_ms, day.end_ms) == (
        "2024-11-15",
        utc("2024-11-14 17:00"),
        utc("2024-11-15 17:00"),
    )
    assert period_of("event", "calendar_month", LATE_14TH) == day
    assert period_of("hourly", "decree09", utc("2024-11-14 16:59")).label == "2024-11-14T23"
    assert period_of("hourly", "decree09", utc("2024-11-14 17:00")).label == "2024-11-15T00"


@pytest.mark.parametrize("frequency", FREQUENCIES)
@pytest.mark.parametrize("calendar", CALENDARS)
@pytest.mark.parametrize(
    "moment",
    [
        LATE_14TH,
        utc("2024-12-14 16:59:59.999"),
        utc("2024-12-14 17:00"),
        utc("2010-01-01"),
        utc("2025-06-30 17:00"),
    ],
)
def test_labels_round_trip(frequency: str, calendar: str, moment: int) -> None:
    period = period_of(frequency, calendar, moment, 20)
    assert parse_period(period.label, frequency, calendar, 20) == period
    assert period.contains(moment)
    assert period_matches(period.label, frequency, calendar, moment)


@pytest.mark.parametrize(
    ("label", "frequency"),
    [
        ("2024-13", "monthly"),
        ("2024-00", "monthly"),
        ("2024-1", "monthly"),
        ("24-11", "monthly"),
        ("2024-Q4", "monthly"),
        ("2024-12", "quarterly"),
        ("2024-Q5", "quarterly"),
        ("2024-H3", "half_yearly"),
        ("2024-12", "annual"),
        ("2024-11-31", "daily"),
        ("2024-11-15T08", "daily"),
        ("2024-11-15", "hourly"),
        ("2024-11-15T24", "hourly"),
        ("20241115", "event"),
        ("٢٠٢٤", "annual"),  # Arabic-Indic digits are digits to \d, not to a period label
        (" 2024", "annual"),
        ("", "monthly"),
    ],
)
def test_malformed_labels_are_refused(label: str, frequency: str) -> None:
    with pytest.raises(ValueError, match="period"):
        parse_period(label, frequency, "decree09")


@pytest.mark.parametrize(
    ("label", "frequency", "calendar", "moment", "matches"),
    [
        ("2024-12", "monthly", "decree09", LATE_14TH, True),
        ("2024-11", "monthly", "decree09", LATE_14TH, False),  # the 15th locally: next period
        ("2024-11", "monthly", "calendar_month", LATE_14TH, True),
        ("2024-12", "monthly", "calendar_month", LATE_14TH, False),
        ("2024-Q4", "monthly", "decree09", LATE_14TH, False),  # a quarter for a monthly indicator
        ("2024-12", "quarterly", "decree09", LATE_14TH, False),
        ("2024-Q4", "quarterly", "decree09", utc("2024-12-14 10:00"), True),
        ("2024-Q4", "quarterly", "decree09", utc("2024-12-14 17:00"), False),
        ("2025-H1", "half_yearly", "decree09", utc("2024-12-20"), True),
        ("2025", "annual", "decree09", utc("2024-12-20"), True),
        ("2024", "annual", "decree09", utc("2024-12-20"), False),
        ("2024", "annual", "calendar_month", utc("2024-12-20"), True),
        ("2024-11-15", "daily", "decree09", LATE_14TH, True),
        ("2024-11-14", "daily", "decree09", LATE_14TH, False),  # the UTC date, not the local one
        ("2024-11-15T03", "hourly", "decree09", LATE_14TH, True),
        ("2024-11-14T20", "hourly", "decree09", LATE_14TH, False),
        ("2024-11-15", "event", "decree09", LATE_14TH, True),
        ("2024-13", "monthly", "decree09", LATE_14TH, False),
        (None, "hourly", "decree09", LATE_14TH, True),
        (None, "daily", "calendar_month", LATE_14TH, True),
        (None, "event", "decree09", LATE_14TH, True),
        ("", "daily", "decree09", LATE_14TH, True),
        (None, "monthly", "decree09", LATE_14TH, False),
        (None, "annual", "calendar_month", LATE_14TH, False),
        ("", "quarterly", "decree09", LATE_14TH, False),
    ],
)
def test_period_matches(label: str | None, frequency: str, calendar: str, moment: int, matches: bool) -> None:
    assert period_matches(label, frequency, calendar, moment) is matches


@pytest.mark.parametrize(
    ("frequency", "calendar", "deadline_day", "problem"),
    [
        ("weekly", "decree09", 25, "unknown frequency 'weekly'"),
        ("monthly", "lunar", 25, "unknown calendar 'lunar'"),
        ("monthly", "decree09", 29, "deadline day 29"),
        ("monthly", "decree09", 0, "deadline day 0"),
    ],
)
def test_unknown_frequency_calendar_or_deadline_day_raise(
    frequency: str, calendar: str, deadline_day: int, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        period_of(frequency, calendar, LATE_14TH, deadline_day)
    with pytest.raises(ValueError, match=problem):
        parse_period("2024-12", frequency, calendar, deadline_day)


def test_period_matches_raises_on_an_unknown_frequency() -> None:
    # a wrong frequency is the caller's bug, not a bad record: it must not read as "no match"
    with pytest.raises(ValueError, match="unknown frequency"):
        period_matches("2024-12", "weekly", "decree09", LATE_14TH)
