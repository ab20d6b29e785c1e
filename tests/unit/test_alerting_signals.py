"""stream_app.domain.alerting rate_of_change and deviation rules, and the bucket-backed History."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from stream_app.domain.aggregates import hour_of
from stream_app.domain.alerting import (
    BucketHistory,
    DeviationParams,
    RateParams,
    Rule,
    RuleBook,
    RuleState,
    load_rules,
    on_observation,
)
from stream_app.domain.alerting.transitions import Transition
from stream_app.domain.catalogue import Catalogue
from stream_app.settings import Settings
from tests.unit.core_support import Hour

RULES = Settings.model_construct().catalogue_dir / "rules.toml"
T0 = int(datetime(2024, 11, 1, tzinfo=UTC).timestamp() * 1000)
HOUR = 3_600_000
DAY = 24 * HOUR


@pytest.fixture(scope="module")
def book(catalogue: Catalogue) -> RuleBook:
    return load_rules(RULES, catalogue)


def _rule(book: RuleBook, kind: str, indicator: str, region: str, station: str | None = None) -> Rule:
    return next(rule for rule in book.rules_for(indicator, region, station) if rule.kind == kind)


class Recorder:
    """Feeds observations to a rule the way the caller will: into the hourly buckets first."""

    def __init__(self, rule: Rule) -> None:
        self.rule, self.state, self.buckets = rule, RuleState(), dict[int, Hour]()

    def observe(self, hours: float, value: float) -> Transition | None:
        at = T0 + round(hours * HOUR)
        hour = hour_of(at)
        self.buckets[hour] = self.buckets[hour].add(value) if hour in self.buckets else Hour.of(value)
        verdict = on_observation(
            self.rule,
            self.state,
            value=value,
            event_time_ms=at,
            history=BucketHistory(self.buckets),
            now_ms=at,
        )
        return verdict.transition


# --- rate of change -----------------------------------------------------------------------------


def test_rate_of_change_fires_at_exactly_the_change_not_below_and_resolves(book: RuleBook) -> None:
    son_tay = Recorder(_rule(book, "rate_of_change", "HYD.WATER_LEVEL", "01", "HN-SONTAY"))  # 1.0 m in 6 h
    assert [
        son_tay.observe(0, 10.0),
        son_tay.observe(2, 10.5),
        son_tay.observe(4, 10.99),  # 0.99 m: not yet
        son_tay.observe(5, 11.0),  # exactly 1.0 m above the lowest of the last 6 h
        son_tay.observe(6, 11.2),  # still rising: no second alert
        son_tay.observe(8, 11.3),  # window from hour 2: 11.3 - 10.5 = 0.8
    ] == [None, None, None, Transition.FIRING, None, Transition.RESOLVED]
    assert son_tay.state.level == 0


def test_rate_of_change_tolerates_binary_rounding(book: RuleBook) -> None:
    assert 8.2 - 7.2 < 1.0  # 0.9999999999999991
    rule = _rule(book, "rate_of_change", "HYD.WATER_LEVEL", "01", "HN-SONTAY")
    recorder = Recorder(rule)
    assert [recorder.observe(0, 7.2), recorder.observe(3, 8.2)] == [None, Transition.FIRING]


def test_rate_of_change_looks_back_only_its_window(book: RuleBook) -> None:
    recorder = Recorder(_rule(book, "rate_of_change", "HYD.WATER_LEVEL", "01", "HN-SONTAY"))
    # 10 m eight hours ago is outside the 6 h window (hour-granular: the window starts at hour 2).
    assert [recorder.observe(0, 10.0), recorder.observe(2, 10.6), recorder.observe(8, 11.0)] == [
        None,
        None,
        None,
    ]


def test_long_bien_is_tighter_than_son_tay(book: RuleBook) -> None:
    rises = {}
    for station in ("HN-LONGBIEN", "HN-SONTAY"):
        recorder = Recorder(_rule(book, "rate_of_change", "HYD.WATER_LEVEL", "01", station))
        rises[station] = [recorder.observe(0, 8.0), recorder.observe(4, 8.7)]
    assert rises == {"HN-LONGBIEN": [None, Transition.FIRING], "HN-SONTAY": [None, None]}


def test_rate_of_change_fall(book: RuleBook) -> None:
    base = _rule(book, "rate_of_change", "HYD.WATER_LEVEL", "01", "HN-SONTAY")
    recorder = Recorder(replace(base, params=RateParams("fall", 0.5, 3.0)))
    assert [
        recorder.observe(0, 5.0),
        recorder.observe(1, 4.6),
        recorder.observe(2, 4.5),  # 0.5 below the highest of the last 3 h
        recorder.observe(6, 4.4),  # the window no longer holds 5.0
    ] == [None, None, Transition.FIRING, Transition.RESOLVED]


def test_rate_of_change_threshold_and_value(book: RuleBook) -> None:
    rule = _rule(book, "rate_of_change", "HYD.WATER_LEVEL", "01", "HN-SONTAY")
    state = RuleState()
    history = BucketHistory({hour_of(T0): Hour.of(10.0)})
    verdict = on_observation(rule, state, value=11.25, event_time_ms=T0 + HOUR, history=history, now_ms=T0)
    assert (verdict.transition, verdict.value, verdict.threshold) == (Transition.FIRING, 11.25, 11.0)
    assert "rose 1.25 in 6 h" in verdict.detail


def test_rate_of_change_ignores_an_older_observation(book: RuleBook) -> None:
    recorder = Recorder(_rule(book, "rate_of_change", "HYD.WATER_LEVEL", "01", "HN-SONTAY"))
    assert [recorder.observe(0, 10.0), recorder.observe(3, 11.0)] == [None, Transition.FIRING]
    assert recorder.observe(2, 9.0) is None  # older: the level does not move back in time
    assert recorder.state.level == 1


# --- deviation ----------------------------------------------------------------------------------

TODAY = date(2024, 12, 1)
# 08:00 local on TODAY.
TODAY_MS = int(datetime(2024, 12, 1, 1, tzinfo=UTC).timestamp() * 1000)


def _baseline(values: list[float]) -> BucketHistory:
    """Daily totals of the days just before TODAY, the last value the day before."""
    days = len(values)
    return BucketHistory({}, {TODAY - timedelta(days=days - n): v for n, v in enumerate(values)})


def _judge(
    rule: Rule, value: float, history: BucketHistory, state: RuleState | None = None
) -> tuple[Transition | None, float | None]:
    verdict = on_observation(
        rule, state or RuleState(), value=value, event_time_ms=TODAY_MS, history=history, now_ms=TODAY_MS
    )
    return verdict.transition, verdict.threshold


@pytest.mark.parametrize("indicator", ["TRF.DEATHS", "TRF.ACCIDENTS"])
@pytest.mark.parametrize(("value", "fires"), [(6, False), (6.03, False), (7, True), (40, True)])
def test_deviation_above_mean_plus_k_sigma(book: RuleBook, indicator: str, value: float, fires: bool) -> None:
    rule = _rule(book, "deviation", indicator, "01")
    history = _baseline([3.0, 5.0] * 15)  # mean 4, sample σ 1.017: threshold 6.034
    transition, threshold = _judge(rule, value, history)
    assert threshold == pytest.approx(6.0342, abs=1e-4)
    assert transition is (Transition.FIRING if fires else None)


def test_deviation_needs_a_baseline(book: RuleBook) -> None:
    rule = _rule(book, "deviation", "TRF.DEATHS", "01")
    assert _judge(rule, 100, _baseline([3.0] * 6)) == (None, None)  # 6 days < min_baseline_days 7
    assert _judge(rule, 100, _baseline([3.0] * 7))[0] is Transition.FIRING


def test_deviation_skips_days_without_data_and_looks_back_only_its_days(book: RuleBook) -> None:
    rule = _rule(book, "deviation", "TRF.DEATHS", "01")
    gappy = BucketHistory({}, {TODAY - timedelta(days=d): 3.0 for d in range(1, 31, 5)})  # 6 days with data
    assert _judge(rule, 100, gappy) == (None, None)
    old = BucketHistory({}, {TODAY - timedelta(days=d): 3.0 for d in range(31, 60)})  # all before the 30 days
    assert _judge(rule, 100, old) == (None, None)


@pytest.mark.parametrize(("value", "fires"), [(4, False), (5, False), (5.5, True), (6, True)])
def test_deviation_flat_baseline_uses_the_sigma_floor(book: RuleBook, value: float, fires: bool) -> None:
    rule = _rule(book, "deviation", "TRF.DEATHS", "01")
    transition, threshold = _judge(rule, value, _baseline([3.0] * 30))  # σ = 0, floor 1: threshold 5
    assert threshold == 5.0
    assert transition is (Transition.FIRING if fires else None)


def test_deviation_resolves_on_a_normal_day(book: RuleBook) -> None:
    rule = _rule(book, "deviation", "TRF.DEATHS", "01")
    state = RuleState()
    history = _baseline([3.0] * 30)
    assert _judge(rule, 9, history, state)[0] is Transition.FIRING
    assert _judge(rule, 9, history, state)[0] is None  # the same figure again (a re-sent record)
    nxt = on_observation(rule, state, value=3, event_time_ms=TODAY_MS + DAY, history=history, now_ms=TODAY_MS)
    assert nxt.transition is Transition.RESOLVED


def test_deviation_below(book: RuleBook) -> None:
    base = _rule(book, "deviation", "TRF.DEATHS", "01")
    rule = replace(base, params=DeviationParams(days=30, k=2, direction="below"))
    assert _judge(rule, 1.9, _baseline([4.0] * 30)) == (Transition.FIRING, 2.0)
    assert _judge(rule, 2.0, _baseline([4.0] * 30)) == (None, 2.0)


# --- the bucket history -------------------------------------------------------------------------


def test_bucket_history_is_hour_granular() -> None:
    buckets = {hour_of(T0): Hour.of(5.0).add(1.0), hour_of(T0 + HOUR): Hour.of(3.0)}
    history = BucketHistory(buckets)
    assert history.min_since(T0 + 30 * 60_000) == 1.0  # the whole hour holding since_ms counts
    assert history.min_since(T0 + HOUR) == 3.0
    assert history.max_since(T0) == 5.0
    assert history.min_since(T0 + 2 * HOUR) is None
