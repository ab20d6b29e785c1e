"""Bounded decompression, without a broker: record batches built as Kafka producers build them, in
every codec, read through :mod:`stream_app.kafka.fetch_bounds` — the same records as aiokafka reads
when within the budget, a stand-in by position when not. (On the real broker, with the worker's memory
measured: tests/integration/test_hostile_reporters.py.)"""

from __future__ import annotations

import struct
import tracemalloc
import zlib
from typing import Any

import cramjam
import pytest
from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.record._crc32c import crc as crc32c
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.domain.reasons import Reason
from stream_app.kafka import fetch_bounds
from stream_app.kafka.fetch_bounds import (
    BatchUndecodableError,
    BoundedRecords,
    FetchLimits,
    OverBudgetError,
    Withheld,
    bounded,
    inflate,
)

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
ROOMY = FetchLimits(max_batch_bytes=64 * 1024 * 1024, max_batch_records=100_000)

Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


def _batch(codec: int, records: list[Record], base_offset: int = 0) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 30,
    )
    for index, (key, value, headers) in enumerate(records):
        assert builder.append(
            index, timestamp=1_700_000_000_000 + index, key=key, value=value, headers=headers
        )
    raw = bytearray(builder.build())
    raw[0:8] = base_offset.to_bytes(8, "big", signed=True)  # what the broker does as it appends it
    return bytes(raw)


def _read(batch: Any) -> list[tuple[int, bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    return [(r.offset, r.key, r.value, list(r.headers)) for r in batch]


def _aiokafka(raw: bytes) -> list[tuple[int, bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    batch = MemoryRecords(raw).next_batch()
    assert batch is not None
    return _read(batch)


records_strategy = st.lists(
    st.tuples(
        st.one_of(st.none(), st.binary(max_size=64)),
        st.one_of(st.none(), st.binary(max_size=2048)),
        st.lists(st.tuples(st.text(max_size=12), st.binary(max_size=32)), max_size=3),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=records_strategy, codec=st.sampled_from(sorted(CODECS.values())), base=st.integers(0, 2**40))
def test_within_the_budget_every_codec_reads_the_very_records_aiokafka_reads(
    records: list[Record], codec: int, base: int
) -> None:
    raw = _batch(codec, records, base)
    batch, _ = bounded(memoryview(raw), ROOMY)
    assert batch.validate_crc()
    assert _read(batch) == _aiokafka(raw)
    assert batch.next_offset == base + len(records)


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_a_batch_that_inflates_past_the_budget_is_withheld_by_position_without_being_inflated(
    codec: str,
) -> None:
    limit = 1024 * 1024
    # forty records of 512 KiB of zeros: a few KB compressed, 20 MiB inflated
    raw = _batch(CODECS[codec], [(b"k", bytes(512 * 1024), []) for _ in range(40)], base_offset=1000)
    assert len(raw) < 2 * 1024 * 1024
    tracemalloc.start()
    try:
        batch, spent = bounded(memoryview(raw), FetchLimits(limit, 100_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * limit, f"{codec}: {peak} bytes allocated for a budget of {limit}"
    assert spent == 0, "a withheld batch holds nothing"
    [stand_in] = list(batch)
    withheld = stand_in.value
    assert isinstance(withheld, Withheld)
    assert withheld == b"", "a stage that does not know it meets an empty, undecodable value"
    assert (withheld.reason, withheld.first_offset, withheld.last_offset) == (
        Reason.DECOMPRESSED_TOO_LARGE,
        1000,
        1039,
    )
    assert stand_in.offset == 1039, "the stand-in takes the last offset: the rest is a gap to Faust"
    assert (withheld.codec, withheld.compressed_bytes) == (codec, len(raw))
    assert batch.next_offset == 1040
    assert batch.validate_crc()


def test_a_batch_declaring_more_records_than_allowed_is_withheld_even_uncompressed() -> None:
    raw = _batch(0, [(None, b"v", []) for _ in range(150)], base_offset=7)
    [stand_in] = list(bounded(memoryview(raw), FetchLimits(ROOMY.max_batch_bytes, 100))[0])
    assert stand_in.value.reason == Reason.BATCH_TOO_MANY_RECORDS
    assert (stand_in.value.first_offset, stand_in.value.last_offset) == (7, 156)


def test_just_within_the_budget_is_inflated() -> None:
    raw = _batch(4, [(None, bytes(100_000), [])])
    inflated_size = len(_batch(0, [(None, bytes(100_000), [])])) - 61
    batch, spent = bounded(memoryview(raw), FetchLimits(inflated_size, 10))
    assert spent == inflated_size
    [(_, _, value, _)] = _read(batch)
    assert value == bytes(100_000)
    with pytest.raises(OverBudgetError):
        inflate(4, memoryview(raw)[61:], inflated_size - 1, bytearray())


@pytest.mark.parametrize(
    ("codec", "payload"),
    [
        (1, b"\x1f\x8b not gzip at all"),
        (1, zlib.compress(b"zlib, not gzip")),
        (2, b"\x82SNAPPY\x00" + bytes(8) + b"\x00\x00\x10\x00short"),
        (3, b"not an lz4 frame"),
        (4, b"not a zstd frame"),
        (7, b"a codec Kafka does not have"),
    ],
)
def test_bytes_that_are_not_what_the_codec_says_are_undecodable(codec: int, payload: bytes) -> None:
    with pytest.raises(BatchUndecodableError):
        inflate(codec, memoryview(payload), 1024 * 1024, bytearray())


def test_raw_snappy_and_several_gzip_members_inflate_as_aiokafka_reads_them() -> None:
    raw_snappy = bytes(cramjam.snappy.compress_raw(b"abc" * 1000))
    into = bytearray()
    assert inflate(2, memoryview(raw_snappy), 10_000, into) == 3000
    assert bytes(into[:3000]) == b"abc" * 1000
    members = bytes(cramjam.gzip.compress(b"first ")) + bytes(cramjam.gzip.compress(b"second"))
    into = bytearray(b"HEAD")
    assert inflate(1, memoryview(members), 100, into) == 12
    assert bytes(into) == b"HEADfirst second"


def test_a_fetch_reads_each_batch_through_the_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BoundedRecords, "limits", FetchLimits(1024 * 1024, 1000))
    good = _batch(4, [(b"k", b"fine", [])], base_offset=0)
    bomb = _batch(4, [(b"k", bytes(4 * 1024 * 1024), [])], base_offset=1)
    after = _batch(3, [(b"k", b"after", [])], base_offset=2)
    cut_short = after[: len(after) // 2]  # the fetch's size limit cut the last batch: fetched again
    records = BoundedRecords(good + bomb + after + cut_short)
    values: list[bytes | None] = []
    while records.has_next():
        values.extend(r.value for r in records.next_batch())
    assert values[0] == b"fine"
    assert isinstance(values[1], Withheld)
    assert values[2] == b"after"
    assert len(values) == 3
    assert records.size_in_bytes() == len(good + bomb + after + cut_short)


def test_install_points_aiokafka_at_the_bounded_records_and_refuses_a_changed_aiokafka(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(aiokafka_fetcher, "MemoryRecords", MemoryRecords)
    monkeypatch.setattr(BoundedRecords, "limits", None)
    fetch_bounds.install(ROOMY)
    fetch_bounds.install(ROOMY)  # twice is once
    assert aiokafka_fetcher.MemoryRecords is BoundedRecords
    assert BoundedRecords.limits == ROOMY
    monkeypatch.setattr(aiokafka_fetcher, "MemoryRecords", object)
    with pytest.raises(RuntimeError, match="check fetch_bounds"):
        fetch_bounds.install(ROOMY)


def test_a_record_aiokafka_cannot_read_withholds_its_batch_instead_of_raising_out_of_the_fetcher() -> None:
    """A header name that is not UTF-8: the broker stores it, aiokafka raises UnicodeDecodeError
    reading it (which would escape the consumer's fetch)."""
    raw = bytearray(_batch(0, [(b"k", b"v", [("AB", b"x")])], base_offset=5))
    raw[raw.index(b"AB")] = 0xFF
    struct.pack_into(">I", raw, 17, crc32c(bytes(raw[21:])))  # a valid checksum: as a producer sent it
    batch, _ = bounded(memoryview(bytes(raw)), ROOMY)
    assert batch.validate_crc()
    [stand_in] = list(batch)
    assert stand_in.value.reason == Reason.BATCH_UNDECODABLE
    assert "UnicodeDecodeError" in stand_in.value.detail
    assert stand_in.offset == 5


def _partition_records(data: bytes) -> Any:
    """aiokafka's own reading of one partition's fetch (what its fetcher builds from the response)."""
    return aiokafka_fetcher.PartitionRecords(
        TopicPartition("t", 0), aiokafka_fetcher.MemoryRecords(data), None, 0, None, None, True, 0
    )


def test_a_fetch_of_many_batches_each_within_the_budget_stops_at_the_budget_and_resumes_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Twenty zstd batches of 3 MiB of zeros each, a few KB on the wire: each within a 4 MiB budget,
    together 60 MiB. aiokafka reads them through its own PartitionRecords: the fetch stops once the
    budget is read, and the offset it would fetch from next is right after the last batch read."""
    monkeypatch.setattr(aiokafka_fetcher, "MemoryRecords", MemoryRecords)
    monkeypatch.setattr(BoundedRecords, "limits", None)
    fetch_bounds.install(FetchLimits(4 * 1024 * 1024, 100_000))
    data = b"".join(_batch(4, [(b"k", bytes(3 * 1024 * 1024), [])], base_offset=i) for i in range(20))
    assert len(data) < 20 * 4096
    tracemalloc.start()
    try:
        records = _partition_records(data)
        read = [r.offset for r in records]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert read == [0, 1], "the second batch passes the budget: the fetch stops after it"
    assert records.next_fetch_offset == 2, "fetched again from there"
    assert peak < 4 * 4 * 1024 * 1024, peak


def test_records_declared_across_a_fetch_are_bounded_as_well(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiokafka_fetcher, "MemoryRecords", MemoryRecords)
    monkeypatch.setattr(BoundedRecords, "limits", None)
    fetch_bounds.install(FetchLimits(ROOMY.max_batch_bytes, 1000))
    data = b"".join(_batch(3, [(None, b"", [])] * 900, base_offset=i * 900) for i in range(10))
    records = _partition_records(data)
    assert len(list(records)) == 1800
    assert records.next_fetch_offset == 1800
