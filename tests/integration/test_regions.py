"""History keyed by pre-2025 province codes rolls up into today's provincial units."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from stream_app.config.blueprint import Blueprint
from stream_app.settings import Settings
from stream_app.wire import codecs

from .support import collect, observation, produce


def _ms(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp() * 1000)


def test_hai_duong_history_aggregates_into_hai_phong(
    settings: Settings, blueprint: Blueprint, start_worker: Any
) -> None:
    start_worker(settings)
    schema = blueprint.schemas.latest("observation")
    at = _ms(2024, 3, 1, 3)
    rows = [
        # 30 = Hải Dương (GSO code until 2025-07-01), merged into Hải Phòng (31)
        observation(
            indicator="DIS.LANDSLIDE_SITES",
            region="30",
            station=None,
            unit="sites",
            value=2.0,
            event_time=at,
            report_time=at,
        ),
        # 31 = Hải Phòng itself, same hour
        observation(
            indicator="DIS.LANDSLIDE_SITES",
            region="31",
            station=None,
            unit="sites",
            value=3.0,
            event_time=at + 60_000,
            report_time=at + 60_000,
        ),
    ]
    produce(settings, blueprint.input_topic("MAE").name, [(None, codecs.encode(schema, r)) for r in rows])

    consolidated = collect(
        settings,
        blueprint.topic_by_role("consolidated").name,
        "consolidated",
        lambda r: (
            {"DIS.LANDSLIDE_SITES:31:-:2024-03-01", "DIS.LANDSLIDE_SITES:VN:-:2024-03-01"}
            <= {row["key"] for row in r if row["count"] == 2}
        ),
    )
    entity = [row for row in consolidated.records if row["scope"] == "ENTITY"]
    final = next(row for row in entity if row["count"] == 2 and row["frequency"] == "daily")
    assert final["region"] == "31"
    assert final["key"] == "DIS.LANDSLIDE_SITES:31:-:2024-03-01"
    assert final["sum"] == 5.0
    assert {row["region"] for row in entity} == {"31"}
    # the national roll-up counts Hải Dương's history once, as part of today's Hải Phòng
    national = [row for row in consolidated.records if row["key"] == "DIS.LANDSLIDE_SITES:VN:-:2024-03-01"][
        -1
    ]
    assert (national["value"], national["contributors"]) == (5.0, 1)
