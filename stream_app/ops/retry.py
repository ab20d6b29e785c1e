"""Waiting out infrastructure failures: retry with exponential backoff while the failure is transient
or blocking (see :mod:`stream_app.ops.failures`); a permanent failure propagates at once, for the caller to
dead-letter the record that caused it.

Used wherever giving up would mean acking records whose effects are not stored (Redis), whose
outputs were not delivered (Kafka produce), or that could not be decoded for want of a dependency
(the schema registry). While an operation is retrying, the partition waits, a gauge says so, and
``/health`` and ``/readyz`` answer "not ready", naming it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from stream_app.logs import get_logger
from stream_app.ops import metrics
from stream_app.ops.failures import UNKNOWN_ATTEMPTS, Failure
from stream_app.settings import Settings

log = get_logger(__name__)
T = TypeVar("T")

_waiting: Counter[str] = Counter()  # operation -> callers waiting on it now


def retrying() -> frozenset[str]:
    """Operations currently waiting for a dependency to come back."""
    return frozenset(name for name, count in _waiting.items() if count > 0)


def _transient(_exc: BaseException) -> Failure:
    return Failure.TRANSIENT


async def retry_until_done(
    operation: str,
    action: Callable[[], Awaitable[T]],
    settings: Settings,
    classify: Callable[[BaseException], Failure] = _transient,
) -> T:
    """Run ``action`` until it succeeds; an exception ``classify`` calls permanent propagates (so does
    an unknown one after ``UNKNOWN_ATTEMPTS``). Cancellation (worker stop, rebalance) propagates at once.
    """
    delay = settings.retry_initial_s
    attempt = unknown = 0
    with waiting(operation) as mark:
        while True:
            try:
                return await action()
            except Exception as exc:
                failure = classify(exc)
                unknown += failure is Failure.UNKNOWN
                if not failure.retried or unknown > UNKNOWN_ATTEMPTS:
                    raise
                attempt += 1
                mark()
                metrics.RETRIES.labels(operation).inc()
                log.warning(
                    "dependency_unavailable_retrying"
                    if failure is Failure.TRANSIENT
                    else "dependency_refusing_retrying",
                    operation=operation,
                    failure=failure.value,
                    attempt=attempt,
                    retry_in_s=round(delay, 3),
                    error=repr(exc)[:300],
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, settings.retry_max_s)


@contextmanager
def waiting(operation: str) -> Iterator[Callable[[], None]]:
    """A scope in which ``operation`` may wait for a dependency: calling the mark it yields says it does
    (``/readyz``, ``/health`` and ``stream_app_retrying`` report it) until the scope ends, whichever
    way it ends — success, an error, or cancellation. Counted per caller: one caller recovering does
    not clear another's wait."""
    marked = False

    def mark() -> None:
        nonlocal marked
        if not marked:
            marked = True
            _waiting[operation] += 1
            metrics.RETRYING.labels(operation).set(1)

    try:
        yield mark
    finally:
        if marked:
            _waiting[operation] -= 1
            if _waiting[operation] <= 0:
                del _waiting[operation]
                metrics.RETRYING.labels(operation).set(0)
                log.info("dependency_recovered", operation=operation)
