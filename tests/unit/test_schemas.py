"""stream_app.schemas: loading .avsc files and CRC-64-AVRO fingerprints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import fastavro.schema
import pytest

from stream_app.codecs import decode, encode
from stream_app.exceptions import ConfigurationError
from stream_app.schemas import SchemaRegistry, crc64_avro, load_schemas
from stream_app.settings import Settings

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


def test_every_schema_file_loads(registry: SchemaRegistry) -> None:
    loaded = {f"{v.subject}.v{v.version}.avsc" for vs in registry.by_subject.values() for v in vs}
    assert loaded == set(SCHEMA_FILES)
    assert len(registry.by_fingerprint) == len(SCHEMA_FILES), "two files share a fingerprint"
    for subject in ("observation", "alert", "consolidated", "dead_letter"):
        assert registry.latest(subject).subject == subject


@pytest.mark.parametrize("file_name", SCHEMA_FILES)
def test_fingerprint_matches_fastavro_reference(registry: SchemaRegistry, file_name: str) -> None:
    subject, version = file_name.removesuffix(".avsc").split(".v")
    schema = next(v for v in registry.by_subject[subject] if v.version == int(version))
    reference = bytes.fromhex(fastavro.schema.fingerprint(schema.canonical, "CRC-64-AVRO"))
    assert schema.fingerprint_bytes == reference
    assert registry.by_fingerprint[schema.fingerprint] is schema


def test_canonical_form_is_fastavros() -> None:
    raw = json.loads((SCHEMAS_DIR / "observation.v1.avsc").read_text(encoding="utf-8"))
    expected = fastavro.schema.to_parsing_canonical_form(raw)
    registry = load_schemas(SCHEMAS_DIR)
    assert registry.latest("observation").canonical == expected
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
