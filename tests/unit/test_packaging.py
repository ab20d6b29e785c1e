"""The package is installable: what it imports is declared, what it reads ships with it.

``tests/integration/test_wheel.py`` builds the wheel and runs it; these checks are the cheap half,
on the checkout alone: every third-party module imported by ``stream_app/`` and ``agents/`` maps to a
distribution declared in ``pyproject.toml``; every data file of the top-level folders is package data;
the settings' defaults point at the package's data, and local state never into the package.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from stream_app import paths
from stream_app.settings import REPO_ROOT, Settings

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
# stream_app/agents is a link to agents/: scanned once, as agents/
SOURCE_DIRS = (REPO_ROOT / "stream_app", REPO_ROOT / "agents")
OWN = {"stream_app", "agents"}
# The top-level folders shipped as stream_app/data/<name> (stream_app/data links to them).
DATA_FOLDERS = ("avro_schemas", "catalogue", "topics")


def _canonical(name: str) -> str:
    """A distribution name as PEP 503 compares them (``prometheus_client`` == ``prometheus-client``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    names = set()
    for requirement in PYPROJECT["project"]["dependencies"]:
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        assert match, requirement
        names.add(_canonical(match.group()))
    return names


def _imports() -> dict[str, set[str]]:
    """Top-level module name -> the files importing it (absolute imports only; relative ones are ours)."""
    found: dict[str, set[str]] = {}
    files = {path.resolve() for folder in SOURCE_DIRS for path in folder.rglob("*.py")}
    assert len(files) > 20, files  # the scan found the sources
    for path in sorted(files):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                found.setdefault(module.partition(".")[0], set()).add(str(path.relative_to(REPO_ROOT)))
    return found


def test_every_imported_third_party_module_is_a_declared_dependency() -> None:
    declared = _declared()
    providers = metadata.packages_distributions()
    imports = _imports()
    assert {"faust", "redis", "aiohttp"} <= imports.keys()  # the scan sees third-party imports
    undeclared = []
    for module, files in sorted(imports.items()):
        if module in OWN or module in sys.stdlib_module_names:
            continue
        distributions = sorted(providers.get(module, []))
        if not any(_canonical(d) in declared for d in distributions):
            undeclared.append(
                f"{module} (distribution {', '.join(distributions) or 'not installed'}; "
                f"imported by {', '.join(sorted(files)[:3])})"
            )
    assert not undeclared, (
        "imported but not in [project].dependencies of pyproject.toml (add them, with a lower bound "
        "matching constraints.txt): " + "; ".join(undeclared)
    )


def test_declared_dependencies_are_pinned_in_constraints() -> None:
    pinned = {
        _canonical(line.partition("==")[0])
        for line in (REPO_ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
        if "==" in line and not line.startswith("#")
    }
    assert not _declared() - pinned, "a dependency has no pinned version in constraints.txt"


def _package_data_matches(relative: str) -> bool:
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["stream_app"]
    return any(fnmatch.fnmatchcase(relative, pattern) for pattern in patterns)


def test_every_package_of_the_source_is_installed() -> None:
    """A subpackage missing from [tool.setuptools] packages is absent from the wheel: imports fail there
    only (tests run on the checkout)."""
    root = REPO_ROOT / "stream_app"
    found = {"stream_app.agents"} | {
        ".".join(p.parent.relative_to(REPO_ROOT).parts)
        for p in root.rglob("__init__.py")
        if "agents" not in p.relative_to(root).parts[:1]
    }
    assert set(PYPROJECT["tool"]["setuptools"]["packages"]) == found


def test_every_data_file_is_package_data() -> None:
    shipped = [("openapi.yaml", REPO_ROOT / "docs" / "openapi.yaml")]
    for folder in DATA_FOLDERS:
        # catalogue/kustomization.yaml makes deploy/k8s's ConfigMap of the catalogue: not the package's data
        files = sorted(
            p for p in (REPO_ROOT / folder).iterdir() if p.is_file() and p.name != "kustomization.yaml"
        )
        assert files, folder
        shipped += [(f"{folder}/{p.name}", p) for p in files]
    for name, source in shipped:
        link = REPO_ROOT / "stream_app" / "data" / name
        assert link.resolve() == source.resolve(), f"stream_app/data/{name} must lead to {source}"
        assert _package_data_matches(f"data/{name}"), f"data/{name}: no package-data pattern ships it"


def test_settings_default_to_the_package_data(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SCHEMAS_DIR", "TOPICS_FILE", "CATALOGUE_DIR", "DATA_DIR"):
        monkeypatch.delenv(f"STREAM_APP_{name}", raising=False)
    settings = Settings()
    # in a checkout the links are resolved: the repository's own files, as before
    assert settings.schemas_dir == paths.data_file("avro_schemas") == REPO_ROOT / "avro_schemas"
    assert settings.topics_file == REPO_ROOT / "topics" / "topics.toml"
    assert settings.catalogue_dir == REPO_ROOT / "catalogue"
    assert settings.data_dir == REPO_ROOT / ".local" / "faust"
    assert paths.CHECKOUT == REPO_ROOT


def test_installed_state_goes_to_the_user_state_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths, "CHECKOUT", None)
    monkeypatch.setenv("HOME", "/home/operator")
    assert paths.state_dir("faust") == Path("/home/operator/.local/state/stream-app/faust")
    package = Path(paths.__file__).resolve().parent
    assert not paths.state_dir("faust").is_relative_to(package)
