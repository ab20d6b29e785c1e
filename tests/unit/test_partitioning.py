"""The entity partitioner is Kafka's default one (murmur2), so any client keying by entity agrees."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from stream_app.kafka.partitioning import murmur2, partition_for


@pytest.mark.parametrize(
    ("text", "java_int"),
    [
        # Values of org.apache.kafka.common.utils.Utils.murmur2 (signed 32-bit, as Java prints them).
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("a-little-bit-longer-string", -1486304829),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        ("abc", 479470107),
    ],
)
def test_murmur2_matches_kafkas_java_client(text: str, java_int: int) -> None:
    assert murmur2(text.encode()) == java_int & 0xFFFFFFFF


def test_murmur2_matches_aiokafka_on_random_keys() -> None:
    rng = random.Random(11)
    for _ in range(500):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64)))
        assert murmur2(data) == aiokafka_murmur2(data) & 0xFFFFFFFF


def test_partition_for_spreads_entities_and_is_stable() -> None:
    keys = [f"ENV.AQI|{r:02d}|-" for r in range(100)]
    parts = [partition_for(k, 4) for k in keys]
    assert set(parts) == {0, 1, 2, 3}
    assert parts == [partition_for(k, 4) for k in keys]
