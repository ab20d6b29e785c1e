"""The two entry points of the alert engine: an observation arrived, or a timer ticked.

Both are deterministic functions of (rule, state, inputs): they update ``state`` in place and say
what changed. The caller stores the state with the input offset it includes, so after a crash the
same inputs replay to the same transitions — never a second FIRING, never a lost RESOLVED.

How the caller uses them, per entity:

- for each rule of ``RuleBook.rules_for(indicator, region, station)``, every observation goes to
  ``on_observation`` (timer rules resolve there when data arrives);
- on each timer tick, for each entity it watches (``RuleBook.timer_entities()``), each rule of
  ``RuleBook.timer_rules_for(...)`` goes to ``on_tick``;
- a verdict whose ``transition`` is not None is an alert to publish.
"""

from __future__ import annotations

from stream_app.domain.alerting import levels, signals, timers
from stream_app.domain.alerting.model import (
    AbsenceParams,
    DeviationParams,
    History,
    LateReportParams,
    LevelsParams,
    RateParams,
    Rule,
    RuleState,
    Verdict,
)
from stream_app.domain.alerting.verdicts import unchanged
from stream_app.domain.catalogue import Indicator


def on_observation(
    rule: Rule,
    state: RuleState,
    *,
    value: float,
    event_time_ms: int,
    history: History,
    now_ms: int,
    alive: bool = True,
) -> Verdict:
    """Apply one observation of the rule's entity to ``state``.

    ``levels``, ``rate_of_change``, ``deviation``: evaluated on the value, at its event time; an
    observation older than the latest one applied is ignored (it cannot move the level back in
    time). ``absence``: data arrived, a silence alert resolves — when the observation says the feed
    is alive now (``alive``; history, or a figure older than the feed's newest, does not). ``late_report``:
    the observation's period is remembered, an overdue alert resolves once that period (or a later
    one) arrives.
    """
    params = rule.params
    if isinstance(params, LevelsParams):
        return levels.observe(rule, params, state, value, event_time_ms)
    if isinstance(params, RateParams):
        return signals.change_over_window(
            rule, params, state, value=value, event_time_ms=event_time_ms, history=history
        )
    if isinstance(params, DeviationParams):
        return signals.day_against_baseline(
            rule, params, state, value=value, event_time_ms=event_time_ms, history=history
        )
    if isinstance(params, AbsenceParams):
        if not alive:
            return unchanged(state, value, f"{rule.indicator}: history or an older figure, no sign of life")
        return timers.data_arrived(rule, state, value, now_ms)
    return timers.report_arrived(rule, params, state, value=value, event_time_ms=event_time_ms, now_ms=now_ms)


def on_tick(
    rule: Rule,
    state: RuleState,
    *,
    last_seen_ms: int | None,
    latest_period: str | None,
    now_ms: int,
    indicator: Indicator,
) -> Verdict:
    """Evaluate a timer rule at ``now_ms`` with no input.

    ``absence``: ``last_seen_ms`` is when the entity's latest data arrived (None: never); the
    rule fires when that is more than its interval ago. ``late_report``: ``latest_period`` is the
    label of the latest period received for the entity (None: none); the rule fires after the end
    of the deadline day (local) of a period not received. Other kinds do nothing on ticks.
    ``indicator`` must be the rule's indicator (``ValueError`` otherwise: a wiring mistake).
    """
    if indicator.code != rule.indicator:
        raise ValueError(f"rule {rule.rule_id} is about {rule.indicator}, not {indicator.code}")
    params = rule.params
    if isinstance(params, AbsenceParams):
        return timers.silence_tick(rule, params, state, last_seen_ms, now_ms)
    if isinstance(params, LateReportParams):
        return timers.deadline_tick(rule, params, state, latest_period, now_ms)
    return unchanged(state, None, f"{rule.kind} rules are evaluated on observations only")
