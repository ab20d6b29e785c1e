"""A directive of the center applied to the alert it names, or refused (:class:`DirectiveRefusal`)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from stream_app.domain.alerting import Verdict
from stream_app.domain.alerting.transitions import Transition
from stream_app.domain.catalogue import Catalogue
from stream_app.domain.clock import as_ms
from stream_app.domain.directives import ACKNOWLEDGING, Action, directive_detail
from stream_app.domain.entity.identity import EntityKey
from stream_app.domain.entity.records import alert_record
from stream_app.domain.entity.state import OCCURRENCE_CHANGES_KEPT, AlertMeta, EntityState
from stream_app.domain.entity.step import Context, Outcome, StepResult, already_applied
from stream_app.domain.reasons import Reason


class DirectiveRefusal(StrEnum):
    """Why the stateful step refuses a directive: its dead-letter reason code (``center.directives.dlq``)."""

    UNKNOWN_ALERT = Reason.UNKNOWN_ALERT  # no alert of that key ever fired at the entity
    ALERT_NOT_OPEN = Reason.ALERT_NOT_OPEN  # only a comment is taken on a resolved alert
    STALE_ALERT = Reason.STALE_ALERT  # about an earlier occurrence of the alert, not the current one


class DirectiveRefusedError(ValueError):
    """A directive that cannot be applied; ``reason`` is its dead-letter reason code."""

    def __init__(self, reason: DirectiveRefusal, message: str) -> None:
        super().__init__(message)
        self.reason = Reason(reason.value)


def stale_occurrence(meta: AlertMeta, directive: Mapping[str, Any]) -> str | None:
    """Why ``directive`` is not about the alert's current occurrence (``meta``), or None when it is.

    A directive names the occurrence by the id of a change the center saw (``alert_id``): it must be
    one of the current occurrence's, or the directive was meant for an earlier one (the alert resolved
    and fired again since) and must not land on the new one — an acknowledgement would hide a new
    critical alert. A directive naming no change (an empty ``alert_id``: the CLI without
    ``--alert-id``, an older producer) means "the occurrence current as I issue this": it is stale when
    it was issued before that occurrence fired (a directive held in a queue while the alert re-fired).
    State written before occurrences were recorded cannot tell: such a directive is taken, as before.
    """
    if not meta.occurrence:
        return None
    named = str(directive.get("alert_id") or "")
    key = directive["alert_key"]
    if named:
        if meta.is_of_current_occurrence(named):
            return None
        return (
            f"alert {key!r}: {named!r} is not a change of its current occurrence (opened by"
            f" {meta.occurrence}); it has resolved and fired again since, or the view is"
            f" {OCCURRENCE_CHANGES_KEPT}+ changes out of date"
        )
    issued = as_ms(directive["issued_at"])
    if issued < meta.opened_at:
        return (
            f"alert {key!r}: the directive names no occurrence and was issued before the current one"
            f" fired ({meta.occurrence})"
        )
    return None


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
    commented; publish the change, and say whom to forward the directive to (the reporter responsible
    now). Raises :class:`DirectiveRefusedError` (:class:`DirectiveRefusal`) for an alert that never
    fired, a directive about an earlier occurrence of it, or an action other than a comment on an
    alert that is not open."""
    if already_applied(state, source, offset):
        return StepResult(Outcome.ALREADY_APPLIED)
    rule_id = directive["alert_key"].split("|", 1)[0]
    rules = {r.rule_id: r for r in ctx.rulebook.rules_for(entity.indicator, entity.region, entity.station)}
    rule, rule_state, known = rules.get(rule_id), state.rules.get(rule_id), state.meta.get(rule_id)
    if rule is None or rule_state is None or known is None or not known.transition:
        raise DirectiveRefusedError(
            DirectiveRefusal.UNKNOWN_ALERT, f"no alert {directive['alert_key']!r} ever fired"
        )
    # before "not open": a directive about an earlier occurrence is refused as that, open or not
    stale = stale_occurrence(known, directive)
    if stale is not None:
        raise DirectiveRefusedError(DirectiveRefusal.STALE_ALERT, stale)
    action = directive["action"]
    if rule_state.level < rule.alert_from and action != Action.COMMENT:
        raise DirectiveRefusedError(
            DirectiveRefusal.ALERT_NOT_OPEN, f"alert {directive['alert_key']!r} is not open; cannot {action}"
        )
    meta = state.alert_meta(rule_id)
    issued = as_ms(directive["issued_at"])
    if action in ACKNOWLEDGING and not meta.acknowledged_by:
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
        detail=directive_detail(action, directive["actor"]),
    )
    alert = alert_record(
        state,
        rule,
        verdict,
        entity,
        cause=f"directive:{directive['directive_id']}",
        ctx=ctx,
        event_time=issued,
        event_type=action,
    )
    addressee = responsible_reporter(ctx.catalogue, entity, ctx.now_ms)
    return StepResult(Outcome.APPLIED, alerts=(alert,), addressee=addressee)


def responsible_reporter(catalogue: Catalogue, entity: EntityKey, now_ms: int) -> str:
    """Who answers for an entity's feed now: the catalogue's authority at this moment, whoever sent
    its newest values (an earlier authority's history, while the current one is silent, must not
    take the center's directives away from the reporter that has to act on them)."""
    return catalogue.authority(entity.indicator, entity.region, now_ms)
