"""A simulated live feed from the Ministry of Agriculture and Environment's stations.

Scenarios cross regulation thresholds on purpose: a smog episode in Hà Nội (VN_AQI through "bad"
and "very bad") and a flood crest on the Red River at Long Biên (alarm levels I and II). A small
share of records is wrong in typical ways, so the dead-letter topic has something to show.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Producer

from stream_app import codecs
from stream_app.schemas import SchemaRegistry
from stream_app.settings import Settings

REPORTER = "MAE"


@dataclass(frozen=True, slots=True)
class SimRecord:
    """One record to send: its key, bytes, and whether it is meant to be rejected."""

    key: bytes
    value: bytes
    valid: bool


def smog_aqi(step: int, period: int = 60) -> float:
    """VN_AQI over a smog episode: moderate, rising through bad and very bad, then clearing."""
    phase = (step % period) / period
    return round(70 + 170 * math.sin(math.pi * phase) ** 2, 1)


def flood_level(step: int, period: int = 80) -> float:
    """Water level at Long Biên over a flood crest: 8 m rising to about 10.8 m (alarm II), falling back."""
    phase = (step % period) / period
    return round(8.0 + 2.8 * math.sin(math.pi * phase) ** 2, 2)


def observation(
    indicator: str, region: str, station: str, value: float, *, unit: str, now_ms: int, seq: int
) -> dict[str, Any]:
    """An observation record as a reporter would write it."""
    return {
        "observation_id": f"{REPORTER}-{station}-{now_ms}-{seq}",
        "revision": 0,
        "reporter": REPORTER,
        "indicator": indicator,
        "region": region,
        "station": station,
        "value": value,
        "unit": unit,
        "event_time": now_ms,
        "report_time": now_ms,
        "quality": "FINAL",
        "period": None,
        "breakdowns": {},
    }


def feed(schemas: SchemaRegistry, seed: int = 7, invalid_share: float = 0.03) -> Iterator[SimRecord]:
    """An endless feed, one round of stations per step; event times are the wall clock."""
    rng = random.Random(seed)
    schema = schemas.latest("observation")
    step = 0
    seq = 0
    while True:
        now_ms = int(time.time() * 1000)
        rows = [
            observation(
                "ENV.AQI", "01", "HN-AQ-HOANKIEM", smog_aqi(step), unit="index", now_ms=now_ms, seq=seq
            ),
            observation(
                "ENV.AQI",
                "79",
                "HCM-AQ-Q1",
                round(45 + rng.uniform(0, 40), 1),
                unit="index",
                now_ms=now_ms,
                seq=seq + 1,
            ),
            observation(
                "HYD.WATER_LEVEL",
                "01",
                "HN-LONGBIEN",
                flood_level(step),
                unit="m",
                now_ms=now_ms,
                seq=seq + 2,
            ),
        ]
        seq += len(rows)
        for row in rows:
            if rng.random() < invalid_share:
                yield _spoil(row, rng, schemas)
                continue
            # a few reporters send JSON instead of Avro
            value = json.dumps(row).encode() if rng.random() < 0.1 else codecs.encode(schema, row)
            yield SimRecord(row["station"].encode(), value, True)
        step += 1


def _spoil(row: dict[str, Any], rng: random.Random, schemas: SchemaRegistry) -> SimRecord:
    kind = rng.choice(["unit", "range", "garbage", "indicator"])
    key = row["station"].encode()
    if kind == "garbage":
        return SimRecord(key, b"\x00\x01not-an-observation", False)
    bad = dict(row)
    if kind == "unit":
        bad["unit"] = "ppm"
    elif kind == "range":
        bad["value"] = 9999.0
    else:
        bad["indicator"] = "PWR.OUTPUT_GWH"
    return SimRecord(key, codecs.encode(schemas.latest("observation"), bad), False)


def run(
    settings: Settings,
    schemas: SchemaRegistry,
    topic: str,
    *,
    rate: float,
    duration: float | None,
    count: int | None = None,
    seed: int = 7,
) -> tuple[int, int]:
    """Send the feed at ``rate`` records/s for ``duration`` seconds or ``count`` records.

    Returns (sent, meant_to_be_rejected).
    """
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 5, "acks": "all"})
    interval = 1.0 / rate if rate > 0 else 0.0
    sent = invalid = 0
    started = time.monotonic()
    try:
        for record in feed(schemas, seed=seed):
            if count is not None and sent >= count:
                break
            if duration is not None and time.monotonic() - started >= duration:
                break
            producer.produce(topic, key=record.key, value=record.value)
            producer.poll(0)
            sent += 1
            invalid += not record.valid
            if interval:
                time.sleep(interval)
    finally:
        producer.flush(30)
    return sent, invalid
