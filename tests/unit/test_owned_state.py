"""What a stateful stage keeps of what it wrote (stream_app/state/owned.py): kept only while its
partition's applied mark is the one the worker wrote last, under the same epoch; bounded."""

from __future__ import annotations

from stream_app.state.owned import OwnedState


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _owned(max_bytes: int = 1000, max_age_s: float = 60.0) -> tuple[OwnedState[str], Clock]:
    clock = Clock()
    return OwnedState("consolidate", max_bytes, max_age_s, clock), clock


def test_an_entry_stays_while_the_mark_is_the_one_written() -> None:
    owned, _ = _owned()
    owned.admit("e1", {"t:0": None})
    owned.put("t:0", "a", "state-a", 10)
    owned.committed({"t:0": 41})
    owned.admit("e1", {"t:0": 41})
    assert owned.get("a") == "state-a"


def test_another_writer_moving_the_mark_drops_the_partitions_entries() -> None:
    owned, _ = _owned()
    owned.admit("e1", {"t:0": None, "t:1": None})
    owned.put("t:0", "a", "state-a", 10)
    owned.put("t:1", "b", "state-b", 10)
    owned.committed({"t:0": 41, "t:1": 7})
    owned.admit("e1", {"t:0": 50})  # someone else applied 42..50 of t:0
    assert owned.get("a") is None
    assert owned.get("b") == "state-b"
    assert owned.bytes == 10


def test_a_mark_gone_or_a_new_epoch_drops_everything_it_covers() -> None:
    owned, _ = _owned()
    owned.admit("e1", {"t:0": None})
    owned.put("t:0", "a", "state-a", 10)
    owned.committed({"t:0": 41})
    owned.admit("e1", {"t:0": None})  # the state lost its mark (a flush, a restart without its tail)
    assert owned.get("a") is None
    owned.put("t:0", "a", "state-a", 10)
    owned.committed({"t:0": 41})
    owned.admit("e2", {"t:0": 41})  # a rebuild began a new epoch, even at the same mark
    assert owned.get("a") is None
    assert len(owned) == 0


def test_an_uncommitted_write_is_not_trusted() -> None:
    owned, _ = _owned()
    owned.admit("e1", {"t:0": 3})
    owned.put("t:0", "a", "state-a", 10)  # the commit's reply never came: committed() not called
    owned.admit("e1", {"t:0": 3})
    assert owned.get("a") is None


def test_old_entries_are_read_again_and_the_bytes_stay_bounded() -> None:
    owned, clock = _owned(max_bytes=25, max_age_s=60.0)
    owned.admit("e1", {"t:0": None})
    owned.put("t:0", "a", "A", 10)
    owned.put("t:0", "b", "B", 10)
    assert owned.get("a") == "A"  # now the most recently used
    owned.put("t:0", "c", "C", 10)  # over 25 bytes: the least recently used (b) goes
    assert owned.get("b") is None
    assert owned.get("a") == "A"
    assert owned.bytes == 20
    clock.now = 61.0
    assert owned.get("a") is None
    owned.put("t:0", "huge", "H", 26)  # larger than the whole budget: not kept
    assert owned.get("huge") is None


def test_disabled_keeps_nothing() -> None:
    owned, _ = _owned(max_bytes=0)
    owned.admit("e1", {"t:0": None})
    owned.put("t:0", "a", "A", 1)
    assert owned.get("a") is None
    assert not owned.enabled
