"""An operator's directive, from the screen to the workers' HTTP API.

The screen's processes hold a read-only Kafka principal (``center``): they never write a directive or
an audit record. A directive posted to the screen is forwarded, with the operator's own bearer token,
to the workers' API (``STREAM_APP_API_URL``), which authenticates the person, writes the directive in
their name (with the token's id and its own principal) and audits it once, accepted or refused. The
screen answers what the workers answered (202, 400, 403, 409 ``stale_alert``, 413, 429, 503).

The screen itself refuses only what it cannot forward: no known token (401, as the workers would,
unaudited there too), a body over ``STREAM_APP_API_MAX_BODY_BYTES`` (413: nothing of it was read), and
workers that do not answer within ``STREAM_APP_API_WRITE_TIMEOUT_S`` and a little more (503 naming
``workers``; the directive may have been taken: its audit record or the alert says).
"""

from __future__ import annotations

from urllib.parse import quote

import aiohttp
from aiohttp import web

from stream_app.api.auth import Identity
from stream_app.api.bodies import BodyRefusedError, check_declared_size, read_bounded
from stream_app.api.http import PREFIX, unavailable
from stream_app.logs import get_logger
from stream_app.ops import metrics
from stream_app.settings import Settings

log = get_logger(__name__)

FORWARD_MARGIN_S = 5.0  # beyond the workers' own bound on a directive, for the answer to travel back
RETRY_AFTER_S = 5
# What of the workers' answer reaches the page: its body and these headers.
PASSED_HEADERS = ("Retry-After",)


class Commands:
    """Forwards operators' directives to the workers' API."""

    def __init__(self, settings: Settings) -> None:
        self.base_url = settings.api_base_url
        self.max_body_bytes = settings.api_max_body_bytes
        self.timeout = aiohttp.ClientTimeout(total=settings.api_write_timeout_s + FORWARD_MARGIN_S)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def forward(self, request: web.Request, key: str, identity: Identity) -> web.Response:
        """The workers' answer to the directive ``request`` carries, posted with the same token (known
        to the screen: one it does not know is refused before, as the workers would)."""
        try:
            check_declared_size(request.content_length, self.max_body_bytes)
            payload = await read_bounded(request.content, self.max_body_bytes)
        except BodyRefusedError as exc:
            metrics.API_BODIES_REFUSED.labels(exc.reason).inc()
            return web.json_response(exc.body(), status=exc.status)
        url = f"{self.base_url}{PREFIX}/alerts/{quote(key, safe='')}/directives"
        headers = {
            "Authorization": request.headers.get("Authorization", ""),
            "Content-Type": "application/json",
        }
        try:
            async with self.session().post(url, data=payload, headers=headers) as answer:
                raw = await answer.read()
                passed = {h: answer.headers[h] for h in PASSED_HEADERS if h in answer.headers}
                return web.Response(
                    body=raw, status=answer.status, content_type="application/json", headers=passed
                )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.warning("directive_not_forwarded", actor=identity.name, url=url[:300], error=repr(exc)[:300])
            detail = (
                f"the workers' API ({self.base_url}) did not answer: the directive may or may not have been"
                " taken; look for it on the alert before sending it again"
            )
            return web.json_response(
                unavailable("workers", detail), status=503, headers={"Retry-After": str(RETRY_AFTER_S)}
            )
