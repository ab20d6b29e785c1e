"""The read model of the query API: what the center asks of the state in Redis, as plain dicts.

Every answer is read from what the consolidate and roll-up agents committed (entity state and period
hashes, roll-up hashes, the active-alerts and reporter indexes), in one pipelined round trip where it
can. Parameters are checked against the catalogue first: a wrong one raises :class:`BadRequest`
with a message naming it and what is allowed.

The parameters: :mod:`~stream_app.api.params`; how the answers look as JSON: :mod:`~stream_app.api.views`.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from stream_app.api.params import BadRequest, NotFound, RequestParameters, Where, series_param
from stream_app.api.views import (
    _alert_summary,
    _breakdowns,
    _levels_view,
    _value,
    agg_view,
    history_view,
    period_view,
)
from stream_app.domain.aggregates import (
    ROLLING_WINDOWS,
    Agg,
    chart_frequency,
    close_time_ms,
    combine,
    hour_of,
    period_by_label,
    period_frequencies,
    same_period_last_year,
    series_of,
    yoy_change_pct,
)
from stream_app.domain.alerting import RuleBook
from stream_app.domain.alerting.model import Entity
from stream_app.domain.calendar import PERIODS_PER_YEAR, ReportingPeriod, period_of, periods_up_to
from stream_app.domain.catalogue import Catalogue, Indicator, Level
from stream_app.domain.clock import local_date, local_iso
from stream_app.domain.consolidation import time_aggregation
from stream_app.domain.entity import EntityKey, EntityState, SeriesPeriod
from stream_app.domain.model import CO_REPORTER_BREAKDOWN
from stream_app.domain.rollup import NATIONAL, combine_sources, targets
from stream_app.state.store import StateLayer

__all__ = [
    "BadRequest",
    "NotFound",
    "ReadModel",
    "Where",
    "agg_view",
    "due_period",
    "period_view",
    "series_param",
]


class ReadModel(RequestParameters):
    """Answers the query API's questions from Redis."""

    def __init__(self, store: StateLayer, catalogue: Catalogue, rulebook: RuleBook) -> None:
        self.store = store
        self.catalogue = catalogue
        self.rulebook = rulebook

    # ---------------------------------------------------------------------------- answers

    def indicators(self) -> list[dict[str, Any]]:
        return [
            {
                "code": i.code,
                "name_vi": i.name_vi,
                "name_en": i.name_en,
                "domain": i.domain,
                "owner": i.owner,
                "reporters": sorted(i.reporters),
                "unit": i.unit,
                "frequency": i.frequency,
                "calendar": i.calendar,
                "aggregation": i.aggregation,
                "region_level": i.region_level,
                "breakdowns": list(i.breakdowns),
                "periods": list(period_frequencies(i.frequency)),
            }
            for i in sorted(self.catalogue.indicators.values(), key=lambda i: i.code)
        ]

    async def latest(self, where: Where) -> dict[str, Any]:
        state = await self._state(where)
        latest = state.latest_of(where.series)
        if latest is None:
            raise NotFound(f"no values of {where.entity}")
        level = {
            rule_id: rule_state.level
            for rule_id, rule_state in state.rules.items()
            if rule_id.startswith("levels:")
        }
        return {
            **self._entity_view(where),
            "value": latest.last_value,
            "event_time": local_iso(latest.last_time),
            "reporter": state.reporter,
            "last_received": local_iso(state.last_seen) if state.last_seen >= 0 else None,
            "alert_levels": level,
        }

    async def windows(self, where: Where) -> dict[str, Any]:
        state = await self._state(where)
        latest = state.latest_of(where.series)
        if latest is None:
            raise NotFound(f"no values of {where.entity}")
        end_hour, end_day = hour_of(latest.last_time), local_date(latest.last_time).toordinal()
        out = []
        for name, grain, size in ROLLING_WINDOWS:
            if grain == "hour":
                parts = [
                    a
                    for (s, h), a in state.hours.items()
                    if s == where.series and end_hour - size < h <= end_hour
                ]
            else:
                parts = [
                    a
                    for (s, d), a in state.days.items()
                    if s == where.series and end_day - size < d <= end_day
                ]
            agg = combine(parts)
            if agg is not None:
                out.append({"window": name, **agg_view(agg, where.indicator)})
        return {**self._entity_view(where), "ends_at": local_iso(latest.last_time), "windows": out}

    async def periods(self, where: Where, label: str | None, now_ms: int) -> dict[str, Any]:
        if label:
            period = self.period(where.indicator, label, now_ms)
            wanted = [(where.series, period.label), (where.series, same_period_last_year(period.label))]
            found = await self.store.entity_periods(where.entity, wanted)
            this, last = found[wanted[0]], found[wanted[1]]
            if this is None:
                raise NotFound(f"no values of {where.entity} in {period.label}")
            base = _value(last, where.indicator) if last else None
            view = {**period_view(period, now_ms), **agg_view(this, where.indicator, last_year=base)}
            return {**self._entity_view(where), "periods": [view]}
        stored = await self.store.entity_periods(where.entity)
        mine = {name: agg for (series, name), agg in stored.items() if series == where.series and agg}
        if not mine:
            raise NotFound(f"no periods of {where.entity}")
        views = []
        for name in sorted(mine):
            period = period_by_label(name, where.indicator.calendar, where.indicator.deadline_day)
            previous = mine.get(same_period_last_year(name))
            base = _value(previous, where.indicator) if previous is not None else None
            views.append(
                {**period_view(period, now_ms), **agg_view(mine[name], where.indicator, last_year=base)}
            )
        return {**self._entity_view(where), "periods": views}

    async def history(self, where: Where, frequency: str | None, now_ms: int) -> dict[str, Any]:
        """A series' last year of periods (up to the one holding now) beside the same periods the year
        before, in one round trip; and the regulation levels its values are judged by (the rules'),
        for a chart. ``frequency``: one of the indicator's period frequencies (default: its
        :func:`chart_frequency`); a year of it, ``PERIODS_PER_YEAR`` periods at most (365 days)."""
        indicator = where.indicator
        chosen = frequency or chart_frequency(indicator.frequency)
        allowed = period_frequencies(indicator.frequency)
        if chosen not in allowed:
            raise BadRequest(f"frequency {chosen!r} is not one of {indicator.code}'s periods {list(allowed)}")
        periods = periods_up_to(
            chosen, indicator.calendar, now_ms, PERIODS_PER_YEAR[chosen], indicator.deadline_day
        )
        wanted = [(where.series, p.label) for p in periods]
        wanted += [(where.series, same_period_last_year(p.label)) for p in periods]
        found = await self.store.entity_periods(where.entity, wanted)
        if not any(found.values()):
            raise NotFound(f"no {chosen} periods of {where.entity} in the last two years")
        return {
            **self._entity_view(where),
            "frequency": chosen,
            "levels": _levels_view(self._entity_levels(where)),
            "periods": [
                history_view(p, found[where.series, p.label], found[last], indicator, now_ms)
                for p, last in zip(periods, wanted[len(periods) :], strict=True)
            ],
        }

    async def rollup(
        self, indicator: Indicator, target: str, series: str, label: str | None, now_ms: int
    ) -> dict[str, Any]:
        if indicator.aggregation == "last" or indicator.region_level == "national":
            raise BadRequest(
                f"{indicator.code} is not rolled up "
                f"(aggregation {indicator.aggregation}, reported {indicator.region_level})"
            )
        current = self.catalogue.current_region(target)
        if current is None:
            raise BadRequest(f"unknown region {target!r}")
        if current != NATIONAL and indicator.region_level != "station":
            raise BadRequest(f"{indicator.code} is rolled up nationally only (region=VN)")
        period = self.period(indicator, label, now_ms)
        this, last = await self._rollup_pair(indicator, current, series, period.label)
        if this is None:
            raise NotFound(f"no values of {indicator.code} in {current} for {period.label}")
        return {
            "indicator": indicator.code,
            "region": current,
            "scope": "NATIONAL" if current == NATIONAL else "PROVINCE",
            "breakdowns": _breakdowns(series),
            "aggregation": indicator.aggregation,
            "unit": indicator.unit,
            **period_view(period, now_ms),
            **agg_view(this.agg, indicator, last_year=last.value if last else None),
            "value": this.value,
            "yoy_change_pct": yoy_change_pct(this.value, last.value if last else None),
            "contributors": this.contributors,
        }

    async def _rollup_pair(
        self, indicator: Indicator, target: str, series: str, label: str
    ) -> tuple[Any, Any]:
        this, last = await self.store.rollup_sources(
            indicator.code, target, series, [label, same_period_last_year(label)]
        )
        return combine_sources(indicator, this), combine_sources(indicator, last)

    async def active_alerts(self, domain: str | None, min_level: int) -> list[dict[str, Any]]:
        alerts = await self.store.active_alerts()
        chosen = [a for a in alerts if (domain is None or a["domain"] == domain) and a["level"] >= min_level]
        return sorted(chosen, key=lambda a: (-a["level"], a["alert_key"]))

    async def compliance(self, reporter: str | None, at_ms: int) -> dict[str, Any]:
        """Reporting compliance: per reporter and indicator, the latest period whose deadline has
        passed — units expected, received, on time, late, missing, sending only TEST data; and
        whether the indicator is connected at all (has ever sent anything)."""
        if reporter is not None and reporter not in self.catalogue.reporters:
            raise BadRequest(f"unknown reporter {reporter!r}")
        chosen = [reporter] if reporter else sorted(self.catalogue.reporters)
        connected_sets = await self.store.reporter_entities(chosen)
        # (reporter, indicator, period, entity, period field): a reporter's own figures are the
        # official series where it is the authority, else its co-reporter series (reporter=<code>).
        plan: list[tuple[str, Indicator, ReportingPeriod, str, SeriesPeriod]] = []
        for code in chosen:
            own_series = series_of({CO_REPORTER_BREAKDOWN: code})
            for indicator in sorted(self.catalogue.indicators.values(), key=lambda i: i.code):
                if code not in indicator.reporters:
                    continue
                period = due_period(indicator, at_ms)
                for expected in self.rulebook.entities_of(indicator):
                    name = str(EntityKey(expected.indicator, expected.region, expected.station))
                    official = indicator.authority_at(expected.region, period.start_ms) == code
                    plan.append(
                        (code, indicator, period, name, ("" if official else own_series, period.label))
                    )
        stored = await self.store.period_values([(entity, field) for _, _, _, entity, field in plan])
        reports: dict[str, dict[str, Any]] = {}
        for code, connected in zip(chosen, connected_sets, strict=True):
            names = connected
            reports[code] = {
                "reporter": code,
                "name_vi": self.catalogue.reporters[code].name_vi,
                "name_en": self.catalogue.reporters[code].name_en,
                "indicators": {},
                "_connected": {n.split("|", 1)[0] for n in names},
            }
        for (code, indicator, period, _, _), agg in zip(plan, stored, strict=True):
            entry = reports[code]["indicators"].setdefault(
                indicator.code,
                {
                    "indicator": indicator.code,
                    "frequency": indicator.frequency,
                    **period_view(period, at_ms),
                    "connected": indicator.code in reports[code]["_connected"],
                    "expected": 0,
                    "received": 0,
                    "on_time": 0,
                    "late": 0,
                    "missing": 0,
                    "test_only": 0,
                },
            )
            entry["expected"] += 1
            if agg is None:
                entry["missing"] += 1
                continue
            entry["received"] += 1
            entry[
                "on_time" if agg.first_arrival and agg.first_arrival <= close_time_ms(period) else "late"
            ] += 1
            entry["test_only"] += int(agg.n_test == agg.count)
        out = []
        for report in reports.values():
            del report["_connected"]
            indicators = list(report["indicators"].values())
            report["indicators"] = indicators
            report["summary"] = {
                "indicators_expected": len(indicators),
                "indicators_connected": sum(i["connected"] for i in indicators),
                "indicators_complete_on_time": sum(i["on_time"] == i["expected"] for i in indicators),
                "indicators_only_test_data": sum(
                    i["received"] > 0 and i["test_only"] == i["received"] for i in indicators
                ),
                "indicators_missing": sum(i["received"] == 0 for i in indicators),
            }
            out.append(report)
        total = {
            key: sum(r["summary"][key] for r in out)
            for key in ("indicators_expected", "indicators_connected", "indicators_complete_on_time",
                        "indicators_only_test_data", "indicators_missing")
        }  # fmt: skip
        return {"at": local_iso(at_ms), "summary": total, "reporters": out}

    async def briefing(self, day: date, now_ms: int) -> dict[str, Any]:
        """The daily briefing of ``day``: the daily information groups' national values, with the
        same day last year, and the open alerts by domain."""
        daily = [
            i
            for i in sorted(self.catalogue.indicators.values(), key=lambda i: (i.domain, i.code))
            if i.frequency in ("hourly", "daily")
        ]
        label = day.isoformat()
        items = []
        for indicator in daily:
            if indicator.region_level == "national" or not targets(indicator, "01", None):
                national = str(EntityKey(indicator.code, NATIONAL, None))
                this, last = await self.store.period_values(
                    [(national, ("", label)), (national, ("", same_period_last_year(label)))]
                )
                value = _value(this, indicator) if this else None
                base = _value(last, indicator) if last else None
                contributors, quality = (1 if this else 0), (this.quality if this else "")
            else:
                combined, previous = await self._rollup_pair(indicator, NATIONAL, "", label)
                value = combined.value if combined else None
                base = previous.value if previous else None
                contributors = combined.contributors if combined else 0
                quality = combined.agg.quality if combined else ""
            items.append(
                {
                    "domain": indicator.domain,
                    "indicator": indicator.code,
                    "name_vi": indicator.name_vi,
                    "name_en": indicator.name_en,
                    "unit": indicator.unit,
                    "value": value,
                    "contributors": contributors,
                    "same_period_last_year": base,
                    "yoy_change_pct": yoy_change_pct(value, base) if value is not None else None,
                    "quality": quality,
                }
            )
        open_alerts: dict[str, int] = {}
        for alert in await self.active_alerts(None, 0):
            open_alerts[alert["domain"]] = open_alerts.get(alert["domain"], 0) + 1
        return {
            "briefing_id": f"briefing-{label}",
            "date": label,
            "generated_at": now_ms,
            "items": items,
            "open_alerts": open_alerts,
        }

    async def overview(self, indicator_code: str | None) -> dict[str, Any]:
        """The country at a glance, in one answer: every current provincial unit with its worst open
        alert (of ``indicator_code`` when given, else of any indicator) and, for an indicator reported
        per province or per station, its latest value there (a station indicator: the station with the
        worst open alert, else the newest value). What the center's map draws."""
        indicator = self.indicator(indicator_code) if indicator_code else None
        alerts = await self.active_alerts(None, 0)
        if indicator is not None:
            alerts = [a for a in alerts if a["indicator"] == indicator.code]
        worst: dict[str, dict[str, Any]] = {}
        counts: dict[str, int] = {}
        for alert in alerts:  # sorted worst first
            counts[alert["region"]] = counts.get(alert["region"], 0) + 1
            worst.setdefault(alert["region"], alert)
        values: dict[str, dict[str, Any]] = {}
        if indicator is not None and indicator.region_level != "national":
            values = await self._headline_values(indicator, alerts)
        regions = []
        for code, region in sorted(self.catalogue.regions.items()):
            if region.kind != "current":
                continue
            regions.append(
                {
                    "region": code,
                    "name": region.name,
                    "open_alerts": counts.get(code, 0),
                    "alert": _alert_summary(worst[code]) if code in worst else None,
                    "latest": values.get(code),
                }
            )
        return {
            "indicator": indicator.code if indicator is not None else None,
            "unit": indicator.unit if indicator is not None else None,
            "levels": _levels_view(self._legend(indicator)),
            "regions": regions,
        }

    async def region(self, code: str | None, now_ms: int) -> dict[str, Any]:
        """One provincial unit in one answer: per indicator reported there (per station for station
        indicators), the latest value and when, the last 30 days' daily values, this reporting period
        to date and the same period last year, and the open alerts."""
        if not code:
            raise BadRequest("missing parameter 'region' (a current provincial unit, e.g. 01)")
        region = self.catalogue.regions.get(code)
        if region is None or region.kind != "current":
            raise BadRequest(
                f"region {code!r} is not a current provincial unit (GET /api/v1/overview lists them)"
            )
        entities = [
            (indicator, entity)
            for indicator in sorted(self.catalogue.indicators.values(), key=lambda i: (i.domain, i.code))
            if indicator.region_level != "national"
            for entity in self.rulebook.entities_of(indicator)
            if entity.region == code
        ]
        alerts = [a for a in await self.active_alerts(None, 0) if a["region"] == code]
        return {
            "region": code,
            "name": region.name,
            "series": await self._entity_summaries(entities, now_ms),
            "alerts": alerts,
        }

    async def _headline_values(
        self, indicator: Indicator, alerts: list[dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        worst: dict[tuple[str, str | None], int] = {}
        for alert in alerts:  # worst first: the first of a station is its worst
            worst.setdefault((alert["region"], alert["station"]), alert["level"])
        best: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}
        for entity, _, latest in await self._latest(self.rulebook.entities_of(indicator)):
            rank = (worst.get((entity.region, entity.station), 0), latest.last_time)
            if entity.region in best and best[entity.region][0] >= rank:
                continue
            view = {"value": latest.last_value, "event_time": local_iso(latest.last_time)}
            best[entity.region] = (rank, {**self._station(entity), **view})
        return {region: view for region, (_, view) in best.items()}

    async def _entity_summaries(
        self, entities: list[tuple[Indicator, Entity]], now_ms: int
    ) -> list[dict[str, Any]]:
        """Each entity's panel line; two round trips for them all (their states, then their periods)."""
        indicators = {(e.indicator, e.region, e.station): i for i, e in entities}
        found = await self._latest([e for _, e in entities])
        periods = [
            self.period(indicators[e.indicator, e.region, e.station], None, now_ms) for e, _, _ in found
        ]
        wanted = [
            (str(EntityKey(e.indicator, e.region, e.station)), ("", label))
            for (e, _, _), period in zip(found, periods, strict=True)
            for label in (period.label, same_period_last_year(period.label))
        ]
        values = await self.store.period_values(wanted)
        out = []
        for n, ((entity, state, latest), period) in enumerate(zip(found, periods, strict=True)):
            indicator = indicators[entity.indicator, entity.region, entity.station]
            this, last = values[2 * n], values[2 * n + 1]
            last_day = local_date(latest.last_time).toordinal()
            daily = {d: a for (s, d), a in state.days.items() if s == "" and last_day - 30 < d <= last_day}
            aggregation = time_aggregation(indicator)
            out.append(
                {
                    "indicator": indicator.code,
                    "name_vi": indicator.name_vi,
                    "name_en": indicator.name_en,
                    "domain": indicator.domain,
                    "unit": indicator.unit,
                    **self._station(entity),
                    "value": latest.last_value,
                    "event_time": local_iso(latest.last_time),
                    "last_30_days": [
                        {"date": date.fromordinal(d).isoformat(), "value": daily[d].value_by(aggregation)}
                        for d in sorted(daily)
                    ],
                    "period": period.label,
                    "period_to_date": _value(this, indicator) if this else None,
                    "same_period_last_year": _value(last, indicator) if last else None,
                }
            )
        return out

    async def _latest(self, entities: list[Entity]) -> list[tuple[Entity, EntityState, Agg]]:
        """The entities that have values, with their state and the newest day of their own series (one
        round trip)."""
        states = await self.store.entity_states(
            [str(EntityKey(e.indicator, e.region, e.station)) for e in entities]
        )
        found = []
        for entity, state in zip(entities, states, strict=True):
            latest = state.latest_of("") if state is not None else None
            if state is not None and latest is not None:
                found.append((entity, state, latest))
        return found

    def _station(self, entity: Entity) -> dict[str, str | None]:
        station = self.catalogue.stations.get(entity.station) if entity.station else None
        return {"station": entity.station, "station_name": station.name if station is not None else None}

    def _legend(self, indicator: Indicator | None) -> tuple[Level, ...]:
        """The regulation levels of an indicator: its own, else its stations' (flood alarms share codes)."""
        if indicator is None or indicator.levels:
            return indicator.levels if indicator is not None else ()
        graded = (s.levels for s in self.catalogue.stations.values() if s.levels_indicator == indicator.code)
        return next((levels for levels in graded if levels), ())

    # ---------------------------------------------------------------------------- helpers

    def _entity_levels(self, where: Where) -> tuple[Level, ...]:
        """The levels an entity's values are judged by: its levels rule's (a station's own flood
        alarms, else the indicator's); none without such a rule."""
        rules = self.rulebook.rules_for(where.indicator.code, where.region, where.station)
        return next((r.levels for r in rules if r.kind == "levels"), ())

    async def _state(self, where: Where) -> EntityState:
        state = await self.store.entity_state(where.entity)
        if state is None:
            raise NotFound(f"no values of {where.entity}")
        return state

    def _entity_view(self, where: Where) -> dict[str, Any]:
        return {
            "indicator": where.indicator.code,
            "region": where.region,
            "station": where.station,
            "breakdowns": _breakdowns(where.series),
            "unit": where.indicator.unit,
            "aggregation": where.indicator.aggregation,
        }


def due_period(indicator: Indicator, at_ms: int) -> ReportingPeriod:
    """The latest period of the indicator's own frequency whose deadline has passed at ``at_ms``."""
    own = period_frequencies(indicator.frequency)[0]
    period = period_of(own, indicator.calendar, at_ms, indicator.deadline_day)
    while close_time_ms(period) > at_ms:
        period = period_of(own, indicator.calendar, period.start_ms - 1, indicator.deadline_day)
    return period
