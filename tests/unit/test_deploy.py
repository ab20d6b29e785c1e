"""The deployment artefacts, checked offline: ``deploy/k8s/`` (its folders and each overlay as rendered) and
``deploy/container/Containerfile``.

Every Kubernetes manifest validates against the schemas of one Kubernetes version that
kubernetes-validate ships (no cluster, no network), strictly: a field Kubernetes does not know is an
error, as ``kubectl apply --validate=strict`` would make it. The ServiceMonitor is a custom resource
that no such schema covers: it validates against a schema of the fields used here. Then what
docs/deploy.md promises: probes on the paths and ports the code serves, resources on every container,
a disruption budget over the workers, non-root pods on a read-only root, credentials from Secrets, a
scrape of the workers' port by name under the job the alert rules select, settings that exist, a
multi-stage image that installs the wheel and runs as a fixed non-root user.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Union, get_args, get_origin
from urllib.parse import parse_qs, urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import SecretBytes, SecretStr

from stream_app.config.topics import load_topics
from stream_app.settings import REPO_ROOT, Settings
from stream_app.tools import cli_parser

K8S = REPO_ROOT / "deploy" / "k8s"
# The folders of manifests (each a kustomization); the overlays are rendered from them below.
SOURCES = ("base", "setup", "monitoring")
CONTAINERFILE = REPO_ROOT / "deploy" / "container" / "Containerfile"
# The schemas the manifests are checked against. They use only APIs stable for years before it
# (v1, apps/v1, policy/v1); raise it with the oldest cluster the project deploys to.
KUBERNETES_VERSION = "1.33.0"
APP_UID = 10001
# Never applied (docs/deploy.md): placeholders.
NOT_IN_KUSTOMIZATION = {"secrets.example.yaml", "kustomization.yaml"}
PLACEHOLDER = "REPLACE_ME"
# Secret keys that name a principal rather than hold a secret (the Kafka users: ACL subjects).
NOT_SECRET_KEYS = {"username"}

# The ServiceMonitor's fields used here, as the Prometheus Operator's CRD (monitoring.coreos.com/v1)
# types them; anything else is refused, so a misspelt field fails here and not silently in a cluster.
_DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}, "labels": _LABELS},
        },
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "selector": {
                    "type": "object",
                    "required": ["matchLabels"],
                    "additionalProperties": False,
                    "properties": {"matchLabels": _LABELS},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": _DURATION,
                            "scrapeTimeout": _DURATION,
                        },
                    },
                },
            },
        },
    },
}


# ---------------------------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class Manifest:
    file: str
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc["kind"])

    @property
    def name(self) -> str:
        return str(self.doc["metadata"]["name"])

    def __str__(self) -> str:
        return f"{self.file}:{self.kind}/{self.name}"


def _load(path: Path) -> list[dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
    assert all(isinstance(doc, dict) for doc in docs), path
    return docs


def _manifests() -> list[Manifest]:
    found = [
        Manifest(f"{source}/{path.name}", doc)
        for source in SOURCES
        for path in sorted((K8S / source).glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in _load(path)
    ]
    assert found, f"no manifest in {K8S}"
    return found


MANIFESTS = _manifests()
CUSTOM_KINDS = {"ServiceMonitor"}


def _one(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [m.doc for m in MANIFESTS if m.kind == kind and m.name == name]
    return doc


def _all(kind: str) -> list[dict[str, Any]]:
    return [m.doc for m in MANIFESTS if m.kind == kind]


WORKER = _one("Deployment", "stream-app-worker")
SCREEN = _one("Deployment", "stream-app-screen")
WORKER_SERVICE = _one("Service", "stream-app")
SCREEN_SERVICE = _one("Service", "stream-app-screen")
CONFIG = _one("ConfigMap", "stream-app-config")["data"]


def _pod(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = _pod(deployment)["containers"]
    return dict(container)


def _containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for deployment in [*_all("Deployment"), *_all("Job")]:
        pod = _pod(deployment)
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            yield f"{deployment['metadata']['name']}/{container['name']}", container


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def _port(container: dict[str, Any], port: int | str) -> int:
    """A container port by number or by name."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return int(number)


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def _mounted(deployment: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    """The volume a file path lies in, and the path inside the volume."""
    volumes = {v["name"]: v for v in _pod(deployment)["volumes"]}
    for mount in _container(deployment)["volumeMounts"]:
        if PurePosixPath(path).is_relative_to(mount["mountPath"]):
            return volumes[mount["name"]], str(PurePosixPath(path).relative_to(mount["mountPath"]))
    raise AssertionError(f"{path}: on no volume of {deployment['metadata']['name']}")


def _secret_keys() -> dict[str, dict[str, str]]:
    return {
        doc["metadata"]["name"]: doc.get("stringData", {}) | doc.get("data", {}) for doc in _all("Secret")
    }


def _settings_env() -> dict[str, str]:
    """STREAM_APP_* variable of each settings field -> the field's name."""
    prefix = Settings.model_config.get("env_prefix", "")
    assert prefix == "STREAM_APP_"
    for name, info in Settings.model_fields.items():
        assert info.alias is None, f"{name}: an alias changes its variable"
        assert info.validation_alias is None, f"{name}: an alias changes its variable"
    return {f"{prefix}{name}".upper(): name for name in Settings.model_fields}


def _is_secret(name: str) -> bool:
    annotation = Settings.model_fields[name].annotation
    members = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    return any(member in (SecretStr, SecretBytes) for member in members)


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a pod starts with: the image's environment, then the ConfigMap's (secrets aside)."""
    for name in [n for n in os.environ if n.startswith("STREAM_APP_")]:
        monkeypatch.delenv(name)
    image_env = {k: v for k, v in _containerfile_env().items() if k.startswith("STREAM_APP_")}
    for name, value in {**image_env, **CONFIG}.items():
        monkeypatch.setenv(name, value)
    return Settings()  # every value parses (types, bounds, the allowed values)


# ------------------------------------------------------------------------------------ schema validation


@pytest.mark.parametrize("manifest", [m for m in MANIFESTS if m.kind not in CUSTOM_KINDS], ids=str)
def test_manifest_validates_against_the_kubernetes_schemas(manifest: Manifest) -> None:
    try:
        kubernetes_validate.validate(manifest.doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(part) for part in error.path)
        pytest.fail(f"{manifest}: {where}: {error.message}")


def test_the_kinds_deployed_and_the_strict_schemas_refuse_an_unknown_field() -> None:
    kinds = {m.kind for m in MANIFESTS}
    assert kinds >= {
        "Namespace", "ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget", "ServiceMonitor",
        "NetworkPolicy", "Ingress", "Job",
    }  # fmt: skip
    namespaces = {m.doc["metadata"].get("namespace") for m in MANIFESTS if m.kind != "Namespace"}
    assert namespaces == {_one("Namespace", "stream-app")["metadata"]["name"]}
    # the validation above is strict: a misspelt field is an error, not a silently dropped field
    misspelt = copy.deepcopy(WORKER)
    misspelt["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="livenesProbe"):
        kubernetes_validate.validate(misspelt, KUBERNETES_VERSION, strict=True)


def test_service_monitor_validates_against_its_schema() -> None:
    monitors = _all("ServiceMonitor")
    jsonschema.Draft202012Validator.check_schema(SERVICE_MONITOR_SCHEMA)
    for monitor in monitors:
        jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA, cls=jsonschema.Draft202012Validator)
        for endpoint in monitor["spec"]["endpoints"]:
            assert _seconds(endpoint["scrapeTimeout"]) <= _seconds(endpoint["interval"]), endpoint
    misspelt = copy.deepcopy(monitors[0])
    misspelt["spec"]["endpoint"] = misspelt["spec"].pop("endpoints")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(misspelt, SERVICE_MONITOR_SCHEMA, cls=jsonschema.Draft202012Validator)


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    return sum(int(n) * units[unit] for n, unit in re.findall(r"(\d+)(ms|[smhdwy])", duration))


@pytest.mark.parametrize("source", SOURCES)
def test_each_kustomization_applies_every_manifest_of_its_folder_but_the_secret_templates(
    source: str,
) -> None:
    (kustomization,) = _load(K8S / source / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    files = {path.name for path in (K8S / source).glob("*.yaml")}
    listed = [r for r in kustomization["resources"] if r.endswith(".yaml")]
    assert set(listed) == files - NOT_IN_KUSTOMIZATION
    assert len(kustomization["resources"]) == len(set(kustomization["resources"]))


@pytest.mark.parametrize("overlay", ["local", "production"])
def test_each_overlay_names_the_image_the_pods_use(overlay: str) -> None:
    (release,) = _load(K8S / "overlays" / overlay / "release" / "kustomization.yaml")
    images = {image["name"] for image in release["images"]}
    pods = [*_all("Deployment"), *_all("Job")]
    assert {_container(d)["image"].partition(":")[0] for d in pods} <= images


def test_the_query_api_is_routed_to_the_screens_process_never_to_the_workers() -> None:
    """Readers never slow the writers: every ``/api/v1`` route ends at the screen's Service, whose port is
    the one its pods serve; none reaches the workers' Service (probes, metrics, forwarded directives)."""
    screen_service = _one("Service", "stream-app-screen")
    backends = [
        (path["path"], path["backend"]["service"])
        for ingress in _all("Ingress")
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    assert ("/api/v1", {"name": "stream-app-screen", "port": {"name": "http"}}) in backends
    assert {service["name"] for _, service in backends} == {"stream-app-screen"}
    assert [port["name"] for port in screen_service["spec"]["ports"]] == ["http"]
    assert screen_service["spec"]["selector"] == SCREEN["spec"]["selector"]["matchLabels"]


# -------------------------------------------------------------------------------------------- the pods


def test_workers_and_screen_run_the_cli_commands_of_one_pinned_image() -> None:
    parser = cli_parser.parser()
    for deployment, command in ((WORKER, "worker"), (SCREEN, "screen")):
        container = _container(deployment)
        assert "command" not in container, "the image's ENTRYPOINT is stream-app"
        assert parser.parse_args(container["args"]).command == command
    images = {_container(d)["image"] for d in (WORKER, SCREEN)}
    assert len(images) == 1, images
    (image,) = images
    name, _, tag = image.rpartition(":")
    assert name, image
    assert tag not in {"", "latest"}, image


def test_probes_are_the_paths_and_ports_the_processes_serve(deployed: Settings) -> None:
    # the paths as the code registers them
    worker_pages = (REPO_ROOT / "stream_app" / "pipeline" / "app.py").read_text(encoding="utf-8")
    assert '@app.page("/livez")' in worker_pages
    assert '@app.page("/readyz")' in worker_pages
    screen_routes = "".join(
        (REPO_ROOT / "stream_app" / "screen" / name).read_text(encoding="utf-8")
        for name in ("server.py", "health.py")
    )
    assert 'add_get("/livez"' in screen_routes
    assert 'add_get("/readyz"' in screen_routes
    settings = deployed
    worker = _container(WORKER)
    wanted = {"startupProbe": "/livez", "livenessProbe": "/livez", "readinessProbe": "/readyz"}
    for probe, path in wanted.items():
        get = worker[probe]["httpGet"]
        assert get["path"] == path, probe
        assert _port(worker, get["port"]) == settings.web_port, probe
    screen = _container(SCREEN)
    for probe, path in {"livenessProbe": "/livez", "readinessProbe": "/readyz"}.items():
        get = screen[probe]["httpGet"]
        assert get["path"] == path, probe
        assert _port(screen, get["port"]) == settings.screen_port, probe
    # the ports are the only ones the containers declare
    assert [p["containerPort"] for p in worker["ports"]] == [settings.web_port]
    assert [p["containerPort"] for p in screen["ports"]] == [settings.screen_port]


@pytest.mark.parametrize(("name", "container"), [pytest.param(n, c, id=n) for n, c in _containers()])
def test_every_container_has_cpu_and_memory_requests_and_limits(name: str, container: dict[str, Any]) -> None:
    resources = container.get("resources", {})
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources.get(bound, {})), f"{name}: {bound}"


def test_the_disruption_budget_covers_the_workers_one_at_a_time() -> None:
    (budget,) = _all("PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    selector = budget["spec"]["selector"]["matchLabels"]
    assert _selects(selector, WORKER["spec"]["template"]["metadata"]["labels"])
    assert not _selects(selector, SCREEN["spec"]["template"]["metadata"]["labels"])
    assert budget["metadata"]["namespace"] == WORKER["metadata"]["namespace"]
    # a rolling update stops one worker at a time as well, and never runs more than the replicas
    rolling = WORKER["spec"]["strategy"]["rollingUpdate"]
    assert (WORKER["spec"]["strategy"]["type"], rolling["maxUnavailable"], rolling["maxSurge"]) == (
        "RollingUpdate", 1, 0,
    )  # fmt: skip


def test_worker_replicas_do_not_exceed_the_internal_topics_partitions() -> None:
    settings = Settings.model_construct()
    (internal,) = [t for t in load_topics(settings.topics_file) if t.role == "repartition"]
    assert internal.name == "internal.observations.by-entity"
    assert 1 < WORKER["spec"]["replicas"] <= internal.partitions


def test_workers_spread_across_nodes() -> None:
    labels = WORKER["spec"]["template"]["metadata"]["labels"]
    constraints = _pod(WORKER)["topologySpreadConstraints"]
    across_nodes = [c for c in constraints if c["topologyKey"] == "kubernetes.io/hostname"]
    assert across_nodes, constraints
    assert all(_selects(c["labelSelector"]["matchLabels"], labels) for c in constraints)


@pytest.mark.parametrize("deployment", [WORKER, SCREEN], ids=lambda d: d["metadata"]["name"])
def test_pods_run_as_the_images_non_root_user_without_privileges(deployment: dict[str, Any]) -> None:
    pod = _pod(deployment)
    assert pod["automountServiceAccountToken"] is False  # the processes never call the Kubernetes API
    context = pod["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == APP_UID == _containerfile_user()
    assert context["seccompProfile"]["type"] == "RuntimeDefault"
    container = _container(deployment)["securityContext"]
    assert container["runAsNonRoot"] is True
    assert container["runAsUser"] == APP_UID
    assert container["allowPrivilegeEscalation"] is False
    assert container["readOnlyRootFilesystem"] is True
    assert container["capabilities"]["drop"] == ["ALL"]
    assert "add" not in container["capabilities"]
    # with a read-only root, what the processes write goes to emptyDir volumes
    volume, _ = _mounted(deployment, "/tmp/x")  # noqa: S108 - a path in the pod, not a file made here
    assert "emptyDir" in volume


def test_the_worker_writes_faust_s_folder_to_an_empty_dir() -> None:
    volume, _ = _mounted(WORKER, CONFIG["STREAM_APP_DATA_DIR"])
    assert "emptyDir" in volume


def test_the_worker_outlives_its_shutdown_grace_before_it_is_killed() -> None:
    default = Settings.model_fields["shutdown_grace_s"].default
    grace_s = float(CONFIG.get("STREAM_APP_SHUTDOWN_GRACE_S", default))
    # the watchdog ends a stuck leave after grace_s; Kubernetes' SIGKILL must come later
    assert _pod(WORKER)["terminationGracePeriodSeconds"] >= grace_s + 5


# --------------------------------------------------------------------------------- settings and secrets


def test_every_variable_in_the_manifests_and_the_image_is_a_setting() -> None:
    known = _settings_env()
    names = set(CONFIG)
    for _, container in _containers():
        names |= set(_env(container))
        for source in container.get("envFrom", []):
            assert source["configMapRef"]["name"] == "stream-app-config", source
    image_env = _containerfile_env()
    names |= {name for name in image_env if name.startswith("STREAM_APP_")}
    unknown = sorted(names - known.keys())
    assert not unknown, f"not a field of stream_app/settings.py: {unknown}"
    assert {"STREAM_APP_KAFKA_BOOTSTRAP", "STREAM_APP_KAFKA_SECURITY_PROTOCOL"} <= names


def test_the_config_map_and_the_image_hold_valid_non_secret_settings(deployed: Settings) -> None:
    known = _settings_env()
    image_env = {k: v for k, v in _containerfile_env().items() if k.startswith("STREAM_APP_")}
    secret = sorted(name for name in {*CONFIG, *image_env} if _is_secret(known[name]))
    assert not secret, f"secret settings belong in a Secret: {secret}"
    for name, value in image_env.items():
        assert CONFIG.get(name, value) == value, f"{name}: the image and the ConfigMap disagree"
    settings = deployed
    assert settings.kafka_security_protocol == "SASL_SSL"
    # the prefix deploy/redis/*.acl's users are made for
    assert settings.redis_key_prefix == Settings.model_fields["redis_key_prefix"].default
    assert settings.web_host == settings.screen_host == "0.0.0.0"  # noqa: S104 - a pod's own addresses
    # the files the settings name are in the volumes both pods mount, from keys their Secrets have
    secrets = _secret_keys()
    for deployment in (WORKER, SCREEN):
        for path in (settings.kafka_ssl_ca_file, settings.api_tokens_file):
            assert path is not None
            volume, key = _mounted(deployment, str(path))
            assert key in secrets[volume["secret"]["secretName"]], (path, volume)


@pytest.mark.parametrize(
    ("deployment", "kafka_user", "redis_user"),
    [
        (WORKER, Settings.model_fields["acl_app_user"].default, "stream-app"),
        (SCREEN, Settings.model_fields["acl_center_user"].default, "center"),
    ],
    ids=["worker", "screen"],
)
def test_credentials_come_from_secrets_one_principal_per_process(
    deployment: dict[str, Any], kafka_user: str, redis_user: str
) -> None:
    secrets = _secret_keys()
    env = _env(_container(deployment))
    values: dict[str, str] = {}
    for name in ("STREAM_APP_KAFKA_SASL_USERNAME", "STREAM_APP_KAFKA_SASL_PASSWORD", "STREAM_APP_REDIS_URL"):
        assert "value" not in env[name], f"{name} given in clear in the manifest"
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["key"] in secrets[ref["name"]], ref
        values[name] = secrets[ref["name"]][ref["key"]]
    # no secret setting anywhere as a literal value
    known = _settings_env()
    assert not [n for n, e in env.items() if n in known and _is_secret(known[n]) and "value" in e]
    assert values["STREAM_APP_KAFKA_SASL_USERNAME"] == kafka_user  # the principal `acl apply` grants
    url = urlsplit(values["STREAM_APP_REDIS_URL"])
    assert url.scheme == "rediss"  # TLS
    assert url.username == redis_user  # the user made from deploy/redis/*.acl
    # Redis's CA, like Kafka's, from the mounted Secret
    (ca_file,) = parse_qs(url.query)["ssl_ca_certs"]
    volume, key = _mounted(deployment, ca_file)
    assert key in secrets[volume["secret"]["secretName"]]


def test_secret_templates_hold_placeholders_only() -> None:
    assert {m.file for m in MANIFESTS if m.kind == "Secret"} == {"base/secrets.example.yaml"}
    for name, keys in _secret_keys().items():
        assert keys, name
        for key, value in keys.items():
            if key not in NOT_SECRET_KEYS:
                assert PLACEHOLDER in value, f"{name}.{key}: a real value? keep REPLACE_ME in the template"
    # and nothing else holds one
    for manifest in MANIFESTS:
        if manifest.kind != "Secret":
            assert PLACEHOLDER not in json.dumps(manifest.doc), str(manifest)


# ------------------------------------------------------------------------------------------- monitoring


def test_the_service_monitor_scrapes_the_workers_port_by_name_as_job_stream_app() -> None:
    monitor = _one("ServiceMonitor", "stream-app")
    spec = monitor["spec"]
    selector = spec["selector"]["matchLabels"]
    assert _selects(selector, WORKER_SERVICE["metadata"]["labels"])
    assert not _selects(selector, SCREEN_SERVICE["metadata"]["labels"])
    assert WORKER_SERVICE["metadata"]["namespace"] in spec["namespaceSelector"]["matchNames"]
    assert _selects(WORKER_SERVICE["spec"]["selector"], WORKER["spec"]["template"]["metadata"]["labels"])
    service_ports = {p["name"]: p for p in WORKER_SERVICE["spec"]["ports"]}
    worker = _container(WORKER)
    for endpoint in spec["endpoints"]:
        assert endpoint["path"] == "/metrics"
        port = service_ports[endpoint["port"]]  # by name
        assert _port(worker, port["targetPort"]) == int(CONFIG["STREAM_APP_WEB_PORT"])
    # the job label: what the alert rules and the dashboard select
    rules = (REPO_ROOT / "deploy" / "prometheus" / "rules" / "stream-app.yml").read_text(encoding="utf-8")
    jobs = set(re.findall(r'up\{job="([^"]+)"\}', rules))
    # the screen has its own job (stream-app-screen, deploy/prometheus/prometheus.yml), not this monitor's
    assert jobs - {"stream-app-screen"} == {WORKER_SERVICE["metadata"]["labels"][spec["jobLabel"]]}
    # the annotations of a Prometheus without the operator: the same port; the screen left out
    annotations = WORKER["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == int(CONFIG["STREAM_APP_WEB_PORT"])
    assert annotations["prometheus.io/path"] == "/metrics"
    # the screen: its own monitor, whose job is the Service's name (no jobLabel), the job of its rules
    screen_monitor = _one("ServiceMonitor", "stream-app-screen")["spec"]
    assert "jobLabel" not in screen_monitor
    assert _selects(screen_monitor["selector"]["matchLabels"], SCREEN_SERVICE["metadata"]["labels"])
    assert not _selects(screen_monitor["selector"]["matchLabels"], WORKER_SERVICE["metadata"]["labels"])
    assert SCREEN_SERVICE["metadata"]["name"] == "stream-app-screen"
    assert 'up{job="stream-app-screen"}' in rules
    assert [e["port"] for e in screen_monitor["endpoints"]] == [
        p["name"] for p in SCREEN_SERVICE["spec"]["ports"]
    ]
    screen_annotations = SCREEN["spec"]["template"]["metadata"]["annotations"]
    assert screen_annotations["prometheus.io/scrape"] == "true"
    assert int(screen_annotations["prometheus.io/port"]) == int(CONFIG["STREAM_APP_SCREEN_PORT"])
    # the screen's /metrics carries the worker families at zero: the worker rules must not read them
    assert 'stream_app_worker_ready{job="stream-app"}' in rules


# -------------------------------------------------------------------------------------------- the image


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]


def _containerfile() -> list[Stage]:
    text = CONTAINERFILE.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    logical = re.sub(r"\\\n", " ", "\n".join(lines))
    stages: list[Stage] = []
    for line in logical.splitlines():
        if not line.strip():
            continue
        instruction, _, args = line.strip().partition(" ")
        instruction, args = instruction.upper(), " ".join(args.split())
        if instruction == "FROM":
            parts = args.split()
            stages.append(Stage(parts[0], parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None))
        elif instruction != "ARG" or stages:
            stages[-1].instructions.append((instruction, args))
    return stages


def _containerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in _containerfile()[-1].all("ENV"):
        for word in shlex.split(args):
            name, equals, value = word.partition("=")
            assert equals, f"ENV {args}: use NAME=value"
            env[name] = value
    return env


def _containerfile_user() -> int:
    runtime = _containerfile()[-1]
    assert runtime.instructions, "an empty final stage"
    users = runtime.all("USER")
    assert users, "the runtime stage sets no USER: it would run as root"
    last_user = max(i for i, (name, _) in enumerate(runtime.instructions) if name == "USER")
    # nothing after the last USER runs as another user
    assert all(name != "RUN" for name, _ in runtime.instructions[last_user:])
    uid, _, gid = users[-1].partition(":")
    for number in filter(None, (uid, gid)):
        assert number.isdigit(), f"USER {users[-1]}: numeric, for runAsNonRoot"
        assert int(number) != 0, f"USER {users[-1]}: root"
    return int(uid)


def test_the_image_is_multi_stage_and_its_runtime_installs_only_the_wheel() -> None:
    stages = _containerfile()
    assert len(stages) >= 2
    build, runtime = stages[0], stages[-1]
    assert build.name == "build"
    assert runtime.base == build.base  # the same Python
    build_runs = " ".join(build.all("RUN"))
    assert "pip wheel --no-deps" in build_runs  # as tests/integration/test_wheel.py builds it
    assert "--constraint constraints.txt" in build_runs
    assert "--only-binary=:all:" in build_runs
    # the runtime stage copies nothing from the build context: no source tree, only a mounted wheelhouse
    assert not runtime.all("ADD")
    assert all("--from=" in args for args in runtime.all("COPY"))
    installs = [args for args in runtime.all("RUN") if "pip install" in args]
    assert len(installs) == 1, installs
    (install,) = installs
    assert "--mount=type=bind,from=build" in install
    assert "--no-index" in install
    assert "--constraint" in install
    assert re.search(r"\sstream_app-\*\.whl(\s|$)", install.replace("/wheels/", " "))
    assert not re.search(r"pip install[^&]*\s\.(\s|$)|-e\s", install), "installs the source tree"
    # no compiler or build tool added to the runtime image
    runtime_runs = " ".join(runtime.all("RUN"))
    assert not re.search(r"apt-get|apk add|gcc|build-essential", runtime_runs)


def test_the_image_runs_the_worker_as_a_non_root_user() -> None:
    runtime = _containerfile()[-1]
    assert _containerfile_user() == APP_UID
    assert json.loads(runtime.all("ENTRYPOINT")[-1]) == ["stream-app"]
    (command,) = json.loads(runtime.all("CMD")[-1])
    assert cli_parser.parser().parse_args([command]).command == "worker"
    exposed = {int(port.partition("/")[0]) for args in runtime.all("EXPOSE") for port in args.split()}
    defaults = Settings.model_fields
    assert exposed == {defaults["web_port"].default, defaults["screen_port"].default}
    assert exposed == {int(CONFIG["STREAM_APP_WEB_PORT"]), int(CONFIG["STREAM_APP_SCREEN_PORT"])}


def test_the_build_context_leaves_out_local_state_and_virtualenvs() -> None:
    ignored = {
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".local", "tests"} <= ignored
    # what the wheel is built from stays in
    for needed in ("stream_app", "agents", "avro_schemas", "catalogue", "topics", "docs", "pyproject.toml"):
        assert not {needed, f"{needed}/"} & ignored, needed


# ------------------------------------------------------------------------------- the rendered overlays
#
# What a cluster receives: each overlay rendered by kustomize (kubectl's own, offline), compared with a
# committed snapshot so a change to any manifest shows as a diff of what is applied, then checked as a
# whole. Regenerate the snapshots after a deliberate change:
#   UPDATE_SNAPSHOTS=1 pytest tests/unit/test_deploy.py -k rendered      (or: make k8s-snapshots)

OVERLAYS = ("local", "production", "local/setup", "production/setup")
SNAPSHOTS = REPO_ROOT / "tests" / "unit" / "snapshots"
KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed: no kustomize to render")
DIGEST = re.compile(r"^[^@:]+(:[^@]+)?@sha256:[0-9a-f]{64}$")
SETUP_VERBS = {("topics", "apply"), ("acl", "apply"), ("quotas", "apply"), ("schemas", "register")}


def _snapshot(overlay: str) -> Path:
    return SNAPSHOTS / f"k8s-{overlay.replace('/', '-')}.yaml"


@functools.cache
def _rendered_text(overlay: str) -> str:
    assert KUBECTL is not None
    done = subprocess.run(
        [KUBECTL, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _rendered(overlay: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(_rendered_text(overlay)) if doc]


def _of(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def _pods(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [*_of(docs, "Deployment"), *_of(docs, "Job")]


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_overlay_matches_its_snapshot(overlay: str) -> None:
    rendered, snapshot = _rendered_text(overlay), _snapshot(overlay)
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        snapshot.parent.mkdir(exist_ok=True)
        snapshot.write_text(rendered, encoding="utf-8")
    assert snapshot.exists(), f"no {snapshot.name}: UPDATE_SNAPSHOTS=1 pytest {__file__} -k rendered"
    expected = snapshot.read_text(encoding="utf-8")
    if rendered != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True), rendered.splitlines(keepends=True), str(snapshot), overlay
            )
        )
        pytest.fail(
            f"the rendered {overlay} differs from its snapshot (UPDATE_SNAPSHOTS=1 if meant):\n{diff}"
        )


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_overlay_validates_and_keeps_pods_restricted(overlay: str) -> None:
    docs = _rendered(overlay)
    for doc in docs:
        if doc["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        assert doc["kind"] == "Namespace" or doc["metadata"]["namespace"] == "stream-app", doc["metadata"]
    (namespace,) = _of(docs, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert _pods(docs)
    for workload in _pods(docs):
        pod = _pod(workload)
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
        assert not any("hostPath" in volume for volume in pod["volumes"])
        assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod)


def _policy_allows(policy: dict[str, Any], pod_labels: dict[str, str], port: dict[str, Any]) -> bool:
    """Whether one of the policy's ingress rules admits traffic to this container port."""
    if not _selects(policy["spec"]["podSelector"].get("matchLabels", {}), pod_labels):
        return False
    return any(
        any(p["port"] in (port["name"], port["containerPort"]) for p in rule.get("ports", []))
        for rule in policy["spec"].get("ingress", [])
    )


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_behind_a_default_deny_and_a_policy_of_its_own(overlay: str) -> None:
    docs = _rendered(overlay)
    policies = _of(docs, "NetworkPolicy")
    (deny,) = [p for p in policies if p["spec"]["podSelector"] == {}]
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"]
    assert "egress" not in deny["spec"]
    for workload in _pods(docs):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        own = [
            p
            for p in policies
            if p["spec"]["podSelector"] and _selects(p["spec"]["podSelector"]["matchLabels"], labels)
        ]
        assert own, f"{workload['metadata']['name']}: no NetworkPolicy selects its pods"
        for policy in own:
            assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
            egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
            assert {53, 9093} <= egress_ports  # DNS and Kafka, nothing else than what is listed
        for container in _pod(workload)["containers"]:
            for port in container.get("ports", []):
                assert any(_policy_allows(p, labels, port) for p in policies), (
                    workload["metadata"]["name"],
                    port,
                )


@needs_kubectl
@pytest.mark.parametrize("overlay", ["local", "production"])
def test_only_the_screen_ingress_controller_and_prometheus_get_in(overlay: str) -> None:
    docs = _rendered(overlay)
    policies = {p["metadata"]["name"]: p["spec"] for p in _of(docs, "NetworkPolicy")}

    def sources(name: str) -> list[tuple[str, str]]:
        found = []
        for rule in policies[name]["ingress"]:
            for peer in rule["from"]:
                namespace = peer.get("namespaceSelector", {}).get("matchLabels", {})
                pods = peer.get("podSelector", {}).get("matchLabels", {})
                found.append(
                    (
                        namespace.get("kubernetes.io/metadata.name", "stream-app"),
                        pods.get("app.kubernetes.io/component", pods.get("app.kubernetes.io/name", "")),
                    )
                )
        return sorted(found)

    assert sources("stream-app-worker") == [("monitoring", "prometheus"), ("stream-app", "screen")]
    assert sources("stream-app-screen") == [("ingress-nginx", "ingress-nginx"), ("monitoring", "prometheus")]
    assert policies["stream-app-setup"]["ingress"] == []
    # the screen reaches the workers' port for the directives it forwards
    screen_egress = policies["stream-app-screen"]["egress"]
    to_workers = [
        r
        for r in screen_egress
        if any(
            peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") == "worker"
            for peer in r.get("to", [])
        )
    ]
    assert [p["port"] for r in to_workers for p in r["ports"]] == [int(CONFIG["STREAM_APP_WEB_PORT"])]


@needs_kubectl
@pytest.mark.parametrize("overlay", ["local", "production"])
def test_the_screen_is_reached_over_tls_only(overlay: str) -> None:
    docs = _rendered(overlay)
    (ingress,) = _of(docs, "Ingress")
    spec = ingress["spec"]
    hosts = {rule["host"] for rule in spec["rules"]}
    tls_hosts = {host for entry in spec["tls"] for host in entry["hosts"]}
    assert hosts <= tls_hosts, "a host without a certificate would carry tokens in clear"
    assert all(entry["secretName"] for entry in spec["tls"])
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true"
    backends = {
        path["backend"]["service"]["name"] for rule in spec["rules"] for path in rule["http"]["paths"]
    }
    assert backends == {"stream-app-screen"}
    if overlay == "production":
        assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"]


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_digests_in_production_and_one_image_everywhere(overlay: str) -> None:
    images = {c["image"] for w in _pods(_rendered(overlay)) for c in _pod(w)["containers"]}
    assert len(images) == 1, images
    (image,) = images
    if overlay.startswith("production"):
        assert DIGEST.match(image), f"{image}: production runs an image by digest"
    else:
        assert ":" in image, image
        assert not image.endswith(":latest"), image


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_catalogue_is_a_hashed_config_map_every_pod_reads(overlay: str) -> None:
    docs = _rendered(overlay)
    (catalogue,) = [
        m for m in _of(docs, "ConfigMap") if m["metadata"]["name"].startswith("stream-app-catalogue")
    ]
    name = catalogue["metadata"]["name"]
    assert re.fullmatch(r"stream-app-catalogue-[a-z0-9]{10}", name), "no hash suffix: a change would not roll"
    files = {
        path.name: path.read_text(encoding="utf-8")
        for path in Settings.model_construct().catalogue_dir.glob("*.toml")
    }
    assert catalogue["data"] == files  # the catalogue and its rules as they are in the repository
    (config,) = [m["data"] for m in _of(docs, "ConfigMap") if m["metadata"]["name"] == "stream-app-config"]
    directory = config["STREAM_APP_CATALOGUE_DIR"]
    for workload in _pods(docs):
        volumes = {v["name"]: v for v in _pod(workload)["volumes"]}
        (container,) = _pod(workload)["containers"]
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
        assert volumes[mount["name"]]["configMap"]["name"] == name, workload["metadata"]["name"]


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_setup_job_runs_the_setup_verbs_before_the_workers(overlay: str) -> None:
    docs = _rendered(overlay)
    (job,) = _of(docs, "Job")
    (container,) = _pod(job)["containers"]
    assert container["command"] == ["/bin/sh", "-c"]
    (script,) = container["args"]
    assert script.startswith("set -eu\n")  # the first failure stops it
    parser = cli_parser.parser()
    verbs = set()
    for command in re.findall(r"stream-app [a-z -]+", script):
        args = parser.parse_args(command.split()[1:])
        verbs.add(
            (
                args.command,
                next(v for k, v in vars(args).items() if k not in {"command"} and isinstance(v, str)),
            )
        )
    assert verbs == SETUP_VERBS
    assert _pod(job)["restartPolicy"] == "Never"
    # the admin principal, from a Secret
    env = _env(container)
    assert (
        env["STREAM_APP_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "stream-app-kafka-admin"
    )
    assert "stream-app-kafka-admin" in _secret_keys()
    # Argo CD: a Sync hook after the settings and the catalogue it reads, before the workers
    annotations = job["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook"] == "Sync"
    assert annotations["argocd.argoproj.io/hook-delete-policy"] == "BeforeHookCreation"
    job_wave = int(annotations["argocd.argoproj.io/sync-wave"])
    for doc in docs:
        wave = int(doc["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))
        if doc["kind"] in {"Namespace", "ConfigMap"} or doc["metadata"]["name"] == "stream-app-setup":
            assert wave <= job_wave, doc["metadata"]["name"]
        if doc["kind"] == "Deployment":
            assert wave > job_wave
    if overlay.endswith("/setup"):  # plain kubectl's first step: the setup and what it reads, no workers
        assert not _of(docs, "Deployment")
        full = _rendered(overlay.removesuffix("/setup"))
        assert job == _of(full, "Job")[0]
