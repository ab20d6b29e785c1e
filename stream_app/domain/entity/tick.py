"""The tick: close the periods whose deadline has passed and evaluate the timer rules."""

from __future__ import annotations

import functools

from stream_app.domain.aggregates import close_time_ms, period_by_label, same_period_last_year
from stream_app.domain.alerting import on_tick
from stream_app.domain.catalogue import Indicator
from stream_app.domain.entity.identity import EntityKey
from stream_app.domain.entity.records import alert_record
from stream_app.domain.entity.state import EntityState
from stream_app.domain.entity.step import Context, Outcome, StepResult, Touched, already_applied

_NEVER = 2**63 - 1  # later than any time: no open period closes at a record


@functools.lru_cache(maxsize=65536)
def _deadline_ms(label: str, calendar: str, deadline_day: int) -> int:
    """When the period a label names closes by its own deadline."""
    return close_time_ms(period_by_label(label, calendar, deadline_day))


def close_due(
    state: EntityState, ctx: Context, touched: Touched, indicator: Indicator, *, tick: bool
) -> None:
    """Close the periods whose deadline has passed: their final values are published.

    A period held open for history (``Context.hold_ms``: it closes later than its own
    deadline) is closed by a tick only: closing it needs the period and last year's read, which a
    history batch does not hold, and a tick reads them once for all the batches since."""
    now = ctx.now_ms
    if tick:
        due = [(key, closes) for key, closes in state.open_periods.items() if closes <= now]
    else:
        # at a record, only a period at its own deadline closes; one held open while history settles
        # waits for a tick. Those (most open periods, during a history load) are looked at once per
        # run, not once per record: nothing closes at a record before ``record_close_from``.
        if state.record_close_from is not None and now < state.record_close_from:
            return
        calendar, deadline_day = indicator.calendar, indicator.deadline_day
        at_deadline = [
            (key, closes)
            for key, closes in state.open_periods.items()
            if closes <= _deadline_ms(key[1], calendar, deadline_day)
        ]
        state.record_close_from = min((closes for _, closes in at_deadline), default=_NEVER)
        due = [(key, closes) for key, closes in at_deadline if closes <= now]
    for key, _ in sorted(due):
        last_year = (key[0], same_period_last_year(key[1]))
        if state.has_period(key) & state.has_period(last_year):
            state.close_period(key)
            touched.closed.add(key)


def tick(
    state: EntityState,
    entity: EntityKey,
    *,
    source: str,
    offset: int,
    ctx: Context,
    touched: Touched | None = None,
) -> StepResult:
    """At the tick's time ``ctx.now_ms``: close the periods whose deadline has passed, and evaluate
    the timer rules (absence, late report).

    Only feeds that have reported at least once are watched: a feed never connected is the
    compliance view's business (the article's "40/78 connected"), not an alert storm at first start.
    """
    touched = touched if touched is not None else Touched()
    if not state.known or already_applied(state, source, offset):
        return StepResult(Outcome.ALREADY_APPLIED)
    indicator = ctx.catalogue.indicators[entity.indicator]
    close_due(state, ctx, touched, indicator, tick=True)
    if state.missing:
        return StepResult(Outcome.PENDING)
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
                alert_record(
                    state, rule, verdict, entity, cause=f"tick@{ctx.now_ms}", ctx=ctx, event_time=ctx.now_ms
                )
            )
    return StepResult(Outcome.APPLIED, alerts=tuple(alerts))
