"""The librdkafka driver's hand-over of the reporters' partitions to its bounded reader
(stream_app/kafka/rdlanes/bounded.py), against the fake confluent consumer of test_rdlanes and a fake
reader: which partitions go where on assign, the revoke before the callback returns, pauses and seeks
routed to the reader, and the fences (no record of a partition revoked or seeked meanwhile handed
over). The reader itself against the broker: tests/integration/test_hostile_reporters.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from faust.types import TP

from stream_app.kafka import fetch_bounds
from stream_app.kafka.rdlanes.bounded import BoundedReader, reader_for
from stream_app.settings import Settings
from tests.unit.test_rdlanes import (  # noqa: F401 - _closed: the threads closed after each test
    FakeRd,
    _closed,
    assign,
    fetch,
    offsets,
    parts,
    rec,
    records,
    started,
)

A = TP("in", 0)  # an internal topic's: librdkafka's
R = TP("rep", 0)  # a reporter topic's: the bounded reader's
S = TP("rep", 1)


def rep_record(tp: TP, offset: int) -> ConsumerRecord[bytes, bytes]:
    """A record as aiokafka hands it over."""
    return ConsumerRecord(tp.topic, tp.partition, offset, 1_700_000_000_000, 0, b"k", b"v", None, 1, 1, ())


@dataclass
class FakeReader:
    """The bounded reader as the consumer thread uses it (its log shared with the fake librdkafka's)."""

    log: list[str]
    buffered: dict[TP, list[ConsumerRecord[bytes, bytes]]] = field(default_factory=dict)
    assigned: frozenset[TP] = frozenset()
    seek_count: dict[TP, int] = field(default_factory=dict)
    seek_during_take: TP | None = None

    def owns(self, tp: TP) -> bool:
        return tp.topic == "rep"

    def assign(self, at: Mapping[TP, int]) -> None:
        self.log.append("reader assign " + ",".join(f"{tp.partition}@{o}" for tp, o in sorted(at.items())))
        self.assigned = frozenset(at)

    def revoke(self, tps: Iterable[TP]) -> None:
        gone = {tp for tp in tps if self.owns(tp)}
        self.log.append(f"reader revoke {sorted(tp.partition for tp in gone)}")
        self.assigned -= gone

    def ready(self, active: Iterable[TP]) -> bool:
        return any(tp in self.buffered for tp in active)

    def take(self, active: Iterable[TP]) -> tuple[dict[TP, list[Any]], dict[TP, int]]:
        found = {tp: self.buffered.pop(tp) for tp in set(active) if tp in self.buffered}
        counts = {tp: self.seek_count.get(tp, 0) for tp in found}
        if self.seek_during_take is not None:  # the app's loop seeks while the take comes back
            self.seek(self.seek_during_take, 0)
        return found, counts

    def seeks(self, tp: TP) -> int:
        return self.seek_count.get(tp, 0)

    def seek(self, tp: TP, offset: int) -> None:
        self.log.append(f"reader seek {tp.partition}@{offset}")
        self.seek_count[tp] = self.seek_count.get(tp, 0) + 1


async def with_reader(rd: FakeRd) -> tuple[Any, FakeReader]:
    thread, _ = await started(rd)
    reader = FakeReader(rd.log)
    thread._reader = reader  # type: ignore[assignment]
    await thread.subscribe(["in", "rep"])
    return thread, reader


def test_the_reporters_partitions_go_to_the_reader_at_the_committed_offsets_and_never_to_librdkafka() -> None:
    async def scenario() -> None:
        rd = FakeRd(steps=[assign(A, R, S)], committed_at={A: 7, R: 3})
        thread, reader = await with_reader(rd)
        await fetch(thread, set())
        assert "reader assign 0@3,1@-1001" in rd.log  # none committed: the reader starts it at the earliest
        assert "assign 0@7" in rd.log  # librdkafka fetches the internal partition only
        assert reader.assigned == {R, S}
        assert thread.assignment() == {A, R, S}  # Faust's view: the group's whole assignment
        rd.log.clear()
        thread._resumed_at = 0.0  # due to resume again everything it fetches
        await fetch(thread, {R})  # Faust paused A and S: librdkafka pauses A only (the reader, S)
        assert [line for line in rd.log if line.startswith(("pause", "resume"))] == ["pause 0"]
        rd.log.clear()
        await fetch(thread, {A, R, S})
        assert [line for line in rd.log if line.startswith(("pause", "resume"))] == ["resume 0"]

    asyncio.run(scenario())


def test_a_fetch_hands_over_librdkafka_s_records_and_the_reader_s_as_faust_s_messages() -> None:
    async def scenario() -> None:
        rd = FakeRd(steps=[assign(A, R), records(rec(A, 7), rec(A, 8))])
        thread, reader = await with_reader(rd)
        await fetch(thread, set())
        reader.buffered[R] = [rep_record(R, 3), rep_record(R, 4)]
        fetched = await fetch(thread, {A, R})
        assert {tp.topic: [m.offset for m in ms] for tp, ms in fetched.items()} == {
            "in": [7, 8],
            "rep": [3, 4],
        }
        assert fetched[R][0].value == b"v"
        assert fetched[R][0].generation_id == 1

    asyncio.run(scenario())


def test_a_revocation_takes_the_partitions_from_the_reader_before_the_callback_returns() -> None:
    def revoke(rd: FakeRd) -> list[Any]:
        rd.on_revoke(rd, parts(A, R))
        rd.log.append("unassigned")  # what librdkafka does once the callback returned
        return []

    async def scenario() -> None:
        rd = FakeRd(steps=[assign(A, R), revoke])
        thread, reader = await with_reader(rd)
        await fetch(thread, set())
        rd.log.clear()
        reader.buffered[R] = [rep_record(R, 3)]  # fetched by the reader before the revocation
        assert await fetch(thread, {A, R}) == {}  # a fetch a rebalance interrupted hands nothing over
        assert (
            rd.log.index("app revoked [0, 0]")
            < rd.log.index("reader revoke [0]")
            < rd.log.index("unassigned")
        )
        assert reader.assigned == frozenset()

    asyncio.run(scenario())


def test_a_record_of_a_partition_no_longer_assigned_is_never_handed_over() -> None:
    async def scenario() -> None:
        rd = FakeRd(steps=[assign(A, R)])
        thread, reader = await with_reader(rd)
        await fetch(thread, set())
        with thread._lock:
            thread._assigned.discard(R)  # revoked in the thread's books; the reader (wrongly) still has it
        reader.buffered[R] = [rep_record(R, 3)]
        assert await fetch(thread, {A, R}) == {}

    asyncio.run(scenario())


def test_seeks_of_the_reporters_partitions_go_to_the_reader_and_a_take_overtaken_by_one_is_dropped() -> None:
    async def scenario() -> None:
        rd = FakeRd(steps=[assign(A, R)], committed_at={A: 7, R: 3})
        thread, reader = await with_reader(rd)
        await fetch(thread, set())
        rd.log.clear()
        thread.seek(R, 5)
        thread.seek(A, 9)
        assert rd.log == ["reader seek 0@5", "seek 0@9"]
        await thread.seek_to_committed()
        assert "reader seek 0@3" in rd.log
        assert "seek 0@7" in rd.log
        reader.buffered[R] = [rep_record(R, 3)]
        reader.seek_during_take = R
        assert offsets(await fetch(thread, {A, R})) == {}  # taken before the seek: fetched again after it

    asyncio.run(scenario())


def test_no_reporter_topics_no_reader_and_an_unbounded_reader_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings.model_construct()
    assert reader_for(object(), settings, ()) is None
    monkeypatch.setattr(fetch_bounds.BoundedRecords, "limits", None)
    with pytest.raises(RuntimeError, match="fetch_bounds"):
        BoundedReader({"rep"}, lambda: None, 100).start()
