"""The roll-up stage keeps what it wrote of its periods' sources (stream_app/state/owned.py) instead of
reading every period's whole hash back from Redis each batch, against the real Redis: the hashes and
the records published are the same with the cache on and off; a period held is not read back; another
writer (a moved applied mark), a held period lost on its own, or a reply the cache did not expect make
the next batch read Redis again; a state lost is reported as without the cache."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

from stream_app.agents import rollup as rollup_module
from stream_app.agents.rollup import Rollup
from stream_app.config.blueprint import Blueprint, load_blueprint
from stream_app.domain.aggregates import Agg
from stream_app.domain.rollup import PeriodSources, encode_entry, rollup_key
from stream_app.kafka.partitioning import partition_for
from stream_app.kafka.publisher import Publisher
from stream_app.ops import metrics
from stream_app.settings import Settings
from stream_app.state.guard import StateGuard, firsts_of, source_of
from stream_app.state.owned import OwnedState
from stream_app.state.store import PeriodKey, StateStore, connect
from stream_app.wire import codecs
from tests.unit.producers import AckingProducer, ProducerSender
from tests.unit.test_consolidate_batch import _Message

from .support import redis_text

pytestmark = pytest.mark.asyncio

NOW_MS = 1_750_000_000_000  # June 2025: every period below is closed
INDICATOR = "TRF.ACCIDENTS"  # province-level, daily, summed: the nation rolls up the provinces
PROVINCES = [f"{code:02}" for code in (1, 4, 8, 11, 12, 14, 15, 19, 20, 22, 24, 25, 31, 33, 37, 38, 40)]
DAYS = ["2025-05-01", "2025-05-02", "2025-05-03"]
LAST_YEAR = ["2024-05-01", "2024-05-02", "2024-05-03"]


def _hits() -> float:
    return float(metrics.OWNED_STATE_LOOKUPS.labels("rollup", "hit")._value.get())


@dataclass
class _Event:
    message: _Message


class _Stage:
    """One roll-up stage over the real Redis under its own key prefix, as ``register_stateful`` builds
    it (the guard admits each batch and checks the cache), with a recording producer."""

    def __init__(self, settings: Settings, prefix: str, max_bytes: int) -> None:
        self.settings = settings.model_copy(
            update={"redis_key_prefix": prefix, "retry_initial_s": 0.01, "retry_max_s": 0.05}
        )
        self.blueprint: Blueprint = load_blueprint(self.settings)
        self.client = connect(self.settings)
        self.store = StateStore(self.client, self.settings)
        self.producer = AckingProducer()
        dead_letter = self.blueprint.schemas.latest("dead_letter")
        publisher = Publisher(ProducerSender(self.producer), self.settings, dead_letter)
        self.owned: OwnedState[Any] = OwnedState("rollup", max_bytes, 600.0)

        async def earliest(partitions: Sequence[Any]) -> dict[Any, int]:
            return dict.fromkeys(partitions, 0)

        self.guard = StateGuard(self.store, self.settings, earliest, stage="rollup", owned=self.owned)
        self.rollup = Rollup(self.blueprint, self.store, publisher, fence=self.guard.fence, owned=self.owned)
        topic = self.blueprint.topic_by_role("rollup")
        self.topic, self.partitions = topic.name, topic.partitions
        self.partition = partition_for(rollup_key(INDICATOR, "VN"), self.partitions)
        self.source = source_of((self.topic, self.partition))
        self.offset = 0
        self.asked: list[list[PeriodKey]] = []  # per apply_rollup call: the periods it read
        self.hgetall: list[str] = []  # every HGETALL the store's batches sent
        real_apply = self.store.apply_rollup

        async def apply_rollup(writes: Any, periods: Sequence[PeriodKey], applied: Any = None) -> Any:
            self.asked.append(list(periods))
            return await real_apply(writes, periods, applied=applied)

        self.store.apply_rollup = apply_rollup  # type: ignore[method-assign]
        real_batch = self.store._batch

        def batch(**kwargs: Any) -> Any:
            pipe = real_batch(**kwargs)
            real_hgetall = pipe.hgetall

            def hgetall(name: str) -> Any:
                self.hgetall.append(name)
                return real_hgetall(name)

            pipe.hgetall = hgetall
            return pipe

        self.store._batch = batch  # type: ignore[method-assign]

    def event(self, source: str, seq: int, items: list[tuple[str, Agg | None]]) -> _Event:
        record = {
            "indicator": INDICATOR,
            "target": "VN",
            "processing_time": NOW_MS,
            "items": [
                {"source": source, "seq": seq, "period": f"|{label}", "aggregate": a.encode() if a else None}
                for label, a in items
            ],
        }
        value = codecs.encode(self.blueprint.schemas.latest("contribution"), record)
        message = _Message(
            self.topic, self.partition, self.offset, rollup_key(INDICATOR, "VN").encode(), value
        )
        self.offset += 1
        return _Event(message)

    async def run(self, events: list[_Event]) -> None:
        await self.guard.run(
            firsts_of(e.message for e in events),
            lambda floors: self.rollup.process(events, floors),
        )

    def period(self, label: str) -> PeriodKey:
        return (INDICATOR, "VN", "", label)

    def key(self, label: str) -> str:
        return self.store.keys.rollup(*self.period(label))

    async def hashes(self) -> dict[str, dict[str, str]]:
        """The roll-up period hashes, by key without the prefix."""
        out = {}
        async for raw in self.client.scan_iter(match=f"{self.settings.redis_key_prefix}:*rollup|*"):
            name = redis_text(raw)
            if redis_text(await self.client.type(name)) != "hash" or ":meta:" in name:
                continue
            fields = await self.client.hgetall(name)
            out[name.split(":", 1)[1]] = {redis_text(k): redis_text(v) for k, v in fields.items()}
        return out

    def published(self) -> list[tuple[str, Any, bytes | None]]:
        return list(self.producer.sent)

    async def wipe(self) -> None:
        """Every key of this stage's prefix gone (a FLUSHALL of its own state: the Redis is shared)."""
        async for raw in self.client.scan_iter(match=f"{self.settings.redis_key_prefix}:*"):
            await self.client.delete(raw)

    async def close(self) -> None:
        await self.client.aclose()


def _agg(value: float, n: int) -> Agg:
    return Agg.of(value, NOW_MS - 86_400_000 * 40, f"obs-{n}", "FINAL", NOW_MS - 1000)


def _first(stage: _Stage) -> list[_Event]:
    """Every province's days, and last year's."""
    return [
        stage.event(
            f"{INDICATOR}|{p}|-",
            1000 + i,
            [(d, _agg(float(i + k), k)) for k, d in enumerate(DAYS + LAST_YEAR)],
        )
        for i, p in enumerate(PROVINCES)
    ]


def _update(stage: _Stage) -> _Event:
    return stage.event(f"{INDICATOR}|01|-", 2000, [("2025-05-02", _agg(50.0, 1))])


def _batches(stage: _Stage) -> list[list[_Event]]:
    """A realistic mix: every province's days (and last year's) first; then updates, an emptied
    source, a stale redelivery (a lower sequence: kept), a new day; then several contributions of one
    source in one batch."""
    first = _first(stage)
    second = [
        _update(stage),
        stage.event(f"{INDICATOR}|04|-", 2001, [("2025-05-02", None)]),  # emptied
        stage.event(f"{INDICATOR}|08|-", 500, [("2025-05-02", _agg(999.0, 2))]),  # stale: kept
        stage.event(f"{INDICATOR}|11|-", 2003, [("2025-05-04", _agg(3.0, 3))]),  # a new day
    ]
    third = [
        stage.event(f"{INDICATOR}|12|-", 3000, [("2025-05-01", _agg(7.0, 4))]),
        stage.event(f"{INDICATOR}|12|-", 3001, [("2025-05-01", _agg(8.0, 5))]),  # the same source again
        stage.event(f"{INDICATOR}|14|-", 3002, [("2025-05-02", _agg(9.0, 6)), ("2025-05-04", _agg(1.0, 7))]),
    ]
    return [first, second, third]


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """One wall clock for every run: the records carry their processing time."""
    monkeypatch.setattr(rollup_module, "time", SimpleNamespace(time=lambda: NOW_MS / 1000))


@pytest.fixture
def make_stage(settings: Settings) -> Callable[..., _Stage]:
    def make(name: str, max_bytes: int = 32 * 1024 * 1024) -> _Stage:
        return _Stage(settings, f"{settings.redis_key_prefix}{name}", max_bytes)

    return make


async def _close(make_stage: Callable[..., _Stage], *stages: _Stage) -> None:
    for stage in stages:
        await stage.wipe()
        await stage.close()


async def test_the_cache_changes_neither_the_hashes_nor_the_records(
    make_stage: Callable[..., _Stage], fixed_clock: None
) -> None:
    off, on = make_stage("off", 0), make_stage("on")
    try:
        hits = _hits()
        for stage in (off, on):
            for batch in _batches(stage):
                await stage.run(batch)
        assert _hits() - hits >= 6, "the later batches took their periods from the cache"
        assert off.published()
        assert off.published() == on.published()
        assert await off.hashes() == await on.hashes()
        assert off.hgetall
        assert len(on.hgetall) < len(off.hgetall)
        assert len(off.owned) == 0
        assert len(on.owned) > 0
    finally:
        await _close(make_stage, off, on)


async def test_a_second_batch_does_not_read_back_the_periods_held(
    make_stage: Callable[..., _Stage], fixed_clock: None
) -> None:
    stage = make_stage("held")
    try:
        first, second, _ = _batches(stage)
        await stage.run(first)
        assert {stage.key(d) for d in DAYS + LAST_YEAR} <= set(stage.hgetall)
        stage.hgetall.clear()
        hits = _hits()
        await stage.run(second)
        # 2025-05-02 and its last year were held; 2025-05-04 is new (and 2024-05-04 never written)
        assert stage.key("2025-05-02") not in stage.hgetall
        assert stage.key("2024-05-02") not in stage.hgetall
        assert stage.hgetall == [stage.key("2025-05-04"), stage.key("2024-05-04")]
        assert _hits() - hits == 2
        held = stage.owned.get(stage.period("2025-05-02"))
        assert isinstance(held, PeriodSources)
        assert held.entries[f"{INDICATOR}|08|-"].seq == 1002, "the newer sequence Redis held is kept"
        assert held.entries[f"{INDICATOR}|04|-"].agg is None
        assert held.entries[f"{INDICATOR}|01|-"].seq == 2000
        raw = await stage.client.hget(stage.key("2025-05-02"), f"{INDICATOR}|08|-")
        assert raw is not None
        assert redis_text(raw).startswith("1002;")
    finally:
        await _close(make_stage, stage)


async def test_another_writer_makes_the_next_batch_read_redis_again(
    make_stage: Callable[..., _Stage], fixed_clock: None
) -> None:
    """A new owner applied records of the partition (its mark moved) and replaced a source's entry
    (the hash's length unchanged): the next batch reads the period again and publishes what it holds."""
    stage, truth = make_stage("moved"), make_stage("moved-truth", 0)
    try:
        for s in (stage, truth):
            await s.run(_first(s))
        outsider = encode_entry(1_000_000, _agg(5000.0, 9).encode())
        for s in (stage, truth):
            await s.client.hset(s.key("2025-05-02"), f"{INDICATOR}|15|-", outsider)
            await s.client.set(s.store.keys.applied(s.source), s.offset + 2)  # it applied 3 records
            s.offset += 3
        stage.hgetall.clear()
        hits = _hits()
        await stage.run([_update(stage)])
        await truth.run([_update(truth)])
        assert stage.key("2025-05-02") in stage.hgetall
        assert _hits() == hits, "nothing of the moved partition was trusted"
        assert stage.published()[-1] == truth.published()[-1]
        record = codecs.decode(stage.blueprint.schemas, "consolidated", stage.published()[-1][2] or b"")
        assert record["sum"] >= 5000.0
    finally:
        await _close(make_stage, stage, truth)


async def test_a_held_period_lost_on_its_own_is_read_again(
    make_stage: Callable[..., _Stage], fixed_clock: None
) -> None:
    """Last year's period gone from Redis (expired, deleted: nobody's write, so no mark moves): the
    hash lengths read before the writes see it, and the record has no last-year value, as without the
    cache."""
    stage, truth = make_stage("gone"), make_stage("gone-truth", 0)
    try:
        for s in (stage, truth):
            await s.run(_first(s))
            await s.client.delete(s.key("2024-05-02"))
            await s.run([_update(s)])
        assert stage.key("2024-05-02") in stage.hgetall[-2:]
        assert stage.published()[-1] == truth.published()[-1]
        record = codecs.decode(stage.blueprint.schemas, "consolidated", stage.published()[-1][2] or b"")
        assert record.get("last_year_value") is None
    finally:
        await _close(make_stage, stage, truth)


async def test_a_reply_the_cache_did_not_expect_reads_the_period_again(
    make_stage: Callable[..., _Stage], fixed_clock: None
) -> None:
    """Redis holds a later sequence for a source than the cache knows (written behind the marks' back,
    the hash's length unchanged): the script keeps it (reply 0), the held period is read again in a
    second round trip, and the record and the cache agree with Redis."""
    stage, truth = make_stage("surprise"), make_stage("surprise-truth", 0)
    try:
        newer = encode_entry(9_999, _agg(77.0, 8).encode())
        for s in (stage, truth):
            await s.run(_first(s))
            await s.client.hset(s.key("2025-05-02"), f"{INDICATOR}|01|-", newer)
            await s.run([_update(s)])  # source 01 at sequence 2000 < 9999: kept
        assert stage.asked[-1] == [stage.period("2025-05-02")], "the second round trip"
        assert stage.published()[-1] == truth.published()[-1]
        held = stage.owned.get(stage.period("2025-05-02"))
        assert isinstance(held, PeriodSources)
        assert held.entries[f"{INDICATOR}|01|-"].seq == 9_999
    finally:
        await _close(make_stage, stage, truth)


async def test_a_state_lost_between_batches_is_reported_and_forgets_the_cache(
    make_stage: Callable[..., _Stage], fixed_clock: None
) -> None:
    stage = make_stage("lost")
    try:
        first, second, _ = _batches(stage)
        await stage.run(first)
        assert len(stage.owned) > 0
        await stage.wipe()  # the state's keys flushed between batches (the Redis is shared: not FLUSHALL)
        problem = await stage.guard.problem(firsts_of(e.message for e in second))
        assert problem is not None
        assert "holds none of it" in problem
        # flushed while a batch is in flight (admitted, then its marks refused): lost, the cache forgotten
        stage.offset = 0
        await stage.run(_first(stage))
        assert len(stage.owned) > 0
        fence = stage.guard.fence

        async def flushed_after_the_fence() -> None:
            await fence()
            await stage.wipe()

        stage.rollup.fence = flushed_after_the_fence
        lost = metrics.STATE_LOST.labels("rollup")
        task = asyncio.create_task(stage.run([_update(stage)]))
        for _ in range(100):
            await asyncio.sleep(0.05)
            if len(stage.owned) == 0 and lost._value.get() == 1:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(stage.owned) == 0
    finally:
        await _close(make_stage, stage)
