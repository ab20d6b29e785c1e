"""Redis keeps what it acknowledged. The local services' Redis (TLS, ACL users, an append-only file
fsynced every second, RDB snapshots) is backed up and restored with ``deploy/local/services
redis-backup`` / ``redis-restore``, and a killed Redis process comes back with every write. Each test
runs a private Redis of the services script (its own state directory and port), never the shared one."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from stream_app.settings import REPO_ROOT

from .support import free_port

SERVICES = REPO_ROOT / "deploy" / "local" / "services"
SAVE_POINTS = "3600 1 300 100 60 10000"


class ServicesRedis:
    """A Redis started by ``deploy/local/services up redis`` in a state directory of the test's own."""

    def __init__(self, state: Path, persistence: str = "durable") -> None:
        self.state = state
        self.port = free_port()
        self.persistence = persistence

    def run(self, *args: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SERVICES_")}
        env.update(
            SERVICES_STATE_DIR=str(self.state),
            SERVICES_REDIS_PORT=str(self.port),
            SERVICES_MONITORING="0",
            SERVICES_REDIS_PERSISTENCE=self.persistence,
        )
        done = subprocess.run(
            [str(SERVICES), *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            pytest.fail(f"services {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
        return done.stdout

    def client(self) -> Any:
        """An admin connection; ``Any``: redis-py types its replies as unions with ``Awaitable``."""
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            ssl=True,
            ssl_ca_certs=str(self.state / "tls" / "ca.pem"),
            username="admin",
            password=(self.state / "secrets" / "redis-admin").read_text(encoding="utf-8").strip(),
            socket_timeout=5,
        )

    @property
    def pid(self) -> int:
        return int((self.state / "redis" / "redis.pid").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory with the local CA, the certificates and the secrets, made once (2-3 s)."""
    state = tmp_path_factory.mktemp("services-template")
    server = ServicesRedis(state)
    server.run("up", "redis")
    server.run("down", "redis")
    return state


def _private(state: Path, credentials: Path, persistence: str = "durable") -> ServicesRedis:
    for folder in ("tls", "secrets"):
        shutil.copytree(credentials / folder, state / folder)
    return ServicesRedis(state, persistence)


@pytest.fixture
def durable(tmp_path: Path, credentials: Path) -> Iterator[ServicesRedis]:
    server = _private(tmp_path / "state", credentials)
    server.run("up", "redis")
    yield server
    server.run("down", "redis")


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _config(client: Any, name: str) -> str:
    value = client.config_get(name)[name]
    return value.decode() if isinstance(value, bytes) else str(value)


def _fill(client: Any, count: int) -> None:
    """Keys of every kind the app writes, binary values, an expiry."""
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        pipe.set(f"sa:{{e{i % 17}}}:k{i}", f"v{i}".encode() + bytes([i % 256]))
    pipe.hset("sa:{e1}:state", mapping={f"h::{i}": f"{i},{i * 0.5}" for i in range(300)})
    pipe.zadd("sa:{e1}:timers", {f"t{i}": i * 1.5 for i in range(100)})
    pipe.sadd("sa:{e1}:seen", *[f"MAE|obs-{i}" for i in range(100)])
    pipe.rpush("sa:list", *[bytes(range(256)), b"", b"x"])
    pipe.set("sa:marks:applied", "internal.observations.by-entity:0=41")
    pipe.set("sa:expiring", "soon", ex=3600)
    pipe.execute()


def _snapshot(client: Any) -> dict[bytes, tuple[bytes, object, bool]]:
    """Every key: its type, its whole value, whether it expires."""
    keys = sorted(client.scan_iter(count=1000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
        pipe.ttl(key)
    found = pipe.execute()
    kinds, ttls = found[0::2], found[1::2]
    read = {
        b"string": pipe.get,
        b"hash": pipe.hgetall,
        b"set": pipe.smembers,
        b"zset": lambda key: pipe.zrange(key, 0, -1, withscores=True),
        b"list": lambda key: pipe.lrange(key, 0, -1),
    }
    for key, kind in zip(keys, kinds, strict=True):
        read[kind](key)
    values = pipe.execute()
    return {
        key: (kind, value, ttl > 0) for key, kind, value, ttl in zip(keys, kinds, values, ttls, strict=True)
    }


def test_a_backup_restores_exactly_and_the_restore_survives_a_restart(
    durable: ServicesRedis, tmp_path: Path
) -> None:
    client = durable.client()
    _fill(client, 500)
    before = _snapshot(client)
    assert len(before) == 506

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
    assert _snapshot(client) != before
    client.close()

    durable.run("redis-restore", str(path))
    client = durable.client()
    assert _snapshot(client) == before
    assert _config(client, "appendonly") == "yes"
    data = durable.state / "redis" / "data"
    assert list(data.glob("appendonlydir/*.manifest")), "the append-only file was rewritten"
    assert len(list((durable.state / "redis").glob("data.replaced-*"))) == 1  # the old data, set aside
    client.close()

    # The next start reads the append-only file (not the snapshot): it must hold the restored data.
    durable.run("down", "redis")
    durable.run("up", "redis")
    client = durable.client()
    assert _snapshot(client) == before
    assert _config(client, "appendonly") == "yes"
    client.close()


@pytest.mark.chaos
def test_a_killed_redis_comes_back_with_every_acknowledged_write(durable: ServicesRedis) -> None:
    client = durable.client()
    assert _config(client, "appendonly") == "yes"
    assert _config(client, "appendfsync") == "everysec"
    assert _config(client, "save") == SAVE_POINTS
    assert _config(client, "dir") == str((durable.state / "redis" / "data").resolve())

    _fill(client, 5000)
    client.incrby("sa:counter", 7)
    before = _snapshot(client)
    # no RDB snapshot holds these writes (5000 changes: under every save point); only the AOF can
    assert int(client.info("persistence")["rdb_changes_since_last_save"]) >= 5000
    client.close()
    time.sleep(1.2)  # past the once-a-second fsync: even a host crash would keep them now

    pid = durable.pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(pid)

    durable.run("up", "redis")  # finds the pid file stale, starts it again on its data
    assert durable.pid != pid
    client = durable.client()
    assert _snapshot(client) == before
    client.close()


def test_without_persistence_every_start_is_empty(tmp_path: Path, credentials: Path) -> None:
    server = _private(tmp_path / "state", credentials, persistence="off")
    server.run("up", "redis")
    try:
        client = server.client()
        assert _config(client, "appendonly") == "no"
        assert _config(client, "save") == ""
        _fill(client, 10)
        # a backup works here too, and leaves a dump.rdb that the next start must not load
        server.run("redis-backup", str(tmp_path / "backups"))
        client.close()
        server.run("down", "redis")
        server.run("up", "redis")
        client = server.client()
        assert client.dbsize() == 0
        client.close()
    finally:
        server.run("down", "redis")
