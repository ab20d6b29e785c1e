"""The applied ledger: which entity each partition's applied mark vouches for, and up to which offset.

An applied mark says "the state holds every record of this partition up to here". It cannot say that
the entities those records went to are still there: when Redis loses some keys and keeps others (an
append-only file replayed in part, one primary of a cluster failed over to a replica that lagged behind
while the marks' primary did not, keys deleted by hand), the marks survive, the entities do not, and the
next record of a lost entity would be applied onto nothing as if the entity were new.

So each mark is raised together with the ledger of its partition (``<prefix>:{meta}:ledger:<source>``,
in the mark's hash slot, written by the same script): entity -> ``offset;ms``, the offset of the entity's
last commit that the mark covers, and when. Before a batch is applied, the ledger entries of its entities
are read in the same round trip as their states: an entity whose state holds less of the partition than
its ledger entry (or nothing) lost its keys. The stage then applies nothing and waits as for any lost
state (``state_lost``). An entry older than the state's time to live vouches for nothing (the entity may
have expired), and a rebuild starts the ledgers afresh.

Roll-up periods have one ledger (``<prefix>:{meta}:ledger:rollups``): period key -> ``sources;ms``, how
many sources the period's hash held after its last batch (a source's entry is never removed, only
replaced). Before a roll-up batch writes, the periods it touches are checked against it: a hash
holding fewer sources lost some (or all) of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from stream_app.state.entity_hash import offset_field
from stream_app.state.keys import STATE_TTL_S

STATE_TTL_MS = STATE_TTL_S * 1000
EXPIRY_MARGIN_MS = 24 * 3600 * 1000  # workers' clocks and Redis's may differ: an entry this close to
# the state's expiry vouches for nothing


def encode(offset: int, now_ms: int) -> str:
    """A ledger entry: the offset the entity's state holds of the partition, and when it was written."""
    return f"{offset};{now_ms}"


def decode(raw: bytes | str | None, now_ms: int) -> int | None:
    """The offset an entry vouches for; None when there is none, or it is old enough for the entity to
    have expired, or it cannot be read (it then vouches for nothing rather than stop the stage)."""
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else raw
    offset, _, written = text.partition(";")
    try:
        if int(written) + STATE_TTL_MS - EXPIRY_MARGIN_MS <= now_ms:
            return None
        return int(offset)
    except ValueError:
        return None


def entries(commits: Iterable[tuple[str, Sequence[str | int]]]) -> dict[str, list[tuple[str, int]]]:
    """Per source, (entity, offset) of the commits (entity, commit script arguments: the offset field
    ``off:<source>`` first, the offset second)."""
    out: dict[str, list[tuple[str, int]]] = {}
    for entity, args in commits:
        source = str(args[0]).removeprefix(offset_field(""))
        out.setdefault(source, []).append((entity, int(args[1])))
    return out


def loss(entity: str, source: str, state: Mapping[bytes, bytes], vouched: int | None) -> str | None:
    """Why ``entity``'s state (its hash as read) lacks what the ledger says it holds; None when sound."""
    if vouched is None:
        return None
    raw = state.get(offset_field(source).encode())
    held = None if raw is None else int(raw)
    if held is not None and held >= vouched:
        return None
    what = "nothing" if held is None else f"up to offset {held}"
    return (
        f"{source}: entity {entity} was committed up to offset {vouched}, its state holds {what} of it: "
        "its keys were lost while the applied mark was kept"
    )


def rollup_loss(key: str, held: int, vouched: int | None) -> str | None:
    """Why a roll-up period's hash (``held`` sources now) lacks sources the ledger says it had."""
    if vouched is None or held >= vouched:
        return None
    return (
        f"roll-up {key} holds {held} sources, its ledger says it held {vouched}: its entries were lost "
        "while the applied marks were kept"
    )
