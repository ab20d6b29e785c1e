"""The librdkafka lane consumer's thread against a fake confluent consumer: rebalance callbacks fired
inside ``consume()`` as librdkafka fires them, the order of revoke, commit and assign, paused partitions
(never a record skipped), commit errors, record errors."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from faust.types import TP
from structlog.testing import capture_logs

from stream_app.domain.reasons import Reason
from stream_app.kafka.fetch_bounds import Withheld
from stream_app.kafka.rdlanes import RdConsumerThread, RdLaneConsumer, consumer_properties
from stream_app.kafka.rdlanes import thread as thread_module
from stream_app.ops.metrics import REGISTRY
from stream_app.settings import Settings

A = TP("in", 0)
B = TP("in", 1)


@dataclass
class Record:
    """A confluent ``Message`` as the fake consumer returns it."""

    topic_: str | None
    partition_: int | None
    offset_: int
    value_: bytes = b"v"
    error_: KafkaError | None = None
    headers_: list[tuple[str, bytes]] | None = None

    def topic(self) -> str | None:
        return self.topic_

    def partition(self) -> int | None:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def key(self) -> bytes | None:
        return b"k"

    def value(self) -> bytes:
        return self.value_

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self.headers_

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)

    def error(self) -> KafkaError | None:
        return self.error_


def rec(tp: TP, offset: int, **kw: Any) -> Record:
    return Record(tp.topic, tp.partition, offset, **kw)


@dataclass
class FakeRd:
    """The confluent consumer: each ``poll()`` runs the next scripted step (which may fire the
    rebalance callbacks, as librdkafka does inside that call) and returns its first record, the
    ``consume()`` that follows the rest."""

    steps: list[Callable[[FakeRd], list[Record]]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    committed_at: dict[TP, int] = field(default_factory=dict)
    commit_error: KafkaError | None = None
    on_assign: Any = None
    on_revoke: Any = None
    on_lost: Any = None
    rest: list[Record] = field(default_factory=list)

    def subscribe(self, topics: list[str], on_assign: Any, on_revoke: Any, on_lost: Any) -> None:
        self.on_assign, self.on_revoke, self.on_lost = on_assign, on_revoke, on_lost

    def poll(self, timeout: float) -> Record | None:
        self.rest = self.steps.pop(0)(self) if self.steps else []
        return self.rest.pop(0) if self.rest else None

    def consume(self, num_messages: int, timeout: float) -> list[Record]:
        assert timeout == 0  # what poll() left: never waiting for a whole batch
        found, self.rest = self.rest[:num_messages], self.rest[num_messages:]
        return found

    def committed(self, parts: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [
            TopicPartition(p.topic, p.partition, self.committed_at.get(TP(p.topic, p.partition), -1001))
            for p in parts
        ]

    def assign(self, parts: list[TopicPartition]) -> None:
        self.log.append("assign " + ",".join(f"{p.partition}@{p.offset}" for p in parts))

    def pause(self, parts: list[TopicPartition]) -> None:
        self.log.append("pause " + ",".join(str(p.partition) for p in parts))

    def resume(self, parts: list[TopicPartition]) -> None:
        self.log.append("resume " + ",".join(str(p.partition) for p in parts))

    def seek(self, part: TopicPartition) -> None:
        self.log.append(f"seek {part.partition}@{part.offset}")

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        if self.commit_error is not None:
            raise KafkaException(self.commit_error)
        self.log.append("commit " + ",".join(f"{p.partition}@{p.offset}" for p in offsets))


def parts(*tps: TP) -> list[TopicPartition]:
    return [TopicPartition(tp.topic, tp.partition) for tp in tps]


class FakeConsumer:
    """Faust's consumer as the thread sees it: its revoke and assign handlers run on the app's loop."""

    def __init__(self, rd: FakeRd, loop: asyncio.AbstractEventLoop) -> None:
        self.rd = rd
        self.loop = loop
        self.app = SimpleNamespace(
            conf=SimpleNamespace(broker_session_timeout=6.0),
            should_stop=False,
            consumer_generation_id=0,
            stream_settings=Settings.model_construct(),
            on_rebalance_start=lambda: rd.log.append("rebalance_start"),
        )
        self.transport = SimpleNamespace(app=self.app)
        self._read_offset: dict[TP, int | None] = {}
        self.crashed: list[BaseException] = []

    async def commit(self) -> bool:
        self.rd.log.append("app commit")
        await asyncio.sleep(0.01)  # the handler really waits: the callback must wait for it
        return True

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        await asyncio.sleep(0.01)
        self.rd.log.append(f"app revoked {sorted(tp.partition for tp in revoked)}")

    async def on_partitions_assigned(self, assigned: set[TP], generation: int) -> None:
        assert self.app.consumer_generation_id == generation  # set before Faust's handler runs
        self.rd.log.append(f"app assigned {sorted(tp.partition for tp in assigned)} gen {generation}")


_threads: list[RdConsumerThread] = []


@pytest.fixture(autouse=True)
def _closed() -> Iterator[None]:
    """The threads' own loops and executors closed after each test (never started: nothing else)."""
    yield
    while _threads:
        thread = _threads.pop()
        thread._calls.shutdown()
        thread._watermark_calls.shutdown()
        thread.thread_loop.close()


async def started(rd: FakeRd) -> tuple[RdConsumerThread, FakeConsumer]:
    consumer = FakeConsumer(rd, asyncio.get_running_loop())
    thread = RdConsumerThread(consumer, loop=consumer.loop, beacon=None)  # type: ignore[arg-type]
    _threads.append(thread)
    thread._rd = rd
    await thread.subscribe(["in"])
    return thread, consumer


async def fetch(thread: RdConsumerThread, active: set[TP] | None) -> dict[TP, list[Any]]:
    """One fetch as the consumer thread makes it (in its own thread: the callbacks block on the loop)."""
    return await asyncio.to_thread(lambda: asyncio.run(thread._fetch(active, 0.01)))


def assign(*tps: TP) -> Callable[[FakeRd], list[Record]]:
    def step(rd: FakeRd) -> list[Record]:
        rd.log.append("assign_cb")
        rd.on_assign(rd, parts(*tps))
        return []

    return step


def records(*found: Record) -> Callable[[FakeRd], list[Record]]:
    return lambda rd: list(found)


def offsets(fetched: dict[TP, list[Any]]) -> dict[int, list[int]]:
    return {tp.partition: [m.offset for m in messages] for tp, messages in fetched.items()}


def test_the_first_assignment_starts_with_a_revocation_and_assigns_at_the_committed_offsets() -> None:
    async def scenario() -> None:
        rd = FakeRd(steps=[assign(A, B)], committed_at={A: 7})
        thread, consumer = await started(rd)
        assert await fetch(thread, set()) == {}
        assert rd.log == [
            "assign_cb",
            "rebalance_start",
            "app revoked []",
            "assign 0@7,1@-1001",  # no commit: librdkafka's offset reset (earliest) applies
            "resume 0,1",
            "app assigned [0, 1] gen 1",
        ]
        assert thread.assignment() == {A, B}
        assert consumer.app.consumer_generation_id == 1

    asyncio.run(scenario())


def test_a_revocation_waits_for_the_commit_and_faust_s_handler_before_the_partitions_go() -> None:
    def revoke(rd: FakeRd) -> list[Record]:
        rd.log.append("revoke_cb")
        rd.on_revoke(rd, parts(A, B))
        rd.log.append("unassigned")  # what librdkafka does once the callback returned
        rd.on_assign(rd, parts(B))
        return []

    async def scenario() -> None:
        rd = FakeRd(steps=[assign(A, B), revoke])
        thread, _ = await started(rd)
        await fetch(thread, set())
        rd.log.clear()
        await fetch(thread, {A, B})
        assert rd.log[:5] == [
            "revoke_cb",
            "rebalance_start",
            "app commit",
            "app revoked [0, 1]",
            "unassigned",
        ]
        assert rd.log[-1] == "app assigned [1] gen 2"
        assert thread.assignment() == {B}

    asyncio.run(scenario())


def test_the_app_s_commit_during_the_revoke_callback_is_made_on_the_consumer_thread() -> None:
    """librdkafka never completes a synchronous commit made from another thread while the consumer
    thread is inside its eager revoke callback (measured against the broker: given up after the 11 s
    bound, and every rebalance of a two-worker drain stalled that long; the same commit made in the
    callback took a millisecond): the app's commit of what was acked is made on the consumer thread
    then, and from the call executor otherwise."""
    callback_threads: set[int] = set()

    def revoke(rd: FakeRd) -> list[Record]:
        callback_threads.add(threading.get_ident())
        rd.on_revoke(rd, parts(A, B))
        return []

    class WhereCommitted(FakeRd):
        def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
            super().commit(offsets, asynchronous)
            self.log.append(
                "on the callback's thread" if threading.get_ident() in callback_threads else "elsewhere"
            )

    async def scenario() -> None:
        rd = WhereCommitted(steps=[assign(A, B), revoke])
        thread, consumer = await started(rd)

        async def faust_commit() -> bool:  # Faust's commit of what was acked ends in the driver's
            return await thread.commit({A: 5})

        consumer.commit = faust_commit  # type: ignore[method-assign]
        await fetch(thread, set())
        assert await thread.commit({B: 3})
        assert rd.log[-2:] == ["commit 1@3", "elsewhere"]
        rd.log.clear()
        took = time.monotonic()
        await fetch(thread, {A, B})
        assert time.monotonic() - took < 5.0
        assert rd.log[:4] == [
            "rebalance_start",
            "commit 0@5",
            "on the callback's thread",
            "app revoked [0, 1]",
        ]
        assert thread._in_callback is False
        assert thread._callback_calls.empty() or thread._callback_calls.get_nowait() is None

    asyncio.run(scenario())


def test_a_lost_assignment_is_not_committed() -> None:
    def lose(rd: FakeRd) -> list[Record]:
        rd.on_lost(rd, parts(A))
        return []

    async def scenario() -> None:
        rd = FakeRd(steps=[assign(A), lose])
        thread, _ = await started(rd)
        await fetch(thread, set())
        rd.log.clear()
        await fetch(thread, {A})
        assert rd.log == ["rebalance_start", "app revoked [0]"]
        assert thread.assignment() == set()

    asyncio.run(scenario())


def test_a_consume_a_rebalance_interrupted_hands_nothing_over_and_rewinds_what_stays_assigned() -> None:
    def interrupted(rd: FakeRd) -> list[Record]:
        rd.on_revoke(rd, parts(A, B))
        rd.on_assign(rd, parts(B))
        return [rec(A, 10), rec(B, 20), rec(B, 21)]  # fetched for the assignment that is gone

    async def scenario() -> None:
        rd = FakeRd(steps=[assign(A, B), interrupted], committed_at={B: 15})
        thread, _ = await started(rd)
        await fetch(thread, set())
        rd.log.clear()
        assert await fetch(thread, {A, B}) == {}
        assert rd.log[-1] == "seek 1@15"  # B again from where it was assigned; A is someone else's

    asyncio.run(scenario())


def test_records_fetched_as_the_group_is_joined_are_fetched_again_from_the_first_one_dropped() -> None:
    """The first ``consume()`` joins the group: the assignment runs inside it and librdkafka may hand
    over the new partitions' first records in the same call. A partition never committed is set back
    to the first of them, never "to the stored offset" (refused: the records would be skipped)."""

    def joined(rd: FakeRd) -> list[Record]:
        rd.on_assign(rd, parts(A, B))
        return [rec(A, 0), rec(A, 1), rec(B, 7)]

    async def scenario() -> None:
        rd = FakeRd(steps=[joined], committed_at={B: 7})
        thread, _ = await started(rd)
        assert await fetch(thread, {A, B}) == {}
        assert sorted(line for line in rd.log if line.startswith("seek")) == ["seek 0@0", "seek 1@7"]

    asyncio.run(scenario())


def test_a_partition_paused_while_its_records_were_fetched_keeps_them_for_its_resumption() -> None:
    async def scenario() -> None:
        rd = FakeRd(steps=[assign(A, B), records(rec(A, 1), rec(A, 2), rec(B, 5)), records()])
        thread, _ = await started(rd)
        await fetch(thread, set())
        rd.log.clear()
        # the lane paused A after this fetch was asked for: librdkafka had A's records queued already
        assert offsets(await fetch(thread, {B})) == {1: [5]}
        assert rd.log == ["pause 0"]
        assert await fetch(thread, {B}) == {}  # still paused: held, not handed over, not dropped
        resumed = await fetch(thread, {A, B})
        assert offsets(resumed) == {0: [1, 2]}  # handed over first once resumed, in order
        assert rd.log[-1] == "resume 0"

    asyncio.run(scenario())


def test_a_seek_drops_what_was_held_of_the_partition() -> None:
    async def scenario() -> None:
        rd = FakeRd(steps=[assign(A), records(rec(A, 1))], committed_at={A: 0})
        thread, _ = await started(rd)
        await fetch(thread, set())
        assert await fetch(thread, set()) == {}  # the flow is stopped: A's record held
        await thread.seek_to_committed()
        assert rd.log[-1] == "seek 0@0"
        assert await fetch(thread, {A}) == {}  # fetched again from the committed offset instead

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "code", [KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID, KafkaError.REBALANCE_IN_PROGRESS]
)
def test_a_commit_the_group_refuses_returns_false_and_never_crashes(code: int) -> None:
    async def scenario() -> None:
        rd = FakeRd(steps=[assign(A)])
        thread, _ = await started(rd)
        await fetch(thread, set())
        rd.commit_error = KafkaError(code)
        assert await thread.commit({A: 5}) is False
        rd.commit_error = None
        assert await thread.commit({A: 5, B: 9}) is True
        assert rd.log[-1] == "commit 0@5"  # only what is still assigned

    asyncio.run(scenario())


@dataclass
class FakeProbe:
    """The probe consumer: a fetch at ``base`` up to ``end`` fails at ``base`` (one unreadable batch),
    after it reads."""

    base: int
    end: int
    high: int
    at: int = -1
    fetches: int = 0
    closed: bool = False

    def get_watermark_offsets(self, part: TopicPartition, timeout: float) -> tuple[int, int]:
        return (0, self.high)

    def assign(self, parts: list[TopicPartition]) -> None:
        self.at = parts[0].offset

    def consume(self, num_messages: int, timeout: float) -> list[Record]:
        self.fetches += 1
        if self.at < self.end:
            return [Record("in", 0, self.base, error_=KafkaError(KafkaError._BAD_COMPRESSION))]
        return [rec(A, self.at)]

    def close(self) -> None:
        self.closed = True


def test_a_batch_librdkafka_cannot_read_becomes_one_stand_in_for_all_its_offsets_and_is_skipped() -> None:
    async def scenario() -> None:
        bad = Record("in", 0, 41, error_=KafkaError(KafkaError._BAD_COMPRESSION, "zstd failed"))
        eof = Record("in", 1, 3, error_=KafkaError(KafkaError._PARTITION_EOF))
        transport = Record(None, None, -1001, error_=KafkaError(KafkaError._TRANSPORT, "broker down"))
        rd = FakeRd(steps=[assign(A, B), records(rec(A, 40), bad, eof, transport), records(bad)])
        thread, _ = await started(rd)
        probe = FakeProbe(base=41, end=45, high=50)
        thread._probe = lambda: probe  # type: ignore[method-assign]
        await fetch(thread, set())
        fetched = await fetch(thread, {A, B})
        assert offsets(fetched) == {0: [40, 44]}  # the stand-in at the batch's last offset: 41-43 a gap
        stand_in = fetched[A][1].value
        assert isinstance(stand_in, Withheld)
        assert stand_in.reason == Reason.BATCH_UNDECODABLE
        assert "_BAD_COMPRESSION" in stand_in.detail
        assert (stand_in.first_offset, stand_in.last_offset) == (41, 44)
        assert rd.log[-1] == "seek 0@45"  # past the batch: librdkafka would fail it again for ever
        assert probe.closed
        assert probe.fetches <= 4  # bisected between 42 and the high watermark
        assert await fetch(thread, {A, B}) == {}  # the same failure again: never a second stand-in

    asyncio.run(scenario())


def test_an_unreadable_first_batch_of_a_partition_at_offset_0_is_stood_in_too() -> None:
    async def scenario() -> None:
        bad = Record("in", 0, 0, error_=KafkaError(KafkaError._BAD_COMPRESSION, "zstd failed"))
        rd = FakeRd(steps=[assign(A), records(bad)])
        thread, _ = await started(rd)
        probe = FakeProbe(base=0, end=8, high=10)
        thread._probe = lambda: probe  # type: ignore[method-assign]
        await fetch(thread, set())
        fetched = await fetch(thread, {A})
        assert offsets(fetched) == {0: [7]}
        assert (fetched[A][0].value.first_offset, fetched[A][0].value.last_offset) == (0, 7)
        assert rd.log[-1] == "seek 0@8"

    asyncio.run(scenario())


@dataclass
class FlakyProbe(FakeProbe):
    """A probe whose every other fetch meets a broker error (no offset) before its answer."""

    flaky: bool = False

    def consume(self, num_messages: int, timeout: float) -> list[Record]:
        self.flaky = not self.flaky
        if self.flaky:
            return [Record(None, None, -1001, error_=KafkaError(KafkaError._TRANSPORT, "broker away"))]
        return super().consume(num_messages, timeout)


def test_a_broker_error_met_while_bisecting_is_no_answer_about_the_batch() -> None:
    async def scenario() -> None:
        bad = Record("in", 0, 41, error_=KafkaError(KafkaError._BAD_COMPRESSION))
        rd = FakeRd(steps=[assign(A), records(bad)])
        thread, _ = await started(rd)
        probe = FlakyProbe(base=41, end=45, high=50)
        thread._probe = lambda: probe  # type: ignore[method-assign]
        await fetch(thread, set())
        fetched = await fetch(thread, {A})
        assert (fetched[A][0].value.first_offset, fetched[A][0].value.last_offset) == (41, 44)
        assert rd.log[-1] == "seek 0@45"  # the batch's true end, not one the errors made up

    asyncio.run(scenario())


def test_without_the_batch_s_end_one_stand_in_at_its_base_offset() -> None:
    async def scenario() -> None:
        bad = Record("in", 0, 41, error_=KafkaError(KafkaError._BAD_COMPRESSION))
        rd = FakeRd(steps=[assign(A), records(bad, rec(A, 45, headers_=[("h", b"x")]))])
        thread, _ = await started(rd)

        def unreachable() -> Any:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))

        thread._probe = unreachable  # type: ignore[method-assign]
        await fetch(thread, set())
        fetched = await fetch(thread, {A})
        assert offsets(fetched) == {0: [41, 45]}
        assert (fetched[A][0].value.first_offset, fetched[A][0].value.last_offset) == (41, 41)
        assert fetched[A][1].headers == [("h", b"x")]  # headers kept: dead letters carry them

    asyncio.run(scenario())


def test_the_messages_are_faust_s_and_made_once() -> None:
    async def scenario() -> None:
        rd = FakeRd(steps=[assign(A), records(rec(A, 3))])
        thread, _ = await started(rd)
        await fetch(thread, set())
        message = (await fetch(thread, {A}))[A][0]
        assert (message.topic, message.partition, message.offset, message.value) == ("in", 0, 3, b"v")
        assert message.timestamp == 1_700_000_000.0
        assert RdLaneConsumer._to_message(SimpleNamespace(), A, message) is message  # type: ignore[arg-type]

    asyncio.run(scenario())


def test_the_consumer_properties_come_from_the_settings() -> None:
    settings = Settings.model_construct().model_copy(
        update={"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "app"}
    )
    props = consumer_properties(
        settings,
        "group",
        "client",
        session_timeout_s=6.0,
        heartbeat_interval_s=1.0,
        max_poll_interval_s=300.0,
        auto_offset_reset="earliest",
    )
    assert props["security.protocol"] == "SASL_SSL"
    assert props["sasl.username"] == "app"
    assert props["enable.auto.commit"] is False
    assert props["enable.auto.offset.store"] is False
    assert props["partition.assignment.strategy"] == "roundrobin"
    assert props["session.timeout.ms"] == 6000
    assert props["fetch.max.bytes"] == settings.fetch_max_batch_bytes
    assert props["receive.message.max.bytes"] >= props["fetch.max.bytes"] + 512
    assert props["queued.max.messages.kbytes"] <= 16 * 1024
    # a full prefetch queue is refilled within a fetch wait, not librdkafka's second (the drain waited)
    assert props["fetch.queue.backoff.ms"] <= 100


def test_a_paused_partition_s_queued_records_are_drained_in_the_thread_not_ahead_of_a_live_one() -> None:
    async def scenario() -> None:
        flood = [rec(A, o) for o in range(100, 103)]
        rd = FakeRd(steps=[assign(A, B), records(*flood), records(rec(B, 7))])
        thread, _ = await started(rd)
        await fetch(thread, set())
        # one fetch: A's queued records go aside, B's live record comes in the same call
        assert offsets(await fetch(thread, {B})) == {1: [7]}
        assert offsets(await fetch(thread, {A, B})) == {0: [100, 101, 102]}

    asyncio.run(scenario())


def test_the_thread_s_own_poll_before_the_fetcher_runs_joins_the_group_and_holds_what_it_gets() -> None:
    async def scenario() -> None:
        rd = FakeRd(steps=[assign(A), records(rec(A, 0))])
        thread, _ = await started(rd)
        for _ in range(2):
            await asyncio.to_thread(lambda: asyncio.run(thread._poll_idle()))
        assert thread.assignment() == {A}
        # while the fetcher does not run, nothing new is fetched: what it may hold stays bounded
        assert any(line.startswith("pause") for line in rd.log)
        assert offsets(await fetch(thread, {A})) == {0: [0]}  # held for the fetcher, not lost
        assert any(line.startswith("resume") for line in rd.log)

    asyncio.run(scenario())


@dataclass
class PausingRd(FakeRd):
    """The fake consumer with librdkafka's pauses: once the scripted steps are done, ``poll()`` hands
    over the backlog of the partitions not paused. ``lose_resumes`` resumes are dropped as librdkafka
    drops an outdated one (the partition stays paused, nothing said)."""

    backlog: dict[TP, list[Record]] = field(default_factory=dict)
    paused: set[TP] = field(default_factory=set)
    lose_resumes: int = 0

    def poll(self, timeout: float) -> Record | None:
        if self.steps:
            return super().poll(timeout)
        self.rest = [r for tp, found in self.backlog.items() if tp not in self.paused for r in found]
        for tp in set(self.backlog) - self.paused:
            self.backlog[tp] = []
        return self.rest.pop(0) if self.rest else None

    def pause(self, parts: list[TopicPartition]) -> None:
        super().pause(parts)
        self.paused |= {TP(p.topic, p.partition) for p in parts}

    def resume(self, parts: list[TopicPartition]) -> None:
        super().resume(parts)
        if self.lose_resumes:
            self.lose_resumes -= 1
            return
        self.paused -= {TP(p.topic, p.partition) for p in parts}


def test_a_resume_librdkafka_dropped_is_made_again_and_the_partition_fetched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """librdkafka drops a resume that another thread's seek overtook: the partition stays paused while
    the driver's books say resumed, and nothing of it is ever fetched unless the resume is made again."""
    monkeypatch.setattr(thread_module, "RESUME_AGAIN_S", 0.0, raising=False)

    async def scenario() -> None:
        rd = PausingRd(steps=[assign(A)], backlog={A: [rec(A, 0), rec(A, 1)]})
        thread, _ = await started(rd)
        await fetch(thread, set())  # joins: A assigned
        rd.paused.add(A)  # the flow stopped: A paused (what a fetch with nothing active does)
        thread._paused.add(A)
        rd.lose_resumes = 1
        fetched: dict[TP, list[Any]] = {}
        for _ in range(3):
            fetched = await fetch(thread, {A})
            if fetched:
                break
        assert offsets(fetched) == {0: [0, 1]}

    asyncio.run(scenario())


@dataclass
class SlowSeekRd(FakeRd):
    """The fake consumer whose ``seek()`` takes a while, noting a pause or resume made meanwhile."""

    seeking: threading.Event = field(default_factory=threading.Event)
    overlapped: list[str] = field(default_factory=list)

    def seek(self, part: TopicPartition) -> None:
        self.seeking.set()
        time.sleep(0.2)
        super().seek(part)
        self.seeking.clear()

    def pause(self, parts: list[TopicPartition]) -> None:
        if self.seeking.is_set():
            self.overlapped.append("pause")
        super().pause(parts)

    def resume(self, parts: list[TopicPartition]) -> None:
        if self.seeking.is_set():
            self.overlapped.append("resume")
        super().resume(parts)


def test_a_seek_from_the_app_s_loop_and_the_thread_s_pauses_are_made_one_at_a_time() -> None:
    """A seek and a pause or resume of the same partition made at once from two threads: librdkafka
    may drop either (the one numbered first and queued last), so the driver never makes them at once."""

    async def scenario() -> None:
        rd = SlowSeekRd(steps=[assign(A, B)])
        thread, _ = await started(rd)
        await fetch(thread, set())
        seeking = asyncio.create_task(asyncio.to_thread(thread.seek, A, 5))  # the app's loop (recovery)
        await asyncio.to_thread(rd.seeking.wait, 1.0)
        await fetch(thread, {B})  # the consumer thread pauses A meanwhile
        await seeking
        assert rd.overlapped == []
        assert "seek 0@5" in rd.log
        assert "pause 0" in rd.log

    asyncio.run(scenario())


def _stats(found: dict[TP, dict[str, Any]]) -> str:
    """librdkafka's statistics of a consumer for these partitions (the fields the stall watch reads;
    each partition's given fields over a partition at 40 of 100, nothing queued, its leader up)."""
    base = {
        "fetch_state": "active",
        "next_offset": 40,
        "app_offset": 40,
        "committed_offset": 30,
        "hi_offset": 100,
        "lo_offset": 0,
        "fetchq_cnt": 0,
        "rxmsgs": 40,
        "leader": 1,
    }
    topics: dict[str, Any] = {}
    for tp, part in found.items():
        partitions = topics.setdefault(tp.topic, {"partitions": {"-1": {"leader": -1}}})["partitions"]
        partitions[str(tp.partition)] = base | part
    return json.dumps({"brokers": {"b:9093/1": {"nodeid": 1, "state": "UP"}}, "topics": topics})


def test_a_partition_behind_that_fetches_nothing_for_an_interval_is_logged_and_seeked_again() -> None:
    """The stall seen once (docs/performance.md): a partition meant to be fetched, behind its high
    watermark, nothing queued, nothing received between two statistics while its leader is up. It is
    seeked, by the next fetch, to where the app's records of it end: librdkafka fetches it again."""
    moved = {"rxmsgs": 41, "next_offset": 41, "app_offset": 41}

    async def scenario() -> None:
        rd = FakeRd(steps=[assign(A, B)])
        thread, _ = await started(rd)
        await fetch(thread, set())
        await fetch(thread, {A, B})  # both meant to be fetched
        rd.log.clear()
        thread._on_stats(_stats({A: {}, B: {}}))  # the first statistics: no judgement yet
        await fetch(thread, {A, B})
        thread._on_stats(_stats({A: moved, B: {"rxmsgs": 50, "next_offset": 50}}))  # both moved
        assert thread._unstick == {}
        thread._on_stats(_stats({A: moved, B: {"rxmsgs": 55, "next_offset": 55}}))  # no fetch between
        assert thread._unstick == {}  # statistics queued while the app's loop was busy: no judgement
        await fetch(thread, {A, B})
        stalls = REGISTRY.get_sample_value("stream_app_fetch_stalls_total") or 0.0
        thread._on_stats(_stats({A: moved, B: {"rxmsgs": 60, "next_offset": 60}}))  # A did not move
        assert thread._unstick == {A: 41}
        assert REGISTRY.get_sample_value("stream_app_fetch_stalls_total") == stalls + 1
        await fetch(thread, {A, B})
        assert "seek 0@41" in rd.log
        assert "seek 1@" not in " ".join(rd.log)
        assert thread._unstick == {}

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "why",
    [
        {"hi_offset": 41},  # caught up
        {"fetchq_cnt": 5},  # librdkafka holds records of it: the app is behind, not the fetch
        {"leader": 2},  # its leader is not up: a broker away, reported elsewhere
    ],
)
def test_a_partition_caught_up_queued_or_without_its_leader_is_no_stall(why: dict[str, int]) -> None:
    async def scenario() -> None:
        rd = FakeRd(steps=[assign(A)])
        thread, _ = await started(rd)
        await fetch(thread, set())
        await fetch(thread, {A})
        for _ in range(3):
            await fetch(thread, {A})
            thread._on_stats(_stats({A: {"next_offset": 41, "app_offset": 41, **why}}))
        assert thread._unstick == {}

    asyncio.run(scenario())


def test_a_partition_paused_or_not_asked_for_is_no_stall() -> None:
    async def scenario() -> None:
        rd = FakeRd(steps=[assign(A, B)])
        thread, _ = await started(rd)
        await fetch(thread, set())
        await fetch(thread, {B})  # A paused (a full lane): not fetched, rightly
        for _ in range(3):
            await fetch(thread, {B})
            thread._on_stats(_stats({A: {}}))
        assert thread._unstick == {}

    asyncio.run(scenario())


def test_a_worker_the_group_never_assigns_says_so_every_interval_until_it_is_joined(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A member whose join Kafka refuses (INCONSISTENT_GROUP_PROTOCOL: another member on aiokafka)
    is retried by librdkafka without a word: the worker says it is still waiting for its group."""
    monkeypatch.setattr(thread_module, "JOIN_WARN_S", 0.05)

    async def scenario() -> None:
        rd = FakeRd(steps=[assign(A)])
        thread, consumer = await started(rd)
        consumer.app.conf.id = "app"
        with capture_logs() as logs:
            thread._warn_not_joined()  # not yet
            await asyncio.sleep(0.06)
            thread._warn_not_joined()
            thread._warn_not_joined()  # once per interval
            await fetch(thread, set())  # joined
            await asyncio.sleep(0.06)
            thread._warn_not_joined()
        assert [e["event"] for e in logs if e["event"] != "rdkafka_assigned"] == ["rdkafka_not_joined"]

    asyncio.run(scenario())
