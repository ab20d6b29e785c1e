"""Growing the internal topic (4 -> 8 partitions) by the documented procedure loses and misplaces
nothing: ``stream-app topics grow`` refuses while a worker runs and while the topic holds records not
yet applied; a worker with ``STREAM_APP_INTAKE_PAUSED`` drains it (the input waits in Kafka); then the
partitions are added, the periods-due registry follows its entities, and workers declaring 8 apply the
rest. Every entity's periods equal the sums of what was sent, no record is misrouted, and ``topics
apply`` refuses to grow an internal topic by itself. (docs/deploy.md, "Growing the internal topics".)
"""

from __future__ import annotations

import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis

from stream_app.config.blueprint import Blueprint, load_blueprint
from stream_app.exceptions import ConfigurationError
from stream_app.kafka import topics
from stream_app.kafka.partitioning import partition_for
from stream_app.settings import Settings
from stream_app.tools import state
from stream_app.tools.grow import grow
from stream_app.wire import codecs

from . import ground_truth as gt
from .support import group_lag, produce, redis_hash, to_the_end, wait_until

INDICATOR = "TRF.DEATHS"
DAY_MS = 24 * 3600 * 1000


def _records(days: range) -> list[dict[str, Any]]:
    """One value a day for every current province, ``days`` days before now (open periods: each
    entity stays in the periods-due registry)."""
    _, current = gt._regions()
    noon = int(time.time() * 1000) // DAY_MS * DAY_MS + 5 * 3600 * 1000  # 12:00 in Vietnam
    out = []
    for ago in days:
        for i, region in enumerate(current):
            event = noon - ago * DAY_MS
            out.append(
                {
                    "observation_id": f"grow-{region}-{ago}",
                    "revision": 0,
                    "reporter": "MPS",
                    "indicator": INDICATOR,
                    "region": region,
                    "station": None,
                    "value": float((ago * 7 + i) % 23),
                    "unit": "persons",
                    "event_time": event,
                    "report_time": event + 3600 * 1000,
                    "quality": "FINAL",
                    "period": None,
                    "breakdowns": {},
                }
            )
    return out


def _send(settings: Settings, blueprint: Blueprint, records: list[dict[str, Any]]) -> None:
    schema = blueprint.schemas.latest("observation")
    produce(
        settings,
        blueprint.input_topic("MPS").name,
        [(f"{r['region']}".encode(), codecs.encode(schema, r)) for r in records],
    )


def _entity(record: dict[str, Any]) -> str:
    return f"{INDICATOR}|{record['region']}|-"


def _applied(client: redis.Redis, settings: Settings, entities: list[str]) -> int:
    return sum(client.hlen(f"{settings.redis_key_prefix}:{{{e}}}:seen") for e in entities)


def _declaring(settings: Settings, tmp_path: Path, partitions: int) -> Settings:
    """``settings`` with a topics.toml that declares the internal topic with ``partitions``."""
    text = settings.topics_file.read_text(encoding="utf-8")
    anchor = 'name = "internal.observations.by-entity"'
    head, _, tail = text.partition(anchor)
    declared, _, rest = tail.partition("partitions = 4")
    assert declared.count("[[topic]]") == 0, "the internal topic declares its partitions below its name"
    path = tmp_path / f"topics-{partitions}.toml"
    path.write_text(head + anchor + declared + f"partitions = {partitions}" + rest, encoding="utf-8")
    return settings.model_copy(update={"topics_file": path})


def test_the_internal_topic_grows_from_4_to_8_partitions_without_loss(
    settings: Settings, blueprint: Blueprint, start_worker: Any, tmp_path: Path
) -> None:
    internal = blueprint.topic_by_role("repartition")
    assert internal.partitions == 4
    first, paused, last = _records(range(20, 14, -1)), _records(range(14, 8, -1)), _records(range(8, 0, -1))
    everything = first + paused + last
    entities = sorted({_entity(r) for r in everything})
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())

    worker = start_worker(settings)
    _send(settings, blueprint, first)
    wait_until(lambda: _applied(client, settings, entities) == len(first), 120, "the first days applied")
    with pytest.raises(ConfigurationError, match="still run"):
        grow(blueprint, "internal.observations.by-entity", 8)
    worker.stop()

    # drain: a worker that reads no input applies what the internal topic holds; new input waits
    drainer = start_worker(settings, STREAM_APP_INTAKE_PAUSED="true")
    _send(settings, blueprint, paused)
    wait_until(
        lambda: group_lag(settings, blueprint, [internal.name]) == 0, 120, "the internal topic drained"
    )
    time.sleep(2)
    assert _applied(client, settings, entities) == len(first), "a paused intake read input"
    drainer.stop()

    grown = grow(blueprint, "internal.observations.by-entity", 8)
    assert (grown.before, grown.after) == (4, 8)
    assert grown.entities_moved > 0, "no entity changed partition: the test proves nothing"
    for partition in range(8):
        for raw in client.zrange(f"{settings.redis_key_prefix}:due:{partition}", 0, -1):
            assert isinstance(raw, bytes)
            assert partition_for(raw.decode(), 8) == partition, (raw, partition)

    # an internal topic never grows by `topics apply`: entities would change partition under the workers
    wider = load_blueprint(_declaring(settings, tmp_path, 16))
    with pytest.raises(ConfigurationError, match="topics grow"):
        topics.apply(wider.settings, wider.topics)

    eight = _declaring(settings, tmp_path, 8)
    grown_bp = load_blueprint(eight)
    assert grown_bp.topic_by_role("repartition").partitions == 8
    start_worker(eight, STREAM_APP_TOPICS_FILE=str(eight.topics_file))
    _send(settings, blueprint, last)
    wait_until(
        lambda: _applied(client, settings, entities) == len(everything), 180, "every observation applied"
    )
    wait_until(lambda: group_lag(eight, grown_bp, [internal.name]) == 0, 60, "the group's lag to reach 0")

    want: dict[tuple[str, str], tuple[int, Decimal]] = defaultdict(lambda: (0, Decimal(0)))
    for record in everything:
        for label in gt.labels(record["event_time"], "daily", "decree09"):
            count, total = want[(_entity(record), label)]
            want[(_entity(record), label)] = (count + 1, total + Decimal(str(record["value"])))
    got = {}
    for entity in entities:
        for field, value in redis_hash(client, f"{settings.redis_key_prefix}:{{{entity}}}:periods").items():
            parts = value.decode().split(",")
            got[(entity, field.decode().split("|", 1)[1])] = (int(parts[0]), Decimal(parts[1]))
    assert got == dict(want)
    # read to its end now, not for a fixed 3 s: the group's lag is 0, so every dead letter the worker
    # wrote (before committing the offset of the record it came from) is there
    misrouted = to_the_end(settings, blueprint.topic_by_role("consolidate_dead_letter").name)
    assert not misrouted, f"{len(misrouted)} internal records dead-lettered"
    moved = [e for e in entities if partition_for(e, 4) != partition_for(e, 8)]
    assert moved, "no entity moved partition"

    # a rebuild from the log cannot place the records written under 4 partitions: it says so, loudly
    elsewhere = f"{settings.redis_key_prefix}-rebuilt"
    try:
        with pytest.raises(ConfigurationError, match="placed under an earlier partition count"):
            state.rebuild(grown_bp, prefix=elsewhere, progress=False)
    finally:
        for key in client.scan_iter(match=f"{elsewhere}:*", count=1000):
            client.delete(key)
