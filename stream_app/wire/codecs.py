"""Wire formats of observations and of the records the processor publishes.

Accepted on input:
- Avro single-object encoding (``C3 01`` + CRC-64-AVRO fingerprint, little-endian, + Avro binary);
- Confluent framing (``00`` + schema id, 4 bytes big-endian, + Avro binary), when a schema registry
  is configured: the caller passes a resolver from schema id to writer schema
  (:class:`stream_app.kafka.registry.ConfluentSchemas`), which caches what it learns from the registry;
- JSON documents shaped like the Avro schema, for reporters that cannot write Avro
  (timestamps as epoch milliseconds or ISO-8601 strings).
Whatever the writer version, records are read with the newest version of the subject.
Everything the processor writes is Avro single-object encoded with the newest schema version; with
``STREAM_APP_OUTPUT_FRAMING=confluent`` the public topics get the same Avro body in Confluent framing
instead (:mod:`stream_app.wire.framing`), so :func:`decode` reads either, given a resolver.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, cast

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.validation import ValidationError, validate

from stream_app.domain.clock import ms_of
from stream_app.domain.reasons import Reason
from stream_app.exceptions import StreamAppError
from stream_app.wire.schemas import SchemaRegistry, SchemaVersion

SINGLE_OBJECT_MARKER = b"\xc3\x01"
_HEADER_LEN = 10
_CONFLUENT_MAGIC = 0
_CONFLUENT_HEADER_LEN = 5


class DecodeError(StreamAppError):
    """The bytes of a record could not be turned into an observation.

    ``reason`` is the dead-letter reason code (here, not in :mod:`stream_app.exceptions`: the base layer
    cannot know the codes).
    """

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


ConfluentResolver = Callable[[int], SchemaVersion | None]
"""Confluent schema id -> the writer schema registered under it, or None when the registry does not know
the id. May raise :class:`DecodeError` (``schema_mismatch``, ``schema_not_allowed``) for a registered schema
that can never be read as the expected subject, ``schema_not_looked_up`` for an id it will not ask the
registry about now (see :class:`stream_app.kafka.registry.ConfluentSchemas`), and an infrastructure error
when the registry cannot be asked (see :class:`stream_app.kafka.registry.SchemaRegistryUnavailable`):
that error must not become a dead letter."""


def encode(schema: SchemaVersion, record: Mapping[str, Any]) -> bytes:
    """Avro single-object encoding of ``record`` with ``schema``."""
    if schema.compiled is not None:
        try:
            return SINGLE_OBJECT_MARKER + schema.fingerprint_bytes + schema.compiled.write(record)
        except Exception:  # noqa: S110 - a value the compiled writer does not take as is: fastavro decides
            pass
    buf = io.BytesIO()
    buf.write(SINGLE_OBJECT_MARKER)
    buf.write(schema.fingerprint_bytes)
    schemaless_writer(buf, _fast(schema), record)
    return buf.getvalue()


def decode(
    registry: SchemaRegistry,
    subject: str,
    raw: bytes,
    resolve_confluent_id: ConfluentResolver | None = None,
) -> dict[str, Any]:
    """Decode a record of ``subject``, resolving older writer versions: Avro single-object encoded or,
    Confluent-framed (what the processor writes with ``STREAM_APP_OUTPUT_FRAMING=confluent``), told apart
    by the first byte (``C3`` or ``00``), so a topic holding both during a change of framing is read
    whole. A Confluent-framed record needs ``resolve_confluent_id`` (a registry's resolver): without one
    it is an ``unknown_schema`` DecodeError that says so."""
    if not raw.startswith(SINGLE_OBJECT_MARKER):
        schema_id = confluent_schema_id(raw)
        if schema_id is not None:
            return _decode_confluent(registry, subject, schema_id, raw, resolve_confluent_id)
    writer = _writer_of(registry, raw)
    return _read_body(raw[_HEADER_LEN:], writer, registry.latest(subject))


def decode_any(registry: SchemaRegistry, raw: bytes, *, epoch_ms: bool = False) -> tuple[str, dict[str, Any]]:
    """Decode a single-object encoded record of whichever subject its fingerprint names.

    For topics that carry several kinds of record (the internal topic: observations, ticks,
    directives). Returns (subject, record), read with the subject's newest version. ``epoch_ms``:
    timestamps may come back as epoch milliseconds (the compiled reader's, saving a datetime per
    field) or as datetimes (fastavro's): the caller reads them with ``clock.as_ms``.
    """
    writer = _writer_of(registry, raw)
    return writer.subject, _read_body(raw[_HEADER_LEN:], writer, registry.latest(writer.subject), epoch_ms)


def _writer_of(registry: SchemaRegistry, raw: bytes) -> SchemaVersion:
    """The writer schema named by a single-object header."""
    if not raw.startswith(SINGLE_OBJECT_MARKER) or len(raw) < _HEADER_LEN:
        raise DecodeError(Reason.UNDECODABLE, "not Avro single-object encoding")
    fingerprint = int.from_bytes(raw[2:_HEADER_LEN], "little")
    writer = registry.by_fingerprint.get(fingerprint)
    if writer is None:
        raise DecodeError(Reason.UNKNOWN_SCHEMA, f"unknown schema fingerprint {fingerprint:016x}")
    return writer


def confluent_schema_id(raw: bytes) -> int | None:
    """The schema id of a Confluent-framed record, or None if ``raw`` is not framed that way."""
    if len(raw) >= _CONFLUENT_HEADER_LEN and raw[0] == _CONFLUENT_MAGIC:
        return int.from_bytes(raw[1:_CONFLUENT_HEADER_LEN], "big")
    return None


def single_object_fingerprint(raw: bytes) -> int | None:
    """The writer's fingerprint of a single-object encoded record, or None if ``raw`` is not one."""
    if len(raw) >= _HEADER_LEN and raw.startswith(SINGLE_OBJECT_MARKER):
        return int.from_bytes(raw[2:_HEADER_LEN], "little")
    return None


def confluent_reframed(raw: bytes, schema_id: int) -> bytes:
    """The Confluent framing of a single-object encoded record: ``00`` + ``schema_id`` (4 bytes,
    big-endian) + the same Avro body. The caller has checked ``raw`` (:func:`single_object_fingerprint`)."""
    return bytes((_CONFLUENT_MAGIC,)) + schema_id.to_bytes(4, "big") + raw[_HEADER_LEN:]


def decode_observation(
    registry: SchemaRegistry,
    raw: bytes,
    max_bytes: int,
    resolve_confluent_id: ConfluentResolver | None = None,
    *,
    epoch_ms: bool = False,
) -> dict[str, Any]:
    """Turn a reporter's record bytes into an observation dict, whatever accepted format it uses.

    ``resolve_confluent_id`` is the schema registry's edge (None: no registry configured). Raises
    :class:`DecodeError` with the dead-letter reason code; whatever else the resolver raises (the
    registry is unreachable) propagates unchanged, for the caller to retry. ``epoch_ms``: as for
    :func:`decode_any` (timestamps as ints where the compiled reader reads the record).
    """
    if len(raw) > max_bytes:
        raise DecodeError(Reason.OVERSIZED, f"record of {len(raw)} bytes exceeds {max_bytes}")
    if raw.startswith(SINGLE_OBJECT_MARKER):
        writer = _writer_of(registry, raw)
        return _read_body(raw[_HEADER_LEN:], writer, registry.latest("observation"), epoch_ms)
    schema_id = confluent_schema_id(raw)
    if schema_id is not None:
        return _decode_confluent(registry, "observation", schema_id, raw, resolve_confluent_id)
    if raw.lstrip()[:1] == b"{":
        return _decode_json_observation(registry, raw)
    raise DecodeError(Reason.UNDECODABLE, "neither Avro single-object encoding nor a JSON document")


def _decode_confluent(
    registry: SchemaRegistry, subject: str, schema_id: int, raw: bytes, resolve: ConfluentResolver | None
) -> dict[str, Any]:
    if resolve is None:
        raise DecodeError(
            Reason.UNKNOWN_SCHEMA,
            f"Confluent-framed record (schema id {schema_id}) and no registry configured",
        )
    writer = resolve(schema_id)
    if writer is None:
        raise DecodeError(
            Reason.UNKNOWN_SCHEMA, f"Confluent-framed record: schema id {schema_id} is not in the registry"
        )
    return _read_body(raw[_CONFLUENT_HEADER_LEN:], writer, registry.latest(subject))


def _read_body(
    body: bytes, writer: SchemaVersion, reader: SchemaVersion, epoch_ms: bool = False
) -> dict[str, Any]:
    """Avro binary written with ``writer``, read as ``reader`` (schema resolution)."""
    if writer.subject != reader.subject:
        raise DecodeError(
            Reason.SCHEMA_MISMATCH, f"record is a {writer.subject!r}, expected a {reader.subject!r}"
        )
    if writer is reader and writer.compiled is not None:
        try:
            return writer.compiled.read(body, epoch_ms=epoch_ms)
        except Exception:  # noqa: S110 - bytes the compiled reader does not read cleanly: fastavro decides
            pass
    try:
        record = schemaless_reader(io.BytesIO(body), _fast(writer), _fast(reader))
    except SchemaResolutionError as exc:
        raise DecodeError(
            Reason.SCHEMA_MISMATCH, f"writer schema cannot be read as {reader.file_name}: {str(exc)[:200]}"
        ) from exc
    except (EOFError, ValueError, TypeError, IndexError, UnicodeDecodeError, OverflowError) as exc:
        raise DecodeError(Reason.UNDECODABLE, f"Avro body does not match its schema: {exc}") from exc
    if not isinstance(record, dict):
        raise DecodeError(Reason.SCHEMA_MISMATCH, f"expected a {reader.subject!r} record")
    return cast(dict[str, Any], record)


def _decode_json_observation(registry: SchemaRegistry, raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(Reason.UNDECODABLE, f"invalid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise DecodeError(Reason.SCHEMA_MISMATCH, "JSON observation must be an object")
    for name in ("event_time", "report_time"):
        if isinstance(doc.get(name), str):  # as epoch ms: what the compiled writer takes as is
            doc[name] = ms_of(_parse_iso(name, doc[name]))
    schema = registry.latest("observation")
    # fastavro's writer coerces (1.5 -> 1, true -> 1.0); validate strictly first. Writing then fills
    # defaults, and reading back gives exactly the shape an Avro record decodes to.
    try:
        validate(doc, schema.parsed, raise_errors=True)
    except (ValidationError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise DecodeError(
            Reason.SCHEMA_MISMATCH, f"JSON does not match the observation schema: {exc}"
        ) from exc
    try:
        return decode(registry, "observation", encode(schema, doc))
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        raise DecodeError(
            Reason.SCHEMA_MISMATCH, f"JSON does not match the observation schema: {exc}"
        ) from exc


def _reject_constant(name: str) -> float:
    # json.loads would accept NaN and Infinity; keep them so validation can name them.
    return math.nan if name == "NaN" else math.copysign(math.inf, -1.0 if name.startswith("-") else 1.0)


def _parse_iso(name: str, text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise DecodeError(Reason.SCHEMA_MISMATCH, f"{name}: not an ISO-8601 time: {text[:40]!r}") from exc
    if moment.tzinfo is None:
        raise DecodeError(Reason.SCHEMA_MISMATCH, f"{name}: ISO-8601 time needs an offset: {text[:40]!r}")
    return moment


def _fast(schema: SchemaVersion) -> Any:
    return schema.fast if schema.fast is not None else schema.parsed
