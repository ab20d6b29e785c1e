"""stream_app.domain.aggregates' exact aggregates and reporting periods, and how the entity step counts a
value in them: Decree 09 cut-offs (14th/15th, local time), year ends of both calendars, quarters and
halves, the 2025-07-01 province merger, late values, closing on a timer, same period last year and
the retention."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from stream_app.domain.aggregates import (
    Agg,
    close_time_ms,
    combine,
    period_by_label,
    period_frequencies,
    periods_of,
    same_period_last_year,
    yoy_change_pct,
)
from stream_app.domain.catalogue import Catalogue
from stream_app.domain.entity import Context, EntityKey, Outcome, StepResult, apply, retention_start_ms
from stream_app.domain.model import Observation
from stream_app.domain.rollup import targets
from stream_app.domain.validation import Limits, validate
from stream_app.state.entity_hash import changed_fields, decode_state, removed_fields
from stream_app.wire.codecs import decode, encode
from stream_app.wire.schemas import SchemaRegistry
from tests.unit.core_support import SOURCE, Core, local_ms, no_rules, observation, period, utc_ms

MakeRecord = Callable[..., dict[str, Any]]
ACCIDENTS = EntityKey("TRF.ACCIDENTS", "01", None)  # daily, Decree 09 calendar, sum
HEALTH = EntityKey("SSI.HEALTH", "01", None)  # monthly, Decree 09 calendar, sum
REVENUE = EntityKey("FIN.BUDGET_REVENUE", "01", None)  # daily, calendar months, sum


# --- Agg: exact aggregates with retraction -----------------------------------------------------


def test_add_accumulates_count_exact_sum_min_max_last_and_qualities() -> None:
    agg = Agg.of(5.0, 10, "a", "FINAL").add(-2.5, 20, "b", "TEST").add(10.0, 5, "c", "PROVISIONAL")
    assert agg == Agg(
        count=3,
        total=Decimal("12.5"),
        low=-2.5,
        high=10.0,
        last_time=20,
        last_id="b",
        last_value=-2.5,
        n_final=1,
        n_provisional=1,
        n_test=1,
    )
    assert (agg.sum, agg.mean) == (12.5, 12.5 / 3)


def test_sums_are_exact_and_a_retraction_gives_back_the_sum_bit_for_bit() -> None:
    agg = Agg.of(0.1, 1, "a", "FINAL").add(0.2, 2, "b", "FINAL")
    assert agg.total == Decimal("0.3")
    assert agg.sum == 0.3, "not 0.30000000000000004"
    assert (0.1 + 0.2) - 0.2 != 0.1, "what float arithmetic would give back"
    back = agg.remove(0.2, "FINAL", rest=[(0.1, 1, "a")])
    assert back is not None
    assert (back.total, back.sum) == (Decimal("0.1"), 0.1)
    assert back == Agg.of(0.1, 1, "a", "FINAL")
    assert agg.mean == 0.15


def test_sum_does_not_depend_on_arrival_order() -> None:
    values = [0.1, 0.7, 1e-9, 123456.789, -0.3]
    sums = set()
    for order in itertools.permutations(range(len(values))):
        agg: Agg | None = None
        for i in order:
            agg = (
                Agg.of(values[i], i, str(i), "FINAL")
                if agg is None
                else agg.add(values[i], i, str(i), "FINAL")
            )
        assert agg is not None
        sums.add(agg.total)
    assert sums == {Decimal("123457.289000001")}


def test_removing_the_only_value_empties_the_aggregate() -> None:
    assert Agg.of(3.0, 1, "a", "FINAL").remove(3.0, "FINAL", rest=[]) is None
    assert Agg.of(3.0, 1, "a", "FINAL").remove(3.0, "FINAL", rest=None) is None


@pytest.mark.parametrize(
    ("value", "event_time", "observation_id", "rescan"),
    [
        (1.0, 10, "low", True),  # the minimum
        (9.0, 20, "high", True),  # the maximum
        (5.0, 40, "last", True),  # the last by event time
        (4.0, 30, "middle", False),  # none of them: min, max and last stay
    ],
)
def test_needs_rescan_only_for_the_extremes_and_the_last(
    value: float, event_time: int, observation_id: str, rescan: bool
) -> None:
    values = [(1.0, 10, "low"), (9.0, 20, "high"), (4.0, 30, "middle"), (5.0, 40, "last")]
    agg = combine(Agg.of(v, t, o, "FINAL") for v, t, o in values)
    assert agg is not None
    assert agg.needs_rescan(value, event_time, observation_id) is rescan
    rest = [r for r in values if r[2] != observation_id]
    expected = combine(Agg.of(v, t, o, "FINAL") for v, t, o in rest)
    assert agg.remove(value, "FINAL", rest=rest if rescan else None) == expected


def test_remove_with_rest_recomputes_min_max_and_last() -> None:
    agg = Agg.of(1.0, 10, "a", "FINAL").add(9.0, 30, "b", "FINAL").add(5.0, 20, "c", "FINAL")
    assert (agg.low, agg.high, agg.last_value) == (1.0, 9.0, 9.0)
    without_b = agg.remove(9.0, "FINAL", rest=[(1.0, 10, "a"), (5.0, 20, "c")])
    assert without_b is not None
    assert (without_b.count, without_b.total, without_b.low, without_b.high) == (2, Decimal("6.0"), 1.0, 5.0)
    assert (without_b.last_time, without_b.last_id, without_b.last_value) == (20, "c", 5.0)
    without_a = without_b.remove(1.0, "FINAL", rest=[(5.0, 20, "c")])
    assert without_a == Agg.of(5.0, 20, "c", "FINAL")


def test_last_is_by_event_time_then_id_whatever_the_arrival_order() -> None:
    # two values at the same event time: the greater id is the last, a total order
    values = [(3.0, 100, "obs-b"), (7.0, 100, "obs-a"), (1.0, 50, "obs-z"), (2.0, 99, "obs-y")]
    results = set()
    for order in itertools.permutations(values):
        agg = combine(Agg.of(v, t, o, "FINAL") for v, t, o in order)
        assert agg is not None
        results.add((agg.last_time, agg.last_id, agg.last_value, agg.count, agg.total, agg.low, agg.high))
    assert results == {(100, "obs-b", 3.0, 4, Decimal("13.0"), 1.0, 7.0)}


def test_merge_is_the_aggregate_of_both_sets() -> None:
    left = Agg.of(1.0, 10, "a", "FINAL", 500).add(4.0, 40, "d", "TEST", 400)
    right = Agg.of(-2.0, 30, "c", "PROVISIONAL", 0).add(8.0, 20, "b", "FINAL", 450)
    every = Agg.of(1.0, 10, "a", "FINAL", 500)
    for value, t, o, q, arrival in [(4.0, 40, "d", "TEST", 400), (-2.0, 30, "c", "PROVISIONAL", 0)]:
        every = every.add(value, t, o, q, arrival)
    every = every.add(8.0, 20, "b", "FINAL", 450)
    assert left.merge(right) == right.merge(left) == every
    assert every == Agg(4, Decimal("11.0"), -2.0, 8.0, 40, "d", 4.0, 2, 1, 1, first_arrival=400)
    assert combine([]) is None
    assert combine([left, right]) == every


@pytest.mark.parametrize(
    "agg",
    [
        Agg.of(0.1, 1_730_419_200_000, "obs,with,commas", "FINAL", 1_730_419_260_000).add(
            0.2, 1_730_419_200_001, "obs,2", "TEST", 1_730_419_200_000
        ),
        Agg.of(-0.0, 0, "", "PROVISIONAL"),
        Agg.of(1e-300, 5, "tiny", "FINAL").add(123456789.123456789, 6, "big", "FINAL"),
        Agg.of(1 / 3, 7, "third", "TEST").add(2 / 3, 7, "two-thirds", "TEST"),
    ],
    ids=["ids-with-commas", "negative-zero", "tiny-and-big", "thirds"],
)
def test_encode_decode_round_trip_is_exact(agg: Agg) -> None:
    decoded = Agg.decode(agg.encode())
    assert decoded == agg
    assert str(decoded.total) == str(agg.total)
    for got, want in [(decoded.low, agg.low), (decoded.high, agg.high), (decoded.last_value, agg.last_value)]:
        assert got.hex() == want.hex()  # bit-exact, the sign of zero too


def test_a_copy_is_equal_and_its_own() -> None:
    agg = Agg.of(0.1, 5, "a,b", "FINAL", 9).add(0.2, 6, "c", "TEST")
    copied = agg.copy()
    assert copied == agg
    assert copied is not agg
    copied.absorb(5.0, 7, "d", "FINAL", arrival=10, number=Decimal("5.0"))  # as combine does to its copy
    assert agg.encode() == "2,0.3,0.1,0.2,6,0.2,1,0,1,9,c"


def test_encoding_is_plain_text() -> None:
    agg = Agg.of(0.1, 5, "a,b", "FINAL", 9).add(0.2, 6, "c", "TEST")
    assert agg.encode() == "2,0.3,0.1,0.2,6,0.2,1,0,1,9,c"
    assert Agg.of(2.5, 7, "x,y", "TEST").encode() == "1,2.5,2.5,2.5,7,2.5,0,0,1,0,x,y"


def test_quality_is_final_or_test_only_when_every_value_is() -> None:
    final = Agg.of(1.0, 1, "a", "FINAL").add(2.0, 2, "b", "FINAL")
    test = Agg.of(1.0, 1, "a", "TEST").add(2.0, 2, "b", "TEST")
    mixed = final.add(3.0, 3, "c", "TEST")
    assert (final.quality, test.quality, mixed.quality) == ("FINAL", "TEST", "PROVISIONAL")
    assert Agg.of(1.0, 1, "a", "PROVISIONAL").quality == "PROVISIONAL"
    cleaned = mixed.remove(3.0, "TEST", rest=[(1.0, 1, "a"), (2.0, 2, "b")])
    assert cleaned is not None
    assert (cleaned.n_final, cleaned.n_test, cleaned.quality) == (2, 0, "FINAL")


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [("sum", 10.5), ("max", 7.0), ("last", 1.5), ("mean", 3.5), ("weighted_mean", 3.5)],
)
def test_value_by_the_indicators_semantics(aggregation: str, expected: float) -> None:
    agg = Agg.of(2.0, 1, "a", "FINAL").add(7.0, 2, "b", "FINAL").add(1.5, 3, "c", "FINAL")
    assert agg.value_by(aggregation) == expected


# --- periods -----------------------------------------------------------------------------------


def test_period_frequencies_are_the_own_one_and_every_longer_one() -> None:
    ladder = ("daily", "monthly", "quarterly", "half_yearly", "annual")
    assert period_frequencies("hourly") == ladder
    assert period_frequencies("event") == ladder
    assert period_frequencies("daily") == ladder
    assert period_frequencies("monthly") == ladder[1:]
    assert period_frequencies("quarterly") == ladder[2:]
    assert period_frequencies("annual") == ("annual",)


@pytest.mark.parametrize(
    ("label", "last_year"),
    [
        ("2024-12", "2023-12"),
        ("2024-Q4", "2023-Q4"),
        ("2024-H1", "2023-H1"),
        ("2024", "2023"),
        ("2024-11-15", "2023-11-15"),
        ("2024-02-29", "2023-02-28"),
        ("2025-01-01", "2024-01-01"),
    ],
)
def test_same_period_last_year(label: str, last_year: str) -> None:
    assert same_period_last_year(label) == last_year


@pytest.mark.parametrize(
    ("label", "calendar", "closes"),
    [
        # Decree 09: the deadline is the 25th of the month holding the cut-off
        ("2024-12", "decree09", local_ms(2024, 12, 26)),
        ("2024-Q4", "decree09", local_ms(2024, 12, 26)),
        ("2025", "decree09", local_ms(2025, 12, 26)),
        # calendar months: the 25th of the month after the period
        ("2024-12", "calendar_month", local_ms(2025, 1, 26)),
        ("2024-H1", "calendar_month", local_ms(2024, 7, 26)),
        # a day is due the next local day; it closes when that day ends
        ("2024-11-14", "decree09", local_ms(2024, 11, 16)),
    ],
)
def test_a_period_closes_when_its_deadline_day_ends_locally(label: str, calendar: str, closes: int) -> None:
    assert close_time_ms(period_by_label(label, calendar, 25)) == closes


@pytest.mark.parametrize(
    ("value", "last_year", "change"),
    [(110.0, 100.0, 10.0), (0.0, 50.0, -100.0), (90.0, -100.0, 190.0), (5.0, None, None), (5.0, 0.0, None)],
)
def test_yoy_change_pct(value: float, last_year: float | None, change: float | None) -> None:
    assert yoy_change_pct(value, last_year) == change


# --- period boundaries, through the entity step ------------------------------------------------

_BOUNDARIES = [
    # (indicator, local time of the event, the periods it counts in)
    # Decree 09 month: the 15th of the previous month to the 14th, in Vietnam's local time
    ("TRF.ACCIDENTS", (2024, 11, 14, 23, 59), ("2024-11-14", "2024-11", "2024-Q4", "2024-H2", "2024")),
    ("TRF.ACCIDENTS", (2024, 11, 15, 0, 0), ("2024-11-15", "2024-12", "2024-Q4", "2024-H2", "2024")),
    # Decree 09 year: 15/12 of the previous year to 14/12
    ("TRF.ACCIDENTS", (2024, 12, 14, 23, 59), ("2024-12-14", "2024-12", "2024-Q4", "2024-H2", "2024")),
    ("TRF.ACCIDENTS", (2024, 12, 15, 0, 0), ("2024-12-15", "2025-01", "2025-Q1", "2025-H1", "2025")),
    # quarters and halves
    ("TRF.ACCIDENTS", (2025, 3, 14, 23, 59), ("2025-03-14", "2025-03", "2025-Q1", "2025-H1", "2025")),
    ("TRF.ACCIDENTS", (2025, 3, 15, 0, 0), ("2025-03-15", "2025-04", "2025-Q2", "2025-H1", "2025")),
    ("TRF.ACCIDENTS", (2025, 6, 14, 23, 59), ("2025-06-14", "2025-06", "2025-Q2", "2025-H1", "2025")),
    ("TRF.ACCIDENTS", (2025, 6, 15, 0, 0), ("2025-06-15", "2025-07", "2025-Q3", "2025-H2", "2025")),
    # a monthly indicator has no daily period
    ("SSI.HEALTH", (2024, 11, 14, 23, 59), ("2024-11", "2024-Q4", "2024-H2", "2024")),
    ("SSI.HEALTH", (2024, 11, 15, 0, 0), ("2024-12", "2024-Q4", "2024-H2", "2024")),
    # calendar months: the 15th is no boundary, the year is January to December
    ("FIN.BUDGET_REVENUE", (2024, 11, 14, 23, 59), ("2024-11-14", "2024-11", "2024-Q4", "2024-H2", "2024")),
    ("FIN.BUDGET_REVENUE", (2024, 11, 15, 0, 0), ("2024-11-15", "2024-11", "2024-Q4", "2024-H2", "2024")),
    ("FIN.BUDGET_REVENUE", (2024, 12, 15, 0, 0), ("2024-12-15", "2024-12", "2024-Q4", "2024-H2", "2024")),
    ("FIN.BUDGET_REVENUE", (2024, 12, 31, 23, 59), ("2024-12-31", "2024-12", "2024-Q4", "2024-H2", "2024")),
    ("FIN.BUDGET_REVENUE", (2025, 1, 1, 0, 0), ("2025-01-01", "2025-01", "2025-Q1", "2025-H1", "2025")),
    ("FIN.BUDGET_REVENUE", (2025, 6, 30, 23, 59), ("2025-06-30", "2025-06", "2025-Q2", "2025-H1", "2025")),
    ("FIN.BUDGET_REVENUE", (2025, 7, 1, 0, 0), ("2025-07-01", "2025-07", "2025-Q3", "2025-H2", "2025")),
]


@pytest.mark.parametrize(
    ("indicator", "local", "labels"), _BOUNDARIES, ids=[f"{i}@{t}" for i, t, _ in _BOUNDARIES]
)
def test_an_observation_counts_in_the_periods_of_its_local_date(
    catalogue: Catalogue, indicator: str, local: tuple[int, ...], labels: tuple[str, ...]
) -> None:
    at = local_ms(*local)
    core = Core(catalogue, EntityKey(indicator, "01", None), now=at + 60_000)
    result = core.apply(observation("o", 4.0, at, indicator=indicator))
    assert result == StepResult(Outcome.APPLIED)
    assert {label for _, label in core.state.periods} == set(labels)
    assert all(agg == Agg.of(4.0, at, "o", "FINAL", core.now) for agg in core.state.periods.values())
    ind = catalogue.indicators[indicator]
    assert [p.label for p in periods_of(ind.frequency, ind.calendar, ind.deadline_day, at)] == list(labels)


def test_the_14th_at_17h_utc_is_the_15th_in_vietnam(catalogue: Catalogue) -> None:
    """The Decree 09 month switches at local midnight: 17:00 UTC on the 14th."""
    assert utc_ms(2024, 11, 14, 17) == local_ms(2024, 11, 15)
    core = Core(catalogue, ACCIDENTS, now=utc_ms(2024, 11, 14, 18))
    core.apply(observation("before", 2.0, utc_ms(2024, 11, 14, 16, 59)))
    core.apply(observation("after", 3.0, utc_ms(2024, 11, 14, 17)))
    assert period(core.state, "2024-11") == Agg.of(
        2.0, utc_ms(2024, 11, 14, 16, 59), "before", "FINAL", core.now
    )
    assert period(core.state, "2024-12") == Agg.of(3.0, utc_ms(2024, 11, 14, 17), "after", "FINAL", core.now)
    both = period(core.state, "2024-Q4")
    assert (both.count, both.total, both.last_id) == (2, Decimal("5.0"), "after")
    assert {d for _, d in core.state.days} == {
        period_by_label("2024-11-14", "decree09", 25).start.toordinal(),
        period_by_label("2024-11-15", "decree09", 25).start.toordinal(),
    }


def test_year_end_splits_the_two_calendars_differently(catalogue: Catalogue) -> None:
    """20/12/2024 is in Decree 09's year 2025 but in calendar year 2024."""
    at = local_ms(2024, 12, 20, 9)
    decree = Core(catalogue, ACCIDENTS, now=at)
    decree.apply(observation("a", 1.0, at))
    calendar = Core(catalogue, REVENUE, now=at)
    calendar.apply(observation("a", 1.0, at, indicator="FIN.BUDGET_REVENUE"))
    assert ("", "2025") in decree.state.periods
    assert ("", "2024") not in decree.state.periods
    assert ("", "2024") in calendar.state.periods
    assert ("", "2025") not in calendar.state.periods


# --- the 2025-07-01 province merger ------------------------------------------------------------


def test_legacy_province_code_lands_in_todays_unit(
    catalogue: Catalogue, make_record: MakeRecord, registry: SchemaRegistry
) -> None:
    """Hải Dương (30) merged into Hải Phòng (31) on 2025-07-01: history under the old code and new
    values under the new one count in the same entity and periods."""
    before, after = local_ms(2025, 6, 10, 8), local_ms(2025, 7, 5, 8)
    now = local_ms(2025, 7, 5, 9)

    def validated(observation_id: str, region: str, value: float, at: int) -> Observation:
        record = make_record(
            observation_id=observation_id,
            indicator="DIS.LANDSLIDE_SITES",
            region=region,
            station=None,
            unit="sites",
            value=value,
            event_time=at,
            report_time=at,
        )
        obs = validate(record, "MAE", catalogue, now_ms=now, limits=Limits(max_future_skew_ms=0))
        assert isinstance(obs, Observation)
        return obs

    legacy, current = validated("hd-1", "30", 3.0, before), validated("hp-1", "31", 4.0, after)
    assert legacy.region == current.region == "31"
    assert legacy.entity == current.entity == "DIS.LANDSLIDE_SITES|31|-"
    entity = EntityKey("DIS.LANDSLIDE_SITES", "31", None)
    core = Core(catalogue, entity, now=now)
    assert not core.apply(legacy).skipped
    assert not core.apply(current).skipped
    assert period(core.state, "2025-06") == Agg.of(3.0, before, "hd-1", "FINAL", now)
    assert period(core.state, "2025-07") == Agg.of(4.0, after, "hp-1", "FINAL", now)
    year = period(core.state, "2025")
    assert (year.count, year.total, year.last_id) == (2, Decimal("7.0"), "hp-1")
    records = core.records()
    # the June periods had closed when the history arrived: they are republished as late updates
    kinds = {key.rsplit(":", 1)[1]: r["kind"] for key, r in records.items() if r is not None}
    assert kinds == {
        "2025-06-10": "LATE_UPDATE",
        "2025-06": "LATE_UPDATE",
        "2025-Q2": "LATE_UPDATE",
        "2025-H1": "LATE_UPDATE",
        "2025-07-05": "UPDATE",
    }
    for record in records.values():
        assert record is not None
        assert record["region"] == "31"
        encode(registry.latest("consolidated"), record)
    july = records["DIS.LANDSLIDE_SITES:31:-:2025-07-05"]
    assert july is not None
    to_date = {p["period"]: p["value"] for p in july["to_date"]}
    assert to_date == {"2025-07": 4.0, "2025-Q3": 4.0, "2025-H2": 4.0, "2025": 7.0}
    assert targets(catalogue.indicators["DIS.LANDSLIDE_SITES"], "31", None) == ["VN"]


# --- late values, closing on a timer, same period last year ------------------------------------


def test_value_after_its_period_closed_is_late_and_still_counted(catalogue: Catalogue) -> None:
    # SSI.HEALTH 2024-11 (Decree 09: 15/10 .. 14/11) is due 25/11 and closes when that day ends
    closes = local_ms(2024, 11, 26)
    at = local_ms(2024, 11, 1, 9)
    on_time = Core(catalogue, HEALTH, now=closes - 1)
    assert on_time.apply(observation("a", 5.0, at, indicator="SSI.HEALTH")) == StepResult(Outcome.APPLIED)
    assert on_time.touched.late == set()
    late = Core(catalogue, HEALTH, now=closes)
    assert late.apply(observation("a", 5.0, at, indicator="SSI.HEALTH")) == StepResult(
        Outcome.APPLIED, late=True
    )
    assert late.touched.late == {("", "2024-11")}
    assert period(late.state, "2024-11").count == 1
    # only its own frequency's period makes it late: the quarter (due 25/12) is still open
    assert ("", "2024-11") not in late.state.open_periods
    assert late.state.open_periods[("", "2024-Q4")] == local_ms(2024, 12, 26)
    record = late.records()["SSI.HEALTH:01:-:2024-11"]
    assert record is not None
    assert (record["kind"], record["status"], record["value"]) == ("LATE_UPDATE", "CLOSED", 5.0)


def test_periods_close_on_a_tick_at_their_deadline(catalogue: Catalogue, registry: SchemaRegistry) -> None:
    core = Core(catalogue, HEALTH, now=local_ms(2024, 11, 2))
    core.apply(observation("a", 5.0, local_ms(2024, 11, 1, 9), indicator="SSI.HEALTH"))
    core.apply(observation("b", 7.0, local_ms(2024, 11, 14, 23, 59), indicator="SSI.HEALTH"))
    q4_closes = local_ms(2024, 12, 26)
    assert core.state.open_periods == {
        ("", "2024-11"): local_ms(2024, 11, 26),
        ("", "2024-Q4"): q4_closes,
        ("", "2024-H2"): q4_closes,
        ("", "2024"): q4_closes,
    }
    assert {f"po:|{label}" for label in ("2024-11", "2024-Q4", "2024-H2", "2024")} <= set(
        changed_fields(core.state)
    )

    core.batch()
    assert core.tick(local_ms(2024, 11, 26) - 1) == StepResult(Outcome.APPLIED)
    assert core.touched.closed == set()
    assert core.tick(local_ms(2024, 11, 26)) == StepResult(Outcome.APPLIED)
    assert core.touched.closed == {("", "2024-11")}
    assert ("", "2024-11") not in core.state.open_periods
    assert "po:|2024-11" in removed_fields(core.state)
    record = core.records(local_ms(2024, 11, 26))["SSI.HEALTH:01:-:2024-11"]
    assert record is not None
    assert (record["kind"], record["status"], record["count"], record["value"]) == (
        "PERIOD_CLOSE",
        "CLOSED",
        2,
        12.0,
    )
    assert (
        decode(registry, "consolidated", encode(registry.latest("consolidated"), record))["kind"]
        == "PERIOD_CLOSE"
    )

    core.batch()
    core.tick(q4_closes)
    assert core.touched.closed == {("", "2024-Q4"), ("", "2024-H2"), ("", "2024")}
    assert core.state.open_periods == {}
    kinds = {key: r["kind"] for key, r in core.records(q4_closes).items() if r is not None}
    assert kinds == {f"SSI.HEALTH:01:-:{label}": "PERIOD_CLOSE" for label in ("2024-Q4", "2024-H2", "2024")}


def test_a_value_after_the_deadline_closes_the_open_period_in_the_same_step(catalogue: Catalogue) -> None:
    core = Core(catalogue, HEALTH, now=local_ms(2024, 11, 2))
    core.apply(observation("a", 5.0, local_ms(2024, 11, 1), indicator="SSI.HEALTH"))
    core.batch()
    result = core.apply(
        observation("b", 1.0, local_ms(2024, 11, 2), indicator="SSI.HEALTH"), now=local_ms(2024, 11, 27)
    )
    assert result.late
    assert core.touched.closed == {("", "2024-11")}
    record = core.records(local_ms(2024, 11, 27))["SSI.HEALTH:01:-:2024-11"]
    assert record is not None
    assert (record["kind"], record["count"], record["sum"]) == ("PERIOD_CLOSE", 2, 6.0)


def test_a_record_closes_a_period_at_its_deadline_past_periods_held_for_history(catalogue: Catalogue) -> None:
    """Periods held open while history settles close on a tick only; a record looks at them once per
    state, not once per record, and still closes a period that reached its own deadline (one opened
    since it last looked included)."""
    core = Core(catalogue, HEALTH, now=local_ms(2024, 11, 2))
    history = Context(catalogue, no_rules(catalogue), local_ms(2024, 11, 1), hold_ms=5_000, bulk=True)
    march = observation("h", 2.0, local_ms(2023, 3, 10), indicator="SSI.HEALTH")
    assert apply(core.state, march, source=SOURCE, offset=1, ctx=history, touched=core.touched).late
    held = dict(core.state.open_periods)  # every period of 2023 March, held for a tick
    assert held[("", "2023-03")] == local_ms(2024, 11, 1) + 5_000
    core.batch()
    core.offset = 1
    # long past the settle time, before November's own deadline: nothing closes at a record
    core.apply(observation("a", 5.0, local_ms(2024, 11, 1), indicator="SSI.HEALTH"))
    core.apply(
        observation("b", 1.0, local_ms(2024, 11, 2), indicator="SSI.HEALTH"), now=local_ms(2024, 11, 4)
    )
    assert core.touched.closed == set()
    # past November's deadline: a record closes it; the periods held for a tick stay open
    core.apply(
        observation("c", 1.0, local_ms(2024, 11, 2), indicator="SSI.HEALTH"), now=local_ms(2024, 11, 27)
    )
    assert core.touched.closed == {("", "2024-11")}
    assert {key: core.state.open_periods.get(key) for key in held} == held
    core.tick(local_ms(2024, 11, 27))
    assert set(held) <= core.touched.closed


def test_closing_needs_the_period_and_last_years_loaded(catalogue: Catalogue) -> None:
    """A state read from Redis holds its open periods, not their aggregates: the tick asks for them."""
    stored = {
        b"newest_event_time": str(local_ms(2024, 11, 1)).encode(),
        b"latest_event_time": str(local_ms(2024, 11, 1)).encode(),
        b"po:|2024-11": str(local_ms(2024, 11, 26)).encode(),
    }
    core = Core(catalogue, HEALTH, now=0, state=decode_state(stored))
    assert core.tick(local_ms(2024, 11, 26)) == StepResult(Outcome.PENDING)
    assert core.state.missing == {("period", "", "2024-11"), ("period", "", "2023-11")}
    assert core.touched.closed == set()

    state = decode_state(stored)
    state.periods = {("", "2024-11"): Agg.of(5.0, local_ms(2024, 11, 1), "a", "FINAL"), ("", "2023-11"): None}
    again = Core(catalogue, HEALTH, now=0, state=state)
    assert again.tick(local_ms(2024, 11, 26)) == StepResult(Outcome.APPLIED)
    assert again.state.missing == set()
    assert again.touched.closed == {("", "2024-11")}


def test_same_period_last_year_and_the_change_in_the_records(catalogue: Catalogue) -> None:
    core = Core(catalogue, HEALTH, now=local_ms(2024, 11, 2))
    core.apply(observation("last-year", 80.0, local_ms(2023, 11, 1), indicator="SSI.HEALTH"))
    core.apply(observation("last-year-dec", 20.0, local_ms(2023, 11, 20), indicator="SSI.HEALTH"))
    core.batch()
    core.apply(observation("this-year", 110.0, local_ms(2024, 11, 1), indicator="SSI.HEALTH"))
    record = core.records()["SSI.HEALTH:01:-:2024-11"]
    assert record is not None
    assert (record["value"], record["same_period_last_year"]) == (110.0, 80.0)
    assert record["yoy_change_pct"] == pytest.approx(37.5)
    # object: the change is compared with pytest.approx, which is no float
    to_date: dict[str, tuple[float, float | None, object]] = {
        p["period"]: (p["value"], p["same_period_last_year"], p["yoy_change_pct"]) for p in record["to_date"]
    }
    assert to_date == {
        "2024-Q4": (110.0, 100.0, pytest.approx(10.0)),
        "2024-H2": (110.0, 100.0, pytest.approx(10.0)),
        "2024": (110.0, 100.0, pytest.approx(10.0)),
    }


def test_no_base_last_year_gives_no_change(catalogue: Catalogue) -> None:
    core = Core(catalogue, HEALTH, now=local_ms(2024, 11, 2))
    core.apply(observation("a", 110.0, local_ms(2024, 11, 1), indicator="SSI.HEALTH"))
    record = core.records()["SSI.HEALTH:01:-:2024-11"]
    assert record is not None
    assert (record["same_period_last_year"], record["yoy_change_pct"]) == (None, None)


# --- retention ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("indicator", "starts"),
    [
        # newest value 10/01/2025: Decree 09 year 2025 began 15/12/2024, so 2024 began 15/12/2023
        ("TRF.ACCIDENTS", local_ms(2023, 12, 15)),
        ("FIN.BUDGET_REVENUE", local_ms(2024, 1, 1)),
    ],
)
def test_beyond_retention_is_older_than_the_previous_reporting_year(
    catalogue: Catalogue, indicator: str, starts: int
) -> None:
    newest = local_ms(2025, 1, 10)
    assert retention_start_ms(catalogue.indicators[indicator], newest) == starts
    core = Core(catalogue, EntityKey(indicator, "01", None), now=newest)
    core.apply(observation("new", 1.0, newest, indicator=indicator))
    refused = core.apply(observation("old", 2.0, starts - 1, indicator=indicator))
    assert refused == StepResult(Outcome.BEYOND_RETENTION)
    assert "old" not in {key.partition("|")[2] for key in core.state.seen}
    assert core.state.offsets[SOURCE] == 2, "refused, and processed: its offset is recorded"
    kept = core.apply(observation("oldest-kept", 2.0, starts, indicator=indicator))
    assert not kept.skipped
    assert kept.late
    assert core.state.retention_ms == starts
    assert "oldest-kept" in {key.partition("|")[2] for key in core.state.seen}
