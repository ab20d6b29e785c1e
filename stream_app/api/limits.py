"""How much one caller may ask of the API: request rate, requests in flight, audited refusals.

Pure bookkeeping with an injected clock (no aiohttp, no I/O): the servers (``stream_app.api.http``, the
screen) ask it before they do anything for a request and answer 429 when it says no. A caller is a
token (its id) or, before any token is known, the client's address: a stranger guessing tokens is
slowed down by where it comes from, an operator by what it holds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from stream_app.settings import Settings

Clock = Callable[[], float]
# Buckets kept at most, per limit: a scan from many addresses must not grow the process. A full bucket
# is the same as no bucket, so those go first; past that the oldest goes (its caller starts full again).
MAX_CALLERS = 10_000
# Told to a caller refused for its requests in flight: a request that held a slot ends within the
# answer bound (seconds), so asking again after a second is reasonable.
IN_FLIGHT_RETRY_AFTER_S = 1


@dataclass(slots=True)
class TokenBucket:
    """``burst`` requests at once, refilled at ``rate_per_s``."""

    rate_per_s: float
    burst: float
    tokens: float
    updated_at: float

    def take(self, now: float) -> float:
        """Take one token: 0.0 when there was one, else the seconds until there will be."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate_per_s

    def full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.burst

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated_at)  # a clock that steps back refills nothing
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate_per_s)
        self.updated_at = max(self.updated_at, now)


class Buckets:
    """A token bucket per key, each starting full."""

    def __init__(self, rate_per_s: float, burst: int, clock: Clock, max_keys: int = MAX_CALLERS) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(
                f"a bucket needs a positive rate and a burst of 1 or more ({rate_per_s}, {burst})"
            )
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, key: str) -> float:
        """0.0 when ``key`` may go on now, else the seconds it should wait."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.rate_per_s, float(self.burst), float(self.burst), now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_keys:
                self._prune(now)
        return bucket.take(now)

    def __len__(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        for key in [k for k, bucket in self._buckets.items() if bucket.full(now)]:
            del self._buckets[key]
        while len(self._buckets) > self.max_keys:
            del self._buckets[next(iter(self._buckets))]


class InFlight:
    """Requests being answered, per key, up to ``limit`` each."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._running: dict[str, int] = {}

    def enter(self, key: str) -> bool:
        running = self._running.get(key, 0)
        if running >= self.limit:
            return False
        self._running[key] = running + 1
        return True

    def leave(self, key: str) -> None:
        running = self._running.get(key, 0) - 1
        if running > 0:
            self._running[key] = running
        else:  # an idle caller keeps no entry: the map holds only who is being answered now
            self._running.pop(key, None)

    def running(self, key: str) -> int:
        return self._running.get(key, 0)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is refused now (429) and when to ask again (whole seconds, as Retry-After wants)."""

    reason: str  # "rate" or "in_flight"
    retry_after_s: int
    detail: str

    def body(self) -> dict[str, str | int]:
        return {
            "error": "too_many_requests",
            "reason": self.reason,
            "retry_after_s": self.retry_after_s,
            "detail": self.detail,
        }


def token_caller(token_id: str) -> str:
    return f"token:{token_id}"


def address_caller(address: str | None) -> str:
    return f"address:{address or 'unknown'}"


class RequestLimits:
    """The API's limits per caller: a token bucket each (tokens and addresses have their own rates),
    and a number of requests in flight each.

    ``enter`` before answering, ``leave`` after (only when ``enter`` admitted with ``hold``)."""

    def __init__(
        self,
        *,
        rate_per_s: float,
        burst: int,
        in_flight: int,
        anonymous_rate_per_s: float,
        anonymous_burst: int,
        clock: Clock = time.monotonic,
    ) -> None:
        self.tokens = Buckets(rate_per_s, burst, clock)
        self.addresses = Buckets(anonymous_rate_per_s, anonymous_burst, clock)
        self.in_flight = InFlight(in_flight)

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock = time.monotonic) -> RequestLimits:
        return cls(
            rate_per_s=settings.api_requests_per_s,
            burst=settings.api_burst,
            in_flight=settings.api_max_in_flight,
            anonymous_rate_per_s=settings.api_anonymous_requests_per_s,
            anonymous_burst=settings.api_anonymous_burst,
            clock=clock,
        )

    def enter(self, caller: str, *, hold: bool = True) -> Refusal | None:
        """None: admitted (and, with ``hold``, counted in flight until :meth:`leave`); else why not.

        ``hold=False`` for a request that stays open (a live stream): it spends from the rate, but holds
        no slot, or a few open pages would lock their token out of every read."""
        wait_s = self._buckets(caller).take(caller)
        if wait_s > 0:
            return Refusal("rate", max(1, math.ceil(wait_s)), "too many requests: slow down")
        if hold and not self.in_flight.enter(caller):
            detail = f"{self.in_flight.limit} requests of this caller are being answered already"
            return Refusal("in_flight", IN_FLIGHT_RETRY_AFTER_S, detail)
        return None

    def leave(self, caller: str) -> None:
        self.in_flight.leave(caller)

    def _buckets(self, caller: str) -> Buckets:
        return self.tokens if caller.startswith("token:") else self.addresses


class RefusalAudits:
    """Which refusals of a token get an audit record: ``per_minute`` of them each minute (a token
    bucket), the rest only counted. A refusal that is audited after some were not carries their number,
    so the trail says how many it lacks; the metric counts them all."""

    def __init__(self, per_minute: int, clock: Clock = time.monotonic) -> None:
        self._budget = Buckets(per_minute / 60.0, per_minute, clock)
        self._unaudited: dict[str, int] = {}

    def admit(self, token_id: str) -> int | None:
        """None: do not audit this refusal (it was counted). Else audit it, noting this many earlier
        refusals of the token that were not."""
        if self._budget.take(token_id) > 0:
            self._unaudited[token_id] = self._unaudited.get(token_id, 0) + 1
            return None
        return self._unaudited.pop(token_id, 0)

    def unaudited(self, token_id: str) -> int:
        return self._unaudited.get(token_id, 0)
