"""The in-memory state layer is a faithful twin of the Redis one: the same batches through the real
Consolidator leave the same hashes, sorted sets and sets in both, and every read the query API uses
answers the same. The unit tests of the batch logic rely on this."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

from stream_app.agents import consolidate
from stream_app.agents.consolidate import Consolidator
from stream_app.kafka.publisher import Publisher
from stream_app.settings import Settings
from stream_app.state.keys import Keys
from stream_app.state.memory import MemoryStateStore
from stream_app.state.store import ActiveAlert, ReporterSent, RollupWrite, StateStore, connect
from tests.unit.core_support import local_ms, observation
from tests.unit.producers import AckingProducer, ProducerSender
from tests.unit.test_consolidate_batch import Rig

from .support import redis_text

pytestmark = pytest.mark.asyncio


async def _dump(client: Any, prefix: str) -> dict[str, Any]:
    """Every key under ``prefix`` with its content, decoded (scores as floats)."""
    out: dict[str, Any] = {}
    async for raw_key in client.scan_iter(match=f"{prefix}:*", count=1000):
        key = redis_text(raw_key)
        kind = redis_text(await client.type(key))
        if kind == "hash":
            out[key] = {redis_text(k): redis_text(v) for k, v in (await client.hgetall(key)).items()}
        elif kind == "zset":
            scores: dict[str, float] = {}
            for entry in await client.zrange(key, 0, -1, withscores=True):
                assert isinstance(entry, tuple | list), entry  # withscores: (member, score) pairs
                member, score = entry
                scores[redis_text(member)] = float(score)
            out[key] = scores
        elif kind == "set":
            out[key] = {redis_text(m) for m in await client.smembers(key)}
        else:
            out[key] = redis_text(await client.get(key) or b"")
    return out


def _memory_dump(store: MemoryStateStore) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out.update({k: dict(v) for k, v in store.hashes.items() if v})
    out.update({k: dict(v) for k, v in store.zsets.items() if v})
    out.update({k: set(v) for k, v in store.sets.items() if v})
    out.update(store.markers)
    return out


async def test_the_memory_twin_ends_in_the_redis_state(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = int(time.time() * 1000)
    # both consolidators see one clock (arrival times are stored)
    clock = SimpleNamespace(time=lambda: now / 1000, perf_counter=time.perf_counter)
    monkeypatch.setattr(consolidate, "time", clock)
    client = connect(settings)
    try:
        redis_store = StateStore(client, settings)
        memory = MemoryStateStore(Keys(settings.redis_key_prefix))
        rig = Rig()  # builds the events; each store gets its own consolidator
        consolidators = []
        for store in (redis_store, memory):
            dead_letter = rig.blueprint.schemas.latest("dead_letter")
            publisher = Publisher(ProducerSender(AckingProducer()), settings, dead_letter)
            consolidators.append(Consolidator(rig.blueprint, store, rig.blueprint.rulebook, publisher))
        aqi = observation("aqi-1", 180.0, now - 7_200_000, indicator="ENV.AQI", station="HN-AQ-HOANKIEM")
        batches = [
            [rig.event(observation(f"hn-{d}", float(d), local_ms(2025, 5, d, 8))) for d in range(1, 8)],
            [rig.event(observation("hn-3", 30.0, local_ms(2025, 5, 3, 8), revision=1))],  # a correction
            [rig.event(observation("hn-3", 30.0, local_ms(2025, 5, 3, 8), revision=1))],  # its duplicate
            [rig.event(observation("hcm-now", 2.0, now - 3_600_000, region="79"))],  # an open period
            [rig.event(aqi)],
        ]  # fmt: skip
        for batch in batches:
            for consolidator in consolidators:
                # the Rig's events carry only what the Consolidator reads of Faust's (abstract) EventT
                await consolidator.process(list(batch))
        extra: list[ReporterSent | ActiveAlert] = [
            ReporterSent("MPS", "TRF.ACCIDENTS|01|-"),
            ActiveAlert("k|TRF.ACCIDENTS|01|-", '{"a": 1}'),
        ]
        replies: list[Any] = []
        for store in (redis_store, memory):
            await store.commit([], extra)
            period = ("TRF.ACCIDENTS", "VN", "", "2025-05")
            last_year = ("TRF.ACCIDENTS", "VN", "", "2024-05")
            applied = await store.apply_rollup(
                [RollupWrite(period, "TRF.ACCIDENTS|01|-", 512, None)], [period, last_year]
            )
            replies.append((applied.refused, applied.written, applied.reads))
        stored, twin = await _dump(client, settings.redis_key_prefix), _memory_dump(memory)
        for dump in (stored, twin):  # a ledger entry is "offset;ms", its time each store's own clock
            for key in [k for k in dump if ":ledger:" in k]:
                dump[key] = {e: v.partition(";")[0] for e, v in dump[key].items()}
        assert replies[0] == replies[1]
        assert stored.keys() == twin.keys()
        for key in stored:
            assert stored[key] == twin[key], key
        entity = "TRF.ACCIDENTS|01|-"
        assert await redis_store.entity_periods(entity) == await memory.entity_periods(entity)
        assert await redis_store.active_alerts() == await memory.active_alerts()
        assert await redis_store.reporter_entities(["MPS", "MAE"]) == await memory.reporter_entities(
            ["MPS", "MAE"]
        )
        partition = rig.event(observation("x", 1.0, now, region="79")).message.partition
        far = now + 400 * 24 * 3_600_000
        assert await redis_store.due_entities(partition, far) == await memory.due_entities(partition, far)
    finally:
        await client.aclose()
