"""Loading ``catalogue/rules.toml``: alert rules as data, checked against the catalogue at start.

A wrong rule stops the worker with a ``ConfigurationError`` naming the file, the rule (or the
override) and the problem, rather than alerting the Government center on a wrong threshold for
hours. The file's own header documents its format.

Overrides are applied here by re-reading the rule's table with the override's keys laid over it,
so an override is checked exactly like a rule, and keeps the rule's id.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

from stream_app.domain.aggregates import RETENTION_HOURS
from stream_app.domain.alerting.book import RuleBook, alert_index
from stream_app.domain.alerting.model import (
    HOUR_MS,
    KINDS,
    TIMER_KINDS,
    AbsenceParams,
    DeviationParams,
    LateReportParams,
    LevelsParams,
    Params,
    RateParams,
    Rule,
    RuleKind,
)
from stream_app.domain.catalogue import Catalogue, Indicator, Level
from stream_app.exceptions import ConfigurationError

PERIODIC = ("monthly", "quarterly", "half_yearly", "annual")
DEFAULT_ABSENCE_HOURS = {"hourly": 3.0, "daily": 36.0}

_TOP_KEYS = frozenset({"defaults", "ladder", "stations_of", "rule", "override"})
_DEFAULTS_KEYS = frozenset({"late_report", "absence_hours"})
_RULE_KEYS = frozenset({"id", "kind", "indicator"})
_SCOPE_KEYS = frozenset({"rule", "region", "station"})
_PARAM_KEYS: dict[str, frozenset[str]] = {
    "levels": frozenset({"direction", "hysteresis", "min_count", "min_minutes", "alert_from", "levels"}),
    "rate_of_change": frozenset({"direction", "change", "hours", "alert"}),
    "deviation": frozenset({"direction", "days", "k", "min_baseline_days", "sigma_floor", "alert"}),
    "absence": frozenset({"interval_hours", "alert"}),
    "late_report": frozenset({"alert"}),
}
_LEVEL_KEYS = frozenset({"code", "from", "to", "name_vi", "name_en", "colour"})
_STEP_KEYS = frozenset({"code", "name_vi", "name_en", "colour"})
_RULE_ID = re.compile(r"[A-Za-z0-9_.:-]+")
_COLOUR = re.compile(r"#[0-9A-Fa-f]{6}")


@dataclass(frozen=True, slots=True)
class Step:
    """One named step of a two-step ladder: its code, names and colour."""

    code: str
    name_vi: str
    name_en: str
    colour: str


DEFAULT_LADDER: dict[str, Step] = {
    "clear": Step("CLEAR", "Bình thường", "normal", "#00E400"),
    "rate_of_change": Step("RAPID_CHANGE", "Biến động nhanh", "rapid change", "#FF7E00"),
    "deviation": Step("ABNORMAL", "Bất thường", "abnormal", "#FF7E00"),
    "absence": Step("NO_DATA", "Mất dữ liệu", "no data", "#808080"),
    "late_report": Step("LATE", "Chậm báo cáo", "report overdue", "#FFA500"),
}


@dataclass(frozen=True, slots=True)
class _Where:
    """Where a rule's parameters apply: everywhere, in one current region, or at one station."""

    region: str | None = None
    station: str | None = None

    @property
    def scope(self) -> str:
        if self.station is not None:
            return f"station {self.station}"
        return f"region {self.region}" if self.region is not None else "indicator"


@dataclass(frozen=True, slots=True)
class _Context:
    path: Path
    catalogue: Catalogue
    ladder: Mapping[str, Step]
    absence_hours: Mapping[str, float]
    stations_of: Mapping[str, str]


class _Reader:
    """Reads fields of one TOML table, raising errors that name the file and the rule."""

    def __init__(self, path: Path, what: str, table: Mapping[str, Any]) -> None:
        self.path, self.what, self.table = path, what, table

    def fail(self, problem: str) -> ConfigurationError:
        return ConfigurationError(f"{self.path}: {self.what}: {problem}")

    def sub(self, what: str, table: Mapping[str, Any]) -> _Reader:
        return _Reader(self.path, f"{self.what}: {what}", table)

    def only(self, allowed: frozenset[str], why: str = "") -> None:
        unknown = sorted(self.table.keys() - allowed)
        if unknown:
            raise self.fail(f"unknown keys {unknown}{why}; expected some of {sorted(allowed)}")

    def text(self, key: str, default: str | None = None) -> str:
        value = self.table.get(key, default)
        if not isinstance(value, str) or not value:
            raise self.fail(f"{key!r} must be a non-empty string")
        return value

    def choice(self, key: str, allowed: tuple[str, ...], default: str | None = None) -> str:
        value = self.text(key, default)
        if value not in allowed:
            raise self.fail(f"{key!r} is {value!r}; expected one of {', '.join(allowed)}")
        return value

    def number(self, key: str, default: float | None = None, *, positive: bool = False) -> float:
        """A finite number, at least 0 (above 0 if ``positive``); required without a default."""
        value = self.table.get(key, default)
        if value is None:
            raise self.fail(f"{key!r} is required")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(f"{key!r} must be a finite number, not {value!r}")
        if value < 0 or (positive and value == 0):
            raise self.fail(f"{key!r} must be {'above' if positive else 'at least'} 0, not {value!r}")
        return float(value)

    def integer(self, key: str, default: int | None = None, *, at_least: int) -> int:
        value = self.table.get(key, default)
        if value is None:
            raise self.fail(f"{key!r} is required")
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{key!r} must be an integer, not {value!r}")
        if value < at_least:
            raise self.fail(f"{key!r} must be at least {at_least}, not {value}")
        return value

    def colour(self, key: str, default: str | None = None) -> str:
        value = self.text(key, default)
        if not _COLOUR.fullmatch(value):
            raise self.fail(f"{key!r} {value!r} must be #RRGGBB")
        return value


def load_rules(path: Path, catalogue: Catalogue) -> RuleBook:
    """Load and check the alert rules of ``path`` against ``catalogue``.

    Raises ``ConfigurationError`` naming the file, the rule or override and the problem: unknown
    indicator, region, station or kind; missing, unknown or bad parameters; levels out of order,
    overlapping or inverted; an ``alert_from`` beyond the levels; a repeated rule id or override.
    """
    data = _read(path)
    ctx = _Context(
        path,
        catalogue,
        _ladder(path, data.get("ladder", {})),
        _absence_hours(path, data.get("defaults", {})),
        _stations_of(path, data.get("stations_of", {}), catalogue),
    )
    raw: dict[str, dict[str, Any]] = {}
    rules: dict[str, Rule] = {}
    for table in _tables(path, data, "rule"):
        rule_id = _rule_id(table)
        if rule_id in rules:
            raise ConfigurationError(f"{path}: rule {rule_id!r}: duplicate rule id")
        rules[rule_id] = _rule(_Reader(path, f"rule {rule_id!r}", table), ctx, _Where())
        raw[rule_id] = table
    if _generate_late_reports(path, data.get("defaults", {})):
        for table in _late_report_tables(catalogue, rules.values()):
            rule_id = _rule_id(table)
            rules[rule_id] = _rule(
                _Reader(path, f"rule {rule_id!r} (generated by [defaults])", table), ctx, _Where()
            )
            raw[rule_id] = table
    for rule in rules.values():
        _check_watched(path, rule, ctx)
    by_region, by_station = _overrides(ctx, _tables(path, data, "override"), raw)
    return RuleBook(path, tuple(rules.values()), catalogue, by_region, by_station, ctx.stations_of)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{path}: {exc}") from exc
    unknown = sorted(data.keys() - _TOP_KEYS)
    if unknown:
        raise ConfigurationError(f"{path}: unknown sections {unknown}; expected some of {sorted(_TOP_KEYS)}")
    return data


def _tables(path: Path, data: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    tables = data.get(key, [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigurationError(f"{path}: {key!r} must be an array of tables ([[{key}]])")
    return tables


def _section(path: Path, value: object, name: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ConfigurationError(f"{path}: [{name}] must be a table")
    return value


def _rule_id(table: Mapping[str, Any]) -> str:
    """The id a rule table names, else ``<kind>:<indicator>`` (as written, for error messages too)."""
    given = table.get("id")
    if given is not None:
        return str(given)
    return f"{table.get('kind', '?')}:{table.get('indicator', '?')}"


def _ladder(path: Path, value: object) -> dict[str, Step]:
    """[ladder]: the clear step and each non-levels kind's firing step, over the built-in ones."""
    section = _section(path, value, "ladder")
    reader = _Reader(path, "[ladder]", section)
    reader.only(frozenset(DEFAULT_LADDER))
    ladder = dict(DEFAULT_LADDER)
    for name, table in section.items():
        ladder[name] = _step(reader.sub(name, _section(path, table, f"ladder.{name}")), ladder[name])
    return ladder


def _step(reader: _Reader, default: Step) -> Step:
    reader.only(_STEP_KEYS)
    return Step(
        reader.text("code", default.code),
        reader.text("name_vi", default.name_vi),
        reader.text("name_en", default.name_en),
        reader.colour("colour", default.colour),
    )


def _absence_hours(path: Path, value: object) -> dict[str, float]:
    section = _section(path, value, "defaults")
    _Reader(path, "[defaults]", section).only(_DEFAULTS_KEYS)
    table = _section(path, section.get("absence_hours", {}), "defaults.absence_hours")
    reader = _Reader(path, "[defaults] absence_hours", table)
    reader.only(frozenset({"hourly", "daily", "event"}))
    return {**DEFAULT_ABSENCE_HOURS, **{key: reader.number(key, positive=True) for key in table}}


def _generate_late_reports(path: Path, value: object) -> bool:
    switch = _section(path, value, "defaults").get("late_report", False)
    if not isinstance(switch, bool):
        raise ConfigurationError(f"{path}: [defaults]: 'late_report' must be true or false")
    return switch


def _late_report_tables(catalogue: Catalogue, explicit: Iterable[Rule]) -> list[dict[str, Any]]:
    """A late_report rule for every periodic indicator that has none written out."""
    written = {rule.indicator for rule in explicit if rule.kind == "late_report"}
    return [
        {"kind": "late_report", "indicator": code}
        for code, indicator in catalogue.indicators.items()
        if indicator.frequency in PERIODIC and code not in written
    ]


def _stations_of(path: Path, value: object, catalogue: Catalogue) -> dict[str, str]:
    """[stations_of]: indicator -> kind of station that reports it (airport, hydrological ...)."""
    section = _section(path, value, "stations_of")
    kinds = sorted({station.kind for station in catalogue.stations.values()})
    for code, kind in section.items():
        reader = _Reader(path, f"[stations_of] {code!r}", section)
        indicator = catalogue.indicators.get(code)
        if indicator is None:
            raise reader.fail("unknown indicator")
        if indicator.region_level != "station":
            raise reader.fail(f"{code} is reported per {indicator.region_level}, not per station")
        if kind not in kinds:
            raise reader.fail(f"unknown station kind {kind!r}; the catalogue has {', '.join(kinds)}")
    return dict(section)


def _rule(reader: _Reader, ctx: _Context, where: _Where, rule_id: str | None = None) -> Rule:
    """One rule from its table, for the scope ``where``."""
    kind = _kind(reader)
    code = reader.text("indicator")
    indicator = ctx.catalogue.indicators.get(code)
    if indicator is None:
        raise reader.fail(f"unknown indicator {code!r}")
    rule_id = rule_id or reader.text("id", f"{kind}:{code}")
    if not _RULE_ID.fullmatch(rule_id):
        raise reader.fail("the id may hold only letters, digits and _ . : - (it is part of alert keys)")
    reader.only(_RULE_KEYS | _PARAM_KEYS[kind], f" for a {kind} rule")
    params: Params
    if kind == "levels":
        params, levels, alert_from = _levels_rule(reader, ctx, indicator, where)
    else:
        params = _ladder_params(reader, ctx, indicator, kind)
        levels, alert_from = _two_steps(reader, ctx, kind), 1
    return Rule(rule_id, kind, code, indicator.domain, levels, alert_from, params, where.scope)


def _kind(reader: _Reader) -> RuleKind:
    written = reader.choice("kind", KINDS)
    return next(kind for kind in KINDS if kind == written)


def _ladder_params(reader: _Reader, ctx: _Context, indicator: Indicator, kind: RuleKind) -> Params:
    if kind == "rate_of_change":
        return _rate_params(reader, indicator)
    if kind == "deviation":
        return _deviation_params(reader, indicator)
    if kind == "absence":
        return _absence_params(reader, ctx, indicator)
    if indicator.frequency not in PERIODIC:
        raise reader.fail(
            f"late_report needs a {', '.join(PERIODIC)} indicator; {indicator.code} is {indicator.frequency} "
            "(watch it with an absence rule)"
        )
    return LateReportParams(indicator.frequency, indicator.calendar, indicator.deadline_day)


def _two_steps(reader: _Reader, ctx: _Context, kind: str) -> tuple[Level, ...]:
    """The clear/firing ladder of a non-levels rule: [ladder] steps, the rule's ``alert`` over them."""
    clear, firing = ctx.ladder["clear"], ctx.ladder[kind]
    if "alert" in reader.table:
        table = reader.table["alert"]
        if not isinstance(table, dict):
            raise reader.fail(
                "'alert' must be a table { code = ..., name_vi = ..., name_en = ..., colour = ... }"
            )
        firing = _step(reader.sub("alert", table), firing)
    if firing.code == clear.code:
        raise reader.fail(f"the alert step's code {firing.code!r} is the clear step's")
    return (
        Level(0, clear.code, 0.0, clear.name_vi, clear.name_en, clear.colour),
        Level(1, firing.code, 1.0, firing.name_vi, firing.name_en, firing.colour),
    )


def _rate_params(reader: _Reader, indicator: Indicator) -> RateParams:
    if indicator.frequency not in ("hourly", "daily", "event"):
        raise reader.fail(
            f"rate_of_change needs an hourly, daily or event indicator, not {indicator.frequency}"
        )
    direction: Literal["rise", "fall"] = (
        "fall" if reader.choice("direction", ("rise", "fall"), "rise") == "fall" else "rise"
    )
    hours = reader.number("hours", positive=True)
    if hours > RETENTION_HOURS:
        raise reader.fail(f"'hours' {hours:g} is beyond the {RETENTION_HOURS} h of history the state keeps")
    return RateParams(direction, reader.number("change", positive=True), hours)


def _deviation_params(reader: _Reader, indicator: Indicator) -> DeviationParams:
    if indicator.frequency != "daily":
        raise reader.fail(f"deviation compares daily values; {indicator.code} is {indicator.frequency}")
    days = reader.integer("days", at_least=2)
    least = reader.integer("min_baseline_days", 7, at_least=2)
    if least > days:
        raise reader.fail(f"'min_baseline_days' {least} is more than the {days} 'days' of the baseline")
    return DeviationParams(
        days,
        reader.number("k", positive=True),
        least,
        reader.number("sigma_floor", 1.0, positive=True),
        "below" if reader.choice("direction", ("above", "below"), "above") == "below" else "above",
    )


def _absence_params(reader: _Reader, ctx: _Context, indicator: Indicator) -> AbsenceParams:
    default = ctx.absence_hours.get(indicator.frequency)
    if "interval_hours" not in reader.table and default is None:
        raise reader.fail(
            f"'interval_hours' is required: no default interval for a {indicator.frequency} indicator"
        )
    hours = reader.number("interval_hours", default, positive=True)
    return AbsenceParams(round(hours * HOUR_MS))


def _levels_rule(
    reader: _Reader, ctx: _Context, indicator: Indicator, where: _Where
) -> tuple[LevelsParams, tuple[Level, ...], int]:
    direction = reader.choice("direction", ("above", "below"), "above")
    spec = reader.table.get("alert_from")
    if spec is not None and (isinstance(spec, bool) or not isinstance(spec, int | str)):
        raise reader.fail(f"'alert_from' must be a level index or a level code, not {spec!r}")
    params = LevelsParams(
        "below" if direction == "below" else "above",
        reader.number("hysteresis", 0.0),
        reader.integer("min_count", 1, at_least=1),
        reader.number("min_minutes", 0.0),
        own_levels="levels" in reader.table,
        alert_from_spec=spec,
    )
    if params.own_levels:
        tables = [("its levels", _own_levels(reader, indicator, direction))]
    elif direction == "below":
        raise reader.fail(
            "direction 'below' needs levels of its own: the catalogue's levels rise with the value"
        )
    else:
        tables = _catalogue_levels(ctx, indicator, where)
        if not tables:
            raise reader.fail(
                f"no levels for {indicator.code} in the catalogue (indicator or stations) at {where.scope}"
            )
    for name, levels in tables:
        _check_hysteresis(reader, name, levels, params.hysteresis)
        _check_alert_from(reader, name, levels, spec, indicator)
    levels = tables[0][1] if params.own_levels else indicator.levels
    alert_from = alert_index(spec, levels, indicator) if levels else indicator.alert_from_level
    return params, levels, alert_from


def _catalogue_levels(
    ctx: _Context, indicator: Indicator, where: _Where
) -> list[tuple[str, tuple[Level, ...]]]:
    """Every catalogue level table the rule applies to in its scope: the indicator's own, and those
    of the stations grading it (flood alarm levels per station)."""
    catalogue = ctx.catalogue
    if where.station is not None:
        levels = catalogue.levels_for(indicator, where.station)
        return [(f"station {where.station}'s levels", levels)] if levels else []
    found = [(f"{indicator.code}'s levels", indicator.levels)] if indicator.levels else []
    for code, station in sorted(catalogue.stations.items()):
        graded = station.levels and station.levels_indicator == indicator.code
        if graded and where.region in (None, station.region):
            found.append((f"station {code}'s levels", station.levels))
    return found


def _own_levels(reader: _Reader, indicator: Indicator, direction: str) -> tuple[Level, ...]:
    raw = reader.table["levels"]
    if not isinstance(raw, list) or len(raw) < 2 or not all(isinstance(item, dict) for item in raw):
        raise reader.fail(
            "'levels' must be an array of at least two tables ({ code = ..., from = ..., ... })"
        )
    levels: list[Level] = []
    ends: list[float | None] = []
    for index, item in enumerate(raw):
        sub = reader.sub(f"level {item.get('code', index)!r}", item)
        sub.only(_LEVEL_KEYS)
        bound = _finite(sub, "from")
        if not indicator.min_value <= bound <= indicator.max_value:
            raise sub.fail(
                f"'from' {bound:g} is outside {indicator.code}'s range "
                f"[{indicator.min_value:g}, {indicator.max_value:g}]"
            )
        levels.append(
            Level(
                index, sub.text("code"), bound, sub.text("name_vi"), sub.text("name_en"), sub.colour("colour")
            )
        )
        ends.append(_finite(sub, "to") if "to" in item else None)
    _check_order(reader, levels, ends, direction)
    codes = [level.code for level in levels]
    repeated = sorted({code for code in codes if codes.count(code) > 1})
    if repeated:
        raise reader.fail(f"level codes repeated: {repeated}")
    return tuple(levels)


def _finite(reader: _Reader, key: str) -> float:
    value = reader.table.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise reader.fail(f"{key!r} must be a finite number")
    return float(value)


def _check_order(reader: _Reader, levels: list[Level], ends: list[float | None], direction: str) -> None:
    """Bounds strictly increasing ("above") or decreasing ("below"); an optional ``to`` must be on
    the far side of its level's ``from`` (else inverted) and be the next level's ``from`` (else the
    ranges overlap or leave a gap)."""
    sign = -1.0 if direction == "below" else 1.0
    word = "decreasing (direction below)" if direction == "below" else "increasing"
    for before, after in pairwise(levels):
        if sign * after.lower <= sign * before.lower:
            raise reader.fail(
                f"levels not {word}: {after.code} ({after.lower:g}) after {before.code} ({before.lower:g})"
            )
    for level, end in zip(levels, ends, strict=True):
        if end is not None and sign * end <= sign * level.lower:
            raise reader.fail(
                f"level {level.code}: inverted range, 'to' {end:g} is not past 'from' {level.lower:g}"
            )
    for level, end, after in zip(levels, ends, levels[1:], strict=False):
        if end is not None and end != after.lower:
            problem = "overlaps" if sign * end > sign * after.lower else "leaves a gap before"
            raise reader.fail(
                f"level {level.code} ({level.lower:g} to {end:g}) {problem} "
                f"{after.code} (from {after.lower:g})"
            )


def _check_hysteresis(reader: _Reader, name: str, levels: tuple[Level, ...], margin: float) -> None:
    """The margin must be narrower than every level band: otherwise a level would hold into the
    band below the next lower level, and the levels' ranges would overlap."""
    for below, level in pairwise(levels):
        width = abs(level.lower - below.lower)
        if margin >= width:
            raise reader.fail(
                f"hysteresis {margin:g} overlaps the ranges of {name}: {below.code} is only {width:g} wide "
                f"({below.lower:g} to {level.lower:g}), so {level.code} would hold below it"
            )


def _check_alert_from(
    reader: _Reader, name: str, levels: tuple[Level, ...], spec: object, indicator: Indicator
) -> None:
    if isinstance(spec, str) and spec not in [level.code for level in levels]:
        raise reader.fail(
            f"alert_from {spec!r} is not a level of {name} ({', '.join(lv.code for lv in levels)})"
        )
    index = alert_index(spec if isinstance(spec, int | str) else None, levels, indicator)
    if not 1 <= index < len(levels):
        raise reader.fail(
            f"alert_from {index} is beyond {name} (0..{len(levels) - 1}, and 0 is the clear level): "
            "the rule could never alert"
        )


def _check_watched(path: Path, rule: Rule, ctx: _Context) -> None:
    """A timer rule on a station-level indicator must know which stations to watch."""
    indicator = ctx.catalogue.indicators[rule.indicator]
    if (
        rule.kind not in TIMER_KINDS
        or indicator.region_level != "station"
        or rule.indicator in ctx.stations_of
    ):
        return
    if not any(station.levels_indicator == rule.indicator for station in ctx.catalogue.stations.values()):
        raise ConfigurationError(
            f"{path}: rule {rule.rule_id!r}: {rule.indicator} is reported per station: name the kind of "
            "station reporting it in [stations_of]"
        )


def _overrides(
    ctx: _Context, tables: list[dict[str, Any]], raw: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[tuple[str, str], Rule], dict[tuple[str, str], Rule]]:
    """[[override]] tables: ``rule`` (an id), ``region`` or ``station``, and parameters of the rule's
    kind laid over the rule's own."""
    by_region: dict[tuple[str, str], Rule] = {}
    by_station: dict[tuple[str, str], Rule] = {}
    for table in tables:
        rule_id = str(table.get("rule", "?"))
        where = _Where(
            str(table["region"]) if "region" in table else None,
            str(table["station"]) if "station" in table else None,
        )
        reader = _Reader(ctx.path, f"override of rule {rule_id!r} at {where.scope}", table)
        base = raw.get(rule_id)
        if base is None:
            raise reader.fail("unknown rule id")
        kind = str(base.get("kind"))
        reader.only(_SCOPE_KEYS | _PARAM_KEYS[kind], f" for an override of a {kind} rule")
        _check_where(reader, ctx, ctx.catalogue.indicators[str(base["indicator"])], where)
        merged = {**base, **{k: v for k, v in table.items() if k not in _SCOPE_KEYS}}
        rule = _rule(_Reader(ctx.path, reader.what, merged), ctx, where, rule_id)
        target, key = (
            (by_station, where.station) if where.station is not None else (by_region, str(where.region))
        )
        if (rule_id, key) in target:
            raise reader.fail("duplicate override: this rule is already overridden there")
        target[rule_id, key] = rule
    return by_region, by_station


def _check_where(reader: _Reader, ctx: _Context, indicator: Indicator, where: _Where) -> None:
    if (where.region is None) == (where.station is None):
        raise reader.fail("an override names exactly one of 'region' or 'station'")
    if where.station is not None:
        station = ctx.catalogue.stations.get(where.station)
        if station is None:
            raise reader.fail(f"unknown station {where.station!r}")
        if indicator.region_level != "station":
            raise reader.fail(f"{indicator.code} is reported per {indicator.region_level}, not per station")
        kind = ctx.stations_of.get(indicator.code)
        if kind is not None and station.kind != kind:
            raise reader.fail(
                f"station {where.station} is of kind {station.kind}; "
                f"{indicator.code} comes from {kind} stations"
            )
        return
    region = ctx.catalogue.regions.get(str(where.region))
    if region is None:
        raise reader.fail(f"unknown region {where.region!r}")
    if region.kind == "legacy":
        raise reader.fail(
            f"region {region.code!r} is a legacy province merged into {region.successor!r}: "
            "name the current unit"
        )
    if region.kind == "national" or indicator.region_level == "national":
        raise reader.fail(f"{indicator.code} at the national level is what the indicator rule already covers")
