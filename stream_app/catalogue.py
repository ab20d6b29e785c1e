"""The indicator catalogue: who may report what, in which unit and range, with which levels.

Loaded from ``catalogue/indicators.toml`` and checked at start: a wrong entry stops the worker with
a message naming the file, the entry and the problem.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from stream_app.exceptions import ConfigurationError


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
class Indicator:
    """A catalogued indicator."""

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


@dataclass(frozen=True, slots=True)
class Station:
    """A measuring station (hydrological, air quality) in a province."""

    code: str
    name: str
    region: str
    kind: str
    levels: tuple[Level, ...]


@dataclass(frozen=True, slots=True)
class Reporter:
    """A ministry, agency or corporation that reports indicators."""

    code: str
    name_vi: str
    name_en: str
    indicators: frozenset[str]


@dataclass(frozen=True, slots=True)
class Catalogue:
    """Indicators, reporters, regions and stations, by code."""

    indicators: dict[str, Indicator]
    reporters: dict[str, Reporter]
    regions: dict[str, str]
    stations: dict[str, Station]

    def levels_for(self, indicator: Indicator, station: str | None) -> tuple[Level, ...]:
        """A station's own levels (flood alarm levels differ per station), else the indicator's."""
        if station is not None:
            found = self.stations.get(station)
            if found is not None and found.levels:
                return found.levels
        return indicator.levels


class _Entry:
    """Reads fields of one TOML table, raising errors that name the file and the entry."""

    def __init__(self, path: Path, kind: str, table: dict[str, Any]) -> None:
        self.path, self.kind, self.table = path, kind, table
        self.name = str(table.get("code", "?"))

    def fail(self, problem: str) -> ConfigurationError:
        return ConfigurationError(f"{self.path}: {self.kind} {self.name!r}: {problem}")

    def text(self, key: str) -> str:
        value = self.table.get(key)
        if not isinstance(value, str) or not value:
            raise self.fail(f"{key!r} must be a non-empty string")
        return value

    def number(self, key: str) -> float:
        value = self.table.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(f"{key!r} must be a finite number")
        return float(value)

    def levels(self) -> tuple[Level, ...]:
        raw = self.table.get("levels", [])
        levels = []
        for index, item in enumerate(raw):
            sub = _Entry(self.path, f"{self.kind} {self.name!r} level", item)
            levels.append(
                Level(
                    index,
                    sub.text("code"),
                    sub.number("from"),
                    sub.text("name_vi"),
                    sub.text("name_en"),
                    sub.text("colour"),
                )
            )
        for before, after in pairwise(levels):
            if after.lower <= before.lower:
                raise self.fail(
                    f"levels not increasing: {after.code} ({after.lower}) after "
                    f"{before.code} ({before.lower})"
                )
        return tuple(levels)


def load_catalogue(directory: Path) -> Catalogue:
    """Load and check ``indicators.toml`` from ``directory``."""
    path = directory / "indicators.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{path}: {exc}") from exc

    regions = {
        _Entry(path, "region", r).text("code"): _Entry(path, "region", r).text("name")
        for r in data.get("region", [])
    }
    indicators: dict[str, Indicator] = {}
    for table in data.get("indicator", []):
        e = _Entry(path, "indicator", table)
        lo, hi = e.number("min"), e.number("max")
        if lo >= hi:
            raise e.fail(f"min {lo} must be below max {hi}")
        ind = Indicator(
            e.text("code"),
            e.text("name_vi"),
            e.text("name_en"),
            e.text("owner"),
            e.text("unit"),
            lo,
            hi,
            e.text("level"),
            int(e.number("alert_from_level")),
            e.levels(),
        )
        if ind.code in indicators:
            raise e.fail("duplicate code")
        indicators[ind.code] = ind
    stations: dict[str, Station] = {}
    for table in data.get("station", []):
        e = _Entry(path, "station", table)
        st = Station(e.text("code"), e.text("name"), e.text("region"), e.text("kind"), e.levels())
        if st.region not in regions:
            raise e.fail(f"unknown region {st.region!r}")
        stations[st.code] = st
    reporters: dict[str, Reporter] = {}
    for table in data.get("reporter", []):
        e = _Entry(path, "reporter", table)
        codes = frozenset(table.get("indicators", []))
        unknown = sorted(codes - indicators.keys())
        if unknown:
            raise e.fail(f"unknown indicators {unknown}")
        reporters[e.text("code")] = Reporter(e.text("code"), e.text("name_vi"), e.text("name_en"), codes)
    for ind in indicators.values():
        if ind.owner not in reporters:
            raise ConfigurationError(f"{path}: indicator {ind.code!r}: unknown owner {ind.owner!r}")
    return Catalogue(indicators, reporters, regions, stations)
