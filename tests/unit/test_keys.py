"""The Redis layout's patterns (stream_app.state.keys): what the state tools scan for matches what the
app writes."""

from __future__ import annotations

from datetime import date
from fnmatch import fnmatchcase

from stream_app.state.keys import Keys

KEYS = Keys("sa")


def test_the_entity_states_pattern_matches_each_entity_state_and_no_other_part() -> None:
    assert fnmatchcase(KEYS.entity("MAE|AQI|HN"), KEYS.entity_states())
    assert not fnmatchcase(KEYS.entity("MAE|AQI|HN", "seen"), KEYS.entity_states())
    assert not fnmatchcase(KEYS.active_alerts(), KEYS.entity_states())


def test_everything_matches_every_key_under_the_prefix_only() -> None:
    for key in (KEYS.entity("e"), KEYS.due(3), KEYS.epoch(), KEYS.briefing(date(2026, 1, 2))):
        assert fnmatchcase(key, KEYS.everything()), key
    assert not fnmatchcase(Keys("other").epoch(), KEYS.everything())


def test_every_briefing_marker_starts_with_the_briefing_prefix() -> None:
    assert KEYS.briefing(date(2026, 1, 2)).startswith(KEYS.briefing_prefix())
    assert not KEYS.active_alerts().startswith(KEYS.briefing_prefix())
