"""A restart replays everything, on Redis as ``make services`` ships it (TLS, the ACL file with its
default user, AOF everysec + RDB): after SIGKILL, after a clean shutdown, and after an append-only file
rewrite, every key comes back, and Redis's log shows no error while loading.

Until the default user held the permissions that Redis 7.0's AOF-loading client is checked against at
EXEC (deploy/redis/default-user.acl), every MULTI/EXEC in the file — every script that wrote more than
one command: every entity commit — was refused while loading and silently dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from .support import ServicesRedis, fill_like_the_app, snapshot

SAVE_POINTS = "3600 1 300 100 60 10000"


def _config(client: Any, name: str) -> str:
    value = client.config_get(name)[name]
    return value.decode() if isinstance(value, bytes) else str(value)


def _after_fsync() -> None:
    time.sleep(1.2)  # past the once-a-second fsync: even a host crash would keep the writes now


def _rewrite_aof(client: Any) -> None:
    client.bgrewriteaof()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        info = client.info("persistence")
        if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
            assert info["aof_last_bgrewrite_status"] == "ok", info
            return
        time.sleep(0.1)
    pytest.fail("the append-only file rewrite did not finish in 60 s")


@pytest.fixture
def durable(shipped_redis: Callable[..., ServicesRedis]) -> ServicesRedis:
    server = shipped_redis()
    client = server.client()
    assert _config(client, "appendonly") == "yes"
    assert _config(client, "appendfsync") == "everysec"
    assert _config(client, "save") == SAVE_POINTS
    assert _config(client, "dir") == str((server.state / "redis" / "data").resolve())
    client.close()
    return server


@pytest.mark.parametrize("how", ["sigkill", "shutdown", "sigkill-after-rewrite"])
def test_a_restart_brings_back_every_key_and_loads_without_an_error(durable: ServicesRedis, how: str) -> None:
    fill_like_the_app(durable, 3000)
    client = durable.client()
    if how == "sigkill-after-rewrite":
        _rewrite_aof(client)  # the file's base is now a snapshot; what follows is appended to it
        fill_like_the_app(durable, 500, tag="after-rewrite")
    before = snapshot(client)
    # no RDB snapshot holds these writes (under every save point): only the append-only file can
    assert int(client.info("persistence")["rdb_changes_since_last_save"]) >= 3000 or how.endswith("rewrite")
    client.close()
    _after_fsync()

    if how == "shutdown":
        durable.down()  # SIGTERM: Redis saves and exits
    else:
        durable.kill()
    durable.up()  # `services up redis`: finds the stale pid file, starts it again on its data

    client = durable.client()
    assert snapshot(client) == before
    assert durable.loading_trouble() == []
    client.close()


def test_the_default_user_is_useless_to_a_stranger(durable: ServicesRedis) -> None:
    """The default user holds every permission (for the AOF-loading client), but nobody can use it."""
    stranger = redis.Redis(
        host="127.0.0.1",
        port=durable.port,
        ssl=True,
        ssl_ca_certs=str(durable.state / "tls" / "ca.pem"),
        socket_timeout=5,
    )
    with pytest.raises(redis.AuthenticationError):
        stranger.get("sa:{meta}:epoch")
    for password in ("", "default", durable.secret("redis-admin")):
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(
                host="127.0.0.1",
                port=durable.port,
                ssl=True,
                ssl_ca_certs=str(durable.state / "tls" / "ca.pem"),
                username="default",
                password=password,
                socket_timeout=5,
            ).ping()
    admin = durable.client()
    rules = admin.acl_getuser("default")
    assert "off" in rules["flags"], rules
    assert "nopass" not in rules["flags"], rules
    assert not rules["passwords"], rules
    admin.close()
