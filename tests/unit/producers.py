"""A stand-in for Faust's producer in unit tests of what the agents publish: it acknowledges every send
at once and keeps it."""

from __future__ import annotations

import asyncio
from typing import Any


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


class ProducerApp:
    """What the publisher asks of a Faust app: its producer."""

    def __init__(self, producer: AckingProducer) -> None:
        self.producer = producer

    async def maybe_start_producer(self) -> AckingProducer:
        return self.producer
