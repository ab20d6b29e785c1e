"""One way to run ``stream-app worker`` (or another command) as a child process, its output in a log
file: the demo, the integration tests and the benchmark start theirs here.

:func:`start_worker` starts one; :class:`Launched` waits until it is ready (its ``Ready`` log line, or
``/health`` answering 200), stops it (SIGTERM, then a kill after a grace period) or kills it.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

READY_LINE = "[^Worker]: Ready"  # Faust logs it once the worker has its partitions and runs its agents


class NotReadyError(RuntimeError):
    """A launched process exited, or did not become ready in time."""


def command(*args: str) -> list[str]:
    """The argv of ``stream-app <args>`` run by this interpreter (``python -m stream_app``)."""
    return [sys.executable, "-m", "stream_app", *args]


def spawn(
    argv: Sequence[str],
    env: Mapping[str, str],
    log_path: Path,
    *,
    cwd: Path | None = None,
    append: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with exactly ``env``, its stdout and stderr written to ``log_path`` (appended to
    when ``append``, else truncated)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab" if append else "wb") as log_file:
        return subprocess.Popen(  # noqa: S603 - argv built by callers from sys.executable and fixed modules
            list(argv), env=dict(env), cwd=cwd, stdout=log_file, stderr=subprocess.STDOUT
        )


def start_worker(
    env: Mapping[str, str], log_path: Path, *, cwd: Path | None = None, append: bool = False
) -> Launched:
    """``stream-app worker`` with ``env`` (the whole environment), logging to ``log_path``; not waited for
    (see :meth:`Launched.wait_ready`). ``cwd``: where Faust writes its data directory."""
    return Launched(spawn(command("worker"), env, log_path, cwd=cwd, append=append), log_path)


@dataclass
class Launched:
    """A process started by :func:`spawn`, with its log."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    name: str = field(default="worker", kw_only=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        """Everything it logged so far ("" if the log cannot be read)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]

    def failed(self, message: str) -> NoReturn:
        """Report that it exited or did not become ready (subclasses: the caller's way to fail)."""
        raise NotReadyError(f"{message}:\n{self.log_tail()}")

    def wait_for_line(self, text: str, timeout: float = 60.0) -> None:
        """Wait until ``text`` is in its log; :meth:`failed` if it exits first or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if not self.alive():
                self.failed(f"{self.name} exited with {self.proc.returncode}")
            time.sleep(0.2)
        self.failed(f"{self.name}: no {text!r} after {timeout:.0f} s")

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait for the worker's ``Ready`` line (see :meth:`wait_for_line`)."""
        self.wait_for_line(READY_LINE, timeout)

    def wait_healthy(self, url: str, timeout: float = 60.0) -> None:
        """Wait until ``url`` (a worker's ``/health``) answers 200; :meth:`failed` if it exits first or
        ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                self.failed(f"{self.name} exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - the local worker
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        self.failed(f"{self.name}: {url} not healthy after {timeout:.0f} s")

    def cpu_seconds(self) -> float:
        """User + system CPU seconds so far (Linux /proc), NaN once it is gone or elsewhere."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return math.nan
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, timeout: float = 30.0) -> int:
        """A graceful stop (SIGTERM), a kill if it is still running after ``timeout``; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
