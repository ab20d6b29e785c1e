"""stream_app.domain.consolidation: the consolidated records of what a batch changed in one entity (own
period with rolling windows and longer periods to date, late updates, closes, tombstones, breakdown
series) and its contributions to the roll-ups."""

from __future__ import annotations

import pytest

from stream_app.domain.calendar import frequency_of_label
from stream_app.domain.catalogue import Catalogue
from stream_app.domain.consolidation import consolidated_key, contributions
from stream_app.domain.entity import EntityKey
from stream_app.wire.codecs import decode, encode
from stream_app.wire.schemas import SchemaRegistry
from tests.unit.core_support import DAY_MS, HOUR_MS, Core, local_ms, observation, period

ACCIDENTS = EntityKey("TRF.ACCIDENTS", "01", None)
SHARE = EntityKey("PWR.SOURCE_SHARE", "VN", None)  # daily, calendar months, weighted mean, by source


@pytest.mark.parametrize(
    ("label", "frequency"),
    [
        ("2024-11-15", "daily"),
        ("2024-12", "monthly"),
        ("2024-Q4", "quarterly"),
        ("2024-H2", "half_yearly"),
        ("2024", "annual"),
    ],
)
def test_frequency_of_a_label(label: str, frequency: str) -> None:
    assert frequency_of_label(label) == frequency


def test_consolidated_key() -> None:
    assert (
        consolidated_key("ENV.AQI", "01", "HN-AQ-HOANKIEM", "", "2024-11-01")
        == "ENV.AQI:01:HN-AQ-HOANKIEM:2024-11-01"
    )
    assert (
        consolidated_key("PWR.SOURCE_SHARE", "VN", None, "source=hydro", "2024")
        == "PWR.SOURCE_SHARE:VN:-:2024:source=hydro"
    )


def test_breakdown_series_have_their_own_records(catalogue: Catalogue, registry: SchemaRegistry) -> None:
    at = local_ms(2024, 11, 1, 9)
    core = Core(catalogue, SHARE, now=at + HOUR_MS)
    core.apply(observation("hydro-1", 40.0, at, indicator="PWR.SOURCE_SHARE", breakdowns={"source": "hydro"}))
    core.apply(
        observation("hydro-2", 45.0, at + 1, indicator="PWR.SOURCE_SHARE", breakdowns={"source": "hydro"})
    )
    core.apply(observation("coal-1", 30.0, at, indicator="PWR.SOURCE_SHARE", breakdowns={"source": "coal"}))
    records = core.records()
    assert set(records) == {
        "PWR.SOURCE_SHARE:VN:-:2024-11-01:source=hydro",
        "PWR.SOURCE_SHARE:VN:-:2024-11-01:source=coal",
    }
    hydro = records["PWR.SOURCE_SHARE:VN:-:2024-11-01:source=hydro"]
    assert hydro is not None
    assert hydro["breakdowns"] == {"source": "hydro"}
    assert (hydro["count"], hydro["value"], hydro["aggregation"]) == (2, 42.5, "weighted_mean")
    assert (hydro["scope"], hydro["unit"], hydro["reporter"]) == ("ENTITY", "%", "EVN")
    assert ("", "2024-11-01") not in core.state.periods, "a part never counts in the total's series"
    for record in records.values():
        assert record is not None
        decoded = decode(registry, "consolidated", encode(registry.latest("consolidated"), record))
        assert (decoded["key"], decoded["breakdowns"], decoded["value"]) == (
            record["key"],
            record["breakdowns"],
            record["value"],
        )


def test_only_the_own_period_is_published_while_the_longer_ones_are_open(catalogue: Catalogue) -> None:
    at = local_ms(2024, 11, 10, 8)
    core = Core(catalogue, ACCIDENTS, now=at + HOUR_MS)
    core.apply(observation("a", 3.0, at))
    core.apply(observation("b", 4.0, at - 2 * DAY_MS))
    records = core.records()
    assert set(records) == {"TRF.ACCIDENTS:01:-:2024-11-10", "TRF.ACCIDENTS:01:-:2024-11-08"}
    day = records["TRF.ACCIDENTS:01:-:2024-11-10"]
    assert day is not None
    assert (day["kind"], day["status"], day["period_start"], day["deadline"]) == (
        "UPDATE",
        "OPEN",
        "2024-11-10",
        "2024-11-11",
    )
    assert [(p["period"], p["status"], p["value"], p["count"]) for p in day["to_date"]] == [
        ("2024-11", "OPEN", 7.0, 2),
        ("2024-Q4", "OPEN", 7.0, 2),
        ("2024-H2", "OPEN", 7.0, 2),
        ("2024", "OPEN", 7.0, 2),
    ]
    windows = {w["name"]: (w["count"], w["sum"]) for w in day["windows"]}
    assert windows == {"rolling-24h": (1, 3.0), "rolling-7d": (2, 7.0), "rolling-30d": (2, 7.0)}


def test_a_late_value_republishes_every_closed_period_it_changed(catalogue: Catalogue) -> None:
    # 20/10/2024 is in Decree 09's month 2024-11 (15/10 .. 14/11, due 25/11); the quarter is due 25/12
    core = Core(catalogue, ACCIDENTS, now=local_ms(2024, 11, 27))
    result = core.apply(observation("late", 5.0, local_ms(2024, 10, 20, 8)))
    assert result.late
    kinds = {key: (r["kind"], r["status"]) for key, r in core.records().items() if r is not None}
    assert kinds == {
        "TRF.ACCIDENTS:01:-:2024-10-20": ("LATE_UPDATE", "CLOSED"),
        "TRF.ACCIDENTS:01:-:2024-11": ("LATE_UPDATE", "CLOSED"),
    }


def test_contributions_are_every_period_the_batch_changed(catalogue: Catalogue) -> None:
    at = local_ms(2024, 11, 10, 8)
    core = Core(catalogue, ACCIDENTS, now=at)
    core.apply(observation("a", 3.0, at))
    core.batch()
    core.apply(observation("b", 0.5, at + 1))
    expected = [
        (f"|{label}", period(core.state, label).encode())
        for label in sorted(["2024-11-10", "2024-11", "2024-Q4", "2024-H2", "2024"])
    ]
    assert contributions(core.state, core.touched) == expected
    assert period(core.state, "2024").count == 2
