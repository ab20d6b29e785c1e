"""Roll-ups on Redis: each source's contribution to a period (kept unless a higher ``seq`` is there),
the periods asked read back, and the roll-ups' ledger and its audit."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ResponseError

from stream_app.domain.rollup import PeriodSources, encode_entry
from stream_app.state import ledger
from stream_app.state.keys import STATE_TTL_S, Keys
from stream_app.state.layer import (
    Mark,
    PeriodKey,
    RollupApplied,
    RollupWrite,
)
from stream_app.state.marks import AppliedMarks, _raise_mark_refusal
from stream_app.state.redis_base import _barrier, _text, raise_retried


class RollupStore(AppliedMarks):
    """Applies roll-up contributions and keeps the roll-ups' ledger."""

    async def apply_rollup(
        self,
        writes: Sequence[RollupWrite],
        periods: Sequence[PeriodKey],
        applied: Mapping[str, Mark] | None = None,
    ) -> RollupApplied:
        """Apply every write and the applied marks, and read every period asked, in one round trip:
        one script call per roll-up written (its periods share a hash slot), the writes in order."""
        keys = self.keys
        marks = sorted((applied or {}).items())
        calls = _rollup_calls(keys, writes)

        async def run() -> list[Any]:
            async with self._batch(durable=True) as pipe:
                for call in calls:
                    await self._rollup_script(keys=call.keys, args=[*call.args, STATE_TTL_S], client=pipe)
                _barrier(pipe)
                for source, mark in marks:
                    await self._mark(pipe, source, mark)
                for period in periods:
                    pipe.hgetall(keys.rollup(*period))
                result: list[Any] = await pipe.execute(raise_on_error=False)
                raise_retried(result)
                return result

        replies = await self._retry("rollup", run)
        refused, written = _outcomes(keys, writes, calls, replies[: len(calls)])
        _raise_mark_refusal(marks, replies[len(calls) : len(calls) + len(marks)])
        reads = [_sources_or_error(r) for r in replies[len(calls) + len(marks) :]]
        return RollupApplied(refused, written, reads)

    async def rollup_ledger(self, periods: Sequence[PeriodKey]) -> list[tuple[int, int | None]]:
        """One round trip: the periods' hash lengths (one script call per roll-up) and their ledger
        entries (waits out Redis)."""
        if not periods:
            return []
        names = [self.keys.rollup(*p) for p in periods]
        rollups: dict[tuple[str, str], list[int]] = {}
        for position, (indicator, target, _, _) in enumerate(periods):
            rollups.setdefault((indicator, target), []).append(position)

        async def read() -> list[Any]:
            async with self._batch() as pipe:
                pipe.hmget(self.keys.rollup_ledger(), names)
                for positions in rollups.values():
                    period_keys = [names[i] for i in positions]
                    await self._rollup_lengths_script(keys=period_keys, args=[], client=pipe)
                result: list[Any] = await pipe.execute()
                return result

        vouched, *lengths = await self._retry("rollup", read)
        held = [0] * len(periods)
        for positions, reply in zip(rollups.values(), lengths, strict=True):
            for position, n in zip(positions, reply, strict=True):
                held[position] = int(n)
        now_ms = int(time.time() * 1000)
        return [(n, ledger.decode(v, now_ms)) for v, n in zip(vouched, held, strict=True)]

    async def vouch_rollups(self, counts: Mapping[PeriodKey, int]) -> None:
        if not counts:
            return
        now_ms = int(time.time() * 1000)
        pairs: list[str] = []
        for period, n in sorted(counts.items()):
            pairs += [self.keys.rollup(*period), ledger.encode(n, now_ms)]

        async def write() -> None:
            await self._client.execute_command("HSET", self.keys.rollup_ledger(), *pairs)

        await self._retry("rollup", write)

    async def rollup_ledger_loss(self, count: int) -> str | None:
        raw: list[Any] = (
            await self._client.hrandfield(  # type: ignore[assignment]  # with values: a flat list
                self.keys.rollup_ledger(), count, withvalues=True
            )
            or []
        )
        pairs = [(_text(name), value) for name, value in zip(raw[0::2], raw[1::2], strict=True)]
        if not pairs:
            return None
        async with self._batch() as pipe:
            for name, _ in pairs:
                pipe.hlen(name)
            held: list[Any] = await pipe.execute()
        now_ms = int(time.time() * 1000)
        for (name, value), n in zip(pairs, held, strict=True):
            problem = ledger.rollup_loss(name, int(n), ledger.decode(value, now_ms))
            if problem is not None:
                return problem
        return None


@dataclass(slots=True)
class _RollupCall:
    """One call of ``lua/rollup_apply.lua``: the writes of one roll-up (``indicator|target``), whose
    period hashes share a hash slot, in the batch's order."""

    keys: list[str] = field(default_factory=list)  # its period hashes, each once
    positions: list[int] = field(default_factory=list)  # per write, its position in the batch
    args: list[str | int] = field(default_factory=list)  # per write: key index (from 1), source, seq, entry


def _rollup_calls(keys: Keys, writes: Sequence[RollupWrite]) -> list[_RollupCall]:
    """The batch's writes grouped by roll-up, each group in the batch's order."""
    calls: dict[tuple[str, str], _RollupCall] = {}
    index: dict[str, int] = {}  # a period hash -> its index in its call's KEYS (one roll-up per hash)
    for position, w in enumerate(writes):
        indicator, target, _, _ = w.period
        call = calls.get((indicator, target))
        if call is None:
            call = calls[indicator, target] = _RollupCall()
        name = keys.rollup(*w.period)
        k = index.get(name)
        if k is None:
            call.keys.append(name)
            k = index[name] = len(call.keys)
        call.positions.append(position)
        call.args += [k, w.source, w.seq, encode_entry(w.seq, w.aggregate)]
    return list(calls.values())


def _outcomes(
    keys: Keys, writes: Sequence[RollupWrite], calls: Sequence[_RollupCall], replies: Sequence[Any]
) -> tuple[dict[int, BaseException], list[bool]]:
    """Per write, in the batch's order: refused (with the error) and written. A write whose period hash
    is not a hash (the script checks every key before writing and answers that key's type) is refused
    alone, the roll-up's other writes applied, as when each write was its own call. A call refused as a
    whole (an error reply: the script stopped, what it wrote is not known) refuses each of its writes,
    so that the stage reads their periods again rather than trust what it holds of them."""
    refused: dict[int, BaseException] = {}
    written = [False] * len(writes)
    for call, reply in zip(calls, replies, strict=True):
        if isinstance(reply, BaseException):
            refused.update(dict.fromkeys(call.positions, reply))
            continue
        for position, outcome in zip(call.positions, reply, strict=True):
            if isinstance(outcome, int):
                written[position] = outcome == 1
            else:
                name = keys.rollup(*writes[position].period)
                refused[position] = ResponseError(f"WRONGTYPE {name} holds a {_text(outcome)}, not a hash")
    return dict(sorted(refused.items())), written


def _sources_or_error(reply: Any) -> PeriodSources | BaseException:
    if isinstance(reply, BaseException):
        return reply
    try:
        return PeriodSources.decode(reply)
    except Exception as exc:  # a roll-up hash that does not decode: the caller charges its period
        return exc
