"""The state guard: a stage never applies on a state that lost records the group acknowledged."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import pytest

from stream_app.ops import metrics, retry
from stream_app.settings import Settings
from stream_app.state.guard import Partition, PartitionMovedError, StateGuard, firsts_of, lasts_of
from stream_app.state.memory import MemoryStateStore
from stream_app.state.store import StateLostError

SETTINGS = Settings.model_construct(retry_initial_s=0.001, retry_max_s=0.01)
P0, P1 = ("internal.observations.by-entity", 0), ("internal.observations.by-entity", 1)
S0 = "internal.observations.by-entity:0"


def _guard(store: MemoryStateStore, earliest: Mapping[Partition, int] | None = None) -> StateGuard:
    async def first_offsets(partitions: Sequence[Partition]) -> Mapping[Partition, int]:
        return {p: (earliest or {}).get(p, 0) for p in partitions}

    return StateGuard(store, SETTINGS, first_offsets, stage="consolidate")


@pytest.mark.asyncio
async def test_a_log_read_from_its_start_begins_the_state() -> None:
    store = MemoryStateStore()
    assert await _guard(store).problem({P0: 0, P1: 0}) is None
    epoch = store.markers[store.keys.epoch()]
    assert epoch.endswith("worker:consolidate")
    # retention moved the start of the log: still the start
    assert await _guard(MemoryStateStore(), {P0: 500}).problem({P0: 500}) is None


@pytest.mark.asyncio
async def test_a_group_past_the_start_with_no_state_is_a_lost_state() -> None:
    problem = await _guard(MemoryStateStore()).problem({P0: 1200})
    assert problem is not None
    assert "past the start of the log" in problem
    assert "no state epoch" in problem


@pytest.mark.asyncio
async def test_a_mark_behind_the_group_is_a_lost_state_and_a_mark_at_or_ahead_is_not() -> None:
    store = MemoryStateStore()
    await store.set_marks({S0: 99}, "e")
    guard = _guard(store)
    assert await guard.problem({P0: 100}) is None  # the next record
    assert await guard.problem({P0: 40}) is None  # a redelivery after a crash: already covered
    problem = await guard.problem({P0: 150})
    assert problem is not None
    assert "up to 99" in problem


@pytest.mark.asyncio
async def test_marks_only_rise() -> None:
    store = MemoryStateStore()
    await store.commit([], applied={"t:0": (99, None)})
    await store.commit([], applied={"t:0": (50, None)})
    assert (await store.checkpoint(["t:0"])).applied == {"t:0": 99}


@pytest.mark.asyncio
async def test_admit_waits_not_ready_until_the_state_is_rebuilt() -> None:
    store = MemoryStateStore()
    await store.set_marks({S0: 10}, "e")
    guard = _guard(store)
    waiter = asyncio.create_task(guard.admit({P0: 500}))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    assert "state_lost" in retry.retrying()
    assert metrics.STATE_LOST.labels("consolidate")._value.get() == 1
    await store.set_marks({"internal.observations.by-entity:0": 499}, "e rebuild")  # what a rebuild does
    await asyncio.wait_for(waiter, 1)
    assert "state_lost" not in retry.retrying()
    assert metrics.STATE_LOST.labels("consolidate")._value.get() == 0


class _Message:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset


def test_firsts_and_lasts_per_partition() -> None:
    batch = [_Message("t", 0, 7), _Message("t", 1, 3), _Message("t", 0, 9), _Message("t", 1, 2)]
    assert firsts_of(batch) == {("t", 0): 7, ("t", 1): 2}
    assert lasts_of(batch) == {"t:0": 9, "t:1": 3}


@pytest.mark.asyncio
async def test_a_loss_while_a_batch_is_in_flight_is_caught_at_its_commit() -> None:
    store = MemoryStateStore()
    guard = _guard(store)
    floors = await guard.admit({P0: 0})
    await store.commit(
        [], applied={"internal.observations.by-entity:0": (99, floors["internal.observations.by-entity:0"])}
    )
    floors = await guard.admit({P0: 100})
    assert floors == {"internal.observations.by-entity:0": 99}
    store.markers.clear()  # Redis restarted empty while the batch ran
    with pytest.raises(StateLostError, match="STATELOST"):
        await store.commit([], applied={"internal.observations.by-entity:0": (199, 99)})
    assert await guard.problem({P0: 100}) is not None, "and the loss stays visible"


@pytest.mark.asyncio
async def test_marks_without_an_epoch_and_a_rebuild_flag_are_a_lost_state() -> None:
    store = MemoryStateStore()
    store.markers[store.keys.applied("internal.observations.by-entity:0")] = "99"
    problem = await _guard(store).problem({P0: 100})
    assert problem is not None
    assert "without a state epoch" in problem
    store.markers[store.keys.epoch()] = "e"
    store.markers[store.keys.rebuilding()] = "r"
    problem = await _guard(store).problem({P0: 100})
    assert problem is not None
    assert "rebuild" in problem
    with pytest.raises(StateLostError):
        await store.commit([], applied={"internal.observations.by-entity:0": (150, 99)})


@pytest.mark.asyncio
async def test_run_waits_and_applies_again_after_a_loss_in_flight() -> None:
    store = MemoryStateStore()
    guard = _guard(store)
    await guard.admit({P0: 0})
    await store.set_marks({"internal.observations.by-entity:0": 99}, "e")
    attempts: list[dict[str, int | None]] = []

    async def apply(floors: dict[str, int | None]) -> None:
        attempts.append(floors)
        if len(attempts) == 1:
            store.markers.clear()  # lost while the first attempt ran
            await store.commit(
                [],
                applied={
                    "internal.observations.by-entity:0": (199, floors["internal.observations.by-entity:0"])
                },
            )

    runner = asyncio.create_task(guard.run({P0: 100}, apply))
    await asyncio.sleep(0.05)
    assert not runner.done(), "it waits on the lost state"
    await store.set_marks({"internal.observations.by-entity:0": 199}, "e rebuild")
    await asyncio.wait_for(runner, 1)
    assert len(attempts) == 2


@pytest.mark.asyncio
async def test_a_batch_whose_marks_moved_since_its_admission_is_fenced() -> None:
    """A zombie: admitted on mark 99, paused; the new owner applied on to 250; it must not publish."""
    store = MemoryStateStore()
    await store.set_marks({S0: 99}, "e")
    guard = _guard(store)
    await guard.admit({P0: 100})
    await guard.fence()  # nothing moved: the batch goes on
    await store.set_marks({S0: 250}, "e")
    with pytest.raises(PartitionMovedError, match="99, 250"):
        await guard.fence()
    # a redelivery after a crash is admitted on the mark as it is, and is not fenced
    await guard.admit({P0: 100})
    await guard.fence()
