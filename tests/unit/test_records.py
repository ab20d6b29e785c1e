"""The TypedDicts of stream_app.domain.records have exactly the fields of the newest Avro versions."""

from __future__ import annotations

from typing import Any, get_type_hints

import pytest

from stream_app.domain import directives, records
from stream_app.wire.schemas import SchemaRegistry


def _fields(schema: dict[str, Any]) -> list[str]:
    return [f["name"] for f in schema["fields"]]


@pytest.mark.parametrize(
    ("subject", "typed"),
    [
        ("alert", records.AlertRecord),
        ("consolidated", records.ConsolidatedRecord),
        ("dead_letter", records.DeadLetterRecord),
        ("directive", directives.DirectiveRecord),
    ],
)
def test_a_record_type_has_the_fields_of_its_newest_schema(
    registry: SchemaRegistry, subject: str, typed: type
) -> None:
    schema = registry.latest(subject).parsed
    assert list(get_type_hints(typed)) == _fields(schema)


def test_nested_records_match_too(registry: SchemaRegistry) -> None:
    schema = registry.latest("consolidated").parsed
    nested = {f["name"]: f["type"]["items"] for f in schema["fields"] if f["name"] in ("windows", "to_date")}
    assert list(get_type_hints(records.RollingWindow)) == _fields(nested["windows"])
    assert list(get_type_hints(records.PeriodToDate)) == _fields(nested["to_date"])
