"""The screen's own health: readiness (``/readyz``), its metrics (``/metrics``) and the status its pages
show ("Live" or "Stale — last update Ns ago").

``/livez`` (the server answers) is the liveness probe. ``/readyz`` is 200 only while Redis answered
the last probe (every ``STREAM_APP_OPS_INTERVAL_S``) and the reader of ``center.alerts`` read a record
or confirmed it is caught up within ``STREAM_APP_SCREEN_READER_STALE_S``: a screen whose pages would
show a stale picture is taken out of its Service. Every ``STATUS_S`` each open page is sent an
``event: status`` with the reader's age, so a page says "stale" within seconds of its feed stopping,
and by itself when the statuses stop coming.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream_app.ops import metrics
from stream_app.screen.feed import AlertReader, Broadcast
from stream_app.settings import Settings

log = structlog.get_logger(__name__)

STATUS_S = 1.0  # how often every page is told whether the screen is live
REDIS_TIMEOUT_S = 2.0
UNTIMED_TYPES = frozenset({"text/event-stream"})  # open as long as the page is: not an answer time


class Freshness(StrEnum):
    """What a page shows of the screen's live feed."""

    LIVE = "live"
    STALE = "stale"


def freshness(reader_age_s: float, stale_after_s: float) -> Freshness:
    return Freshness.LIVE if reader_age_s <= stale_after_s else Freshness.STALE


def status_event(fresh: Freshness, reader_age_s: float, stale_after_s: float) -> bytes:
    """The server-sent event telling a page whether the screen is live, and since when it is not."""
    data = json.dumps(
        {"status": fresh.value, "reader_age_s": round(reader_age_s, 1), "stale_after_s": stale_after_s},
        separators=(",", ":"),
    )
    return f"event: status\ndata: {data}\n\n".encode()


@dataclass(frozen=True, slots=True)
class Readiness:
    """The checks of ``/readyz`` and what they found."""

    redis: bool
    reader_following: bool
    reader_age_s: float
    stale_after_s: float

    @property
    def reader_fresh(self) -> bool:
        return self.reader_following and freshness(self.reader_age_s, self.stale_after_s) is Freshness.LIVE

    @property
    def ready(self) -> bool:
        return self.redis and self.reader_fresh

    def body(self) -> dict[str, Any]:
        checks = {"redis": self.redis, "alerts_reader": self.reader_fresh}
        return {
            "ready": self.ready,
            "checks": checks,
            "reader_following": self.reader_following,
            "reader_age_s": round(self.reader_age_s, 1),
            "stale_after_s": self.stale_after_s,
            "unavailable": [name for name, ok in checks.items() if not ok],
        }


class ScreenHealth:
    """Probes Redis, tells pages the reader's freshness, answers ``/readyz`` and ``/metrics``, and
    times every answer (:meth:`install` adds all of it to the screen's application)."""

    def __init__(
        self,
        settings: Settings,
        redis: Any,
        broadcast: Broadcast,
        reader: Callable[[], AlertReader | None],
    ) -> None:
        self.redis = redis
        self.broadcast = broadcast
        self.reader = reader
        self.stale_after_s = settings.screen_reader_stale_s
        self.probe_every_s = settings.ops_interval_s
        self.redis_ok = False
        self.started_at = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        metrics.SCREEN_READER_LAG.set_function(self.reader_age_s)
        metrics.SCREEN_READY.set_function(lambda: float(self.readiness().ready))
        metrics.SCREEN_PAGES_CONNECTED.set_function(lambda: float(self.broadcast.pages))

    def install(self, app: web.Application) -> None:
        app.middlewares.append(timed)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        app.on_startup.append(self._start)
        app.on_cleanup.insert(0, self._stop)  # before the screen's own closes Redis: no probe after it

    def reader_age_s(self) -> float:
        reader = self.reader()
        return reader.age_s() if reader is not None else time.monotonic() - self.started_at

    def readiness(self) -> Readiness:
        reader = self.reader()
        return Readiness(
            redis=self.redis_ok,
            reader_following=reader is not None and reader.following.is_set(),
            reader_age_s=self.reader_age_s(),
            stale_after_s=self.stale_after_s,
        )

    async def readyz(self, request: web.Request) -> web.Response:
        readiness = self.readiness()
        return web.json_response(readiness.body(), status=200 if readiness.ready else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        # the API's counters and the process (shared with the worker), then the screen's own
        body = generate_latest(metrics.REGISTRY) + generate_latest(metrics.SCREEN_REGISTRY)
        return web.Response(body=body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    async def _start(self, app: web.Application) -> None:
        self._task = asyncio.create_task(self._run())

    async def _stop(self, app: web.Application) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        probed_at = -self.probe_every_s
        while True:
            if time.monotonic() - probed_at >= self.probe_every_s:
                probed_at = time.monotonic()
                await self._probe_redis()
            self.tell_pages()
            await asyncio.sleep(STATUS_S)

    def tell_pages(self) -> None:
        """Every open page: whether the screen is live, and the reader's age."""
        readiness = self.readiness()
        fresh = Freshness.LIVE if readiness.reader_fresh else Freshness.STALE
        self.broadcast.publish(status_event(fresh, readiness.reader_age_s, self.stale_after_s))

    async def _probe_redis(self) -> None:
        try:
            await asyncio.wait_for(self.redis.ping(), REDIS_TIMEOUT_S)
        except Exception as exc:  # any failure means the same: not ready
            if self.redis_ok:
                log.warning("screen_redis_unreachable", error=repr(exc))
            self.redis_ok = False
        else:
            if not self.redis_ok:
                log.info("screen_redis_reachable")
            self.redis_ok = True


@web.middleware
async def timed(request: web.Request, handler: Any) -> web.StreamResponse:
    """Each answer's time by route (a bounded label: the route's template, never the path asked),
    refusals raised as exceptions (404, 405) included."""
    started = time.perf_counter()
    streamed = False
    try:
        response: web.StreamResponse = await handler(request)
        streamed = response.content_type in UNTIMED_TYPES
        return response
    finally:
        if not streamed:
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            metrics.SCREEN_REQUEST_SECONDS.labels(route).observe(time.perf_counter() - started)
