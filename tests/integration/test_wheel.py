"""The package installs from a wheel and runs from it, outside the checkout.

The wheel is built from a copy of the working tree with ``pip wheel`` in build isolation, so with the
build backend ``pyproject.toml`` asks for (setuptools comes from the package index, as it does for
``make install``). It is installed alone in a fresh virtualenv under the test's tmp folder, then
``stream-app --help``, ``schemas check``, ``topics plan`` and a worker run from that virtualenv, in a
working directory outside the checkout, against the local Kafka and Redis; one observation goes
through the worker to its consolidated record.

The dependencies are not installed again (from the index that would take minutes and the network):
a ``.pth`` file in the fresh virtualenv names the project virtualenv's site-packages folder. A folder
named in a ``.pth`` file is only added to ``sys.path``; the ``.pth`` files inside it are not run, so
the editable install's finder (``__editable__.stream_app-*.pth``, which maps ``stream_app`` to the
checkout) never loads there and ``stream_app`` can only come from the wheel, which the test asserts.
``pip check`` in the fresh virtualenv then proves that the wheel's declared requirements are met by
what the project's virtualenv holds (the versions pinned in constraints.txt).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stream_app.config.blueprint import Blueprint
from stream_app.settings import REPO_ROOT, Settings
from stream_app.tools.launch import spawn
from stream_app.wire import codecs

from .support import WorkerProcess, collect, observation, produce, settings_env

# Not copied to build the wheel: VCS data, virtualenvs, local services' state, caches, build output.
NOT_SOURCES = shutil.ignore_patterns(
    ".git",
    ".venv",
    ".local",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "bench-results",
)
# Not passed to the installed package's processes: what would lead them back to the checkout's code or
# files, or away from their defaults (the package data; state in HOME's ~/.local/state/stream-app).
NOT_INHERITED = {
    "PYTHONPATH",
    "PYTHONHOME",
    "STREAM_APP_SCHEMAS_DIR",
    "STREAM_APP_TOPICS_FILE",
    "STREAM_APP_CATALOGUE_DIR",
    "STREAM_APP_DATA_DIR",
}
DATA_FOLDERS = ("avro_schemas", "catalogue", "topics")


def _run(argv: list[str], timeout: float = 120, **options: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **options)
    assert result.returncode == 0, f"{argv} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


class FreshVenv:
    """A virtualenv outside the checkout holding the wheel; dependencies shared from the project's."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.python = root / "bin" / "python"
        self.command = root / "bin" / "stream-app"
        self.home = root.parent / "home"  # HOME of its processes: where installed state goes
        self.cwd = root.parent / "run"  # their working directory, outside the checkout
        self.site = Path(
            _run(
                [str(self.python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
            ).stdout.strip()
        )

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` (an environment) as this virtualenv's, with nothing leading to the checkout."""
        env = {name: value for name, value in base.items() if name not in NOT_INHERITED}
        env.update(
            VIRTUAL_ENV=str(self.root),
            PATH=f"{self.root / 'bin'}{os.pathsep}{base.get('PATH', '')}",
            HOME=str(self.home),
        )
        return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the working tree (no build/ or egg-info left in the checkout)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(REPO_ROOT, source, symlinks=True, ignore=NOT_SOURCES)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(root / "dist"), str(source)])
    (built,) = (root / "dist").glob("stream_app-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> FreshVenv:
    root = tmp_path_factory.mktemp("installed") / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(root)])
    fresh = FreshVenv(root)
    shared = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    (fresh.site / "_stream_app_shared_site.pth").write_text("\n".join(shared) + "\n", encoding="utf-8")
    fresh.home.mkdir()
    fresh.cwd.mkdir()
    # pip itself comes from the shared folder; --ignore-installed: the editable install's metadata is
    # visible there too, and must be neither "already satisfied" nor a candidate for uninstalling
    pip = [str(fresh.python), "-m", "pip"]
    _run(
        [*pip, "install", "-q", "--no-index", "--no-deps", "--ignore-installed", str(wheel)],
        env=fresh.env(dict(os.environ)),
    )
    _run([*pip, "check"], env=fresh.env(dict(os.environ)))  # the wheel's requirements are all met
    return fresh


def test_wheel_ships_the_code_and_the_data_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {"stream_app/data/openapi.yaml", "stream_app/py.typed", "stream_app/tools/cli.py"}
    for folder in DATA_FOLDERS:  # catalogue/kustomization.yaml is deploy/k8s's, not the package's
        expected |= {
            f"stream_app/data/{folder}/{p.name}"
            for p in (REPO_ROOT / folder).iterdir()
            if p.name != "kustomization.yaml"
        }
    expected |= {f"stream_app/agents/{p.name}" for p in (REPO_ROOT / "agents").glob("*.py")}
    expected |= {f"stream_app/state/lua/{p.name}" for p in (REPO_ROOT / "stream_app/state/lua").glob("*.lua")}
    assert not expected - names, sorted(expected - names)
    # one package, stream_app (the agents are stream_app.agents), and the wheel's metadata
    tops = {name.partition("/")[0] for name in names}
    dist_info = next(top for top in tops if top.endswith(".dist-info"))
    assert tops == {"stream_app", dist_info}
    with zipfile.ZipFile(wheel) as archive:
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
        metadata = archive.read(f"{dist_info}/METADATA").decode()
    assert "stream-app = stream_app.tools.cli:main" in entry_points
    assert "Requires-Dist: aiohttp" in metadata


def _get(settings: Settings, path: str) -> tuple[int, bytes]:
    url = f"http://{settings.web_host}:{settings.web_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def _wait(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_installed_cli_and_worker_run_from_the_wheel(
    venv: FreshVenv,
    settings: Settings,
    blueprint: Blueprint,
    worker_env: dict[str, str],
    api_tokens_file: Path,
) -> None:
    assert not venv.cwd.is_relative_to(REPO_ROOT)
    assert not venv.root.is_relative_to(REPO_ROOT)
    # the CLI as the admin of the test's namespace (the harness's own environment)
    admin = venv.env({**os.environ, **settings_env(settings)})
    where = _run(
        [
            str(venv.python),
            "-c",
            "import json, sys, stream_app; from stream_app.settings import Settings; s = Settings(); "
            "print(json.dumps({'package': stream_app.__file__, 'schemas': str(s.schemas_dir), "
            "'catalogue': str(s.catalogue_dir), 'topics': str(s.topics_file), 'data': str(s.data_dir), "
            "'finders': [repr(f) for f in sys.meta_path]}))",
        ],
        env=admin,
        cwd=venv.cwd,
    )
    located = json.loads(where.stdout)
    package = venv.site / "stream_app"
    assert Path(located["package"]) == package / "__init__.py"
    for name in ("schemas", "catalogue", "topics"):
        assert Path(located[name]).is_relative_to(package / "data"), located
    assert Path(located["data"]) == venv.home / ".local" / "state" / "stream-app" / "faust"
    assert not any("Editable" in finder for finder in located["finders"]), located["finders"]

    assert "worker" in _run([str(venv.command), "--help"], env=admin, cwd=venv.cwd).stdout
    schemas = _run([str(venv.command), "schemas", "check"], env=admin, cwd=venv.cwd).stdout
    assert f"in {package / 'data' / 'avro_schemas'}" in schemas
    # the `blueprint` fixture applied the checkout's topics: the wheel's topics.toml wants the same
    plan = _run([str(venv.command), "topics", "plan"], env=admin, cwd=venv.cwd).stdout
    assert plan.strip().splitlines()[-1] == "0 to change", plan

    # a worker of the installed package, as the app's principal (like the start_worker fixture's)
    env = venv.env(
        {
            **os.environ,
            **worker_env,
            "STREAM_APP_LOG_FORMAT": "json",
            "STREAM_APP_API_TOKENS_FILE": str(api_tokens_file),
            # the opt-in reads, to fetch the API's document (package data) from the installed worker
            "STREAM_APP_WORKER_QUERY_API": "true",
        }
    )
    log_path = venv.cwd / "worker.log"
    proc = spawn([str(venv.command), "worker"], env, log_path, cwd=venv.cwd)
    worker = WorkerProcess(proc, log_path, settings)
    try:
        worker.wait_ready()
        argv = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert [a.decode() for a in argv[:2]] == [str(venv.python), str(venv.command)], argv
        _wait(lambda: _get(settings, "/readyz")[0] == 200, "/readyz 200")
        assert json.loads(_get(settings, "/readyz")[1])["ready"] is True
        # the API's document, read from the wheel's package data
        status, document = _get(settings, "/api/v1/openapi.yaml")
        assert (status, document) == (200, (REPO_ROOT / "docs" / "openapi.yaml").read_bytes())
        assert (venv.home / ".local" / "state" / "stream-app" / "faust" / settings.group_id).is_dir()

        record = observation(value=57.0)
        schema = blueprint.schemas.latest("observation")
        produce(
            settings, blueprint.input_topic("MAE").name, [(b"HN-AQ-HOANKIEM", codecs.encode(schema, record))]
        )
        consolidated = collect(
            settings,
            blueprint.topic_by_role("consolidated").name,
            "consolidated",
            lambda rows: any(r["scope"] == "ENTITY" and r["latest_value"] == 57.0 for r in rows),
            timeout=30,
        )
        row = next(r for r in consolidated.records if r["scope"] == "ENTITY")
        assert (row["latest_value"], row["count"]) == (57.0, 1)
    finally:
        code = worker.stop()
    assert code == 0, worker.log()[-4000:]
    assert "Traceback" not in worker.log(), worker.log()[-4000:]
