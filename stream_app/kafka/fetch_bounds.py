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
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final

import cramjam
from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.record.default_records import DefaultRecordBatch
from aiokafka.record.memory_records import MemoryRecords

from stream_app.logs import get_logger
from stream_app.ops import metrics

if TYPE_CHECKING:
    from stream_app.settings import Settings

log = get_logger(__name__)


class Reasons:
    """Dead-letter reason codes of a withheld batch."""

    DECOMPRESSED_TOO_LARGE = "decompressed_too_large"  # inflates past STREAM_APP_FETCH_MAX_BATCH_BYTES
    BATCH_TOO_MANY_RECORDS = "batch_too_many_records"  # declares more than STREAM_APP_FETCH_MAX_BATCH_RECORDS
    BATCH_UNDECODABLE = "batch_undecodable"  # its compressed bytes or its records cannot be read


# The record batch (message format v2, the only one Kafka 4 stores), its fixed-size header:
_LENGTH_AT: Final = 8  # int32: the batch's size after this field
_LOG_OVERHEAD: Final = 12  # base offset and length
_MAGIC_AT: Final = 16
_ATTRIBUTES_AT: Final = 21  # int16: codec in the low 3 bits, transactional 0x10, control 0x20
_LAST_OFFSET_DELTA_AT: Final = 23
_MAX_TIMESTAMP_AT: Final = 35
_RECORDS_COUNT_AT: Final = 57
_HEADER_SIZE: Final = 61
_CODEC_MASK: Final = 0x07
_CONTROL: Final = 0x20
CODECS: Final = {1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
_XERIAL_MAGIC: Final = b"\x82SNAPPY\x00"  # snappy as the Java client frames it: 16-byte header, blocks
_FIRST_TRY_RATIO: Final = 16  # the first buffer tried: this many times the compressed size


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

    reason: str
    detail: str
    first_offset: int
    last_offset: int
    codec: str
    compressed_bytes: int
    compressed_sha256: bytes

    @classmethod
    def of(cls, batch: memoryview, reason: str, detail: str) -> Withheld:
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


def inflate(codec: int, payload: memoryview, limit: int, into: bytearray, at: int) -> int:
    """Inflate ``payload`` (Kafka codec id ``codec``) into ``into[at:]``, growing it as needed but never
    past ``at + limit`` bytes; returns the inflated size. Raises :class:`OverBudgetError` past ``limit``,
    :class:`BatchUndecodableError` when the bytes are not what the codec says."""
    if codec == 1:
        return _inflate_gzip(payload, limit, into, at)
    if codec == 2:
        return _inflate_snappy(payload, limit, into, at)
    if codec in (3, 4):
        return _inflate_stream(cramjam.lz4 if codec == 3 else cramjam.zstd, payload, limit, into, at)
    raise BatchUndecodableError(f"unknown codec {codec}")


def _inflate_gzip(payload: memoryview, limit: int, into: bytearray, at: int) -> int:
    data = bytes(payload)
    size = 0
    while data:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            chunk = inflater.decompress(data, limit - size + 1)
        except zlib.error as exc:
            raise BatchUndecodableError(f"gzip: {exc}") from None
        if size + len(chunk) > limit:
            raise OverBudgetError
        into[at + size : at + size + len(chunk)] = chunk
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


def _inflate_snappy(payload: memoryview, limit: int, into: bytearray, at: int) -> int:
    # each snappy block starts with its inflated length: checked before anything is allocated
    size = 0
    for block in _snappy_blocks(payload):
        try:
            declared = int(cramjam.snappy.decompress_raw_len(block))
        except Exception as exc:  # cramjam's errors have no common base worth naming
            raise BatchUndecodableError(f"snappy: {exc}") from None
        if size + declared > limit:
            raise OverBudgetError
        end = at + size + declared
        if len(into) < end:
            into.extend(bytes(end - len(into)))
        try:
            written = int(cramjam.snappy.decompress_raw_into(block, memoryview(into)[at + size : end]))
        except Exception as exc:
            raise BatchUndecodableError(f"snappy: {exc}") from None
        size += written
    return size


def _inflate_stream(codec: Any, payload: memoryview, limit: int, into: bytearray, at: int) -> int:
    # cramjam inflates lz4 frames and zstd into a buffer of a fixed size and stops, with an error,
    # once it is full: try a buffer a few times the compressed size, then larger ones up to the limit
    room = min(limit + 1, max(1024 * 1024, _FIRST_TRY_RATIO * len(payload)))
    while True:
        if len(into) < at + room:
            into.extend(bytes(at + room - len(into)))
        try:
            size = int(codec.decompress_into(payload, memoryview(into)[at : at + room]))
        except cramjam.DecompressionError as exc:
            if "failed to write whole buffer" not in str(exc):
                raise BatchUndecodableError(f"{codec.__name__}: {exc}") from None
        else:
            if size > limit:  # it filled the one byte past the budget exactly
                raise OverBudgetError
            return size
        if room > limit:
            raise OverBudgetError
        room = min(limit + 1, room * 8)


class _Read:
    """A batch read within its budget: aiokafka's own batch over the records (inflated when it was
    compressed), its records read already, its checksum checked on the bytes as the broker sent them."""

    def __init__(self, readable: Any, records: list[Any]) -> None:
        self._readable = readable
        self._records = records

    def validate_crc(self) -> bool:
        return True  # checked before it was read

    def __getattr__(self, name: str) -> Any:  # base_offset, next_offset, producer_id, is_...
        return getattr(self._readable, name)

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

    def __init__(self, original: Any, batch: memoryview, withheld: Withheld) -> None:
        self._original = original  # its checksum checked already
        self.withheld = withheld
        self._timestamp = struct.unpack_from(">q", batch, _MAX_TIMESTAMP_AT)[0]

    def validate_crc(self) -> bool:
        return True

    @property
    def base_offset(self) -> int:
        return self.withheld.first_offset

    @property
    def next_offset(self) -> int:
        return self.withheld.last_offset + 1

    @property
    def producer_id(self) -> int | None:
        return self._original.producer_id  # type: ignore[no-any-return]

    @property
    def is_transactional(self) -> bool:
        return bool(self._original.is_transactional)

    is_control_batch = False

    def __iter__(self) -> Iterator[_StandIn]:
        yield _StandIn(self.withheld.last_offset, self._timestamp, self.withheld)


class BoundedRecords:
    """aiokafka's records of one partition's fetch, each batch checked before it is inflated (the
    walk over the batches is aiokafka's ``MemoryRecords``', whose compiled batches do not show their
    bytes)."""

    limits: ClassVar[FetchLimits | None] = None  # set by install()

    def __init__(self, data: bytes) -> None:
        self._buffer = memoryview(data)
        self._pos = 0

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

    def has_next(self) -> bool:
        return self._next_slice() is not None

    def next_batch(self) -> Any:
        raw = self._next_slice()
        if raw is None:
            return None
        self._pos += len(raw)
        limits = BoundedRecords.limits
        if len(raw) < _HEADER_SIZE or raw[_MAGIC_AT] < 2 or limits is None:
            # a v0/v1 message set (Kafka 4 stores none) or a batch too short: aiokafka judges it
            return MemoryRecords(bytes(raw)).next_batch()
        return bounded(raw, limits)


def bounded(raw: memoryview, limits: FetchLimits) -> Any:
    """The batch ``raw`` as the consumer may read it: its records read (inflated within the byte budget
    when compressed), or withheld — over a budget, or unreadable."""
    batch = DefaultRecordBatch(raw)
    attributes = struct.unpack_from(">h", raw, _ATTRIBUTES_AT)[0]
    codec = attributes & _CODEC_MASK
    count = struct.unpack_from(">i", raw, _RECORDS_COUNT_AT)[0]
    if attributes & _CONTROL or not batch.validate_crc():
        return batch  # aiokafka reads control batches itself, and refuses a corrupt one (fetched again)
    if count > limits.max_batch_records:
        return _withhold(
            batch,
            raw,
            Reasons.BATCH_TOO_MANY_RECORDS,
            f"declares {count} records, over STREAM_APP_FETCH_MAX_BATCH_RECORDS ({limits.max_batch_records})",
        )
    readable = batch
    if codec != 0:
        into = bytearray(raw[:_HEADER_SIZE])
        try:
            size = inflate(codec, raw[_HEADER_SIZE:], limits.max_batch_bytes, into, _HEADER_SIZE)
        except OverBudgetError:
            return _withhold(
                batch,
                raw,
                Reasons.DECOMPRESSED_TOO_LARGE,
                f"{_codec_name(raw)} batch of {len(raw)} bytes inflates past "
                f"STREAM_APP_FETCH_MAX_BATCH_BYTES "
                f"({limits.max_batch_bytes})",
            )
        except BatchUndecodableError as exc:
            return _withhold(batch, raw, Reasons.BATCH_UNDECODABLE, str(exc))
        del into[_HEADER_SIZE + size :]
        struct.pack_into(">i", into, _LENGTH_AT, len(into) - _LOG_OVERHEAD)
        struct.pack_into(">h", into, _ATTRIBUTES_AT, attributes & ~_CODEC_MASK)
        metrics.FETCH_INFLATED_BYTES.inc(size)
        readable = DefaultRecordBatch(bytes(into))
        # aiokafka's compiled batch reads nothing before its checksum is asked for; the checksum of
        # these inflated bytes is not the batch's (the batch's was checked above)
        readable.validate_crc()
    try:
        # read here, not as the consumer iterates: a record aiokafka cannot read (a header name that
        # is not UTF-8, which the broker lets through) would otherwise raise out of the fetcher
        records = list(readable)
    except Exception as exc:  # whatever aiokafka raises on bytes it cannot read
        return _withhold(batch, raw, Reasons.BATCH_UNDECODABLE, f"{type(exc).__name__}: {exc}"[:500])
    return _Read(readable, records)


def _withhold(batch: Any, raw: memoryview, reason: str, detail: str) -> _WithheldBatch:
    withheld = Withheld.of(raw, reason, detail)
    metrics.FETCH_BATCHES_WITHHELD.labels(reason).inc()
    log.warning(
        "batch_withheld",
        reason=reason,
        first_offset=withheld.first_offset,
        last_offset=withheld.last_offset,
        codec=withheld.codec,
        compressed_bytes=withheld.compressed_bytes,
        detail=detail,
    )
    return _WithheldBatch(batch, raw, withheld)


def install(limits: FetchLimits) -> None:
    """Have every aiokafka consumer of this process read its fetches through :class:`BoundedRecords`."""
    current = getattr(aiokafka_fetcher, "MemoryRecords", None)
    if current is not BoundedRecords and current is not MemoryRecords:
        raise RuntimeError("aiokafka's fetcher no longer reads MemoryRecords: check fetch_bounds again")
    BoundedRecords.limits = limits
    aiokafka_fetcher.MemoryRecords = BoundedRecords
