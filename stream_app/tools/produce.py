"""``stream-app produce``: send a reporter's bulk file of observations (JSONL or CSV) to its input topic.

Made for large files, such as a backfill since 2010: the file is streamed, never loaded whole.

- **JSONL**: one JSON document per line, shaped like the newest observation schema
  (``avro_schemas/observation.v<N>.avsc``); times are epoch milliseconds or ISO-8601 strings with
  an offset.
- **CSV**: a header row naming observation fields; ``breakdown.<name>`` columns make the
  ``breakdowns`` map; an empty cell is null (nullable fields), the default (fields with one), or
  missing (required fields).

Every row becomes an Avro single-object encoded observation, validated against the schema
client-side. ``reporter`` defaults to ``--reporter``; a row naming another reporter is an error. The
message key is the station, else the region. A malformed row is not sent: it is reported with its
line number and the reason, and the other rows go on. The pure part (rows to key and value bytes)
is :class:`RowEncoder` and :func:`iter_rows`; :func:`produce_file` is the thin Kafka edge.

``--dry-run`` connects to nothing and sends nothing: each row is encoded exactly as it would be sent,
then put through the intake's own check (:class:`~stream_app.wire.intake.IntakeCheck`: key
size, decoding, validation against the catalogue), and reported per input line, ``line N: ok`` or
``line N: <reason_code>: <message>`` (``malformed`` for a row that would not even be sent). The limits
are those of the settings the dry run runs with (``STREAM_APP_INTAKE_MAX_*``, ``STREAM_APP_MAX_FUTURE_SKEW_S``
...), the worker's when both have the same environment. What needs the worker's state (duplicates,
revisions of earlier observations) is not decided by a dry run.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import gzip
import io
import itertools
import json
import math
import multiprocessing
import os
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import IO, Any, Final, Literal, NamedTuple, cast

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from fastavro import parse_schema
from fastavro.validation import ValidationError, validate

from stream_app.config.blueprint import reporter_max_message_bytes
from stream_app.domain.catalogue import Catalogue
from stream_app.domain.model import Rejection
from stream_app.exceptions import ConfigurationError, DecodeError, ServiceUnreachableError
from stream_app.kafka.config import confluent_config
from stream_app.settings import Settings
from stream_app.wire import codecs
from stream_app.wire.intake import IntakeCheck
from stream_app.wire.schemas import SchemaRegistry, SchemaVersion, load_schemas

Format = Literal["jsonl", "csv"]

BREAKDOWN_PREFIX: Final = "breakdown."
MAX_PRINTED_ERRORS: Final = 20
# A dry run's code for a row this tool refuses to send (the other codes are the intake's dead-letter reasons)
MALFORMED: Final = "malformed"
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


# --------------------------------------------------------------------------------------------
# Summary and progress.


@dataclass(slots=True)
class Summary:
    """Counts of one run."""

    read: int = 0
    encoded: int = 0
    sent: int = 0
    parse_failed: int = 0
    delivery_failed: int = 0
    elapsed_s: float = 0.0
    dry_run: bool = False
    # dry run: rows the intake would accept, and would dead-letter by reason
    accepted: int = 0
    rejected: Counter[str] = dataclasses.field(default_factory=Counter)

    @property
    def rate(self) -> float:
        """Rows per second."""
        return self.read / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """0 when every row was sent (or, dry, would be accepted by the intake), else 1."""
        if self.parse_failed or self.delivery_failed:
            return 1
        if self.dry_run:
            return 1 if self.rejected.total() else 0
        return 0 if self.sent == self.read else 1

    def render(self) -> str:
        """The summary printed at the end."""
        if self.dry_run:
            outcome = [
                f"  {'accepted':<16}{self.accepted:>12,}  (by the intake's checks; dry run: nothing sent)",
                f"  {'failed to parse':<16}{self.parse_failed:>12,}  ({MALFORMED}: would not be sent)",
                f"  {'dead-lettered':<16}{self.rejected.total():>12,}  (the intake's refusals, by reason:)",
                *(_indented(reason, count) for reason, count in sorted(self.rejected.items())),
            ]
        else:
            outcome = [
                f"  {'sent':<16}{self.sent:>12,}  (delivery confirmed)",
                f"  {'failed to parse':<16}{self.parse_failed:>12,}",
                f"  {'failed delivery':<16}{self.delivery_failed:>12,}",
            ]
        return "\n".join(
            [
                f"  {'rows read':<16}{self.read:>12,}",
                *outcome,
                f"  {'elapsed':<16}{self.elapsed_s:>12.2f} s",
                f"  {'throughput':<16}{self.rate:>12,.0f} rows/s",
            ]
        )


def _indented(name: str, count: int) -> str:
    """A sub-line of the summary: the count right-aligned with the others when the name leaves room."""
    number = f"{count:,}"
    return f"    {name}{number:>{max(len(number) + 1, 26 - len(name))}}"


class Progress:
    """A one-line progress bar on stderr, redrawn with ``\\r`` at most a few times a second."""

    def __init__(
        self, stream: IO[str], enabled: bool, total_bytes: int | None, interval: float = 0.25
    ) -> None:
        self.stream, self.enabled, self.total_bytes, self.interval = stream, enabled, total_bytes, interval
        self.started = time.monotonic()
        self._next = self.started + interval
        self._width = 0

    def update(self, summary: Summary, position: int | None, force: bool = False) -> None:
        """Redraw if it is time (or ``force``)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now < self._next:
            return
        self._next = now + self.interval
        elapsed = max(now - self.started, 1e-9)
        parts = [f"{summary.read:>12,} rows", f"{summary.read / elapsed:>9,.0f} rows/s"]
        if self.total_bytes and position is not None:
            parts.insert(1, f"{min(100.0, 100.0 * position / self.total_bytes):5.1f}%")
        if not summary.dry_run:
            parts.append(f"sent {summary.sent:,}")
        failed = summary.parse_failed + summary.delivery_failed + summary.rejected.total()
        if failed:
            parts.append(f"failed {failed:,}")
        line = "  ".join(parts)
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)

    def clear(self) -> None:
        """Blank the bar so that a message can be printed on its line."""
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0

    def close(self, summary: Summary, position: int | None) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self.update(summary, position, force=True)
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------------------------------
# The Kafka edge.


def input_topic(settings: Settings, reporter: str) -> str:
    """The reporter's input topic, namespaced."""
    return settings.topic(f"reporter.{reporter.lower()}.observations")


def bulk_topic(settings: Settings, reporter: str) -> str:
    """The reporter's bulk topic, namespaced."""
    return settings.topic(f"reporter.{reporter.lower()}.bulk")


def producer_config(settings: Settings, batch: int) -> dict[str, Any]:
    """Producer settings for bulk sending: large compressed batches, idempotent, all replicas."""
    return {
        **confluent_config(settings),
        "acks": "all",
        "enable.idempotence": True,
        "compression.type": "lz4",
        "linger.ms": 50,
        "batch.num.messages": batch,
        # a reporter topic takes batches up to the intake's own bound (max.message.bytes); librdkafka
        # counts batch.size before compression, so a batch of this size always fits
        "batch.size": reporter_max_message_bytes(settings),
        "queue.buffering.max.messages": max(100_000, 4 * batch),
        "queue.buffering.max.kbytes": 256 * 1024,
        "message.timeout.ms": 120_000,
        "log_level": 3,
    }


def _check_topic(producer: Producer, topic: str, timeout: float) -> None:
    try:
        metadata = producer.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise ServiceUnreachableError(f"Kafka did not answer within {timeout:.0f}s: {exc}") from exc
    if topic not in metadata.topics:
        raise ConfigurationError(f"topic {topic!r} does not exist (create it: stream-app topics apply)")


def _open(path: Path) -> tuple[IO[bytes], IO[bytes]]:
    """(the stream to read, the raw file whose position tells the progress)."""
    try:
        raw = path.open("rb")
    except FileNotFoundError:
        raise ConfigurationError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigurationError(f"{path}: {exc}") from None
    if path.suffix.lower() == ".gz":
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb")), raw
    return raw, raw


def produce_file(
    settings: Settings,
    *,
    catalogue: Catalogue,
    reporter: str,
    path: Path,
    fmt: str | None = None,
    batch: int = 10_000,
    progress: bool | None = None,
    dry_run: bool = False,
    workers: int | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    bulk: bool = False,
) -> int:
    """Send ``path`` to the reporter's input topic (``bulk``: its bulk topic, read after the live feed);
    returns the exit code (0 or 1). ``reporter`` must be one of ``catalogue``'s.

    ``dry_run``: connect to nothing, send nothing; print to ``out`` what the intake would decide about
    each row (see the module's documentation). The exit code is 1 when any row would not be accepted.

    A usage or configuration problem (unknown reporter, missing file, bad CSV header, missing
    topic) raises :class:`ConfigurationError`; Kafka not answering, :class:`ServiceUnreachableError`.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    reporter = reporter.strip().upper()
    if reporter not in catalogue.reporters:
        known = ", ".join(catalogue.reporters)
        raise ConfigurationError(f"unknown reporter {reporter!r} (known: {known})")
    if batch < 1:
        raise ConfigurationError("--batch must be at least 1")
    if workers is not None and workers < 1:
        raise ConfigurationError("--workers must be at least 1")
    file_format = detect_format(path, fmt)
    schemas = load_schemas(settings.schemas_dir)
    encoder = RowEncoder(schemas.latest("observation"), reporter)
    topic = bulk_topic(settings, reporter) if bulk else input_topic(settings, reporter)
    stream, raw = _open(path)
    with contextlib.closing(raw), contextlib.closing(stream):
        total = os.fstat(raw.fileno()).st_size
        session = _Session(
            Summary(dry_run=dry_run),
            Progress(err, err.isatty() if progress is None else progress, total),
            err,
            raw,
        )
        rows = iter_rows(stream, file_format, encoder, workers=workers or default_workers(total))
        if dry_run:
            session.judge(rows, IntakeCheck.from_settings(settings, catalogue, schemas), reporter, out)
        else:
            _send(settings, topic, rows, session, encoder, batch=batch)
        summary = session.summary
        summary.elapsed_s = time.monotonic() - session.bar.started
        session.bar.close(summary, raw.tell())
    if not dry_run and summary.parse_failed > MAX_PRINTED_ERRORS:
        print(f"... and {summary.parse_failed - MAX_PRINTED_ERRORS:,} more malformed rows", file=err)
    print(f"produce {reporter} {path} -> {topic}{' (dry run)' if dry_run else ''}", file=out)
    print(summary.render(), file=out)
    return summary.exit_code


@dataclass(slots=True)
class _Session:
    """One run's counts, progress bar, error stream and raw file (for the position)."""

    summary: Summary
    bar: Progress
    err: IO[str]
    raw: IO[bytes]

    def consume(
        self,
        rows: Iterator[Encoded | RowError],
        send: Callable[[Encoded], None],
        poll: Callable[[], object] = lambda: None,
    ) -> None:
        """Count every row, report malformed ones, hand the good ones to ``send``."""
        summary, bar, err, raw = self.summary, self.bar, self.err, self.raw
        read = encoded = failed = 0
        try:
            for item in rows:
                read += 1
                if type(item) is Encoded:
                    send(item)
                    encoded += 1
                    if not encoded & 1023:
                        poll()
                        summary.read, summary.encoded = read, encoded
                        bar.update(summary, raw.tell())
                    continue
                failed += 1
                if failed <= MAX_PRINTED_ERRORS:
                    bar.clear()
                    print(str(item), file=err)
        finally:
            summary.read, summary.encoded, summary.parse_failed = read, encoded, failed

    def judge(
        self, rows: Iterator[Encoded | RowError], check: IntakeCheck, reporter: str, out: IO[str]
    ) -> None:
        """Dry run: put every encoded row through the intake's ``check`` as read from ``reporter``'s
        topic now, and print one line per row to ``out``: ``line N: ok``, ``line N: <reason>: <message>``."""
        summary, bar, raw = self.summary, self.bar, self.raw
        rejected = summary.rejected
        try:
            for item in rows:
                summary.read += 1
                if isinstance(item, Encoded):
                    summary.encoded += 1
                    verdict = check(item.key, item.value, reporter, int(time.time() * 1000))
                    if isinstance(verdict, Rejection):
                        rejected[verdict.reason] += 1
                        text = f"line {item.line}: {verdict.reason}: {verdict.message}"
                    else:
                        summary.accepted += 1
                        text = f"line {item.line}: ok"
                else:
                    summary.parse_failed += 1
                    text = f"line {item.line}: {MALFORMED}: {item.reason}"
                bar.clear()
                print(text, file=out)
                if not summary.read & 1023:
                    bar.update(summary, raw.tell())
        finally:
            bar.clear()


def _send(
    settings: Settings,
    topic: str,
    rows: Iterator[Encoded | RowError],
    session: _Session,
    encoder: RowEncoder,
    *,
    batch: int,
) -> None:
    summary = session.summary
    reported: list[str] = []

    def on_delivery(error: KafkaError | None, message: Message) -> None:
        if error is None:
            summary.sent += 1
            return
        summary.delivery_failed += 1
        if len(reported) < MAX_PRINTED_ERRORS:
            reported.append(f"delivery failed ({_observation_id(encoder, message.value())}): {error}")

    config = producer_config(settings, batch)
    config["on_delivery"] = on_delivery
    producer = Producer(config)
    _check_topic(producer, topic, settings.startup_timeout_s)
    produce, poll = producer.produce, producer.poll

    def send(item: Encoded) -> None:
        while True:
            try:
                produce(topic, item.value, item.key)
            except BufferError:  # the local queue is full: serve delivery reports until there is room
                poll(0.05)
            else:
                return

    try:
        session.consume(rows, send, lambda: poll(0))
    finally:
        while producer.flush(0.25) > 0:
            session.bar.update(summary, session.raw.tell())
        session.bar.clear()
        for line in reported:
            print(line, file=session.err)
        if summary.delivery_failed > len(reported):
            print(
                f"... and {summary.delivery_failed - len(reported):,} more delivery failures",
                file=session.err,
            )


def _observation_id(encoder: RowEncoder, value: bytes | None) -> str:
    registry = SchemaRegistry({"observation": [encoder.schema]}, {encoder.schema.fingerprint: encoder.schema})
    try:
        return str(codecs.decode(registry, "observation", value or b"")["observation_id"])
    except DecodeError:
        return "undecodable"
