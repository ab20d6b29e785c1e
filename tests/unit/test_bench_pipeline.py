"""The peers' shared pipeline (bench/peers/pipeline.py) on the real catalogue and schemas."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from bench.peers.pipeline import Pipeline, Rejected
from bench.workload import peer_spec
from stream_app.config.blueprint import Blueprint, load_blueprint
from stream_app.settings import Settings
from stream_app.wire import codecs

MAE_TOPIC = "reporter.mae.observations"


@pytest.fixture(scope="module")
def blueprint() -> Blueprint:
    return load_blueprint(Settings.model_construct())


@pytest.fixture(scope="module")
def pipeline(blueprint: Blueprint) -> Pipeline:
    # Through JSON, as the peers read it from the file the harness writes.
    return Pipeline(json.loads(json.dumps(peer_spec(blueprint))))


def test_decodes_avro_and_json_alike(
    pipeline: Pipeline, blueprint: Blueprint, make_record: Callable[..., dict[str, Any]]
) -> None:
    record = make_record()
    avro = codecs.encode(blueprint.schemas.latest("observation"), record)
    from_avro = pipeline.decode(avro)
    from_json = pipeline.decode(json.dumps(record).encode())
    assert from_avro["observation_id"] == from_json["observation_id"] == record["observation_id"]
    assert from_avro["value"] == from_json["value"] == 87.0


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xde\xad\xbe\xef not an observation", "undecodable"),
        (b"\xc3\x01" + b"\x00" * 8 + b"x", "unknown_schema"),
        (b"{not json", "undecodable"),
    ],
)
def test_rejects_what_cannot_be_decoded(pipeline: Pipeline, raw: bytes, reason: str) -> None:
    with pytest.raises(Rejected) as caught:
        pipeline.decode(raw)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"indicator": "NO.SUCH"}, "unknown_indicator"),
        ({"unit": "ppm"}, "unit_mismatch"),
        ({"value": -999.0}, "out_of_range"),
        ({"indicator": "PWR.OUTPUT_GWH", "unit": "GWh"}, "indicator_not_allowed"),
    ],
)
def test_checks_like_the_worker(
    pipeline: Pipeline, make_record: Callable[..., dict[str, Any]], overrides: dict[str, Any], reason: str
) -> None:
    with pytest.raises(Rejected) as caught:
        pipeline.check(make_record(**overrides), MAE_TOPIC)
    assert caught.value.reason == reason


def test_aggregates_and_alerts_on_crossing_the_station_bound(
    pipeline: Pipeline, make_record: Callable[..., dict[str, Any]]
) -> None:
    calm, smog, clean = (make_record(value=v) for v in (80.0, 180.0, 60.0))
    first = pipeline.step(calm, MAE_TOPIC, None)
    assert first.alert is None
    second = pipeline.step(smog, MAE_TOPIC, first.aggregate)
    assert second.alert is not None
    assert json.loads(second.alert)["transition"] == "FIRING"
    third = pipeline.step(clean, MAE_TOPIC, second.aggregate)
    assert third.alert is not None
    assert json.loads(third.alert)["transition"] == "RESOLVED"
    assert third.aggregate["count"] == 3
    assert third.aggregate["min"] == 60.0
    assert third.aggregate["max"] == 180.0
    assert third.entity == "ENV.AQI|01|HN-AQ-HOANKIEM"
    assert json.loads(third.output)["latest"] == 60.0
