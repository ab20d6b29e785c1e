"""Fixtures for tests against the real local Kafka and Redis (``deploy/local/services up``).

Every test gets its own topic namespace, consumer group, Redis key prefix and HTTP port, so tests
never see each other's data. On the secured local services (SASL_SSL, ACLs, Redis ACL users over TLS)
the test harness acts as the admin (``make test`` exports ``deploy/local/services env admin``), while
every worker runs as the app's principal (``stream-app``), under the ACLs ``stream-app acl apply``
derives for the test's namespace, with a Redis user that may touch only the test's key prefix: so
every integration test also proves the app needs nothing more than it is granted.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
import redis
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient

from stream_app.api.auth import create_token
from stream_app.config.blueprint import Blueprint, load_blueprint
from stream_app.kafka import acl, topics
from stream_app.kafka.config import confluent_config
from stream_app.settings import REPO_ROOT, Settings
from stream_app.tools.launch import command, spawn

from .support import (
    API_TOKENS,
    SCREENS,
    ScreenProcess,
    ServicesRedis,
    WorkerProcess,
    api_address,
    free_port,
    registry_client,
    settings_env,
)

REDIS_APP_ACL = REPO_ROOT / "deploy" / "redis" / "app-user.acl"
REDIS_SCREEN_ACL = REPO_ROOT / "deploy" / "redis" / "screen-user.acl"


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    """Settings of the local services; fails loudly when they are not running."""
    settings = Settings()
    admin = AdminClient(confluent_config(settings, **{"log_level": 3}))
    try:
        admin.list_topics(timeout=10)
        redis.Redis.from_url(settings.redis_url.get_secret_value(), socket_timeout=3).ping()
    except Exception as exc:  # any failure means the same thing here
        pytest.fail(
            f"local services are not running or not reachable as configured ({exc}); run `make test`, or "
            '`deploy/local/services up && eval "$(deploy/local/services env admin)"` first'
        )
    return settings


def secured(settings: Settings) -> bool:
    """Whether the services authenticate (the default local services do)."""
    return settings.kafka_security_protocol.startswith("SASL")


def principal_env(name: str) -> dict[str, str]:
    """The STREAM_APP_* settings of a principal of the local services (``stream-app``, ``mae`` ...)."""
    folder = os.environ.get("SERVICES_SECRETS_DIR")
    if not folder:
        pytest.fail("SERVICES_SECRETS_DIR is not set: export `deploy/local/services env admin` first")
    env = {}
    for line in (Path(folder) / f"{name}.env").read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        if key:
            env[key] = value
    return env


def as_principal(settings: Settings, name: str) -> Settings:
    """``settings`` authenticating to Kafka as principal ``name``."""
    env = principal_env(name)
    return settings.model_copy(
        update={
            "kafka_sasl_username": env["STREAM_APP_KAFKA_SASL_USERNAME"],
            "kafka_sasl_password": Settings(
                kafka_sasl_password=env["STREAM_APP_KAFKA_SASL_PASSWORD"]
            ).kafka_sasl_password,
        }
    )


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    """Per-test settings: a fresh namespace for topics, group, Redis keys, and free HTTP ports (the
    worker's, the screen's)."""
    tag = uuid.uuid4().hex[:10]
    return base_settings.model_copy(
        update={
            "topic_namespace": f"t{tag}.",
            "redis_key_prefix": f"t{tag}",
            "web_port": free_port(),
            "screen_port": free_port(),
            "broker_session_timeout_s": 6.0,
            "batch_within_s": 0.02,
        }
    )


@pytest.fixture
def blueprint(settings: Settings) -> Iterator[Blueprint]:
    """The test's topics, created on the broker with their ACLs, and deleted afterwards."""
    bp = load_blueprint(settings)
    topics.apply(settings, bp.topics)
    if secured(settings):
        # the app's grants: its workers must do with exactly these (test_security applies everyone's)
        acl.apply(bp, only={f"User:{settings.acl_app_user}"})
    yield bp
    admin = AdminClient(confluent_config(settings, **{"log_level": 3}))
    for future in admin.delete_topics([t.name for t in bp.topics], operation_timeout=10).values():
        with contextlib.suppress(Exception):  # best-effort cleanup of a throwaway namespace
            future.result()
    if secured(settings):
        with contextlib.suppress(Exception):
            acl.revoke(bp)
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    for key in client.scan_iter(match=f"{settings.redis_key_prefix}:*", count=1000):
        client.delete(key)


@pytest.fixture
def real_registry(settings: Settings) -> Iterator[tuple[SchemaRegistryClient, Blueprint]]:
    """The real registry's client and the test's namespaced blueprint (skips without a registry); the
    test's subjects are deleted afterwards (soft, then permanently: Apicurio keeps nothing of them)."""
    with registry_client(settings) as client:
        yield client, load_blueprint(settings)
        prefix = settings.topic_namespace
        for name in client.get_subjects():
            if name.startswith(prefix):
                with contextlib.suppress(Exception):  # best-effort cleanup of a throwaway namespace
                    client.delete_subject(name)
                    client.delete_subject(name, permanent=True)


@pytest.fixture
def app_redis_url(settings: Settings) -> Iterator[str]:
    """A Redis user of the test's own that may touch only the test's key prefix, with the commands of
    ``deploy/redis/app-user.acl``: the worker's. Without Redis ACLs (an open Redis), the test's URL."""
    yield from _redis_user(settings, REDIS_APP_ACL, settings.redis_key_prefix)


@pytest.fixture
def screen_redis_url(settings: Settings) -> Iterator[str]:
    """The screen's Redis user for the test's key prefix: read-only (``deploy/redis/screen-user.acl``)."""
    yield from _redis_user(settings, REDIS_SCREEN_ACL, f"{settings.redis_key_prefix}-screen")


def _redis_user(settings: Settings, rules_file: Path, user: str) -> Iterator[str]:
    url = settings.redis_url.get_secret_value()
    parts = urlsplit(url)
    if not parts.username:
        yield url
        return
    admin = redis.Redis.from_url(url)
    password = secrets.token_hex(16)
    rules = next(
        line
        for line in rules_file.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    )
    # the rules file's own tokens, as they are: acl_setuser() takes them only parsed into its keywords;
    # redis-py leaves the sync client's execute_command() unannotated
    admin.execute_command(  # type: ignore[no-untyped-call]
        "ACL",
        "SETUSER",
        user,
        "reset",
        f">{password}",
        *rules.replace("{prefix}", settings.redis_key_prefix).split(),
    )
    netloc = f"{quote(user)}:{quote(password)}@{parts.hostname}:{parts.port}"
    yield urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    admin.acl_deluser(user)


@pytest.fixture
def worker_env(settings: Settings, app_redis_url: str) -> dict[str, str]:
    """The environment of a worker of this test: the app's principal and the test's Redis user."""
    env = {**settings_env(settings), "STREAM_APP_REDIS_URL": app_redis_url}
    if secured(settings):
        app = principal_env(settings.acl_app_user)
        env["STREAM_APP_KAFKA_SASL_USERNAME"] = app["STREAM_APP_KAFKA_SASL_USERNAME"]
        env["STREAM_APP_KAFKA_SASL_PASSWORD"] = app["STREAM_APP_KAFKA_SASL_PASSWORD"]
    return env


@pytest.fixture(scope="session")
def api_tokens_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The API tokens every test worker accepts: a viewer's and an operator's (``support.API_TOKENS``)."""
    path = tmp_path_factory.mktemp("api") / "tokens.toml"
    for role in ("viewer", "operator"):
        API_TOKENS[role] = create_token(path, f"test-{role}", role)
    return path


@pytest.fixture
def consumer_driver(request: pytest.FixtureRequest) -> str:
    """The Kafka client the test's workers consume with (STREAM_APP_CONSUMER_DRIVER): the test's
    parameter when it is parametrized over it (``indirect=True``), else the environment's, or the setting's
    default (aiokafka)."""
    default = os.environ.get("STREAM_APP_CONSUMER_DRIVER", Settings.model_fields["consumer_driver"].default)
    driver: str = getattr(request, "param", default)
    return driver


@pytest.fixture
def start_worker(
    tmp_path: Path, worker_env: dict[str, str], api_tokens_file: Path, consumer_driver: str
) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: start a worker for given settings (and extra env); all are stopped at teardown."""
    started: list[WorkerProcess] = []
    driver = {"STREAM_APP_CONSUMER_DRIVER": consumer_driver}

    def start(settings: Settings, wait: bool = True, **extra_env: str) -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(started)}.log"
        own = {**settings_env(settings)}
        for name in (
            "STREAM_APP_REDIS_URL",
            "STREAM_APP_KAFKA_SASL_USERNAME",
            "STREAM_APP_KAFKA_SASL_PASSWORD",
        ):
            if name in worker_env:
                own[name] = worker_env[name]
        env = {
            **os.environ,
            **own,
            "STREAM_APP_LOG_FORMAT": "json",
            "STREAM_APP_API_TOKENS_FILE": str(api_tokens_file),
            **driver,
            **extra_env,
        }
        worker = WorkerProcess(spawn(command("worker"), env, log_path), log_path, settings)
        started.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def start_screen(
    settings: Settings,
    blueprint: Blueprint,
    screen_redis_url: str,
    api_tokens_file: Path,
    tmp_path: Path,
) -> Iterator[Callable[..., ScreenProcess]]:
    """Factory: ``stream-app screen`` (the page, the query API, live alerts) on ``settings.screen_port``, as
    the center (its Kafka principal, a read-only Redis user), forwarding directives to the test's workers;
    started without waiting (``support.api`` waits for it: its start overlaps the worker's). Stopped at
    teardown, failing the test if it logged an unhandled request error."""
    started: list[ScreenProcess] = []

    def start(**extra_env: str) -> ScreenProcess:
        if secured(settings) and not started:  # the center's grants on the test's topics
            acl.apply(blueprint, only={f"User:{settings.acl_center_user}"})
        env = {
            **os.environ,
            **settings_env(settings),
            "STREAM_APP_REDIS_URL": screen_redis_url,
            "STREAM_APP_API_TOKENS_FILE": str(api_tokens_file),
            "STREAM_APP_LOG_FORMAT": "json",
        }
        if secured(settings):
            center = principal_env("center")
            env["STREAM_APP_KAFKA_SASL_USERNAME"] = center["STREAM_APP_KAFKA_SASL_USERNAME"]
            env["STREAM_APP_KAFKA_SASL_PASSWORD"] = center["STREAM_APP_KAFKA_SASL_PASSWORD"]
        log_path = tmp_path / f"screen-{len(started)}.log"
        screen = ScreenProcess(
            spawn(command("screen"), {**env, **extra_env}, log_path), log_path, name="screen"
        )
        started.append(screen)
        SCREENS[f"http://{settings.screen_host}:{settings.screen_port}"] = screen
        return screen

    yield start
    for screen in started:
        screen.stop(10)
    SCREENS.pop(f"http://{settings.screen_host}:{settings.screen_port}", None)
    for screen in started:
        assert "Error handling request" not in screen.log()


@pytest.fixture
def screen(settings: Settings, start_screen: Callable[..., ScreenProcess]) -> str:
    """A ``stream-app screen`` answering; its address."""
    start_screen()
    return api_address(settings)


@pytest.fixture(scope="session")
def services_credentials(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory of ``deploy/local/services`` with its local CA, certificates and secrets, made
    once (2-3 s) and copied into each private Redis's."""
    state = tmp_path_factory.mktemp("services-template")
    server = ServicesRedis(state)
    server.up()
    server.down()
    return state


@pytest.fixture
def shipped_redis(tmp_path: Path, services_credentials: Path) -> Iterator[Callable[..., ServicesRedis]]:
    """Factory: a private Redis started by ``deploy/local/services up redis`` (the shipped config: TLS,
    ACL file, AOF + RDB) in its own state directory; ``persistence="off"`` for one that forgets. Each is
    stopped at teardown."""
    started: list[ServicesRedis] = []

    def make(persistence: str = "durable") -> ServicesRedis:
        server = ServicesRedis(tmp_path / f"redis-{len(started)}", services_credentials, persistence)
        server.up()
        started.append(server)
        return server

    yield make
    for server in started:
        with contextlib.suppress(BaseException):  # already down, or killed by the test
            server.down()
