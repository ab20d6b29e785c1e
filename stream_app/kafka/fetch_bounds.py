"""Bounded decompression: no fetched record batch can make a worker allocate more than a budget.

A producer compresses a record batch as a whole; a consumer inflates it whole before reading its first
record. Kafka's broker keeps the producer's compression, so a reporter can send ten kilobytes of zstd
that inflate to hundreds of megabytes: aiokafka inflated such a batch at once (+572 MB of resident
memory, an out-of-memory kill under the 512 Mi limit of deploy/k8s, and the same for every next owner
of the partition).

This module reads each fetched batch's header before anything is inflated and inflates it into a
buffer that cannot grow past ``STREAM_APP_FETCH_MAX_BATCH_BYTES`` (every codec Kafka has: gzip, snappy,
lz4, zstd). A batch that would inflate past that budget, or declares more than
``STREAM_APP_FETCH_MAX_BATCH_RECORDS`` records, or cannot be read, is *withheld*: its records are never
built; one stand-in record takes the batch's last offset, its value a :class:`Withheld` (a ``bytes``
that says why), and the stage that reads it dead-letters the batch by position (reason
``decompressed_too_large``, ``batch_too_many_records`` or ``batch_undecodable``). The offsets before the
stand-in are a gap to Faust, as a compacted topic's are, so the partition's commit moves past the batch
and the next records are read. The original stays readable in the topic by its offsets.

aiokafka builds the fetched records from ``aiokafka.consumer.fetcher.MemoryRecords``; :func:`install`
points that name at :class:`BoundedRecords`, once per process, and refuses to start if aiokafka no
longer has that shape (a newer aiokafka must be checked again, not trusted silently).
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final

import cramjam
from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.record.default_records import DefaultRecordBatch
from aiokafka.record.memory_records import MemoryRecords

from stream_app.domain.reasons import Reason
from stream_app.logs import get_logger
from stream_app.ops import metrics

if TYPE_CHECKING:
    from stream_app.settings import Settings

log = get_logger(__name__)


# The record batch (message format v2, the only one Kafka 4 stores), its fixed-size header:
_LENGTH_AT: Final = 8  # int32: the batch's size after this field
_LOG_OVERHEAD: Final = 12  # base offset and length
_MAGIC_AT: Final = 16
_ATTRIBUTES_AT: Final = 21  # int16: codec in the low 3 bits, transactional 0x10, control 0x20
_LAST_OFFSET_DELTA_AT: Final = 23
_MAX_TIMESTAMP_AT: Final = 35
_PRODUCER_ID_AT: Final = 43
_RECORDS_COUNT_AT: Final = 57
_HEADER_SIZE: Final = 61
_CODEC_MASK: Final = 0x07
_TRANSACTIONAL: Final = 0x10
_CONTROL: Final = 0x20
CODECS: Final = {1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
_XERIAL_MAGIC: Final = b"\x82SNAPPY\x00"  # snappy as the Java client frames it: 16-byte header, blocks
_BUFFER_FULL: Final = "failed to write whole buffer"  # cramjam (pinned in constraints.txt), tested


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """What one fetched record batch may cost: its bytes once inflated, and its records."""

    max_batch_bytes: int
    max_batch_records: int

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchLimits:
        return cls(settings.fetch_max_batch_bytes, settings.fetch_max_batch_records)


class Withheld(bytes):
    """The value of the stand-in record of a batch that was not inflated (empty bytes, so a stage that
    does not know it meets an undecodable record): the batch's offsets, its codec, and why."""

    reason: Reason
    detail: str
    first_offset: int
    last_offset: int
    codec: str
    compressed_bytes: int
    compressed_sha256: bytes

    @classmethod
    def of(cls, batch: memoryview, reason: Reason, detail: str) -> Withheld:
        base = struct.unpack_from(">q", batch, 0)[0]
        withheld = cls(b"")
        withheld.reason = reason
        withheld.detail = detail
        withheld.first_offset = base
        withheld.last_offset = base + struct.unpack_from(">i", batch, _LAST_OFFSET_DELTA_AT)[0]
        withheld.codec = _codec_name(batch)
        withheld.compressed_bytes = len(batch)
        withheld.compressed_sha256 = hashlib.sha256(batch).digest()
        return withheld


class OverBudgetError(Exception):
    """A batch would inflate past its budget."""


class BatchUndecodableError(Exception):
    """A batch's compressed bytes cannot be inflated."""


def _codec_name(batch: memoryview) -> str:
    codec = struct.unpack_from(">h", batch, _ATTRIBUTES_AT)[0] & _CODEC_MASK
    return CODECS.get(codec, "none" if codec == 0 else f"codec-{codec}")


def inflate(codec: int, payload: memoryview, limit: int, into: bytearray) -> int:
    """Inflate ``payload`` (Kafka codec id ``codec``) onto the end of ``into``, never more than ``limit``
    bytes; returns the inflated size. Raises :class:`OverBudgetError` past ``limit``,
    :class:`BatchUndecodableError` when the bytes are not what the codec says."""
    if codec == 1:
        return _inflate_gzip(payload, limit, into)
    if codec == 2:
        return _inflate_snappy(payload, limit, into)
    if codec in (3, 4):
        return _inflate_stream(cramjam.lz4 if codec == 3 else cramjam.zstd, payload, limit, into)
    raise BatchUndecodableError(f"unknown codec {codec}")


def _inflate_gzip(payload: memoryview, limit: int, into: bytearray) -> int:
    data = bytes(payload)
    size = 0
    while data:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            chunk = inflater.decompress(data, limit - size + 1)  # zlib stops at the length asked
        except zlib.error as exc:
            raise BatchUndecodableError(f"gzip: {exc}") from None
        if size + len(chunk) > limit:
            raise OverBudgetError
        into += chunk
        size += len(chunk)
        if not inflater.eof:
            raise BatchUndecodableError("gzip: truncated stream")
        data = inflater.unused_data  # a stream of several gzip members, as gzip allows
    return size


def _snappy_blocks(payload: memoryview) -> Iterator[memoryview]:
    if bytes(payload[:8]) != _XERIAL_MAGIC:
        yield payload  # one raw snappy block
        return
    cursor = 16
    while cursor < len(payload):
        if cursor + 4 > len(payload):
            raise BatchUndecodableError("snappy: truncated block length")
        length = struct.unpack_from(">i", payload, cursor)[0]
        cursor += 4
        if length < 0 or cursor + length > len(payload):
            raise BatchUndecodableError("snappy: block beyond the batch")
        yield payload[cursor : cursor + length]
        cursor += length


def _inflate_snappy(payload: memoryview, limit: int, into: bytearray) -> int:
    # each snappy block starts with its inflated length: checked before anything is allocated
    size = 0
    for block in _snappy_blocks(payload):
        try:
            declared = int(cramjam.snappy.decompress_raw_len(block))
        except Exception as exc:  # cramjam's errors have no common base worth naming
            raise BatchUndecodableError(f"snappy: {exc}") from None
        if size + declared > limit:
            raise OverBudgetError
        try:
            chunk = cramjam.snappy.decompress_raw(block)
        except Exception as exc:
            raise BatchUndecodableError(f"snappy: {exc}") from None
        into += memoryview(chunk)
        size += declared
    return size


_scratch = threading.local()  # per consumer thread: a buffer of the budget, allocated once


def _scratch_buffer(size: int) -> bytearray:
    buffer: bytearray | None = getattr(_scratch, "buffer", None)
    if buffer is None or len(buffer) < size:
        buffer = bytearray(size)
        _scratch.buffer = buffer
    return buffer


def _inflate_stream(codec: Any, payload: memoryview, limit: int, into: bytearray) -> int:
    # cramjam inflates lz4 frames and zstd into a buffer of a fixed size and stops, with an error,
    # once it is full: one pass into a buffer of the budget and one byte more, reused from batch to
    # batch (no allocation, no zero-filling: a withheld bomb costs one budget's worth of inflating)
    scratch = _scratch_buffer(limit + 1)
    try:
        size = int(codec.decompress_into(payload, memoryview(scratch)[: limit + 1]))
    except cramjam.DecompressionError as exc:
        if _BUFFER_FULL in str(exc):
            raise OverBudgetError from None
        raise BatchUndecodableError(f"{codec.__name__}: {exc}") from None
    if size > limit:  # it filled the one byte past the budget exactly
        raise OverBudgetError
    into += memoryview(scratch)[:size]
    return size


class _Read:
    """A batch read within its budget: its records (inflated when it was compressed) read already, its
    checksum checked on the bytes as the broker sent them. The inflated bytes are not kept: only the
    records and what aiokafka asks of the batch."""

    is_control_batch = False

    def __init__(self, readable: Any, records: list[Any]) -> None:
        self.base_offset: int = readable.base_offset
        self.next_offset: int = readable.next_offset
        self.producer_id: int | None = readable.producer_id
        self.is_transactional: bool = readable.is_transactional
        self._records = records

    def validate_crc(self) -> bool:
        return True  # checked before it was read

    def __iter__(self) -> Iterator[Any]:
        return iter(self._records)


@dataclass(frozen=True, slots=True)
class _StandIn:
    """The one record a withheld batch yields, at the batch's last offset."""

    offset: int
    timestamp: int
    value: Withheld
    timestamp_type: int = 0
    key: bytes | None = None
    checksum: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


class _WithheldBatch:
    """A batch that is not inflated: it yields its stand-in record only."""

    is_control_batch = False

    def __init__(self, batch: memoryview, withheld: Withheld) -> None:
        self.withheld = withheld
        self._timestamp = struct.unpack_from(">q", batch, _MAX_TIMESTAMP_AT)[0]
        attributes = struct.unpack_from(">h", batch, _ATTRIBUTES_AT)[0]
        producer_id = struct.unpack_from(">q", batch, _PRODUCER_ID_AT)[0]
        self.producer_id: int | None = None if producer_id < 0 else producer_id
        self.is_transactional = bool(attributes & _TRANSACTIONAL)

    def validate_crc(self) -> bool:
        return True  # checked before it was withheld

    @property
    def base_offset(self) -> int:
        return self.withheld.first_offset

    @property
    def next_offset(self) -> int:
        return self.withheld.last_offset + 1

    def __iter__(self) -> Iterator[_StandIn]:
        yield _StandIn(self.withheld.last_offset, self._timestamp, self.withheld)


class BoundedRecords:
    """aiokafka's records of one partition's fetch, each batch checked before it is inflated (the
    walk over the batches is aiokafka's ``MemoryRecords``', whose compiled batches do not show their
    bytes). The fetch as a whole is bounded too: once the batches read hold the budget's bytes or
    records, the rest of the fetch is left for the next one (aiokafka fetches again from the offset
    after the last batch read), so a fetch of many batches each within the budget cannot add up."""

    limits: ClassVar[FetchLimits | None] = None  # set by install()

    def __init__(self, data: bytes) -> None:
        self._buffer = memoryview(data)
        self._pos = 0
        self._bytes = 0  # read so far: inflated (or raw) bytes and records of the batches handed out
        self._records = 0

    def size_in_bytes(self) -> int:
        return len(self._buffer)

    def _next_slice(self) -> memoryview | None:
        remaining = len(self._buffer) - self._pos
        if remaining < _LOG_OVERHEAD:
            return None
        length = struct.unpack_from(">i", self._buffer, self._pos + _LENGTH_AT)[0]
        end = self._pos + _LOG_OVERHEAD + length
        if end > len(self._buffer):  # a batch the fetch's size cut short: fetched again next time
            return None
        return self._buffer[self._pos : end]

    def _spent(self) -> bool:
        limits = BoundedRecords.limits
        return limits is not None and (
            self._bytes >= limits.max_batch_bytes or self._records >= limits.max_batch_records
        )

    def has_next(self) -> bool:
        # never before the first batch: aiokafka takes a fetch with no batch for a record too large
        return self._next_slice() is not None and not (self._pos and self._spent())

    def next_batch(self) -> Any:
        raw = self._next_slice()
        if raw is None:
            return None
        self._pos += len(raw)
        limits = BoundedRecords.limits
        if len(raw) < _HEADER_SIZE or raw[_MAGIC_AT] < 2 or limits is None:
            # a v0/v1 message set (Kafka 4 stores none) or a batch too short: aiokafka judges it
            return MemoryRecords(bytes(raw)).next_batch()
        batch, inflated = bounded(raw, limits)
        self._bytes += inflated
        self._records += struct.unpack_from(">i", raw, _RECORDS_COUNT_AT)[0] if inflated else 1
        return batch


def bounded(raw: memoryview, limits: FetchLimits) -> tuple[Any, int]:
    """The batch ``raw`` as the consumer may read it — its records read (inflated within the byte
    budget when compressed), or withheld: over a budget, or unreadable — and the bytes it holds read
    (0 when withheld)."""
    batch = DefaultRecordBatch(raw)
    attributes = struct.unpack_from(">h", raw, _ATTRIBUTES_AT)[0]
    codec = attributes & _CODEC_MASK
    count = struct.unpack_from(">i", raw, _RECORDS_COUNT_AT)[0]
    if attributes & _CONTROL or not batch.validate_crc():
        return batch, len(raw)  # aiokafka reads control batches, and refuses a corrupt one (fetched again)
    if count > limits.max_batch_records:
        return _withhold(
            raw,
            Reason.BATCH_TOO_MANY_RECORDS,
            f"declares {count} records, over STREAM_APP_FETCH_MAX_BATCH_RECORDS ({limits.max_batch_records})",
        )
    readable, size = batch, len(raw)
    if codec != 0:
        into = bytearray(raw[:_HEADER_SIZE])
        try:
            size = inflate(codec, raw[_HEADER_SIZE:], limits.max_batch_bytes, into)
        except OverBudgetError:
            return _withhold(
                raw,
                Reason.DECOMPRESSED_TOO_LARGE,
                f"{_codec_name(raw)} batch of {len(raw)} bytes inflates past STREAM_APP_FETCH_MAX_BATCH_BYTES"
                f" ({limits.max_batch_bytes})",
            )
        except BatchUndecodableError as exc:
            return _withhold(raw, Reason.BATCH_UNDECODABLE, str(exc))
        struct.pack_into(">i", into, _LENGTH_AT, len(into) - _LOG_OVERHEAD)
        struct.pack_into(">h", into, _ATTRIBUTES_AT, attributes & ~_CODEC_MASK)
        metrics.FETCH_INFLATED_BYTES.inc(size)
        readable = DefaultRecordBatch(into)
        # aiokafka's compiled batch reads nothing before its checksum is asked for; the checksum of
        # these inflated bytes is not the batch's (the batch's was checked above)
        readable.validate_crc()
    try:
        # read here, not as the consumer iterates: a record aiokafka cannot read (a header name that
        # is not UTF-8, which the broker lets through) would otherwise raise out of the fetcher
        records = list(readable)
    except Exception as exc:  # whatever aiokafka raises on bytes it cannot read
        return _withhold(raw, Reason.BATCH_UNDECODABLE, f"{type(exc).__name__}: {exc}"[:500])
    return _Read(readable, records), size


class _Throttled:
    """At most one log line a second: a reporter sending bombs as fast as its quota allows must not
    flood the log (each withheld batch is counted, and dead-lettered with its detail)."""

    def __init__(self) -> None:
        self._last = 0.0
        self._suppressed = 0

    def __call__(self, event: str, **fields: Any) -> None:
        now = time.monotonic()
        if now - self._last < 1.0:
            self._suppressed += 1
            return
        log.warning(event, suppressed_since_last=self._suppressed, **fields)
        self._last, self._suppressed = now, 0


_log_withheld = _Throttled()


def _withhold(raw: memoryview, reason: Reason, detail: str) -> tuple[_WithheldBatch, int]:
    withheld = Withheld.of(raw, reason, detail)
    metrics.FETCH_BATCHES_WITHHELD.labels(reason).inc()
    _log_withheld(
        "batch_withheld",
        reason=reason,
        first_offset=withheld.first_offset,
        last_offset=withheld.last_offset,
        codec=withheld.codec,
        compressed_bytes=withheld.compressed_bytes,
        detail=detail,
    )
    return _WithheldBatch(raw, withheld), 0


def install(limits: FetchLimits) -> None:
    """Have every aiokafka consumer of this process read its fetches through :class:`BoundedRecords`."""
    current = getattr(aiokafka_fetcher, "MemoryRecords", None)
    if current is not BoundedRecords and current is not MemoryRecords:
        raise RuntimeError("aiokafka's fetcher no longer reads MemoryRecords: check fetch_bounds again")
    BoundedRecords.limits = limits
    aiokafka_fetcher.MemoryRecords = BoundedRecords
