"""The applied ledger and the state audit: a loss of some keys with others kept is still a loss."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from stream_app.ops import retry
from stream_app.settings import Settings
from stream_app.state import ledger
from stream_app.state.guard import Partition, StateAudit, StateGuard, audit_finding, loss
from stream_app.state.memory import MemoryStateStore
from stream_app.state.store import PreparedCommit

SETTINGS = Settings.model_construct(retry_initial_s=0.001, retry_max_s=0.01)
TOPIC = "internal.observations.by-entity"
P0 = (TOPIC, 0)
S0 = f"{TOPIC}:0"
NOW = 1_800_000_000_000


def test_an_entry_vouches_for_its_offset_until_the_state_could_have_expired() -> None:
    assert ledger.decode(ledger.encode(41, NOW), NOW) == 41
    assert ledger.decode(ledger.encode(41, NOW).encode(), NOW + 1000) == 41
    assert ledger.decode(ledger.encode(41, NOW), NOW + ledger.STATE_TTL_MS) is None
    assert ledger.decode(None, NOW) is None
    assert ledger.decode(b"garbage", NOW) is None  # vouches for nothing rather than stop the stage


def test_the_entries_come_from_the_commits_of_each_partition() -> None:
    commits: list[tuple[str, list[str | int]]] = [
        ("a", ["off:t:0", 7, 1]),
        ("b", ["off:t:1", 9, 1]),
        ("c", ["off:t:0", 8, 1]),
    ]
    assert ledger.entries(commits) == {"t:0": [("a", 7), ("c", 8)], "t:1": [("b", 9)]}


def test_an_entity_holding_less_than_vouched_is_lost() -> None:
    held = {b"off:t:0": b"7"}
    assert ledger.loss("a", "t:0", held, 7) is None
    assert ledger.loss("a", "t:0", {b"off:t:0": b"9"}, 7) is None  # ahead: a commit the mark has not yet
    assert ledger.loss("a", "t:0", held, None) is None  # nothing vouched
    behind = ledger.loss("a", "t:0", held, 8)
    assert behind is not None
    assert "up to offset 7" in behind
    gone = ledger.loss("a", "t:0", {}, 8)
    assert gone is not None
    assert "holds nothing" in gone


def test_the_one_loss_rule() -> None:
    assert loss("s", None, None, 0) is None  # never committed
    assert loss("s", None, 0, 0) is None  # at the start of the log
    assert loss("s", 99, 100, 0) is None  # the next record
    assert loss("s", 99, 40, 0) is None  # a redelivery
    assert "past the start" in (loss("s", None, 5, 0) or "")
    assert "up to 99" in (loss("s", 99, 150, 0) or "")


async def _committed_store() -> MemoryStateStore:
    """A state with entities a and b committed at offsets 3 and 5 of partition 0, the mark at 5."""
    store = MemoryStateStore()
    await store.set_marks({S0: 2}, "e")
    commits = []
    for entity, offset in (("a", 3), ("b", 5)):
        keys = store.keys.entity_all(entity)
        commits.append(PreparedCommit(entity, keys, [f"off:{S0}", offset, 3600, "", 0, 0, 0, 0]))
    await store.commit(commits, applied={S0: (5, 2)})
    # the ledger follows one batch behind: only commits Redis confirmed are vouched for
    assert store.keys.ledger(S0) not in store.hashes or not store.hashes[store.keys.ledger(S0)]
    await store.commit([], applied={S0: (6, 5)})  # the next batch (a tick) writes them
    assert set(store.hashes[store.keys.ledger(S0)]) == {"a", "b"}
    return store


def _audit(store: MemoryStateStore, committed: int | None) -> StateAudit:
    async def offsets(partitions: Sequence[Partition]) -> Mapping[Partition, int | None]:
        return dict.fromkeys(partitions, committed)

    async def earliest(partitions: Sequence[Partition]) -> Mapping[Partition, int]:
        return dict.fromkeys(partitions, 0)

    return StateAudit(
        store,
        SETTINGS,
        assigned=lambda: [P0],
        committed=offsets,
        earliest=earliest,
        stage_of=lambda topic: "consolidate",
    )


@pytest.mark.asyncio
async def test_the_audit_finds_marks_gone_and_entities_gone_and_clears_when_sound() -> None:
    store = await _committed_store()
    assert await store.ledger_loss(S0, 64) is None
    audit = _audit(store, committed=7)
    await audit.run_once()
    assert audit_finding() is None

    del store.markers[store.keys.applied(S0)]  # the marks gone, the entities kept
    await audit.run_once()
    assert "past the start" in (audit_finding() or "")
    assert "state_lost" in retry.retrying()
    # every stateful batch is held off meanwhile
    guard = StateGuard(store, SETTINGS, _audit(store, 7).earliest, stage="consolidate")
    assert await guard.problem({P0: 7}) == audit_finding()

    await store.set_marks({S0: 6}, "e")
    del store.hashes[store.keys.entity("b")]  # an entity gone, the mark kept
    await audit.run_once()
    assert "entity b" in (audit_finding() or "")

    store.hashes[store.keys.entity("b")] = {f"off:{S0}": "5"}  # what a rebuild would bring back
    await audit.run_once()
    assert audit_finding() is None
    assert "state_lost" not in retry.retrying()


@pytest.mark.asyncio
async def test_an_audit_that_cannot_reach_its_dependencies_waits_for_the_next_interval() -> None:
    async def down(partitions: Sequence[Partition]) -> Mapping[Partition, int | None]:
        raise ConnectionError("broker down")

    audit = _audit(await _committed_store(), committed=7)
    audit.committed = down
    await audit.run_once()  # never raises: it runs on a timer
    assert audit_finding() is None


def test_a_roll_up_holding_fewer_sources_than_vouched_is_lost() -> None:
    assert ledger.rollup_loss("k", 3, None) is None
    assert ledger.rollup_loss("k", 3, 3) is None
    assert ledger.rollup_loss("k", 4, 3) is None  # a new source since
    lost = ledger.rollup_loss("k", 1, 3)
    assert lost is not None
    assert "holds 1 sources" in lost


@pytest.mark.asyncio
async def test_the_roll_up_ledger_follows_what_the_hashes_held() -> None:
    store = MemoryStateStore()
    period = ("ENV.AQI", "VN", "", "2025-05")
    assert await store.rollup_ledger([period]) == [(0, None)]
    store.hashes[store.keys.rollup(*period)] = {"a": "1;x", "b": "2;y"}
    await store.vouch_rollups({period: 2})
    assert await store.rollup_ledger([period]) == [(2, 2)]
    assert await store.rollup_ledger_loss(64) is None
    del store.hashes[store.keys.rollup(*period)]["a"]
    assert "holds 1 sources" in (await store.rollup_ledger_loss(64) or "")


@pytest.mark.asyncio
async def test_a_commit_redis_refused_is_never_vouched_for() -> None:
    store = MemoryStateStore()
    store.broken["b"] = RuntimeError("WRONGTYPE")
    commits = [
        PreparedCommit(e, store.keys.entity_all(e), [f"off:{S0}", 3, 3600, "", 0, 0, 0, 0]) for e in "ab"
    ]
    written, failed = await store.commit(commits, applied={S0: (3, None)})
    assert (written, set(failed)) == ({"a"}, {"b"})
    await store.commit([], applied={S0: (4, 3)})
    assert set(store.hashes[store.keys.ledger(S0)]) == {"a"}
    assert await store.ledger_loss(S0, 64) is None
