"""stream_app.entity: the pure stateful step of one entity (dedup, levels, alerts, aggregates)."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from stream_app.aggregates import HOUR_MS, Bucket, hour_of
from stream_app.alerting import RuleBook, load_rules
from stream_app.calendar import local_date
from stream_app.catalogue import Catalogue
from stream_app.codecs import decode, encode
from stream_app.entity import SEEN_RETENTION_HOURS, Context, EntityState, StepResult, alert_id, apply
from stream_app.model import Observation
from stream_app.rules import Transition
from stream_app.schemas import SchemaRegistry

MakeObs = Callable[..., Observation]
SOURCE = "internal.observations.by-entity:0"
NOW_MS = 1_900_000_000_000  # processing time: after every event time used here
AQI_RULE = "levels:ENV.AQI"
AQI_KEY = f"{AQI_RULE}|ENV.AQI|01|HN-AQ-HOANKIEM"
# The hash fields every step writes, and those of one rule's state and of its alert's meta.
SCALAR_FIELDS = {"latest_value", "latest_event_time", "last_seen", "reporter", "latest_period"}
AQI_RULE_FIELDS = {f"r:{AQI_RULE}:{name}" for name in ("l", "s", "v", "t", "pl", "pc", "ps", "w", "op", "lp")}
AQI_META_FIELDS = {f"m:{AQI_RULE}:{name}" for name in ("t", "id", "ab", "aa", "as", "c", "d")}


_SIMPLE_RULES = """
# The entity step's mechanics are tested with plain level rules (no hysteresis, no minimum count);
# the rule kinds themselves are tested in test_alerting_*.
[defaults]
late_report = false

[stations_of]
"ENV.AQI" = "air_quality"
"HYD.WATER_LEVEL" = "hydrological"

[[rule]]
kind = "levels"
indicator = "ENV.AQI"

[[rule]]
kind = "levels"
indicator = "HYD.WATER_LEVEL"
"""
_BOOKS: dict[int, RuleBook] = {}


def SIMPLE_RULES(catalogue: Catalogue) -> RuleBook:  # noqa: N802 - reads as the constant it is
    """Plain level rules for the catalogue, loaded once."""
    book = _BOOKS.get(id(catalogue))
    if book is None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "rules.toml"
            path.write_text(_SIMPLE_RULES, encoding="utf-8")
            book = _BOOKS[id(catalogue)] = load_rules(path, catalogue)
    return book


class Feed:
    """Applies observations to one state at increasing offsets, like one partition would."""

    def __init__(self, catalogue: Catalogue, state: EntityState | None = None) -> None:
        self.catalogue = catalogue
        self.state = state if state is not None else EntityState()
        self.offset = 0

    def __call__(self, obs: Observation, *, offset: int | None = None, source: str = SOURCE) -> StepResult:
        if offset is None:
            self.offset += 1
            offset = self.offset
        return apply(
            self.state,
            obs,
            source=source,
            offset=offset,
            ctx=Context(self.catalogue, SIMPLE_RULES(self.catalogue), NOW_MS),
        )


def _aqi_level(state: EntityState) -> int:
    return state.rules[AQI_RULE].level


def _day(event_time_ms: int) -> int:
    """The local day ordinal that names an entity's daily total (``d:<ordinal>``)."""
    return local_date(event_time_ms).toordinal()


def _restored(state: EntityState, **offsets: int) -> EntityState:
    """What the store reads back: the state hash, plus the batch's observation ids from the seen hash."""
    restored = EntityState.from_hash(_hash_of(state, **offsets))
    restored.seen = dict(state.seen)
    return restored


def _hash_of(state: EntityState, **offsets: int) -> dict[bytes, bytes]:
    fields = {k.encode(): v.encode() for k, v in state.to_fields().items()}
    fields.update({EntityState.offset_field(src).encode(): str(off).encode() for src, off in offsets.items()})
    return fields


# --- redelivery and duplicates -----------------------------------------------------------------


def test_first_observation_is_applied(catalogue: Catalogue, make_observation: MakeObs, t0_ms: int) -> None:
    feed = Feed(catalogue)
    result = feed(make_observation(value=80.0), offset=5)
    assert not result.skipped
    assert result.consolidated is not None
    assert result.alert is None  # MODERATE is below ENV.AQI's alert level (BAD)
    assert feed.state.offsets == {SOURCE: 5}
    assert feed.state.buckets == {hour_of(t0_ms): Bucket.of(80.0)}
    assert feed.state.seen == {"obs-1": (0, hour_of(t0_ms))}
    assert feed.state.daily == {_day(t0_ms): 80.0}
    assert (_aqi_level(feed.state), feed.state.latest_value, feed.state.latest_event_time) == (1, 80.0, t0_ms)
    assert (feed.state.last_seen, feed.state.reporter) == (NOW_MS, "MAE")


@pytest.mark.parametrize("redelivered_offset", [5, 4, 0])
def test_redelivered_offset_is_skipped_without_change(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int, redelivered_offset: int
) -> None:
    feed = Feed(catalogue)
    feed(make_observation(value=80.0), offset=5)
    before = copy.deepcopy(feed.state)
    other = make_observation(observation_id="obs-2", value=400.0, event_time=t0_ms + HOUR_MS)
    result = feed(other, offset=redelivered_offset)
    assert result == StepResult(skipped=True)
    assert not result.duplicate
    assert feed.state == before


def test_offsets_are_per_source(catalogue: Catalogue, make_observation: MakeObs, t0_ms: int) -> None:
    feed = Feed(catalogue)
    feed(make_observation(), offset=100, source="p:0")
    result = feed(make_observation(observation_id="obs-2", event_time=t0_ms + 1), offset=3, source="p:1")
    assert not result.skipped
    assert feed.state.offsets == {"p:0": 100, "p:1": 3}


@pytest.mark.parametrize(
    ("revision", "expected"),
    [(2, StepResult(skipped=True, duplicate=True)), (1, StepResult(skipped=True, stale=True))],
    ids=["same-revision-duplicate", "older-revision-stale"],
)
def test_same_or_older_revision_at_new_offset_changes_nothing(
    catalogue: Catalogue, make_observation: MakeObs, revision: int, expected: StepResult
) -> None:
    feed = Feed(catalogue)
    feed(make_observation(revision=2, value=80.0), offset=1)
    buckets, daily = dict(feed.state.buckets), dict(feed.state.daily)
    level, latest = _aqi_level(feed.state), feed.state.latest_value
    result = feed(make_observation(revision=revision, value=300.0), offset=2)
    assert result == expected
    assert feed.state.offsets[SOURCE] == 2, "the skipped record's offset must be recorded"
    assert feed.state.buckets == buckets
    assert feed.state.daily == daily
    assert (_aqi_level(feed.state), feed.state.latest_value) == (level, latest)
    assert feed.state.seen["obs-1"][0] == 2


def test_higher_revision_is_applied(catalogue: Catalogue, make_observation: MakeObs, t0_ms: int) -> None:
    feed = Feed(catalogue)
    feed(make_observation(revision=0, value=80.0))
    result = feed(make_observation(revision=1, value=160.0))
    assert not result.skipped
    assert not result.duplicate
    assert feed.state.seen["obs-1"] == (1, hour_of(t0_ms))
    assert feed.state.latest_value == 160.0
    assert result.alert is not None
    assert result.alert["transition"] == "FIRING"
    assert result.alert["alert_key"] == AQI_KEY
    assert result.alert["alert_id"] == alert_id(AQI_KEY, Transition.FIRING, "obs-1#1")
    assert result.consolidated is not None
    assert result.consolidated["revision"] == 1


# --- alerts and the consolidated view ----------------------------------------------------------


def test_aqi_sequence_fires_escalates_and_resolves(
    catalogue: Catalogue, registry: SchemaRegistry, make_observation: MakeObs, t0_ms: int
) -> None:
    feed = Feed(catalogue)
    values = [80.0, 160.0, 210.0, 120.0]
    results = [
        feed(make_observation(observation_id=f"obs-{i}", value=v, event_time=t0_ms + i * HOUR_MS))
        for i, v in enumerate(values)
    ]
    assert results[0].alert is None
    alerts = [r.alert for r in results[1:]]
    assert all(a is not None for a in alerts)
    expected = [
        # transition, level, previous, code, threshold
        ("FIRING", 3, 1, "BAD", 151.0),
        ("ESCALATED", 4, 3, "VERY_BAD", 201.0),
        ("RESOLVED", 2, 4, "POOR", None),
    ]
    key = AQI_KEY
    for i, (alert, (change, level, previous, code, threshold)) in enumerate(
        zip(alerts, expected, strict=True), start=1
    ):
        assert alert is not None
        assert alert["transition"] == change
        assert (alert["level"], alert["previous_level"], alert["level_code"]) == (level, previous, code)
        if threshold is not None:
            assert alert["threshold"] == threshold
        assert alert["alert_key"] == key
        assert alert["rule"] == AQI_RULE
        assert (alert["rule_kind"], alert["event_type"]) == ("levels", "TRANSITION")
        assert alert["value"] == values[i]
        assert alert["observation_id"] == f"obs-{i}"
        assert alert["event_time"] == t0_ms + i * HOUR_MS
        assert alert["processing_time"] == NOW_MS
        assert alert["alert_id"] == alert_id(key, Transition(change), f"obs-{i}#0")
        level_def = catalogue.indicators["ENV.AQI"].levels[level]
        assert (alert["level_name_vi"], alert["level_name_en"], alert["colour"]) == (
            level_def.name_vi,
            level_def.name_en,
            level_def.colour,
        )
        # the record is a valid Avro alert
        assert decode(registry, "alert", encode(registry.latest("alert"), alert))["level_code"] == code
    assert len({a["alert_id"] for a in alerts if a is not None}) == 3

    consolidated = results[-1].consolidated
    assert consolidated is not None
    assert consolidated["key"] == "ENV.AQI:01:HN-AQ-HOANKIEM:rolling-24h"
    assert consolidated["window"] == "rolling-24h"
    assert (consolidated["count"], consolidated["sum"]) == (4, 570.0)
    assert (consolidated["min"], consolidated["max"], consolidated["mean"]) == (80.0, 210.0, 142.5)
    assert (consolidated["latest_value"], consolidated["latest_event_time"]) == (120.0, t0_ms + 3 * HOUR_MS)
    assert (consolidated["alert_level"], consolidated["alert_level_code"]) == (2, "POOR")
    assert consolidated["processing_time"] == NOW_MS
    assert (
        decode(registry, "consolidated", encode(registry.latest("consolidated"), consolidated))["count"] == 4
    )


def test_same_level_again_publishes_no_alert(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int
) -> None:
    feed = Feed(catalogue)
    first = feed(make_observation(observation_id="a", value=160.0))
    again = feed(make_observation(observation_id="b", value=199.0, event_time=t0_ms + 1))
    assert first.alert is not None
    assert again.alert is None
    assert again.consolidated is not None
    assert again.consolidated["alert_level_code"] == "BAD"


def test_deescalation(catalogue: Catalogue, make_observation: MakeObs, t0_ms: int) -> None:
    feed = Feed(catalogue)
    feed(make_observation(observation_id="a", value=250.0))
    result = feed(make_observation(observation_id="b", value=160.0, event_time=t0_ms + 1))
    assert result.alert is not None
    assert (result.alert["transition"], result.alert["level"], result.alert["previous_level"]) == (
        "DEESCALATED",
        3,
        4,
    )


def test_flood_alarm_uses_the_stations_levels(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int
) -> None:
    feed = Feed(catalogue)

    def water(obs_id: str, value: float, minutes: int) -> Observation:
        return make_observation(
            observation_id=obs_id,
            indicator="HYD.WATER_LEVEL",
            station="HN-LONGBIEN",
            unit="m",
            value=value,
            event_time=t0_ms + minutes * 60_000,
        )

    assert feed(water("w1", 9.49, 0)).alert is None
    fired = feed(water("w2", 9.5, 10)).alert
    assert fired is not None
    assert (fired["transition"], fired["level_code"], fired["threshold"]) == ("FIRING", "BD1", 9.5)
    escalated = feed(water("w3", 11.5, 20)).alert
    assert escalated is not None
    assert (escalated["transition"], escalated["level_code"], escalated["previous_level"]) == (
        "ESCALATED",
        "BD3",
        1,
    )


def test_indicator_without_levels_never_alerts(catalogue: Catalogue, make_observation: MakeObs) -> None:
    feed = Feed(catalogue)
    obs = make_observation(indicator="HYD.WATER_LEVEL", station=None, unit="m", value=59.0)
    result = feed(obs)
    assert result.alert is None
    assert result.consolidated is not None
    assert (result.consolidated["alert_level"], result.consolidated["alert_level_code"]) == (0, "NONE")
    assert result.consolidated["key"] == "HYD.WATER_LEVEL:01:-:rolling-24h"


def test_out_of_order_observation_updates_bucket_not_latest_nor_level(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int
) -> None:
    feed = Feed(catalogue)
    feed(make_observation(observation_id="new", value=120.0, event_time=t0_ms + 3 * HOUR_MS))
    result = feed(make_observation(observation_id="old", value=400.0, event_time=t0_ms + 30 * 60_000))
    assert not result.skipped
    assert result.alert is None
    assert feed.state.buckets[hour_of(t0_ms)] == Bucket.of(400.0)
    assert (feed.state.latest_value, feed.state.latest_event_time) == (120.0, t0_ms + 3 * HOUR_MS)
    assert _aqi_level(feed.state) == 2
    consolidated = result.consolidated
    assert consolidated is not None
    assert (consolidated["latest_value"], consolidated["alert_level_code"]) == (120.0, "POOR")
    assert (consolidated["count"], consolidated["max"], consolidated["min"]) == (2, 400.0, 120.0)


def test_window_is_the_24_hours_up_to_the_newest_observation(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int
) -> None:
    feed = Feed(catalogue)
    feed(make_observation(observation_id="a", value=10.0))
    inside = feed(make_observation(observation_id="b", value=20.0, event_time=t0_ms + 23 * HOUR_MS))
    assert inside.consolidated is not None
    assert inside.consolidated["count"] == 2
    outside = feed(make_observation(observation_id="c", value=30.0, event_time=t0_ms + 24 * HOUR_MS))
    assert outside.consolidated is not None
    assert (outside.consolidated["count"], outside.consolidated["sum"]) == (2, 50.0)
    assert hour_of(t0_ms) in feed.state.buckets, "kept for the 48 h retention, just outside the window"


# --- retention ---------------------------------------------------------------------------------


def test_buckets_older_than_48h_are_expired_and_old_ids_are_left_to_the_commit(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int
) -> None:
    feed = Feed(catalogue)
    feed(make_observation(observation_id="old", event_time=t0_ms))
    feed(make_observation(observation_id="mid", event_time=t0_ms + 47 * HOUR_MS))
    assert feed.state.removed_fields() == []
    feed(make_observation(observation_id="new", event_time=t0_ms + 48 * HOUR_MS))
    old_hour = hour_of(t0_ms)
    assert old_hour not in feed.state.buckets
    assert feed.state.removed_fields() == [f"b:{old_hour}"]
    fields = feed.state.to_fields()
    assert f"b:{old_hour}" not in fields
    assert {f"b:{old_hour + 47}", f"b:{old_hour + 48}"} <= fields.keys()
    # Observation ids live in their own hash, written by the commit with the ids applied, and
    # forgotten there (by the commit script) once older than the daily totals they counted in.
    assert not any(name.startswith("seen:") for name in fields)
    assert [o for o, _, _ in feed.state.seen_updates()] == ["mid", "new", "old"]
    assert feed.state.seen_horizon_hour == old_hour + 48 - SEEN_RETENTION_HOURS


def test_expiry_of_fields_read_from_redis(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int
) -> None:
    old_hour = hour_of(t0_ms)
    stored = {
        f"b:{old_hour}".encode(): Bucket.of(5.0).encode().encode(),
        f"r:{AQI_RULE}:l".encode(): b"0",
        b"latest_value": b"5.0",
        b"latest_event_time": str(t0_ms).encode(),
    }
    feed = Feed(catalogue, EntityState.from_hash(stored))
    feed(make_observation(observation_id="new", event_time=t0_ms + 50 * HOUR_MS))
    assert feed.state.removed_fields() == [f"b:{old_hour}"]
    # the levels rule's state is written whole; no alert changed, so no alert meta
    assert set(feed.state.to_fields()) == SCALAR_FIELDS | AQI_RULE_FIELDS | {
        f"b:{old_hour + 50}",
        f"d:{_day(t0_ms + 50 * HOUR_MS)}",
    }
    assert [o for o, _, _ in feed.state.seen_updates()] == ["new"]


def test_observation_older_than_retention_leaves_no_state(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int
) -> None:
    feed = Feed(catalogue)
    feed(make_observation(observation_id="new", event_time=t0_ms + 100 * HOUR_MS))
    result = feed(make_observation(observation_id="ancient", value=499.0, event_time=t0_ms))
    assert not result.skipped
    assert result.alert is None
    assert hour_of(t0_ms) not in feed.state.buckets
    fields = feed.state.to_fields()
    assert not any(name.endswith(str(hour_of(t0_ms))) for name in fields)
    # its id is remembered as long as its day's total: a later duplicate is recognised
    assert "ancient" in [o for o, _, _ in feed.state.seen_updates()]
    # the day's total is kept longer than the hourly buckets (the deviation rules' baselines)
    assert feed.state.daily[_day(t0_ms)] == 499.0
    assert fields[f"d:{_day(t0_ms)}"] == "499.0"


def test_daily_totals_are_kept_32_days(catalogue: Catalogue, make_observation: MakeObs, t0_ms: int) -> None:
    day_ms = 24 * HOUR_MS
    feed = Feed(catalogue)
    feed(make_observation(observation_id="first", value=5.0))
    feed(make_observation(observation_id="month", value=6.0, event_time=t0_ms + 31 * day_ms))
    assert feed.state.daily == {_day(t0_ms): 5.0, _day(t0_ms + 31 * day_ms): 6.0}
    assert not any(name.startswith("d:") for name in feed.state.removed_fields())
    feed(make_observation(observation_id="later", value=7.0, event_time=t0_ms + 40 * day_ms))
    assert feed.state.daily == {_day(t0_ms + 31 * day_ms): 6.0, _day(t0_ms + 40 * day_ms): 7.0}
    assert f"d:{_day(t0_ms)}" in feed.state.removed_fields()
    assert f"d:{_day(t0_ms)}" not in feed.state.to_fields()


def test_daily_totals_read_from_redis_expire(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int
) -> None:
    stored = {
        f"d:{_day(t0_ms)}".encode(): b"5.0",
        f"d:{_day(t0_ms) + 3}".encode(): b"6.5",
        b"latest_value": b"5.0",
        b"latest_event_time": str(t0_ms).encode(),
    }
    state = EntityState.from_hash(stored)
    assert state.daily == {_day(t0_ms): 5.0, _day(t0_ms) + 3: 6.5}
    feed = Feed(catalogue, state)
    later = t0_ms + 33 * 24 * HOUR_MS  # the first day is 33 days before, the second 30
    feed(make_observation(observation_id="new", value=1.0, event_time=later))
    assert feed.state.daily == {_day(t0_ms) + 3: 6.5, _day(later): 1.0}
    assert f"d:{_day(t0_ms)}" in feed.state.removed_fields()


def test_duplicate_of_an_observation_older_than_48h_is_not_counted_twice(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int
) -> None:
    feed = Feed(catalogue)
    feed(make_observation(observation_id="new", value=40.0, event_time=t0_ms + 100 * HOUR_MS))
    late = make_observation(observation_id="late", value=10.0, event_time=t0_ms)
    assert not feed(late).skipped
    assert feed.state.daily[_day(t0_ms)] == 10.0
    assert feed(late) == StepResult(skipped=True, duplicate=True)
    assert feed.state.daily[_day(t0_ms)] == 10.0


# --- Redis hash round trip ---------------------------------------------------------------------


def test_new_entity_from_empty_hash() -> None:
    assert EntityState.from_hash({}) == EntityState()


def test_state_round_trips_through_its_hash(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int
) -> None:
    feed = Feed(catalogue)
    feed(make_observation(observation_id="a", value=0.1))
    feed(make_observation(observation_id="b", value=0.2, event_time=t0_ms + 1))
    feed(make_observation(observation_id="c", value=210.3, revision=4, event_time=t0_ms + 2 * HOUR_MS))
    state = feed.state
    restored = _restored(state, **{SOURCE: 3})
    assert _aqi_level(restored) == _aqi_level(state) == 4
    assert restored.rules == state.rules
    assert restored.meta == state.meta
    assert restored.meta[AQI_RULE].transition == "FIRING"
    assert restored.latest_value == state.latest_value == 210.3
    assert restored.latest_event_time == state.latest_event_time
    assert (restored.last_seen, restored.reporter, restored.latest_period) == (NOW_MS, "MAE", "")
    assert restored.daily == state.daily
    assert restored.daily[_day(t0_ms)] == 0.1 + 0.2 + 210.3  # exact, through repr
    assert restored.buckets == state.buckets
    assert restored.buckets[hour_of(t0_ms)].total == 0.1 + 0.2  # exact, through repr
    assert restored.seen == state.seen
    assert restored.seen["c"] == (4, hour_of(t0_ms) + 2)
    assert restored.offsets == {SOURCE: 3}
    assert restored.changed == set()
    assert restored.removed == set()


def test_restored_state_continues_where_it_left_off(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int
) -> None:
    feed = Feed(catalogue)
    feed(make_observation(observation_id="a", value=160.0), offset=10)
    restored = Feed(catalogue, _restored(feed.state, **{SOURCE: 10}))
    assert restored(make_observation(observation_id="a", value=160.0), offset=10).skipped
    duplicate = restored(make_observation(observation_id="a", value=160.0), offset=11)
    assert duplicate == StepResult(skipped=True, duplicate=True)
    result = restored(make_observation(observation_id="b", value=90.0, event_time=t0_ms + 1), offset=12)
    assert result.alert is not None
    assert (result.alert["transition"], result.alert["previous_level"]) == ("RESOLVED", 3)
    assert result.consolidated is not None
    assert result.consolidated["count"] == 2
    # only what changed since the read is written back
    assert set(restored.state.to_fields()) == SCALAR_FIELDS | AQI_RULE_FIELDS | AQI_META_FIELDS | {
        f"b:{hour_of(t0_ms)}",
        f"d:{_day(t0_ms)}",
    }
    assert [o for o, _, _ in restored.state.seen_updates()] == ["b"]
