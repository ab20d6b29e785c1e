"""Plain data of the alert engine: rules, their per-entity state, verdicts, and the history they read.

A ``Rule`` is one regulation or watch applied to one indicator (overridden per region or station);
a ``RuleState`` is what the engine remembers about one rule at one entity between records, stored by
the caller in the entity's Redis hash; a ``Verdict`` says what one observation or timer tick did.
Everything here is immutable except ``RuleState``, which the evaluation functions update in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal, Protocol

from stream_app.domain.alerting.transitions import Transition
from stream_app.domain.catalogue import Level

__all__ = [  # what the package re-exports (MINUTE_MS stays the engine's own)
    "KINDS",
    "TIMER_KINDS",
    "AbsenceParams",
    "DeviationParams",
    "Entity",
    "History",
    "LateReportParams",
    "LevelsParams",
    "Params",
    "RateParams",
    "Rule",
    "RuleKind",
    "RuleState",
    "Verdict",
]

RuleKind = Literal["levels", "rate_of_change", "deviation", "absence", "late_report"]
KINDS: tuple[RuleKind, ...] = ("levels", "rate_of_change", "deviation", "absence", "late_report")
# Kinds that can fire with no input at all: the caller evaluates them on timer ticks.
TIMER_KINDS: frozenset[str] = frozenset({"absence", "late_report"})

MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class LevelsParams:
    """Regulation levels (VN_AQI categories, flood alarm levels BĐ I/II/III ...).

    ``direction`` "above": a value is at level k from level k's bound up (the catalogue's levels);
    "below": from level k's bound down (levels of the rule's own, bounds decreasing).
    ``hysteresis``: a level clears only once the value is past its bound by this margin, so a reading
    that hovers at a bound does not toggle the alert. ``min_count`` / ``min_minutes``: a rise to a
    higher level takes effect only after that many consecutive observations, spanning that many
    minutes of event time, at or above it (1 and 0: at once). ``own_levels``: the levels come from
    the rules file, not from the catalogue. ``alert_from_spec`` is ``alert_from`` as written (an
    index, a level code, or None for the catalogue's ``alert_from_level``), resolved again for each
    station's own table.
    """

    direction: Literal["above", "below"] = "above"
    hysteresis: float = 0.0
    min_count: int = 1
    min_minutes: float = 0.0
    own_levels: bool = False
    alert_from_spec: int | str | None = None


@dataclass(frozen=True, slots=True)
class RateParams:
    """Fast change: fires while the value is ``change`` or more above the lowest value of the last
    ``hours`` hours ("rise"), or below the highest ("fall")."""

    direction: Literal["rise", "fall"]
    change: float
    hours: float


@dataclass(frozen=True, slots=True)
class DeviationParams:
    """Unusual day: fires while the day's value is beyond mean ± k·σ of the previous ``days`` daily
    values. ``min_baseline_days``: fewer days with data than this is no baseline; ``sigma_floor``:
    the smallest σ used, so a flat baseline (σ = 0) does not fire on +1."""

    days: int
    k: float
    min_baseline_days: int = 7
    sigma_floor: float = 1.0
    direction: Literal["above", "below"] = "above"


@dataclass(frozen=True, slots=True)
class AbsenceParams:
    """Silent feed: fires when no data has arrived for longer than ``interval_ms``."""

    interval_ms: int


@dataclass(frozen=True, slots=True)
class LateReportParams:
    """Overdue periodic report (Decree 09/2019/NĐ-CP): the indicator's frequency, calendar and
    deadline day, copied from the catalogue so that a record's period can be told without it."""

    frequency: str
    calendar: str
    deadline_day: int


Params = LevelsParams | RateParams | DeviationParams | AbsenceParams | LateReportParams


@dataclass(frozen=True, slots=True)
class Rule:
    """One alert rule as it applies to one entity (or, in ``RuleBook.rules``, to the indicator).

    ``rule_id`` is stable: alert keys and the Redis field names of the rule's state use it, and an
    override keeps the id of the rule it overrides, so a change of parameters never orphans state.
    ``levels`` is the rule's ladder: the regulation levels for ``levels`` rules (a station's own
    flood alarm levels once resolved for that station), a two-step "clear"/"firing" ladder for the
    other kinds. ``alert_from`` is the index of the first level that is an alert. ``scope`` says
    where the parameters came from: "indicator", "region 01" or "station HN-LONGBIEN".
    """

    rule_id: str
    kind: RuleKind
    indicator: str
    domain: str
    levels: tuple[Level, ...]
    alert_from: int
    params: Params
    scope: str = "indicator"

    @property
    def on_ticks(self) -> bool:
        """Whether the rule can fire without input (absence, late_report): evaluate it on ticks."""
        return self.kind in TIMER_KINDS


@dataclass(frozen=True, slots=True, order=True)
class Entity:
    """An indicator at a region (current unit or "VN") and, for station indicators, a station."""

    indicator: str
    region: str
    station: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one observation or tick did to one rule at one entity.

    ``transition`` is None unless the alert changed (the same level again is no transition; nor is
    a move between levels below ``alert_from``, though ``level`` shows it). ``threshold`` is the bound
    that was crossed, in the value's unit: a level's bound for an escalation, the bound less the
    hysteresis margin for a de-escalation. On ticks there is no observed value: for absence,
    ``value`` and ``threshold`` are the silence and the allowed interval in hours; for late_report,
    the days since the deadline day ended and 0 (None once received). A timer rule resolved by an
    observation carries that observation's value.
    """

    transition: Transition | None
    level: int
    previous_level: int
    value: float | None
    threshold: float | None
    detail: str


class History(Protocol):
    """The recent values of the entity, as the caller holds them (hourly buckets, daily totals).

    Hour-granular: ``min_since``/``max_since`` cover whole hourly buckets of event time, from the
    start of the hour holding ``since_ms``; a window of H hours therefore looks back between H and
    H + 1 hours. Whether the current observation is already in the buckets does not matter: the
    engine also compares with the current value itself.
    """

    def min_since(self, since_ms: int) -> float | None:
        """Lowest value observed from the hour holding ``since_ms`` on; None without data."""
        ...

    def max_since(self, since_ms: int) -> float | None:
        """Highest value observed from the hour holding ``since_ms`` on; None without data."""
        ...

    def daily_values(self, before_local_day: date, days: int) -> list[float]:
        """One value per local (UTC+7) day, the day's sum, for the ``days`` days before
        ``before_local_day`` (that day excluded), oldest first, skipping days without data."""
        ...


@dataclass(slots=True)
class RuleState:
    """What the engine remembers about one rule at one entity; updated in place by evaluation.

    - ``level``, ``since_ms``, ``value``: the current level, since when (event time of the
      observation or time of the tick that set it) and the value that set it;
    - ``latest_ms``: event time of the latest observation applied (levels, rate_of_change,
      deviation: older ones are ignored), or arrival time of the latest data (absence);
    - ``pending_level``, ``pending_count``, ``pending_since_ms``: a rise not yet confirmed by
      ``min_count`` / ``min_minutes`` — the level the streak supports, its length, its first event time;
    - ``watching_since_ms``: absence of an entity never heard from counts from the first tick;
    - ``overdue_period``, ``latest_period``: late_report — the period reported late, and the latest
      period received by this rule.
    """

    level: int = 0
    since_ms: int | None = None
    value: float | None = None
    latest_ms: int | None = None
    pending_level: int | None = None
    pending_count: int = 0
    pending_since_ms: int | None = None
    watching_since_ms: int | None = None
    overdue_period: str | None = None
    latest_period: str | None = None

    def clear_pending(self) -> None:
        """Forget an unconfirmed rise: the streak of observations above the level is broken."""
        self.pending_level, self.pending_count, self.pending_since_ms = None, 0, None
