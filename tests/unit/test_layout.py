"""The package's layers import one way: each may use the ones below it, never one above.

    base (settings, exceptions, exit_codes, logs, paths) < domain < wire < config < ops < state < kafka < api
    < screen < agents < pipeline < tools

The domain is pure: it imports neither Faust, Redis, Kafka nor the network. A cycle between layers,
or a new top-level module nobody placed, fails here with the import that breaks the rule.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = (
    "base", "domain", "wire", "config", "ops", "state", "kafka", "api", "screen", "agents", "pipeline",
    "tools",
)  # fmt: skip
BASE_MODULES = frozenset({"settings", "exceptions", "exit_codes", "logs", "paths"})
ENTRY_POINTS = frozenset({"__main__"})  # `python -m stream_app`: the command line, the top of the stack
PURE_FORBIDDEN = ("faust", "mode", "redis", "aiokafka", "confluent_kafka", "aiohttp", "kafka", "socket")


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "stream_app":
        return None
    if len(parts) == 1 or parts[1] in BASE_MODULES:
        return "base"
    if parts[1] in ENTRY_POINTS:
        return "tools"
    return parts[1]


def _sources() -> Iterator[tuple[str, Path]]:
    """(module name, file) of every module, the agents under their installed name."""
    for path in sorted((ROOT / "stream_app").rglob("*.py")):
        relative = path.relative_to(ROOT)
        if relative.parts[1] == "agents":
            continue  # a link to agents/, read below
        yield ".".join(relative.with_suffix("").parts).removesuffix(".__init__"), path
    for path in sorted((ROOT / "agents").rglob("*.py")):
        yield "stream_app.agents." + path.stem, path


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
            for alias in node.names:  # `from stream_app import wire`-style imports name a package
                yield f"{node.module}.{alias.name}", node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno


def test_every_module_is_in_a_layer() -> None:
    unplaced = sorted(
        module for module, _ in _sources() if module != "stream_app" and _layer(module) not in LAYERS
    )
    assert not unplaced, f"modules in no layer (add them to one, or to LAYERS): {unplaced}"


def test_imports_flow_down_the_layers() -> None:
    upward = []
    for module, path in _sources():
        own = LAYERS.index(_layer(module) or "base")
        for imported, line in _imports(path):
            layer = _layer(imported)
            if layer in LAYERS and LAYERS.index(layer) > own:
                upward.append(
                    f"{path.relative_to(ROOT)}:{line} ({_layer(module)}) imports {imported} ({layer})"
                )
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


@pytest.mark.parametrize("package", ["domain"])
def test_the_domain_is_pure(package: str) -> None:
    found = []
    for module, path in _sources():
        if _layer(module) != package:
            continue
        for imported, line in _imports(path):
            if imported.split(".")[0] in PURE_FORBIDDEN:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    assert not found, "the domain must stay pure:\n" + "\n".join(found)
