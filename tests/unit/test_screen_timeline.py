"""The alert timeline's pure logic: entries from alert records, the kept window, pages and cursors."""

from __future__ import annotations

from typing import Any

import pytest

from stream_app.api.params import BadRequest
from stream_app.domain.directives import actor_of_detail, directive_detail
from stream_app.screen.server import question
from stream_app.screen.timeline import (
    MAX_LIMIT,
    SHIFT_MS,
    Timeline,
    TimelineQuery,
    decode_cursor,
    entry_of,
    page,
    timeline_query,
)

KEY = "HYD.FLOOD|HYD.WATER_LEVEL|01"
HOUR = 3_600_000


def record(
    at: int, event_type: str = "TRANSITION", transition: str = "FIRING", **extra: Any
) -> dict[str, Any]:
    return {
        "alert_id": f"{KEY}:{event_type}:{transition}:{at}",
        "alert_key": KEY,
        "rule": "HYD.FLOOD",
        "domain": "disaster",
        "event_type": event_type,
        "transition": transition,
        "indicator": "HYD.WATER_LEVEL",
        "reporter": "MAE",
        "region": "01",
        "station": None,
        "level": 3,
        "previous_level": 0,
        "level_code": "BĐ3",
        "colour": "#d32f2f",
        "value": 12.5,
        "event_time": at - 5,
        "processing_time": at,
        **extra,
    }


def directive(at: int, action: str, actor: str, **extra: Any) -> dict[str, Any]:
    return record(at, event_type=action, detail=directive_detail(action, actor), **extra)


def test_each_change_becomes_its_step_with_who_and_when() -> None:
    shift = [
        record(1000),
        directive(2000, "ACKNOWLEDGE", "an.nv", acknowledged_by="an.nv"),
        directive(3000, "ASSIGN", "an.nv", assigned_to="Sở NN&PTNT Hà Nội"),
        directive(4000, "ESCALATE", "bình.lt", comment="mưa tiếp"),
        directive(5000, "COMMENT", "an.nv", comment="đã gọi"),
        record(6000, transition="ESCALATED", comment="đã gọi"),
        directive(7000, "CLOSE", "an.nv", comment="đã gọi"),  # the alert's comment, not the closing's
        record(8000, transition="RESOLVED"),
    ]
    timeline = Timeline(keep_ms=SHIFT_MS, max_entries=100)
    for r in shift:
        timeline.add(r)
    entries = [e for _, e in timeline.between(0, 10_000)]
    assert [(e["step"], e["by"], e["at"]) for e in entries] == [
        ("fired", "", 1000),
        ("acknowledged", "an.nv", 2000),
        ("assigned", "an.nv", 3000),
        ("escalated", "bình.lt", 4000),
        ("commented", "an.nv", 5000),
        ("raised", "", 6000),
        ("closed", "an.nv", 7000),
        ("resolved", "", 8000),
    ]
    assert entries[2]["assignee"] == "Sở NN&PTNT Hà Nội"
    assert entries[3]["comment"] == "mưa tiếp"
    assert (entries[0]["comment"], entries[0]["region"]) == ("", "01")
    assert entries[6]["comment"] == ""
    closing = entry_of(directive(9000, "CLOSE", "an.nv", comment="xong"), "đã gọi")
    assert closing is not None
    assert closing["comment"] == "xong"


def test_a_record_of_no_known_step_is_left_out_and_the_detail_names_only_its_own_action() -> None:
    assert entry_of(record(1, event_type="SNOOZE")) is None
    assert actor_of_detail("COMMENT", "escalate by an") == ""
    assert actor_of_detail("ESCALATE", directive_detail("ESCALATE", "an by x")) == "an by x"


def test_the_timeline_keeps_each_change_once_in_order_within_its_window_and_size() -> None:
    timeline = Timeline(keep_ms=10 * HOUR, max_entries=1000)
    for at in (3 * HOUR, HOUR, 2 * HOUR, 2 * HOUR):  # out of order, one read twice (a reconnection)
        timeline.add(record(at))
    assert [e["at"] for _, e in timeline.between(0, 4 * HOUR)] == [HOUR, 2 * HOUR, 3 * HOUR]
    timeline.add(record(12 * HOUR))  # the oldest falls out of the 10 hours kept
    assert [e["at"] for _, e in timeline.between(0, 13 * HOUR)] == [2 * HOUR, 3 * HOUR, 12 * HOUR]
    assert timeline.dropped_before == HOUR + 1
    version = timeline.version
    timeline.add(record(HOUR // 2))  # older than what is kept: not taken
    assert (len(timeline), timeline.version) == (3, version)
    timeline.add(record(13 * HOUR))
    assert timeline.version != version  # an answer about it is not reused

    small = Timeline(keep_ms=10 * HOUR, max_entries=2)
    for at in (1, 2, 3):
        small.add(record(at))
    assert [e["at"] for _, e in small.between(0, 10)] == [2, 3]


def test_pages_follow_the_cursor_to_the_end_in_either_order_and_filter_by_province() -> None:
    timeline = Timeline(keep_ms=SHIFT_MS, max_entries=1000)
    for at in range(1, 8):
        timeline.add(record(at * 1000))
    timeline.add({**record(4500), "alert_id": "other", "alert_key": "X|Y|79", "region": "79"})
    entries = timeline.between(0, 10_000)

    def walk(**query: Any) -> list[list[int]]:
        pages, cursor = [], None
        while True:
            got = page(entries, TimelineQuery(0, 10_000, limit=3, cursor=cursor, **query))
            assert got["count"] == len(got["entries"]) <= 3
            pages.append([e["at"] for e in got["entries"]])
            if got["next_cursor"] is None:
                return pages
            cursor = decode_cursor(got["next_cursor"])

    assert walk(region="01") == [[1000, 2000, 3000], [4000, 5000, 6000], [7000]]
    assert walk(region="01", newest_first=True) == [[7000, 6000, 5000], [4000, 3000, 2000], [1000]]
    assert walk(region="79") == [[4500]]
    assert walk() == [[1000, 2000, 3000], [4000, 4500, 5000], [6000, 7000]]


def test_the_query_defaults_to_the_last_shift_and_refuses_what_it_cannot_answer() -> None:
    now = 100 * HOUR
    query = timeline_query({}, now)
    assert (query.start_ms, query.end_ms, query.limit, query.newest_first) == (
        now - SHIFT_MS,
        now,
        100,
        False,
    )
    assert timeline_query({"order": "desc", "limit": "5", "region": "01"}, now).newest_first
    assert timeline_query({"cursor": "1000~7"}, now).cursor == (1000, 7)
    for bad in (
        {"limit": "0"},
        {"limit": str(MAX_LIMIT + 1)},
        {"limit": "many"},
        {"order": "sideways"},
        {"from": "yesterday"},
        {"from": "2025-08-01T12:00+07:00", "to": "2025-08-01T11:00+07:00"},
        {"cursor": "nothing"},
        {"cursor": "x~y"},
    ):
        with pytest.raises(BadRequest):
            timeline_query(bad, now)


def test_the_range_is_asked_to_the_minute_wide_enough_to_hold_what_was_asked() -> None:
    _, params = question(
        "/alerts/timeline", {"from": "2025-08-01T10:00:41+07:00", "to": "2025-08-01T12:00:07+07:00", "x": "1"}
    )
    assert params == {"from": "2025-08-01T10:00:00+07:00", "to": "2025-08-01T12:01:00+07:00"}


def test_changes_taken_at_one_time_keep_the_order_they_were_read_in_and_in_pages() -> None:
    """One batch's changes share their processing time: an escalation and the comment after it must
    not swap (their ids sort at random)."""
    timeline = Timeline(keep_ms=SHIFT_MS, max_entries=1000)
    actions = ("ACKNOWLEDGE", "ESCALATE", "COMMENT", "CLOSE")
    for n, action in enumerate(actions):
        timeline.add({**directive(5000, action, "an.nv"), "alert_id": f"{9 - n}"})  # ids sort backwards
    rows = timeline.between(0, 10_000)
    assert [e["step"] for _, e in rows] == ["acknowledged", "escalated", "commented", "closed"]
    first = page(rows, TimelineQuery(0, 10_000, limit=2))
    rest = page(rows, TimelineQuery(0, 10_000, limit=2, cursor=decode_cursor(first["next_cursor"])))
    assert [e["step"] for e in first["entries"] + rest["entries"]] == [e["step"] for _, e in rows]
    assert rest["next_cursor"] is None
