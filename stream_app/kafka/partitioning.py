"""Which partition of the internal topic an entity lives on: Kafka's own default partitioner.

The intake sends every record of an entity to ``partition_for(entity, n)`` explicitly, and the
timer-driven rules of a partition enumerate the entities that live there with the same function,
so the two can never disagree. It is the murmur2 hash Kafka's Java client uses for keyed records,
so a Java or librdkafka (``murmur2_random``) producer keying by the entity lands on the same partition.
"""

from __future__ import annotations

import functools

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` (seed 0x9747b28c), as an unsigned 32-bit integer."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    for i in range(0, length - length % 4, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length & ~3
    rest = length % 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


@functools.lru_cache(maxsize=262_144)  # entities are few and recur (the hash is ~8 µs in Python)
def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key`` among ``partitions``."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


TICK_KEY = b"__tick__"
"""The key of the timer ticks on the internal topic (a tick is addressed by partition, not by key)."""
