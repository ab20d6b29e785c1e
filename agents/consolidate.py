"""Consolidate: the stateful step. One writer per entity, in order, for three kinds of record on the
internal topic: observations (aggregates, alert rules, consolidated values), ticks (timer-driven
rules and closing reporting periods at their deadline) and the center's directives.

Per batch: read what the batch touches (each entity's state, its observations' ids, the periods they
count in) in one pipelined round trip; apply each entity's records in order (pure:
``stream_app.domain.entity``) — if a step needs more (a correction needs the values of its period to
recompute a min; a closing period its final value), read that and run that entity's records again
from its state as read; publish alerts, consolidated records (once per key per batch) and roll-up
contributions; then commit each entity's state together with the input offset it includes, atomically.

Poison never jams a partition. A record that cannot be processed for a reason retrying cannot cure
— undecodable, forged (a tick for another partition, an entity the catalogue cannot have, a record on
a partition that does not own its entity), a step that raises, an entity whose stored state cannot be
read, an output too large or refused by Kafka, a commit Redis refuses — is *charged* with the failure
and goes to ``internal.consolidate.dlq`` with its bytes, reason and exception type. Entities are
independent, so only the entity concerned is run again from its state as read, without what was
charged (the step is pure: nothing a failing step half-did survives); after ``MAX_STEP_FAILURES`` at
one entity in one batch, the rest of its records are charged too, so a batch costs at most a few runs
of each entity. Only a dependency that is down (Redis, Kafka) makes the partition wait.

This module is the stage's loop: read → step → publish → commit. Decoding and checking its records,
and what failures are charged to, are in ``_consolidate_input``; the outputs, dead letters and metrics
in ``_consolidate_output``; what every stage shares in ``_stage``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import faust

from stream_app.agents._batch import observe_latency
from stream_app.agents._consolidate_input import (
    STAGE,
    Batch,
    DirectiveItem,
    EntityCharges,
    Item,
    ObservationItem,
    Reader,
    TickItem,
    missing,
    source_of_entity,
    state_of,
)
from stream_app.agents._consolidate_output import Built, EntityRun, Outputs, count
from stream_app.agents._stage import Fence, register_stateful
from stream_app.config.blueprint import Blueprint
from stream_app.domain.alerting import RuleBook
from stream_app.domain.entity import Context, DirectiveRefusedError, EntityKey, Outcome, apply, direct, tick
from stream_app.domain.reasons import Reason
from stream_app.kafka.lanes import Received
from stream_app.kafka.publisher import Publisher, is_bulk, received_at_of
from stream_app.logs import get_logger
from stream_app.ops import metrics
from stream_app.state import entity_hash
from stream_app.state.guard import lasts_of, marks_of
from stream_app.state.owned import OwnedState
from stream_app.state.store import Commit, EntityReads, Mark, ReadRequest, StateLayer

log = get_logger(__name__)

MAX_READ_PASSES = 6  # reads an entity may discover in one batch: its own, a correction's range, ...
MAX_STEP_FAILURES = 3  # step failures at one entity in one batch before the rest of its records are charged


class Consolidator:
    """Applies one batch of internal records to Redis state and publishes the results."""

    def __init__(
        self,
        blueprint: Blueprint,
        store: StateLayer,
        rulebook: RuleBook,
        publisher: Publisher,
        *,
        replay: bool = False,
        fence: Fence | None = None,
        owned: OwnedState[Any] | None = None,
    ) -> None:
        # what this worker wrote of its partitions' entity state hashes (stream_app/state/owned.py),
        # raw as HGETALL returns them; never in a replay: it sets no marks, so nothing vouches for them
        self.owned: OwnedState[dict[bytes, bytes]] | None = None if replay else owned
        self.replay = replay  # rebuilding the state from the log: its alerts were logged the first time
        self.fence = fence
        self.catalogue = blueprint.catalogue
        self.store = store
        self.rulebook = rulebook
        self.publisher = publisher
        self.poison_topic = blueprint.topic_by_role("consolidate_dead_letter").name
        self.hold_ms = round(blueprint.settings.bulk_settle_s * 1000)
        self.reader = Reader(blueprint, store, rulebook, self.poison_topic)
        self.outputs = Outputs(blueprint, store, rulebook, publisher)

    async def process(
        self, events: Sequence[Received], floors: Mapping[str, int | None] | None = None
    ) -> None:
        """Read, apply in order, publish outputs and dead letters, then commit states with their offsets.

        Publishing before the commit means a crash in between republishes the same records (with
        the same deterministic alert ids, and consolidated values that are the same) rather than
        losing them. An output Kafka refuses for good (possible only when a topic's limit changed
        under a running worker: sizes are checked before sending) makes its entity run again without
        the record that caused it; what the abandoned run already published stays published (an
        alert transition it raised is in ``center.alerts``), while roll-ups converge: every run's
        contribution carries a higher sequence than the one before.
        """
        now = int(time.time() * 1000)
        batch = await self.reader.decode(events, now)
        charges = EntityCharges(batch)
        runs: dict[str, EntityRun] = {}
        built: dict[str, Built] = {}
        letters = batch.letters  # the records refused while decoding: sent with the first publish
        todo, attempt = set(batch.by_entity), 0
        while True:
            await self._run_entities(batch, todo, now, charges, runs=runs, built=built)
            outputs = [o for entity in sorted(built) for o in built[entity].outputs]
            outputs += self.outputs.rollup_outputs(runs, built, now, attempt)
            if self.fence is not None:
                await self.fence()
            letters += charges.letters(self.poison_topic, now)
            refused = await self.publisher.publish(outputs, letters)
            letters = []
            if not refused:
                break
            attempt += 1
            for output, error in refused:
                todo |= charges.output(output.blame, Reason.OUTPUT_REFUSED, error, str(error))
            for entity in todo:
                runs.pop(entity, None)
                built.pop(entity, None)
        # Rejections (not poison) come from the final runs only, once their outputs are published.
        await self.publisher.publish_dead_letters(
            self.outputs.rejection_letters(runs, now) + charges.letters(self.poison_topic, now)
        )
        count(runs, built, replay=self.replay)
        start = time.perf_counter()
        prepared = [b.prepared for b in built.values() if b.prepared is not None]
        indexes = [write for b in built.values() for write in b.indexes]
        # the partitions' applied marks go last (a replay sets its marks at its end): every record of
        # the batch is now processed; ``floors``: what the state guard admitted the batch on
        marks = None if self.replay else marks_of(lasts_of(e.message for e in events), floors)
        try:
            written, failed = await self.store.commit(prepared, indexes, applied=marks)
        except BaseException:  # written or not, nobody knows: what is kept of them is not trusted
            if self.owned is not None:
                self.owned.forget([p.entity for p in prepared], "failed")
            raise
        metrics.REDIS_APPLY_SECONDS.observe(time.perf_counter() - start)
        if self.owned is not None and self.owned.enabled and marks is not None:
            sources = {entity: source_of_entity(batch, entity) for entity in built}
            self._keep(self.owned, runs, built, sources, written=written, failed=failed, marks=marks)
        fenced = len(prepared) - len(written) - len(failed)
        if fenced:  # the offset-in-commit rule: a writer behind the state writes nothing
            metrics.COMMITS_FENCED.inc(fenced)
            log.info("state_commits_fenced", entities=fenced, batch=len(events))
        if failed:  # Redis refused an entity's commit (nothing of it written): its records are poison
            late = EntityCharges(batch)
            for entity, refusal in failed.items():
                late.entity(entity, Reason.STATE_WRITE_FAILED, refusal, repr(refusal))
            await self.publisher.publish_dead_letters(late.letters(self.poison_topic, now))
        observe_latency(batch.observation_events)

    @staticmethod
    def _keep(
        owned: OwnedState[dict[bytes, bytes]],
        runs: Mapping[str, EntityRun],
        built: Mapping[str, Built],
        sources: Mapping[str, str],
        *,
        written: set[str],
        failed: Mapping[str, BaseException],
        marks: Mapping[str, Mark],
    ) -> None:
        """After a commit Redis confirmed with its marks: keep each written entity's state hash as the
        commit script left it (the hash it ran from, with the commit's removals and fields), and the
        marks as this worker's. A commit Redis refused drops what is kept of its entity; one that
        wrote nothing (its state held this offset or later: a redelivery, or another writer) drops
        its whole partition, trusted again only from its next commit. An entity the batch read and
        did not write (a tick that changed nothing) is kept as read: Redis holds just that, and its
        partition's mark is this worker's now too."""
        stale: set[str] = set()
        for entity, b in built.items():
            commit, prepared = runs[entity].commit, b.prepared
            if commit is None or prepared is None:
                if entity not in owned and entity not in failed:  # read from Redis in this batch
                    base = runs[entity].base
                    owned.put(sources[entity], entity, base, entity_hash.hash_size(base))
                continue
            if entity in failed or prepared.state_hash is None:
                owned.forget([entity], "failed")
            elif entity not in written:
                stale.add(commit.source)
            else:
                after = prepared.state_hash.applied_to(runs[entity].base)
                owned.put(commit.source, entity, after, entity_hash.hash_size(after))
        for source in stale:
            owned.drop_source(source, "stale")
        owned.committed({source: offset for source, (offset, _) in marks.items() if source not in stale})

    async def _run_entities(
        self,
        batch: Batch,
        todo: set[str],
        now: int,
        charges: EntityCharges,
        *,
        runs: dict[str, EntityRun],
        built: dict[str, Built],
    ) -> None:
        """Run every entity of ``todo`` until it has all it needs and its outputs are built; reads
        what the runs discover in one round trip per round, and yields to the event loop between."""
        reads: dict[str, EntityReads] = {}
        unreadable = await self.reader.read_first(batch, todo, reads, self.owned)
        passes: Counter[str] = Counter(todo)
        requests: dict[str, ReadRequest] = {}
        while todo:
            if requests:
                unreadable.update(await self.store.read(requests, reads))
                passes.update(requests.keys())
                requests = {}
            for entity in sorted(todo):
                run = self._run_entity(entity, batch.by_entity[entity], reads, unreadable, now, charges)
                if run is None:  # every record of the entity was charged
                    todo.discard(entity)
                    continue
                needed = missing(run.state)
                if needed:
                    if passes[entity] < MAX_READ_PASSES:
                        requests[entity] = needed
                        continue
                    error = RuntimeError(f"still needed reads after {MAX_READ_PASSES} passes")
                    charges.entity(entity, Reason.READS_EXHAUSTED, error, str(error))
                    todo.discard(entity)
                    continue
                outputs = self.outputs.build(entity, run, now, charges)
                if outputs is None:
                    continue  # building its outputs failed, a record was charged: run it again
                runs[entity], built[entity] = run, outputs
                todo.discard(entity)
            await asyncio.sleep(0)

    def _run_entity(  # noqa: PLR0917 - the run's inputs, each needed
        self,
        entity: str,
        items: list[Item],
        reads: dict[str, EntityReads],
        unreadable: dict[str, BaseException],
        now: int,
        charges: EntityCharges,
    ) -> EntityRun | None:
        """Apply the entity's uncharged records in order from its state as read (pure). A record whose
        step raises is charged and the entity run again without it, from its state as read; after
        ``MAX_STEP_FAILURES`` the rest of its records are charged. None: nothing left to apply."""
        failures = 0
        while True:
            live = [item for item in items if (item.index, entity) not in charges]
            if not live:
                return None
            try:
                state = state_of(entity, reads, unreadable)
            except Exception as exc:
                charges.entity(entity, Reason.STATE_UNREADABLE, exc, repr(exc))
                return None
            found = reads.get(entity)
            run = EntityRun(
                state,
                top_offset=max(item.message.offset for item in items),
                base=found.state if found is not None else {},
            )
            for item in live:
                try:
                    self._step(run, item, entity, now)
                except Exception as exc:
                    failures += 1
                    charges.record(item.index, entity, Reason.STEP_FAILED, exc, repr(exc))
                    if failures >= MAX_STEP_FAILURES:
                        detail = f"its step failed {failures} times in one batch: {exc!r}"
                        charges.entity(entity, Reason.STEP_FAILED, exc, detail)
                    break
            else:
                return run

    def _step(self, run: EntityRun, item: Item, entity: str, now: int) -> None:
        message = item.message
        source = f"{message.topic}:{message.partition}"
        # each record runs at the time it was received, so a replay of the log rebuilds the same state
        now = received_at_of(message) or now
        state, touched = run.state, run.touched
        if isinstance(item, ObservationItem):
            bulk = is_bulk(message)
            result = apply(
                state,
                item.observation,
                source=source,
                offset=message.offset,
                ctx=Context(self.catalogue, self.rulebook, now, self.hold_ms if bulk else 0, bulk=bulk),
                touched=touched,
            )
            if result.outcome is not Outcome.ALREADY_APPLIED:
                # Duplicates and refused records still advance the applied offset: they were processed.
                self._commit(run, entity, source, message.offset)
        elif isinstance(item, TickItem):
            result = tick(
                state,
                EntityKey.parse(entity),
                source=source,
                offset=message.offset,
                ctx=Context(self.catalogue, self.rulebook, item.now_ms),
                touched=touched,
            )
            if not result.skipped:
                self._commit(run, entity, source, message.offset)
        elif isinstance(item, DirectiveItem):
            try:
                result = direct(
                    state,
                    EntityKey.parse(entity),
                    item.directive,
                    source=source,
                    offset=message.offset,
                    ctx=Context(self.catalogue, self.rulebook, now),
                )
            except DirectiveRefusedError as refused:
                self._commit(run, entity, source, message.offset)
                run.results.append((item, refused))
                return
            if not result.skipped:
                self._commit(run, entity, source, message.offset)
        run.results.append((item, result))

    def _commit(self, run: EntityRun, entity: str, source: str, offset: int) -> None:
        indicator = self.catalogue.indicators[entity.partition("|")[0]]
        run.commit = Commit(entity, run.state, source, offset, indicator)


def register(
    app: faust.App, blueprint: Blueprint, store: StateLayer, rulebook: RuleBook, publisher: Publisher
) -> None:
    """The consolidate agent on the internal re-keyed topic."""

    def build(fence: Fence, owned: OwnedState[Any]) -> Consolidator:
        return Consolidator(blueprint, store, rulebook, publisher, fence=fence, owned=owned)

    # a live record may wait for company here, where each entity visit's cost is shared by its records
    register_stateful(
        app, blueprint, store, STAGE, "repartition", build, age_budget=blueprint.settings.batch_age_budget_s
    )
