"""The schema-registry edge: Confluent schema ids to writer schemas, asked once per id and cached.

Confluent-framed records (``00`` + schema id, 4 bytes big-endian, + Avro binary) name their writer
schema by an id of a Confluent schema registry. :class:`ConfluentSchemas` turns an id into one of
this processor's :class:`~stream_app.wire.schemas.SchemaVersion` and is what
:func:`stream_app.wire.codecs.decode_observation` takes as ``resolve_confluent_id``:

- an id whose schema is one of the local versions (same CRC-64-AVRO fingerprint) resolves to it;
- an Avro schema the processor does not have as a file, but named like one of its subjects and
  readable by that subject's newest version (checked on generated data, as ``stream-app schemas
  check`` does), resolves to a version 0 of that subject;
- anything else registered under the id (another type, Protobuf or JSON Schema, an Avro schema the
  reader cannot resolve) is a ``schema_mismatch``;
- an id the registry does not know is None (``unknown_schema``).

What an id resolves to is cached for the life of the process: Confluent ids are immutable. An unknown
id is remembered for :data:`UNKNOWN_ID_RECHECK_S` only, since it may be registered later.
When the registry cannot be asked, :class:`SchemaRegistryUnavailable` is raised and nothing is cached:
that is an infrastructure failure to retry, never a reason to dead-letter the record.

The lookups are blocking HTTP calls. An agent calls :meth:`ConfluentSchemas.prefetch` with a batch's
values before decoding it: new ids are resolved in a thread, off the event loop, and decoding then only
hits the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from stream_app.exceptions import ConfigurationError, DecodeError, StreamAppError
from stream_app.kafka.config import registry_config
from stream_app.logs import get_logger
from stream_app.settings import Settings
from stream_app.wire.codecs import Reasons, confluent_schema_id
from stream_app.wire.schema_check import compatibility_problem
from stream_app.wire.schemas import InvalidSchemaError, SchemaRegistry, SchemaVersion, parse_version

log = get_logger(__name__)

UNKNOWN_ID_RECHECK_S = 30.0
REQUEST_TIMEOUT_S = 5
MAX_RETRIES = 1
_UNKNOWN_IDS_MAX = 10_000
_NOT_FOUND = 404


class SchemaRegistryUnavailable(StreamAppError):  # noqa: N818 - the name says what the agent waits for
    """The schema registry could not be asked (connection, timeout, 5xx, authentication, a reply that
    is not the registry's). The record is not at fault: retry the batch with backoff, do not
    dead-letter it and do not ack it."""


class RegistryClient(Protocol):
    """What is used of ``confluent_kafka.schema_registry.SchemaRegistryClient``."""

    def get_schema(self, schema_id: int) -> Any:
        """The registered ``Schema`` (``schema_str``, ``schema_type``, ``references``); raises
        ``SchemaRegistryError`` (``http_status_code``, ``error_code``) or a transport error."""


class ConfluentSchemas:
    """Resolves Confluent schema ids against the registry, with a cache; a ``ConfluentResolver``."""

    def __init__(
        self,
        client: RegistryClient,
        schemas: SchemaRegistry,
        *,
        name: str = "schema registry",
        unknown_id_recheck_s: float = UNKNOWN_ID_RECHECK_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.schemas = schemas
        self.name = name
        self.unknown_id_recheck_s = unknown_id_recheck_s
        self._clock = clock
        self._resolved: dict[int, SchemaVersion | DecodeError] = {}
        self._unknown_until: dict[int, float] = {}

    def __call__(self, schema_id: int) -> SchemaVersion | None:
        """The writer schema of ``schema_id``; None if the registry does not know it.

        Raises DecodeError (schema_mismatch) when the registered schema cannot be read as the subject
        it claims, and SchemaRegistryUnavailable when the registry cannot be asked.
        """
        resolved = self._resolved.get(schema_id)
        if resolved is None:
            until = self._unknown_until.get(schema_id)
            if until is not None and self._clock() < until:
                return None
            registered = self._fetch(schema_id)
            if registered is None:
                self._remember_unknown(schema_id)
                return None
            resolved = self._interpret(schema_id, registered)
            self._resolved[schema_id] = resolved
            self._unknown_until.pop(schema_id, None)
            self._log(schema_id, resolved)
        if isinstance(resolved, DecodeError):
            raise DecodeError(resolved.reason, resolved.message)
        return resolved

    def is_cached(self, schema_id: int) -> bool:
        """Whether ``schema_id`` is answered without asking the registry."""
        until = self._unknown_until.get(schema_id)
        return schema_id in self._resolved or (until is not None and self._clock() < until)

    async def prefetch(self, values: Iterable[bytes]) -> None:
        """Resolve, in a thread, the ids of Confluent-framed ``values`` not cached yet.

        Raises SchemaRegistryUnavailable like a lookup; a mismatch is left for decoding to report.
        """
        ids = {i for value in values if (i := confluent_schema_id(value)) is not None}
        for schema_id in sorted(i for i in ids if not self.is_cached(i)):
            with contextlib.suppress(DecodeError):
                await asyncio.to_thread(self, schema_id)

    def _fetch(self, schema_id: int) -> Any:
        try:
            return self.client.get_schema(schema_id)
        except Exception as exc:  # the client raises its own errors and httpx's; all mean "not answered"
            status = getattr(exc, "http_status_code", None)
            code = getattr(exc, "error_code", -1)
            if status == _NOT_FOUND and isinstance(code, int) and code > 0:
                return None  # the registry itself says: no such id (40403; 40400 from the mock client)
            raise SchemaRegistryUnavailable(
                f"{self.name}: cannot look up schema id {schema_id}: {type(exc).__name__}: {exc}"
            ) from exc

    def _interpret(self, schema_id: int, registered: Any) -> SchemaVersion | DecodeError:
        version = _parse_registered(schema_id, registered)
        if isinstance(version, DecodeError):
            return version
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

    def _remember_unknown(self, schema_id: int) -> None:
        now = self._clock()
        if len(self._unknown_until) >= _UNKNOWN_IDS_MAX:
            self._unknown_until = {i: t for i, t in self._unknown_until.items() if t > now}
        if len(self._unknown_until) < _UNKNOWN_IDS_MAX:
            self._unknown_until[schema_id] = now + self.unknown_id_recheck_s
        log.info("schema_id_unknown", registry=self.name, schema_id=schema_id)

    def _log(self, schema_id: int, resolved: SchemaVersion | DecodeError) -> None:
        if isinstance(resolved, DecodeError):
            log.warning(
                "schema_id_mismatch", registry=self.name, schema_id=schema_id, detail=resolved.message
            )
        else:
            log.info(
                "schema_id_resolved",
                registry=self.name,
                schema_id=schema_id,
                subject=resolved.subject,
                version=resolved.version,
            )


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
    return ConfluentSchemas(client, schemas, name=redact(str(settings.schema_registry_url).strip()))


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
    return DecodeError(Reasons.SCHEMA_MISMATCH, f"Confluent-framed record: schema id {schema_id} {what}")
