"""The query API (HTTP, JSON): its handlers, authentication, limits and directives.

Readers never slow the writers: the API's reads are served by ``stream-app screen``
(:mod:`stream_app.screen.server`), a process of its own, never by a worker's event loop. A worker serves
its probes, ``/metrics`` and, from this module, the directives the API process forwards to it
(:func:`register`): the one write of the API, by the principal allowed to write directives and audit
records. ``STREAM_APP_WORKER_QUERY_API`` adds the reads to a worker too (a trial without a screen; not
under load: 8 clients at 76 requests/s tripled the stream's latency).

Documented in ``docs/openapi.yaml`` (also served at ``/api/v1/openapi.yaml``). Every request carries
a bearer token (``stream_app.api.auth``): without one, or with an unknown one, 401; a role too low, 403.
Reads (viewer): the answers come from Redis (``stream_app.api.read_model``), so any worker answers for every
entity. A wrong parameter gets a 400 with a message naming it; nothing stored gets a 404. Writes
(operator): ``POST /api/v1/alerts/{key}/directives`` publishes a directive to ``center.directives`` in
the operator's name, and an audit record to ``center.audit``; a directive the state already shows to be
about an earlier occurrence of the alert is refused with a 409 (``stale_alert``) and nothing is published.

A dependency down never hangs a request nor gets a 500: a read answers within ``ANSWER_TIMEOUT_S``, a
directive within ``STREAM_APP_API_WRITE_TIMEOUT_S``, and while Redis (for a read) or Kafka (for a
directive) does not answer it is a 503 whose JSON body names it: ``{"error": "unavailable",
"dependency": "redis", "detail": ...}``.

Manners (docs/operations.md, "API limits"): each token (or, without one, each client address) has a
request rate and a number of requests in flight (429 with Retry-After, :class:`Guard`); a body is
bounded (413) and must be UTF-8 JSON whose texts are characters (400 naming why).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote

import faust
from faust.web import View
from redis.exceptions import RedisError

from stream_app.api import audit
from stream_app.api.auth import Identity, load_tokens
from stream_app.api.bodies import (
    BodyRefusedError,
    check_declared_size,
    check_text,
    parse_json,
    printable,
    read_bounded,
)
from stream_app.api.limits import Refusal, RefusalAudits, RequestLimits, address_caller, token_caller
from stream_app.api.read_model import BadRequest, NotFound, ReadModel, series_param
from stream_app.config.blueprint import Blueprint
from stream_app.domain.clock import local_date, parse_iso_ms
from stream_app.domain.directives import ACTIONS, DirectiveRecord, TextLimits, action_of, build, too_long
from stream_app.domain.entity import (
    DirectiveRefusal,
    EntityState,
    checked_entity,
    entity_of_alert_key,
    stale_occurrence,
)
from stream_app.domain.rollup import NATIONAL
from stream_app.kafka.acl import own_principal
from stream_app.kafka.publisher import Output
from stream_app.logs import get_logger
from stream_app.ops import metrics, retry
from stream_app.paths import data_file
from stream_app.settings import Settings
from stream_app.wire import codecs

OPENAPI = data_file("openapi.yaml")  # docs/openapi.yaml, package data in a wheel
PREFIX = "/api/v1"
# Every answer comes within this: a dependency that has not answered by then gets a 503 naming it. Above
# the time a healthy Redis or Kafka takes by far, below the clients' own timeouts (a Redis command's
# socket times out after 5 s, Kafka's delivery after 30 s: the request would hang as long).
ANSWER_TIMEOUT_S = 5.0
# The occurrence check before publishing a directive waits this long for Redis at most: past it, the
# directive is published unchecked, and the worker's step refuses it if it is stale (that check is the
# one that holds; this one only answers the operator at once).
STATE_CHECK_TIMEOUT_S = 1.0
# Told to an operator whose directive Kafka would not take (503 Retry-After): Kafka's outages outlast a
# request, and a directive sent again at once would only queue behind the first one.
KAFKA_RETRY_AFTER_S = 30
# Audit records of unconfirmed directives sent in the background at once, at most: Kafka refused the
# directive just before, so they may wait as long as it is away; past this many, the log line only.
MAX_PENDING_AUDITS = 256

log = get_logger(__name__)

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
            "/history": self.history,
            "/rollups": self.rollups,
            "/alerts/active": self.alerts,
            "/compliance": self.compliance,
            "/briefing": self.briefing,
            "/overview": self.overview,
            "/region": self.region,
        }

    async def indicators(self, params: dict[str, str], now_ms: int) -> Any:
        return {"indicators": self.model.indicators()}

    async def latest(self, params: dict[str, str], now_ms: int) -> Any:
        return await self.model.latest(self.model.where(params))

    async def windows(self, params: dict[str, str], now_ms: int) -> Any:
        return await self.model.windows(self.model.where(params))

    async def periods(self, params: dict[str, str], now_ms: int) -> Any:
        return await self.model.periods(self.model.where(params), params.get("period"), now_ms)

    async def history(self, params: dict[str, str], now_ms: int) -> Any:
        where = self.model.where(params)
        return await self.model.history(where, params.get("frequency") or None, now_ms)

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

    async def overview(self, params: dict[str, str], now_ms: int) -> Any:
        return await self.model.overview(params.get("indicator") or None)

    async def region(self, params: dict[str, str], now_ms: int) -> Any:
        return await self.model.region(params.get("region"), now_ms)

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


class Authenticator:
    """Authenticates requests against the tokens file, read again whenever it changes."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._stamp: float | None = None
        self._tokens = load_tokens(None)

    def identify(self, request: Any) -> Identity | None:
        if self.path is not None:
            try:
                stamp = self.path.stat().st_mtime
            except OSError:
                stamp = None
            if stamp != self._stamp:
                self._tokens = load_tokens(self.path) if stamp is not None else load_tokens(None)
                self._stamp = stamp
        return self._tokens.identify(request.headers.get("Authorization"))

    def refuse(self, web: Any, identity: Identity | None, role: str) -> Any | None:
        """The 401 or 403 answer for a request that may not do what needs ``role``; None if it may."""
        if identity is None:
            return web.json(
                {
                    "error": "unauthorized",
                    "detail": "a bearer token is required (Authorization: Bearer <token>)",
                },
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="stream-app"'},
            )
        if not identity.may(role):
            return web.json(
                {
                    "error": "forbidden",
                    "detail": f"{identity.name} is a {identity.role}; this needs a {role}",
                },
                status=403,
            )
        return None


Serve = Callable[[Identity | None], Awaitable[Any]]


class Guard:
    """The request limits (429) in front of every authenticated page: who asks (the authenticator's identity,
    or the client's address when it has none) may make so many requests a second and have so many
    being answered (``stream_app.api.limits``)."""

    def __init__(self, authenticator: Authenticator, limits: RequestLimits) -> None:
        self.authenticator = authenticator
        self.limits = limits

    async def limited(self, web: Any, request: Any, serve: Serve, *, hold: bool = True) -> Any:
        """``serve(identity)``'s answer, or a 429 when the caller is over a limit. ``hold=False``: a
        request that stays open (a live stream) spends from the rate but holds no slot."""
        identity = self.authenticator.identify(request)
        caller = caller_of(identity, request)
        refusal = self.limits.enter(caller, hold=hold)
        if refusal is not None:
            metrics.API_REQUESTS_LIMITED.labels(refusal.reason, caller.partition(":")[0]).inc()
            return too_many(web, refusal)
        if not hold:
            return await serve(identity)
        try:
            return await serve(identity)
        finally:
            self.limits.leave(caller)


def caller_of(identity: Identity | None, request: Any) -> str:
    """Whom a request's limits count against: its token, or (no known token) its peer's address."""
    if identity is not None:
        return token_caller(identity.token_id or identity.name)
    return address_caller(getattr(request, "remote", None))


def too_many(web: Any, refusal: Refusal) -> Any:
    return web.json(refusal.body(), status=429, headers={"Retry-After": str(refusal.retry_after_s)})


def guard_of(settings: Settings | None, authenticator: Authenticator) -> Guard:
    """The guard of a server: its authenticator, and limits from the settings (the defaults without any)."""
    return Guard(authenticator, RequestLimits.from_settings(settings if settings is not None else Settings()))


def register(
    app: faust.App,
    model: ReadModel,
    blueprint: Blueprint | None = None,
    publisher: Any = None,
    *,
    reads: bool = True,
) -> None:
    """Add the API's pages to the worker's web server: the directives (when ``publisher`` is given;
    ``model``'s store tells a stale one at once), and the reads unless ``reads`` is False (the worker's
    default, ``STREAM_APP_WORKER_QUERY_API``: the screen's process answers them)."""
    settings = blueprint.settings if blueprint is not None else None
    authenticator = Authenticator(settings.api_tokens_file if settings is not None else None)
    guard = guard_of(settings, authenticator)
    if blueprint is not None and publisher is not None:
        directives = Directives(blueprint, publisher, authenticator, model.store)

        class DirectivesView(View):
            async def post(self, request: Any, key: str) -> Any:
                async def serve(identity: Identity | None) -> Any:
                    return await directives.accept(self, request, key, identity)

                return await guard.limited(self, request, serve)

        app.page(PREFIX + "/alerts/{key}/directives")(DirectivesView)
    if not reads:
        return
    for path, handler in Api(model).routes().items():
        app.page(PREFIX + path)(_page(path, handler, guard))

    @app.page(PREFIX + "/whoami")
    async def who(web: Any, request: Any) -> Any:
        async def serve(identity: Identity | None) -> Any:
            refused = authenticator.refuse(web, identity, "viewer")
            if refused is not None or identity is None:
                return refused
            return web.json(whoami(identity))

        return await guard.limited(web, request, serve)

    @app.page(PREFIX + "/openapi.yaml")
    async def openapi(web: Any, request: Any) -> Any:
        return web.bytes(OPENAPI.read_bytes(), content_type="application/yaml")


class EntityStates(Protocol):
    """What the directives endpoint reads of the state: an entity's hash, decoded."""

    async def entity_state(self, entity: str) -> EntityState | None: ...


class Directives:
    """``POST /api/v1/alerts/{key}/directives``: an operator acts on an alert.

    ``states``: where to read the alert's current occurrence from, to refuse at once (409) a
    directive about an earlier one; without it every directive is published and checked by the worker.

    Every directive is audited once: accepted (Kafka acknowledged it), unconfirmed (Kafka did not within
    ``STREAM_APP_API_WRITE_TIMEOUT_S``: the producer may still deliver it), failed, or refused (role,
    body, stale occurrence; at most ``STREAM_APP_API_REFUSAL_AUDITS_PER_MINUTE`` records per token).
    """

    def __init__(
        self,
        blueprint: Blueprint,
        publisher: Any,
        authenticator: Authenticator,
        states: EntityStates | None = None,
    ) -> None:
        settings = blueprint.settings
        self.blueprint = blueprint
        self.publisher = publisher
        self.authenticator = authenticator
        self.states = states
        self.topic = blueprint.topic_by_role("directives").name
        self.schema = blueprint.schemas.latest("directive")
        self.writer = own_principal(settings)  # who wrote it, beside who asked for it
        self.write_timeout_s = settings.api_write_timeout_s
        self.max_body_bytes = settings.api_max_body_bytes
        self.refusal_audits = RefusalAudits(settings.api_refusal_audits_per_minute)
        self._pending_audits: set[asyncio.Future[Any]] = set()

    async def post(self, web: Any, request: Any, key: str) -> Any:
        """The directive of whoever the request's token stands for (the request limits are the
        server's: :class:`Guard`)."""
        return await self.accept(web, request, key, self.authenticator.identify(request))

    async def accept(self, web: Any, request: Any, key: str, identity: Identity | None) -> Any:
        """The answer to a directive posted by ``identity`` (None: no known token)."""
        refused = self.authenticator.refuse(web, identity, "operator")
        if refused is not None:
            if identity is not None:  # a known identity trying what its role does not allow
                await self._refused(identity, key, "role", {})
            return refused
        assert identity is not None  # noqa: S101 - refuse() answered otherwise
        try:
            directive = self._directive(unquote(key), await self._body(request), identity)
        except BodyRefusedError as exc:
            metrics.API_BODIES_REFUSED.labels(exc.reason).inc()
            await self._refused(identity, key, exc.reason, {})
            return web.json(exc.body(), status=exc.status)
        except BadRequest as exc:
            await self._refused(identity, key, "bad_request", {"detail": printable(str(exc))})
            return web.json({"error": "bad_request", "detail": str(exc)}, status=400)
        stale = await self._stale(directive)
        if stale is not None:
            reason = DirectiveRefusal.STALE_ALERT.value
            await self._refused(identity, key, reason, {"alert_id": directive["alert_id"]})
            body = {
                "error": "conflict",
                "reason": reason,
                "detail": stale,
                "alert_key": directive["alert_key"],
            }
            return web.json(body, status=409)
        return await self._send(web, directive, identity)

    async def _body(self, request: Any) -> Any:
        """The request's JSON body, read up to ``STREAM_APP_API_MAX_BODY_BYTES`` (413 past it)."""
        check_declared_size(getattr(request, "content_length", None), self.max_body_bytes)
        return parse_json(await read_bounded(request.content, self.max_body_bytes))

    async def _send(self, web: Any, directive: DirectiveRecord, identity: Identity) -> Any:
        """Publish the directive, then audit what became of it: its audit record is sent once Kafka has
        answered, so it never says accepted of a directive Kafka did not take."""
        alert_key = directive["alert_key"]
        details = {k: directive[k] or "" for k in ("directive_id", "action", "assignee", "comment")}
        value = codecs.encode(self.schema, directive)
        trouble = await self._publish(
            directive["directive_id"], [Output(self.topic, alert_key.encode(), value)]
        )
        if trouble is not None:
            outcome = "unconfirmed" if trouble["delivery"] == "unconfirmed" else "failed"
            # Kafka just failed this directive: its audit record waits for Kafka in the background
            # rather than keep the operator waiting a second bound
            self._audit_later(identity, alert_key, outcome, {**details, "delivery": trouble["delivery"]})
            return web.json(trouble, status=503, headers={"Retry-After": str(KAFKA_RETRY_AFTER_S)})
        await self._audit(identity, alert_key, "accepted", details)
        return web.json(
            {"directive_id": directive["directive_id"], "alert_key": alert_key, "actor": identity.name},
            status=202,
        )

    async def _stale(self, directive: DirectiveRecord) -> str | None:
        """Why ``directive`` is about an earlier occurrence of its alert, when the state already shows
        it; None when it does not, or cannot tell now (no state to read, Redis down or slow)."""
        if self.states is None or "redis" in retry.unavailable():
            return None
        alert_key = directive["alert_key"]
        entity = entity_of_alert_key(alert_key)
        if entity is None:  # _directive refused it already
            return None
        try:
            async with asyncio.timeout(STATE_CHECK_TIMEOUT_S):
                state = await self.states.entity_state(entity)
        except (
            RedisError,
            OSError,
            ValueError,
        ) as exc:  # TimeoutError is an OSError; ValueError: undecodable
            log.warning("directive_not_checked", alert_key=alert_key[:300], error=repr(exc)[:300])
            return None
        meta = state.meta.get(alert_key.split("|", 1)[0]) if state is not None else None
        return stale_occurrence(meta, directive) if meta is not None else None

    async def _publish(self, directive_id: str, outputs: list[Output]) -> dict[str, str] | None:
        """Publish a directive; the body of the 503 when Kafka did not take it, whose ``delivery`` says
        what may become of it: ``not_sent`` (nothing was handed to the producer), ``unconfirmed`` (handed
        over, not acknowledged in time: the producer may still deliver it), ``refused`` (for good).

        The publisher retries a transient failure for ever (the pipeline must not lose a record); an
        operator must not wait for ever, so the wait is bounded here and the publish abandoned."""
        if "kafka" in retry.unavailable():  # known down: refused before anything is handed to the producer
            detail = "Kafka is not taking records now (see /readyz): nothing was published"
            return {**unavailable("kafka", detail), "delivery": "not_sent", "directive_id": directive_id}
        try:
            async with asyncio.timeout(self.write_timeout_s):
                failed = await self.publisher.publish(outputs)
        except TimeoutError:
            metrics.API_WRITES_UNCONFIRMED.inc()
            detail = (
                f"Kafka did not acknowledge the directive within {self.write_timeout_s:g} s. It was handed to"
                " the producer and may still be delivered: look for its directive_id on the screen or the"
                " directives topic before sending it again"
            )
            return {**unavailable("kafka", detail), "delivery": "unconfirmed", "directive_id": directive_id}
        if failed:
            detail = f"not published: {failed[0][1]}"
            return {**unavailable("kafka", detail), "delivery": "refused", "directive_id": directive_id}
        return None

    def _directive(self, alert_key: str, body: Any, identity: Identity) -> DirectiveRecord:
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        check_text("the alert key", alert_key)
        entity = entity_of_alert_key(alert_key)
        if entity is None:
            raise BadRequest(f"alert key {alert_key!r} is not <rule>|<indicator>|<region>|<station or ->")
        try:
            key = checked_entity(self.blueprint.catalogue, entity)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        action = action_of(body.get("action"))
        if action is None:
            raise BadRequest(f"action {body.get('action')!r} is not one of {list(ACTIONS)}")
        text = self._texts(body)
        return build(
            alert_key=alert_key,
            alert_id=text["alert_id"] or "",
            reporter=self.blueprint.catalogue.indicators[key.indicator].owner,
            action=action,
            actor=identity.name,
            assignee=text["assignee"],
            comment=text["comment"],
            issued_at=int(time.time() * 1000),
            token_id=identity.token_id,
            writer=self.writer,
        )

    def _texts(self, body: dict[str, Any]) -> dict[str, str | None]:
        """The directive's free texts, each a string of characters within its length."""
        limits = TextLimits.configured(self.blueprint.settings)
        text: dict[str, str | None] = {}
        for name in ("assignee", "comment", "alert_id"):
            value = body.get(name)
            if value is not None and not isinstance(value, str):
                raise BadRequest(f"{name} must be a string")
            if value is not None:
                check_text(name, value)
                problem = too_long({name: value}, limits, (name,))
                if problem is not None:
                    raise BadRequest(problem)
            text[name] = value
        return text

    async def _refused(self, identity: Identity, key: str, reason: str, details: dict[str, str]) -> None:
        """Audit a refused directive, unless its token has had its share of refusal records this minute
        (then it is counted, and the token's next audited refusal says how many were not)."""
        unaudited = self.refusal_audits.admit(identity.token_id or identity.name)
        if unaudited is None:
            metrics.API_REFUSALS_UNAUDITED.labels(reason).inc()
            return
        noted = {"reason": reason, **details}
        if unaudited:
            noted["unaudited_refusals_before"] = str(unaudited)
        await self._audit(identity, printable(unquote(key))[:300], "refused", noted)

    def _record(self, identity: Identity, subject: str, outcome: str, details: dict[str, str]) -> Output:
        record = audit.event(
            actor=identity.name,
            role=identity.role,
            source="http",
            action="directive",
            subject=subject,
            outcome=outcome,
            details={**details, "token_id": identity.token_id, "writer": self.writer},
        )
        topic, audit_key, value = audit.encode(self.blueprint, record)
        return Output(topic, audit_key, value)

    async def _audit(self, identity: Identity, subject: str, outcome: str, details: dict[str, str]) -> None:
        """Publish an audit record; the answer waits for it ``ANSWER_TIMEOUT_S`` at most."""
        output = self._record(identity, subject, outcome, details)
        try:  # the answer is given whatever happens to its audit record: bounded like every answer
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                await self.publisher.publish([output])
        except TimeoutError:
            log.warning("audit_not_acknowledged", actor=identity.name, outcome=outcome, subject=subject[:300])

    def _audit_later(self, identity: Identity, subject: str, outcome: str, details: dict[str, str]) -> None:
        """Publish an audit record in the background, for as long as Kafka takes (the log line is
        written now); past ``MAX_PENDING_AUDITS`` waiting, the log line only."""
        output = self._record(identity, subject, outcome, details)
        if len(self._pending_audits) >= MAX_PENDING_AUDITS:
            log.warning("audit_not_sent", actor=identity.name, outcome=outcome, subject=subject[:300])
            return
        pending = asyncio.ensure_future(self.publisher.publish([output]))
        self._pending_audits.add(pending)
        pending.add_done_callback(self._audit_sent)

    def _audit_sent(self, pending: asyncio.Future[Any]) -> None:
        self._pending_audits.discard(pending)
        if not pending.cancelled() and pending.exception() is not None:
            log.warning("audit_not_sent", error=repr(pending.exception())[:300])


def _page(path: str, handler: Handler, guard: Guard) -> Callable[[Any, Any], Awaitable[Any]]:
    async def page(web: Any, request: Any) -> Any:
        async def serve(identity: Identity | None) -> Any:
            refused = guard.authenticator.refuse(web, identity, "viewer")
            if refused is not None:
                return refused
            status, body = await answer(handler, dict(request.query.items()))
            return web.json(body, status=status)

        return await guard.limited(web, request, serve)

    page.__name__ = page.__qualname__ = "api_" + path.strip("/").replace("/", "_")
    return page


def unavailable(dependency: str, detail: str) -> dict[str, str]:
    """The body of a 503: which dependency is down (``redis``, ``kafka``, ``state``) and what it means."""
    return {"error": "unavailable", "dependency": dependency, "detail": detail}


async def answer(handler: Handler, params: dict[str, str]) -> tuple[int, Any]:
    """A read's HTTP status and JSON body: 400 for a wrong parameter, 404 for nothing stored, 503 naming
    the dependency while Redis does not answer (within ``ANSWER_TIMEOUT_S``) or the state is being
    rebuilt."""
    if "state_lost" in retry.retrying():  # the state lacks what was acknowledged: no answer is true
        detail = "the state is being rebuilt from the log (stream-app state rebuild); ask again later"
        return 503, unavailable("state", detail)
    try:
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            return 200, await handler(params, int(time.time() * 1000))
    except BadRequest as exc:
        return 400, {"error": "bad_request", "detail": str(exc)}
    except NotFound as exc:
        return 404, {"error": "not_found", "detail": str(exc)}
    except (RedisError, OSError) as exc:  # a timeout too (TimeoutError is an OSError): Redis did not answer
        if isinstance(exc, TimeoutError) and not isinstance(exc, RedisError):
            detail = f"the state store did not answer within {ANSWER_TIMEOUT_S:g} s"
        else:
            detail = f"state store: {exc}"
        return 503, unavailable("redis", detail)


def whoami(identity: Identity) -> dict[str, Any]:
    """``GET /api/v1/whoami``: who the token stands for and what it may do (a page shows its controls
    by it; the server checks every request anyway)."""
    return {"name": identity.name, "role": identity.role, "may_direct": identity.may("operator")}


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
        return parse_iso_ms(text)
    except ValueError:
        raise BadRequest(
            f"at {text!r} is not an ISO-8601 time with its offset (e.g. 2025-08-01T00:00+07:00)"
        ) from None
