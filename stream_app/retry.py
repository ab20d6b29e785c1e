"""Waiting out infrastructure failures: retry with exponential backoff while the failure is transient
or blocking (see :mod:`stream_app.failures`); a permanent failure propagates at once, for the caller to
dead-letter the record that caused it.

Used wherever giving up would mean acking records whose effects are not stored (Redis), whose
outputs were not delivered (Kafka produce), or that could not be decoded for want of a dependency
(the schema registry). While an operation is retrying, the partition waits, a gauge says so, and
``/health`` and ``/readyz`` answer "not ready", naming it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from stream_app import metrics
from stream_app.failures import Failure
from stream_app.logs import get_logger
from stream_app.settings import Settings

log = get_logger(__name__)
T = TypeVar("T")

_retrying: set[str] = set()


def retrying() -> frozenset[str]:
    """Operations currently waiting for a dependency to come back."""
    return frozenset(_retrying)


def _transient(_exc: BaseException) -> Failure:
    return Failure.TRANSIENT


async def retry_until_done(
    operation: str,
    action: Callable[[], Awaitable[T]],
    settings: Settings,
    classify: Callable[[BaseException], Failure] = _transient,
) -> T:
    """Run ``action`` until it succeeds; an exception ``classify`` calls permanent propagates.

    Cancellation (worker stop, rebalance) propagates at once.
    """
    delay = settings.retry_initial_s
    attempt = 0
    while True:
        try:
            result = await action()
        except Exception as exc:
            failure = classify(exc)
            if not failure.retried:
                _recovered(operation, attempt)
                raise
            attempt += 1
            waiting(operation, True)
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
            continue
        _recovered(operation, attempt)
        return result


def waiting(operation: str, on: bool) -> None:
    """Mark ``operation`` as waiting for a dependency (readiness and ``stream_app_retrying`` say so)."""
    if on and operation not in _retrying:
        _retrying.add(operation)
        metrics.RETRYING.labels(operation).set(1)
    elif not on and operation in _retrying:
        _retrying.discard(operation)
        metrics.RETRYING.labels(operation).set(0)


def _recovered(operation: str, attempts: int) -> None:
    if operation in _retrying:
        waiting(operation, False)
        log.info("dependency_recovered", operation=operation, attempts=attempts)
