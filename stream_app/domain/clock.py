"""Time, once: integer epoch milliseconds everywhere, and Vietnam's local clock.

Regulations count days, deadlines and briefings on the local clock of Vietnam (Asia/Ho_Chi_Minh:
UTC+7 all year, no daylight saving since 1975), so the offset is a constant, written here only. Times
are ``int`` epoch milliseconds; conversions from ``datetime`` are exact integer arithmetic (a float
``timestamp() * 1000`` is 1 ms off for some times).
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta, timezone

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
LOCAL_OFFSET_MS = 7 * HOUR_MS
LOCAL_TZ = timezone(timedelta(milliseconds=LOCAL_OFFSET_MS), "ICT")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_ONE_MS = timedelta(milliseconds=1)


def now_ms() -> int:
    """The wall clock, in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def ms_of(moment: datetime) -> int:
    """Epoch milliseconds of an aware ``datetime`` (exact)."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no UTC offset")
    return (moment - _EPOCH) // _ONE_MS


def as_ms(value: datetime | int) -> int:
    """Epoch milliseconds of what Avro's ``timestamp-millis`` decodes to (a ``datetime``) or of an int."""
    return ms_of(value) if isinstance(value, datetime) else int(value)


def parse_iso_ms(text: str) -> int:
    """Epoch milliseconds of an ISO-8601 time with its offset (``2025-08-01T00:00+07:00``).
    Raises ``ValueError`` for anything else, a time without an offset included."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} needs a UTC offset (e.g. +07:00)")
    return ms_of(moment)


def local_date(ms: int) -> date:
    """The date in Vietnam at ``ms``: the date regulations count periods and deadlines in."""
    return date.fromordinal(_EPOCH_ORDINAL + (ms + LOCAL_OFFSET_MS) // DAY_MS)


def local_hour(ms: int) -> int:
    """The hour of the day (0..23) in Vietnam at ``ms``."""
    return (ms + LOCAL_OFFSET_MS) % DAY_MS // HOUR_MS


def local_time_of_day_ms(ms: int) -> int:
    """Milliseconds since local midnight in Vietnam at ``ms``."""
    return (ms + LOCAL_OFFSET_MS) % DAY_MS


def local_midnight_ms(day: date | int) -> int:
    """Epoch milliseconds of local midnight starting ``day`` (a date or its proleptic ordinal)."""
    ordinal = day if isinstance(day, int) else day.toordinal()
    return (ordinal - _EPOCH_ORDINAL) * DAY_MS - LOCAL_OFFSET_MS


def end_of_local_day_ms(day: date) -> int:
    """Epoch milliseconds when local ``day`` is over (00:00 in Vietnam the day after): a deadline
    day ends here — a period closes, a report not in by then is late."""
    return local_midnight_ms(day) + DAY_MS


def local_iso(ms: int) -> str:
    """``ms`` as local ISO-8601 with its offset, to the second (``2025-08-01T07:00:00+07:00``)."""
    return datetime.fromtimestamp(ms // 1000, LOCAL_TZ).isoformat(timespec="seconds")


def local_text(ms: int) -> str:
    """``ms`` as a local time for people (``2025-08-01 07:00:00``)."""
    return datetime.fromtimestamp(ms // 1000, LOCAL_TZ).strftime("%Y-%m-%d %H:%M:%S")
