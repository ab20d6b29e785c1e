"""The state layer in memory: the same interface and semantics as the Redis store, for unit tests.

It interprets the very arguments :class:`stream_app.state.store.StateStore` sends its Lua scripts (a
commit is applied only if its offset is newer than the one stored, observations and periods beyond the
retention are forgotten, a roll-up keeps the highest sequence per source), so a unit test of an agent's
batch logic exercises the same serialisation. It counts round trips, and an entity can be made
unreadable or unwritable (``broken``) to drive the poison paths. No TTLs: nothing expires.

This in-memory twin deliberately mirrors the Redis layer's semantics (``store.py``, ``entities.py``,
``layer.py``, ``rollups.py``, ``queries.py``, the Lua scripts) for the unit tests, so code alike in both is
expected; ``tests/integration/test_state_layer.py`` keeps them in step (the same batches leave the same
keys in both, and every read the query API uses answers the same).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from stream_app.domain.aggregates import Agg
from stream_app.domain.clock import HOUR_MS
from stream_app.domain.entity.state import EntityState, SeriesPeriod
from stream_app.domain.model import period_field, split_period_field
from stream_app.domain.rollup import PeriodSources, decode_entries, encode_entry, entry_seq
from stream_app.state import entity_hash, ledger
from stream_app.state.entities import _collect, prepared_commit
from stream_app.state.keys import Keys
from stream_app.state.store import (
    ActiveAlert,
    Checkpoint,
    Commit,
    DueAt,
    EntityReads,
    IndexWrite,
    Mark,
    PeriodKey,
    PreparedCommit,
    ReadRequest,
    ReporterSent,
    RollupApplied,
    RollupWrite,
    StateLostError,
)


@dataclass
class MemoryStateStore:
    """:class:`stream_app.state.store.StateLayer` over dictionaries."""

    keys: Keys = field(default_factory=lambda: Keys("sa"))
    hashes: dict[str, dict[str, str]] = field(default_factory=dict)
    zsets: dict[str, dict[str, float]] = field(default_factory=dict)
    sets: dict[str, set[str]] = field(default_factory=dict)
    markers: dict[str, str] = field(default_factory=dict)
    broken: dict[str, BaseException] = field(default_factory=dict)  # entity -> the error Redis would give
    round_trips: int = 0
    unvouched: dict[str, dict[str, int]] = field(default_factory=dict)  # confirmed, not in a ledger yet

    # ------------------------------------------------------------------ the stateful step

    async def read(
        self,
        requests: dict[str, ReadRequest],
        into: dict[str, EntityReads],
        vouched: Mapping[str, Sequence[str]] | None = None,
    ) -> dict[str, BaseException]:
        self.round_trips += 1
        plan: list[tuple[str, str, Any]] = []
        replies: list[Any] = []
        for entity, request in requests.items():
            broken = self.broken.get(entity)
            keys = self.keys
            if request.state:
                plan.append((entity, "state", None))
                replies.append(broken or _encoded(self.hashes.get(keys.entity(entity), {})))
            if request.length:
                plan.append((entity, "length", None))
                replies.append(broken or len(self.hashes.get(keys.entity(entity), {})))
            if request.ids:
                ids = sorted(request.ids)
                seen = self.hashes.get(keys.entity(entity, "seen"), {})
                plan.append((entity, "seen", ids))
                replies.append(broken or [_bytes_or_none(seen.get(i)) for i in ids])
            if request.periods:
                wanted = sorted(request.periods)
                periods = self.hashes.get(keys.entity(entity, "periods"), {})
                plan.append((entity, "periods", wanted))
                replies.append(broken or [_bytes_or_none(periods.get(period_field(*p))) for p in wanted])
            for first, end in sorted(request.ranges):
                plan.append((entity, "range", (first, end)))
                replies.append(broken or self._between(entity, first, end))
        for source, entities in sorted((vouched or {}).items()):
            entries = self.hashes.get(self.keys.ledger(source), {})
            plan.append(("", "ledger", list(entities)))
            replies.append([_bytes_or_none(entries.get(e)) for e in entities])
        return _collect(plan, replies, into, int(time.time() * 1000))

    def _between(self, entity: str, first: int, end: int) -> list[bytes]:
        seen = self.hashes.get(self.keys.entity(entity, "seen"), {})
        index = self.zsets.get(self.keys.entity(entity, "seen-index"), {})
        out: list[bytes] = []
        for seen_key, hour in sorted(index.items(), key=lambda kv: (kv[1], kv[0])):
            if first <= hour < end and seen_key in seen:
                out += [seen_key.encode(), seen[seen_key].encode()]
        return out

    def prepare(self, commit: Commit) -> PreparedCommit:
        return prepared_commit(self.keys, commit)

    async def commit(
        self,
        commits: Sequence[PreparedCommit],
        indexes: Sequence[IndexWrite] = (),
        applied: Mapping[str, Mark] | None = None,
    ) -> tuple[set[str], dict[str, BaseException]]:
        if not commits and not indexes and not applied:
            return set(), {}
        self.round_trips += 1
        for write in indexes:
            self._index(write)
        failed: dict[str, BaseException] = {}
        written: set[str] = set()
        for c in commits:
            if c.entity in self.broken:
                failed[c.entity] = self.broken[c.entity]
            elif self._commit_one(c.keys, c.args):
                written.add(c.entity)
        self._mark(applied)
        if applied:  # what the marks vouch for, one batch behind, as StateStore.commit
            now_ms = int(time.time() * 1000)
            for source in applied:
                entries = self.hashes.setdefault(self.keys.ledger(source), {})
                pending = self.unvouched.pop(source, {})
                entries.update({e: ledger.encode(at, now_ms) for e, at in pending.items()})
            for source, pairs in ledger.entries((c.entity, c.args) for c in commits).items():
                later = self.unvouched.setdefault(source, {})
                later.update({e: max(at, later.get(e, at)) for e, at in pairs if e not in failed})
        return written, failed

    def _mark(self, applied: Mapping[str, Mark] | None) -> None:
        """What ``lua/applied_mark.lua`` does (raises StateLostError where Redis replies STATELOST)."""
        for source, (offset, floor) in sorted((applied or {}).items()):
            key = self.keys.applied(source)
            if self.keys.rebuilding() in self.markers:
                raise StateLostError(f"{source}: STATELOST the state is being rebuilt")
            stored = self.markers.get(key)
            if floor is not None and (stored is None or int(stored) < floor):
                raise StateLostError(f"{source}: STATELOST mark {stored} below {floor}")
            if offset > int(stored or "-1"):
                self.markers[key] = str(offset)

    async def ledger_loss(self, source: str, count: int) -> str | None:
        entries = sorted(self.hashes.get(self.keys.ledger(source), {}).items())[:count]
        field = entity_hash.offset_field(source)
        now_ms = int(time.time() * 1000)
        for entity, value in entries:
            held = self.hashes.get(self.keys.entity(entity), {}).get(field)
            state = {} if held is None else {field.encode(): str(held).encode()}
            problem = ledger.loss(entity, source, state, ledger.decode(value, now_ms))
            if problem is not None:
                return problem
        return None

    async def rollup_ledger(self, periods: Sequence[PeriodKey]) -> list[tuple[int, int | None]]:
        entries = self.hashes.get(self.keys.rollup_ledger(), {})
        now_ms = int(time.time() * 1000)
        return [
            (
                len(self.hashes.get(self.keys.rollup(*p), {})),
                ledger.decode(entries.get(self.keys.rollup(*p)), now_ms),
            )
            for p in periods
        ]

    async def vouch_rollups(self, counts: Mapping[PeriodKey, int]) -> None:
        now_ms = int(time.time() * 1000)
        entries = self.hashes.setdefault(self.keys.rollup_ledger(), {})
        entries.update({self.keys.rollup(*p): ledger.encode(n, now_ms) for p, n in counts.items()})

    async def rollup_ledger_loss(self, count: int) -> str | None:
        now_ms = int(time.time() * 1000)
        for name, value in sorted(self.hashes.get(self.keys.rollup_ledger(), {}).items())[:count]:
            held = len(self.hashes.get(name, {}))
            problem = ledger.rollup_loss(name, held, ledger.decode(value, now_ms))
            if problem is not None:
                return problem
        return None

    async def set_marks(self, marks: Mapping[str, int], epoch: str) -> None:
        for source, offset in marks.items():
            self.markers[self.keys.applied(source)] = str(offset)
        self.markers[self.keys.epoch()] = epoch

    async def checkpoint(self, sources: Sequence[str]) -> Checkpoint:
        self.round_trips += 1
        marks = {s: self.markers.get(self.keys.applied(s)) for s in sources}
        applied = {s: None if m is None else int(m) for s, m in marks.items()}
        rebuilding = self.keys.rebuilding() in self.markers
        return Checkpoint(self.markers.get(self.keys.epoch()), applied, rebuilding)

    async def begin_epoch(self, epoch: str) -> str:
        return self.markers.setdefault(self.keys.epoch(), epoch)

    def _index(self, write: IndexWrite) -> None:
        keys = self.keys
        if isinstance(write, DueAt):
            due = self.zsets.setdefault(keys.due(write.partition), {})
            if write.deadline_ms is None:
                due.pop(write.entity, None)
            else:
                due[write.entity] = write.deadline_ms
        elif isinstance(write, ReporterSent):
            self.sets.setdefault(keys.reporter_entities(write.reporter), set()).add(write.entity)
        elif isinstance(write, ActiveAlert):
            active = self.hashes.setdefault(keys.active_alerts(), {})
            if write.record_json is None:
                active.pop(write.alert_key, None)
            else:
                active[write.alert_key] = write.record_json

    def _commit_one(self, keys: list[str], args: list[str | int]) -> int:
        """What ``lua/commit_entity.lua`` does, argument for argument."""
        state, seen, seen_index, periods, periods_index = (
            self.hashes.setdefault(keys[0], {}),
            self.hashes.setdefault(keys[1], {}),
            self.zsets.setdefault(keys[2], {}),
            self.hashes.setdefault(keys[3], {}),
            self.zsets.setdefault(keys[4], {}),
        )
        offset_field, offset = str(args[0]), int(args[1])
        applied = state.get(offset_field)
        if applied is not None and int(applied) >= offset:
            return 0
        retention = str(args[3])
        d, p, s, q = (int(a) for a in args[4:8])
        i = 8
        for name in args[i : i + d]:
            state.pop(str(name), None)
        i += d
        state[offset_field] = str(offset)
        for j in range(p):
            state[str(args[i + 2 * j])] = str(args[i + 2 * j + 1])
        i += 2 * p
        for j in range(s):
            seen_key, value, hour = args[i + 3 * j : i + 3 * j + 3]
            seen[str(seen_key)] = str(value)
            seen_index[str(seen_key)] = float(hour)
        i += 3 * s
        for j in range(q):
            name, value, ends = (str(a) for a in args[i + 3 * j : i + 3 * j + 3])
            if value == "":
                periods.pop(name, None)
                periods_index.pop(name, None)
            else:
                periods[name] = value
                periods_index[name] = float(ends)
        if retention != "":
            start = int(retention)
            _forget(seen, seen_index, lambda score: score < math.floor(start / HOUR_MS))
            _forget(periods, periods_index, lambda score: score <= start)
        return 1

    async def due_entities(self, partition: int, now_ms: int) -> list[str]:
        due = self.zsets.get(self.keys.due(partition), {})
        return [entity for entity, score in sorted(due.items(), key=lambda kv: kv[1]) if score <= now_ms]

    async def apply_rollup(
        self,
        writes: Sequence[RollupWrite],
        periods: Sequence[PeriodKey],
        applied: Mapping[str, Mark] | None = None,
    ) -> RollupApplied:
        self.round_trips += 1
        refused: dict[int, BaseException] = {}
        written: list[bool] = []
        for position, w in enumerate(writes):
            written.append(False)
            if w.source in self.broken:
                refused[position] = self.broken[w.source]
                continue
            entries = self.hashes.setdefault(self.keys.rollup(*w.period), {})
            stored = entries.get(w.source)
            held = None if stored is None else entry_seq(stored)
            if held is not None and held >= w.seq:
                continue
            entries[w.source] = encode_entry(w.seq, w.aggregate)
            written[-1] = True
        self._mark(applied)
        reads: list[PeriodSources | BaseException] = []
        for period in periods:
            try:
                reads.append(PeriodSources.decode(_encoded(self.hashes.get(self.keys.rollup(*period), {}))))
            except Exception as exc:  # as the Redis layer: the caller charges its period
                reads.append(exc)
        return RollupApplied(refused, written, reads)

    def _rollup(self, indicator: str, target: str, series: str, label: str) -> dict[str, Agg]:
        key = self.keys.rollup(indicator, target, series, label)
        return decode_entries(_encoded(self.hashes.get(key, {})))

    # ------------------------------------------------------------------ the query API's reads

    async def entity_state(self, entity: str) -> EntityState | None:
        raw = self.hashes.get(self.keys.entity(entity))
        return entity_hash.decode_state(_encoded(raw)) if raw else None

    async def entity_states(self, entities: Sequence[str]) -> list[EntityState | None]:
        return [await self.entity_state(entity) for entity in entities]

    async def entity_periods(
        self, entity: str, wanted: Sequence[SeriesPeriod] | None = None
    ) -> dict[SeriesPeriod, Agg | None]:
        stored = self.hashes.get(self.keys.entity(entity, "periods"), {})
        if wanted is None:
            return {split_period_field(name): Agg.decode(value) for name, value in stored.items()}
        return {p: _agg(stored.get(period_field(*p))) for p in wanted}

    async def period_values(self, wanted: Sequence[tuple[str, SeriesPeriod]]) -> list[Agg | None]:
        return [
            _agg(self.hashes.get(self.keys.entity(entity, "periods"), {}).get(period_field(*period)))
            for entity, period in wanted
        ]

    async def rollup_sources(
        self, indicator: str, target: str, series: str, labels: Sequence[str]
    ) -> list[dict[str, Agg]]:
        return [self._rollup(indicator, target, series, label) for label in labels]

    async def active_alerts(self) -> list[dict[str, Any]]:
        return [json.loads(v) for v in self.hashes.get(self.keys.active_alerts(), {}).values()]

    async def reporter_entities(self, reporters: Sequence[str]) -> list[set[str]]:
        return [set(self.sets.get(self.keys.reporter_entities(code), set())) for code in reporters]

    async def briefing_published(self, day: date) -> bool:
        return self.keys.briefing(day) in self.markers

    async def mark_briefing(self, day: date, now_ms: int) -> None:
        self.markers[self.keys.briefing(day)] = str(now_ms)


def _forget(hash_: dict[str, str], index: dict[str, float], gone: Any) -> None:
    for name in [name for name, score in index.items() if gone(score)]:
        hash_.pop(name, None)
        del index[name]


def _encoded(raw: dict[str, str]) -> dict[bytes, bytes]:
    return {k.encode(): v.encode() for k, v in raw.items()}


def _bytes_or_none(value: str | None) -> bytes | None:
    return None if value is None else value.encode()


def _agg(value: str | None) -> Agg | None:
    return None if value is None else Agg.decode(value)
