"""The stateful step's batch logic without Redis or Kafka: the real Consolidator over the in-memory
state layer (which interprets the commit script's own arguments) and the real Publisher over a
recording producer. What only integration tests reached before: multi-pass reads, the pass limit, an
unreadable entity, a replayed batch, and a tick closing due periods."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from redis.exceptions import ResponseError

from stream_app.agents import alert_bridge, consolidate
from stream_app.agents.consolidate import Consolidator
from stream_app.config.blueprint import Blueprint, load_blueprint
from stream_app.domain.aggregates import Agg
from stream_app.domain.model import Observation, Rejection
from stream_app.domain.reasons import Reason
from stream_app.domain.validation import Limits, observation_from_record, observation_record, validate
from stream_app.kafka.partitioning import partition_for
from stream_app.kafka.publisher import PUBLISH_OBSERVERS, Publisher, received_at
from stream_app.ops import metrics
from stream_app.settings import Settings
from stream_app.state.memory import MemoryStateStore
from stream_app.wire import codecs
from tests.unit.core_support import HOUR_MS as HOUR
from tests.unit.core_support import local_ms, observation
from tests.unit.producers import AckingProducer, ProducerSender

pytestmark = pytest.mark.asyncio

SETTINGS = Settings.model_construct(retry_initial_s=0.001, retry_max_s=0.002)
NOW_MS = local_ms(2025, 6, 20, 12)  # the tests' wall clock is not used: every time here is in the past


@dataclass
class _Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float = 0.0
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    acked: bool = False


@dataclass
class _Event:
    message: _Message


class Rig:
    """One consolidator, its in-memory state and what it published."""

    def __init__(self) -> None:
        self.blueprint: Blueprint = load_blueprint(SETTINGS)
        self.store = MemoryStateStore()
        self.producer = AckingProducer()
        dead_letter = self.blueprint.schemas.latest("dead_letter")
        publisher = Publisher(ProducerSender(self.producer), SETTINGS, dead_letter)
        self.consolidator = Consolidator(self.blueprint, self.store, self.blueprint.rulebook, publisher)
        internal = self.blueprint.topic_by_role("repartition")
        self.internal, self.partitions = internal.name, internal.partitions
        self.offsets: dict[int, int] = {}

    def event(
        self, obs: Observation, *, offset: int | None = None, received: int | None = None, bulk: bool = False
    ) -> _Event:
        partition = partition_for(obs.entity, self.partitions)
        if offset is None:
            offset = self.offsets.get(partition, -1) + 1
        self.offsets[partition] = max(offset, self.offsets.get(partition, -1))
        value = codecs.encode(self.blueprint.schemas.latest("observation"), observation_record(obs))
        headers = list(received_at(received, bulk=bulk)) if received is not None else []
        return _Event(_Message(self.internal, partition, offset, obs.entity.encode(), value, headers=headers))

    def tick(self, partition: int, now_ms: int) -> _Event:
        offset = self.offsets.get(partition, -1) + 1
        self.offsets[partition] = offset
        value = codecs.encode(self.blueprint.schemas.latest("tick"), {"partition": partition, "now": now_ms})
        return _Event(_Message(self.internal, partition, offset, b"", value))

    async def run(self, *events: _Event) -> None:
        # _Event carries only what the Consolidator reads of Faust's (nominal, abstract) EventT
        await self.consolidator.process(list(events))

    def period(self, entity: str, label: str, series: str = "") -> Agg | None:
        stored = self.store.hashes.get(self.store.keys.entity(entity, "periods"), {})
        raw = stored.get(f"{series}|{label}")
        return None if raw is None else Agg.decode(raw)

    def sent_to(self, topic: str) -> list[tuple[bytes | None, bytes | None]]:
        return [(key, value) for t, key, value in self.producer.sent if t == topic]

    def dead_letters(self) -> list[dict[str, Any]]:
        topic = self.blueprint.topic_by_role("consolidate_dead_letter").name
        schemas = self.blueprint.schemas
        return [codecs.decode(schemas, "dead_letter", value or b"") for _, value in self.sent_to(topic)]


def _deaths(
    observation_id: str, value: float, day: int, *, revision: int = 0, region: str = "01"
) -> Observation:
    return observation(
        observation_id, value, local_ms(2025, 5, day, 8), indicator="TRF.ACCIDENTS", region=region,
        revision=revision,
    )  # fmt: skip


async def test_a_batch_is_read_once_applied_and_committed_once() -> None:
    rig = Rig()
    await rig.run(*(rig.event(_deaths(f"hn-{d}", float(d), d)) for d in (1, 2, 3)))
    assert rig.store.round_trips == 2  # one pipelined read, one pipelined commit
    month = rig.period("TRF.ACCIDENTS|01|-", "2025-05")
    assert month is not None
    assert (month.count, float(month.total)) == (3, 6.0)
    consolidated = rig.blueprint.topic_by_role("consolidated").name
    assert rig.sent_to(consolidated), "the entity's consolidated records are published"
    assert rig.dead_letters() == []


async def test_a_replayed_batch_changes_nothing() -> None:
    rig = Rig()
    events = [rig.event(_deaths(f"hn-{d}", float(d), d)) for d in (1, 2, 3)]
    await rig.run(*events)

    def state() -> dict[str, dict[str, str]]:  # the ledger follows one batch behind: not the state
        return {k: dict(v) for k, v in rig.store.hashes.items() if ":ledger:" not in k}

    before = state()
    await rig.run(*events)  # redelivered after a crash between commit and the Kafka offset commit
    assert state() == before
    month = rig.period("TRF.ACCIDENTS|01|-", "2025-05")
    assert month is not None
    assert month.count == 3


async def test_a_correction_of_a_stored_value_reads_its_period_in_a_second_pass() -> None:
    rig = Rig()
    await rig.run(rig.event(_deaths("hn-1", 9.0, 1)), rig.event(_deaths("hn-2", 4.0, 2)))
    rig.store.round_trips = 0
    # revision 1 of hn-1 retracts the period's maximum: the step must read the period's other values
    await rig.run(rig.event(_deaths("hn-1", 1.0, 1, revision=1)))
    month = rig.period("TRF.ACCIDENTS|01|-", "2025-05")
    assert month is not None
    assert (month.count, float(month.total), month.high) == (2, 5.0, 4.0)
    assert rig.store.round_trips >= 3, "a first read, at least one more pass, then the commit"
    assert rig.dead_letters() == []


async def test_an_entity_still_needing_reads_after_the_pass_limit_is_dead_lettered_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = Rig()
    await rig.run(rig.event(_deaths("hn-1", 9.0, 1)), rig.event(_deaths("hn-2", 4.0, 2)))
    monkeypatch.setattr(consolidate, "MAX_READ_PASSES", 1)
    await rig.run(
        rig.event(_deaths("hn-1", 1.0, 1, revision=1)),  # needs a second pass: refused
        rig.event(_deaths("hcm-1", 7.0, 1, region="79")),  # another entity: goes on
    )
    letters = rig.dead_letters()
    assert [(d["reason"], d["stage"]) for d in letters] == [("reads_exhausted", "consolidate")]
    hanoi = rig.period("TRF.ACCIDENTS|01|-", "2025-05")
    assert hanoi is not None
    assert (hanoi.count, hanoi.high) == (2, 9.0), "nothing of the refused correction was applied"
    hcm = rig.period("TRF.ACCIDENTS|79|-", "2025-05")
    assert hcm is not None
    assert hcm.count == 1


async def test_an_unreadable_entity_is_dead_lettered_and_the_others_go_on() -> None:
    rig = Rig()
    rig.store.broken["TRF.ACCIDENTS|01|-"] = ResponseError("WRONGTYPE Operation against a key")
    await rig.run(rig.event(_deaths("hn-1", 1.0, 1)), rig.event(_deaths("hcm-1", 7.0, 1, region="79")))
    assert [d["reason"] for d in rig.dead_letters()] == ["state_unreadable"]
    assert rig.period("TRF.ACCIDENTS|01|-", "2025-05") is None
    assert rig.period("TRF.ACCIDENTS|79|-", "2025-05") is not None


async def test_a_tick_past_the_deadline_closes_the_due_period_and_leaves_the_registry() -> None:
    rig = Rig()
    # a value of the last hour: its day is still open (the step's clock is the wall clock)
    first = observation("hn-now", 3.0, int(time.time() * 1000) - 3_600_000, indicator="TRF.ACCIDENTS")
    await rig.run(rig.event(first))
    entity = first.entity
    partition = partition_for(entity, rig.partitions)
    due_key = rig.store.keys.due(partition)
    deadline = rig.store.zsets[due_key][entity]
    assert await rig.store.due_entities(partition, int(deadline) - 1) == []
    assert await rig.store.due_entities(partition, int(deadline)) == [entity]
    consolidated = rig.blueprint.topic_by_role("consolidated").name
    before = len(rig.sent_to(consolidated))
    await rig.run(rig.tick(partition, int(deadline) + 1))
    closes = [
        codecs.decode(rig.blueprint.schemas, "consolidated", value or b"")
        for _, value in rig.sent_to(consolidated)[before:]
        if value
    ]
    assert any(r["kind"] == "PERIOD_CLOSE" for r in closes), closes
    remaining = rig.store.zsets[due_key].get(entity)
    assert remaining is None or remaining > deadline, "the closed period is no longer due"


async def test_the_in_memory_layer_reads_back_what_the_read_side_decodes() -> None:
    rig = Rig()
    obs = _deaths("hn-1", 3.0, 1)
    await rig.run(rig.event(obs))
    state = await rig.store.entity_state(obs.entity)
    assert state is not None
    assert state.latest_value == 3.0
    periods = await rig.store.entity_periods(obs.entity)
    assert ("", "2025-05") in periods
    roundtrip = observation_from_record(observation_record(obs))
    assert roundtrip.entity == obs.entity


async def test_history_republishes_a_closed_period_once_it_settles_and_live_records_at_once() -> None:
    """Bulk records (history) changing closed periods over two batches: nothing of those periods is
    published until they settle, then each is published once (PERIOD_CLOSE, with both batches'
    values, and its roll-up contribution); a live late record publishes its change at once."""
    rig = Rig()
    consolidated = rig.blueprint.topic_by_role("consolidated").name
    rollups = rig.blueprint.topic_by_role("rollup").name
    received = int(time.time() * 1000) - 60_000
    hold = round(SETTINGS.bulk_settle_s * 1000)

    def published(before: int) -> list[dict[str, Any]]:
        return [
            codecs.decode(rig.blueprint.schemas, "consolidated", value or b"")
            for _, value in rig.sent_to(consolidated)[before:]
            if value
        ]

    await rig.run(*(rig.event(_deaths(f"h-{d}", 1.0, d), received=received, bulk=True) for d in (1, 2, 3)))
    await rig.run(
        *(rig.event(_deaths(f"h-{d}", 1.0, d), received=received + 1000, bulk=True) for d in (4, 5))
    )
    assert published(0) == [], "closed periods wait for the history to settle"
    assert rig.sent_to(rollups) == []
    entity = _deaths("x", 0, 1).entity
    partition = partition_for(entity, rig.partitions)
    await rig.run(rig.tick(partition, received + hold - 1))
    assert published(0) == [], "not before the hold ends"
    await rig.run(rig.tick(partition, received + 1000 + hold + 1))  # the second batch's too
    closes = published(0)
    assert {r["kind"] for r in closes} == {"PERIOD_CLOSE"}
    month = [r for r in closes if r["key"].endswith(":2025-05")]
    assert len(month) == 1
    assert (month[0]["count"], month[0]["sum"]) == (5, 5.0)
    assert len({r["key"] for r in closes}) == len(closes), "each period once"
    assert rig.sent_to(rollups), "the settled periods' contributions"
    before = len(rig.sent_to(consolidated))
    await rig.run(rig.event(_deaths("live-6", 2.0, 6), received=received + hold + 3000))
    live = published(before)
    assert {r["kind"] for r in live} == {"LATE_UPDATE"}, [(r["key"], r["kind"]) for r in live]
    assert [r["count"] for r in live if r["key"].endswith(":2025-05")] == [6]


async def test_a_settling_period_that_retention_forgets_is_published_before_not_as_a_tombstone() -> None:
    """History loaded oldest first: a 2022 value settles, then a 2024 value moves the entity's
    retention past 2022 before any tick. The 2022 periods are published with their value as the
    2024 record is applied (the commit forgets them), never as tombstones."""
    rig = Rig()
    consolidated = rig.blueprint.topic_by_role("consolidated").name
    rollups = rig.blueprint.topic_by_role("rollup").name
    received = int(time.time() * 1000) - 60_000
    old = observation("h-2022", 4.0, local_ms(2022, 5, 10, 8), indicator="TRF.ACCIDENTS")
    new = observation("h-2024", 6.0, local_ms(2024, 5, 10, 8), indicator="TRF.ACCIDENTS")
    await rig.run(rig.event(old, received=received, bulk=True))
    await rig.run(rig.event(new, received=received + 100, bulk=True))
    partition = partition_for(old.entity, rig.partitions)
    await rig.run(rig.tick(partition, received + 100 + round(SETTINGS.bulk_settle_s * 1000) + 1))
    sent = rig.sent_to(consolidated)
    assert all(value is not None for _, value in sent), "no tombstone"
    records = {
        r["key"]: r for r in (codecs.decode(rig.blueprint.schemas, "consolidated", v or b"") for _, v in sent)
    }
    assert records["TRF.ACCIDENTS:01:-:2022-05"]["count"] == 1
    assert records["TRF.ACCIDENTS:01:-:2022-05"]["sum"] == 4.0
    assert records["TRF.ACCIDENTS:01:-:2024-05"]["sum"] == 6.0
    contributed = [
        item
        for _, value in rig.sent_to(rollups)
        for item in codecs.decode(rig.blueprint.schemas, "contribution", value or b"")["items"]
    ]
    assert all(item["aggregate"] is not None for item in contributed)
    assert any(item["period"] == "|2022-05" for item in contributed)


def _directive_event(rig: Rig, entity: str, directive: dict[str, Any], received: int) -> _Event:
    partition = partition_for(entity, rig.partitions)
    offset = rig.offsets.get(partition, -1) + 1
    rig.offsets[partition] = offset
    value = codecs.encode(rig.blueprint.schemas.latest("directive"), directive)
    headers = list(received_at(received))
    return _Event(_Message(rig.internal, partition, offset, entity.encode(), value, headers=headers))


def _grid_output(reporter: str, day: tuple[int, int], *, co_reporter: bool = False) -> Observation:
    """A validated national electricity output figure of a local day of 2024 (validation marks a
    reporter that is not the authority then as a co-reporter)."""
    figure = observation(f"{reporter.lower()}-{day[0]}-{day[1]}", 900.0, local_ms(2024, *day, 12),
                         indicator="PWR.OUTPUT_GWH", region="VN")  # fmt: skip
    breakdowns = {"reporter": reporter} if co_reporter else {}
    return dataclasses.replace(figure, reporter=reporter, breakdowns=breakdowns)


async def test_history_of_the_earlier_authority_neither_silences_the_absence_nor_takes_the_directives() -> (
    None
):
    """Issue 26, authority follows time: NSMO's live grid figures stop; EVN's history of June 2024 (EVN
    was the authority until 2024-07-01) arrives through the bulk topic meanwhile. The absence alert
    still fires 36 h after NSMO's last figure, names NSMO, and the center's acknowledgement is forwarded
    to NSMO's directives topic, not EVN's."""
    rig = Rig()
    last_live = local_ms(2024, 7, 15, 1)
    for day in range(10, 15):
        await rig.run(rig.event(_grid_output("NSMO", (7, day)), received=local_ms(2024, 7, day + 1, 1)))
    history = [_grid_output("EVN", (6, day)) for day in range(1, 31)]
    await rig.run(*(rig.event(obs, received=last_live + 2 * HOUR, bulk=True) for obs in history))
    entity = history[0].entity
    partition = partition_for(entity, rig.partitions)
    alerts_topic = rig.blueprint.topic_by_role("alerts").name

    def alerts() -> list[dict[str, Any]]:
        return [codecs.decode(rig.blueprint.schemas, "alert", v or b"") for _, v in rig.sent_to(alerts_topic)]

    await rig.run(rig.tick(partition, last_live + 36 * HOUR - 60_000))
    assert alerts() == [], "not silent for 36 h yet"
    await rig.run(rig.tick(partition, last_live + 36 * HOUR + 60_000))
    fired = alerts()
    assert [(a["rule_kind"], a["transition"], a["reporter"]) for a in fired] == [
        ("absence", "FIRING", "NSMO")
    ]

    directive = {
        "directive_id": "dir-grid", "alert_key": fired[0]["alert_key"], "alert_id": fired[0]["alert_id"],
        "reporter": "NSMO", "action": "ACKNOWLEDGE", "actor": "truc-ban-1", "assignee": None,
        "comment": None, "issued_at": last_live + 37 * HOUR, "due_at": None,
    }  # fmt: skip
    await rig.run(_directive_event(rig, entity, directive, last_live + 37 * HOUR))
    assert [a["event_type"] for a in alerts()] == ["TRANSITION", "ACKNOWLEDGE"]
    assert len(rig.sent_to(rig.blueprint.directives_topic("NSMO").name)) == 1
    assert rig.sent_to(rig.blueprint.directives_topic("EVN").name) == []
    assert rig.dead_letters() == []


def _long_bien(observation_id: str, metres: float, minute: int) -> Observation:
    at = NOW_MS + minute * 60_000
    return Observation(observation_id, 0, "MAE", "HYD.WATER_LEVEL", "01", "HN-LONGBIEN", metres, "m", at, at)


async def test_a_directive_about_an_earlier_occurrence_is_dead_lettered_stale_and_changes_nothing() -> None:
    """Issue 26: the flood alarm at Long Biên fired, resolved and fired again; the center's
    acknowledgement carrying the first occurrence's id goes to the directives' dead letters as
    ``stale_alert``, no change is published and the ministry is told nothing."""
    rig = Rig()
    readings = [_long_bien("lb-1", 10.0, 1), _long_bien("lb-2", 8.5, 2), _long_bien("lb-3", 10.2, 3)]
    await rig.run(*(rig.event(r, received=NOW_MS + (i + 1) * 60_000) for i, r in enumerate(readings)))
    alerts_topic = rig.blueprint.topic_by_role("alerts").name
    key = "levels:HYD.WATER_LEVEL|HYD.WATER_LEVEL|01|HN-LONGBIEN"

    def flood() -> list[dict[str, Any]]:
        decoded = [
            codecs.decode(rig.blueprint.schemas, "alert", v or b"") for _, v in rig.sent_to(alerts_topic)
        ]
        return [a for a in decoded if a["alert_key"] == key]

    assert [a["transition"] for a in flood()] == ["FIRING", "RESOLVED", "FIRING"]
    first = flood()[0]
    directive = {
        "directive_id": "dir-stale", "alert_key": key, "alert_id": first["alert_id"], "reporter": "MAE",
        "action": "ACKNOWLEDGE", "actor": "truc-ban-1", "assignee": None, "comment": None,
        "issued_at": NOW_MS + 10 * 60_000, "due_at": None,
    }  # fmt: skip
    await rig.run(_directive_event(rig, readings[0].entity, directive, NOW_MS + 10 * 60_000))
    dead_topic = rig.blueprint.topic_by_role("directives_dead_letter").name
    dead = [codecs.decode(rig.blueprint.schemas, "dead_letter", v or b"") for _, v in rig.sent_to(dead_topic)]
    assert [d["reason"] for d in dead] == ["stale_alert"]
    assert [a["event_type"] for a in flood()] == ["TRANSITION"] * 3
    assert rig.sent_to(rig.blueprint.directives_topic("MAE").name) == []


async def test_published_alert_transitions_are_counted_from_the_records_as_they_were_decoded() -> None:
    """The transition counter reads each published alert's record, not its bytes decoded again: the
    counts are those of the alerts decoded from what was sent (FIRING, RESOLVED, FIRING at Long Biên)."""
    rig = Rig()
    alerts_topic = rig.blueprint.topic_by_role("alerts").name
    counted: Counter[tuple[str, ...]] = Counter()

    def labels(*values: str) -> SimpleNamespace:
        return SimpleNamespace(inc=lambda: counted.update([values]))

    PUBLISH_OBSERVERS[alerts_topic] = alert_bridge.count_transition
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(metrics.ALERT_TRANSITIONS, "labels", labels)
            readings = [_long_bien("lb-1", 10.0, 1), _long_bien("lb-2", 8.5, 2), _long_bien("lb-3", 10.2, 3)]
            await rig.run(*(rig.event(r, received=NOW_MS + (i + 1) * 60_000) for i, r in enumerate(readings)))
    finally:
        del PUBLISH_OBSERVERS[alerts_topic]
    decoded = [codecs.decode(rig.blueprint.schemas, "alert", v or b"") for _, v in rig.sent_to(alerts_topic)]
    expected = Counter(
        (a.get("domain") or "unknown", a.get("rule_kind") or "levels", a["transition"])
        for a in decoded
        if a.get("event_type", "TRANSITION") == "TRANSITION"
    )
    assert sum(expected.values()) >= 3
    assert counted == expected


@pytest.mark.parametrize(("ahead_ms", "accepted"), [(60_000, True), (3_600_000, False)])
async def test_the_intake_and_the_stateful_step_bound_an_observations_time_alike(
    ahead_ms: int, accepted: bool
) -> None:
    """One time check (``validation.times_error``), one bound (STREAM_APP_MAX_FUTURE_SKEW_S, 5 min):
    an observation a minute ahead of the clock passes both stages, one an hour ahead is refused by
    both — by the intake as ``event_time_in_future``, by the stateful step (an internal record out of
    bounds: poison) as ``record_invalid``. Ticks keep their own, longer bound."""
    rig = Rig()
    now = int(time.time() * 1000)
    obs = observation("ahead-1", 3.0, now + ahead_ms)
    limits = Limits.from_settings(SETTINGS)
    assert limits.max_future_skew_ms == round(SETTINGS.max_future_skew_s * 1000)
    validated = validate(observation_record(obs), obs.reporter, rig.blueprint.catalogue, now, limits)
    await rig.run(rig.event(obs))
    letters = rig.dead_letters()
    if accepted:
        assert isinstance(validated, Observation)
        assert letters == []
    else:
        assert isinstance(validated, Rejection)
        assert validated.reason == Reason.EVENT_TIME_IN_FUTURE
        assert [(d["reason"], d["message"].split(":")[0]) for d in letters] == [
            (Reason.RECORD_INVALID, Reason.EVENT_TIME_IN_FUTURE)
        ]
    partition = partition_for(obs.entity, rig.partitions)
    await rig.run(rig.tick(partition, now + 24 * HOUR))  # a day ahead: within STREAM_APP_TICK_MAX_FUTURE_S
    assert rig.dead_letters() == letters
