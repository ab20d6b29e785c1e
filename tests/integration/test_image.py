"""The container image, built and run (issue 30): ``deploy/container/Containerfile`` built with buildah
(Debian's; no daemon) on a base made from Debian's packages (``deploy/container/debian-base``: no
container registry is reachable here), then the screen started from it — ``buildah run --isolation
chroot`` on the host's network, as the image's user, with only the CA certificate mounted — answering
``/livez`` and ``/readyz`` against the real services. Skipped, with the reason, where buildah or
debootstrap is missing or the test does not run as root (``deploy/local/services image-tools`` installs
them). ``podman run`` does not work in this machine's own container (``crun: setrlimit``): buildah's
chroot isolation does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_app.config.blueprint import Blueprint
from stream_app.kafka import acl
from stream_app.settings import REPO_ROOT, Settings

from .conftest import principal_env, secured
from .support import free_port, settings_env

BASE = "localhost/stream-app-base:bookworm"
STORAGE = ["--storage-driver", os.environ.get("BUILDAH_STORAGE_DRIVER", "vfs")]


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def _need_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("building the image with buildah here needs root")
    missing = [tool for tool in ("buildah", "podman", "debootstrap") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: deploy/local/services image-tools installs them")


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    """The image built from this checkout (the base made once and kept), removed afterwards."""
    _need_tools()
    if _run(["buildah", *STORAGE, "inspect", "--type", "image", BASE], 60).returncode != 0:
        made = _run([str(REPO_ROOT / "deploy" / "container" / "debian-base"), BASE], 900)
        assert made.returncode == 0, f"debian-base failed:\n{made.stdout[-3000:]}\n{made.stderr[-3000:]}"
    name = f"localhost/stream-app-test:{uuid.uuid4().hex[:8]}"
    built = _run(
        [
            "buildah", *STORAGE, "bud", "--isolation", "chroot", "--layers=false",
            "--build-arg", f"PYTHON_IMAGE={BASE}",
            "-f", str(REPO_ROOT / "deploy" / "container" / "Containerfile"), "-t", name, str(REPO_ROOT),
        ],
        900,
    )  # fmt: skip
    assert built.returncode == 0, f"buildah bud failed:\n{built.stdout[-4000:]}\n{built.stderr[-4000:]}"
    yield name
    _run(["buildah", *STORAGE, "rmi", "--force", name], 120)


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - the local screen
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def test_the_image_runs_the_screen_and_answers_its_probes(
    image: str, settings: Settings, blueprint: Blueprint, screen_redis_url: str, tmp_path: Path
) -> None:
    """As deploy/k8s runs it: the image's own user and entrypoint, settings from the environment, the
    CA as a mounted file; the screen answers /livez at once and /readyz once it reads the center's alerts."""
    port = free_port()
    env = {
        **settings_env(settings),
        "STREAM_APP_REDIS_URL": screen_redis_url,
        "STREAM_APP_SCREEN_PORT": str(port),
    }
    env.update(  # the registry (and the framing) as the services' environment gives them
        {
            k: v
            for k, v in os.environ.items()
            if k.startswith(("STREAM_APP_SCHEMA_REGISTRY", "STREAM_APP_OUTPUT"))
        }
    )
    if secured(settings):
        acl.apply(blueprint, only={f"User:{settings.acl_center_user}"})  # the center's grants on the topics
        center = principal_env("center")
        env["STREAM_APP_KAFKA_SASL_USERNAME"] = center["STREAM_APP_KAFKA_SASL_USERNAME"]
        env["STREAM_APP_KAFKA_SASL_PASSWORD"] = center["STREAM_APP_KAFKA_SASL_PASSWORD"]
    # the local CA (its directory holds private keys too, 0600): a readable copy, mounted where the
    # settings and the Redis URL name it
    ca = Path(env["STREAM_APP_KAFKA_SSL_CA_FILE"]) if env.get("STREAM_APP_KAFKA_SSL_CA_FILE") else None
    certs = tmp_path / "certs"
    certs.mkdir(mode=0o755)
    mounts: list[str] = []
    if ca is not None:
        shutil.copyfile(ca, certs / ca.name)
        (certs / ca.name).chmod(0o644)
        mounts = ["--mount", f"type=bind,source={certs},destination={ca.parent},ro"]
    container = _run(["buildah", *STORAGE, "from", image], 120)
    assert container.returncode == 0, container.stderr
    name = container.stdout.strip()
    argv = ["buildah", *STORAGE, "run", "--isolation", "chroot", "--network", "host", *mounts]
    for key, value in env.items():
        argv += ["--env", f"{key}={value}"]
    log = tmp_path / "screen.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*argv, name, "--", "stream-app", "screen"], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while _get(f"http://127.0.0.1:{port}/livez") != 200:
            assert proc.poll() is None, f"the screen exited:\n{log.read_text(errors='replace')[-3000:]}"
            assert time.monotonic() < deadline, f"no /livez:\n{log.read_text(errors='replace')[-3000:]}"
            time.sleep(0.5)
        while _get(f"http://127.0.0.1:{port}/readyz") != 200:
            assert time.monotonic() < deadline, f"never ready:\n{log.read_text(errors='replace')[-3000:]}"
            time.sleep(0.5)
        whoami = _run(["buildah", *STORAGE, "run", "--isolation", "chroot", name, "--", "id", "-u"], 60)
        assert whoami.stdout.strip() == "10001", "the image runs as its own user, not root"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        _run(["buildah", *STORAGE, "rm", name], 60)
