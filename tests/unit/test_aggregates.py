"""stream_app.domain.aggregates: the hour an event time falls in (the rest: test_periods_aggregates)."""

from __future__ import annotations

from stream_app.domain.aggregates import hour_of
from stream_app.domain.clock import HOUR_MS


def test_hour_of() -> None:
    assert hour_of(0) == 0
    assert hour_of(HOUR_MS - 1) == 0
    assert hour_of(HOUR_MS) == 1
    assert hour_of(-1) == -1
