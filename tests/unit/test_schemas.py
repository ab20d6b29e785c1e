"""stream_app.wire.schemas: loading .avsc files and CRC-64-AVRO fingerprints."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro.schema
import pytest

from stream_app.exceptions import ConfigurationError
from stream_app.settings import Settings
from stream_app.tools.cli import main
from stream_app.wire import schema_check
from stream_app.wire.codecs import decode, encode
from stream_app.wire.schema_check import Mode, Report, avro_problem, check_schemas, sample_records
from stream_app.wire.schemas import SchemaRegistry, crc64_avro, load_schemas

SCHEMAS_DIR = Settings.model_construct().schemas_dir
SCHEMA_FILES = sorted(p.name for p in SCHEMAS_DIR.glob("*.avsc"))

_MINIMAL = {"type": "record", "name": "Thing", "fields": [{"name": "a", "type": "string"}]}


def _write(directory: Path, name: str, schema: Any) -> Path:
    path = directory / name
    path.write_text(schema if isinstance(schema, str) else json.dumps(schema), encoding="utf-8")
    return path


def test_schema_directory_is_not_empty() -> None:
    assert {"observation.v1.avsc", "alert.v1.avsc", "consolidated.v1.avsc", "dead_letter.v1.avsc"} <= set(
        SCHEMA_FILES
    )
    assert {"observation.v2.avsc", "directive.v1.avsc"} <= set(SCHEMA_FILES)


def test_every_schema_file_loads(registry: SchemaRegistry) -> None:
    loaded = {f"{v.subject}.v{v.version}.avsc" for vs in registry.by_subject.values() for v in vs}
    assert loaded == set(SCHEMA_FILES)
    assert len(registry.by_fingerprint) == len(SCHEMA_FILES), "two files share a fingerprint"
    for subject in ("observation", "alert", "consolidated", "dead_letter", "directive"):
        assert registry.latest(subject).subject == subject


@pytest.mark.parametrize("file_name", SCHEMA_FILES)
def test_fingerprint_matches_fastavro_reference(registry: SchemaRegistry, file_name: str) -> None:
    subject, version = file_name.removesuffix(".avsc").split(".v")
    schema = next(v for v in registry.by_subject[subject] if v.version == int(version))
    reference = bytes.fromhex(fastavro.schema.fingerprint(schema.canonical, "CRC-64-AVRO"))
    assert schema.fingerprint_bytes == reference
    assert registry.by_fingerprint[schema.fingerprint] is schema


@pytest.mark.parametrize("file_name", SCHEMA_FILES)
def test_canonical_form_is_fastavros(file_name: str) -> None:
    raw = json.loads((SCHEMAS_DIR / file_name).read_text(encoding="utf-8"))
    expected = fastavro.schema.to_parsing_canonical_form(raw)
    registry = load_schemas(SCHEMAS_DIR)
    subject, version = file_name.removesuffix(".avsc").split(".v")
    assert registry.version(subject, int(version)).canonical == expected
    assert '"doc"' not in expected  # parsing canonical form strips documentation


def test_crc_of_empty_input_is_the_spec_empty_constant() -> None:
    assert crc64_avro(b"") == 0xC15D213AA4D7A795


def test_crc_of_null_schema_is_the_spec_test_vector() -> None:
    # Avro's own test suite: the fingerprint of the schema "null" is 7195948357588979594.
    assert crc64_avro(b'"null"') == 7195948357588979594


@pytest.mark.parametrize("canonical", ['"int"', '"string"', '{"type":"array","items":"long"}', "x" * 1000])
def test_crc_matches_fastavro_on_arbitrary_text(canonical: str) -> None:
    reference = bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))
    assert crc64_avro(canonical.encode()).to_bytes(8, "little") == reference


def test_crc_differs_for_different_input() -> None:
    assert crc64_avro(b'"int"') != crc64_avro(b'"long"')


def test_latest_is_the_highest_version_numerically(tmp_path: Path) -> None:
    for version in (1, 2, 10):
        fields = [{"name": f"f{i}", "type": "string", "default": ""} for i in range(version)]
        _write(tmp_path, f"thing.v{version}.avsc", {"type": "record", "name": "Thing", "fields": fields})
    registry = load_schemas(tmp_path)
    assert [v.version for v in registry.by_subject["thing"]] == [1, 2, 10]
    assert registry.latest("thing").version == 10


def test_latest_of_unknown_subject_raises(registry: SchemaRegistry) -> None:
    with pytest.raises(ConfigurationError, match="no_such_subject"):
        registry.latest("no_such_subject")


def test_older_writer_version_is_resolved_to_the_newest_reader(tmp_path: Path) -> None:
    _write(tmp_path, "thing.v1.avsc", _MINIMAL)
    v2 = {
        "type": "record",
        "name": "Thing",
        "fields": [*_MINIMAL["fields"], {"name": "b", "type": "int", "default": 7}],
    }
    _write(tmp_path, "thing.v2.avsc", v2)
    registry = load_schemas(tmp_path)
    old = next(v for v in registry.by_subject["thing"] if v.version == 1)
    assert decode(registry, "thing", encode(old, {"a": "x"})) == {"a": "x", "b": 7}


def test_empty_directory_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"no \.avsc files"):
        load_schemas(tmp_path)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("{not json", id="invalid-json"),
        pytest.param(
            {"type": "record", "name": "Thing", "fields": [{"name": "a", "type": "nope"}]}, id="bad-type"
        ),
        pytest.param({"type": "fixed", "name": "F"}, id="fixed-without-size"),
        pytest.param({"type": "map"}, id="map-without-values"),
    ],
)
def test_malformed_schema_raises_configuration_error_naming_the_file(tmp_path: Path, content: Any) -> None:
    shutil.copy(SCHEMAS_DIR / "observation.v1.avsc", tmp_path)
    bad = _write(tmp_path, "broken.v1.avsc", content)
    with pytest.raises(ConfigurationError) as info:
        load_schemas(tmp_path)
    assert str(bad) in str(info.value)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param({"type": "record", "name": "T", "fields": [{"name": "a"}]}, id="field-without-type"),
        pytest.param({"type": "record", "fields": []}, id="record-without-name"),
        pytest.param({"type": "enum", "name": "E", "symbols": ["A", "A"]}, id="duplicate-enum-symbols"),
        pytest.param(
            {"type": "record", "name": "T", "fields": [{"name": "a", "type": "int", "default": "x"}]},
            id="default-of-wrong-type",
        ),
    ],
)
def test_invalid_avro_schema_raises_configuration_error(tmp_path: Path, content: Any) -> None:
    bad = _write(tmp_path, "broken.v1.avsc", content)
    with pytest.raises(ConfigurationError) as info:
        load_schemas(tmp_path)
    assert str(bad) in str(info.value)


@pytest.mark.parametrize(
    "file_name",
    [
        "observation.avsc",
        "Observation.v1.avsc",
        "observation.v1.1.avsc",
        "observation-v1.avsc",
        "obs.vX.avsc",
    ],
)
def test_file_not_named_subject_version_is_rejected(tmp_path: Path, file_name: str) -> None:
    bad = _write(tmp_path, file_name, _MINIMAL)
    with pytest.raises(ConfigurationError, match=r"<subject>\.v<N>\.avsc") as info:
        load_schemas(tmp_path)
    assert str(bad) in str(info.value)


# --- the contracts -----------------------------------------------------------------------------


def _fields(registry: SchemaRegistry, subject: str, version: int) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in registry.version(subject, version).parsed["fields"]}


def _raw_fields(file_name: str) -> dict[str, dict[str, Any]]:
    raw = json.loads((SCHEMAS_DIR / file_name).read_text(encoding="utf-8"))
    return {f["name"]: f for f in raw["fields"]}


def test_observation_v2_is_the_reader_and_adds_only_optional_fields(registry: SchemaRegistry) -> None:
    assert registry.latest("observation").version == 2
    v1, v2 = _fields(registry, "observation", 1), _fields(registry, "observation", 2)
    assert list(v2)[: len(v1)] == list(v1)
    assert all(v2[name] == v1[name] for name in v1)
    assert set(v2) - set(v1) == {"report_ref", "source_system"}
    for name in ("report_ref", "source_system"):
        assert v2[name]["type"] == ["null", "string"]
        assert v2[name]["default"] is None
        assert _raw_fields("observation.v2.avsc")[name]["doc"]
    assert registry.version("observation", 1).full_name == registry.latest("observation").full_name


def test_v1_data_decodes_under_v2_with_the_new_fields_null(
    registry: SchemaRegistry, make_record: Callable[..., dict[str, Any]]
) -> None:
    v1 = registry.version("observation", 1)
    decoded = decode(registry, "observation", encode(v1, make_record(period="2024-11")))
    assert decoded["report_ref"] is None
    assert decoded["source_system"] is None
    assert decoded["period"] == "2024-11"


def test_v2_data_with_the_new_fields_round_trips(
    registry: SchemaRegistry, make_record: Callable[..., dict[str, Any]]
) -> None:
    record = make_record() | {"report_ref": "125/BC-BNNMT", "source_system": "Hệ thống quan trắc"}
    decoded = decode(registry, "observation", encode(registry.latest("observation"), record))
    assert (decoded["report_ref"], decoded["source_system"]) == ("125/BC-BNNMT", "Hệ thống quan trắc")


def test_directive_contract(registry: SchemaRegistry, t0_ms: int) -> None:
    directive = registry.latest("directive")
    assert directive.full_name == "vn.gov.reporting.v1.Directive"
    fields = _fields(registry, "directive", 1)
    assert list(fields) == [
        "directive_id",
        "alert_key",
        "alert_id",
        "reporter",
        "action",
        "actor",
        "assignee",
        "comment",
        "issued_at",
        "due_at",
    ]
    assert fields["action"]["type"]["symbols"] == ["ACKNOWLEDGE", "ASSIGN", "COMMENT", "ESCALATE", "CLOSE"]
    for nullable in ("assignee", "comment", "due_at"):
        assert fields[nullable]["type"][0] == "null"
        assert fields[nullable]["default"] is None
    assert fields["issued_at"]["type"]["logicalType"] == "timestamp-millis"
    assert fields["due_at"]["type"][1]["logicalType"] == "timestamp-millis"
    assert all(f.get("doc") for f in _raw_fields("directive.v1.avsc").values())
    record = {
        "directive_id": "dir-1",
        "alert_key": "levels:ENV.AQI|01|HN-AQ-HOANKIEM",
        "alert_id": "alr-1",
        "reporter": "MAE",
        "action": "ASSIGN",
        "actor": "truc-ban-1",
        "assignee": "Cục Môi trường",
        "comment": "Đề nghị báo cáo diễn biến chất lượng không khí trước 17h",
        "issued_at": t0_ms,
        "due_at": t0_ms + 8 * 3_600_000,
    }
    decoded = decode(registry, "directive", encode(directive, record))
    assert decoded["comment"] == record["comment"]
    assert decoded["due_at"] == datetime(2024, 11, 1, 8, tzinfo=UTC)
    minimal = {k: v for k, v in record.items() if k not in {"assignee", "comment", "due_at"}}
    decoded = decode(registry, "directive", encode(directive, minimal | {"action": "ACKNOWLEDGE"}))
    assert (decoded["assignee"], decoded["comment"], decoded["due_at"]) == (None, None, None)


# --- stream-app schemas check ------------------------------------------------------------------


def _observation_v1() -> dict[str, Any]:
    raw: dict[str, Any] = json.loads((SCHEMAS_DIR / "observation.v1.avsc").read_text(encoding="utf-8"))
    return raw


def _with_fields(
    schema: dict[str, Any], *extra: dict[str, Any], drop: tuple[str, ...] = ()
) -> dict[str, Any]:
    fields = [f for f in schema["fields"] if f["name"] not in drop]
    return {**schema, "fields": [*fields, *extra]}


def _failures(report: Report) -> str:
    return "\n".join(str(line) for line in report.failures)


def test_repository_schemas_pass_the_check() -> None:
    report = check_schemas(SCHEMAS_DIR)
    assert report.ok, _failures(report)
    assert report.mode == Mode.FULL_TRANSITIVE
    whats = [line.what for line in report.lines]
    assert "observation v1 -> v2" in whats
    assert {
        "alert v1 -> v2",
        "consolidated v1 -> v2",
        "dead_letter v1 -> v2",
        "directive v1 -> v2",
        "tick v1",
    } <= set(whats)
    assert report.files == len(SCHEMA_FILES)
    assert report.summary().startswith("schemas check: OK (FULL_TRANSITIVE)")


def test_new_required_field_without_default_fails_naming_the_files(tmp_path: Path) -> None:
    shutil.copy(SCHEMAS_DIR / "observation.v1.avsc", tmp_path)
    _write(
        tmp_path,
        "observation.v2.avsc",
        _with_fields(_observation_v1(), {"name": "report_ref", "type": "string"}),
    )
    report = check_schemas(tmp_path, Mode.BACKWARD)
    assert not report.ok
    [failure] = report.failures
    assert failure.what == "observation v1 -> v2"
    assert "observation.v2.avsc cannot read data written with observation.v1.avsc" in failure.detail
    assert "report_ref" in failure.detail
    assert "FAILED" in report.summary()


def test_removing_a_required_field_is_backward_but_not_full(tmp_path: Path) -> None:
    shutil.copy(SCHEMAS_DIR / "observation.v1.avsc", tmp_path)
    _write(tmp_path, "observation.v2.avsc", _with_fields(_observation_v1(), drop=("unit",)))
    assert check_schemas(tmp_path, Mode.BACKWARD).ok
    report = check_schemas(tmp_path, Mode.FULL)
    [failure] = report.failures
    assert "observation.v1.avsc cannot read data written with observation.v2.avsc" in failure.detail
    assert "unit" in failure.detail


def test_removing_an_enum_symbol_is_caught_by_the_samples(tmp_path: Path) -> None:
    shutil.copy(SCHEMAS_DIR / "observation.v1.avsc", tmp_path)
    v2 = _observation_v1()
    quality = next(f for f in v2["fields"] if f["name"] == "quality")
    quality["type"]["symbols"] = ["FINAL", "PROVISIONAL"]
    _write(tmp_path, "observation.v2.avsc", v2)
    # The enum's own default ("FINAL") is what a reader without the symbol reads: Avro allows it.
    assert check_schemas(tmp_path, Mode.BACKWARD).ok
    del quality["type"]["default"]
    _write(tmp_path, "observation.v2.avsc", v2)
    report = check_schemas(tmp_path, Mode.BACKWARD)
    assert not report.ok
    assert "TEST" in _failures(report)


def test_transitive_mode_checks_every_older_version(tmp_path: Path) -> None:
    a = {"name": "a", "type": "string"}
    b_required = {"name": "b", "type": "int"}
    _write(tmp_path, "thing.v1.avsc", {"type": "record", "name": "Thing", "fields": [a]})
    _write(
        tmp_path,
        "thing.v2.avsc",
        {"type": "record", "name": "Thing", "fields": [a, {"name": "b", "type": "int", "default": 0}]},
    )
    _write(tmp_path, "thing.v3.avsc", {"type": "record", "name": "Thing", "fields": [b_required]})
    backward = check_schemas(tmp_path, Mode.BACKWARD)
    assert backward.ok, _failures(backward)
    assert [line.what for line in backward.lines] == ["thing v1 -> v2", "thing v2 -> v3"]
    transitive = check_schemas(tmp_path, Mode.BACKWARD_TRANSITIVE)
    assert [line.what for line in transitive.lines] == ["thing v1 -> v2", "thing v1 -> v3", "thing v2 -> v3"]
    [failure] = transitive.failures
    assert failure.what == "thing v1 -> v3"
    assert "thing.v3.avsc cannot read data written with thing.v1.avsc" in failure.detail


def test_renamed_type_is_named(tmp_path: Path) -> None:
    _write(tmp_path, "thing.v1.avsc", _MINIMAL)
    _write(tmp_path, "thing.v2.avsc", {**_MINIMAL, "name": "Other"})
    [failure] = check_schemas(tmp_path, Mode.BACKWARD).failures
    assert "renamed from Thing to Other" in failure.detail


def test_gap_in_version_numbers_fails(tmp_path: Path) -> None:
    shutil.copy(SCHEMAS_DIR / "observation.v1.avsc", tmp_path)
    shutil.copy(SCHEMAS_DIR / "observation.v2.avsc", tmp_path / "observation.v3.avsc")
    report = check_schemas(tmp_path)
    assert "missing observation.v2.avsc (have v1, v3)" in _failures(report)
    assert "observation v1 -> v3" in [line.what for line in report.lines if line.ok]


@pytest.mark.parametrize("names", [("thing.v0.avsc",), ("thing.v1.avsc", "thing.v01.avsc")])
def test_bad_version_numbers_fail(tmp_path: Path, names: tuple[str, ...]) -> None:
    for index, name in enumerate(names):
        _write(tmp_path, name, _with_fields(_MINIMAL, {"name": f"x{index}", "type": "int", "default": 0}))
    assert not check_schemas(tmp_path).ok


def test_same_fingerprint_twice_fails_naming_both_files(tmp_path: Path) -> None:
    shutil.copy(SCHEMAS_DIR / "observation.v1.avsc", tmp_path)
    v2 = _observation_v1()
    v2["doc"] = "Only the documentation changed: the same schema on the wire."
    _write(tmp_path, "observation.v2.avsc", v2)
    report = check_schemas(tmp_path)
    [failure] = report.failures
    assert "observation.v1.avsc, observation.v2.avsc have the same fingerprint" in failure.detail


def test_unparseable_or_misnamed_files_fail_and_the_rest_is_still_checked(tmp_path: Path) -> None:
    for name in SCHEMA_FILES:
        shutil.copy(SCHEMAS_DIR / name, tmp_path)
    _write(tmp_path, "alert.v2.avsc", "{not json")
    _write(tmp_path, "Directive-v2.avsc", _MINIMAL)
    report = check_schemas(tmp_path)
    failures = _failures(report)
    assert "alert.v2.avsc" in failures
    assert "invalid Avro schema" in failures
    assert "Directive-v2.avsc" in failures
    assert "<subject>.v<N>.avsc" in failures
    assert "observation v1 -> v2" in [line.what for line in report.lines if line.ok]


def test_empty_or_missing_directory_fails(tmp_path: Path) -> None:
    assert not check_schemas(tmp_path).ok
    assert not check_schemas(tmp_path / "nowhere").ok


def test_samples_are_deterministic_and_include_defaults(registry: SchemaRegistry) -> None:
    v2 = registry.latest("observation")
    first, again = sample_records(v2, 20, seed=7), sample_records(v2, 20, seed=7)
    assert first == again
    assert sample_records(v2, 20, seed=8) != first
    assert len(first) == 22
    assert first[-2]["report_ref"] is None
    assert first[-2]["quality"] == "FINAL"
    assert first[-2]["breakdowns"] == {}
    assert "report_ref" not in first[-1]
    assert "revision" not in first[-1]
    assert {r["quality"] for r in first[:-2]} == {"FINAL", "PROVISIONAL", "TEST"}
    assert check_schemas(SCHEMAS_DIR).lines == check_schemas(SCHEMAS_DIR).lines


def test_cli_schemas_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schemas", "check", "--dir", str(SCHEMAS_DIR)]) == 0
    out = capsys.readouterr().out
    assert "ok    observation v1 -> v2" in out
    assert out.strip().splitlines()[-1].startswith("schemas check: OK (FULL_TRANSITIVE)")

    shutil.copy(SCHEMAS_DIR / "observation.v1.avsc", tmp_path)
    _write(
        tmp_path,
        "observation.v2.avsc",
        _with_fields(_observation_v1(), {"name": "report_ref", "type": "string"}),
    )
    assert main(["schemas", "check", "--dir", str(tmp_path), "--mode", "BACKWARD"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  observation v1 -> v2" in out
    assert "observation.v2.avsc cannot read data written with observation.v1.avsc" in out
    assert "schemas check: FAILED (BACKWARD)" in out


# --- the Apache Avro project's checker (avro.compatibility), beside the samples ---------------------


def _thing_versions(tmp_path: Path, added: dict[str, Any]) -> tuple[Any, Any]:
    """thing v1 (one field) and v2 (one more field), written to ``tmp_path`` and parsed."""
    _write(tmp_path, "thing.v1.avsc", _MINIMAL)
    _write(tmp_path, "thing.v2.avsc", _with_fields(_MINIMAL, added))
    registry = load_schemas(tmp_path)
    return registry.version("thing", 1), registry.version("thing", 2)


def test_avro_checker_accepts_a_field_added_with_a_default_both_ways(tmp_path: Path) -> None:
    v1, v2 = _thing_versions(tmp_path, {"name": "b", "type": ["null", "string"], "default": None})
    assert avro_problem(writer=v1, reader=v2) is None
    assert avro_problem(writer=v2, reader=v1) is None
    report = check_schemas(tmp_path, Mode.FULL_TRANSITIVE)
    assert report.ok, _failures(report)
    [line] = [line for line in report.lines if line.what == "thing v1 -> v2"]
    assert "avro.compatibility agrees" in line.detail


def test_avro_checker_refuses_a_field_added_without_a_default(tmp_path: Path) -> None:
    v1, v2 = _thing_versions(tmp_path, {"name": "b", "type": "int"})
    problem = avro_problem(writer=v1, reader=v2)
    assert problem is not None
    assert "reader_field_missing_default_value" in problem
    assert "/fields/1" in problem
    assert " b" in problem
    assert avro_problem(writer=v2, reader=v1) is None, "an old reader skips the new field"
    [failure] = check_schemas(tmp_path, Mode.BACKWARD).failures
    assert "[avro.compatibility] thing.v2.avsc cannot read data written with thing.v1.avsc" in failure.detail
    assert "[samples] thing.v2.avsc cannot read data written with thing.v1.avsc" in failure.detail


def test_either_checker_alone_fails_the_check_and_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _thing_versions(tmp_path, {"name": "b", "type": "int"})
    # no samples: only the Avro project's checker can find it
    [failure] = check_schemas(tmp_path, Mode.BACKWARD, samples=0).failures
    assert "[avro.compatibility]" in failure.detail
    assert "[samples]" not in failure.detail
    # the Avro checker silenced: the samples still find it
    monkeypatch.setattr(schema_check, "avro_problem", lambda writer, reader: None)
    [failure] = check_schemas(tmp_path, Mode.BACKWARD).failures
    assert "[samples]" in failure.detail
    assert "[avro.compatibility]" not in failure.detail


def test_avro_checker_judges_the_repository_pairs_both_ways(registry: SchemaRegistry) -> None:
    for versions in registry.by_subject.values():
        for old in versions:
            for new in versions:
                assert avro_problem(writer=old, reader=new) is None, (old.file_name, new.file_name)
