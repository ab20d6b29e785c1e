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
holds about ``capacity`` records: when it is full, the consumer pauses fetching its partitions (and
resumes them once the stage took half), so a stage that waits (the bulk intake, holding history back
behind the live feed) never stalls the fetch loop the other stages share.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from aiokafka.errors import IllegalStateError
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from stream_app.logs import get_logger

log = get_logger(__name__)


class Received(Protocol):
    """What a stage is handed per record: the record (``.message``: topic, partition, offset, key,
    value, timestamp, headers)."""

    @property
    def message(self) -> Any: ...


class Event:
    """One record a lane hands to its stage (the shape of Faust's events that stages read)."""

    __slots__ = ("message",)

    def __init__(self, message: Any) -> None:
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
    """A bounded queue of deliveries for one stage: the consumer puts, the stage takes."""

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.capacity = capacity
        self._deliveries: deque[Delivery] = deque()
        self._held = 0
        self._not_empty = asyncio.Event()
        self.paused: set[TP] = set()  # partitions the consumer stopped fetching because the lane is full
        self.on_room: Callable[[Lane], None] | None = None  # told when a full lane has room again

    @property
    def held(self) -> int:
        """Records waiting in the lane."""
        return self._held

    @property
    def full(self) -> bool:
        return self._held >= self.capacity

    def put(self, delivery: Delivery) -> None:
        """Queue a delivery (never waits: the consumer pauses the lane's partitions when it is full)."""
        self._deliveries.append(delivery)
        self._held += len(delivery.events)
        self._not_empty.set()

    def _room(self) -> None:
        if self.paused and self._held <= self.capacity // 2 and self.on_room is not None:
            self.on_room(self)

    async def take(self, max_records: int, within: float) -> list[Delivery]:
        """The next batch: at least one delivery, then more until ``max_records`` records are taken or
        ``within`` seconds have passed since the first. A delivery larger than the room left is split."""
        while not self._deliveries:
            self._not_empty.clear()
            await self._not_empty.wait()
        taken: list[Delivery] = []
        room = max_records
        deadline = time.monotonic() + within
        while True:
            while self._deliveries and room > 0:
                delivery = self._deliveries[0]
                if len(delivery.events) <= room:
                    self._deliveries.popleft()
                    taken.append(delivery)
                    room -= len(delivery.events)
                    self._held -= len(delivery.events)
                else:
                    head = Delivery(delivery.tp, delivery.generation, delivery.events[:room], delivery.epoch)
                    delivery.events = delivery.events[room:]
                    taken.append(head)
                    self._held -= room
                    room = 0
            left = deadline - time.monotonic()
            if room <= 0 or left <= 0:
                break
            self._not_empty.clear()
            try:
                await asyncio.wait_for(self._not_empty.wait(), left)
            except TimeoutError:
                break
        self._room()
        return taken

    def drop(self, tps: Iterable[TP]) -> int:
        """Forget the queued deliveries of ``tps`` (revoked partitions); returns the records dropped."""
        gone = set(tps)
        kept = [d for d in self._deliveries if d.tp not in gone]
        dropped = sum(len(d.events) for d in self._deliveries if d.tp in gone)
        self._deliveries = deque(kept)
        self._held -= dropped
        self.paused -= gone
        self._room()
        return dropped


class Lanes:
    """The lanes of one worker, by topic name."""

    def __init__(self) -> None:
        self.by_topic: dict[str, Lane] = {}
        # revocations so far: the group's generation changes only when partitions are assigned, so a
        # batch taken between a revocation and the next assignment is told apart by this
        self.epoch = 0

    def open(self, name: str, topics: Iterable[str], capacity: int) -> Lane:
        lane = Lane(name, capacity)
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
    a core fetching. Waiting a few milliseconds for a useful amount costs little latency and that core."""

    def _create_consumer(self, loop: asyncio.AbstractEventLoop) -> Any:
        consumer = super()._create_consumer(loop)
        settings = getattr(self.app, "stream_settings", None)
        if settings is not None:  # read by AIOKafkaConsumer.start, which has not run yet
            consumer._fetch_min_bytes = settings.fetch_min_bytes
            consumer._fetch_max_wait_ms = settings.fetch_max_wait_ms
        return consumer


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
            if lane.full:
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
        """Fetch a lane's paused partitions again (those still assigned: a rebalance may have moved some)."""
        resumed = {TP(tp.topic, tp.partition) for tp in lane.paused} & self.assignment()
        lane.paused.clear()
        if resumed:
            self.resume_partitions(resumed)

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
                if ack(event.message):
                    acked += 1
        return acked


class LaneTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with the lane consumer."""

    Consumer = LaneConsumer


def lane_consumer(app: Any) -> LaneConsumer:
    """The app's consumer, as the lane consumer it is."""
    return cast(LaneConsumer, app.consumer)
