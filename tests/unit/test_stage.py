"""The plumbing every stage shares (agents/_stage.py): what a batch's failures are charged to and the
letters that makes, why an output was refused, the check that a record sits on its key's partition."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from stream_app.agents._stage import Charges, check_owner, refusal_of
from stream_app.domain.reasons import Reason
from stream_app.kafka.partitioning import partition_for
from stream_app.kafka.publisher import Output
from stream_app.ops.failures import RecordRefusedError


@dataclass
class _Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None = b"k"
    value: bytes | None = b"v"
    timestamp: float | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    acked: bool = False


def test_a_record_on_its_keys_partition_passes_and_elsewhere_is_misrouted() -> None:
    owner = partition_for("TRF.ACCIDENTS|01|-", 12)
    check_owner("TRF.ACCIDENTS|01|-", 12, owner)
    with pytest.raises(RecordRefusedError) as refused:
        check_owner("TRF.ACCIDENTS|01|-", 12, (owner + 1) % 12)
    assert refused.value.reason == Reason.MISROUTED


def test_an_output_over_the_budget_is_too_large_else_refused() -> None:
    assert refusal_of(Output("t", None, b"x" * 11), 10) == Reason.OUTPUT_TOO_LARGE
    assert refusal_of(Output("t", None, b"x" * 10), 10) == Reason.OUTPUT_REFUSED


def test_charges_make_one_letter_per_record_once_with_the_first_reason() -> None:
    messages = {i: _Message("internal", 0, 100 + i) for i in range(3)}
    charges = Charges()
    charges.record((2, "B"), Reason.STEP_FAILED, ValueError("b"), "B: boom")
    charges.record((0, "A"), Reason.OUTPUT_REFUSED, RuntimeError("a"), "A: refused")
    charges.record((0, "A"), Reason.STEP_FAILED, ValueError("later"), "A: ignored")  # the first reason stays
    charges.record((2, "C"), Reason.STATE_UNREADABLE, KeyError("c"), "C: gone")
    assert (0, "A") in charges
    assert (1, "A") not in charges
    letters = charges.letters(messages, "dlq", 5, "consolidate")
    assert [(x.record["source_offset"], x.record["reason"], x.record["message"]) for x in letters] == [
        (100, "output_refused", "A: refused"),
        (102, "step_failed", "B: boom; C: gone"),
    ]
    assert all(x.poison and x.topic == "dlq" and x.record["stage"] == "consolidate" for x in letters)
    assert charges.letters(messages, "dlq", 5, "consolidate") == []  # each record's letter once
    charges.record((1, ""), Reason.CONTRIBUTION_INVALID, ValueError("x"), "x" * 600)
    (late,) = charges.letters(messages, "dlq", 6, "rollup")
    assert late.record["source_offset"] == 101
    assert len(late.record["message"]) == 500
