"""The review's hardening, as far as it shows without services: Faust's own web pages are not served,
the Redis users' rules grant no EVAL and no SELECT, and the local services' scripts put no secret on a
command line. The same is proved on real processes by tests/integration/test_hardening.py."""

from __future__ import annotations

import re
from pathlib import Path

import faust
import pytest

from stream_app.pipeline.app import faust_settings
from stream_app.settings import REPO_ROOT, Settings

REDIS_ACLS = ("app-user.acl", "screen-user.acl")
SCRIPTS = (REPO_ROOT / "deploy" / "local" / "services", REPO_ROOT / "deploy" / "local" / "cluster")


def test_the_worker_serves_none_of_fausts_own_pages() -> None:
    app = faust.App("hardening-test", **faust_settings(Settings()))
    served = {prefix for prefix, _ in app.web._enabled_blueprints()}
    # "": Faust's production index ({"status": "OK"}), which tells nothing about the worker
    assert served == {""}, served


def _rules(name: str) -> list[str]:
    text = (REPO_ROOT / "deploy" / "redis" / name).read_text(encoding="utf-8")
    line = next(line for line in text.splitlines() if line and not line.startswith("#"))
    return line.split()


@pytest.mark.parametrize("name", REDIS_ACLS)
def test_the_redis_users_may_neither_eval_nor_select(name: str) -> None:
    rules = _rules(name)
    assert "+eval" not in rules
    assert "+select" not in rules
    assert not any(rule.startswith(("+@all", "+@scripting", "+@connection")) for rule in rules), rules


def test_the_apps_redis_user_runs_its_scripts_by_hash_only() -> None:
    rules = _rules("app-user.acl")
    assert {"+evalsha", "+script|load", "+script|exists"} <= set(rules)
    assert not any(
        rule.startswith("+script") and rule not in {"+script|load", "+script|exists"} for rule in rules
    )


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_the_scripts_put_no_password_on_a_command_line(script: Path) -> None:
    text = script.read_text(encoding="utf-8")
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "umask 077" in code
    assert not re.search(r'--add-scram "SCRAM', code), "SCRAM passwords go through a java argument file"
    assert not re.search(r"pass:\$|-storepass \"", code), "the keystore password goes through a file"
    assert not re.search(r"redis-cli[^\n]*(-a |-u )", code), "redis-cli's password goes through REDISCLI_AUTH"
