"""Simulated reporters: live feeds with scenarios, and realistic daily history since 2010.

**Live** (:func:`live_feed`, :func:`run_live`; :func:`run` for the demo): the daily information
groups, each to its reporter's topic, event times on the wall clock. MAE: VN_AQI at the six
centrally-run cities' stations, water levels at the hydrological stations, salinity (4‰ line in
km, max ‰), forest-fire levels; MPS: traffic accidents and deaths; NSMO: electricity output (GWh)
and peak load (MW). Scenarios cross regulation thresholds on purpose: ``smog`` (Hà Nội's VN_AQI
through "Xấu" and "Rất xấu"), ``flood`` (the Red River at Long Biên through BĐ I, II and III),
``normal`` (nothing crosses), ``mix`` (smog and flood together). A small share of records is wrong
in typical ways (wrong unit, out of range, garbage bytes, another ministry's indicator), so that
dead-letter topics show something.

**History** (:func:`history`, :func:`write_history`): one row per day per daily indicator and
province or station, periodic indicators once per Decree 09/2019 period (dated on the 14th, local
time), for every code of the issue-3 codes contract. Before 2025-07-01 rows are keyed by the 63
legacy GSO province codes, from then on by the 34 current ones. Values are plausible, not
official: they follow seasons, growth and holidays, from published orders of magnitude (noted
where used). Deterministic: the same seed gives the same rows, whatever the range or reporter
filter (a day's values depend only on the seed and the date).

The generators are pure (they yield rows or records); Kafka is only in :func:`run` and
:func:`run_live`.
"""

from __future__ import annotations

import csv
import functools
import gzip
import itertools
import json
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any, Final

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from stream_app import codecs
from stream_app.exceptions import ConfigurationError, ServiceUnreachableError
from stream_app.schemas import SchemaRegistry, SchemaVersion, load_schemas
from stream_app.settings import Settings


def _series(text: str) -> tuple[tuple[float, float], ...]:
    """``"x y, x y, ..."`` as a table of points (for :func:`_interp`)."""
    return tuple((float(x), float(y)) for x, y in (point.split() for point in text.split(",")))


def _words(text: str, sep: str | None = None) -> list[str]:
    """The items of a compact table written as text."""
    return [item.strip() for item in text.split(sep)]


# ============================================================================================
# The codes contract of issue 3 (reporters, indicators, provinces, stations).

REPORTERS: Final[dict[str, tuple[str, str]]] = {
    "MOD": ("Bộ Quốc phòng", "Ministry of National Defence"),
    "MPS": ("Bộ Công an", "Ministry of Public Security"),
    "MOFA": ("Bộ Ngoại giao", "Ministry of Foreign Affairs"),
    "MOHA": ("Bộ Nội vụ", "Ministry of Home Affairs"),
    "MOJ": ("Bộ Tư pháp", "Ministry of Justice"),
    "MOF": ("Bộ Tài chính", "Ministry of Finance"),
    "MOIT": ("Bộ Công Thương", "Ministry of Industry and Trade"),
    "MAE": ("Bộ Nông nghiệp và Môi trường", "Ministry of Agriculture and Environment"),
    "MOC": ("Bộ Xây dựng", "Ministry of Construction"),
    "MOCST": ("Bộ Văn hóa, Thể thao và Du lịch", "Ministry of Culture, Sports and Tourism"),
    "MOST": ("Bộ Khoa học và Công nghệ", "Ministry of Science and Technology"),
    "MOET": ("Bộ Giáo dục và Đào tạo", "Ministry of Education and Training"),
    "MOH": ("Bộ Y tế", "Ministry of Health"),
    "MEMR": ("Bộ Dân tộc và Tôn giáo", "Ministry of Ethnic Minorities and Religions"),
    "SBV": ("Ngân hàng Nhà nước Việt Nam", "State Bank of Vietnam"),
    "GI": ("Thanh tra Chính phủ", "Government Inspectorate"),
    "GO": ("Văn phòng Chính phủ", "Government Office"),
    "VSS": ("Bảo hiểm xã hội Việt Nam", "Vietnam Social Security"),
    "NTSC": ("Ủy ban An toàn giao thông Quốc gia", "National Traffic Safety Committee"),
    "NCDR": (
        "Ủy ban Quốc gia Ứng phó sự cố, thiên tai và Tìm kiếm cứu nạn",
        "National Committee for Incident, Disaster Response and Search and Rescue",
    ),
    "EVN": ("Tập đoàn Điện lực Việt Nam", "Vietnam Electricity"),
    "NSMO": (
        "Công ty Vận hành hệ thống điện và thị trường điện quốc gia",
        "National Power System and Market Operator",
    ),
    "VNPT": ("Tập đoàn Bưu chính Viễn thông Việt Nam", "Vietnam Posts and Telecommunications Group"),
}

REPORTER = "MAE"  # the demo's reporter (the feed of :func:`run`)
LIVE_REPORTERS: Final = ("MAE", "MPS", "NSMO")


@dataclass(frozen=True, slots=True)
class IndicatorCode:
    """An indicator of the codes contract."""

    code: str
    owner: str
    reporters: tuple[str, ...]
    unit: str
    frequency: str  # hourly | daily | monthly | quarterly | annual | event
    level: str  # station | province | national


INDICATORS: Final[dict[str, IndicatorCode]] = {
    i.code: i
    for i in (
        IndicatorCode("ENV.AQI", "MAE", ("MAE",), "index", "hourly", "station"),
        IndicatorCode("HYD.WATER_LEVEL", "MAE", ("MAE",), "m", "hourly", "station"),
        IndicatorCode("HYD.SALINITY_4PPT_KM", "MAE", ("MAE",), "km", "daily", "station"),
        IndicatorCode("HYD.SALINITY_MAX", "MAE", ("MAE",), "permille", "daily", "station"),
        IndicatorCode("DIS.FOREST_FIRE", "MAE", ("MAE",), "level", "daily", "province"),
        IndicatorCode("DIS.RISK_LEVEL", "MAE", ("MAE", "NCDR"), "level", "event", "province"),
        IndicatorCode("DIS.DROUGHT_HA", "MAE", ("MAE",), "ha", "daily", "province"),
        IndicatorCode("DIS.LANDSLIDE_SITES", "MAE", ("MAE",), "sites", "daily", "province"),
        IndicatorCode("DIS.SAR_INCIDENTS", "NCDR", ("NCDR",), "cases", "daily", "province"),
        IndicatorCode("TRF.ACCIDENTS", "MPS", ("MPS", "NTSC"), "cases", "daily", "province"),
        IndicatorCode("TRF.DEATHS", "MPS", ("MPS", "NTSC"), "persons", "daily", "province"),
        IndicatorCode("PWR.OUTPUT_GWH", "NSMO", ("NSMO", "EVN"), "GWh", "daily", "national"),
        IndicatorCode("PWR.PEAK_MW", "NSMO", ("NSMO", "EVN"), "MW", "daily", "national"),
        IndicatorCode("PWR.SOURCE_SHARE", "NSMO", ("NSMO", "EVN"), "%", "daily", "national"),
        IndicatorCode("FIN.BUDGET_REVENUE", "MOF", ("MOF",), "bn VND", "daily", "province"),
        IndicatorCode("FIN.BUDGET_EXPENDITURE", "MOF", ("MOF",), "bn VND", "monthly", "province"),
        IndicatorCode("FIN.PUBLIC_DEBT_GDP", "MOF", ("MOF",), "%", "annual", "national"),
        IndicatorCode("FIN.GOV_DEBT_GDP", "MOF", ("MOF",), "%", "annual", "national"),
        IndicatorCode("FIN.FOREIGN_DEBT_GDP", "MOF", ("MOF",), "%", "annual", "national"),
        IndicatorCode("FIN.CPI", "MOF", ("MOF",), "%", "monthly", "province"),
        IndicatorCode("INV.FDI_REGISTERED", "MOF", ("MOF",), "m USD", "monthly", "province"),
        IndicatorCode("ENT.NEW", "MOF", ("MOF",), "firms", "monthly", "province"),
        IndicatorCode("ENT.SUSPENDED", "MOF", ("MOF",), "firms", "monthly", "province"),
        IndicatorCode("ENT.RESUMED", "MOF", ("MOF",), "firms", "monthly", "province"),
        IndicatorCode("HLT.DOCTORS_PER_10K", "MOH", ("MOH",), "per 10k", "annual", "province"),
        IndicatorCode("SSI.HEALTH", "VSS", ("VSS",), "persons", "monthly", "province"),
        IndicatorCode("SSI.SOCIAL", "VSS", ("VSS",), "persons", "monthly", "province"),
        IndicatorCode("SSI.UNEMPLOYMENT", "VSS", ("VSS",), "persons", "monthly", "province"),
        IndicatorCode("EDU.ENROLMENT_RATE", "MOET", ("MOET",), "%", "annual", "province"),
        IndicatorCode("ADM.ONLINE_SERVICES", "GO", ("GO",), "%", "monthly", "province"),
        IndicatorCode("ADM.DOSSIERS_ON_TIME", "GO", ("GO",), "%", "monthly", "province"),
        IndicatorCode("JUS.LEGAL_ACCESS", "MOJ", ("MOJ",), "%", "annual", "province"),
        IndicatorCode("JUS.LEGAL_AID", "MOJ", ("MOJ",), "cases", "quarterly", "province"),
        IndicatorCode("TRN.EXPRESSWAY_KM", "MOC", ("MOC",), "km", "monthly", "national"),
        IndicatorCode("TRN.AIR_PASSENGERS", "MOC", ("MOC",), "persons", "monthly", "station"),
    )
}

NATIONAL: Final = "VN"
REFORM_DATE: Final = date(2025, 7, 1)  # 63 -> 34 provincial units
HISTORY_START: Final = date(2010, 1, 1)
LOCAL_TZ: Final = timezone(timedelta(hours=7), "Asia/Ho_Chi_Minh")
# Grid dispatch moved from EVN to NSMO (Ministry of Industry and Trade) in 2024; the month is an
# assumption of this simulator: before it, EVN reports the PWR.* indicators.
NSMO_FROM: Final = date(2024, 7, 1)

# The 34 units from 2025-07-01; codes ASSUMED per Decision 19/2025/QĐ-TTg (codes contract).
CURRENT_PROVINCES: Final[dict[str, str]] = dict(
    entry.strip().split(" ", 1)
    for entry in _words(
        """01 Hà Nội; 04 Cao Bằng; 08 Tuyên Quang; 11 Điện Biên; 12 Lai Châu; 14 Sơn La; 15 Lào Cai;
    19 Thái Nguyên; 20 Lạng Sơn; 22 Quảng Ninh; 24 Bắc Ninh; 25 Phú Thọ; 31 Hải Phòng; 33 Hưng Yên;
    37 Ninh Bình; 38 Thanh Hóa; 40 Nghệ An; 42 Hà Tĩnh; 44 Quảng Trị; 46 Huế; 48 Đà Nẵng; 51 Quảng Ngãi;
    52 Gia Lai; 56 Khánh Hòa; 66 Đắk Lắk; 68 Lâm Đồng; 75 Đồng Nai; 79 TP. Hồ Chí Minh; 80 Tây Ninh;
    82 Đồng Tháp; 86 Vĩnh Long; 91 An Giang; 92 Cần Thơ; 96 Cà Mau""",
        ";",
    )
)


@dataclass(frozen=True, slots=True)
class LegacyProvince:
    """A pre-2025 province (GSO code, Decision 124/2004/QĐ-TTg) and the unit it merged into.

    ``zone`` (climate/economic region) and ``population`` (millions, rounded, about the 2019
    census) and ``economy`` (a relative factor) only shape simulated values.
    """

    code: str
    name: str
    successor: str
    zone: str  # NW NE RRD NC SC CH SE MD
    population: float
    economy: float


LEGACY_PROVINCES: Final[dict[str, LegacyProvince]] = {
    p.code: p
    for p in (
        LegacyProvince(*row)
        for row in (
            ("01", "Hà Nội", "01", "RRD", 8.05, 4.5),
            ("02", "Hà Giang", "08", "NE", 0.85, 0.5),
            ("04", "Cao Bằng", "04", "NE", 0.53, 0.5),
            ("06", "Bắc Kạn", "19", "NE", 0.31, 0.5),
            ("08", "Tuyên Quang", "08", "NE", 0.78, 0.6),
            ("10", "Lào Cai", "15", "NW", 0.73, 1.0),
            ("11", "Điện Biên", "11", "NW", 0.60, 0.5),
            ("12", "Lai Châu", "12", "NW", 0.46, 0.5),
            ("14", "Sơn La", "14", "NW", 1.25, 0.5),
            ("15", "Yên Bái", "15", "NW", 0.82, 0.5),
            ("17", "Hòa Bình", "25", "NW", 0.85, 0.6),
            ("19", "Thái Nguyên", "19", "NE", 1.29, 1.5),
            ("20", "Lạng Sơn", "20", "NE", 0.78, 0.7),
            ("22", "Quảng Ninh", "22", "NE", 1.32, 2.5),
            ("24", "Bắc Giang", "24", "NE", 1.80, 1.2),
            ("25", "Phú Thọ", "25", "NE", 1.46, 0.8),
            ("26", "Vĩnh Phúc", "25", "RRD", 1.15, 2.0),
            ("27", "Bắc Ninh", "24", "RRD", 1.37, 2.5),
            ("30", "Hải Dương", "31", "RRD", 1.89, 1.2),
            ("31", "Hải Phòng", "31", "RRD", 2.03, 3.0),
            ("33", "Hưng Yên", "33", "RRD", 1.25, 1.3),
            ("34", "Thái Bình", "33", "RRD", 1.86, 0.7),
            ("35", "Hà Nam", "37", "RRD", 0.85, 1.0),
            ("36", "Nam Định", "37", "RRD", 1.78, 0.7),
            ("37", "Ninh Bình", "37", "RRD", 0.98, 1.0),
            ("38", "Thanh Hóa", "38", "NC", 3.64, 1.3),
            ("40", "Nghệ An", "40", "NC", 3.33, 0.8),
            ("42", "Hà Tĩnh", "42", "NC", 1.29, 1.0),
            ("44", "Quảng Bình", "44", "NC", 0.90, 0.7),
            ("45", "Quảng Trị", "44", "NC", 0.63, 0.7),
            ("46", "Thừa Thiên Huế", "46", "NC", 1.13, 1.0),
            ("48", "Đà Nẵng", "48", "SC", 1.13, 2.5),
            ("49", "Quảng Nam", "48", "SC", 1.50, 1.0),
            ("51", "Quảng Ngãi", "51", "SC", 1.23, 1.8),
            ("52", "Bình Định", "52", "SC", 1.49, 0.9),
            ("54", "Phú Yên", "66", "SC", 0.87, 0.7),
            ("56", "Khánh Hòa", "56", "SC", 1.23, 1.4),
            ("58", "Ninh Thuận", "56", "SC", 0.59, 0.7),
            ("60", "Bình Thuận", "68", "SC", 1.23, 0.9),
            ("62", "Kon Tum", "51", "CH", 0.54, 0.5),
            ("64", "Gia Lai", "52", "CH", 1.51, 0.6),
            ("66", "Đắk Lắk", "66", "CH", 1.87, 0.6),
            ("67", "Đắk Nông", "68", "CH", 0.62, 0.5),
            ("68", "Lâm Đồng", "68", "CH", 1.30, 0.8),
            ("70", "Bình Phước", "75", "SE", 0.99, 0.8),
            ("72", "Tây Ninh", "80", "SE", 1.17, 1.0),
            ("74", "Bình Dương", "79", "SE", 2.43, 2.8),
            ("75", "Đồng Nai", "75", "SE", 3.10, 1.8),
            ("77", "Bà Rịa–Vũng Tàu", "79", "SE", 1.15, 4.0),
            ("79", "TP. Hồ Chí Minh", "79", "SE", 8.99, 5.0),
            ("80", "Long An", "80", "MD", 1.69, 1.3),
            ("82", "Tiền Giang", "82", "MD", 1.76, 0.8),
            ("83", "Bến Tre", "86", "MD", 1.29, 0.6),
            ("84", "Trà Vinh", "86", "MD", 1.01, 0.6),
            ("86", "Vĩnh Long", "86", "MD", 1.02, 0.6),
            ("87", "Đồng Tháp", "82", "MD", 1.60, 0.7),
            ("89", "An Giang", "91", "MD", 1.91, 0.7),
            ("91", "Kiên Giang", "91", "MD", 1.72, 0.8),
            ("92", "Cần Thơ", "92", "MD", 1.24, 1.3),
            ("93", "Hậu Giang", "92", "MD", 0.73, 0.6),
            ("94", "Sóc Trăng", "92", "MD", 1.20, 0.6),
            ("95", "Bạc Liêu", "96", "MD", 0.91, 0.6),
            ("96", "Cà Mau", "96", "MD", 1.19, 0.7),
        )
    )
}

# Coastal provinces, north to south (legacy codes): where storms make landfall.
_COAST: Final = tuple(
    _words("22 31 34 36 37 38 40 42 44 45 46 48 49 51 52 54 56 58 60 77 79 82 83 84 94 95 96 91")
)


@dataclass(frozen=True, slots=True)
class StationCode:
    """A station of the codes contract; ``legacy_region`` is its pre-2025 province (assumed from
    where it stands; each maps to ``region`` through the successor table)."""

    code: str
    name: str
    region: str
    legacy_region: str
    kind: str
    alarms: tuple[float, ...] = ()


STATIONS: Final[dict[str, StationCode]] = {
    s.code: s
    for s in (
        StationCode(
            "HN-LONGBIEN", "Hồng / Hà Nội (Long Biên)", "01", "01", "hydrological", (9.5, 10.5, 11.5)
        ),
        StationCode("HN-SONTAY", "Hồng / Sơn Tây", "01", "01", "hydrological", (12.4, 13.4, 14.4)),
        StationCode("PT-TRUNGHA", "Đà / Trung Hà", "25", "25", "hydrological", (15.0, 16.0, 17.0)),
        StationCode("HN-THUONGCAT", "Đuống / Thượng Cát", "01", "01", "hydrological", (9.0, 10.0, 11.0)),
        StationCode("HN-BATHA", "Đáy / Ba Thá", "01", "01", "hydrological", (5.5, 6.5, 7.5)),
        StationCode("AG-TANCHAU", "Tiền / Tân Châu", "91", "89", "hydrological", (3.5, 4.0, 4.5)),
        StationCode("AG-CHAUDOC", "Hậu / Châu Đốc", "91", "89", "hydrological", (3.0, 3.5, 4.0)),
        StationCode("HN-AQ-HOANKIEM", "Hoàn Kiếm", "01", "01", "air_quality"),
        StationCode("HCM-AQ-Q1", "Quận 1", "79", "79", "air_quality"),
        StationCode("HP-AQ-LECHAN", "Lê Chân", "31", "31", "air_quality"),
        StationCode("DN-AQ-HAICHAU", "Hải Châu", "48", "48", "air_quality"),
        StationCode("HUE-AQ-PHUHOI", "Phú Hội", "46", "46", "air_quality"),
        StationCode("CT-AQ-NINHKIEU", "Ninh Kiều", "92", "92", "air_quality"),
        StationCode("VL-SAL-TIEN", "Tiền river mouth", "86", "83", "salinity"),
        StationCode("VL-SAL-HAMLUONG", "Hàm Luông", "86", "83", "salinity"),
        StationCode("CT-SAL-HAU", "Hậu river", "92", "94", "salinity"),
        StationCode("AP-NOIBAI", "Nội Bài", "01", "01", "airport"),
        StationCode("AP-TANSONNHAT", "Tân Sơn Nhất", "79", "79", "airport"),
        StationCode("AP-DANANG", "Đà Nẵng", "48", "48", "airport"),
    )
}


def successor(legacy_code: str) -> str:
    """The current unit a legacy province merged into."""
    return LEGACY_PROVINCES[legacy_code].successor


def provinces_on(day: date) -> tuple[str, ...]:
    """Province codes in force on ``day``: the 63 legacy codes before 2025-07-01, then the 34."""
    return tuple(LEGACY_PROVINCES) if day < REFORM_DATE else tuple(CURRENT_PROVINCES)


def station_region(station: str, day: date) -> str:
    """The province a station belongs to on ``day``."""
    found = STATIONS[station]
    return found.legacy_region if day < REFORM_DATE else found.region


def reporter_for(indicator: str, day: date) -> str:
    """Who reports ``indicator`` on ``day`` in the simulation (the owner, EVN for power before NSMO)."""
    if indicator.startswith("PWR.") and day < NSMO_FROM:
        return "EVN"
    return INDICATORS[indicator].owner


# ============================================================================================
# Decree 09/2019/NĐ-CP reporting periods (local dates).


def month_period(day: date) -> tuple[int, int]:
    """The (year, month) of the Decree 09 month holding ``day``: 15th of the previous month .. 14th."""
    if day.day >= 15:
        return (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return day.year, day.month


def period_label(day: date, frequency: str) -> str | None:
    """Label of the Decree 09 period holding ``day`` (``2024-11``, ``2024-Q4``, ``2024``), None if daily."""
    year, month = month_period(day)
    if frequency == "monthly":
        return f"{year:04d}-{month:02d}"
    if frequency == "quarterly":
        return f"{year:04d}-Q{(month - 1) // 3 + 1}"
    if frequency == "annual":
        return f"{year:04d}"
    return None


def is_cutoff(day: date, frequency: str) -> bool:
    """Whether ``day`` is the last day (cut-off) of a Decree 09 period of ``frequency``."""
    if day.day != 14:
        return False
    if frequency == "monthly":
        return True
    if frequency == "quarterly":
        return day.month in (3, 6, 9, 12)
    return frequency == "annual" and day.month == 12


# ============================================================================================
# Small numeric helpers.


def _interp(table: tuple[tuple[float, float], ...], x: float) -> float:
    """Piecewise-linear through ``table`` (sorted by x), flat beyond its ends."""
    if x <= table[0][0]:
        return table[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(table):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return table[-1][1]


def _season(doy: int, peak: float, sigma: float) -> float:
    """1 at day-of-year ``peak``, a Gaussian bump of width ``sigma`` days, wrapping around the year."""
    distance = abs(doy - peak) % 365.25
    distance = min(distance, 365.25 - distance)
    return math.exp(-0.5 * (distance / sigma) ** 2)


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


@dataclass(frozen=True, slots=True)
class _Spec:
    """How many episodes a year, between which days of the year, how high and how wide."""

    count: tuple[int, int]
    doy: tuple[int, int]
    height: tuple[float, float]
    width: tuple[float, float]


@functools.lru_cache(maxsize=8192)
def _episodes(seed: int, name: str, year: int, spec: _Spec) -> tuple[tuple[int, float, float], ...]:
    """Episodes (centre ordinal, width in days, height) of one year, fixed by seed, name and year."""
    rng = random.Random(f"{seed}|episodes|{name}|{year}")
    start = date(year, 1, 1).toordinal() - 1
    return tuple(
        (start + rng.randint(*spec.doy), rng.uniform(*spec.width), rng.uniform(*spec.height))
        for _ in range(rng.randint(*spec.count))
    )


def _bump(seed: int, name: str, day: date, spec: _Spec) -> float:
    """The sum of this and last year's episodes at ``day`` (Gaussian shapes)."""
    ordinal, total = day.toordinal(), 0.0
    for year in (day.year - 1, day.year):
        for centre, width, height in _episodes(seed, name, year, spec):
            distance = (ordinal - centre) / width
            if -4 < distance < 4:
                total += height * math.exp(-0.5 * distance * distance)
    return total


@functools.lru_cache(maxsize=4096)
def _year_factor(seed: int, name: str, year: int, low: float, high: float) -> float:
    return random.Random(f"{seed}|year|{name}|{year}").uniform(low, high)


@functools.lru_cache(maxsize=4096)
def _fixed_offset(seed: int, name: str, sigma: float) -> float:
    """A per-entity offset that never changes (a province's own level)."""
    return random.Random(f"{seed}|offset|{name}").gauss(0.0, sigma)


# Lunar New Year (Tết) dates, for holiday effects.
_TET: Final = {
    d.year: (d.month, d.day)
    for d in map(
        date.fromisoformat,
        _words(
            """2010-02-14 2011-02-03 2012-01-23 2013-02-10 2014-01-31 2015-02-19 2016-02-08 2017-01-28
        2018-02-16 2019-02-05 2020-01-25 2021-02-12 2022-02-01 2023-01-22 2024-02-10 2025-01-29
        2026-02-17 2027-02-06 2028-01-26""",
        ),
    )
}


def _days_from_tet(day: date) -> int:
    month, dom = _TET.get(day.year, (2, 5))
    return (day - date(day.year, month, dom)).days


# ============================================================================================
# Areas: the provinces in force on a day, with what shapes their values.


@dataclass(frozen=True, slots=True)
class _Area:
    code: str
    zone: str
    population: float
    economy: float  # population x economic factor
    coast: int | None  # position along the coast, north to south
    pop_share: float
    econ_share: float


@functools.lru_cache(maxsize=2)
def _areas(legacy: bool) -> tuple[_Area, ...]:
    groups: dict[str, list[LegacyProvince]] = {}
    for province in LEGACY_PROVINCES.values():
        groups.setdefault(province.code if legacy else province.successor, []).append(province)
    total_pop = sum(p.population for p in LEGACY_PROVINCES.values())
    total_econ = sum(p.population * p.economy for p in LEGACY_PROVINCES.values())
    out = []
    for code, members in groups.items():
        population = sum(p.population for p in members)
        economy = sum(p.population * p.economy for p in members)
        coast = [_COAST.index(p.code) for p in members if p.code in _COAST]
        out.append(
            _Area(
                code,
                LEGACY_PROVINCES[code].zone,
                population,
                economy,
                min(coast) if coast else None,
                population / total_pop,
                economy / total_econ,
            )
        )
    return tuple(sorted(out, key=lambda a: a.code))


@dataclass(slots=True)
class _Day:
    """What every model needs to know about one simulated day."""

    day: date
    seed: int
    legacy: bool
    areas: tuple[_Area, ...]
    doy: int
    yf: float  # year with fraction, for growth tables

    @classmethod
    def of(cls, day: date, seed: int) -> _Day:
        legacy = day < REFORM_DATE
        doy = day.timetuple().tm_yday
        return cls(day, seed, legacy, _areas(legacy), doy, day.year + (doy - 0.5) / 365.25)

    def rng(self, name: str) -> random.Random:
        """This day's random numbers for ``name``: the same for the same seed and date."""
        return random.Random(f"{self.seed}|{name}|{self.day.isoformat()}")

    def region(self, station: str) -> str:
        return station_region(station, self.day)

    def bump(self, name: str, spec: _Spec) -> float:
        return _bump(self.seed, name, self.day, spec)


# A generated value: indicator, region, station, value, breakdowns.
_Value = tuple[str, str, str | None, float, dict[str, str] | None]
_Model = Callable[[_Day], Iterator[_Value]]


# ============================================================================================
# Daily models.

# Traffic (MPS): about 65 crashes and 30 deaths a day nationally (2024), more around holidays.
_ACCIDENTS_PER_DAY: Final = 65.0
_DEATHS_PER_ACCIDENT: Final = 30.0 / 65.0


def _traffic(d: _Day) -> Iterator[_Value]:
    rng = d.rng("traffic")
    factor = 1.1 if d.day.weekday() >= 5 else 0.96
    if -3 <= _days_from_tet(d.day) <= 7:
        factor *= 1.35
    if (d.day.month, d.day.day) in {(4, 30), (5, 1), (9, 2), (9, 1), (1, 1)}:
        factor *= 1.25
    for area in d.areas:
        accidents = _poisson(rng, _ACCIDENTS_PER_DAY * factor * area.pop_share)
        deaths = _poisson(rng, _DEATHS_PER_ACCIDENT * accidents)
        yield "TRF.ACCIDENTS", area.code, None, float(accidents), None
        yield "TRF.DEATHS", area.code, None, float(deaths), None


# Electricity: GWh a day, yearly average (about 100 TWh in 2010, 306 TWh in 2024, 850-890 a day in
# 2024-2025); May-July heat raises it, Tết lowers it.
_GWH_PER_DAY: Final = _series("""
    2010.5 275, 2011.5 300, 2012.5 330, 2013.5 360, 2014.5 395, 2015.5 437, 2016.5 485, 2017.5 525,
    2018.5 580, 2019.5 630, 2020.5 675, 2021.5 700, 2022.5 740, 2023.5 780, 2024.5 855, 2025.5 880,
    2026.5 925""")
_HEAT_WAVES: Final = _Spec(count=(1, 3), doy=(100, 200), height=(0.04, 0.12), width=(2.0, 5.0))


def electricity_gwh(day: date, seed: int, rng: random.Random) -> float:
    """Simulated daily electricity output (GWh) on ``day``."""
    doy = day.timetuple().tm_yday
    gwh = _interp(_GWH_PER_DAY, day.year + doy / 365.25)
    gwh *= 0.97 + 0.06 * _season(doy, 165, 45)
    if -2 <= _days_from_tet(day) <= 5:
        gwh *= 0.78
    if day.weekday() == 6:
        gwh *= 0.94
    gwh *= 1.0 + _bump(seed, "heat", day, _HEAT_WAVES)
    return round(gwh * (1.0 + rng.gauss(0.0, 0.012)), 1)


def _source_shares(d: _Day, rng: random.Random) -> dict[str, float]:
    yf, doy = d.yf, d.doy
    shares = {
        "hydro": _interp(
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
        + 9.0 * (_season(doy, 265, 55) - 0.4),
        "gas": _interp(((2010.0, 30.0), (2015.0, 26.0), (2020.0, 16.0), (2024.0, 10.0), (2026.0, 9.0)), yf),
        "solar": _interp(((2019.2, 0.0), (2019.6, 5.0), (2020.5, 9.0), (2021.5, 11.0), (2026.0, 12.0)), yf)
        * (0.9 + 0.2 * _season(doy, 90, 50)),
        "wind": _interp(((2018.0, 0.3), (2020.0, 0.5), (2021.9, 1.5), (2022.5, 4.0), (2026.0, 5.0)), yf),
        "import": _interp(((2010.0, 4.5), (2015.0, 1.5), (2020.0, 1.3), (2024.0, 1.8), (2026.0, 2.0)), yf),
        "other": 1.0,
    }
    for name, sigma in (("hydro", 0.04), ("solar", 0.08), ("wind", 0.15), ("gas", 0.03)):
        shares[name] = max(0.0, shares[name] * (1.0 + rng.gauss(0.0, sigma)))
    shares["coal"] = max(5.0, 100.0 - sum(shares.values()))
    total = sum(shares.values())
    rounded = {name: round(100.0 * value / total, 1) for name, value in shares.items()}
    rounded["coal"] = round(rounded["coal"] + 100.0 - sum(rounded.values()), 1)
    return rounded


def _power(d: _Day) -> Iterator[_Value]:
    rng = d.rng("power")
    gwh = electricity_gwh(d.day, d.seed, rng)
    yield "PWR.OUTPUT_GWH", NATIONAL, None, gwh, None
    yield "PWR.PEAK_MW", NATIONAL, None, float(round(gwh * 1000 / 24 * 1.2 * (1 + rng.gauss(0, 0.015)))), None
    for source, share in _source_shares(d, rng).items():
        yield "PWR.SOURCE_SHARE", NATIONAL, None, share, {"source": source}


# VN_AQI (daily): (summer level, winter rise, peak day of the polluted season, smog episodes).
_AIR: Final[dict[str, tuple[float, float, int, _Spec | None]]] = {
    "HN-AQ-HOANKIEM": (55.0, 55.0, 10, _Spec((4, 7), (305, 425), (30.0, 90.0), (1.5, 3.0))),
    "HP-AQ-LECHAN": (48.0, 45.0, 10, _Spec((2, 4), (305, 425), (20.0, 60.0), (1.5, 3.0))),
    "HUE-AQ-PHUHOI": (35.0, 20.0, 15, None),
    "DN-AQ-HAICHAU": (32.0, 18.0, 15, None),
    "HCM-AQ-Q1": (52.0, 25.0, 45, _Spec((1, 3), (1, 110), (15.0, 35.0), (1.5, 3.0))),
    "CT-AQ-NINHKIEU": (42.0, 20.0, 45, None),
}


def _air(d: _Day) -> Iterator[_Value]:
    rng = d.rng("air")
    for station, (base, rise, peak, smog) in _AIR.items():
        aqi = base + rise * _season(d.doy, peak, 50) + rng.gauss(0.0, 9.0)
        if smog is not None:
            aqi += d.bump(f"smog|{station}", smog)
        yield "ENV.AQI", d.region(station), station, round(min(200.0, max(20.0, aqi))), None


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
_CRESTS: Final = _Spec((2, 4), (160, 270), (0.3, 1.0), (2.0, 4.0))
_MEKONG: Final[dict[str, tuple[float, float]]] = {"AG-TANCHAU": (0.9, 2.6), "AG-CHAUDOC": (0.8, 2.2)}
# Known flood years on the Mekong (2011 high; 2019-2020 low); others drawn per year.
_MEKONG_YEARS: Final = {2011: 1.45, 2018: 1.1, 2019: 0.55, 2020: 0.6}


def _big_flood(d: _Day) -> float:
    """0..1: the shape of this year's big Red River flood, if the year has one (about one in eight)."""
    year = d.day.year
    if _year_factor(d.seed, "big-flood", year, 0.0, 1.0) >= 0.125:
        return 0.0
    centre = date(year, 1, 1).toordinal() + round(_year_factor(d.seed, "big-flood-day", year, 200.0, 260.0))
    distance = (d.day.toordinal() - centre) / 3.0
    return math.exp(-0.5 * distance * distance) if -4 < distance < 4 else 0.0


def _water(d: _Day) -> Iterator[_Value]:
    rng = d.rng("water")
    big_flood = _big_flood(d)
    crest = d.bump("crests|red-river", _CRESTS)
    for station, (dry, rise, crest_scale, big) in _RED_RIVER.items():
        level = dry + rise * _season(d.doy, 225, 45) + crest_scale * min(1.0, crest)
        if big_flood:
            level += big_flood * _year_factor(d.seed, f"big|{station}", d.day.year, *big)
        yield "HYD.WATER_LEVEL", d.region(station), station, round(level + rng.gauss(0.0, 0.05), 2), None
    for station, (dry, rise) in _MEKONG.items():
        year = _MEKONG_YEARS.get(d.day.year) or _year_factor(d.seed, "mekong", d.day.year, 0.7, 1.2)
        level = dry + rise * year * _season(d.doy, 280, 40) + rng.gauss(0.0, 0.03)
        yield "HYD.WATER_LEVEL", d.region(station), station, round(level, 2), None


# Salinity: the dry season (December to May, worst in March); 2016 and 2020 were severe.
_SALINITY: Final[dict[str, float]] = {"VL-SAL-TIEN": 45.0, "VL-SAL-HAMLUONG": 55.0, "CT-SAL-HAU": 42.0}
_SALINE_YEARS: Final = {2016: 1.5, 2020: 1.55, 2024: 1.25}


def _dry_season_severity(seed: int, day: date) -> float:
    season_year = day.year + 1 if day.month >= 10 else day.year
    return _SALINE_YEARS.get(season_year) or _year_factor(seed, "dry-season", season_year, 0.75, 1.1)


def _salinity(d: _Day) -> Iterator[_Value]:
    rng = d.rng("salinity")
    severity = _dry_season_severity(d.seed, d.day)
    shape = _season(d.doy, 75, 45)
    for station, peak_km in _SALINITY.items():
        km = 6.0 + peak_km * severity * shape + rng.gauss(0.0, 1.5)
        permille = 1.0 + 14.0 * severity * shape + rng.gauss(0.0, 0.6)
        region = d.region(station)
        yield "HYD.SALINITY_4PPT_KM", region, station, round(max(0.0, km), 1), None
        yield "HYD.SALINITY_MAX", region, station, round(min(32.0, max(0.1, permille)), 1), None


# Forest fire danger (levels I..V as 1..5): each zone's dry season, plus hot spells.
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
_HOT_SPELLS: Final = _Spec((2, 4), (1, 365), (0.15, 0.35), (2.0, 4.0))


def _fire(d: _Day) -> Iterator[_Value]:
    rng = d.rng("fire")
    hot = {zone: d.bump(f"hot|{zone}", _HOT_SPELLS) for zone in _FIRE_SEASON}
    for area in d.areas:
        peak, sigma, amplitude = _FIRE_SEASON[area.zone]
        dryness = amplitude * _season(d.doy, peak, sigma) + hot[area.zone] + rng.gauss(0.0, 0.05)
        yield "DIS.FOREST_FIRE", area.code, None, float(min(5, max(1, 1 + int(dryness * 4.2)))), None


# Drought (ha affected): highlands, south-central and the Mekong delta in the dry season.
_DROUGHT_CAP_HA: Final = {"CH": 30_000.0, "SC": 15_000.0, "MD": 25_000.0, "SE": 8_000.0, "NC": 5_000.0}


def _drought(d: _Day) -> Iterator[_Value]:
    rng = d.rng("drought")
    severity = _dry_season_severity(d.seed, d.day)
    shape = _season(d.doy, 80, 45)
    for area in d.areas:
        cap = _DROUGHT_CAP_HA.get(area.zone, 0.0)
        hectares = max(0.0, severity * shape - 0.6) / 0.9 * cap * (1.0 + rng.gauss(0.0, 0.05))
        yield "DIS.DROUGHT_HA", area.code, None, float(round(max(0.0, hectares), -1)), None


# Storms: landfalls from June (north) to December (south-central), a few coastal provinces each.
_STORMS: Final = _Spec((5, 11), (166, 344), (0.0, 1.0), (0.0, 1.0))


def storms_on(seed: int, day: date) -> dict[str, int]:
    """Disaster risk levels (Decision 18/2021: 3 large .. 5 catastrophic) of storms hitting on
    ``day``, by legacy coastal province code."""
    out: dict[str, int] = {}
    for index, (centre, _w, draw) in enumerate(_episodes(seed, "storms", day.year, _STORMS)):
        offset = day.toordinal() - centre
        if not 0 <= offset <= 1:
            continue
        doy = centre - date(day.year, 1, 1).toordinal() + 1
        middle = _interp(((166.0, 2.0), (240.0, 8.0), (290.0, 13.0), (344.0, 20.0)), doy)
        rank = round(middle + (draw - 0.5) * 8)
        level = 5 if draw > 0.97 else 4 if draw > 0.72 else 3
        spread = 1 + index % 3
        for position in range(max(0, rank - spread), min(len(_COAST), rank + spread + 1)):
            out[_COAST[position]] = max(out.get(_COAST[position], 0), level)
    return out


def _storm_levels(d: _Day) -> dict[str, int]:
    hits = storms_on(d.seed, d.day)
    if d.legacy or not hits:
        return hits
    out: dict[str, int] = {}
    for code, level in hits.items():
        out[successor(code)] = max(out.get(successor(code), 0), level)
    return out


def _risk(d: _Day) -> Iterator[_Value]:
    for code, level in sorted(_storm_levels(d).items()):
        yield "DIS.RISK_LEVEL", code, None, float(level), None


_LANDSLIDE_ZONE: Final = {"NW": 1.0, "NE": 0.7, "CH": 0.6, "NC": 0.5, "SC": 0.4, "SE": 0.1, "RRD": 0.05}


def _landslide(d: _Day) -> Iterator[_Value]:
    rng = d.rng("landslide")
    storms = _storm_levels(d)
    rainy = _season(d.doy, 230, 50)
    for area in d.areas:
        if area.zone == "MD":  # river-bank landslides in the flood season
            lam = 0.25 * _season(d.doy, 290, 40)
        else:
            lam = 0.25 * _LANDSLIDE_ZONE.get(area.zone, 0.0) * rainy
        lam += 1.5 * storms.get(area.code, 0) / 3
        yield "DIS.LANDSLIDE_SITES", area.code, None, float(_poisson(rng, lam)), None


def _sar(d: _Day) -> Iterator[_Value]:
    rng = d.rng("sar")
    storms = _storm_levels(d)
    for area in d.areas:
        lam = 0.08 + (0.12 if area.coast is not None else 0.0) + 0.6 * storms.get(area.code, 0)
        yield "DIS.SAR_INCIDENTS", area.code, None, float(_poisson(rng, lam)), None


# State budget revenue (bn VND a year, about 588,000 in 2010 and 2,030,000 in 2024).
_REVENUE: Final = _series("""
    2010.5 588000, 2012.5 744000, 2015.5 1000000, 2017.5 1290000, 2019.5 1550000, 2020.5 1510000,
    2021.5 1570000, 2022.5 1810000, 2023.5 1750000, 2024.5 2030000, 2025.5 2300000, 2026.5 2450000""")
_WEEKDAY_REVENUE: Final = (1.33, 1.33, 1.33, 1.33, 1.33, 0.25, 0.1)


def _revenue(d: _Day) -> Iterator[_Value]:
    rng = d.rng("revenue")
    national = _interp(_REVENUE, d.yf) / 365.0 * _WEEKDAY_REVENUE[d.day.weekday()]
    national *= 1.3 if d.day.day >= 25 else 0.9
    if -1 <= _days_from_tet(d.day) <= 4:
        national *= 0.3
    for area in d.areas:
        value = national * area.econ_share * max(0.0, 1.0 + rng.gauss(0.0, 0.15))
        yield "FIN.BUDGET_REVENUE", area.code, None, round(value, 1), None


# ============================================================================================
# Periodic models (run on the Decree 09 cut-off days).

_EXPENDITURE: Final = _series(
    "2010.5 650000, 2015.5 1150000, 2019.5 1450000, 2022.5 1560000, 2024.5 1800000, 2025.5 2100000"
)
# Consumer prices, % year on year (annual averages, rounded).
_CPI: Final = _series("""
    2010.5 9.2, 2011.5 18.6, 2012.5 9.2, 2013.5 6.6, 2014.5 4.1, 2015.5 0.6, 2016.5 2.7, 2017.5 3.5,
    2018.5 3.5, 2019.5 2.8, 2020.5 3.2, 2021.5 1.8, 2022.5 3.2, 2023.5 3.3, 2024.5 3.6, 2025.5 3.3,
    2026.5 3.3""")
_FDI_BN_USD: Final = _series(
    "2010.5 19.9, 2015.5 24.1, 2019.5 38.0, 2020.5 28.5, 2022.5 27.7, 2023.5 36.6, 2024.5 38.2, 2025.5 38.4"
)
_FDI_FACTOR: Final = {
    code: float(factor)
    for code, factor in (
        item.split(":")
        for item in _words(
            "27:6 31:4 74:5 79:4 75:3.5 01:3 22:2.5 24:2.5 26:2.5 80:2.5 19:2 30:2 77:2.5 35:1.5 72:1.5"
        )
    )
}
_FIRMS: Final = {  # firms a year
    "ENT.NEW": _series("""2010.5 83600, 2015.5 94750, 2019.5 138100, 2020.5 134900, 2021.5 116800,
        2022.5 148500, 2023.5 159800, 2024.5 165500, 2025.5 190000"""),
    "ENT.SUSPENDED": _series("""2010.5 40000, 2015.5 71400, 2019.5 79700, 2021.5 119800, 2023.5 172600,
        2024.5 197900, 2025.5 200000"""),
    "ENT.RESUMED": _series("""2010.5 20000, 2015.5 21500, 2019.5 39400, 2021.5 43100, 2023.5 58000,
        2024.5 76200, 2025.5 100000"""),
}


def _fdi_weight(area: _Area, legacy: bool) -> float:
    codes = [area.code] if legacy else [p.code for p in LEGACY_PROVINCES.values() if p.successor == area.code]
    return sum(
        LEGACY_PROVINCES[c].population
        * _FDI_FACTOR.get(c, 0.2 if LEGACY_PROVINCES[c].zone in {"NW", "NE"} else 0.6)
        for c in codes
    )


def _finance_monthly(d: _Day) -> Iterator[_Value]:
    rng = d.rng("finance-monthly")
    year, month = month_period(d.day)
    tet_month = month_period(date(year, *_TET.get(year, (2, 5)))) == (year, month)
    expenditure = _interp(_EXPENDITURE, d.yf) / 12.0 * (1.6 if month == 12 else 0.95)
    cpi = _interp(_CPI, d.yf)
    fdi = _interp(_FDI_BN_USD, d.yf) * 1000.0 / 12.0 * math.exp(rng.gauss(0.0, 0.35))
    fdi_weights = [_fdi_weight(a, d.legacy) * rng.expovariate(1.0) for a in d.areas]
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
            None,
            round(expenditure * weight * (1 + rng.gauss(0, 0.1)), 1),
            None,
        )
        yield "FIN.CPI", area.code, None, round(cpi + rng.gauss(0.0, 0.35), 2), None
        yield "INV.FDI_REGISTERED", area.code, None, round(fdi * fdi_weight / fdi_total, 2), None
        for indicator, table in _FIRMS.items():
            mean = _interp(table, d.yf) / 12.0 * seasonal[indicator] * area.econ_share
            yield indicator, area.code, None, float(_poisson(rng, mean)), None


_HEALTH_COVERAGE: Final = _series("""
    2010.5 60.9, 2012.5 66.8, 2014.5 71.6, 2016.5 81.7, 2018.5 86.8, 2019.5 89.0, 2020.5 90.9,
    2022.5 92.0, 2023.5 93.3, 2024.5 94.3, 2025.5 95.0""")
_SOCIAL_M: Final = _series(
    "2010.5 9.4, 2015.5 12.3, 2019.5 15.0, 2020.5 16.1, 2021.5 16.5, 2023.5 18.3, 2024.5 19.2, 2025.5 20.0"
)
_UNEMPLOYMENT_M: Final = _series(
    "2010.5 7.2, 2015.5 10.3, 2019.5 13.0, 2021.5 13.4, 2023.5 14.6, 2025.5 15.5"
)


def _social_insurance(d: _Day) -> Iterator[_Value]:
    rng = d.rng("social-insurance")
    growth = 1.0 + 0.0095 * (d.yf - 2019.5)
    coverage = _interp(_HEALTH_COVERAGE, d.yf) / 100.0
    social, unemployment = _interp(_SOCIAL_M, d.yf) * 1e6, _interp(_UNEMPLOYMENT_M, d.yf) * 1e6
    total_work = sum(a.population * math.sqrt(a.economy / a.population) for a in d.areas)
    for area in d.areas:
        mountain = 1.02 if area.zone in {"NW", "NE", "CH"} else 1.0
        own = 1.0 + _fixed_offset(d.seed, f"ssi|{area.code}", 0.015)
        insured = area.population * 1e6 * growth * min(0.995, coverage * mountain * own)
        work = area.population * math.sqrt(area.economy / area.population) / total_work
        noise = 1.0 + rng.gauss(0.0, 0.002)
        yield "SSI.HEALTH", area.code, None, float(round(insured * noise)), None
        yield "SSI.SOCIAL", area.code, None, float(round(social * work * noise)), None
        yield "SSI.UNEMPLOYMENT", area.code, None, float(round(unemployment * work * noise)), None


_ONLINE_SERVICES: Final = _series("2020 25, 2021 35, 2022 45, 2023 55, 2024 62, 2025 75, 2026 85")
ADMIN_FROM: Final = date(2020, 1, 1)  # the national public-service portal's indicators, from 2020


def _administration(d: _Day) -> Iterator[_Value]:
    if d.day < ADMIN_FROM:
        return
    rng = d.rng("administration")
    for area in d.areas:
        online = _interp(_ONLINE_SERVICES, d.yf) + _fixed_offset(d.seed, f"online|{area.code}", 8.0)
        on_time = 95.0 + _fixed_offset(d.seed, f"on-time|{area.code}", 1.5) + rng.gauss(0.0, 1.0)
        yield (
            "ADM.ONLINE_SERVICES",
            area.code,
            None,
            round(min(100.0, max(0.0, online + rng.gauss(0, 2))), 1),
            None,
        )
        yield "ADM.DOSSIERS_ON_TIME", area.code, None, round(min(100.0, max(80.0, on_time)), 1), None


# Expressways in service (km): >2,000 at the end of 2024, 3,000 targeted for the end of 2025.
_EXPRESSWAY_KM: Final = _series("""
    2010 80, 2011 120, 2012 300, 2013 400, 2014 600, 2015 750, 2016 780, 2017 900, 2018 1000,
    2019 1100, 2020 1160, 2021 1240, 2022 1600, 2023 1800, 2024 1900, 2025 2020, 2026 3100, 2027 3500""")
_AIRPORT_M: Final = {  # passengers a year, millions
    "AP-NOIBAI": _series("2010.5 9.5, 2015.5 20.6, 2019.5 29.3, 2023.5 27.0, 2024.5 29.0, 2025.5 31.0"),
    "AP-TANSONNHAT": _series("2010.5 15.5, 2015.5 26.5, 2019.5 41.2, 2023.5 41.0, 2024.5 43.0, 2025.5 45.0"),
    "AP-DANANG": _series("2010.5 3.0, 2015.5 8.4, 2019.5 15.5, 2023.5 11.0, 2024.5 14.0, 2025.5 16.0"),
}
# Covid-19: air traffic as a share of normal, by Decree 09 month.
_COVID: Final = _series("""2020.02 0.8, 2020.03 0.5, 2020.04 0.1, 2020.05 0.5, 2020.06 0.8, 2020.08 0.6,
    2021.05 0.3, 2021.07 0.03, 2021.11 0.3, 2022.01 0.5, 2022.04 0.85, 2023.01 1.0""")


def _covid(year: int, month: int) -> float:
    """Covid-19: air traffic as a share of normal in a Decree 09 month (a step function)."""
    key = year + month / 100
    if not _COVID[0][0] <= key < _COVID[-1][0]:
        return 1.0
    return next(share for start, share in reversed(_COVID) if start <= key)


def _transport(d: _Day) -> Iterator[_Value]:
    rng = d.rng("transport")
    year, month = month_period(d.day)
    yield (
        "TRN.EXPRESSWAY_KM",
        NATIONAL,
        None,
        float(5 * round(_interp(_EXPRESSWAY_KM, year + (month - 1) / 12) / 5)),
        None,
    )
    season = 1.12 if month in (1, 2, 6, 7, 8) else 0.92 if month in (9, 10, 11) else 1.0
    for station, table in _AIRPORT_M.items():
        passengers = _interp(table, d.yf) * 1e6 / 12 * season * _covid(year, month)
        passengers *= 1.0 + rng.gauss(0.0, 0.03)
        yield "TRN.AIR_PASSENGERS", d.region(station), station, float(round(passengers)), None


def _legal_aid(d: _Day) -> Iterator[_Value]:
    rng = d.rng("legal-aid")
    national = _interp(((2010.0, 20_000.0), (2017.0, 8_000.0), (2024.0, 10_000.0)), d.yf)  # cases a quarter
    for area in d.areas:
        yield "JUS.LEGAL_AID", area.code, None, float(_poisson(rng, national * area.pop_share)), None


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
_DOCTOR_HUBS: Final = {"01": 2.0, "79": 1.8, "46": 2.5, "48": 1.8, "92": 1.7, "31": 1.3}
LEGAL_ACCESS_FROM: Final = 2014  # the legal-access standard for communes is assessed from 2014 on


def _annual(d: _Day) -> Iterator[_Value]:
    rng = d.rng("annual")
    year = d.day.year
    for indicator, series in _DEBT.items():
        value = series[min(max(year - 2010, 0), len(series) - 1)]
        yield indicator, NATIONAL, None, value, None
    doctors = _interp(_DOCTORS, d.yf)
    enrolment = _interp(((2010.0, 88.0), (2015.0, 91.0), (2020.0, 93.5), (2025.0, 95.0)), d.yf)
    access = _interp(((2014.0, 60.0), (2017.0, 80.0), (2020.0, 88.0), (2025.0, 93.0)), d.yf)
    for area in d.areas:
        mountain = area.zone in {"NW", "NE", "CH"}
        hub = _DOCTOR_HUBS.get(area.code, 0.8 if mountain else 0.95)
        per_10k = doctors * hub * (1 + _fixed_offset(d.seed, f"doctors|{area.code}", 0.08))
        yield "HLT.DOCTORS_PER_10K", area.code, None, round(per_10k + rng.gauss(0, 0.1), 1), None
        rate = enrolment - (4.0 if mountain else 0.0) + rng.gauss(0.0, 1.0)
        yield "EDU.ENROLMENT_RATE", area.code, None, round(min(99.8, rate), 1), None
        if year >= LEGAL_ACCESS_FROM:
            share = access + _fixed_offset(d.seed, f"legal|{area.code}", 4.0) + rng.gauss(0.0, 1.0)
            yield "JUS.LEGAL_ACCESS", area.code, None, round(min(100.0, max(0.0, share)), 1), None


# Every model, the frequency it runs at, and the indicators it yields.
_MODELS: Final[tuple[tuple[_Model, str, tuple[str, ...]], ...]] = (
    (_power, "daily", ("PWR.OUTPUT_GWH", "PWR.PEAK_MW", "PWR.SOURCE_SHARE")),
    (_air, "daily", ("ENV.AQI",)),
    (_water, "daily", ("HYD.WATER_LEVEL",)),
    (_salinity, "daily", ("HYD.SALINITY_4PPT_KM", "HYD.SALINITY_MAX")),
    (_fire, "daily", ("DIS.FOREST_FIRE",)),
    (_drought, "daily", ("DIS.DROUGHT_HA",)),
    (_landslide, "daily", ("DIS.LANDSLIDE_SITES",)),
    (_risk, "daily", ("DIS.RISK_LEVEL",)),
    (_sar, "daily", ("DIS.SAR_INCIDENTS",)),
    (_traffic, "daily", ("TRF.ACCIDENTS", "TRF.DEATHS")),
    (_revenue, "daily", ("FIN.BUDGET_REVENUE",)),
    (_finance_monthly, "monthly", ("FIN.BUDGET_EXPENDITURE", "FIN.CPI", "INV.FDI_REGISTERED", *_FIRMS)),
    (_social_insurance, "monthly", ("SSI.HEALTH", "SSI.SOCIAL", "SSI.UNEMPLOYMENT")),
    (_administration, "monthly", ("ADM.ONLINE_SERVICES", "ADM.DOSSIERS_ON_TIME")),
    (_transport, "monthly", ("TRN.EXPRESSWAY_KM", "TRN.AIR_PASSENGERS")),
    (_legal_aid, "quarterly", ("JUS.LEGAL_AID",)),
    (_annual, "annual", (*_DEBT, "HLT.DOCTORS_PER_10K", "EDU.ENROLMENT_RATE", "JUS.LEGAL_ACCESS")),
)
BREAKDOWNS: Final[dict[str, tuple[str, ...]]] = {"PWR.SOURCE_SHARE": ("source",)}


# ============================================================================================
# History: rows, files.


def _local_ms(day: date, hour: int) -> int:
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=LOCAL_TZ).timestamp()) * 1000


def history(
    start: date, end: date, *, seed: int = 7, reporters: Collection[str] | None = None
) -> Iterator[dict[str, Any]]:
    """Observation records (Avro-shaped dicts, times in epoch ms) for every day from ``start`` to
    ``end`` inclusive, in date order. ``reporters`` keeps only those reporters' rows."""
    wanted = None if reporters is None else frozenset(r.upper() for r in reporters)
    models = [
        (model, frequency)
        for model, frequency, indicators in _MODELS
        if wanted is None or any(set(INDICATORS[i].reporters) & wanted for i in indicators)
    ]
    one_day = timedelta(days=1)
    day = start
    while day <= end:
        d = _Day.of(day, seed)
        event_ms = _local_ms(day, 12)  # noon local: unambiguously this local date
        daily_report_ms = event_ms + 20 * 3_600_000  # 08:00 the next morning
        periodic_report_ms = event_ms + 6 * 86_400_000 - 3 * 3_600_000  # the 20th, before the 25th deadline
        for model, frequency in models:
            if frequency != "daily" and not is_cutoff(day, frequency):
                continue
            for indicator, region, station, value, breakdowns in model(d):
                reporter = reporter_for(indicator, day)
                if wanted is not None and reporter not in wanted:
                    continue
                spec = INDICATORS[indicator]
                label = period_label(day, spec.frequency)
                suffix = "".join(f":{v}" for v in breakdowns.values()) if breakdowns else ""
                entity = f"{indicator}:{region}:{station or '-'}"
                yield {
                    "observation_id": f"{reporter}:{entity}:{label or day.isoformat()}{suffix}",
                    "revision": 0,
                    "reporter": reporter,
                    "indicator": indicator,
                    "region": region,
                    "station": station,
                    "value": value,
                    "unit": spec.unit,
                    "event_time": event_ms,
                    "report_time": daily_report_ms if label is None else periodic_report_ms,
                    "quality": "FINAL",
                    "period": label,
                    "breakdowns": breakdowns or {},
                }
        day += one_day


_FIELDS: Final = (
    "observation_id",
    "revision",
    "reporter",
    "indicator",
    "region",
    "station",
    "value",
    "unit",
    "event_time",
    "report_time",
    "quality",
    "period",
)


def _iso_local(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, LOCAL_TZ).isoformat()


def write_history(
    rows: Iterable[dict[str, Any]], stream: IO[str], fmt: str, breakdowns: Iterable[str] = ()
) -> int:
    """Write ``rows`` as JSONL (times in epoch ms) or CSV (ISO-8601 local times, ``breakdown.<name>``
    columns for ``breakdowns``); returns the number of rows written."""
    count = 0
    if fmt == "jsonl":
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        write = stream.write
        for row in rows:
            write(dumps(row) + "\n")
            count += 1
        return count
    names = tuple(breakdowns)
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow([*_FIELDS, *(f"breakdown.{n}" for n in names)])
    for row in rows:
        cells = [row[f] for f in _FIELDS]
        cells[8], cells[9] = _iso_local(row["event_time"]), _iso_local(row["report_time"])
        extra = row["breakdowns"]
        writer.writerow([*("" if c is None else c for c in cells), *(extra.get(n, "") for n in names)])
        count += 1
    return count


def parse_range(text: str) -> tuple[date, date]:
    """``FROM:TO`` as dates; each is ``YYYY-MM-DD`` or a year (``2010:2015`` = whole years)."""
    first, sep, last = text.partition(":")
    if not sep:
        raise ConfigurationError(f"--history {text!r}: expected FROM:TO (e.g. 2010-01-01:2015-12-31)")

    def parse(part: str, end: bool) -> date:
        part = part.strip()
        try:
            if part.isdigit() and len(part) == 4:
                return date(int(part), 12, 31) if end else date(int(part), 1, 1)
            return date.fromisoformat(part)
        except ValueError:
            raise ConfigurationError(f"--history: {part!r} is not a date (YYYY-MM-DD or YYYY)") from None

    start, stop = parse(first, False), parse(last, True)
    if stop < start:
        raise ConfigurationError(f"--history: {stop} is before {start}")
    if start < HISTORY_START:
        raise ConfigurationError(f"--history: the reporting history starts on {HISTORY_START}")
    return start, stop


def _checked_reporters(reporters: Iterable[str] | None) -> list[str] | None:
    if reporters is None:
        return None
    out = [r.strip().upper() for r in reporters]
    unknown = sorted(set(out) - REPORTERS.keys())
    if unknown:
        raise ConfigurationError(f"unknown reporter(s) {', '.join(unknown)} (known: {', '.join(REPORTERS)})")
    return out


def generate_history_file(
    span: str, out: Path, *, fmt: str | None = None, reporters: Iterable[str] | None = None, seed: int = 7
) -> int:
    """``stream-app simulate --history``: write the history file; returns the number of rows."""
    start, stop = parse_range(span)
    today = datetime.now(LOCAL_TZ).date()
    if stop >= today:
        raise ConfigurationError(f"--history: must end before today ({today}); history is complete days")
    chosen = _checked_reporters(reporters)
    suffixes = [s.lower() for s in out.suffixes if s.lower() != ".gz"]
    file_format = fmt or {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}.get(
        suffixes[-1] if suffixes else "", ""
    )
    if file_format not in {"jsonl", "csv"}:
        raise ConfigurationError(f"{out}: cannot tell the format from the extension; give --format jsonl|csv")
    names = sorted(
        {
            n
            for i, ns in BREAKDOWNS.items()
            for n in ns
            if chosen is None or set(INDICATORS[i].reporters) & set(chosen)
        }
    )
    rows = history(start, stop, seed=seed, reporters=chosen)
    try:
        if out.suffix.lower() == ".gz":
            with gzip.open(out, "wt", encoding="utf-8", newline="") as stream:
                return write_history(rows, stream, file_format, names)
        with out.open("w", encoding="utf-8", newline="") as stream:
            return write_history(rows, stream, file_format, names)
    except OSError as exc:
        raise ConfigurationError(f"{out}: {exc}") from exc


# ============================================================================================
# Live feeds.

SCENARIOS: Final = ("mix", "normal", "smog", "flood")


@dataclass(frozen=True, slots=True)
class SimRecord:
    """One record to send: the reporter (whose topic it goes to), key, bytes, and whether it is
    meant to be accepted."""

    reporter: str
    key: bytes
    value: bytes
    valid: bool


def smog_aqi(step: int, period: int = 60) -> float:
    """VN_AQI at Hoàn Kiếm over a smog episode: 70, up through Xấu (151) and Rất xấu (201) to 240."""
    phase = (step % period) / period
    return round(70 + 170 * math.sin(math.pi * phase) ** 2, 1)


def flood_level(step: int, period: int = 80) -> float:
    """Water level at Long Biên over a flood crest: 8 m, up through BĐ I, II, III to 11.9 m, and back."""
    phase = (step % period) / period
    return round(8.0 + 3.9 * math.sin(math.pi * phase) ** 2, 2)


# Live background feeds in normal conditions, by group: (reporter, indicator, unit, entities, range).
_NORMAL_WATER: Final = {
    "HN-LONGBIEN": (3.0, 6.0),
    "HN-SONTAY": (6.0, 9.0),
    "PT-TRUNGHA": (10.0, 13.0),
    "HN-THUONGCAT": (2.5, 5.0),
    "HN-BATHA": (2.5, 4.0),
    "AG-TANCHAU": (1.5, 3.0),
    "AG-CHAUDOC": (1.2, 2.5),
}
_NORMAL_AQI: Final = {
    "HN-AQ-HOANKIEM": (55.0, 95.0),
    "HCM-AQ-Q1": (45.0, 90.0),
    "HP-AQ-LECHAN": (45.0, 90.0),
    "DN-AQ-HAICHAU": (25.0, 60.0),
    "HUE-AQ-PHUHOI": (25.0, 60.0),
    "CT-AQ-NINHKIEU": (30.0, 75.0),
}


def _live_value(group: str, entity: str, rng: random.Random) -> list[tuple[str, str, str | None, float]]:
    """(indicator, region, station, value) of one background reading in normal conditions."""
    if group == "aqi":
        low, high = _NORMAL_AQI[entity]
        return [("ENV.AQI", STATIONS[entity].region, entity, round(rng.uniform(low, high), 1))]
    if group == "water":
        low, high = _NORMAL_WATER[entity]
        return [("HYD.WATER_LEVEL", STATIONS[entity].region, entity, round(rng.uniform(low, high), 2))]
    if group == "salinity":
        region = STATIONS[entity].region
        return [
            ("HYD.SALINITY_4PPT_KM", region, entity, round(rng.uniform(20.0, 45.0), 1)),
            ("HYD.SALINITY_MAX", region, entity, round(rng.uniform(5.0, 15.0), 1)),
        ]
    if group == "fire":
        return [("DIS.FOREST_FIRE", entity, None, float(rng.choice((1, 1, 2, 2, 3))))]
    if group == "traffic":  # crashes reported since the province's previous report
        accidents = rng.choice((0, 1, 1, 1, 2, 2, 3))
        deaths = sum(rng.random() < _DEATHS_PER_ACCIDENT for _ in range(accidents))
        return [
            ("TRF.ACCIDENTS", entity, None, float(accidents)),
            ("TRF.DEATHS", entity, None, float(deaths)),
        ]
    # power: today's output so far extrapolated to the day, and the day's peak so far
    gwh = round(rng.uniform(850.0, 890.0), 1)
    return [
        ("PWR.OUTPUT_GWH", NATIONAL, None, gwh),
        ("PWR.PEAK_MW", NATIONAL, None, float(round(gwh * 1000 / 24 * rng.uniform(1.15, 1.25)))),
    ]


_GROUPS: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "aqi": ("MAE", tuple(_NORMAL_AQI)),
    "water": ("MAE", tuple(_NORMAL_WATER)),
    "salinity": ("MAE", tuple(_SALINITY)),
    "fire": ("MAE", tuple(CURRENT_PROVINCES)),
    "traffic": ("MPS", tuple(CURRENT_PROVINCES)),
    "power": ("NSMO", (NATIONAL,)),
}
# An indicator of another ministry, per reporter (refused as indicator_not_owned).
_FOREIGN: Final = {
    "MAE": ("PWR.OUTPUT_GWH", "GWh"),
    "MPS": ("ENV.AQI", "index"),
    "NSMO": ("TRF.DEATHS", "persons"),
}


def _record(
    reporter: str, reading: tuple[str, str, str | None, float], now_ms: int, seq: int
) -> dict[str, Any]:
    indicator, region, station, value = reading
    return {
        "observation_id": f"{reporter}-{station or region}-{indicator}-{now_ms}-{seq}",
        "revision": 0,
        "reporter": reporter,
        "indicator": indicator,
        "region": region,
        "station": station,
        "value": value,
        "unit": INDICATORS[indicator].unit,
        "event_time": now_ms,
        "report_time": now_ms,
        "quality": "FINAL",
        "period": None,
        "breakdowns": {},
    }


def live_feed(
    schema: SchemaVersion,
    *,
    scenario: str = "mix",
    reporters: Collection[str] | None = None,
    seed: int = 7,
    invalid_share: float = 0.03,
    background: int = 4,
    clock: Callable[[], float] = time.time,
) -> Iterator[SimRecord]:
    """An endless live feed; each round: the scenario's readings, then ``background`` normal ones
    (random feeds of the wanted reporters).

    Event times are ``clock()`` (the wall clock) when each record is made. A share ``invalid_share``
    of records is spoiled on purpose (wrong unit, out of range, garbage bytes, another ministry's
    indicator); a tenth of the good ones are JSON rather than Avro, as some reporters send.
    """
    if scenario not in SCENARIOS:
        raise ConfigurationError(f"unknown scenario {scenario!r} ({', '.join(SCENARIOS)})")
    wanted = frozenset(LIVE_REPORTERS if reporters is None else (r.upper() for r in reporters))
    rng = random.Random(seed)
    smog = scenario in {"smog", "mix"} and "MAE" in wanted
    flood = scenario in {"flood", "mix"} and "MAE" in wanted
    groups = []
    for name, (reporter, entities) in _GROUPS.items():
        if reporter not in wanted:
            continue
        kept = tuple(
            e for e in entities if not (smog and e == "HN-AQ-HOANKIEM") and not (flood and e == "HN-LONGBIEN")
        )
        groups.append((reporter, name, kept))
    if not groups and not (smog or flood):
        raise ConfigurationError(
            f"no live feed for reporter(s) {', '.join(sorted(wanted))} ({', '.join(LIVE_REPORTERS)})"
        )
    step = seq = 0
    while True:
        readings: list[tuple[str, tuple[str, str, str | None, float]]] = []
        if smog:
            readings.append(("MAE", ("ENV.AQI", "01", "HN-AQ-HOANKIEM", smog_aqi(step))))
        if flood:
            readings.append(("MAE", ("HYD.WATER_LEVEL", "01", "HN-LONGBIEN", flood_level(step))))
        for _ in range(background if groups else 0):
            reporter, group, entities = rng.choice(groups)
            readings.extend((reporter, r) for r in _live_value(group, rng.choice(entities), rng))
        for reporter, reading in readings:
            row = _record(reporter, reading, int(clock() * 1000), seq)
            seq += 1
            key = (row["station"] or row["region"]).encode()
            if rng.random() < invalid_share:
                yield _spoil(row, key, rng, schema)
                continue
            # a few reporters send JSON instead of Avro
            value = json.dumps(row).encode() if rng.random() < 0.1 else codecs.encode(schema, row)
            yield SimRecord(reporter, key, value, True)
        step += 1


def _spoil(row: dict[str, Any], key: bytes, rng: random.Random, schema: SchemaVersion) -> SimRecord:
    kind = rng.choice(["unit", "range", "garbage", "indicator"])
    reporter = row["reporter"]
    if kind == "garbage":
        return SimRecord(reporter, key, b"\xde\xad\xbe\xef not an observation", False)
    bad = dict(row)
    if kind == "unit":
        bad["unit"] = "ppm"
    elif kind == "range":
        bad["value"] = -999.0
    else:
        bad["indicator"], bad["unit"] = _FOREIGN[reporter]
    return SimRecord(reporter, key, codecs.encode(schema, bad), False)


def feed_topic(settings: Settings, reporter: str) -> str:
    """A reporter's input topic, namespaced."""
    return settings.topic(f"reporter.{reporter.lower()}.observations")


def _pump(
    settings: Settings,
    records: Iterator[SimRecord],
    topic_of: Callable[[str], str],
    *,
    rate: float,
    duration: float | None,
    count: int | None,
) -> Counter[tuple[str, bool]]:
    """Send ``records`` at ``rate`` a second; counts by (reporter, valid)."""
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "linger.ms": 5,
            "acks": "all",
            "enable.idempotence": True,
            "log_level": 3,
        }
    )
    interval = 1.0 / rate if rate > 0 else 0.0
    counts: Counter[tuple[str, bool]] = Counter()
    sent = 0
    started = next_at = time.monotonic()
    try:
        for record in records:
            if count is not None and sent >= count:
                break
            now = time.monotonic()
            if duration is not None and now - started >= duration:
                break
            while True:
                try:
                    producer.produce(topic_of(record.reporter), key=record.key, value=record.value)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
            sent += 1
            counts[(record.reporter, record.valid)] += 1
            if interval:
                next_at += interval
                if next_at > now:
                    time.sleep(next_at - now)
    finally:
        producer.flush(30)
    return counts


def run(
    settings: Settings,
    schemas: SchemaRegistry,
    topic: str,
    *,
    rate: float,
    duration: float | None,
    count: int | None = None,
    seed: int = 7,
) -> tuple[int, int]:
    """Send the demo's feed (MAE: smog at Hoàn Kiếm, flood at Long Biên, background stations) to
    ``topic`` at ``rate`` records/s for ``duration`` seconds or ``count`` records.

    Returns (sent, meant_to_be_rejected).
    """
    records = live_feed(
        schemas.latest("observation"), scenario="mix", reporters=[REPORTER], seed=seed, background=2
    )
    counts = _pump(settings, records, lambda _r: topic, rate=rate, duration=duration, count=count)
    return sum(counts.values()), sum(n for (_r, valid), n in counts.items() if not valid)


def run_live(
    settings: Settings,
    schemas: SchemaRegistry,
    *,
    reporters: Collection[str],
    scenario: str = "mix",
    rate: float,
    duration: float | None,
    count: int | None = None,
    seed: int = 7,
    invalid_share: float = 0.03,
) -> dict[str, tuple[int, int]]:
    """Send the live feeds of ``reporters``, each to its own topic; (sent, invalid) per reporter."""
    records = live_feed(
        schemas.latest("observation"),
        scenario=scenario,
        reporters=reporters,
        seed=seed,
        invalid_share=invalid_share,
    )
    counts = _pump(
        settings, records, lambda r: feed_topic(settings, r), rate=rate, duration=duration, count=count
    )
    return {
        reporter: (counts[(reporter, True)] + counts[(reporter, False)], counts[(reporter, False)])
        for reporter in sorted({r for r, _v in counts})
    }


def _existing_topics(settings: Settings) -> set[str]:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 3})
    try:
        return set(admin.list_topics(timeout=settings.startup_timeout_s).topics)
    except Exception as exc:  # KafkaException and transport errors mean the same here
        raise ServiceUnreachableError(f"Kafka did not answer at {settings.kafka_bootstrap}: {exc}") from exc


def main(
    settings: Settings,
    *,
    history_span: str | None = None,
    out: Path | None = None,
    fmt: str | None = None,
    reporters: list[str] | None = None,
    scenario: str = "mix",
    rate: float = 5.0,
    duration: float | None = None,
    count: int | None = None,
    seed: int = 7,
    invalid_share: float = 0.03,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """``stream-app simulate``: write history (``--history FROM:TO --out FILE``) or send live feeds."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    if history_span is not None:
        if out is None:
            raise ConfigurationError("--history needs --out FILE")
        started = time.monotonic()
        written = generate_history_file(history_span, out, fmt=fmt, reporters=reporters, seed=seed)
        print(f"wrote {written:,} rows to {out} in {time.monotonic() - started:.1f}s", file=stdout)
        return 0
    if out is not None:
        raise ConfigurationError("--out is for --history")
    if not 0.0 <= invalid_share <= 1.0:
        raise ConfigurationError("--invalid-share must be between 0 and 1")
    chosen = _checked_reporters(reporters)
    candidates = list(LIVE_REPORTERS) if chosen is None else chosen
    without_feed = sorted(set(candidates) - set(LIVE_REPORTERS))
    if without_feed:
        raise ConfigurationError(
            f"no live feed for {', '.join(without_feed)} (live: {', '.join(LIVE_REPORTERS)})"
        )
    existing = _existing_topics(settings)
    missing = [r for r in candidates if feed_topic(settings, r) not in existing]
    if missing and (chosen is not None or len(missing) == len(candidates)):
        names = ", ".join(feed_topic(settings, r) for r in missing)
        raise ConfigurationError(f"topic(s) {names} do not exist (create them: stream-app topics apply)")
    for reporter in missing:
        print(
            f"simulate: skipping {reporter}: topic {feed_topic(settings, reporter)} does not exist",
            file=stderr,
        )
    live = [r for r in candidates if r not in missing]
    schemas = load_schemas(settings.schemas_dir)
    results = run_live(
        settings,
        schemas,
        reporters=live,
        scenario=scenario,
        rate=rate,
        duration=duration,
        count=count,
        seed=seed,
        invalid_share=invalid_share,
    )
    for reporter, (sent, invalid) in results.items():
        print(
            f"sent {sent} records to {feed_topic(settings, reporter)} ({invalid} meant to be rejected)",
            file=stdout,
        )
    return 0
