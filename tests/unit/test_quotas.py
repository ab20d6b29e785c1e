"""stream_app.kafka.quotas: every reporter's produce quotas, from the settings and the catalogue."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stream_app.config.blueprint import load_blueprint
from stream_app.exceptions import ConfigurationError
from stream_app.kafka import quotas
from stream_app.settings import Settings


def _catalogue_with(tmp_path: Path, reporter: str, extra: str) -> Path:
    """A copy of the catalogue whose ``reporter`` entry carries ``extra`` lines."""
    folder = tmp_path / "catalogue"
    shutil.copytree(Settings().catalogue_dir, folder)
    path = folder / "reporters.toml"
    text = path.read_text(encoding="utf-8")
    entry = f'code = "{reporter}"\n'
    assert entry in text
    path.write_text(text.replace(entry, entry + extra, 1), encoding="utf-8")
    return folder


def test_every_reporter_user_gets_the_default_byte_rate_and_request_share() -> None:
    settings = Settings(reporter_quota_bytes_per_s=300_000, reporter_quota_request_percent=10)
    blueprint = load_blueprint(settings)
    found = quotas.quotas(blueprint)
    users = {quotas.reporter_user(code) for code in blueprint.catalogue.reporters}
    assert {q.user for q in found} == users
    assert "mae" in users  # the reporter's SCRAM user, as its ACLs name it
    assert {(q.key, q.value) for q in found} == {("producer_byte_rate", 300_000), ("request_percentage", 10)}


def test_a_reporter_of_the_catalogue_may_have_its_own(tmp_path: Path) -> None:
    folder = _catalogue_with(tmp_path, "MAE", "quota_bytes_per_s = 2097152\nquota_request_percent = 50\n")
    blueprint = load_blueprint(Settings(catalogue_dir=folder))
    mae = {q.key: q.value for q in quotas.quotas(blueprint) if q.user == "mae"}
    assert mae == {"producer_byte_rate": 2_097_152, "request_percentage": 50}
    mps = {q.key: q.value for q in quotas.quotas(blueprint) if q.user == "mps"}
    assert mps["producer_byte_rate"] == Settings().reporter_quota_bytes_per_s


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("quota_bytes_per_s = 10\n", "at least 1024"),
        ("quota_request_percent = 0\n", "above 0"),
        ("quota_bytes = 1\n", "quota_bytes"),
    ],
)
def test_a_wrong_quota_in_the_catalogue_is_refused(tmp_path: Path, extra: str, problem: str) -> None:
    folder = _catalogue_with(tmp_path, "MAE", extra)
    with pytest.raises(ConfigurationError, match=problem):
        load_blueprint(Settings(catalogue_dir=folder))
