"""Avro schemas from ``avro_schemas/``, parsed once, indexed by name, version and fingerprint.

Files are named ``<subject>.v<N>.avsc``. The newest version of a subject is the reader schema;
any known version can be the writer (Avro schema resolution does the rest). ``stream-app schemas check``
(:mod:`stream_app.schema_check`) proves that every version can read the older ones' data.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import SchemaParseException, UnknownType, to_parsing_canonical_form

from stream_app.exceptions import ConfigurationError
from stream_app.wire.compiled import Compiled, compile_schema

_FILE_NAME = re.compile(r"^(?P<subject>[a-z_]+)\.v(?P<version>\d+)\.avsc$")

# CRC-64-AVRO (the Avro specification's Rabin fingerprint).
_EMPTY64 = 0xC15D213AA4D7A795


def _fingerprint_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY64 & -(fp & 1))
        table.append(fp)
    return tuple(table)


_TABLE = _fingerprint_table()


def crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO of ``data``, as defined by the Avro specification for schema fingerprints."""
    fp = _EMPTY64
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One ``.avsc`` file: subject, version, parsed schema and its fingerprint."""

    subject: str
    version: int
    parsed: Any
    canonical: str
    fingerprint: int
    # The same schema parsed for fastavro's readers and writers (with its write hint): given the
    # plain form, fastavro parses the schema again on every call (18 µs against 7 µs an encode).
    fast: Any = field(default=None, compare=False, repr=False)
    # The schema's JSON as written (docs included): what is registered in a Confluent schema registry.
    text: str = field(default="", compare=False, repr=False)
    # A Python writer and reader compiled for exactly this schema (stream_app.wire.compiled); None when
    # the schema uses what is not compiled. fastavro stays the reference and the fallback.
    compiled: Compiled | None = field(default=None, compare=False, repr=False)

    @property
    def fingerprint_bytes(self) -> bytes:
        """The fingerprint as written after the single-object marker (little-endian)."""
        return self.fingerprint.to_bytes(8, "little")

    @property
    def full_name(self) -> str:
        """The full name of a named schema (``vn.gov.reporting.v1.Observation``), else its type."""
        if isinstance(self.parsed, dict) and isinstance(self.parsed.get("name"), str):
            return str(self.parsed["name"])
        return self.canonical

    @property
    def file_name(self) -> str:
        """``<subject>.v<N>.avsc``; version 0 is a schema that came from elsewhere (a schema registry)."""
        return f"{self.subject}.v{self.version}.avsc"


@dataclass(slots=True)
class SchemaRegistry:
    """All local schema versions. Built once at start-up by :func:`load_schemas`."""

    by_subject: dict[str, list[SchemaVersion]] = field(default_factory=dict)
    by_fingerprint: dict[int, SchemaVersion] = field(default_factory=dict)

    def latest(self, subject: str) -> SchemaVersion:
        """The newest version of ``subject``: the one the processor reads with and writes."""
        try:
            return self.by_subject[subject][-1]
        except KeyError:
            raise ConfigurationError(f"no Avro schema for subject {subject!r}") from None

    def version(self, subject: str, number: int) -> SchemaVersion:
        """Version ``number`` of ``subject``."""
        for candidate in self.by_subject.get(subject, []):
            if candidate.version == number:
                return candidate
        raise ConfigurationError(f"no Avro schema {subject}.v{number}")

    def subject_of(self, full_name: str) -> str | None:
        """The subject whose newest version is the named type ``full_name``, if any."""
        for subject, versions in self.by_subject.items():
            if versions[-1].full_name == full_name:
                return subject
        return None


class InvalidSchemaError(ValueError):
    """Text that is not a valid Avro schema; the message is the parser's."""


_PARSE_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    RecursionError,
    SchemaParseException,
    UnknownType,
)


def parse_version(text: str, subject: str, version: int) -> SchemaVersion:
    """Parse one Avro schema from its JSON text; raises :class:`InvalidSchemaError`."""
    try:
        parsed = parse_schema(json.loads(text), _write_hint=False)
        canonical = to_parsing_canonical_form(parsed)
        fast = parse_schema(json.loads(text))
    except _PARSE_ERRORS as exc:
        raise InvalidSchemaError(str(exc) or type(exc).__name__) from exc
    return SchemaVersion(
        subject=subject,
        version=version,
        parsed=parsed,
        canonical=canonical,
        fingerprint=crc64_avro(canonical.encode("utf-8")),
        fast=fast,
        text=text,
        compiled=compile_schema(parsed),
    )


def parse_file(path: Path) -> SchemaVersion:
    """Parse one ``<subject>.v<N>.avsc`` file; raises ConfigurationError naming the file."""
    match = _FILE_NAME.match(path.name)
    if match is None:
        raise ConfigurationError(f"{path}: name must be <subject>.v<N>.avsc")
    try:
        return parse_version(path.read_text(encoding="utf-8"), match["subject"], int(match["version"]))
    except (InvalidSchemaError, OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: invalid Avro schema: {exc}") from exc


def load_schemas(directory: Path) -> SchemaRegistry:
    """Parse every ``*.avsc`` under ``directory``; a bad file raises an error naming it."""
    registry = SchemaRegistry()
    files = sorted(directory.glob("*.avsc"))
    if not files:
        raise ConfigurationError(f"{directory}: no .avsc files")
    for path in files:
        version = parse_file(path)
        registry.by_subject.setdefault(version.subject, []).append(version)
        registry.by_fingerprint[version.fingerprint] = version
    for versions in registry.by_subject.values():
        versions.sort(key=lambda v: v.version)
    return registry
