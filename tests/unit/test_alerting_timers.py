"""stream_app.domain.alerting absence and late_report rules: fire on ticks with no input, once; resolve on
data. Decree 09 deadlines are local (UTC+7) dates."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stream_app.domain.alerting import (
    BucketHistory,
    Rule,
    RuleBook,
    RuleState,
    Verdict,
    load_rules,
    on_observation,
    on_tick,
)
from stream_app.domain.alerting.transitions import Transition
from stream_app.domain.catalogue import Catalogue
from stream_app.settings import Settings

RULES = Settings.model_construct().catalogue_dir / "rules.toml"
HOUR = 3_600_000
NO_HISTORY = BucketHistory({})


def utc(text: str) -> int:
    """Epoch milliseconds of a UTC time written "2024-12-25T16:59:59"."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


@pytest.fixture(scope="module")
def book(catalogue: Catalogue) -> RuleBook:
    return load_rules(RULES, catalogue)


def _rule(book: RuleBook, kind: str, indicator: str, region: str, station: str | None = None) -> Rule:
    return next(rule for rule in book.timer_rules_for(indicator, region, station) if rule.kind == kind)


def _tick(
    rule: Rule,
    state: RuleState,
    catalogue: Catalogue,
    now_ms: int,
    *,
    last_seen_ms: int | None = None,
    latest_period: str | None = None,
) -> Verdict:
    return on_tick(
        rule,
        state,
        last_seen_ms=last_seen_ms,
        latest_period=latest_period,
        now_ms=now_ms,
        indicator=catalogue.indicators[rule.indicator],
    )


def _data(rule: Rule, state: RuleState, event_time_ms: int, now_ms: int | None = None) -> Verdict:
    return on_observation(
        rule,
        state,
        value=1.0,
        event_time_ms=event_time_ms,
        history=NO_HISTORY,
        now_ms=now_ms or event_time_ms,
    )


# --- absence ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entity", "hours"),
    [
        (("ENV.AQI", "01", "HN-AQ-HOANKIEM"), 3),
        (("HYD.WATER_LEVEL", "01", "HN-LONGBIEN"), 3),
        (("PWR.OUTPUT_GWH", "VN", None), 36),
    ],
)
def test_absence_fires_once_past_the_interval_and_resolves_on_data(
    book: RuleBook, catalogue: Catalogue, entity: tuple[str, str, str | None], hours: int
) -> None:
    rule = _rule(book, "absence", *entity)
    state = RuleState()
    seen = utc("2024-12-01T00:00:00")
    at_interval = _tick(rule, state, catalogue, seen + hours * HOUR, last_seen_ms=seen)
    assert at_interval.transition is None
    fired = _tick(rule, state, catalogue, seen + hours * HOUR + 1, last_seen_ms=seen)
    assert fired.transition is Transition.FIRING
    assert (fired.threshold, rule.levels[fired.level].code) == (hours, "NO_DATA")
    again = _tick(rule, state, catalogue, seen + 10 * hours * HOUR, last_seen_ms=seen)
    assert again.transition is None  # no second FIRING on a later tick
    back = seen + 11 * hours * HOUR
    assert _data(rule, state, back).transition is Transition.RESOLVED
    assert _tick(rule, state, catalogue, back + HOUR, last_seen_ms=seen).transition is None  # it saw the data
    assert (
        _tick(rule, state, catalogue, back + hours * HOUR + 1, last_seen_ms=back).transition
        is Transition.FIRING
    )


def test_absence_is_not_resolved_by_data_that_is_no_sign_of_life(
    book: RuleBook, catalogue: Catalogue
) -> None:
    """History, or a figure older than the feed's newest, is data but says nothing of the feed now."""
    rule = _rule(book, "absence", "PWR.OUTPUT_GWH", "VN")
    state = RuleState()
    seen = utc("2024-07-15T00:00:00")
    assert _tick(rule, state, catalogue, seen + 37 * HOUR, last_seen_ms=seen).transition is Transition.FIRING
    old = on_observation(
        rule, state, value=1.0, event_time_ms=utc("2024-06-01T05:00:00"), history=NO_HISTORY,
        now_ms=seen + 38 * HOUR, alive=False,
    )  # fmt: skip
    assert (old.transition, state.level, state.latest_ms) == (None, 1, None)
    assert _tick(rule, state, catalogue, seen + 39 * HOUR, last_seen_ms=seen).transition is None
    assert _data(rule, state, seen + 40 * HOUR).transition is Transition.RESOLVED


def test_absence_resolves_on_a_tick_that_sees_new_data(book: RuleBook, catalogue: Catalogue) -> None:
    rule = _rule(book, "absence", "ENV.AQI", "01", "HN-AQ-HOANKIEM")
    state = RuleState()
    seen = utc("2024-12-01T00:00:00")
    assert _tick(rule, state, catalogue, seen + 4 * HOUR, last_seen_ms=seen).transition is Transition.FIRING
    later = seen + 5 * HOUR
    assert _tick(rule, state, catalogue, later + 1, last_seen_ms=later).transition is Transition.RESOLVED


def test_absence_of_an_entity_never_heard_from_counts_from_the_first_tick(
    book: RuleBook, catalogue: Catalogue
) -> None:
    rule = _rule(book, "absence", "HYD.WATER_LEVEL", "01", "HN-SONTAY")
    state = RuleState()
    first = utc("2024-12-01T00:00:00")
    assert _tick(rule, state, catalogue, first).transition is None
    assert _tick(rule, state, catalogue, first + 3 * HOUR).transition is None
    assert _tick(rule, state, catalogue, first + 3 * HOUR + 1).transition is Transition.FIRING
    assert _tick(rule, state, catalogue, first + 9 * HOUR).transition is None


# --- late reports (Decree 09/2019/NĐ-CP) ------------------------------------------------------------

LAST_SECOND = utc("2024-12-25T16:59:59")  # 23:59:59 on 25/12 in Vietnam: still the deadline day
DEADLINE_OVER = utc("2024-12-25T17:00:00")  # 00:00 on 26/12 in Vietnam


@pytest.mark.parametrize(
    ("entity", "periods"),
    [
        # decree09 monthly: December 2024 = 15/11 .. 14/12, due 25/12
        (("SSI.HEALTH", "40", None), ("2024-11", "2024-12", "2024-12-10T00:00:00")),
        (("TRN.EXPRESSWAY_KM", "VN", None), ("2024-11", "2024-12", "2024-11-14T17:00:00")),  # 15/11 local
        # calendar_month monthly: November 2024 = 1/11 .. 30/11, due 25/12
        (("FIN.CPI", "01", None), ("2024-10", "2024-11", "2024-11-20T00:00:00")),
        (
            ("TRN.AIR_PASSENGERS", "01", "AP-NOIBAI"),
            ("2024-10", "2024-11", "2024-11-30T16:59:59"),
        ),  # 30/11 local
        # decree09 quarterly: Q4 2024 = 15/09 .. 14/12, due 25/12
        (("JUS.LEGAL_AID", "01", None), ("2024-Q3", "2024-Q4", "2024-12-01T00:00:00")),
        # decree09 annual: 2024 = 15/12/2023 .. 14/12/2024, due 25/12/2024
        (("HLT.DOCTORS_PER_10K", "01", None), ("2023", "2024", "2024-06-01T00:00:00")),
    ],
)
def test_late_report_fires_after_the_local_deadline_day_and_resolves_on_the_period(
    book: RuleBook, catalogue: Catalogue, entity: tuple[str, str, str | None], periods: tuple[str, str, str]
) -> None:
    indicator = entity[0]
    received, due, in_due_period = periods
    rule = _rule(book, "late_report", *entity)
    state = RuleState()
    on_time = _tick(rule, state, catalogue, LAST_SECOND, latest_period=received)
    assert (on_time.transition, on_time.level) == (None, 0)
    late = _tick(rule, state, catalogue, DEADLINE_OVER, latest_period=received)
    assert (late.transition, rule.levels[late.level].code) == (Transition.FIRING, "LATE")
    assert due in late.detail
    assert (late.value, late.threshold) == (0.0, 0.0)  # the deadline day ended this very moment
    assert state.overdue_period == due
    assert _tick(rule, state, catalogue, DEADLINE_OVER + HOUR, latest_period=received).transition is None
    # An older period arriving does not resolve it; the overdue one does.
    older = catalogue.indicators[indicator].period_of(utc(in_due_period)).start_ms - 1
    assert _data(rule, state, older, DEADLINE_OVER + 2 * HOUR).transition is None
    resolved = _data(rule, state, utc(in_due_period), DEADLINE_OVER + 3 * HOUR)
    assert resolved.transition is Transition.RESOLVED
    assert _tick(rule, state, catalogue, DEADLINE_OVER + 4 * HOUR, latest_period=received).transition is None


def test_late_report_with_the_period_received_in_time_never_fires(
    book: RuleBook, catalogue: Catalogue
) -> None:
    rule = _rule(book, "late_report", "SSI.HEALTH", "40")
    state = RuleState()
    for now in (LAST_SECOND, DEADLINE_OVER, utc("2025-01-10T00:00:00")):
        assert _tick(rule, state, catalogue, now, latest_period="2024-12").transition is None
    assert _tick(rule, state, catalogue, utc("2025-01-25T17:00:00"), latest_period="2024-12").transition is (
        Transition.FIRING
    )


def test_late_report_of_an_entity_that_never_reported(book: RuleBook, catalogue: Catalogue) -> None:
    rule = _rule(book, "late_report", "SSI.HEALTH", "40")
    state = RuleState()
    verdict = _tick(rule, state, catalogue, LAST_SECOND)
    assert verdict.transition is Transition.FIRING  # November 2024 was due on 25/11
    assert state.overdue_period == "2024-11"
    # Still late when December falls due too: one alert, now about December.
    assert _tick(rule, state, catalogue, DEADLINE_OVER).transition is None
    assert state.overdue_period == "2024-12"


def test_late_report_remembers_the_periods_it_saw(book: RuleBook, catalogue: Catalogue) -> None:
    rule = _rule(book, "late_report", "SSI.HEALTH", "40")
    state = RuleState()
    _data(rule, state, utc("2024-12-01T00:00:00"))
    assert state.latest_period == "2024-12"
    _data(rule, state, utc("2024-10-01T00:00:00"))  # an older period: the latest stays
    assert state.latest_period == "2024-12"
    # The caller's latest_period lags (None): the rule's own memory is enough.
    assert _tick(rule, state, catalogue, DEADLINE_OVER).transition is None


def test_ticks_do_nothing_to_value_rules(book: RuleBook, catalogue: Catalogue) -> None:
    rule = next(r for r in book.rules_for("HYD.WATER_LEVEL", "01", "HN-LONGBIEN") if r.kind == "levels")
    state = RuleState(level=3)
    verdict = _tick(rule, state, catalogue, DEADLINE_OVER)
    assert (verdict.transition, verdict.level, state.level) == (None, 3, 3)


def test_a_tick_with_another_indicator_is_a_wiring_mistake(book: RuleBook, catalogue: Catalogue) -> None:
    rule = _rule(book, "late_report", "SSI.HEALTH", "40")
    with pytest.raises(ValueError, match=r"SSI\.HEALTH"):
        on_tick(
            rule,
            RuleState(),
            last_seen_ms=None,
            latest_period=None,
            now_ms=DEADLINE_OVER,
            indicator=catalogue.indicators["FIN.CPI"],
        )
