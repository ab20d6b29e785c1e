"""The state layer: every Redis command the processor sends, behind one interface.

Callers ask for what they need — an entity's reads and its atomic commit with the input offset it
includes, the entities due at a tick, the query API's indexes, a roll-up's contributions, the briefing's
marker — and never see a key, a field format or a command. :class:`StateLayer` is the interface;
:class:`StateStore` implements it on Redis (pipelines and the Lua scripts of ``lua/``, one round trip
per batch), :class:`stream_app.state.memory.MemoryStateStore` in memory with the same semantics, for
unit tests of the agents' batch logic. Key names: :mod:`stream_app.state.keys`.

Where each part lives: the interface and its values in :mod:`~stream_app.state.layer`, the client in
:mod:`~stream_app.state.connection`; on Redis, the shared base (:mod:`~stream_app.state.redis_base`),
the applied marks (:mod:`~stream_app.state.marks`), the entities' step (:mod:`~stream_app.state.entities`),
the roll-ups (:mod:`~stream_app.state.rollups`) and the query API's reads (:mod:`~stream_app.state.queries`).

The stateful writes (entity commits, roll-up contributions) retry connection trouble until it passes
(the partition waits); the query API's reads do not (a request fails fast instead).
"""

from __future__ import annotations

from stream_app.state.connection import RedisClient, cluster_address, connect
from stream_app.state.entities import EntityStore
from stream_app.state.layer import (
    ActiveAlert,
    Checkpoint,
    Commit,
    DueAt,
    EntityReads,
    IndexWrite,
    Mark,
    PeriodKey,
    PreparedCommit,
    ReadRequest,
    ReporterSent,
    RollupApplied,
    RollupWrite,
    StateLayer,
    StateLostError,
)
from stream_app.state.marks import StateMarkRefusedError
from stream_app.state.queries import BRIEFING_MARKER_TTL_S, StateQueries
from stream_app.state.redis_base import lua_script, raise_retried
from stream_app.state.rollups import RollupStore

__all__ = [
    "BRIEFING_MARKER_TTL_S",
    "ActiveAlert",
    "Checkpoint",
    "Commit",
    "DueAt",
    "EntityReads",
    "IndexWrite",
    "Mark",
    "PeriodKey",
    "PreparedCommit",
    "ReadRequest",
    "RedisClient",
    "ReporterSent",
    "RollupApplied",
    "RollupWrite",
    "StateLayer",
    "StateLostError",
    "StateMarkRefusedError",
    "StateStore",
    "cluster_address",
    "connect",
    "lua_script",
    "raise_retried",
]


class StateStore(EntityStore, RollupStore, StateQueries):
    """The state layer on Redis: reads and commits entity states; retries infrastructure failures of
    the stateful writes until they pass."""
