"""Waiting out infrastructure failures: retry with exponential backoff while the failure is transient
or blocking (see :mod:`stream_app.ops.failures`); a permanent failure propagates at once, for the caller to
dead-letter the record that caused it.

Used wherever giving up would mean acking records whose effects are not stored (Redis), whose
outputs were not delivered (Kafka produce), or that could not be decoded for want of a dependency
(the schema registry). While an operation is retrying, the partition waits, a gauge says so, and
``/health`` and ``/readyz`` answer "not ready", naming it.

Timers and background tasks (the briefing, the ticks, the alert bridge) wait the same way, and run
inside :func:`guarded`: an exception escaping a Faust timer or task ends the whole worker, so none may.
:func:`unavailable` says which dependencies are down now (the probes' findings and the operations
waiting), for ``/readyz`` and for the query API's 503 answers.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from stream_app.logs import get_logger
from stream_app.ops import metrics
from stream_app.ops.failures import UNKNOWN_ATTEMPTS, Failure, classify_kafka, classify_redis
from stream_app.settings import Settings

log = get_logger(__name__)
T = TypeVar("T")

_waiting: Counter[str] = Counter()  # operation -> callers waiting on it now
_unreachable: set[str] = set()  # dependencies the last probe could not reach


def retrying() -> frozenset[str]:
    """Operations currently waiting for a dependency to come back."""
    return frozenset(name for name, count in _waiting.items() if count > 0)


def dependency_of(operation: str) -> str:
    """The dependency an operation waits for: ``redis_*`` Redis; ``produce`` and ``kafka_*`` Kafka;
    ``state_lost`` the state (Redis answers, but lacks what the group acknowledged); any other
    operation names its dependency itself (``schema_registry``)."""
    if operation.startswith("redis_"):
        return "redis"
    if operation == "produce" or operation.startswith("kafka_"):
        return "kafka"
    if operation == "state_lost":
        return "state"
    return operation


def probed(dependency: str, *, reachable: bool) -> None:
    """Record what the readiness probe found of ``dependency`` (``kafka``, ``redis``)."""
    if reachable:
        _unreachable.discard(dependency)
    else:
        _unreachable.add(dependency)


def unavailable() -> list[str]:
    """The dependencies known to be down now, sorted: those the last probe could not reach and those
    an operation waits for (``/readyz`` names them; the query API answers 503 naming them)."""
    return sorted(_unreachable | {dependency_of(operation) for operation in retrying()})


class Backoff:
    """Exponential backoff: waits of ``initial`` seconds, doubled after each failure up to ``ceiling``;
    :meth:`reset` after a success starts again from ``initial``."""

    def __init__(self, initial: float, ceiling: float) -> None:
        self.initial = initial
        self.ceiling = ceiling
        self.delay = initial  # the next wait

    @classmethod
    def from_settings(cls, settings: Settings) -> Backoff:
        """``STREAM_APP_RETRY_INITIAL_S`` doubling up to ``STREAM_APP_RETRY_MAX_S``."""
        return cls(settings.retry_initial_s, settings.retry_max_s)

    def next(self) -> float:
        """The wait to make now; the one after it is twice as long (at most ``ceiling``)."""
        delay = self.delay
        self.delay = min(delay * 2, self.ceiling)
        return delay

    def reset(self) -> None:
        self.delay = self.initial


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
    backoff = Backoff.from_settings(settings)
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
                delay = backoff.next()
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
            _hold(operation)

    try:
        yield mark
    finally:
        if marked:
            _release(operation)


def _hold(operation: str) -> None:
    _waiting[operation] += 1
    metrics.RETRYING.labels(operation).set(1)


def _release(operation: str) -> None:
    _waiting[operation] -= 1
    if _waiting[operation] <= 0:
        del _waiting[operation]
        metrics.RETRYING.labels(operation).set(0)
        log.info("dependency_recovered", operation=operation)


def failed_dependency(exc: BaseException) -> tuple[str, Failure] | None:
    """Which dependency ``exc`` comes from and how it failed, for code that talks to several (a timer):
    ``("redis", ...)`` or ``("kafka", ...)`` when one of them would wait it out; None otherwise (a
    defect, or an error about the data). A plain connection error or timeout is charged to Redis,
    whose client raises them; Kafka's clients hand theirs back as results (the publisher waits them out)."""
    for dependency, classify in (("redis", classify_redis), ("kafka", classify_kafka)):
        failure = classify(exc)
        if failure.retried:
            return dependency, failure
    return None


def guarded(name: str, body: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """``body`` made safe to run on a Faust timer or as a background task, where an escaping exception
    ends the worker (``Crashed reason=network:ConnectionError``): nothing but cancellation escapes.

    ``body`` waits out what must complete itself (:func:`retry_until_done`, the publisher); what still
    escapes is judged by :func:`failed_dependency`. A dependency failure marks ``<dependency>_<name>``
    as waiting (``/readyz`` names it, ``stream_app_retrying`` is 1) until a later run succeeds; anything
    else is a defect, logged with its traceback. Either is logged once when it starts and once when a
    run succeeds again, not at every run; the timer tries again at its next interval."""
    held: str | None = None  # the operation marked waiting since the last failed run
    failures = 0

    async def run() -> None:
        nonlocal held, failures
        try:
            await body()
        except Exception as exc:  # cancellation (a BaseException) goes through: the worker is stopping
            failures += 1
            found = failed_dependency(exc)
            operation = f"{found[0]}_{name}" if found is not None else None
            news = failures == 1 or operation != held  # logged when it starts or changes, not every run
            if operation != held:
                if held is not None:
                    _release(held)
                if operation is not None:
                    _hold(operation)
                held = operation
            if found is None:
                if news:
                    log.error("task_failed_retrying_next_run", task=name, exc_info=True)
                return
            metrics.RETRIES.labels(operation).inc()
            if news:
                log.warning(
                    "dependency_unavailable_retrying_next_run",
                    task=name,
                    operation=operation,
                    failure=found[1].value,
                    error=repr(exc)[:300],
                )
            return
        if held is not None:
            _release(held)
            held = None
        if failures:
            log.info("task_recovered", task=name, failed_runs=failures)
            failures = 0

    run.__name__ = run.__qualname__ = name
    run.__module__ = body.__module__  # Faust names a timer by its module and name (its log lines)
    return run
