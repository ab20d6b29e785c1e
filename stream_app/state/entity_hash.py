"""How an entity's state is stored: the fields of its Redis hash and the values of its seen hash.

The domain's :class:`~stream_app.domain.entity.state.EntityState` names the parts it changed by
:class:`~stream_app.domain.entity.state.Kind`; here they get their field names (``h:<series>:<hour>``,
``d:<series>:<day>``, ``po:<series>|<label>``, ``r:<rule>:<key>``, ``m:<rule>:<key>``, ``off:<source>``
and the scalars), and the state its encoding both ways (see docs/domain.md, "Redis layout").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, TypeVar

from stream_app.domain.aggregates import Agg, period_by_label
from stream_app.domain.alerting import RuleState
from stream_app.domain.catalogue import Indicator
from stream_app.domain.entity.state import AlertMeta, EntityState, Kind, Part, Seen
from stream_app.domain.model import period_field

HOUR_PREFIX: Final = "h:"
DAY_PREFIX: Final = "d:"
OPEN_PREFIX: Final = "po:"
OFFSET_PREFIX: Final = "off:"
RULE_PREFIX: Final = "r:"
META_PREFIX: Final = "m:"

_R = TypeVar("_R")


def offset_field(source: str) -> str:
    """The field holding the offset of ``source`` the state has applied."""
    return f"{OFFSET_PREFIX}{source}"


def field_name(part: Part) -> str:
    """The hash field of a part of the state (a rule's or an alert's: the prefix of its fields)."""
    kind, name, at = part
    if kind is Kind.HOUR:
        return f"{HOUR_PREFIX}{name}:{at}"
    if kind is Kind.DAY:
        return f"{DAY_PREFIX}{name}:{at}"
    if kind is Kind.OPEN:
        return f"{OPEN_PREFIX}{name}|{at}"
    if kind is Kind.RULE:
        return f"{RULE_PREFIX}{name}"
    return f"{META_PREFIX}{name}"


# ---------------------------------------------------------------------- the seen hash


def encode_seen(seen: Seen) -> str:
    earlier = ".".join(str(r) for r in seen.earlier)
    return f"{seen.revision},{seen.event_time},{seen.value!r},{seen.quality},{earlier},{seen.series}"


def decode_seen(value: bytes | str | None) -> Seen | None:
    """A seen-hash value, or None for an id never applied."""
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    revision, event_time, number, quality, earlier, series = text.split(",", 5)
    before = tuple(int(r) for r in earlier.split(".")) if earlier else ()
    return Seen(int(revision), int(event_time), float(number), quality, series, before)


def seen_updates(state: EntityState) -> list[tuple[str, str, int]]:
    """(observation id, encoded record, hour) of the ids applied since the state was read."""
    return [(o, encode_seen(state.seen[o]), state.seen[o].hour) for o in sorted(state.new_seen)]


# ---------------------------------------------------------------------- the periods hash


def period_updates(state: EntityState, indicator: Indicator) -> list[tuple[str, str | None, int]]:
    """(field, encoded aggregate or None to delete, period end in epoch ms) of changed periods."""
    out = []
    for series, label in sorted(state.changed_periods):
        agg = state.periods.get((series, label))
        end = period_by_label(label, indicator.calendar, indicator.deadline_day).end_ms
        out.append((period_field(series, label), None if agg is None else agg.encode(), end))
    return out


# ---------------------------------------------------------------------- the state hash


# A rule's fields and its alert's, kept short: the state hash prefixes them with "r:<rule_id>:" and
# "m:<rule_id>:".
_RULE_FIELDS = {
    "level": "l",
    "since_ms": "s",
    "value": "v",
    "latest_ms": "t",
    "pending_level": "pl",
    "pending_count": "pc",
    "pending_since_ms": "ps",
    "watching_since_ms": "w",
    "overdue_period": "op",
    "latest_period": "lp",
}
_META_FIELDS = {
    "transition": "t",
    "alert_id": "id",
    "acknowledged_by": "ab",
    "acknowledged_at": "aa",
    "assigned_to": "as",
    "comment": "c",
    "directive_id": "d",
    "occurrence": "o",
    "opened_at": "oa",
    "changes": "ch",
}
# How a field's text is read back, by the attribute's declared type (a text otherwise).
_PARSERS: dict[str, Callable[[str], object]] = {
    "int": int,
    "int | None": int,
    "float | None": float,
    "tuple[str, ...]": lambda text: tuple(text.split(",")),
}
_RULE_PARSERS = {f.name: _PARSERS.get(str(f.type), str) for f in dataclasses.fields(RuleState)}
_META_PARSERS = {f.name: _PARSERS.get(str(f.type), str) for f in dataclasses.fields(AlertMeta)}


def encode_rule(state: RuleState) -> dict[str, str]:
    """Every field, always the same names ("" for none): writing them all overwrites whatever an
    earlier state left, so no stale field survives. Floats are written with ``repr`` and read
    back exactly."""
    return _encode(state, _RULE_FIELDS)


def decode_rule(fields: Mapping[str, str]) -> RuleState:
    """The state ``encode_rule`` wrote; missing fields take their initial values (a new rule or
    entity), unknown ones are ignored (written by a newer version). Raises ``ValueError`` for a
    value that is not what the field holds."""
    return _decode(RuleState(), fields, _RULE_FIELDS, _RULE_PARSERS)


def encode_meta(meta: AlertMeta) -> dict[str, str]:
    """Every field of what is known about a rule's alert, as :func:`encode_rule` writes a rule's
    (``changes`` comma-separated)."""
    return _encode(meta, _META_FIELDS)


def decode_meta(fields: Mapping[str, str]) -> AlertMeta:
    """What ``encode_meta`` wrote, read as :func:`decode_rule` reads a rule's."""
    return _decode(AlertMeta(), fields, _META_FIELDS, _META_PARSERS)


def _encode(record: object, names: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for attribute, name in names.items():
        value = getattr(record, attribute)
        if value is None:
            out[name] = ""
        elif isinstance(value, float):
            out[name] = repr(value)
        elif isinstance(value, tuple):
            out[name] = ",".join(value)
        else:
            out[name] = str(value)
    return out


def _decode(
    record: _R,
    fields: Mapping[str, str],
    names: Mapping[str, str],
    parsers: Mapping[str, Callable[[str], object]],
) -> _R:
    """``record`` (a new one) with the fields ``_encode`` wrote that are there and not empty."""
    for attribute, name in names.items():
        text = fields.get(name, "")
        if text != "":
            setattr(record, attribute, parsers[attribute](text))
    return record


def decode_state(raw: dict[bytes, bytes]) -> EntityState:
    """Decode an entity's Redis hash (empty hash: a new entity)."""
    state = EntityState()
    grouped: dict[str, dict[str, dict[str, str]]] = {RULE_PREFIX: {}, META_PREFIX: {}}
    for raw_name, raw_value in raw.items():
        name, value = raw_name.decode(), raw_value.decode()
        prefix, _, rest = name.partition(":")
        prefix += ":"
        if prefix == HOUR_PREFIX:
            series, _, hour = rest.rpartition(":")
            state.hours[(series, int(hour))] = Agg.decode(value)
        elif prefix == DAY_PREFIX:
            series, _, day = rest.rpartition(":")
            state.days[(series, int(day))] = Agg.decode(value)
        elif prefix == OPEN_PREFIX:
            series, _, label = rest.rpartition("|")
            state.open_periods[(series, label)] = int(value)
        elif prefix == OFFSET_PREFIX:
            state.offsets[rest] = int(value)
        elif prefix in grouped:
            rule_id, _, key = rest.rpartition(":")
            grouped[prefix].setdefault(rule_id, {})[key] = value
        elif name in ("latest_event_time", "newest_event_time", "last_seen", "authority_event_time"):
            setattr(state, name, int(value))
        elif name == "latest_value":
            state.latest_value = float(value)
        elif name in ("reporter", "latest_period"):
            setattr(state, name, value)
    state.rules = {rid: decode_rule(f) for rid, f in grouped[RULE_PREFIX].items()}
    state.meta = {rid: decode_meta(f) for rid, f in grouped[META_PREFIX].items()}
    if b"authority_event_time" not in raw:
        # written before it was kept: the entity's own series holds authoritative values only,
        # so its latest is the best known lower bound (-1 when it has none: the next record moves)
        state.authority_event_time = state.latest_event_time
    return state


def changed_fields(state: EntityState) -> dict[str, str]:
    """The hash fields changed since the state was read (offsets are written by the commit script)."""
    fields = {
        "latest_value": repr(state.latest_value),
        "latest_event_time": str(state.latest_event_time),
        "newest_event_time": str(state.newest_event_time),
        "last_seen": str(state.last_seen),
        "reporter": state.reporter,
        "latest_period": state.latest_period,
        "authority_event_time": str(state.authority_event_time),
    }
    for part in state.changed:
        kind, name, at = part
        if kind is Kind.HOUR:
            fields[field_name(part)] = state.hours[(name, int(at))].encode()
        elif kind is Kind.DAY:
            fields[field_name(part)] = state.days[(name, int(at))].encode()
        elif kind is Kind.OPEN:
            fields[field_name(part)] = str(state.open_periods[(name, str(at))])
        elif kind is Kind.RULE:
            for key, value in encode_rule(state.rules[name]).items():
                fields[f"{RULE_PREFIX}{name}:{key}"] = value
        else:
            for key, value in encode_meta(state.meta[name]).items():
                fields[f"{META_PREFIX}{name}:{key}"] = value
    return fields


def removed_fields(state: EntityState) -> list[str]:
    """Fields that fell out of retention (or were emptied by a correction) since the state was read."""
    return sorted(field_name(part) for part in state.removed - state.changed)


@dataclass(frozen=True, slots=True)
class HashWrite:
    """What a commit does to an entity's state hash (KEYS[1] of ``lua/commit_entity.lua``, when it
    writes): HDEL the ``removed`` fields, then HSET the offset field and every changed field. The
    commit's arguments are made from it, and so is what a stage keeps of the hash it wrote
    (:meth:`applied_to`), so the two cannot drift apart."""

    offset_field: str
    offset: int
    removed: list[str]
    fields: dict[str, str]  # the changed fields (never an offset field: the script writes that one)

    def applied_to(self, raw: Mapping[bytes, bytes]) -> dict[bytes, bytes]:
        """The hash as the script leaves ``raw`` (the hash before it, as HGETALL returns it)."""
        after = dict(raw)
        for name in self.removed:
            after.pop(name.encode(), None)
        after[self.offset_field.encode()] = str(self.offset).encode()
        for name, value in self.fields.items():
            after[name.encode()] = value.encode()
        return after


def hash_write(state: EntityState, source: str, offset: int) -> HashWrite:
    """What committing ``state`` (with the ``offset`` of ``source`` it includes) writes to its hash."""
    return HashWrite(offset_field(source), offset, removed_fields(state), changed_fields(state))


def hash_size(raw: Mapping[bytes, bytes]) -> int:
    """Roughly the bytes a raw hash holds: its names and values."""
    return sum(len(name) + len(value) for name, value in raw.items())
