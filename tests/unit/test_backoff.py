"""The one exponential backoff (stream_app.ops.retry.Backoff) every retrying loop waits with."""

from __future__ import annotations

from stream_app.ops.retry import Backoff
from stream_app.settings import Settings


def test_waits_double_up_to_the_ceiling_and_start_again_after_a_reset() -> None:
    backoff = Backoff(0.25, 1.0)
    assert [backoff.next() for _ in range(5)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    backoff.reset()
    assert backoff.next() == 0.25


def test_from_settings_uses_the_retry_settings() -> None:
    settings = Settings(retry_initial_s=0.1, retry_max_s=0.3)
    backoff = Backoff.from_settings(settings)
    assert [backoff.next() for _ in range(4)] == [0.1, 0.2, 0.3, 0.3]
