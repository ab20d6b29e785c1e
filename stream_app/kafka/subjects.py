"""The processor's contracts in a Confluent schema registry: subject names, ids, ``schemas register``.

Subject names follow Confluent's **TopicNameStrategy**: the values of topic ``T`` are registered under
``T-value`` (topic names with their namespace). It is the default of Confluent's serializers, and what
ksqlDB and Kafka Connect look up for a topic. It fits because every topic that carries Avro in
Confluent framing carries one record type (:data:`SUBJECT_OF_ROLE`). The one topic carrying several
(the internal ``internal.observations.by-entity``: observations, ticks and directives) would need
RecordNameStrategy, and is never Confluent-framed: the internal topics are read by this processor
only, so they stay Avro single-object encoded, out of the registry (:data:`INTERNAL_ROLES`).

Registered: every public topic's subject (:data:`SUBJECT_OF_ROLE`, which the processor writes in
Confluent framing with ``STREAM_APP_OUTPUT_FRAMING=confluent``), and the reporters' input topics under
``observation`` (the processor never writes those, but a reporter's Confluent serializer finds the
contract there, and intake resolves those ids to its own versions). Each subject gets every local version
of its record type, oldest first, so the registry's version history is the repository's.

:func:`ensure_subject` is shared by the worker's start-up (:mod:`stream_app.wire.framing`: look each
version up, register it when missing) and by :func:`register` (the CLI, which first sets each subject's
compatibility to ``FULL_TRANSITIVE``, the level ``stream-app schemas check`` proves).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from stream_app.config.blueprint import Blueprint
from stream_app.exceptions import ConfigurationError, ServiceUnreachableError, UsageError
from stream_app.kafka.registry import SchemaRegistryUnavailable, client_from_settings, redact
from stream_app.logs import get_logger
from stream_app.ops.retry import Backoff
from stream_app.settings import Settings
from stream_app.wire.framing import CONFLUENT, SINGLE_OBJECT, SINGLE_OBJECT_FRAMING, ConfluentFraming, Framing
from stream_app.wire.schemas import SchemaVersion

log = get_logger(__name__)

# The public topics' roles -> the Avro subject of their values (avro_schemas/<subject>.v<N>.avsc).
SUBJECT_OF_ROLE: dict[str, str] = {
    "alerts": "alert",
    "domain_alerts": "alert",
    "active_alerts": "alert",
    "consolidated": "consolidated",
    "briefings": "briefing",
    "directives": "directive",
    "reporter_directives": "directive",
    "directives_dead_letter": "dead_letter",
    "dead_letter": "dead_letter",
    "audit": "audit",
}
# Read and written by this processor only: always single-object encoded, never registered.
INTERNAL_ROLES = frozenset({"repartition", "rollup", "consolidate_dead_letter", "rollup_dead_letter"})
# Written by the reporters (the processor reads Confluent framing there already): registered, never framed.
INPUT_ROLES = {"input": "observation", "bulk_input": "observation"}

COMPATIBILITY = "FULL_TRANSITIVE"
_NOT_FOUND = 404
_RETRIED_4XX = frozenset({408, 429})
_CONFLICT = 409


@dataclass(frozen=True, slots=True)
class Subject:
    """A registry subject: its name, the topic whose values it describes, the local versions, oldest first."""

    name: str
    topic: str
    versions: tuple[SchemaVersion, ...]


def subject_name(topic: str) -> str:
    """TopicNameStrategy: the subject of ``topic``'s record values."""
    return f"{topic}-value"


def framed_subjects(blueprint: Blueprint) -> list[Subject]:
    """The subjects of the topics the processor writes in Confluent framing (when configured to)."""
    return _subjects(blueprint, SUBJECT_OF_ROLE)


def registered_subjects(blueprint: Blueprint) -> list[Subject]:
    """Every subject ``stream-app schemas register`` registers: the framed topics' and the input topics'."""
    return _subjects(blueprint, {**SUBJECT_OF_ROLE, **INPUT_ROLES})


def _subjects(blueprint: Blueprint, roles: dict[str, str]) -> list[Subject]:
    return [
        Subject(subject_name(t.name), t.name, tuple(blueprint.schemas.by_subject[roles[t.role]]))
        for t in sorted(blueprint.topics, key=lambda t: t.name)
        if t.role in roles
    ]


def registry_text(version: SchemaVersion) -> str:
    """The schema as registered: the ``.avsc`` file's JSON, compact (docs and defaults kept)."""
    return json.dumps(json.loads(version.text or json.dumps(version.parsed)), separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Registered:
    """One subject version in the registry: its id, and whether this call registered it."""

    subject: str
    version: SchemaVersion
    schema_id: int
    new: bool


def ensure_subject(client: Any, subject: Subject, registry: str) -> list[Registered]:
    """Every local version of ``subject`` in the registry, oldest first: looked up, registered if missing.

    Raises :class:`SchemaRegistryUnavailable` when the registry does not answer (retry), and
    ConfigurationError when it refuses (a version incompatible with what the subject holds, bad
    credentials): waiting would not change that.
    """
    from confluent_kafka.schema_registry import Schema  # noqa: PLC0415 - heavy, rarely needed

    out = []
    for version in subject.versions:
        schema = Schema(registry_text(version), "AVRO")
        what = f"{version.file_name} under {subject.name}"
        try:
            found = client.lookup_schema(subject.name, schema)
        except Exception as exc:  # the client raises its own errors and httpx's
            if not _not_found(exc):
                raise _failure(exc, registry, f"cannot look up {what}") from exc
        else:
            out.append(Registered(subject.name, version, int(found.schema_id), new=False))
            continue
        try:
            schema_id = client.register_schema(subject.name, schema)
        except Exception as exc:  # the client raises its own errors and httpx's
            raced = _registered_meanwhile(client, subject.name, schema, exc)
            if raced is None:
                raise _failure(exc, registry, f"cannot register {what}") from exc
            out.append(Registered(subject.name, version, raced, new=False))
            continue
        out.append(Registered(subject.name, version, int(schema_id), new=True))
    return out


LOOKUP_THREADS = 8
"""Subjects asked at once at start-up: one round trip each (a worker frames ~60 subjects' ~150
versions), a second and more of every worker's start when asked one after the other."""


def _ensure_all(
    client: Any, subjects: Sequence[Subject], registry: str
) -> list[tuple[Subject, list[Registered]]]:
    """:func:`ensure_subject` for every subject, several at once; the first failure raised."""
    with ThreadPoolExecutor(LOOKUP_THREADS, thread_name_prefix="schema-lookup") as pool:
        return list(
            zip(subjects, pool.map(lambda s: ensure_subject(client, s, registry), subjects), strict=True)
        )


def _registered_meanwhile(client: Any, subject: str, schema: Any, refusal: BaseException) -> int | None:
    """The id of ``schema`` when another process registered it between this one's look-up and its
    registration (workers and screens starting together): Apicurio answers such a race with 409, as
    it answers an incompatible version, so a 409 is followed by one more look-up. None otherwise."""
    if getattr(refusal, "http_status_code", None) != _CONFLICT:
        return None
    try:
        return int(client.lookup_schema(subject, schema).schema_id)
    except Exception:  # not there after all: the 409 was a refusal
        return None


def _not_found(exc: BaseException) -> bool:
    """The registry itself says: no such subject or schema (40401, 40403; 40400 from the mock)."""
    code = getattr(exc, "error_code", -1)
    return getattr(exc, "http_status_code", None) == _NOT_FOUND and isinstance(code, int) and code > 0


def _failure(exc: BaseException, registry: str, what: str) -> Exception:
    status = getattr(exc, "http_status_code", None)
    message = f"schema registry {registry}: {what}: {type(exc).__name__}: {str(exc)[:300]}"
    if isinstance(status, int) and 400 <= status < 500 and status not in _RETRIED_4XX:
        return ConfigurationError(message)
    return SchemaRegistryUnavailable(message)


# --- stream-app schemas register ---------------------------------------------------------------


@dataclass(slots=True)
class RegisterReport:
    """What :func:`register` did, one line per subject version (and per compatibility level it set)."""

    registry: str
    compatibility: str = COMPATIBILITY
    lines: list[str] = field(default_factory=list)
    subjects: int = 0
    versions: int = 0
    registered: int = 0
    compatibility_set: int = 0

    def summary(self) -> str:
        done = (
            f"{self.registered} registered"
            if self.registered
            else "nothing new registered (every version was already there)"
        )
        levels = (
            f"compatibility set to {self.compatibility} on {self.compatibility_set}"
            if self.compatibility_set
            else f"compatibility already {self.compatibility} on all"
        )
        return (
            f"schemas register: {self.subjects} subjects, {self.versions} subject versions at "
            f"{self.registry}: {done}; {levels}"
        )


def register(
    client: Any, subjects: Iterable[Subject], registry: str, compatibility: str = COMPATIBILITY
) -> RegisterReport:
    """Set each subject's compatibility (unless it already is), then register its versions in order.

    Idempotent: a version the subject holds is looked up, not registered again. Raises
    SchemaRegistryUnavailable or ConfigurationError (see :func:`ensure_subject`).
    """
    report = RegisterReport(registry, compatibility)
    for subject in subjects:
        report.subjects += 1
        current = _compatibility(client, subject.name, registry)
        if current != compatibility:
            try:
                client.set_compatibility(subject.name, compatibility)
            except Exception as exc:  # the client raises its own errors and httpx's
                raise _failure(exc, registry, f"cannot set the compatibility of {subject.name}") from exc
            report.compatibility_set += 1
            report.lines.append(
                f"compatibility {subject.name:<52} {compatibility} (was {current or 'the global level'})"
            )
        for item in ensure_subject(client, subject, registry):
            report.versions += 1
            report.registered += item.new
            report.lines.append(
                f"{'registered' if item.new else 'exists':<13} {item.subject:<52} v{item.version.version:<3} "
                f"id={item.schema_id:<6} {item.version.file_name}"
            )
    return report


def _compatibility(client: Any, subject: str, registry: str) -> str | None:
    """The subject's own compatibility level; None when it has none (the registry's global level applies)."""
    try:
        return str(client.get_compatibility(subject))
    except Exception as exc:  # the client raises its own errors and httpx's
        if _not_found(exc):  # 40408: no subject-level configuration
            return None
        raise _failure(exc, registry, f"cannot read the compatibility of {subject}") from exc


def register_from_settings(
    blueprint: Blueprint, url: str | None = None, compatibility: str = COMPATIBILITY
) -> RegisterReport:
    """``stream-app schemas register [--mode LEVEL]``: every subject at ``compatibility``, every version
    registered; the registry at ``url`` (default ``STREAM_APP_SCHEMA_REGISTRY_URL``)."""
    settings = blueprint.settings
    client = client_from_settings(settings, url)
    if client is None:
        raise UsageError("give --registry URL, or set STREAM_APP_SCHEMA_REGISTRY_URL")
    name = redact((url if url is not None else str(settings.schema_registry_url)).strip())
    try:
        return register(client, registered_subjects(blueprint), name, compatibility)
    except SchemaRegistryUnavailable as exc:
        raise ServiceUnreachableError(str(exc)) from None


def check_framing_settings(settings: Settings) -> None:
    """Raise ConfigurationError (one line) when ``STREAM_APP_OUTPUT_FRAMING`` cannot be honoured: Confluent
    framing with no registry to take the ids from. Checked before anything waits for a service."""
    if settings.output_framing == CONFLUENT and not (settings.schema_registry_url or "").strip():
        raise ConfigurationError(
            "STREAM_APP_OUTPUT_FRAMING=confluent (the default) needs a schema registry: set "
            "STREAM_APP_SCHEMA_REGISTRY_URL, or STREAM_APP_OUTPUT_FRAMING=single_object"
        )


def output_framing(
    blueprint: Blueprint,
    *,
    topics: Collection[str] | None = None,
    wait_out: bool = False,
    client: Any = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Framing:
    """The framing ``STREAM_APP_OUTPUT_FRAMING`` asks for; for ``confluent``, with the ids of every local
    version of every framed topic's subject (only ``topics``' when given, for a command-line writer).

    Blocks while the registry does not answer, retrying with backoff (each attempt logged) until
    ``STREAM_APP_STARTUP_TIMEOUT_S`` and then raising ServiceUnreachableError (a command-line writer);
    ``wait_out``: until it answers (a worker: an outage at start-up is waited out, not made a crash
    loop). A registry that refuses (an incompatible version, bad credentials) or no registry configured
    raises ConfigurationError at once.
    """
    settings = blueprint.settings
    if settings.output_framing == SINGLE_OBJECT:
        return SINGLE_OBJECT_FRAMING
    if client is not None:
        return _resolve_framing(blueprint, client, topics, wait_out, sleep, clock)
    check_framing_settings(settings)
    own = client_from_settings(settings)
    try:
        return _resolve_framing(blueprint, own, topics, wait_out, sleep, clock)
    finally:
        close = getattr(own, "close", None)
        if close is not None:
            close()  # asked once: its connections are not kept open


def _resolve_framing(  # noqa: PLR0917 - output_framing's own arguments, passed on
    blueprint: Blueprint,
    client: Any,
    topics: Collection[str] | None,
    wait_out: bool,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> Framing:
    settings = blueprint.settings
    url = (settings.schema_registry_url or "").strip()
    name = redact(url) if url else "schema registry"
    subjects = [s for s in framed_subjects(blueprint) if topics is None or s.topic in topics]
    deadline = None if wait_out else clock() + settings.startup_timeout_s
    backoff, attempt = Backoff.from_settings(settings), 0
    while True:
        try:
            found = _ensure_all(client, subjects, name)
            break
        except SchemaRegistryUnavailable as exc:
            attempt += 1
            if deadline is not None and clock() >= deadline:
                raise ServiceUnreachableError(
                    f"schema registry unreachable at {name}: no answer within "
                    f"{settings.startup_timeout_s:g} s ({exc})"
                ) from None
            delay = backoff.next()
            log.warning(
                "schema_registry_waiting",
                registry=name,
                attempt=attempt,
                retry_in_s=round(delay, 3),
                error=str(exc)[:300],
            )
            sleep(delay)
    ids = {s.topic: {r.version.fingerprint: r.schema_id for r in registered} for s, registered in found}
    log.info(
        "output_framing",
        framing=CONFLUENT,
        registry=name,
        topics=len(ids),
        subject_versions=sum(len(r) for _, r in found),
        registered=sum(item.new for _, r in found for item in r),
    )
    return ConfluentFraming(ids, blueprint.schemas)
