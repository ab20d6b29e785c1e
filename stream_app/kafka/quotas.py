"""How much of the broker each reporter may use, as data: Kafka client quotas derived from the reporters.

One reporter must not starve the others. The worker shares its batches fairly between reporters
(:class:`stream_app.kafka.lanes.Lane`), but a reporter that produces as fast as it can still takes the
broker's network, disk and request threads from everyone else, and fills its topic faster than any
worker drains it. So every reporter's Kafka user (``reporter_principal``: its code in lower case) gets
two client quotas, as Kafka enforces them per authenticated user:

- ``producer_byte_rate``: bytes a second it may produce, over all its topics (live and bulk), as sent
  (compressed); the broker delays its answers (throttles) beyond it, nothing is refused or lost;
- ``request_percentage``: the share of one broker thread its requests may take (100 = a whole thread),
  which bounds a reporter sending floods of tiny requests that the byte rate would not catch.

Defaults from ``STREAM_APP_REPORTER_QUOTA_BYTES_PER_S`` and ``STREAM_APP_REPORTER_QUOTA_REQUEST_PERCENT``;
a reporter's own in ``catalogue/reporters.toml`` (``quota_bytes_per_s``, ``quota_request_percent``).
``plan`` compares them with the cluster, ``apply`` sets what differs; idempotent, like ``acl apply``.
Other quota keys of the same users (an operator's ``consumer_byte_rate``, say) are left alone.

confluent-kafka has no client-quota admin call: this speaks Kafka's AlterClientQuotas and
DescribeClientQuotas (KIP-546) through aiokafka's protocol layer, with the same credentials and CA as
every other client of the project (no password on a command line, as ``kafka-configs`` would want).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import DescribeClientQuotasRequest
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Float64, Int16, Int32, Schema, String

from stream_app.config.blueprint import Blueprint
from stream_app.exceptions import ServiceUnreachableError
from stream_app.kafka.acl import reporter_principal
from stream_app.kafka.config import ssl_context
from stream_app.settings import Settings

BYTE_RATE = "producer_byte_rate"
REQUEST_SHARE = "request_percentage"
MANAGED_KEYS = frozenset({BYTE_RATE, REQUEST_SHARE})

_USER = "user"
_MATCH_EXACT = 0  # DescribeClientQuotas: the entity named, and only it


@dataclass(frozen=True, order=True, slots=True)
class Quota:
    """One client quota: Kafka user ``user`` (a reporter's) is held to ``value`` for ``key``."""

    user: str
    key: str  # producer_byte_rate | request_percentage
    value: float

    def __str__(self) -> str:
        return f"User:{self.user:<13} {self.key:<20} {_number(self.value)}"


@dataclass(frozen=True, slots=True)
class QuotaPlan:
    """What ``apply`` would change: quotas to set (missing or different on the cluster)."""

    to_set: list[Quota]
    have: dict[tuple[str, str], float]  # the cluster's managed quotas, (user, key) -> value

    @property
    def empty(self) -> bool:
        return not self.to_set

    def before(self, quota: Quota) -> float | None:
        """The cluster's value of ``quota``'s key for its user (None: no quota)."""
        return self.have.get((quota.user, quota.key))


def _number(value: float) -> str:
    """A quota as an operator reads it: 262,144 (bytes/s), 25 (percent)."""
    return f"{value:,.0f}" if value.is_integer() else f"{value:g}"


def reporter_user(code: str) -> str:
    """A reporter's Kafka user name, as its ACLs name it (``MAE`` -> ``mae``)."""
    return reporter_principal(code).removeprefix("User:")


def quotas(blueprint: Blueprint) -> set[Quota]:
    """The quotas the reporters call for: the catalogue's own, else the settings' defaults."""
    settings = blueprint.settings
    out: set[Quota] = set()
    for code, reporter in blueprint.catalogue.reporters.items():
        user = reporter_user(code)
        byte_rate = reporter.quota_bytes_per_s or settings.reporter_quota_bytes_per_s
        share = reporter.quota_request_percent or settings.reporter_quota_request_percent
        out.add(Quota(user, BYTE_RATE, float(byte_rate)))
        out.add(Quota(user, REQUEST_SHARE, float(share)))
    return out


def plan(blueprint: Blueprint, users: set[str] | None = None) -> QuotaPlan:
    """The reporters' quotas missing on the cluster or set to another value there (``users``: only
    these Kafka users', e.g. one reporter's being onboarded)."""
    wanted = {q for q in quotas(blueprint) if users is None or q.user in users}
    have = current(blueprint.settings, {q.user for q in wanted})
    return QuotaPlan(sorted(q for q in wanted if have.get((q.user, q.key)) != q.value), have)


def apply(blueprint: Blueprint, users: set[str] | None = None) -> QuotaPlan:
    """Make the cluster's reporter quotas match ``quotas``; returns what was changed."""
    change = plan(blueprint, users)
    if not change.empty:
        alter(blueprint.settings, {(q.user, q.key): q.value for q in change.to_set})
    return change


def current(settings: Settings, users: Iterable[str]) -> dict[tuple[str, str], float]:
    """The managed quotas (``MANAGED_KEYS``) the cluster holds for ``users``, by (user, key)."""
    return asyncio.run(_describe(settings, sorted(set(users))))


def alter(settings: Settings, changes: Mapping[tuple[str, str], float | None]) -> None:
    """Set (a value) or remove (None) quotas, by (user, key): what a test uses on its own users."""
    by_user: dict[str, list[tuple[str, float, bool]]] = {}
    for (user, key), value in sorted(changes.items()):
        by_user.setdefault(user, []).append((key, 0.0 if value is None else value, value is None))
    entries = [([(_USER, user)], ops) for user, ops in by_user.items()]
    asyncio.run(_alter(settings, entries))


def remove(settings: Settings, user: str) -> list[str]:
    """Remove the managed quotas ``user`` has (a reporter leaving); returns their keys."""
    held = sorted(key for (_user, key) in current(settings, [user]))
    if held:
        alter(settings, dict.fromkeys(((user, key) for key in held), None))
    return held


async def _describe(settings: Settings, users: list[str]) -> dict[tuple[str, str], float]:
    found: dict[tuple[str, str], float] = {}
    async with _Admin(settings) as admin:
        for user in users:  # a request's components are and-ed: one user per request
            request = DescribeClientQuotasRequest([(_USER, _MATCH_EXACT, user)], strict=True)
            response = await _send(admin, request)
            _raise_for(response.error_code, response.error_message, "describe")
            for _entity, values in response.entries:
                found.update({(user, key): value for key, value in values if key in MANAGED_KEYS})
    return found


async def _alter(settings: Settings, entries: list[tuple[list[tuple[str, str]], Any]]) -> None:
    async with _Admin(settings) as admin:
        response = await _send(admin, AlterClientQuotasRequest(entries))
        for error_code, error_message, entity in response.entries:
            _raise_for(error_code, error_message, f"set for {entity}")


def _raise_for(error_code: int, message: str | None, what: str) -> None:
    if error_code:
        name = for_code(error_code).__name__
        raise ServiceUnreachableError(f"Kafka refused the client quotas ({what}): {name} {message or ''}")


class _Admin:
    """aiokafka's admin client as the project connects (``kafka.config``), started and closed."""

    def __init__(self, settings: Settings) -> None:
        sasl = settings.kafka_security_protocol.startswith("SASL")
        password = settings.kafka_sasl_password
        self.client = AIOKafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap,
            security_protocol=settings.kafka_security_protocol,
            ssl_context=ssl_context(settings),
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username if sasl else None,
            sasl_plain_password=password.get_secret_value() if sasl and password else None,
            request_timeout_ms=int(settings.startup_timeout_s * 1000),
        )
        self.timeout_s = settings.startup_timeout_s

    async def __aenter__(self) -> Any:
        try:
            await asyncio.wait_for(self.client.start(), self.timeout_s)
        except (TimeoutError, OSError) as exc:
            await self.client.close()
            raise ServiceUnreachableError(f"Kafka unreachable for the client quotas: {exc!r}") from None
        return self.client

    async def __aexit__(self, *_exc: object) -> None:
        await self.client.close()


async def _send(admin: Any, request: Any) -> Any:
    """One request to any broker (each forwards quota changes to the controller)."""
    return await admin._send_request(request)  # aiokafka has no public call for these


# AlterClientQuotas v0 (KIP-546), which aiokafka declares no class for: its own protocol types.
class _AlterClientQuotasResponse(Response):  # type: ignore[misc]
    API_KEY = 49
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "entries",
            Array(
                ("error_code", Int16),
                ("error_message", String("utf-8")),
                ("entity", Array(("entity_type", String("utf-8")), ("entity_name", String("utf-8")))),
            ),
        ),
    )


class _AlterClientQuotasRequestV0(RequestStruct):  # type: ignore[misc]
    API_KEY = 49
    API_VERSION = 0
    RESPONSE_TYPE = _AlterClientQuotasResponse
    SCHEMA = Schema(
        (
            "entries",
            Array(
                ("entity", Array(("entity_type", String("utf-8")), ("entity_name", String("utf-8")))),
                ("ops", Array(("key", String("utf-8")), ("value", Float64), ("remove", Boolean))),
            ),
        ),
        ("validate_only", Boolean),
    )


class AlterClientQuotasRequest(Request[_AlterClientQuotasRequestV0]):  # type: ignore[misc]
    """Set or remove client quotas: ``entries`` of ([(entity type, name)], [(key, value, remove)])."""

    API_KEY = 49

    def __init__(self, entries: list[tuple[list[tuple[str, str]], Any]]) -> None:
        self._entries = entries

    def build(self, request_struct_class: type[_AlterClientQuotasRequestV0]) -> _AlterClientQuotasRequestV0:
        return request_struct_class(self._entries, False)
