"""Avro schemas from ``avro_schemas/``, parsed once, indexed by name, version and fingerprint.

Files are named ``<subject>.v<N>.avsc``. The newest version of a subject is the reader schema;
any known version can be the writer (Avro schema resolution does the rest).
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

    @property
    def fingerprint_bytes(self) -> bytes:
        """The fingerprint as written after the single-object marker (little-endian)."""
        return self.fingerprint.to_bytes(8, "little")


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


def load_schemas(directory: Path) -> SchemaRegistry:
    """Parse every ``*.avsc`` under ``directory``; a bad file raises an error naming it."""
    registry = SchemaRegistry()
    files = sorted(directory.glob("*.avsc"))
    if not files:
        raise ConfigurationError(f"{directory}: no .avsc files")
    for path in files:
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise ConfigurationError(f"{path}: name must be <subject>.v<N>.avsc")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            parsed = parse_schema(raw, _write_hint=False)
        except (ValueError, TypeError, KeyError, SchemaParseException, UnknownType) as exc:
            raise ConfigurationError(f"{path}: invalid Avro schema: {exc}") from exc
        canonical = to_parsing_canonical_form(parsed)
        version = SchemaVersion(
            subject=match["subject"],
            version=int(match["version"]),
            parsed=parsed,
            canonical=canonical,
            fingerprint=crc64_avro(canonical.encode("utf-8")),
        )
        registry.by_subject.setdefault(version.subject, []).append(version)
        registry.by_fingerprint[version.fingerprint] = version
    for versions in registry.by_subject.values():
        versions.sort(key=lambda v: v.version)
    return registry
