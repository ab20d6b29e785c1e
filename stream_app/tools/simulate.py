"""Simulated reporters: live feeds with scenarios, and realistic daily history since 2010.

Everything the catalogue says (reporters, indicators with their unit, frequency, region level and
who reports them, current and legacy province codes, stations with their alarm levels, reporting
periods) comes from the :class:`~stream_app.domain.catalogue.Catalogue` the caller loaded; the simulator
keeps only what shapes values, checked against it (``stream_app.simulation``).

**Live** (:func:`live_feed`, :func:`run_live`; :func:`run` for the demo): see
:mod:`stream_app.simulation.live`. **History** (:func:`history`, :func:`write_history`): see
:mod:`stream_app.simulation.history`. :func:`main` is ``stream-app simulate``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import IO

from stream_app.domain.catalogue import Catalogue
from stream_app.domain.clock import LOCAL_TZ
from stream_app.exceptions import ConfigurationError
from stream_app.settings import Settings
from stream_app.tools.simulation.history import (
    HISTORY_START,
    checked_reporters,
    generate_history_file,
    history,
    parse_range,
    write_history,
)
from stream_app.tools.simulation.live import (
    REPORTER,
    SCENARIOS,
    SimRecord,
    existing_topics,
    feed_topic,
    flood_level,
    live_feed,
    live_reporters,
    run,
    run_live,
    smog_aqi,
)
from stream_app.tools.simulation.world import REFORM_DATE
from stream_app.wire.schemas import load_schemas

__all__ = [
    "HISTORY_START",
    "LOCAL_TZ",
    "REFORM_DATE",
    "REPORTER",
    "SCENARIOS",
    "SimRecord",
    "feed_topic",
    "flood_level",
    "generate_history_file",
    "history",
    "live_feed",
    "live_reporters",
    "main",
    "parse_range",
    "run",
    "run_live",
    "smog_aqi",
    "write_history",
]


def main(
    settings: Settings,
    catalogue: Catalogue,
    *,
    history_span: str | None = None,
    out: Path | None = None,
    fmt: str | None = None,
    reporters: list[str] | None = None,
    scenario: str = "mix",
    rate: float = 5.0,
    duration: float | None = None,
    count: int | None = None,
    seed: int = 7,
    invalid_share: float = 0.03,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """``stream-app simulate``: write history (``--history FROM:TO --out FILE``) or send live feeds."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    if history_span is not None:
        if out is None:
            raise ConfigurationError("--history needs --out FILE")
        started = time.monotonic()
        written = generate_history_file(catalogue, history_span, out, fmt=fmt, reporters=reporters, seed=seed)
        print(f"wrote {written:,} rows to {out} in {time.monotonic() - started:.1f}s", file=stdout)
        return 0
    if out is not None:
        raise ConfigurationError("--out is for --history")
    if not 0.0 <= invalid_share <= 1.0:
        raise ConfigurationError("--invalid-share must be between 0 and 1")
    chosen = checked_reporters(catalogue, reporters)
    live = live_reporters(catalogue)
    candidates = list(live) if chosen is None else chosen
    without_feed = sorted(set(candidates) - set(live))
    if without_feed:
        raise ConfigurationError(f"no live feed for {', '.join(without_feed)} (live: {', '.join(live)})")
    existing = existing_topics(settings)
    missing = [r for r in candidates if feed_topic(settings, r) not in existing]
    if missing and (chosen is not None or len(missing) == len(candidates)):
        names = ", ".join(feed_topic(settings, r) for r in missing)
        raise ConfigurationError(f"topic(s) {names} do not exist (create them: stream-app topics apply)")
    for reporter in missing:
        print(
            f"simulate: skipping {reporter}: topic {feed_topic(settings, reporter)} does not exist",
            file=stderr,
        )
    results = run_live(
        settings,
        catalogue,
        load_schemas(settings.schemas_dir),
        reporters=[r for r in candidates if r not in missing],
        scenario=scenario,
        rate=rate,
        duration=duration,
        count=count,
        seed=seed,
        invalid_share=invalid_share,
    )
    for reporter, (sent, invalid) in results.items():
        print(
            f"sent {sent} records to {feed_topic(settings, reporter)} ({invalid} meant to be rejected)",
            file=stdout,
        )
    return 0
