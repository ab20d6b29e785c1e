"""Backups restore as shipped. The local services' Redis (TLS, the ACL file, an append-only file fsynced
every second, RDB snapshots) is backed up and restored with ``deploy/local/services redis-backup`` /
``redis-restore`` (docs/operations.md), and the restored data survives a clean restart and a crash.
Each test runs a private Redis of the services script (its own state directory and port), never the
shared one; restarts: test_redis_restart.py."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .support import ServicesRedis, fill_like_the_app, snapshot


@pytest.fixture
def durable(shipped_redis: Callable[..., ServicesRedis]) -> ServicesRedis:
    return shipped_redis()


def _config(client: Any, name: str) -> str:
    value = client.config_get(name)[name]
    return value.decode() if isinstance(value, bytes) else str(value)


def test_a_backup_restores_exactly_and_the_restore_survives_a_restart(
    durable: ServicesRedis, tmp_path: Path
) -> None:
    client = durable.client()
    fill_like_the_app(durable, 500)
    before = snapshot(client)
    assert len(before) == 17 * 4 + 500 + 5  # 17 entities x 4 keys, 500 strings, 5 others

    backups = tmp_path / "backups"
    path = Path(durable.run("redis-backup", str(backups)).strip().splitlines()[-1])
    assert path.parent == backups.resolve()
    assert re.fullmatch(r"redis-\d{8}T\d{6}Z\.rdb", path.name), path
    assert sorted(p.name for p in backups.iterdir()) == [path.name]  # no temporary file left

    # after the backup: changed, deleted, added; then the snapshot comes back, exactly
    client.hset("sa:{e1}:state", "h::0", "changed")
    client.delete("sa:{e3}:k3", "sa:expiring")
    client.set("sa:after-backup", "must go")
    client.zadd("sa:{e1}:timers", {"t0": 99.0})
    assert snapshot(client) != before
    client.close()

    durable.run("redis-restore", str(path))
    client = durable.client()
    assert snapshot(client) == before
    assert _config(client, "appendonly") == "yes"
    data = durable.state / "redis" / "data"
    assert list(data.glob("appendonlydir/*.manifest")), "the append-only file was rewritten"
    assert len(list((durable.state / "redis").glob("data.replaced-*"))) == 1  # the old data, set aside
    client.close()

    # The next start reads the append-only file (not the snapshot): it must hold the restored data.
    durable.down()
    durable.up()
    client = durable.client()
    assert snapshot(client) == before
    assert _config(client, "appendonly") == "yes"
    assert durable.loading_trouble() == []
    # and a crash after the restore: the restored data, and what was written since, all replayed
    fill_like_the_app(durable, 50, tag="after-restore")
    after = snapshot(client)
    client.close()
    time.sleep(1.2)  # past the once-a-second fsync
    durable.kill()
    durable.up()
    client = durable.client()
    assert snapshot(client) == after
    assert durable.loading_trouble() == []
    client.close()


def test_without_persistence_every_start_is_empty(
    tmp_path: Path, shipped_redis: Callable[..., ServicesRedis]
) -> None:
    server = shipped_redis("off")
    client = server.client()
    assert _config(client, "appendonly") == "no"
    assert _config(client, "save") == ""
    fill_like_the_app(server, 10)
    # a backup works here too, and leaves a dump.rdb that the next start must not load
    server.run("redis-backup", str(tmp_path / "backups"))
    client.close()
    server.down()
    server.up()
    client = server.client()
    assert client.dbsize() == 0
    client.close()
