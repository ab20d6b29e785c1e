"""The records the processor publishes, as the modules pass them to each other before encoding.

Each ``TypedDict`` has the fields of the newest version of its Avro subject (``avro_schemas/``):
``tests/unit/test_records.py`` fails when the two drift apart. Times are epoch milliseconds (Avro's
``timestamp-millis``).
"""

from __future__ import annotations

from typing import TypedDict


class AlertRecord(TypedDict):
    """``alert``: one change of an alert (a transition, or what the center did about it)."""

    alert_id: str
    alert_key: str
    rule: str
    rule_kind: str
    domain: str
    event_type: str
    transition: str
    indicator: str
    reporter: str
    region: str
    station: str | None
    value: float
    threshold: float | None
    level: int
    previous_level: int
    level_code: str
    level_name_vi: str
    level_name_en: str
    colour: str
    observation_id: str
    cause_observation_ids: list[str]
    detail: str
    acknowledged_by: str | None
    acknowledged_at: int | None
    assigned_to: str | None
    comment: str | None
    directive_id: str | None
    event_time: int
    processing_time: int


class RollingWindow(TypedDict):
    name: str
    count: int
    sum: float
    mean: float
    min: float
    max: float


class PeriodToDate(TypedDict):
    frequency: str
    period: str
    status: str
    value: float
    count: int
    sum: float
    min: float
    max: float
    same_period_last_year: float | None
    yoy_change_pct: float | None


class ConsolidatedRecord(TypedDict):
    """``consolidated``: an entity's latest picture, or one reporting period's aggregate (an
    entity's or a roll-up's)."""

    key: str
    indicator: str
    reporter: str
    region: str
    station: str | None
    window: str
    latest_value: float
    latest_event_time: int
    count: int
    sum: float
    mean: float
    min: float
    max: float
    alert_level: int
    alert_level_code: str
    quality: str
    revision: int
    processing_time: int
    kind: str
    scope: str
    breakdowns: dict[str, str]
    period: str | None
    frequency: str | None
    period_start: str | None
    period_end: str | None
    deadline: str | None
    status: str
    value: float | None
    aggregation: str
    unit: str
    sum_exact: str
    same_period_last_year: float | None
    yoy_change_pct: float | None
    contributors: int
    windows: list[RollingWindow]
    to_date: list[PeriodToDate]


class DeadLetterRecord(TypedDict):
    """``dead_letter``: a refused record with its reason, where it came from, and its bytes."""

    reason: str  # a Reason's value: plain text on the wire (a letter read back may carry a newer code)
    message: str
    source_topic: str
    source_partition: int
    source_offset: int
    source_key: bytes | None
    original: bytes
    rejected_at: int
    stage: str | None
    error_type: str | None
    original_truncated: bool
    # v3: every dead letter fits, whatever the reporter sent (stream_app.kafka.dead_letters)
    source_last_offset: int | None
    original_size: int | None
    original_sha256: bytes | None
    source_key_truncated: bool
    source_key_size: int | None
    source_key_sha256: bytes | None
    source_headers: list[DeadLetterHeader]
    source_headers_truncated: bool
    source_headers_size: int
    source_headers_sha256: bytes | None
    minimal: bool


class DeadLetterHeader(TypedDict):
    """One header of a dead-lettered record."""

    name: str
    value: bytes | None
