"""The reporters' topics under the librdkafka driver: fetched by a bounded reader, never by librdkafka.

librdkafka inflates an lz4, gzip or snappy record batch whole, with no bound, and aborts the process when
it cannot allocate it (docs/performance.md, "Decompression bombs under librdkafka"): one reporter's 1 MiB
of gzip is about a GiB in the worker. The reporters' topics (roles ``input`` and ``bulk_input``,
:data:`~stream_app.config.blueprint.REPORTER_INPUT_ROLES`: the only ones another party writes) are
therefore fetched by :class:`BoundedReader`: an aiokafka consumer outside any group (``group_id`` None:
assigned by hand, never committing, never joining), every fetch read through
:class:`~stream_app.kafka.fetch_bounds.BoundedRecords` as the default driver's is. A batch over
``STREAM_APP_FETCH_MAX_BATCH_BYTES`` inflated or ``STREAM_APP_FETCH_MAX_BATCH_RECORDS`` records comes out
as one stand-in whose value is a :class:`~stream_app.kafka.fetch_bounds.Withheld`, dead-lettered by
position, exactly as on the default driver.

The group stays librdkafka's (:class:`~stream_app.kafka.rdlanes.thread.RdConsumerThread`): it is
subscribed to every topic, its rebalance callbacks hand the reporter partitions of an assignment to
this reader at the group's committed offsets (:meth:`BoundedReader.assign`) and take them back before
the revoke callback returns (:meth:`BoundedReader.revoke`); commits, committed offsets and the lag's
watermark reads stay librdkafka's (an OffsetCommit is checked by the group's generation and member,
not by what librdkafka itself fetches).

Threads. The aiokafka consumer lives on a thread and event loop of its own (its fetcher prefetches there,
one response per partition at most, as aiokafka does); every call into it is made on that loop and
waited for (at most ``CALL_TIMEOUT_S``), from the consumer thread (assign, revoke, take) or the app's loop
(seek, position), one at a time in the order made. Fencing: a revoke replaces aiokafka's assignment, which
makes aiokafka drop what it had buffered of every partition and discard a fetch response in flight
(``assignment changed during fetch``); a take made after that returns nothing of a revoked partition.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.consumer import fetcher as aiokafka_fetcher
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth, server_list
from faust.types import TP

from stream_app.kafka.fetch_bounds import BoundedRecords
from stream_app.kafka.lanes import FetchWait, IdleAwareFetch
from stream_app.kafka.rdlanes.properties import CALL_TIMEOUT_S
from stream_app.logs import get_logger
from stream_app.settings import Settings

log = get_logger(__name__)

_T = TypeVar("_T")

OFFSET_BEGINNING = -2  # librdkafka's logical offsets, as Faust's seeks on this driver give them
OFFSET_END = -1


def _atp(tp: TP) -> TopicPartition:
    return TopicPartition(tp.topic, tp.partition)


class BoundedReader:
    """An aiokafka consumer without a group for the partitions of ``topics`` the group assigns to this
    worker (see the module). ``make_consumer`` builds it, on the reader's loop."""

    def __init__(
        self,
        topics: Iterable[str],
        make_consumer: Callable[[], AIOKafkaConsumer],
        batch_max: int,
        started: Callable[[AIOKafkaConsumer], None] = lambda consumer: None,
    ) -> None:
        self.topics = frozenset(topics)
        self._make_consumer = make_consumer
        self._started = started
        self._batch_max = max(1, batch_max)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._assigned: frozenset[TP] = frozenset()  # read by other threads: replaced, never changed
        self._paused: set[TP] = set()  # paused in aiokafka (on the reader's loop only)
        self._seeks: dict[TP, int] = {}  # seeks per partition, counted on the reader's loop
        self._resets: set[asyncio.Future[Any]] = set()  # offset resets under way (kept from the GC)

    # --- the reader's thread and loop ---

    def owns(self, tp: TP) -> bool:
        """Whether ``tp`` is a partition this reader fetches when it is assigned (a reporter's topic)."""
        return tp.topic in self.topics

    def start(self) -> None:
        if aiokafka_fetcher.MemoryRecords is not BoundedRecords or BoundedRecords.limits is None:
            # the reader exists to bound decompression: unbounded, it must not read at all
            raise RuntimeError("the bounded reader needs fetch_bounds.install() first")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="bounded-reader", daemon=True)
        self._thread.start()
        self._call(self._start())

    async def _start(self) -> None:
        consumer = self._make_consumer()
        await consumer.start()
        self._started(consumer)
        self._consumer = consumer

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self._call(self._stop())
        except Exception as exc:
            log.warning("bounded_reader_stop_failed", error=repr(exc)[:300])
        loop.call_soon_threadsafe(loop.stop)
        thread.join(CALL_TIMEOUT_S)
        self._loop = None
        if not thread.is_alive():
            loop.close()

    async def _stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    def _call(self, coro: Awaitable[_T]) -> _T:
        """Run ``coro`` on the reader's loop and wait for it (at most ``CALL_TIMEOUT_S``)."""
        if self._loop is None:
            raise RuntimeError("the bounded reader is not started")
        future: concurrent.futures.Future[_T] = asyncio.run_coroutine_threadsafe(cast(Any, coro), self._loop)
        return future.result(CALL_TIMEOUT_S)

    def _ensure(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("the bounded reader is not started")
        return self._consumer

    # --- the group's assignment (from the rebalance callbacks, on the consumer thread) ---

    @property
    def assigned(self) -> frozenset[TP]:
        return self._assigned

    def assign(self, at: Mapping[TP, int]) -> None:
        """Fetch exactly the partitions of ``at`` from these offsets (the group's committed ones; a
        negative one: none committed, the start). Replaces the assignment: whatever was buffered or in
        flight for the previous one is dropped."""
        self._call(self._assign(dict(at)))
        log.info("bounded_reader_assigned", partitions=len(at))

    async def _assign(self, at: dict[TP, int]) -> None:
        consumer = self._ensure()
        consumer.assign([_atp(tp) for tp in sorted(at)])
        self._assigned = frozenset(at)
        self._paused = set()
        for tp, offset in at.items():
            if offset >= 0:  # none committed: aiokafka starts it by its offset reset (the earliest)
                self._seek(consumer, tp, offset)

    def revoke(self, tps: Iterable[TP]) -> None:
        """Stop fetching ``tps`` and drop what was fetched of them (before the revoke callback returns):
        the others keep their positions."""
        gone = {TP(tp.topic, tp.partition) for tp in tps} & self._assigned
        if gone and self._loop is not None:
            self._call(self._revoke(gone))

    async def _revoke(self, gone: set[TP]) -> None:
        consumer = self._ensure()
        at: dict[TP, int] = {}
        for tp in self._assigned - gone:  # where each kept partition is (aiokafka's own state of it)
            state = consumer._subscription.subscription.assignment.state_value(_atp(tp))
            at[tp] = state.position if state.has_valid_position else OFFSET_BEGINNING
        await self._assign(at)

    # --- fetching (the consumer thread) ---

    def ready(self, active: Iterable[TP]) -> bool:
        """Whether a :meth:`take` of ``active`` has something to do: aiokafka holds fetched records of
        one of them, or Faust paused or resumed one since the last take (a hint, read from another
        thread, without a call: the take says for sure)."""
        consumer, assigned = self._consumer, self._assigned
        if consumer is None or not assigned:
            return False
        wanted = set(active)
        if assigned - wanted != self._paused:
            return True
        try:
            buffered = list(consumer._fetcher._records)
        except RuntimeError:  # changed while read: ask
            return True
        return any(TP(tp.topic, tp.partition) in wanted for tp in buffered)

    def take(self, active: Iterable[TP]) -> tuple[dict[TP, list[Any]], dict[TP, int]]:
        """What aiokafka holds of the ``active`` partitions (at most ``batch_max`` records, without
        waiting), and the seeks counted when it was taken (:meth:`seeks`: a record taken before a seek
        is not handed over); the others are paused in aiokafka (a full lane, a rebalance: Faust's)."""
        if not self._assigned:
            return {}, {}
        return self._call(self._take({TP(tp.topic, tp.partition) for tp in active}))

    def seeks(self, tp: TP) -> int:
        """How many seeks of ``tp`` were made so far."""
        return self._seeks.get(tp, 0)

    async def _take(self, active: set[TP]) -> tuple[dict[TP, list[Any]], dict[TP, int]]:
        consumer = self._ensure()
        want = active & self._assigned
        pause, resume = (self._assigned - want) - self._paused, self._paused & want
        if pause:
            consumer.pause(*(_atp(tp) for tp in sorted(pause)))
        if resume:
            consumer.resume(*(_atp(tp) for tp in sorted(resume)))
        self._paused = set(self._assigned - want)
        if not want:
            return {}, {}
        found = await consumer.getmany(
            *(_atp(tp) for tp in sorted(want)), timeout_ms=0, max_records=self._batch_max
        )
        records = {TP(tp.topic, tp.partition): got for tp, got in found.items() if got}
        return records, {tp: self._seeks.get(tp, 0) for tp in records}

    # --- positions (the app's loop) ---

    def seek(self, tp: TP, offset: int) -> None:
        """The partition's next record is ``offset`` (``OFFSET_BEGINNING``, ``OFFSET_END``: its first,
        its end; another negative offset: none, nothing changes)."""
        if TP(tp.topic, tp.partition) in self._assigned:
            self._call(self._seek_on_loop(TP(tp.topic, tp.partition), offset))

    async def _seek_on_loop(self, tp: TP, offset: int) -> None:
        self._seek(self._ensure(), tp, offset)

    def _seek(self, consumer: AIOKafkaConsumer, tp: TP, offset: int) -> None:
        """On the reader's loop. A seek to the start or the end is aiokafka's offset reset, not waited
        for: until it is done the partition has no position and nothing of it is taken."""
        if tp not in self._assigned:
            return
        self._seeks[tp] = self._seeks.get(tp, 0) + 1
        if offset >= 0:
            consumer.seek(_atp(tp), offset)
        else:  # the end, or the start: asked for (-2), or none committed (-1001)
            reset = consumer.seek_to_end if offset == OFFSET_END else consumer.seek_to_beginning
            task = asyncio.ensure_future(reset(_atp(tp)))  # its first step runs before the next call
            self._resets.add(task)
            task.add_done_callback(self._reset_done)

    def _reset_done(self, task: asyncio.Future[Any]) -> None:
        self._resets.discard(task)
        if not task.cancelled() and task.exception() is not None:  # an assignment replaced meanwhile
            log.info("bounded_reset_dropped", reason=repr(task.exception())[:200])

    def position(self, tp: TP) -> int | None:
        if TP(tp.topic, tp.partition) not in self._assigned:
            return None
        return self._call(self._position(tp))

    async def _position(self, tp: TP) -> int | None:
        position = await self._ensure().position(_atp(tp))
        return int(position) if position is not None and position >= 0 else None

    def highwater(self, tp: TP) -> int:
        """The partition's high watermark as the last fetch of it said (-1: not known yet)."""
        consumer = self._consumer
        if consumer is None or TP(tp.topic, tp.partition) not in self._assigned:
            return -1
        try:
            high = consumer.highwater(_atp(tp))
        except Exception:  # an assignment replaced meanwhile (read from another thread)
            return -1
        return int(high) if high is not None else -1


def reader_for(app: Any, settings: Settings, topics: Iterable[str]) -> BoundedReader | None:
    """The bounded reader of ``topics`` (None: none to read) for ``app``'s worker: Faust's brokers and
    credentials (``broker_credentials``: :func:`stream_app.kafka.config.faust_credentials`, as every
    aiokafka client of the worker), the default driver's fetch sizes and the settings' waits, no group."""
    owned = frozenset(topics)
    if not owned:
        return None
    conf = app.conf

    def make() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            client_id=f"{conf.broker_client_id}-bounded",
            bootstrap_servers=server_list(conf.broker, 9092),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset=conf.consumer_auto_offset_reset,
            max_poll_records=settings.batch_max,
            # the default driver's fetch sizes (Faust's worker consumer: 4 MiB a partition, aiokafka's
            # 50 MiB a response): with librdkafka's 8 MiB a response, a flood's partitions filled it and
            # a quiet reporter's record waited a fetch or two (test_reporter_flood); each batch is
            # bounded by fetch_bounds as it is read, not by the response's size
            max_partition_fetch_bytes=conf.consumer_max_fetch_size,
            fetch_min_bytes=settings.fetch_min_bytes,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            request_timeout_ms=int(conf.broker_request_timeout * 1000.0),
            check_crcs=True,
            isolation_level="read_uncommitted",  # as the group's librdkafka consumer reads
            **credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context),
        )

    def started(consumer: AIOKafkaConsumer) -> None:
        if settings.fetch_idle_wait_ms > 0:  # the default driver's idle fetch (lanes.IdleAwareFetch)
            IdleAwareFetch(
                busy=FetchWait(settings.fetch_min_bytes, settings.fetch_max_wait_ms),
                idle=FetchWait(1, settings.fetch_idle_wait_ms),
            ).install(consumer._fetcher)

    return BoundedReader(owned, make, settings.batch_max, started)
