"""Value rules without regulation levels: fast change (rate_of_change) and an unusual day (deviation).

Both are two-step: level 1 while the condition holds, level 0 otherwise; they resolve as soon as
a newer observation no longer meets it. Observations older than the latest applied are ignored.
"""

from __future__ import annotations

from statistics import fmean, stdev

from stream_app.domain.alerting.model import (
    DeviationParams,
    History,
    RateParams,
    Rule,
    RuleState,
    Verdict,
)
from stream_app.domain.alerting.verdicts import out_of_order, set_firing, unchanged
from stream_app.domain.clock import HOUR_MS, local_date

# Binary rounding: 11.3 - 10.3 is 1.0000000000000009 and 10.4 - 9.4 may fall short of 1.0. A rise
# of exactly the threshold fires; a nanometre less than the threshold is the same reading.
_TOLERANCE = 1e-9


def change_over_window(
    rule: Rule, params: RateParams, state: RuleState, *, value: float, event_time_ms: int, history: History
) -> Verdict:
    """Apply one observation to a ``rate_of_change`` rule: a rise of ``change`` or more over the
    lowest value of the last ``hours`` hours (hour-granular, see ``History``), or a fall below the
    highest."""
    ignored = out_of_order(state, value, event_time_ms)
    if ignored is not None:
        return ignored
    state.latest_ms = event_time_ms
    since_ms = event_time_ms - round(params.hours * HOUR_MS)
    if params.direction == "rise":
        low = history.min_since(since_ms)
        reference = value if low is None else min(low, value)
        moved, threshold = value - reference, reference + params.change
    else:
        high = history.max_since(since_ms)
        reference = value if high is None else max(high, value)
        moved, threshold = reference - value, reference - params.change
    firing = moved >= params.change - _TOLERANCE
    verb = "rose" if params.direction == "rise" else "fell"
    return set_firing(
        rule,
        state,
        firing,
        at_ms=event_time_ms,
        value=value,
        threshold=threshold,
        detail=(
            f"{rule.indicator} {verb} {moved:g} in {params.hours:g} h (from {reference:g} to {value:g}); "
            f"alert at {params.change:g}"
        ),
    )


def day_against_baseline(
    rule: Rule,
    params: DeviationParams,
    state: RuleState,
    *,
    value: float,
    event_time_ms: int,
    history: History,
) -> Verdict:
    """Apply one observation (the day's figure) to a ``deviation`` rule: beyond mean ± k·σ of the
    previous ``days`` local days' values.

    The observation's own value is the day's figure, not the sum of the day so far: a daily
    indicator reports one figure per day, and a correction replaces it. σ is the sample standard
    deviation, at least ``sigma_floor``. With fewer than ``min_baseline_days`` days of data the
    level stays as it is.
    """
    ignored = out_of_order(state, value, event_time_ms)
    if ignored is not None:
        return ignored
    state.latest_ms = event_time_ms
    day = local_date(event_time_ms)
    baseline = history.daily_values(day, params.days)
    if len(baseline) < params.min_baseline_days:
        return unchanged(
            state,
            value,
            f"{rule.indicator}: {len(baseline)} days of baseline before {day}, "
            f"{params.min_baseline_days} needed",
        )
    mean = fmean(baseline)
    sigma = max(stdev(baseline), params.sigma_floor)
    if params.direction == "above":
        threshold = mean + params.k * sigma
        firing = value > threshold
    else:
        threshold = mean - params.k * sigma
        firing = value < threshold
    return set_firing(
        rule,
        state,
        firing,
        at_ms=event_time_ms,
        value=value,
        threshold=threshold,
        detail=(
            f"{rule.indicator} {value:g} on {day} against {mean:.4g} ± {params.k:g}·{sigma:.4g} "
            f"over {len(baseline)} days"
        ),
    )
