"""The lanes on librdkafka (``STREAM_APP_CONSUMER_DRIVER=librdkafka``, opt-in).

The same :class:`stream_app.kafka.lanes.LaneConsumer` (per-partition lanes, the bulk lane's priority,
pause on a full lane, the generation and epoch fence, drop on revoke) over a confluent-kafka consumer
instead of aiokafka: only the fetching, the commits and the group's rebalances differ. Faust's consumer
bookkeeping (acks, gaps, commits of acked offsets, flow control) and the app stay Faust's; the group is
the Faust app's own, joined by this driver.

Threads. One consumer thread (Faust's :class:`ConsumerThread`) owns the fetch (``poll()`` for the first
record, as soon as there is one, then ``consume()`` of what librdkafka holds already; "``consume()``"
below means both): librdkafka serves the group's rebalance callbacks inside that call, on that thread.
Everything else librdkafka offers thread-safely (commit, committed, seek, watermarks) is called from the
app's loop through a small executor, bounded in time, never queued behind a ``consume()``.

Rebalances (eager, roundrobin: "revoke all, then assign", as Faust and the lanes assume):

* on revoke, inside ``consume()``: on the app's loop, ``app.on_rebalance_start()``, a commit of what was
  acked (not when the assignment was lost: another member owns the partitions already), then Faust's
  revoke handler (stop the flow, pause, :meth:`Lanes.drop`); the callback waits for all that (bounded)
  before librdkafka gives the partitions up. While a callback waits for the app's loop, the librdkafka
  calls that loop makes (that commit, committed offsets) are made on the consumer thread: a synchronous
  commit from another thread never completes while this one is inside the revoke callback.
* on assign: the committed offsets are read (bounded) and the partitions assigned at them, a counter is
  the group's generation (Python sees none; the fences only compare it within the process), and Faust's
  assign handler runs on the app's loop; its recovery seeks every partition to its committed offset
  before the flow resumes.

A ``consume()`` that a rebalance interrupted hands nothing over (its records were fetched for an
assignment that is gone) and rewinds what is still assigned. Faust's paused partitions are paused in
librdkafka too; a record of a partition paused while it was fetched is held in the thread and handed
over once the partition is resumed (never skipped); librdkafka queues every partition's records in one
queue, so a fetch drains what it holds of paused partitions before it returns (a live record never
waits behind a flood's prefetch). While the flow is stopped the fetcher keeps calling ``consume()``
with everything paused, and before it runs the thread calls it itself: librdkafka joins the group and
serves its callbacks only there.

librdkafka numbers each pause, resume and seek of a partition as it is asked for, and drops one that a
later-numbered call of that partition overtook before it was queued ("outdated", nothing said; a
thread preempted at the wrong moment, on a loaded machine, is enough): a lost resume leaves the
partition paused for good while the driver's books say resumed (its records never fetched, the thread
polling nothing, no error). The driver's seeks (from the app's loop), pauses, resumes and assignments
(from the consumer thread) are made one at a time, and every ``RESUME_AGAIN_S`` the thread resumes
again every partition it means to fetch (a resume of a partition that is not paused is nothing to
librdkafka), so a resume lost anyway costs seconds, not the partition. (Pauses are not made again: a
lost one lets librdkafka go on fetching the partition into the records held in the thread until it is
resumed: memory, not a stall.)

The reporters' topics are never fetched by librdkafka: the assign callback hands their partitions to a
bounded reader (:mod:`stream_app.kafka.rdlanes.bounded`: aiokafka without a group, through
``fetch_bounds``), the revoke callback takes them back before it returns, a fetch takes the reader's
records beside librdkafka's, and Faust's pauses and seeks of them go to the reader; commits stay here.

Stalls. librdkafka's statistics (every ``STATS_INTERVAL_S``) are watched: a partition the driver means
to fetch (assigned, in the fetch's active set, not paused, nothing held), behind its high watermark,
with nothing queued and nothing received over a whole interval in which the app fetched, while its
leader is up, is fetching
nothing for a reason neither side says. It is logged (``rdkafka_fetch_stuck``: librdkafka's view of the
partition beside the driver's and Faust's paused sets) and seeked to where the app's records of it end,
which restarts librdkafka's fetch of it; nothing is skipped or read twice.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, cast

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from faust.transport.consumer import ConsumerThread
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.transports import ConsumerT

from stream_app.kafka.config import confluent_config
from stream_app.kafka.lanes import COMMITTED_TIMEOUT_S
from stream_app.kafka.rdlanes.bounded import BoundedReader, reader_for
from stream_app.kafka.rdlanes.offsets import LogOffsets
from stream_app.kafka.rdlanes.properties import (
    BOUNDED_SLICE_S,
    CALL_TIMEOUT_S,
    CONSUME_MAX_S,
    IDLE_AFTER_S,
    IDLE_POLL_S,
    JOIN_WARN_S,
    RESUME_AGAIN_S,
    STATS_INTERVAL_S,
    consumer_properties,
)
from stream_app.kafka.rdlanes.records import _RECORD_ERRORS, RdRecord, batch_end, stand_in, to_message
from stream_app.logs import get_logger
from stream_app.ops.metrics import FETCH_STALLS
from stream_app.settings import Settings

log = get_logger(__name__)

_T = TypeVar("_T")

# a commit the group refused because the member is no longer in it, or moves on: not a crash (as
# aiokafka's "already rebalanced"); the next owner reads from the last commit
_REBALANCED = frozenset(
    {
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError._ASSIGNMENT_LOST,
        KafkaError._NO_OFFSET,
    }
)


def _tp(partition: Any) -> TP:
    return TP(partition.topic, partition.partition)


def _parts(tps: Iterable[TP], offset: int | None = None) -> list[TopicPartition]:
    if offset is None:
        return [TopicPartition(tp.topic, tp.partition) for tp in sorted(tps)]
    return [TopicPartition(tp.topic, tp.partition, offset) for tp in sorted(tps)]


_Call = tuple[Callable[[], Any], concurrent.futures.Future[Any]]
"""A librdkafka call the app's loop queued for the consumer thread, and its result."""


def _run_call(fun: Callable[[], Any], made: concurrent.futures.Future[Any]) -> None:
    """``fun`` with its result or error into ``made`` (unless its caller gave up on it)."""
    if not made.set_running_or_notify_cancel():
        return
    try:
        made.set_result(fun())
    except BaseException as exc:  # handed to the caller, as an executor does
        made.set_exception(exc)


def _code(exc: KafkaException) -> int | None:
    error = exc.args[0] if exc.args else None
    return error.code() if isinstance(error, KafkaError) else None


class RdConsumerThread(LogOffsets, ConsumerThread):
    """Faust's consumer thread over a librdkafka consumer (see the module)."""

    def __init__(self, consumer: ConsumerT, **kwargs: Any) -> None:
        super().__init__(cast(Any, consumer), **kwargs)
        self._rd: Any = None  # the confluent Consumer, made when the thread starts
        self._reader: BoundedReader | None = None  # the reporters' topics' (bounded.py), made with it
        self._lock = threading.Lock()  # guards what both the thread and the app's loop touch
        # librdkafka's partition calls (seek, pause, resume, assign) one at a time, whichever thread makes
        # them: librdkafka numbers each and drops one that a later-numbered one overtook (see the module)
        self._rd_calls = threading.Lock()
        self._resumed_at = 0.0  # monotonic time what the driver wants fetched was last resumed again
        self._assigned: set[TP] = set()
        self._start_offsets: dict[TP, int] = {}  # where each partition was assigned (committed or invalid)
        self._paused: set[TP] = set()  # paused in librdkafka
        self._held: dict[TP, list[Any]] = {}  # fetched while their partition was paused: handed over later
        self._seeks: dict[TP, int] = {}  # seeks per partition (a fetch overtaken by one is not handed over)
        self._rebalances = 0  # callbacks served (a fetch a rebalance interrupted is not handed over)
        self._generation = 0
        self._revoked = False  # a revocation started the rebalance the next assignment ends
        self._closing = False
        self._calls = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="rdkafka-call")
        # while the consumer thread waits in a rebalance callback, the app loop's librdkafka calls are made
        # on it (see _on_app): a commit made from another thread then never completes
        self._in_callback = False
        self._callback_lock = threading.Lock()  # guards _in_callback against the queue's last call
        self._callback_calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._last_fetch = 0.0  # monotonic time Faust's fetcher last asked for records
        self._idle: asyncio.Task[None] | None = None
        self._highwaters: dict[TP, int] = {}
        self._highwaters_at = 0.0
        self._logged: dict[tuple[str, int], float] = {}  # when each kind of error was last logged
        self._stood_in: dict[TP, int] = {}  # the base offset of each partition's last unreadable batch
        self._fetching: set[TP] = set()  # what the last fetch asked for (empty: the flow is stopped)
        self._progress: dict[TP, tuple[int, int]] = {}  # per partition behind: position, records received
        self._unstick: dict[TP, int] = {}  # stalled partitions to seek (by the next fetch) to these offsets
        self._subscribed_at: float | None = None  # monotonic time of the subscription, until it is joined
        self._not_joined_said = 0  # how many JOIN_WARN_S the wait for the first assignment was said at
        self._fetches = 0  # the fetcher's calls (a partition is judged only over an interval with some)
        self._fetches_judged = 0
        # the lag probe's watermarks, apart: a commit never queues behind them
        self._watermark_calls = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="rdkafka-watermarks"
        )

    # --- the consumer and the calls around it ---

    def _settings(self) -> Settings:
        settings: Settings | None = getattr(self.app, "stream_settings", None)
        return settings if settings is not None else Settings()

    def _properties(self) -> dict[str, Any]:
        conf = self.app.conf
        settings = self._settings()
        return consumer_properties(
            settings,
            conf.id,
            conf.broker_client_id,
            session_timeout_s=conf.broker_session_timeout,
            heartbeat_interval_s=conf.broker_heartbeat_interval,
            max_poll_interval_s=conf.broker_max_poll_interval,
            auto_offset_reset=conf.consumer_auto_offset_reset,
        ) | {
            "logger": logging.getLogger("stream_app.kafka.rdkafka"),
            "error_cb": self._on_error,
            "stats_cb": self._on_stats,
        }

    async def on_start(self) -> None:
        self._rd = Consumer(self._properties())
        self._reader = reader_for(self.app, self._settings(), getattr(self.app, "reporter_topics", ()))
        if self._reader is not None:
            self._reader.start()
        self._idle = asyncio.ensure_future(self._serve_while_idle())

    async def _serve_while_idle(self) -> None:
        """``consume()`` whenever Faust's fetcher does not call it (before the first assignment starts
        the fetcher, or while it is stopped): librdkafka joins the group and serves its callbacks only
        inside that call. (Once started, the fetcher calls it even while the flow is stopped.)"""
        while not self._closing:
            await asyncio.sleep(IDLE_POLL_S)
            self._warn_not_joined()
            if time.monotonic() - self._last_fetch > IDLE_AFTER_S:
                try:
                    await self._poll_idle()
                except Exception:
                    log.exception("rdkafka_serve_failed")

    def _warn_not_joined(self) -> None:
        """A group that never assigns anything, not even nothing, is said every ``JOIN_WARN_S``: librdkafka
        retries a refused join without a word (a member on aiokafka offers Faust's assignor, this one
        roundrobin: Kafka refuses the one with no protocol in common)."""
        subscribed = self._subscribed_at
        if subscribed is None:
            return
        waited = time.monotonic() - subscribed
        said, self._not_joined_said = self._not_joined_said, int(waited // JOIN_WARN_S)
        if self._not_joined_said > said:
            log.warning(
                "rdkafka_not_joined",
                waited_s=round(waited),
                group=self.app.conf.id,
                likely=(
                    "a member of the group consumes with the other driver (STREAM_APP_CONSUMER_DRIVER):"
                    " INCONSISTENT_GROUP_PROTOCOL; or the group's coordinator is out of reach"
                ),
            )

    async def on_thread_stop(self) -> None:
        await super().on_thread_stop()
        self._closing = True
        if self._idle is not None:
            self._idle.cancel()
        rd, self._rd = self._rd, None
        if rd is not None:
            try:
                rd.close()  # leaves the group at once (no session timeout for the others to wait)
            except Exception as exc:
                log.warning("rdkafka_close_failed", error=repr(exc)[:300])
        if self._reader is not None:  # after: the close's revoke callback hands its partitions back
            self._reader.stop()
        self._calls.shutdown(wait=False)
        self._watermark_calls.shutdown(wait=False)

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal() or self._log_again(("error", error.code())):
            log.warning("rdkafka_error", code=error.name(), reason=error.str()[:300], fatal=error.fatal())

    def _log_again(self, key: tuple[str, int]) -> bool:
        """At most one line a second per kind of error: a broker down is reported every few ms."""
        now = time.monotonic()
        if now - self._logged.get(key, 0.0) < 1.0:
            return False
        self._logged[key] = now
        return True

    def _ensure(self) -> Any:
        if self._rd is None:
            raise RuntimeError("the librdkafka consumer is not started")
        return self._rd

    async def _call(self, fun: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """``fun`` in the call executor (librdkafka's thread-safe calls), at most ``CALL_TIMEOUT_S``; while
        the consumer thread waits in a rebalance callback, on that thread (see :meth:`_on_app`)."""
        loop = asyncio.get_running_loop()
        with self._callback_lock:
            if self._in_callback:
                made: concurrent.futures.Future[_T] = concurrent.futures.Future()
                self._callback_calls.put((lambda: fun(*args, **kwargs), made))
                future: asyncio.Future[_T] = asyncio.wrap_future(made, loop=loop)
            else:
                future = loop.run_in_executor(self._calls, lambda: fun(*args, **kwargs))
        return await asyncio.wait_for(future, CALL_TIMEOUT_S + 1.0)

    def _on_app(self, coro: Awaitable[None], what: str) -> None:
        """Run ``coro`` on the app's loop and wait until it is done (from a callback, on the consumer
        thread), as aiokafka's driver does: a revoke that returned early would let the next assignment
        run before the lanes were dropped. A slow step is logged every 0.9 session timeout; only a
        stopping worker stops waiting.

        Meanwhile the librdkafka calls the app's loop makes (:meth:`_call`: Faust's commit of what was
        acked, committed offsets) are made here, on this thread: a synchronous commit made from another
        thread while this one is inside librdkafka's revoke callback never completes (measured: given up
        after its 11 s bound, the same commit made in the callback takes a millisecond), so every eager
        rebalance stalled the group 11 s and committed nothing."""
        bound = max(1.0, float(self.app.conf.broker_session_timeout) * 0.9)
        calls = self._callback_calls
        with self._callback_lock:  # before the coroutine starts: its first call may come at once
            self._in_callback = True
        try:
            future = asyncio.run_coroutine_threadsafe(cast(Any, coro), self.consumer.loop)
            future.add_done_callback(lambda _: calls.put(None))  # wakes the wait below
            self._serve_calls_until(future, bound, what)
        finally:
            left: list[_Call | None] = []
            with self._callback_lock:  # no call is queued once the flag is down: what is there is all
                self._in_callback = False
                while not calls.empty():
                    left.append(calls.get_nowait())
            for item in left:
                if item is not None:
                    _run_call(*item)
        if future.done() and not future.cancelled() and future.exception() is not None:
            log.error("rdkafka_rebalance_failed", step=what, error=repr(future.exception())[:300])

    def _serve_calls_until(self, future: concurrent.futures.Future[Any], bound: float, what: str) -> None:
        """The calls queued for this thread, until ``future`` is done (see :meth:`_on_app`)."""
        waited = 0.0
        deadline = time.monotonic() + bound
        while not future.done():
            try:
                item = self._callback_calls.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                waited += bound
                log.warning("rdkafka_rebalance_slow", step=what, waited_s=waited)
                if self._closing or self.app.should_stop:
                    return
                deadline = time.monotonic() + bound
                continue
            if item is not None:
                _run_call(*item)

    # --- rebalances (callbacks: on the consumer thread, inside consume()) ---

    async def subscribe(self, topics: Iterable[str]) -> None:
        self._ensure().subscribe(
            sorted(set(topics)), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        if self._generation == 0:
            self._subscribed_at = time.monotonic()

    def _on_revoke(self, rd: Any, partitions: list[TopicPartition]) -> None:
        self._revoke({_tp(p) for p in partitions}, lost=False)

    def _on_lost(self, rd: Any, partitions: list[TopicPartition]) -> None:
        self._revoke({_tp(p) for p in partitions}, lost=True)

    def _revoke(self, revoked: set[TP], *, lost: bool) -> None:
        self._rebalances += 1
        self._revoked = True
        log.info("rdkafka_revoked", partitions=len(revoked), lost=lost)
        if not (self._closing or self.app.should_stop):
            self._on_app(self._revoke_on_app(revoked, lost), "revoke")
        if self._reader is not None:  # stops fetching them and drops what it holds, before returning
            try:
                self._reader.revoke(revoked)
            except Exception:  # its loop did not answer: the books below still fence its records out
                log.exception("bounded_revoke_failed", partitions=len(revoked))
        with self._lock:
            self._assigned -= revoked
            self._paused -= revoked
            for tp in revoked:
                self._held.pop(tp, None)
                self._unstick.pop(tp, None)
                self._start_offsets.pop(tp, None)
                self._stood_in.pop(tp, None)
        # returning gives the partitions up: librdkafka unassigns them now

    async def _revoke_on_app(self, revoked: set[TP], lost: bool) -> None:
        self.app.on_rebalance_start()
        if revoked and not lost:  # what was acked stays done; a lost assignment's commit is refused anyway
            try:
                await asyncio.wait_for(self.consumer.commit(), CALL_TIMEOUT_S + 2.0)
            except Exception as exc:
                log.warning("rdkafka_revoke_commit_failed", error=repr(exc)[:300])
        await self.consumer.on_partitions_revoked(revoked)

    def _on_assign(self, rd: Any, partitions: list[TopicPartition]) -> None:
        self._rebalances += 1
        self._subscribed_at = None  # joined
        if self._closing or self.app.should_stop:
            return
        if not self._revoked:  # the first assignment: Faust's rebalance starts with a revocation
            self._on_app(self._revoke_on_app(set(), False), "revoke")
        self._revoked = False
        assigned = {_tp(p) for p in partitions}
        try:
            found = rd.committed(partitions, timeout=COMMITTED_TIMEOUT_S) if partitions else []
            at = [TopicPartition(p.topic, p.partition, p.offset) for p in found]
        except KafkaException as exc:  # librdkafka reads the committed offsets itself then
            log.warning("rdkafka_committed_failed", error=repr(exc)[:300])
            at = [TopicPartition(p.topic, p.partition) for p in partitions]
        reader = self._reader
        if reader is not None:  # the reporters' partitions: fetched by the bounded reader, not librdkafka
            reader.assign({_tp(p): p.offset for p in at if reader.owns(_tp(p))})
            at = [p for p in at if not reader.owns(_tp(p))]
        with self._rd_calls:
            rd.assign(at)
            if at:  # a partition paused before it was given up stays paused in librdkafka otherwise
                try:
                    rd.resume(at)
                except KafkaException as exc:
                    log.info("rdkafka_resume_skipped", reason=str(exc)[:200])
        with self._lock:
            self._assigned = assigned
            self._start_offsets = {_tp(p): p.offset for p in at}
            self._paused = set()
            self._held.clear()
            self._stood_in.clear()
            self._unstick.clear()
            self._generation += 1
            generation = self._generation
        log.info("rdkafka_assigned", partitions=len(assigned), generation=generation)
        self._on_app(self._assign_on_app(assigned, generation), "assign")

    async def _assign_on_app(self, assigned: set[TP], generation: int) -> None:
        self.app.consumer_generation_id = generation
        await self.consumer.on_partitions_assigned(assigned, generation)

    # --- fetching (on the consumer thread) ---

    async def getmany(
        self,
        active_partitions: set[TP] | None,
        timeout: float,  # noqa: ASYNC109 - Faust's signature
    ) -> Mapping[TP, list[Any]]:
        self._last_fetch = time.monotonic()
        return cast(
            Mapping[TP, list[Any]],
            await self.call_thread(self._fetch, active_partitions, min(timeout, CONSUME_MAX_S)),
        )

    def _sync_paused(self, rd: Any, active: set[TP]) -> None:
        """Pause in librdkafka what Faust paused, resume what it resumed; and, every ``RESUME_AGAIN_S``,
        resume again everything meant to be fetched: a resume librdkafka dropped (see the module) would
        leave its partition paused for good, unseen (no error, no record, the driver's books say
        resumed)."""
        now = time.monotonic()
        again = now - self._resumed_at >= RESUME_AGAIN_S
        with self._lock:
            want = self._assigned - active
            to_pause = want - self._paused
            to_resume = self._paused - want
            self._paused = (self._paused | to_pause) - to_resume
            if again:
                to_resume = self._assigned - self._paused
        if again:
            self._resumed_at = now
        # the bounded reader's partitions are paused and resumed by its take()
        to_pause, to_resume = self._librdkafkas(to_pause), self._librdkafkas(to_resume)
        with self._rd_calls:
            if to_pause:
                rd.pause(_parts(to_pause))
            if to_resume:
                rd.resume(_parts(to_resume))

    async def _fetch(self, active: set[TP] | None, timeout: float) -> dict[TP, list[Any]]:  # noqa: ASYNC109
        rd = self._rd
        if rd is None or self._closing:
            return {}
        active = set(self._assigned) if active is None else {TP(tp.topic, tp.partition) for tp in active}
        self._sync_paused(rd, active)
        self._fetches += 1
        with self._lock:
            self._fetching = active
            unstick, self._unstick = self._unstick, {}
        for tp, offset in unstick.items():
            if tp in self._assigned:
                self._seek_rd(rd, tp, offset)
        with self._lock:
            ready = {tp: self._held.pop(tp) for tp in list(self._held) if tp in active}
        if ready:
            return ready
        rebalances = self._rebalances
        with self._lock:
            seeks = dict(self._seeks)
        batch = max(1, self._settings().batch_max - 1)
        deadline = time.monotonic() + timeout
        reader = self._reader if self._reader is not None and self._reader.assigned else None
        while True:
            # the first record as soon as there is one (consume() would wait out its timeout for a
            # whole batch), then what librdkafka holds already, without waiting
            wait = max(0.0, deadline - time.monotonic())
            if reader is not None:  # nothing wakes a poll(): the bounded reader is looked at each slice
                wait = 0.0 if reader.ready(active) else min(wait, BOUNDED_SLICE_S)
            first = rd.poll(wait)
            if first is None and reader is None:
                return {}
            messages = [first, *rd.consume(num_messages=batch, timeout=0)] if first is not None else []
            if self._rebalances != rebalances:
                self._rewind(rd, messages)
                return {}
            out = self._sorted(messages, active, seeks) if messages else {}
            if reader is not None and reader.ready(active):  # after librdkafka's calls: no callback
                self._take_bounded(reader, active, out)  # runs between the take and the return
            if out or time.monotonic() >= deadline:
                return out
            # all of it held back (its partitions paused meanwhile): librdkafka queues every partition's
            # records in one queue, so it is drained here, not a batch per round trip of the app's loop,
            # lest another partition's record wait behind it

    def _librdkafkas(self, tps: set[TP]) -> set[TP]:
        """Of ``tps``, the partitions librdkafka fetches (the others are the bounded reader's)."""
        reader = self._reader
        return tps if reader is None else {tp for tp in tps if not reader.owns(tp)}

    def _take_bounded(self, reader: BoundedReader, active: set[TP], out: dict[TP, list[Any]]) -> None:
        """Into ``out``: the reporters' records the bounded reader holds of ``active``, as Faust's
        messages (Faust's own aiokafka conversion); of a partition revoked or seeked meanwhile, none."""
        found, seeks = reader.take(active)
        to_message = faust_aiokafka.Consumer._to_message
        with self._lock:
            for tp, records in found.items():
                if tp in self._assigned and reader.seeks(tp) == seeks.get(tp, 0):
                    out[tp] = [to_message(cast(Any, self.consumer), tp, r) for r in records]

    async def _poll_idle(self) -> None:
        """What :meth:`_serve_while_idle` fetches, with every partition paused first (the app's loop is
        busy or the flow stopped: nothing new is fetched meanwhile, so what is held is at most what
        librdkafka had queued, and the lanes' pauses hold); records held (the fetcher takes them and
        resumes what Faust wants once it runs)."""
        rd = self._rd
        if rd is None or self._closing:
            return
        self._sync_paused(rd, set())
        with self._lock:
            self._fetching = set()
        rebalances = self._rebalances
        with self._lock:
            seeks = dict(self._seeks)
        first = rd.poll(IDLE_POLL_S)
        if first is None:
            return
        messages = [first, *rd.consume(num_messages=max(1, self._settings().batch_max - 1), timeout=0)]
        if self._rebalances != rebalances:
            self._rewind(rd, messages)
            return
        self._sorted(messages, set(), seeks)

    def _sorted(
        self, messages: Sequence[Any], active: set[TP], seeks: Mapping[TP, int]
    ) -> dict[TP, list[Any]]:
        """The records of one ``consume()`` by partition: errors checked, records of a partition paused
        meanwhile held back, of one seeked meanwhile dropped (fetched again from where it was seeked)."""
        out: dict[TP, list[Any]] = {}
        generation = self.app.consumer_generation_id
        for message in messages:
            error = message.error()
            record = message if error is None else self._error(message, error)
            if record is None:
                continue
            tp = TP(record.topic(), record.partition())
            out.setdefault(tp, []).append(to_message(tp, record, generation))
        with self._lock:
            for tp in list(out):
                if tp not in self._assigned or self._seeks.get(tp, 0) != seeks.get(tp, 0):
                    del out[tp]
                elif tp not in active:
                    self._held.setdefault(tp, []).extend(out.pop(tp))
        return out

    def _on_stats(self, raw: str) -> None:
        """librdkafka's statistics (inside ``consume()``, on the consumer thread): a partition the driver
        means to fetch that stayed behind its high watermark with nothing queued and nothing received
        for a whole interval, its leader up, is logged with both sides' view and seeked (by the next
        fetch) to where the app's records of it end (see the module)."""
        try:
            stats = json.loads(raw)
        except ValueError:
            return
        up = {b.get("nodeid") for b in stats.get("brokers", {}).values() if b.get("state") == "UP"}
        # statistics queued while the app's loop did not fetch (busy, blocked) come together: no
        # judgement over an interval in which the app took nothing
        fetched, self._fetches_judged = self._fetches != self._fetches_judged, self._fetches
        with self._lock:
            wanted = self._librdkafkas((self._assigned & self._fetching) - self._paused - self._held.keys())
            starts = dict(self._start_offsets)
        progress: dict[TP, tuple[int, int]] = {}
        stuck: list[tuple[TP, dict[str, Any]]] = []
        for topic, about in stats.get("topics", {}).items():
            for key, part in about.get("partitions", {}).items():
                tp = TP(topic, int(key))
                if tp not in wanted or part.get("fetchq_cnt", 0) > 0 or part.get("leader") not in up:
                    continue
                position = max(part.get(k, -1) for k in ("next_offset", "app_offset", "committed_offset"))
                if position < 0:
                    position = part.get("lo_offset", -1)
                if position < 0 or part.get("hi_offset", -1) <= position:
                    continue  # caught up, or nothing known yet
                mark = (position, part.get("rxmsgs", 0))
                progress[tp] = mark
                if fetched and self._progress.get(tp) == mark:
                    stuck.append((tp, part))
        self._progress = progress
        if not stuck:
            return
        try:
            faust_paused = {TP(tp.topic, tp.partition) for tp in list(self.consumer._paused_partitions)}
        except (AttributeError, RuntimeError):
            faust_paused = set()
        for tp, part in stuck:
            app_offset = part.get("app_offset", -1)
            to = app_offset if app_offset >= 0 else starts.get(tp, -1)
            log.error(
                "rdkafka_fetch_stuck",
                topic=tp.topic,
                partition=tp.partition,
                seek_to=to,
                faust_paused=tp in faust_paused,
                stats_interval_s=STATS_INTERVAL_S,
                **{
                    k: part.get(k)
                    for k in (
                        "fetch_state",
                        "next_offset",
                        "app_offset",
                        "committed_offset",
                        "hi_offset",
                        "lo_offset",
                        "fetchq_cnt",
                        "rxmsgs",
                        "rx_ver_drops",
                        "leader",
                        "broker",
                        "desired",
                    )
                },
            )
            FETCH_STALLS.inc()
            if to >= 0:
                with self._lock:
                    self._unstick[tp] = to

    def _error(self, message: Any, error: KafkaError) -> RdRecord | None:
        """A record error becomes a stand-in (dead-lettered by position); other errors are logged."""
        code = error.code()
        if code == KafkaError._PARTITION_EOF:
            return None
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        placed = topic is not None and partition is not None and offset is not None and offset >= 0
        if code in _RECORD_ERRORS and placed:
            return self._withhold(TP(topic, partition), offset, error)
        if error.fatal() or self._log_again(("consume", code)):
            log.warning("rdkafka_consume_error", code=error.name(), reason=error.str()[:300], topic=topic)
        if error.fatal():
            raise KafkaException(error)
        return None

    def _withhold(self, tp: TP, base: int, error: KafkaError) -> RdRecord | None:
        """librdkafka reports a batch it cannot read (zstd over its bound: ``_BAD_COMPRESSION``) at the
        batch's base offset, stays there and fails it again twice a second, without saying where the
        batch ends (docs/performance.md, the bomb table). Its end is found by bisecting with a probe
        consumer of that partition alone; one stand-in takes the batch's offsets and the partition is
        seeked past it. Without an end (the probe failed), one stand-in at the base offset and the
        partition stays stalled there (logged), never a stand-in per failed fetch."""
        if self._stood_in.get(tp) == base:
            if self._log_again((f"stalled:{tp.topic}", tp.partition)):
                log.error("rdkafka_partition_stalled", topic=tp.topic, partition=tp.partition, offset=base)
            return None
        self._stood_in[tp] = base
        end = self._batch_end(tp, base)
        log.warning(
            "batch_withheld",
            reason=error.name(),
            topic=tp.topic,
            partition=tp.partition,
            first_offset=base,
            next_offset=end,
        )
        if end is None:
            return stand_in(tp.topic, tp.partition, base, error)
        rd = self._rd
        if rd is not None:
            try:
                with self._rd_calls:
                    rd.seek(TopicPartition(tp.topic, tp.partition, end))
            except KafkaException as exc:
                log.warning(
                    "rdkafka_seek_past_failed", topic=tp.topic, partition=tp.partition, reason=str(exc)[:200]
                )
        return stand_in(tp.topic, tp.partition, base, error, last=end - 1)

    def _probe(self) -> Any:
        """A consumer outside the group (assigned, never subscribed, never committing) to bisect with."""
        settings = self._settings()
        return Consumer(
            confluent_config(
                settings,
                **{
                    "group.id": f"{self.app.conf.id}-probe",
                    "enable.auto.commit": False,
                    "enable.partition.eof": False,
                    "isolation.level": "read_uncommitted",  # as the group's consumer reads
                    "fetch.max.bytes": settings.fetch_max_batch_bytes,
                    "receive.message.max.bytes": settings.fetch_max_batch_bytes + (16 << 20),
                },
            )
            | {"logger": logging.getLogger("stream_app.kafka.rdkafka")}
        )

    def _batch_end(self, tp: TP, base: int) -> int | None:
        """The first offset after the unreadable batch at ``base`` (None: not found in time)."""
        return batch_end(self._probe, tp, base)

    def _rewind(self, rd: Any, messages: Sequence[Any]) -> None:
        """A rebalance ran inside this ``consume()``: its records are not handed over; the partitions
        still assigned are set back where they were assigned (their committed offset), or, for one
        assigned without a committed offset (a new partition, or the committed offsets could not be
        read), to the first record of it this ``consume()`` dropped: librdkafka refuses a seek to
        "the stored offset", and going on from where the fetch stopped would skip what was dropped."""
        firsts: dict[TP, int] = {}
        for message in messages:
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            if topic is None or partition is None or offset is None or offset < 0:
                continue
            tp = TP(topic, partition)
            firsts[tp] = min(offset, firsts.get(tp, offset))
        with self._lock:
            again = {
                tp: start if (start := self._start_offsets.get(tp, -1001)) >= 0 else firsts[tp]
                for tp in firsts.keys() & self._assigned
            }
        for tp, offset in again.items():
            self._seek_rd(rd, tp, offset)

    # --- positions (from the app's loop) ---

    def _seek_rd(self, rd: Any, tp: TP, offset: int) -> None:
        if self._reader is not None and self._reader.owns(tp):
            self._seek_bounded(self._reader, tp, offset)
            return
        with self._lock:
            self._seeks[tp] = self._seeks.get(tp, 0) + 1
            self._held.pop(tp, None)
            self._stood_in.pop(tp, None)  # an unreadable batch met again after a seek is withheld again
        try:
            with self._rd_calls:
                rd.seek(TopicPartition(tp.topic, tp.partition, offset))
        except KafkaException as exc:
            # not fetching yet (_STATE): it starts at the offset it was assigned at, the committed one
            log.info("rdkafka_seek_skipped", topic=tp.topic, partition=tp.partition, reason=str(exc)[:200])

    @staticmethod
    def _seek_bounded(reader: BoundedReader, tp: TP, offset: int) -> None:
        try:
            reader.seek(tp, offset)
        except Exception as exc:  # the reader's loop did not answer in time: logged as librdkafka's
            log.warning("bounded_seek_failed", topic=tp.topic, partition=tp.partition, reason=repr(exc)[:200])

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Every assigned partition back to its committed offset (the start, when none)."""
        rd = self._ensure()
        while not self.app.should_stop:
            tps = set(self._assigned)
            if not tps:
                return {}
            try:
                found = await self._call(rd.committed, _parts(tps), timeout=COMMITTED_TIMEOUT_S)
            except (KafkaException, TimeoutError) as exc:
                log.warning("rdkafka_committed_failed", error=repr(exc)[:300])
                await asyncio.sleep(0.5)
                continue
            out: dict[TP, int] = {}
            for part in found:
                tp = _tp(part)
                if tp not in self._assigned:
                    continue
                self._seek_rd(rd, tp, part.offset if part.offset >= 0 else OFFSET_BEGINNING)
                out[tp] = part.offset if part.offset >= 0 else cast(int, None)
            return out
        return {}

    def seek(self, partition: TP, offset: int) -> None:
        self._seek_rd(self._ensure(), TP(partition.topic, partition.partition), offset)

    async def seek_wait(self, partitions: Mapping[TP, int]) -> None:
        rd = self._ensure()
        for tp, offset in partitions.items():
            self._seek_rd(rd, TP(tp.topic, tp.partition), offset)
            if offset > 0:
                self.consumer._read_offset[tp] = offset
            else:
                self.consumer._read_offset.pop(tp, None)

    async def seek_to_beginning(self, *partitions: TP) -> None:
        rd = self._ensure()
        for tp in partitions:
            self._seek_rd(rd, TP(tp.topic, tp.partition), OFFSET_BEGINNING)

    async def position(self, tp: TP) -> int | None:
        if self._reader is not None and self._reader.owns(tp):
            return await self._call(self._reader.position, TP(tp.topic, tp.partition))
        found = await self._call(self._ensure().position, _parts([tp]))
        offset = int(found[0].offset) if found else -1
        return offset if offset >= 0 else None

    def assignment(self) -> set[TP]:
        with self._lock:
            return set(self._assigned)

    # --- commits ---

    async def commit(self, offsets: Mapping[TP, int]) -> bool:  # noqa: PLR0911 - one per outcome
        """Commit ``offsets`` of partitions still assigned; False (never a crash) when the group
        moved on (the member was fenced, or a rebalance runs) or the coordinator is unreachable."""
        rd = self._ensure()
        assigned = self.assignment()
        parts = [
            TopicPartition(tp.topic, tp.partition, offset)
            for tp, offset in offsets.items()
            if TP(tp.topic, tp.partition) in assigned
        ]
        if not parts:
            return True
        try:
            started = time.monotonic()
            await self._call(rd.commit, offsets=parts, asynchronous=False)
            took = time.monotonic() - started
            if took > 0.5:
                log.warning("rdkafka_commit_slow", partitions=len(parts), took_s=round(took, 3))
        except KafkaException as exc:
            code = _code(exc)
            if code in _REBALANCED:
                log.info("rdkafka_commit_refused", reason=str(exc)[:200])
                return False
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and (error.retriable() or not error.fatal()):
                log.warning("rdkafka_commit_failed", reason=str(exc)[:300])
                return False
            log.exception("rdkafka_commit_crashed")
            await self.crash(exc)
            return False
        except TimeoutError:
            log.warning("rdkafka_commit_timed_out", partitions=len(parts))
            return False
        except RuntimeError as exc:  # the consumer closed meanwhile (the worker stops)
            log.info("rdkafka_commit_after_close", reason=str(exc)[:200])
            return False
        return True

    async def committed_offsets(
        self, partitions: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], int | None]:
        found = await self._call(
            self._ensure().committed,
            [TopicPartition(t, p) for t, p in partitions],
            timeout=COMMITTED_TIMEOUT_S,
        )
        return {(part.topic, part.partition): (part.offset if part.offset >= 0 else None) for part in found}

    def close(self) -> None:
        """Faust's "close for a graceful stop": the consumer is closed (LeaveGroup) when its thread stops."""
        self._closing = True

    def verify_event_path(self, now: float, tp: TP) -> None:
        return None  # Faust's livelock warnings read aiokafka's internals: none here
