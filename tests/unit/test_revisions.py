"""Corrections: a higher revision of an observation retracts the earlier value from its hour, its day
and every reporting period it counted in, then counts the new one — exactly, whatever the arrival
order. A state read from Redis must first load the observations of the earlier value's reporting year
(to recompute a min, max or last); a period a correction empties is deleted and tombstoned."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from stream_app.domain.aggregates import Agg, hour_of, period_frequencies, series_of
from stream_app.domain.calendar import period_of
from stream_app.domain.catalogue import Catalogue, Indicator
from stream_app.domain.clock import local_date
from stream_app.domain.consolidation import contributions
from stream_app.domain.entity import (
    Context,
    EntityKey,
    EntityState,
    Outcome,
    Seen,
    SeriesPeriod,
    StepResult,
    Touched,
    apply,
    needed_periods,
)
from stream_app.domain.model import Observation, Quality
from stream_app.state.entity_hash import (
    changed_fields,
    encode_seen,
    offset_field,
    period_updates,
    removed_fields,
)
from stream_app.state.store import EntityReads
from tests.unit.core_support import HOUR_MS, SOURCE, Core, local_ms, no_rules, observation, period

ACCIDENTS = EntityKey("TRF.ACCIDENTS", "01", None)  # daily, Decree 09 calendar, sum
NOW = local_ms(2024, 11, 20)
AT = local_ms(2024, 11, 10, 8)  # periods 2024-11-10, 2024-11, 2024-Q4, 2024-H2, 2024
LABELS = ("2024-11-10", "2024-11", "2024-Q4", "2024-H2", "2024")


def _aggregates(core: Core, at: int = AT, labels: tuple[str, ...] = LABELS) -> list[Agg | None]:
    """The hour, the day and every period of ``at``."""
    state = core.state
    return [
        state.hours.get(("", hour_of(at))),
        state.days.get(("", local_date(at).toordinal())),
        *(state.periods.get(("", label)) for label in labels),
    ]


def _three(catalogue: Catalogue) -> Core:
    core = Core(catalogue, ACCIDENTS, now=NOW)
    core.apply(observation("a", 0.1, AT))
    core.apply(observation("b", 0.2, AT + 10 * 60_000))
    core.apply(observation("c", 0.7, AT + 20 * 60_000))
    return core


def test_a_revision_replaces_the_value_in_the_hour_the_day_and_every_period(catalogue: Catalogue) -> None:
    core = _three(catalogue)
    result = core.apply(observation("b", 0.3, AT + 10 * 60_000, revision=1))
    assert result == StepResult(Outcome.CORRECTED, late=True)
    for agg in _aggregates(core):
        assert agg is not None
        assert (agg.count, agg.total, agg.low, agg.high) == (3, Decimal("1.1"), 0.1, 0.7)
        assert (agg.last_id, agg.last_value) == ("c", 0.7)
    assert core.state.seen["MPS|b"] == Seen(1, AT + 10 * 60_000, 0.3, "FINAL", "", earlier=(0,))
    assert core.touched.revision == 1


def test_retracting_the_extremes_and_the_last_recomputes_them(catalogue: Catalogue) -> None:
    core = _three(catalogue)
    # the maximum (and the last) goes below the minimum
    core.apply(observation("c", 0.05, AT + 20 * 60_000, revision=1))
    for agg in _aggregates(core):
        assert agg is not None
        assert (agg.count, agg.total, agg.low, agg.high) == (3, Decimal("0.35"), 0.05, 0.2)
        assert (agg.last_id, agg.last_value) == ("c", 0.05)
    # the last moves before every other value: "b" becomes the last
    core.apply(observation("c", 0.05, AT - 60_000, revision=2))
    for agg in _aggregates(core)[1:]:  # the hour before AT is another hour
        assert agg is not None
        assert (agg.count, agg.total, agg.low, agg.high) == (3, Decimal("0.35"), 0.05, 0.2)
        assert (agg.last_time, agg.last_id, agg.last_value) == (AT + 10 * 60_000, "b", 0.2)
    hour = core.state.hours[("", hour_of(AT))]
    assert (hour.count, hour.total, hour.low, hour.high) == (2, Decimal("0.3"), 0.1, 0.2)
    assert core.state.hours[("", hour_of(AT) - 1)] == Agg.of(0.05, AT - 60_000, "c", "FINAL", NOW)
    # the minimum goes up
    core.apply(observation("a", 9.0, AT, revision=1))
    month = period(core.state, "2024-11")
    assert (month.count, month.total, month.low, month.high) == (3, Decimal("9.25"), 0.05, 9.0)


def test_a_revision_changes_the_quality_counts(catalogue: Catalogue) -> None:
    core = Core(catalogue, ACCIDENTS, now=NOW)
    core.apply(observation("a", 1.0, AT, quality=Quality.TEST))
    core.apply(observation("b", 2.0, AT + 1))
    assert period(core.state, "2024-11").quality == "PROVISIONAL"
    core.apply(observation("a", 1.0, AT, revision=1))
    month = period(core.state, "2024-11")
    assert (month.n_final, month.n_test, month.quality) == (2, 0, "FINAL")


def test_a_revision_that_moves_the_event_time_to_another_period(catalogue: Catalogue) -> None:
    """14th 23:00 → 15th 01:00 locally: another day and Decree 09 month, the same quarter."""
    on_14th, on_15th = local_ms(2024, 11, 14, 23), local_ms(2024, 11, 15, 1)
    core = Core(catalogue, ACCIDENTS, now=local_ms(2024, 11, 15, 2))
    core.apply(observation("x", 4.0, on_14th))
    core.batch()
    result = core.apply(observation("x", 6.5, on_15th, revision=1))
    assert result.outcome is Outcome.CORRECTED
    state = core.state
    moved = Agg.of(6.5, on_15th, "x", "FINAL", core.now)
    assert state.periods == {
        ("", "2024-11-14"): None,
        ("", "2024-11"): None,
        ("", "2024-11-15"): moved,
        ("", "2024-12"): moved,
        ("", "2024-Q4"): moved,
        ("", "2024-H2"): moved,
        ("", "2024"): moved,
    }
    assert state.hours == {("", hour_of(on_15th)): moved}
    assert state.days == {("", local_date(on_15th).toordinal()): moved}
    assert {f"h::{hour_of(on_14th)}", f"d::{local_date(on_14th).toordinal()}"} <= set(removed_fields(state))
    # the emptied periods are deleted from the periods hash, tombstoned on the compacted topic and
    # withdrawn from the roll-ups
    updates = {name: agg for name, agg, _ in period_updates(state, catalogue.indicators["TRF.ACCIDENTS"])}
    assert (updates["|2024-11-14"], updates["|2024-11"]) == (None, None)
    assert updates["|2024-12"] == moved.encode()
    records = core.records()
    assert records["TRF.ACCIDENTS:01:-:2024-11-14"] is None
    fifteenth = records["TRF.ACCIDENTS:01:-:2024-11-15"]
    assert fifteenth is not None
    assert (fifteenth["count"], fifteenth["value"], fifteenth["revision"]) == (1, 6.5, 1)
    assert ("|2024-11-14", None) in contributions(state, core.touched)
    assert ("|2024-11", None) in contributions(state, core.touched)
    assert ("|2024-Q4", moved.encode()) in contributions(state, core.touched)


def test_a_revision_that_moves_a_value_to_another_series(catalogue: Catalogue) -> None:
    core = Core(catalogue, ACCIDENTS, now=NOW)
    core.apply(observation("x", 4.0, AT))
    core.apply(observation("y", 1.0, AT + 1))
    core.apply(observation("x", 4.0, AT, revision=1, breakdowns={"road": "highway"}))
    total, part = period(core.state, "2024-11"), period(core.state, "2024-11", "road=highway")
    assert (total.count, total.total, total.high) == (1, Decimal("1.0"), 1.0)
    assert (part.count, part.total, part.last_id) == (1, Decimal("4.0"), "x")
    assert core.state.seen["MPS|x"].series == "road=highway"


def test_moving_the_latest_value_to_a_breakdown_series_gives_back_the_previous_latest(
    catalogue: Catalogue,
) -> None:
    core = Core(catalogue, ACCIDENTS, now=NOW)
    core.apply(observation("a", 1.0, AT))
    core.apply(observation("b", 2.0, AT + HOUR_MS))
    assert (core.state.latest_value, core.state.latest_event_time) == (2.0, AT + HOUR_MS)
    core.apply(observation("b", 2.0, AT + HOUR_MS, revision=1, breakdowns={"road": "highway"}))
    assert (core.state.latest_value, core.state.latest_event_time) == (1.0, AT)


# --- a state read from Redis: the range of the earlier value must be loaded first -------------


@dataclass
class Stored:
    """What Redis holds for one entity once a complete state is committed (simplified)."""

    indicator: Indicator
    state: dict[bytes, bytes] = field(default_factory=dict)
    seen: dict[str, Seen] = field(default_factory=dict)
    periods: dict[SeriesPeriod, Agg] = field(default_factory=dict)

    @staticmethod
    def of(state: EntityState, indicator: Indicator, offset: int) -> Stored:
        fields = {k.encode(): v.encode() for k, v in changed_fields(state).items()}
        fields[offset_field(SOURCE).encode()] = str(offset).encode()
        periods = {k: v for k, v in state.periods.items() if v is not None}
        return Stored(indicator, fields, dict(state.seen), periods)

    def reads(self, batch: list[Observation]) -> EntityReads:
        """The first read of a batch: the state hash, the batch's ids, the periods they count in."""
        reads = EntityReads(state=dict(self.state))
        for obs in batch:
            known = self.seen.get(obs.seen_key)
            reads.seen[obs.seen_key] = None if known is None else encode_seen(known).encode()
            for key in needed_periods(self.indicator, obs):
                reads.periods[key] = self._period(key)
        return reads

    def load(self, reads: EntityReads, missing: set[tuple[str, int | str, int | str]]) -> None:
        """What the agent reads when a pass reports ``missing``."""
        for kind, first, second in missing:
            if kind == "period":
                reads.periods[(str(first), str(second))] = self._period((str(first), str(second)))
            else:
                assert isinstance(first, int)
                assert isinstance(second, int)
                for observation_id, seen in self.seen.items():
                    if first <= seen.hour < second:
                        reads.seen[observation_id] = encode_seen(seen).encode()
                reads.ranges.append((first, second))

    def _period(self, key: SeriesPeriod) -> bytes | None:
        agg = self.periods.get(key)
        return None if agg is None else agg.encode().encode()


def test_a_revision_of_a_read_state_needs_the_earlier_values_year(catalogue: Catalogue) -> None:
    complete = _three(catalogue)
    indicator = catalogue.indicators["TRF.ACCIDENTS"]
    stored = Stored.of(complete.state, indicator, offset=3)
    correction = observation("c", 0.05, AT + 20 * 60_000, revision=1)
    ctx = Context(catalogue, no_rules(catalogue), NOW)

    reads = stored.reads([correction])
    first = reads.build()
    before = (dict(first.hours), dict(first.days), dict(first.periods))
    result = apply(first, correction, source=SOURCE, offset=4, ctx=ctx, touched=Touched())
    assert result == StepResult(Outcome.PENDING)
    year = period_of("annual", "decree09", AT)  # 15/12/2023 .. 14/12/2024
    assert first.missing == {("range", hour_of(year.start_ms), hour_of(year.end_ms - 1) + 1)}
    assert (first.hours, first.days, first.periods) == before, "nothing retracted before the range is read"
    assert first.seen == {"MPS|c": Seen(0, AT + 20 * 60_000, 0.7, "FINAL", "")}

    stored.load(reads, first.missing)
    second = reads.build()
    assert set(second.seen) == {"MPS|a", "MPS|b", "MPS|c"}
    result = apply(second, correction, source=SOURCE, offset=4, ctx=ctx, touched=Touched())
    assert result == StepResult(Outcome.CORRECTED, late=True)
    assert second.missing == set()
    complete.apply(correction)
    assert {k: v for k, v in second.periods.items() if k[1] in LABELS} == {
        k: v for k, v in complete.state.periods.items() if k[1] in LABELS
    }
    assert second.hours == complete.state.hours
    assert second.days == complete.state.days
    assert period(second, "2024-11").high == 0.2, "recomputed from the values read"


def test_a_read_state_asks_for_the_periods_of_the_earlier_event_time(catalogue: Catalogue) -> None:
    complete = Core(catalogue, ACCIDENTS, now=NOW)
    complete.apply(observation("x", 4.0, local_ms(2024, 11, 14, 23)))
    stored = Stored.of(complete.state, catalogue.indicators["TRF.ACCIDENTS"], offset=1)
    moved = observation("x", 6.5, local_ms(2024, 11, 15, 1), revision=1)
    reads = stored.reads([moved])  # the periods of the new event time only
    state = reads.build()
    ctx = Context(catalogue, no_rules(catalogue), NOW)
    assert apply(state, moved, source=SOURCE, offset=2, ctx=ctx).outcome is Outcome.PENDING
    periods = {(s, lb) for kind, s, lb in state.missing if kind == "period"}
    assert periods == {
        ("", "2024-11-14"),
        ("", "2024-11"),
        ("", "2023-11-14"),
        ("", "2023-11"),
    }
    stored.load(reads, state.missing)
    again = reads.build()
    assert apply(again, moved, source=SOURCE, offset=2, ctx=ctx).outcome is not Outcome.PENDING
    assert (again.periods[("", "2024-11-14")], again.periods[("", "2024-11")]) == (None, None)


# --- property: any arrival order gives the aggregates of the final values ----------------------


def _observations(rng: random.Random, indicator: str) -> tuple[list[Observation], dict[str, Observation]]:
    """Observations with revisions, duplicates and redeliveries in shuffled order, and the final
    revision of each id (what the aggregates must hold)."""
    start, span = local_ms(2024, 11, 1), 110 * 24 * HOUR_MS  # across Decree 09's year end (15/12)
    values = [0.1, 0.2, 0.3, 0.7, 1.5, 2.25, 1e-3, 100.0, 0.0, -0.0]

    def make(observation_id: str, revision: int) -> Observation:
        value = rng.choice(values) if rng.random() < 0.7 else round(rng.uniform(-50, 500), rng.randint(0, 6))
        return observation(
            observation_id,
            value,
            start + rng.randrange(span),
            indicator=indicator,
            revision=revision,
            quality=rng.choice(list(Quality)),
            breakdowns={"road": "highway"} if rng.random() < 0.2 else None,
        )

    firsts = [make(f"obs-{i}", 0) for i in range(250)]
    revisions = []
    for _ in range(120):
        base = rng.choice(firsts)
        revisions.append(make(base.observation_id, rng.randint(1, 4)))
    # a revision number reused with the same value: the same record delivered twice
    everything = firsts + revisions
    arrivals = everything + [rng.choice(everything) for _ in range(80)]
    rng.shuffle(arrivals)
    final: dict[str, Observation] = {}
    for obs in everything:
        known = final.get(obs.observation_id)
        if known is None or obs.revision > known.revision:
            final[obs.observation_id] = obs
    # two different records with the same id and revision: the first to arrive is kept
    first_seen: dict[tuple[str, int], Observation] = {}
    for obs in arrivals:
        first_seen.setdefault((obs.observation_id, obs.revision), obs)
    final = {o: first_seen[(o, obs.revision)] for o, obs in final.items()}
    return arrivals, final


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("indicator", ["TRF.ACCIDENTS", "FIN.BUDGET_REVENUE"])
def test_any_arrival_order_gives_the_aggregates_of_the_final_revisions(
    catalogue: Catalogue, seed: int, indicator: str
) -> None:
    rng = random.Random(seed)
    arrivals, final = _observations(rng, indicator)
    ind = catalogue.indicators[indicator]
    core = Core(catalogue, EntityKey(indicator, "01", None), now=local_ms(2025, 3, 1))
    outcomes = [core.apply(obs) for obs in arrivals]
    assert not any(r.outcome in (Outcome.PENDING, Outcome.BEYOND_RETENTION) for r in outcomes)
    assert sum(r.outcome is Outcome.CORRECTED for r in outcomes) > 0
    assert sum(r.outcome is Outcome.DUPLICATE for r in outcomes) > 0
    assert sum(r.outcome is Outcome.STALE for r in outcomes) > 0

    # independently: group the final values by (series, period label) and aggregate them plainly
    expected: dict[SeriesPeriod, list[Observation]] = {}
    for obs in final.values():
        for frequency in period_frequencies(ind.frequency):
            label = period_of(frequency, ind.calendar, obs.event_time, ind.deadline_day).label
            expected.setdefault((series_of(obs.breakdowns), label), []).append(obs)
    got = {k: v for k, v in core.state.periods.items() if v is not None}
    assert set(got) == set(expected)
    for key, members in expected.items():
        agg = got[key]
        last = max(members, key=lambda o: (o.event_time, o.observation_id))
        want = (
            len(members),
            sum((Decimal(repr(o.value)) for o in members), Decimal(0)),
            min(o.value for o in members),
            max(o.value for o in members),
            (last.event_time, last.observation_id, last.value),
            [sum(o.quality is q for o in members) for q in Quality],
        )
        have = (
            agg.count,
            agg.total,
            agg.low,
            agg.high,
            (agg.last_time, agg.last_id, agg.last_value),
            [agg.n_final, agg.n_provisional, agg.n_test],
        )
        assert have == want, key
    # the days within their 32-day retention, likewise
    newest_day = local_date(max(o.event_time for o in arrivals)).toordinal()
    days: dict[tuple[str, int], list[Observation]] = {}
    for obs in final.values():
        day = local_date(obs.event_time).toordinal()
        if day >= newest_day - 32:
            days.setdefault((series_of(obs.breakdowns), day), []).append(obs)
    assert set(core.state.days) == set(days)
    for day_key, members in days.items():
        agg = core.state.days[day_key]
        assert (agg.count, agg.total) == (
            len(members),
            sum((Decimal(repr(o.value)) for o in members), Decimal(0)),
        )
    # and the latest value of the entity's own series
    own = [o for o in final.values() if not o.breakdowns]
    latest = max(own, key=lambda o: (o.event_time, o.observation_id))
    assert (core.state.latest_value, core.state.latest_event_time) == (latest.value, latest.event_time)
