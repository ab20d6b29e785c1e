"""stream_app.domain.rollup: which roll-ups an entity counts in, and how sources combine by the indicator's
declared semantics (sum exactly, mean, weighted mean as a plain mean for now, max)."""

from __future__ import annotations

import dataclasses
import itertools
from decimal import Decimal

import pytest

from stream_app.domain.aggregates import Agg, combine
from stream_app.domain.catalogue import Catalogue
from stream_app.domain.rollup import (
    NATIONAL,
    Combined,
    Contributed,
    combine_sources,
    contribution_records,
    contribution_seq,
    decode_entries,
    encode_entry,
    rollup_key,
    targets,
)


def _agg(*values: float, first_id: str = "o") -> Agg:
    found = combine(Agg.of(v, i, f"{first_id}-{i}", "FINAL") for i, v in enumerate(values))
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("indicator", "region", "station", "expected"),
    [
        ("ENV.AQI", "01", "HN-AQ-HOANKIEM", ["01", NATIONAL]),  # a station: its province, the nation
        ("TRF.ACCIDENTS", "01", None, [NATIONAL]),  # a province: the nation
        ("TRF.ACCIDENTS", NATIONAL, None, []),  # the nation itself
        ("PWR.OUTPUT_GWH", NATIONAL, None, []),  # reported nationally
        ("PWR.PEAK_MW", NATIONAL, None, []),  # last: a national peak is not rolled up
        ("FIN.PUBLIC_DEBT_GDP", NATIONAL, None, []),
    ],
)
def test_targets(
    catalogue: Catalogue, indicator: str, region: str, station: str | None, expected: list[str]
) -> None:
    assert targets(catalogue.indicators[indicator], region, station) == expected


def test_a_last_indicator_of_a_province_is_not_rolled_up(catalogue: Catalogue) -> None:
    indicator = dataclasses.replace(catalogue.indicators["TRF.ACCIDENTS"], aggregation="last")
    assert targets(indicator, "01", None) == []
    assert targets(indicator, "01", "ST-1") == []


def test_a_contribution_sequence_orders_batches_then_attempts() -> None:
    assert contribution_seq(10, 0) == 2560
    assert contribution_seq(10, 3) == 2563
    assert contribution_seq(10, 999) == contribution_seq(10, 255) < contribution_seq(11, 0)


def test_contributions_go_to_every_rollup_of_their_entity(catalogue: Catalogue) -> None:
    contributed = {
        "ENV.AQI|01|HN-AQ-HOANKIEM": Contributed(7, [("|2025-05-03", "a1")]),
        "TRF.ACCIDENTS|01|-": Contributed(3, [("|2025-05", None)]),
        "TRF.ACCIDENTS|VN|-": Contributed(4, []),  # nothing contributed: no record
    }
    records = contribution_records(catalogue.indicators, contributed, 1000, 10_000)
    assert [(r.routing, sorted(r.sources)) for r in records] == [
        ("ENV.AQI|01", ["ENV.AQI|01|HN-AQ-HOANKIEM"]),
        ("ENV.AQI|VN", ["ENV.AQI|01|HN-AQ-HOANKIEM"]),
        ("TRF.ACCIDENTS|VN", ["TRF.ACCIDENTS|01|-"]),
    ]
    assert records[2].record == {
        "indicator": "TRF.ACCIDENTS",
        "target": "VN",
        "processing_time": 1000,
        "items": [{"source": "TRF.ACCIDENTS|01|-", "seq": 3, "period": "|2025-05", "aggregate": None}],
    }


def test_contributions_split_where_a_record_would_not_fit(catalogue: Catalogue) -> None:
    periods = [(f"|2025-05-{day:02}", "x" * 40) for day in range(1, 21)]
    contributed = {"TRF.ACCIDENTS|01|-": Contributed(1, periods)}
    records = contribution_records(catalogue.indicators, contributed, 0, 400)
    assert len(records) > 1
    assert [i["period"] for r in records for i in r.record["items"]] == [p for p, _ in periods]
    for record in records:  # each within its budget (estimated as the split does)
        assert sum(32 + len(i["source"]) + len(i["period"]) + 40 for i in record.record["items"]) <= 400


def test_rollup_key() -> None:
    assert rollup_key("ENV.AQI", "01") == "ENV.AQI|01"
    assert rollup_key("TRF.ACCIDENTS", NATIONAL) == "TRF.ACCIDENTS|VN"


def test_sum_is_exact_and_independent_of_the_sources_order(catalogue: Catalogue) -> None:
    indicator = catalogue.indicators["TRF.ACCIDENTS"]
    sources = {
        "TRF.ACCIDENTS|01|-": _agg(0.1),
        "TRF.ACCIDENTS|31|-": _agg(0.2),
        "TRF.ACCIDENTS|79|-": _agg(0.7, 1e-3),
    }
    results = set()
    for order in itertools.permutations(sources):
        combined = combine_sources(indicator, {name: sources[name] for name in order})
        assert combined is not None
        results.add((combined.value, combined.agg.total, combined.contributors))
    assert results == {(1.001, Decimal("1.001"), 3)}


def test_mean_is_the_mean_of_the_sources_values(catalogue: Catalogue) -> None:
    indicator = dataclasses.replace(catalogue.indicators["TRF.ACCIDENTS"], aggregation="mean")
    combined = combine_sources(indicator, {"a": _agg(1.0, 2.0, 3.0), "b": _agg(10.0)})
    assert combined is not None
    assert combined.value == 6.0, "each unit counts once, not each value: (2 + 10) / 2"
    assert (combined.agg.count, combined.agg.mean, combined.contributors) == (4, 4.0, 2)


def test_weighted_mean_is_a_plain_mean_of_units_until_weights_are_sent(catalogue: Catalogue) -> None:
    indicator = catalogue.indicators["FIN.CPI"]
    assert indicator.aggregation == "weighted_mean"
    combined = combine_sources(indicator, {"FIN.CPI|01|-": _agg(3.0, 4.0), "FIN.CPI|79|-": _agg(2.0)})
    assert combined == Combined(_agg(3.0, 4.0).merge(_agg(2.0)), 2.75, 2)


def test_max_is_the_highest_value(catalogue: Catalogue) -> None:
    indicator = catalogue.indicators["ENV.AQI"]
    combined = combine_sources(
        indicator,
        {"ENV.AQI|01|A": _agg(80.0, 210.0), "ENV.AQI|01|B": _agg(150.0), "ENV.AQI|01|C": _agg(-1.0)},
    )
    assert combined is not None
    assert (combined.value, combined.agg.low, combined.contributors) == (210.0, -1.0, 3)


def test_no_sources_no_rollup(catalogue: Catalogue) -> None:
    assert combine_sources(catalogue.indicators["TRF.ACCIDENTS"], {}) is None


def test_entries_round_trip_and_emptied_sources_drop_out() -> None:
    agg = Agg.of(0.1, 5, "id,with,commas", "TEST", 7).add(0.2, 6, "b", "FINAL")
    assert encode_entry(42, agg.encode()) == f"42;{agg.encode()}"
    assert encode_entry(43, None) == "43;"
    raw = {
        b"TRF.ACCIDENTS|01|-": encode_entry(42, agg.encode()).encode(),
        b"TRF.ACCIDENTS|31|-": encode_entry(43, None).encode(),
    }
    assert decode_entries(raw) == {"TRF.ACCIDENTS|01|-": agg}
