"""The stateful step for one entity (indicator at a region or station): pure, no I/O.

Given the entity's state as read from Redis and one input record of its partition — an observation,
a clock tick, or a directive from the center — compute the new state and the records to publish. The
agent reads the states of a whole batch, applies records in order, publishes, then commits the states
with their applied offsets atomically (``lua/commit_entity.lua``).

Alert rules are data (``catalogue/rules.toml``, :mod:`stream_app.alerting`); each rule keeps its
own state per entity (``r:<rule id>:<field>``), and what the center did about the alert
(``m:<rule id>:<field>``: acknowledged by, assigned to, ...), in the entity's hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from stream_app.aggregates import Bucket, expired, hour_of, rolling
from stream_app.alerting import BucketHistory, Rule, RuleBook, RuleState, Verdict, on_observation, on_tick
from stream_app.calendar import local_date
from stream_app.catalogue import Catalogue
from stream_app.model import Observation
from stream_app.rules import Transition

WINDOW_NAME = "rolling-24h"
DAILY_RETENTION_DAYS = 32  # the deviation rules' 30-day baselines, and a little slack
# Observation ids are remembered as long as anything they counted in (the daily totals) is kept.
# They live in their own hash, read per batch only for the ids in the batch, so the state hash that
# every batch reads stays small however many observations an entity receives.
SEEN_RETENTION_HOURS = DAILY_RETENTION_DAYS * 24
_BUCKET_PREFIX = "b:"
_DAY_PREFIX = "d:"
_OFFSET_PREFIX = "off:"
_RULE_PREFIX = "r:"
_META_PREFIX = "m:"
_SCALARS = ("latest_value", "latest_event_time", "last_seen", "reporter", "latest_period")


@dataclass(slots=True)
class AlertMeta:
    """What is known about one rule's alert beyond its level: its last change and the center's actions."""

    transition: str = ""
    alert_id: str = ""
    acknowledged_by: str = ""
    acknowledged_at: int = 0
    assigned_to: str = ""
    comment: str = ""
    directive_id: str = ""

    def to_fields(self) -> dict[str, str]:
        return {
            "t": self.transition,
            "id": self.alert_id,
            "ab": self.acknowledged_by,
            "aa": str(self.acknowledged_at),
            "as": self.assigned_to,
            "c": self.comment,
            "d": self.directive_id,
        }

    @staticmethod
    def from_fields(fields: dict[str, str]) -> AlertMeta:
        return AlertMeta(
            transition=fields.get("t", ""),
            alert_id=fields.get("id", ""),
            acknowledged_by=fields.get("ab", ""),
            acknowledged_at=int(fields.get("aa") or 0),
            assigned_to=fields.get("as", ""),
            comment=fields.get("c", ""),
            directive_id=fields.get("d", ""),
        )


@dataclass(slots=True)
class EntityState:
    """What Redis holds for one entity, decoded. Mutable within one batch."""

    latest_value: float = 0.0
    latest_event_time: int = -1
    last_seen: int = -1  # processing time of the latest observation: absence rules count from it
    reporter: str = ""
    latest_period: str = ""
    offsets: dict[str, int] = field(default_factory=dict)
    buckets: dict[int, Bucket] = field(default_factory=dict)
    daily: dict[int, float] = field(default_factory=dict)  # local day ordinal -> the day's sum
    # observation id -> (revision, hour), for the ids of the current batch only (read from the
    # entity's seen-hash): recognises a record the intake published twice
    seen: dict[str, tuple[int, int]] = field(default_factory=dict)
    new_seen: set[str] = field(default_factory=set)
    seen_horizon_hour: int | None = None  # ids of hours up to this one are forgotten at commit
    rules: dict[str, RuleState] = field(default_factory=dict)
    meta: dict[str, AlertMeta] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)

    @property
    def known(self) -> bool:
        """Whether this entity has ever reported (timer rules watch only known feeds)."""
        return self.latest_event_time >= 0

    @staticmethod
    def from_hash(raw: dict[bytes, bytes]) -> EntityState:
        """Decode an entity's Redis hash (empty hash: a new entity)."""
        state = EntityState()
        grouped: dict[str, dict[str, dict[str, str]]] = {_RULE_PREFIX: {}, _META_PREFIX: {}}
        for raw_name, raw_value in raw.items():
            name, value = raw_name.decode(), raw_value.decode()
            prefix, _, rest = name.partition(":")
            prefix += ":"
            if prefix == _BUCKET_PREFIX:
                state.buckets[int(rest)] = Bucket.decode(value)
            elif prefix == _DAY_PREFIX:
                state.daily[int(rest)] = float(value)
            elif prefix == _OFFSET_PREFIX:
                state.offsets[rest] = int(value)
            elif prefix in grouped:
                rule_id, _, key = rest.rpartition(":")
                grouped[prefix].setdefault(rule_id, {})[key] = value
            elif name in ("latest_event_time", "last_seen"):
                setattr(state, name, int(value))
            elif name == "latest_value":
                state.latest_value = float(value)
            elif name in ("reporter", "latest_period"):
                setattr(state, name, value)
        state.rules = {rid: RuleState.from_fields(f) for rid, f in grouped[_RULE_PREFIX].items()}
        state.meta = {rid: AlertMeta.from_fields(f) for rid, f in grouped[_META_PREFIX].items()}
        return state

    def to_fields(self) -> dict[str, str]:
        """The hash fields changed since the state was read (offsets are written by the commit script)."""
        fields = {
            "latest_value": repr(self.latest_value),
            "latest_event_time": str(self.latest_event_time),
            "last_seen": str(self.last_seen),
            "reporter": self.reporter,
            "latest_period": self.latest_period,
        }
        for name in self.changed:
            prefix, _, rest = name.partition(":")
            prefix += ":"
            if prefix == _BUCKET_PREFIX:
                fields[name] = self.buckets[int(rest)].encode()
            elif prefix == _DAY_PREFIX:
                fields[name] = repr(self.daily[int(rest)])
            elif prefix == _RULE_PREFIX:
                for key, value in self.rules[rest].to_fields().items():
                    fields[f"{_RULE_PREFIX}{rest}:{key}"] = value
            elif prefix == _META_PREFIX:
                for key, value in self.meta[rest].to_fields().items():
                    fields[f"{_META_PREFIX}{rest}:{key}"] = value
        return fields

    def removed_fields(self) -> list[str]:
        """Fields that fell out of retention since the state was read."""
        return sorted(self.removed)

    def rule_state(self, rule_id: str) -> RuleState:
        """The state of one rule (a new rule starts clear); marked for writing."""
        state = self.rules.get(rule_id)
        if state is None:
            state = self.rules[rule_id] = RuleState()
        self.changed.add(f"{_RULE_PREFIX}{rule_id}")
        return state

    def alert_meta(self, rule_id: str) -> AlertMeta:
        """What is known about one rule's alert; marked for writing."""
        meta = self.meta.get(rule_id)
        if meta is None:
            meta = self.meta[rule_id] = AlertMeta()
        self.changed.add(f"{_META_PREFIX}{rule_id}")
        return meta

    def add_value(self, value: float, event_time: int) -> None:
        """Count ``value`` in its hour's bucket and its local day's total."""
        hour = hour_of(event_time)
        previous = self.buckets.get(hour)
        self.buckets[hour] = previous.add(value) if previous else Bucket.of(value)
        self.changed.add(f"{_BUCKET_PREFIX}{hour}")
        day = local_date(event_time).toordinal()
        self.daily[day] = self.daily.get(day, 0.0) + value
        self.changed.add(f"{_DAY_PREFIX}{day}")

    def put_seen(self, observation_id: str, revision: int, hour: int) -> None:
        """Remember that ``observation_id`` at ``revision`` was applied."""
        self.seen[observation_id] = (revision, hour)
        self.new_seen.add(observation_id)

    def seen_updates(self) -> list[tuple[str, str, int]]:
        """(observation id, "revision,hour", hour) of the ids applied since the state was read."""
        return [(o, f"{self.seen[o][0]},{self.seen[o][1]}", self.seen[o][1]) for o in sorted(self.new_seen)]

    @staticmethod
    def decode_seen(value: bytes | None) -> tuple[int, int] | None:
        """A seen-hash value, or None for an id never applied."""
        if value is None:
            return None
        revision, hour = value.decode().split(",")
        return int(revision), int(hour)

    def expire(self, newest_hour: int) -> None:
        """Drop buckets and daily totals older than their retention; mark older observation ids for
        the commit to forget."""
        for hour in expired(self.buckets, newest_hour):
            del self.buckets[hour]
            self._forget(f"{_BUCKET_PREFIX}{hour}")
        horizon = newest_hour - SEEN_RETENTION_HOURS
        self.seen_horizon_hour = max(horizon, self.seen_horizon_hour or horizon)
        oldest_day = local_date(newest_hour * 3_600_000).toordinal() - DAILY_RETENTION_DAYS
        for day in [d for d in self.daily if d < oldest_day]:
            del self.daily[day]
            self._forget(f"{_DAY_PREFIX}{day}")

    def history(self) -> BucketHistory:
        """What the rules may ask of this entity's past."""
        return BucketHistory(self.buckets, {date.fromordinal(d): v for d, v in self.daily.items()})

    def _forget(self, name: str) -> None:
        self.changed.discard(name)
        self.removed.add(name)

    @staticmethod
    def offset_field(source: str) -> str:
        return f"{_OFFSET_PREFIX}{source}"


@dataclass(frozen=True, slots=True)
class EntityKey:
    """An entity's parts, as in its key ``indicator|region|station-or-dash``."""

    indicator: str
    region: str
    station: str | None

    @staticmethod
    def parse(entity: str) -> EntityKey:
        indicator, region, station = entity.split("|")
        return EntityKey(indicator, region, None if station == "-" else station)

    def __str__(self) -> str:
        return f"{self.indicator}|{self.region}|{self.station or '-'}"


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one record did: skipped (already applied), or the records to publish."""

    skipped: bool
    duplicate: bool = False
    stale: bool = False
    alerts: tuple[dict[str, Any], ...] = ()
    consolidated: dict[str, Any] | None = None

    @property
    def alert(self) -> dict[str, Any] | None:
        """The first alert (most observations cause at most one)."""
        return self.alerts[0] if self.alerts else None


@dataclass(frozen=True, slots=True)
class Context:
    """What every step needs besides the state and the record."""

    catalogue: Catalogue
    rulebook: RuleBook
    now_ms: int


def already_applied(state: EntityState, source: str, offset: int) -> bool:
    """Whether the record at ``offset`` of ``source`` is already in ``state`` (a redelivery).

    Otherwise the offset is recorded: it is part of what the commit will write.
    """
    applied = state.offsets.get(source)
    if applied is not None and offset <= applied:
        return True
    state.offsets[source] = offset
    return False


def apply(
    state: EntityState,
    obs: Observation,
    *,
    source: str,
    offset: int,
    ctx: Context,
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
    if already_applied(state, source, offset):
        return StepResult(skipped=True)
    hour = hour_of(obs.event_time)
    known = state.seen.get(obs.observation_id)
    if known is not None and known[0] > obs.revision:
        return StepResult(skipped=True, stale=True)
    if known is not None and known[0] == obs.revision:
        return StepResult(skipped=True, duplicate=True)
    state.put_seen(obs.observation_id, obs.revision, hour)

    state.add_value(obs.value, obs.event_time)
    state.expire(hour_of(max(obs.event_time, state.latest_event_time)))
    if obs.event_time >= state.latest_event_time:
        state.latest_value, state.latest_event_time = obs.value, obs.event_time
    state.last_seen = max(state.last_seen, ctx.now_ms)
    state.reporter = obs.reporter
    if obs.period and obs.period > state.latest_period:
        state.latest_period = obs.period

    history = state.history()
    alerts = []
    for rule in ctx.rulebook.rules_for(obs.indicator, obs.region, obs.station):
        verdict = on_observation(
            rule,
            state.rule_state(rule.rule_id),
            value=obs.value,
            event_time_ms=obs.event_time,
            history=history,
            now_ms=ctx.now_ms,
        )
        if verdict.transition is not None:
            cause = f"{obs.observation_id}#{obs.revision}"
            alerts.append(
                _alert(
                    state,
                    rule,
                    verdict,
                    EntityKey(obs.indicator, obs.region, obs.station),
                    cause=cause,
                    ctx=ctx,
                    observation_id=obs.observation_id,
                    event_time=obs.event_time,
                )
            )
    return StepResult(skipped=False, alerts=tuple(alerts), consolidated=consolidated_record(state, obs, ctx))


def tick(state: EntityState, entity: EntityKey, *, source: str, offset: int, ctx: Context) -> StepResult:
    """Evaluate the timer rules (absence, late report) of ``entity`` at the tick's time ``ctx.now_ms``.

    Only feeds that have reported at least once are watched: a feed never connected is the
    compliance view's business (the article's "40/78 connected"), not an alert storm at first start.
    """
    if not state.known or already_applied(state, source, offset):
        return StepResult(skipped=True)
    indicator = ctx.catalogue.indicators[entity.indicator]
    alerts = []
    for rule in ctx.rulebook.timer_rules_for(entity.indicator, entity.region, entity.station):
        verdict = on_tick(
            rule,
            state.rule_state(rule.rule_id),
            last_seen_ms=state.last_seen if state.last_seen >= 0 else None,
            latest_period=state.latest_period or None,
            now_ms=ctx.now_ms,
            indicator=indicator,
        )
        if verdict.transition is not None:
            alerts.append(
                _alert(
                    state, rule, verdict, entity, cause=f"tick@{ctx.now_ms}", ctx=ctx, event_time=ctx.now_ms
                )
            )
    return StepResult(skipped=False, alerts=tuple(alerts))


class DirectiveRefusedError(ValueError):
    """A directive that cannot be applied; ``reason`` is its dead-letter reason code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def direct(
    state: EntityState,
    entity: EntityKey,
    directive: dict[str, Any],
    *,
    source: str,
    offset: int,
    ctx: Context,
) -> StepResult:
    """Apply a directive of the center to the alert it names: record who acknowledged, was assigned,
    commented; publish the change. Raises :class:`DirectiveRefusedError` for an alert that is not open."""
    if already_applied(state, source, offset):
        return StepResult(skipped=True)
    rule_id = directive["alert_key"].split("|", 1)[0]
    rules = {r.rule_id: r for r in ctx.rulebook.rules_for(entity.indicator, entity.region, entity.station)}
    rule, rule_state, known = rules.get(rule_id), state.rules.get(rule_id), state.meta.get(rule_id)
    if rule is None or rule_state is None or known is None or not known.transition:
        raise DirectiveRefusedError("unknown_alert", f"no alert {directive['alert_key']!r} ever fired")
    action = directive["action"]
    if rule_state.level < rule.alert_from and action != "COMMENT":
        raise DirectiveRefusedError(
            "alert_not_open", f"alert {directive['alert_key']!r} is not open; cannot {action}"
        )
    meta = state.alert_meta(rule_id)
    issued = _millis(directive["issued_at"])
    if action in ("ACKNOWLEDGE", "ASSIGN", "ESCALATE", "CLOSE") and not meta.acknowledged_by:
        meta.acknowledged_by, meta.acknowledged_at = directive["actor"], issued
    if directive.get("assignee"):
        meta.assigned_to = directive["assignee"]
    if directive.get("comment"):
        meta.comment = directive["comment"]
    meta.directive_id = directive["directive_id"]
    level = rule_state.level
    verdict = Verdict(
        transition=Transition(meta.transition) if meta.transition else Transition.FIRING,
        level=level,
        previous_level=level,
        value=rule_state.value,
        threshold=rule.levels[level].lower if rule.levels else None,
        detail=f"{action.lower()} by {directive['actor']}",
    )
    alert = _alert(
        state,
        rule,
        verdict,
        entity,
        cause=f"directive:{directive['directive_id']}",
        ctx=ctx,
        event_time=issued,
        event_type=action,
    )
    return StepResult(skipped=False, alerts=(alert,))


def alert_key(rule_id: str, entity: EntityKey) -> str:
    """One alert lifecycle: a rule at an entity."""
    return f"{rule_id}|{entity}"


def alert_id(key: str, change: str, cause: str) -> str:
    """Deterministic alert id: reprocessing the same input yields the same id, never a new one."""
    return "alr-" + hashlib.blake2b(f"{key}|{change}|{cause}".encode(), digest_size=12).hexdigest()


def _alert(
    state: EntityState,
    rule: Rule,
    verdict: Verdict,
    entity: EntityKey,
    *,
    cause: str,
    ctx: Context,
    event_time: int,
    observation_id: str = "",
    event_type: str = "TRANSITION",
) -> dict[str, Any]:
    """The Avro alert record of one change, with what the center did about it so far."""
    key = alert_key(rule.rule_id, entity)
    assert verdict.transition is not None  # noqa: S101 - callers publish transitions only
    change = verdict.transition.value if event_type == "TRANSITION" else event_type
    meta = state.alert_meta(rule.rule_id)
    new_id = alert_id(key, change, cause)
    if event_type == "TRANSITION":
        meta.transition, meta.alert_id = verdict.transition.value, new_id
        if verdict.transition is Transition.RESOLVED:
            meta.acknowledged_by, meta.acknowledged_at, meta.assigned_to, meta.comment = "", 0, "", ""
    shown = rule.levels[verdict.level] if rule.levels else None
    return {
        # Every change has its own id (a directive's too): consumers deduplicate by it safely.
        "alert_id": new_id,
        "alert_key": key,
        "rule": rule.rule_id,
        "rule_kind": rule.kind,
        "domain": rule.domain,
        "event_type": event_type,
        "transition": verdict.transition.value,
        "indicator": entity.indicator,
        "reporter": state.reporter,
        "region": entity.region,
        "station": entity.station,
        "value": verdict.value if verdict.value is not None else state.latest_value,
        "threshold": verdict.threshold,
        "level": verdict.level,
        "previous_level": verdict.previous_level,
        "level_code": shown.code if shown else str(verdict.level),
        "level_name_vi": shown.name_vi if shown else "",
        "level_name_en": shown.name_en if shown else "",
        "colour": shown.colour if shown else "#808080",
        "observation_id": observation_id,
        "cause_observation_ids": [observation_id] if observation_id else [],
        "detail": verdict.detail,
        "acknowledged_by": meta.acknowledged_by or None,
        "acknowledged_at": meta.acknowledged_at or None,
        "assigned_to": meta.assigned_to or None,
        "comment": meta.comment or None,
        "directive_id": (meta.directive_id or None) if event_type != "TRANSITION" else None,
        "event_time": event_time,
        "processing_time": ctx.now_ms,
    }


def consolidated_record(state: EntityState, obs: Observation, ctx: Context) -> dict[str, Any]:
    """The consolidated view of the entity after ``obs``: latest value, rolling 24 h, alert level."""
    window = rolling(state.buckets, hour_of(state.latest_event_time))
    levels_rule = next(
        (r for r in ctx.rulebook.rules_for(obs.indicator, obs.region, obs.station) if r.kind == "levels"),
        None,
    )
    level, level_code = 0, "NONE"
    if levels_rule is not None:
        rule_state = state.rules.get(levels_rule.rule_id)
        level = rule_state.level if rule_state else 0
        level_code = levels_rule.levels[level].code if levels_rule.levels else str(level)
    return {
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
        "alert_level": level,
        "alert_level_code": level_code,
        "quality": obs.quality.value,
        "revision": obs.revision,
        "processing_time": ctx.now_ms,
    }


def _millis(value: Any) -> int:
    if hasattr(value, "timestamp"):
        return int(value.timestamp() * 1000)
    return int(value)
