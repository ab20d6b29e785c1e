"""The stateful step for one entity (indicator at a region or station): pure, no I/O.

Given the entity's state as read from Redis and one observation, compute the new state and the
records to publish. The agent reads states for a whole batch, applies observations in order, publishes,
then commits the states with their applied offsets (atomically, see ``lua/commit_entity.lua``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stream_app.aggregates import Bucket, expired, hour_of, rolling
from stream_app.catalogue import Catalogue, Level
from stream_app.model import Observation
from stream_app.rules import Transition, alert_id, level_of, transition

WINDOW_NAME = "rolling-24h"
_BUCKET_PREFIX = "b:"
_OFFSET_PREFIX = "off:"


@dataclass(slots=True)
class EntityState:
    """What Redis holds for one entity, decoded. Mutable within one batch."""

    level: int = 0
    latest_value: float = 0.0
    latest_event_time: int = -1
    offsets: dict[str, int] = field(default_factory=dict)
    buckets: dict[int, Bucket] = field(default_factory=dict)
    removed_hours: set[int] = field(default_factory=set)

    @staticmethod
    def from_hash(fields: dict[bytes, bytes]) -> EntityState:
        """Decode an entity's Redis hash (empty hash: a new entity)."""
        state = EntityState()
        for raw_name, raw_value in fields.items():
            name, value = raw_name.decode(), raw_value.decode()
            if name.startswith(_BUCKET_PREFIX):
                state.buckets[int(name[len(_BUCKET_PREFIX) :])] = Bucket.decode(value)
            elif name.startswith(_OFFSET_PREFIX):
                state.offsets[name[len(_OFFSET_PREFIX) :]] = int(value)
            elif name == "level":
                state.level = int(value)
            elif name == "latest_value":
                state.latest_value = float(value)
            elif name == "latest_event_time":
                state.latest_event_time = int(value)
        return state

    def to_fields(self) -> dict[str, str]:
        """The hash fields to write (offsets are written by the commit script itself)."""
        fields = {
            "level": str(self.level),
            "latest_value": repr(self.latest_value),
            "latest_event_time": str(self.latest_event_time),
        }
        for hour, bucket in self.buckets.items():
            fields[f"{_BUCKET_PREFIX}{hour}"] = bucket.encode()
        return fields

    def removed_fields(self) -> list[str]:
        """Bucket fields that fell out of retention in this batch."""
        return [f"{_BUCKET_PREFIX}{hour}" for hour in sorted(self.removed_hours)]

    @staticmethod
    def offset_field(source: str) -> str:
        return f"{_OFFSET_PREFIX}{source}"


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one observation did: skipped (already applied), or the records to publish."""

    skipped: bool
    alert: dict[str, Any] | None = None
    consolidated: dict[str, Any] | None = None


def apply(
    state: EntityState,
    obs: Observation,
    *,
    source: str,
    offset: int,
    catalogue: Catalogue,
    now_ms: int,
) -> StepResult:
    """Apply ``obs`` (read at ``offset`` of ``source``) to ``state`` in place.

    An observation at or below the offset already applied for ``source`` is skipped: Redis already
    holds its effects (a redelivery after a crash or rebalance).
    """
    applied = state.offsets.get(source)
    if applied is not None and offset <= applied:
        return StepResult(skipped=True)
    state.offsets[source] = offset

    hour = hour_of(obs.event_time)
    previous = state.buckets.get(hour)
    state.buckets[hour] = previous.add(obs.value) if previous else Bucket.of(obs.value)
    newest_hour = hour_of(max(obs.event_time, state.latest_event_time))
    for old in expired(state.buckets, newest_hour):
        del state.buckets[old]
        state.removed_hours.add(old)

    indicator = catalogue.indicators[obs.indicator]
    levels = catalogue.levels_for(indicator, obs.station)
    alert = None
    if obs.event_time >= state.latest_event_time:
        state.latest_value, state.latest_event_time = obs.value, obs.event_time
        new_level = level_of(obs.value, levels)
        change = transition(state.level, new_level, indicator.alert_from_level)
        if change is not None:
            alert = alert_record(
                obs, change, previous=state.level, current=new_level, levels=levels, now_ms=now_ms
            )
        state.level = new_level

    window = rolling(state.buckets, newest_hour)
    level_code = levels[state.level].code if levels else "NONE"
    consolidated = {
        "key": f"{obs.indicator}:{obs.region}:{obs.station or '-'}:{WINDOW_NAME}",
        "indicator": obs.indicator,
        "reporter": obs.reporter,
        "region": obs.region,
        "station": obs.station,
        "window": WINDOW_NAME,
        "latest_value": state.latest_value,
        "latest_event_time": state.latest_event_time,
        "count": window.count,
        "sum": window.total,
        "mean": window.mean,
        "min": window.low,
        "max": window.high,
        "alert_level": state.level,
        "alert_level_code": level_code,
        "quality": obs.quality.value,
        "revision": obs.revision,
        "processing_time": now_ms,
    }
    return StepResult(skipped=False, alert=alert, consolidated=consolidated)


def alert_record(
    obs: Observation,
    change: Transition,
    *,
    previous: int,
    current: int,
    levels: tuple[Level, ...],
    now_ms: int,
) -> dict[str, Any]:
    """The Avro alert record of one transition."""
    rule = f"levels:{obs.indicator}"
    key = f"{rule}|{obs.region}|{obs.station or '-'}"
    shown = levels[current]
    # A resolved alert reports the threshold it fell below; others the threshold they crossed.
    threshold = levels[previous].lower if change is Transition.RESOLVED else shown.lower
    return {
        "alert_id": alert_id(key, change, obs.observation_id, obs.revision),
        "alert_key": key,
        "rule": rule,
        "transition": change.value,
        "indicator": obs.indicator,
        "reporter": obs.reporter,
        "region": obs.region,
        "station": obs.station,
        "value": obs.value,
        "threshold": threshold,
        "level": current,
        "previous_level": previous,
        "level_code": shown.code,
        "level_name_vi": shown.name_vi,
        "level_name_en": shown.name_en,
        "colour": shown.colour,
        "observation_id": obs.observation_id,
        "event_time": obs.event_time,
        "processing_time": now_ms,
    }
