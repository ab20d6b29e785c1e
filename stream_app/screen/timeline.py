"""The alert timeline: every change of every alert (fired, level raised or lowered, acknowledged,
assigned, commented, escalated, closed, resolved), who made it and when, for a shift or a province.

Its source is ``center.alerts``: each alert change is one record there, a directive's change naming
its actor in ``detail`` (:func:`stream_app.domain.directives.directive_detail`). The screen reads the
topic from ``STREAM_APP_SCREEN_TIMELINE_HOURS`` back and keeps the changes in memory
(:class:`Timeline`, bounded); ``GET /api/v1/alerts/timeline`` pages through them (:func:`page`).
Everything here is pure: records in, entries and pages out.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from stream_app.api.params import BadRequest
from stream_app.domain.clock import parse_iso_ms
from stream_app.domain.directives import Action, action_of, actor_of_detail


class Step(StrEnum):
    """What happened to an alert, as the timeline names it."""

    FIRED = "fired"
    RAISED = "raised"  # its level went up (transition ESCALATED)
    LOWERED = "lowered"  # its level went down (transition DEESCALATED)
    RESOLVED = "resolved"
    ACKNOWLEDGED = "acknowledged"
    ASSIGNED = "assigned"
    COMMENTED = "commented"
    ESCALATED = "escalated"  # an operator raised it to a higher authority (directive ESCALATE)
    CLOSED = "closed"


_TRANSITION_STEPS: Final = {
    "FIRING": Step.FIRED,
    "ESCALATED": Step.RAISED,
    "DEESCALATED": Step.LOWERED,
    "RESOLVED": Step.RESOLVED,
}
_ACTION_STEPS: Final = {
    Action.ACKNOWLEDGE: Step.ACKNOWLEDGED,
    Action.ASSIGN: Step.ASSIGNED,
    Action.COMMENT: Step.COMMENTED,
    Action.ESCALATE: Step.ESCALATED,
    Action.CLOSE: Step.CLOSED,
}
# What of the alert record an entry keeps (the rest is the step, who, when).
_KEPT: Final = (
    "alert_key",
    "rule",
    "domain",
    "indicator",
    "region",
    "station",
    "reporter",
    "level",
    "previous_level",
    "level_code",
    "level_name_vi",
    "level_name_en",
    "colour",
    "value",
    "threshold",
    "event_time",
)

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 500
SHIFT_MS: Final = 12 * 3_600_000  # the default range: the last 12 hours, a shift


def entry_of(record: Mapping[str, Any], earlier_comment: str | None = None) -> dict[str, Any] | None:
    """The timeline entry of one alert record (times as epoch ms), or None for a record that is no
    step (an unknown event type).

    ``at`` is when the center took the change (``processing_time``): a shift is wall-clock time, and a
    late observation's change happened when it arrived. ``by`` is the operator of a directive's change,
    empty for a transition (the data made it: ``reporter`` sent it). A record carries the alert's latest
    comment, whoever wrote it: an escalation or a closing shows it only when it is not the comment the
    alert had before (``earlier_comment``), that is when the directive came with its own."""
    event_type = str(record.get("event_type") or "TRANSITION")
    action = action_of(event_type)
    if event_type == "TRANSITION":
        step = _TRANSITION_STEPS.get(str(record.get("transition")))
        by = ""
    elif action is not None:
        step = _ACTION_STEPS[action]
        by = actor_of_detail(action, record.get("detail"))
    else:
        step = None
    if step is None:
        return None
    entry = {name: record.get(name) for name in _KEPT}
    entry.update(
        id=str(record["alert_id"]),
        at=int(record.get("processing_time") or record.get("event_time") or 0),
        step=step.value,
        by=by,
        assignee=(record.get("assigned_to") or "") if step is Step.ASSIGNED else "",
        comment=_own_comment(action, record.get("comment") or "", earlier_comment),
    )
    return entry


Position = tuple[int, int]
"""Where an entry stands in the timeline: when the center took it, then the order the screen read it
(changes taken in one batch share a time; the topic's order of one alert's changes is their order)."""


def _own_comment(action: Action | None, comment: str, earlier: str | None) -> str:
    if action is Action.COMMENT or (action in (Action.ESCALATE, Action.CLOSE) and comment != (earlier or "")):
        return comment
    return ""


class Timeline:
    """The alert changes since ``keep_ms`` before the newest, at most ``max_entries`` (the oldest go
    first), in the order they happened (:data:`Position`); the same change twice is kept once (the
    screen reads the topic again after a reconnection)."""

    def __init__(self, keep_ms: int, max_entries: int) -> None:
        self.keep_ms = keep_ms
        self.max_entries = max_entries
        self._order: list[Position] = []
        self._entries: dict[Position, dict[str, Any]] = {}
        self._ids: set[str] = set()
        self._comments: dict[str, str] = {}  # alert key -> the comment its latest record carried
        self._read = 0  # changes read so far: the next one's place among those taken at its time
        self.dropped_before = 0  # entries older than this were let go (for room or age): not complete

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def version(self) -> int:
        """Changes whenever what the timeline holds does (an answer about it can be reused till then)."""
        return self._read

    def add(self, record: Mapping[str, Any]) -> None:
        if str(record.get("alert_id")) in self._ids:
            return
        key = str(record.get("alert_key"))
        entry = entry_of(record, self._comments.get(key))
        self._comments[key] = str(record.get("comment") or "")
        if entry is None:
            return
        if self._order and entry["at"] < self._order[-1][0] - self.keep_ms:
            return  # older than what is kept
        self._read += 1
        position = (entry["at"], self._read)
        self._entries[position] = entry
        self._ids.add(entry["id"])
        bisect.insort(self._order, position)
        self._trim()

    def _trim(self) -> None:
        newest = self._order[-1][0]
        cut = 0
        while cut < len(self._order) and (
            len(self._order) - cut > self.max_entries or self._order[cut][0] < newest - self.keep_ms
        ):
            cut += 1
        if cut:
            for gone in self._order[:cut]:
                self._ids.discard(self._entries.pop(gone)["id"])
            self.dropped_before = max(self.dropped_before, self._order[cut - 1][0] + 1)
            del self._order[:cut]

    def between(self, start_ms: int, end_ms: int) -> list[tuple[Position, dict[str, Any]]]:
        """The entries with ``start_ms <= at < end_ms`` and their positions, oldest first."""
        low = bisect.bisect_left(self._order, (start_ms, 0))
        high = bisect.bisect_left(self._order, (end_ms, 0))
        return [(position, self._entries[position]) for position in self._order[low:high]]


@dataclass(frozen=True, slots=True)
class TimelineQuery:
    """One page's question: a range of time, optional filters, where to continue, how many."""

    start_ms: int
    end_ms: int
    region: str | None = None
    indicator: str | None = None
    alert_key: str | None = None
    newest_first: bool = False
    limit: int = DEFAULT_LIMIT
    cursor: Position | None = None

    def matches(self, entry: Mapping[str, Any]) -> bool:
        return (
            (self.region is None or entry.get("region") == self.region)
            and (self.indicator is None or entry.get("indicator") == self.indicator)
            and (self.alert_key is None or entry.get("alert_key") == self.alert_key)
        )


def encode_cursor(position: Position) -> str:
    """Where the next page starts: after this position, whatever arrives meanwhile. Valid for the
    screen process that gave it (another counts its reading anew)."""
    return f"{position[0]}~{position[1]}"


def decode_cursor(text: str) -> Position:
    """The position :func:`encode_cursor` wrote; ``ValueError`` for anything else."""
    at, _, read = text.partition("~")
    if not (at.isdigit() and read.isdigit()):
        raise ValueError(f"cursor {text[:80]!r} is not one this API gave")
    return int(at), int(read)


def page(rows: list[tuple[Position, dict[str, Any]]], query: TimelineQuery) -> dict[str, Any]:
    """One page of ``rows`` (oldest first, as :meth:`Timeline.between` gives them): the entries the query
    matches after its cursor, in its order, at most ``limit``; ``next_cursor`` is None on the last."""
    matching = [(position, e) for position, e in rows if query.matches(e)]
    if query.newest_first:
        matching.reverse()
    after = query.cursor
    if after is not None:
        matching = [(p, e) for p, e in matching if (p < after if query.newest_first else p > after)]
    shown = matching[: query.limit]
    more = len(matching) > query.limit
    return {
        "from": query.start_ms,
        "to": query.end_ms,
        "order": "desc" if query.newest_first else "asc",
        "count": len(shown),
        "entries": [e for _, e in shown],
        "next_cursor": encode_cursor(shown[-1][0]) if more and shown else None,
    }


def timeline_query(params: Mapping[str, str], now_ms: int) -> TimelineQuery:
    """The query of ``GET /api/v1/alerts/timeline``'s parameters (:class:`BadRequest` for a wrong one):
    ``from``/``to`` ISO-8601 with an offset (default: the 12 hours up to now), ``region``,
    ``indicator``, ``alert_key``, ``order`` (asc, the default, or desc), ``limit`` (1..500, default 100)
    and ``cursor`` (a ``next_cursor`` of the previous page)."""
    end_ms = _moment(params, "to", now_ms)
    start_ms = _moment(params, "from", end_ms - SHIFT_MS)
    if start_ms >= end_ms:
        raise BadRequest("'from' must be before 'to'")
    order = params.get("order") or "asc"
    if order not in ("asc", "desc"):
        raise BadRequest(f"order {order[:20]!r} is not asc or desc")
    try:
        limit = int(params.get("limit") or DEFAULT_LIMIT)
    except ValueError:
        raise BadRequest(f"limit {params['limit'][:20]!r} is not an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be 1..{MAX_LIMIT}")
    cursor = None
    if params.get("cursor"):
        try:
            cursor = decode_cursor(params["cursor"])
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
    return TimelineQuery(
        start_ms,
        end_ms,
        region=params.get("region") or None,
        indicator=params.get("indicator") or None,
        alert_key=params.get("alert_key") or None,
        newest_first=order == "desc",
        limit=limit,
        cursor=cursor,
    )


def _moment(params: Mapping[str, str], name: str, default_ms: int) -> int:
    text = params.get(name)
    if not text:
        return default_ms
    try:
        return parse_iso_ms(text)
    except (ValueError, OverflowError):
        raise BadRequest(
            f"{name} {text[:40]!r} is not an ISO-8601 time with its offset (e.g. 2025-08-01T00:00+07:00)"
        ) from None
