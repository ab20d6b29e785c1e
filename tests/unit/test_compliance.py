"""stream_app.api.read_model ReadModel.compliance: a reporter's figures are read from the series they are
kept in: the official one where it is the authority, its own co-reporter series elsewhere."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from stream_app.api.read_model import ReadModel, due_period
from stream_app.domain.aggregates import Agg, series_of
from stream_app.domain.alerting import load_rules
from stream_app.domain.catalogue import Catalogue
from stream_app.domain.validation import CO_REPORTER_BREAKDOWN
from stream_app.settings import Settings
from stream_app.state.keys import Keys
from stream_app.state.memory import MemoryStateStore


def _ms(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp() * 1000)


async def _compliance(catalogue: Catalogue, data: dict[str, dict[str, str]], reporter: str, at: int) -> Any:
    settings = Settings.model_construct()
    store = MemoryStateStore(Keys(settings.redis_key_prefix), hashes=data)
    rulebook = load_rules(settings.catalogue_dir / "rules.toml", catalogue)
    report = await ReadModel(store, catalogue, rulebook).compliance(reporter, at)
    return {i["indicator"]: i for i in report["reporters"][0]["indicators"]}


def _periods_key(entity: str) -> str:
    return Keys(Settings.model_construct().redis_key_prefix).entity(entity, "periods")


@pytest.mark.asyncio
async def test_a_co_reporter_is_judged_on_its_own_series(catalogue: Catalogue) -> None:
    # TRF.DEATHS is MPS's (owner); NTSC may report it too, as a co-reporter.
    at = _ms(2025, 8, 28)
    period = due_period(catalogue.indicators["TRF.DEATHS"], at)  # the latest past its deadline
    label = period.label
    agg = Agg.of(2.0, period.start_ms, "o-1", "FINAL", period.start_ms).encode()
    ntsc = series_of({CO_REPORTER_BREAKDOWN: "NTSC"})
    data = {
        _periods_key("TRF.DEATHS|01|-"): {f"|{label}": agg},
        _periods_key("TRF.DEATHS|79|-"): {f"{ntsc}|{label}": agg},
        _periods_key("TRF.DEATHS|48|-"): {f"{ntsc}|{label}": agg},
    }
    mps = (await _compliance(catalogue, data, "MPS", at))["TRF.DEATHS"]
    assert (mps["received"], mps["on_time"]) == (1, 1)  # Hà Nội's official figure, not NTSC's in 79
    ntsc_report = (await _compliance(catalogue, data, "NTSC", at))["TRF.DEATHS"]
    assert (ntsc_report["received"], ntsc_report["on_time"]) == (2, 2)  # its own, in 79 and 48
    assert ntsc_report["expected"] == mps["expected"] == 34


@pytest.mark.asyncio
async def test_authority_follows_the_period_being_judged(catalogue: Catalogue) -> None:
    # EVN was the grid's authority until 2024-07-01: June 2024 is its official series, July NSMO's.
    output = catalogue.indicators["PWR.OUTPUT_GWH"]
    in_june, in_july = _ms(2024, 6, 30, 12), _ms(2024, 7, 10, 12)
    june, july = due_period(output, in_june), due_period(output, in_july)
    assert (june.start.month, july.start.month) == (6, 7)
    agg = Agg.of(900.0, june.start_ms, "o-1", "FINAL", june.start_ms).encode()
    evn = series_of({CO_REPORTER_BREAKDOWN: "EVN"})
    data = {_periods_key("PWR.OUTPUT_GWH|VN|-"): {f"|{june.label}": agg, f"{evn}|{july.label}": agg}}
    assert (await _compliance(catalogue, data, "EVN", in_june))["PWR.OUTPUT_GWH"]["received"] == 1
    assert (await _compliance(catalogue, data, "EVN", in_july))["PWR.OUTPUT_GWH"]["received"] == 1
    # EVN's official June figure is not NSMO's, nor EVN's own July series the official one
    assert (await _compliance(catalogue, data, "NSMO", in_june))["PWR.OUTPUT_GWH"]["received"] == 0
    assert (await _compliance(catalogue, data, "NSMO", in_july))["PWR.OUTPUT_GWH"]["received"] == 0
