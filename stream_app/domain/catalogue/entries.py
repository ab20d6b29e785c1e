"""The catalogue's entries as data: indicators with their levels and authorities, reporters, regions,
stations, the :class:`Catalogue` that holds them by code, and the values their fields may take."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from stream_app.domain.calendar import ReportingPeriod, period_of
from stream_app.domain.clock import local_date
from stream_app.domain.model import CO_REPORTER_BREAKDOWN

__all__ = [
    "AGGREGATIONS",
    "DEFAULT_DEADLINE_DAY",
    "DOMAINS",
    "REGION_KINDS",
    "REGION_LEVELS",
    "RESERVED_BREAKDOWNS",
    "Authority",
    "Catalogue",
    "Indicator",
    "Level",
    "Region",
    "RegionKind",
    "Reporter",
    "Station",
]

REGION_LEVELS = ("national", "province", "station")
AGGREGATIONS = ("sum", "mean", "weighted_mean", "max", "last")
DOMAINS = (
    "environment",
    "disaster",
    "energy",
    "socio_economic",
    "traffic",
    "finance",
    "health",
    "social_security",
    "education",
    "administration",
    "justice",
    "transport",
)
REGION_KINDS = ("current", "legacy", "national")
# Validation adds this breakdown to a co-reporter's observations (one that is not the authority for
# them), so its figures form a series of their own: no indicator may declare it.
RESERVED_BREAKDOWNS = frozenset({CO_REPORTER_BREAKDOWN})
DEFAULT_DEADLINE_DAY = 25  # Decree 09/2019/NĐ-CP Art. 13: reports to the Government by the 25th

RegionKind = Literal["current", "legacy", "national"]


@dataclass(frozen=True, slots=True)
class Level:
    """One regulation level: values from ``lower`` (inclusive) up to the next level's lower bound."""

    index: int
    code: str
    lower: float
    name_vi: str
    name_en: str
    colour: str


@dataclass(frozen=True, slots=True)
class Authority:
    """Whose figures are official for an indicator: ``reporter``, for event times whose local
    (UTC+7) date is in ``since`` (inclusive) .. ``until`` (exclusive), in ``regions`` (today's
    units; ``None`` for every region). An open bound is ``None``."""

    reporter: str
    since: date | None = None
    until: date | None = None
    regions: frozenset[str] | None = None

    def covers(self, region: str, day: date) -> bool:
        """Whether this entry speaks for ``region`` (a current unit or "VN") on local date ``day``."""
        return (
            (self.since is None or self.since <= day)
            and (self.until is None or day < self.until)
            and (self.regions is None or region in self.regions)
        )


@dataclass(frozen=True, slots=True)
class Indicator:
    """A catalogued indicator: what records of it must look like, and how they roll up.

    ``alert_from_level`` is the index of the first level that raises an alert; without levels (its
    own or its stations') every value is level 0 and no alert fires. ``calendar`` and ``frequency``
    say which reporting period a value belongs to (``stream_app.domain.calendar``); ``aggregation`` says
    how regions combine (sum, mean, weighted_mean, max, last).

    ``station_kind`` is the kind of station a station-level indicator is reported by (``None`` for
    national and province indicators). ``breakdown_values`` holds the allowed values of the
    breakdowns that declare them (a breakdown missing here takes any value). ``authority`` lists
    who is official when (``authority_at``); without a matching entry the owner is.
    """

    code: str
    name_vi: str
    name_en: str
    owner: str
    unit: str
    min_value: float
    max_value: float
    region_level: str
    alert_from_level: int
    levels: tuple[Level, ...]
    reporters: frozenset[str]
    frequency: str
    calendar: str
    deadline_day: int
    aggregation: str
    breakdowns: tuple[str, ...]
    domain: str
    station_kind: str | None = None
    # Not hashed (a mapping is not hashable); equality still compares it.
    breakdown_values: Mapping[str, frozenset[str]] = field(default_factory=dict, hash=False)
    authority: tuple[Authority, ...] = ()

    def period_of(self, event_time_ms: int) -> ReportingPeriod:
        """The reporting period an observation of this indicator at ``event_time_ms`` belongs to."""
        return period_of(self.frequency, self.calendar, event_time_ms, self.deadline_day)

    def authority_at(self, region: str, event_time_ms: int) -> str:
        """The reporter whose figures are official for ``region`` (today's unit, or "VN") at
        ``event_time_ms``: the first ``authority`` entry covering the event's local date, else the
        owner. Another allowed reporter's values are a co-reporter's, kept apart from them."""
        if not self.authority:
            return self.owner
        day = local_date(event_time_ms)
        for entry in self.authority:
            if entry.covers(region, day):
                return entry.reporter
        return self.owner


@dataclass(frozen=True, slots=True)
class Station:
    """A measuring station (hydrological, air quality, salinity) or an airport, in a current unit.

    ``levels`` are the station's own levels for the indicator ``levels_indicator`` (flood alarm
    levels differ per hydrological station); empty when the indicator's levels apply.
    ``legacy_region`` is the pre-2025 province it stood in, whose code history before 2025-07-01
    carries; that province merged into ``region``. ``None`` only when neither the file names one
    nor the current code is also a legacy one.
    """

    code: str
    name: str
    region: str
    kind: str
    levels: tuple[Level, ...]
    levels_indicator: str | None = None
    legacy_region: str | None = None


@dataclass(frozen=True, slots=True)
class Reporter:
    """A ministry, agency or corporation that reports indicators.

    ``indicators`` is derived from the indicators' ``reporters`` lists, the one place the
    catalogue says who may report what.
    """

    code: str
    name_vi: str
    name_en: str
    indicators: frozenset[str]
    # its own Kafka produce quotas (stream-app quotas apply), when the settings' defaults do not fit it
    quota_bytes_per_s: int | None = None
    quota_request_percent: float | None = None


@dataclass(frozen=True, slots=True)
class Region:
    """A province-level unit: ``current`` (from 2025-07-01), ``legacy`` (GSO code list of 2004,
    with the current unit it merged into as ``successor``), or the ``national`` pseudo-region "VN".
    """

    code: str
    name: str
    kind: RegionKind
    successor: str | None = None


@dataclass(frozen=True, slots=True)
class Catalogue:
    """Indicators, reporters, regions and stations, by code.

    ``regions`` holds every region code a record may carry: "VN", the 34 current units, and the
    legacy codes no current unit reuses. A code that is both legacy and current (01, 31, 79...)
    maps to the current unit there; ``legacy_regions`` keeps all 63 legacy provinces with their
    old names.
    """

    indicators: dict[str, Indicator]
    reporters: dict[str, Reporter]
    regions: dict[str, Region]
    stations: dict[str, Station]
    legacy_regions: dict[str, Region]

    def levels_for(self, indicator: Indicator, station: str | None) -> tuple[Level, ...]:
        """A station's own levels for this indicator (flood alarm levels differ per station), else
        the indicator's."""
        if station is not None:
            found = self.stations.get(station)
            if found is not None and found.levels and found.levels_indicator == indicator.code:
                return found.levels
        return indicator.levels

    def current_region(self, code: str) -> str | None:
        """The current unit a region code stands for: a legacy province's successor, a current unit
        or "VN" itself, ``None`` for an unknown code. History reported under the old codes rolls up
        into today's units through this."""
        region = self.regions.get(code)
        if region is None:
            return None
        return region.successor if region.kind == "legacy" else region.code

    def authority(self, indicator_code: str, region: str, event_time_ms: int) -> str:
        """The reporter whose figures of ``indicator_code`` are official for ``region`` (today's
        unit, or "VN") at ``event_time_ms`` (see ``Indicator.authority_at``). Raises ``KeyError``
        for an unknown indicator."""
        return self.indicators[indicator_code].authority_at(region, event_time_ms)
