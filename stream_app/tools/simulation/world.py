"""The simulated country: what the catalogue says (provinces, stations, indicators, reporters), and
what only the simulation needs to shape values (each province's climate zone, population and
economy; the coast storms make landfall on), checked against the catalogue when it is loaded.

The simulation-specific tables here and in the models are keyed by catalogue codes (legacy province
codes, station codes); a code the catalogue lacks, or a catalogue code they miss, is a
``ConfigurationError`` when a :class:`World` is made, so the two cannot drift apart silently.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any, Final, NamedTuple

from stream_app.domain.calendar import ReportingPeriod, period_of
from stream_app.domain.catalogue import Catalogue, Indicator
from stream_app.domain.clock import HOUR_MS, local_midnight_ms
from stream_app.exceptions import ConfigurationError
from stream_app.tools.simulation import shapes

# 63 -> 34 provincial units: history before this date is keyed by the legacy codes. The catalogue
# lists both maps but not the date they changed, so the simulator keeps it.
REFORM_DATE: Final = date(2025, 7, 1)
# Periodic models run once per period of this calendar, on its cut-off day (the 14th).
SCHEDULE_CALENDAR: Final = "decree09"


class Traits(NamedTuple):
    """What shapes a legacy province's values: climate/economic ``zone`` (NW NE RRD NC SC CH SE MD),
    ``population`` (millions, rounded, about the 2019 census), ``economy`` (a relative factor)."""

    zone: str
    population: float
    economy: float


# legacy province code: zone, population, economy (names and successors are in the catalogue)
TRAITS: Final[dict[str, Traits]] = {
    code: Traits(zone, float(population), float(economy))
    for code, zone, population, economy in map(
        str.split,
        """
    01 RRD  8.05 4.5
    02 NE   0.85 0.5
    04 NE   0.53 0.5
    06 NE   0.31 0.5
    08 NE   0.78 0.6
    10 NW   0.73 1.0
    11 NW   0.60 0.5
    12 NW   0.46 0.5
    14 NW   1.25 0.5
    15 NW   0.82 0.5
    17 NW   0.85 0.6
    19 NE   1.29 1.5
    20 NE   0.78 0.7
    22 NE   1.32 2.5
    24 NE   1.80 1.2
    25 NE   1.46 0.8
    26 RRD  1.15 2.0
    27 RRD  1.37 2.5
    30 RRD  1.89 1.2
    31 RRD  2.03 3.0
    33 RRD  1.25 1.3
    34 RRD  1.86 0.7
    35 RRD  0.85 1.0
    36 RRD  1.78 0.7
    37 RRD  0.98 1.0
    38 NC   3.64 1.3
    40 NC   3.33 0.8
    42 NC   1.29 1.0
    44 NC   0.90 0.7
    45 NC   0.63 0.7
    46 NC   1.13 1.0
    48 SC   1.13 2.5
    49 SC   1.50 1.0
    51 SC   1.23 1.8
    52 SC   1.49 0.9
    54 SC   0.87 0.7
    56 SC   1.23 1.4
    58 SC   0.59 0.7
    60 SC   1.23 0.9
    62 CH   0.54 0.5
    64 CH   1.51 0.6
    66 CH   1.87 0.6
    67 CH   0.62 0.5
    68 CH   1.30 0.8
    70 SE   0.99 0.8
    72 SE   1.17 1.0
    74 SE   2.43 2.8
    75 SE   3.10 1.8
    77 SE   1.15 4.0
    79 SE   8.99 5.0
    80 MD   1.69 1.3
    82 MD   1.76 0.8
    83 MD   1.29 0.6
    84 MD   1.01 0.6
    86 MD   1.02 0.6
    87 MD   1.60 0.7
    89 MD   1.91 0.7
    91 MD   1.72 0.8
    92 MD   1.24 1.3
    93 MD   0.73 0.6
    94 MD   1.20 0.6
    95 MD   0.91 0.6
    96 MD   1.19 0.7
""".strip().splitlines(),
    )
}

# Coastal provinces, north to south (legacy codes): where storms make landfall.
COAST: Final = tuple(
    shapes.words("22 31 34 36 37 38 40 42 44 45 46 48 49 51 52 54 56 58 60 77 79 82 83 84 94 95 96 91")
)


@dataclass(frozen=True, slots=True)
class Area:
    """A province in force on some day (legacy or current), with what shapes its values."""

    code: str
    zone: str
    population: float
    economy: float  # population x economic factor
    coast: int | None  # position along the coast, north to south
    pop_share: float
    econ_share: float
    members: tuple[str, ...]  # the legacy provinces it is made of


class World:
    """The catalogue as the simulator sees it, with the simulation's own province traits.

    Made once per run from a loaded catalogue; raises ``ConfigurationError`` when the simulator's
    tables and the catalogue disagree.
    """

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        legacy = catalogue.legacy_regions
        self.check_provinces("province traits (TRAITS)", TRAITS, complete=True)
        self.check_provinces("storm coast (COAST)", COAST)
        self._successors = {code: r.successor for code, r in legacy.items() if r.successor is not None}
        self.national = next(code for code, r in catalogue.regions.items() if r.kind == "national")
        self.current = tuple(code for code, r in catalogue.regions.items() if r.kind == "current")
        self._areas = {era: _areas(self._successors, legacy=era) for era in (True, False)}
        self._station_regions = {
            code: (station.legacy_region, station.region)
            for code, station in catalogue.stations.items()
            if station.legacy_region is not None
        }

    # --- checks of the simulation's own tables --------------------------------------------------

    def check_provinces(self, table: str, codes: Iterable[str], *, complete: bool = False) -> None:
        """``codes`` (keys of a simulation table) must be legacy province codes of the catalogue;
        with ``complete``, every legacy province must be there."""
        known = self.catalogue.legacy_regions.keys()
        _check_codes(table, "legacy province", set(codes), known, complete=complete)

    def check_stations(self, table: str, kind: str, codes: Collection[str]) -> None:
        """``codes`` must be exactly the catalogue's stations of ``kind``, each with a pre-2025
        province: a station the catalogue lacks, or one of that kind without simulation data, is an
        error."""
        stations = self.catalogue.stations
        wrong = sorted(c for c in codes if c in stations and stations[c].kind != kind)
        if wrong:
            raise ConfigurationError(f"simulator: {table}: station(s) {wrong} are not {kind} stations")
        of_kind = {code for code, station in stations.items() if station.kind == kind}
        _check_codes(table, f"{kind} station", set(codes), of_kind, complete=True)
        unplaced = sorted(c for c in codes if stations[c].legacy_region is None)
        if unplaced:
            raise ConfigurationError(
                f"simulator: {table}: station(s) {unplaced} have no legacy_region (stations.toml): "
                "history before the reform needs the pre-2025 province"
            )

    def indicator(self, code: str) -> Indicator:
        """The catalogue's indicator ``code``; an error when the catalogue has none."""
        found = self.catalogue.indicators.get(code)
        if found is None:
            raise ConfigurationError(f"simulator: indicator {code!r} is not in the catalogue")
        return found

    # --- what the catalogue says, on a given day ----------------------------------------------

    def areas(self, legacy: bool) -> tuple[Area, ...]:
        """The provinces in force before the reform (``legacy``) or after it, by code."""
        return self._areas[legacy]

    def successor(self, legacy_code: str) -> str:
        """The current unit a legacy province merged into."""
        return self._successors[legacy_code]

    def reporter_for(self, indicator: Indicator, region: str, event_ms: int) -> str:
        """Who reports ``indicator`` for ``region`` (a record's code, legacy or current) at
        ``event_ms``: the catalogue's authority then (grid dispatch was EVN's before NSMO's), so the
        simulated history is the official series."""
        return indicator.authority_at(self._current_region(region), event_ms)

    def _current_region(self, code: str) -> str:
        current = self.catalogue.current_region(code)
        if current is None:
            raise ConfigurationError(f"simulator: region {code!r} is not in the catalogue")
        return current

    def place(self, indicator: Indicator, where: str | None, legacy: bool) -> tuple[str, str | None]:
        """(region, station) of a value the simulator made for ``where`` (a station, a province, or
        None for the country), as the catalogue's region level of ``indicator`` wants it."""
        level = indicator.region_level
        if level == "station" and where in self._station_regions:
            old, new = self._station_regions[where]
            return (old if legacy else new), where
        if level == "national" and where is None:
            return self.national, None
        if level == "province" and where is not None and where not in self._station_regions:
            return where, None
        raise ConfigurationError(
            f"simulator: {indicator.code} is reported per {level} in the catalogue, but the simulator "
            f"makes it for {where or 'the whole country'!r}"
        )


def _check_codes(table: str, what: str, codes: set[str], known: Collection[str], *, complete: bool) -> None:
    unknown = sorted(codes - set(known))
    if unknown:
        raise ConfigurationError(f"simulator: {table}: {what}(s) {unknown} are not in the catalogue")
    missing = sorted(set(known) - codes) if complete else []
    if missing:
        raise ConfigurationError(f"simulator: {table}: no simulation data for {what}(s) {missing}")


def _areas(successors: dict[str, str], *, legacy: bool) -> tuple[Area, ...]:
    """The provinces of one era, each the sum of its legacy members' traits."""
    groups: dict[str, list[str]] = {}
    for code, successor in successors.items():
        groups.setdefault(code if legacy else successor, []).append(code)
    total_pop = sum(TRAITS[c].population for c in successors)
    total_econ = sum(TRAITS[c].population * TRAITS[c].economy for c in successors)
    out = []
    for code, members in groups.items():
        population = sum(TRAITS[m].population for m in members)
        economy = sum(TRAITS[m].population * TRAITS[m].economy for m in members)
        coast = [COAST.index(m) for m in members if m in COAST]
        # a current unit keeps the code (and so the zone) of the province hosting its seat
        seat = code if code in members else max(members, key=lambda m: TRAITS[m].population)
        out.append(
            Area(
                code,
                TRAITS[seat].zone,
                population,
                economy,
                min(coast) if coast else None,
                population / total_pop,
                economy / total_econ,
                tuple(members),
            )
        )
    return tuple(sorted(out, key=lambda a: a.code))


def observation(
    indicator: Indicator,
    *,
    observation_id: str,
    reporter: str,
    place: tuple[str, str | None],
    value: float,
    event_ms: int,
    report_ms: int,
    period: str | None = None,
    breakdowns: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A simulated observation shaped like the Avro contract (times in epoch ms): the first, final
    revision, at ``place`` (region, station), in the catalogue's unit of ``indicator``."""
    region, station = place
    return {
        "observation_id": observation_id,
        "revision": 0,
        "reporter": reporter,
        "indicator": indicator.code,
        "region": region,
        "station": station,
        "value": value,
        "unit": indicator.unit,
        "event_time": event_ms,
        "report_time": report_ms,
        "quality": "FINAL",
        "period": period,
        "breakdowns": breakdowns or {},
    }


def local_ms(day: date, hour: int) -> int:
    """Epoch milliseconds of ``hour`` o'clock local time on ``day``."""
    return local_midnight_ms(day) + hour * HOUR_MS


@dataclass(slots=True)
class Day:
    """What every model needs to know about one simulated day."""

    world: World
    day: date
    seed: int
    legacy: bool
    areas: tuple[Area, ...]
    doy: int
    yf: float  # year with fraction, for growth tables
    noon_ms: int  # noon local: unambiguously this local date

    @classmethod
    def of(cls, world: World, day: date, seed: int) -> Day:
        legacy = day < REFORM_DATE
        doy = day.timetuple().tm_yday
        yf = day.year + (doy - 0.5) / 365.25
        return cls(world, day, seed, legacy, world.areas(legacy), doy, yf, local_ms(day, 12))

    def rng(self, name: str) -> random.Random:
        """This day's random numbers for ``name``: the same for the same seed and date."""
        return random.Random(f"{self.seed}|{name}|{self.day.isoformat()}")

    def bump(self, name: str, spec: shapes.Spec) -> float:
        return shapes.bump(self.seed, name, self.day, spec)

    def period(self, frequency: str) -> ReportingPeriod:
        """The period of ``frequency`` (in the schedule's calendar) holding this day."""
        return period_of(frequency, SCHEDULE_CALENDAR, self.noon_ms)

    def closes(self, frequency: str) -> bool:
        """Whether this day is the last of its period of ``frequency``: every day for daily ones,
        the cut-off day (the 14th) of each month, quarter or year for periodic ones."""
        return self.period(frequency).end == self.day


# A simulated value: indicator, where (a station, a province's code, or None for the whole country),
# value, breakdowns. :meth:`World.place` turns ``where`` into the record's region and station.
Value = tuple[str, str | None, float, dict[str, str] | None]
Model = Callable[[Day], Iterator[Value]]
