"""Roll-ups on Redis: each source's contribution to a period (kept unless a higher ``seq`` is there),
the periods asked read back, and the roll-ups' ledger and its audit."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from stream_app.domain.rollup import PeriodSources, encode_entry
from stream_app.state import ledger
from stream_app.state.keys import STATE_TTL_S
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
        """Apply every write and the applied marks, and read every period asked, in one round trip."""
        keys = self.keys
        marks = sorted((applied or {}).items())

        async def run() -> list[Any]:
            async with self._batch(durable=True) as pipe:
                for w in writes:
                    await self._rollup_script(
                        keys=[keys.rollup(*w.period)],
                        args=[w.source, w.seq, encode_entry(w.seq, w.aggregate), STATE_TTL_S],
                        client=pipe,
                    )
                _barrier(pipe)
                for source, mark in marks:
                    await self._mark(pipe, source, mark)
                for period in periods:
                    pipe.hgetall(keys.rollup(*period))
                result: list[Any] = await pipe.execute(raise_on_error=False)
                raise_retried(result)
                return result

        replies = await self._retry("rollup", run)
        outcomes = replies[: len(writes)]
        refused = {i: r for i, r in enumerate(outcomes) if isinstance(r, BaseException)}
        _raise_mark_refusal(marks, replies[len(writes) : len(writes) + len(marks)])
        reads = [_sources_or_error(r) for r in replies[len(writes) + len(marks) :]]
        written = [not isinstance(r, BaseException) and int(r) == 1 for r in outcomes]
        return RollupApplied(refused, written, reads)

    async def rollup_ledger(self, periods: Sequence[PeriodKey]) -> list[tuple[int, int | None]]:
        """One round trip: the periods' hash lengths and their ledger entries (waits out Redis)."""
        if not periods:
            return []
        names = [self.keys.rollup(*p) for p in periods]

        async def read() -> list[Any]:
            async with self._batch() as pipe:
                pipe.hmget(self.keys.rollup_ledger(), names)
                for name in names:
                    pipe.hlen(name)
                result: list[Any] = await pipe.execute()
                return result

        vouched, *held = await self._retry("rollup", read)
        now_ms = int(time.time() * 1000)
        return [(int(n), ledger.decode(v, now_ms)) for v, n in zip(vouched, held, strict=True)]

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


def _sources_or_error(reply: Any) -> PeriodSources | BaseException:
    if isinstance(reply, BaseException):
        return reply
    try:
        return PeriodSources.decode(reply)
    except Exception as exc:  # a roll-up hash that does not decode: the caller charges its period
        return exc
