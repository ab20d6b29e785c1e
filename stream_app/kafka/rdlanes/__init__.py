"""The lanes on librdkafka (``STREAM_APP_CONSUMER_DRIVER=librdkafka``, opt-in): the lane consumer
and transport over :class:`~stream_app.kafka.rdlanes.thread.RdConsumerThread` (threads, rebalances,
pauses and unreadable batches are described there)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from faust.types import TP, ConsumerMessage

from stream_app.kafka.lanes import LaneConsumer, LaneTransport
from stream_app.kafka.rdlanes.properties import consumer_properties
from stream_app.kafka.rdlanes.records import to_message
from stream_app.kafka.rdlanes.thread import RdConsumerThread

__all__ = ["RdConsumerThread", "RdLaneConsumer", "RdLaneTransport", "consumer_properties"]


class RdLaneConsumer(LaneConsumer):
    """The lane consumer on librdkafka (see the module)."""

    _thread: Any

    def _new_consumer_thread(self) -> Any:
        return RdConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _to_message(self, tp: TP, record: Any) -> ConsumerMessage:
        if isinstance(record, ConsumerMessage):  # made in the consumer thread
            return record
        return to_message(tp, record, self.app.consumer_generation_id)

    async def _wait_next_records(self, timeout: float) -> tuple[Any, set[TP] | None]:  # noqa: ASYNC109
        """Faust's, but while the flow is stopped (a rebalance) ``consume()`` is still called, with every
        partition paused: librdkafka serves the group's callbacks only there."""
        try:
            self.not_waiting_next_records.set()
            # a copy: the thread reads it while the loop pauses and resumes partitions
            active = set(self._get_active_partitions()) if self.flow_active else set()
            records = await self._getmany(active_partitions=active, timeout=timeout)
            return records, active
        finally:
            self.not_waiting_next_records.set()

    async def committed_offsets(
        self, partitions: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], int | None]:
        result: dict[tuple[str, int], int | None] = await self._thread.committed_offsets(partitions)
        return result

    def verify_event_path(self, now: float, tp: TP) -> None:
        return None


class RdLaneTransport(LaneTransport):
    """Faust's transport with the lane consumer on librdkafka; the producer stays Faust's (aiokafka)."""

    Consumer = RdLaneConsumer
