"""The worker's producer for its outputs: librdkafka (confluent-kafka), a whole batch per wait.

Faust's producer (aiokafka) costs a future, a partitioner call and a trip through its accumulator per
record, all on the event loop. Here a batch is handed to librdkafka in one loop (about a microsecond per
record), librdkafka's own threads batch, compress and send it, and a poll thread reports the deliveries;
the event loop wakes once, when the last record of the batch is acknowledged (``acks=all``).

Errors come back as aiokafka's exception classes for the same Kafka error codes, so the failure policy
(:func:`stream_app.ops.failures.classify_kafka`) judges them as it judged Faust's producer's.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from aiokafka import errors as kafka_errors
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka import Message as KafkaMessage

from stream_app.kafka.config import confluent_config
from stream_app.logs import get_logger
from stream_app.settings import Settings

log = get_logger(__name__)


class Sendable(Protocol):
    """What :meth:`DirectProducer.send_batch` sends: an output already framed for its topic."""

    @property
    def topic(self) -> str: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def partition(self) -> int | None: ...
    @property
    def timestamp(self) -> float | None: ...
    @property
    def headers(self) -> tuple[tuple[str, bytes], ...]: ...


# librdkafka's own (negative) error codes, as the aiokafka errors the failure policy knows
_LOCAL_ERRORS: dict[int, type[Exception]] = {
    KafkaError._MSG_TIMED_OUT: kafka_errors.KafkaTimeoutError,
    KafkaError._TIMED_OUT: kafka_errors.KafkaTimeoutError,
    KafkaError._QUEUE_FULL: kafka_errors.KafkaTimeoutError,
    KafkaError._TRANSPORT: kafka_errors.KafkaConnectionError,
    KafkaError._ALL_BROKERS_DOWN: kafka_errors.KafkaConnectionError,
    KafkaError._UNKNOWN_TOPIC: kafka_errors.UnknownTopicOrPartitionError,
    KafkaError._UNKNOWN_PARTITION: kafka_errors.UnknownTopicOrPartitionError,
    KafkaError._AUTHENTICATION: kafka_errors.TopicAuthorizationFailedError,
}


def as_error(error: KafkaError) -> Exception:
    """A librdkafka error as the aiokafka exception for the same Kafka error code."""
    code = error.code()
    text = f"{error.name()}: {error.str()}"
    kind: type[Exception] = (
        kafka_errors.for_code(code) if code > 0 else _LOCAL_ERRORS.get(code, kafka_errors.KafkaError)
    )
    return kind(text)


class _Batch:
    """The results of one batch, filled by librdkafka's delivery reports (in the poll thread)."""

    __slots__ = ("future", "lock", "loop", "remaining", "results", "written")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, size: int, written: dict[tuple[str, int], int]
    ) -> None:
        self.loop = loop
        self.written = written
        self.future: asyncio.Future[None] = loop.create_future()
        self.results: list[BaseException | None] = [None] * size
        self.remaining = size
        self.lock = threading.Lock()  # reports come from the poll thread, refusals from the event loop

    def delivered(self, index: int, error: KafkaError | None) -> None:
        if error is not None:
            self.results[index] = as_error(error)
        with self.lock:
            self.remaining -= 1
            last = self.remaining == 0
        if last:
            self.loop.call_soon_threadsafe(self._done)

    def _done(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class DirectProducer:
    """One librdkafka producer and the thread that serves its delivery reports."""

    def __init__(self, settings: Settings, client_id: str) -> None:
        self._producer = Producer(
            confluent_config(
                settings,
                **{
                    "client.id": client_id,
                    # keyed records where the Java client (and aiokafka, before) put them: a compacted
                    # topic's tombstone must land in its record's partition
                    "partitioner": "murmur2_random",
                    "acks": "all",
                    "enable.idempotence": False,  # ordering per partition is kept by one in-flight batch
                    "max.in.flight.requests.per.connection": 1,
                    "linger.ms": 5,
                    "batch.size": 1_000_000,
                    "compression.type": "lz4",
                    "message.max.bytes": max(1_048_576, settings.output_max_bytes + 64 * 1024),
                    "queue.buffering.max.kbytes": 65_536,  # bounds the worker's memory for outputs
                    "message.timeout.ms": 30_000,
                    "logger": logging.getLogger("stream_app.librdkafka"),
                },
            )
        )
        # (topic, partition) -> the highest offset this producer wrote there (from delivery reports)
        self.written: dict[tuple[str, int], int] = {}
        self._stopping = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="stream-app-producer", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stopping.is_set():
            try:
                self._producer.poll(0.05)
            except Exception:  # a report that could not be handed over: never let the thread die
                log.exception("producer_poll_failed")

    async def send_batch(
        self, outputs: Sequence[Sendable], values: Sequence[bytes | None]
    ) -> list[BaseException | None]:
        """Produce ``outputs`` (with the framed ``values``) and wait until Kafka acknowledged or refused
        every one; one result per output, None when delivered."""
        if not outputs:
            return []
        batch = _Batch(asyncio.get_running_loop(), len(outputs), self.written)
        produce = self._producer.produce
        for index, (output, value) in enumerate(zip(outputs, values, strict=True)):
            report = _report(batch, index)
            while True:
                try:
                    produce(
                        output.topic,
                        value,
                        output.key,
                        partition=-1 if output.partition is None else output.partition,
                        on_delivery=report,
                        timestamp=0 if output.timestamp is None else int(output.timestamp * 1000),
                        headers=list(output.headers) if output.headers else None,
                    )
                    break
                except BufferError:  # librdkafka's queue is full: let the poll thread drain it
                    await asyncio.sleep(0.01)
                except KafkaException as exc:  # refused before it was queued (too large, say)
                    batch.delivered(index, exc.args[0])
                    break
        await batch.future
        return batch.results

    def flush(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for what is queued; returns how many records are still queued."""
        return int(self._producer.flush(timeout))

    def close(self, timeout: float = 2.0) -> None:
        left = self.flush(timeout)
        if left:
            log.warning("producer_closed_with_records_queued", records=left)
        self._stopping.set()
        self._poller.join(timeout=1.0)


def _report(batch: _Batch, index: int) -> Any:
    def delivered(error: KafkaError | None, message: KafkaMessage) -> None:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if error is None and topic is not None and partition is not None and offset is not None:
            where = (topic, partition)
            if offset > batch.written.get(where, -1):
                batch.written[where] = offset
        batch.delivered(index, error)

    return delivered
