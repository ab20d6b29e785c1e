"""The consolidate stage keeps the state hashes it wrote of its own partitions (stream_app/state/owned.py)
instead of reading them back from Redis each batch: the real Consolidator behind the real state guard,
on the real Redis. What it keeps must never change what Redis ends up holding: the same batches leave
the same keys with it as without it; another owner's writes, or a state lost, are read again (or refuse
the batch) rather than overwritten from memory."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio.client

from stream_app.agents import consolidate
from stream_app.agents.consolidate import Consolidator
from stream_app.config.blueprint import Blueprint
from stream_app.domain.model import Observation
from stream_app.domain.validation import Limits, validate
from stream_app.kafka.publisher import Publisher
from stream_app.ops import metrics
from stream_app.settings import Settings
from stream_app.state.guard import Partition, StateGuard, firsts_of
from stream_app.state.owned import OwnedState
from stream_app.state.store import StateStore, connect
from stream_app.tools.simulation.live import live_feed
from stream_app.wire import codecs
from tests.unit.core_support import observation
from tests.unit.producers import AckingProducer, ProducerSender
from tests.unit.test_consolidate_batch import Rig, _Event

from .test_state_layer import _dump

pytestmark = pytest.mark.asyncio

NOW_MS = int(time.time() * 1000)


def _hits() -> float:
    return float(metrics.OWNED_STATE_LOOKUPS.labels("consolidate", "hit")._value.get())


class Worker:
    """One worker's consolidate stage: its guard (which checks what is kept at each admission), its
    consolidator and what it keeps, over the state of ``prefix``; batches go in as the stage's agent
    hands them over (``register_stateful``)."""

    def __init__(
        self, settings: Settings, blueprint: Blueprint, client: Any, prefix: str, *, keep: bool
    ) -> None:
        self.settings = settings.model_copy(
            update={
                "redis_key_prefix": prefix,
                "retry_max_s": 0.05,
                "owned_state_max_bytes": 32 << 20 if keep else 0,
            }
        )
        self.store = StateStore(client, self.settings)
        self.owned: OwnedState[Any] = OwnedState(
            "consolidate", self.settings.owned_state_max_bytes, self.settings.owned_state_max_age_s
        )

        async def earliest(partitions: Sequence[Partition]) -> Mapping[Partition, int]:
            return dict.fromkeys(partitions, 0)

        self.guard = StateGuard(self.store, self.settings, earliest, stage="consolidate", owned=self.owned)
        publisher = Publisher(
            ProducerSender(AckingProducer()), self.settings, blueprint.schemas.latest("dead_letter")
        )
        self.consolidator = Consolidator(
            blueprint, self.store, blueprint.rulebook, publisher, fence=self.guard.fence, owned=self.owned
        )

    async def run(self, events: Sequence[_Event]) -> None:
        # the Rig's events carry only what the Consolidator reads of Faust's (abstract) EventT
        batch: list[Any] = list(events)
        await self.guard.run(
            firsts_of(e.message for e in events), lambda floors: self.consolidator.process(batch, floors)
        )


def _mix(rig: Rig, count: int) -> list[Observation]:
    """``count`` observations of the simulator's live mix (smog, flood, every reporter's feeds),
    validated as the intake does, event times ten minutes apart ending an hour ago (days of them: the
    hours older than the state keeps fall out of it on the way)."""
    settings = rig.blueprint.settings
    first = (NOW_MS - 3_600_000) / 1000 - count * 600
    ticks = itertools.count()
    feed = live_feed(
        rig.blueprint.catalogue,
        rig.blueprint.schemas.latest("observation"),
        scenario="mix",
        seed=11,
        invalid_share=0.0,
        background=32,
        clock=lambda: first + next(ticks) * 600,
    )
    out: list[Observation] = []
    for record in itertools.islice(feed, count):
        if record.value[:1] == b"{":  # the JSON ones: the intake's own tests cover them
            continue
        _, decoded = codecs.decode_any(rig.blueprint.schemas, record.value, epoch_ms=True)
        checked = validate(
            decoded, record.reporter, rig.blueprint.catalogue, NOW_MS, Limits.from_settings(settings)
        )
        assert isinstance(checked, Observation), checked
        out.append(checked)
    return out


def _batches(rig: Rig, size: int = 60) -> Iterator[list[_Event]]:
    """The mix in batches, each also carrying corrections and duplicates of earlier records, a late
    value (a day back) and a tick of each partition it touches; and one batch delivered twice."""
    observations = _mix(rig, 720)
    earlier: list[Observation] = []
    previous: list[_Event] = []
    for n, start in enumerate(range(0, len(observations), size)):
        chunk = observations[start : start + size]
        events = [rig.event(obs) for obs in chunk]
        for obs in earlier[n::37][:3]:
            events.append(
                rig.event(dataclasses.replace(obs, revision=obs.revision + 1, value=obs.value + 1.5))
            )
            events.append(rig.event(obs))  # a duplicate: already applied
        if earlier:
            late = earlier[n * 7 % len(earlier)]
            back = late.event_time - 26 * 3_600_000
            events.append(
                rig.event(
                    dataclasses.replace(late, observation_id=f"late-{n}", event_time=back, report_time=back)
                )
            )
        for partition in sorted({e.message.partition for e in events})[:4]:
            events.append(rig.tick(partition, NOW_MS))
        earlier += chunk
        yield events
        if n == 3:
            yield list(previous)  # redelivered (a Kafka commit that never came): nothing is applied twice
        previous = events


def _comparable(dump: dict[str, Any], prefix: str, *, ledgers: bool = True) -> dict[str, Any]:
    """A state dump without its prefix, its epoch (a fresh id) and its ledgers' times (each entry
    ``offset;ms``), or without its ledgers."""
    out: dict[str, Any] = {}
    for key, value in dump.items():
        name = key.removeprefix(prefix)
        if name.endswith(":epoch") or (":ledger:" in name and not ledgers):
            continue
        ledger = ":ledger:" in name
        out[name] = {e: v.partition(";")[0] for e, v in value.items()} if ledger else value
    return out


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    # every run sees one clock (arrival times are stored)
    clock = SimpleNamespace(time=lambda: NOW_MS / 1000, perf_counter=time.perf_counter)
    monkeypatch.setattr(consolidate, "time", clock)


@pytest_asyncio.fixture
async def client(settings: Settings) -> AsyncIterator[Any]:
    client = connect(settings)
    yield client
    async for key in client.scan_iter(match=f"{settings.redis_key_prefix}*", count=1000):
        await client.delete(key)
    await client.aclose()


@pytest.fixture
def hgetalls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys of every HGETALL pipelined from here on."""
    seen: list[str] = []
    original = redis.asyncio.client.Pipeline.hgetall

    def spy(self: Any, name: Any) -> Any:
        seen.append(name if isinstance(name, str) else name.decode())
        return original(self, name)

    monkeypatch.setattr(redis.asyncio.client.Pipeline, "hgetall", spy)
    return seen


@pytest.mark.usefixtures("frozen_clock")
async def test_the_state_is_the_same_with_or_without_what_is_kept(
    settings: Settings, client: Any, hgetalls: list[str]
) -> None:
    rig = Rig()
    prefix = settings.redis_key_prefix
    kept = Worker(settings, rig.blueprint, client, f"{prefix}-kept", keep=True)
    read = Worker(settings, rig.blueprint, client, f"{prefix}-read", keep=False)
    hits = _hits()
    batches = list(_batches(rig))
    reads_kept = 0
    for events in batches:
        for worker in (kept, read):
            before = len(hgetalls)
            await worker.run(events)
            if worker is kept:
                reads_kept += len(hgetalls) - before
    reads_all = len(hgetalls) - reads_kept
    assert len(kept.owned) > 50
    saved = _hits() - hits
    assert saved > 100, "entities met again are taken from what was kept"
    assert reads_all - reads_kept == saved, "each one a state hash not read"
    with_kept = _comparable(await _dump(client, f"{prefix}-kept"), f"{prefix}-kept")
    without = _comparable(await _dump(client, f"{prefix}-read"), f"{prefix}-read")
    assert with_kept.keys() == without.keys()
    for key in with_kept:
        assert with_kept[key] == without[key], key
    assert any(k.endswith(":state") for k in with_kept)
    assert any(k.endswith(":seen") for k in with_kept)
    assert any(k.endswith(":periods") for k in with_kept)
    # what is kept is what Redis holds, byte for byte
    for entity, entry in kept.owned._entries.items():
        stored = await client.hgetall(kept.store.keys.entity(str(entity)))
        assert entry.value == stored, entity


@pytest.mark.usefixtures("frozen_clock")
async def test_an_entity_met_again_is_not_read_back(
    settings: Settings, client: Any, hgetalls: list[str]
) -> None:
    rig = Rig()
    worker = Worker(settings, rig.blueprint, client, settings.redis_key_prefix, keep=True)
    entity = "ENV.AQI|01|HN-AQ-HOANKIEM"
    key = worker.store.keys.entity(entity)
    first = [rig.event(_aqi(f"a-{i}", 60.0 + i, NOW_MS - (30 - i) * 60_000)) for i in range(5)]
    await worker.run(first)
    assert hgetalls.count(key) == 1
    hits = _hits()
    # an alert-raising value, and a correction of an earlier one: the step needs what was written
    second = [
        rig.event(_aqi("a-5", 190.0, NOW_MS - 20 * 60_000)),
        rig.event(_aqi("a-1", 75.0, NOW_MS - 29 * 60_000, revision=1)),
    ]
    await worker.run(second)
    assert hgetalls.count(key) == 1, "its state hash was taken from what the worker wrote"
    assert _hits() - hits == 1
    assert worker.owned.get(entity) == await client.hgetall(key)
    state = await worker.store.entity_state(entity)
    assert state is not None
    assert state.latest_value == 190.0
    assert any(r.level for r in state.rules.values()), "the alert rule's state moved on the kept hash"


def _aqi(observation_id: str, value: float, event_time: int, *, revision: int = 0) -> Observation:
    """A reading of Hoàn Kiếm's air quality (an alert rule watches it)."""
    return observation(
        observation_id, value, event_time, revision=revision, indicator="ENV.AQI", station="HN-AQ-HOANKIEM"
    )


@pytest.mark.usefixtures("frozen_clock")
async def test_another_owners_writes_are_read_again_not_overwritten(
    settings: Settings, client: Any, hgetalls: list[str]
) -> None:
    """A rebalance moves the partition away and back: the other owner applied records in between
    (its mark and the entity's hash moved). The next batch reads Redis again and applies on top of what
    the other owner wrote: the state is the one a single worker would have left."""
    rig = Rig()
    prefix = settings.redis_key_prefix
    entity = "ENV.AQI|01|HN-AQ-HOANKIEM"
    batches = [
        [
            rig.event(_aqi(f"b{n}-{i}", 50.0 + 40 * n + i, NOW_MS - (90 - 10 * n - i) * 60_000))
            for i in range(4)
        ]
        for n in range(3)
    ]
    ours = Worker(settings, rig.blueprint, client, prefix, keep=True)
    other = Worker(settings, rig.blueprint, client, prefix, keep=True)  # the partition's owner meanwhile
    alone = Worker(settings, rig.blueprint, client, f"{prefix}-alone", keep=False)
    for events in batches:
        await alone.run(events)
    await ours.run(batches[0])
    assert ours.owned.get(entity) is not None
    await other.run(batches[1])
    key = ours.store.keys.entity(entity)
    reads = hgetalls.count(key)
    hits = _hits()
    await ours.run(batches[2])
    assert hgetalls.count(key) == reads + 1, "the partition's mark moved: its state is read again"
    assert _hits() == hits
    # the ledgers differ: each store vouches for the commits it made itself, one batch behind
    got = _comparable(await _dump(client, prefix), prefix, ledgers=False)
    want = _comparable(await _dump(client, f"{prefix}-alone"), f"{prefix}-alone", ledgers=False)
    assert got.keys() == want.keys()
    for name in got:
        assert got[name] == want[name], name
    assert ours.owned.get(entity) == await client.hgetall(key)


@pytest.mark.usefixtures("frozen_clock")
async def test_a_state_flushed_between_batches_is_lost_not_rewritten_from_memory(
    settings: Settings, client: Any
) -> None:
    """Every key of the state gone (FLUSHALL, here limited to the test's own keys: the Redis is shared)
    while the worker kept what it wrote: the guard still finds the state lost and applies nothing."""
    rig = Rig()
    prefix = settings.redis_key_prefix
    worker = Worker(settings, rig.blueprint, client, prefix, keep=True)
    await worker.run([rig.event(_aqi(f"f-{i}", 60.0, NOW_MS - (30 - i) * 60_000)) for i in range(3)])
    assert len(worker.owned) == 1
    async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        await client.delete(key)
    events = [rig.event(_aqi("f-9", 70.0, NOW_MS - 60_000))]
    problem = await worker.guard.problem(firsts_of(e.message for e in events))
    assert problem is not None
    assert "no state epoch" in problem
    with pytest.raises(TimeoutError):  # the stage waits, not ready, until the state is rebuilt
        await asyncio.wait_for(worker.run(events), 0.5)
    assert [k async for k in client.scan_iter(match=f"{prefix}:*{{*", count=1000)] == []
    assert len(worker.owned) == 0


async def test_a_hash_gone_on_its_own_is_found_lost_as_without_what_is_kept(
    settings: Settings, client: Any, hgetalls: list[str]
) -> None:
    """One entity's hash deleted (expired, an operator's DEL) while the marks stay: the marks cannot see
    it, the hash's number of fields does. The worker reads it again and the ledger finds the state lost,
    as a worker keeping nothing does, instead of committing onto an empty hash."""
    rig = Rig()
    worker = Worker(settings, rig.blueprint, client, settings.redis_key_prefix, keep=True)
    entity = "ENV.AQI|01|HN-AQ-HOANKIEM"
    key = worker.store.keys.entity(entity)
    await worker.run([rig.event(_aqi(f"g-{i}", 60.0, NOW_MS - (30 - i) * 60_000)) for i in range(3)])
    await worker.run([rig.event(_aqi("g-3", 61.0, NOW_MS - 26 * 60_000))])
    assert hgetalls.count(key) == 1  # the second batch took the hash it kept
    await client.delete(key)
    with pytest.raises(TimeoutError):  # the stage waits, not ready, until the state is rebuilt
        await asyncio.wait_for(worker.run([rig.event(_aqi("g-4", 62.0, NOW_MS - 25 * 60_000))]), 0.5)
    assert hgetalls.count(key) >= 2, "the hash was read again once its length was not the one kept"
    assert await client.exists(key) == 0, "nothing was committed onto the empty hash"
    assert worker.owned.get(entity) is None
