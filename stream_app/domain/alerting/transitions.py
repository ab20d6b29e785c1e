"""Alert transitions: which transition a change of level makes (the levels: ``levels.py``)."""

from __future__ import annotations

from enum import StrEnum


class Transition(StrEnum):
    """Alert lifecycle transitions. Only transitions are published, never repeats of a level."""

    FIRING = "FIRING"
    ESCALATED = "ESCALATED"
    DEESCALATED = "DEESCALATED"
    RESOLVED = "RESOLVED"


def transition(previous: int, current: int, alert_from: int) -> Transition | None:
    """The transition from level ``previous`` to ``current``, for a rule alerting from ``alert_from``."""
    was, now = previous >= alert_from, current >= alert_from
    if not was and now:
        return Transition.FIRING
    if was and not now:
        return Transition.RESOLVED
    if was and now and current > previous:
        return Transition.ESCALATED
    if was and now and current < previous:
        return Transition.DEESCALATED
    return None
