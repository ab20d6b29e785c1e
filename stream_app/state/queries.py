"""The query API's reads on Redis (decoded entity states, period aggregates, roll-up sources, the
open alerts, reporters' entities) and the briefing's marker. No retry: a request fails fast."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from typing import Any

from stream_app.domain.aggregates import Agg
from stream_app.domain.entity import EntityState, SeriesPeriod
from stream_app.domain.model import period_field, split_period_field
from stream_app.domain.rollup import decode_entries
from stream_app.state import entity_hash
from stream_app.state.redis_base import RedisBase, _bytes, _text

# Every key of an entity lives as long as the retention inside it (this and the previous reporting
# year of its newest value) after the last write, so idle entities age out.
BRIEFING_MARKER_TTL_S = 8 * 24 * 3600


class StateQueries(RedisBase):
    """The query API's reads and the briefing's marker."""

    async def entity_state(self, entity: str) -> EntityState | None:
        raw = await self._client.hgetall(self.keys.entity(entity))
        return entity_hash.decode_state({_bytes(k): _bytes(v) for k, v in raw.items()}) if raw else None

    async def entity_states(self, entities: Sequence[str]) -> list[EntityState | None]:
        async with self._client.pipeline(transaction=False) as pipe:
            for entity in entities:
                pipe.hgetall(self.keys.entity(entity))
            replies = await pipe.execute()
        return [
            entity_hash.decode_state({_bytes(k): _bytes(v) for k, v in raw.items()}) if raw else None
            for raw in replies
        ]

    async def entity_periods(
        self, entity: str, wanted: Sequence[SeriesPeriod] | None = None
    ) -> dict[SeriesPeriod, Agg | None]:
        key = self.keys.entity(entity, "periods")
        if wanted is None:
            raw = await self._client.hgetall(key)
            return {split_period_field(_text(k)): Agg.decode(_text(v)) for k, v in raw.items()}
        values = await self._client.hmget(key, [period_field(*p) for p in wanted])
        return {p: _agg(v) for p, v in zip(wanted, values, strict=True)}

    async def period_values(self, wanted: Sequence[tuple[str, SeriesPeriod]]) -> list[Agg | None]:
        async with self._client.pipeline(transaction=False) as pipe:
            for entity, period in wanted:
                pipe.hget(self.keys.entity(entity, "periods"), period_field(*period))
            replies = await pipe.execute()
        return [_agg(raw) for raw in replies]

    async def rollup_sources(
        self, indicator: str, target: str, series: str, labels: Sequence[str]
    ) -> list[dict[str, Agg]]:
        async with self._client.pipeline(transaction=False) as pipe:
            for label in labels:
                pipe.hgetall(self.keys.rollup(indicator, target, series, label))
            replies = await pipe.execute()
        return [decode_entries(raw) for raw in replies]

    async def active_alerts(self) -> list[dict[str, Any]]:
        raw = await self._client.hgetall(self.keys.active_alerts())
        return [json.loads(v) for v in raw.values()]

    async def reporter_entities(self, reporters: Sequence[str]) -> list[set[str]]:
        async with self._client.pipeline(transaction=False) as pipe:
            for code in reporters:
                pipe.smembers(self.keys.reporter_entities(code))
            replies = await pipe.execute()
        return [{_text(m) for m in members} for members in replies]

    async def briefing_published(self, day: date) -> bool:
        return bool(await self._client.exists(self.keys.briefing(day)))

    async def mark_briefing(self, day: date, now_ms: int) -> None:
        await self._client.set(self.keys.briefing(day), str(now_ms), ex=BRIEFING_MARKER_TTL_S)


def _agg(raw: Any) -> Agg | None:
    return None if raw is None else Agg.decode(_text(raw))
