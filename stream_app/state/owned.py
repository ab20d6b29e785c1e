"""What a stateful stage wrote of the partitions it owns, kept in the worker so it need not read it back.

Each internal partition has one writer in order (its owner), and every commit raises the partition's
applied mark with the state it wrote (:mod:`stream_app.state.guard`). So while the mark in Redis is the
one this worker wrote last, under the same state epoch, nothing else wrote what the partition's keys
hold: what the worker wrote is what Redis holds, and a stage may take it from here instead of reading
(and decoding) it again. At low rates a batch visits each entity once, and that read is most of the
record's cost (issue 28, target 6).

The rule is checked where the guard admits a batch (:meth:`OwnedState.admit`), with the marks and the
epoch it reads anyway: a source whose mark is not the one this worker committed last — another owner
(a rebalance, a zombie's partition taken over), a state lost or rebuilt (a Redis restart that lost its
tail, a flush, a rebuild), a commit whose reply never came — loses every entry, and a new epoch loses
them all. Entries are also dropped when a commit failed or wrote nothing (a stale writer), when the
state is found lost, and after ``max_age_s`` (well inside the keys' TTL: Redis may expire what is not
written for long). Bounded by bytes, least recently used first. Values are the stage's own (raw
fields, decoded sources...): a hit hands out the stored value, which the caller must not mutate
unless it copies it first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from stream_app.ops import metrics

V = TypeVar("V")


@dataclass(slots=True)
class _Entry(Generic[V]):
    source: str
    value: V
    size: int
    stored_at: float


class OwnedState(Generic[V]):
    """A stage's write-through cache of the partitions it owns (see the module)."""

    def __init__(
        self, stage: str, max_bytes: int, max_age_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.stage = stage
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._clock = clock
        self._entries: OrderedDict[Hashable, _Entry[V]] = OrderedDict()
        self._by_source: dict[str, set[Hashable]] = {}
        self._bytes = 0
        self._epoch: str | None = None
        self._committed: dict[str, int] = {}  # per source: the applied mark this worker wrote last
        self._hits = metrics.OWNED_STATE_LOOKUPS.labels(stage, "hit")  # bound once: a look-up per entity
        self._misses = metrics.OWNED_STATE_LOOKUPS.labels(stage, "miss")
        self._dropped = metrics.OWNED_STATE_DROPPED

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        """Whether ``key`` is held (not counted as a look-up, its age not checked)."""
        return key in self._entries

    # --- validity (the guard) ---

    def admit(self, epoch: str | None, marks: Mapping[str, int | None]) -> None:
        """At a batch's admission, with the state's epoch and the applied marks of its sources as read:
        forget every source whose mark is not the one this worker committed last (all, on a new epoch)."""
        if epoch != self._epoch:
            if self._entries:
                self.clear("epoch")
            self._committed.clear()
            self._epoch = epoch
        for source, mark in marks.items():
            if mark is None or self._committed.get(source) != mark:
                self.drop_source(source, "mark")

    def committed(self, marks: Mapping[str, int]) -> None:
        """After a commit Redis confirmed: these applied marks are this worker's now."""
        self._committed.update(marks)

    # --- entries ---

    def get(self, key: Hashable) -> V | None:
        """The value stored for ``key`` (None: none, or too old); counted as a hit or a miss."""
        entry = self._entries.get(key)
        if entry is not None and self._clock() - entry.stored_at > self.max_age_s:
            self._remove(key)
            self._dropped.labels(self.stage, "age").inc()
            entry = None
        if entry is None:
            self._misses.inc()
            return None
        self._entries.move_to_end(key)
        self._hits.inc()
        return entry.value

    def put(self, source: str, key: Hashable, value: V, size: int) -> None:
        """Store what this worker just committed for ``key`` (of partition ``source``), ``size`` bytes."""
        if not self.enabled:
            return
        self._remove(key)
        if size > self.max_bytes:
            return
        self._entries[key] = _Entry(source, value, size, self._clock())
        self._by_source.setdefault(source, set()).add(key)
        self._bytes += size
        while self._bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._remove(oldest)
            self._dropped.labels(self.stage, "size").inc()

    def forget(self, keys: Iterable[Hashable], why: str) -> None:
        for key in keys:
            if self._remove(key):
                self._dropped.labels(self.stage, why).inc()

    def drop_source(self, source: str, why: str) -> None:
        """Forget every entry of partition ``source`` (and its committed mark)."""
        self._committed.pop(source, None)
        keys = self._by_source.pop(source, set())
        for key in keys:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._bytes -= entry.size
        if keys:
            self._dropped.labels(self.stage, why).inc(len(keys))

    def clear(self, why: str) -> None:
        if self._entries:
            self._dropped.labels(self.stage, why).inc(len(self._entries))
        self._entries.clear()
        self._by_source.clear()
        self._committed.clear()
        self._bytes = 0

    def _remove(self, key: Hashable) -> bool:
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        self._bytes -= entry.size
        keys = self._by_source.get(entry.source)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_source[entry.source]
        return True
