"""Readers of the query API's process (``stream-app screen``), for the "readers never slow the writers"
measurement: pages that follow live alerts and ask what the page asks, a steady rate of the page's
requests, and the API's own clients (other systems, each with its token, asking for the data itself).

A page here is what the browser page does over HTTP, without a browser (twenty browsers would measure
chromium on a two-core machine, not the screen): it loads what the page loads on start, keeps the
live-alert stream open, asks for the map again 1.5 s after each alert change and every 30 s. On top of
the pages, ``rate`` requests/s go round the page's questions (the map of each indicator, each
province's panel, open alerts, compliance, the briefing). The API's clients ask, together,
``client_rate`` requests/s of the data questions (:func:`data_questions`): the load that, served by a
worker's event loop, tripled the stream's latency (8 clients, 76 requests/s).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from stream_app.config.blueprint import Blueprint, load_blueprint
from stream_app.settings import Settings

PAGE_START = ("whoami", "indicators", "overview", "alerts/active")


def questions(blueprint: Blueprint) -> list[str]:
    """The page's questions, each once: the map per indicator, each unit's panel, and the rest."""
    catalogue = blueprint.catalogue
    maps = ["overview"] + [
        f"overview?indicator={code}"
        for code, indicator in sorted(catalogue.indicators.items())
        if indicator.region_level != "national"
    ]
    provinces = [code for code, r in sorted(catalogue.regions.items()) if r.kind == "current"]
    panels = [f"region?region={code}" for code in provinces]
    # the shift's views: the timeline (all, and a few provinces') and the handover's
    timeline = ["alerts/timeline", *(f"alerts/timeline?region={code}" for code in provinces[:5])]
    return [*maps, *panels, "alerts/active", "compliance", "briefing", *timeline]


def data_questions(blueprint: Blueprint) -> list[str]:
    """An API client's questions: the latest value, the windows, the periods and the past year (what a
    province panel's charts ask) of each indicator (no breakdown) at a station or a province that
    reports it."""
    catalogue = blueprint.catalogue
    provinces = [code for code, r in sorted(catalogue.regions.items()) if r.kind == "current"]
    asked = []
    for code, indicator in sorted(catalogue.indicators.items()):
        if indicator.breakdowns or indicator.region_level == "national":
            continue
        where = [f"region={region}" for region in provinces[:3]]
        if indicator.region_level == "station":
            stations = [s for s in catalogue.stations.values() if s.kind == indicator.station_kind][:3]
            where = [f"region={s.region}&station={s.code}" for s in stations]
        paths = ("latest", "windows", "periods", "history")
        asked += [f"{path}?indicator={code}&{place}" for place in where for path in paths]
    return asked


@dataclass
class Readers:
    """``pages`` following pages and ``rate`` requests/s against the screen at ``address``, in a thread."""

    address: str
    token: str
    asked: list[str]
    pages: int = 20
    rate: float = 50.0
    clients: list[str] = field(default_factory=list)  # the API clients' tokens, one each
    client_rate: float = 0.0  # requests/s of all the clients together
    client_asked: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    answered: list[float] = field(default_factory=list)  # seconds per answer
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # status or error -> count
    alert_events: int = 0
    started: float = 0.0
    finished: float = 0.0

    def run(self) -> None:
        asyncio.run(self._main())

    def figures(self) -> dict[str, Any]:
        seconds = max(1e-9, self.finished - self.started)
        ordered = sorted(self.answered)

        def rank(q: float) -> float:
            return (
                1000 * ordered[min(len(ordered) - 1, math.floor(q * len(ordered)))] if ordered else math.nan
            )

        return {
            "pages": self.pages,
            "api_clients": len(self.clients),
            "requests": len(self.answered),
            "requests_per_s": len(self.answered) / seconds,
            "failed": self.failed,
            "failures": self.failures,
            "alert_events_received": self.alert_events,
            "answer_ms": {"p50": rank(0.5), "p99": rank(0.99)},
        }

    async def _main(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        sessions: list[aiohttp.ClientSession] = []
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            self.started = time.perf_counter()
            tasks = [asyncio.create_task(self._page(session)) for _ in range(self.pages)]
            tasks.append(asyncio.create_task(self._steady(session, self.asked, self.rate)))
            for n, token in enumerate(self.clients):  # each its own session and token, its share of the rate
                client = aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}, timeout=timeout)
                sessions.append(client)
                asked = self.client_asked[n::] + self.client_asked[:n]
                rate = self.client_rate / len(self.clients)
                tasks.append(asyncio.create_task(self._steady(client, asked, rate, missing_ok=True)))
            await asyncio.to_thread(self.stop.wait)
            self.finished = time.perf_counter()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for client in sessions:
                await client.close()

    async def _get(self, session: aiohttp.ClientSession, path: str, missing_ok: bool = False) -> None:
        """Ask ``path``; a 404 (nothing stored yet) is an answer when ``missing_ok``."""
        began = time.perf_counter()
        try:
            async with session.get(f"{self.address}/api/v1/{path}") as response:
                await response.read()
                if response.status != 200 and not (missing_ok and response.status == 404):
                    self._fail(f"{path.split('?', maxsplit=1)[0]} {response.status}")
                    return
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._fail(f"{path.split('?', maxsplit=1)[0]} {type(exc).__name__}")
            return
        self.answered.append(time.perf_counter() - began)

    def _fail(self, what: str) -> None:
        self.failed += 1
        self.failures[what] = self.failures.get(what, 0) + 1

    async def _page(self, session: aiohttp.ClientSession) -> None:
        for path in PAGE_START:
            await self._get(session, path)
        refresh = asyncio.create_task(self._every(session, 30.0))
        try:
            async with session.get(f"{self.address}/api/v1/alerts/stream") as stream:
                pending: asyncio.Task[None] | None = None
                async for line in stream.content:
                    if line.startswith(b"event: alert"):
                        self.alert_events += 1
                        if pending is None or pending.done():  # the page's 1.5 s debounce
                            pending = asyncio.create_task(self._later(session, 1.5, "overview"))
        finally:
            refresh.cancel()

    async def _later(self, session: aiohttp.ClientSession, delay: float, path: str) -> None:
        await asyncio.sleep(delay)
        await self._get(session, path)

    async def _every(self, session: aiohttp.ClientSession, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            await self._get(session, "overview")

    async def _steady(
        self, session: aiohttp.ClientSession, asked: list[str], rate: float, *, missing_ok: bool = False
    ) -> None:
        """``rate`` requests/s of ``asked`` on schedule (a late one does not wait for the one before)."""
        if rate <= 0 or not asked:
            return
        began = time.perf_counter()
        running: set[asyncio.Task[None]] = set()
        for n, path in enumerate(itertools.cycle(asked)):
            wait = began + n / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            task = asyncio.create_task(self._get(session, path, missing_ok))
            running.add(task)
            task.add_done_callback(running.discard)


def main() -> int:
    """``python -m bench.readers ADDRESS TOKEN PAGES RATE [CLIENT_TOKENS CLIENT_RATE]``: read until stdin
    closes, then print the figures as JSON (a process of its own: the harness's measuring threads must not
    share its GIL). CLIENT_TOKENS: the API clients' tokens, comma-separated."""
    address, token, pages, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    clients = [t for t in sys.argv[5].split(",") if t] if len(sys.argv) > 5 else []
    client_rate = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    # It stands for browsers on other machines: on this one, it must not take the worker's CPU first.
    os.nice(10)
    blueprint = load_blueprint(Settings())
    readers = Readers(
        address, token, questions(blueprint), pages, rate, clients, client_rate, data_questions(blueprint)
    )

    def until_stdin_closes() -> None:
        sys.stdin.read()
        readers.stop.set()

    threading.Thread(target=until_stdin_closes, daemon=True).start()
    readers.run()
    print(json.dumps(readers.figures()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
