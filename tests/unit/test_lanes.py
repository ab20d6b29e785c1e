"""The lane between the consumer's fetch loop and a stage: batches, splits, capacity, revocation."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import pytest
from faust.types import TP

from stream_app.kafka.lanes import (
    Delivery,
    Event,
    FetchWait,
    IdleAwareFetch,
    Lane,
    Lanes,
    batch_window,
    oldest_age,
)

A = TP("in", 0)
B = TP("in", 1)


@dataclass
class Msg:
    """A record as a lane sees it: where it was read, its key and value."""

    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes = b"v"
    timestamp: float | None = None
    headers: list[tuple[str, bytes]] | None = None
    acked: bool = False


def delivery(tp: TP, offsets: range, generation: int = 1, size: int = 1) -> Delivery:
    return Delivery(tp, generation, [Event(Msg("msg", tp.partition, o, value=bytes(size))) for o in offsets])


def offsets(deliveries: list[Delivery]) -> list[tuple[int, int]]:
    return [(d.tp.partition, e.message.offset) for d in deliveries for e in d.events]


def test_take_gathers_deliveries_up_to_the_batch_and_splits_the_last() -> None:
    async def scenario() -> None:
        lane = Lane("stage", capacity=100)
        lane.put(delivery(A, range(0, 3)))
        lane.put(delivery(B, range(10, 14)))
        first = await lane.take(5, within=0.01)
        assert offsets(first) == [(0, 0), (0, 1), (0, 2), (1, 10), (1, 11)]
        assert lane.held == 2
        second = await lane.take(5, within=0.01)
        assert offsets(second) == [(1, 12), (1, 13)]
        assert lane.held == 0

    asyncio.run(scenario())


def test_take_waits_for_the_first_delivery_then_at_most_within() -> None:
    async def scenario() -> None:
        lane = Lane("stage", capacity=100)
        taker = asyncio.create_task(lane.take(10, within=0.05))
        await asyncio.sleep(0.02)
        assert not taker.done()
        lane.put(delivery(A, range(0, 2)))
        loop = asyncio.get_running_loop()
        started = loop.time()
        taken = await taker
        assert offsets(taken) == [(0, 0), (0, 1)]
        assert loop.time() - started < 0.5

    asyncio.run(scenario())


def stamped(tp: TP, offsets: range, produced: float) -> Delivery:
    """A fetch of records the reporter produced at ``produced`` (wall clock, seconds)."""
    return Delivery(tp, 1, [Event(Msg("msg", tp.partition, o, timestamp=produced)) for o in offsets])


@pytest.mark.parametrize(
    ("age", "window"),
    [
        (0.05, 0.25),  # a fresh record waits until it is 0.3 s old
        (0.20, 0.10),
        (0.26, 0.05),  # what is left of the budget is under within: within, as without a budget
        (1.50, 0.05),  # a stage behind (old records) gathers for within only
        (-2.0, 0.30),  # a producer's clock ahead of ours: age 0, never more than the budget
        (None, 0.05),  # no produce time known
    ],
)
def test_a_batch_waits_for_company_until_its_oldest_record_is_as_old_as_the_budget(
    age: float | None, window: float
) -> None:
    assert batch_window(0.05, 0.3, age) == pytest.approx(window)


def test_a_budget_not_above_within_changes_nothing() -> None:
    assert batch_window(0.05, 0.0, 0.0) == 0.05
    assert batch_window(0.05, 0.04, 0.0) == 0.05


def test_the_oldest_age_is_the_earliest_produce_time_of_the_partitions_first_records() -> None:
    a = stamped(A, range(0, 2), produced=100.0).events
    b = stamped(B, range(0, 2), produced=99.5).events
    unknown = [Event(Msg("msg", 2, 0, timestamp=None))]
    assert oldest_age([a, b, unknown], now=100.25) == pytest.approx(0.75)
    assert oldest_age([unknown, []], now=100.25) is None


def test_a_fresh_record_waits_for_company_and_takes_what_came_meanwhile() -> None:
    async def scenario() -> None:
        lane = Lane("stage", capacity=100)
        lane.put(stamped(A, range(0, 1), produced=time.time()))
        loop = asyncio.get_running_loop()
        started = loop.time()
        taker = asyncio.create_task(lane.take(10, within=0.02, age_budget=0.3))
        await asyncio.sleep(0.1)  # past within: still gathering
        assert not taker.done()
        lane.put(stamped(B, range(0, 2), produced=time.time()))
        taken = await taker
        assert offsets(taken) == [(0, 0), (1, 0), (1, 1)]
        assert 0.2 < loop.time() - started < 0.5

    asyncio.run(scenario())


def test_an_old_record_waits_within_only_and_a_full_batch_not_at_all() -> None:
    async def scenario() -> None:
        lane = Lane("stage", capacity=100)
        loop = asyncio.get_running_loop()
        lane.put(stamped(A, range(0, 1), produced=time.time() - 5.0))  # a stage behind: old records
        started = loop.time()
        assert offsets(await lane.take(10, within=0.02, age_budget=0.3)) == [(0, 0)]
        assert loop.time() - started < 0.15
        lane.put(stamped(A, range(1, 11), produced=time.time()))
        started = loop.time()
        assert len(offsets(await lane.take(10, within=0.02, age_budget=0.3))) == 10
        assert loop.time() - started < 0.05

    asyncio.run(scenario())


def test_a_full_lane_says_so_and_calls_for_its_partitions_once_half_taken() -> None:
    async def scenario() -> None:
        lane = Lane("stage", capacity=4)
        resumed: list[set[TP]] = []
        lane.on_room = lambda full_lane: resumed.append(set(full_lane.paused))
        lane.put(delivery(A, range(0, 4)))
        assert lane.full
        lane.paused.add(A)  # what the consumer does when it finds the lane full
        assert offsets(await lane.take(1, within=0)) == [(0, 0)]
        assert resumed == []  # 3 of 4 still held: not yet
        assert offsets(await lane.take(1, within=0)) == [(0, 1)]
        assert resumed == [{A}]

    asyncio.run(scenario())


def test_dropping_revoked_partitions_frees_room_and_keeps_the_rest_in_order() -> None:
    async def scenario() -> None:
        lane = Lane("stage", capacity=10)
        lane.put(delivery(A, range(0, 2)))
        lane.put(delivery(B, range(0, 3)))
        lane.put(delivery(A, range(2, 3)))
        assert lane.drop([B]) == 3
        assert lane.held == 3
        assert offsets(await lane.take(10, within=0)) == [(0, 0), (0, 1), (0, 2)]

    asyncio.run(scenario())


def test_a_topic_has_one_lane() -> None:
    lanes = Lanes()
    lanes.open("intake", ["a", "b"], capacity=10)
    with pytest.raises(ValueError, match="already has lane intake"):
        lanes.open("other", ["b"], capacity=10)


def test_a_revocation_while_a_take_waits_counts_only_what_was_queued() -> None:
    async def scenario() -> None:
        lane = Lane("stage", capacity=100)
        lane.put(delivery(A, range(0, 3)))
        taker = asyncio.create_task(lane.take(10, within=0.2))
        await asyncio.sleep(0.02)  # the take holds A's three and waits for more
        assert lane.drop([A]) == 0
        lane.put(delivery(B, range(0, 2)))
        taken = await taker
        assert offsets(taken) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
        assert lane.held == 0

    asyncio.run(scenario())


FLOOD = TP("reporter.mae.observations", 0)
FLOOD_2 = TP("reporter.mae.observations", 1)
QUIET = TP("reporter.mps.observations", 0)


def by_topic(deliveries: list[Delivery]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for d in deliveries:
        counts[d.tp.topic] = counts.get(d.tp.topic, 0) + len(d.events)
    return counts


def test_a_quiet_reporter_is_in_the_next_batch_whatever_a_flood_queued_before_it() -> None:
    async def scenario() -> None:
        lane = Lane("intake", capacity=10_000)
        for start in range(0, 3000, 500):  # six fetches of the flood, then the quiet reporter's one record
            lane.put(delivery(FLOOD, range(start, start + 500)))
        lane.put(delivery(QUIET, range(7, 8)))
        batch = await lane.take(100, within=0)
        assert by_topic(batch) == {FLOOD.topic: 99, QUIET.topic: 1}
        assert [(d.tp, [e.message.offset for e in d.events][:2]) for d in batch][1] == (QUIET, [7])

    asyncio.run(scenario())


def test_a_batch_shares_its_room_evenly_by_topic_then_by_partition() -> None:
    async def scenario() -> None:
        lane = Lane("intake", capacity=10_000)
        lane.put(delivery(FLOOD, range(0, 100)))
        lane.put(delivery(FLOOD_2, range(0, 100)))
        lane.put(delivery(QUIET, range(0, 100)))
        batch = await lane.take(12, within=0)
        assert by_topic(batch) == {FLOOD.topic: 6, QUIET.topic: 6}
        assert {d.tp: len(d.events) for d in batch} == {FLOOD: 3, FLOOD_2: 3, QUIET: 6}

    asyncio.run(scenario())


def test_a_share_a_source_leaves_unused_goes_to_the_others() -> None:
    async def scenario() -> None:
        lane = Lane("intake", capacity=10_000)
        lane.put(delivery(FLOOD, range(0, 100)))
        lane.put(delivery(QUIET, range(0, 2)))
        batch = await lane.take(10, within=0)
        assert by_topic(batch) == {FLOOD.topic: 8, QUIET.topic: 2}
        assert lane.held == 92

    asyncio.run(scenario())


def test_the_remainder_of_a_share_rotates_between_topics() -> None:
    async def scenario() -> None:
        lane = Lane("intake", capacity=10_000)
        sources = [TP(f"reporter.{code}.observations", 0) for code in ("mae", "mps", "moh")]
        for tp in sources:
            lane.put(delivery(tp, range(0, 100)))
        totals: dict[str, int] = {}
        for _ in range(3):  # a batch of 4 between three topics: one gets two, each in turn
            for topic, count in by_topic(await lane.take(4, within=0)).items():
                totals[topic] = totals.get(topic, 0) + count
        assert totals == {tp.topic: 4 for tp in sources}

    asyncio.run(scenario())


def test_every_partition_is_taken_whole_and_in_offset_order_however_it_was_fetched() -> None:
    async def scenario() -> None:
        rng = random.Random(25)
        lane = Lane("intake", capacity=1_000_000)
        sources = [FLOOD, FLOOD_2, QUIET, TP("reporter.moh.observations", 3)]
        next_offset = dict.fromkeys(sources, 0)
        for _ in range(200):
            tp = rng.choice(sources)
            size = rng.randint(1, 40)
            lane.put(delivery(tp, range(next_offset[tp], next_offset[tp] + size)))
            next_offset[tp] += size
        seen: dict[TP, list[int]] = {tp: [] for tp in sources}
        while lane.held:
            for d in await lane.take(rng.randint(1, 60), within=0):
                seen[d.tp].extend(e.message.offset for e in d.events)
        assert seen == {tp: list(range(next_offset[tp])) for tp in sources}

    asyncio.run(scenario())


def test_a_fetch_of_an_earlier_generation_stays_its_own_delivery() -> None:
    async def scenario() -> None:
        lane = Lane("intake", capacity=100)
        lane.put(delivery(A, range(0, 2), generation=1))
        lane.put(delivery(A, range(2, 4), generation=2))
        batch = await lane.take(10, within=0)
        assert [(d.generation, [e.message.offset for e in d.events]) for d in batch] == [
            (1, [0, 1]),
            (2, [2, 3]),
        ]

    asyncio.run(scenario())


def test_a_full_lane_pauses_the_flood_not_the_quiet_reporter() -> None:
    lane = Lane("intake", capacity=10)
    lane.put(delivery(FLOOD, range(0, 10)))
    lane.put(delivery(QUIET, range(0, 1)))
    assert lane.full
    assert lane.overfilled_by(FLOOD)
    assert not lane.overfilled_by(QUIET)


def test_a_paused_partition_whose_records_were_all_taken_fetches_again_before_the_lane_is_half_empty() -> (
    None
):
    async def scenario() -> None:
        lane = Lane("intake", capacity=10)
        told: list[int] = []
        lane.on_room = lambda _lane: told.append(lane.held)
        lane.put(delivery(FLOOD, range(0, 12)))
        lane.put(delivery(QUIET, range(0, 1)))
        lane.paused |= {FLOOD, QUIET}  # both overfilled it once
        await lane.take(3, within=0)  # the quiet record and two of the flood
        assert told == [10]
        assert lane.release() == {QUIET}  # the flood still holds more than half the lane
        assert lane.paused == {FLOOD}
        await lane.take(5, within=0)
        assert lane.release() == {FLOOD}

    asyncio.run(scenario())


def test_a_lane_is_full_by_bytes_too_and_pauses_the_partition_holding_them() -> None:
    """Records as large as a topic takes (or inflated from a compressed batch) fill a lane long before
    its record count would: the worker stops fetching the partition that holds the bytes, not the
    quiet one, and fetches it again once the stage took them."""

    async def scenario() -> None:
        lane = Lane("stage", capacity=1000, capacity_bytes=1_000_000)
        lane.put(delivery(A, range(0, 3), size=400_000))  # 1.2 MB in three records
        lane.put(delivery(B, range(0, 2), size=10))
        assert lane.full
        assert lane.held_bytes == 1_200_020
        assert lane.overfilled_by(A)
        assert not lane.overfilled_by(B)
        lane.paused.add(A)
        batch = await lane.take(2, within=0.01)
        assert sorted(offsets(batch)) == [(0, 0), (1, 0)]
        assert lane.held_bytes == 800_010
        await lane.take(10, within=0.01)
        assert (lane.held, lane.held_bytes) == (0, 0)
        assert lane.release() == {A}

    asyncio.run(scenario())


class _PartitionState:
    def __init__(self, paused: bool) -> None:
        self.paused = paused


class _Assignment:
    def __init__(self, paused: dict[str, bool]) -> None:
        self.states = {tp: _PartitionState(p) for tp, p in paused.items()}
        self.tps = set(paused)

    def state_value(self, tp: str) -> _PartitionState:
        return self.states[tp]


class _Fetcher:
    """aiokafka's fetcher as IdleAwareFetch sees it: its two wait fields, its buffer, its request."""

    def __init__(self, answers: list[bool]) -> None:
        self._fetch_min_bytes, self._fetch_max_wait_ms = 65_536, 20
        self._records: dict[str, object] = {}
        self.answers = answers
        self.asked: list[tuple[int, int]] = []

    async def _proc_fetch_request(self, assignment: object, node_id: int, request: object) -> bool:
        self.asked.append((self._fetch_min_bytes, self._fetch_max_wait_ms))
        return self.answers.pop(0)


def test_an_idle_worker_fetches_with_the_long_wait_and_a_busy_one_with_the_short() -> None:
    fetcher = _Fetcher([False, False, True, False])
    IdleAwareFetch(busy=FetchWait(65_536, 20), idle=FetchWait(1, 500)).install(fetcher)
    assignment = _Assignment({"a": False, "b": False})

    async def fetch_four() -> None:
        for _ in range(4):
            await fetcher._proc_fetch_request(assignment, 1, None)

    asyncio.run(fetch_four())
    # nothing came: the next waits for the first byte, up to 500 ms; records came: back to 64 KiB / 20 ms
    assert fetcher.asked == [(65_536, 20), (1, 500), (1, 500), (65_536, 20)]
    assert (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms) == (1, 500)


def test_an_empty_fetch_is_not_idle_while_a_partition_is_paused_or_records_wait() -> None:
    """A partition resumed (a lane drained) or refetchable once its buffered records are handed over
    would wait behind a long fetch in flight (the broker answers a connection's requests in order)."""
    fetcher = _Fetcher([])
    assert IdleAwareFetch.is_idle(fetcher, _Assignment({"a": False}), False)
    assert not IdleAwareFetch.is_idle(fetcher, _Assignment({"a": False, "b": True}), False)
    fetcher._records["a"] = object()
    assert not IdleAwareFetch.is_idle(fetcher, _Assignment({"a": False}), False)
    assert not IdleAwareFetch.is_idle(_Fetcher([]), _Assignment({"a": False}), True)
