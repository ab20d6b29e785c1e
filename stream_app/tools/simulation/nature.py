"""Models of nature (MAE, NCDR): air quality, rivers, salinity, forest fire, drought, storms and what
they cause. Each model yields one day's values (:data:`~stream_app.simulation.world.Value`).

The stations each model knows how to shape are checked against the catalogue by :func:`check`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date
from typing import Final

from stream_app.tools.simulation.shapes import Spec, episodes, interp, poisson, season, year_factor
from stream_app.tools.simulation.world import COAST, Day, Value, World

# VN_AQI (daily): (summer level, winter rise, peak day of the polluted season, smog episodes).
_AIR: Final[dict[str, tuple[float, float, int, Spec | None]]] = {
    "HN-AQ-HOANKIEM": (55.0, 55.0, 10, Spec((4, 7), (305, 425), (30.0, 90.0), (1.5, 3.0))),
    "HP-AQ-LECHAN": (48.0, 45.0, 10, Spec((2, 4), (305, 425), (20.0, 60.0), (1.5, 3.0))),
    "HUE-AQ-PHUHOI": (35.0, 20.0, 15, None),
    "DN-AQ-HAICHAU": (32.0, 18.0, 15, None),
    "HCM-AQ-Q1": (52.0, 25.0, 45, Spec((1, 3), (1, 110), (15.0, 35.0), (1.5, 3.0))),
    "CT-AQ-NINHKIEU": (42.0, 20.0, 45, None),
}


def _air(d: Day) -> Iterator[Value]:
    rng = d.rng("air")
    for station, (base, rise, peak, smog) in _AIR.items():
        aqi = base + rise * season(d.doy, peak, 50) + rng.gauss(0.0, 9.0)
        if smog is not None:
            aqi += d.bump(f"smog|{station}", smog)
        yield "ENV.AQI", station, round(min(200.0, max(20.0, aqi))), None


# Water level (daily mean, m): Red River system = dry level + wet-season rise + random crests
# (about one year in eight a big flood); Mekong = one broad flood from August to November.
# station: (dry level, wet-season rise, crest scale, big-flood rise range); crests are shared by the
# basin (one rain event raises every station), scaled so that ordinary crests stay below BĐ I.
_RED_RIVER: Final[dict[str, tuple[float, float, float, tuple[float, float]]]] = {
    "HN-LONGBIEN": (1.8, 3.7, 3.0, (4.0, 5.6)),
    "HN-SONTAY": (4.0, 4.5, 3.3, (4.5, 6.0)),
    "PT-TRUNGHA": (9.0, 3.5, 2.0, (3.5, 4.5)),
    "HN-THUONGCAT": (1.8, 3.2, 3.0, (4.0, 5.5)),
    "HN-BATHA": (2.2, 1.6, 1.2, (2.0, 3.0)),
}
_CRESTS: Final = Spec((2, 4), (160, 270), (0.3, 1.0), (2.0, 4.0))
_MEKONG: Final[dict[str, tuple[float, float]]] = {"AG-TANCHAU": (0.9, 2.6), "AG-CHAUDOC": (0.8, 2.2)}
# Known flood years on the Mekong (2011 high; 2019-2020 low); others drawn per year.
_MEKONG_YEARS: Final = {2011: 1.45, 2018: 1.1, 2019: 0.55, 2020: 0.6}


def _big_flood(d: Day) -> float:
    """0..1: the shape of this year's big Red River flood, if the year has one (about one in eight)."""
    year = d.day.year
    if year_factor(d.seed, "big-flood", year, 0.0, 1.0) >= 0.125:
        return 0.0
    centre = date(year, 1, 1).toordinal() + round(year_factor(d.seed, "big-flood-day", year, 200.0, 260.0))
    distance = (d.day.toordinal() - centre) / 3.0
    return math.exp(-0.5 * distance * distance) if -4 < distance < 4 else 0.0


def _water(d: Day) -> Iterator[Value]:
    rng = d.rng("water")
    big_flood = _big_flood(d)
    crest = d.bump("crests|red-river", _CRESTS)
    for station, (dry, rise, crest_scale, big) in _RED_RIVER.items():
        level = dry + rise * season(d.doy, 225, 45) + crest_scale * min(1.0, crest)
        if big_flood:
            level += big_flood * year_factor(d.seed, f"big|{station}", d.day.year, *big)
        yield "HYD.WATER_LEVEL", station, round(level + rng.gauss(0.0, 0.05), 2), None
    for station, (dry, rise) in _MEKONG.items():
        year = _MEKONG_YEARS.get(d.day.year) or year_factor(d.seed, "mekong", d.day.year, 0.7, 1.2)
        level = dry + rise * year * season(d.doy, 280, 40) + rng.gauss(0.0, 0.03)
        yield "HYD.WATER_LEVEL", station, round(level, 2), None


# Salinity: the dry season (December to May, worst in March); 2016 and 2020 were severe.
# station: how far the 4‰ line reaches up the river in the worst of a normal season (km).
_SALINITY: Final[dict[str, float]] = {"VL-SAL-TIEN": 45.0, "VL-SAL-HAMLUONG": 55.0, "CT-SAL-HAU": 42.0}
_SALINE_YEARS: Final = {2016: 1.5, 2020: 1.55, 2024: 1.25}


def _dry_season_severity(seed: int, day: date) -> float:
    season_year = day.year + 1 if day.month >= 10 else day.year
    return _SALINE_YEARS.get(season_year) or year_factor(seed, "dry-season", season_year, 0.75, 1.1)


def _salinity(d: Day) -> Iterator[Value]:
    rng = d.rng("salinity")
    severity = _dry_season_severity(d.seed, d.day)
    shape = season(d.doy, 75, 45)
    for station, peak_km in _SALINITY.items():
        km = 6.0 + peak_km * severity * shape + rng.gauss(0.0, 1.5)
        permille = 1.0 + 14.0 * severity * shape + rng.gauss(0.0, 0.6)
        yield "HYD.SALINITY_4PPT_KM", station, round(max(0.0, km), 1), None
        yield "HYD.SALINITY_MAX", station, round(min(32.0, max(0.1, permille)), 1), None


# Forest fire danger (levels I..V as 1..5): each zone's dry season (peak day, width, height), plus
# hot spells.
_FIRE_SEASON: Final[dict[str, tuple[float, float, float]]] = {
    "NW": (75, 40, 0.8),
    "NE": (45, 45, 0.7),
    "RRD": (30, 30, 0.45),
    "NC": (185, 35, 0.8),
    "SC": (150, 45, 0.75),
    "CH": (60, 45, 0.8),
    "SE": (60, 45, 0.7),
    "MD": (85, 35, 0.75),
}
_HOT_SPELLS: Final = Spec((2, 4), (1, 365), (0.15, 0.35), (2.0, 4.0))


def _fire(d: Day) -> Iterator[Value]:
    rng = d.rng("fire")
    hot = {zone: d.bump(f"hot|{zone}", _HOT_SPELLS) for zone in _FIRE_SEASON}
    for area in d.areas:
        peak, sigma, amplitude = _FIRE_SEASON[area.zone]
        dryness = amplitude * season(d.doy, peak, sigma) + hot[area.zone] + rng.gauss(0.0, 0.05)
        yield "DIS.FOREST_FIRE", area.code, float(min(5, max(1, 1 + int(dryness * 4.2)))), None


# Drought (ha affected): highlands, south-central and the Mekong delta in the dry season.
_DROUGHT_CAP_HA: Final = {"CH": 30_000.0, "SC": 15_000.0, "MD": 25_000.0, "SE": 8_000.0, "NC": 5_000.0}


def _drought(d: Day) -> Iterator[Value]:
    rng = d.rng("drought")
    severity = _dry_season_severity(d.seed, d.day)
    shape = season(d.doy, 80, 45)
    for area in d.areas:
        cap = _DROUGHT_CAP_HA.get(area.zone, 0.0)
        hectares = max(0.0, severity * shape - 0.6) / 0.9 * cap * (1.0 + rng.gauss(0.0, 0.05))
        yield "DIS.DROUGHT_HA", area.code, float(round(max(0.0, hectares), -1)), None


# Storms: landfalls from June (north) to December (south-central), a few coastal provinces each.
_STORMS: Final = Spec((5, 11), (166, 344), (0.0, 1.0), (0.0, 1.0))


def storms_on(seed: int, day: date) -> dict[str, int]:
    """Disaster risk levels (Decision 18/2021: 3 large .. 5 catastrophic) of storms hitting on
    ``day``, by legacy coastal province code."""
    out: dict[str, int] = {}
    for index, (centre, _w, draw) in enumerate(episodes(seed, "storms", day.year, _STORMS)):
        offset = day.toordinal() - centre
        if not 0 <= offset <= 1:
            continue
        doy = centre - date(day.year, 1, 1).toordinal() + 1
        middle = interp(((166.0, 2.0), (240.0, 8.0), (290.0, 13.0), (344.0, 20.0)), doy)
        rank = round(middle + (draw - 0.5) * 8)
        level = 5 if draw > 0.97 else 4 if draw > 0.72 else 3
        spread = 1 + index % 3
        for position in range(max(0, rank - spread), min(len(COAST), rank + spread + 1)):
            out[COAST[position]] = max(out.get(COAST[position], 0), level)
    return out


def _storm_levels(d: Day) -> dict[str, int]:
    """Storm risk levels of the day, by the province codes in force."""
    hits = storms_on(d.seed, d.day)
    if d.legacy or not hits:
        return hits
    out: dict[str, int] = {}
    for code, level in hits.items():
        unit = d.world.successor(code)
        out[unit] = max(out.get(unit, 0), level)
    return out


def _risk(d: Day) -> Iterator[Value]:
    for code, level in sorted(_storm_levels(d).items()):
        yield "DIS.RISK_LEVEL", code, float(level), None


_LANDSLIDE_ZONE: Final = {"NW": 1.0, "NE": 0.7, "CH": 0.6, "NC": 0.5, "SC": 0.4, "SE": 0.1, "RRD": 0.05}


def _landslide(d: Day) -> Iterator[Value]:
    rng = d.rng("landslide")
    storms = _storm_levels(d)
    rainy = season(d.doy, 230, 50)
    for area in d.areas:
        if area.zone == "MD":  # river-bank landslides in the flood season
            lam = 0.25 * season(d.doy, 290, 40)
        else:
            lam = 0.25 * _LANDSLIDE_ZONE.get(area.zone, 0.0) * rainy
        lam += 1.5 * storms.get(area.code, 0) / 3
        yield "DIS.LANDSLIDE_SITES", area.code, float(poisson(rng, lam)), None


def _sar(d: Day) -> Iterator[Value]:
    rng = d.rng("sar")
    storms = _storm_levels(d)
    for area in d.areas:
        lam = 0.08 + (0.12 if area.coast is not None else 0.0) + 0.6 * storms.get(area.code, 0)
        yield "DIS.SAR_INCIDENTS", area.code, float(poisson(rng, lam)), None


# Every model, the frequency its values are made for, and the indicators it yields.
MODELS: Final = (
    (_air, "daily", ("ENV.AQI",)),
    (_water, "daily", ("HYD.WATER_LEVEL",)),
    (_salinity, "daily", ("HYD.SALINITY_4PPT_KM", "HYD.SALINITY_MAX")),
    (_fire, "daily", ("DIS.FOREST_FIRE",)),
    (_drought, "daily", ("DIS.DROUGHT_HA",)),
    (_landslide, "daily", ("DIS.LANDSLIDE_SITES",)),
    (_risk, "daily", ("DIS.RISK_LEVEL",)),
    (_sar, "daily", ("DIS.SAR_INCIDENTS",)),
)


def check(world: World) -> None:
    """The stations these models shape are exactly the catalogue's of their kind."""
    world.check_stations("air-quality model (_AIR)", "air_quality", _AIR)
    world.check_stations("river models (_RED_RIVER, _MEKONG)", "hydrological", [*_RED_RIVER, *_MEKONG])
    world.check_stations("salinity model (_SALINITY)", "salinity", _SALINITY)
