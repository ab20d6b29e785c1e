"""stream_app.domain.alerting.loader: the real rules file loads; overrides resolve station > region >
indicator; each kind of defect names the file, the rule and the problem."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from stream_app.domain.alerting import (
    AbsenceParams,
    DeviationParams,
    Entity,
    LevelsParams,
    RateParams,
    Rule,
    RuleBook,
    load_rules,
)
from stream_app.domain.catalogue import Catalogue
from stream_app.exceptions import ConfigurationError
from stream_app.settings import Settings

RULES = Settings.model_construct().catalogue_dir / "rules.toml"
PERIODIC = ("monthly", "quarterly", "half_yearly", "annual")


@pytest.fixture(scope="module")
def book(catalogue: Catalogue) -> RuleBook:
    return load_rules(RULES, catalogue)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _with(tmp_path: Path, extra: str) -> Path:
    """A copy of the real rules file with ``extra`` appended."""
    return _write(tmp_path, RULES.read_text(encoding="utf-8") + "\n" + extra)


# --- the real file -------------------------------------------------------------------------------


def test_real_file_counts_by_kind(book: RuleBook) -> None:
    assert Counter(rule.kind for rule in book.rules) == {
        "levels": 8,
        "rate_of_change": 1,
        "deviation": 2,
        "absence": 3,
        "late_report": 20,
    }


def test_rule_ids_are_unique_and_default_to_kind_and_indicator(book: RuleBook) -> None:
    ids = [rule.rule_id for rule in book.rules]
    assert len(ids) == len(set(ids))
    assert all(rule.rule_id == f"{rule.kind}:{rule.indicator}" for rule in book.rules)


def test_every_indicator_with_levels_has_a_levels_rule(book: RuleBook, catalogue: Catalogue) -> None:
    graded = {s.levels_indicator for s in catalogue.stations.values() if s.levels_indicator}
    with_levels = {code for code, i in catalogue.indicators.items() if i.levels} | graded
    assert {rule.indicator for rule in book.rules if rule.kind == "levels"} == with_levels


def test_every_periodic_indicator_has_an_explicit_late_report_rule(
    book: RuleBook, catalogue: Catalogue
) -> None:
    periodic = {code for code, i in catalogue.indicators.items() if i.frequency in PERIODIC}
    assert {rule.indicator for rule in book.rules if rule.kind == "late_report"} == periodic
    assert all(rule.on_ticks for rule in book.rules if rule.kind == "late_report")


def test_rules_carry_the_catalogue_domain_and_a_two_step_ladder(book: RuleBook, catalogue: Catalogue) -> None:
    for rule in book.rules:
        assert rule.domain == catalogue.indicators[rule.indicator].domain
        if rule.kind != "levels":
            assert [level.index for level in rule.levels] == [0, 1]
            assert rule.alert_from == 1
            assert rule.levels[0].code == "CLEAR"
    rate = next(rule for rule in book.rules if rule.kind == "rate_of_change")
    assert (rate.levels[1].code, rate.levels[1].name_vi) == ("RAPID_RISE", "Nước lên nhanh")
    absence = next(rule for rule in book.rules if rule.kind == "absence")
    assert absence.levels[1].code == "NO_DATA"  # from [ladder]


def test_parameters_of_the_real_file(book: RuleBook) -> None:
    by_id = {rule.rule_id: rule for rule in book.rules}
    aqi = by_id["levels:ENV.AQI"].params
    assert isinstance(aqi, LevelsParams)
    assert (aqi.hysteresis, aqi.min_count) == (5.0, 2)
    assert by_id["levels:ENV.AQI"].alert_from == 3
    rate = by_id["rate_of_change:HYD.WATER_LEVEL"].params
    assert rate == RateParams("rise", 1.0, 6.0)
    deaths = by_id["deviation:TRF.DEATHS"].params
    assert deaths == DeviationParams(days=30, k=2.0, min_baseline_days=7, sigma_floor=1.0)
    assert by_id["absence:ENV.AQI"].params == AbsenceParams(3 * 3_600_000)
    assert by_id["absence:PWR.OUTPUT_GWH"].params == AbsenceParams(36 * 3_600_000)


def test_flood_levels_are_each_stations_own(book: RuleBook) -> None:
    long_bien = _levels(book, "HYD.WATER_LEVEL", "01", "HN-LONGBIEN")
    son_tay = _levels(book, "HYD.WATER_LEVEL", "01", "HN-SONTAY")
    assert [level.lower for level in long_bien.levels[1:]] == [9.5, 10.5, 11.5]
    assert [level.lower for level in son_tay.levels[1:]] == [12.4, 13.4, 14.4]
    assert long_bien.rule_id == son_tay.rule_id == "levels:HYD.WATER_LEVEL"
    assert long_bien.alert_from == 1


def test_station_override_of_the_real_file(book: RuleBook) -> None:
    tan_chau = _levels(book, "HYD.WATER_LEVEL", "91", "AG-TANCHAU")
    assert isinstance(tan_chau.params, LevelsParams)
    assert tan_chau.params.hysteresis == 0.15
    assert tan_chau.scope == "station AG-TANCHAU"
    rates = {
        station: next(
            r for r in book.rules_for("HYD.WATER_LEVEL", "01", station) if r.kind == "rate_of_change"
        )
        for station in ("HN-LONGBIEN", "HN-SONTAY")
    }
    assert isinstance(rates["HN-LONGBIEN"].params, RateParams)
    assert rates["HN-LONGBIEN"].params.change == 0.6
    assert rates["HN-LONGBIEN"].rule_id == "rate_of_change:HYD.WATER_LEVEL"
    assert rates["HN-SONTAY"].params == RateParams("rise", 1.0, 6.0)


def test_rules_for_an_entity(book: RuleBook) -> None:
    kinds = [rule.kind for rule in book.rules_for("HYD.WATER_LEVEL", "01", "HN-LONGBIEN")]
    assert kinds == ["levels", "rate_of_change", "absence"]
    # A station without flood alarm levels has no levels rule, the others still apply.
    assert [r.kind for r in book.rules_for("HYD.WATER_LEVEL", "01", None)] == ["rate_of_change", "absence"]
    assert [r.kind for r in book.timer_rules_for("HYD.WATER_LEVEL", "01", "HN-LONGBIEN")] == ["absence"]
    assert [r.kind for r in book.rules_for("SSI.HEALTH", "40", None)] == ["late_report"]
    assert book.rules_for("PWR.PEAK_MW", "VN", None) == ()
    assert book.rules_for("NO.SUCH", "01", None) == ()


def test_rules_for_is_cached(book: RuleBook) -> None:
    first = book.rules_for("ENV.AQI", "01", "HN-AQ-HOANKIEM")
    assert book.rules_for("ENV.AQI", "01", "HN-AQ-HOANKIEM") is first


def test_late_report_entities(book: RuleBook, catalogue: Catalogue) -> None:
    entities = book.late_report_entities()
    current = sorted(c for c, r in catalogue.regions.items() if r.kind == "current")
    assert len(current) == 34
    assert [e.region for e in entities if e.indicator == "SSI.HEALTH"] == current
    assert all(e.station is None for e in entities if e.indicator == "SSI.HEALTH")
    assert [e for e in entities if e.indicator == "TRN.EXPRESSWAY_KM"] == [Entity("TRN.EXPRESSWAY_KM", "VN")]
    assert {e.station for e in entities if e.indicator == "TRN.AIR_PASSENGERS"} == {
        "AP-NOIBAI",
        "AP-TANSONNHAT",
        "AP-DANANG",
    }
    assert Entity("TRN.AIR_PASSENGERS", "01", "AP-NOIBAI") in entities
    assert len(entities) == 15 * 34 + 4 + 3  # province-level, national, airports
    assert len(entities) == len(set(entities))


def test_absence_and_timer_entities(book: RuleBook) -> None:
    absence = book.absence_entities()
    assert Entity("PWR.OUTPUT_GWH", "VN") in absence
    assert Entity("HYD.WATER_LEVEL", "01", "HN-LONGBIEN") in absence
    assert len([e for e in absence if e.indicator == "ENV.AQI"]) == 6
    assert len([e for e in absence if e.indicator == "HYD.WATER_LEVEL"]) == 7
    assert book.timer_entities() == sorted(set(absence) | set(book.late_report_entities()))


# --- overrides: station beats region beats indicator ----------------------------------------------

_PRECEDENCE = """
[[override]]
rule = "levels:HYD.WATER_LEVEL"
region = "01"
hysteresis = 0.1

[[override]]
rule = "levels:HYD.WATER_LEVEL"
station = "HN-LONGBIEN"
hysteresis = 0.2

[[override]]
rule = "deviation:TRF.DEATHS"
region = "79"
k = 3
"""


@pytest.mark.parametrize(
    ("entity", "expected"),
    [
        (("01", "HN-LONGBIEN"), (0.2, "station HN-LONGBIEN")),  # station and region overrides: station wins
        (("01", "HN-SONTAY"), (0.1, "region 01")),  # region override only
        (("25", "PT-TRUNGHA"), (0.05, "indicator")),  # neither
        (("91", "AG-TANCHAU"), (0.15, "station AG-TANCHAU")),  # the real file's station override
    ],
)
def test_override_precedence(
    tmp_path: Path, catalogue: Catalogue, entity: tuple[str, str], expected: tuple[float, str]
) -> None:
    book = load_rules(_with(tmp_path, _PRECEDENCE), catalogue)
    rule = _levels(book, "HYD.WATER_LEVEL", *entity)
    assert isinstance(rule.params, LevelsParams)
    assert (rule.params.hysteresis, rule.scope) == expected
    assert rule.rule_id == "levels:HYD.WATER_LEVEL"


def test_region_override_of_a_province_indicator(tmp_path: Path, catalogue: Catalogue) -> None:
    book = load_rules(_with(tmp_path, _PRECEDENCE), catalogue)
    (hcmc,) = [r for r in book.rules_for("TRF.DEATHS", "79", None)]
    (hanoi,) = [r for r in book.rules_for("TRF.DEATHS", "01", None)]
    assert isinstance(hcmc.params, DeviationParams)
    assert isinstance(hanoi.params, DeviationParams)
    assert (hcmc.params.k, hcmc.params.days, hanoi.params.k) == (3.0, 30, 2.0)
    assert hcmc.levels == hanoi.levels  # the alert step of the rule is kept


def test_defaults_switch_off_means_no_generated_late_reports(tmp_path: Path, catalogue: Catalogue) -> None:
    text = RULES.read_text(encoding="utf-8").replace("late_report = true", "late_report = false")
    book = load_rules(_write(tmp_path, text), catalogue)
    assert not [rule for rule in book.rules if rule.kind == "late_report"]


def test_an_explicit_late_report_rule_replaces_the_generated_one(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    extra = """
[[rule]]
kind = "late_report"
indicator = "FIN.CPI"
alert = { code = "CPI_LATE", name_en = "CPI report overdue" }
"""
    book = load_rules(_with(tmp_path, extra), catalogue)
    cpi = [rule for rule in book.rules if rule.rule_id == "late_report:FIN.CPI"]
    assert len(cpi) == 1
    assert (cpi[0].levels[1].code, cpi[0].levels[1].name_en, cpi[0].levels[1].name_vi) == (
        "CPI_LATE",
        "CPI report overdue",
        "Chậm báo cáo",
    )


def test_own_levels_below(tmp_path: Path, catalogue: Catalogue) -> None:
    extra = """
[[rule]]
id = "levels-low:PWR.OUTPUT_GWH"
kind = "levels"
indicator = "PWR.OUTPUT_GWH"
direction = "below"
hysteresis = 10
levels = [
  { code = "NORMAL", from = 2000, to = 700, name_vi = "Bình thường", name_en = "normal", colour = "#00E400" },
  { code = "LOW", from = 700, to = 500, name_vi = "Thấp", name_en = "low", colour = "#FF7E00" },
  { code = "VERY_LOW", from = 500, name_vi = "Rất thấp", name_en = "very low", colour = "#FF0000" },
]
"""
    book = load_rules(_with(tmp_path, extra), catalogue)
    (rule,) = [r for r in book.rules_for("PWR.OUTPUT_GWH", "VN", None) if r.kind == "levels"]
    assert [level.code for level in rule.levels] == ["NORMAL", "LOW", "VERY_LOW"]
    assert rule.alert_from == 1  # the catalogue's alert_from_level default


# --- defects ------------------------------------------------------------------------------------

_LEVELS = """levels = [
  { code = "LOW",  from = 0,  name_vi = "Thấp", name_en = "low",  colour = "#00E400" },
  { code = "MID",  from = 10, name_vi = "Vừa",  name_en = "mid",  colour = "#FFFF00" },
  { code = "HIGH", from = 5,  name_vi = "Cao",  name_en = "high", colour = "#FF0000" },
]"""


@pytest.mark.parametrize(
    ("extra", "names", "problem"),
    [
        pytest.param(
            '[[rule]]\nkind = "levels"\nindicator = "XXX.NOPE"\n',
            "rule 'levels:XXX.NOPE'",
            "unknown indicator 'XXX.NOPE'",
            id="unknown-indicator",
        ),
        pytest.param(
            '[[rule]]\nkind = "threshold"\nindicator = "ENV.AQI"\n',
            "rule 'threshold:ENV.AQI'",
            "'kind' is 'threshold'; expected one of levels, rate_of_change",
            id="unknown-kind",
        ),
        pytest.param(
            '[[rule]]\nkind = "levels"\nindicator = "ENV.AQI"\n',
            "rule 'levels:ENV.AQI'",
            "duplicate rule id",
            id="duplicate-id",
        ),
        pytest.param(
            '[[rule]]\nid = "aqi high"\nkind = "levels"\nindicator = "ENV.AQI"\n',
            "rule 'aqi high'",
            "the id may hold only",
            id="bad-id",
        ),
        pytest.param(
            '[[rule]]\nkind = "rate_of_change"\nindicator = "HYD.SALINITY_MAX"\nhours = 6\n',
            "rule 'rate_of_change:HYD.SALINITY_MAX'",
            "'change' is required",
            id="missing-param",
        ),
        pytest.param(
            '[[rule]]\nkind = "rate_of_change"\nindicator = "HYD.SALINITY_MAX"\nchange = 1\nhours = -6\n',
            "rule 'rate_of_change:HYD.SALINITY_MAX'",
            "'hours' must be above 0, not -6",
            id="negative-param",
        ),
        pytest.param(
            '[[rule]]\nkind = "rate_of_change"\nindicator = "HYD.SALINITY_MAX"\nchange = 1\nhours = 72\n',
            "rule 'rate_of_change:HYD.SALINITY_MAX'",
            "beyond the 48 h of history",
            id="window-beyond-history",
        ),
        pytest.param(
            '[[rule]]\nkind = "deviation"\nindicator = "DIS.DROUGHT_HA"\ndays = 30\nk = "two"\n',
            "rule 'deviation:DIS.DROUGHT_HA'",
            "'k' must be a finite number, not 'two'",
            id="wrong-type",
        ),
        pytest.param(
            '[[rule]]\nkind = "deviation"\nindicator = "DIS.DROUGHT_HA"\ndays = 5\nk = 2\n',
            "rule 'deviation:DIS.DROUGHT_HA'",
            "'min_baseline_days' 7 is more than the 5 'days'",
            id="baseline-longer-than-window",
        ),
        pytest.param(
            '[[rule]]\nkind = "deviation"\nindicator = "DIS.DROUGHT_HA"\ndays = 30\nk = 2\nthreshold = 3\n',
            "rule 'deviation:DIS.DROUGHT_HA'",
            "unknown keys ['threshold'] for a deviation rule",
            id="unknown-param",
        ),
        pytest.param(
            '[[rule]]\nkind = "deviation"\nindicator = "ENV.AQI"\nid = "dev:aqi"\ndays = 30\nk = 2\n',
            "rule 'dev:aqi'",
            "deviation compares daily values; ENV.AQI is hourly",
            id="deviation-not-daily",
        ),
        pytest.param(
            '[[rule]]\nkind = "late_report"\nindicator = "TRF.DEATHS"\n',
            "rule 'late_report:TRF.DEATHS'",
            "late_report needs a monthly, quarterly, half_yearly, annual indicator; TRF.DEATHS is daily",
            id="late-report-not-periodic",
        ),
        pytest.param(
            '[[rule]]\nkind = "absence"\nindicator = "FIN.CPI"\n',
            "rule 'absence:FIN.CPI'",
            "'interval_hours' is required: no default interval for a monthly indicator",
            id="absence-without-interval",
        ),
        pytest.param(
            '[[rule]]\nkind = "absence"\nindicator = "HYD.SALINITY_4PPT_KM"\ninterval_hours = 0\n',
            "rule 'absence:HYD.SALINITY_4PPT_KM'",
            "'interval_hours' must be above 0",
            id="absence-zero-interval",
        ),
        pytest.param(
            f'[[rule]]\nid = "own:DIS.DROUGHT_HA"\nkind = "levels"\nindicator = "DIS.DROUGHT_HA"\n'
            f"{_LEVELS}\n",
            "rule 'own:DIS.DROUGHT_HA'",
            "levels not increasing: HIGH (5) after MID (10)",
            id="levels-not-increasing",
        ),
        pytest.param(
            '[[rule]]\nid = "own:DIS.DROUGHT_HA"\nkind = "levels"\nindicator = "DIS.DROUGHT_HA"\n'
            'direction = "below"\nlevels = [\n'
            '  { code = "A", from = 0, name_vi = "A", name_en = "a", colour = "#00E400" },\n'
            '  { code = "B", from = 10, name_vi = "B", name_en = "b", colour = "#FF0000" },\n]\n',
            "rule 'own:DIS.DROUGHT_HA'",
            "levels not decreasing (direction below): B (10) after A (0)",
            id="levels-below-not-decreasing",
        ),
        pytest.param(
            '[[rule]]\nid = "own:DIS.DROUGHT_HA"\nkind = "levels"\nindicator = "DIS.DROUGHT_HA"\nlevels = [\n'
            '  { code = "A", from = 0, to = 20, name_vi = "A", name_en = "a", colour = "#00E400" },\n'
            '  { code = "B", from = 10, name_vi = "B", name_en = "b", colour = "#FF0000" },\n]\n',
            "rule 'own:DIS.DROUGHT_HA'",
            "level A (0 to 20) overlaps B (from 10)",
            id="overlapping-ranges",
        ),
        pytest.param(
            '[[rule]]\nid = "own:DIS.DROUGHT_HA"\nkind = "levels"\nindicator = "DIS.DROUGHT_HA"\nlevels = [\n'
            '  { code = "A", from = 0, to = 10, name_vi = "A", name_en = "a", colour = "#00E400" },\n'
            '  { code = "B", from = 10, to = 5, name_vi = "B", name_en = "b", colour = "#FF0000" },\n]\n',
            "rule 'own:DIS.DROUGHT_HA'",
            "level B: inverted range, 'to' 5 is not past 'from' 10",
            id="inverted-range",
        ),
        pytest.param(
            '[[rule]]\nid = "own:DIS.DROUGHT_HA"\nkind = "levels"\nindicator = "DIS.DROUGHT_HA"\nlevels = [\n'
            '  { code = "A", from = 0, to = 8, name_vi = "A", name_en = "a", colour = "#00E400" },\n'
            '  { code = "B", from = 10, name_vi = "B", name_en = "b", colour = "#FF0000" },\n]\n',
            "rule 'own:DIS.DROUGHT_HA'",
            "level A (0 to 8) leaves a gap before B (from 10)",
            id="gap-between-ranges",
        ),
        pytest.param(
            '[[rule]]\nid = "aqi-wide"\nkind = "levels"\nindicator = "ENV.AQI"\nhysteresis = 51\n',
            "rule 'aqi-wide'",
            "hysteresis 51 overlaps the ranges of ENV.AQI's levels: GOOD is only 51 wide",
            id="hysteresis-overlaps",
        ),
        pytest.param(
            '[[rule]]\nid = "flood-wide"\nkind = "levels"\nindicator = "HYD.WATER_LEVEL"\nhysteresis = 0.5\n',
            "rule 'flood-wide'",
            "hysteresis 0.5 overlaps the ranges of station AG-CHAUDOC's levels",
            id="hysteresis-overlaps-a-station",
        ),
        pytest.param(
            '[[rule]]\nid = "aqi-6"\nkind = "levels"\nindicator = "ENV.AQI"\nalert_from = 6\n',
            "rule 'aqi-6'",
            "alert_from 6 is beyond ENV.AQI's levels (0..5",
            id="alert-from-beyond",
        ),
        pytest.param(
            '[[rule]]\nid = "aqi-0"\nkind = "levels"\nindicator = "ENV.AQI"\nalert_from = 0\n',
            "rule 'aqi-0'",
            "alert_from 0 is beyond ENV.AQI's levels",
            id="alert-from-clear",
        ),
        pytest.param(
            '[[rule]]\nid = "aqi-purple"\nkind = "levels"\nindicator = "ENV.AQI"\nalert_from = "PURPLE"\n',
            "rule 'aqi-purple'",
            "alert_from 'PURPLE' is not a level of ENV.AQI's levels",
            id="alert-from-unknown-code",
        ),
        pytest.param(
            '[[rule]]\nid = "drought"\nkind = "levels"\nindicator = "DIS.DROUGHT_HA"\n',
            "rule 'drought'",
            "no levels for DIS.DROUGHT_HA in the catalogue",
            id="no-levels",
        ),
        pytest.param(
            '[[rule]]\nid = "aqi-below"\nkind = "levels"\nindicator = "ENV.AQI"\ndirection = "below"\n',
            "rule 'aqi-below'",
            "direction 'below' needs levels of its own",
            id="below-on-catalogue-levels",
        ),
        pytest.param(
            '[[rule]]\nkind = "absence"\nindicator = "HYD.SALINITY_4PPT_KM"\n'
            '[[rule]]\nkind = "rate_of_change"\nindicator = "HYD.SALINITY_4PPT_KM"\nchange = 10\nhours = 24\n'
            'alert = { colour = "red" }\n',
            "rule 'rate_of_change:HYD.SALINITY_4PPT_KM': alert",
            "'colour' 'red' must be #RRGGBB",
            id="bad-colour",
        ),
        pytest.param(
            '[[override]]\nrule = "levels:HYD.WATER_LEVEL"\nregion = "99"\nhysteresis = 0.1\n',
            "override of rule 'levels:HYD.WATER_LEVEL' at region 99",
            "unknown region '99'",
            id="override-unknown-region",
        ),
        pytest.param(
            '[[override]]\nrule = "deviation:TRF.DEATHS"\nregion = "30"\nk = 3\n',
            "override of rule 'deviation:TRF.DEATHS' at region 30",
            "region '30' is a legacy province merged into '31'",
            id="override-legacy-region",
        ),
        pytest.param(
            '[[override]]\nrule = "deviation:TRF.DEATHS"\nregion = "VN"\nk = 3\n',
            "override of rule 'deviation:TRF.DEATHS' at region VN",
            "at the national level is what the indicator rule already covers",
            id="override-national",
        ),
        pytest.param(
            '[[override]]\nrule = "levels:HYD.WATER_LEVEL"\nstation = "HN-NOWHERE"\nhysteresis = 0.1\n',
            "override of rule 'levels:HYD.WATER_LEVEL' at station HN-NOWHERE",
            "unknown station 'HN-NOWHERE'",
            id="override-unknown-station",
        ),
        pytest.param(
            '[[override]]\nrule = "levels:HYD.WATER_LEVEL"\nstation = "AP-NOIBAI"\nhysteresis = 0.1\n',
            "override of rule 'levels:HYD.WATER_LEVEL' at station AP-NOIBAI",
            "station AP-NOIBAI is of kind airport; HYD.WATER_LEVEL comes from hydrological stations",
            id="override-wrong-station-kind",
        ),
        pytest.param(
            '[[override]]\nrule = "deviation:TRF.DEATHS"\nstation = "HN-LONGBIEN"\nk = 3\n',
            "override of rule 'deviation:TRF.DEATHS' at station HN-LONGBIEN",
            "TRF.DEATHS is reported per province, not per station",
            id="override-station-of-province-indicator",
        ),
        pytest.param(
            '[[override]]\nrule = "levels:NOPE"\nregion = "01"\nhysteresis = 1\n',
            "override of rule 'levels:NOPE' at region 01",
            "unknown rule id",
            id="override-unknown-rule",
        ),
        pytest.param(
            '[[override]]\nrule = "deviation:TRF.DEATHS"\nk = 3\n',
            "override of rule 'deviation:TRF.DEATHS' at indicator",
            "names exactly one of 'region' or 'station'",
            id="override-without-scope",
        ),
        pytest.param(
            '[[override]]\nrule = "deviation:TRF.DEATHS"\nregion = "01"\nkind = "levels"\n',
            "override of rule 'deviation:TRF.DEATHS' at region 01",
            "unknown keys ['kind'] for an override of a deviation rule",
            id="override-changes-kind",
        ),
        pytest.param(
            '[[override]]\nrule = "levels:HYD.WATER_LEVEL"\nstation = "HN-LONGBIEN"\nhysteresis = 0.1\n',
            "override of rule 'levels:HYD.WATER_LEVEL' at station HN-LONGBIEN",
            "",  # the real file overrides AG-TANCHAU; this one is fine once, refused twice below
            id="override-once-is-fine",
        ),
        pytest.param(
            '[[override]]\nrule = "levels:HYD.WATER_LEVEL"\nstation = "AG-TANCHAU"\nhysteresis = 0.1\n',
            "override of rule 'levels:HYD.WATER_LEVEL' at station AG-TANCHAU",
            "duplicate override",
            id="duplicate-override",
        ),
        pytest.param(
            '[[override]]\nrule = "levels:HYD.WATER_LEVEL"\nstation = "AG-CHAUDOC"\nhysteresis = 0.6\n',
            "override of rule 'levels:HYD.WATER_LEVEL' at station AG-CHAUDOC",
            "hysteresis 0.6 overlaps the ranges of station AG-CHAUDOC's levels",
            id="override-bad-param",
        ),
        pytest.param(
            '[[override]]\nrule = "rate_of_change:HYD.WATER_LEVEL"\nstation = "HN-SONTAY"\nchange = 0\n',
            "override of rule 'rate_of_change:HYD.WATER_LEVEL' at station HN-SONTAY",
            "'change' must be above 0, not 0",
            id="override-zero-change",
        ),
        pytest.param(
            '[stations_of]\n"TRF.DEATHS" = "hydrological"\n',
            "",
            "Cannot declare ('stations_of',) twice",  # the TOML parser's own message
            id="toml-error",
        ),
        pytest.param(
            "[thresholds]\nx = 1\n",
            "",
            "unknown sections ['thresholds']",
            id="unknown-section",
        ),
    ],
)
def test_defects_name_the_file_the_rule_and_the_problem(
    tmp_path: Path, catalogue: Catalogue, extra: str, names: str, problem: str
) -> None:
    path = _with(tmp_path, extra)
    if not problem:
        load_rules(path, catalogue)
        return
    with pytest.raises(ConfigurationError) as caught:
        load_rules(path, catalogue)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert names in message
    assert problem in message


def test_a_station_indicator_watched_by_a_timer_needs_its_station_kind(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    text = RULES.read_text(encoding="utf-8").replace('"TRN.AIR_PASSENGERS" = "airport"\n', "")
    with pytest.raises(ConfigurationError, match=r"rule 'late_report:TRN\.AIR_PASSENGERS'.*\[stations_of\]"):
        load_rules(_write(tmp_path, text), catalogue)


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ('"TRF.DEATHS" = "hydrological"', "TRF.DEATHS is reported per province, not per station"),
        ('"XXX.NOPE" = "hydrological"', "unknown indicator"),
        ('"HYD.SALINITY_MAX" = "lighthouse"', "unknown station kind 'lighthouse'"),
    ],
)
def test_stations_of_defects(tmp_path: Path, catalogue: Catalogue, section: str, problem: str) -> None:
    text = RULES.read_text(encoding="utf-8").replace('"HYD.SALINITY_MAX" = "salinity"', section)
    with pytest.raises(ConfigurationError, match=r"\[stations_of\]") as caught:
        load_rules(_write(tmp_path, text), catalogue)
    assert problem in str(caught.value)


def test_missing_file(tmp_path: Path, catalogue: Catalogue) -> None:
    with pytest.raises(ConfigurationError, match=r"rules\.toml"):
        load_rules(tmp_path / "rules.toml", catalogue)


def _levels(book: RuleBook, indicator: str, region: str, station: str | None) -> Rule:
    return next(rule for rule in book.rules_for(indicator, region, station) if rule.kind == "levels")
