"""The agents' shared machinery without a broker: the publisher's failure handling (with a scripted
producer standing in for Kafka) and what a batch handler's crash does."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from unittest.mock import AsyncMock

import faust
import pytest
from aiokafka import errors as kafka_errors
from faust.types import TP

from stream_app.agents._batch import batch_agent
from stream_app.domain.model import Rejection
from stream_app.domain.reasons import Reason
from stream_app.kafka.dead_letters import Letter, dead_letter
from stream_app.kafka.lanes import Delivery, Event, Lanes, Received
from stream_app.kafka.publisher import Output, Publisher
from stream_app.ops import metrics, retry
from stream_app.settings import Settings
from stream_app.wire import codecs
from stream_app.wire.schemas import load_schemas
from tests.unit.producers import ProducerSender

pytestmark = pytest.mark.asyncio

SETTINGS = Settings(retry_initial_s=0.001, retry_max_s=0.002)


class ScriptedProducer:
    """Answers each send with what ``verdict(topic, value, attempt)`` says: None (acknowledged) or an
    exception; records every send."""

    def __init__(self, verdict: Callable[[str, bytes | None, int], BaseException | None]) -> None:
        self.verdict = verdict
        self.sent: list[tuple[str, bytes | None]] = []
        self.attempts: dict[bytes | None, int] = {}

    async def send(  # noqa: PLR0917 - the signature of Faust's producer
        self, topic: str, key: Any, value: bytes | None, partition: Any, timestamp: Any, headers: Any
    ) -> Any:
        attempt = self.attempts.get(value, 0)
        self.attempts[value] = attempt + 1
        self.sent.append((topic, value))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        error = self.verdict(topic, value, attempt)
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
        return future


def _publisher(
    verdict: Callable[[str, bytes | None, int], BaseException | None],
) -> tuple[Publisher, ScriptedProducer]:
    producer = ScriptedProducer(verdict)
    schema = load_schemas(SETTINGS.schemas_dir).latest("dead_letter")
    return Publisher(ProducerSender(producer), SETTINGS, schema), producer


def _letter(original: bytes) -> Letter:
    message = SimpleNamespace(topic="t", partition=0, offset=1, key=None, value=original, headers=[])
    return dead_letter(message, "dlq", Rejection(Reason.UNDECODABLE, "m"), now_ms=0, stage="intake")


async def test_transient_failures_are_retried_until_acknowledged_and_readiness_says_so() -> None:
    seen_waiting: list[frozenset[str]] = []

    def verdict(topic: str, value: bytes | None, attempt: int) -> BaseException | None:
        seen_waiting.append(retry.retrying())
        return kafka_errors.NotLeaderForPartitionError() if attempt < 3 else None

    publisher, producer = _publisher(verdict)
    refused = await publisher.publish([Output("out", b"k", b"a"), Output("out", b"k", b"b")])
    assert refused == []
    assert producer.attempts == {b"a": 4, b"b": 4}
    assert "produce" in seen_waiting[-1], "while retrying, readiness names the operation"
    assert "produce" not in retry.retrying(), "and stops naming it once delivered"


async def test_a_record_refused_for_good_is_handed_back_and_its_batch_neighbours_are_not() -> None:
    """Kafka refuses a producer batch whole: each refused output is tried once more alone."""

    def verdict(topic: str, value: bytes | None, attempt: int) -> BaseException | None:
        if value == b"huge" or attempt == 0:
            refused: BaseException = kafka_errors.MessageSizeTooLargeError()  # aiokafka is untyped
            return refused
        return None

    publisher, _ = _publisher(verdict)
    outputs = [
        Output("out", None, b"small", blame=0),
        Output("out", None, b"huge", blame=1),
        Output("out", None, b"ok", blame=2),
    ]
    refused = await publisher.publish(outputs)
    assert [(o.blame, type(e).__name__) for o, e in refused] == [(1, "MessageSizeTooLargeError")]


async def test_an_output_over_the_budget_is_never_sent() -> None:
    publisher, producer = _publisher(lambda *_: None)
    big = Output("out", None, b"x" * (SETTINGS.output_max_bytes + 1), blame="E")
    refused = await publisher.publish([big, Output("out", None, b"fine")])
    assert [o.blame for o, _ in refused] == ["E"]
    assert producer.sent == [("out", b"fine")]


async def test_unknown_server_errors_are_retried_a_few_times_then_refused() -> None:
    publisher, producer = _publisher(lambda *_: kafka_errors.UnknownError())
    refused = await publisher.publish([Output("out", None, b"v", blame=7)])
    assert [o.blame for o, _ in refused] == [7]
    assert producer.attempts[b"v"] == 6  # the first send and five retries


async def test_a_dead_letter_refused_for_good_is_sent_in_its_minimal_form_at_once() -> None:
    schemas = load_schemas(SETTINGS.schemas_dir)

    def verdict(topic: str, value: bytes | None, attempt: int) -> BaseException | None:
        return kafka_errors.MessageSizeTooLargeError() if value and b"BIG-ORIGINAL" in value else None

    publisher, producer = _publisher(verdict)
    retries = metrics.RETRIES.labels("produce")
    before = retries._value.get()
    await publisher.publish_dead_letters([_letter(b"BIG-ORIGINAL")])
    assert retries._value.get() == before, "no back-off, no wait: the minimal letter is sent at once"
    topic, value = producer.sent[-1]
    record = codecs.decode(schemas, "dead_letter", value or b"")
    assert (topic, record["original"], record["original_truncated"], record["minimal"]) == (
        "dlq",
        b"",
        True,
        True,
    )
    assert record["original_size"] == len(b"BIG-ORIGINAL")
    assert record["original_sha256"] == hashlib.sha256(b"BIG-ORIGINAL").digest()


async def test_a_minimal_dead_letter_refused_for_good_is_counted_and_skipped_never_waited_for() -> None:
    def verdict(topic: str, value: bytes | None, attempt: int) -> BaseException | None:
        refusal: BaseException = kafka_errors.InvalidRecordError()  # aiokafka is untyped
        return refusal  # the broker refuses anything on that topic, for good

    lost = metrics.DEAD_LETTERS_LOST.labels("intake")
    before = lost._value.get()
    publisher, producer = _publisher(verdict)
    await asyncio.wait_for(publisher.publish_dead_letters([_letter(b"v")]), timeout=5)
    assert lost._value.get() == before + 1
    schemas = load_schemas(SETTINGS.schemas_dir)
    sent = [codecs.decode(schemas, "dead_letter", value or b"") for _, value in producer.sent]
    assert [record["minimal"] for record in sent] == [False, True], "the full letter, then the minimal one"
    assert "produce" not in retry.retrying()


async def test_a_cancelled_publish_leaves_no_operation_waiting() -> None:
    publisher, _ = _publisher(lambda *_: kafka_errors.KafkaConnectionError())
    task = asyncio.ensure_future(publisher.publish([Output("out", None, b"v")]))
    await asyncio.sleep(0.05)
    assert "produce" in retry.retrying()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "produce" not in retry.retrying()


class LaneApp:
    """What a stage asks of a worker's app (:class:`stream_app.pipeline.app.StreamApp`): its lanes, its
    topics, a task registry, and the lane consumer (here: every delivery current; acks recorded)."""

    def __init__(self) -> None:
        self.lanes = Lanes()
        self.topics: set[Any] = set()
        self.tasks: list[Callable[[], Awaitable[None]]] = []
        self.consumer = self
        self.acked: list[int] = []

    def task(self, run: Callable[[], Awaitable[None]]) -> None:
        self.tasks.append(run)

    def current(self, delivery: Delivery) -> bool:
        return True

    def ack_batch(self, deliveries: Sequence[Delivery]) -> int:
        self.acked += [event.message.offset for d in deliveries for event in d.events]
        return len(self.acked)


@dataclass(frozen=True)
class Source:
    """A stage's source: the topics it reads."""

    topics: tuple[str, ...]


def _delivery(*offsets: int) -> Delivery:
    events = [Event(SimpleNamespace(topic="x", partition=0, offset=o, key=None, value=b"v")) for o in offsets]
    return Delivery(TP("x", 0), generation=0, events=events)


async def test_a_crashing_batch_stops_the_worker_instead_of_going_on() -> None:
    """A restarted stage would apply later records first; their offsets in Redis would then make the
    failed batch look applied when it is redelivered. So the batch is not acked and the worker stops."""
    app = LaneApp()
    halted: list[int] = []
    handled: list[list[int]] = []

    async def handle(events: Sequence[Received]) -> None:
        handled.append([e.message.offset for e in events])
        if len(handled) > 1:
            raise KeyError("a defect")

    before = metrics.AGENT_CRASHES.labels("crashy")._value.get()
    source = Source(("x",))
    settings = Settings(batch_within_s=0.01)
    batch_agent(app, source, "crashy", handle, settings, halt=lambda: halted.append(1))  # type: ignore[arg-type]
    assert source in app.topics
    lane = app.lanes.by_topic["x"]
    [run] = app.tasks
    task = asyncio.ensure_future(run())
    lane.put(_delivery(1, 2))
    for _ in range(100):
        if handled:
            break
        await asyncio.sleep(0.01)
    lane.put(_delivery(3))
    for _ in range(100):
        if halted:
            break
        await asyncio.sleep(0.01)
    assert halted == [1]
    assert not task.done(), "the stage consumes nothing more, and does not return"
    lane.put(_delivery(4))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert handled == [[1, 2], [3]], "nothing after the crash"
    assert app.acked == [1, 2], "the batch that crashed is not acked"
    assert metrics.AGENT_CRASHES.labels("crashy")._value.get() == before + 1


async def test_a_stage_needs_an_app_with_lanes() -> None:
    app = faust.App("t-no-lanes", broker="kafka://127.0.0.1:1", store="memory://")
    handle = AsyncMock()
    with pytest.raises(TypeError, match="lanes"):
        batch_agent(app, Source(("x",)), "stage", handle, Settings())
