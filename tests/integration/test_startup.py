"""A worker that cannot reach Kafka or Redis says so in one line and exits non-zero, quickly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable

import pytest

from stream_app.config.blueprint import Blueprint
from stream_app.exit_codes import ExitCode
from stream_app.pipeline.worker import FORCED_SHUTDOWN_EXIT
from stream_app.settings import Settings
from stream_app.tools.launch import command

from .support import WorkerProcess, settings_env


def _run_worker(settings: Settings, **overrides: str) -> tuple[int, str, float]:
    env = {**os.environ, **settings_env(settings), "STREAM_APP_STARTUP_TIMEOUT_S": "5", **overrides}
    started = time.monotonic()
    done = subprocess.run(command("worker"), env=env, capture_output=True, timeout=60, check=False)
    return done.returncode, done.stderr.decode(), time.monotonic() - started


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ({"STREAM_APP_KAFKA_BOOTSTRAP": "127.0.0.1:1"}, "Kafka unreachable at 127.0.0.1:1"),
        ({"STREAM_APP_REDIS_URL": "redis://127.0.0.1:1/0"}, "Redis unreachable at redis://127.0.0.1:1/0"),
    ],
)
def test_unreachable_service_is_one_clear_line(
    settings: Settings, blueprint: Blueprint, override: dict[str, str], names: str
) -> None:
    code, stderr, elapsed = _run_worker(settings, **override)
    assert code == ExitCode.UNAVAILABLE
    assert elapsed < 30
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert names in lines[0]
    assert "Traceback" not in stderr


def test_missing_topics_are_named(settings: Settings) -> None:
    code, stderr, _ = _run_worker(settings)
    assert code == ExitCode.CONFIG
    assert "lacks topics" in stderr
    assert "stream-app topics apply" in stderr


def test_password_in_redis_url_is_not_printed(settings: Settings, blueprint: Blueprint) -> None:
    code, stderr, _ = _run_worker(settings, STREAM_APP_REDIS_URL="redis://ops:s3cret@127.0.0.1:1/0")
    assert code == ExitCode.UNAVAILABLE
    assert "s3cret" not in stderr
    assert "***@127.0.0.1:1" in stderr


def test_a_stop_that_hangs_is_bounded_by_the_grace(
    settings: Settings, blueprint: Blueprint, start_worker: Callable[..., WorkerProcess]
) -> None:
    """A grace shorter than Faust's own stop: the watchdog ends the process, says so, and exits with
    EX_TEMPFAIL (not 0: a supervisor sees a stop that was not clean)."""
    worker = start_worker(settings, STREAM_APP_SHUTDOWN_GRACE_S="0.05")
    started = time.monotonic()
    assert worker.stop(timeout=15) == FORCED_SHUTDOWN_EXIT
    assert time.monotonic() - started < 10
    forced = [json.loads(line) for line in worker.log().splitlines() if '"shutdown_forced"' in line]
    assert len(forced) == 1, worker.log()[-3000:]
    assert forced[0]["signal"] == "SIGTERM"
    assert forced[0]["grace_s"] == 0.05
    assert forced[0]["still_stopping"], forced[0]
    assert forced[0]["exit_status"] == FORCED_SHUTDOWN_EXIT


def test_sigusr2_does_not_stop_the_stream(
    settings: Settings, blueprint: Blueprint, start_worker: Callable[..., WorkerProcess]
) -> None:
    """mode's worker would start pdb on SIGUSR2 and block on a stdin nobody has: ignored and logged."""
    worker = start_worker(settings)
    os.kill(worker.pid, signal.SIGUSR2)
    worker.wait_for_line('"signal_ignored"', timeout=15)
    assert worker.alive()
    assert "Starting debugger" not in worker.log()
    assert worker.stop(timeout=30) == 0
