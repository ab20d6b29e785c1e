"""The center's screen: ``stream-app screen`` serves the page, the query API (``/api/v1``, for the
page and every other client) and live alerts, in a process of its own.

Readers never slow the writers: every reader's questions are answered here, from Redis, never by a
worker's event loop (workers serve probes, metrics and directives only), and each answer is reused
for ``STREAM_APP_SCREEN_CACHE_S`` (one read per question and second, however many readers; concurrent
askers of the same question share one read).
Live alert changes are pushed (server-sent events) from one reader of ``center.alerts`` per process
(:mod:`stream_app.screen.feed`); a second reader of it, from ``STREAM_APP_SCREEN_TIMELINE_HOURS`` back,
keeps the alert timeline (``/api/v1/alerts/timeline``, :mod:`stream_app.screen.timeline`). An
operator's directive is forwarded, with the operator's token, to the workers' API, which writes it in
the operator's name and audits it (:mod:`stream_app.screen.commands`):
the screen writes nothing to Kafka. The page itself (HTML, script, styles) is static, carries
no data and needs no token; every ``/api/v1`` call does (``Authorization: Bearer``).

A dependency away is answered as the worker's API answers it (:func:`stream_app.api.http.answer`): a
503 naming ``redis`` within 5 s (for a directive, what the workers answered, or ``workers``),
never a hang; the live alerts' reader and the Redis snapshots of the open alerts retry by themselves. The
same limits as the worker's API apply (429, 413, 400), and a live stream ends once its token is revoked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import date
from importlib import resources
from typing import Any, cast
from urllib.parse import urlencode

import structlog
from aiohttp import web

from stream_app.api.auth import Identity
from stream_app.api.http import OPENAPI, PREFIX, Api, Authenticator, answer, guard_of, whoami
from stream_app.api.read_model import ReadModel
from stream_app.config.blueprint import Blueprint
from stream_app.domain.clock import local_iso, parse_iso_ms
from stream_app.kafka import registry
from stream_app.kafka.subjects import output_framing
from stream_app.ops import metrics
from stream_app.ops.retry import Backoff
from stream_app.screen.commands import Commands
from stream_app.screen.feed import AlertReader, Broadcast, HistoryReader, OpenAlerts, pump
from stream_app.screen.health import ScreenHealth
from stream_app.screen.layout import TILES
from stream_app.screen.timeline import Timeline, page, timeline_query
from stream_app.state.store import StateStore, connect

log = structlog.get_logger(__name__)

STATIC = resources.files("stream_app.screen") / "static"
ASSETS = {
    "app.js": "text/javascript",
    "timeline.js": "text/javascript",
    "app.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
HEARTBEAT_S = 15.0
SNAPSHOT_S = 60.0  # how often the live view of open alerts is checked against Redis
SNAPSHOT_RETRY_MAX_S = 5.0  # the longest pause between snapshots Redis could not answer
# Answers that change once a reporting period or a day, and read hundreds of keys: reused a minute.
SLOW_ANSWERS = frozenset({"/compliance", "/briefing", "/indicators"})
SLOW_ANSWERS_S = 60.0
# The open alerts come from the screen's live view (memory), never behind the stream pages follow.
LIVE_ANSWERS = frozenset({"/alerts/active"})
TIMELINE = "/alerts/timeline"
# What each read depends on (docs/openapi.yaml)
ROUTE_PARAMS: dict[str, tuple[str, ...]] = {
    "/indicators": (),
    "/latest": ("indicator", "region", "station", "breakdown"),
    "/windows": ("indicator", "region", "station", "breakdown"),
    "/periods": ("indicator", "region", "station", "breakdown", "period"),
    "/history": ("indicator", "region", "station", "breakdown", "frequency"),
    "/rollups": ("indicator", "region", "breakdown", "period"),
    "/alerts/active": ("domain", "min_level"),
    "/compliance": ("reporter", "at"),
    "/briefing": ("date",),
    "/overview": ("indicator",),
    "/region": ("region",),
    TIMELINE: ("from", "to", "region", "indicator", "alert_key", "order", "limit", "cursor"),
}
MAX_ANSWERS = 1024
# A free time (``at``) is asked to the minute: 12:00:07 and 12:00:41 are one question (deadlines are
# days, never seconds), or a viewer could make every request a cache miss, and a Redis read.
AT_STEP_MS = 60_000
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

Compute = Callable[[], Awaitable[tuple[int, Any]]]


class AnswerCache:
    """Answers reused for ``ttl_s``; concurrent askers of a question wait for one computation.

    Only successful answers are kept (a 503 is asked again). Keys are questions (path and parameters),
    never identities: every reader may see every answer once the authenticator let it in."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s  # the default time an answer is reused
        self.clock = clock
        self._answers: dict[str, tuple[float, int, bytes]] = {}
        self._flights: dict[str, asyncio.Task[tuple[int, bytes]]] = {}

    async def get(self, key: str, compute: Compute, ttl_s: float | None = None) -> tuple[int, bytes]:
        kept = self._answers.get(key)
        if kept is not None and kept[0] > self.clock():
            return kept[1], kept[2]
        flight = self._flights.get(key)
        if flight is None:  # its own task: an asker that goes away does not cancel it for the others
            flight = asyncio.ensure_future(self._fill(key, compute, self.ttl_s if ttl_s is None else ttl_s))
            self._flights[key] = flight
            flight.add_done_callback(lambda _: self._flights.pop(key, None))
        return await asyncio.shield(flight)

    async def _fill(self, key: str, compute: Compute, ttl: float) -> tuple[int, bytes]:
        status, body = await compute()
        encoded = _json_bytes(body)
        if status == 200 and ttl > 0:
            self._answers[key] = (self.clock() + ttl, status, encoded)
            if len(self._answers) > MAX_ANSWERS:  # questions are few; a scan must not grow the process
                self._evict()
        return status, encoded

    def _evict(self) -> None:
        now = self.clock()
        for key in [k for k, (expires, _, _) in self._answers.items() if expires <= now]:
            del self._answers[key]
        while len(self._answers) > MAX_ANSWERS:
            del self._answers[next(iter(self._answers))]


class _Answers:
    """The two calls of Faust's ``web`` the authenticator and the directives make, answered by aiohttp."""

    @staticmethod
    def json(value: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response(value, status=status, headers=headers, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _json_bytes(body: Any) -> bytes:
    """An API answer as sent: compact UTF-8 JSON (Vietnamese names unescaped)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def question(path: str, query: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """The cache key of a read and the parameters it is answered with: only those the answer depends on
    (``ROUTE_PARAMS``), each in one spelling (a time to the minute below, a date as YYYY-MM-DD), so a
    parameter added or spelled otherwise neither changes the answer nor skips the cache."""
    params = {name: query[name] for name in ROUTE_PARAMS.get(path, ()) if name in query}
    for name in ("at", "from", "to"):  # the timeline's range too: from the minute, to the next one
        if params.get(name):
            params[name] = _minute(params[name], up=name == "to")
    if params.get("date"):
        params["date"] = _day(params["date"])
    return f"{path}?{urlencode(sorted(params.items()))}", params


def _minute(text: str, *, up: bool = False) -> str:
    try:
        ms = parse_iso_ms(text)
    except (ValueError, OverflowError):  # the handler answers it (400), uncached
        return text
    return local_iso(ms - ms % AT_STEP_MS + (AT_STEP_MS if up and ms % AT_STEP_MS else 0))


def _day(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        return text


class ScreenStore(StateStore):
    """The state layer, with the open alerts from the screen's live view once it is loaded."""

    def __init__(self, client: Any, settings: Any, live: OpenAlerts) -> None:
        super().__init__(client, settings)
        self.live = live

    async def active_alerts(self) -> list[dict[str, Any]]:
        return self.live.alerts() if self.live.loaded else await self.indexed_alerts()

    async def indexed_alerts(self) -> list[dict[str, Any]]:
        """Redis's index of open alerts (the worker's commits)."""
        return await super().active_alerts()


class Screen:
    """The screen's HTTP application over Redis (reads), the center's alerts (live) and a producer
    (directives)."""

    def __init__(self, blueprint: Blueprint) -> None:
        settings = blueprint.settings
        self.blueprint = blueprint
        self.redis = connect(settings)
        self.open_alerts = OpenAlerts()
        self.store = ScreenStore(self.redis, settings, self.open_alerts)
        self.model = ReadModel(self.store, blueprint.catalogue, blueprint.rulebook)
        self.api = Api(self.model)
        self.authenticator = Authenticator(settings.api_tokens_file)
        self.guard = guard_of(settings, self.authenticator)
        self.cache = AnswerCache(settings.screen_cache_s)
        self.broadcast = Broadcast()
        self.framing = output_framing(blueprint)
        self.commands = Commands(settings)
        self.reader: AlertReader | None = None
        hours_ms = round(settings.screen_timeline_hours * 3_600_000)
        self.timeline = Timeline(hours_ms, settings.screen_timeline_max)
        self.history: HistoryReader | None = None
        self.health = ScreenHealth(settings, self.redis, self.broadcast, lambda: self.reader)
        self._snapshots: asyncio.Task[None] | None = None

    def application(self) -> web.Application:
        app = web.Application(middlewares=[_security_headers])
        app.router.add_get("/", self.index)
        app.router.add_get("/static/{name}", self.asset)
        app.router.add_get("/screen/layout.json", self.layout)
        app.router.add_get("/livez", self.livez)
        app.router.add_get(PREFIX + "/whoami", self.whoami)
        app.router.add_get(PREFIX + "/openapi.yaml", self.openapi)
        app.router.add_get(PREFIX + "/alerts/stream", self.stream)
        app.router.add_get(PREFIX + TIMELINE, self._read(TIMELINE, self.alert_timeline))
        app.router.add_post(PREFIX + "/alerts/{key}/directives", self.direct)
        for path, handler in self.api.routes().items():
            app.router.add_get(PREFIX + path, self._read(path, handler))
        app.on_startup.append(self._start)
        app.on_shutdown.append(self._hang_up)
        app.on_cleanup.append(self._stop)
        self.health.install(app)  # /readyz, /metrics, answer times, pages told live or stale
        return app

    async def _start(self, app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        # the reader's thread may ask the registry about an id this process does not write with (a record
        # of an earlier framing, or of a newer worker); without a registry, the ids it writes with
        resolve = (
            registry.from_settings(self.blueprint.settings, self.blueprint.schemas) or self.framing.resolve
        )
        self.reader = AlertReader(self.blueprint, self._deliver, self._lost, loop, resolve)
        self.reader.start()
        self.history = HistoryReader(self.blueprint, self.timeline.add, loop, self.timeline.keep_ms, resolve)
        self.history.start()
        self._snapshots = asyncio.create_task(self._snapshot_alerts(self.reader))

    def _deliver(self, alert: dict[str, Any], event: bytes) -> None:
        self.open_alerts.opened(alert)
        metrics.SCREEN_EVENTS_PUSHED.inc(self.broadcast.publish(event))

    def _lost(self) -> None:
        """The reader stopped following: changes may be missed until it follows again."""
        self.open_alerts.forget()
        self.broadcast.close_all()  # pages reconnect and reload the open alerts (from Redis meanwhile)

    async def _snapshot_alerts(self, reader: AlertReader) -> None:
        """Redis's open alerts each time the reader starts following the topic, and every minute after
        (heals anything missed); until then, the open alerts are answered from Redis."""
        loaded_at, generation = -SNAPSHOT_S, 0
        failures, retry_at = 0, 0.0
        backoff = Backoff(0.4, SNAPSHOT_RETRY_MAX_S)
        while True:
            await asyncio.sleep(0.2)
            due = reader.generation != generation or time.monotonic() - loaded_at >= SNAPSHOT_S
            if not reader.following.is_set() or not due or time.monotonic() < retry_at:
                continue
            following = reader.generation
            try:
                self.open_alerts.load(await self.store.indexed_alerts())
            except Exception as exc:  # Redis away, a record not ours: tried again, backing off to 5 s
                failures += 1
                retry_at = time.monotonic() + backoff.next()
                if failures == 1:  # once, not five times a second for as long as Redis is away
                    log.warning("screen_alert_snapshot_failed", error=repr(exc))
                continue
            if failures:
                log.info("screen_alert_snapshot_recovered", failed_attempts=failures)
                failures = 0
                backoff.reset()
            loaded_at, generation = time.monotonic(), following
            if reader.generation != following or not reader.following.is_set():
                self.open_alerts.forget()  # it stopped or restarted meanwhile: read again

    async def _hang_up(self, app: web.Application) -> None:
        self.broadcast.close_all()  # the streams end now, not at the shutdown timeout

    async def _stop(self, app: web.Application) -> None:
        if self._snapshots is not None:
            self._snapshots.cancel()
        for reader in (self.reader, self.history):
            if reader is not None:
                await asyncio.to_thread(reader.stop)
        await self.commands.close()
        await self.redis.aclose()

    # ------------------------------------------------------------------------------- the page

    async def index(self, request: web.Request) -> web.Response:
        body = (STATIC / "index.html").read_bytes()
        return web.Response(body=body, content_type="text/html", charset="utf-8")

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in ASSETS:
            raise web.HTTPNotFound
        return web.Response(
            body=(STATIC / name).read_bytes(),
            content_type=ASSETS[name],
            charset="utf-8" if ASSETS[name].startswith("text/") else None,
            headers={"Cache-Control": "no-cache"},
        )

    async def layout(self, request: web.Request) -> web.Response:
        regions = self.blueprint.catalogue.regions
        tiles = [
            {"region": code, "name": regions[code].name, "row": row, "col": col}
            for code, (row, col) in sorted(TILES.items())
        ]
        stations = {code: station.name for code, station in sorted(self.blueprint.catalogue.stations.items())}
        return web.json_response({"tiles": tiles, "stations": stations}, dumps=_dumps)

    async def livez(self, request: web.Request) -> web.Response:
        following = self.reader is not None and self.reader.following.is_set()
        return web.json_response(
            {"live": True, "following_alerts": following, "pages_following": self.broadcast.pages}
        )

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(body=OPENAPI.read_bytes(), content_type="application/yaml")

    # ------------------------------------------------------------------------------- the API

    async def _limited(
        self,
        request: web.Request,
        role: str,
        serve: Callable[[Identity], Awaitable[web.StreamResponse]],
        *,
        hold: bool = True,
    ) -> web.StreamResponse:
        """``serve(identity)`` for a caller within its limits (429) whose token has ``role`` (401/403);
        ``hold=False`` for a request that stays open (it spends from the rate only)."""

        async def gated(identity: Identity | None) -> web.StreamResponse:
            refused: web.StreamResponse | None = self.authenticator.refuse(_Answers, identity, role)
            if refused is not None or identity is None:
                return refused or web.HTTPUnauthorized()
            return await serve(identity)

        response: web.StreamResponse = await self.guard.limited(_Answers, request, gated, hold=hold)
        return response

    async def whoami(self, request: web.Request) -> web.StreamResponse:
        async def serve(identity: Identity) -> web.StreamResponse:
            return web.json_response(whoami(identity))

        return await self._limited(request, "viewer", serve)

    def _read(self, path: str, handler: Any) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def read(request: web.Request) -> web.StreamResponse:
            return await self._limited(request, "viewer", lambda _: self._answer(path, handler, request))

        return read

    async def _answer(self, path: str, handler: Any, request: web.Request) -> web.StreamResponse:
        key, params = question(path, request.query)
        if path == TIMELINE:  # answered from memory: reused until the timeline changes, never older
            key += f"#{self.timeline.version}:{self._timeline_caught_up()}"
        if path in LIVE_ANSWERS:
            status, body = await answer(handler, params)
            encoded = _json_bytes(body)
        else:
            ttl = SLOW_ANSWERS_S if path in SLOW_ANSWERS and self.cache.ttl_s > 0 else None
            status, encoded = await self.cache.get(key, lambda: answer(handler, params), ttl)
        return web.Response(body=encoded, status=status, content_type="application/json")

    async def alert_timeline(self, params: dict[str, str], now_ms: int) -> dict[str, Any]:
        """``GET /api/v1/alerts/timeline``: a page of the alert changes the screen read from
        center.alerts (:mod:`stream_app.screen.timeline`). ``complete`` says whether the screen holds
        the whole range: it caught up with the topic, and kept everything since ``from``."""
        query = timeline_query(params, now_ms)
        answer = page(self.timeline.between(query.start_ms, query.end_ms), query)
        caught_up = self._timeline_caught_up()
        kept_from = max(now_ms - self.timeline.keep_ms, self.timeline.dropped_before)
        answer["complete"] = caught_up and query.start_ms >= kept_from
        answer["kept_from"] = kept_from
        return answer

    def _timeline_caught_up(self) -> bool:
        """Whether the timeline's reader has read center.alerts up to its end (once, at least)."""
        return self.history is not None and self.history.confirmed_at is not None

    async def direct(self, request: web.Request) -> web.StreamResponse:
        """A directive, forwarded to the workers' API with the operator's token
        (:mod:`stream_app.screen.commands`)."""

        async def serve(identity: Identity | None) -> web.StreamResponse:
            if identity is None:  # a 401, as the workers would answer it
                return cast(web.StreamResponse, self.authenticator.refuse(_Answers, identity, "operator"))
            # the workers judge the role: a viewer's attempt is audited there
            return await self.commands.forward(request, request.match_info["key"], identity)

        limited: web.StreamResponse = await self.guard.limited(_Answers, request, serve)
        return limited

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """``GET /api/v1/alerts/stream``: every alert change, as server-sent events (``event: alert``),
        for as long as the token is a viewer's (checked again at each heartbeat)."""
        return await self._limited(request, "viewer", lambda _: self._follow(request), hold=False)

    async def _follow(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):  # the page went away
            await response.write(b"retry: 2000\n\n")
            async with self.broadcast.follow() as queue:
                ended = await pump(queue, response.write, lambda: self._still_viewer(request), HEARTBEAT_S)
            if ended == "revoked":
                metrics.API_STREAMS_REVOKED.inc()
        return response

    def _still_viewer(self, request: web.Request) -> bool:
        """Whether the stream's token still stands for a viewer (the tokens file is read again when it
        changed: a revoked token is no longer in it)."""
        identity = self.authenticator.identify(request)
        return identity is not None and identity.may("viewer")


@web.middleware
async def _security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    response.headers.update(SECURITY_HEADERS)
    return response


def run_screen(blueprint: Blueprint) -> int:
    """Serve the screen until SIGINT or SIGTERM."""
    settings = blueprint.settings
    if settings.screen_nice:
        os.nice(settings.screen_nice)  # readers yield the CPU to the writers on a shared host
    screen = Screen(blueprint)
    log.info("screen_starting", page=f"http://{settings.screen_host}:{settings.screen_port}/")
    web.run_app(
        screen.application(),
        host=settings.screen_host,
        port=settings.screen_port,
        print=None,
        handle_signals=True,
        shutdown_timeout=5.0,
    )
    return 0
