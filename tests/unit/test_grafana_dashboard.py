"""deploy/grafana/: a dashboard Grafana's file provisioning loads as it is (no `__inputs` to fill in by
hand), its data source, environment and workers chosen by variables, and the provisioning files in
Grafana's format. Grafana itself is not installable from the registries this project uses (not in
Debian; its server is not a PyPI or npm package), so this is a structural check; every query runs on a
real Prometheus in tests/integration/test_prometheus_dashboard.py."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from stream_app.settings import REPO_ROOT

GRAFANA = REPO_ROOT / "deploy" / "grafana"
DASHBOARD: dict[str, Any] = json.loads((GRAFANA / "stream-app.json").read_text(encoding="utf-8"))
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Grafana's own variables ($__rate_interval ...) and the legend's {{label}} are not the dashboard's.
BUILTIN = re.compile(r"__\w+")


def _variables() -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in DASHBOARD["templating"]["list"]}


def _panels() -> list[dict[str, Any]]:
    return list(DASHBOARD["panels"])


def test_the_dashboard_has_what_grafana_needs_and_nothing_to_fill_in_by_hand() -> None:
    for key in ("uid", "title", "schemaVersion", "panels", "templating", "time"):
        assert key in DASHBOARD, key
    assert DASHBOARD["id"] is None  # Grafana gives the id; a fixed one clashes across instances
    assert "__inputs" not in DASHBOARD
    assert "${DS_" not in json.dumps(DASHBOARD)
    ids = [panel["id"] for panel in _panels()]
    assert len(ids) == len(set(ids))
    for panel in _panels():
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}, panel["title"]


def test_the_data_source_environment_and_worker_are_variables() -> None:
    variables = _variables()
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name, label in (("env", "env"), ("instance", "instance")):
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["datasource"] == DATASOURCE
        assert re.fullmatch(rf"label_values\(up\{{job=\"stream-app\".*\}}, {label}\)", variable["definition"])
        assert variable["query"]["query"] == variable["definition"]
        assert variable["includeAll"]
        assert variable["allValue"] == ".*"
    assert 'env=~"$env"' in variables["instance"]["definition"]  # the workers of the chosen environment


def test_every_panel_and_query_asks_the_chosen_data_source() -> None:
    for panel in _panels():
        assert panel["datasource"] == DATASOURCE, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_every_variable_used_is_defined() -> None:
    text = json.dumps(DASHBOARD)
    used = set(re.findall(r"\$\{(\w+)\}", text)) | set(re.findall(r"\$(\w+)", text))
    used = {name for name in used if not BUILTIN.fullmatch(name)}
    assert used == set(_variables())


def test_every_raw_series_is_scoped_to_the_chosen_environment_and_workers() -> None:
    exprs = [target["expr"] for panel in _panels() for target in panel.get("targets", [])]
    assert len(exprs) >= 20
    for expr in exprs:
        # a metric the workers export (recorded series, stream_app:..., are sums over every worker)
        for match in re.finditer(r"\b(?:stream_app_[a-z_]+|process_[a-z_]+|up)\b(?!:)(\{[^}]*\})?", expr):
            selector = match.group(1) or ""
            assert 'env=~"$env"' in selector, expr
            assert 'instance=~"$instance"' in selector, expr


def test_bulk_lag_is_shown_apart_from_live_lag() -> None:
    (panel,) = [p for p in _panels() if p["title"].startswith("Consumer lag")]
    exprs = [target["expr"] for target in panel["targets"]]
    assert any('topic!~".+[.]bulk"' in e for e in exprs)
    assert any('topic=~".+[.]bulk"' in e for e in exprs)


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("provisioning/datasources/stream-app.yaml", "datasources"),
        ("provisioning/dashboards/stream-app.yaml", "providers"),
    ],
)
def test_the_provisioning_files_are_in_grafanas_format(path: str, key: str) -> None:
    document = yaml.safe_load((GRAFANA / path).read_text(encoding="utf-8"))
    assert document["apiVersion"] == 1
    assert set(document) == {"apiVersion", key}
    (entry,) = document[key]
    if key == "datasources":
        assert entry["type"] == "prometheus"  # what the dashboard's datasource variable offers
        assert entry["access"] == "proxy"
        assert re.fullmatch(r"https?://[^\s/]+(/\S*)?", entry["url"])
    else:
        assert entry["type"] == "file"
        assert entry["options"]["path"].startswith("/")
        assert entry["allowUiUpdates"] is False
