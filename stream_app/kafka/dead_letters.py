"""Dead letters: what a stage writes for a record it refuses, bounded whatever the record was.

A dead letter keeps the refused record (its key, value and headers), where it was read, the stage and
the reason. A reporter chooses all three parts, up to the broker's limits, so a letter that copied them
blindly could be larger than Kafka takes, and a stage that waited for it to be taken would stop every
reporter's intake behind one record. So every letter fits by construction (:meth:`Letter.fitted`):
a key longer than the intake's key limit, a value longer than what is left of an output, headers beyond
``STREAM_APP_INTAKE_MAX_HEADERS_BYTES`` are each replaced by their size and SHA-256 digest and flagged;
the original stays readable in the source topic at the letter's position. A letter Kafka refuses for
good anyway is sent once more in its minimal form (:meth:`Letter.minimal`: position, reason, sizes and
digests); should even that be refused, the publisher counts it, logs it and moves on
(``stream_app_dead_letters_lost_total``, alert ``StreamAppDeadLetterLost``): a permanent refusal is
never a wait.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from stream_app.domain.model import Rejection
from stream_app.domain.records import DeadLetterHeader, DeadLetterRecord
from stream_app.kafka.fetch_bounds import Withheld
from stream_app.kafka.lanes import Message
from stream_app.logs import get_logger
from stream_app.ops import metrics
from stream_app.ops.failures import error_type
from stream_app.settings import DEAD_LETTER_OVERHEAD_BYTES, Settings
from stream_app.wire import codecs
from stream_app.wire.schemas import SchemaVersion

log = get_logger(__name__)

MESSAGE_MAX_CHARS = 2000  # a dead letter's message for people
_MESSAGE_MAX_BYTES = 4000  # ... and its bytes, whatever characters it holds
_MINIMAL_MESSAGE_CHARS = 200
HEADERS_MAX_COUNT = 64  # more headers than this are left out whatever their size


@dataclass(frozen=True, slots=True)
class LetterBounds:
    """How much of a refused record a dead letter carries. With the settings' own check
    (``output_max_bytes`` holds the largest record, the key twice and :data:`DEAD_LETTER_OVERHEAD_BYTES`:
    headers up to 8 KiB and 64 headers' framing, a 4,000-byte message, names, positions and digests), a
    letter within these bounds always fits in an output."""

    key_bytes: int
    original_bytes: int
    headers_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> LetterBounds:
        return cls(
            key_bytes=settings.intake_max_key_bytes,
            # the key twice: the letter's own Kafka key and its source_key
            original_bytes=settings.output_max_bytes
            - 2 * settings.intake_max_key_bytes
            - DEAD_LETTER_OVERHEAD_BYTES,
            headers_bytes=settings.intake_max_headers_bytes,
        )


def text(value: str, max_chars: int = MESSAGE_MAX_CHARS) -> str:
    """``value`` as a letter may carry it: at most ``max_chars`` characters and
    :data:`_MESSAGE_MAX_BYTES` bytes of valid UTF-8 (a lone surrogate becomes ``?``)."""
    encoded = value[:max_chars].encode("utf-8", "replace")[:_MESSAGE_MAX_BYTES]
    return encoded.decode("utf-8", "ignore")


def _sha256(data: bytes | None) -> bytes | None:
    return None if data is None else hashlib.sha256(data).digest()


def _headers_of(message: Message) -> list[DeadLetterHeader]:
    headers = getattr(message, "headers", None) or ()  # a plain record may have none
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [
        {"name": text(str(name), 256), "value": None if value is None else bytes(value)}
        for name, value in pairs
    ]


def _headers_digest(headers: Sequence[DeadLetterHeader]) -> tuple[int, bytes | None]:
    if not headers:
        return 0, None
    digest = hashlib.sha256()
    size = 0
    for header in headers:
        name = header["name"].encode()
        value = header["value"] or b""
        digest.update(name + b"\0" + value + b"\0")
        size += len(name) + len(value)
    return size, digest.digest()


@dataclass(frozen=True, slots=True)
class Letter:
    """A dead letter to publish: the record (Avro ``dead_letter``) and where it goes."""

    topic: str
    key: bytes | None
    record: DeadLetterRecord
    reporter: str | None = None  # whose record was refused (None: an internal record)
    poison: bool = False  # it made a stage fail (logged on its own) rather than refused by a check

    def encode(self, schema: SchemaVersion) -> bytes:
        return codecs.encode(schema, self.record)

    def fitted(self, bounds: LetterBounds) -> Letter:
        """This letter with each part over its bound replaced by its size and digest (flagged). The
        letter's Kafka key is the record's key, or its digest when the key is left out."""
        record = self.record
        changes: dict[str, Any] = {}
        key = self.key
        if record["source_key"] is not None and len(record["source_key"]) > bounds.key_bytes:
            changes.update(source_key=None, source_key_truncated=True)
            key = record["source_key_sha256"]
        if len(record["original"]) > bounds.original_bytes:
            changes.update(original=b"", original_truncated=True)
        headers = record["source_headers"]
        if len(headers) > HEADERS_MAX_COUNT or record["source_headers_size"] > bounds.headers_bytes:
            changes.update(source_headers=[], source_headers_truncated=True)
        if not changes:
            return self
        return replace(self, key=key, record={**record, **changes})  # type: ignore[typeddict-item]

    def minimal(self) -> Letter:
        """The smallest letter that still says which record was refused and why: no key, value or
        headers (their sizes and digests stay), a short message."""
        record: DeadLetterRecord = {
            **self.record,
            "message": text(self.record["message"], _MINIMAL_MESSAGE_CHARS),
            "source_key": None,
            "source_key_truncated": self.record["source_key"] is not None
            or self.record["source_key_truncated"],
            "original": b"",
            "original_truncated": True,
            "source_headers": [],
            "source_headers_truncated": bool(self.record["source_headers"])
            or self.record["source_headers_truncated"],
            "minimal": True,
        }
        return replace(self, key=None, record=record)


def dead_letter(
    message: Message,
    topic: str,
    rejection: Rejection,
    *,
    now_ms: int,
    stage: str,
    reporter: str | None = None,
    error: BaseException | None = None,
    poison: bool = False,
) -> Letter:
    """The dead letter of ``message``: its key, bytes and headers unchanged, the reason, where it was
    read, the stage that refused it and, for a failure rather than a rejection, the exception's type.
    Sizes and digests of each part are always filled in; the publisher bounds the letter
    (:meth:`Letter.fitted`) as it sends it.

    A reporter's record is counted in ``stream_app_records_rejected_total{reporter,reason}``; a record
    that made a stage fail (``poison``) in ``stream_app_poison_records_total{stage,reason}`` and logged
    as an error, one line each. Rejections are logged once per batch as they are published
    (:func:`log_rejections`): a reporter sending thousands of bad records a second must not flood
    the log, and each one is on the dead-letter topic with its reason.
    """
    if reporter is not None:
        metrics.RECORDS_REJECTED.labels(reporter, rejection.reason).inc()
    if poison:
        metrics.POISON_RECORDS.labels(stage, rejection.reason).inc()
        log.error(
            "record_dead_lettered",
            stage=stage,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            reporter=reporter,
            reason=rejection.reason,
            error_type=error_type(error) if error is not None else None,
            detail=text(rejection.message, 200),
        )
    key: bytes | None = message.key
    value = message.value
    headers = _headers_of(message)
    headers_size, headers_sha256 = _headers_digest(headers)
    withheld = value if isinstance(value, Withheld) else None
    record: DeadLetterRecord = {
        "reason": str(rejection.reason),  # a plain string (not a Reason) for the compiled encoder
        "message": text(rejection.message),
        "source_topic": message.topic,
        "source_partition": message.partition,
        "source_offset": message.offset if withheld is None else withheld.first_offset,
        "source_key": key,
        "original": b"" if withheld is not None else (value or b""),
        "rejected_at": now_ms,
        "stage": stage,
        "error_type": error_type(error) if error is not None else None,
        "original_truncated": withheld is not None,
        "source_last_offset": None if withheld is None else withheld.last_offset,
        "original_size": len(value or b"") if withheld is None else withheld.compressed_bytes,
        "original_sha256": _sha256(value or b"") if withheld is None else withheld.compressed_sha256,
        "source_key_truncated": False,
        "source_key_size": None if key is None else len(key),
        "source_key_sha256": _sha256(key),
        "source_headers": headers,
        "source_headers_truncated": False,
        "source_headers_size": headers_size,
        "source_headers_sha256": headers_sha256,
        "minimal": False,
    }
    return Letter(topic, key, record, reporter, poison)


def lost(letter: Letter, error: BaseException) -> None:
    """A letter Kafka refused for good even in its minimal form: counted and logged, then skipped."""
    record = letter.record
    stage = record["stage"] or "unknown"
    metrics.DEAD_LETTERS_LOST.labels(stage).inc()
    log.error(
        "dead_letter_lost",
        stage=stage,
        topic=letter.topic,
        source_topic=record["source_topic"],
        source_partition=record["source_partition"],
        source_offset=record["source_offset"],
        reporter=letter.reporter,
        reason=record["reason"],
        error=repr(error)[:300],
    )


def log_rejections(letters: Iterable[Letter]) -> None:
    """One ``records_rejected`` line per stage, source topic and reason of a batch's rejected records:
    how many, the offsets' range per partition, and the first one's detail."""
    groups: dict[tuple[str | None, str, str | None, str], list[DeadLetterRecord]] = {}
    for letter in letters:
        if not letter.poison:
            record = letter.record
            key = (record["stage"], record["source_topic"], letter.reporter, record["reason"])
            groups.setdefault(key, []).append(record)
    for (stage, topic, reporter, reason), records in groups.items():
        offsets: dict[int, list[int]] = {}
        for record in records:
            offsets.setdefault(record["source_partition"], []).append(record["source_offset"])
        log.info(
            "records_rejected",
            stage=stage,
            topic=topic,
            reporter=reporter,
            reason=reason,
            count=len(records),
            offsets={p: f"{min(o)}..{max(o)}" for p, o in sorted(offsets.items())},
            detail=text(records[0]["message"], 200),
        )
