"""``stream-app schemas check``: every version of every subject can read its predecessors' data.

The processor reads any known writer version with the newest version of a subject, and the center's
consumers may still hold an older version: so by default every two versions of a subject must read each
other's data both ways (``FULL_TRANSITIVE``, in the schema registry's terms). A subject that is meant to
evolve only backwards can be checked with ``--mode BACKWARD_TRANSITIVE``; below that, the processor could
meet data its reader cannot resolve.

Two checkers judge every pair, and either failing fails the check (the report names which):

- ``samples``: Avro schema resolution on data: records generated from the writer version
  (``fastavro.utils.generate_many`` with a fixed seed, plus the same records with every defaulted field
  at its default and left out), written with the writer and read with the reader;
- ``avro.compatibility``: the Apache Avro project's own reader/writer compatibility rules
  (``avro.compatibility.ReaderWriterCompatibilityChecker``, the Python port of what the Java library
  and a schema registry apply): a proof over every possible datum, not only the generated ones.

The check also fails when a file does not parse, two files have the same fingerprint (the same schema,
whatever their docs say), the versions of a subject are not numbered 1..N, or a version has an array
whose items take no bytes (:func:`zero_byte_items`: refused as a writer schema, ``schema_not_allowed``).

:func:`check_schemas` is pure apart from reading the directory; the CLI only prints its report.
"""

from __future__ import annotations

import io
import json
import random
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from fastavro import schemaless_reader, schemaless_writer
from fastavro.utils import generate_many

from stream_app.exceptions import ConfigurationError
from stream_app.wire.schemas import SchemaVersion, parse_file

SAMPLES = 50
SEED = 20200819  # the system went live on 19/08/2020
_MESSAGE_MAX = 300
_random_lock = threading.Lock()  # generate_many draws from the module-level random generator


class Mode(StrEnum):
    """Which versions must read which (the schema registry's compatibility names)."""

    BACKWARD = "BACKWARD"  # each version reads the previous version's data
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"  # each version reads every older version's data
    FULL = "FULL"  # BACKWARD, and the previous version reads the next one's data
    FULL_TRANSITIVE = "FULL_TRANSITIVE"  # every two versions read each other's data

    @property
    def transitive(self) -> bool:
        return self in {Mode.BACKWARD_TRANSITIVE, Mode.FULL_TRANSITIVE}

    @property
    def forward(self) -> bool:
        return self in {Mode.FULL, Mode.FULL_TRANSITIVE}


DEFAULT_MODE = Mode.FULL_TRANSITIVE


@dataclass(frozen=True, slots=True)
class Line:
    """One result: a version pair, a single version, or a problem with the files."""

    ok: bool
    what: str
    detail: str

    def __str__(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.what:<28} {self.detail}"


@dataclass(slots=True)
class Report:
    """The outcome of :func:`check_schemas`: one line per subject/version pair and per problem."""

    directory: Path
    mode: Mode
    lines: list[Line] = field(default_factory=list)
    files: int = 0
    subjects: int = 0
    pairs: int = 0

    @property
    def ok(self) -> bool:
        return all(line.ok for line in self.lines) and self.files > 0

    @property
    def failures(self) -> list[Line]:
        return [line for line in self.lines if not line.ok]

    def summary(self) -> str:
        counts = f"{self.subjects} subjects, {self.files} files, {self.pairs} version pair(s)"
        if self.ok:
            return f"schemas check: OK ({self.mode}): {counts} in {self.directory}"
        problems = f"{len(self.failures)} problems"
        return f"schemas check: FAILED ({self.mode}): {problems}; {counts} in {self.directory}"


def check_schemas(
    directory: Path, mode: Mode = DEFAULT_MODE, *, samples: int = SAMPLES, seed: int = SEED
) -> Report:
    """Check every ``<subject>.v<N>.avsc`` of ``directory``; never raises for a bad file, reports it."""
    report = Report(directory, mode)
    paths = sorted(directory.glob("*.avsc")) if directory.is_dir() else []
    report.files = len(paths)
    if not paths:
        report.lines.append(Line(False, str(directory), "no .avsc files"))
        return report
    parsed: list[SchemaVersion] = []
    for path in paths:
        try:
            parsed.append(parse_file(path))
        except ConfigurationError as exc:
            report.lines.append(Line(False, path.name, _short(str(exc))))
    report.lines.extend(_same_fingerprints(parsed))
    report.lines.extend(_zero_byte_arrays(parsed))
    by_subject: dict[str, list[SchemaVersion]] = defaultdict(list)
    for version in parsed:
        by_subject[version.subject].append(version)
    report.subjects = len(by_subject)
    for subject in sorted(by_subject):
        versions = sorted(by_subject[subject], key=lambda v: v.version)
        report.lines.extend(_numbering(subject, versions))
        if len(versions) == 1:
            report.lines.append(Line(True, f"{subject} v{versions[0].version}", "single version"))
            continue
        for newer_index in range(1, len(versions)):
            older = versions[:newer_index] if mode.transitive else [versions[newer_index - 1]]
            for old in older:
                report.pairs += 1
                report.lines.append(_check_pair(old, versions[newer_index], mode, samples, seed))
    return report


def sample_records(schema: SchemaVersion, count: int = SAMPLES, seed: int = SEED) -> list[Any]:
    """Records of ``schema``: ``count`` generated ones (deterministic for a seed), then, for a record
    schema, the first of them with every defaulted field at its default and with those fields left out."""
    with _random_lock:
        state = random.getstate()
        try:
            random.seed(seed)
            records = list(generate_many(schema.parsed, count))
        finally:
            random.setstate(state)
    fields = schema.parsed.get("fields") if isinstance(schema.parsed, dict) else None
    if records and fields:
        defaulted = {f["name"]: f["default"] for f in fields if "default" in f}
        records.append({**records[0], **defaulted})
        records.append({k: v for k, v in records[0].items() if k not in defaulted})
    return records


def read_problem(writer: SchemaVersion, reader: SchemaVersion, records: list[Any]) -> str | None:
    """Why data of ``writer`` (the given records) cannot be read with ``reader``; None if it can."""
    reader_fields = _field_names(reader)
    for index, record in enumerate(records):
        buf = io.BytesIO()
        try:
            schemaless_writer(buf, writer.parsed, record)
        except Exception as exc:  # any failure is the finding, reported with its type
            return f"sample {index} cannot be written with the writer: {_short(repr(exc))}"
        try:
            decoded = schemaless_reader(io.BytesIO(buf.getvalue()), writer.parsed, reader.parsed)
        except Exception as exc:  # any failure is the finding, reported with its type
            if writer.full_name != reader.full_name:
                return f"the type was renamed from {writer.full_name} to {reader.full_name}"
            return f"sample {index}: {type(exc).__name__}: {_short(str(exc))}"
        if reader_fields is not None and (not isinstance(decoded, dict) or set(decoded) != reader_fields):
            got = sorted(decoded) if isinstance(decoded, dict) else type(decoded).__name__
            return f"sample {index} decodes to {got}, not the reader's fields {sorted(reader_fields)}"
    return None


def compatibility_problem(
    writer: SchemaVersion, reader: SchemaVersion, samples: int = SAMPLES, seed: int = SEED
) -> str | None:
    """Why ``reader`` cannot read ``writer``'s data (generated samples); None if it can."""
    return read_problem(writer, reader, sample_records(writer, samples, seed))


# Types whose every value is encoded in one byte at least; the others are resolved below.
_NEVER_EMPTY = frozenset(
    {"boolean", "int", "long", "float", "double", "bytes", "string", "enum", "array", "map"}
)


def zero_byte_items(schema: Any) -> str | None:
    """Where ``schema`` (as fastavro parses it) has an array whose items may take no bytes, else None.

    An array is written as blocks of ``count`` items: with items of no bytes (``null``, an empty
    record, a record of such fields only, a ``fixed`` of size 0) a few bytes declare billions of them,
    and a reader allocates every one (fastavro takes ~70 s and gigabytes for ``[null] x 2**30``, five
    bytes long). Such a writer schema is refused before any record is read with it. A map's entry always
    carries its key (a string: one byte at least), so a map's size is bounded by the record's: a map of
    nulls (a set) is allowed.
    """
    named: dict[str, Any] = {}
    _collect_named(schema, named)
    return _find_zero_byte_array(schema, named, "$", set())


MAX_COLLECTION_DEPTH = 3
"""How deeply arrays and maps may nest in a writer schema from a registry. Checking a schema's
compatibility generates sample records with ten items per array or map, so ten to the depth items per
sample: deeper nesting, or a named type that contains itself, could make that check take gigabytes."""

_UNBOUNDED = 1 << 30


def collection_depth(schema: Any) -> int:
    """How deeply arrays and maps nest in ``schema`` (as fastavro parses it); a named type that contains
    itself counts as unbounded."""
    named: dict[str, Any] = {}
    _collect_named(schema, named)
    return _depth(schema, named, frozenset())


def _depth(schema: Any, named: dict[str, Any], within: frozenset[str]) -> int:
    if isinstance(schema, str):  # a primitive, or a reference to a named type
        definition = named.get(schema)
        if definition is None:
            return 0
        return _UNBOUNDED if schema in within else _depth(definition, named, within | {schema})
    if isinstance(schema, list):
        return max((_depth(branch, named, within) for branch in schema), default=0)
    if not isinstance(schema, dict):
        return 0
    name = schema.get("name") if _kind(schema) in {"record", "error", "enum", "fixed"} else None
    if isinstance(name, str):
        if name in within:
            return _UNBOUNDED
        within = within | {name}
    own = 1 if _kind(schema) in {"array", "map"} else 0
    deepest = max((_depth(child, named, within) for child in _children(schema).values()), default=0)
    return min(_UNBOUNDED, own + deepest)


def _collect_named(schema: Any, named: dict[str, Any]) -> None:
    """Every named type (record, enum, fixed) defined in ``schema``, by full name."""
    if isinstance(schema, list):
        for branch in schema:
            _collect_named(branch, named)
    elif isinstance(schema, dict):
        if isinstance(schema.get("name"), str) and _kind(schema) in {"record", "error", "enum", "fixed"}:
            named.setdefault(schema["name"], schema)
        for child in _children(schema).values():
            _collect_named(child, named)


def _children(schema: dict[str, Any]) -> dict[str, Any]:
    """The sub-schemas of a complex schema, by their place in it."""
    kind = _kind(schema)
    if kind in {"record", "error"}:
        return {f"fields.{f.get('name')}": f.get("type") for f in schema.get("fields") or []}
    if kind == "array":
        return {"items": schema.get("items")}
    if kind == "map":
        return {"values": schema.get("values")}
    if isinstance(schema.get("type"), (dict, list)):  # a schema wrapped in another's attributes
        return {"type": schema["type"]}
    return {}


def _kind(schema: dict[str, Any]) -> str:
    """The type a schema object names ("" when its ``type`` is itself a schema)."""
    kind = schema.get("type")
    return kind if isinstance(kind, str) else ""


def _find_zero_byte_array(schema: Any, named: dict[str, Any], path: str, seen: set[str]) -> str | None:
    if isinstance(schema, list):
        children = {f"[{i}]": branch for i, branch in enumerate(schema)}
    elif isinstance(schema, dict) and _first_visit(schema, seen):
        if _kind(schema) == "array" and _may_be_empty(schema.get("items"), named, frozenset()):
            return f"{path}.items"
        children = {f".{place}": child for place, child in _children(schema).items()}
    else:
        return None  # a primitive, or a named type's reference: walked where it is defined
    for place, child in children.items():
        found = _find_zero_byte_array(child, named, path + place, seen)
        if found is not None:
            return found
    return None


def _first_visit(schema: dict[str, Any], seen: set[str]) -> bool:
    name = schema.get("name")
    if not isinstance(name, str):
        return True
    if name in seen:
        return False
    seen.add(name)
    return True


def _may_be_empty(schema: Any, named: dict[str, Any], visiting: frozenset[str]) -> bool:
    """Whether some value of ``schema`` is encoded in no bytes at all."""
    if isinstance(schema, str):  # a primitive, or a named type (a record holding itself is never empty)
        return schema == "null" or (
            schema in named
            and schema not in visiting
            and _may_be_empty(named[schema], named, visiting | {schema})
        )
    if isinstance(schema, dict):
        return _complex_may_be_empty(schema, named, visiting)
    return False  # a union writes its branch's index first


def _complex_may_be_empty(schema: dict[str, Any], named: dict[str, Any], visiting: frozenset[str]) -> bool:
    kind = _kind(schema)
    if kind in {"record", "error"}:
        inner = visiting | {str(schema.get("name"))}
        return all(_may_be_empty(f.get("type"), named, inner) for f in schema.get("fields") or [])
    if kind == "fixed":
        return bool(schema.get("size") == 0)
    # {"type": "null"}, a logical type over its base type, a schema wrapped in another's attributes
    return kind not in _NEVER_EMPTY and _may_be_empty(schema.get("type"), named, visiting)


def avro_problem(writer: SchemaVersion, reader: SchemaVersion) -> str | None:
    """Why ``reader`` cannot read ``writer``'s data by the Avro specification's resolution rules, as the
    Apache Avro project's ``ReaderWriterCompatibilityChecker`` judges it; None if it can."""
    try:
        reader_schema, writer_schema = _avro_schema(reader), _avro_schema(writer)
    except Exception as exc:  # any failure is the finding, reported with its type
        return f"the Avro library cannot parse the schemas: {type(exc).__name__}: {_short(str(exc))}"
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(reader_schema, writer_schema)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return None
    kinds = ", ".join(sorted({kind.value for kind in result.incompatibilities}))
    messages = "; ".join(sorted(result.messages))
    return _short(f"{kinds} at {', '.join(sorted(result.locations))}: {messages}")


def _avro_schema(version: SchemaVersion) -> avro.schema.Schema:
    return avro.schema.parse(version.text or json.dumps(version.parsed))


def _check_pair(old: SchemaVersion, new: SchemaVersion, mode: Mode, samples: int, seed: int) -> Line:
    """Both checkers, backward (``new`` reads ``old``'s data) and, in a FULL mode, forward too."""
    what = f"{old.subject} v{old.version} -> v{new.version}"
    directions = [(old, new, "")] + ([(new, old, f" ({mode})")] if mode.forward else [])
    problems, done, counts = [], [], []
    for writer, reader, why in directions:
        records = sample_records(writer, samples, seed)
        counts.append(len(records))
        cannot = f"{reader.file_name} cannot read data written with {writer.file_name}{why}"
        for checker, problem in (
            ("samples", read_problem(writer, reader, records)),
            ("avro.compatibility", avro_problem(writer, reader)),
        ):
            if problem is not None:
                problems.append(f"[{checker}] {cannot}: {problem}")
        done.append(f"v{reader.version} reads v{writer.version} data")
    if problems:
        return Line(False, what, " | ".join(problems))
    return Line(True, what, f"{', '.join(done)} ({counts[0]} records each way; avro.compatibility agrees)")


def _same_fingerprints(versions: list[SchemaVersion]) -> list[Line]:
    groups: dict[int, list[SchemaVersion]] = defaultdict(list)
    for version in versions:
        groups[version.fingerprint].append(version)
    lines = []
    for fingerprint, group in sorted(groups.items()):
        if len(group) > 1:
            names = ", ".join(v.file_name for v in group)
            lines.append(
                Line(
                    False,
                    group[0].file_name,
                    f"{names} have the same fingerprint {fingerprint:016x}: one schema "
                    "(docs and defaults are not part of it), so a decoder cannot tell them apart",
                )
            )
    return lines


def _zero_byte_arrays(versions: list[SchemaVersion]) -> list[Line]:
    """A local version the registry edge would refuse as a writer (``schema_not_allowed``)."""
    lines = []
    for version in versions:
        where = zero_byte_items(version.parsed)
        if where is not None:
            lines.append(
                Line(
                    False,
                    version.file_name,
                    f"array items that take no bytes at {where} (schema_not_allowed)",
                )
            )
    return lines


def _numbering(subject: str, versions: list[SchemaVersion]) -> list[Line]:
    numbers = [v.version for v in versions]
    lines = []
    for number in sorted(set(numbers)):
        if numbers.count(number) > 1:
            lines.append(
                Line(False, f"{subject} v{number}", f"{numbers.count(number)} files have version {number}")
            )
    if numbers[0] < 1:
        lines.append(Line(False, f"{subject} v{numbers[0]}", "versions are numbered from 1"))
    missing = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
    if missing:
        have = ", ".join(f"v{n}" for n in sorted(set(numbers)))
        lines.append(
            Line(
                False,
                subject,
                f"versions must be numbered 1..N without gaps: missing "
                f"{', '.join(f'{subject}.v{n}.avsc' for n in missing)} (have {have})",
            )
        )
    return lines


def _field_names(schema: SchemaVersion) -> set[str] | None:
    if isinstance(schema.parsed, dict) and schema.parsed.get("type") == "record":
        return {f["name"] for f in schema.parsed["fields"]}
    return None


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MESSAGE_MAX else text[: _MESSAGE_MAX - 1] + "…"


def run(directory: str | Path, mode: str = DEFAULT_MODE.value) -> int:
    """``stream-app schemas check``: print one line per result and a summary; 0 if all pass, else 1."""
    report = check_schemas(Path(directory), Mode(mode))
    for line in report.lines:
        print(line)
    print(report.summary())
    return 0 if report.ok else 1
