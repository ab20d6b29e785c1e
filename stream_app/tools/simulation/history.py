"""Realistic daily history since 2010: rows for a date range, and files of them.

One row per day per daily indicator and province or station; periodic indicators once per Decree
09/2019 period, dated on its cut-off day (the 14th, local time). Which indicators, who reports
them, in which unit, per which region level and with which period label all come from the
catalogue; before 2025-07-01 rows are keyed by the legacy province codes, from then on by the
current ones. Deterministic: the same seed gives the same rows whatever the range or reporter
filter (a day's values depend only on the seed and the date).
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final

from stream_app.domain.calendar import PERIOD_OPTIONAL
from stream_app.domain.catalogue import Catalogue, Indicator
from stream_app.domain.clock import LOCAL_TZ, local_date
from stream_app.domain.validation import EARLIEST_EVENT_MS
from stream_app.exceptions import ConfigurationError
from stream_app.tools.simulation import nature, society
from stream_app.tools.simulation.world import Day, Model, World, local_ms, observation

HISTORY_START: Final = local_date(EARLIEST_EVENT_MS)  # the earliest event the processor accepts
# Reports go in five days before their period's deadline (catalogue), but not before the period has
# ended: daily values at 08:00 the next morning, periodic ones at 09:00 (a Decree 09 month on the
# 20th, a calendar month on the 20th of the next one).
_DAILY_REPORT_HOUR: Final = 8
_PERIODIC_REPORT_HOUR: Final = 9
_REPORT_DAYS_BEFORE_DEADLINE: Final = timedelta(days=5)
_MODELS: Final[tuple[tuple[Model, str, tuple[str, ...]], ...]] = (*nature.MODELS, *society.MODELS)
_FIELDS: Final = (
    "observation_id",
    "revision",
    "reporter",
    "indicator",
    "region",
    "station",
    "value",
    "unit",
    "event_time",
    "report_time",
    "quality",
    "period",
)


@dataclass(frozen=True, slots=True)
class _Plan:
    """The models to run (each with the frequency it runs at) and the indicators they yield."""

    world: World
    models: tuple[tuple[Model, str], ...]
    indicators: dict[str, Indicator]


def _plan(catalogue: Catalogue, wanted: frozenset[str] | None) -> _Plan:
    """Check the models against the catalogue and keep those with indicators ``wanted`` may report."""
    world = World(catalogue)
    nature.check(world)
    society.check(world)
    models = []
    indicators: dict[str, Indicator] = {}
    for model, frequency, codes in _MODELS:
        found = [world.indicator(code) for code in codes]
        for indicator in found:
            if ("daily" if indicator.frequency in PERIOD_OPTIONAL else indicator.frequency) != frequency:
                raise ConfigurationError(
                    f"simulator: {model.__name__} makes {frequency} values, but the catalogue has "
                    f"{indicator.code} {indicator.frequency}"
                )
        if wanted is None or any(indicator.reporters & wanted for indicator in found):
            models.append((model, frequency))
            indicators.update((indicator.code, indicator) for indicator in found)
    return _Plan(world, tuple(models), indicators)


def breakdown_names(catalogue: Catalogue, reporters: Collection[str] | None = None) -> list[str]:
    """The breakdowns (``phân tổ``) the simulated indicators of ``reporters`` (all: None) may carry."""
    wanted = None if reporters is None else frozenset(r.upper() for r in reporters)
    indicators = _plan(catalogue, wanted).indicators.values()
    return sorted({n for i in indicators if wanted is None or i.reporters & wanted for n in i.breakdowns})


def history(
    catalogue: Catalogue,
    start: date,
    end: date,
    *,
    seed: int = 7,
    reporters: Collection[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Observation records (Avro-shaped dicts, times in epoch ms) for every day from ``start`` to
    ``end`` inclusive, in date order. ``reporters`` keeps only those reporters' rows.

    Raises ``ConfigurationError`` at once when the simulator's tables disagree with ``catalogue``.
    """
    wanted = None if reporters is None else frozenset(r.upper() for r in reporters)
    return _rows(_plan(catalogue, wanted), start, end, seed, wanted)


def _rows(
    plan: _Plan, start: date, end: date, seed: int, wanted: frozenset[str] | None
) -> Iterator[dict[str, Any]]:
    world = plan.world
    day = start
    while day <= end:
        d = Day.of(world, day, seed)
        timing: dict[str, tuple[str | None, int]] = {}
        for model, frequency in plan.models:
            if not d.closes(frequency):
                continue
            for code, where, value, breakdowns in model(d):
                spec = plan.indicators[code]
                region, station = place = world.place(spec, where, d.legacy)
                reporter = world.reporter_for(spec, region, d.noon_ms)
                if wanted is not None and reporter not in wanted:
                    continue
                if code not in timing:
                    timing[code] = _timing(spec, d.noon_ms)
                label, report_ms = timing[code]
                suffix = ""
                if breakdowns:
                    _check_breakdowns(spec, breakdowns)
                    suffix = "".join(f":{v}" for v in breakdowns.values())
                yield observation(
                    spec,
                    observation_id=f"{reporter}:{code}:{region}:{station or '-'}:{label or day}{suffix}",
                    reporter=reporter,
                    place=place,
                    value=value,
                    event_ms=d.noon_ms,
                    report_ms=report_ms,
                    period=label,
                    breakdowns=breakdowns,
                )
        day += timedelta(days=1)


def _timing(indicator: Indicator, event_ms: int) -> tuple[str | None, int]:
    """The period label of a value at ``event_ms`` (None where the event time alone places it) and
    when it is reported."""
    period = indicator.period_of(event_ms)
    report_day = max(period.end + timedelta(days=1), period.deadline - _REPORT_DAYS_BEFORE_DEADLINE)
    if indicator.frequency in PERIOD_OPTIONAL:
        return None, local_ms(report_day, _DAILY_REPORT_HOUR)
    return period.label, local_ms(report_day, _PERIODIC_REPORT_HOUR)


def _check_breakdowns(indicator: Indicator, breakdowns: dict[str, str]) -> None:
    unknown = sorted(breakdowns.keys() - set(indicator.breakdowns))
    if unknown:
        raise ConfigurationError(
            f"simulator: {indicator.code} has no breakdown(s) {unknown} in the catalogue "
            f"({list(indicator.breakdowns)})"
        )
    for name, value in breakdowns.items():
        allowed = indicator.breakdown_values.get(name)
        if allowed is not None and value not in allowed:
            raise ConfigurationError(
                f"simulator: {indicator.code} breakdown {name!r} has no value {value!r} in the "
                f"catalogue ({sorted(allowed)})"
            )


def _iso_local(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, LOCAL_TZ).isoformat()


def write_history(
    rows: Iterable[dict[str, Any]], stream: IO[str], fmt: str, breakdowns: Iterable[str] = ()
) -> int:
    """Write ``rows`` as JSONL (times in epoch ms) or CSV (ISO-8601 local times, ``breakdown.<name>``
    columns for ``breakdowns``); returns the number of rows written."""
    count = 0
    if fmt == "jsonl":
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        write = stream.write
        for row in rows:
            write(dumps(row) + "\n")
            count += 1
        return count
    names = tuple(breakdowns)
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow([*_FIELDS, *(f"breakdown.{n}" for n in names)])
    for row in rows:
        cells = [row[f] for f in _FIELDS]
        cells[8], cells[9] = _iso_local(row["event_time"]), _iso_local(row["report_time"])
        extra = row["breakdowns"]
        writer.writerow([*("" if c is None else c for c in cells), *(extra.get(n, "") for n in names)])
        count += 1
    return count


def parse_range(text: str) -> tuple[date, date]:
    """``FROM:TO`` as dates; each is ``YYYY-MM-DD`` or a year (``2010:2015`` = whole years)."""
    first, sep, last = text.partition(":")
    if not sep:
        raise ConfigurationError(f"--history {text!r}: expected FROM:TO (e.g. 2010-01-01:2015-12-31)")

    def parse(part: str, end: bool) -> date:
        part = part.strip()
        try:
            if part.isdigit() and len(part) == 4:
                return date(int(part), 12, 31) if end else date(int(part), 1, 1)
            return date.fromisoformat(part)
        except ValueError:
            raise ConfigurationError(f"--history: {part!r} is not a date (YYYY-MM-DD or YYYY)") from None

    start, stop = parse(first, False), parse(last, True)
    if stop < start:
        raise ConfigurationError(f"--history: {stop} is before {start}")
    if start < HISTORY_START:
        raise ConfigurationError(f"--history: the reporting history starts on {HISTORY_START}")
    return start, stop


def checked_reporters(catalogue: Catalogue, reporters: Iterable[str] | None) -> list[str] | None:
    """Reporter codes as given (upper-cased), each one of the catalogue's; None stays None (all)."""
    if reporters is None:
        return None
    out = [r.strip().upper() for r in reporters]
    unknown = sorted(set(out) - catalogue.reporters.keys())
    if unknown:
        known = ", ".join(catalogue.reporters)
        raise ConfigurationError(f"unknown reporter(s) {', '.join(unknown)} (known: {known})")
    return out


def generate_history_file(
    catalogue: Catalogue,
    span: str,
    out: Path,
    *,
    fmt: str | None = None,
    reporters: Iterable[str] | None = None,
    seed: int = 7,
) -> int:
    """``stream-app simulate --history``: write the history file; returns the number of rows."""
    start, stop = parse_range(span)
    today = datetime.now(LOCAL_TZ).date()
    if stop >= today:
        raise ConfigurationError(f"--history: must end before today ({today}); history is complete days")
    chosen = checked_reporters(catalogue, reporters)
    suffixes = [s.lower() for s in out.suffixes if s.lower() != ".gz"]
    file_format = fmt or {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}.get(
        suffixes[-1] if suffixes else "", ""
    )
    if file_format not in {"jsonl", "csv"}:
        raise ConfigurationError(f"{out}: cannot tell the format from the extension; give --format jsonl|csv")
    names = breakdown_names(catalogue, chosen)
    rows = history(catalogue, start, stop, seed=seed, reporters=chosen)
    try:
        if out.suffix.lower() == ".gz":
            with gzip.open(out, "wt", encoding="utf-8", newline="") as stream:
                return write_history(rows, stream, file_format, names)
        with out.open("w", encoding="utf-8", newline="") as stream:
            return write_history(rows, stream, file_format, names)
    except OSError as exc:
        raise ConfigurationError(f"{out}: {exc}") from exc
