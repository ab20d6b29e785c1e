"""The intake's gates (agents/intake.py ApplyGate), with the state's marks scripted: they hold while
the stateful step is behind on what this worker re-keyed, let go as it catches up, and never wait for
ever on a partition whose mark does not move. (On the real services: test_reporter_flood.py,
test_bulk_lane.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from stream_app.agents.intake import ApplyGate
from stream_app.state.guard import source_of
from stream_app.state.store import Checkpoint

pytestmark = pytest.mark.asyncio

INTERNAL = "internal.observations"


class Marks:
    """The applied marks the gate reads (``StateLayer.checkpoint``)."""

    def __init__(self, applied: dict[int, int | None]) -> None:
        self.applied = applied
        self.reads = 0

    async def checkpoint(self, sources: Sequence[str]) -> Checkpoint:
        self.reads += 1
        by_source = {source_of((INTERNAL, p)): mark for p, mark in self.applied.items()}
        return Checkpoint("epoch", {s: by_source.get(s) for s in sources})


class Written:
    """What this worker's producer wrote to the internal topic (``Publisher.written``)."""

    def __init__(self, offsets: dict[int, int]) -> None:
        self.offsets = offsets

    def written(self, topic: str) -> dict[int, int]:
        return dict(self.offsets) if topic == INTERNAL else {}


def _gate(marks: Marks, written: Written, max_ahead: int, held: list[bool], waited: list[float]) -> ApplyGate:
    return ApplyGate(
        "live",
        marks,  # type: ignore[arg-type]
        written,  # type: ignore[arg-type]
        INTERNAL,
        max_ahead,
        0.001,
        held.append,
        waited.append,
    )


async def test_ahead_counts_what_was_written_and_not_applied_per_partition() -> None:
    gate = _gate(Marks({0: 99, 1: None}), Written({0: 149, 1: 9}), 100, [], [])
    assert await gate.ahead() == 50 + 10  # a partition never applied counts from offset 0


async def test_the_gate_holds_until_the_stateful_step_catches_up_and_says_so() -> None:
    marks = Marks({0: 0})
    held: list[bool] = []
    waited: list[float] = []
    gate = _gate(marks, Written({0: 500}), 100, held, waited)
    task = asyncio.ensure_future(gate.wait())
    await asyncio.sleep(0.05)
    assert not task.done(), "500 ahead, 100 allowed: held"
    assert held == [True]
    marks.applied[0] = 450
    await asyncio.wait_for(task, 1)
    assert held == [True, False]
    assert len(waited) == 1
    assert waited[0] > 0


async def test_a_partition_whose_mark_never_moves_is_not_waited_for_for_ever() -> None:
    """Its last records were dead-lettered, or the last second of marks was lost with a Redis crash:
    the mark stays behind what was processed, and nothing new comes to move it."""
    marks = Marks({0: 10, 1: 0})
    gate = _gate(marks, Written({0: 5000, 1: 60}), 100, [], [])
    gate.STALL_S = 0.05
    await asyncio.wait_for(gate.wait(), 2)
    marks.applied[1] = 10  # partition 1 moves on; partition 0's mark stays where it was
    assert await gate.ahead() == 50, "the stalled partition is left out; the moving one counts"
    marks.applied[0] = 4990  # it moves again: counted again
    assert await gate.ahead() == 10 + 50
