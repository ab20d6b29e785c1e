"""The roll-up stage's check of one contribution item (``stream_app.agents.rollup._checked_write``): a
source found to count in a roll-up is remembered (the check depends on the catalogue alone), and what
is remembered never lets through an item the full check refuses."""

from __future__ import annotations

from typing import Any

import pytest

from stream_app.agents.rollup import _checked_write
from stream_app.config.blueprint import load_blueprint
from stream_app.domain.rollup import targets
from stream_app.settings import Settings

SOURCE = "TRF.ACCIDENTS|01|-"
AGGREGATE = "1,2.5,2.5,2.5,1746061200000,2.5,1,0,0,1746061200000,hn-1"


def _item(source: str = SOURCE, aggregate: str | None = AGGREGATE) -> dict[str, Any]:
    return {"source": source, "period": "|2025-05", "seq": 7, "aggregate": aggregate}


def test_a_source_that_counts_is_checked_once_and_nothing_else_passes_for_it() -> None:
    catalogue = load_blueprint(Settings.model_construct()).catalogue
    accidents = catalogue.indicators["TRF.ACCIDENTS"]
    (target,) = targets(accidents, "01", None)
    counting: set[tuple[str, str, str]] = set()

    write = _checked_write(catalogue, accidents, target, 3, _item(), counting)
    assert (write.index, write.write.period, write.write.seq) == (
        3,
        ("TRF.ACCIDENTS", target, "", "2025-05"),
        7,
    )
    assert write.agg is not None
    assert write.agg.encode() == AGGREGATE
    assert counting == {("TRF.ACCIDENTS", SOURCE, target)}

    # the same source named in another indicator's roll-up, or for a target it does not count in
    other = next(i for code, i in catalogue.indicators.items() if code != "TRF.ACCIDENTS")
    with pytest.raises(ValueError, match="does not count"):
        _checked_write(catalogue, other, target, 4, _item(), counting)
    with pytest.raises(ValueError, match="does not count"):
        _checked_write(catalogue, accidents, "79", 5, _item(), counting)
    # an unknown source is refused and not remembered
    with pytest.raises(ValueError, match="unknown indicator"):
        _checked_write(catalogue, accidents, target, 6, _item("NOPE|01|-"), counting)
    assert counting == {("TRF.ACCIDENTS", SOURCE, target)}
    # remembered: the source counts, but the rest of the item is checked every time
    with pytest.raises(ValueError, match="not enough values"):
        _checked_write(catalogue, accidents, target, 7, _item(aggregate="1,2.5"), counting)
    assert _checked_write(catalogue, accidents, target, 8, _item(aggregate=None), counting).agg is None
