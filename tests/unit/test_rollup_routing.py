"""On a Redis Cluster the roll-up's script calls go through stream_app/state/routing.py as every other
script does: one call per roll-up (``indicator|target``) and batch, routed by its first key, whose hash
slot every key of the call shares; the ledger check's lengths the same. No cluster is reached: the
router's commands are captured before they are sent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from stream_app.settings import Settings
from stream_app.state.routing import _Command
from stream_app.state.store import PeriodKey, RollupWrite, StateStore

pytestmark = pytest.mark.asyncio

NATION = [("TRF.ACCIDENTS", "VN", "", f"2025-05-0{d}") for d in (1, 2, 3)]
PROVINCE = [("TRF.ACCIDENTS", "01", "", "2025-05-01")]


def _store(monkeypatch: pytest.MonkeyPatch) -> tuple[StateStore, list[list[_Command]]]:
    store = StateStore(RedisCluster(host="127.0.0.1", port=1), Settings())
    router = store._router
    assert router is not None
    sent: list[list[_Command]] = []

    async def run(commands: list[_Command], *, durable: bool) -> list[Any]:
        sent.append(list(commands))
        return [_reply(c) for c in commands]

    monkeypatch.setattr(router, "run", run)
    return store, sent


def _reply(command: _Command) -> Any:
    """What Redis would answer an empty store: every write written, every hash empty."""
    name = str(command.args[0])
    if name == "EVALSHA":
        numkeys = int(command.args[2])
        args = command.args[3 + numkeys :]
        return [1] * ((len(args) - 1) // 4) if args else [0] * numkeys
    if name == "HMGET":
        return [None] * (len(command.args) - 2)
    return {}


def _scripts(commands: Sequence[_Command]) -> list[_Command]:
    return [c for c in commands if c.args[0] == "EVALSHA"]


async def test_a_batch_sends_one_routed_script_call_per_rollup(monkeypatch: pytest.MonkeyPatch) -> None:
    store, sent = _store(monkeypatch)
    writes = [RollupWrite(p, f"TRF.ACCIDENTS|{s:02}|-", s, None) for s in range(1, 5) for p in NATION]
    writes += [RollupWrite(p, "HN-1", 1, None) for p in PROVINCE]
    applied = await store.apply_rollup(writes, [NATION[0]])
    assert applied.written == [True] * len(writes)
    assert applied.refused == {}
    calls = _scripts(sent[-1])
    assert len(calls) == 2
    for call, periods in zip(calls, [NATION, PROVINCE], strict=True):
        keys = [store.keys.rollup(*p) for p in periods]
        assert call.args[1] == store._rollup_script.sha
        assert call.script is store._rollup_script
        assert list(call.args[3 : 3 + len(keys)]) == keys
        assert call.key == keys[0]  # the router sends it to the primary of its first key's slot
        assert len({key_slot(k.encode()) for k in keys}) == 1  # which every key of the call shares
        assert call.phase == 0  # before the applied marks' phase, as the writes one call each were


async def test_the_ledger_check_reads_the_lengths_in_one_routed_call_per_rollup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, sent = _store(monkeypatch)
    periods: list[PeriodKey] = [NATION[0], PROVINCE[0], NATION[1], NATION[2]]
    assert await store.rollup_ledger(periods) == [(0, None)] * len(periods)
    calls = _scripts(sent[-1])
    assert [c.args[1] for c in calls] == [store._rollup_lengths_script.sha] * 2
    assert all(c.script is store._rollup_lengths_script for c in calls)  # a primary without it loads it
    assert [list(c.args[3:]) for c in calls] == [
        [store.keys.rollup(*p) for p in [NATION[0], NATION[1], NATION[2]]],
        [store.keys.rollup(*PROVINCE[0])],
    ]
    assert not [c for c in sent[-1] if c.args[0] == "HLEN"]
