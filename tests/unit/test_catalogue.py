"""stream_app.catalogue: the real catalogue loads; each kind of defect names the file and the entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_app.catalogue import Catalogue, load_catalogue
from stream_app.exceptions import ConfigurationError
from stream_app.settings import Settings

SOURCE = Settings.model_construct().catalogue_dir / "indicators.toml"

_LEVELS = """levels = [
  { code = "LOW",  from = 0,  name_vi = "Thấp", name_en = "low",  colour = "#00E400" },
  { code = "HIGH", from = 10, name_vi = "Cao",  name_en = "high", colour = "#FF0000" },
]
"""


def _indicator(
    code: str, *, owner: str = "MAE", lo: float = 0, hi: float = 100, levels: str = _LEVELS
) -> str:
    return f"""
[[indicator]]
code = "{code}"
name_vi = "Chỉ tiêu thử"
name_en = "Test indicator"
owner = "{owner}"
unit = "x"
min = {lo}
max = {hi}
level = "region"
alert_from_level = 1
{levels}"""


def _copy_with(tmp_path: Path, appended: str = "", *, old: str = "", new: str = "") -> Path:
    """A copy of the real catalogue with one defect: text appended, or one exact replacement."""
    text = SOURCE.read_text(encoding="utf-8")
    if old:
        assert text.count(old) == 1, f"the catalogue no longer holds {old!r} exactly once"
        text = text.replace(old, new)
    (tmp_path / "indicators.toml").write_text(text + appended, encoding="utf-8")
    return tmp_path / "indicators.toml"


def test_real_catalogue(catalogue: Catalogue) -> None:
    assert {"ENV.AQI", "HYD.WATER_LEVEL"} <= catalogue.indicators.keys()
    aqi = catalogue.indicators["ENV.AQI"]
    assert (aqi.owner, aqi.unit, aqi.min_value, aqi.max_value) == ("MAE", "index", 0.0, 500.0)
    assert [lv.code for lv in aqi.levels] == ["GOOD", "MODERATE", "POOR", "BAD", "VERY_BAD", "HAZARDOUS"]
    assert [lv.index for lv in aqi.levels] == list(range(6))
    assert catalogue.indicators["HYD.WATER_LEVEL"].unit == "m"
    assert catalogue.reporters["MAE"].indicators >= {"ENV.AQI", "HYD.WATER_LEVEL"}
    assert {"01", "79"} <= catalogue.regions.keys()
    regions = {
        code: catalogue.stations[code].region for code in ("HN-LONGBIEN", "HN-AQ-HOANKIEM", "HCM-AQ-Q1")
    }
    assert regions == {"HN-LONGBIEN": "01", "HN-AQ-HOANKIEM": "01", "HCM-AQ-Q1": "79"}


def test_unchanged_copy_loads(tmp_path: Path, catalogue: Catalogue) -> None:
    _copy_with(tmp_path)
    assert load_catalogue(tmp_path) == catalogue


def test_a_valid_addition_loads(tmp_path: Path) -> None:
    _copy_with(
        tmp_path,
        _indicator("TEST.OK"),
        old='indicators = ["ENV.AQI", ',
        new='indicators = ["TEST.OK", "ENV.AQI", ',
    )
    loaded = load_catalogue(tmp_path)
    assert [lv.lower for lv in loaded.indicators["TEST.OK"].levels] == [0.0, 10.0]
    assert "TEST.OK" in loaded.reporters["MAE"].indicators


@pytest.mark.parametrize(
    ("appended", "entry", "problem"),
    [
        pytest.param(
            _indicator(
                "TEST.LEVELS",
                levels=_LEVELS.replace("from = 10", "from = 0"),
            ),
            "'TEST.LEVELS'",
            "levels not increasing",
            id="levels-not-increasing",
        ),
        pytest.param(
            _indicator("TEST.RANGE", lo=5, hi=5), "'TEST.RANGE'", "must be below max", id="min-equals-max"
        ),
        pytest.param(
            _indicator("TEST.RANGE", lo=9, hi=-9), "'TEST.RANGE'", "must be below max", id="min-above-max"
        ),
        pytest.param(
            '\n[[station]]\ncode = "XX-NOWHERE"\nname = "Nowhere"\nregion = "99"\nkind = "air_quality"\n',
            "'XX-NOWHERE'",
            "unknown region '99'",
            id="station-in-unknown-region",
        ),
        pytest.param(
            '\n[[reporter]]\ncode = "GSO"\nname_vi = "Tổng cục Thống kê"\nname_en = "GSO"\n'
            'indicators = ["ENV.AQI", "POP.TOTAL"]\n',
            "'GSO'",
            "POP.TOTAL",
            id="reporter-with-unknown-indicator",
        ),
        pytest.param(
            _indicator("POP.TOTAL", owner="GSO"),
            "'POP.TOTAL'",
            "unknown owner 'GSO'",
            id="indicator-unknown-owner",
        ),
        pytest.param(_indicator("ENV.AQI"), "'ENV.AQI'", "duplicate code", id="duplicate-indicator"),
        pytest.param(
            _indicator("TEST.LEVELS", levels=_LEVELS.replace(', colour = "#FF0000"', "")),
            "'HIGH'",
            "'colour'",
            id="level-without-colour",
        ),
        pytest.param(
            '\n[[region]]\nname = "Không mã"\n',
            "region '?'",
            "'code'",
            id="region-without-code",
        ),
    ],
)
def test_defect_raises_configuration_error_naming_file_and_entry(
    tmp_path: Path, appended: str, entry: str, problem: str
) -> None:
    path = _copy_with(tmp_path, appended)
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
    ("appended", "lines_after_source"),
    [
        pytest.param("\n[[indicator]\ncode = 1\n", 2, id="unclosed-table-header"),
        pytest.param('\n[[region]]\ncode = "01\n', 3, id="unterminated-string"),
        pytest.param("\n[[region]]\ncode = = 1\n", 3, id="double-equals"),
    ],
)
def test_invalid_toml_raises_configuration_error_naming_file_and_line(
    tmp_path: Path, appended: str, lines_after_source: int
) -> None:
    path = _copy_with(tmp_path, appended)
    broken_line = len(SOURCE.read_text(encoding="utf-8").splitlines()) + lines_after_source
    with pytest.raises(ConfigurationError) as info:
        load_catalogue(tmp_path)
    assert str(path) in str(info.value)
    assert f"line {broken_line}" in str(info.value)


def test_missing_catalogue_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"indicators\.toml"):
        load_catalogue(tmp_path)


@pytest.mark.xfail(
    strict=True,
    reason="BUG: load_catalogue rejects a duplicate indicator code but silently keeps the last of two "
    "[[station]] / [[reporter]] / [[region]] entries with the same code (a second HN-LONGBIEN moves it "
    "to region 79; a second MAE drops its indicators)",
    raises=pytest.fail.Exception,
)
@pytest.mark.parametrize(
    ("appended", "entry"),
    [
        pytest.param(
            '\n[[station]]\ncode = "HN-LONGBIEN"\nname = "again"\nregion = "79"\nkind = "hydrological"\n',
            "'HN-LONGBIEN'",
            id="duplicate-station",
        ),
        pytest.param(
            '\n[[reporter]]\ncode = "MAE"\nname_vi = "lại"\nname_en = "again"\nindicators = []\n',
            "'MAE'",
            id="duplicate-reporter",
        ),
        pytest.param('\n[[region]]\ncode = "01"\nname = "again"\n', "'01'", id="duplicate-region"),
    ],
)
def test_duplicate_code_is_rejected(tmp_path: Path, appended: str, entry: str) -> None:
    path = _copy_with(tmp_path, appended)
    with pytest.raises(ConfigurationError) as info:
        load_catalogue(tmp_path)
    assert str(path) in str(info.value)
    assert entry in str(info.value)


@pytest.mark.xfail(
    strict=True,
    reason="BUG: _Entry.levels() iterates `levels` without checking it is an array of tables: "
    'levels = "x" raises AttributeError instead of a ConfigurationError naming the entry',
    raises=AttributeError,
)
def test_levels_that_are_not_a_list_of_tables_are_named(tmp_path: Path) -> None:
    path = _copy_with(tmp_path, _indicator("TEST.LEVELS", levels='levels = "GOOD, BAD"\n'))
    with pytest.raises(ConfigurationError) as info:
        load_catalogue(tmp_path)
    assert str(path) in str(info.value)
    assert "'TEST.LEVELS'" in str(info.value)


@pytest.mark.xfail(
    strict=True,
    reason="BUG: load_catalogue accepts alert_from_level beyond the indicator's levels "
    "(e.g. 9 with 2 levels): the rule can never fire, silently",
    raises=pytest.fail.Exception,
)
def test_alert_from_level_beyond_the_levels_is_rejected(tmp_path: Path) -> None:
    _copy_with(tmp_path, _indicator("TEST.ALERT").replace("alert_from_level = 1", "alert_from_level = 9"))
    with pytest.raises(ConfigurationError, match=r"'TEST\.ALERT'"):
        load_catalogue(tmp_path)
