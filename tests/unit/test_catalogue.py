"""stream_app.domain.catalogue: the real catalogue loads and matches the codes contract; each kind of defect
names the file and the entry."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from stream_app.domain.catalogue import Authority, Catalogue, load_catalogue
from stream_app.exceptions import ConfigurationError
from stream_app.settings import Settings

CATALOGUE_DIR = Settings.model_construct().catalogue_dir
FILES = ("indicators.toml", "reporters.toml", "regions.toml", "stations.toml")
SOURCE = CATALOGUE_DIR / "indicators.toml"

_LEVELS = """levels = [
  { code = "LOW",  from = 0,  name_vi = "Thấp", name_en = "low",  colour = "#00E400" },
  { code = "HIGH", from = 10, name_vi = "Cao",  name_en = "high", colour = "#FF0000" },
]
"""

# The codes contract: code -> (owner, reporters allowed, unit, frequency, region level).
CONTRACT = {
    "ENV.AQI": ("MAE", {"MAE"}, "index", "hourly", "station"),
    "HYD.WATER_LEVEL": ("MAE", {"MAE"}, "m", "hourly", "station"),
    "HYD.SALINITY_4PPT_KM": ("MAE", {"MAE"}, "km", "daily", "station"),
    "HYD.SALINITY_MAX": ("MAE", {"MAE"}, "permille", "daily", "station"),
    "DIS.FOREST_FIRE": ("MAE", {"MAE"}, "level", "daily", "province"),
    "DIS.RISK_LEVEL": ("MAE", {"MAE", "NCDR"}, "level", "event", "province"),
    "DIS.DROUGHT_HA": ("MAE", {"MAE"}, "ha", "daily", "province"),
    "DIS.LANDSLIDE_SITES": ("MAE", {"MAE"}, "sites", "daily", "province"),
    "DIS.SAR_INCIDENTS": ("NCDR", {"NCDR"}, "cases", "daily", "province"),
    "TRF.ACCIDENTS": ("MPS", {"MPS", "NTSC"}, "cases", "daily", "province"),
    "TRF.DEATHS": ("MPS", {"MPS", "NTSC"}, "persons", "daily", "province"),
    "PWR.OUTPUT_GWH": ("NSMO", {"NSMO", "EVN"}, "GWh", "daily", "national"),
    "PWR.PEAK_MW": ("NSMO", {"NSMO", "EVN"}, "MW", "daily", "national"),
    "PWR.SOURCE_SHARE": ("NSMO", {"NSMO", "EVN"}, "%", "daily", "national"),
    "FIN.BUDGET_REVENUE": ("MOF", {"MOF"}, "bn VND", "daily", "province"),
    "FIN.BUDGET_EXPENDITURE": ("MOF", {"MOF"}, "bn VND", "monthly", "province"),
    "FIN.PUBLIC_DEBT_GDP": ("MOF", {"MOF"}, "%", "annual", "national"),
    "FIN.GOV_DEBT_GDP": ("MOF", {"MOF"}, "%", "annual", "national"),
    "FIN.FOREIGN_DEBT_GDP": ("MOF", {"MOF"}, "%", "annual", "national"),
    "FIN.CPI": ("MOF", {"MOF"}, "%", "monthly", "province"),
    "INV.FDI_REGISTERED": ("MOF", {"MOF"}, "m USD", "monthly", "province"),
    "ENT.NEW": ("MOF", {"MOF"}, "firms", "monthly", "province"),
    "ENT.SUSPENDED": ("MOF", {"MOF"}, "firms", "monthly", "province"),
    "ENT.RESUMED": ("MOF", {"MOF"}, "firms", "monthly", "province"),
    "HLT.DOCTORS_PER_10K": ("MOH", {"MOH"}, "per 10k", "annual", "province"),
    "SSI.HEALTH": ("VSS", {"VSS"}, "persons", "monthly", "province"),
    "SSI.SOCIAL": ("VSS", {"VSS"}, "persons", "monthly", "province"),
    "SSI.UNEMPLOYMENT": ("VSS", {"VSS"}, "persons", "monthly", "province"),
    "EDU.ENROLMENT_RATE": ("MOET", {"MOET"}, "%", "annual", "province"),
    "ADM.ONLINE_SERVICES": ("GO", {"GO"}, "%", "monthly", "province"),
    "ADM.DOSSIERS_ON_TIME": ("GO", {"GO"}, "%", "monthly", "province"),
    "JUS.LEGAL_ACCESS": ("MOJ", {"MOJ"}, "%", "annual", "province"),
    "JUS.LEGAL_AID": ("MOJ", {"MOJ"}, "cases", "quarterly", "province"),
    "TRN.EXPRESSWAY_KM": ("MOC", {"MOC"}, "km", "monthly", "national"),
    "TRN.AIR_PASSENGERS": ("MOC", {"MOC"}, "persons", "monthly", "station"),
}
REPORTERS = {
    "MOD", "MPS", "MOFA", "MOHA", "MOJ", "MOF", "MOIT", "MAE", "MOC", "MOCST", "MOST", "MOET",
    "MOH", "MEMR", "SBV", "GI", "GO", "VSS", "NTSC", "NCDR", "EVN", "NSMO", "VNPT",
}  # fmt: skip
CURRENT = {
    "01", "04", "08", "11", "12", "14", "15", "19", "20", "22", "24", "25", "31", "33", "37", "38", "40",
    "42", "44", "46", "48", "51", "52", "56", "66", "68", "75", "79", "80", "82", "86", "91", "92", "96",
}  # fmt: skip
# code -> (current region, pre-2025 province, kind, BĐ I/II/III or None)
STATIONS = {
    "HN-LONGBIEN": ("01", "01", "hydrological", (9.5, 10.5, 11.5)),
    "HN-SONTAY": ("01", "01", "hydrological", (12.4, 13.4, 14.4)),
    "PT-TRUNGHA": ("25", "25", "hydrological", (15, 16, 17)),
    "HN-THUONGCAT": ("01", "01", "hydrological", (9, 10, 11)),
    "HN-BATHA": ("01", "01", "hydrological", (5.5, 6.5, 7.5)),
    "AG-TANCHAU": ("91", "89", "hydrological", (3.5, 4.0, 4.5)),  # An Giang, merged with Kiên Giang
    "AG-CHAUDOC": ("91", "89", "hydrological", (3.0, 3.5, 4.0)),
    "HN-AQ-HOANKIEM": ("01", "01", "air_quality", None),
    "HCM-AQ-Q1": ("79", "79", "air_quality", None),
    "HP-AQ-LECHAN": ("31", "31", "air_quality", None),
    "DN-AQ-HAICHAU": ("48", "48", "air_quality", None),
    "HUE-AQ-PHUHOI": ("46", "46", "air_quality", None),
    "CT-AQ-NINHKIEU": ("92", "92", "air_quality", None),
    "VL-SAL-TIEN": ("86", "83", "salinity", None),  # Bến Tre, merged into Vĩnh Long
    "VL-SAL-HAMLUONG": ("86", "83", "salinity", None),
    "CT-SAL-HAU": ("92", "94", "salinity", None),  # Sóc Trăng, merged into Cần Thơ
    "AP-NOIBAI": ("01", "01", "airport", None),
    "AP-TANSONNHAT": ("79", "79", "airport", None),
    "AP-DANANG": ("48", "48", "airport", None),
}


def _indicator(code: str, *, levels: str = _LEVELS, toml: str = "", **fields: object) -> str:
    """An [[indicator]] entry, valid unless ``fields`` say otherwise (a field set to None is left out);
    ``toml`` is added as it is (inline tables, dates)."""
    values: dict[str, object] = {
        "code": code,
        "name_vi": "Chỉ tiêu thử",
        "name_en": "Test indicator",
        "domain": "disaster",
        "owner": "MAE",
        "unit": "x",
        "min": 0,
        "max": 100,
        "region_level": "province",
        "aggregation": "sum",
        "frequency": "monthly",
        "calendar": "decree09",
        "alert_from_level": 1,
    }
    values.update(fields)
    values.setdefault("reporters", [values["owner"]])
    lines = [
        f"{key} = {json.dumps(value, ensure_ascii=False)}"
        for key, value in values.items()
        if value is not None
    ]
    return "\n[[indicator]]\n" + "\n".join(lines) + "\n" + toml + levels


def _station(code: str, region: str = "01", **fields: str) -> str:
    extra = "".join(f"{key} = {value}\n" for key, value in fields.items())
    return (
        f'\n[[station]]\ncode = "{code}"\nname = "Thử"\nregion = "{region}"\nkind = "hydrological"\n{extra}'
    )


_ONE_LEVEL = (
    '[{ code = "NORMAL", from = 0, name_vi = "Bình thường", name_en = "normal", colour = "#00E400" }]'
)


def _copy_with(
    tmp_path: Path, appended: str = "", *, file: str = "indicators.toml", old: str = "", new: str = ""
) -> Path:
    """A copy of the real catalogue with one defect in ``file``: text appended, or one exact replacement."""
    for name in FILES:
        shutil.copyfile(CATALOGUE_DIR / name, tmp_path / name)
    text = (CATALOGUE_DIR / file).read_text(encoding="utf-8")
    if old:
        assert text.count(old) == 1, f"{file} no longer holds {old!r} exactly once"
        text = text.replace(old, new)
    (tmp_path / file).write_text(text + appended, encoding="utf-8")
    return tmp_path / file


# --- the real catalogue ---------------------------------------------------------------------------


def test_real_catalogue(catalogue: Catalogue) -> None:
    assert {"ENV.AQI", "HYD.WATER_LEVEL"} <= catalogue.indicators.keys()
    aqi = catalogue.indicators["ENV.AQI"]
    assert (aqi.owner, aqi.unit, aqi.min_value, aqi.max_value) == ("MAE", "index", 0.0, 500.0)
    assert [lv.code for lv in aqi.levels] == ["GOOD", "MODERATE", "POOR", "BAD", "VERY_BAD", "HAZARDOUS"]
    assert [lv.index for lv in aqi.levels] == list(range(6))
    assert [lv.lower for lv in aqi.levels] == [0, 51, 101, 151, 201, 301]
    assert [lv.colour for lv in aqi.levels] == [
        "#00E400",
        "#FFFF00",
        "#FF7E00",
        "#FF0000",
        "#8F3F97",
        "#7E0023",
    ]
    assert aqi.levels[aqi.alert_from_level].code == "BAD"
    assert catalogue.indicators["HYD.WATER_LEVEL"].unit == "m"
    assert catalogue.reporters["MAE"].indicators >= {"ENV.AQI", "HYD.WATER_LEVEL"}
    assert {"01", "79"} <= catalogue.regions.keys()
    regions = {
        code: catalogue.stations[code].region for code in ("HN-LONGBIEN", "HN-AQ-HOANKIEM", "HCM-AQ-Q1")
    }
    assert regions == {"HN-LONGBIEN": "01", "HN-AQ-HOANKIEM": "01", "HCM-AQ-Q1": "79"}


def test_sizes(catalogue: Catalogue) -> None:
    assert len(catalogue.indicators) >= 34
    assert len(catalogue.reporters) == 23
    kinds = [region.kind for region in catalogue.regions.values()]
    assert (kinds.count("current"), kinds.count("national")) == (34, 1)
    assert len(catalogue.legacy_regions) == 63
    assert catalogue.stations.keys() == STATIONS.keys()


def test_indicators_follow_the_codes_contract(catalogue: Catalogue) -> None:
    assert catalogue.indicators.keys() == CONTRACT.keys()
    found = {
        code: (ind.owner, set(ind.reporters), ind.unit, ind.frequency, ind.region_level)
        for code, ind in catalogue.indicators.items()
    }
    assert found == CONTRACT


def test_reporters_follow_the_codes_contract(catalogue: Catalogue) -> None:
    assert catalogue.reporters.keys() == REPORTERS
    mae = catalogue.reporters["MAE"]
    assert (mae.name_vi, mae.name_en) == (
        "Bộ Nông nghiệp và Môi trường",
        "Ministry of Agriculture and Environment",
    )
    assert all(r.name_vi and r.name_en for r in catalogue.reporters.values())


def test_reporter_indicators_are_derived_from_the_indicators(catalogue: Catalogue) -> None:
    for reporter in catalogue.reporters.values():
        assert reporter.indicators == {
            code for code, ind in catalogue.indicators.items() if reporter.code in ind.reporters
        }
    assert "DIS.RISK_LEVEL" in catalogue.reporters["NCDR"].indicators
    assert catalogue.reporters["EVN"].indicators == {"PWR.OUTPUT_GWH", "PWR.PEAK_MW", "PWR.SOURCE_SHARE"}
    assert catalogue.reporters["MOD"].indicators == frozenset()


def test_every_owner_may_report_its_indicator(catalogue: Catalogue) -> None:
    for code, indicator in catalogue.indicators.items():
        assert code in catalogue.reporters[indicator.owner].indicators, code


def test_indicator_attributes(catalogue: Catalogue) -> None:
    ind = catalogue.indicators
    assert ind["PWR.SOURCE_SHARE"].breakdowns == ("source",)
    assert all(i.breakdowns == () for code, i in ind.items() if code != "PWR.SOURCE_SHARE")
    # exactly the sources the simulator makes (stream_app/simulation/society.py)
    assert ind["PWR.SOURCE_SHARE"].breakdown_values == {
        "source": frozenset({"hydro", "coal", "gas", "wind", "solar", "import", "other"})
    }
    assert all(not i.breakdown_values for code, i in ind.items() if code != "PWR.SOURCE_SHARE")
    assert {i.deadline_day for i in ind.values()} == {25}
    assert ind["FIN.BUDGET_REVENUE"].calendar == "calendar_month"
    assert ind["TRF.ACCIDENTS"].calendar == "decree09"
    assert (ind["TRF.DEATHS"].aggregation, ind["ENV.AQI"].aggregation) == ("sum", "max")
    assert (ind["ENV.AQI"].domain, ind["SSI.HEALTH"].domain) == ("environment", "social_security")


@pytest.mark.parametrize(
    ("indicator", "codes", "lowers", "alert_code"),
    [
        ("HYD.SALINITY_MAX", ["BELOW_1PPT", "FROM_1PPT", "FROM_4PPT"], [0, 1, 4], "FROM_4PPT"),
        ("DIS.FOREST_FIRE", ["I", "II", "III", "IV", "V"], [1, 2, 3, 4, 5], "IV"),
        ("DIS.RISK_LEVEL", ["RISK_1", "RISK_2", "RISK_3", "RISK_4", "RISK_5"], [1, 2, 3, 4, 5], "RISK_3"),
        ("FIN.PUBLIC_DEBT_GDP", ["WITHIN", "OVER"], [0, 60], "OVER"),
        ("FIN.GOV_DEBT_GDP", ["WITHIN", "OVER"], [0, 50], "OVER"),
        ("FIN.FOREIGN_DEBT_GDP", ["WITHIN", "OVER"], [0, 45], "OVER"),
    ],
)
def test_regulation_levels(
    catalogue: Catalogue, indicator: str, codes: list[str], lowers: list[float], alert_code: str
) -> None:
    found = catalogue.indicators[indicator]
    assert [lv.code for lv in found.levels] == codes
    assert [lv.lower for lv in found.levels] == lowers
    assert found.levels[found.alert_from_level].code == alert_code


def test_risk_levels_have_the_regulation_colours(catalogue: Catalogue) -> None:
    # light blue, light yellow, orange, red, purple (Decision 18/2021/QĐ-TTg)
    colours = [lv.colour for lv in catalogue.indicators["DIS.RISK_LEVEL"].levels]
    assert colours == ["#ADD8E6", "#FFFF99", "#FF7E00", "#FF0000", "#8F3F97"]


def test_stations_follow_the_codes_contract(catalogue: Catalogue) -> None:
    water = catalogue.indicators["HYD.WATER_LEVEL"]
    for code, (region, legacy_region, kind, alarms) in STATIONS.items():
        station = catalogue.stations[code]
        assert (station.region, station.legacy_region, station.kind) == (region, legacy_region, kind), code
        assert catalogue.regions[station.region].kind == "current"
        assert catalogue.legacy_regions[legacy_region].successor == region, code
        if alarms is None:
            assert station.levels == (), code
            continue
        assert station.levels_indicator == "HYD.WATER_LEVEL"
        assert [lv.code for lv in station.levels] == ["NORMAL", "BD1", "BD2", "BD3"]
        assert tuple(lv.lower for lv in station.levels[1:]) == alarms, code
        assert station.levels[water.alert_from_level].code == "BD1"


def test_station_indicators_name_the_kind_of_station_reporting_them(catalogue: Catalogue) -> None:
    kinds = {code: i.station_kind for code, i in catalogue.indicators.items() if i.station_kind is not None}
    assert kinds == {
        "ENV.AQI": "air_quality",
        "HYD.WATER_LEVEL": "hydrological",
        "HYD.SALINITY_4PPT_KM": "salinity",
        "HYD.SALINITY_MAX": "salinity",
        "TRN.AIR_PASSENGERS": "airport",
    }
    assert kinds.keys() == {c for c, i in catalogue.indicators.items() if i.region_level == "station"}


# 2024-06-30 23:00 and 2024-07-01 00:30 local time (UTC+7), either side of the grid's handover.
_LAST_EVN_HOUR = int(datetime(2024, 6, 30, 16, tzinfo=UTC).timestamp() * 1000)
_FIRST_NSMO_HALF_HOUR = int(datetime(2024, 6, 30, 17, 30, tzinfo=UTC).timestamp() * 1000)
_LOCAL_MIDNIGHT = int(datetime(2024, 6, 30, 17, tzinfo=UTC).timestamp() * 1000)  # 2024-07-01 00:00 local


@pytest.mark.parametrize("code", ["PWR.OUTPUT_GWH", "PWR.PEAK_MW", "PWR.SOURCE_SHARE"])
def test_grid_authority_moves_from_evn_to_nsmo_on_2024_07_01_local(catalogue: Catalogue, code: str) -> None:
    indicator = catalogue.indicators[code]
    assert indicator.authority == (Authority("EVN", until=date(2024, 7, 1)),)
    assert catalogue.authority(code, "VN", _LAST_EVN_HOUR) == "EVN"
    assert catalogue.authority(code, "VN", _LOCAL_MIDNIGHT - 1) == "EVN"
    assert catalogue.authority(code, "VN", _LOCAL_MIDNIGHT) == "NSMO"  # "until" is exclusive
    assert catalogue.authority(code, "VN", _FIRST_NSMO_HALF_HOUR) == "NSMO"
    assert indicator.authority_at("VN", _FIRST_NSMO_HALF_HOUR) == "NSMO"
    assert catalogue.authority(code, "VN", 1_262_304_000_000) == "EVN"  # 2010


def test_the_owner_is_the_authority_by_default(catalogue: Catalogue) -> None:
    assert all(not i.authority for code, i in catalogue.indicators.items() if not code.startswith("PWR."))
    assert catalogue.authority("TRF.DEATHS", "01", _FIRST_NSMO_HALF_HOUR) == "MPS"
    assert catalogue.authority("ENV.AQI", "01", 0) == "MAE"
    with pytest.raises(KeyError):
        catalogue.authority("ENV.PM25", "01", 0)


def test_authority_entries_by_date_and_region_first_match_wins(tmp_path: Path) -> None:
    entries = (
        "authority = [\n"
        '  { reporter = "NCDR", from = "2024-01-01", until = 2024-02-01, regions = ["31", "01"] },\n'
        '  { reporter = "MAE", from = 2024-01-15 },\n'
        '  { reporter = "NCDR", from = "2023-06-01" },\n'
        "]\n"
    )
    _copy_with(tmp_path, _indicator("TEST.AUTH", reporters=["MAE", "NCDR"], owner="MAE", toml=entries))
    loaded = load_catalogue(tmp_path)
    first = loaded.indicators["TEST.AUTH"].authority[0]
    assert first == Authority("NCDR", date(2024, 1, 1), date(2024, 2, 1), frozenset({"01", "31"}))

    def at(day: date, hour: int = 12) -> int:
        return int(datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp() * 1000)

    who = loaded.authority
    assert who("TEST.AUTH", "31", at(date(2024, 1, 20))) == "NCDR"  # the first entry covers it
    assert who("TEST.AUTH", "79", at(date(2024, 1, 20))) == "MAE"  # not its region: the second
    assert who("TEST.AUTH", "79", at(date(2024, 1, 10))) == "NCDR"  # the third
    assert who("TEST.AUTH", "31", at(date(2024, 2, 1))) == "MAE"
    assert who("TEST.AUTH", "79", at(date(2023, 5, 31))) == "MAE"  # none: the owner
    # by local (UTC+7) dates: 2024-01-14 17:00 UTC is 2024-01-15 00:00 in Vietnam
    assert who("TEST.AUTH", "79", at(date(2024, 1, 14), 17)) == "MAE"
    assert who("TEST.AUTH", "79", at(date(2024, 1, 14), 17) - 1) == "NCDR"


def test_station_legacy_region_given_or_its_own_code(tmp_path: Path) -> None:
    _copy_with(
        tmp_path,
        _station("HD-GIVEN", region="31", legacy_region='"30"') + _station("HP-DEFAULT", region="31"),
        file="stations.toml",
    )
    stations = load_catalogue(tmp_path).stations
    assert stations["HD-GIVEN"].legacy_region == "30"  # Hải Dương, merged into Hải Phòng
    assert stations["HP-DEFAULT"].legacy_region == "31"


def test_levels_for(catalogue: Catalogue) -> None:
    water, aqi = catalogue.indicators["HYD.WATER_LEVEL"], catalogue.indicators["ENV.AQI"]
    assert catalogue.levels_for(water, "HN-LONGBIEN") == catalogue.stations["HN-LONGBIEN"].levels
    assert catalogue.levels_for(water, "HN-SONTAY")[1].lower == 12.4
    assert catalogue.levels_for(aqi, "HN-AQ-HOANKIEM") == aqi.levels
    assert catalogue.levels_for(aqi, None) == aqi.levels
    assert catalogue.levels_for(aqi, "HN-NOWHERE") == aqi.levels
    # a station's own levels grade only the indicator they are declared for
    assert catalogue.levels_for(aqi, "HN-LONGBIEN") == aqi.levels
    assert catalogue.levels_for(water, None) == ()


def test_regions(catalogue: Catalogue) -> None:
    current = {code for code, r in catalogue.regions.items() if r.kind == "current"}
    assert current == CURRENT
    assert catalogue.regions["VN"].kind == "national"
    # a code both legacy and current is the current unit; its legacy entry keeps the old name
    assert (catalogue.regions["15"].name, catalogue.legacy_regions["15"].name) == ("Lào Cai", "Yên Bái")
    assert catalogue.regions["30"].name == "Hải Dương"
    assert catalogue.regions["30"].kind == "legacy"
    assert catalogue.legacy_regions.keys() - catalogue.regions.keys() == set()
    assert all(r.successor is None for r in catalogue.regions.values() if r.kind != "legacy")


@pytest.mark.parametrize(
    ("code", "current"),
    [
        ("30", "31"),
        ("02", "08"),
        ("35", "37"),
        ("36", "37"),
        ("49", "48"),
        ("10", "15"),  # legacy Lào Cai merged into Lào Cai, which took Yên Bái's code
        ("15", "15"),
        ("27", "24"),
        ("64", "52"),
        ("74", "79"),
        ("77", "79"),
        ("89", "91"),
        ("01", "01"),
        ("79", "79"),
        ("VN", "VN"),
        ("99", None),
        ("", None),
        ("1", None),
    ],
)
def test_current_region(catalogue: Catalogue, code: str, current: str | None) -> None:
    assert catalogue.current_region(code) == current


def test_every_legacy_code_resolves_to_a_current_unit(catalogue: Catalogue) -> None:
    resolved = {code: catalogue.current_region(code) for code in catalogue.legacy_regions}
    assert all(resolved[code] in CURRENT for code in resolved)
    assert set(resolved.values()) == CURRENT
    for code, region in catalogue.legacy_regions.items():
        assert region.kind == "legacy"
        assert region.successor == resolved[code]


def test_indicator_period_of(catalogue: Catalogue) -> None:
    # 2024-11-14T20:00Z is the 15th in Vietnam: the December 2024 period of a decree09 indicator
    ms = 1_731_614_400_000
    assert catalogue.indicators["SSI.HEALTH"].period_of(ms).label == "2024-12"
    assert catalogue.indicators["FIN.BUDGET_EXPENDITURE"].period_of(ms).label == "2024-11"
    assert catalogue.indicators["JUS.LEGAL_AID"].period_of(ms).label == "2024-Q4"


# --- loading copies -----------------------------------------------------------------------------


def test_unchanged_copy_loads(tmp_path: Path, catalogue: Catalogue) -> None:
    _copy_with(tmp_path)
    assert load_catalogue(tmp_path) == catalogue


def test_a_valid_addition_loads(tmp_path: Path) -> None:
    _copy_with(tmp_path, _indicator("TEST.OK"))
    loaded = load_catalogue(tmp_path)
    assert [lv.lower for lv in loaded.indicators["TEST.OK"].levels] == [0.0, 10.0]
    assert "TEST.OK" in loaded.reporters["MAE"].indicators
    assert loaded.indicators["TEST.OK"].deadline_day == 25


def test_an_indicator_without_levels_never_alerts(tmp_path: Path) -> None:
    _copy_with(tmp_path, _indicator("TEST.PLAIN", levels="", alert_from_level=None))
    plain = load_catalogue(tmp_path).indicators["TEST.PLAIN"]
    assert (plain.levels, plain.alert_from_level) == ((), 1)


@pytest.mark.parametrize(
    ("file", "appended", "entry", "problem"),
    [
        # levels and alert thresholds
        pytest.param(
            "indicators.toml",
            _indicator("TEST.LEVELS", levels=_LEVELS.replace("from = 10", "from = 0")),
            "'TEST.LEVELS'",
            "levels not increasing",
            id="levels-not-increasing",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.LEVELS", levels=_LEVELS.replace('code = "HIGH"', 'code = "LOW"')),
            "'TEST.LEVELS'",
            "level codes repeated: ['LOW']",
            id="level-codes-repeated",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.LEVELS", levels="levels = [1, 2]\n"),
            "'TEST.LEVELS'",
            "'levels' must be an array of tables",
            id="levels-not-tables",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.LEVELS", levels=_LEVELS.replace(', colour = "#FF0000"', "")),
            "'HIGH'",
            "'colour'",
            id="level-without-colour",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.LEVELS", levels=_LEVELS.replace('"#FF0000"', '"red"')),
            "'HIGH'",
            "#RRGGBB",
            id="level-colour-not-rgb",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.LEVELS", levels=_LEVELS.replace("from = 10", "from = 200")),
            "'TEST.LEVELS'",
            "outside TEST.LEVELS's range",
            id="level-beyond-max",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.ALERT", alert_from_level=9),
            "'TEST.ALERT'",
            "alert_from_level 9 of TEST.ALERT is beyond the levels (0..1)",
            id="alert-beyond-levels",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.ALERT", alert_from_level=0),
            "'TEST.ALERT'",
            "must be at least 1",
            id="alert-from-clear-level",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.ALERT", alert_from_level=None),
            "'TEST.ALERT'",
            "'alert_from_level' is required with levels",
            id="levels-without-alert",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.ALERT", alert_from_level=1.5),
            "'TEST.ALERT'",
            "'alert_from_level' must be an integer",
            id="alert-not-integer",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.ALERT", levels=""),
            "'TEST.ALERT'",
            "neither the indicator nor any station",
            id="alert-without-any-levels",
        ),
        # ranges
        pytest.param(
            "indicators.toml",
            _indicator("TEST.RANGE", min=5, max=5),
            "'TEST.RANGE'",
            "must be below max",
            id="min-equals-max",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.RANGE", min=9, max=-9),
            "'TEST.RANGE'",
            "must be below max",
            id="min-above-max",
        ),
        # references
        pytest.param(
            "indicators.toml",
            _indicator("POP.TOTAL", owner="GSO"),
            "'POP.TOTAL'",
            "unknown owner 'GSO'",
            id="indicator-unknown-owner",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("POP.TOTAL", reporters=["MAE", "GSO"]),
            "'POP.TOTAL'",
            "unknown reporters ['GSO']",
            id="indicator-unknown-reporter",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("POP.TOTAL", reporters=["NCDR"]),
            "'POP.TOTAL'",
            "owner 'MAE' is not among its reporters",
            id="owner-may-not-report",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("POP.TOTAL", reporters=[]),
            "'POP.TOTAL'",
            "'reporters' must not be empty",
            id="no-reporters",
        ),
        pytest.param(
            "stations.toml",
            _station("HN-TEST", levels_indicator='"POP.TOTAL"', levels=_ONE_LEVEL),
            "'HN-TEST'",
            "unknown indicator 'POP.TOTAL'",
            id="station-levels-of-unknown-indicator",
        ),
        pytest.param(
            "stations.toml",
            _station("HN-TEST", levels_indicator='"TRF.DEATHS"', levels=_ONE_LEVEL),
            "'HN-TEST'",
            "reported per province, not station",
            id="station-levels-of-province-indicator",
        ),
        pytest.param(
            "stations.toml",
            _station("HN-TEST", levels=_ONE_LEVEL),
            "'HN-TEST'",
            "levels need 'levels_indicator'",
            id="station-levels-without-indicator",
        ),
        pytest.param(
            "stations.toml",
            _station("HN-TEST", levels_indicator='"HYD.WATER_LEVEL"', levels=_ONE_LEVEL),
            "'HN-TEST'",
            "alert_from_level 1 of HYD.WATER_LEVEL is beyond the levels (0..0)",
            id="station-levels-below-the-alert",
        ),
        pytest.param(
            "stations.toml",
            _station("HN-TEST", levels_indicator='"HYD.SALINITY_4PPT_KM"', levels=_ONE_LEVEL),
            "'HN-TEST'",
            "HYD.SALINITY_4PPT_KM, which has no alert_from_level",
            id="station-levels-of-indicator-without-alert",
        ),
        pytest.param(
            "stations.toml",
            _station("XX-NOWHERE", region="99"),
            "'XX-NOWHERE'",
            "unknown region '99'",
            id="station-in-unknown-region",
        ),
        pytest.param(
            "stations.toml",
            _station("HD-OLD", region="30"),
            "'HD-OLD'",
            "region '30' is a legacy province, merged into '31'",
            id="station-in-legacy-region",
        ),
        pytest.param(
            "stations.toml",
            _station("VN-ALL", region="VN"),
            "'VN-ALL'",
            "national pseudo-region",
            id="station-in-national-region",
        ),
        pytest.param(
            "stations.toml",
            _station("HN-TEST", legacy_region='"99"'),
            "'HN-TEST'",
            "'legacy_region' '99' is not a legacy province",
            id="station-legacy-region-unknown",
        ),
        pytest.param(
            "stations.toml",
            _station("HN-TEST", legacy_region='"VN"'),
            "'HN-TEST'",
            "'legacy_region' 'VN' is not a legacy province",
            id="station-legacy-region-national",
        ),
        pytest.param(
            "stations.toml",
            _station("HN-TEST", legacy_region='"30"'),
            "'HN-TEST'",
            "'legacy_region' '30' merged into '31', not into the station's region '01'",
            id="station-legacy-region-merged-elsewhere",
        ),
        pytest.param(
            "stations.toml",
            _station("HN-TEST", legacy_region="30"),
            "'HN-TEST'",
            "'legacy_region' must be a non-empty string",
            id="station-legacy-region-not-text",
        ),
        # closed vocabularies
        pytest.param(
            "indicators.toml",
            _indicator("TEST.F", frequency="weekly"),
            "'TEST.F'",
            "'frequency' is 'weekly'",
            id="unknown-frequency",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.C", calendar="lunar"),
            "'TEST.C'",
            "'calendar' is 'lunar'",
            id="unknown-calendar",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.A", aggregation="median"),
            "'TEST.A'",
            "'aggregation' is 'median'",
            id="unknown-aggregation",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.D", domain="sport"),
            "'TEST.D'",
            "'domain' is 'sport'",
            id="unknown-domain",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.L", region_level="district"),
            "'TEST.L'",
            "'region_level' is 'district'",
            id="unknown-region-level",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.K", deadline_dy=20),
            "'TEST.K'",
            "unknown keys ['deadline_dy']",
            id="misspelt-key",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.DL", deadline_day=10),
            "'TEST.DL'",
            "deadline_day 10 must be 16..28 for the decree09 calendar",
            id="deadline-before-cut-off",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.DL", deadline_day=31, calendar="calendar_month"),
            "'TEST.DL'",
            "deadline_day 31 must be 1..28",
            id="deadline-not-in-every-month",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.B", breakdowns=["source", "source"]),
            "'TEST.B'",
            "'breakdowns' repeats ['source']",
            id="breakdown-repeated",
        ),
        # station kinds
        pytest.param(
            "indicators.toml",
            _indicator("TEST.S", region_level="station"),
            "'TEST.S'",
            "'station_kind' is required with region_level \"station\"",
            id="station-kind-missing",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.S", region_level="station", station_kind="weather"),
            "'TEST.S'",
            "'station_kind' 'weather' is not the kind of any station in stations.toml",
            id="station-kind-unknown",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.S", region_level="station", station_kind=""),
            "'TEST.S'",
            "'station_kind' must be a non-empty string",
            id="station-kind-empty",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.S", station_kind="hydrological"),
            "'TEST.S'",
            "'station_kind' is only for station indicators; this one is reported per province",
            id="station-kind-on-province-indicator",
        ),
        # breakdowns and their values
        pytest.param(
            "indicators.toml",
            _indicator("TEST.B", breakdowns=["source", "reporter"]),
            "'TEST.B'",
            "breakdown name(s) ['reporter'] are reserved",
            id="breakdown-reporter-reserved",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.B", breakdowns=["source"], toml='breakdown_values = { fuel = ["coal"] }\n'),
            "'TEST.B'",
            "'breakdown_values' names 'fuel', which is not among its breakdowns ['source']",
            id="breakdown-values-of-undeclared-breakdown",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.B", breakdowns=["source"], toml="breakdown_values = { source = [] }\n"),
            "'TEST.B'",
            "'breakdown_values' 'source' must be a non-empty array of non-empty printable strings",
            id="breakdown-values-empty",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.B", breakdowns=["source"], toml='breakdown_values = { source = ["a\\nb"] }\n'),
            "'TEST.B'",
            "non-empty printable strings",
            id="breakdown-value-not-printable",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.B", breakdowns=["source"], toml='breakdown_values = { source = ["a", "a"] }\n'),
            "'TEST.B'",
            "'breakdown_values' 'source' repeats ['a']",
            id="breakdown-value-repeated",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.B", breakdowns=["source"], toml='breakdown_values = ["a"]\n'),
            "'TEST.B'",
            "'breakdown_values' must be a table of arrays",
            id="breakdown-values-not-a-table",
        ),
        # authority
        pytest.param(
            "indicators.toml",
            _indicator("TEST.A", toml='authority = [{ reporter = "NCDR" }]\n'),
            "indicator 'TEST.A': authority 'NCDR'",
            "reporter 'NCDR' is not among the indicator's reporters ['MAE']",
            id="authority-reporter-not-allowed",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.A", toml='authority = [{ until = "2024-07-01" }]\n'),
            "indicator 'TEST.A': authority '?'",
            "'reporter' must be a non-empty string",
            id="authority-without-reporter",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.A", toml='authority = [{ reporter = "MAE", until = "2024-13-01" }]\n'),
            "indicator 'TEST.A': authority 'MAE'",
            "'until' must be a date, YYYY-MM-DD; got '2024-13-01'",
            id="authority-date-impossible",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.A", toml='authority = [{ reporter = "MAE", from = "01/07/2024" }]\n'),
            "indicator 'TEST.A': authority 'MAE'",
            "'from' must be a date, YYYY-MM-DD; got '01/07/2024'",
            id="authority-date-not-iso",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.A", toml='authority = [{ reporter = "MAE", from = 2024-07-01T00:00:00 }]\n'),
            "indicator 'TEST.A': authority 'MAE'",
            "'from' must be a date, YYYY-MM-DD",
            id="authority-date-with-time",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.A", toml='authority = [{ reporter = "MAE", from = 20240701 }]\n'),
            "indicator 'TEST.A': authority 'MAE'",
            "'from' must be a date, YYYY-MM-DD; got 20240701",
            id="authority-date-a-number",
        ),
        pytest.param(
            "indicators.toml",
            _indicator(
                "TEST.A",
                toml='authority = [{ reporter = "MAE", from = "2024-07-01", until = "2024-07-01" }]\n',
            ),
            "indicator 'TEST.A': authority 'MAE'",
            "'from' 2024-07-01 must be before 'until' 2024-07-01",
            id="authority-empty-interval",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.A", toml='authority = [{ reporter = "MAE", since = "2024-07-01" }]\n'),
            "indicator 'TEST.A': authority 'MAE'",
            "unknown keys ['since']",
            id="authority-misspelt-key",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.A", toml='authority = [{ reporter = "MAE", regions = ["30"] }]\n'),
            "indicator 'TEST.A': authority 'MAE'",
            "region '30' is a legacy province, merged into '31'",
            id="authority-legacy-region",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.A", toml='authority = [{ reporter = "MAE", regions = ["99"] }]\n'),
            "indicator 'TEST.A': authority 'MAE'",
            "unknown region '99' in 'regions'",
            id="authority-unknown-region",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.A", toml='authority = [{ reporter = "MAE", regions = ["VN"] }]\n'),
            "indicator 'TEST.A': authority 'MAE'",
            "region 'VN' never holds observations of an indicator reported per province",
            id="authority-national-region-of-province-indicator",
        ),
        pytest.param(
            "indicators.toml",
            _indicator(
                "TEST.A",
                region_level="national",
                toml='authority = [{ reporter = "MAE", regions = ["01"] }]\n',
            ),
            "indicator 'TEST.A': authority 'MAE'",
            "region '01' never holds observations of an indicator reported per national",
            id="authority-province-of-national-indicator",
        ),
        pytest.param(
            "indicators.toml",
            _indicator("TEST.A", toml='authority = { reporter = "MAE" }\n'),
            "'TEST.A'",
            "'authority' must be an array of tables",
            id="authority-not-an-array",
        ),
        # duplicates
        pytest.param(
            "indicators.toml", _indicator("ENV.AQI"), "'ENV.AQI'", "duplicate code", id="duplicate-indicator"
        ),
        pytest.param(
            "regions.toml",
            '\n[[region]]\ncode = "30"\nname = "again"\nkind = "legacy"\nsuccessor = "31"\n',
            "'30'",
            "duplicate code",
            id="duplicate-legacy-region",
        ),
        pytest.param(
            "regions.toml",
            '\n[[region]]\ncode = "VN"\nname = "again"\nkind = "current"\n',
            "'VN'",
            "duplicate code",
            id="current-region-with-the-national-code",
        ),
        # regions
        pytest.param(
            "regions.toml",
            '\n[[region]]\nname = "Không mã"\n',
            "region '?'",
            "'code'",
            id="region-without-code",
        ),
        pytest.param(
            "regions.toml",
            '\n[[region]]\ncode = "00"\nname = "Tỉnh cũ"\nkind = "legacy"\nsuccessor = "30"\n',
            "legacy region '00'",
            "successor '30' is a legacy province, not a current unit",
            id="successor-is-legacy",
        ),
        pytest.param(
            "regions.toml",
            '\n[[region]]\ncode = "00"\nname = "Tỉnh cũ"\nkind = "legacy"\nsuccessor = "VN"\n',
            "legacy region '00'",
            "successor 'VN' is the national region, not a current unit",
            id="successor-is-national",
        ),
        pytest.param(
            "regions.toml",
            '\n[[region]]\ncode = "00"\nname = "Tỉnh cũ"\nkind = "legacy"\nsuccessor = "99"\n',
            "legacy region '00'",
            "successor '99' is not a current unit (is a current unit missing?)",
            id="successor-unknown",
        ),
        pytest.param(
            "regions.toml",
            '\n[[region]]\ncode = "00"\nname = "Tỉnh cũ"\nkind = "legacy"\n',
            "region '00'",
            "'successor' must be a non-empty string",
            id="legacy-without-successor",
        ),
        pytest.param(
            "regions.toml",
            '\n[[region]]\ncode = "07"\nname = "Tỉnh mới"\nkind = "current"\nsuccessor = "01"\n',
            "region '07'",
            "only a legacy region has a successor",
            id="current-with-successor",
        ),
        pytest.param(
            "regions.toml",
            '\n[[region]]\ncode = "07"\nname = "Tỉnh mới"\nkind = "current"\n',
            "current region '07'",
            "no legacy province names it as successor",
            id="current-unit-from-nowhere",
        ),
        pytest.param(
            "regions.toml",
            '\n[[region]]\ncode = "07"\nname = "Tỉnh"\nkind = "province"\n',
            "region '07'",
            "'kind' is 'province'",
            id="unknown-region-kind",
        ),
        # file layout
        pytest.param(
            "indicators.toml",
            '\n[[station]]\ncode = "HN-TEST"\nname = "Thử"\nregion = "01"\nkind = "air_quality"\n',
            "indicators.toml",
            "unknown sections ['station']; expected some of ['indicator']",
            id="table-in-the-wrong-file",
        ),
        pytest.param(
            "reporters.toml",
            '\n[[reporter]]\ncode = "GSO"\nname_vi = "Tổng cục Thống kê"\nname_en = "GSO"\n'
            'indicators = ["ENV.AQI"]\n',
            "'GSO'",
            "unknown keys ['indicators']",
            id="reporter-lists-its-indicators",
        ),
    ],
)
def test_defect_raises_configuration_error_naming_file_and_entry(
    tmp_path: Path, file: str, appended: str, entry: str, problem: str
) -> None:
    path = _copy_with(tmp_path, appended, file=file)
    with pytest.raises(ConfigurationError) as info:
        load_catalogue(tmp_path)
    message = str(info.value)
    assert str(path) in message
    assert entry in message
    assert problem in message


@pytest.mark.parametrize(
    ("old", "new", "entry", "problem"),
    [
        pytest.param(
            '[[region]]\ncode = "31"\nname = "Hải Phòng"\nkind = "current"\n',
            "",
            "legacy region '30'",
            "successor '31' is not a current unit (is a current unit missing?)",
            id="current-unit-missing",
        ),
        pytest.param(
            'code = "31"\nname = "Hải Phòng"\nkind = "legacy"\nsuccessor = "31"\n',
            'code = "31"\nname = "Hải Phòng"\nkind = "legacy"\nsuccessor = "01"\n',
            "legacy region '31'",
            "also a current unit, so its successor must be itself, not '01'",
            id="shared-code-with-another-successor",
        ),
        pytest.param(
            '[[region]]\ncode = "VN"\nname = "Toàn quốc"\nkind = "national"\n',
            "",
            "regions.toml",
            "expected exactly one national region (VN), found []",
            id="national-region-missing",
        ),
    ],
)
def test_edited_region_defect_raises_configuration_error_naming_file_and_entry(
    tmp_path: Path, old: str, new: str, entry: str, problem: str
) -> None:
    path = _copy_with(tmp_path, file="regions.toml", old=old, new=new)
    with pytest.raises(ConfigurationError) as info:
        load_catalogue(tmp_path)
    message = str(info.value)
    assert str(path) in message
    assert entry in message
    assert problem in message


def test_non_number_bound_is_named(tmp_path: Path) -> None:
    path = _copy_with(tmp_path, old="max = 500\n", new='max = "500"\n')
    with pytest.raises(
        ConfigurationError, match=r"indicator 'ENV.AQI': 'max' must be a finite number"
    ) as info:
        load_catalogue(tmp_path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("file", "appended", "lines_after_source"),
    [
        pytest.param("indicators.toml", "\n[[indicator]\ncode = 1\n", 2, id="unclosed-table-header"),
        pytest.param("regions.toml", '\n[[region]]\ncode = "01\n', 3, id="unterminated-string"),
        pytest.param("regions.toml", "\n[[region]]\ncode = = 1\n", 3, id="double-equals"),
        pytest.param("stations.toml", "\n[[station]]\nlevels = [\n}\n", 4, id="unclosed-array"),
        pytest.param(
            "reporters.toml", "\n[[reporter]]\ncode = 'MAE\nname_vi = 'x'\n", 3, id="unterminated-literal"
        ),
    ],
)
def test_invalid_toml_raises_configuration_error_naming_file_and_line(
    tmp_path: Path, file: str, appended: str, lines_after_source: int
) -> None:
    path = _copy_with(tmp_path, appended, file=file)
    broken_line = len((CATALOGUE_DIR / file).read_text(encoding="utf-8").splitlines()) + lines_after_source
    with pytest.raises(ConfigurationError) as info:
        load_catalogue(tmp_path)
    assert str(path) in str(info.value)
    assert f"line {broken_line}" in str(info.value)


def test_missing_catalogue_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"indicators\.toml"):
        load_catalogue(tmp_path)


@pytest.mark.parametrize("file", FILES)
def test_each_missing_file_is_named(tmp_path: Path, file: str) -> None:
    _copy_with(tmp_path)
    (tmp_path / file).unlink()
    with pytest.raises(ConfigurationError, match=re.escape(str(tmp_path / file))):
        load_catalogue(tmp_path)


@pytest.mark.parametrize(
    ("file", "appended", "entry"),
    [
        pytest.param(
            "stations.toml",
            '\n[[station]]\ncode = "HN-LONGBIEN"\nname = "again"\nregion = "79"\nkind = "hydrological"\n',
            "'HN-LONGBIEN'",
            id="duplicate-station",
        ),
        pytest.param(
            "reporters.toml",
            '\n[[reporter]]\ncode = "MAE"\nname_vi = "lại"\nname_en = "again"\n',
            "'MAE'",
            id="duplicate-reporter",
        ),
        pytest.param(
            "regions.toml",
            '\n[[region]]\ncode = "01"\nname = "again"\nkind = "current"\n',
            "'01'",
            id="duplicate-region",
        ),
    ],
)
def test_duplicate_code_is_rejected(tmp_path: Path, file: str, appended: str, entry: str) -> None:
    path = _copy_with(tmp_path, appended, file=file)
    with pytest.raises(ConfigurationError) as info:
        load_catalogue(tmp_path)
    assert str(path) in str(info.value)
    assert entry in str(info.value)
    assert "duplicate code" in str(info.value)


def test_levels_that_are_not_a_list_of_tables_are_named(tmp_path: Path) -> None:
    path = _copy_with(tmp_path, _indicator("TEST.LEVELS", levels='levels = "GOOD, BAD"\n'))
    with pytest.raises(ConfigurationError) as info:
        load_catalogue(tmp_path)
    assert str(path) in str(info.value)
    assert "'TEST.LEVELS'" in str(info.value)


def test_alert_from_level_beyond_the_levels_is_rejected(tmp_path: Path) -> None:
    _copy_with(tmp_path, _indicator("TEST.ALERT", alert_from_level=9))
    with pytest.raises(ConfigurationError, match=r"'TEST\.ALERT'"):
        load_catalogue(tmp_path)
