"""Dependencies away under the timers and the web routes, without Kafka or Redis: the timer guard, the
dependencies readiness names, the API's bounded 503 answers, and the briefing published exactly once
whatever Redis does around it (issue 24, "transient means transient everywhere")."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from redis import exceptions as redis_errors
from structlog.testing import capture_logs

from stream_app.agents import briefing
from stream_app.api import http
from stream_app.api.read_model import ReadModel
from stream_app.config.blueprint import Blueprint, load_blueprint
from stream_app.domain import clock
from stream_app.domain.clock import local_date
from stream_app.kafka.publisher import Output
from stream_app.ops import retry
from stream_app.ops.failures import Failure, classify_kafka
from stream_app.settings import Settings
from stream_app.state.memory import MemoryStateStore

SETTINGS = Settings.model_construct(briefing_time="00:00", retry_initial_s=0.001, retry_max_s=0.002)


@pytest.fixture(autouse=True)
def _nothing_down() -> Iterator[None]:
    """Each test starts and ends with every dependency reachable (the probes' findings are global)."""
    for dependency in ("kafka", "redis"):
        retry.probed(dependency, reachable=True)
    yield
    for dependency in ("kafka", "redis"):
        retry.probed(dependency, reachable=True)


# ----------------------------------------------------------------------------- what readiness names


def test_each_operation_names_the_dependency_it_waits_for() -> None:
    assert retry.dependency_of("redis_commit") == "redis"
    assert retry.dependency_of("redis_briefing") == "redis"
    assert retry.dependency_of("produce") == "kafka"
    assert retry.dependency_of("kafka_alert_bridge") == "kafka"
    assert retry.dependency_of("state_lost") == "state"
    assert retry.dependency_of("schema_registry") == "schema_registry"


def test_unavailable_joins_what_the_probe_found_and_what_operations_wait_for() -> None:
    assert retry.unavailable() == []
    retry.probed("kafka", reachable=False)
    assert retry.unavailable() == ["kafka"]
    with retry.waiting("redis_load") as mark:
        mark()
        assert retry.unavailable() == ["kafka", "redis"]
    retry.probed("kafka", reachable=True)
    assert retry.unavailable() == []


def test_a_librdkafka_error_is_judged_as_the_same_kafka_error_would_be() -> None:
    def error(code: int) -> KafkaException:
        return KafkaException(KafkaError(code))

    assert classify_kafka(error(KafkaError._TRANSPORT)) is Failure.TRANSIENT  # the broker out of reach
    assert classify_kafka(error(KafkaError._TIMED_OUT)) is Failure.TRANSIENT
    assert classify_kafka(error(KafkaError._ALL_BROKERS_DOWN)) is Failure.TRANSIENT
    assert classify_kafka(error(KafkaError.LEADER_NOT_AVAILABLE)) is Failure.TRANSIENT
    assert classify_kafka(error(KafkaError.TOPIC_AUTHORIZATION_FAILED)) is Failure.BLOCKED
    assert classify_kafka(error(KafkaError._INVALID_ARG)) is Failure.PERMANENT
    assert retry.failed_dependency(error(KafkaError._TRANSPORT)) == ("kafka", Failure.TRANSIENT)
    assert retry.failed_dependency(redis_errors.BusyLoadingError("LOADING")) == ("redis", Failure.TRANSIENT)
    assert retry.failed_dependency(redis_errors.ResponseError("READONLY You can't write")) == (
        "redis",
        Failure.TRANSIENT,
    )
    assert retry.failed_dependency(ValueError("a defect")) is None


# ----------------------------------------------------------------------------------- the timer guard


@pytest.mark.asyncio
async def test_a_guarded_timer_never_raises_and_names_the_dependency_until_a_run_succeeds() -> None:
    outcomes: list[BaseException | None] = [
        redis_errors.ConnectionError("Connection refused"),
        redis_errors.BusyLoadingError("Redis is loading the dataset in memory"),
        redis_errors.ReadOnlyError("READONLY"),
        None,
    ]

    async def body() -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    run = retry.guarded("briefing", body)
    with capture_logs() as logs:
        for _ in range(3):
            await run()  # no exception escapes
            assert "redis_briefing" in retry.retrying()
            assert "redis" in retry.unavailable()
        await run()
    assert "redis_briefing" not in retry.retrying()
    events = [e["event"] for e in logs]
    assert events.count("dependency_unavailable_retrying_next_run") == 1, "logged once, not every run"
    assert "task_recovered" in events


@pytest.mark.asyncio
async def test_a_defect_in_a_timer_is_logged_once_and_marks_no_dependency() -> None:
    async def body() -> None:
        raise KeyError("a defect")

    run = retry.guarded("ticker", body)
    with capture_logs() as logs:
        await run()
        await run()
    assert not {op for op in retry.retrying() if op.endswith("_ticker")}
    assert [e["event"] for e in logs] == ["task_failed_retrying_next_run"]


@pytest.mark.asyncio
async def test_a_guarded_timer_lets_cancellation_through() -> None:
    async def body() -> None:
        await asyncio.Event().wait()

    task = asyncio.ensure_future(retry.guarded("ticker", body)())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# --------------------------------------------------------------------------------------- the API


@pytest.mark.asyncio
async def test_a_read_redis_cannot_serve_is_a_503_naming_redis() -> None:
    async def handler(params: dict[str, str], now_ms: int) -> Any:
        raise redis_errors.ConnectionError("Error 111 connecting to 127.0.0.1:16379. Connection refused.")

    status, body = await http.answer(handler, {})
    assert (status, body["error"], body["dependency"]) == (503, "unavailable", "redis")


@pytest.mark.asyncio
async def test_a_read_redis_does_not_answer_is_a_503_within_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http, "ANSWER_TIMEOUT_S", 0.05)

    async def handler(params: dict[str, str], now_ms: int) -> Any:
        await asyncio.sleep(60)  # a Redis that accepted the connection and says nothing

    status, body = await asyncio.wait_for(http.answer(handler, {}), 5)
    assert (status, body["dependency"]) == (503, "redis")
    assert "did not answer" in body["detail"]


class _Publisher:
    """Records what it is asked to publish; ``hang`` stands for a broker that never acknowledges."""

    def __init__(self, *, hang: bool = False) -> None:
        self.hang = hang
        self.published: list[Output] = []

    async def publish(self, outputs: Sequence[Output]) -> list[tuple[Output, BaseException]]:
        if self.hang:
            await asyncio.sleep(60)
        self.published.extend(outputs)
        return []


def _blueprint() -> Blueprint:
    return load_blueprint(SETTINGS)


@pytest.mark.asyncio
async def test_a_directive_is_refused_before_anything_is_sent_while_kafka_is_known_down() -> None:
    publisher = _Publisher()
    directives = http.Directives(_blueprint(), publisher, http.Authenticator(None))
    retry.probed("kafka", reachable=False)
    body = await directives._publish("dir-1", [Output("center.directives", b"k", b"v")])
    assert body is not None
    assert body["dependency"] == "kafka"
    assert publisher.published == [], "nothing handed to the producer: nothing delivered later"


@pytest.mark.asyncio
async def test_a_directive_kafka_does_not_acknowledge_in_time_is_a_503_with_its_id() -> None:
    directives = http.Directives(_blueprint(), _Publisher(hang=True), http.Authenticator(None))
    directives.write_timeout_s = 0.05
    body = await asyncio.wait_for(directives._publish("dir-2", [Output("t", b"k", b"v")]), 5)
    assert body is not None
    assert (body["dependency"], body["directive_id"]) == ("kafka", "dir-2")
    assert body["delivery"] == "unconfirmed", "abandoned, not undone: the producer may still deliver it"


# ---------------------------------------------------------------------------------- the briefing


@dataclass
class FlakyStore(MemoryStateStore):
    """The in-memory state layer, with Redis away while ``down`` (every briefing call refused)."""

    down: bool = False
    calls: list[str] = field(default_factory=list)

    def _check(self, call: str) -> None:
        self.calls.append(call)
        if self.down:
            raise redis_errors.ConnectionError("Connection refused")

    async def briefing_published(self, day: date) -> bool:
        self._check("briefing_published")
        return await super().briefing_published(day)

    async def mark_briefing(self, day: date, now_ms: int) -> None:
        self._check("mark_briefing")
        await super().mark_briefing(day, now_ms)


class _Consumer:
    def __init__(self, topic: str) -> None:
        self.topic = topic

    def assignment(self) -> set[Any]:
        from faust.types import TP  # noqa: PLC0415 - Faust's partition tuple, for this fake alone

        return {TP(self.topic, 0)}


class _App:
    """What the briefing timer uses of the Faust app: the assignment, and ``timer`` (kept, not run)."""

    def __init__(self, topic: str) -> None:
        self.consumer = _Consumer(topic)
        self.timers: list[Any] = []

    def timer(self, interval: float) -> Any:
        def register(fun: Any) -> Any:
            self.timers.append(fun)
            return fun

        return register


class _BriefingPublisher(_Publisher):
    """A publisher after which Redis goes away (``then_down``): the marker must still follow."""

    def __init__(self, store: FlakyStore, *, then_down: bool = False) -> None:
        super().__init__()
        self.store = store
        self.then_down = then_down

    async def publish(self, outputs: Sequence[Output]) -> list[tuple[Output, BaseException]]:
        refused = await super().publish(outputs)
        if self.then_down:
            self.store.down = True
        return refused


def _briefing_timer(store: FlakyStore, publisher: _Publisher) -> Any:
    blueprint = _blueprint()
    app = _App(blueprint.topic_by_role("repartition").name)
    model = ReadModel(store, blueprint.catalogue, blueprint.rulebook)
    briefing.register(app, blueprint, model, publisher)  # type: ignore[arg-type]
    (timer,) = app.timers
    return timer


async def _until(predicate: Any) -> None:
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("never happened")


@pytest.mark.asyncio
async def test_the_briefing_waits_for_redis_then_is_published_once() -> None:
    store = FlakyStore(down=True)
    publisher = _Publisher()
    timer = _briefing_timer(store, publisher)
    run = asyncio.ensure_future(timer())
    await _until(lambda: store.calls.count("briefing_published") >= 3)
    assert "redis_briefing" in retry.retrying(), "readiness names what the briefing waits for"
    assert publisher.published == []
    store.down = False
    await asyncio.wait_for(run, 5)
    assert "redis_briefing" not in retry.retrying()
    assert len(publisher.published) == 1
    today = local_date(clock.now_ms())
    assert await store.briefing_published(today)
    await timer()
    assert len(publisher.published) == 1, "the marker says it is done"
    assert publisher.published[0].key == f"briefing-{today - timedelta(days=1)}".encode()


@pytest.mark.asyncio
async def test_redis_gone_between_the_briefing_and_its_marker_publishes_it_once() -> None:
    store = FlakyStore()
    publisher = _BriefingPublisher(store, then_down=True)
    timer = _briefing_timer(store, publisher)
    run = asyncio.ensure_future(timer())
    await _until(lambda: store.calls.count("mark_briefing") >= 3)
    assert len(publisher.published) == 1
    assert "redis_briefing" in retry.retrying()
    store.down = False
    await asyncio.wait_for(run, 5)
    assert await store.briefing_published(local_date(clock.now_ms()))
    for _ in range(3):
        await timer()
    assert len(publisher.published) == 1


@pytest.mark.asyncio
async def test_a_failing_briefing_never_escapes_its_timer_and_is_tried_at_the_next_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = FlakyStore()
    publisher = _Publisher()
    timer = _briefing_timer(store, publisher)

    async def broken(self: ReadModel, day: date, now_ms: int) -> dict[str, Any]:
        raise ValueError("a stored value nobody can read")

    monkeypatch.setattr(ReadModel, "briefing", broken)
    await timer()  # logged, not raised: the worker goes on
    monkeypatch.undo()
    assert publisher.published == []
    await timer()
    assert len(publisher.published) == 1


# ----------------------------------------------------------------------------- when the briefing is due


@pytest.mark.parametrize(
    ("briefing_time", "seconds_after_midnight", "expected"),
    [
        ("07:00", 7 * 3600 - 1, False),
        ("07:00", 7 * 3600, True),
        ("07:00:30", 7 * 3600 + 29, False),
        ("07:00:30", 7 * 3600 + 30, True),
        ("00:00", 0, True),
        ("23:59:59", 23 * 3600 + 59 * 60 + 58, False),
    ],
)
def test_the_briefing_is_due_from_its_local_time_to_the_second(
    briefing_time: str, seconds_after_midnight: int, expected: bool
) -> None:
    now_ms = clock.local_midnight_ms(date(2026, 3, 4)) + seconds_after_midnight * 1000
    assert briefing.due(now_ms, briefing_time) is expected


@pytest.mark.parametrize("briefing_time", ["7:00", "07:60", "24:00", "07:00:60", "07:00:00:00"])
def test_a_briefing_time_that_is_not_a_time_of_day_is_refused(briefing_time: str) -> None:
    with pytest.raises(ValueError, match="briefing_time"):
        Settings(briefing_time=briefing_time)
