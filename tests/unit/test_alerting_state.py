"""stream_app.domain.alerting RuleState: exact round trips through Redis hash fields, and evaluation that
does not depend on whether the state was stored and reloaded in between (crash recovery)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stream_app.domain.alerting import BucketHistory, RuleBook, RuleState, load_rules, on_observation, on_tick
from stream_app.domain.alerting.transitions import Transition
from stream_app.domain.catalogue import Catalogue
from stream_app.settings import Settings
from stream_app.state.entity_hash import decode_rule, encode_rule

RULES = Settings.model_construct().catalogue_dir / "rules.toml"
T0 = int(datetime(2024, 11, 1, tzinfo=UTC).timestamp() * 1000)
HOUR = 3_600_000
FIELDS = {"l", "s", "v", "t", "pl", "pc", "ps", "w", "op", "lp"}


@pytest.fixture(scope="module")
def book(catalogue: Catalogue) -> RuleBook:
    return load_rules(RULES, catalogue)


@pytest.mark.parametrize(
    "state",
    [
        RuleState(),
        RuleState(level=3, since_ms=T0, value=11.6, latest_ms=T0 + HOUR),
        RuleState(level=1, value=0.1 + 0.2, pending_level=2, pending_count=5, pending_since_ms=-1),
        RuleState(value=-0.0),
        RuleState(value=1e-300, latest_ms=2**62),
        RuleState(value=123456789.12345679),
        RuleState(level=1, watching_since_ms=T0, since_ms=T0 + 3 * HOUR + 1, value=3.0000000000000004),
        RuleState(level=1, overdue_period="2024-12", latest_period="2024-11"),
        RuleState(overdue_period="2024-Q4", latest_period="2025"),
    ],
)
def test_round_trip_is_exact(state: RuleState) -> None:
    fields = encode_rule(state)
    assert set(fields) == FIELDS  # always every field: writing them all leaves nothing stale
    assert all(isinstance(v, str) for v in fields.values())
    back = decode_rule(fields)
    assert back == state
    if state.value is not None:
        assert repr(back.value) == repr(state.value)


def test_empty_hash_is_a_fresh_state() -> None:
    assert decode_rule({}) == RuleState()


def test_unknown_fields_are_ignored_and_bad_values_refused() -> None:
    assert decode_rule({"l": "2", "zz": "later version"}) == RuleState(level=2)
    with pytest.raises(ValueError, match="invalid literal"):
        decode_rule({"l": "high"})


def test_cleared_pending_is_written_out_empty() -> None:
    state = RuleState(pending_level=2, pending_count=1, pending_since_ms=T0)
    state.clear_pending()
    assert encode_rule(state)["pl"] == ""
    assert encode_rule(state)["pc"] == "0"


def test_evaluation_is_the_same_with_a_reload_after_every_record(
    book: RuleBook, catalogue: Catalogue
) -> None:
    """What a crash between any two records does: the state is reloaded from its fields."""
    rules = book.rules_for("HYD.WATER_LEVEL", "01", "HN-LONGBIEN")
    values = [9.0, 9.6, 10.2, 10.6, 11.2, 11.7, 11.46, 11.44, 10.2, 9.0, 9.0, 12.0]
    runs = []
    for reload in (False, True):
        states = {rule.rule_id: RuleState() for rule in rules}
        history = BucketHistory({})
        out = []
        for n, value in enumerate(values):
            at = T0 + n * HOUR
            for rule in rules:
                if reload:
                    states[rule.rule_id] = decode_rule(encode_rule(states[rule.rule_id]))
                verdict = on_observation(
                    rule, states[rule.rule_id], value=value, event_time_ms=at, history=history, now_ms=at
                )
                out.append((rule.rule_id, verdict))
        tick_rule = book.timer_rules_for("HYD.WATER_LEVEL", "01", "HN-LONGBIEN")[0]
        verdict = on_tick(
            tick_rule,
            states[tick_rule.rule_id],
            last_seen_ms=None,
            latest_period=None,
            now_ms=T0 + 20 * HOUR,
            indicator=catalogue.indicators["HYD.WATER_LEVEL"],
        )
        out.append((tick_rule.rule_id, verdict))
        runs.append(out)
    assert runs[0] == runs[1]
    # The last data arrived at 11 h: at 20 h, 9 h of silence is past the 3 h interval.
    absence = [v.transition for rule_id, v in runs[0] if v.transition and rule_id.startswith("absence")]
    assert absence == [Transition.FIRING]
