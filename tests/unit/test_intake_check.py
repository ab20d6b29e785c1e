"""stream_app.wire.intake: what the intake (and `produce --dry-run`) decides about one record's
key and bytes: key size, then decoding, then validation against the catalogue, in that order."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from stream_app.domain.catalogue import Catalogue
from stream_app.domain.model import Observation, Rejection
from stream_app.domain.reasons import Reason
from stream_app.settings import Settings
from stream_app.wire import codecs
from stream_app.wire.intake import IntakeCheck
from stream_app.wire.schemas import SchemaRegistry

NOW_MS = 1_750_000_000_000


@pytest.fixture
def check(catalogue: Catalogue, registry: SchemaRegistry) -> IntakeCheck:
    settings = Settings.model_construct().model_copy(
        update={"intake_max_key_bytes": 32, "intake_max_record_bytes": 4096}
    )
    return IntakeCheck.from_settings(settings, catalogue, registry)


def _avro(registry: SchemaRegistry, record: dict[str, Any]) -> bytes:
    return codecs.encode(registry.latest("observation"), record)


def test_a_good_record_is_the_validated_observation(
    check: IntakeCheck, registry: SchemaRegistry, make_record: Callable[..., dict[str, Any]]
) -> None:
    verdict = check(b"HN-AQ-HOANKIEM", _avro(registry, make_record()), "MAE", NOW_MS)
    assert isinstance(verdict, Observation)
    assert (verdict.indicator, verdict.region, verdict.station) == ("ENV.AQI", "01", "HN-AQ-HOANKIEM")


def test_json_is_accepted_as_the_worker_accepts_it(
    check: IntakeCheck, make_record: Callable[..., dict[str, Any]]
) -> None:
    verdict = check(None, json.dumps(make_record()).encode(), "MAE", NOW_MS)
    assert isinstance(verdict, Observation)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        pytest.param(b"K" * 33, b"{}", Reason.KEY_TOO_LARGE, id="key-first"),
        pytest.param(None, b"x" * 4097, Reason.OVERSIZED, id="oversized"),
        pytest.param(None, b"\x01\x02", Reason.UNDECODABLE, id="undecodable"),
        pytest.param(None, None, Reason.UNDECODABLE, id="no-value"),
    ],
)
def test_size_and_decoding_refusals(
    check: IntakeCheck, key: bytes | None, value: bytes | None, reason: str
) -> None:
    verdict = check(key, value, "MAE", NOW_MS)
    assert isinstance(verdict, Rejection)
    assert verdict.reason == reason


def test_validation_against_the_catalogue_and_the_topic_reporter(
    check: IntakeCheck, registry: SchemaRegistry, make_record: Callable[..., dict[str, Any]]
) -> None:
    wrong_unit = check(None, _avro(registry, make_record(unit="ppm")), "MAE", NOW_MS)
    assert isinstance(wrong_unit, Rejection)
    assert wrong_unit.reason == "unit_mismatch"
    other_topic = check(None, _avro(registry, make_record()), "MPS", NOW_MS)
    assert isinstance(other_topic, Rejection)
    assert other_topic.reason == "unknown_reporter"
