"""stream_app.aggregates: hourly buckets, the rolling 24 h window, retention."""

from __future__ import annotations

import math

import pytest

from stream_app.domain.aggregates import (
    HOUR_MS,
    RETENTION_HOURS,
    WINDOW_HOURS,
    Bucket,
    WindowAggregate,
    expired,
    hour_of,
    rolling,
)


def test_add_accumulates_count_sum_min_max() -> None:
    bucket = Bucket.of(5.0).add(-2.5).add(10.0)
    assert bucket == Bucket(count=3, total=12.5, low=-2.5, high=10.0)


@pytest.mark.parametrize(
    "values",
    [
        [0.1, 0.2],
        [1 / 3, 2 / 3, 1e-300],
        [-0.0],
        [1e308, -1e308, 5e-324],
        [123456789.123456789, 0.000001],
    ],
)
def test_encode_decode_round_trip_is_exact(values: list[float]) -> None:
    bucket = Bucket.of(values[0])
    for value in values[1:]:
        bucket = bucket.add(value)
    decoded = Bucket.decode(bucket.encode())
    assert decoded == bucket
    # bit-exact, not merely equal: repr round-trips every float
    for got, want in zip(
        (decoded.total, decoded.low, decoded.high), (bucket.total, bucket.low, bucket.high), strict=True
    ):
        assert math.copysign(1.0, got) == math.copysign(1.0, want)
        assert got.hex() == want.hex()


def test_encoding_is_plain_text() -> None:
    assert Bucket(2, 3.5, 1.0, 2.5).encode() == "2,3.5,1.0,2.5"


def test_hour_of() -> None:
    assert hour_of(0) == 0
    assert hour_of(HOUR_MS - 1) == 0
    assert hour_of(HOUR_MS) == 1
    assert hour_of(-1) == -1


def test_rolling_includes_exactly_the_24_hours_ending_at_end_hour() -> None:
    end = 1000
    buckets = {h: Bucket.of(float(h)) for h in range(end - 30, end + 3)}
    window = rolling(buckets, end)
    inside = range(end - WINDOW_HOURS + 1, end + 1)
    assert window.count == WINDOW_HOURS
    assert window.total == sum(float(h) for h in inside)
    assert window.low == float(end - WINDOW_HOURS + 1)
    assert window.high == float(end)
    assert window.mean == window.total / WINDOW_HOURS


def test_rolling_of_no_buckets_is_zero() -> None:
    assert rolling({}, 10) == WindowAggregate(0, 0.0, 0.0, 0.0)
    assert rolling({10 - WINDOW_HOURS: Bucket.of(1.0), 11: Bucket.of(1.0)}, 10).count == 0
    assert WindowAggregate(0, 0.0, 0.0, 0.0).mean == 0.0


def test_rolling_combines_buckets() -> None:
    buckets = {5: Bucket.of(1.0).add(3.0), 6: Bucket.of(-2.0), 7: Bucket.of(10.0).add(4.0)}
    window = rolling(buckets, 7, hours=2)
    assert window == WindowAggregate(count=3, total=12.0, low=-2.0, high=10.0)
    assert window.mean == 4.0


def test_expired_are_the_hours_at_or_beyond_retention() -> None:
    newest = 500
    buckets = {
        h: Bucket.of(1.0)
        for h in (newest - RETENTION_HOURS - 1, newest - RETENTION_HOURS, newest - 47, newest)
    }
    assert sorted(expired(buckets, newest)) == [newest - RETENTION_HOURS - 1, newest - RETENTION_HOURS]
    assert expired(buckets, newest - 100) == []
    assert expired(buckets, newest, retention_hours=1) == [h for h in buckets if h < newest]
