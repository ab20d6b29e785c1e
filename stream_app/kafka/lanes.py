"""Lanes: a stage's records handed over a fetch at a time, not one record at a time.

Faust hands every record to its agent through the conductor, a channel queue, the stream and an event,
with a ``wait_first`` per record: about 140 µs a record on this machine kind, most of a worker's CPU
(docs/performance.md). The stages here all work in batches, so that per-record crossing buys nothing.
:class:`LaneConsumer` is Faust's aiokafka consumer with one change: the records it fetches for a topic
that has a :class:`Lane` are handed to that lane as one :class:`Delivery` per partition and fetch; a
stage's task takes batches from its lane (:meth:`Lane.take`) and acks each record it finished
(:meth:`LaneConsumer.ack_batch`). Topics without a lane keep Faust's own path.

What stays as Faust does it: the group, the fetcher thread, flow control during a rebalance (a fetch made
in an earlier generation is dropped and fetched again from the committed offsets), paused partitions,
offset gaps, and commits — an offset is committed only when every record before it was acked. A lane
holds about ``capacity`` records and ``capacity_bytes`` bytes: when it is full, the consumer pauses
fetching the partitions that fill it (and resumes them once the stage took half, or took all they
held), so a stage that waits (the bulk intake, holding history back behind the live feed) never stalls
the fetch loop the other stages share. A lane shares each batch fairly between its topics and
partitions (:class:`Lane`): one reporter's flood does not queue ahead of another reporter's live record.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from aiokafka.errors import IllegalStateError
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types import Message as FaustMessage

from stream_app.logs import get_logger
from stream_app.state.guard import Positioned

log = get_logger(__name__)

_T = TypeVar("_T")

COMMITTED_TIMEOUT_S = 10.0
"""Longest a consumer asks the group's coordinator what was committed before giving up."""


Headers = Mapping[str, bytes] | Sequence[tuple[str, bytes]] | None
"""A record's headers as consumers hand them over: Faust's list of pairs, a mapping, or none."""


class Message(Positioned, Protocol):
    """One record as a stage reads it: where it was read (:class:`Positioned`), its key, value,
    timestamp and headers (what Faust's messages and the tests' plain records both have). The intake's
    fetch bounds may put a :class:`stream_app.kafka.fetch_bounds.Withheld` in place of a value it would
    not inflate."""

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def timestamp(self) -> float | None: ...

    @property
    def headers(self) -> Headers: ...


class Received(Protocol):
    """What a stage is handed per record: the record (:class:`Message`)."""

    @property
    def message(self) -> Message: ...


class Event:
    """One record a lane hands to its stage (the shape of Faust's events that stages read)."""

    __slots__ = ("message",)

    def __init__(self, message: Message) -> None:
        self.message = message


@dataclass(slots=True)
class Delivery:
    """The records of one partition from one fetch, in offset order; ``generation`` and ``epoch`` say
    when it was fetched: the consumer group's generation and the worker's count of revocations."""

    tp: TP
    generation: int
    events: list[Event]
    epoch: int = 0


class Lane:
    """A bounded queue of deliveries for one stage: the consumer puts, the stage takes.

    Fair between its sources: one lane carries every reporter's live topic, and a reporter that floods
    its topic must not queue ahead of another's live observation. Each partition keeps its own queue
    (in offset order), and a batch shares its room between the topics that have records, then between
    each topic's partitions; what a source leaves unused goes to the others. A record of a quiet
    reporter is so in the next batch, whatever the flood holds. When the lane is full, only the
    partitions holding at least their share are paused (:meth:`overfilled_by`), so a flood never
    pauses the quiet reporter's fetch.
    """

    def __init__(self, name: str, capacity: int, capacity_bytes: int = 1 << 62) -> None:
        self.name = name
        self.capacity = capacity
        # and in bytes (keys and values): a lane of the largest records a topic takes, or of records a
        # compressed batch inflated to, must not hold gigabytes before its record count says full
        self.capacity_bytes = capacity_bytes
        self._bytes_by: dict[TP, int] = {}
        self._bytes = 0
        self._queues: dict[TP, deque[Delivery]] = {}  # partitions with records waiting, oldest first
        self._held_by: dict[TP, int] = {}
        self._held = 0
        self._turn = 0  # which topic a batch serves first: the remainder of a share rotates
        self._not_empty = asyncio.Event()
        self.paused: set[TP] = set()  # partitions the consumer stopped fetching because the lane is full
        self.on_room: Callable[[Lane], None] | None = None  # told when paused partitions may fetch again

    @property
    def held(self) -> int:
        """Records waiting in the lane."""
        return self._held

    @property
    def held_bytes(self) -> int:
        """Bytes (keys and values) of the records waiting in the lane."""
        return self._bytes

    @property
    def full(self) -> bool:
        return self._held >= self.capacity or self._bytes >= self.capacity_bytes

    @property
    def half_empty(self) -> bool:
        return self._held <= self.capacity // 2 and self._bytes <= self.capacity_bytes // 2

    def held_by(self, tp: TP) -> int:
        """Records of partition ``tp`` waiting in the lane."""
        return self._held_by.get(tp, 0)

    def overfilled_by(self, tp: TP) -> bool:
        """Whether the lane is full and ``tp`` holds at least an even share of it: the partition to
        pause. A partition holding less (a quiet reporter's, behind a flood) keeps fetching: its
        records are taken first anyway, so it never holds more than its share for long."""
        sources = len(self._held_by)
        return self.full and (
            self.held_by(tp) * sources >= self._held or self._bytes_by.get(tp, 0) * sources >= self._bytes
        )

    def put(self, delivery: Delivery) -> None:
        """Queue a delivery (never waits: the consumer pauses the partitions that overfill the lane)."""
        count = len(delivery.events)
        if not count:
            return
        tp = delivery.tp
        size = _size(delivery.events)
        self._queues.setdefault(tp, deque()).append(delivery)
        self._held_by[tp] = self._held_by.get(tp, 0) + count
        self._held += count
        self._bytes_by[tp] = self._bytes_by.get(tp, 0) + size
        self._bytes += size
        self._not_empty.set()

    def release(self) -> set[TP]:
        """The paused partitions that may fetch again, forgotten as paused: all of them once the lane
        is half empty; before that, those with nothing left in the lane (their share is free)."""
        if self.half_empty:
            released = set(self.paused)
        else:
            released = {tp for tp in self.paused if tp not in self._queues}
        self.paused -= released
        return released

    def _room(self) -> None:
        if self.on_room is None or not self.paused:
            return
        if self.half_empty or any(tp not in self._queues for tp in self.paused):
            self.on_room(self)

    async def take(self, max_records: int, within: float, age_budget: float = 0.0) -> list[Delivery]:
        """The next batch: at least one record, then more until ``max_records`` records are taken or
        the batch's window has passed since the first (``within`` seconds, or longer while its oldest
        record is younger than ``age_budget``: :func:`batch_window`); shared fairly between the
        sources (see the class). One delivery per partition (and fetch generation), each in offset
        order."""
        while not self._held:
            self._not_empty.clear()
            await self._not_empty.wait()
        chunks: dict[tuple[TP, int, int], list[Event]] = {}  # by source and generation, first taken first
        room = max_records
        started = time.monotonic()
        room -= self._share_out(room, chunks)
        window = within
        if age_budget > 0:
            window = batch_window(within, age_budget, oldest_age(chunks.values(), time.time()))
        deadline = started + window
        while True:
            left = deadline - time.monotonic()
            if room <= 0 or left <= 0:
                break
            self._not_empty.clear()
            try:
                await asyncio.wait_for(self._not_empty.wait(), left)
            except TimeoutError:
                break
            room -= self._share_out(room, chunks)
        self._turn += 1
        self._room()
        return [Delivery(tp, generation, events, epoch) for (tp, generation, epoch), events in chunks.items()]

    def _share_out(self, room: int, chunks: dict[tuple[TP, int, int], list[Event]]) -> int:
        """Take up to ``room`` records into ``chunks``, an even share per topic, then per partition,
        again and again until the room is used or the lane empty; returns how many were taken."""
        taken = 0
        while taken < room and self._held:
            by_topic: dict[str, list[TP]] = {}
            for tp in self._queues:
                by_topic.setdefault(tp.topic, []).append(tp)
            topics = _rotated(list(by_topic), self._turn)
            topic_share = max(1, (room - taken) // len(topics))
            for topic in topics:
                partitions = _rotated(by_topic[topic], self._turn)
                share = max(1, topic_share // len(partitions))
                for tp in partitions:
                    taken += self._take_from(tp, min(share, room - taken), chunks)
                    if taken >= room:
                        return taken
        return taken

    def _take_from(self, tp: TP, count: int, chunks: dict[tuple[TP, int, int], list[Event]]) -> int:
        """Take up to ``count`` records of partition ``tp``, oldest first (a delivery larger than that
        is split); returns how many were taken."""
        queue = self._queues[tp]
        taken = 0
        while queue and taken < count:
            delivery = queue[0]
            want = count - taken
            if len(delivery.events) <= want:
                queue.popleft()
                events = delivery.events
            else:
                events = delivery.events[:want]
                delivery.events = delivery.events[want:]
            chunks.setdefault((tp, delivery.generation, delivery.epoch), []).extend(events)
            taken += len(events)
            if queue:  # what is left of the partition keeps its bytes counted
                size = _size(events)
                self._bytes_by[tp] -= size
                self._bytes -= size
        self._held -= taken
        self._held_by[tp] -= taken
        if not queue:
            del self._queues[tp]
            del self._held_by[tp]
            self._bytes -= self._bytes_by.pop(tp)
        return taken

    def drop(self, tps: Iterable[TP]) -> int:
        """Forget the queued deliveries of ``tps`` (revoked partitions); returns the records dropped."""
        gone = set(tps)
        dropped = 0
        for tp in gone & set(self._queues):
            del self._queues[tp]
            dropped += self._held_by.pop(tp)
            self._bytes -= self._bytes_by.pop(tp)
        self._held -= dropped
        self.paused -= gone
        self._room()
        return dropped


def batch_window(within: float, age_budget: float, oldest_age: float | None) -> float:
    """How long a batch gathers records after its first: ``within``, or, while its oldest record is
    younger than ``age_budget``, until that record is ``age_budget`` old (never longer than
    ``age_budget``: a producer's clock ahead of this one's counts as age 0). A stage that is behind
    holds records already older than the budget, so only a stage keeping up at a low rate waits
    longer, for company; the rate a busy stage works at is unchanged. ``oldest_age`` None (no
    record's produce time known): ``within``."""
    if oldest_age is None or age_budget <= within:
        return within
    return max(within, age_budget - max(0.0, oldest_age))


def oldest_age(batches: Iterable[Sequence[Event]], now: float) -> float | None:
    """Seconds since the oldest of the records' produce times (their Kafka timestamps; each batch in
    offset order, so its first record is its oldest), None when no record carries one."""
    stamps = [events[0].message.timestamp for events in batches if events]
    known = [stamp for stamp in stamps if stamp]
    return now - min(known) if known else None


def _size(events: Sequence[Event]) -> int:
    """Bytes of the keys and values of ``events``."""
    return sum(len(e.message.key or b"") + len(e.message.value or b"") for e in events)


def _rotated(items: list[_T], turn: int) -> list[_T]:
    """``items`` starting at ``turn`` (modulo their count): who goes first changes batch to batch."""
    start = turn % len(items)
    return items[start:] + items[:start]


class Lanes:
    """The lanes of one worker, by topic name."""

    def __init__(self) -> None:
        self.by_topic: dict[str, Lane] = {}
        # revocations so far: the group's generation changes only when partitions are assigned, so a
        # batch taken between a revocation and the next assignment is told apart by this
        self.epoch = 0

    def open(self, name: str, topics: Iterable[str], capacity: int, capacity_bytes: int = 1 << 62) -> Lane:
        lane = Lane(name, capacity, capacity_bytes)
        for topic in topics:
            if topic in self.by_topic:
                raise ValueError(f"topic {topic} already has lane {self.by_topic[topic].name}")
            self.by_topic[topic] = lane
        return lane

    def drop(self, tps: Iterable[TP]) -> None:
        revoked = list(tps)
        self.epoch += 1
        for lane in set(self.by_topic.values()):
            dropped = lane.drop(revoked)
            if dropped:
                log.info("lane_dropped_revoked", lane=lane.name, records=dropped)


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, with the fetch sizing of ``STREAM_APP_FETCH_MIN_BYTES`` and
    ``STREAM_APP_FETCH_MAX_WAIT_MS``. Faust asks the broker to answer a fetch as soon as one byte is
    there; every fetch names each of the worker's partitions (a hundred and more: every reporter's live
    and bulk topics), encoded and decoded in Python, so at a trickle of records the thread spent most of
    a core fetching. Waiting a few milliseconds for a useful amount costs little latency and that core.
    With nothing to fetch, that wait is paid fifty times a second for nothing (about a tenth of a core):
    after an empty fetch the next is answered at the first byte, or after ``STREAM_APP_FETCH_IDLE_WAIT_MS``
    (:class:`IdleAwareFetch`)."""

    def _create_consumer(self, loop: asyncio.AbstractEventLoop) -> Any:
        consumer = super()._create_consumer(loop)
        settings = getattr(self.app, "stream_settings", None)
        if settings is not None:  # read by AIOKafkaConsumer.start, which has not run yet
            consumer._fetch_min_bytes = settings.fetch_min_bytes
            consumer._fetch_max_wait_ms = settings.fetch_max_wait_ms
        return consumer

    async def on_start(self) -> None:
        await super().on_start()
        settings = getattr(self.app, "stream_settings", None)
        fetcher = getattr(self._consumer, "_fetcher", None)
        if settings is not None and fetcher is not None and settings.fetch_idle_wait_ms > 0:
            IdleAwareFetch(
                busy=FetchWait(settings.fetch_min_bytes, settings.fetch_max_wait_ms),
                idle=FetchWait(1, settings.fetch_idle_wait_ms),
            ).install(fetcher)


@dataclass(frozen=True)
class FetchWait:
    """What a fetch asks the broker to wait for: ``min_bytes``, or ``max_wait_ms`` at most."""

    min_bytes: int
    max_wait_ms: int


class IdleAwareFetch:
    """Switches aiokafka's fetcher between two waits: the ``busy`` one (a few ms for a useful amount)
    and, once the worker is idle, the ``idle`` one (answered at the first byte there, or after a long
    wait). The fetcher reads its two fields each time it builds a request, so a switch takes effect on
    the next fetch.

    Idle means the last fetch brought nothing, no fetched record waits to be handed over and no partition
    is paused: then the fetch in flight named every partition that could bring anything, and a record
    arriving on any of them answers it at once. Only a partition becoming fetchable meanwhile would wait
    for it (the broker answers one connection's requests in order): a paused partition resumed (a lane
    the stage drained) or a partition whose buffered records were handed over, both ruled out by the
    condition; a seek or a new assignment, rare, waits at most the idle wait."""

    def __init__(self, busy: FetchWait, idle: FetchWait) -> None:
        self.busy, self.idle = busy, idle

    def install(self, fetcher: Any) -> None:
        proc = fetcher._proc_fetch_request

        async def proc_and_adapt(assignment: Any, node_id: int, request: Any) -> Any:
            brought = await proc(assignment, node_id, request)
            self.apply(fetcher, self.idle if self.is_idle(fetcher, assignment, brought) else self.busy)
            return brought

        fetcher._proc_fetch_request = proc_and_adapt

    @staticmethod
    def is_idle(fetcher: Any, assignment: Any, brought: Any) -> bool:
        if brought or fetcher._records:
            return False
        try:
            return not any(assignment.state_value(tp).paused for tp in assignment.tps)
        except (AttributeError, KeyError):  # an assignment gone meanwhile: the busy wait, as before
            return False

    @staticmethod
    def apply(fetcher: Any, wait: FetchWait) -> None:
        fetcher._fetch_min_bytes = wait.min_bytes
        fetcher._fetch_max_wait_ms = wait.max_wait_ms


class LaneConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, delivering the records of lane topics a fetch at a time."""

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # the fetcher's loop
        own: Lanes | None = getattr(self.app, "lanes", None)
        lanes = own.by_topic if own is not None else {}
        if own is None or not lanes:
            await super()._drain_messages(fetcher)
            return
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records, active = await self._wait_next_records(1.0)
                await self.sleep(0)  # a fetch that returns at once must still let the loop run
                if records and not self.should_stop:
                    if self.flow_active:
                        await self._dispatch(records, active, own)
                    else:  # a rebalance stopped the flow: what was fetched is fetched again
                        await self._seek_to_committed()
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                log.info("lane_consumer_stopped")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _seek_to_committed(self) -> None:
        """Rewind every assigned partition to its committed offset. A second rebalance that takes a
        partition away half-way (a worker paused past its session timeout and resumed) makes aiokafka
        refuse the seek of that partition: seek again over the assignment as it is now, until every
        partition still ours is rewound (a record fetched and dropped is never skipped)."""
        while not self.should_stop and self.assignment():  # nothing assigned: nothing to rewind
            try:
                await self.perform_seek()
            except IllegalStateError as exc:
                log.info("lane_seek_again", reason=str(exc)[:200])
                await self.sleep(0.1)
            else:
                return

    def _current(self, generation: int, epoch: int, own: Lanes) -> bool:
        """Whether nothing moved partitions since ``generation``/``epoch`` (no rebalance began)."""
        return self.flow_active and self.app.consumer_generation_id == generation and own.epoch == epoch

    async def _dispatch(
        self, records: Mapping[TP, Sequence[Any]], active: set[TP] | None, own: Lanes
    ) -> None:
        lanes = own.by_topic
        generation = self.app.consumer_generation_id
        epoch = own.epoch
        read_offset = self._read_offset
        for tp, batch in records.items():
            if not self._current(generation, epoch, own):
                return  # a rebalance began: the rest is fetched again after it
            if active is not None and tp not in active and tp not in self._buffered_partitions:
                continue
            if self._commit_every is not None and self._n_acked >= self._commit_every:
                self._n_acked = 0
                await self.commit()
            lane = lanes.get(tp.topic)
            if lane is None:
                await self._one_by_one(tp, batch)
                continue
            events, last = await self._unread(tp, batch)
            if not events:
                continue
            if not self._current(generation, epoch, own):
                return  # a rebalance ran while this awaited (a commit, a gap): its seek stands
            lane.put(Delivery(tp, generation, events, epoch))
            read_offset[tp] = last
            if lane.overfilled_by(tp):
                self._pause_lane(lane, tp)

    async def _unread(self, tp: TP, batch: Sequence[Any]) -> tuple[list[Event], int | None]:
        """The records of ``batch`` not read yet (Faust's read-offset rule, its gaps), and the last."""
        to_message = self._to_message
        events: list[Event] = []
        last = self._read_offset[tp]
        for record in batch:
            offset = record.offset
            if last is not None and offset < last:
                continue
            if last is not None and offset - last > 1:
                await self._add_gap(tp, last + 1, offset)  # compacted or aborted records
            events.append(Event(to_message(tp, record)))
            last = offset
        return events, last

    def _pause_lane(self, lane: Lane, tp: TP) -> None:
        paused = TP(tp.topic, tp.partition)  # Faust's own type: its partition sets insist on it
        lane.paused.add(paused)
        lane.on_room = self._resume_lane
        if paused not in self._paused_partitions:  # a rebalance resumes every partition
            self.pause_partitions([paused])

    async def _one_by_one(self, tp: TP, batch: Sequence[Any]) -> None:
        """Faust's own path, record by record, for a topic without a lane."""
        read_offset = self._read_offset
        for record in batch:
            message = self._to_message(tp, record)
            offset = message.offset
            last = read_offset[tp]
            if last is None or offset >= last:
                if last is not None and offset - last > 1 and self.app.topics.acks_enabled_for(tp.topic):
                    await self._add_gap(tp, last + 1, offset)
                await self.wait_first(self.callback(message), self.suspend_flow.wait())
                read_offset[tp] = offset

    def _resume_lane(self, lane: Lane) -> None:
        """Fetch the lane's partitions that have room again (those still assigned: a rebalance may have
        moved some)."""
        resumed = {TP(tp.topic, tp.partition) for tp in lane.release()} & self.assignment()
        if resumed:
            self.resume_partitions(resumed)

    async def committed_offsets(
        self, partitions: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], int | None]:
        """What the group committed for each partition asked (None: nothing), fetched from the group's
        coordinator by aiokafka's ``committed`` in the consumer's thread."""
        thread = self._thread

        async def fetch() -> dict[tuple[str, int], int | None]:
            consumer = thread._ensure_consumer()

            async def each() -> dict[tuple[str, int], int | None]:
                out: dict[tuple[str, int], int | None] = {}
                for topic, partition in partitions:
                    offset = await consumer.committed(TP(topic, partition))
                    out[(topic, partition)] = None if offset is None or offset < 0 else int(offset)
                return out

            # aiokafka retries a coordinator it cannot reach for ever: bounded, so the audit gives up
            # (and tries at its next interval) instead of holding the consumer thread
            return await asyncio.wait_for(each(), COMMITTED_TIMEOUT_S)

        result: dict[tuple[str, int], int | None] = await thread.call_thread(fetch)
        return result

    def current(self, delivery: Delivery) -> bool:
        """Whether ``delivery`` was fetched since the last revocation and assignment."""
        own: Lanes | None = getattr(self.app, "lanes", None)
        epoch = own.epoch if own is not None else 0
        return delivery.generation == self.app.consumer_generation_id and delivery.epoch == epoch

    def ack_batch(self, deliveries: Sequence[Delivery]) -> int:
        """Ack every record of ``deliveries`` (all processed); returns how many were acked. Records
        fetched before a revocation are not acked: whoever owns their partitions now reads them again
        from the committed offset (the state layer skips what was applied)."""
        acked = 0
        ack = self.ack
        for delivery in deliveries:
            if not self.current(delivery):
                continue
            for event in delivery.events:
                if ack(cast(FaustMessage, event.message)):  # a lane holds its consumer's own messages
                    acked += 1
        return acked


class LaneTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with the lane consumer."""

    Consumer = LaneConsumer


def lane_consumer(app: Any) -> LaneConsumer:
    """The app's consumer, as the lane consumer it is."""
    return cast(LaneConsumer, app.consumer)
