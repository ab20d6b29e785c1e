"""Shared test configuration: integration tests are marked by folder; logging is never cached in tests."""

from __future__ import annotations

from typing import Any

import pytest
import structlog


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _loggers_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    """``configure_logging`` caches each logger on first use (cheaper in a worker). A command run
    in-process by a test (``cli.main``) would then freeze every module's logger on that configuration
    for the rest of the session, and a later test's ``capture_logs`` would see nothing: in tests,
    structlog is configured without that cache."""
    configure = structlog.configure

    def uncached(**settings: Any) -> None:
        settings["cache_logger_on_first_use"] = False
        configure(**settings)

    monkeypatch.setattr(structlog, "configure", uncached)
