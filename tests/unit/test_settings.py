"""stream_app.settings: STREAM_APP_* environment, frozen, secret Redis URL, namespacing."""

from __future__ import annotations

import os
from pathlib import Path

import pydantic
import pytest

from stream_app.settings import REPO_ROOT, Settings

PRIVATE_REDIS_URL = "redis://:s3cr3t-hunter2@redis.internal:6379/2"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No STREAM_APP_* from the developer's shell or CI leaks into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("STREAM_APP_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    settings = Settings()
    assert settings.topic_namespace == ""
    assert settings.topic("center.alerts") == "center.alerts"
    assert settings.group_id == settings.app_id == "vn-reporting-stream"
    assert settings.catalogue_dir == REPO_ROOT / "catalogue"
    assert (settings.schemas_dir / "observation.v1.avsc").is_file()
    assert settings.topics_file.is_file()


def test_reads_stream_app_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STREAM_APP_KAFKA_BOOTSTRAP", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("STREAM_APP_BATCH_MAX", "7")
    monkeypatch.setenv("STREAM_APP_BATCH_WITHIN_S", "0.25")
    monkeypatch.setenv("STREAM_APP_LOG_FORMAT", "json")
    monkeypatch.setenv("STREAM_APP_CATALOGUE_DIR", str(tmp_path))
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "ignored:1")  # no prefix: not ours
    settings = Settings()
    assert settings.kafka_bootstrap == "kafka-1:9092,kafka-2:9092"
    assert settings.batch_max == 7
    assert settings.batch_within_s == 0.25
    assert settings.log_format == "json"
    assert settings.catalogue_dir == tmp_path


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STREAM_APP_BATCH_MAX", "0"),
        ("STREAM_APP_BATCH_MAX", "many"),
        ("STREAM_APP_BATCH_WITHIN_S", "0"),
        ("STREAM_APP_LOG_LEVEL", "verbose"),
        ("STREAM_APP_WEB_PORT", "http"),
    ],
)
def test_invalid_environment_is_rejected(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(pydantic.ValidationError, match=name.removeprefix("STREAM_APP_").lower()):
        Settings()


def test_is_frozen() -> None:
    settings = Settings()
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        settings.batch_max = 3  # type: ignore[misc]
    assert settings.batch_max == 2000
    changed = settings.model_copy(update={"batch_max": 3})
    assert (changed.batch_max, settings.batch_max) == (3, 2000)


def test_redis_url_is_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_APP_REDIS_URL", PRIVATE_REDIS_URL)
    settings = Settings()
    assert settings.redis_url.get_secret_value() == PRIVATE_REDIS_URL
    for shown in (repr(settings), str(settings), repr(settings.redis_url), str(settings.redis_url)):
        assert "s3cr3t" not in shown
        assert "redis.internal" not in shown
    assert "redis_url" in repr(settings)


def test_namespace_applies_to_topics_and_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_APP_TOPIC_NAMESPACE", "t230825d55e.")
    monkeypatch.setenv("STREAM_APP_APP_ID", "stream")
    settings = Settings()
    assert settings.topic("reporter.mae.observations") == "t230825d55e.reporter.mae.observations"
    assert settings.group_id == "t230825d55e.stream"
    assert settings.app_id == "stream"
