"""Fixtures and factories of the unit tests: the real schemas and catalogue, valid records.

No Kafka, no Redis, no network: everything here is pure data.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from stream_app.domain.catalogue import Catalogue, load_catalogue
from stream_app.domain.model import Observation, Quality
from stream_app.settings import Settings
from stream_app.wire.schemas import SchemaRegistry, load_schemas

# 2024-11-01T00:00:00Z: a whole hour, well after 2010 and before "now" in every test.
T0_MS = int(datetime(2024, 11, 1, tzinfo=UTC).timestamp() * 1000)


def _defaults() -> Settings:
    # The repository's own data files, whatever STREAM_APP_* the developer's shell holds.
    return Settings.model_construct()


@pytest.fixture(scope="session")
def registry() -> SchemaRegistry:
    return load_schemas(_defaults().schemas_dir)


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return load_catalogue(_defaults().catalogue_dir)


@pytest.fixture
def t0_ms() -> int:
    return T0_MS


@pytest.fixture
def make_record() -> Callable[..., dict[str, Any]]:
    """A valid observation dict shaped like the Avro schema (times as epoch millis)."""

    def make(**overrides: Any) -> dict[str, Any]:
        record: dict[str, Any] = {
            "observation_id": "mae-aq-hoankiem-20241101T00",
            "revision": 0,
            "reporter": "MAE",
            "indicator": "ENV.AQI",
            "region": "01",
            "station": "HN-AQ-HOANKIEM",
            "value": 87.0,
            "unit": "index",
            "event_time": T0_MS,
            "report_time": T0_MS + 60_000,
            "quality": "FINAL",
            "period": None,
            "breakdowns": {},
        }
        unknown = overrides.keys() - record.keys()
        assert not unknown, f"make_record: unknown fields {sorted(unknown)}"
        record.update(overrides)
        return record

    return make


@pytest.fixture
def make_observation() -> Callable[..., Observation]:
    """A validated AQI observation of station HN-AQ-HOANKIEM; override any field."""

    def make(**overrides: Any) -> Observation:
        fields: dict[str, Any] = {
            "observation_id": "obs-1",
            "revision": 0,
            "reporter": "MAE",
            "indicator": "ENV.AQI",
            "region": "01",
            "station": "HN-AQ-HOANKIEM",
            "value": 87.0,
            "unit": "index",
            "event_time": T0_MS,
            "report_time": T0_MS + 60_000,
            "quality": Quality.FINAL,
        }
        fields.update(overrides)
        return Observation(**fields)

    return make
