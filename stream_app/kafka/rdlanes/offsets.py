"""The librdkafka consumer thread's answers about the log: watermarks, partition counts, the partition
of a key, topic creation (see :mod:`stream_app.kafka.rdlanes.thread`)."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaException, TopicPartition
from faust.types import TP

from stream_app.kafka.partitioning import murmur2
from stream_app.kafka.rdlanes.properties import CALL_TIMEOUT_S


class LogOffsets:
    """What :class:`~stream_app.kafka.rdlanes.thread.RdConsumerThread` answers about the log, from its
    librdkafka handle (``_rd``, None until the thread started) and its call executor."""

    app: Any
    _rd: Any
    _reader: Any  # the bounded reader of the reporters' topics (None: none)
    _highwaters: dict[TP, int]
    _highwaters_at: float
    _watermark_calls: concurrent.futures.ThreadPoolExecutor
    _ensure: Callable[[], Any]
    _call: Callable[..., Awaitable[Any]]

    def assignment(self) -> set[TP]:
        raise NotImplementedError

    def highwater(self, tp: TP) -> int:
        """The partition's high watermark as librdkafka last saw it (-1: not known yet). Read from a
        copy refreshed in the call executor at most once a second: librdkafka's cached lookup costs
        milliseconds a partition, too much for the app's loop over a hundred partitions."""
        reader = self._reader
        if reader is not None and reader.owns(tp):  # fetched by the bounded reader: its last fetch's
            high: int = reader.highwater(tp)
            return high
        now = time.monotonic()
        if now - self._highwaters_at > 1.0 and self._rd is not None:
            self._highwaters_at = now
            tps = {tp for tp in self.assignment() if reader is None or not reader.owns(tp)}
            self._watermark_calls.submit(self._refresh_highwaters, self._rd, tps)
        return self._highwaters.get(TP(tp.topic, tp.partition), -1)

    def _refresh_highwaters(self, rd: Any, tps: set[TP]) -> None:
        found: dict[TP, int] = {}
        for tp in tps:
            try:
                _, high = rd.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), cached=True)
            except (KafkaException, RuntimeError):
                continue
            if high >= 0:
                found[tp] = int(high)
        self._highwaters = found

    async def _watermarks(self, partitions: Sequence[TP], index: int) -> Mapping[TP, int]:
        rd = self._ensure()

        def each() -> dict[TP, int]:
            return {
                tp: int(
                    rd.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=CALL_TIMEOUT_S)[
                        index
                    ]
                )
                for tp in partitions
            }

        found: dict[TP, int] = await self._call(each)
        return found

    async def earliest_offsets(self, *partitions: TP) -> Mapping[TP, int]:
        return await self._watermarks(partitions, 0)

    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
        return await self._watermarks(partitions, 1)

    def topic_partitions(self, topic: str) -> int | None:
        if self._rd is None:
            return None
        try:
            found = self._rd.list_topics(topic, timeout=2.0).topics.get(topic)
        except KafkaException:
            return None
        return len(found.partitions) if found is not None and found.error is None else None

    def key_partition(self, topic: str, key: bytes | None, partition: int | None = None) -> int | None:
        if partition is not None:
            return partition
        count = self.topic_partitions(topic)
        if count is None or key is None:
            return None
        return (murmur2(key) & 0x7FFFFFFF) % count

    async def create_topic(
        self,
        topic: str,
        partitions: int,
        replication: int,
        *,
        config: Mapping[str, Any] | None = None,
        timeout: Any = 30.0,  # noqa: ASYNC109 - Faust's signature
        retention: Any = None,
        compacting: bool | None = None,
        deleting: bool | None = None,
        ensure_created: bool = False,
    ) -> None:
        """Declared through Faust's producer (aiokafka), as every topic of the app is."""
        await self.app.producer.create_topic(
            topic,
            partitions,
            replication,
            config=config,
            timeout=timeout,
            retention=retention,
            compacting=compacting,
            deleting=deleting,
            ensure_created=ensure_created,
        )
