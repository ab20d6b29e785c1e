"""Producing what a stage outputs: records and dead letters, through the worker's producer
(:mod:`stream_app.kafka.producer`).

:class:`Publisher` produces a batch's outputs, one wait per batch. Failures are judged by
:func:`stream_app.ops.failures.classify_kafka`: transient and blocking ones are retried (the partition
waits, readiness says so); a permanent one — a record Kafka refuses for good — is handed back with the
output, whose ``blame`` tells the stage which input caused it, so the stage can dead-letter that input
and move on. An output over ``STREAM_APP_OUTPUT_MAX_BYTES`` is refused before it is sent. Dead letters
(:mod:`stream_app.kafka.dead_letters`) are bounded to fit; one Kafka refuses for good anyway is sent
again in its minimal form, and if even that is refused it is counted and skipped: a permanent refusal
never makes a stage wait. Outputs are single-object encoded; each is framed for its topic as it is
sent (:mod:`stream_app.wire.framing`: Confluent framing on the public topics
with ``STREAM_APP_OUTPUT_FRAMING=confluent``), so every record a worker writes passes that one object.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from typing_extensions import TypeVar as DefaultedTypeVar

from stream_app.kafka.dead_letters import Letter, LetterBounds, log_rejections, lost
from stream_app.kafka.lanes import Message
from stream_app.logs import get_logger
from stream_app.ops import metrics, retry
from stream_app.ops.failures import UNKNOWN_ATTEMPTS, Failure, classify_kafka
from stream_app.settings import Settings
from stream_app.wire.framing import SINGLE_OBJECT_FRAMING, Framing
from stream_app.wire.schemas import SchemaVersion

log = get_logger(__name__)


B = TypeVar("B")  # what a stage blames an output on
B_co = DefaultedTypeVar("B_co", covariant=True, default=object)  # plain ``Output``: blamed on anything


@dataclass(frozen=True, slots=True)
class Output(Generic[B_co]):
    """One record to publish.

    ``blame``: what a permanent refusal of this record is charged to, typed by the stage that made it
    (an input's index in its batch, the records or entities that caused it); None for outputs nobody
    caused (ticks, the briefing). ``record``: what ``value`` encodes, for the publish observers to read
    (not sent; None where no observer needs it).
    """

    topic: str
    key: bytes | None
    value: bytes | None  # None: a tombstone, on a compacted topic
    timestamp: float | None = None  # seconds, as Faust's producer takes it
    partition: int | None = None  # explicit for the internal topics (see stream_app.kafka.partitioning)
    blame: B_co | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    record: Mapping[str, object] | None = field(default=None, compare=False, repr=False)

    @property
    def size(self) -> int:
        return len(self.key or b"") + len(self.value or b"")


RECEIVED_AT = "stream-app-received-at"
"""Header of a record on the internal topic: when the processor received it (epoch ms, decimal). The
stateful step runs each record at that time, so replaying the log (``stream-app state rebuild``) gives
the very state the live run built: arrival times, lateness, "last received"."""


BULK = "stream-app-bulk"
"""Header of a record on the internal topic that came through a bulk topic (history, backfills): the
stateful step defers republishing the closed periods it changes (``STREAM_APP_BULK_SETTLE_S``)."""


def received_at(now_ms: int, *, bulk: bool = False) -> tuple[tuple[str, bytes], ...]:
    """The headers saying a record was received at ``now_ms`` (through a bulk topic)."""
    if bulk:
        return ((RECEIVED_AT, str(now_ms).encode()), (BULK, b"1"))
    return ((RECEIVED_AT, str(now_ms).encode()),)


def is_bulk(message: Message) -> bool:
    """Whether a record read from the internal topic came through a bulk topic."""
    headers = getattr(message, "headers", None) or ()  # a plain record may have none
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return any(name == BULK for name, _ in pairs)


def received_at_of(message: Message) -> int | None:
    """When a record read from the internal topic was received (None: a record without the header)."""
    headers = getattr(message, "headers", None) or ()  # a plain record may have none
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in pairs:
        if name == RECEIVED_AT and value:
            try:
                return int(bytes(value).decode())
            except ValueError:
                return None
    return None


# Topic name -> a function told of every record published there (e.g. counting alert transitions
# by domain from ``Output.record``, agents/alert_bridge.py). Keyed by topic, so registering twice replaces.
PUBLISH_OBSERVERS: dict[str, Callable[[Output[object]], None]] = {}


class Sender(Protocol):
    """What hands a batch of framed outputs to Kafka: :class:`stream_app.kafka.producer.DirectProducer`
    (librdkafka, one wake per batch)."""

    async def send_batch(
        self, outputs: Sequence[Output[object]], values: Sequence[bytes | None]
    ) -> list[BaseException | None]: ...

    def close(self) -> None: ...


class Publisher:
    """Produces outputs and dead letters through one sender (one per worker)."""

    def __init__(
        self,
        sender: Sender,
        settings: Settings,
        dead_letter_schema: SchemaVersion,
        framing: Framing = SINGLE_OBJECT_FRAMING,
    ) -> None:
        self._settings = settings
        self._schema = dead_letter_schema
        self.framing = framing
        self.max_bytes = settings.output_max_bytes
        self._bounds = LetterBounds.from_settings(settings)
        self._sender: Sender = sender

    async def publish(
        self, outputs: Sequence[Output[B]], letters: Sequence[Letter] = ()
    ) -> list[tuple[Output[B], BaseException]]:
        """Send ``outputs`` and ``letters`` and wait until Kafka acknowledged each (or refused it for good).

        Transient and blocking failures are retried, with backoff, for the records that met them; a
        retried record may be published twice, which consumers of this project tolerate (alert ids are
        deterministic, the stateful step ignores an observation it applied). Returns the outputs refused
        for good, each with why: over the size budget, or refused by Kafka.
        """
        refused: list[tuple[Output[B], BaseException]] = []
        sendable: list[Output[object]] = []
        for output in outputs:
            if output.size > self.max_bytes:
                refused.append((output, OutputTooLargeError(output.size, self.max_bytes)))
            else:
                sendable.append(output)
        log_rejections(letters)
        encoded = [self._fitting(letter) for letter in letters]
        failed: list[tuple[Output[object], BaseException]] = []
        await self._deliver(sendable, encoded, failed)
        handed = {id(output): output for output in outputs}  # each refused output, as the stage typed it
        return refused + [(handed[id(output)], error) for output, error in failed]

    async def publish_dead_letters(self, letters: Sequence[Letter]) -> None:
        """Send dead letters: each is taken, taken in its minimal form, or counted as lost (see
        :mod:`stream_app.kafka.dead_letters`); only a transient or blocking failure makes this wait."""
        if letters:
            log_rejections(letters)
            await self._deliver([], [self._fitting(letter) for letter in letters], [])

    def _fitting(self, letter: Letter) -> tuple[Letter, Output[object]]:
        """The letter bounded to fit (:meth:`Letter.fitted`), encoded; its minimal form should it still
        not fit (it always does with the settings' own check: this is the belt with the braces)."""
        letter = letter.fitted(self._bounds)
        encoded = self._encoded(letter)
        if encoded.size > self.max_bytes:
            letter = letter.minimal()
            encoded = self._encoded(letter)
        return letter, encoded

    def _encoded(self, letter: Letter) -> Output[object]:
        return Output(letter.topic, letter.key, letter.encode(self._schema))

    async def _deliver(
        self,
        outputs: list[Output[object]],
        letters: list[tuple[Letter, Output[object]]],
        refused: list[tuple[Output[object], BaseException]],
    ) -> None:
        pending: list[tuple[Letter | None, Output[object]]] = [(None, o) for o in outputs] + list(letters)
        backoff, attempt = retry.Backoff.from_settings(self._settings), 0
        unknown: Counter[int] = Counter()  # per pending output (by id): UNKNOWN failures so far
        produced: Counter[str] = Counter()
        suspects: list[tuple[Output[object], BaseException]] = []
        with retry.waiting("produce") as mark:
            while pending:
                results = await self._send([o for _, o in pending])
                again: list[tuple[Letter | None, Output[object]]] = []
                failure_seen: BaseException | None = None
                for (letter, output), error in zip(pending, results, strict=True):
                    if error is None:
                        produced[output.topic] += 1
                        observer = PUBLISH_OBSERVERS.get(output.topic)
                        if observer is not None:
                            observer(output)
                        continue
                    failure = classify_kafka(error)
                    if failure is Failure.UNKNOWN:
                        unknown[id(output)] += 1
                        if unknown[id(output)] > UNKNOWN_ATTEMPTS:
                            failure = Failure.PERMANENT
                    if failure.retried:
                        again.append((letter, output))
                        failure_seen = error
                    elif letter is None:
                        suspects.append((output, error))
                    elif not letter.record["minimal"]:  # refused for good: its minimal form, at once
                        metrics.DEAD_LETTERS_REDUCED.labels(letter.record["stage"] or "unknown").inc()
                        smaller = letter.minimal()
                        again.append((smaller, self._encoded(smaller)))
                    else:  # even the minimal letter: counted, logged, skipped (never a wait)
                        lost(letter, error)
                pending = again
                if pending and failure_seen is not None:
                    attempt += 1
                    mark()
                    delay = backoff.next()
                    metrics.RETRIES.labels("produce").inc()
                    log.warning(
                        "produce_retrying",
                        records=len(pending),
                        attempt=attempt,
                        retry_in_s=round(delay, 3),
                        error=repr(failure_seen)[:300],
                    )
                    await asyncio.sleep(delay)
        refused.extend(await self._isolate(suspects, produced))
        for name, count in produced.items():  # once per topic and batch: a labelled metric has a cost
            metrics.RECORDS_PRODUCED.labels(name).inc(count)

    async def _isolate(
        self, suspects: list[tuple[Output[object], BaseException]], produced: Counter[str]
    ) -> list[tuple[Output[object], BaseException]]:
        """Send each output Kafka refused for good once more, alone: a producer batch is refused whole, so
        its innocent neighbours go through on their own and only the culprit stays refused."""
        if len(suspects) <= 1:
            return suspects
        refused: list[tuple[Output[object], BaseException]] = []
        for output, _error in suspects:
            (result,) = await self._send([output])
            if result is None:
                produced[output.topic] += 1
            elif classify_kafka(result).retried:  # a transient failure alone: waited out like any other
                await self._deliver([output], [], refused)
            else:
                refused.append((output, result))
        return refused

    async def _send(self, outputs: Sequence[Output[object]]) -> list[BaseException | None]:
        """Hand every output to the producer, then wait for all of them; one result per output."""
        # a record it cannot frame is a defect: raised
        values = [self.framing.frame(o.topic, o.value) for o in outputs]
        return await self._sender.send_batch(outputs, values)

    def close(self) -> None:
        """Stop the producer (every batch was awaited: normally nothing is left to flush)."""
        self._sender.close()

    def written(self, topic: str) -> dict[int, int]:
        """Partition -> the highest offset this publisher wrote to ``topic`` (what its sender tracks)."""
        offsets: Mapping[tuple[str, int], int] = getattr(self._sender, "written", {})
        return {partition: offset for (name, partition), offset in list(offsets.items()) if name == topic}


class OutputTooLargeError(ValueError):
    """An output over the size budget: never sent, the input that produced it is dead-lettered."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"output of {size} bytes exceeds STREAM_APP_OUTPUT_MAX_BYTES ({limit})")
        self.size = size
