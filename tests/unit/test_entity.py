"""stream_app.entity: the pure stateful step of one entity (dedup, levels, alerts, aggregates)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from stream_app.aggregates import HOUR_MS, Bucket, hour_of
from stream_app.catalogue import Catalogue
from stream_app.codecs import decode, encode
from stream_app.entity import EntityState, StepResult, apply
from stream_app.model import Observation
from stream_app.rules import Transition, alert_id
from stream_app.schemas import SchemaRegistry

MakeObs = Callable[..., Observation]
SOURCE = "internal.observations.by-entity:0"
NOW_MS = 1_900_000_000_000  # processing time: after every event time used here


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
        return apply(self.state, obs, source=source, offset=offset, catalogue=self.catalogue, now_ms=NOW_MS)


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
    assert (feed.state.level, feed.state.latest_value, feed.state.latest_event_time) == (1, 80.0, t0_ms)


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
    buckets, level, latest = dict(feed.state.buckets), feed.state.level, feed.state.latest_value
    result = feed(make_observation(revision=revision, value=300.0), offset=2)
    assert result == expected
    assert feed.state.offsets[SOURCE] == 2, "the skipped record's offset must be recorded"
    assert feed.state.buckets == buckets
    assert (feed.state.level, feed.state.latest_value) == (level, latest)
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
    assert result.alert["alert_id"] == alert_id(result.alert["alert_key"], Transition.FIRING, "obs-1", 1)
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
    key = "levels:ENV.AQI|01|HN-AQ-HOANKIEM"
    for i, (alert, (change, level, previous, code, threshold)) in enumerate(
        zip(alerts, expected, strict=True), start=1
    ):
        assert alert is not None
        assert alert["transition"] == change
        assert (alert["level"], alert["previous_level"], alert["level_code"]) == (level, previous, code)
        if threshold is not None:
            assert alert["threshold"] == threshold
        assert alert["alert_key"] == key
        assert alert["rule"] == "levels:ENV.AQI"
        assert alert["value"] == values[i]
        assert alert["observation_id"] == f"obs-{i}"
        assert alert["event_time"] == t0_ms + i * HOUR_MS
        assert alert["processing_time"] == NOW_MS
        assert alert["alert_id"] == alert_id(key, Transition(change), f"obs-{i}", 0)
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
    assert feed.state.level == 2
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


def test_buckets_and_seen_ids_older_than_48h_are_expired(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int
) -> None:
    feed = Feed(catalogue)
    feed(make_observation(observation_id="old", event_time=t0_ms))
    feed(make_observation(observation_id="mid", event_time=t0_ms + 47 * HOUR_MS))
    assert feed.state.removed_fields() == []
    feed(make_observation(observation_id="new", event_time=t0_ms + 48 * HOUR_MS))
    old_hour = hour_of(t0_ms)
    assert old_hour not in feed.state.buckets
    assert "old" not in feed.state.seen
    assert set(feed.state.seen) == {"mid", "new"}
    assert feed.state.removed_fields() == sorted([f"b:{old_hour}", "seen:old"])
    fields = feed.state.to_fields()
    assert f"b:{old_hour}" not in fields
    assert "seen:old" not in fields
    assert {f"b:{old_hour + 47}", f"b:{old_hour + 48}", "seen:mid", "seen:new"} <= fields.keys()


def test_expiry_of_fields_read_from_redis(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int
) -> None:
    old_hour = hour_of(t0_ms)
    stored = {
        f"b:{old_hour}".encode(): Bucket.of(5.0).encode().encode(),
        b"seen:old": f"0,{old_hour}".encode(),
        b"level": b"0",
        b"latest_value": b"5.0",
        b"latest_event_time": str(t0_ms).encode(),
    }
    feed = Feed(catalogue, EntityState.from_hash(stored))
    feed(make_observation(observation_id="new", event_time=t0_ms + 50 * HOUR_MS))
    assert feed.state.removed_fields() == [f"b:{old_hour}", "seen:old"]
    assert set(feed.state.to_fields()) == {
        "level",
        "latest_value",
        "latest_event_time",
        f"b:{old_hour + 50}",
        "seen:new",
    }


def test_observation_older_than_retention_leaves_no_state(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int
) -> None:
    feed = Feed(catalogue)
    feed(make_observation(observation_id="new", event_time=t0_ms + 100 * HOUR_MS))
    result = feed(make_observation(observation_id="ancient", value=499.0, event_time=t0_ms))
    assert not result.skipped
    assert result.alert is None
    assert hour_of(t0_ms) not in feed.state.buckets
    assert "ancient" not in feed.state.seen
    fields = feed.state.to_fields()
    assert not any(name.endswith(str(hour_of(t0_ms))) or name == "seen:ancient" for name in fields)


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
    restored = EntityState.from_hash(_hash_of(state, **{SOURCE: 3}))
    assert restored.level == state.level == 4
    assert restored.latest_value == state.latest_value == 210.3
    assert restored.latest_event_time == state.latest_event_time
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
    restored = Feed(catalogue, EntityState.from_hash(_hash_of(feed.state, **{SOURCE: 10})))
    assert restored(make_observation(observation_id="a", value=160.0), offset=10).skipped
    duplicate = restored(make_observation(observation_id="a", value=160.0), offset=11)
    assert duplicate == StepResult(skipped=True, duplicate=True)
    result = restored(make_observation(observation_id="b", value=90.0, event_time=t0_ms + 1), offset=12)
    assert result.alert is not None
    assert (result.alert["transition"], result.alert["previous_level"]) == ("RESOLVED", 3)
    assert result.consolidated is not None
    assert result.consolidated["count"] == 2
    # only what changed since the read is written back
    assert set(restored.state.to_fields()) == {
        "level",
        "latest_value",
        "latest_event_time",
        f"b:{hour_of(t0_ms)}",
        "seen:b",
    }
