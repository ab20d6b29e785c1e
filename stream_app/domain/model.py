"""Plain data of the domain: observations and the records the processor publishes."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from stream_app.domain.reasons import Reason

# A co-reporter's values (a reporter allowed to send an indicator but not authoritative for it: see the
# catalogue's ``authority``) form a series of their own, named like a breakdown: ``reporter=NTSC``.
CO_REPORTER_BREAKDOWN = "reporter"


# period_field / split_period_field stay in the domain although Redis uses them too: the name is the
# ``period`` of a roll-up contribution record (published by the consolidate stage, read by the
# roll-up stage), a record format rather than only a storage one.
def period_field(series: str, label: str) -> str:
    """The name of one series' reporting period, ``<series>|<label>`` (the official series is ``""``):
    a field of an entity's periods, the ``period`` of a roll-up contribution, part of a roll-up's key."""
    return f"{series}|{label}"


def split_period_field(name: str) -> tuple[str, str]:
    """(series, label) of a :func:`period_field` name (a label never holds ``|``; a series might)."""
    series, _, label = name.rpartition("|")
    return series, label


class Quality(StrEnum):
    """Data quality a reporter declares (the article: connected indicators mostly sent TEST data)."""

    FINAL = "FINAL"
    PROVISIONAL = "PROVISIONAL"
    TEST = "TEST"


@dataclass(frozen=True, slots=True)
class Observation:
    """One validated value of one indicator for one region or station. Times are epoch milliseconds."""

    observation_id: str
    revision: int
    reporter: str
    indicator: str
    region: str
    station: str | None
    value: float
    unit: str
    event_time: int
    report_time: int
    quality: Quality = Quality.FINAL
    period: str | None = None
    breakdowns: dict[str, str] = field(default_factory=dict)
    report_ref: str | None = None  # the official report document the value comes from (Decree 09)
    source_system: str | None = None

    @property
    def seen_key(self) -> str:
        """Who said what: duplicates, corrections and staleness are judged per reporter and observation
        id, so one reporter can never retract, shadow or stale another's values."""
        return f"{self.reporter}|{self.observation_id}"

    @property
    def entity(self) -> str:
        """The stateful entity: one writer keeps its aggregates and alert level in order."""
        return f"{self.indicator}|{self.region}|{self.station or '-'}"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record was refused: a reason code (bounded, for metrics) and a detail for people."""

    reason: Reason
    message: str
