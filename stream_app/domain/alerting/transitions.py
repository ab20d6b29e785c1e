"""Threshold rules: which regulation level a value is at, and which alert transition a change makes.

Pure functions over catalogue data; the alert state they compare against lives in Redis.
"""

from __future__ import annotations

from bisect import bisect_right
from enum import StrEnum

from stream_app.domain.catalogue import Level


class Transition(StrEnum):
    """Alert lifecycle transitions. Only transitions are published, never repeats of a level."""

    FIRING = "FIRING"
    ESCALATED = "ESCALATED"
    DEESCALATED = "DEESCALATED"
    RESOLVED = "RESOLVED"


def level_of(value: float, levels: tuple[Level, ...]) -> int:
    """Index of the level ``value`` falls in (levels are ordered by their inclusive lower bound).

    Values below the first bound are level 0. Level tables are integer-edged for VN_AQI
    (0-50, 51-100, ...): 150.5 is still "poor" since "bad" starts at 151.
    """
    if not levels:
        return 0
    return max(0, bisect_right([lv.lower for lv in levels], value) - 1)


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
