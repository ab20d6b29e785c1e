"""``stream-app state status | rebuild``: the Redis state is a cache of the log.

Every record the state is derived from — each accepted observation, each directive of the center, the
clock's ticks — is on the internal topic ``internal.observations.by-entity``, kept as long as the state
needs it (this and the previous reporting year: ``retention.ms`` in ``topics/topics.toml``), each with
the time it was received (header ``stream-app-received-at``). ``rebuild`` replays that topic from its
start to the end it finds, through the very consolidator and roll-up code the workers run (the outputs
go nowhere: they were published when the records were first processed), into the state; then it raises
every partition's applied mark to that end, verifies what it built, and records a new epoch.

The workers must be stopped for an in-place rebuild (a running one would write into the state being
cleared and replayed); started again, they go on from their committed offsets — what they read again is
skipped as already applied. A flag holds every stage off while the rebuild runs, and stays if it stops
half-way: the state reads LOST until a rebuild completes. ``adopt`` takes a state built before applied
marks existed (an upgrade) for the one the group's positions describe.

``status`` compares, per stateful partition, the applied mark with the consumer group's position and the
log's bounds: SOUND, or LOST and why.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka import Message as KafkaMessage
from confluent_kafka.admin import AdminClient

from stream_app.agents.consolidate import Consolidator
from stream_app.agents.rollup import Rollup
from stream_app.config.blueprint import Blueprint
from stream_app.domain.reasons import Reason
from stream_app.exceptions import ConfigurationError
from stream_app.kafka.config import confluent_config
from stream_app.kafka.dead_letters import Letter
from stream_app.kafka.publisher import Output
from stream_app.logs import get_logger
from stream_app.state.entity_hash import decode_state
from stream_app.state.guard import loss, new_epoch, source_of
from stream_app.state.store import StateStore, connect

log = get_logger(__name__)

BATCH = 2000  # records per replayed batch (the workers' batches are smaller; the result is the same)
_POLL_S = 1.0


@dataclass(frozen=True, slots=True)
class PartitionState:
    """One stateful partition: its log bounds, the group's position, the state's applied mark."""

    topic: str
    partition: int
    low: int
    high: int
    committed: int | None  # the group's next offset (None: the group never committed)
    mark: int | None
    ledger: str | None = None  # what a check of the partition's ledger found lost (None: nothing)

    @property
    def problem(self) -> str | None:
        found = loss(source_of((self.topic, self.partition)), self.mark, self.committed, self.low)
        return found or self.ledger


@dataclass(slots=True)
class Report:
    """What a rebuild did."""

    prefix: str
    records: int = 0
    seconds: float = 0.0
    entities: int = 0
    contributions: int = 0
    marks: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


# --------------------------------------------------------------------------------------------- status


def status(blueprint: Blueprint) -> list[PartitionState]:
    """Every stateful partition (the internal topic's, the roll-up topic's) as it stands."""
    settings = blueprint.settings
    partitions = _stateful_partitions(blueprint)
    consumer = Consumer(
        confluent_config(settings, **{"group.id": settings.group_id, "enable.auto.commit": False})
    )
    try:
        committed = {
            (tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None)
            for tp in consumer.committed([TopicPartition(t, p) for t, p in partitions], timeout=10)
        }
        bounds = {
            (t, p): consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10) for t, p in partitions
        }
    finally:
        consumer.close()
    check, ledgers = asyncio.run(_checkpoint(blueprint, [source_of(p) for p in partitions]))
    return [
        PartitionState(
            t,
            p,
            bounds[(t, p)][0],
            bounds[(t, p)][1],
            committed[(t, p)],
            check[source_of((t, p))],
            ledgers.get(source_of((t, p))),
        )
        for t, p in partitions
    ]


LEDGER_SAMPLE = 5000  # ledger entries checked per partition by `state status` (the workers' audit: 64)


async def _checkpoint(
    blueprint: Blueprint, sources: list[str]
) -> tuple[dict[str, int | None], dict[str, str | None]]:
    """The applied marks, and what a check of each partition's ledger (the roll-ups' for the roll-up
    topic's) found lost."""
    client = connect(blueprint.settings)
    try:
        store = StateStore(client, blueprint.settings)
        marks = (await store.checkpoint(sources)).applied
        ledgers = {source: await store.ledger_loss(source, LEDGER_SAMPLE) for source in sources}
        rollups = await store.rollup_ledger_loss(LEDGER_SAMPLE)
        rollup_topic = blueprint.topic_by_role("rollup").name
        for source in sources:
            if source.rsplit(":", 1)[0] == rollup_topic and ledgers[source] is None:
                ledgers[source] = rollups
        return marks, ledgers
    finally:
        await client.aclose()


def status_lines(rows: Sequence[PartitionState]) -> list[str]:
    """One line per partition, and the verdict: SOUND, or LOST and how many."""
    lines, lost = [], 0
    for row in rows:
        problem = row.problem
        lost += problem is not None
        lines.append(
            f"{row.topic}:{row.partition:<3} log [{row.low}, {row.high})  group at "
            f"{'-' if row.committed is None else row.committed}  state up to "
            f"{'-' if row.mark is None else row.mark}  {'LOST: ' + problem if problem else 'SOUND'}"
        )
    lines.append(f"state: {'LOST' if lost else 'SOUND'} ({lost} of {len(rows)} partitions lost)")
    return lines


# -------------------------------------------------------------------------------------------- rebuild


class _Captured:
    """The publisher during a replay: nothing leaves; roll-up contributions are kept for the roll-up."""

    def __init__(self, max_bytes: int, rollup_topic: str) -> None:
        self.max_bytes = max_bytes
        self.rollup_topic = rollup_topic
        self.contributions: list[Output] = []

    async def publish(self, outputs: Sequence[Output], letters: Sequence[Letter] = ()) -> list[Any]:
        await self.publish_dead_letters(letters)
        self.contributions.extend(o for o in outputs if o.topic == self.rollup_topic)
        return []

    async def publish_dead_letters(self, letters: Sequence[Letter]) -> None:
        """Nothing leaves; but a record placed under another partition count stops the rebuild."""
        misplaced = [letter for letter in letters if letter.record["reason"] == Reason.MISROUTED]
        if misplaced:
            # placed under another partition count: the topic grew (stream-app topics grow) after
            # these records were written, and where their entities lived then is not recorded
            raise ConfigurationError(
                f"the internal topic holds records placed under an earlier partition count "
                f"({misplaced[0].record['message']}): it was grown since. A rebuild cannot place "
                "them; restore a Redis backup taken after the growth "
                "(docs/deploy.md#growing-the-internal-topics). The state stays LOST"
            )


@dataclass(slots=True)
class _Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class _Event:
    message: _Message


def rebuild(
    blueprint: Blueprint, *, prefix: str | None = None, force: bool = False, progress: bool = True
) -> Report:
    """Replay the internal topic into the state under ``prefix`` (default: the configured one) and
    raise its applied marks; refuses a sound state unless ``force``. Returns what it did."""
    in_place = prefix is None or prefix == blueprint.settings.redis_key_prefix
    if in_place:
        _refuse_live_workers(blueprint)
        rows = status(blueprint)
        if not force and all(row.problem is None for row in rows) and any(r.mark is not None for r in rows):
            raise ConfigurationError(
                "the state is sound (`stream-app state status`): nothing to rebuild; "
                "--force rebuilds it anyway"
            )
    return asyncio.run(_rebuild(blueprint, prefix, progress=progress))


def adopt(blueprint: Blueprint) -> dict[str, int]:
    """Take the state as it is for the one the group's positions describe: set each stateful partition's
    applied mark to the group's committed offset - 1, and an epoch. For a state built before applied
    marks existed (an upgrade), with the workers stopped; never to silence a real loss."""
    _refuse_live_workers(blueprint)
    marks = {
        source_of((row.topic, row.partition)): row.committed - 1
        for row in status(blueprint)
        if row.committed is not None and row.committed > 0
    }

    async def write() -> None:
        client = connect(blueprint.settings)
        try:
            await StateStore(client, blueprint.settings).set_marks(marks, new_epoch("adopt"))
        finally:
            await client.aclose()

    asyncio.run(write())
    return marks


def _refuse_live_workers(blueprint: Blueprint) -> None:
    """An in-place rebuild or an adoption needs the workers stopped: a worker that runs would write into
    the state while it is cleared and replayed. (Workers waiting on a lost state count too.)"""
    settings = blueprint.settings
    admin = AdminClient(confluent_config(settings))
    (future,) = admin.describe_consumer_groups([settings.group_id], request_timeout=10).values()
    group = future.result()
    if group.members:
        raise ConfigurationError(
            f"consumer group {settings.group_id!r} has {len(group.members)} live member(s): stop the "
            "workers first; started again, they go on from their committed offsets"
        )


async def _rebuild(blueprint: Blueprint, prefix: str | None, *, progress: bool) -> Report:
    settings = blueprint.settings
    target = settings.model_copy(update={"redis_key_prefix": prefix or settings.redis_key_prefix})
    client = connect(target)
    store = StateStore(client, target)
    report = Report(target.redis_key_prefix)
    try:
        # the flag first: a worker started meanwhile waits, and a rebuild stopped half-way leaves the
        # state LOST (run it again), never a half state that looks sound
        await client.set(store.keys.rebuilding(), new_epoch("rebuild"))
        removed = await _clear(client, store)
        log.info("state_rebuild_started", prefix=target.redis_key_prefix, keys_removed=removed)
        internal = blueprint.topic_by_role("repartition")
        rollups = blueprint.topic_by_role("rollup")
        captured = _Captured(settings.output_max_bytes, rollups.name)
        publisher: Any = captured  # what the stages ask of a publisher, and nothing leaves
        consolidator = Consolidator(blueprint, store, blueprint.rulebook, publisher, replay=True)
        rollup = Rollup(blueprint, store, publisher, replay=True)
        started = time.monotonic()
        ends = _ends(settings, [(rollups.name, p) for p in range(rollups.partitions)])
        total, batches = _replay(settings, internal.name, internal.partitions)
        for batch in batches:
            await consolidator.process(batch)
            report.records += len(batch)
            if captured.contributions:
                report.contributions += len(captured.contributions)
                contributions: Any = [_contribution(o) for o in captured.contributions]
                await rollup.process(contributions)
                captured.contributions.clear()
            if progress:
                _progress(report.records, total, time.monotonic() - started)
        report.seconds = time.monotonic() - started
        if progress:
            print(file=sys.stderr)
        # the marks: every partition up to the end the replay read (the roll-up topic's contributions
        # up to its end were derived from records the replay read)
        marks = {source_of((t, p)): high - 1 for (t, p), high in {**total.ends, **ends}.items() if high > 0}
        epoch = new_epoch("rebuild")
        await store.set_marks(marks, epoch)
        report.marks = marks
        report.entities = await _verify(client, store, marks)
        await client.delete(store.keys.rebuilding())  # last: the state is whole
        log.info(
            "state_rebuilt",
            prefix=report.prefix,
            records=report.records,
            seconds=round(report.seconds, 1),
            rate=round(report.rate),
            entities=report.entities,
            epoch=epoch,
        )
        return report
    finally:
        await client.aclose()


@dataclass(slots=True)
class _Total:
    records: int = 0
    ends: dict[tuple[str, int], int] = field(default_factory=dict)


def _replay(settings: Any, topic: str, partitions: int) -> tuple[_Total, Iterator[list[_Event]]]:
    """The internal topic from its start to the ends found now, in batches (each partition in order)."""
    consumer = Consumer(
        confluent_config(
            settings,
            **{
                "group.id": f"{settings.group_id}.rebuild",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            },
        )
    )
    total = _Total()
    assigned = []
    for p in range(partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        total.ends[(topic, p)] = high
        total.records += high - low
        if high > low:
            assigned.append(TopicPartition(topic, p, low))
    consumer.assign(assigned)

    def batches() -> Iterator[list[_Event]]:
        remaining = {tp.partition for tp in assigned}
        try:
            while remaining:
                batch: list[_Event] = []
                for m in consumer.consume(num_messages=BATCH, timeout=_POLL_S):
                    error, partition, offset = m.error(), m.partition(), m.offset()
                    if partition is None or offset is None:
                        raise ConfigurationError(f"reading {topic}: {error}")
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            remaining.discard(partition)
                            continue
                        raise ConfigurationError(f"reading {topic}: {error}")
                    end = total.ends[(topic, partition)]
                    if offset >= end - 1:
                        remaining.discard(partition)
                        if offset >= end:
                            continue
                    stamp = m.timestamp()[1]
                    seconds = stamp / 1000 if stamp > 0 else None
                    message = _Message(topic, partition, offset, m.key(), m.value(), seconds, _headers(m))
                    batch.append(_Event(message))
                if batch:
                    yield batch
        finally:
            consumer.close()

    return total, batches()


def _ends(settings: Any, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    consumer = Consumer(confluent_config(settings, **{"group.id": f"{settings.group_id}.rebuild"}))
    try:
        return {
            (t, p): consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1] for t, p in partitions
        }
    finally:
        consumer.close()


def _headers(message: KafkaMessage) -> list[tuple[str, bytes]]:
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(str(name), value) for name, value in pairs if isinstance(value, bytes)]


def _contribution(output: Output) -> _Event:
    # offset -1: a replayed contribution raises no applied mark (the roll-up topic's are set at the end)
    return _Event(_Message(output.topic, output.partition or 0, -1, output.key, output.value, None, []))


async def _clear(client: Any, store: StateStore) -> int:
    """Remove what a lost state left under the prefix (half or none): every entity's keys, the roll-ups,
    the indexes, the marks and the epoch — not the rebuild flag, nor the briefing markers (a briefing
    sent is sent)."""
    keep = {store.keys.rebuilding().encode()}
    briefing = store.keys.briefing_prefix().encode()
    removed = 0
    batch: list[Any] = []
    async for key in client.scan_iter(match=store.keys.everything(), count=1000):
        if key in keep or key.startswith(briefing):
            continue
        batch.append(key)
        if len(batch) >= 1000:
            removed += await client.unlink(*batch)
            batch.clear()
    if batch:
        removed += await client.unlink(*batch)
    return int(removed)


async def _verify(client: Any, store: StateStore, marks: dict[str, int]) -> int:
    """Every mark stands as set, and every entity's state decodes with offsets within them; the count
    of entities."""
    check = await store.checkpoint(sorted(marks))
    wrong = {s: (m, check.applied[s]) for s, m in marks.items() if check.applied[s] != m}
    if wrong:
        raise ConfigurationError(f"applied marks not as set after the rebuild: {wrong}")
    entities = 0
    async for key in client.scan_iter(match=store.keys.entity_states(), count=1000):
        state = decode_state(await client.hgetall(key))
        for source, offset in state.offsets.items():
            if source in marks and offset > marks[source]:
                raise ConfigurationError(f"{key!r}: offset {offset} of {source} beyond the replayed log")
        entities += 1
    return entities


def _progress(done: int, total: _Total, seconds: float) -> None:
    share = done / total.records if total.records else 1.0
    rate = done / seconds if seconds > 0 else 0.0
    width = 30
    bar = "#" * int(share * width)
    print(
        f"\rrebuild [{bar:<{width}}] {done:,}/{total.records:,} records {share:6.1%}  {rate:,.0f}/s",
        end="",
        file=sys.stderr,
        flush=True,
    )


def _stateful_partitions(blueprint: Blueprint) -> list[tuple[str, int]]:
    out = []
    for role in ("repartition", "rollup"):
        spec = blueprint.topic_by_role(role)
        out += [(spec.name, p) for p in range(spec.partitions)]
    return out
