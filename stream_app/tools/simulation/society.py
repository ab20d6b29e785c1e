"""Models of society and the economy: traffic (MPS), electricity (NSMO/EVN), the state budget and
firms (MOF), social insurance (VSS), administration (GO), transport (MOC), justice (MOJ), health
(MOH) and education (MOET). Each model yields one day's (or one period's) values.

Values are plausible, not official: they follow published orders of magnitude (noted where used).
The provinces and airports keyed here are checked against the catalogue by :func:`check`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import date
from typing import Final

from stream_app.tools.simulation.shapes import (
    Spec,
    bump,
    days_from_tet,
    fixed_offset,
    interp,
    poisson,
    season,
    series,
    tet,
    words,
)
from stream_app.tools.simulation.world import TRAITS, Area, Day, Value, World

# Traffic (MPS): about 65 crashes and 30 deaths a day nationally (2024), more around holidays.
ACCIDENTS_PER_DAY: Final = 65.0
DEATHS_PER_ACCIDENT: Final = 30.0 / 65.0


def _traffic(d: Day) -> Iterator[Value]:
    rng = d.rng("traffic")
    factor = 1.1 if d.day.weekday() >= 5 else 0.96
    if -3 <= days_from_tet(d.day) <= 7:
        factor *= 1.35
    if (d.day.month, d.day.day) in {(4, 30), (5, 1), (9, 2), (9, 1), (1, 1)}:
        factor *= 1.25
    for area in d.areas:
        accidents = poisson(rng, ACCIDENTS_PER_DAY * factor * area.pop_share)
        deaths = poisson(rng, DEATHS_PER_ACCIDENT * accidents)
        yield "TRF.ACCIDENTS", area.code, float(accidents), None
        yield "TRF.DEATHS", area.code, float(deaths), None


# Electricity: GWh a day, yearly average (about 100 TWh in 2010, 306 TWh in 2024, 850-890 a day in
# 2024-2025); May-July heat raises it, Tết lowers it.
_GWH_PER_DAY: Final = series("""
    2010.5 275, 2011.5 300, 2012.5 330, 2013.5 360, 2014.5 395, 2015.5 437, 2016.5 485, 2017.5 525,
    2018.5 580, 2019.5 630, 2020.5 675, 2021.5 700, 2022.5 740, 2023.5 780, 2024.5 855, 2025.5 880,
    2026.5 925""")
_HEAT_WAVES: Final = Spec(count=(1, 3), doy=(100, 200), height=(0.04, 0.12), width=(2.0, 5.0))


def electricity_gwh(day: date, seed: int, rng: random.Random) -> float:
    """Simulated daily electricity output (GWh) on ``day``."""
    doy = day.timetuple().tm_yday
    gwh = interp(_GWH_PER_DAY, day.year + doy / 365.25)
    gwh *= 0.97 + 0.06 * season(doy, 165, 45)
    if -2 <= days_from_tet(day) <= 5:
        gwh *= 0.78
    if day.weekday() == 6:
        gwh *= 0.94
    gwh *= 1.0 + bump(seed, "heat", day, _HEAT_WAVES)
    return round(gwh * (1.0 + rng.gauss(0.0, 0.012)), 1)


def _source_shares(d: Day, rng: random.Random) -> dict[str, float]:
    yf, doy = d.yf, d.doy
    shares = {
        "hydro": interp(
            (
                (2010.5, 27.0),
                (2013.5, 40.0),
                (2015.5, 32.0),
                (2019.5, 20.0),
                (2022.5, 38.0),
                (2023.5, 27.0),
                (2024.5, 30.0),
            ),
            yf,
        )
        + 9.0 * (season(doy, 265, 55) - 0.4),
        "gas": interp(((2010.0, 30.0), (2015.0, 26.0), (2020.0, 16.0), (2024.0, 10.0), (2026.0, 9.0)), yf),
        "solar": interp(((2019.2, 0.0), (2019.6, 5.0), (2020.5, 9.0), (2021.5, 11.0), (2026.0, 12.0)), yf)
        * (0.9 + 0.2 * season(doy, 90, 50)),
        "wind": interp(((2018.0, 0.3), (2020.0, 0.5), (2021.9, 1.5), (2022.5, 4.0), (2026.0, 5.0)), yf),
        "import": interp(((2010.0, 4.5), (2015.0, 1.5), (2020.0, 1.3), (2024.0, 1.8), (2026.0, 2.0)), yf),
        "other": 1.0,
    }
    for name, sigma in (("hydro", 0.04), ("solar", 0.08), ("wind", 0.15), ("gas", 0.03)):
        shares[name] = max(0.0, shares[name] * (1.0 + rng.gauss(0.0, sigma)))
    shares["coal"] = max(5.0, 100.0 - sum(shares.values()))
    total = sum(shares.values())
    rounded = {name: round(100.0 * value / total, 1) for name, value in shares.items()}
    rounded["coal"] = round(rounded["coal"] + 100.0 - sum(rounded.values()), 1)
    return rounded


def _power(d: Day) -> Iterator[Value]:
    rng = d.rng("power")
    gwh = electricity_gwh(d.day, d.seed, rng)
    yield "PWR.OUTPUT_GWH", None, gwh, None
    yield "PWR.PEAK_MW", None, float(round(gwh * 1000 / 24 * 1.2 * (1 + rng.gauss(0, 0.015)))), None
    for source, share in _source_shares(d, rng).items():
        yield "PWR.SOURCE_SHARE", None, share, {"source": source}


# State budget revenue (bn VND a year, about 588,000 in 2010 and 2,030,000 in 2024).
_REVENUE: Final = series("""
    2010.5 588000, 2012.5 744000, 2015.5 1000000, 2017.5 1290000, 2019.5 1550000, 2020.5 1510000,
    2021.5 1570000, 2022.5 1810000, 2023.5 1750000, 2024.5 2030000, 2025.5 2300000, 2026.5 2450000""")
_WEEKDAY_REVENUE: Final = (1.33, 1.33, 1.33, 1.33, 1.33, 0.25, 0.1)


def _revenue(d: Day) -> Iterator[Value]:
    rng = d.rng("revenue")
    national = interp(_REVENUE, d.yf) / 365.0 * _WEEKDAY_REVENUE[d.day.weekday()]
    national *= 1.3 if d.day.day >= 25 else 0.9
    if -1 <= days_from_tet(d.day) <= 4:
        national *= 0.3
    for area in d.areas:
        value = national * area.econ_share * max(0.0, 1.0 + rng.gauss(0.0, 0.15))
        yield "FIN.BUDGET_REVENUE", area.code, round(value, 1), None


# --- periodic models (run on the cut-off day of their period) -----------------------------------

_EXPENDITURE: Final = series(
    "2010.5 650000, 2015.5 1150000, 2019.5 1450000, 2022.5 1560000, 2024.5 1800000, 2025.5 2100000"
)
# Consumer prices, % year on year (annual averages, rounded).
_CPI: Final = series("""
    2010.5 9.2, 2011.5 18.6, 2012.5 9.2, 2013.5 6.6, 2014.5 4.1, 2015.5 0.6, 2016.5 2.7, 2017.5 3.5,
    2018.5 3.5, 2019.5 2.8, 2020.5 3.2, 2021.5 1.8, 2022.5 3.2, 2023.5 3.3, 2024.5 3.6, 2025.5 3.3,
    2026.5 3.3""")
_FDI_BN_USD: Final = series(
    "2010.5 19.9, 2015.5 24.1, 2019.5 38.0, 2020.5 28.5, 2022.5 27.7, 2023.5 36.6, 2024.5 38.2, 2025.5 38.4"
)
# How much foreign investment a legacy province draws per inhabitant (others: 0.2 in the northern
# mountains, 0.6 elsewhere).
_FDI_FACTOR: Final = {
    code: float(factor)
    for code, factor in (
        item.split(":")
        for item in words(
            "27:6 31:4 74:5 79:4 75:3.5 01:3 22:2.5 24:2.5 26:2.5 80:2.5 19:2 30:2 77:2.5 35:1.5 72:1.5"
        )
    )
}
_FIRMS: Final = {  # firms a year
    "ENT.NEW": series("""2010.5 83600, 2015.5 94750, 2019.5 138100, 2020.5 134900, 2021.5 116800,
        2022.5 148500, 2023.5 159800, 2024.5 165500, 2025.5 190000"""),
    "ENT.SUSPENDED": series("""2010.5 40000, 2015.5 71400, 2019.5 79700, 2021.5 119800, 2023.5 172600,
        2024.5 197900, 2025.5 200000"""),
    "ENT.RESUMED": series("""2010.5 20000, 2015.5 21500, 2019.5 39400, 2021.5 43100, 2023.5 58000,
        2024.5 76200, 2025.5 100000"""),
}


def _fdi_weight(area: Area) -> float:
    return sum(
        TRAITS[code].population * _FDI_FACTOR.get(code, 0.2 if TRAITS[code].zone in {"NW", "NE"} else 0.6)
        for code in area.members
    )


def _finance_monthly(d: Day) -> Iterator[Value]:
    rng = d.rng("finance-monthly")
    period = d.period("monthly")
    year, month = period.end.year, period.end.month
    tet_month = period.start <= tet(year) <= period.end
    expenditure = interp(_EXPENDITURE, d.yf) / 12.0 * (1.6 if month == 12 else 0.95)
    cpi = interp(_CPI, d.yf)
    fdi = interp(_FDI_BN_USD, d.yf) * 1000.0 / 12.0 * math.exp(rng.gauss(0.0, 0.35))
    fdi_weights = [_fdi_weight(a) * rng.expovariate(1.0) for a in d.areas]
    fdi_total = sum(fdi_weights)
    seasonal = {
        "ENT.NEW": 0.7 if tet_month else 1.03,
        "ENT.SUSPENDED": 1.5 if month in (1, 2) else 0.9,
        "ENT.RESUMED": 1.6 if month in (2, 3) else 0.9,
    }
    for area, fdi_weight in zip(d.areas, fdi_weights, strict=True):
        weight = area.pop_share * 0.6 + area.econ_share * 0.4
        yield (
            "FIN.BUDGET_EXPENDITURE",
            area.code,
            round(expenditure * weight * (1 + rng.gauss(0, 0.1)), 1),
            None,
        )
        yield "FIN.CPI", area.code, round(cpi + rng.gauss(0.0, 0.35), 2), None
        yield "INV.FDI_REGISTERED", area.code, round(fdi * fdi_weight / fdi_total, 2), None
        for indicator, table in _FIRMS.items():
            mean = interp(table, d.yf) / 12.0 * seasonal[indicator] * area.econ_share
            yield indicator, area.code, float(poisson(rng, mean)), None


_HEALTH_COVERAGE: Final = series("""
    2010.5 60.9, 2012.5 66.8, 2014.5 71.6, 2016.5 81.7, 2018.5 86.8, 2019.5 89.0, 2020.5 90.9,
    2022.5 92.0, 2023.5 93.3, 2024.5 94.3, 2025.5 95.0""")
_SOCIAL_M: Final = series(
    "2010.5 9.4, 2015.5 12.3, 2019.5 15.0, 2020.5 16.1, 2021.5 16.5, 2023.5 18.3, 2024.5 19.2, 2025.5 20.0"
)
_UNEMPLOYMENT_M: Final = series("2010.5 7.2, 2015.5 10.3, 2019.5 13.0, 2021.5 13.4, 2023.5 14.6, 2025.5 15.5")


def _social_insurance(d: Day) -> Iterator[Value]:
    rng = d.rng("social-insurance")
    growth = 1.0 + 0.0095 * (d.yf - 2019.5)
    coverage = interp(_HEALTH_COVERAGE, d.yf) / 100.0
    social, unemployment = interp(_SOCIAL_M, d.yf) * 1e6, interp(_UNEMPLOYMENT_M, d.yf) * 1e6
    total_work = sum(a.population * math.sqrt(a.economy / a.population) for a in d.areas)
    for area in d.areas:
        mountain = 1.02 if area.zone in {"NW", "NE", "CH"} else 1.0
        own = 1.0 + fixed_offset(d.seed, f"ssi|{area.code}", 0.015)
        insured = area.population * 1e6 * growth * min(0.995, coverage * mountain * own)
        work = area.population * math.sqrt(area.economy / area.population) / total_work
        noise = 1.0 + rng.gauss(0.0, 0.002)
        yield "SSI.HEALTH", area.code, float(round(insured * noise)), None
        yield "SSI.SOCIAL", area.code, float(round(social * work * noise)), None
        yield "SSI.UNEMPLOYMENT", area.code, float(round(unemployment * work * noise)), None


_ONLINE_SERVICES: Final = series("2020 25, 2021 35, 2022 45, 2023 55, 2024 62, 2025 75, 2026 85")
ADMIN_FROM: Final = date(2020, 1, 1)  # the national public-service portal's indicators, from 2020


def _administration(d: Day) -> Iterator[Value]:
    if d.day < ADMIN_FROM:
        return
    rng = d.rng("administration")
    for area in d.areas:
        online = interp(_ONLINE_SERVICES, d.yf) + fixed_offset(d.seed, f"online|{area.code}", 8.0)
        on_time = 95.0 + fixed_offset(d.seed, f"on-time|{area.code}", 1.5) + rng.gauss(0.0, 1.0)
        yield "ADM.ONLINE_SERVICES", area.code, round(min(100.0, max(0.0, online + rng.gauss(0, 2))), 1), None
        yield "ADM.DOSSIERS_ON_TIME", area.code, round(min(100.0, max(80.0, on_time)), 1), None


# Expressways in service (km): >2,000 at the end of 2024, 3,000 targeted for the end of 2025.
_EXPRESSWAY_KM: Final = series("""
    2010 80, 2011 120, 2012 300, 2013 400, 2014 600, 2015 750, 2016 780, 2017 900, 2018 1000,
    2019 1100, 2020 1160, 2021 1240, 2022 1600, 2023 1800, 2024 1900, 2025 2020, 2026 3100, 2027 3500""")
_AIRPORT_M: Final = {  # passengers a year, millions
    "AP-NOIBAI": series("2010.5 9.5, 2015.5 20.6, 2019.5 29.3, 2023.5 27.0, 2024.5 29.0, 2025.5 31.0"),
    "AP-TANSONNHAT": series("2010.5 15.5, 2015.5 26.5, 2019.5 41.2, 2023.5 41.0, 2024.5 43.0, 2025.5 45.0"),
    "AP-DANANG": series("2010.5 3.0, 2015.5 8.4, 2019.5 15.5, 2023.5 11.0, 2024.5 14.0, 2025.5 16.0"),
}
# Covid-19: air traffic as a share of normal, by month (year.month, from that month on).
_COVID: Final = series("""2020.02 0.8, 2020.03 0.5, 2020.04 0.1, 2020.05 0.5, 2020.06 0.8, 2020.08 0.6,
    2021.05 0.3, 2021.07 0.03, 2021.11 0.3, 2022.01 0.5, 2022.04 0.85, 2023.01 1.0""")


def _covid(year: int, month: int) -> float:
    """Covid-19: air traffic as a share of normal in a month (a step function)."""
    key = year + month / 100
    if not _COVID[0][0] <= key < _COVID[-1][0]:
        return 1.0
    return next(share for start, share in reversed(_COVID) if start <= key)


def _transport(d: Day) -> Iterator[Value]:
    rng = d.rng("transport")
    period = d.period("monthly")
    year, month = period.end.year, period.end.month
    expressway = float(5 * round(interp(_EXPRESSWAY_KM, year + (month - 1) / 12) / 5))
    yield "TRN.EXPRESSWAY_KM", None, expressway, None
    high_season = 1.12 if month in (1, 2, 6, 7, 8) else 0.92 if month in (9, 10, 11) else 1.0
    for station, table in _AIRPORT_M.items():
        passengers = interp(table, d.yf) * 1e6 / 12 * high_season * _covid(year, month)
        passengers *= 1.0 + rng.gauss(0.0, 0.03)
        yield "TRN.AIR_PASSENGERS", station, float(round(passengers)), None


def _legal_aid(d: Day) -> Iterator[Value]:
    rng = d.rng("legal-aid")
    national = interp(((2010.0, 20_000.0), (2017.0, 8_000.0), (2024.0, 10_000.0)), d.yf)  # cases a quarter
    for area in d.areas:
        yield "JUS.LEGAL_AID", area.code, float(poisson(rng, national * area.pop_share)), None


_DEBT: Final = {  # % of GDP, 2010..2025 (approximate)
    indicator: tuple(float(v) for v in values.split())
    for indicator, values in (
        (
            "FIN.PUBLIC_DEBT_GDP",
            "56.3 54.9 50.8 54.5 58.0 61.0 63.7 61.4 58.3 55.0 55.9 43.1 38.0 37.0 36.0 35.0",
        ),
        (
            "FIN.GOV_DEBT_GDP",
            "44.3 43.9 42.3 46.4 49.2 52.6 52.7 51.7 49.9 48.0 49.9 39.1 34.7 34.0 33.0 32.0",
        ),
        (
            "FIN.FOREIGN_DEBT_GDP",
            "42.2 41.5 37.4 37.3 39.9 43.1 44.8 49.0 46.0 47.1 47.9 38.4 36.7 35.0 32.0 31.0",
        ),
    )
}
_DOCTORS: Final = ((2010.0, 7.2), (2015.0, 8.0), (2020.0, 9.8), (2023.0, 12.5), (2025.0, 13.5))
# Medical hubs (doctors per inhabitant against the national mean), by legacy province code; after
# the reform, the current unit that kept the code (the one hosting its seat) keeps the factor.
_DOCTOR_HUBS: Final = {"01": 2.0, "79": 1.8, "46": 2.5, "48": 1.8, "92": 1.7, "31": 1.3}
LEGAL_ACCESS_FROM: Final = 2014  # the legal-access standard for communes is assessed from 2014 on


def _annual(d: Day) -> Iterator[Value]:
    rng = d.rng("annual")
    year = d.period("annual").end.year
    for indicator, values in _DEBT.items():
        yield indicator, None, values[min(max(year - 2010, 0), len(values) - 1)], None
    doctors = interp(_DOCTORS, d.yf)
    enrolment = interp(((2010.0, 88.0), (2015.0, 91.0), (2020.0, 93.5), (2025.0, 95.0)), d.yf)
    access = interp(((2014.0, 60.0), (2017.0, 80.0), (2020.0, 88.0), (2025.0, 93.0)), d.yf)
    for area in d.areas:
        mountain = area.zone in {"NW", "NE", "CH"}
        hub = _DOCTOR_HUBS.get(area.code, 0.8 if mountain else 0.95)
        per_10k = doctors * hub * (1 + fixed_offset(d.seed, f"doctors|{area.code}", 0.08))
        yield "HLT.DOCTORS_PER_10K", area.code, round(per_10k + rng.gauss(0, 0.1), 1), None
        rate = enrolment - (4.0 if mountain else 0.0) + rng.gauss(0.0, 1.0)
        yield "EDU.ENROLMENT_RATE", area.code, round(min(99.8, rate), 1), None
        if year >= LEGAL_ACCESS_FROM:
            share = access + fixed_offset(d.seed, f"legal|{area.code}", 4.0) + rng.gauss(0.0, 1.0)
            yield "JUS.LEGAL_ACCESS", area.code, round(min(100.0, max(0.0, share)), 1), None


# Every model, the frequency its values are made for, and the indicators it yields.
MODELS: Final = (
    (_power, "daily", ("PWR.OUTPUT_GWH", "PWR.PEAK_MW", "PWR.SOURCE_SHARE")),
    (_traffic, "daily", ("TRF.ACCIDENTS", "TRF.DEATHS")),
    (_revenue, "daily", ("FIN.BUDGET_REVENUE",)),
    (_finance_monthly, "monthly", ("FIN.BUDGET_EXPENDITURE", "FIN.CPI", "INV.FDI_REGISTERED", *_FIRMS)),
    (_social_insurance, "monthly", ("SSI.HEALTH", "SSI.SOCIAL", "SSI.UNEMPLOYMENT")),
    (_administration, "monthly", ("ADM.ONLINE_SERVICES", "ADM.DOSSIERS_ON_TIME")),
    (_transport, "monthly", ("TRN.EXPRESSWAY_KM", "TRN.AIR_PASSENGERS")),
    (_legal_aid, "quarterly", ("JUS.LEGAL_AID",)),
    (_annual, "annual", (*_DEBT, "HLT.DOCTORS_PER_10K", "EDU.ENROLMENT_RATE", "JUS.LEGAL_ACCESS")),
)


def check(world: World) -> None:
    """The provinces and airports keyed here are the catalogue's."""
    world.check_provinces("foreign investment factors (_FDI_FACTOR)", _FDI_FACTOR)
    world.check_provinces("medical hubs (_DOCTOR_HUBS)", _DOCTOR_HUBS)
    world.check_stations("air passengers model (_AIRPORT_M)", "airport", _AIRPORT_M)
