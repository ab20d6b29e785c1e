"""The loaded rules: which apply to an entity, with its overrides and its own level table.

Pure lookups over data checked at load (``stream_app.domain.alerting.loader``); nothing here can fail on a
record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from stream_app.domain.alerting.model import Entity, LevelsParams, Rule
from stream_app.domain.catalogue import Catalogue, Indicator, Level

_EntityKey = tuple[str, str, str | None]


@dataclass(frozen=True, slots=True)
class RuleBook:
    """Every alert rule, by indicator, with its region and station overrides.

    ``rules`` are the indicator-wide rules in file order, ``late_report`` ones included (also those
    the ``[defaults]`` switch generated). A ``levels`` rule on the catalogue's levels carries the
    indicator's own table here; ``rules_for`` gives it each station's (flood alarm levels differ
    per station). ``stations_of`` maps a station-level indicator to the kind of station reporting
    it, to list the entities timer rules watch.
    """

    source: Path
    rules: tuple[Rule, ...]
    catalogue: Catalogue = field(repr=False, compare=False)
    region_overrides: Mapping[tuple[str, str], Rule] = field(default_factory=dict)
    station_overrides: Mapping[tuple[str, str], Rule] = field(default_factory=dict)
    stations_of: Mapping[str, str] = field(default_factory=dict)
    # (indicator, region, station) -> its rules; runs per record, so resolved once per entity.
    _resolved: dict[_EntityKey, tuple[Rule, ...]] = field(default_factory=dict, repr=False, compare=False)

    def rules_for(self, indicator: str, region: str, station: str | None) -> tuple[Rule, ...]:
        """The rules of one entity, in file order: per rule, a station override beats a region
        override beats the indicator rule. ``region`` is the current unit (as validation maps it).
        A ``levels`` rule is left out where no level table applies (a station without flood
        alarm levels). Cached: the answer depends only on the arguments."""
        key = (indicator, region, station)
        found = self._resolved.get(key)
        if found is None:
            mine = (
                self._for_entity(rule, region, station) for rule in self.rules if rule.indicator == indicator
            )
            found = tuple(rule for rule in mine if rule is not None)
            self._resolved[key] = found
        return found

    def timer_rules_for(self, indicator: str, region: str, station: str | None) -> tuple[Rule, ...]:
        """The rules of one entity that are evaluated on timer ticks (absence, late_report)."""
        return tuple(rule for rule in self.rules_for(indicator, region, station) if rule.on_ticks)

    def late_report_entities(self) -> list[Entity]:
        """Every entity a periodic report is expected from: each current province for
        province-level indicators, "VN" for national ones, each station of the indicator's kind for
        station-level ones."""
        return self._entities_of("late_report")

    def absence_entities(self) -> list[Entity]:
        """Every entity whose feed an ``absence`` rule watches, listed as for late reports."""
        return self._entities_of("absence")

    def timer_entities(self) -> list[Entity]:
        """Every entity a timer tick must visit: those of the absence and late_report rules."""
        return sorted(set(self.late_report_entities()) | set(self.absence_entities()))

    def entities_of(self, indicator: Indicator) -> list[Entity]:
        """The entities an indicator is expected from, by its region level."""
        catalogue = self.catalogue
        if indicator.region_level == "national":
            national = [code for code, region in catalogue.regions.items() if region.kind == "national"]
            return [Entity(indicator.code, code) for code in national]
        if indicator.region_level == "province":
            current = sorted(code for code, region in catalogue.regions.items() if region.kind == "current")
            return [Entity(indicator.code, code) for code in current]
        kind = self.stations_of.get(indicator.code)
        return sorted(
            Entity(indicator.code, station.region, station.code)
            for station in catalogue.stations.values()
            if (station.kind == kind if kind is not None else station.levels_indicator == indicator.code)
        )

    def _entities_of(self, kind: str) -> list[Entity]:
        found: set[Entity] = set()
        for rule in self.rules:
            if rule.kind == kind:
                found.update(self.entities_of(self.catalogue.indicators[rule.indicator]))
        return sorted(found)

    def _for_entity(self, rule: Rule, region: str, station: str | None) -> Rule | None:
        chosen = (
            (self.station_overrides.get((rule.rule_id, station)) if station is not None else None)
            or self.region_overrides.get((rule.rule_id, region))
            or rule
        )
        params = chosen.params
        if not isinstance(params, LevelsParams) or params.own_levels:
            return chosen
        indicator = self.catalogue.indicators[chosen.indicator]
        levels = self.catalogue.levels_for(indicator, station)
        if not levels:
            return None
        return replace(
            chosen, levels=levels, alert_from=alert_index(params.alert_from_spec, levels, indicator)
        )


def alert_index(spec: int | str | None, levels: tuple[Level, ...], indicator: Indicator) -> int:
    """The index of the first alerting level: as written (an index or a level code), else the
    catalogue's ``alert_from_level``. ``ValueError`` for a code the table does not have."""
    if spec is None:
        return indicator.alert_from_level
    if isinstance(spec, int):
        return spec
    for level in levels:
        if level.code == spec:
            return level.index
    raise ValueError(f"no level {spec!r} in {[level.code for level in levels]}")
