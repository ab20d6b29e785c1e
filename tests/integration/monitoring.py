"""Real Prometheus (a private instance per test) and the local Alertmanager, for the ops tests."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stream_app.settings import REPO_ROOT

from .support import free_port

RULES = REPO_ROOT / "deploy" / "prometheus" / "rules" / "stream-app.yml"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "stream-app.json"


def alertmanager_url() -> str:
    """The Alertmanager `deploy/local/services up` runs."""
    return f"http://127.0.0.1:{os.environ.get('SERVICES_ALERTMANAGER_PORT', '19094')}"


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback http URLs built here
        return json.loads(response.read())


def alertmanager_alerts(**label_filters: str) -> list[dict[str, Any]]:
    """Active alerts in Alertmanager matching every label given."""
    query = urllib.parse.urlencode([("filter", f'{k}="{v}"') for k, v in label_filters.items()])
    alerts: list[dict[str, Any]] = get_json(f"{alertmanager_url()}/api/v2/alerts?{query}")
    return alerts


def fast_rules(tmp_path: Path) -> Path:
    """The production rules with every ``for:`` cut to 0 s, so a test sees an alert fire at once."""
    text = re.sub(r"(?m)^(\s+for:) .*$", r"\1 0s", RULES.read_text(encoding="utf-8"))
    path = tmp_path / "rules.yml"
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class Prometheus:
    """A running Prometheus process."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result vector (or raises on a PromQL error)."""
        data = get_json(f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
        assert data["status"] == "success", data
        result: list[dict[str, Any]] = data["data"]["result"]
        return result

    def wait_for(self, expr: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll until ``expr`` returns series."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(expr)
            if result:
                return result
            time.sleep(0.5)
        pytest.fail(f"Prometheus: no series for {expr!r} within {timeout}s\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_prometheus(
    tmp_path: Path, targets: list[str], rules: Path, external_labels: dict[str, str]
) -> Prometheus:
    """Prometheus scraping ``targets`` every second and evaluating ``rules`` every second, sending
    its alerts to the local Alertmanager."""
    port = free_port()
    am = alertmanager_url().removeprefix("http://")
    labels = "".join(f"\n    {k}: {json.dumps(v)}" for k, v in external_labels.items())
    config = tmp_path / "prometheus.yml"
    config.write_text(
        f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
  external_labels:{labels}
rule_files: [{json.dumps(str(rules))}]
alerting:
  alertmanagers:
    - static_configs: [{{targets: [{json.dumps(am)}]}}]
scrape_configs:
  - job_name: stream-app
    static_configs: [{{targets: {json.dumps(targets)}}}]
""",
        encoding="utf-8",
    )
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    prometheus = Prometheus(proc, port, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return prometheus
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    prometheus.stop()
    pytest.fail(f"Prometheus did not start:\n{prometheus.log()[-3000:]}")
