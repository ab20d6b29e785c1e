"""Dead-letter reason codes: the one home of every code a dead letter can carry.

A code is a public contract: it is the ``reason`` of the records on the ``*.dlq`` topics and a label of
``stream_app_records_rejected_total`` and ``stream_app_poison_records_total``, so a value never
changes (a member may be added, never renamed in value). Every module spells a code as ``Reason.X``;
``tests/unit/test_reasons.py`` fails on a code written as a string literal anywhere else, and checks
that the table of docs/contracts.md ("Reason codes") lists every code as :data:`ABOUT` describes it.

For each code, :data:`ABOUT` says what it means, the stages that may emit it and the stages at which
it is *poison* (the stage failed on the record: an exception, an infrastructure refusal, an internal
record that is not one of ours) rather than a refusal of the record by a check. The stages:

- ``fetch``: the consumer withholds a fetched record batch (``stream_app/kafka/fetch_bounds.py``); the
  intake dead-letters it by position;
- ``intake``: a reporter's observation, decoded and validated (``agents/intake.py``);
- ``directives``: a directive of the center, authenticated and routed (``agents/directives.py``);
- ``consolidate``: the stateful step (``agents/consolidate.py``);
- ``rollup``: the roll-ups (``agents/rollup.py``).

:data:`STAGES` and :data:`POISON_AT` are the same facts as data, for the metrics' series that exist
from start-up and for the docs check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

FETCH: Final = "fetch"
INTAKE: Final = "intake"
DIRECTIVES: Final = "directives"
CONSOLIDATE: Final = "consolidate"
ROLLUP: Final = "rollup"
STAGE_NAMES: Final = (FETCH, INTAKE, DIRECTIVES, CONSOLIDATE, ROLLUP)


class Reason(StrEnum):
    """A dead letter's reason code; each member's name is its value in capitals (see :data:`ABOUT`)."""

    # decoding (stream_app/wire/codecs.py, the schema registry's edge in stream_app/kafka/registry.py)
    UNDECODABLE = "undecodable"
    UNKNOWN_SCHEMA = "unknown_schema"
    SCHEMA_MISMATCH = "schema_mismatch"
    OVERSIZED = "oversized"
    SCHEMA_NOT_ALLOWED = "schema_not_allowed"
    SCHEMA_NOT_LOOKED_UP = "schema_not_looked_up"
    # the intake's key check (stream_app/wire/intake.py)
    KEY_TOO_LARGE = "key_too_large"
    # validation against the catalogue (stream_app/domain/validation.py)
    UNKNOWN_REPORTER = "unknown_reporter"
    UNKNOWN_INDICATOR = "unknown_indicator"
    INDICATOR_NOT_OWNED = "indicator_not_owned"
    UNIT_MISMATCH = "unit_mismatch"
    VALUE_NOT_FINITE = "value_not_finite"
    VALUE_OUT_OF_RANGE = "value_out_of_range"
    UNKNOWN_REGION = "unknown_region"
    UNKNOWN_STATION = "unknown_station"
    EVENT_TIME_IN_FUTURE = "event_time_in_future"
    EVENT_TIME_BEFORE_2010 = "event_time_before_2010"
    STATION_REQUIRED = "station_required"
    PERIOD_INCONSISTENT = "period_inconsistent"
    OBSERVATION_ID_INVALID = "observation_id_invalid"
    TOO_MANY_BREAKDOWNS = "too_many_breakdowns"
    UNKNOWN_BREAKDOWN = "unknown_breakdown"
    BREAKDOWN_VALUE_INVALID = "breakdown_value_invalid"
    TEXT_TOO_LONG = "text_too_long"
    REPORT_TIME_INVALID = "report_time_invalid"
    REGION_NOT_ALLOWED = "region_not_allowed"
    STATION_NOT_ALLOWED = "station_not_allowed"
    STATION_WRONG_KIND = "station_wrong_kind"
    # a fetched record batch the consumer would not inflate (stream_app/kafka/fetch_bounds.py)
    DECOMPRESSED_TOO_LARGE = "decompressed_too_large"
    BATCH_TOO_MANY_RECORDS = "batch_too_many_records"
    BATCH_UNDECODABLE = "batch_undecodable"
    # the stateful step's refusals of a reporter's record or of a directive
    STALE_REVISION = "stale_revision"
    BEYOND_RETENTION = "beyond_retention"
    UNKNOWN_ALERT = "unknown_alert"
    ALERT_NOT_OPEN = "alert_not_open"
    STALE_ALERT = "stale_alert"
    UNAUTHENTICATED_DIRECTIVE = "unauthenticated_directive"
    # poison: a stage failed on the record
    INTAKE_FAILED = "intake_failed"
    STEP_FAILED = "step_failed"
    STATE_UNREADABLE = "state_unreadable"
    STATE_WRITE_FAILED = "state_write_failed"
    READS_EXHAUSTED = "reads_exhausted"
    OUTPUT_FAILED = "output_failed"
    OUTPUT_TOO_LARGE = "output_too_large"
    OUTPUT_REFUSED = "output_refused"
    MISROUTED = "misrouted"
    UNKNOWN_ENTITY = "unknown_entity"
    TICK_INVALID = "tick_invalid"
    RECORD_INVALID = "record_invalid"
    CONTRIBUTION_INVALID = "contribution_invalid"


@dataclass(frozen=True, slots=True)
class About:
    """What a code means, the stages that may emit it, and those at which it is poison."""

    stages: frozenset[str]
    poison_at: frozenset[str]
    meaning: str


def _about(stages: str, poison_at: str, meaning: str) -> About:
    return About(frozenset(stages.split()), frozenset(poison_at.split()), meaning)


_DECODING = "intake directives consolidate rollup"  # every stage decodes what it reads
_INTERNAL = "consolidate rollup"  # stages reading internal topics: a record not ours there is poison
_WRITERS = "intake directives consolidate rollup"  # every stage that publishes outputs

ABOUT: Final[Mapping[Reason, About]] = {
    Reason.UNDECODABLE: _about(
        _DECODING,
        _INTERNAL,
        "not a record of ours: neither Avro single-object encoding, Confluent framing nor (an"
        " observation) a JSON document; an Avro body that does not match its writer schema; on an"
        " internal topic, a record type that does not belong there",
    ),
    Reason.UNKNOWN_SCHEMA: _about(
        _DECODING,
        _INTERNAL,
        "an unknown writer schema: a single-object fingerprint no local version has, a Confluent schema"
        " id the registry does not have, or Confluent framing without a registry configured",
    ),
    Reason.SCHEMA_MISMATCH: _about(
        _DECODING,
        _INTERNAL,
        "a record of another type than expected, a writer schema that cannot be read as the newest"
        " version, or a JSON document not shaped like the observation schema",
    ),
    Reason.OVERSIZED: _about("intake", "", "a record over STREAM_APP_INTAKE_MAX_RECORD_BYTES"),
    Reason.SCHEMA_NOT_ALLOWED: _about(
        "intake directives",
        "",
        "a writer schema from the registry that nests arrays and maps too deep, or whose arrays' items"
        " take no bytes (a few bytes could declare billions of them)",
    ),
    Reason.SCHEMA_NOT_LOOKED_UP: _about(
        "intake directives",
        "",
        "a Confluent schema id beyond the batch's registry lookups"
        " (STREAM_APP_SCHEMA_REGISTRY_MAX_LOOKUPS_PER_BATCH); decoding never asks the registry on the"
        " event loop",
    ),
    Reason.KEY_TOO_LARGE: _about("intake", "", "a key over STREAM_APP_INTAKE_MAX_KEY_BYTES"),
    Reason.UNKNOWN_REPORTER: _about(
        "intake", "", "a reporter not in the catalogue, or not the owner of the topic it was written to"
    ),
    Reason.UNKNOWN_INDICATOR: _about("intake", "", "an indicator not in the catalogue"),
    Reason.INDICATOR_NOT_OWNED: _about("intake", "", "an indicator the reporter does not report"),
    Reason.UNIT_MISMATCH: _about("intake", "", "a unit other than the indicator's"),
    Reason.VALUE_NOT_FINITE: _about("intake", "", "a value that is NaN or infinite"),
    Reason.VALUE_OUT_OF_RANGE: _about("intake", "", "a value outside the indicator's [min, max]"),
    Reason.UNKNOWN_REGION: _about("intake", "", "a region that is not a known province code"),
    Reason.UNKNOWN_STATION: _about("intake", "", "a station that is not one of the record's region"),
    Reason.EVENT_TIME_IN_FUTURE: _about(
        "intake", "", "an event time ahead of now by more than STREAM_APP_MAX_FUTURE_SKEW_S"
    ),
    Reason.EVENT_TIME_BEFORE_2010: _about("intake", "", "an event time before 2010-01-01"),
    Reason.STATION_REQUIRED: _about("intake", "", "no station for an indicator reported per station"),
    Reason.PERIOD_INCONSISTENT: _about(
        "intake", "", "a reporting period that is not the one of the event time, in the indicator's calendar"
    ),
    Reason.OBSERVATION_ID_INVALID: _about(
        "intake",
        "",
        "an observation id too long (STREAM_APP_OBSERVATION_ID_MAX_LENGTH) or of other characters",
    ),
    Reason.TOO_MANY_BREAKDOWNS: _about("intake", "", "more breakdowns than STREAM_APP_BREAKDOWNS_MAX"),
    Reason.UNKNOWN_BREAKDOWN: _about("intake", "", "a breakdown the indicator does not have"),
    Reason.BREAKDOWN_VALUE_INVALID: _about(
        "intake",
        "",
        "a breakdown value empty, too long (STREAM_APP_BREAKDOWN_VALUE_MAX_LENGTH), not printable or not"
        " one of the catalogue's",
    ),
    Reason.TEXT_TOO_LONG: _about(
        "intake directives",
        "",
        "free text over its limit: an observation's report_ref or source_system"
        " (STREAM_APP_TEXT_MAX_LENGTH), a directive's names or comment"
        " (STREAM_APP_DIRECTIVE_COMMENT_MAX_LENGTH)",
    ),
    Reason.REPORT_TIME_INVALID: _about(
        "intake",
        "",
        "a report time before 2010-01-01 or ahead of now by more than STREAM_APP_MAX_FUTURE_SKEW_S",
    ),
    Reason.REGION_NOT_ALLOWED: _about(
        "intake", "", "a region of the wrong level for the indicator (VN for a national one, else a province)"
    ),
    Reason.STATION_NOT_ALLOWED: _about("intake", "", "a station for an indicator not reported per station"),
    Reason.STATION_WRONG_KIND: _about("intake", "", "a station of another kind than the indicator's"),
    Reason.DECOMPRESSED_TOO_LARGE: _about(
        "fetch intake", "", "a compressed record batch inflating past STREAM_APP_FETCH_MAX_BATCH_BYTES"
    ),
    Reason.BATCH_TOO_MANY_RECORDS: _about(
        "fetch intake", "", "a record batch declaring more than STREAM_APP_FETCH_MAX_BATCH_RECORDS records"
    ),
    Reason.BATCH_UNDECODABLE: _about(
        "fetch intake",
        "",
        "a record batch whose compressed bytes or records cannot be read (e.g. a header name that is"
        " not UTF-8)",
    ),
    Reason.STALE_REVISION: _about(
        "consolidate",
        "",
        "a revision lower than one the same reporter already applied (never applied itself)",
    ),
    Reason.BEYOND_RETENTION: _about(
        "consolidate",
        "",
        "an observation older than the previous reporting year of its entity's newest value",
    ),
    Reason.UNKNOWN_ALERT: _about(
        "directives consolidate",
        "",
        "a directive about an alert key that is malformed, of an entity the catalogue cannot have, or"
        " of an alert that never fired",
    ),
    Reason.ALERT_NOT_OPEN: _about(
        "consolidate", "", "a directive other than a comment about an alert that is not open"
    ),
    Reason.STALE_ALERT: _about(
        "consolidate",
        "",
        "a directive about an earlier occurrence of the alert (its alert_id is not a change of the"
        " current one, or, without one, it was issued before the current one fired)",
    ),
    Reason.UNAUTHENTICATED_DIRECTIVE: _about(
        "directives", "", "a directive no API authenticated a person for (a writer or token missing)"
    ),
    Reason.INTAKE_FAILED: _about(
        "intake directives", "intake directives", "decoding or validating raised something unforeseen"
    ),
    Reason.STEP_FAILED: _about("consolidate", "consolidate", "the stateful step raised"),
    Reason.STATE_UNREADABLE: _about(
        "consolidate",
        "consolidate",
        "the entity's Redis state (or the periods-due registry) cannot be read or decoded",
    ),
    Reason.STATE_WRITE_FAILED: _about(
        _INTERNAL, _INTERNAL, "Redis refused the commit of the record's state (not a connection error)"
    ),
    Reason.READS_EXHAUSTED: _about("consolidate", "consolidate", "a batch kept discovering data to read"),
    Reason.OUTPUT_FAILED: _about(_INTERNAL, _INTERNAL, "building or encoding an output of the record raised"),
    Reason.OUTPUT_TOO_LARGE: _about(_WRITERS, _WRITERS, "an output over STREAM_APP_OUTPUT_MAX_BYTES"),
    Reason.OUTPUT_REFUSED: _about(
        _WRITERS, _WRITERS, "Kafka refused an output for good (too large, invalid)"
    ),
    Reason.MISROUTED: _about(
        _INTERNAL, _INTERNAL, "an internal record on a partition that does not own its entity"
    ),
    Reason.UNKNOWN_ENTITY: _about(
        "consolidate",
        "consolidate",
        "an internal record about an entity the catalogue cannot have (or a reporter that may not report"
        " its indicator, a directive keyed by another entity)",
    ),
    Reason.TICK_INVALID: _about(
        "consolidate", "consolidate", "a tick for another partition, or a time out of bounds"
    ),
    Reason.RECORD_INVALID: _about(
        "consolidate",
        "consolidate",
        "an internal observation out of bounds (a value, a time) or a directive whose text is too long",
    ),
    Reason.CONTRIBUTION_INVALID: _about(
        "rollup", "rollup", "a roll-up contribution (or an item of it) that cannot be applied"
    ),
}

STAGES: Final[Mapping[Reason, frozenset[str]]] = {reason: about.stages for reason, about in ABOUT.items()}
POISON_AT: Final[Mapping[Reason, frozenset[str]]] = {
    reason: about.poison_at for reason, about in ABOUT.items()
}


def emitted_by(stage: str) -> tuple[Reason, ...]:
    """The codes ``stage`` may emit, in the enum's order."""
    return tuple(reason for reason in Reason if stage in STAGES[reason])


def poison_at(stage: str) -> tuple[Reason, ...]:
    """The codes that are poison at ``stage`` (its ``stream_app_poison_records_total`` series)."""
    return tuple(reason for reason in Reason if stage in POISON_AT[reason])
