"""The schema-registry edge: Confluent schema ids to writer schemas, asked off the event loop and cached.

Confluent-framed records (``00`` + schema id, 4 bytes big-endian, + Avro binary) name their writer
schema by an id of a Confluent schema registry. :class:`ConfluentSchemas` turns an id into one of
this processor's :class:`~stream_app.wire.schemas.SchemaVersion` and is what
:func:`stream_app.wire.codecs.decode_observation` takes as ``resolve_confluent_id``:

- a writer schema with array items that take no bytes is ``schema_not_allowed`` (a few bytes would
  declare billions of items: :func:`~stream_app.wire.schema_check.zero_byte_items`), checked before
  anything else, so no record is ever read with it;
- an id whose schema is one of the local versions (same CRC-64-AVRO fingerprint) resolves to it;
- an Avro schema the processor does not have as a file, but named like one of its subjects and
  readable by that subject's newest version (checked on generated data, as ``stream-app schemas
  check`` does), resolves to a version 0 of that subject;
- anything else registered under the id (another type, Protobuf or JSON Schema, an Avro schema the
  reader cannot resolve) is a ``schema_mismatch``;
- an id the registry does not know is None (``unknown_schema``).

A reporter can send any id, so what the registry is asked is bounded:

- an agent calls :meth:`ConfluentSchemas.prefetch` (or :meth:`~ConfluentSchemas.prefetch_from`, naming
  each value's topic) with a batch before decoding it: the batch's new ids are looked up in a thread, off
  the event loop, at most ``max_lookups`` of them (``STREAM_APP_SCHEMA_REGISTRY_MAX_LOOKUPS_PER_BATCH``),
  taken in turn from each topic so that a reporter sending many ids cannot use up another's lookups
  (:func:`lookup_plan`);
- on the event loop, decoding only reads the caches: an id the batch did not look up is a
  ``schema_not_looked_up`` dead letter, never a blocking HTTP call. Its record is not held back: a
  partition's records are acknowledged in order, so holding one would hold every record behind it while
  a reporter keeps sending new ids. ``stream-app dlq replay --reason schema_not_looked_up`` sends it
  again, to be looked up in a later batch. Off the event loop (the command-line tools) a miss is
  looked up at once, as before;
- what an id resolves to is cached (:data:`RESOLVED_IDS_MAX` ids; Confluent ids are immutable), an
  unknown id for :data:`UNKNOWN_ID_RECHECK_S` only, since it may be registered later, and at most
  :data:`UNKNOWN_IDS_MAX` of them (the oldest forgotten first): random ids cost neither memory nor more
  than ``max_lookups`` requests a batch.

When the registry cannot be asked, :class:`SchemaRegistryUnavailable` is raised and nothing is cached:
that is an infrastructure failure to retry, never a reason to dead-letter the record.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from stream_app.domain.reasons import Reason
from stream_app.exceptions import ConfigurationError, StreamAppError
from stream_app.kafka.config import registry_config
from stream_app.logs import get_logger
from stream_app.ops import metrics
from stream_app.settings import Settings
from stream_app.wire.codecs import DecodeError, confluent_schema_id
from stream_app.wire.schema_check import (
    MAX_COLLECTION_DEPTH,
    collection_depth,
    compatibility_problem,
    zero_byte_items,
)
from stream_app.wire.schemas import InvalidSchemaError, SchemaRegistry, SchemaVersion, parse_version

log = get_logger(__name__)

UNKNOWN_ID_RECHECK_S = 30.0
UNKNOWN_IDS_MAX = 10_000
RESOLVED_IDS_MAX = 1_000  # a deployment uses tens; a resolved schema holds its parsed forms
MAX_LOOKUPS_PER_BATCH = 32  # Settings.schema_registry_max_lookups_per_batch's default
REQUEST_TIMEOUT_S = 5
MAX_RETRIES = 1
_NOT_FOUND = 404
# answers about one id, not about the registry (401, 403, 408, 429 and 5xx mean: wait, retried)
_REFUSED_FOR_THIS_ID = frozenset({400, 410, 422})
_SKIPPED_LOGGED = 5  # ids named in a schema_lookups_skipped log line

K = TypeVar("K")
V = TypeVar("V")


class SchemaRegistryUnavailable(StreamAppError):  # noqa: N818 - the name says what the agent waits for
    """The schema registry could not be asked (connection, timeout, 5xx, authentication, a reply that
    is not the registry's). The record is not at fault: retry the batch with backoff, do not
    dead-letter it and do not ack it."""


class RegistryClient(Protocol):
    """What is used of ``confluent_kafka.schema_registry.SchemaRegistryClient``."""

    def get_schema(self, schema_id: int) -> Any:
        """The registered ``Schema`` (``schema_str``, ``schema_type``, ``references``); raises
        ``SchemaRegistryError`` (``http_status_code``, ``error_code``) or a transport error."""


class BoundedCache(Generic[K, V]):
    """At most ``max_size`` entries, each kept ``ttl_s`` seconds (None: until evicted); when full, the
    expired and then the oldest entries go first.

    Written by the lookup thread and read on the event loop: writes hold a lock, a read is one dict
    lookup (atomic under the GIL). Entries are kept in insertion order, which with one TTL for all is
    also their expiry order, so eviction looks at the front only.
    """

    def __init__(
        self, max_size: int, ttl_s: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.max_size = max_size
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[K, tuple[V, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The live value of ``key``, or None."""
        entry = self._entries.get(key)
        if entry is None or (self.ttl_s is not None and self._clock() >= entry[1]):
            return None
        return entry[0]

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` for ``key`` (again from now, last in line for eviction)."""
        now = self._clock()
        with self._lock:
            self._entries.pop(key, None)
            self._evict(now)
            self._entries[key] = (value, now + self.ttl_s if self.ttl_s is not None else now)

    def discard(self, key: K) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)

    def _evict(self, now: float) -> None:
        while self._entries:
            oldest = next(iter(self._entries))
            expired = self.ttl_s is not None and now >= self._entries[oldest][1]
            if not expired and len(self._entries) < self.max_size:
                return
            del self._entries[oldest]


@dataclass(frozen=True, slots=True)
class LookupPlan:
    """What a batch asks the registry: ``ids``, in this order; ``skipped``: new ids it does not ask."""

    ids: tuple[int, ...]
    skipped: tuple[int, ...]


def lookup_plan(
    sourced_ids: Iterable[tuple[str, int]], known: Callable[[int], bool], limit: int
) -> LookupPlan:
    """The new schema ids of a batch to look up: at most ``limit``, one from each source (a topic) in
    turn, each source's in the order they first appear. Pure.

    ``sourced_ids``: (source, schema id) of each Confluent-framed record; ``known``: whether an id is
    answered without asking. Taking turns means a reporter flooding a batch with random ids spends its
    own share of the lookups, and another reporter's new schema is still looked up.
    """
    seen: set[int] = set()
    by_source: dict[str, list[int]] = {}
    for source, schema_id in sourced_ids:
        if schema_id in seen:
            continue
        seen.add(schema_id)
        if not known(schema_id):
            by_source.setdefault(source, []).append(schema_id)
    in_turn = [
        i for i in itertools.chain.from_iterable(itertools.zip_longest(*by_source.values())) if i is not None
    ]
    return LookupPlan(tuple(in_turn[:limit]), tuple(in_turn[limit:]))


class ConfluentSchemas:
    """Resolves Confluent schema ids against the registry, with bounded caches; a ``ConfluentResolver``.

    See the module docstring: decoding on the event loop never asks the registry.
    """

    def __init__(
        self,
        client: RegistryClient,
        schemas: SchemaRegistry,
        *,
        name: str = "schema registry",
        max_lookups: int = MAX_LOOKUPS_PER_BATCH,
        unknown_id_recheck_s: float = UNKNOWN_ID_RECHECK_S,
        unknown_ids_max: int = UNKNOWN_IDS_MAX,
        resolved_ids_max: int = RESOLVED_IDS_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.schemas = schemas
        self.name = name
        self.max_lookups = max_lookups
        self._resolved: BoundedCache[int, SchemaVersion | DecodeError] = BoundedCache(resolved_ids_max)
        # ids the registry says it does not have: asked again after a while, as they may be registered
        self._unknown: BoundedCache[int, bool] = BoundedCache(unknown_ids_max, unknown_id_recheck_s, clock)

    def __call__(self, schema_id: int) -> SchemaVersion | None:
        """The writer schema of ``schema_id``; None if the registry does not know it.

        Raises DecodeError: ``schema_mismatch`` when the registered schema cannot be read as the subject
        it claims, ``schema_not_allowed`` for a schema no record may be read with, and, on the event
        loop, ``schema_not_looked_up`` for an id not cached (:meth:`prefetch` did not look it up);
        raises SchemaRegistryUnavailable when the registry cannot be asked (off the event loop).
        """
        resolved = self._resolved.get(schema_id)
        if resolved is None:
            if self._unknown.get(schema_id):
                return None
            if _on_event_loop():  # a blocking HTTP call here would stall every stage of the worker
                raise DecodeError(
                    Reason.SCHEMA_NOT_LOOKED_UP,
                    f"Confluent-framed record: schema id {schema_id} was not looked up: its batch asks the"
                    f" registry about {self.max_lookups} new ids at most"
                    " (STREAM_APP_SCHEMA_REGISTRY_MAX_LOOKUPS_PER_BATCH)",
                )
            resolved = self._look_up(schema_id)
            if resolved is None:
                return None
        if isinstance(resolved, DecodeError):
            raise DecodeError(resolved.reason, resolved.message)
        return resolved

    def is_cached(self, schema_id: int) -> bool:
        """Whether ``schema_id`` is answered without asking the registry."""
        return self._resolved.get(schema_id) is not None or bool(self._unknown.get(schema_id))

    async def prefetch(self, values: Iterable[bytes]) -> None:
        """:meth:`prefetch_from` for values of one source (their topics taking no turns)."""
        await self.prefetch_from(("", value) for value in values)

    async def prefetch_from(self, sourced: Iterable[tuple[str, bytes]]) -> None:
        """Look up, in a thread, the new ids of a batch's Confluent-framed values ((topic, value) pairs):
        at most ``max_lookups`` of them (:func:`lookup_plan`); the others' records will be
        ``schema_not_looked_up``.

        Raises SchemaRegistryUnavailable like a lookup (what was answered before it stays cached); a
        mismatch is left for decoding to report.
        """
        plan = lookup_plan(
            ((source, i) for source, value in sourced if (i := confluent_schema_id(value)) is not None),
            self.is_cached,
            self.max_lookups,
        )
        if plan.skipped:
            metrics.SCHEMA_LOOKUPS.labels("skipped").inc(len(plan.skipped))
            log.warning(
                "schema_lookups_skipped",
                registry=self.name,
                looked_up=len(plan.ids),
                skipped=len(plan.skipped),
                first_skipped=list(plan.skipped[:_SKIPPED_LOGGED]),
                limit=self.max_lookups,
            )
        if plan.ids:
            await asyncio.to_thread(self._look_up_all, plan.ids)

    def _look_up_all(self, schema_ids: Iterable[int]) -> None:
        for schema_id in schema_ids:
            self._look_up(schema_id)

    def _look_up(self, schema_id: int) -> SchemaVersion | DecodeError | None:
        """Ask the registry about ``schema_id`` and cache the answer (blocking: a thread or a tool)."""
        registered = self._fetch(schema_id)
        if registered is None:
            self._unknown.put(schema_id, True)
            metrics.SCHEMA_LOOKUPS.labels("unknown").inc()
            log.info("schema_id_unknown", registry=self.name, schema_id=schema_id)
            return None
        try:
            resolved = self._interpret(schema_id, registered)
        except Exception as exc:  # a schema the checks cannot follow (nested too deep, a record holding
            # itself for the sample generator): cached as refused, or every batch would ask again
            resolved = _mismatch(schema_id, f"cannot be checked: {type(exc).__name__}: {str(exc)[:200]}")
        self._resolved.put(schema_id, resolved)
        self._unknown.discard(schema_id)
        metrics.SCHEMA_LOOKUPS.labels("refused" if isinstance(resolved, DecodeError) else "resolved").inc()
        self._log(schema_id, resolved)
        return resolved

    def _fetch(self, schema_id: int) -> Any:
        try:
            return self.client.get_schema(schema_id)
        except Exception as exc:  # the client raises its own errors and httpx's; all mean "not answered"
            status = getattr(exc, "http_status_code", None)
            code = getattr(exc, "error_code", -1)
            if status == _NOT_FOUND and isinstance(code, int) and code > 0:
                return None  # the registry itself says: no such id (40403; 40400 from the mock client)
            if status in _REFUSED_FOR_THIS_ID:  # about this id, not the registry: never asked again soon
                log.warning("schema_lookup_refused", schema_id=schema_id, status=status, error=str(exc)[:200])
                return None
            raise SchemaRegistryUnavailable(
                f"{self.name}: cannot look up schema id {schema_id}: {type(exc).__name__}: {exc}"
            ) from exc

    def _interpret(self, schema_id: int, registered: Any) -> SchemaVersion | DecodeError:
        version = _parse_registered(schema_id, registered)
        if isinstance(version, DecodeError):
            return version
        not_allowed = _not_allowed(schema_id, version.parsed)
        if not_allowed is not None:
            return not_allowed
        local = self.schemas.by_fingerprint.get(version.fingerprint)
        if local is not None:
            return local
        subject = self.schemas.subject_of(version.full_name)
        if subject is None:
            return _mismatch(schema_id, f"is {version.full_name[:100]}, not a schema of this processor")
        version = replace(version, subject=subject)
        reader = self.schemas.latest(subject)
        problem = compatibility_problem(version, reader)
        if problem is not None:
            return _mismatch(
                schema_id, f"({version.full_name}) cannot be read as {reader.file_name}: {problem}"
            )
        return version

    def _log(self, schema_id: int, resolved: SchemaVersion | DecodeError) -> None:
        if isinstance(resolved, DecodeError):
            log.warning(
                "schema_id_refused",
                registry=self.name,
                schema_id=schema_id,
                reason=resolved.reason,
                detail=resolved.message,
            )
        else:
            log.info(
                "schema_id_resolved",
                registry=self.name,
                schema_id=schema_id,
                subject=resolved.subject,
                version=resolved.version,
            )


def _on_event_loop() -> bool:
    """Whether the caller runs on an asyncio event loop's thread (a worker's stage), not in a thread of
    its own (``asyncio.to_thread``) or a command-line tool."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def new_client(url: str, **client_conf: Any) -> Any:
    """A ``SchemaRegistryClient`` for ``url`` with the project's timeout and retries.

    ``mock://<name>`` is a registry in this process: every client of one name shares it (confluent's
    mock keeps a store per client object, and no compatibility levels: see :class:`_InProcessRegistry`).
    ``client_conf`` adds client settings (dotted names as ``**{"max.retries": 0}``). A URL the client
    refuses raises ConfigurationError.
    """
    from confluent_kafka.schema_registry import SchemaRegistryClient  # noqa: PLC0415 - heavy, rarely needed

    conf = {"url": url, "timeout": REQUEST_TIMEOUT_S, "max.retries": MAX_RETRIES, **client_conf}
    if url.startswith("mock://"):
        with _MOCK_LOCK:
            client = _MOCK_REGISTRIES.get(url)
            if client is None:
                client = _MOCK_REGISTRIES[url] = _in_process_registry(conf)
            return client
    try:
        return SchemaRegistryClient.new_client(conf)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"schema registry {redact(url)}: {exc}") from exc


def connect(url: str, schemas: SchemaRegistry, **client_conf: Any) -> ConfluentSchemas:
    """A resolver asking the registry at ``url`` (``mock://<name>``: a registry in this process).

    ``client_conf`` adds ``SchemaRegistryClient`` settings (``timeout``, ``max.retries`` ...: give
    dotted names as ``**{"max.retries": 0}``). A URL the client refuses raises ConfigurationError.
    """
    return ConfluentSchemas(new_client(url, **client_conf), schemas, name=redact(url))


def client_from_settings(settings: Settings, url: str | None = None) -> Any | None:
    """A registry client for ``url`` (default ``Settings.schema_registry_url``) with the settings'
    credentials and CA; None when no registry is given."""
    url = url if url is not None else settings.schema_registry_url
    if url is None or not url.strip():
        return None
    conf = registry_config(settings, url.strip())
    return new_client(conf.pop("url"), **conf)


def from_settings(settings: Settings, schemas: SchemaRegistry) -> ConfluentSchemas | None:
    """The resolver for ``Settings.schema_registry_url`` (with its credentials and CA); None when no
    registry is configured."""
    client = client_from_settings(settings)
    if client is None:
        return None
    return ConfluentSchemas(
        client,
        schemas,
        name=redact(str(settings.schema_registry_url).strip()),
        max_lookups=settings.schema_registry_max_lookups_per_batch,
    )


_MOCK_REGISTRIES: dict[str, Any] = {}
_MOCK_LOCK = threading.Lock()


def _in_process_registry(conf: dict[str, Any]) -> Any:
    from confluent_kafka.schema_registry._sync.mock_schema_registry_client import (  # noqa: PLC0415
        MockSchemaRegistryClient,
    )

    class _InProcessRegistry(MockSchemaRegistryClient):
        """confluent_kafka's mock registry, keeping compatibility levels too: the mock inherits the
        HTTP client's ``set_compatibility``/``get_compatibility``, which cannot reach ``mock://``."""

        def __init__(self, conf: dict[str, Any]) -> None:
            super().__init__(conf)
            self.compatibility: dict[str | None, str] = {}

        def set_compatibility(self, subject_name: str | None = None, level: str | None = None) -> Any:
            if level is None:
                raise ValueError("level must be set")
            self.compatibility[subject_name] = level.upper()
            return {"compatibility": level.upper()}

        def get_compatibility(self, subject_name: str | None = None) -> str:
            return self.compatibility.get(subject_name) or self.compatibility.get(None) or "BACKWARD"

    return _InProcessRegistry(conf)


def redact(url: str) -> str:
    """``url`` without the password of its user info, fit for logs and messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<schema registry URL>"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{parts.hostname or ''}{port}"))


def _parse_registered(schema_id: int, registered: Any) -> SchemaVersion | DecodeError:
    """The registered schema as a (subject-less) version, or why it can never be an Avro writer here."""
    schema_type = str(getattr(registered, "schema_type", None) or "AVRO").upper()
    if schema_type != "AVRO":
        return _mismatch(schema_id, f"is a {schema_type} schema, not Avro")
    if getattr(registered, "references", None):
        return _mismatch(schema_id, "uses schema references, which this processor does not resolve")
    try:
        return parse_version(str(getattr(registered, "schema_str", "")), "", 0)
    except InvalidSchemaError as exc:
        return _mismatch(schema_id, f"is not a valid Avro schema: {str(exc)[:200]}")


def _mismatch(schema_id: int, what: str) -> DecodeError:
    return DecodeError(Reason.SCHEMA_MISMATCH, f"Confluent-framed record: schema id {schema_id} {what}")


def _not_allowed(schema_id: int, parsed: Any) -> DecodeError | None:
    """Why a writer schema from the registry may not be read with at all (its shape could make reading
    or checking it take without bound), or None."""
    depth = collection_depth(parsed)
    if depth > MAX_COLLECTION_DEPTH:
        how = "without end" if depth >= 1 << 30 else f"{depth} deep"
        return DecodeError(
            Reason.SCHEMA_NOT_ALLOWED,
            f"Confluent-framed record: schema id {schema_id} nests arrays and maps {how}, over "
            f"{MAX_COLLECTION_DEPTH}",
        )
    where = zero_byte_items(parsed)
    if where is not None:
        return DecodeError(
            Reason.SCHEMA_NOT_ALLOWED,
            f"Confluent-framed record: schema id {schema_id} has array items that take no bytes at"
            f" {where[:200]}: a few bytes could declare billions of them",
        )
    return None
