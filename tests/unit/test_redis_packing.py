"""The worker's Redis connections pack commands with hiredis: the same bytes as redis-py's own packer."""

from __future__ import annotations

import random
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection
from redis.exceptions import DataError

from stream_app.settings import Settings
from stream_app.state.connection import connect, packing_with_hiredis


def _wire(connection: AbstractConnection, *args: Any) -> bytes:
    return b"".join(bytes(chunk) for chunk in connection.pack_command(*args))


def _argument(rng: random.Random) -> Any:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 40))
    if kind == 1:
        return "".join(rng.choice("aZ9 |:é Đ-ệ{}\x00") for _ in range(rng.randrange(0, 20)))
    if kind == 2:
        return rng.randrange(-(2**63), 2**63)
    if kind == 3:
        return rng.choice([0.1, -0.0, 1e20, 1.5, float("inf"), 3.141592653589793, 1e-7])
    if kind == 4:
        return memoryview(rng.randbytes(rng.randrange(0, 10)))
    return rng.randbytes(70_000)  # above redis-py's chunking cut-off


def test_same_bytes_as_redis_py() -> None:
    rng = random.Random(7)
    fast, plain = packing_with_hiredis(Connection)(), Connection()
    for _ in range(2_000):
        args = [rng.choice(["EVALSHA", "HSET", b"GET", "CLIENT SETNAME"])]
        args += [_argument(rng) for _ in range(rng.randrange(0, 30))]
        assert _wire(fast, *args) == _wire(plain, *args)


def test_refuses_what_redis_py_refuses() -> None:
    fast = packing_with_hiredis(Connection)()
    for bad in (True, None, object()):
        with pytest.raises(DataError):
            fast.pack_command("SET", b"k", bad)  # type: ignore[arg-type]  # refused, as it should be


def test_pipelines_and_tls_connections_too() -> None:
    fast_tls = packing_with_hiredis(SSLConnection)
    assert issubclass(fast_tls, SSLConnection)
    assert packing_with_hiredis(SSLConnection) is fast_tls  # one class per base
    commands = [("HSET", b"h", "f", 1), ("EXPIRE", b"h", 60), ("EVALSHA", "abc", 1, b"k", 2.5)]
    assert b"".join(fast_tls().pack_commands(commands)) == b"".join(SSLConnection().pack_commands(commands))


@pytest.mark.parametrize(
    ("url", "cluster", "base"),
    [
        ("redis://127.0.0.1:6379/0", False, Connection),
        ("rediss://127.0.0.1:6380/0", False, SSLConnection),
        ("rediss://127.0.0.1:7001,127.0.0.1:7002", True, SSLConnection),
    ],
)
def test_the_clients_connect_with_it(url: str, *, cluster: bool, base: type[Connection]) -> None:
    client = connect(Settings(redis_url=url, redis_cluster=cluster))  # no connection made yet
    if isinstance(client, RedisCluster):
        made = client.nodes_manager.connection_kwargs["connection_class"]
    else:
        made = client.connection_pool.connection_class
    assert made is packing_with_hiredis(base)
