"""Authority follows time (issue 26): only a record at least as new (by event time) as the entity's newest
authoritative one moves the feed's ``reporter`` and ``last_seen``; a bulk record (history) never makes
the feed look alive; a directive goes to the reporter responsible now.

The grid handover of the catalogue: EVN is the authority for PWR.OUTPUT_GWH before 2024-07-01, NSMO from
then on. NSMO's live feed goes silent while EVN's history of June 2024 is loaded: the absence alert must
still fire, name NSMO, and the center's directive about it must reach NSMO."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stream_app.domain.alerting import RuleBook, load_rules
from stream_app.domain.catalogue import Catalogue
from stream_app.domain.directives import Action, build
from stream_app.domain.entity import (
    Context,
    EntityKey,
    EntityState,
    StepResult,
    apply,
    direct,
    responsible_reporter,
    tick,
)
from stream_app.domain.model import CO_REPORTER_BREAKDOWN, Observation
from stream_app.state.entity_hash import changed_fields, decode_state
from tests.unit.core_support import HOUR_MS, local_ms

GRID = EntityKey("PWR.OUTPUT_GWH", "VN", None)
ABSENCE = "absence:PWR.OUTPUT_GWH"
ABSENCE_KEY = f"{ABSENCE}|{GRID}"
HOLD_MS = 5_000
MINUTE_MS = 60_000

RULES = """
[defaults]
late_report = false

[[rule]]
kind = "absence"
indicator = "PWR.OUTPUT_GWH"
interval_hours = 36
"""

# NSMO's live feed: the daily output of 10-14 July 2024, each figure an hour after its day ended.
LIVE_DAYS = range(10, 15)
LAST_LIVE_ARRIVAL = local_ms(2024, 7, 15, 1)
SILENT_FOR = 36 * HOUR_MS


@pytest.fixture
def rulebook(tmp_path: Path, catalogue: Catalogue) -> RuleBook:
    path = tmp_path / "rules.toml"
    path.write_text(RULES, encoding="utf-8")
    return load_rules(path, catalogue)


def grid_output(catalogue: Catalogue, reporter: str, event_time: int, *, revision: int = 0) -> Observation:
    """A validated daily output figure: a reporter not the authority at its event time is a co-reporter
    (validation adds the breakdown; the same rule, ``authority_at``)."""
    authority = catalogue.authority(GRID.indicator, GRID.region, event_time)
    breakdowns = {} if reporter == authority else {CO_REPORTER_BREAKDOWN: reporter}
    return Observation(
        observation_id=f"{reporter.lower()}-{event_time}",
        revision=revision,
        reporter=reporter,
        indicator=GRID.indicator,
        region=GRID.region,
        station=None,
        value=900.0,
        unit="GWh",
        event_time=event_time,
        report_time=event_time,
        breakdowns=breakdowns,
    )


@dataclass
class Grid:
    """The national grid output entity fed at increasing offsets: live, bulk (history), ticks, directives."""

    catalogue: Catalogue
    rulebook: RuleBook
    state: EntityState = field(default_factory=lambda: EntityState(complete=True))
    offset: int = 0

    def _next(self) -> int:
        self.offset += 1
        return self.offset

    def live(self, reporter: str, event_time: int, *, at: int, revision: int = 0) -> StepResult:
        ctx = Context(self.catalogue, self.rulebook, at)
        obs = grid_output(self.catalogue, reporter, event_time, revision=revision)
        return apply(self.state, obs, source="internal:0", offset=self._next(), ctx=ctx)

    def history(self, reporter: str, event_time: int, *, at: int) -> StepResult:
        ctx = Context(self.catalogue, self.rulebook, at, HOLD_MS, bulk=True)
        obs = grid_output(self.catalogue, reporter, event_time)
        return apply(self.state, obs, source="internal:0", offset=self._next(), ctx=ctx)

    def tick(self, at: int) -> StepResult:
        ctx = Context(self.catalogue, self.rulebook, at)
        return tick(self.state, GRID, source="internal:0", offset=self._next(), ctx=ctx)

    def acknowledge(self, alert_id: str, at: int) -> StepResult:
        directive = dict(
            build(
                directive_id="dir-grid",
                alert_key=ABSENCE_KEY,
                alert_id=alert_id,
                reporter="NSMO",
                action=Action.ACKNOWLEDGE,
                actor="truc-ban-1",
                assignee=None,
                comment=None,
                issued_at=at,
                token_id="",
                writer="",
            )
        )
        ctx = Context(self.catalogue, self.rulebook, at)
        return direct(self.state, GRID, directive, source="internal:0", offset=self._next(), ctx=ctx)


def _noon(month: int, day: int) -> int:
    return local_ms(2024, month, day, 12)


def _live_nsmo(grid: Grid) -> None:
    for day in LIVE_DAYS:
        grid.live("NSMO", _noon(7, day), at=local_ms(2024, 7, day + 1, 1))


def _june_history(grid: Grid, *, at: int) -> None:
    for day in range(1, 31):
        assert not grid.history("EVN", _noon(6, day), at=at + day * MINUTE_MS).skipped


@pytest.fixture
def grid(catalogue: Catalogue, rulebook: RuleBook) -> Grid:
    assert catalogue.authority(GRID.indicator, "VN", _noon(6, 30)) == "EVN"
    assert catalogue.authority(GRID.indicator, "VN", _noon(7, 1)) == "NSMO"
    return Grid(catalogue, rulebook)


def test_history_from_the_earlier_authority_during_a_live_silence_leaves_the_feed_silent(grid: Grid) -> None:
    _live_nsmo(grid)
    assert (grid.state.reporter, grid.state.last_seen) == ("NSMO", LAST_LIVE_ARRIVAL)

    _june_history(grid, at=LAST_LIVE_ARRIVAL + 2 * HOUR_MS)  # EVN's June, authoritative for June
    assert grid.state.seen.keys() >= {f"EVN|evn-{_noon(6, d)}" for d in range(1, 31)}, "the history counts"
    assert (grid.state.reporter, grid.state.last_seen) == ("NSMO", LAST_LIVE_ARRIVAL)
    assert grid.state.authority_event_time == _noon(7, 14)

    assert grid.tick(LAST_LIVE_ARRIVAL + SILENT_FOR - MINUTE_MS).alerts == ()
    fired = grid.tick(LAST_LIVE_ARRIVAL + SILENT_FOR + MINUTE_MS).alerts
    assert [(a["rule"], a["transition"], a["reporter"]) for a in fired] == [(ABSENCE, "FIRING", "NSMO")]
    assert fired[0]["value"] == pytest.approx(36 + 1 / 60), "hours since NSMO's last figure arrived"


def test_a_directive_goes_to_the_reporter_responsible_now(grid: Grid) -> None:
    _live_nsmo(grid)
    _june_history(grid, at=LAST_LIVE_ARRIVAL + 2 * HOUR_MS)
    fired = grid.tick(LAST_LIVE_ARRIVAL + SILENT_FOR + MINUTE_MS).alerts[0]
    acked = grid.acknowledge(fired["alert_id"], at=LAST_LIVE_ARRIVAL + SILENT_FOR + HOUR_MS)
    assert acked.addressee == "NSMO"
    assert acked.alerts[0]["acknowledged_by"] == "truc-ban-1"


def test_a_directive_goes_to_the_authority_now_even_when_only_history_was_heard(grid: Grid) -> None:
    """Only EVN's history of June has arrived: it names the feed (the alerts' reporter) but the
    reporter answerable today is NSMO, whom the center's directives must reach."""
    _june_history(grid, at=_noon(7, 2))
    assert grid.tick(_noon(7, 3)).alerts == ()  # the watch starts
    fired = grid.tick(_noon(7, 3) + SILENT_FOR + MINUTE_MS).alerts[0]
    assert fired["reporter"] == "EVN"
    acked = grid.acknowledge(fired["alert_id"], at=_noon(7, 5))
    assert acked.addressee == "NSMO"
    assert responsible_reporter(grid.catalogue, GRID, _noon(6, 3)) == "EVN", "in June, EVN answered"


def test_history_alone_never_makes_a_feed_alive(grid: Grid) -> None:
    _june_history(grid, at=_noon(7, 2))
    assert grid.state.known
    assert (grid.state.reporter, grid.state.last_seen) == ("EVN", -1), "named by its newest figure"
    # a feed heard only through history is watched from its first tick, like one stored before
    # last_seen existed: silence counts from there
    assert grid.tick(_noon(7, 3)).alerts == ()
    assert [a["transition"] for a in grid.tick(_noon(7, 3) + SILENT_FOR + MINUTE_MS).alerts] == ["FIRING"]


def test_a_late_live_figure_older_than_the_newest_moves_neither_reporter_nor_liveness(grid: Grid) -> None:
    _live_nsmo(grid)
    late = grid.live("EVN", _noon(6, 30), at=LAST_LIVE_ARRIVAL + HOUR_MS)  # EVN's last day, sent late
    assert not late.skipped
    assert (grid.state.reporter, grid.state.last_seen) == ("NSMO", LAST_LIVE_ARRIVAL)


def test_a_live_figure_at_least_as_new_moves_both_and_a_bulk_one_the_reporter_only(grid: Grid) -> None:
    _live_nsmo(grid)
    corrected_at = LAST_LIVE_ARRIVAL + HOUR_MS
    grid.live("NSMO", _noon(7, 14), at=corrected_at, revision=1)  # a correction of the newest figure
    assert (grid.state.last_seen, grid.state.authority_event_time) == (corrected_at, _noon(7, 14))
    grid.history("NSMO", _noon(7, 15), at=corrected_at + HOUR_MS)  # a newer figure, through a bulk topic
    assert (grid.state.reporter, grid.state.authority_event_time) == ("NSMO", _noon(7, 15))
    assert grid.state.last_seen == corrected_at, "bulk is never a sign of life"


def test_a_co_reporter_figure_is_no_authority_at_all(grid: Grid) -> None:
    _live_nsmo(grid)
    evn_now = grid_output(grid.catalogue, "EVN", _noon(7, 20))
    assert evn_now.breakdowns == {CO_REPORTER_BREAKDOWN: "EVN"}
    grid.live("EVN", _noon(7, 20), at=local_ms(2024, 7, 21, 1))
    assert (grid.state.reporter, grid.state.last_seen) == ("NSMO", LAST_LIVE_ARRIVAL)
    assert grid.state.authority_event_time == _noon(7, 14)


def test_a_state_written_before_authority_times_were_kept_loads_and_keeps_its_feed(grid: Grid) -> None:
    """An entity hash of the previous version has no ``authority_event_time``: its own series' latest
    value (authoritative by construction) stands for it, so history older than that moves nothing."""
    _live_nsmo(grid)
    fields = changed_fields(grid.state)
    assert fields["authority_event_time"] == str(_noon(7, 14))
    old = {k.encode(): v.encode() for k, v in fields.items() if k != "authority_event_time"}
    restored = decode_state(old)
    assert restored.authority_event_time == restored.latest_event_time == _noon(7, 14)
    assert (restored.reporter, restored.last_seen) == ("NSMO", LAST_LIVE_ARRIVAL)
    assert decode_state({}).authority_event_time == -1, "a new entity: the first figure moves it"

    later = Grid(grid.catalogue, grid.rulebook, restored)
    later.state.complete = True
    later.offset = grid.offset
    _june_history(later, at=LAST_LIVE_ARRIVAL + 2 * HOUR_MS)
    assert (later.state.reporter, later.state.last_seen) == ("NSMO", LAST_LIVE_ARRIVAL)
