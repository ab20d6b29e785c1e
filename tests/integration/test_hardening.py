"""The review's hardening on real processes: Faust's /router and /table are not served by a worker; the
app's Redis user runs its scripts without EVAL or SELECT, NOSCRIPT after a script flush included; and
``deploy/local/services``, run from nothing in a private state directory on ports of its own, puts no
secret on any command line, leaves every secret 0600 in 0700 directories, and gives Redis and the schema
registry certificates of their own that the broker refuses from a client (the registry: TLS only). The
shared services are only looked at (their command lines)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import stat
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from stream_app.config.blueprint import Blueprint
from stream_app.settings import Settings
from stream_app.state.store import StateStore, connect

from .conftest import secured
from .support import SERVICES, ServicesRedis, WorkerProcess, free_port, wait_until

SECRET_DIRS = ("secrets",)
# files holding a secret by what they are (their content is checked too: see _secret_files)
SECRET_FILES = ("kafka/server.properties", "redis/users.acl")
SKIPPED = ("kafka/lib", "registry/app")  # the broker's jars, the registry's bundle (links to the shared ones)
SCAN_LIMIT = 4 * 1024 * 1024  # bytes of a file searched for secret values (logs can be huge)


# ---------------------------------------------------------------------------------- the worker


def _status(settings: Settings, path: str) -> int:
    url = f"http://{settings.web_host}:{settings.web_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_a_worker_serves_its_own_pages_but_not_fausts_router_and_tables(
    settings: Settings, blueprint: Blueprint, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker(settings)
    # ready once its partitions are assigned and its dependencies answered (a few seconds after start)
    wait_until(lambda: _status(settings, "/readyz") == 200, 30, "the worker to be ready")
    for path in ("/metrics", "/livez", "/readyz"):
        assert _status(settings, path) == 200, path
    for path in ("/router/", "/table/", "/graph/", "/stats/", "/assignment/", "/performance/"):
        assert _status(settings, path) == 404, path


# ---------------------------------------------------------------------------------- Redis scripts


def _command_calls(admin: Any) -> dict[str, int]:
    """Calls per command since Redis started (INFO commandstats), by lower-case name."""
    stats: dict[str, Any] = admin.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()}


def test_the_apps_redis_user_runs_its_scripts_without_eval_or_select(
    settings: Settings, shipped_redis: Callable[..., ServicesRedis]
) -> None:
    server = shipped_redis("off")
    app, admin = server.client("stream-app"), server.client("admin")
    refusals: tuple[Callable[[], object], ...] = (
        lambda: app.eval("return 1", 0),  # a script it did not ship
        lambda: app.execute_command("SELECT", 1),  # another database
    )
    for refused in refusals:
        with pytest.raises(redis.exceptions.NoPermissionError):
            refused()
    own = settings.model_copy(
        update={"redis_url": SecretStr(server.url("stream-app")), "redis_key_prefix": ServicesRedis.PREFIX}
    )

    async def marks_survive_a_script_flush() -> None:
        client = connect(own)
        store = StateStore(client, own)
        try:
            await store.commit([], applied={"internal:0": (5, None)})  # the applied-mark script
            admin.script_flush()  # as a Redis restarted without its scripts
            await store.commit([], applied={"internal:0": (7, None)})  # loads it again, by itself
            assert (await store.checkpoint(["internal:0"])).applied == {"internal:0": 7}
        finally:
            await store.aclose()
            await client.aclose()

    asyncio.run(marks_survive_a_script_flush())
    calls = _command_calls(admin)
    assert calls.get("evalsha", 0) >= 2, calls
    assert calls.get("script|load", 0) >= 2, calls  # once at first, once after the flush
    # the refused attempts above count as rejected calls, not as calls
    assert calls.get("eval", 0) == 0, calls
    assert calls.get("select", 0) == 0, calls


# ---------------------------------------------------------------------------------- the local services


@dataclass
class PrivateServices:
    """``deploy/local/services`` (Kafka, Redis and the schema registry, no monitoring) in a state directory
    of the test's own."""

    state: Path
    env: dict[str, str]
    execs: Path | None  # the command line of every program the first ``up`` ran (strace), when traced

    def run(self, *args: str) -> str:
        done = subprocess.run(
            ["bash", str(SERVICES), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"services {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
        return done.stdout + done.stderr

    def port(self, name: str) -> int:
        return int(self.env[f"SERVICES_{name}_PORT"])

    def tls(self, name: str) -> str:
        return str(self.state / "tls" / name)


@pytest.fixture(scope="module")
def private_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateServices]:
    """A private ``services up`` from nothing: a new CA, keys, secrets, SCRAM users, a broker and Redis;
    under ``strace`` (every program's command line, detaching from each once it runs, so the daemons run
    free) when it is installed. The broker's jars and the registry's bundle: the shared state's, linked (no
    download) when there."""
    state = tmp_path_factory.mktemp("private-services")
    shared = Path(os.environ.get("SERVICES_SECRETS_DIR", "/nonexistent")).parent
    for downloaded in ("kafka/lib", "registry/app"):
        if (shared / downloaded).is_dir():
            (state / downloaded).parent.mkdir(exist_ok=True)
            (state / downloaded).symlink_to(shared / downloaded)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SERVICES_", "STREAM_APP_"))}
    env.update(SERVICES_STATE_DIR=str(state), SERVICES_MONITORING="0")
    for name in ("KAFKA", "KAFKA_CONTROLLER", "KAFKA_BROKER", "KAFKA_MTLS", "REDIS", "REGISTRY"):
        env[f"SERVICES_{name}_PORT"] = str(free_port())
    strace = shutil.which("strace")
    execs = state.parent / f"{state.name}.execs" if strace else None
    services = PrivateServices(state, env, execs)
    if strace and execs:
        trace = [
            strace,
            "-f",
            "-qq",
            "-b",
            "execve",
            "-e",
            "trace=execve",
            "-e",
            "signal=none",
            "-s",
            "65536",
        ]
        done = subprocess.run(
            [*trace, "-o", str(execs), "bash", str(SERVICES), "up"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"services up exited {done.returncode}:\n{done.stdout}{done.stderr}")
    else:
        services.run("up")
    yield services
    services.run("down")


def _secrets(secrets_dir: Path) -> dict[str, str]:
    """Every secret value of a state directory's ``secrets`` (passwords; not the .env files made of them)."""
    return {
        path.name: path.read_text(encoding="utf-8").strip()
        for path in secrets_dir.iterdir()
        if path.is_file() and not path.name.endswith(".env")
    }


def _secret_files(state: Path, values: dict[str, str]) -> list[Path]:
    """The files of ``state`` that hold a secret: keys, keystores, the secrets, the broker's and Redis's
    configuration, and any other file (up to SCAN_LIMIT) in which a secret value appears."""
    found: list[Path] = []
    for root, dirs, files in os.walk(state):
        here = Path(root)
        dirs[:] = [d for d in dirs if str((here / d).relative_to(state)) not in SKIPPED and d != "data"]
        for name in files:
            path = here / name
            relative = str(path.relative_to(state))
            if path.is_symlink() or not path.is_file():
                continue
            by_kind = (
                name.endswith((".key", ".p12", ".env", "users.acl", "redis.conf", "server.properties"))
                or relative in SECRET_FILES
                or path.parent.name in SECRET_DIRS
            )
            if by_kind or _holds_one_of(path, values.values()):
                found.append(path)
    return found


def _holds_one_of(path: Path, values: Any) -> bool:
    with path.open("rb") as file:
        content = file.read(SCAN_LIMIT)
    return any(value.encode() in content for value in values if value)


def _loose(path: Path, allowed: int) -> bool:
    """Whether ``path`` gives group or others more than ``allowed`` (of the 0o077 bits)."""
    return bool(stat.S_IMODE(path.stat().st_mode) & 0o077 & ~allowed)


def _mode_problems(state: Path, values: dict[str, str]) -> list[str]:
    problems: list[str] = []
    holding: set[Path] = set()
    for path in _secret_files(state, values):
        holding.add(path.parent)
        if _loose(path, 0):
            problems.append(f"{oct(stat.S_IMODE(path.stat().st_mode))} {path}")
    # the directories that hold a secret, and the data directories (the broker's metadata log holds the
    # SCRAM credentials; Redis's the reporters' values)
    holding |= {p for p in state.rglob("data") if p.is_dir() and "kafka/lib" not in str(p)}
    holding.discard(state)  # the state directory itself may be where the user chose (the repo's .local)
    for directory in sorted(holding):
        if _loose(directory, 0):
            problems.append(f"{oct(stat.S_IMODE(directory.stat().st_mode))} {directory}/")
    return problems


def _command_lines() -> dict[int, str]:
    """Every running process's command line (arguments joined by spaces)."""
    lines: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                lines[int(proc.name)] = (
                    (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
                )
            except OSError:  # gone meanwhile
                continue
    return lines


def _on_command_lines(values: dict[str, str], lines: Any) -> list[str]:
    return [f"{name} in {line[:200]!r}" for line in lines for name, value in values.items() if value in line]


def test_services_up_puts_no_secret_on_a_command_line(private_services: PrivateServices) -> None:
    values = _secrets(private_services.state / "secrets")
    assert {
        "tls-store",
        "kafka-admin",
        "kafka-stream-app",
        "redis-admin",
        "redis-stream-app",
    } <= values.keys()
    assert not _on_command_lines(values, _command_lines().values()), "a running process's command line"
    if private_services.execs is None:
        pytest.skip("strace is not installed: the command lines of the programs up ran are not recorded")
    execs = private_services.execs.read_text(encoding="utf-8", errors="replace")
    for program in ("openssl", "keytool", "java", "redis-cli", "redis-server"):
        # an argument of its own (the daemons' under nohup, whose own exec is not followed)
        assert f'"{program}"' in execs, f"{program} not traced"
    assert "@" + str(private_services.state / "kafka" / ".format-args") in execs, "SCRAM users from a file"
    assert not _on_command_lines(values, execs.splitlines())


def test_services_keep_every_secret_0600_in_0700_directories(private_services: PrivateServices) -> None:
    state = private_services.state
    values = _secrets(state / "secrets")
    files = _secret_files(state, values)
    for expected in (
        "kafka/server.properties",
        "redis/users.acl",
        "tls/redis.key",
        "tls/ca.key",
        "tls/server.p12",
    ):
        assert state / expected in files, expected
    assert not list(state.glob("kafka/.format-args*")), "the SCRAM argument file outlives the format"
    assert not _mode_problems(state, values)


def _peer_certificate(port: int, ca: str) -> bytes:
    context = ssl.create_default_context(cafile=ca)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def _pem_der(path: str) -> bytes:
    return ssl.PEM_cert_to_DER_cert(Path(path).read_text(encoding="ascii"))


def _mtls_admin(services: PrivateServices, cert: str, key: str) -> AdminClient:
    return AdminClient(
        {
            "bootstrap.servers": f"127.0.0.1:{services.port('KAFKA_MTLS')}",
            "security.protocol": "SSL",
            "ssl.ca.location": services.tls("ca.pem"),
            "ssl.certificate.location": cert,
            "ssl.key.location": key,
            "log_level": 0,
        }
    )


def test_redis_has_a_certificate_of_its_own_that_the_broker_refuses_from_a_client(
    private_services: PrivateServices,
) -> None:
    services = private_services
    redis_pem, redis_key = services.tls("redis.pem"), services.tls("redis.key")
    served = _peer_certificate(services.port("REDIS"), services.tls("ca.pem"))
    assert served == _pem_der(redis_pem), "Redis presents its own certificate"
    assert served != _pem_der(services.tls("server.pem")), "not the broker's (CN=kafka-broker, a super user)"
    text = subprocess.run(
        ["openssl", "x509", "-in", redis_pem, "-noout", "-subject", "-ext", "extendedKeyUsage"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "CN = redis-server" in text, text
    assert "TLS Web Server Authentication" in text, text
    assert "Client Authentication" not in text, text
    # the listener works for a principal's client certificate ...
    admin = _mtls_admin(services, services.tls("clients/admin.pem"), services.tls("clients/admin.key"))
    assert admin.list_topics(timeout=20).brokers
    # ... and refuses Redis's: no metadata, no topic, nothing
    with pytest.raises(KafkaException):
        _mtls_admin(services, redis_pem, redis_key).list_topics(timeout=8)


def test_the_schema_registry_serves_tls_only_with_a_certificate_of_its_own(
    private_services: PrivateServices,
) -> None:
    services = private_services
    pem, key = services.tls("registry.pem"), services.tls("registry.key")
    served = _peer_certificate(services.port("REGISTRY"), services.tls("ca.pem"))
    assert served == _pem_der(pem), "the registry presents its own certificate"
    text = subprocess.run(
        ["openssl", "x509", "-in", pem, "-noout", "-subject", "-ext", "extendedKeyUsage"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "CN = schema-registry" in text, text
    assert "TLS Web Server Authentication" in text, text
    assert "Client Authentication" not in text, text
    # no plain HTTP on its port (Quarkus's own HTTP port is turned off: insecure-requests=disabled)
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"http://127.0.0.1:{services.port('REGISTRY')}/health/ready", timeout=5)
    assert f"https://127.0.0.1:{services.port('REGISTRY')}/apis/ccompat/v7" in services.run("status")
    with pytest.raises(KafkaException):
        _mtls_admin(services, pem, key).list_topics(timeout=8)


def test_up_brings_an_older_state_directory_to_the_new_modes_and_certificate(
    private_services: PrivateServices,
) -> None:
    """What an older script left: 0644 server.properties, an open tls directory, Redis on the broker's
    certificate and no certificate of its own. ``up`` on the running services mends it all in place."""
    services, state = private_services, private_services.state
    admin = redis.Redis.from_url(
        f"rediss://admin:{(state / 'secrets' / 'redis-admin').read_text(encoding='utf-8').strip()}"
        f"@127.0.0.1:{services.port('REDIS')}/0?ssl_ca_certs={services.tls('ca.pem')}",
        socket_timeout=5,
    )
    # both at once: Redis checks that the certificate and the key match
    tls = ("tls-cert-file", services.tls("server.pem"), "tls-key-file", services.tls("server.key"))
    admin.execute_command("CONFIG", "SET", *tls)  # type: ignore[no-untyped-call]  # sync client: unannotated
    admin.close()
    for name in ("redis.pem", "redis.key"):
        (state / "tls" / name).unlink()
    (state / "kafka" / "server.properties").chmod(0o644)
    (state / "tls").chmod(0o755)
    (state / "secrets" / "tls-store").chmod(0o644)
    assert len(_mode_problems(state, _secrets(state / "secrets"))) == 3  # the check sees what is wrong
    output = services.run("up")
    assert "its own certificate" in output, output
    assert _peer_certificate(services.port("REDIS"), services.tls("ca.pem")) == _pem_der(
        services.tls("redis.pem")
    )
    assert not _mode_problems(state, _secrets(state / "secrets"))


def test_no_running_process_shows_a_secret_of_the_shared_services(base_settings: Settings) -> None:
    """The shared services (and the cluster profile's, when made) as they run now: their workers, brokers,
    Redis and tools, and everybody else's processes, show none of their secrets on a command line."""
    if not secured(base_settings):
        pytest.skip("the services do not authenticate: no secrets")
    shared = Path(os.environ["SERVICES_SECRETS_DIR"]).parent
    values: dict[str, str] = {}
    for folder in (shared / "secrets", shared / "cluster" / "secrets"):
        if folder.is_dir():
            values.update({f"{folder.parent.name}/{k}": v for k, v in _secrets(folder).items()})
    assert values
    assert not _on_command_lines(values, _command_lines().values())
