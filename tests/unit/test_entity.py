"""stream_app.domain.entity: the pure stateful step of one entity (dedup, levels, alerts, aggregates)."""

from __future__ import annotations

import copy
import random
import tempfile
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from stream_app.domain.aggregates import DAY_RETENTION_DAYS, RETENTION_HOURS, Agg, combine, hour_of
from stream_app.domain.alerting import RuleBook, load_rules
from stream_app.domain.alerting.transitions import Transition
from stream_app.domain.catalogue import Catalogue
from stream_app.domain.clock import HOUR_MS, local_date
from stream_app.domain.consolidation import entity_records
from stream_app.domain.entity import (
    Context,
    EntityKey,
    EntityState,
    Outcome,
    Seen,
    StepResult,
    Touched,
    alert_id,
    apply,
    needed_periods,
    retention_start_ms,
)
from stream_app.domain.model import Observation
from stream_app.domain.records import ConsolidatedRecord
from stream_app.state.entity_hash import (
    changed_fields,
    decode_seen,
    decode_state,
    encode_seen,
    offset_field,
    period_updates,
    removed_fields,
    seen_updates,
)
from stream_app.state.store import EntityReads
from stream_app.wire.codecs import decode, encode
from stream_app.wire.schemas import SchemaRegistry
from tests.unit.core_support import Core, local_ms, observation, period

MakeObs = Callable[..., Observation]
SOURCE = "internal.observations.by-entity:0"
NOW_MS = 1_900_000_000_000  # processing time: after every event time used here (their periods closed)
DAY_MS = 24 * HOUR_MS
AQI = EntityKey("ENV.AQI", "01", "HN-AQ-HOANKIEM")
AQI_RULE = "levels:ENV.AQI"
AQI_KEY = f"{AQI_RULE}|{AQI}"
# t0 (2024-11-01T00:00Z) is 07:00 on 1 November in Vietnam: ENV.AQI (hourly, calendar months)
# counts it in its local day and every longer period holding it.
T0_PERIODS = ("2024-11-01", "2024-11", "2024-Q4", "2024-H2", "2024")
# The hash fields every step writes, and those of one rule's state and of its alert's meta.
SCALAR_FIELDS = {
    "latest_value",
    "latest_event_time",
    "newest_event_time",
    "last_seen",
    "reporter",
    "latest_period",
    "authority_event_time",
}
AQI_RULE_FIELDS = {f"r:{AQI_RULE}:{name}" for name in ("l", "s", "v", "t", "pl", "pc", "ps", "w", "op", "lp")}
AQI_META_FIELDS = {
    f"m:{AQI_RULE}:{name}" for name in ("t", "id", "ab", "aa", "as", "c", "d", "o", "oa", "ch")
}


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
    """Applies observations to one state at increasing offsets, like one partition would.

    The state is complete (built in memory: a period or observation it lacks does not exist);
    ``touched`` collects what the steps changed, as one batch of the agent does.
    """

    def __init__(self, catalogue: Catalogue, state: EntityState | None = None, now: int = NOW_MS) -> None:
        self.catalogue = catalogue
        self.state = state if state is not None else EntityState(complete=True)
        self.offset = 0
        self.now = now
        self.touched = Touched()

    def ctx(self) -> Context:
        return Context(self.catalogue, SIMPLE_RULES(self.catalogue), self.now)

    def __call__(self, obs: Observation, *, offset: int | None = None, source: str = SOURCE) -> StepResult:
        if offset is None:
            self.offset += 1
            offset = self.offset
        return apply(self.state, obs, source=source, offset=offset, ctx=self.ctx(), touched=self.touched)

    def batch(self) -> None:
        """Start a new batch: records are published once per key per batch."""
        self.touched = Touched()

    def record(self, label: str, entity: EntityKey = AQI) -> ConsolidatedRecord:
        """The consolidated record of one period the batch changed."""
        records = dict(entity_records(self.state, entity, self.touched, self.ctx()))
        found = records[f"{entity.indicator}:{entity.region}:{entity.station or '-'}:{label}"]
        assert found is not None
        return found


def _aqi_level(state: EntityState) -> int:
    return state.rules[AQI_RULE].level


def _day(event_time_ms: int) -> int:
    """The local day ordinal that names an entity's daily aggregate (``d:<series>:<ordinal>``)."""
    return local_date(event_time_ms).toordinal()


def _one(value: float, event_time: int, observation_id: str, arrival: int = NOW_MS) -> Agg:
    return Agg.of(value, event_time, observation_id, "FINAL", arrival)


def _hash_of(state: EntityState, **offsets: int) -> dict[bytes, bytes]:
    fields = {k.encode(): v.encode() for k, v in changed_fields(state).items()}
    fields.update({offset_field(src).encode(): str(off).encode() for src, off in offsets.items()})
    return fields


def _reads_of(
    state: EntityState, catalogue: Catalogue, batch: list[Observation], **offsets: int
) -> EntityReads:
    """What the store reads for ``batch`` once ``state`` is committed: the state hash, the seen hash's
    records of the batch's ids and the periods hash's values of the periods they need (None: absent)."""
    seen = {o: record.encode() for o, record, _ in seen_updates(state)}
    indicator = catalogue.indicators["ENV.AQI"]
    periods = {name: agg.encode() for name, agg, _ in period_updates(state, indicator) if agg is not None}
    reads = EntityReads(state=_hash_of(state, **offsets))
    for obs in batch:
        reads.seen[obs.seen_key] = seen.get(obs.seen_key)
        for series, label in needed_periods(indicator, obs):
            reads.periods[(series, label)] = periods.get(f"{series}|{label}")
    return reads


# --- redelivery and duplicates -----------------------------------------------------------------


def test_first_observation_is_applied(catalogue: Catalogue, make_observation: MakeObs, t0_ms: int) -> None:
    feed = Feed(catalogue)
    result = feed(make_observation(value=80.0), offset=5)
    # MODERATE is below ENV.AQI's alert level (BAD); processed in 2030, its local day closed long ago
    assert result == StepResult(Outcome.APPLIED, late=True)
    assert feed.state.offsets == {SOURCE: 5}
    one = _one(80.0, t0_ms, "obs-1")
    assert feed.state.hours == {("", hour_of(t0_ms)): one}
    assert feed.state.days == {("", _day(t0_ms)): one}
    assert feed.state.periods == {("", label): one for label in T0_PERIODS}
    assert feed.state.seen == {"MAE|obs-1": Seen(0, t0_ms, 80.0, "FINAL", "")}
    assert (_aqi_level(feed.state), feed.state.latest_value, feed.state.latest_event_time) == (1, 80.0, t0_ms)
    assert (feed.state.newest_event_time, feed.state.last_seen, feed.state.reporter) == (t0_ms, NOW_MS, "MAE")
    assert feed.state.open_periods == {}, "every period closed before it arrived: none to close later"
    assert feed.touched.late == {("", "2024-11-01")}


@pytest.mark.parametrize("redelivered_offset", [5, 4, 0])
def test_redelivered_offset_is_skipped_without_change(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int, redelivered_offset: int
) -> None:
    feed = Feed(catalogue)
    feed(make_observation(value=80.0), offset=5)
    before = copy.deepcopy(feed.state)
    other = make_observation(observation_id="obs-2", value=400.0, event_time=t0_ms + HOUR_MS)
    result = feed(other, offset=redelivered_offset)
    assert result == StepResult(Outcome.ALREADY_APPLIED)
    assert result.outcome is not Outcome.DUPLICATE
    assert feed.state == before


def test_offsets_are_per_source(catalogue: Catalogue, make_observation: MakeObs, t0_ms: int) -> None:
    feed = Feed(catalogue)
    feed(make_observation(), offset=100, source="p:0")
    result = feed(make_observation(observation_id="obs-2", event_time=t0_ms + 1), offset=3, source="p:1")
    assert not result.skipped
    assert feed.state.offsets == {"p:0": 100, "p:1": 3}
    assert feed.state.days[("", _day(t0_ms))].count == 2


@pytest.mark.parametrize(
    ("revision", "expected"),
    [(2, StepResult(Outcome.DUPLICATE)), (1, StepResult(Outcome.STALE))],
    ids=["same-revision-duplicate", "older-revision-stale"],
)
def test_same_or_older_revision_at_new_offset_changes_nothing(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int, revision: int, expected: StepResult
) -> None:
    feed = Feed(catalogue)
    feed(make_observation(revision=2, value=80.0), offset=1)
    hours, days, periods = dict(feed.state.hours), dict(feed.state.days), dict(feed.state.periods)
    level, latest = _aqi_level(feed.state), feed.state.latest_value
    result = feed(make_observation(revision=revision, value=300.0), offset=2)
    assert result == expected
    assert feed.state.offsets[SOURCE] == 2, "the skipped record's offset must be recorded"
    assert (feed.state.hours, feed.state.days, feed.state.periods) == (hours, days, periods)
    assert (_aqi_level(feed.state), feed.state.latest_value) == (level, latest)
    assert feed.state.seen["MAE|obs-1"] == Seen(2, t0_ms, 80.0, "FINAL", "")


def test_an_earlier_revision_resent_after_its_correction_is_a_duplicate(
    catalogue: Catalogue, make_observation: MakeObs
) -> None:
    """Revision 0 was applied, then corrected by 1: 0 again is the same record again (the intake
    re-sending after a crash), while 1 again is a duplicate too; 2 was never applied before 3."""
    feed = Feed(catalogue)
    feed(make_observation(revision=0, value=80.0))
    feed(make_observation(revision=1, value=160.0))
    assert feed(make_observation(revision=0, value=80.0)) == StepResult(Outcome.DUPLICATE)
    assert feed(make_observation(revision=1, value=160.0)) == StepResult(Outcome.DUPLICATE)
    feed(make_observation(revision=3, value=170.0))
    assert feed(make_observation(revision=2, value=90.0)) == StepResult(Outcome.STALE)
    assert feed.state.seen["MAE|obs-1"].earlier == (0, 1)
    assert period(feed.state, "2024-11") == _one(170.0, feed.state.seen["MAE|obs-1"].event_time, "obs-1")
    restored = decode_seen(encode_seen(feed.state.seen["MAE|obs-1"]))
    assert restored == feed.state.seen["MAE|obs-1"]


def test_higher_revision_is_applied(catalogue: Catalogue, make_observation: MakeObs, t0_ms: int) -> None:
    feed = Feed(catalogue)
    feed(make_observation(revision=0, value=80.0))
    result = feed(make_observation(revision=1, value=160.0))
    assert not result.skipped
    assert result.outcome is not Outcome.DUPLICATE
    assert result.outcome is Outcome.CORRECTED
    assert feed.state.seen["MAE|obs-1"] == Seen(1, t0_ms, 160.0, "FINAL", "", earlier=(0,))
    # the earlier value is retracted everywhere: still one value, now the corrected one
    corrected = _one(160.0, t0_ms, "obs-1")
    assert feed.state.hours == {("", hour_of(t0_ms)): corrected}
    assert feed.state.days == {("", _day(t0_ms)): corrected}
    assert feed.state.periods == {("", label): corrected for label in T0_PERIODS}
    assert feed.state.latest_value == 160.0
    assert result.alert is not None
    assert result.alert["transition"] == "FIRING"
    assert result.alert["alert_key"] == AQI_KEY
    assert result.alert["alert_id"] == alert_id(AQI_KEY, Transition.FIRING, "obs-1#1")
    record = feed.record("2024-11-01")
    assert (record["revision"], record["count"], record["sum"], record["value"]) == (1, 1, 160.0, 160.0)


# --- alerts and the consolidated view ----------------------------------------------------------


def test_aqi_sequence_fires_escalates_and_resolves(
    catalogue: Catalogue, registry: SchemaRegistry, make_observation: MakeObs, t0_ms: int
) -> None:
    feed = Feed(catalogue, now=t0_ms + 4 * HOUR_MS)  # processed as it happens: the day is open
    values = [80.0, 160.0, 210.0, 120.0]
    results = [
        feed(make_observation(observation_id=f"obs-{i}", value=v, event_time=t0_ms + i * HOUR_MS))
        for i, v in enumerate(values)
    ]
    assert results[0].alert is None
    assert not any(r.late for r in results)
    alerts = [r.alert for r in results[1:]]
    assert all(a is not None for a in alerts)
    expected = [
        # transition, level, previous, code, threshold
        ("FIRING", 3, 1, "BAD", 151.0),
        ("ESCALATED", 4, 3, "VERY_BAD", 201.0),
        ("RESOLVED", 2, 4, "POOR", None),
    ]
    for i, (alert, (change, level, previous, code, threshold)) in enumerate(
        zip(alerts, expected, strict=True), start=1
    ):
        assert alert is not None
        assert alert["transition"] == change
        assert (alert["level"], alert["previous_level"], alert["level_code"]) == (level, previous, code)
        if threshold is not None:
            assert alert["threshold"] == threshold
        assert alert["alert_key"] == AQI_KEY
        assert alert["rule"] == AQI_RULE
        assert (alert["rule_kind"], alert["event_type"]) == ("levels", "TRANSITION")
        assert alert["value"] == values[i]
        assert alert["observation_id"] == f"obs-{i}"
        assert alert["event_time"] == t0_ms + i * HOUR_MS
        assert alert["processing_time"] == feed.now
        assert alert["alert_id"] == alert_id(AQI_KEY, Transition(change), f"obs-{i}#0")
        level_def = catalogue.indicators["ENV.AQI"].levels[level]
        assert (alert["level_name_vi"], alert["level_name_en"], alert["colour"]) == (
            level_def.name_vi,
            level_def.name_en,
            level_def.colour,
        )
        # the record is a valid Avro alert
        assert decode(registry, "alert", encode(registry.latest("alert"), alert))["level_code"] == code
    assert len({a["alert_id"] for a in alerts if a is not None}) == 3

    # one consolidated record per key for the batch: the local day, ENV.AQI's own period
    records = dict(entity_records(feed.state, AQI, feed.touched, feed.ctx()))
    assert set(records) == {"ENV.AQI:01:HN-AQ-HOANKIEM:2024-11-01"}
    consolidated = feed.record("2024-11-01")
    assert (consolidated["kind"], consolidated["status"], consolidated["window"]) == (
        "UPDATE",
        "OPEN",
        "period:daily",
    )
    assert (consolidated["count"], consolidated["sum"], consolidated["sum_exact"]) == (4, 570.0, "570.0")
    assert (consolidated["min"], consolidated["max"], consolidated["mean"]) == (80.0, 210.0, 142.5)
    assert consolidated["value"] == 210.0, "ENV.AQI is a level: its period's value is the max"
    assert (consolidated["latest_value"], consolidated["latest_event_time"]) == (120.0, t0_ms + 3 * HOUR_MS)
    assert (consolidated["alert_level"], consolidated["alert_level_code"]) == (2, "POOR")
    assert consolidated["processing_time"] == feed.now
    windows = {w["name"]: (w["count"], w["sum"], w["max"]) for w in consolidated["windows"]}
    assert windows == {name: (4, 570.0, 210.0) for name in ("rolling-24h", "rolling-7d", "rolling-30d")}
    assert [(p["period"], p["count"], p["value"]) for p in consolidated["to_date"]] == [
        (label, 4, 210.0) for label in T0_PERIODS[1:]
    ]
    decoded = decode(registry, "consolidated", encode(registry.latest("consolidated"), consolidated))
    assert (decoded["count"], decoded["period"]) == (4, "2024-11-01")


def test_same_level_again_publishes_no_alert(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int
) -> None:
    feed = Feed(catalogue)
    first = feed(make_observation(observation_id="a", value=160.0))
    again = feed(make_observation(observation_id="b", value=199.0, event_time=t0_ms + 1))
    assert first.alert is not None
    assert again.alert is None
    assert feed.record("2024-11-01")["alert_level_code"] == "BAD"


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
    record = feed.record("2024-11-01", EntityKey("HYD.WATER_LEVEL", "01", "HN-LONGBIEN"))
    assert (record["count"], record["max"], record["alert_level_code"]) == (3, 11.5, "BD3")


def test_indicator_without_levels_never_alerts(catalogue: Catalogue, make_observation: MakeObs) -> None:
    feed = Feed(catalogue)
    obs = make_observation(indicator="HYD.WATER_LEVEL", station=None, unit="m", value=59.0)
    result = feed(obs)
    assert result.alert is None
    record = feed.record("2024-11-01", EntityKey("HYD.WATER_LEVEL", "01", None))
    assert (record["alert_level"], record["alert_level_code"]) == (0, "NONE")
    assert record["key"] == "HYD.WATER_LEVEL:01:-:2024-11-01"
    assert (record["count"], record["value"]) == (1, 59.0)


def test_out_of_order_observation_updates_aggregates_not_latest_nor_level(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int
) -> None:
    feed = Feed(catalogue)
    feed(make_observation(observation_id="new", value=120.0, event_time=t0_ms + 3 * HOUR_MS))
    result = feed(make_observation(observation_id="old", value=400.0, event_time=t0_ms + 30 * 60_000))
    assert not result.skipped
    assert result.alert is None
    assert feed.state.hours[("", hour_of(t0_ms))] == _one(400.0, t0_ms + 30 * 60_000, "old")
    assert (feed.state.latest_value, feed.state.latest_event_time) == (120.0, t0_ms + 3 * HOUR_MS)
    assert _aqi_level(feed.state) == 2
    consolidated = feed.record("2024-11-01")
    assert (consolidated["latest_value"], consolidated["alert_level_code"]) == (120.0, "POOR")
    assert (consolidated["count"], consolidated["max"], consolidated["min"]) == (2, 400.0, 120.0)


def test_window_is_the_24_hours_up_to_the_newest_observation(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int
) -> None:
    feed = Feed(catalogue)
    feed(make_observation(observation_id="a", value=10.0))
    # t0 + 23 h is 06:00 on 2 November locally: the next local day, the same 24 hours
    feed(make_observation(observation_id="b", value=20.0, event_time=t0_ms + 23 * HOUR_MS))
    inside = {w["name"]: (w["count"], w["sum"]) for w in feed.record("2024-11-02")["windows"]}
    assert inside == {"rolling-24h": (2, 30.0), "rolling-7d": (2, 30.0), "rolling-30d": (2, 30.0)}
    feed.batch()
    feed(make_observation(observation_id="c", value=30.0, event_time=t0_ms + 24 * HOUR_MS))
    outside = {w["name"]: (w["count"], w["sum"]) for w in feed.record("2024-11-02")["windows"]}
    assert outside == {"rolling-24h": (2, 50.0), "rolling-7d": (3, 60.0), "rolling-30d": (3, 60.0)}
    assert ("", hour_of(t0_ms)) in feed.state.hours, "kept for the 48 h retention, just outside the window"


# --- retention ---------------------------------------------------------------------------------


def test_hours_older_than_48h_are_expired_and_old_ids_are_left_to_the_commit(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int
) -> None:
    feed = Feed(catalogue)
    feed(make_observation(observation_id="old", event_time=t0_ms))
    feed(make_observation(observation_id="mid", event_time=t0_ms + 47 * HOUR_MS))
    assert removed_fields(feed.state) == []
    feed(make_observation(observation_id="new", event_time=t0_ms + 48 * HOUR_MS))
    old_hour = hour_of(t0_ms)
    assert sorted(h for _, h in feed.state.hours) == [old_hour + 47, old_hour + 48]
    assert removed_fields(feed.state) == [f"h::{old_hour}"]
    fields = changed_fields(feed.state)
    assert f"h::{old_hour}" not in fields
    assert {f"h::{old_hour + 47}", f"h::{old_hour + 48}"} <= fields.keys()
    # the day and the periods keep counting it
    assert feed.state.days[("", _day(t0_ms))] == _one(87.0, t0_ms, "old")
    assert period(feed.state, "2024-11").count == 3
    # Observations live in their own hash, written by the commit with the ids applied, and
    # forgotten there (by the commit script) once older than the retention: this reporting year
    # and the previous one (ENV.AQI counts calendar years).
    assert not any(name.startswith("seen") for name in fields)
    assert [o for o, _, _ in seen_updates(feed.state)] == ["MAE|mid", "MAE|new", "MAE|old"]
    indicator = catalogue.indicators["ENV.AQI"]
    assert feed.state.retention_ms == retention_start_ms(indicator, t0_ms + 48 * HOUR_MS)
    assert feed.state.retention_ms == local_ms(2023, 1, 1)


def test_expiry_of_fields_read_from_redis(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int
) -> None:
    old_hour = hour_of(t0_ms)
    stored = {
        f"h::{old_hour}".encode(): _one(5.0, t0_ms, "old").encode().encode(),
        f"r:{AQI_RULE}:l".encode(): b"0",
        b"latest_value": b"5.0",
        b"latest_event_time": str(t0_ms).encode(),
        b"newest_event_time": str(t0_ms).encode(),
    }
    state = decode_state(stored)
    assert state.hours == {("", old_hour): _one(5.0, t0_ms, "old")}
    state.complete = True  # its periods hash holds nothing this test needs
    feed = Feed(catalogue, state)
    feed(make_observation(observation_id="new", event_time=t0_ms + 50 * HOUR_MS))
    assert removed_fields(feed.state) == [f"h::{old_hour}"]
    # the levels rule's state is written whole; no alert changed, so no alert meta
    assert set(changed_fields(feed.state)) == SCALAR_FIELDS | AQI_RULE_FIELDS | {
        f"h::{old_hour + 50}",
        f"d::{_day(t0_ms + 50 * HOUR_MS)}",
    }
    assert [o for o, _, _ in seen_updates(feed.state)] == ["MAE|new"]


def test_observation_older_than_48h_counts_in_its_day_and_periods_only(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int
) -> None:
    feed = Feed(catalogue)
    feed(make_observation(observation_id="new", value=40.0, event_time=t0_ms + 100 * HOUR_MS))
    result = feed(make_observation(observation_id="ancient", value=499.0, event_time=t0_ms))
    assert not result.skipped
    assert result.alert is None
    assert ("", hour_of(t0_ms)) not in feed.state.hours
    fields = changed_fields(feed.state)
    assert f"h::{hour_of(t0_ms)}" not in fields
    # its id is remembered: a later duplicate is recognised
    assert "MAE|ancient" in [o for o, _, _ in seen_updates(feed.state)]
    # the day is kept longer than the hours (the deviation rules' baselines), the periods longer still
    assert feed.state.days[("", _day(t0_ms))] == _one(499.0, t0_ms, "ancient")
    assert fields[f"d::{_day(t0_ms)}"] == _one(499.0, t0_ms, "ancient").encode()
    assert feed.state.periods[("", "2024-11-01")] == _one(499.0, t0_ms, "ancient")
    month = feed.state.periods[("", "2024-11")]
    assert month is not None
    assert (month.count, month.total, month.high, month.last_value) == (2, Decimal("539.0"), 499.0, 40.0)
    assert (feed.state.latest_value, feed.state.latest_event_time) == (40.0, t0_ms + 100 * HOUR_MS)


def test_daily_aggregates_are_kept_32_days(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int
) -> None:
    feed = Feed(catalogue)
    feed(make_observation(observation_id="first", value=5.0))
    feed(make_observation(observation_id="month", value=6.0, event_time=t0_ms + 31 * DAY_MS))
    assert feed.state.days == {
        ("", _day(t0_ms)): _one(5.0, t0_ms, "first"),
        ("", _day(t0_ms) + 31): _one(6.0, t0_ms + 31 * DAY_MS, "month"),
    }
    assert not any(name.startswith("d:") for name in removed_fields(feed.state))
    feed(make_observation(observation_id="later", value=7.0, event_time=t0_ms + 40 * DAY_MS))
    assert feed.state.days == {
        ("", _day(t0_ms) + 31): _one(6.0, t0_ms + 31 * DAY_MS, "month"),
        ("", _day(t0_ms) + 40): _one(7.0, t0_ms + 40 * DAY_MS, "later"),
    }
    assert f"d::{_day(t0_ms)}" in removed_fields(feed.state)
    assert f"d::{_day(t0_ms)}" not in changed_fields(feed.state)


@pytest.mark.parametrize(("days_later", "kept"), [(32, True), (33, False)])
def test_day_retention_boundary(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int, days_later: int, kept: bool
) -> None:
    feed = Feed(catalogue)
    feed(make_observation(observation_id="first", value=5.0))
    feed(make_observation(observation_id="newest", value=6.0, event_time=t0_ms + days_later * DAY_MS))
    assert (("", _day(t0_ms)) in feed.state.days) is kept


def test_daily_aggregates_read_from_redis_expire(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int
) -> None:
    first, second = _one(5.0, t0_ms, "x"), _one(6.5, t0_ms + 3 * DAY_MS, "y")
    stored = {
        f"d::{_day(t0_ms)}".encode(): first.encode().encode(),
        f"d::{_day(t0_ms) + 3}".encode(): second.encode().encode(),
        b"latest_value": b"6.5",
        b"latest_event_time": str(t0_ms + 3 * DAY_MS).encode(),
        b"newest_event_time": str(t0_ms + 3 * DAY_MS).encode(),
    }
    state = decode_state(stored)
    assert state.days == {("", _day(t0_ms)): first, ("", _day(t0_ms) + 3): second}
    state.complete = True
    feed = Feed(catalogue, state)
    later = t0_ms + 33 * DAY_MS  # the first day is 33 days before, the second 30
    feed(make_observation(observation_id="new", value=1.0, event_time=later))
    assert feed.state.days == {("", _day(t0_ms) + 3): second, ("", _day(later)): _one(1.0, later, "new")}
    assert f"d::{_day(t0_ms)}" in removed_fields(feed.state)


def test_duplicate_of_an_observation_older_than_48h_is_not_counted_twice(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int
) -> None:
    feed = Feed(catalogue)
    feed(make_observation(observation_id="new", value=40.0, event_time=t0_ms + 100 * HOUR_MS))
    late = make_observation(observation_id="late", value=10.0, event_time=t0_ms)
    assert not feed(late).skipped
    assert feed.state.days[("", _day(t0_ms))] == _one(10.0, t0_ms, "late")
    periods = dict(feed.state.periods)
    assert feed(late) == StepResult(Outcome.DUPLICATE)
    assert feed.state.days[("", _day(t0_ms))] == _one(10.0, t0_ms, "late")
    assert feed.state.periods == periods
    month = feed.state.periods[("", "2024-11")]
    assert month is not None
    assert (month.count, month.total) == (2, Decimal("50.0"))


# --- Redis hash round trip ---------------------------------------------------------------------


def test_new_entity_from_empty_hash() -> None:
    assert decode_state({}) == EntityState()
    assert EntityReads().build() == EntityState()


def test_state_round_trips_through_its_hash(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int
) -> None:
    feed = Feed(catalogue, now=t0_ms + 3 * HOUR_MS)  # the periods are open: their closing times too
    feed(make_observation(observation_id="a", value=0.1))
    feed(make_observation(observation_id="b", value=0.2, event_time=t0_ms + 1))
    feed(make_observation(observation_id="c", value=210.3, revision=4, event_time=t0_ms + 2 * HOUR_MS))
    state = feed.state
    later = make_observation(observation_id="d", event_time=t0_ms + 3 * HOUR_MS)
    restored = _reads_of(
        state, catalogue, [make_observation(observation_id="c"), later], **{SOURCE: 3}
    ).build()
    assert not restored.complete
    assert _aqi_level(restored) == _aqi_level(state) == 4
    assert restored.rules == state.rules
    assert restored.meta == state.meta
    assert restored.meta[AQI_RULE].transition == "FIRING"
    assert restored.latest_value == state.latest_value == 210.3
    assert restored.latest_event_time == state.latest_event_time
    assert restored.newest_event_time == state.newest_event_time == t0_ms + 2 * HOUR_MS
    assert (restored.last_seen, restored.reporter, restored.latest_period) == (feed.now, "MAE", "")
    assert restored.hours == state.hours
    assert restored.days == state.days
    assert restored.open_periods == state.open_periods
    assert set(restored.open_periods) == {("", label) for label in T0_PERIODS}
    # exact, through the decimal text: 0.1 + 0.2 is 0.3, not 0.30000000000000004
    assert restored.hours[("", hour_of(t0_ms))].total == Decimal("0.3")
    assert restored.hours[("", hour_of(t0_ms))].sum == 0.3
    assert restored.days[("", _day(t0_ms))].total == Decimal("210.6")
    # the periods the batch needs: this year's as committed, last year's read and absent
    assert restored.periods == {
        **{("", label): state.periods[("", label)] for label in T0_PERIODS},
        **{("", label.replace("2024", "2023", 1)): None for label in T0_PERIODS},
    }
    assert restored.seen == {"MAE|c": Seen(4, t0_ms + 2 * HOUR_MS, 210.3, "FINAL", "")}
    assert restored.offsets == {SOURCE: 3}
    assert (restored.changed, restored.removed, restored.changed_periods, restored.new_seen) == (
        set(),
        set(),
        set(),
        set(),
    )


def test_restored_state_continues_where_it_left_off(
    catalogue: Catalogue, make_observation: MakeObs, t0_ms: int
) -> None:
    feed = Feed(catalogue)
    feed(make_observation(observation_id="a", value=160.0), offset=10)
    a_again = make_observation(observation_id="a", value=160.0)
    b = make_observation(observation_id="b", value=90.0, event_time=t0_ms + 1)
    restored = Feed(catalogue, _reads_of(feed.state, catalogue, [a_again, b], **{SOURCE: 10}).build())
    assert restored(a_again, offset=10).skipped
    assert restored(a_again, offset=11) == StepResult(Outcome.DUPLICATE)
    result = restored(b, offset=12)
    assert restored.state.missing == set(), "everything the batch needs was read"
    assert result.alert is not None
    assert (result.alert["transition"], result.alert["previous_level"]) == ("RESOLVED", 3)
    record = restored.record("2024-11-01")
    assert (record["count"], record["sum"], record["latest_value"]) == (2, 250.0, 90.0)
    # only what changed since the read is written back
    assert set(changed_fields(restored.state)) == SCALAR_FIELDS | AQI_RULE_FIELDS | AQI_META_FIELDS | {
        f"h::{hour_of(t0_ms)}",
        f"d::{_day(t0_ms)}",
    }
    assert [o for o, _, _ in seen_updates(restored.state)] == ["MAE|b"]
    month = restored.state.periods[("", "2024-11")]
    assert month is not None
    assert (month.count, month.total, month.low, month.high) == (2, Decimal("250.0"), 90.0, 160.0)
    updates = period_updates(restored.state, catalogue.indicators["ENV.AQI"])
    assert [name for name, _, _ in updates] == [f"|{label}" for label in sorted(T0_PERIODS)]
    assert ("|2024-11", month.encode(), local_ms(2024, 12, 1)) in updates


def test_the_steps_shortcuts_agree_with_the_full_computation(catalogue: Catalogue) -> None:
    """Aggregates counted in place, expiry checking only what a step added while the newest hour
    stays, and the latest value taken from a newer observation: after every step of a random
    stream (out of order, corrections, a breakdown series, jumps past the retention), the state
    equals what the full passes compute."""
    rng = random.Random(15)
    core = Core(catalogue, EntityKey("TRF.ACCIDENTS", "01", None), now=NOW_MS)
    start = local_ms(2025, 3, 1)
    newest = start
    revisions: dict[str, tuple[int, int]] = {}
    for step in range(1500):
        if rng.random() < 0.1 and revisions:  # a correction of an earlier observation
            oid = rng.choice(sorted(revisions))
            revisions[oid] = (revisions[oid][0] + 1, revisions[oid][1])
        else:
            oid = f"o-{step}"
            jump = rng.choice([0, 0, 0, 1, 1, 5, 30, 24 * 20])  # hours ahead; sometimes far
            newest += jump * HOUR_MS
            at = newest - rng.choice([0, 0, 3, 30, 60]) * HOUR_MS  # sometimes late
            revisions[oid] = (0, at)
        revision, at = revisions[oid]
        breakdowns = {"vehicle": "car"} if int(oid.rsplit("-", 1)[1]) % 4 == 0 else None
        result = core.apply(
            observation(oid, float(rng.randint(0, 40)), at, revision=revision, breakdowns=breakdowns)
        )
        assert result.outcome in (Outcome.APPLIED, Outcome.CORRECTED, Outcome.BEYOND_RETENTION)
        state = core.state  # what the full expiry pass would have dropped is gone
        newest_hour = hour_of(state.newest_event_time)
        oldest_day = local_date(state.newest_event_time).toordinal() - DAY_RETENTION_DAYS
        assert all(hour > newest_hour - RETENTION_HOURS for _, hour in state.hours)
        assert all(day >= oldest_day for _, day in state.days)
        latest = state.latest_of("")
        if latest is not None:
            assert (state.latest_value, state.latest_event_time) == (latest.last_value, latest.last_time)
    for (series, day), agg in core.state.days.items():
        first = local_ms(2025, 1, 1) + (day - local_date(local_ms(2025, 1, 1)).toordinal()) * DAY_MS
        values = [
            Agg.of(seen.value, seen.event_time, key.partition("|")[2], seen.quality, NOW_MS)
            for key, seen in core.state.seen.items()
            if seen.series == series and first <= seen.event_time < first + DAY_MS
        ]
        assert agg == combine(values), (series, day)


def test_the_lazy_history_reads_the_days_as_the_built_one_does() -> None:
    state = EntityState(complete=True)
    base = date(2025, 5, 1).toordinal()
    for offset in (0, 1, 3, 7, 29, 30, 31):
        state.days[("", base + offset)] = Agg.of(float(offset) + 0.5, 0, f"o{offset}", "FINAL")
        state.days[("vehicle=car", base + offset)] = Agg.of(99.0, 0, f"c{offset}", "FINAL")
    built, lazy = state.history(), state.lazy_history()
    for before in (base, base + 1, base + 8, base + 31, base + 40):
        for days in (1, 7, 30):
            day = date.fromordinal(before)
            assert lazy.daily_values(day, days) == built.daily_values(day, days)
