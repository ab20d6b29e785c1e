"""Loading the catalogue: the TOML files of ``catalogue/`` read, each entry checked, and the files
checked against each other (:func:`load_catalogue`); the first problem raises ``ConfigurationError``
naming the file, the entry and the problem."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any

from stream_app.domain.calendar import CALENDARS, FREQUENCIES
from stream_app.domain.catalogue.entries import (
    AGGREGATIONS,
    DEFAULT_DEADLINE_DAY,
    DOMAINS,
    REGION_KINDS,
    REGION_LEVELS,
    RESERVED_BREAKDOWNS,
    Authority,
    Catalogue,
    Indicator,
    Level,
    Region,
    RegionKind,
    Reporter,
    Station,
)
from stream_app.domain.tables import TableReader, array_of_tables, read_toml
from stream_app.exceptions import ConfigurationError

# Each file holds one kind of table; load_catalogue reads indicators.toml first.
_FILES = {
    "indicators.toml": "indicator",
    "reporters.toml": "reporter",
    "regions.toml": "region",
    "stations.toml": "station",
}
_INDICATOR_KEYS = frozenset(
    {
        "code",
        "name_vi",
        "name_en",
        "domain",
        "owner",
        "reporters",
        "unit",
        "min",
        "max",
        "region_level",
        "aggregation",
        "frequency",
        "calendar",
        "deadline_day",
        "breakdowns",
        "breakdown_values",
        "station_kind",
        "authority",
        "alert_from_level",
        "levels",
    }
)
_REPORTER_KEYS = frozenset({"code", "name_vi", "name_en", "quota_bytes_per_s", "quota_request_percent"})
_REGION_KEYS = frozenset({"code", "name", "kind", "successor"})
_STATION_KEYS = frozenset({"code", "name", "region", "kind", "levels", "levels_indicator", "legacy_region"})
_LEVEL_KEYS = frozenset({"code", "from", "name_vi", "name_en", "colour"})
_AUTHORITY_KEYS = frozenset({"reporter", "from", "until", "regions"})
# Without levels every value is level 0, so an alert threshold of 1 can never be reached.
_NO_ALERT = 1


def _levels(e: TableReader) -> tuple[Level, ...]:
    raw = e.table.get("levels", [])
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise e.fail("'levels' must be an array of tables ({ code = ..., from = ..., ... })")
    levels = []
    for index, item in enumerate(raw):
        sub = e.sub(f"level {str(item.get('code', index))!r}", item)
        sub.only(_LEVEL_KEYS)
        colour = sub.colour("colour")
        levels.append(
            Level(
                index,
                sub.text("code"),
                sub.number("from"),
                sub.text("name_vi"),
                sub.text("name_en"),
                colour,
            )
        )
    for before, after in pairwise(levels):
        if after.lower <= before.lower:
            raise e.fail(
                f"levels not increasing: {after.code} ({after.lower}) after {before.code} ({before.lower})"
            )
    codes = [level.code for level in levels]
    repeated = sorted({c for c in codes if codes.count(c) > 1})
    if repeated:
        raise e.fail(f"level codes repeated: {repeated}")
    return tuple(levels)


def _check_levels(e: TableReader, levels: tuple[Level, ...], indicator: Indicator, alert_from: int) -> None:
    """Levels must lie in the indicator's range, and the alert threshold must be one of them."""
    for level in levels:
        if not indicator.min_value <= level.lower <= indicator.max_value:
            raise e.fail(
                f"level {level.code} from {level.lower} is outside {indicator.code}'s range "
                f"[{indicator.min_value}, {indicator.max_value}]"
            )
    if alert_from < 1:
        raise e.fail(f"alert_from_level {alert_from} must be at least 1: level 0 is the clear level")
    if alert_from >= len(levels):
        raise e.fail(
            f"alert_from_level {alert_from} of {indicator.code} is beyond the levels "
            f"(0..{len(levels) - 1}): no value could ever raise the alert"
        )


def load_catalogue(directory: Path) -> Catalogue:
    """Load and cross-check ``indicators.toml``, ``reporters.toml``, ``regions.toml`` and
    ``stations.toml`` from ``directory``; raise ``ConfigurationError`` naming the first problem."""
    tables = {name: _read(directory / name, key) for name, key in _FILES.items()}
    declared_reporters = _reporters(directory / "reporters.toml", tables["reporters.toml"])
    regions, legacy = _regions(directory / "regions.toml", tables["regions.toml"])
    path = directory / "indicators.toml"
    indicators: dict[str, Indicator] = {}
    alerting: set[str] = set()  # indicators without levels of their own that name an alert threshold
    for table in tables["indicators.toml"]:
        entry = TableReader.entry(path, "indicator", table)
        indicator, explicit_alert = _indicator(entry, declared_reporters, regions, indicators)
        indicators[indicator.code] = indicator
        if explicit_alert and not indicator.levels:
            alerting.add(indicator.code)
    stations = _stations(
        directory / "stations.toml", tables["stations.toml"], regions, indicators, alerting, legacy=legacy
    )
    _check_station_kinds(path, indicators, stations)
    graded = {s.levels_indicator for s in stations.values()}
    ungraded = sorted(alerting - graded)
    if ungraded:
        raise ConfigurationError(
            f"{path}: indicator {ungraded[0]!r}: alert_from_level is set but neither the indicator nor "
            "any station (levels_indicator) has levels"
        )
    reporters = {
        code: replace(entry, indicators=frozenset(i.code for i in indicators.values() if code in i.reporters))
        for code, entry in declared_reporters.items()
    }
    return Catalogue(indicators, reporters, regions, stations, legacy)


def _read(path: Path, key: str) -> list[dict[str, Any]]:
    """The ``[[key]]`` tables of one file; any other top-level content is refused."""
    return array_of_tables(path, read_toml(path, frozenset({key})), key)


def _new_entry(
    path: Path, kind: str, table: dict[str, Any], keys: frozenset[str], found: Mapping[str, object]
) -> tuple[TableReader, str]:
    """A reader of one entry with only ``keys``, and its code, which no entry of ``found`` has."""
    e = TableReader.entry(path, kind, table)
    e.only(keys)
    code = e.text("code")
    if code in found:
        raise e.fail("duplicate code")
    return e, code


def _reporters(path: Path, tables: list[dict[str, Any]]) -> dict[str, Reporter]:
    """The reporters as declared (their indicators come from the indicators' entries)."""
    found: dict[str, Reporter] = {}
    for table in tables:
        e, code = _new_entry(path, "reporter", table, _REPORTER_KEYS, found)
        byte_rate = e.integer("quota_bytes_per_s", 0, at_least=1024) if "quota_bytes_per_s" in table else None
        share = e.number("quota_request_percent", positive=True) if "quota_request_percent" in table else None
        found[code] = Reporter(code, e.text("name_vi"), e.text("name_en"), frozenset(), byte_rate, share)
    return found


def _regions(path: Path, tables: list[dict[str, Any]]) -> tuple[dict[str, Region], dict[str, Region]]:
    """(every code a record may carry, the 63 legacy provinces). Current and national codes share
    one namespace; a legacy code may repeat a current one only as its own successor."""
    units: dict[str, Region] = {}
    legacy: dict[str, Region] = {}
    for table in tables:
        e = TableReader.entry(path, "region", table)
        e.only(_REGION_KEYS)
        region = _region(e)
        found = legacy if region.kind == "legacy" else units
        if region.code in found:
            raise e.fail(f"duplicate code (a {found[region.code].kind} region already has it)")
        found[region.code] = region
    national = sorted(code for code, r in units.items() if r.kind == "national")
    if len(national) != 1:
        raise ConfigurationError(f"{path}: expected exactly one national region (VN), found {national}")
    for region in legacy.values():
        e = TableReader.entry(path, "legacy region", {"code": region.code})
        target = units.get(str(region.successor))
        former = legacy.get(str(region.successor))
        if target is None and former is not None and former.successor != former.code:
            raise e.fail(f"successor {region.successor!r} is a legacy province, not a current unit")
        if target is None:
            raise e.fail(f"successor {region.successor!r} is not a current unit (is a current unit missing?)")
        if target.kind != "current":
            raise e.fail(f"successor {region.successor!r} is the national region, not a current unit")
        if region.code in units and region.successor != region.code:
            raise e.fail(
                f"code {region.code!r} is also a current unit, so its successor must be itself, "
                f"not {region.successor!r}"
            )
    successors = {r.successor for r in legacy.values()}
    for region in units.values():
        if region.kind == "current" and region.code not in successors:
            raise TableReader.entry(path, "current region", {"code": region.code}).fail(
                "no legacy province names it as successor: every current unit merges at least one"
            )
    return {**units, **{code: r for code, r in legacy.items() if code not in units}}, legacy


def _region(e: TableReader) -> Region:
    code, name = e.text("code"), e.text("name")
    if e.choice("kind", REGION_KINDS) == "legacy":
        return Region(code, name, "legacy", e.text("successor"))
    kind: RegionKind = "current" if e.table["kind"] == "current" else "national"
    if "successor" in e.table:
        raise e.fail(f"only a legacy region has a successor; this one is {kind}")
    return Region(code, name, kind)


def _indicator(
    e: TableReader,
    reporters: Mapping[str, object],
    regions: Mapping[str, Region],
    known: Mapping[str, Indicator],
) -> tuple[Indicator, bool]:
    """One indicator, and whether it names its own alert threshold."""
    e.only(_INDICATOR_KEYS)
    code = e.text("code")
    if code in known:
        raise e.fail("duplicate code")
    lo, hi = e.number("min"), e.number("max")
    if lo >= hi:
        raise e.fail(f"min {lo} must be below max {hi}")
    owner = e.text("owner")
    if owner not in reporters:
        raise e.fail(f"unknown owner {owner!r}")
    allowed = e.strings("reporters", required=True)
    _known_codes(e, "reporters", allowed, reporters)
    if owner not in allowed:
        raise e.fail(f"owner {owner!r} is not among its reporters {list(allowed)}")
    frequency = e.choice("frequency", FREQUENCIES)
    period_calendar = e.choice("calendar", CALENDARS)
    region_level = e.choice("region_level", REGION_LEVELS)
    breakdowns = e.strings("breakdowns", required=False)
    reserved = sorted(RESERVED_BREAKDOWNS.intersection(breakdowns))
    if reserved:
        raise e.fail(
            f"breakdown name(s) {reserved} are reserved: validation adds them to a co-reporter's "
            "observations, to keep its figures apart from the official ones"
        )
    explicit_alert = "alert_from_level" in e.table
    indicator = Indicator(
        code=code,
        name_vi=e.text("name_vi"),
        name_en=e.text("name_en"),
        owner=owner,
        unit=e.text("unit"),
        min_value=lo,
        max_value=hi,
        region_level=region_level,
        alert_from_level=e.integer("alert_from_level", _NO_ALERT),
        levels=_levels(e),
        reporters=frozenset(allowed),
        frequency=frequency,
        calendar=period_calendar,
        deadline_day=_deadline_day(e, period_calendar),
        aggregation=e.choice("aggregation", AGGREGATIONS),
        breakdowns=breakdowns,
        domain=e.choice("domain", DOMAINS),
        station_kind=_station_kind(e, region_level),
        breakdown_values=_breakdown_values(e, breakdowns),
        authority=_authority(e, allowed, region_level, regions),
    )
    if indicator.levels:
        if not explicit_alert:
            raise e.fail("'alert_from_level' is required with levels")
        _check_levels(e, indicator.levels, indicator, indicator.alert_from_level)
    return indicator, explicit_alert


def _station_kind(e: TableReader, region_level: str) -> str | None:
    """Required of station indicators (checked against the stations once they are loaded), refused
    of the others."""
    if region_level == "station":
        if "station_kind" not in e.table:
            raise e.fail(
                "'station_kind' is required with region_level \"station\": the kind of station "
                "(stations.toml) that reports it"
            )
        return e.text("station_kind")
    if "station_kind" in e.table:
        raise e.fail(
            f"'station_kind' is only for station indicators; this one is reported per {region_level}"
        )
    return None


def _breakdown_values(e: TableReader, breakdowns: tuple[str, ...]) -> dict[str, frozenset[str]]:
    raw = e.table.get("breakdown_values", {})
    if not isinstance(raw, dict):
        raise e.fail("'breakdown_values' must be a table of arrays ({ name = [\"value\", ...] })")
    found: dict[str, frozenset[str]] = {}
    for name, values in raw.items():
        if name not in breakdowns:
            raise e.fail(
                f"'breakdown_values' names {name!r}, which is not among its breakdowns {list(breakdowns)}"
            )
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, str) and v and v.isprintable() for v in values)
        ):
            raise e.fail(
                f"'breakdown_values' {name!r} must be a non-empty array of non-empty printable strings"
            )
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise e.fail(f"'breakdown_values' {name!r} repeats {repeated}")
        found[name] = frozenset(values)
    return found


def _authority(
    e: TableReader, reporters: tuple[str, ...], region_level: str, regions: Mapping[str, Region]
) -> tuple[Authority, ...]:
    """The ``authority`` entries, in order (the first that covers an observation wins)."""
    raw = e.table.get("authority", [])
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise e.fail("'authority' must be an array of tables ({ reporter = ..., from = ..., until = ... })")
    entries = []
    for item in raw:
        sub = e.sub(f"authority {str(item.get('reporter', '?'))!r}", item)
        sub.only(_AUTHORITY_KEYS)
        reporter = sub.text("reporter")
        if reporter not in reporters:
            raise sub.fail(f"reporter {reporter!r} is not among the indicator's reporters {list(reporters)}")
        since, until = sub.optional_date("from"), sub.optional_date("until")
        if since is not None and until is not None and since >= until:
            raise sub.fail(f"'from' {since} must be before 'until' {until}")
        covered = None
        if "regions" in item:
            covered = sub.strings("regions", required=True)
            for code in covered:
                _authority_region(sub, code, region_level, regions)
        entries.append(Authority(reporter, since, until, None if covered is None else frozenset(covered)))
    return tuple(entries)


def _authority_region(e: TableReader, code: str, region_level: str, regions: Mapping[str, Region]) -> None:
    """Authority is looked up by the unit an observation is kept under: today's unit, or "VN"."""
    region = current_region(
        e,
        regions,
        code,
        unknown="unknown region {code!r} in 'regions'",
        legacy="region {code!r} is a legacy province, merged into {successor!r}: 'regions' are today's units,"
        " which observations under the old codes are kept in",
    )
    if (region.kind == "national") != (region_level == "national"):
        raise e.fail(f"region {code!r} never holds observations of an indicator reported per {region_level}")


def current_region(
    e: TableReader,
    regions: Mapping[str, Region],
    code: str,
    *,
    legacy: str,
    unknown: str = "unknown region {code!r}",
) -> Region:
    """The region ``code`` names, which must be known and not a legacy province (merged away on
    2025-07-01); else ``e`` fails with ``unknown`` or ``legacy`` (``{code!r}`` and ``{successor!r}``
    filled in), worded for what names the region: a station, an authority, an alert rule's override."""
    region = regions.get(code)
    if region is None:
        raise e.fail(unknown.format(code=code))
    if region.kind == "legacy":
        raise e.fail(legacy.format(code=code, successor=region.successor))
    return region


def _check_station_kinds(
    path: Path, indicators: Mapping[str, Indicator], stations: Mapping[str, Station]
) -> None:
    """Each station indicator's ``station_kind`` must be the kind of some station."""
    kinds = {station.kind for station in stations.values()}
    for indicator in indicators.values():
        if indicator.station_kind is not None and indicator.station_kind not in kinds:
            raise TableReader.entry(path, "indicator", {"code": indicator.code}).fail(
                f"'station_kind' {indicator.station_kind!r} is not the kind of any station in "
                f"stations.toml ({', '.join(sorted(kinds))})"
            )


def _deadline_day(e: TableReader, period_calendar: str) -> int:
    day = e.integer("deadline_day", DEFAULT_DEADLINE_DAY)
    # decree09 periods end on the 14th and Art. 13 wants at least one day between cut-off and deadline.
    first = 16 if period_calendar == "decree09" else 1
    if not first <= day <= 28:
        raise e.fail(f"deadline_day {day} must be {first}..28 for the {period_calendar} calendar")
    return day


def _known_codes(e: TableReader, key: str, codes: Iterable[str], known: Mapping[str, object]) -> None:
    unknown = sorted(set(codes) - known.keys())
    if unknown:
        raise e.fail(f"unknown {key} {unknown}")


def _stations(
    path: Path,
    tables: list[dict[str, Any]],
    regions: Mapping[str, Region],
    indicators: Mapping[str, Indicator],
    alerting: set[str],
    *,
    legacy: Mapping[str, Region],
) -> dict[str, Station]:
    stations: dict[str, Station] = {}
    for table in tables:
        e, code = _new_entry(path, "station", table, _STATION_KEYS, stations)
        station = Station(
            code,
            e.text("name"),
            e.text("region"),
            e.text("kind"),
            _levels(e),
            e.optional_text("levels_indicator"),
        )
        _station_region(e, station.region, regions)
        station = _station_legacy_region(e, station, legacy)
        _station_levels(e, station, indicators, alerting)
        stations[code] = station
    return stations


def _station_region(e: TableReader, code: str, regions: Mapping[str, Region]) -> None:
    region = current_region(
        e,
        regions,
        code,
        legacy="region {code!r} is a legacy province, merged into {successor!r} on 2025-07-01: a station"
        " belongs to a current unit",
    )
    if region.kind == "national":
        raise e.fail(f"region {code!r} is the national pseudo-region: a station belongs to a current unit")


def _station_legacy_region(e: TableReader, station: Station, legacy: Mapping[str, Region]) -> Station:
    """The station with its pre-2025 province: as given (a legacy province that merged into the
    station's region), else the station's own code when that is also a legacy one."""
    code = e.optional_text("legacy_region")
    if code is None:
        return replace(station, legacy_region=station.region if station.region in legacy else None)
    province = legacy.get(code)
    if province is None:
        raise e.fail(f"'legacy_region' {code!r} is not a legacy province")
    if province.successor != station.region:
        raise e.fail(
            f"'legacy_region' {code!r} merged into {province.successor!r}, not into the station's "
            f"region {station.region!r}"
        )
    return replace(station, legacy_region=code)


def _station_levels(
    e: TableReader, station: Station, indicators: Mapping[str, Indicator], alerting: set[str]
) -> None:
    if not station.levels and station.levels_indicator is None:
        return
    if station.levels_indicator is None:
        raise e.fail("levels need 'levels_indicator', the indicator they grade")
    if not station.levels:
        raise e.fail(f"'levels_indicator' {station.levels_indicator!r} without levels")
    indicator = indicators.get(station.levels_indicator)
    if indicator is None:
        raise e.fail(f"unknown indicator {station.levels_indicator!r} in 'levels_indicator'")
    if indicator.region_level != "station":
        raise e.fail(
            f"levels for {indicator.code}, which is reported per {indicator.region_level}, not station"
        )
    if not indicator.levels and indicator.code not in alerting:
        raise e.fail(f"levels for {indicator.code}, which has no alert_from_level")
    _check_levels(e, station.levels, indicator, indicator.alert_from_level)
