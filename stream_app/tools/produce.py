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
is :mod:`stream_app.tools.rows`; :func:`produce_file` is the thin Kafka edge.

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
import dataclasses
import gzip
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, cast

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from stream_app.config.blueprint import reporter_max_message_bytes
from stream_app.domain.catalogue import Catalogue
from stream_app.domain.model import Rejection
from stream_app.exceptions import ConfigurationError, ServiceUnreachableError, UsageError
from stream_app.kafka.config import confluent_config
from stream_app.settings import Settings
from stream_app.tools.rows import Encoded, RowEncoder, RowError, default_workers, detect_format, iter_rows
from stream_app.wire import codecs
from stream_app.wire.codecs import DecodeError
from stream_app.wire.intake import IntakeCheck
from stream_app.wire.schemas import SchemaRegistry, load_schemas

MAX_PRINTED_ERRORS: Final = 20
# A dry run's code for a row this tool refuses to send (the other codes are the intake's dead-letter reasons)
MALFORMED: Final = "malformed"


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

    A usage problem (unknown reporter, a bad option) raises :class:`UsageError`; a configuration
    problem (missing file, bad CSV header, missing topic) :class:`ConfigurationError`; Kafka not
    answering, :class:`ServiceUnreachableError`.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    reporter = reporter.strip().upper()
    if reporter not in catalogue.reporters:
        known = ", ".join(catalogue.reporters)
        raise UsageError(f"unknown reporter {reporter!r} (known: {known})")
    if batch < 1:
        raise UsageError("--batch must be at least 1")
    if workers is not None and workers < 1:
        raise UsageError("--workers must be at least 1")
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
