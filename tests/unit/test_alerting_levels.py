"""stream_app.domain.alerting levels rules: regulation boundaries, hysteresis, minimum duration, transitions
only once per change, out-of-order observations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TypedDict, Unpack

import pytest

from stream_app.domain.alerting import (
    BucketHistory,
    LevelsParams,
    Rule,
    RuleBook,
    RuleState,
    load_rules,
    on_observation,
)
from stream_app.domain.alerting.levels import level_for
from stream_app.domain.alerting.transitions import Transition
from stream_app.domain.catalogue import Catalogue, Level
from stream_app.settings import Settings

RULES = Settings.model_construct().catalogue_dir / "rules.toml"
T0 = int(datetime(2024, 11, 1, tzinfo=UTC).timestamp() * 1000)
HOUR = 3_600_000
MINUTE = 60_000
NO_HISTORY = BucketHistory({})


@pytest.fixture(scope="module")
def book(catalogue: Catalogue) -> RuleBook:
    return load_rules(RULES, catalogue)


@pytest.fixture
def aqi(book: RuleBook) -> Rule:
    """The real VN_AQI rule: hysteresis 5, two consecutive readings to rise."""
    return _levels_rule(book, "ENV.AQI", "01", "HN-AQ-HOANKIEM")


@pytest.fixture
def long_bien(book: RuleBook) -> Rule:
    """The real flood rule at Hà Nội (Long Biên): BĐ I/II/III 9.5/10.5/11.5, hysteresis 0.05 m."""
    return _levels_rule(book, "HYD.WATER_LEVEL", "01", "HN-LONGBIEN")


def _levels_rule(book: RuleBook, indicator: str, region: str, station: str | None) -> Rule:
    return next(rule for rule in book.rules_for(indicator, region, station) if rule.kind == "levels")


class _LevelsChange(TypedDict, total=False):
    """The ``LevelsParams`` fields the tests vary."""

    min_count: int
    min_minutes: float


def _with(rule: Rule, **params: Unpack[_LevelsChange]) -> Rule:
    assert isinstance(rule.params, LevelsParams)
    return replace(rule, params=replace(rule.params, **params))


def _feed(
    rule: Rule, state: RuleState, values: Sequence[float], *, start: int = T0, step: int = HOUR
) -> list[tuple[Transition | None, str]]:
    """(transition, level code) of each value, observed ``step`` apart."""
    out = []
    for n, value in enumerate(values):
        verdict = on_observation(
            rule,
            state,
            value=value,
            event_time_ms=start + n * step,
            history=NO_HISTORY,
            now_ms=start + n * step,
        )
        out.append((verdict.transition, rule.levels[verdict.level].code))
    return out


# --- boundaries ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (50, "GOOD"),
        (51, "MODERATE"),
        (100, "MODERATE"),
        (101, "POOR"),
        (150, "POOR"),
        (150.5, "POOR"),  # integer-edged: "bad" starts at 151
        (151, "BAD"),
        (200, "BAD"),
        (201, "VERY_BAD"),
        (300, "VERY_BAD"),
        (301, "HAZARDOUS"),
    ],
)
def test_vn_aqi_boundaries(aqi: Rule, value: float, code: str) -> None:
    assert aqi.levels[level_for(value, aqi.levels)].code == code
    # The real rule: a rise takes two consecutive readings, then the level is the regulation's.
    state = RuleState()
    first, second = _feed(aqi, state, [value, value])
    assert second[1] == code
    expected = Transition.FIRING if code in ("BAD", "VERY_BAD", "HAZARDOUS") else None
    assert (first[0], second[0]) == (None, expected)


@pytest.mark.parametrize(
    ("value", "code"),
    [(9.49, "NORMAL"), (9.5, "BD1"), (10.49, "BD1"), (10.5, "BD2"), (11.49, "BD2"), (11.5, "BD3")],
)
def test_long_bien_flood_boundaries(long_bien: Rule, value: float, code: str) -> None:
    (got,) = _feed(long_bien, RuleState(), [value])
    assert got == (None if code == "NORMAL" else Transition.FIRING, code)


# --- hysteresis ---------------------------------------------------------------------------------


def test_long_bien_hysteresis(long_bien: Rule) -> None:
    state = RuleState()
    verdicts = []
    for n, value in enumerate([11.6, 11.46, 11.44]):
        verdicts.append(
            on_observation(
                long_bien, state, value=value, event_time_ms=T0 + n * HOUR, history=NO_HISTORY, now_ms=T0
            )
        )
    fired, held, lowered = verdicts
    assert (fired.transition, long_bien.levels[fired.level].code, fired.threshold) == (
        Transition.FIRING,
        "BD3",
        11.5,
    )
    assert (held.transition, long_bien.levels[held.level].code) == (None, "BD3")  # 11.46 ≥ 11.5 − 0.05
    assert (lowered.transition, long_bien.levels[lowered.level].code) == (Transition.DEESCALATED, "BD2")
    assert (lowered.previous_level, lowered.value) == (3, 11.44)
    assert lowered.threshold == pytest.approx(11.45)


def test_resolution_waits_for_the_margin_then_is_immediate(long_bien: Rule) -> None:
    got = _feed(long_bien, RuleState(), [9.6, 9.46, 9.45, 9.44, 9.6, 8.0])
    assert got == [
        (Transition.FIRING, "BD1"),
        (None, "BD1"),
        (None, "BD1"),  # exactly the bound less the margin still holds
        (Transition.RESOLVED, "NORMAL"),
        (Transition.FIRING, "BD1"),
        (Transition.RESOLVED, "NORMAL"),
    ]


def test_a_fall_across_several_levels_lands_where_the_margin_allows(long_bien: Rule) -> None:
    # From BĐ III straight to 10.47: below BĐ II's bound but within its margin, so BĐ II holds.
    assert _feed(long_bien, RuleState(), [11.7, 10.47]) == [
        (Transition.FIRING, "BD3"),
        (Transition.DEESCALATED, "BD2"),
    ]
    assert _feed(long_bien, RuleState(), [11.7, 10.44]) == [
        (Transition.FIRING, "BD3"),
        (Transition.DEESCALATED, "BD1"),
    ]
    assert _feed(long_bien, RuleState(), [11.7, 3.0]) == [
        (Transition.FIRING, "BD3"),
        (Transition.RESOLVED, "NORMAL"),
    ]


def test_hysteresis_below_is_mirrored(book: RuleBook) -> None:
    levels = (
        Level(0, "NORMAL", 2000.0, "Bình thường", "normal", "#00E400"),
        Level(1, "LOW", 700.0, "Thấp", "low", "#FF7E00"),
        Level(2, "VERY_LOW", 500.0, "Rất thấp", "very low", "#FF0000"),
    )
    base = book.rules[0]
    rule = replace(
        base,
        rule_id="levels-low:PWR.OUTPUT_GWH",
        indicator="PWR.OUTPUT_GWH",
        levels=levels,
        alert_from=1,
        params=LevelsParams("below", hysteresis=10.0, own_levels=True),
    )
    assert [level_for(v, levels, "below") for v in (800, 700.5, 700, 500.1, 500, 0)] == [0, 0, 1, 1, 2, 2]
    got = _feed(rule, RuleState(), [800, 700, 705, 710, 711, 480, 505, 511])
    assert got == [
        (None, "NORMAL"),
        (Transition.FIRING, "LOW"),
        (None, "LOW"),
        (None, "LOW"),  # 710 = 700 + 10: still low
        (Transition.RESOLVED, "NORMAL"),
        (Transition.FIRING, "VERY_LOW"),
        (None, "VERY_LOW"),
        (Transition.DEESCALATED, "LOW"),
    ]


# --- minimum duration ---------------------------------------------------------------------------


def test_minimum_count(long_bien: Rule) -> None:
    rule = _with(long_bien, min_count=3)
    got = _feed(rule, RuleState(), [9.6, 9.7, 9.4, 9.6, 9.7, 9.8, 9.9, 10.6, 10.7, 9.9, 10.6, 10.6, 10.6])
    assert [t for t, _ in got] == [
        None,
        None,
        None,  # the streak is broken
        None,
        None,
        Transition.FIRING,  # the third in a row at or above BĐ I
        None,
        None,
        None,
        None,  # back to BĐ I: the streak towards BĐ II is broken
        None,
        None,
        Transition.ESCALATED,
    ]
    assert got[5][1] == "BD1"
    assert got[12][1] == "BD2"


def test_minimum_count_rises_to_the_lowest_level_of_the_streak(long_bien: Rule) -> None:
    rule = _with(long_bien, min_count=2)
    assert _feed(rule, RuleState(), [11.6, 9.6]) == [(None, "NORMAL"), (Transition.FIRING, "BD1")]


def test_de_escalation_ignores_the_minimum_duration(long_bien: Rule) -> None:
    rule = _with(long_bien, min_count=3, min_minutes=120)
    got = _feed(rule, RuleState(), [10.6, 10.6, 10.6, 9.0])
    assert got == [
        (None, "NORMAL"),
        (None, "NORMAL"),
        (Transition.FIRING, "BD2"),
        (Transition.RESOLVED, "NORMAL"),
    ]


def test_minimum_minutes(long_bien: Rule) -> None:
    rule = _with(long_bien, min_minutes=30)
    got = _feed(rule, RuleState(), [9.6, 9.6, 9.6, 9.6], step=10 * MINUTE)
    assert got == [(None, "NORMAL"), (None, "NORMAL"), (None, "NORMAL"), (Transition.FIRING, "BD1")]
    # A dip restarts the clock.
    got = _feed(rule, RuleState(), [9.6, 9.6, 9.0, 9.6, 9.6, 9.6, 9.6], step=10 * MINUTE)
    assert [t for t, _ in got].index(Transition.FIRING) == 6


def test_minimum_count_and_minutes_together(long_bien: Rule) -> None:
    rule = _with(long_bien, min_count=2, min_minutes=60)
    # Two readings 10 minutes apart are not an hour; the reading an hour after the first is.
    got = _feed(rule, RuleState(), [9.6, 9.6, 9.6, 9.6, 9.6, 9.6, 9.6], step=10 * MINUTE)
    assert [t for t, _ in got] == [None] * 6 + [Transition.FIRING]


def test_a_corrected_reading_does_not_lengthen_the_streak(long_bien: Rule) -> None:
    rule = _with(long_bien, min_count=2)
    state = RuleState()
    for _ in range(2):  # the same event time twice: the second replaces the first
        verdict = on_observation(rule, state, value=9.6, event_time_ms=T0, history=NO_HISTORY, now_ms=T0)
        assert verdict.transition is None
    verdict = on_observation(rule, state, value=9.6, event_time_ms=T0 + HOUR, history=NO_HISTORY, now_ms=T0)
    assert verdict.transition is Transition.FIRING


# --- transitions only ---------------------------------------------------------------------------


def test_scripted_smog_episode_gives_exactly_the_expected_transitions(aqi: Rule) -> None:
    values = [40, 160, 170, 170, 250, 260, 255, 198, 197, 196, 195, 195, 140, 30, 30]
    got = [(t, code) for t, code in _feed(aqi, RuleState(), values) if t is not None]
    assert got == [
        (Transition.FIRING, "BAD"),  # 160 then 170: two readings at or above 151
        (Transition.ESCALATED, "VERY_BAD"),  # 250 then 260
        (Transition.DEESCALATED, "BAD"),  # 195 < 201 − 5 (198..196 held "very bad")
        (Transition.RESOLVED, "POOR"),  # 140 < 151 − 5
    ]


def test_the_same_level_again_is_no_transition(long_bien: Rule) -> None:
    got = _feed(long_bien, RuleState(), [11.6] * 5 + [10.0] * 5)
    assert [t for t, _ in got] == [Transition.FIRING] + [None] * 4 + [Transition.DEESCALATED] + [None] * 4


def test_moves_below_the_alert_level_are_levels_not_transitions(aqi: Rule) -> None:
    got = _feed(_with(aqi, min_count=1), RuleState(), [20, 60, 120, 60, 20])
    assert got == [(None, "GOOD"), (None, "MODERATE"), (None, "POOR"), (None, "MODERATE"), (None, "GOOD")]


# --- out of order -------------------------------------------------------------------------------


def test_an_older_observation_is_ignored(long_bien: Rule) -> None:
    state = RuleState()
    fired = on_observation(
        long_bien, state, value=11.6, event_time_ms=T0 + 5 * HOUR, history=NO_HISTORY, now_ms=T0
    )
    assert fired.transition is Transition.FIRING
    late = on_observation(
        long_bien, state, value=8.0, event_time_ms=T0 + 2 * HOUR, history=NO_HISTORY, now_ms=T0
    )
    assert (late.transition, late.level, state.level, state.latest_ms) == (None, 3, 3, T0 + 5 * HOUR)
    assert "ignored" in late.detail
    newer = on_observation(
        long_bien, state, value=8.0, event_time_ms=T0 + 6 * HOUR, history=NO_HISTORY, now_ms=T0
    )
    assert newer.transition is Transition.RESOLVED


def test_a_shortened_level_table_does_not_break_a_stored_level(long_bien: Rule) -> None:
    state = RuleState(level=7)
    verdict = on_observation(long_bien, state, value=11.6, event_time_ms=T0, history=NO_HISTORY, now_ms=T0)
    assert verdict.level == 3
