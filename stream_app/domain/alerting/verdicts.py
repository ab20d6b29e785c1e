"""Turning a rule's new level into a verdict: the one place a rule state's level changes."""

from __future__ import annotations

from stream_app.domain.alerting.model import Rule, RuleState, Verdict
from stream_app.domain.alerting.transitions import transition


def set_level(
    rule: Rule,
    state: RuleState,
    level: int,
    *,
    at_ms: int,
    value: float | None,
    threshold: float | None,
    detail: str,
) -> Verdict:
    """Put ``state`` at ``level`` and say which transition that is (None when the level is the same,
    or both levels are below the rule's ``alert_from``). ``at_ms`` becomes the level's start."""
    previous = state.level
    if level != previous:
        state.level, state.since_ms, state.value = level, at_ms, value
    change = transition(previous, level, rule.alert_from)
    return Verdict(change, level, previous, value, threshold, detail)


def unchanged(state: RuleState, value: float | None, detail: str) -> Verdict:
    """No change: the level stays as it is."""
    return Verdict(None, state.level, state.level, value, None, detail)


def out_of_order(state: RuleState, value: float, event_time_ms: int) -> Verdict | None:
    """The verdict for an observation older than the latest one applied, else None.

    A late-arriving older reading says nothing about now: applying it would move the level back in
    time (a flood would "resolve" on yesterday's reading). It is ignored by the value rules; its
    value still reaches the aggregates through the caller.
    """
    if state.latest_ms is not None and event_time_ms < state.latest_ms:
        return unchanged(
            state,
            value,
            f"ignored: event time {event_time_ms} is older than the latest applied ({state.latest_ms})",
        )
    return None


def set_firing(
    rule: Rule,
    state: RuleState,
    firing: bool,
    *,
    at_ms: int,
    value: float | None,
    threshold: float | None,
    detail: str,
) -> Verdict:
    """:func:`set_level` for a two-step rule: level 1 while its condition holds, 0 otherwise."""
    return set_level(
        rule, state, 1 if firing else 0, at_ms=at_ms, value=value, threshold=threshold, detail=detail
    )
