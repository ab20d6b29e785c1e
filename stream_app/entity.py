"""The stateful step for one entity (indicator at a region or station): pure, no I/O.

Given the entity's state as read from Redis and one observation, compute the new state and the
records to publish. The agent reads states for a whole batch, applies observations in order, publishes,
then commits the states with their applied offsets (atomically, see ``lua/commit_entity.lua``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stream_app.aggregates import RETENTION_HOURS, Bucket, expired, hour_of, rolling
from stream_app.catalogue import Catalogue, Level
from stream_app.model import Observation
from stream_app.rules import Transition, alert_id, level_of, transition

WINDOW_NAME = "rolling-24h"
_BUCKET_PREFIX = "b:"
_OFFSET_PREFIX = "off:"
_SEEN_PREFIX = "seen:"


@dataclass(slots=True)
class EntityState:
    """What Redis holds for one entity, decoded. Mutable within one batch."""

    level: int = 0
    latest_value: float = 0.0
    latest_event_time: int = -1
    offsets: dict[str, int] = field(default_factory=dict)
    buckets: dict[int, Bucket] = field(default_factory=dict)
    # observation id -> (revision, hour): recognises a record the intake published twice
    seen: dict[str, tuple[int, int]] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)

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
            elif name.startswith(_SEEN_PREFIX):
                revision, hour = value.split(",")
                state.seen[name[len(_SEEN_PREFIX) :]] = (int(revision), int(hour))
            elif name == "level":
                state.level = int(value)
            elif name == "latest_value":
                state.latest_value = float(value)
            elif name == "latest_event_time":
                state.latest_event_time = int(value)
        return state

    def to_fields(self) -> dict[str, str]:
        """The hash fields changed since the state was read (offsets are written by the commit script)."""
        fields = {
            "level": str(self.level),
            "latest_value": repr(self.latest_value),
            "latest_event_time": str(self.latest_event_time),
        }
        for name in self.changed:
            if name.startswith(_BUCKET_PREFIX):
                fields[name] = self.buckets[int(name[len(_BUCKET_PREFIX) :])].encode()
            else:
                revision, hour = self.seen[name[len(_SEEN_PREFIX) :]]
                fields[name] = f"{revision},{hour}"
        return fields

    def removed_fields(self) -> list[str]:
        """Fields that fell out of retention since the state was read."""
        return sorted(self.removed)

    def put_bucket(self, hour: int, bucket: Bucket) -> None:
        """Store an hour's bucket and mark it for writing."""
        self.buckets[hour] = bucket
        self.changed.add(f"{_BUCKET_PREFIX}{hour}")

    def put_seen(self, observation_id: str, revision: int, hour: int) -> None:
        """Remember that ``observation_id`` at ``revision`` was applied."""
        self.seen[observation_id] = (revision, hour)
        self.changed.add(f"{_SEEN_PREFIX}{observation_id}")

    def expire(self, newest_hour: int) -> None:
        """Drop buckets and remembered observation ids older than the retention."""
        for hour in expired(self.buckets, newest_hour):
            del self.buckets[hour]
            self._forget(f"{_BUCKET_PREFIX}{hour}")
        horizon = newest_hour - RETENTION_HOURS
        for observation_id in [o for o, (_, hour) in self.seen.items() if hour <= horizon]:
            del self.seen[observation_id]
            self._forget(f"{_SEEN_PREFIX}{observation_id}")

    def _forget(self, name: str) -> None:
        self.changed.discard(name)
        self.removed.add(name)

    @staticmethod
    def offset_field(source: str) -> str:
        return f"{_OFFSET_PREFIX}{source}"


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one observation did: skipped (already applied), or the records to publish."""

    skipped: bool
    duplicate: bool = False
    stale: bool = False
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

    Skipped, with no effect:
    - an offset at or below the one already applied for ``source``: Redis already holds its effects
      (a redelivery after a crash or rebalance);
    - an observation id already applied at this revision: the same record published twice upstream
      (the intake is at-least-once) — ``duplicate``;
    - an observation id already applied at a later revision: a correction arrived before this older
      version — ``stale``, for the reporter's dead-letter topic.
    Corrections (a higher revision) are applied as new values here; retracting the old value is
    the aggregates' job (issue 5).
    """
    applied = state.offsets.get(source)
    if applied is not None and offset <= applied:
        return StepResult(skipped=True)
    state.offsets[source] = offset
    hour = hour_of(obs.event_time)
    known = state.seen.get(obs.observation_id)
    if known is not None and known[0] > obs.revision:
        return StepResult(skipped=True, stale=True)
    if known is not None and known[0] == obs.revision:
        return StepResult(skipped=True, duplicate=True)
    state.put_seen(obs.observation_id, obs.revision, hour)

    previous = state.buckets.get(hour)
    state.put_bucket(hour, previous.add(obs.value) if previous else Bucket.of(obs.value))
    newest_hour = hour_of(max(obs.event_time, state.latest_event_time))
    state.expire(newest_hour)

    indicator = catalogue.indicators[obs.indicator]
    levels = catalogue.levels_for(indicator, obs.station)
    alert = None
    if obs.event_time >= state.latest_event_time:
        state.latest_value, state.latest_event_time = obs.value, obs.event_time
        new_level = level_of(obs.value, levels)
        change = transition(state.level, new_level, indicator.alert_from_level)
        if change is not None:
            alert = alert_record(
                obs,
                change,
                previous=state.level,
                current=new_level,
                levels=levels,
                alert_from=indicator.alert_from_level,
                now_ms=now_ms,
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
    alert_from: int,
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
