"""stream_app.domain.alerting.transitions: regulation levels, alert transitions, deterministic alert ids."""

from __future__ import annotations

import pytest

from stream_app.domain.alerting.levels import level_for
from stream_app.domain.alerting.transitions import Transition, transition
from stream_app.domain.catalogue import Catalogue


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (0, "GOOD"),
        (50, "GOOD"),
        (50.9, "GOOD"),
        (51, "MODERATE"),
        (100, "MODERATE"),
        (101, "POOR"),
        (150, "POOR"),
        (150.5, "POOR"),
        (151, "BAD"),
        (200, "BAD"),
        (201, "VERY_BAD"),
        (300, "VERY_BAD"),
        (301, "HAZARDOUS"),
        (500, "HAZARDOUS"),
    ],
)
def test_vn_aqi_levels(catalogue: Catalogue, value: float, code: str) -> None:
    levels = catalogue.indicators["ENV.AQI"].levels
    assert levels[level_for(value, levels)].code == code


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (-10, "NORMAL"),
        (9.49, "NORMAL"),
        (9.5, "BD1"),
        (10.49, "BD1"),
        (10.5, "BD2"),
        (11.5, "BD3"),
        (20, "BD3"),
    ],
)
def test_flood_levels_of_long_bien(catalogue: Catalogue, value: float, code: str) -> None:
    indicator = catalogue.indicators["HYD.WATER_LEVEL"]
    levels = catalogue.levels_for(indicator, "HN-LONGBIEN")
    assert levels[level_for(value, levels)].code == code


def test_flood_levels_are_per_station(catalogue: Catalogue) -> None:
    indicator = catalogue.indicators["HYD.WATER_LEVEL"]
    long_bien = catalogue.levels_for(indicator, "HN-LONGBIEN")
    son_tay = catalogue.levels_for(indicator, "HN-SONTAY")
    assert level_for(12.0, long_bien) == 3
    assert level_for(12.0, son_tay) == 0


def test_indicator_levels_when_station_has_none(catalogue: Catalogue) -> None:
    aqi = catalogue.indicators["ENV.AQI"]
    assert catalogue.levels_for(aqi, "HN-AQ-HOANKIEM") == aqi.levels
    assert catalogue.levels_for(aqi, None) == aqi.levels
    assert catalogue.levels_for(aqi, "NO-SUCH-STATION") == aqi.levels


def test_value_below_first_bound_and_empty_table_are_level_zero(catalogue: Catalogue) -> None:
    levels = catalogue.indicators["ENV.AQI"].levels
    assert level_for(-5, levels) == 0
    assert level_for(1e9, ()) == 0


@pytest.mark.parametrize(
    ("previous", "current", "alert_from", "expected"),
    [
        (0, 3, 3, Transition.FIRING),
        (2, 3, 3, Transition.FIRING),
        (0, 5, 3, Transition.FIRING),
        (3, 4, 3, Transition.ESCALATED),
        (3, 5, 3, Transition.ESCALATED),
        (4, 3, 3, Transition.DEESCALATED),
        (5, 4, 3, Transition.DEESCALATED),
        (3, 2, 3, Transition.RESOLVED),
        (5, 0, 3, Transition.RESOLVED),
        (1, 2, 3, None),
        (2, 1, 3, None),
        (0, 0, 3, None),
        (3, 3, 3, None),
        (5, 5, 3, None),
        (0, 1, 1, Transition.FIRING),
        (1, 0, 1, Transition.RESOLVED),
    ],
)
def test_transitions(previous: int, current: int, alert_from: int, expected: Transition | None) -> None:
    assert transition(previous, current, alert_from) is expected
