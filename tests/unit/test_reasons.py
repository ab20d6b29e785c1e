"""Dead-letter reason codes have one home, ``stream_app/domain/reasons.py``: no module spells a code as a
string literal, the docs' table lists exactly the codes with their stages, and the metrics' series
that exist from start-up come from it."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path

from stream_app.domain import reasons
from stream_app.domain.reasons import ABOUT, POISON_AT, STAGE_NAMES, STAGES, Reason
from stream_app.ops import metrics

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / "stream_app" / "domain" / "reasons.py"
CONTRACTS = ROOT / "docs" / "contracts.md"
CODES = frozenset(reason.value for reason in Reason)

# A string equal to a code that means something else, by the class or function it is written in.
ALLOWED = {
    (
        "Outcome",
        "beyond_retention",
    ): "a step's outcome (domain/entity.py), which consolidate turns into the code",
    (
        "_observation_id",
        "undecodable",
    ): "what `produce --dry-run` prints for a row's unreadable observation id",
}


def _sources() -> Iterator[Path]:
    for path in sorted((ROOT / "stream_app").rglob("*.py")):
        if path.relative_to(ROOT).parts[1] != "agents" and path != HOME:  # stream_app/agents links agents/
            yield path
    yield from sorted((ROOT / "agents").rglob("*.py"))


def _literals(tree: ast.AST, scope: str = "") -> Iterator[tuple[str, ast.Constant]]:
    """Each string constant equal to a code, with the name of the innermost class or function around it."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.Constant) and isinstance(child.value, str) and child.value in CODES:
            yield scope, child
        inner = (
            child.name if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) else scope
        )
        yield from _literals(child, inner)


def test_no_code_is_spelled_outside_its_home() -> None:
    found, allowed = [], set()
    for path in _sources():
        for scope, node in _literals(ast.parse(path.read_text(encoding="utf-8"))):
            if (scope, node.value) in ALLOWED:
                allowed.add((scope, node.value))
            else:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} ({scope}): {node.value!r}")
    assert not found, (
        "reason codes spelled as literals (use stream_app.domain.reasons.Reason):\n" + "\n".join(found)
    )
    assert allowed == set(ALLOWED), f"allowances nothing needs any more: {set(ALLOWED) - allowed}"


def test_every_code_is_described_with_its_stages() -> None:
    assert set(ABOUT) == set(Reason)
    for reason, about in ABOUT.items():
        assert reason.name == reason.value.upper(), reason
        assert about.stages, reason
        assert about.stages <= set(STAGE_NAMES), reason
        assert about.poison_at <= about.stages, reason
        assert about.meaning, reason


def _docs_table() -> dict[str, tuple[str, str, str]]:
    """The rows of the contracts' "Reason codes" table: code -> (stages, poison at, meaning)."""
    section = CONTRACTS.read_text(encoding="utf-8").split("### Reason codes", 1)[1]
    rows: dict[str, tuple[str, str, str]] = {}
    table = section.split("| code | stages | poison at | meaning |\n|---|---|---|---|\n", 1)[1]
    for line in table.splitlines():
        if not line.startswith("| `"):
            break
        code, stages, poison, meaning = (cell.strip() for cell in line.strip("|").split("|", 3))
        assert code.strip("`") not in rows, f"{code} twice"
        rows[code.strip("`")] = (stages, poison, meaning)
    return rows


def _cell(stages: frozenset[str]) -> str:
    return ", ".join(stage for stage in STAGE_NAMES if stage in stages) or "—"


def test_the_docs_table_lists_every_code_with_its_stages() -> None:
    expected = {
        reason.value: (_cell(STAGES[reason]), _cell(POISON_AT[reason]), ABOUT[reason].meaning)
        for reason in Reason
    }
    rendered = "\n".join(
        f"| `{reason.value}` | {_cell(about.stages)} | {_cell(about.poison_at)} | {about.meaning} |"
        for reason, about in ABOUT.items()
    )
    assert _docs_table() == expected, f"docs/contracts.md, Reason codes: the rows should be\n{rendered}"


def test_the_dead_letter_schemas_name_only_codes() -> None:
    for path in sorted((ROOT / "avro_schemas").glob("dead_letter.v*.avsc")):
        fields = {f["name"]: f for f in json.loads(path.read_text(encoding="utf-8"))["fields"]}
        named = set(re.findall(r"\b[a-z]+(?:_[a-z0-9]+)+\b", fields["reason"]["doc"]))
        assert named, path.name
        assert named <= CODES, f"{path.name}: {named - CODES}"


def test_series_that_exist_from_start_up_come_from_the_codes() -> None:
    assert set(metrics.AGENTS) <= set(STAGE_NAMES)
    for stage, poison in metrics.POISON_REASONS.items():
        assert set(poison) == {reason for reason in Reason if stage in POISON_AT[reason]}, stage
    assert set(reasons.emitted_by(reasons.FETCH)) == {
        Reason.DECOMPRESSED_TOO_LARGE,
        Reason.BATCH_TOO_MANY_RECORDS,
        Reason.BATCH_UNDECODABLE,
    }


def test_alert_rules_name_only_codes() -> None:
    """A code renamed under an alert rule would silence it: the rules (and their tests) name codes."""
    series = re.compile(
        r"(?:records_rejected|poison_records|fetch_batches_withheld)_total\{[^}]*reason=\"(\w+)\""
    )
    named = {
        code
        for path in sorted((ROOT / "deploy" / "prometheus").rglob("*.yml"))
        for code in series.findall(path.read_text(encoding="utf-8"))
    }
    assert named, "no rule names a reason code: the pattern is out of date"
    assert named <= CODES, f"not reason codes: {sorted(named - CODES)}"
