"""Regulation levels with hysteresis and minimum duration.

Everything is computed on a "severity scale": the value itself for levels rising with the value
(``above``, e.g. VN_AQI, water level), its negation for levels rising as the value falls (``below``),
so one set of comparisons serves both directions.

- A value is at level k from level k's bound on (inclusive), as :func:`level_for` says:
  the VN_AQI table is integer-edged, so 150.5 is still POOR.
- Rising: the level rises once ``min_count`` consecutive observations, spanning ``min_minutes`` of
  event time, were at or above a higher level; it rises to the lowest level the whole streak
  reached. A reading back at or below the current level breaks the streak.
- Falling (de-escalation, resolution): at once, but only past the hysteresis margin — level k holds
  while the value is at or above its bound less the margin (bound plus the margin for ``below``).
"""

from __future__ import annotations

from bisect import bisect_right

from stream_app.domain.alerting.model import MINUTE_MS, LevelsParams, Rule, RuleState, Verdict
from stream_app.domain.alerting.verdicts import out_of_order, set_level, unchanged
from stream_app.domain.catalogue import Level


def observe(rule: Rule, params: LevelsParams, state: RuleState, value: float, event_time_ms: int) -> Verdict:
    """Apply one observation to a ``levels`` rule."""
    ignored = out_of_order(state, value, event_time_ms)
    if ignored is not None:
        return ignored
    newer = state.latest_ms is None or event_time_ms > state.latest_ms
    state.latest_ms = event_time_ms
    _fit(state, len(rule.levels))
    sign = _sign(params)
    edges = _edges(rule.levels, sign)
    raw = _level_on(edges, sign * value)
    if raw > state.level:
        target = _confirmed_rise(params, state, raw, event_time_ms, newer=newer)
        if target is None:
            return unchanged(state, value, _pending_detail(rule, params, state, value))
        level = rule.levels[target]
        return set_level(
            rule,
            state,
            target,
            at_ms=event_time_ms,
            value=value,
            threshold=level.lower,
            detail=f"{rule.indicator} {value:g} reached {level.code} (from {level.lower:g})",
        )
    state.clear_pending()
    held = _held_level(edges, sign * value, state.level, params.hysteresis)
    if held == state.level:
        return unchanged(state, value, f"{rule.indicator} {value:g} stays at {rule.levels[held].code}")
    left = rule.levels[held + 1]  # the lowest level the value fell out of
    bound = left.lower - sign * params.hysteresis
    return set_level(
        rule,
        state,
        held,
        at_ms=event_time_ms,
        value=value,
        threshold=bound,
        detail=(
            f"{rule.indicator} {value:g} is past {left.code}'s bound {left.lower:g} by more than the "
            f"{params.hysteresis:g} margin: now {rule.levels[held].code}"
        ),
    )


def level_for(value: float, levels: tuple[Level, ...], direction: str = "above") -> int:
    """The level a value is at, without hysteresis or duration: level k from its bound on."""
    sign = -1.0 if direction == "below" else 1.0
    return _level_on(_edges(levels, sign), sign * value)


def _fit(state: RuleState, count: int) -> None:
    """Keep a stored level inside the table: a level table shortened since the state was written
    (a corrected catalogue) must not make every later record fail."""
    top = count - 1
    state.level = min(state.level, top)
    if state.pending_level is not None and state.pending_level > top:
        state.pending_level = top


def _sign(params: LevelsParams) -> float:
    return -1.0 if params.direction == "below" else 1.0


def _edges(levels: tuple[Level, ...], sign: float) -> list[float]:
    """Level bounds on the severity scale: increasing in both directions."""
    return [sign * level.lower for level in levels]


def _level_on(edges: list[float], severity: float) -> int:
    return max(0, bisect_right(edges, severity) - 1)


def _held_level(edges: list[float], severity: float, current: int, margin: float) -> int:
    """The highest level at or below ``current`` the value still holds: level k holds down to its
    bound less the margin; level 0 always holds."""
    for k in range(current, 0, -1):
        if severity >= edges[k] - margin:
            return k
    return 0


def _confirmed_rise(
    params: LevelsParams, state: RuleState, raw: int, event_time_ms: int, *, newer: bool
) -> int | None:
    """Count this observation into the streak above the current level; the level to rise to once
    the streak is long enough, else None.

    An observation at the same event time as the previous one (a corrected reading) replaces it
    rather than lengthening the streak. After a rise to the level the streak supported, a streak
    towards a still higher level starts with this observation: conservative, it may take one
    observation more than strictly needed.
    """
    if state.pending_level is None or state.pending_since_ms is None:
        state.pending_level, state.pending_count, state.pending_since_ms = raw, 1, event_time_ms
    else:
        state.pending_level = min(state.pending_level, raw)
        if newer:
            state.pending_count += 1
    long_enough = state.pending_count >= params.min_count
    lasted = event_time_ms - state.pending_since_ms >= params.min_minutes * MINUTE_MS
    if not (long_enough and lasted):
        return None
    target = state.pending_level
    state.clear_pending()
    if raw > target:
        state.pending_level, state.pending_count, state.pending_since_ms = raw, 1, event_time_ms
    return target


def _pending_detail(rule: Rule, params: LevelsParams, state: RuleState, value: float) -> str:
    level = rule.levels[state.pending_level if state.pending_level is not None else state.level]
    return (
        f"{rule.indicator} {value:g} at {level.code}, not yet confirmed: {state.pending_count} of "
        f"{params.min_count} observations, since {state.pending_since_ms} (needs {params.min_minutes:g} min)"
    )
