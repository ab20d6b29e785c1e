"""Waiting out infrastructure failures: retry with exponential backoff, never give up.

Used wherever giving up would mean acking records whose effects are not stored (Redis), whose
outputs were not delivered (Kafka produce), or that could not be decoded for want of a dependency
(the schema registry). While an operation is retrying, the partition waits, a gauge says so, and
``/health`` answers "not ready".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from stream_app import metrics
from stream_app.logs import get_logger
from stream_app.settings import Settings

log = get_logger(__name__)
T = TypeVar("T")

_retrying: set[str] = set()


def retrying() -> frozenset[str]:
    """Operations currently waiting for a dependency to come back."""
    return frozenset(_retrying)


def _always(_exc: Exception) -> bool:
    return True


async def retry_until_done(
    operation: str,
    action: Callable[[], Awaitable[T]],
    settings: Settings,
    retryable: Callable[[Exception], bool] = _always,
) -> T:
    """Run ``action`` until it succeeds; an exception that is not ``retryable`` propagates.

    Cancellation (worker stop, rebalance) propagates at once.
    """
    delay = settings.retry_initial_s
    attempt = 0
    while True:
        try:
            result = await action()
        except Exception as exc:
            if not retryable(exc):
                raise
            attempt += 1
            _retrying.add(operation)
            metrics.RETRYING.labels(operation).set(1)
            metrics.RETRIES.labels(operation).inc()
            log.warning(
                "dependency_unavailable_retrying",
                operation=operation,
                attempt=attempt,
                retry_in_s=round(delay, 3),
                error=repr(exc)[:300],
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, settings.retry_max_s)
            continue
        if operation in _retrying:
            _retrying.discard(operation)
            metrics.RETRYING.labels(operation).set(0)
            log.info("dependency_recovered", operation=operation, attempts=attempt)
        return result
