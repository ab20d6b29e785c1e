"""Partial loss is caught, on Redis as shipped (``deploy/local/services up redis``).

A worker applies observations of six stations; then the state is damaged the ways Redis loses data —
the applied marks gone with the entities kept, an entity's keys gone with the marks kept, a roll-up's
periods gone, a restore from an older backup, an append-only file cut short (loaded in part), an RDB
snapshot older than the lost append-only file. With no record arriving, the worker's state audit (marks
against the group's committed offsets, ledgers against entities and roll-ups) makes it not ready,
``state_lost``; a record that arrives then for a damaged entity is not applied.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from stream_app.config.blueprint import Blueprint, load_blueprint
from stream_app.settings import Settings
from stream_app.tools import state as state_tool
from stream_app.wire import codecs

from .hostile import AQ_STATIONS
from .support import ServicesRedis, group_lag, metric_value, observation, probe, produce, wait_until

STATIONS = AQ_STATIONS  # six air-quality stations, each in its province
REPAIRED = ("entity-gone", "rollup-gone")  # repaired in the test as the runbook says (the others: rebuilds
# of lost marks, tested in test_state_durability.py)
SHAPES = ("marks-gone", "entity-gone", "rollup-gone", "old-backup", "aof-cut-short", "rdb-older-than-aof")


def _entity(station: str) -> str:
    return f"ENV.AQI|{STATIONS[station]}|{station}"


class Feed:
    """Observations of the six stations, in rounds; what Redis holds of them."""

    def __init__(self, settings: Settings, blueprint: Blueprint, redis_server: ServicesRedis) -> None:
        self.settings = settings
        self.blueprint = blueprint
        self.redis = redis_server
        self.schema = blueprint.schemas.latest("observation")
        self.topic = blueprint.input_topic("MAE").name
        self.start = int(time.time() * 1000) - 6 * 3_600_000
        self.sent = 0

    def send(self, rounds: int, stations: tuple[str, ...] = tuple(STATIONS)) -> None:
        records = []
        for r in range(self.sent, self.sent + rounds):
            for station in stations:
                record = observation(
                    observation_id=f"loss-{station}-{r}",
                    region=STATIONS[station],
                    station=station,
                    value=30.0 + r % 11,
                    event_time=self.start + r * 60_000,
                )
                records.append((station.encode(), codecs.encode(self.schema, record)))
        produce(self.settings, self.topic, records)
        self.sent += rounds

    def seen(self, station: str) -> int:
        client = self.redis.client()
        try:
            return int(client.hlen(f"{self.redis.PREFIX}:{{{_entity(station)}}}:seen"))
        finally:
            client.close()

    def drained(self) -> None:
        internal = self.blueprint.topic_by_role("repartition").name
        topics = [self.topic, internal, self.blueprint.topic_by_role("rollup").name]
        wait_until(lambda: all(self.seen(s) == self.sent for s in STATIONS), 90, "every observation applied")
        wait_until(
            lambda: group_lag(self.settings, self.blueprint, topics) == 0, 60, "the group's lag to be 0"
        )
        time.sleep(1.5)  # past one append-only fsync


def _aof_incr(server: ServicesRedis) -> Path:
    files = sorted((server.state / "redis" / "data" / "appendonlydir").glob("*.incr.aof"))
    assert files, "an incremental append-only file"
    return files[-1]


def _damage(shape: str, server: ServicesRedis, feed: Feed, tmp_path: Path) -> None:
    """Damage the state as ``shape`` says; returns with Redis up."""
    admin = server.client()
    prefix = server.PREFIX
    if shape == "marks-gone":
        marks = list(admin.scan_iter(match=f"{prefix}:{{meta}}:applied:*"))
        assert marks
        admin.delete(*marks)
    elif shape == "entity-gone":
        entity = _entity("HP-AQ-LECHAN")
        keys = list(admin.scan_iter(match=f"{prefix}:{{{entity}}}:*"))
        assert keys
        admin.delete(*keys)
    elif shape == "rollup-gone":  # the nation's roll-up periods of the indicator, the marks kept
        keys = list(admin.scan_iter(match=f"{prefix}:{{rollup|ENV.AQI|VN}}:*"))
        assert keys
        admin.delete(*keys)
    elif shape == "old-backup":
        backup = Path(server.run("redis-backup", str(tmp_path / "backups")).strip().splitlines()[-1])
        feed.send(3)
        feed.drained()
        server.run("redis-restore", str(backup))
    elif shape == "aof-cut-short":
        feed.send(3)
        feed.drained()
        server.kill()
        incr = _aof_incr(server)
        size = incr.stat().st_size
        with incr.open("r+b") as cut:
            cut.truncate(size * 2 // 3)  # the last writes lost, as a disk that lost its tail
        server.up()  # aof-load-truncated: Redis loads what is whole and says so in its log
        assert server.loading_trouble(), "Redis's log says the file was cut short"
    elif shape == "rdb-older-than-aof":
        admin.bgsave()
        wait_until(lambda: admin.info("persistence")["rdb_bgsave_in_progress"] == 0, 30, "the snapshot")
        feed.send(3)
        feed.drained()
        server.kill()
        aof = server.state / "redis" / "data" / "appendonlydir"
        aof.rename(aof.with_name("appendonlydir.lost"))  # the disk holding the append-only file is gone
        server.up()  # no append-only file: Redis starts from the older snapshot
    admin.close()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.timeout(300)
def test_a_partial_loss_makes_the_worker_refuse_before_applying_anything(  # noqa: PLR0917 - fixtures
    settings: Settings,
    blueprint: Blueprint,
    start_worker: Any,
    shipped_redis: Callable[..., ServicesRedis],
    tmp_path: Path,
    shape: str,
) -> None:
    server = shipped_redis()
    local = settings.model_copy(update={"redis_key_prefix": server.PREFIX, "retry_max_s": 1.0})
    worker = start_worker(
        local,
        STREAM_APP_REDIS_URL=server.url(),
        STREAM_APP_STATE_AUDIT_S="1",
        STREAM_APP_RETRY_MAX_S="1",
        STREAM_APP_BATCH_MAX="20",
    )
    feed = Feed(local, blueprint, server)
    for _ in range(3):  # several batches, commits and marks
        feed.send(4)
        time.sleep(0.5)
    feed.drained()
    assert probe(local, "/readyz")[0] == 200

    _damage(shape, server, feed, tmp_path)

    # no record needed: the audit finds the loss
    seconds = wait_until(lambda: probe(local, "/readyz")[0] == 503, 30, "the worker to go not ready")
    body = probe(local, "/readyz")[1]
    assert "state_lost" in json.dumps(body), body
    stages = ("consolidate", "rollup")
    assert max(metric_value(worker.metrics(), "stream_app_state_lost", stage=s) for s in stages) == 1
    assert "state_lost" in worker.log()
    print(f"\n{shape}: not ready {seconds:.1f} s after the damage")

    # a record for a damaged entity then is not applied
    held = {s: feed.seen(s) for s in STATIONS}
    feed.send(1, ("HP-AQ-LECHAN", "HN-AQ-HOANKIEM"))
    time.sleep(4)
    assert {s: feed.seen(s) for s in STATIONS} == held, "nothing applied on the damaged state"
    assert probe(local, "/readyz")[0] == 503
    assert worker.proc.poll() is None
    if shape not in REPAIRED:
        return

    # the runbook's repair: `state status` says LOST, the rebuild (as the admin, workers stopped) is not
    # refused as "nothing to rebuild", and the worker started again applies what waited
    worker.stop()
    admin = load_blueprint(local.model_copy(update={"redis_url": SecretStr(server.url("admin"))}))
    assert any(row.problem for row in state_tool.status(admin))
    state_tool.rebuild(admin, progress=False)
    assert all(row.problem is None for row in state_tool.status(admin))
    start_worker(local, STREAM_APP_REDIS_URL=server.url(), STREAM_APP_STATE_AUDIT_S="1")
    wait_until(lambda: probe(local, "/readyz")[0] == 200, 60, "the worker ready on the rebuilt state")
    wait_until(
        lambda: all(
            feed.seen(s) == feed.sent or s not in ("HP-AQ-LECHAN", "HN-AQ-HOANKIEM") for s in STATIONS
        ),
        60,
        "what waited applied",
    )
    time.sleep(3)  # a few audits: the rebuilt state stays sound
    assert probe(local, "/readyz")[0] == 200
