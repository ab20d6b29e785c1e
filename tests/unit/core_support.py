"""Helpers of the pure-core tests (aggregates, periods, revisions, consolidation, roll-ups): one entity
fed in memory, observations of any indicator, times written as Vietnam's local clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from stream_app.domain.aggregates import Agg
from stream_app.domain.alerting import RuleBook
from stream_app.domain.catalogue import Catalogue
from stream_app.domain.consolidation import entity_records
from stream_app.domain.entity import Context, EntityKey, EntityState, StepResult, Touched, apply, tick
from stream_app.domain.model import Observation, Quality
from stream_app.domain.records import ConsolidatedRecord

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
VIETNAM = timezone(timedelta(hours=7))
SOURCE = "internal.observations.by-entity:0"
TICK_SOURCE = "internal.ticks:0"

# Who reports each indicator the tests use, and in what unit.
_REPORTED = {
    "TRF.ACCIDENTS": ("MPS", "cases"),
    "SSI.HEALTH": ("VSS", "persons"),
    "FIN.BUDGET_EXPENDITURE": ("MOF", "bn VND"),
    "FIN.BUDGET_REVENUE": ("MOF", "bn VND"),
    "PWR.OUTPUT_GWH": ("EVN", "GWh"),
    "FIN.CPI": ("MOF", "%"),
    "DIS.LANDSLIDE_SITES": ("MAE", "sites"),
    "DIS.FOREST_FIRE": ("MAE", "level"),
    "ENV.AQI": ("MAE", "index"),
    "PWR.SOURCE_SHARE": ("EVN", "%"),
}


@dataclass(frozen=True, slots=True)
class Hour:
    """An hour's lowest and highest value: what ``BucketHistory`` reads of the hours a state keeps."""

    low: float
    high: float

    @staticmethod
    def of(value: float) -> Hour:
        return Hour(value, value)

    def add(self, value: float) -> Hour:
        return Hour(min(self.low, value), max(self.high, value))


def utc_ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, second: int = 0) -> int:
    """Epoch milliseconds of a UTC wall-clock time."""
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp() * 1000)


def local_ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, second: int = 0) -> int:
    """Epoch milliseconds of a wall-clock time in Vietnam (UTC+7): the clock periods are counted in."""
    return int(datetime(year, month, day, hour, minute, second, tzinfo=VIETNAM).timestamp() * 1000)


def no_rules(catalogue: Catalogue) -> RuleBook:
    """A rule book without rules: aggregates only, no alerts."""
    return RuleBook(Path("no-rules.toml"), (), catalogue)


def observation(
    observation_id: str,
    value: float,
    event_time: int,
    *,
    indicator: str = "TRF.ACCIDENTS",
    region: str = "01",
    station: str | None = None,
    revision: int = 0,
    quality: Quality = Quality.FINAL,
    breakdowns: dict[str, str] | None = None,
) -> Observation:
    """A validated observation of ``indicator`` (by default a province's daily Decree 09 count)."""
    reporter, unit = _REPORTED[indicator]
    return Observation(
        observation_id=observation_id,
        revision=revision,
        reporter=reporter,
        indicator=indicator,
        region=region,
        station=station,
        value=value,
        unit=unit,
        event_time=event_time,
        report_time=event_time,
        quality=quality,
        breakdowns=breakdowns or {},
    )


@dataclass
class Core:
    """One entity's state fed by one partition at increasing offsets, at a processing time ``now``.

    ``touched`` accumulates like one batch of the agent does; ``batch()`` starts a new one.
    """

    catalogue: Catalogue
    entity: EntityKey
    now: int
    rulebook: RuleBook | None = None
    state: EntityState = field(default_factory=lambda: EntityState(complete=True))
    touched: Touched = field(default_factory=Touched)
    offset: int = 0
    tick_offset: int = 0

    def ctx(self, now: int | None = None) -> Context:
        book = self.rulebook if self.rulebook is not None else no_rules(self.catalogue)
        return Context(self.catalogue, book, self.now if now is None else now)

    def apply(self, obs: Observation, *, now: int | None = None) -> StepResult:
        self.offset += 1
        return apply(
            self.state, obs, source=SOURCE, offset=self.offset, ctx=self.ctx(now), touched=self.touched
        )

    def tick(self, now: int) -> StepResult:
        self.tick_offset += 1
        return tick(
            self.state,
            self.entity,
            source=TICK_SOURCE,
            offset=self.tick_offset,
            ctx=self.ctx(now),
            touched=self.touched,
        )

    def batch(self) -> None:
        self.touched = Touched()

    def records(self, now: int | None = None) -> dict[str, ConsolidatedRecord | None]:
        """The consolidated records of the batch so far, by key."""
        return dict(entity_records(self.state, self.entity, self.touched, self.ctx(now)))


def period(state: EntityState, label: str, series: str = "") -> Agg:
    """A period's aggregate, which must hold values."""
    agg = state.periods.get((series, label))
    assert agg is not None, f"period {series}|{label} holds no values"
    return agg
