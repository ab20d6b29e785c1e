"""The rows of a reporter's bulk file (JSONL or CSV) as encoded observations, for ``stream-app produce``
(:mod:`stream_app.tools.produce`): the pure part, which connects to nothing.

Every row becomes an Avro single-object encoded observation, validated against the newest observation
schema client-side (:class:`RowEncoder`); a malformed row is a :class:`RowError` with its line number and
the reason. :func:`iter_rows` streams a file's rows in file order, parsed in several processes for a large
file.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import math
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import IO, Any, Final, Literal, NamedTuple

from fastavro import parse_schema
from fastavro.validation import ValidationError, validate

from stream_app.exceptions import ConfigurationError
from stream_app.wire import codecs
from stream_app.wire.schemas import SchemaVersion

Format = Literal["jsonl", "csv"]

BREAKDOWN_PREFIX: Final = "breakdown."
_EXTENSIONS: Final[dict[str, Format]] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
}
_TIME_FIELDS: Final = ("event_time", "report_time")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_BOM = b"\xef\xbb\xbf"


class MalformedRowError(Exception):
    """A row that cannot become an observation; the message is the reason, without the line number."""


class RowError(NamedTuple):
    """A malformed row: its line number in the file (1-based) and why it was not sent."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


class Encoded(NamedTuple):
    """A row ready to send: its line number, message key and Avro single-object bytes."""

    line: int
    key: bytes
    value: bytes


# --------------------------------------------------------------------------------------------
# Pure part: rows to records to bytes.


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    kind: str  # string | optional_string | int | long | double | time | enum | map
    required: bool  # no default in the schema
    symbols: tuple[str, ...] = ()  # of an enum

    @property
    def expected(self) -> str:
        """What a value of this field must be, for error messages."""
        if self.kind == "enum":
            return f"one of {', '.join(self.symbols)}"
        return _KIND_WORDS[self.kind]


_KIND_WORDS: Final = {
    "string": "a string",
    "optional_string": "a string or null",
    "int": "an integer",
    "long": "an integer",
    "double": "a number",
    "time": "epoch milliseconds or an ISO-8601 time",
    "map": "an object of strings",
}


def _fields(schema: SchemaVersion) -> tuple[_Field, ...]:
    """The observation's fields and how a text cell of each is read, from the Avro schema itself."""
    out = []
    for field in schema.parsed["fields"]:
        ftype = field["type"]
        if isinstance(ftype, list):
            kinds = [t for t in ftype if t != "null"]
            if len(kinds) != 1 or kinds[0] != "string" or "null" not in ftype:
                raise ConfigurationError(f"observation field {field['name']!r}: unsupported union {ftype}")
            kind = "optional_string"
        elif isinstance(ftype, dict):
            kind = "time" if ftype.get("logicalType") == "timestamp-millis" else ftype["type"]
        else:
            kind = ftype
        if kind not in {"string", "optional_string", "int", "long", "double", "time", "enum", "map"}:
            raise ConfigurationError(f"observation field {field['name']!r}: unsupported type {ftype}")
        symbols = tuple(ftype["symbols"]) if kind == "enum" else ()
        out.append(_Field(field["name"], kind, "default" not in field, symbols))
    return tuple(out)


def _iso_ms(text: str) -> int:
    """Epoch milliseconds of digits or of an ISO-8601 time with an offset."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise MalformedRowError(f"not epoch milliseconds nor an ISO-8601 time: {text[:40]!r}") from None
    if moment.tzinfo is None:
        raise MalformedRowError(f"ISO-8601 time needs an offset (e.g. +07:00): {text[:40]!r}")
    return (moment - _EPOCH) // _ONE_MS


def parse_time(name: str, value: Any) -> int:
    """Epoch milliseconds from an integer or a string (digits, or ISO-8601 with an offset)."""
    if isinstance(value, str):
        try:
            return _iso_ms(value)
        except MalformedRowError as exc:
            raise MalformedRowError(f"{name}: {exc}") from None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise MalformedRowError(
        f"{name}: expected epoch milliseconds (an integer) or an ISO-8601 string, got {_describe(value)}"
    )


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'…' if len(text) > 40 else ''}"


TEXT, CONVERTED, BREAKDOWN = 0, 1, 2


class Column(NamedTuple):
    """One CSV column: the field (or breakdown) it fills and how a cell is read.

    ``kind`` is TEXT (the cell as is), CONVERTED (through ``convert``) or BREAKDOWN (an entry of
    the breakdowns map). An empty cell of a ``nullable`` column is null, of another column absent
    (so the schema default applies, or the field is missing).
    """

    name: str
    kind: int
    convert: Callable[[str], Any] | None
    nullable: bool


class RowEncoder:
    """Turns rows of one reporter's file into validated, encoded observations.

    ``encode_json`` and ``encode_csv`` return ``(key, value)`` or raise :class:`MalformedRowError`.
    """

    def __init__(self, schema: SchemaVersion, reporter: str) -> None:
        # fastavro re-parses a schema on every call unless it carries the parse hint; the bytes
        # written are the same, about 2.5 times faster. The fingerprint is the registry's.
        self.schema = dataclasses.replace(schema, parsed=parse_schema(schema.parsed))
        self.reporter = reporter
        self.fields = _fields(schema)
        self.field_names = frozenset(f.name for f in self.fields)
        self._expected = {f.name: f.expected for f in self.fields}
        self._required = tuple(f.name for f in self.fields if f.required and f.name != "reporter")

    # -- JSON ---------------------------------------------------------------------------------
    def json_record(self, line: bytes | str) -> dict[str, Any]:
        """The observation record of one JSONL line (not yet validated)."""
        try:
            doc = json.loads(line)
        except ValueError as exc:
            raise MalformedRowError(f"invalid JSON: {exc}") from None
        if type(doc) is not dict:
            raise MalformedRowError(f"expected a JSON object, got {type(doc).__name__}")
        if not doc.keys() <= self.field_names:
            unknown = sorted(doc.keys() - self.field_names)
            raise MalformedRowError(f"unknown field(s) {', '.join(map(repr, unknown))}")
        for name in _TIME_FIELDS:
            value = doc.get(name)
            if type(value) is not int and value is not None:
                doc[name] = parse_time(name, value)
        return doc

    def encode_json(self, line: bytes | str) -> tuple[bytes, bytes]:
        """Key and value bytes of one JSONL line."""
        return self.finish(self.json_record(line))

    # -- CSV ----------------------------------------------------------------------------------
    def csv_plan(self, header: list[str]) -> list[Column]:
        """How each column is read.

        A header naming an unknown or duplicate column, or lacking a required field, is a
        problem of the whole file: :class:`ConfigurationError`.
        """
        by_name = {f.name: f for f in self.fields}
        plan: list[Column] = []
        seen: set[str] = set()
        for raw in header:
            column = raw.strip()
            if column in seen:
                raise ConfigurationError(f"CSV header: column {column!r} appears twice")
            seen.add(column)
            if column.startswith(BREAKDOWN_PREFIX) and len(column) > len(BREAKDOWN_PREFIX):
                plan.append(Column(column[len(BREAKDOWN_PREFIX) :], BREAKDOWN, None, nullable=False))
                continue
            field = by_name.get(column)
            if field is None or field.kind == "map":
                raise ConfigurationError(
                    f"CSV header: unknown column {column!r} (observation fields, or breakdown.<name>)"
                )
            convert = _CONVERTERS.get(field.kind)
            kind = TEXT if convert is None else CONVERTED
            plan.append(Column(column, kind, convert, nullable=field.kind == "optional_string"))
        missing = [name for name in self._required if name not in seen]
        if missing:
            raise ConfigurationError(f"CSV header: required column(s) missing: {', '.join(missing)}")
        return plan

    def csv_record(self, plan: list[Column], cells: list[str]) -> dict[str, Any]:
        """The observation record of one CSV row (not yet validated)."""
        if len(cells) != len(plan):
            raise MalformedRowError(f"{len(cells)} cells, the header has {len(plan)} columns")
        record: dict[str, Any] = {}
        breakdowns: dict[str, str] = {}
        for (name, kind, convert, nullable), cell in zip(plan, cells, strict=True):
            if not cell:
                if nullable:
                    record[name] = None
            elif kind == TEXT:
                record[name] = cell
            elif kind == BREAKDOWN:
                breakdowns[name] = cell
            else:
                try:
                    record[name] = convert(cell)  # type: ignore[misc]
                except MalformedRowError as exc:
                    raise MalformedRowError(f"{name}: {exc}") from None
                except ValueError:
                    raise MalformedRowError(f"{name}: not {self._expected[name]}: {cell[:40]!r}") from None
        record["breakdowns"] = breakdowns
        return record

    def encode_csv(self, plan: list[Column], cells: list[str]) -> tuple[bytes, bytes]:
        """Key and value bytes of one CSV row."""
        return self.finish(self.csv_record(plan, cells))

    # -- both ---------------------------------------------------------------------------------
    def finish(self, record: dict[str, Any]) -> tuple[bytes, bytes]:
        """Check the reporter, validate against the Avro schema, encode; returns (key, value)."""
        claimed = record.get("reporter")
        if claimed is None:
            record["reporter"] = self.reporter
        elif claimed != self.reporter:
            raise MalformedRowError(f"reporter {claimed!r} in the row, but this file is {self.reporter}'s")
        value = record.get("value")
        if type(value) is float and not math.isfinite(value):
            raise MalformedRowError(f"value: {value} is not a finite number")
        try:
            validate(record, self.schema.parsed, raise_errors=True)
        except ValidationError as exc:
            raise MalformedRowError(self._explain(record, exc)) from None
        station = record.get("station")
        key = (station or record["region"]).encode()
        return key, codecs.encode(self.schema, record)

    def _explain(self, record: dict[str, Any], exc: ValidationError) -> str:
        """A readable reason for a record fastavro refused (only on the error path)."""
        problems = []
        for field in self.fields:
            if field.name not in record:
                if field.required:
                    problems.append(f"missing required field {field.name!r}")
                continue
            value = record[field.name]
            if not _accepts(field, value):
                problems.append(f"{field.name}: expected {field.expected}, got {_describe(value)}")
        return "; ".join(problems) or f"does not match the observation schema: {exc}"


def _accepts(field: _Field, value: Any) -> bool:
    kind = field.kind
    if kind == "string":
        return isinstance(value, str)
    if kind == "optional_string":
        return value is None or isinstance(value, str)
    if kind in {"int", "long", "time"}:
        limit = 2**31 if kind == "int" else 2**63
        return type(value) is int and -limit <= value < limit
    if kind == "double":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "enum":
        return value in field.symbols
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _int_cell(cell: str) -> int:
    return int(cell)


def _float_cell(cell: str) -> float:
    number = float(cell)
    if not math.isfinite(number):
        raise MalformedRowError(f"{cell!r} is not a finite number")
    return number


def _time_cell(cell: str) -> int:
    return int(cell) if cell.isdigit() else _iso_ms(cell)


_CONVERTERS: Final[dict[str, Callable[[str], Any]]] = {
    "int": _int_cell,
    "long": _int_cell,
    "double": _float_cell,
    "time": _time_cell,
}


def detect_format(path: Path, given: str | None) -> Format:
    """The file's format: ``given``, else from its extension (``.gz`` is looked through)."""
    if given is not None:
        if given not in ("jsonl", "csv"):
            raise ConfigurationError(f"unknown format {given!r} (jsonl or csv)")
        return "jsonl" if given == "jsonl" else "csv"
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    found = _EXTENSIONS.get(suffixes[-1]) if suffixes else None
    if found is None:
        raise ConfigurationError(
            f"{path}: cannot tell the format from the extension; give --format jsonl|csv"
        )
    return found


def iter_jsonl(
    lines: Iterable[bytes], encoder: RowEncoder, first_line: int = 1
) -> Iterator[Encoded | RowError]:
    """Encoded rows and row errors of JSONL lines (the first is line ``first_line``); blank lines
    are skipped."""
    encode = encoder.encode_json
    for number, line in enumerate(lines, start=first_line):
        if number == 1 and line.startswith(_BOM):
            line = line[len(_BOM) :]  # noqa: PLW2901 - a UTF-8 byte order mark is not JSON
        if not line.strip():
            continue
        try:
            key, value = encode(line)
        except MalformedRowError as exc:
            yield RowError(number, str(exc))
            continue
        yield Encoded(number, key, value)


def _csv_header(reader: Any) -> list[str]:
    try:
        return list(next(reader))
    except StopIteration:
        raise ConfigurationError("empty CSV file: no header row") from None
    except csv.Error as exc:
        raise ConfigurationError(f"CSV header: {exc}") from None


def _csv_rows(
    reader: Any, plan: list[Column], encoder: RowEncoder, offset: int
) -> Iterator[Encoded | RowError]:
    """The records of ``reader``; line numbers are the reader's own plus ``offset``."""
    encode = encoder.encode_csv
    last = reader.line_num
    while True:
        start = offset + last + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            last = reader.line_num
            yield RowError(start, f"bad CSV: {exc}")
            continue
        last = reader.line_num
        if not cells:
            continue
        try:
            key, value = encode(plan, cells)
        except MalformedRowError as exc:
            yield RowError(start, str(exc))
            continue
        yield Encoded(start, key, value)


def iter_csv(text: Iterable[str], encoder: RowEncoder) -> Iterator[Encoded | RowError]:
    """Encoded rows and row errors of CSV text; a bad header raises ConfigurationError."""
    reader = csv.reader(text, strict=True)
    plan = encoder.csv_plan(_csv_header(reader))
    yield from _csv_rows(reader, plan, encoder, 0)


def iter_rows(
    stream: IO[bytes], fmt: Format, encoder: RowEncoder, *, workers: int = 1, chunk_rows: int = 2000
) -> Iterator[Encoded | RowError]:
    """Encoded rows and row errors of a binary stream of ``fmt``, in file order.

    With ``workers`` > 1, chunks of ``chunk_rows`` lines are parsed, validated and encoded in that
    many processes, at most two chunks each ahead of the caller (the file is still streamed).
    """
    if fmt == "jsonl":
        if workers <= 1:
            return iter_jsonl(stream, encoder)
        return _parallel(
            _line_chunks(stream, chunk_rows), _jsonl_chunk, (encoder.schema, encoder.reporter, None), workers
        )
    return _iter_csv_bytes(stream, encoder, workers, chunk_rows)


def _iter_csv_bytes(
    stream: IO[bytes], encoder: RowEncoder, workers: int, chunk_rows: int
) -> Iterator[Encoded | RowError]:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        if workers <= 1:
            yield from iter_csv(text, encoder)
            return
        lines = iter(text)
        reader = csv.reader(lines, strict=True)
        header = _csv_header(reader)
        encoder.csv_plan(header)  # a bad header stops here, before any worker starts
        chunks = _csv_chunks(lines, reader.line_num + 1, chunk_rows)
        yield from _parallel(chunks, _csv_chunk, (encoder.schema, encoder.reporter, header), workers)
    finally:
        text.detach()  # the caller owns (and closes) the binary stream


def _line_chunks(lines: Iterable[bytes], size: int) -> Iterator[tuple[int, list[bytes]]]:
    it = iter(lines)
    number = 1
    while chunk := list(itertools.islice(it, size)):
        yield number, chunk
        number += len(chunk)


def _csv_chunks(lines: Iterator[str], first_line: int, size: int) -> Iterator[tuple[int, list[str]]]:
    """Chunks of whole CSV records: never cut inside a quoted cell that spans lines (an odd number
    of quotes so far), unless the chunk grows past four times ``size`` (a broken file)."""
    chunk: list[str] = []
    number, inside_quotes = first_line, False
    for line in lines:
        chunk.append(line)
        if '"' in line and line.count('"') % 2:
            inside_quotes = not inside_quotes
        if len(chunk) >= size and (not inside_quotes or len(chunk) >= 4 * size):
            yield number, chunk
            number += len(chunk)
            chunk, inside_quotes = [], False
    if chunk:
        yield number, chunk


_WORKER: dict[str, Any] = {}


def _init_worker(schema: SchemaVersion, reporter: str, header: list[str] | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (it ends the pool)
    encoder = RowEncoder(schema, reporter)
    _WORKER["encoder"] = encoder
    if header is not None:
        _WORKER["plan"] = encoder.csv_plan(header)


def _jsonl_chunk(chunk: tuple[int, list[bytes]]) -> list[Encoded | RowError]:
    first, lines = chunk
    return list(iter_jsonl(lines, _WORKER["encoder"], first))


def _csv_chunk(chunk: tuple[int, list[str]]) -> list[Encoded | RowError]:
    first, lines = chunk
    reader = csv.reader(lines, strict=True)
    return list(_csv_rows(reader, _WORKER["plan"], _WORKER["encoder"], first - 1))


def _parallel(
    chunks: Iterator[tuple[int, Any]],
    work: Callable[[tuple[int, Any]], list[Encoded | RowError]],
    initargs: tuple[SchemaVersion, str, list[str] | None],
    workers: int,
) -> Iterator[Encoded | RowError]:
    # spawn, not fork: the parent may already run librdkafka's threads.
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=initargs) as pool:
        pending: deque[AsyncResult[list[Encoded | RowError]]] = deque()
        for chunk in chunks:
            pending.append(pool.apply_async(work, (chunk,)))
            if len(pending) >= 2 * workers:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()


def default_workers(size_bytes: int) -> int:
    """Processes to parse with: one for small files (starting more costs a second), else one per
    CPU, at most four."""
    if size_bytes < 16 * 1024 * 1024:
        return 1
    return max(1, min(4, os.cpu_count() or 1))
