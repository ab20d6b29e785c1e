"""Wire formats of observations and of the records the processor publishes.

Accepted on input:
- Avro single-object encoding (``C3 01`` + CRC-64-AVRO fingerprint, little-endian, + Avro binary);
- JSON documents shaped like the Avro schema, for reporters that cannot write Avro
  (timestamps as epoch milliseconds or ISO-8601 strings).
Everything the processor writes is Avro single-object encoded with the newest schema version.
"""

from __future__ import annotations

import io
import json
import math
from datetime import datetime
from typing import Any, cast

from fastavro import schemaless_reader, schemaless_writer
from fastavro.validation import ValidationError, validate

from stream_app.exceptions import DecodeError
from stream_app.schemas import SchemaRegistry, SchemaVersion

SINGLE_OBJECT_MARKER = b"\xc3\x01"
_HEADER_LEN = 10
_CONFLUENT_MAGIC = 0


class Reasons:
    """Dead-letter reason codes of decoding (validation adds its own)."""

    UNDECODABLE = "undecodable"
    UNKNOWN_SCHEMA = "unknown_schema"
    SCHEMA_MISMATCH = "schema_mismatch"
    OVERSIZED = "oversized"


def encode(schema: SchemaVersion, record: dict[str, Any]) -> bytes:
    """Avro single-object encoding of ``record`` with ``schema``."""
    buf = io.BytesIO()
    buf.write(SINGLE_OBJECT_MARKER)
    buf.write(schema.fingerprint_bytes)
    schemaless_writer(buf, schema.parsed, record)
    return buf.getvalue()


def decode(registry: SchemaRegistry, subject: str, raw: bytes) -> dict[str, Any]:
    """Decode a single-object encoded record of ``subject``, resolving older writer versions."""
    reader = registry.latest(subject)
    if not raw.startswith(SINGLE_OBJECT_MARKER) or len(raw) < _HEADER_LEN:
        raise DecodeError(Reasons.UNDECODABLE, "not Avro single-object encoding")
    fingerprint = int.from_bytes(raw[2:_HEADER_LEN], "little")
    writer = registry.by_fingerprint.get(fingerprint)
    if writer is None:
        raise DecodeError(Reasons.UNKNOWN_SCHEMA, f"unknown schema fingerprint {fingerprint:016x}")
    if writer.subject != subject:
        raise DecodeError(Reasons.SCHEMA_MISMATCH, f"record is a {writer.subject!r}, expected a {subject!r}")
    try:
        record = cast(
            dict[str, Any], schemaless_reader(io.BytesIO(raw[_HEADER_LEN:]), writer.parsed, reader.parsed)
        )
    except (EOFError, ValueError, TypeError, IndexError, UnicodeDecodeError, OverflowError) as exc:
        raise DecodeError(Reasons.UNDECODABLE, f"Avro body does not match its schema: {exc}") from exc
    return record


def decode_observation(registry: SchemaRegistry, raw: bytes, max_bytes: int) -> dict[str, Any]:
    """Turn a reporter's record bytes into an observation dict, whatever accepted format it uses.

    Raises :class:`DecodeError` with the dead-letter reason code.
    """
    if len(raw) > max_bytes:
        raise DecodeError(Reasons.OVERSIZED, f"record of {len(raw)} bytes exceeds {max_bytes}")
    if raw.startswith(SINGLE_OBJECT_MARKER):
        return decode(registry, "observation", raw)
    if raw[:1] == bytes([_CONFLUENT_MAGIC]) and len(raw) >= 5:
        schema_id = int.from_bytes(raw[1:5], "big")
        raise DecodeError(
            Reasons.UNKNOWN_SCHEMA,
            f"Confluent-framed record (schema id {schema_id}) and no registry configured",
        )
    if raw.lstrip()[:1] == b"{":
        return _decode_json_observation(registry, raw)
    raise DecodeError(Reasons.UNDECODABLE, "neither Avro single-object encoding nor a JSON document")


def _decode_json_observation(registry: SchemaRegistry, raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(Reasons.UNDECODABLE, f"invalid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise DecodeError(Reasons.SCHEMA_MISMATCH, "JSON observation must be an object")
    for name in ("event_time", "report_time"):
        if isinstance(doc.get(name), str):
            doc[name] = _parse_iso(name, doc[name])
    schema = registry.latest("observation")
    # fastavro's writer coerces (1.5 -> 1, true -> 1.0); validate strictly first. Writing then fills
    # defaults, and reading back gives exactly the shape an Avro record decodes to.
    try:
        validate(doc, schema.parsed, raise_errors=True)
    except (ValidationError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise DecodeError(
            Reasons.SCHEMA_MISMATCH, f"JSON does not match the observation schema: {exc}"
        ) from exc
    try:
        return decode(registry, "observation", encode(schema, doc))
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        raise DecodeError(
            Reasons.SCHEMA_MISMATCH, f"JSON does not match the observation schema: {exc}"
        ) from exc


def _reject_constant(name: str) -> float:
    # json.loads would accept NaN and Infinity; keep them so validation can name them.
    return math.nan if name == "NaN" else math.copysign(math.inf, -1.0 if name.startswith("-") else 1.0)


def _parse_iso(name: str, text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise DecodeError(Reasons.SCHEMA_MISMATCH, f"{name}: not an ISO-8601 time: {text[:40]!r}") from exc
    if moment.tzinfo is None:
        raise DecodeError(Reasons.SCHEMA_MISMATCH, f"{name}: ISO-8601 time needs an offset: {text[:40]!r}")
    return moment
