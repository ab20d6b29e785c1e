"""A directive of the center about one alert: its record, its actions, its text limits, its builder.

The record is Avro ``directive`` (newest version, ``avro_schemas/directive.v2.avsc``); only the HTTP API
builds one (:func:`build`), naming the person, the token and its own principal. The text limits are
checked where a directive is made (the API: 400), routed (the directives agent: ``text_too_long``) and
applied (the consolidator: ``record_invalid``), each with its own answer, by :func:`too_long`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Protocol, TypedDict


class Action(StrEnum):
    """What the center does about an alert (Avro ``DirectiveAction``)."""

    ACKNOWLEDGE = "ACKNOWLEDGE"  # the center has seen the alert
    ASSIGN = "ASSIGN"  # the center asks the assignee to handle it
    COMMENT = "COMMENT"  # a note, no change of state
    ESCALATE = "ESCALATE"  # raised to a higher authority
    CLOSE = "CLOSE"  # the center considers the matter handled


ACTIONS: Final = tuple(action.value for action in Action)
"""The actions' names, in the schema's order (argparse choices, error messages)."""

ACKNOWLEDGING: Final = frozenset({Action.ACKNOWLEDGE, Action.ASSIGN, Action.ESCALATE, Action.CLOSE})
"""The actions that acknowledge the alert when no one has yet (all but a comment)."""


def action_of(value: object) -> Action | None:
    """The action ``value`` names, or None when it names none."""
    return Action(value) if isinstance(value, str) and value in ACTIONS else None


class DirectiveRecord(TypedDict):
    """``directive``: an instruction or acknowledgement of the center about one alert."""

    directive_id: str
    alert_key: str
    alert_id: str
    reporter: str
    action: str
    actor: str
    assignee: str | None
    comment: str | None
    issued_at: int
    due_at: int | None
    token_id: str
    writer: str


BOUNDED: Final = ("directive_id", "alert_key", "alert_id", "reporter", "actor", "assignee", "comment")
"""The texts of a directive that end up in the alert's state and in every later alert of its rule."""


class _LimitSettings(Protocol):
    """The settings that bound a directive's texts (``stream_app.settings.Settings`` has them)."""

    @property
    def text_max_length(self) -> int: ...
    @property
    def directive_comment_max_length(self) -> int: ...


@dataclass(frozen=True, slots=True)
class TextLimits:
    """How long a directive's texts may be: the comment, and every other text."""

    text: int  # STREAM_APP_TEXT_MAX_LENGTH
    comment: int  # STREAM_APP_DIRECTIVE_COMMENT_MAX_LENGTH

    @staticmethod
    def configured(settings: _LimitSettings) -> TextLimits:
        return TextLimits(settings.text_max_length, settings.directive_comment_max_length)

    def of(self, name: str) -> int:
        return self.comment if name == "comment" else self.text


def too_long(directive: Mapping[str, Any], limits: TextLimits, names: Iterable[str] = BOUNDED) -> str | None:
    """The first of ``names`` longer than its limit (``"<name> longer than <limit> characters"``), or
    None when every one fits (an absent or null text fits)."""
    for name in names:
        limit = limits.of(name)
        if len(directive.get(name) or "") > limit:
            return f"{name} longer than {limit} characters"
    return None


def new_directive_id() -> str:
    return f"dir-{uuid.uuid4().hex[:16]}"


def build(
    *,
    alert_key: str,
    alert_id: str,
    reporter: str,
    action: Action,
    actor: str,
    assignee: str | None,
    comment: str | None,
    issued_at: int,
    token_id: str,
    writer: str,
    directive_id: str | None = None,
) -> DirectiveRecord:
    """A new directive (a new id unless ``directive_id``), due whenever (``due_at`` null)."""
    return {
        "directive_id": directive_id or new_directive_id(),
        "alert_key": alert_key,
        "alert_id": alert_id,
        "reporter": reporter,
        "action": action.value,
        "actor": actor,
        "assignee": assignee,
        "comment": comment,
        "issued_at": issued_at,
        "due_at": None,
        "token_id": token_id,
        "writer": writer,
    }


def directive_detail(action: str, actor: str) -> str:
    """The ``detail`` of the alert record a directive's change publishes: ``"acknowledge by an.nv"``.
    It is how the alerts topic names who acted (the record has no actor field of its own);
    :func:`actor_of_detail` reads it back."""
    return f"{action.lower()} by {actor}"


def actor_of_detail(action: str, detail: str | None) -> str:
    """Who did ``action``, from the ``detail`` :func:`directive_detail` wrote ("" when it says no one)."""
    prefix = f"{action.lower()} by "
    text = detail or ""
    return text[len(prefix) :] if text.startswith(prefix) else ""
