"""The alert records an entity publishes: one per change of an alert, with what the center did so far."""

from __future__ import annotations

from stream_app.domain.alerting import Rule, Verdict
from stream_app.domain.alerting.transitions import Transition
from stream_app.domain.entity.identity import EntityKey, alert_id, alert_key
from stream_app.domain.entity.state import EntityState
from stream_app.domain.entity.step import Context
from stream_app.domain.records import AlertRecord


def alert_record(
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
) -> AlertRecord:
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
    opens = event_type == "TRANSITION" and verdict.transition is Transition.FIRING
    meta.record_change(new_id, opens=opens, at_ms=ctx.now_ms)
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
