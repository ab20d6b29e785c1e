"""A stand-in for Faust's producer in unit tests of what the agents publish (it acknowledges every send
at once and keeps it), and the publisher's sender over such a producer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from stream_app.kafka.publisher import Output


class AckingProducer:
    """Acknowledges every send; ``sent`` holds (topic, key, value) in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, bytes | None]] = []

    async def send(  # noqa: PLR0917 - the signature of Faust's producer
        self, topic: str, key: Any, value: bytes | None, partition: Any, timestamp: Any, headers: Any
    ) -> Any:
        self.sent.append((topic, key, value))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    def values(self) -> dict[str, bytes | None]:
        """The last value sent to each topic."""
        return {topic: value for topic, _, value in self.sent}


class FaustProducer(Protocol):
    """The send of Faust's producer (aiokafka): a future per record."""

    async def send(  # noqa: PLR0917 - the signature of Faust's producer
        self, topic: str, key: Any, value: bytes | None, partition: Any, timestamp: Any, headers: Any
    ) -> Any: ...


class ProducerSender:
    """A publisher's sender (:class:`stream_app.kafka.publisher.Sender`) over a stand-in producer."""

    def __init__(self, producer: FaustProducer) -> None:
        self.producer = producer

    async def send_batch(
        self, outputs: Sequence[Output], values: Sequence[bytes | None]
    ) -> list[BaseException | None]:
        handles: list[Any] = []
        for o, value in zip(outputs, values, strict=True):
            try:
                headers = list(o.headers) or None
                handles.append(
                    await self.producer.send(o.topic, o.key, value, o.partition, o.timestamp, headers)
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # refused before it was queued
                handles.append(exc)
        waiting = [h for h in handles if not isinstance(h, BaseException)]
        if waiting:
            await asyncio.gather(*waiting, return_exceptions=True)
        return [h if isinstance(h, BaseException) else h.exception() for h in handles]

    def close(self) -> None:
        """Nothing to stop."""
