"""The roll-up writes of a batch go to Redis as one script call per roll-up (``indicator|target``, its
period hashes one hash slot), against the real Redis: the commands sent are counted on the store's
pipelines, and the hashes, the replies and the refusals are those of the script as it was, one call per
write (the same writes under another key prefix): the writes' order within a call, a source
written twice in one batch, a period hash that is not a hash (its writes refused alone, the rest of the
batch applied and read). The ledger check's hash lengths are one call per roll-up too."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import redis
from redis.exceptions import ResponseError

from stream_app.domain.aggregates import Agg
from stream_app.domain.rollup import PeriodSources, encode_entry
from stream_app.settings import Settings
from stream_app.state.keys import STATE_TTL_S
from stream_app.state.store import PeriodKey, RollupApplied, RollupWrite, StateStore, connect

from .support import redis_text
from .test_rollup_owned import DAYS as STAGE_DAYS
from .test_rollup_owned import LAST_YEAR, PROVINCES, _close, _first, _Stage, fixed_clock, make_stage

pytestmark = pytest.mark.asyncio

__all__ = ["fixed_clock", "make_stage"]  # the roll-up stage's fixtures, for the stage's test

NATION: PeriodKey = ("TRF.ACCIDENTS", "VN", "", "2025-05-01")
DAYS: list[PeriodKey] = [("TRF.ACCIDENTS", "VN", "", f"2025-05-{d:02}") for d in range(1, 6)]
PROVINCE: list[PeriodKey] = [("TRF.ACCIDENTS", "01", "", f"2025-05-{d:02}") for d in range(1, 3)]


def _aggregate(value: float) -> str:
    return Agg.of(value, 1_745_000_000_000, f"obs-{value}", "FINAL", 1_746_000_000_000).encode()


def _writes() -> list[RollupWrite]:
    """Many writes over several periods of the nation's roll-up and a province's, interleaved: new
    sources, later sequences replacing earlier ones, earlier ones kept out, equal ones ignored."""
    writes: list[RollupWrite] = []
    for round_ in range(3):
        for d, period in enumerate(DAYS):
            for s in range(4):
                seq = 10 * round_ + s + d if (s + round_) % 3 else 5 - round_  # some go back in time
                writes.append(RollupWrite(period, f"TRF.ACCIDENTS|{s:02}|-", seq, _aggregate(seq)))
        for period in PROVINCE:
            writes.append(RollupWrite(period, "TRF.ACCIDENTS|01|-", 7 * round_, _aggregate(round_)))
    writes.append(RollupWrite(DAYS[0], "TRF.ACCIDENTS|00|-", 20, None))  # the same sequence: ignored
    writes.append(RollupWrite(DAYS[1], "TRF.ACCIDENTS|09|-", 3, None))  # a source without an aggregate
    return writes


class _Sent:
    """The commands each pipeline of a store sends (scripts by their name, ``EVALSHA``)."""

    def __init__(self, store: StateStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.batches: list[list[str]] = []
        batch = store._batch

        def counted(*, durable: bool = False) -> Any:
            pipe = batch(durable=durable)
            execute = pipe.execute

            async def send(raise_on_error: bool = True) -> list[Any]:
                self.batches.append([str(args[0]).upper() for args, _ in pipe.command_stack])
                replies: list[Any] = await execute(raise_on_error=raise_on_error)
                return replies

            pipe.execute = send
            return pipe

        monkeypatch.setattr(store, "_batch", counted)

    def last(self, command: str) -> int:
        return self.batches[-1].count(command)


@pytest.fixture
def stores(settings: Settings) -> Iterator[tuple[Settings, Settings]]:
    """Two key prefixes of the test's: the batch's store and the one-write-per-batch reference."""
    yield (
        settings.model_copy(update={"redis_key_prefix": f"{settings.redis_key_prefix}:batch"}),
        settings.model_copy(update={"redis_key_prefix": f"{settings.redis_key_prefix}:each"}),
    )
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    for key in client.scan_iter(match=f"{settings.redis_key_prefix}:*", count=1000):
        client.delete(key)


async def _hashes(client: Any, prefix: str) -> dict[str, Any]:
    """Every key under ``prefix`` (the prefix left out): a hash's fields and whether it expires, or the
    type and value of another key."""
    out: dict[str, Any] = {}
    async for raw in client.scan_iter(match=f"{prefix}:*", count=1000):
        key = redis_text(raw)
        kind = redis_text(await client.type(key))
        if kind == "hash":
            fields = {redis_text(k): redis_text(v) for k, v in (await client.hgetall(key)).items()}
            out[key.removeprefix(prefix)] = (fields, await client.ttl(key) > 0)
        else:
            out[key.removeprefix(prefix)] = (kind, redis_text(await client.get(key)))
    return out


# the apply script as it was before the writes of a roll-up went in one call: one call per write
ONE_WRITE = """
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' and kind ~= 'hash' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' holds a ' .. kind .. ', not a hash')
end
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if stored then
  local seq = tonumber(string.match(stored, '^(-?%d+);'))
  if seq and seq >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return 1
"""


async def _one_call_per_write(
    client: Any, store: StateStore, writes: Sequence[RollupWrite]
) -> tuple[list[str], list[bool]]:
    """The writes applied one call each of the script as it was: per write, its refusal's text ('' if
    none, the key prefix left out) and whether it was written."""
    script = client.register_script(ONE_WRITE)
    refusals: list[str] = []
    written: list[bool] = []
    for w in writes:
        args = [w.source, w.seq, encode_entry(w.seq, w.aggregate), STATE_TTL_S]
        try:
            reply = await script(keys=[store.keys.rollup(*w.period)], args=args)
        except ResponseError as exc:
            refusals.append(str(exc).replace(store.keys.prefix, ""))
            written.append(False)
        else:
            refusals.append("")
            written.append(int(reply) == 1)
    return refusals, written


def _refusals(applied: RollupApplied, count: int, prefix: str) -> list[str]:
    return [str(applied.refused[i]).replace(prefix, "") if i in applied.refused else "" for i in range(count)]


async def _seed(store: StateStore) -> None:
    """Entries already there: one later than every write of its source, one earlier."""
    await store.apply_rollup(
        [
            RollupWrite(DAYS[2], "TRF.ACCIDENTS|03|-", 1_000, _aggregate(1_000)),
            RollupWrite(DAYS[3], "TRF.ACCIDENTS|01|-", 0, _aggregate(0)),
        ],
        [],
    )


async def test_a_batch_of_many_writes_is_one_script_call_per_rollup_and_ends_as_one_call_per_write(
    stores: tuple[Settings, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    batch_settings, each_settings = stores
    client = connect(batch_settings)
    try:
        batch, each = StateStore(client, batch_settings), StateStore(client, each_settings)
        for store in (batch, each):
            await _seed(store)
        sent = _Sent(batch, monkeypatch)
        writes = _writes()
        applied = await batch.apply_rollup(writes, [*DAYS, *PROVINCE])
        assert len(writes) > 60
        assert sent.last("EVALSHA") == 2  # the nation's roll-up and the province's
        assert sent.last("HGETALL") == len(DAYS) + len(PROVINCE)
        refusals, written = await _one_call_per_write(client, each, writes)
        assert applied.refused == {}
        assert refusals == [""] * len(writes)
        assert applied.written == written
        assert True in written
        assert False in written
        stored = await _hashes(client, batch_settings.redis_key_prefix)
        assert stored == await _hashes(client, each_settings.redis_key_prefix)
        assert len(stored) == len(DAYS) + len(PROVINCE)
        for period, read in zip([*DAYS, *PROVINCE], applied.reads, strict=True):
            assert isinstance(read, PeriodSources)
            assert read.entries == (await each.apply_rollup([], [period])).reads[0].entries  # type: ignore[union-attr]

        missing: PeriodKey = ("TRF.ACCIDENTS", "VN", "", "2024-05-01")
        asked = [DAYS[0], PROVINCE[0], missing, DAYS[3], PROVINCE[1]]
        await batch.vouch_rollups({DAYS[0]: 2})
        lengths = await batch.rollup_ledger(asked)
        assert sent.last("EVALSHA") == 2
        assert sent.last("HLEN") == 0  # one call per roll-up, and the ledger's HMGET
        assert sent.last("HMGET") == 1
        expected = [await client.hlen(batch.keys.rollup(*p)) for p in asked]
        assert [n for n, _ in lengths] == expected
        assert expected[2] == 0
        assert min(expected[:2] + expected[3:]) > 0
        assert [v for _, v in lengths] == [2, None, None, None, None]
    finally:
        await client.aclose()


async def test_a_source_written_twice_in_a_batch_ends_as_written_one_call_each(
    stores: tuple[Settings, Settings],
) -> None:
    batch_settings, each_settings = stores
    source = "TRF.ACCIDENTS|01|-"
    writes = [
        RollupWrite(DAYS[0], source, 5, _aggregate(5)),
        RollupWrite(DAYS[0], source, 7, _aggregate(7)),  # later: replaces it
        RollupWrite(DAYS[1], source, 7, _aggregate(7)),
        RollupWrite(DAYS[1], source, 5, _aggregate(5)),  # earlier: kept out
        RollupWrite(DAYS[2], source, 6, _aggregate(6)),
        RollupWrite(DAYS[2], source, 6, _aggregate(60)),  # the same sequence: kept out
    ]
    client = connect(batch_settings)
    try:
        batch, each = StateStore(client, batch_settings), StateStore(client, each_settings)
        applied = await batch.apply_rollup(writes, DAYS[:3])
        assert applied.written == [True, True, True, False, True, False]
        assert applied.written == (await _one_call_per_write(client, each, writes))[1]
        assert await _hashes(client, batch_settings.redis_key_prefix) == await _hashes(
            client, each_settings.redis_key_prefix
        )
        assert [read.entries[source].seq for read in applied.reads if isinstance(read, PeriodSources)] == [
            7,
            7,
            6,
        ]
        stored = [redis_text(await client.hget(batch.keys.rollup(*p), source)) for p in DAYS[:3]]
        assert stored == [encode_entry(seq, _aggregate(seq)) for seq in (7, 7, 6)]
    finally:
        await client.aclose()


async def test_a_period_that_is_not_a_hash_refuses_its_writes_alone(
    stores: tuple[Settings, Settings],
) -> None:
    """A roll-up period hash that is a string (an operator's mistake, a hostile key): the writes to it
    are refused, with its type, and nothing is written to it; the roll-up's other periods, the other
    roll-ups, the applied marks and the reads of the batch go on, as when each write was its own call."""
    batch_settings, each_settings = stores
    writes = [
        RollupWrite(DAYS[0], "TRF.ACCIDENTS|01|-", 3, _aggregate(3)),
        RollupWrite(DAYS[1], "TRF.ACCIDENTS|01|-", 3, _aggregate(3)),  # the string
        RollupWrite(PROVINCE[0], "TRF.ACCIDENTS|01|-", 3, _aggregate(3)),
        RollupWrite(DAYS[1], "TRF.ACCIDENTS|04|-", 4, _aggregate(4)),  # the string
        RollupWrite(DAYS[2], "TRF.ACCIDENTS|04|-", 4, _aggregate(4)),
    ]
    client = connect(batch_settings)
    try:
        batch, each = StateStore(client, batch_settings), StateStore(client, each_settings)
        for store in (batch, each):
            await client.set(store.keys.rollup(*DAYS[1]), "not a hash")
        applied = await batch.apply_rollup(writes, [DAYS[0], DAYS[1], DAYS[2]])
        refusals, written = await _one_call_per_write(client, each, writes)
        assert sorted(applied.refused) == [1, 3]
        assert all(isinstance(e, ResponseError) for e in applied.refused.values())
        assert _refusals(applied, len(writes), batch.keys.prefix) == refusals
        assert "WRONGTYPE" in refusals[1]
        assert "holds a string, not a hash" in refusals[1]
        assert applied.written == written == [True, False, True, False, True]
        assert await _hashes(client, batch_settings.redis_key_prefix) == await _hashes(
            client, each_settings.redis_key_prefix
        )
        assert await client.get(batch.keys.rollup(*DAYS[1])) in ("not a hash", b"not a hash")
        first, bad, third = applied.reads
        assert isinstance(first, PeriodSources)
        assert list(first.entries) == ["TRF.ACCIDENTS|01|-"]
        assert isinstance(bad, ResponseError)  # its read fails, charged to its period by the stage
        assert isinstance(third, PeriodSources)
        assert list(third.entries) == ["TRF.ACCIDENTS|04|-"]
    finally:
        await client.aclose()


async def test_a_rebuild_over_a_period_that_is_not_a_hash_goes_on_with_the_rest_of_the_batch(
    make_stage: Callable[..., _Stage], fixed_clock: None
) -> None:
    """The roll-up stage of a rebuild (no ledger check before the writes: outside a rebuild the check's
    length of that period fails the batch first, as it did one HLEN per period) over a period hash that
    is a string: the records that wrote to it go to the roll-up dead letters, every other period of the
    roll-up is written and its record published."""
    stage = make_stage("wrongtype")
    try:
        stage.rollup.replay = True
        await stage.client.set(stage.key(STAGE_DAYS[1]), "not a hash")
        events = _first(stage)
        await stage.run(events)
        poison = stage.blueprint.topic_by_role("rollup_dead_letter").name
        letters = [p for p in stage.published() if p[0] == poison]
        records = [p for p in stage.published() if p[0] != poison]
        assert len(letters) == len(events)  # every province wrote to 2025-05-02
        hashes = await stage.hashes()
        assert {name.rsplit("|", 1)[1] for name in hashes} == {*STAGE_DAYS, *LAST_YEAR} - {STAGE_DAYS[1]}
        assert all(len(sources) == len(PROVINCES) for sources in hashes.values())
        published = {(key or b"").decode().rsplit(":", 1)[1] for _, key, _ in records}
        assert published == {*STAGE_DAYS, *LAST_YEAR} - {STAGE_DAYS[1]}  # each period written but that one
        assert len(records) == len(published)
        assert await stage.client.get(stage.key(STAGE_DAYS[1])) == b"not a hash"
    finally:
        await _close(make_stage, stage)
