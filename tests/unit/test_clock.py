"""stream_app.domain.clock: integer milliseconds, exact, and Vietnam's local clock (UTC+7)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from stream_app.domain import clock


def test_milliseconds_of_a_datetime_are_exact_where_the_float_form_is_not() -> None:
    moment = datetime(2262, 4, 11, 23, 47, 16, 854_000, tzinfo=UTC)
    assert clock.ms_of(moment) == 9_223_372_036_854
    # the float form the module replaces: off by one for times like this
    off = [
        m
        for m in (datetime(2100 + y, 1, 1, 0, 0, 0, 1000 * k, tzinfo=UTC) for y in range(200) for k in (1, 7))
        if int(m.timestamp() * 1000) != clock.ms_of(m)
    ]
    assert off, "the float form is off for some of these: the exact form is needed"
    for m in off:
        assert clock.ms_of(m) == (m - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="no UTC offset"):
        clock.ms_of(datetime(2025, 1, 1))


def test_parse_iso_needs_an_offset() -> None:
    assert clock.parse_iso_ms("2025-08-01T00:00+07:00") == clock.ms_of(datetime(2025, 7, 31, 17, tzinfo=UTC))
    with pytest.raises(ValueError, match="offset"):
        clock.parse_iso_ms("2025-08-01T00:00")
    with pytest.raises(ValueError, match="Invalid isoformat"):
        clock.parse_iso_ms("yesterday")


def test_the_local_day_turns_at_17_utc() -> None:
    before = clock.ms_of(datetime(2024, 11, 1, 16, 59, 59, 999_000, tzinfo=UTC))
    assert clock.local_date(before) == date(2024, 11, 1)
    assert clock.local_date(before + 1) == date(2024, 11, 2)
    assert clock.local_hour(before + 1) == 0
    assert clock.local_time_of_day_ms(before + 1) == 0
    assert clock.local_midnight_ms(date(2024, 11, 2)) == before + 1
    assert clock.local_midnight_ms(date(2024, 11, 2).toordinal()) == before + 1
    assert clock.end_of_local_day_ms(date(2024, 11, 1)) == before + 1


def test_local_texts_carry_the_offset() -> None:
    at = clock.ms_of(datetime(2025, 8, 1, 7, 30, tzinfo=timezone(timedelta(hours=7))))
    assert clock.local_iso(at) == "2025-08-01T07:30:00+07:00"
    assert clock.local_text(at) == "2025-08-01 07:30:00"
    assert clock.as_ms(datetime(2025, 8, 1, 0, 30, tzinfo=UTC)) == at
    assert clock.as_ms(at) == at
