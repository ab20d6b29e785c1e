"""What the consolidate stage keeps of the state hashes it wrote (stream_app/state/owned.py), over the
in-memory twin: kept only from a commit that wrote, exactly as the commit script left the hash; never
from a commit that raised, wrote nothing, or a replay. (Against the real Redis:
tests/integration/test_owned_state.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from stream_app.agents.consolidate import Consolidator
from stream_app.state.owned import OwnedState
from tests.unit.test_consolidate_batch import Rig, _deaths

pytestmark = pytest.mark.asyncio

ENTITY = "TRF.ACCIDENTS|01|-"


def _kept(rig: Rig) -> OwnedState[Any]:
    owned: OwnedState[Any] = OwnedState("consolidate", 1 << 20, 600.0)
    rig.consolidator.owned = owned
    owned.admit("e", {})
    return owned


def _stored(rig: Rig, entity: str) -> dict[bytes, bytes]:
    raw = rig.store.hashes.get(rig.store.keys.entity(entity), {})
    return {k.encode(): v.encode() for k, v in raw.items()}


async def test_a_written_state_is_kept_as_the_commit_left_it() -> None:
    rig = Rig()
    owned = _kept(rig)
    await rig.run(*(rig.event(_deaths(f"hn-{d}", float(d), d)) for d in (1, 2, 3)))
    assert owned.get(ENTITY) == _stored(rig, ENTITY)
    event = rig.event(_deaths("hn-2", 9.0, 2, revision=1))  # a correction, on what was kept
    owned.admit("e", {event.message.topic + ":" + str(event.message.partition): event.message.offset - 1})
    await rig.run(event)
    assert owned.get(ENTITY) == _stored(rig, ENTITY)
    month = rig.period(ENTITY, "2025-05")
    assert month is not None
    assert float(month.total) == 13.0


async def test_a_commit_that_raised_keeps_nothing_of_its_entities() -> None:
    rig = Rig()
    owned = _kept(rig)
    await rig.run(rig.event(_deaths("hn-1", 1.0, 1)))
    assert owned.get(ENTITY) is not None

    async def refused(*_: Any, **__: Any) -> Any:
        raise ConnectionError("the reply never came")

    rig.store.commit = refused  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await rig.run(rig.event(_deaths("hn-2", 2.0, 2)))
    assert owned.get(ENTITY) is None


async def test_a_commit_that_wrote_nothing_drops_its_partition() -> None:
    rig = Rig()
    owned = _kept(rig)
    first = rig.event(_deaths("hn-1", 1.0, 1))
    await rig.run(first)
    source = f"{first.message.topic}:{first.message.partition}"
    assert owned.get(ENTITY) is not None
    commit = rig.store.commit

    async def overtaken(*args: Any, **kwargs: Any) -> Any:
        # another writer got further between this batch's read and its commit: the offset-in-commit
        # rule refuses this worker's commit (it writes nothing)
        rig.store.hashes[rig.store.keys.entity(ENTITY)][f"off:{source}"] = "1000"
        return await commit(*args, **kwargs)

    rig.store.commit = overtaken  # type: ignore[method-assign]
    await rig.run(rig.event(_deaths("hn-2", 2.0, 2)))
    assert owned.get(ENTITY) is None
    assert len(owned) == 0


async def test_a_state_read_and_not_written_is_kept_as_read() -> None:
    """A record already applied (a redelivery) changes nothing: the hash read is what Redis holds."""
    rig = Rig()
    owned = _kept(rig)
    first = rig.event(_deaths("hn-1", 1.0, 1))
    await rig.run(first)
    owned.forget([ENTITY], "test")  # read again from the store by the next batch
    await rig.run(first)  # redelivered: already applied, no commit
    assert owned.get(ENTITY) == _stored(rig, ENTITY)


async def test_a_replay_keeps_nothing() -> None:
    rig = Rig()
    owned: OwnedState[Any] = OwnedState("consolidate", 1 << 20, 600.0)
    consolidator = Consolidator(
        rig.blueprint, rig.store, rig.blueprint.rulebook, rig.consolidator.publisher, replay=True, owned=owned
    )
    assert consolidator.owned is None
    events: list[Any] = [rig.event(_deaths("hn-1", 1.0, 1))]
    await consolidator.process(events)
    assert len(owned) == 0
