"""The API's limits per caller (issue 26, "API manners"): a token bucket per token and per address, a
number of requests in flight, and a budget of audited refusals per token; all on an injected clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stream_app.api import http
from stream_app.api.auth import Identity
from stream_app.api.limits import (
    Buckets,
    InFlight,
    RefusalAudits,
    RequestLimits,
    TokenBucket,
    address_caller,
    token_caller,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _limits(clock: Clock, *, in_flight: int = 2) -> RequestLimits:
    return RequestLimits(
        rate_per_s=2.0,
        burst=3,
        in_flight=in_flight,
        anonymous_rate_per_s=0.5,
        anonymous_burst=1,
        clock=clock,
    )


def test_a_bucket_lets_its_burst_through_then_says_how_long_to_wait() -> None:
    bucket = TokenBucket(rate_per_s=2.0, burst=3.0, tokens=3.0, updated_at=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.25) == pytest.approx(0.25), "half refilled: half the wait left"
    assert bucket.take(0.5) == 0.0


def test_a_bucket_refills_to_its_burst_only_and_a_clock_stepping_back_refills_nothing() -> None:
    bucket = TokenBucket(rate_per_s=1.0, burst=2.0, tokens=0.0, updated_at=10.0)
    assert bucket.full(1000.0)
    assert bucket.tokens == 2.0
    bucket.tokens = 0.0
    assert bucket.take(5.0) == pytest.approx(1.0), "earlier than the last look: no tokens made"


def test_each_caller_has_its_own_bucket() -> None:
    clock = Clock()
    buckets = Buckets(1.0, 1, clock)
    assert buckets.take("token:a") == 0.0
    assert buckets.take("token:a") > 0
    assert buckets.take("token:b") == 0.0, "another token is not slowed by the first"


def test_buckets_stay_bounded_under_a_scan_of_addresses() -> None:
    clock = Clock()
    buckets = Buckets(1.0, 5, clock, max_keys=100)
    for n in range(1000):
        buckets.take(f"address:10.0.{n // 256}.{n % 256}")
        clock.now += 0.001
    assert len(buckets) <= 101


def test_requests_in_flight_are_counted_per_caller_and_forgotten_when_done() -> None:
    running = InFlight(2)
    assert running.enter("a")
    assert running.enter("a")
    assert not running.enter("a")
    assert running.enter("b")
    running.leave("a")
    assert running.enter("a")
    for key in ("a", "a", "b"):
        running.leave(key)
    assert (running.running("a"), running.running("b")) == (0, 0)


def test_a_caller_over_its_rate_is_refused_with_whole_seconds_to_wait() -> None:
    clock = Clock()
    limits = _limits(clock, in_flight=100)
    caller = token_caller("abc")
    for _ in range(3):
        assert limits.enter(caller) is None
    refusal = limits.enter(caller)
    assert refusal is not None
    assert (refusal.reason, refusal.retry_after_s) == ("rate", 1), "0.5 s rounds up: Retry-After is whole"
    assert refusal.body()["error"] == "too_many_requests"
    clock.now += 0.5
    assert limits.enter(caller) is None


def test_a_caller_without_a_token_has_the_anonymous_rate() -> None:
    clock = Clock()
    limits = _limits(clock)
    stranger = address_caller("192.0.2.7")
    assert limits.enter(stranger) is None
    refusal = limits.enter(stranger)
    assert refusal is not None
    assert refusal.retry_after_s == 2, "0.5 a second: the next in 2 s"
    assert limits.enter(address_caller("192.0.2.8")) is None, "another address is not slowed"
    assert address_caller(None) == "address:unknown"


def test_a_caller_with_too_many_requests_in_flight_is_refused_until_one_ends() -> None:
    clock = Clock()
    limits = _limits(clock, in_flight=2)
    caller = token_caller("abc")
    assert limits.enter(caller) is None
    assert limits.enter(caller) is None
    refusal = limits.enter(caller)
    assert refusal is not None
    assert refusal.reason == "in_flight"
    limits.leave(caller)
    clock.now += 1
    assert limits.enter(caller) is None


def test_an_open_stream_spends_from_the_rate_but_holds_no_slot() -> None:
    clock = Clock()
    limits = _limits(clock, in_flight=1)
    caller = token_caller("abc")
    assert limits.enter(caller, hold=False) is None
    assert limits.enter(caller) is None, "the stream holds no slot: a read still goes through"


def test_refusals_are_audited_up_to_the_budget_then_counted_and_summarised() -> None:
    clock = Clock()
    audits = RefusalAudits(per_minute=3, clock=clock)
    assert [audits.admit("t1") for _ in range(3)] == [0, 0, 0]
    assert [audits.admit("t1") for _ in range(5)] == [None] * 5
    assert audits.unaudited("t1") == 5
    assert audits.admit("t2") == 0, "another token's refusals are audited"
    clock.now += 20  # one more record a 20 s
    assert audits.admit("t1") == 5, "the next audited refusal says how many were not"
    assert audits.unaudited("t1") == 0


# ---------------------------------------------------------------------------------- the guard


class _Web:
    @staticmethod
    def json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        return status, body, headers or {}


class _Gate:
    """Knows one token, ``good``."""

    def identify(self, request: Any) -> Identity | None:
        if request.headers.get("Authorization") == "Bearer good":
            return Identity("nguyen.van.a", "viewer", token_id="0123456789ab")  # noqa: S106 - an id, not a secret
        return None


class _Request:
    def __init__(self, token: str | None, remote: str = "192.0.2.1") -> None:
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.remote = remote


def _guard(clock: Clock, in_flight: int = 1) -> http.Guard:
    return http.Guard(_Gate(), _limits(clock, in_flight=in_flight))  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_the_guard_answers_429_with_retry_after_and_a_reason() -> None:
    clock = Clock()
    guard = _guard(clock, in_flight=10)

    async def serve(identity: Identity | None) -> tuple[int, Any, Any]:
        return 200, identity.name if identity else None, {}

    answers = [await guard.limited(_Web, _Request("good"), serve) for _ in range(4)]
    assert [a[0] for a in answers] == [200, 200, 200, 429]
    _status, body, headers = answers[-1]
    assert headers["Retry-After"] == "1"
    assert (body["error"], body["reason"]) == ("too_many_requests", "rate")


@pytest.mark.asyncio
async def test_the_guard_counts_a_request_without_a_known_token_against_its_address() -> None:
    clock = Clock()
    guard = _guard(clock, in_flight=10)
    seen: list[Identity | None] = []

    async def serve(identity: Identity | None) -> tuple[int, Any, Any]:
        seen.append(identity)
        return 401, None, {}

    first = await guard.limited(_Web, _Request("guess-1"), serve)
    second = await guard.limited(_Web, _Request("guess-2"), serve)
    other = await guard.limited(_Web, _Request("guess-3", remote="192.0.2.99"), serve)
    assert (first[0], second[0], other[0]) == (401, 429, 401), "guessing tokens is slowed per address"
    assert seen == [None, None]


@pytest.mark.asyncio
async def test_the_guard_frees_the_slot_when_the_answer_ends_even_by_an_error() -> None:
    clock = Clock()
    guard = _guard(clock, in_flight=1)
    release = asyncio.Event()

    async def slow(identity: Identity | None) -> tuple[int, Any, Any]:
        await release.wait()
        return 200, None, {}

    async def failing(identity: Identity | None) -> tuple[int, Any, Any]:
        raise RuntimeError("defect")

    first = asyncio.create_task(guard.limited(_Web, _Request("good"), slow))
    await asyncio.sleep(0)
    refused = await guard.limited(_Web, _Request("good"), slow)
    assert (refused[0], refused[1]["reason"]) == (429, "in_flight")
    release.set()
    assert (await first)[0] == 200
    with pytest.raises(RuntimeError):
        await guard.limited(_Web, _Request("good"), failing)
    assert guard.limits.in_flight.running(token_caller("0123456789ab")) == 0
