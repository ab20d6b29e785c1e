"""The query API (HTTP, JSON), served by every worker next to ``/metrics`` and the probes.

Documented in ``docs/openapi.yaml`` (also served at ``/api/v1/openapi.yaml``). Reads only: the
answers come from Redis (``stream_app.queries``), so any worker answers for every entity. A wrong
parameter gets a 400 with a message naming it; nothing stored gets a 404; Redis unreachable a 503.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import faust
from redis.exceptions import RedisError

from stream_app.calendar import local_date
from stream_app.queries import BadRequest, NotFound, ReadModel, series_param
from stream_app.rollup import NATIONAL

OPENAPI = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
PREFIX = "/api/v1"

Handler = Callable[[dict[str, str], int], Awaitable[Any]]


class Api:
    """The API's handlers: parameters in, a JSON body out (or BadRequest / NotFound)."""

    def __init__(self, model: ReadModel) -> None:
        self.model = model

    def routes(self) -> dict[str, Handler]:
        return {
            "/indicators": self.indicators,
            "/latest": self.latest,
            "/windows": self.windows,
            "/periods": self.periods,
            "/rollups": self.rollups,
            "/alerts/active": self.alerts,
            "/compliance": self.compliance,
            "/briefing": self.briefing,
        }

    async def indicators(self, params: dict[str, str], now_ms: int) -> Any:
        return {"indicators": self.model.indicators()}

    async def latest(self, params: dict[str, str], now_ms: int) -> Any:
        return await self.model.latest(self.model.where(params))

    async def windows(self, params: dict[str, str], now_ms: int) -> Any:
        return await self.model.windows(self.model.where(params))

    async def periods(self, params: dict[str, str], now_ms: int) -> Any:
        return await self.model.periods(self.model.where(params), params.get("period"), now_ms)

    async def rollups(self, params: dict[str, str], now_ms: int) -> Any:
        indicator = self.model.indicator(params.get("indicator"))
        series = series_param(params.get("breakdown"))
        region = params.get("region") or NATIONAL
        return await self.model.rollup(indicator, region, series, params.get("period"), now_ms)

    async def alerts(self, params: dict[str, str], now_ms: int) -> Any:
        domain = params.get("domain") or None
        if domain is not None and domain not in {i.domain for i in self.model.catalogue.indicators.values()}:
            raise BadRequest(f"unknown domain {domain!r}")
        found = await self.model.active_alerts(domain, _int(params, "min_level", 0))
        return {"count": len(found), "alerts": found}

    async def compliance(self, params: dict[str, str], now_ms: int) -> Any:
        return await self.model.compliance(params.get("reporter") or None, _time(params.get("at"), now_ms))

    async def briefing(self, params: dict[str, str], now_ms: int) -> Any:
        text = params.get("date")
        if not text:
            return await self.model.briefing(local_date(now_ms) - timedelta(days=1), now_ms)
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise BadRequest(f"date {text!r} is not YYYY-MM-DD") from None
        return await self.model.briefing(day, now_ms)


def register(app: faust.App, model: ReadModel) -> None:
    """Add the API's pages to the worker's web server."""
    for path, handler in Api(model).routes().items():
        app.page(PREFIX + path)(_page(path, handler))

    @app.page(PREFIX + "/openapi.yaml")
    async def openapi(web: Any, request: Any) -> Any:
        return web.bytes(OPENAPI.read_bytes(), content_type="application/yaml")


def _page(path: str, handler: Handler) -> Callable[[Any, Any], Awaitable[Any]]:
    async def page(web: Any, request: Any) -> Any:
        params = {k: v for k, v in request.query.items()}
        try:
            body = await handler(params, int(time.time() * 1000))
        except BadRequest as exc:
            return web.json({"error": "bad_request", "detail": str(exc)}, status=400)
        except NotFound as exc:
            return web.json({"error": "not_found", "detail": str(exc)}, status=404)
        except (RedisError, OSError) as exc:
            return web.json({"error": "unavailable", "detail": f"state store: {exc}"}, status=503)
        return web.json(body)

    page.__name__ = page.__qualname__ = "api_" + path.strip("/").replace("/", "_")
    return page


def _int(params: dict[str, str], name: str, default: int) -> int:
    text = params.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise BadRequest(f"{name} {text!r} is not an integer") from None


def _time(text: str | None, default_ms: int) -> int:
    if not text:
        return default_ms
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"at {text!r} is not an ISO-8601 time (e.g. 2025-08-01T00:00+07:00)") from None
    if moment.tzinfo is None:
        raise BadRequest(f"at {text!r} needs an offset (e.g. +07:00)")
    return int(moment.timestamp() * 1000)
