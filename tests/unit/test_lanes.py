"""The lane between the consumer's fetch loop and a stage: batches, splits, capacity, revocation."""

from __future__ import annotations

import asyncio

import pytest
from faust.types import TP

from stream_app.kafka.lanes import Delivery, Event, Lane, Lanes

A = TP("in", 0)
B = TP("in", 1)


def delivery(tp: TP, offsets: range, generation: int = 1) -> Delivery:
    return Delivery(tp, generation, [Event(("msg", tp.partition, o)) for o in offsets])


def offsets(deliveries: list[Delivery]) -> list[tuple[int, int]]:
    return [(d.tp.partition, e.message[2]) for d in deliveries for e in d.events]


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
