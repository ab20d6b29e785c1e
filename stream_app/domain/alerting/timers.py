"""Rules that fire on silence: a feed that stopped (absence) and a report past its deadline
(late_report). Evaluated on timer ticks, with no input; resolved when data arrives.

Deadlines are local dates in Vietnam (UTC+7): a report due on the 25th is late from 00:00 local on
the 26th, which is 17:00 UTC on the 25th.
"""

from __future__ import annotations

from datetime import date

from stream_app.domain.alerting.model import (
    AbsenceParams,
    LateReportParams,
    Rule,
    RuleState,
    Verdict,
)
from stream_app.domain.alerting.verdicts import set_firing, set_level, unchanged
from stream_app.domain.calendar import ReportingPeriod, parse_period, period_of
from stream_app.domain.clock import DAY_MS, HOUR_MS, end_of_local_day_ms

# Every calendar's deadline falls within a month after its period ends: a few steps back suffice.
_MAX_STEPS_BACK = 4


def silence_tick(
    rule: Rule, params: AbsenceParams, state: RuleState, last_seen_ms: int | None, now_ms: int
) -> Verdict:
    """A tick for an ``absence`` rule: firing while nothing arrived for longer than the interval.

    Silence counts from the later of ``last_seen_ms`` and the last arrival this rule saw itself;
    an entity never heard from counts from the first tick that watched it.
    """
    seen = _later(last_seen_ms, state.latest_ms)
    if seen is None:
        if state.watching_since_ms is None:
            state.watching_since_ms = now_ms
        seen = state.watching_since_ms
    silent_ms = now_ms - seen
    firing = silent_ms > params.interval_ms
    return set_firing(
        rule,
        state,
        firing,
        at_ms=now_ms,
        value=silent_ms / HOUR_MS,
        threshold=params.interval_ms / HOUR_MS,
        detail=(
            f"{rule.indicator}: no data for {silent_ms / HOUR_MS:.2f} h "
            f"(expected at least every {params.interval_ms / HOUR_MS:g} h)"
        ),
    )


def data_arrived(rule: Rule, state: RuleState, value: float, now_ms: int) -> Verdict:
    """Data for an ``absence`` rule: the feed is alive, so a silence alert resolves."""
    state.latest_ms = _later(now_ms, state.latest_ms)
    state.watching_since_ms = None
    return set_level(
        rule, state, 0, at_ms=now_ms, value=value, threshold=None, detail=f"{rule.indicator}: data arrived"
    )


def deadline_tick(
    rule: Rule, params: LateReportParams, state: RuleState, latest_period: str | None, now_ms: int
) -> Verdict:
    """A tick for a ``late_report`` rule: firing while the latest period whose deadline day is over
    has not been received (nor any later one). The verdict's value is the days since the deadline
    day ended. ``ValueError`` if ``latest_period`` is not a label of the indicator's frequency."""
    due = latest_due_period(params, now_ms)
    latest = _later_period(params, latest_period, state.latest_period)
    if latest is not None and latest.start >= due.start:
        state.overdue_period = None
        detail = f"{rule.indicator}: period {due.label} received"
        return set_level(rule, state, 0, at_ms=now_ms, value=None, threshold=None, detail=detail)
    state.overdue_period = due.label
    got = latest.label if latest is not None else "none"
    days_late = (now_ms - deadline_passed_ms(due.deadline)) / DAY_MS
    detail = (
        f"{rule.indicator}: period {due.label} was due by {due.deadline} (local), "
        f"{days_late:.1f} days ago; latest received {got}"
    )
    return set_level(rule, state, 1, at_ms=now_ms, value=days_late, threshold=0.0, detail=detail)


def report_arrived(
    rule: Rule, params: LateReportParams, state: RuleState, *, value: float, event_time_ms: int, now_ms: int
) -> Verdict:
    """A record for a ``late_report`` rule: its period (from its event time, as validation placed
    it) is remembered, and an overdue alert resolves once that period or a later one arrives."""
    period = _period_at(params, event_time_ms)
    known = _later_period(params, state.latest_period, None)
    if known is None or period.start > known.start:
        state.latest_period = period.label
    overdue = state.overdue_period
    if state.level == 0 or overdue is None:
        return unchanged(state, value, f"{rule.indicator}: period {period.label} received")
    if period.start < _parse(params, overdue).start:
        return unchanged(
            state, value, f"{rule.indicator}: period {period.label} received, {overdue} still overdue"
        )
    state.overdue_period = None
    return set_level(
        rule,
        state,
        0,
        at_ms=now_ms,
        value=value,
        threshold=None,
        detail=f"{rule.indicator}: overdue period {overdue} received ({period.label})",
    )


def latest_due_period(params: LateReportParams, now_ms: int) -> ReportingPeriod:
    """The most recent period whose deadline day (local) is over at ``now_ms``."""
    period = _period_at(params, now_ms)
    for _ in range(_MAX_STEPS_BACK):
        if deadline_passed_ms(period.deadline) <= now_ms:
            return period
        period = _period_at(params, period.start_ms - 1)
    raise AssertionError(f"no period of {params} is past its deadline at {now_ms}")  # pragma: no cover


def deadline_passed_ms(deadline: date) -> int:
    """Epoch milliseconds when the local deadline day is over: 00:00 in Vietnam the day after."""
    return end_of_local_day_ms(deadline)


def _period_at(params: LateReportParams, event_time_ms: int) -> ReportingPeriod:
    return period_of(params.frequency, params.calendar, event_time_ms, params.deadline_day)


def _parse(params: LateReportParams, label: str) -> ReportingPeriod:
    return parse_period(label, params.frequency, params.calendar, params.deadline_day)


def _later_period(params: LateReportParams, first: str | None, second: str | None) -> ReportingPeriod | None:
    periods = [_parse(params, label) for label in (first, second) if label]
    return max(periods, key=lambda p: p.start, default=None)


def _later(first: int | None, second: int | None) -> int | None:
    if first is None:
        return second
    return first if second is None else max(first, second)
