"""stream_app.domain.entity timer ticks and directives: absence and late reports of one entity, and what the
center does about an alert (acknowledge, assign, comment ...). Rules of a small file of the test's own."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from stream_app.domain.alerting import RuleBook, load_rules
from stream_app.domain.alerting.transitions import Transition
from stream_app.domain.catalogue import Catalogue
from stream_app.domain.directives import Action, build
from stream_app.domain.entity import (
    OCCURRENCE_CHANGES_KEPT,
    Context,
    DirectiveRefusedError,
    EntityKey,
    EntityState,
    Outcome,
    StepResult,
    alert_id,
    apply,
    direct,
    tick,
)
from stream_app.domain.model import Observation
from stream_app.domain.records import AlertRecord
from stream_app.state.entity_hash import changed_fields, decode_state
from stream_app.wire.codecs import decode, encode
from stream_app.wire.schemas import SchemaRegistry

MakeObs = Callable[..., Observation]
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
DAY_MS = 24 * HOUR_MS
VIETNAM = timezone(timedelta(hours=7))

OBS_SOURCE = "internal.observations.by-entity:0"
TICK_SOURCE = "internal.ticks:0"
DIRECTIVE_SOURCE = "internal.directives:0"

# 2024-11-01T00:00Z (the conftest's t0) is when the AQI readings are taken; they arrive 5 min later.
T0_MS = int(datetime(2024, 11, 1, tzinfo=UTC).timestamp() * 1000)
ARRIVED_MS = T0_MS + 5 * MINUTE_MS
ISSUED_MS = T0_MS + 30 * MINUTE_MS

AQI = EntityKey("ENV.AQI", "01", "HN-AQ-HOANKIEM")
CPI = EntityKey("FIN.CPI", "01", None)
LEVELS = "levels:ENV.AQI"
ABSENCE = "absence:ENV.AQI"
LATE = "late_report:FIN.CPI"
LEVELS_KEY = f"{LEVELS}|{AQI}"
ABSENCE_KEY = f"{ABSENCE}|{AQI}"
LATE_KEY = f"{LATE}|{CPI}"

RULES = """
[defaults]
late_report = false  # only the late_report rule written out below

[stations_of]
"ENV.AQI" = "air_quality"

[[rule]]
kind = "levels"
indicator = "ENV.AQI"

[[rule]]
kind = "absence"
indicator = "ENV.AQI"
interval_hours = 3

[[rule]]
kind = "late_report"
indicator = "FIN.CPI"
"""


@pytest.fixture
def rulebook(tmp_path: Path, catalogue: Catalogue) -> RuleBook:
    path = tmp_path / "rules.toml"
    path.write_text(RULES, encoding="utf-8")
    return load_rules(path, catalogue)


class Entity:
    """One entity's state and the three inputs of its partition, each at increasing offsets."""

    def __init__(
        self,
        catalogue: Catalogue,
        rulebook: RuleBook,
        registry: SchemaRegistry,
        key: EntityKey,
        state: EntityState | None = None,
    ) -> None:
        self.catalogue, self.rulebook, self.registry, self.key = catalogue, rulebook, registry, key
        self.state = state if state is not None else EntityState()
        self.state.complete = True  # everything the entity has is in memory
        self.offsets = {OBS_SOURCE: 0, TICK_SOURCE: 0, DIRECTIVE_SOURCE: 0}

    def ctx(self, now_ms: int) -> Context:
        return Context(self.catalogue, self.rulebook, now_ms)

    def _offset(self, source: str, offset: int | None) -> int:
        if offset is None:
            self.offsets[source] += 1
            return self.offsets[source]
        return offset

    def observe(self, obs: Observation, *, at_ms: int, offset: int | None = None) -> StepResult:
        return self._checked(
            apply(
                self.state,
                obs,
                source=OBS_SOURCE,
                offset=self._offset(OBS_SOURCE, offset),
                ctx=self.ctx(at_ms),
            )
        )

    def tick(self, *, at_ms: int, offset: int | None = None) -> StepResult:
        return self._checked(
            tick(
                self.state,
                self.key,
                source=TICK_SOURCE,
                offset=self._offset(TICK_SOURCE, offset),
                ctx=self.ctx(at_ms),
            )
        )

    def direct(self, directive: dict[str, Any], *, at_ms: int, offset: int | None = None) -> StepResult:
        return self._checked(
            direct(
                self.state,
                self.key,
                directive,
                source=DIRECTIVE_SOURCE,
                offset=self._offset(DIRECTIVE_SOURCE, offset),
                ctx=self.ctx(at_ms),
            )
        )

    def _checked(self, result: StepResult) -> StepResult:
        """Every alert published is a valid Avro alert record."""
        for alert in result.alerts:
            decoded = decode(self.registry, "alert", encode(self.registry.latest("alert"), alert))
            assert decoded["alert_id"] == alert["alert_id"]
        return result


@pytest.fixture
def aqi(catalogue: Catalogue, rulebook: RuleBook, registry: SchemaRegistry) -> Callable[..., Entity]:
    def make(state: EntityState | None = None) -> Entity:
        return Entity(catalogue, rulebook, registry, AQI, state)

    return make


@pytest.fixture
def make_directive(registry: SchemaRegistry) -> Callable[..., dict[str, Any]]:
    """A directive of the center as the consolidate agent gets it: through its Avro schema."""

    def make(action: str, **overrides: Any) -> dict[str, Any]:
        built = build(
            directive_id="dir-1",
            alert_key=LEVELS_KEY,
            # names no occurrence: "the one current as I issue it" (the tests issue after it fired);
            # the tests of occurrences name one
            alert_id="",
            reporter="MAE",
            action=Action(action),
            actor="truc-ban-1",
            assignee=None,
            comment=None,
            issued_at=ISSUED_MS,
            token_id="",
            writer="",
        )
        record: dict[str, Any] = dict(built)
        unknown = overrides.keys() - record.keys()
        assert not unknown, f"make_directive: unknown fields {sorted(unknown)}"
        record.update(overrides)
        return decode(registry, "directive", encode(registry.latest("directive"), record))

    return make


MakeDirective = Callable[..., dict[str, Any]]


def _reading(make_observation: MakeObs, obs_id: str, value: float, *, hours: float = 0) -> Observation:
    return make_observation(observation_id=obs_id, value=value, event_time=T0_MS + int(hours * HOUR_MS))


def _hash_of(state: EntityState) -> dict[bytes, bytes]:
    return {k.encode(): v.encode() for k, v in changed_fields(state).items()}


# --- absence -----------------------------------------------------------------------------------


def test_tick_before_any_data_is_skipped(aqi: Callable[..., Entity]) -> None:
    entity = aqi()
    assert entity.tick(at_ms=ARRIVED_MS + 100 * HOUR_MS, offset=1) == StepResult(Outcome.ALREADY_APPLIED)
    assert entity.state == EntityState(complete=True), (
        "a feed never heard from is not watched, nor its tick recorded"
    )


def test_absence_fires_once_after_the_interval_and_resolves_on_data(
    aqi: Callable[..., Entity], make_observation: MakeObs
) -> None:
    entity = aqi()
    assert entity.observe(_reading(make_observation, "a", 40.0), at_ms=ARRIVED_MS).alerts == ()

    quiet = entity.tick(at_ms=ARRIVED_MS + 2 * HOUR_MS)
    assert not quiet.skipped
    assert quiet.alerts == ()
    assert entity.state.rules[ABSENCE].level == 0

    fired_at = ARRIVED_MS + 3 * HOUR_MS + MINUTE_MS
    fired = entity.tick(at_ms=fired_at)
    assert len(fired.alerts) == 1
    alert = fired.alerts[0]
    assert (alert["rule"], alert["rule_kind"], alert["alert_key"]) == (ABSENCE, "absence", ABSENCE_KEY)
    assert (alert["event_type"], alert["transition"]) == ("TRANSITION", "FIRING")
    assert (alert["level"], alert["previous_level"], alert["level_code"]) == (1, 0, "NO_DATA")
    assert alert["value"] == pytest.approx(3 + 1 / 60)  # hours of silence since the data arrived
    assert alert["threshold"] == 3.0
    assert (alert["event_time"], alert["processing_time"]) == (fired_at, fired_at)
    assert (alert["reporter"], alert["station"], alert["observation_id"]) == ("MAE", AQI.station, "")
    assert alert["alert_id"] == alert_id(ABSENCE_KEY, Transition.FIRING, f"tick@{fired_at}")
    assert entity.state.meta[ABSENCE].alert_id == alert["alert_id"]

    assert entity.tick(at_ms=ARRIVED_MS + 5 * HOUR_MS).alerts == (), "still silent: no second FIRING"
    assert entity.state.rules[ABSENCE].level == 1

    back_at = ARRIVED_MS + 6 * HOUR_MS
    resolved = entity.observe(_reading(make_observation, "b", 42.0, hours=6), at_ms=back_at)
    assert len(resolved.alerts) == 1, "the AQI level did not change: only the silence resolves"
    alert = resolved.alerts[0]
    assert (alert["rule"], alert["transition"], alert["level"], alert["previous_level"]) == (
        ABSENCE,
        "RESOLVED",
        0,
        1,
    )
    assert (alert["observation_id"], alert["value"]) == ("b", 42.0)
    assert alert["alert_id"] == alert_id(ABSENCE_KEY, Transition.RESOLVED, "b#0")
    assert entity.state.last_seen == back_at

    assert entity.tick(at_ms=back_at + 3 * HOUR_MS).alerts == (), "silence counts from the new data"
    assert len(entity.tick(at_ms=back_at + 3 * HOUR_MS + MINUTE_MS).alerts) == 1


def test_silence_counts_from_arrival_not_event_time(
    aqi: Callable[..., Entity], make_observation: MakeObs
) -> None:
    entity = aqi()
    # a reading 10 hours old arrives now: the feed is alive
    entity.observe(_reading(make_observation, "late", 40.0, hours=-10), at_ms=ARRIVED_MS)
    assert entity.tick(at_ms=ARRIVED_MS + 3 * HOUR_MS).alerts == ()


def test_redelivered_tick_is_skipped(aqi: Callable[..., Entity], make_observation: MakeObs) -> None:
    entity = aqi()
    entity.observe(_reading(make_observation, "a", 40.0), at_ms=ARRIVED_MS)
    fired = entity.tick(at_ms=ARRIVED_MS + 4 * HOUR_MS, offset=7)
    assert len(fired.alerts) == 1
    before = copy.deepcopy(entity.state)
    for offset in (7, 6):
        again = entity.tick(at_ms=ARRIVED_MS + 9 * HOUR_MS, offset=offset)
        assert again == StepResult(Outcome.ALREADY_APPLIED)
        assert entity.state == before
    assert entity.state.offsets[TICK_SOURCE] == 7


def test_entity_stored_before_last_seen_is_watched_from_the_first_tick(
    aqi: Callable[..., Entity],
) -> None:
    """A hash written before ``last_seen`` existed: known, but with no arrival time. The first tick
    starts the watch rather than alerting at once."""
    stored = {b"latest_value": b"40.0", b"latest_event_time": str(T0_MS).encode()}
    entity = aqi(decode_state(stored))
    assert entity.state.known
    assert entity.tick(at_ms=ARRIVED_MS).alerts == ()
    assert entity.tick(at_ms=ARRIVED_MS + 3 * HOUR_MS).alerts == ()
    fired = entity.tick(at_ms=ARRIVED_MS + 3 * HOUR_MS + MINUTE_MS)
    assert [a["transition"] for a in fired.alerts] == ["FIRING"]


def test_tick_writes_the_timer_rules_state(aqi: Callable[..., Entity], make_observation: MakeObs) -> None:
    entity = aqi()
    entity.observe(_reading(make_observation, "a", 40.0), at_ms=ARRIVED_MS)
    restored = aqi(decode_state(_hash_of(entity.state)))
    restored.tick(at_ms=ARRIVED_MS + 4 * HOUR_MS)
    fields = changed_fields(restored.state)
    assert fields[f"r:{ABSENCE}:l"] == "1"
    assert fields[f"m:{ABSENCE}:t"] == "FIRING"
    assert not any(name.startswith(f"r:{LEVELS}:") for name in fields), "a tick leaves the levels alone"
    again = decode_state(_hash_of(restored.state))
    assert again.rules[ABSENCE] == restored.state.rules[ABSENCE]
    assert again.meta[ABSENCE] == restored.state.meta[ABSENCE]


# --- late reports ------------------------------------------------------------------------------


def _local_midnight_after(day: date) -> int:
    """Epoch milliseconds when the local (UTC+7) ``day`` is over."""
    after = day + timedelta(days=1)
    return int(datetime(after.year, after.month, after.day, tzinfo=VIETNAM).timestamp() * 1000)


def test_late_report_fires_after_the_deadline_and_resolves_on_the_report(
    catalogue: Catalogue, rulebook: RuleBook, registry: SchemaRegistry, make_observation: MakeObs
) -> None:
    cpi = catalogue.indicators["FIN.CPI"]
    first = cpi.period_of(int(datetime(2024, 10, 15, tzinfo=UTC).timestamp() * 1000))
    second = cpi.period_of(first.end_ms)
    assert second.start > first.end, "the period after the first"
    overdue_from = _local_midnight_after(second.deadline)
    entity = Entity(catalogue, rulebook, registry, CPI)

    def report(obs_id: str, period: Any, at_ms: int) -> StepResult:
        obs = make_observation(
            observation_id=obs_id,
            reporter="MOF",
            indicator="FIN.CPI",
            station=None,
            unit="%",
            value=102.9,
            event_time=period.start_ms,
            period=period.label,
        )
        return entity.observe(obs, at_ms=at_ms)

    assert report("cpi-1", first, first.end_ms + 5 * DAY_MS).alerts == ()
    assert entity.state.latest_period == first.label

    # the second period is due by the end of its deadline day, local time
    assert entity.tick(at_ms=overdue_from - MINUTE_MS).alerts == ()
    fired_at = overdue_from + MINUTE_MS
    fired = entity.tick(at_ms=fired_at)
    assert len(fired.alerts) == 1
    alert = fired.alerts[0]
    assert (alert["rule"], alert["rule_kind"], alert["alert_key"]) == (LATE, "late_report", LATE_KEY)
    assert (alert["transition"], alert["level_code"], alert["reporter"]) == ("FIRING", "LATE", "MOF")
    assert (alert["region"], alert["station"]) == ("01", None)
    assert alert["value"] == pytest.approx(MINUTE_MS / DAY_MS)  # days since the deadline day ended
    assert second.label in alert["detail"]
    assert alert["alert_id"] == alert_id(LATE_KEY, Transition.FIRING, f"tick@{fired_at}")
    assert entity.tick(at_ms=overdue_from + DAY_MS).alerts == ()

    assert report("cpi-1b", first, overdue_from + 2 * DAY_MS).alerts == (), "an older period resolves nothing"

    resolved = report("cpi-2", second, overdue_from + 3 * DAY_MS)
    assert [(a["rule"], a["transition"], a["observation_id"]) for a in resolved.alerts] == [
        (LATE, "RESOLVED", "cpi-2")
    ]
    assert entity.state.latest_period == second.label
    assert entity.tick(at_ms=overdue_from + 4 * DAY_MS).alerts == ()


# --- directives of the center ------------------------------------------------------------------


def _firing(aqi: Callable[..., Entity], make_observation: MakeObs) -> tuple[Entity, AlertRecord]:
    """An entity whose AQI alert is open (BAD), and the FIRING alert."""
    entity = aqi()
    fired = entity.observe(_reading(make_observation, "a", 200.0), at_ms=ARRIVED_MS)
    assert [(a["rule"], a["transition"]) for a in fired.alerts] == [(LEVELS, "FIRING")]
    return entity, fired.alerts[0]


def test_acknowledge_an_open_alert(
    aqi: Callable[..., Entity], make_observation: MakeObs, make_directive: MakeDirective
) -> None:
    entity, firing = _firing(aqi, make_observation)
    directive = make_directive("ACKNOWLEDGE", alert_id=firing["alert_id"])
    result = entity.direct(directive, at_ms=ISSUED_MS + MINUTE_MS)
    assert not result.skipped
    assert len(result.alerts) == 1
    ack = result.alerts[0]
    assert (ack["event_type"], ack["transition"], ack["alert_key"]) == ("ACKNOWLEDGE", "FIRING", LEVELS_KEY)
    # A directive is a change of its own: its own deterministic id, so deduplicating by id keeps it.
    assert ack["alert_id"] == alert_id(LEVELS_KEY, "ACKNOWLEDGE", "directive:dir-1") != firing["alert_id"]
    assert (ack["acknowledged_by"], ack["acknowledged_at"]) == ("truc-ban-1", ISSUED_MS)
    assert (ack["directive_id"], ack["assigned_to"], ack["comment"]) == ("dir-1", None, None)
    assert (ack["level"], ack["previous_level"], ack["level_code"]) == (3, 3, "BAD")
    assert ack["value"] == 200.0
    assert (ack["event_time"], ack["processing_time"]) == (ISSUED_MS, ISSUED_MS + MINUTE_MS)

    restored = decode_state(_hash_of(entity.state))
    assert restored.meta[LEVELS] == entity.state.meta[LEVELS]
    assert (restored.meta[LEVELS].acknowledged_by, restored.meta[LEVELS].acknowledged_at) == (
        "truc-ban-1",
        ISSUED_MS,
    )
    assert restored.meta[LEVELS].alert_id == firing["alert_id"]

    # the acknowledgement holds for the rest of the episode: an escalation still shows it
    later = aqi(restored)
    escalated = later.observe(_reading(make_observation, "b", 250.0, hours=1), at_ms=ARRIVED_MS + HOUR_MS)
    assert [(a["transition"], a["acknowledged_by"]) for a in escalated.alerts] == [
        ("ESCALATED", "truc-ban-1")
    ]
    assert escalated.alerts[0]["directive_id"] is None, "a transition is not a directive"


def test_first_acknowledgement_is_kept_and_assignment_and_comment_recorded(
    aqi: Callable[..., Entity], make_observation: MakeObs, make_directive: MakeDirective
) -> None:
    entity, firing = _firing(aqi, make_observation)
    entity.direct(make_directive("ACKNOWLEDGE"), at_ms=ISSUED_MS)
    assigned = entity.direct(
        make_directive(
            "ASSIGN",
            directive_id="dir-2",
            actor="truc-ban-2",
            assignee="MAE-DOC",
            issued_at=ISSUED_MS + HOUR_MS,
        ),
        at_ms=ISSUED_MS + HOUR_MS,
    ).alerts[0]
    assert (assigned["event_type"], assigned["alert_id"]) == (
        "ASSIGN",
        alert_id(LEVELS_KEY, "ASSIGN", "directive:dir-2"),
    )
    assert assigned["alert_id"] != firing["alert_id"]
    assert (assigned["acknowledged_by"], assigned["acknowledged_at"]) == ("truc-ban-1", ISSUED_MS)
    assert (assigned["assigned_to"], assigned["directive_id"]) == ("MAE-DOC", "dir-2")
    commented = entity.direct(
        make_directive("COMMENT", directive_id="dir-3", comment="Đề nghị báo cáo trước 17h"),
        at_ms=ISSUED_MS + 2 * HOUR_MS,
    ).alerts[0]
    assert (commented["comment"], commented["assigned_to"]) == ("Đề nghị báo cáo trước 17h", "MAE-DOC")


def test_comment_does_not_acknowledge(
    aqi: Callable[..., Entity], make_observation: MakeObs, make_directive: MakeDirective
) -> None:
    entity, _ = _firing(aqi, make_observation)
    comment = entity.direct(make_directive("COMMENT", comment="theo dõi"), at_ms=ISSUED_MS).alerts[0]
    assert (comment["event_type"], comment["comment"], comment["acknowledged_by"]) == (
        "COMMENT",
        "theo dõi",
        None,
    )


@pytest.mark.parametrize("action", ["ASSIGN", "ESCALATE", "CLOSE"])
def test_other_actions_on_an_open_alert_acknowledge_it(
    aqi: Callable[..., Entity], make_observation: MakeObs, make_directive: MakeDirective, action: str
) -> None:
    entity, firing = _firing(aqi, make_observation)
    record = entity.direct(make_directive(action, assignee="UBND-HN"), at_ms=ISSUED_MS).alerts[0]
    assert (record["event_type"], record["alert_id"]) == (
        action,
        alert_id(LEVELS_KEY, action, "directive:dir-1"),
    )
    assert record["alert_id"] != firing["alert_id"]
    assert (record["acknowledged_by"], record["assigned_to"]) == ("truc-ban-1", "UBND-HN")


def test_resolution_clears_the_acknowledgement(
    aqi: Callable[..., Entity], make_observation: MakeObs, make_directive: MakeDirective
) -> None:
    entity, _ = _firing(aqi, make_observation)
    entity.direct(make_directive("ASSIGN", assignee="MAE-DOC", comment="xử lý"), at_ms=ISSUED_MS)
    resolved = entity.observe(_reading(make_observation, "b", 40.0, hours=1), at_ms=ARRIVED_MS + HOUR_MS)
    levels = [a for a in resolved.alerts if a["rule"] == LEVELS]
    assert len(levels) == 1
    alert = levels[0]
    assert alert["transition"] == "RESOLVED"
    assert (alert["acknowledged_by"], alert["acknowledged_at"], alert["assigned_to"], alert["comment"]) == (
        None,
        None,
        None,
        None,
    )
    meta = entity.state.meta[LEVELS]
    assert (meta.acknowledged_by, meta.acknowledged_at, meta.assigned_to, meta.comment) == ("", 0, "", "")
    assert (meta.transition, meta.alert_id) == ("RESOLVED", alert["alert_id"])

    # the next episode starts unacknowledged
    refired = entity.observe(_reading(make_observation, "c", 220.0, hours=2), at_ms=ARRIVED_MS + 2 * HOUR_MS)
    assert [(a["transition"], a["acknowledged_by"]) for a in refired.alerts] == [("FIRING", None)]


def test_comment_on_a_resolved_alert_is_allowed(
    aqi: Callable[..., Entity], make_observation: MakeObs, make_directive: MakeDirective
) -> None:
    entity, _ = _firing(aqi, make_observation)
    resolved = entity.observe(_reading(make_observation, "b", 40.0, hours=1), at_ms=ARRIVED_MS + HOUR_MS)
    comment = entity.direct(make_directive("COMMENT", comment="đã hết"), at_ms=ISSUED_MS + 2 * HOUR_MS)
    assert len(comment.alerts) == 1
    record = comment.alerts[0]
    assert (record["event_type"], record["transition"], record["comment"]) == (
        "COMMENT",
        "RESOLVED",
        "đã hết",
    )
    assert record["alert_id"] != resolved.alerts[0]["alert_id"]
    assert record["acknowledged_by"] is None


def test_acknowledge_on_a_resolved_alert_is_refused(
    aqi: Callable[..., Entity], make_observation: MakeObs, make_directive: MakeDirective
) -> None:
    entity, _ = _firing(aqi, make_observation)
    entity.observe(_reading(make_observation, "b", 40.0, hours=1), at_ms=ARRIVED_MS + HOUR_MS)
    before = copy.deepcopy(entity.state)
    with pytest.raises(DirectiveRefusedError) as refused:
        entity.direct(make_directive("ACKNOWLEDGE"), at_ms=ISSUED_MS + 2 * HOUR_MS, offset=4)
    assert refused.value.reason == "alert_not_open"
    assert LEVELS_KEY in str(refused.value)
    # nothing changes but the applied offset: the refusal is committed, never retried
    before.offsets[DIRECTIVE_SOURCE] = 4
    assert entity.state == before


@pytest.mark.parametrize(
    "alert_key",
    [
        f"rate_of_change:ENV.AQI|{AQI}",  # no such rule
        f"levels:ENV.AQIX|{AQI}",
        f"{LATE}|{AQI}",  # a rule of another indicator
    ],
)
def test_directive_about_an_unknown_rule_is_refused(
    aqi: Callable[..., Entity], make_observation: MakeObs, make_directive: MakeDirective, alert_key: str
) -> None:
    entity, _ = _firing(aqi, make_observation)
    with pytest.raises(DirectiveRefusedError) as refused:
        entity.direct(make_directive("ACKNOWLEDGE", alert_key=alert_key), at_ms=ISSUED_MS)
    assert refused.value.reason == "unknown_alert"


def test_directive_for_an_entity_without_state_is_unknown(
    aqi: Callable[..., Entity], make_directive: MakeDirective
) -> None:
    with pytest.raises(DirectiveRefusedError) as refused:
        aqi().direct(make_directive("COMMENT", comment="?"), at_ms=ISSUED_MS)
    assert refused.value.reason == "unknown_alert"


def test_comment_on_an_alert_that_never_fired_is_unknown(
    aqi: Callable[..., Entity], make_observation: MakeObs, make_directive: MakeDirective
) -> None:
    entity = aqi()
    assert entity.observe(_reading(make_observation, "a", 40.0), at_ms=ARRIVED_MS).alerts == ()
    with pytest.raises(DirectiveRefusedError) as refused:
        entity.direct(make_directive("COMMENT", comment="?"), at_ms=ISSUED_MS)
    assert refused.value.reason == "unknown_alert"


def test_redelivered_directive_is_skipped(
    aqi: Callable[..., Entity], make_observation: MakeObs, make_directive: MakeDirective
) -> None:
    entity, _ = _firing(aqi, make_observation)
    entity.direct(make_directive("ACKNOWLEDGE"), at_ms=ISSUED_MS, offset=3)
    before = copy.deepcopy(entity.state)
    again = entity.direct(make_directive("ACKNOWLEDGE", actor="someone-else"), at_ms=ISSUED_MS, offset=3)
    assert again == StepResult(Outcome.ALREADY_APPLIED)
    assert entity.state == before


def test_acknowledge_an_absence_alert(
    aqi: Callable[..., Entity], make_observation: MakeObs, make_directive: MakeDirective
) -> None:
    entity = aqi()
    entity.observe(_reading(make_observation, "a", 40.0), at_ms=ARRIVED_MS)
    fired = entity.tick(at_ms=ARRIVED_MS + 4 * HOUR_MS).alerts[0]
    directive = make_directive("ACKNOWLEDGE", alert_key=ABSENCE_KEY, alert_id=fired["alert_id"])
    ack = entity.direct(directive, at_ms=ARRIVED_MS + 5 * HOUR_MS)
    record = ack.alerts[0]
    assert (record["rule"], record["event_type"], record["level_code"]) == (ABSENCE, "ACKNOWLEDGE", "NO_DATA")
    assert record["alert_id"] != fired["alert_id"]
    assert entity.state.meta[ABSENCE].acknowledged_by == "truc-ban-1"
    assert entity.state.meta.get(LEVELS) is None or not entity.state.meta[LEVELS].acknowledged_by


# --- a directive is about one occurrence --------------------------------------------------------


def _fired_resolved_fired(
    aqi: Callable[..., Entity], make_observation: MakeObs
) -> tuple[Entity, AlertRecord, AlertRecord]:
    """An AQI alert that fired, resolved and fired again: the first and the second FIRING."""
    entity, first = _firing(aqi, make_observation)
    entity.observe(_reading(make_observation, "b", 40.0, hours=1), at_ms=ARRIVED_MS + HOUR_MS)
    again = entity.observe(_reading(make_observation, "c", 220.0, hours=2), at_ms=ARRIVED_MS + 2 * HOUR_MS)
    assert [(a["rule"], a["transition"]) for a in again.alerts] == [(LEVELS, "FIRING")]
    return entity, first, again.alerts[0]


@pytest.mark.parametrize("action", ["ACKNOWLEDGE", "ASSIGN", "COMMENT", "ESCALATE", "CLOSE"])
def test_a_directive_about_an_earlier_occurrence_is_refused_as_stale(
    aqi: Callable[..., Entity], make_observation: MakeObs, make_directive: MakeDirective, action: str
) -> None:
    entity, first, second = _fired_resolved_fired(aqi, make_observation)
    before = copy.deepcopy(entity.state)
    stale = make_directive(
        action,
        alert_id=first["alert_id"],
        assignee="MAE-DOC",
        comment="x",
        issued_at=ARRIVED_MS + 3 * HOUR_MS,
    )
    with pytest.raises(DirectiveRefusedError) as refused:
        entity.direct(stale, at_ms=ARRIVED_MS + 3 * HOUR_MS, offset=5)
    assert refused.value.reason == "stale_alert"
    assert first["alert_id"] in str(refused.value)
    assert second["alert_id"] in str(refused.value), "names the current occurrence"
    # nothing lands on the new occurrence: only the applied offset moves (the refusal is committed)
    before.offsets[DIRECTIVE_SOURCE] = 5
    assert entity.state == before
    assert entity.state.meta[LEVELS].acknowledged_by == ""


def test_a_directive_about_the_current_occurrence_is_applied_whichever_change_it_names(
    aqi: Callable[..., Entity], make_observation: MakeObs, make_directive: MakeDirective
) -> None:
    entity, _, second = _fired_resolved_fired(aqi, make_observation)
    later = ARRIVED_MS + 3 * HOUR_MS
    escalated = entity.observe(_reading(make_observation, "d", 320.0, hours=3), at_ms=later).alerts[0]
    assert escalated["transition"] == "ESCALATED"
    # the screen holds whichever change it received last: the FIRING, an escalation, a directive's
    commented = entity.direct(
        make_directive("COMMENT", comment="theo dõi", alert_id=second["alert_id"], issued_at=later),
        at_ms=later,
    ).alerts[0]
    acked = entity.direct(
        make_directive("ACKNOWLEDGE", directive_id="dir-2", alert_id=commented["alert_id"], issued_at=later),
        at_ms=later,
    ).alerts[0]
    assert acked["acknowledged_by"] == "truc-ban-1"
    assigned = entity.direct(
        make_directive(
            "ASSIGN",
            directive_id="dir-3",
            alert_id=escalated["alert_id"],
            assignee="MAE-DOC",
            issued_at=later,
        ),
        at_ms=later,
    ).alerts[0]
    assert (assigned["assigned_to"], assigned["acknowledged_by"]) == ("MAE-DOC", "truc-ban-1")


def test_a_stale_directive_on_a_resolved_alert_is_stale_and_a_comment_on_the_last_occurrence_is_taken(
    aqi: Callable[..., Entity], make_observation: MakeObs, make_directive: MakeDirective
) -> None:
    entity, first, _ = _fired_resolved_fired(aqi, make_observation)
    resolved = entity.observe(_reading(make_observation, "d", 40.0, hours=3), at_ms=ARRIVED_MS + 3 * HOUR_MS)
    later = ARRIVED_MS + 4 * HOUR_MS
    with pytest.raises(DirectiveRefusedError) as refused:
        entity.direct(make_directive("ACKNOWLEDGE", alert_id=first["alert_id"], issued_at=later), at_ms=later)
    assert refused.value.reason == "stale_alert", "stale says more than 'not open'"
    with pytest.raises(DirectiveRefusedError) as refused:
        entity.direct(
            make_directive("ACKNOWLEDGE", alert_id=resolved.alerts[0]["alert_id"], issued_at=later),
            at_ms=later,
        )
    assert refused.value.reason == "alert_not_open"
    comment = make_directive(
        "COMMENT", comment="đã hết", alert_id=resolved.alerts[0]["alert_id"], issued_at=later
    )
    assert entity.direct(comment, at_ms=later).alerts[0]["comment"] == "đã hết"


def test_a_directive_naming_no_occurrence_is_about_the_one_current_when_it_was_issued(
    aqi: Callable[..., Entity], make_observation: MakeObs, make_directive: MakeDirective
) -> None:
    entity, _, second = _fired_resolved_fired(aqi, make_observation)
    refired_at = ARRIVED_MS + 2 * HOUR_MS  # when the second occurrence was processed
    assert second["processing_time"] == refired_at
    queued = make_directive("ACKNOWLEDGE", alert_id="", issued_at=refired_at - MINUTE_MS)
    with pytest.raises(DirectiveRefusedError) as refused:
        entity.direct(queued, at_ms=refired_at + HOUR_MS)
    assert refused.value.reason == "stale_alert"
    assert "names no occurrence" in str(refused.value)
    fresh = make_directive("ACKNOWLEDGE", alert_id="", issued_at=refired_at + MINUTE_MS)
    assert entity.direct(fresh, at_ms=refired_at + HOUR_MS).alerts[0]["acknowledged_by"] == "truc-ban-1"


def test_an_alert_stored_before_occurrences_were_recorded_takes_any_directive_until_it_fires_again(
    aqi: Callable[..., Entity], make_observation: MakeObs, make_directive: MakeDirective
) -> None:
    """State written by the previous version: its meta has no occurrence. Nothing tells an earlier
    occurrence's id from the current one's there, so the directive is taken, as it was; the next
    FIRING records an occurrence and from then on the check holds."""
    entity, first = _firing(aqi, make_observation)
    stored = {
        k: v for k, v in _hash_of(entity.state).items() if not k.startswith(f"m:{LEVELS}:".encode()) or
        k.decode().rpartition(":")[2] in ("t", "id", "ab", "aa", "as", "c", "d")
    }  # fmt: skip
    old = aqi(decode_state(stored))
    assert old.state.meta[LEVELS].occurrence == ""
    old.direct(make_directive("COMMENT", comment="cũ", alert_id="alr-of-whatever"), at_ms=ISSUED_MS)
    old.observe(_reading(make_observation, "b", 40.0, hours=1), at_ms=ARRIVED_MS + HOUR_MS)
    refired = old.observe(_reading(make_observation, "c", 220.0, hours=2), at_ms=ARRIVED_MS + 2 * HOUR_MS)
    assert old.state.meta[LEVELS].occurrence == refired.alerts[0]["alert_id"]
    with pytest.raises(DirectiveRefusedError) as refused:
        old.direct(
            make_directive("ACKNOWLEDGE", alert_id=first["alert_id"], issued_at=ARRIVED_MS + 3 * HOUR_MS),
            at_ms=ARRIVED_MS + 3 * HOUR_MS,
        )
    assert refused.value.reason == "stale_alert"


def test_an_occurrence_keeps_its_first_change_and_its_latest_ones(
    aqi: Callable[..., Entity], make_observation: MakeObs, make_directive: MakeDirective
) -> None:
    entity, firing = _firing(aqi, make_observation)
    ids = [
        entity.direct(
            make_directive("COMMENT", directive_id=f"dir-{n}", comment=f"#{n}"), at_ms=ISSUED_MS
        ).alerts[0]["alert_id"]
        for n in range(OCCURRENCE_CHANGES_KEPT + 3)
    ]
    meta = decode_state(_hash_of(entity.state)).meta[LEVELS]
    assert meta == entity.state.meta[LEVELS], "the occurrence survives the round trip through Redis"
    assert (meta.occurrence, meta.opened_at) == (firing["alert_id"], ARRIVED_MS)
    assert meta.changes == tuple(ids[-OCCURRENCE_CHANGES_KEPT:])
    assert meta.is_of_current_occurrence(firing["alert_id"]), "the FIRING that opened it, always"
    assert not meta.is_of_current_occurrence(ids[0]), "a view this far behind is out of date"
    assert not meta.is_of_current_occurrence("")


# --- deterministic alert ids -------------------------------------------------------------------


def test_replayed_inputs_give_the_same_alert_ids(
    aqi: Callable[..., Entity], make_observation: MakeObs, make_directive: MakeDirective
) -> None:
    """After a crash the agent replays the same records on the state it read: the same alerts, with
    the same ids, so the center sees a duplicate it can drop, never a second alert."""

    def twice(entity: Entity, step: Callable[[Entity], StepResult]) -> StepResult:
        replica = aqi(copy.deepcopy(entity.state))
        replica.offsets = dict(entity.offsets)
        first, second = step(entity), step(replica)
        assert first.alerts, "each step of this test publishes an alert"
        assert first.alerts == second.alerts
        assert entity.state == replica.state
        return first

    entity = aqi()
    obs = _reading(make_observation, "a", 200.0)
    fired = twice(entity, lambda e: e.observe(obs, at_ms=ARRIVED_MS))
    acked = twice(entity, lambda e: e.direct(make_directive("ACKNOWLEDGE"), at_ms=ISSUED_MS))
    assert acked.alerts[0]["alert_id"] != fired.alerts[0]["alert_id"]  # replayed: same id as its twin
    silent = twice(entity, lambda e: e.tick(at_ms=ARRIVED_MS + 4 * HOUR_MS))
    assert silent.alerts[0]["rule"] == ABSENCE

    # a different cause is a different alert
    other = aqi()
    other.observe(obs, at_ms=ARRIVED_MS)
    later = other.tick(at_ms=ARRIVED_MS + 5 * HOUR_MS)
    assert later.alerts[0]["alert_id"] != silent.alerts[0]["alert_id"]
