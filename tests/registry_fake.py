"""A test double of a Confluent schema registry: the subset of its REST API this project and
confluent_kafka's Avro deserializer use, over real HTTP, so a worker in another process can share it.

Served: ``POST /subjects/{s}/versions`` (register; an existing schema keeps its id and version),
``POST /subjects/{s}`` (look up), ``GET /schemas/ids/{id}``, ``GET /subjects``,
``GET /subjects/{s}/versions``, ``PUT /config/{s}`` and ``GET /config/{s}``. As in the real registry, one
schema has one id whatever the subject, and errors carry ``error_code`` (40401 subject not found, 40403
schema not found, 40408 no subject compatibility). Not modelled: compatibility checks on registration,
references, modes, contexts, deletion. ``unavailable = True`` answers 503 to everything.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


@dataclass
class _State:
    ids: dict[str, int] = field(default_factory=dict)  # normalised schema -> id
    texts: dict[int, str] = field(default_factory=dict)  # id -> schema as first registered
    subjects: dict[str, list[int]] = field(default_factory=dict)  # subject -> ids, version 1 first
    config: dict[str, str] = field(default_factory=dict)  # subject -> compatibility level
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    unavailable: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeRegistry:
    """Start with ``with FakeRegistry() as registry:``; ``registry.url`` is its base URL."""

    def __init__(self) -> None:
        self.state = _State()
        state = self.state

        class Handler(_Handler):
            registry = state

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def unavailable(self) -> bool:
        return self.state.unavailable

    @unavailable.setter
    def unavailable(self, value: bool) -> None:
        self.state.unavailable = value

    def versions(self, subject: str) -> list[int]:
        """The ids of ``subject``'s versions, version 1 first."""
        with self.state.lock:
            return list(self.state.subjects.get(subject, []))

    def compatibility(self, subject: str) -> str | None:
        with self.state.lock:
            return self.state.config.get(subject)

    def count(self, method: str, prefix: str = "") -> int:
        """How many ``method`` requests were made to paths starting with ``prefix``."""
        with self.state.lock:
            return sum(1 for m, p in self.state.requests if m == method and p.startswith(prefix))

    def __enter__(self) -> FakeRegistry:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _normalised(text: str) -> str:
    return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))


class _Handler(BaseHTTPRequestHandler):
    registry: _State

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read the state, not a log."""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def _serve(self, method: str) -> None:
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        state = self.registry
        with state.lock:
            state.requests.append((method, path))
            if state.unavailable:
                self._reply(503, {"error_code": 50003, "message": "unavailable (test)"})
                return
            parts = [unquote(p) for p in path.strip("/").split("/")]
            status, reply = self._route(method, parts, body)
        self._reply(status, reply)

    def _route(self, method: str, parts: list[str], body: Any) -> tuple[int, Any]:  # noqa: PLR0911
        state = self.registry
        match (method, parts):
            case ("POST", ["subjects", subject, "versions"]):
                return 200, {"id": self._register(subject, body["schema"])}
            case ("POST", ["subjects", subject]):
                return self._lookup(subject, body["schema"])
            case ("GET", ["schemas", "ids", number]):
                text = state.texts.get(int(number))
                if text is None:
                    return 404, {"error_code": 40403, "message": "Schema not found"}
                return 200, {"schema": text}
            case ("GET", ["subjects"]):
                return 200, sorted(state.subjects)
            case ("GET", ["subjects", subject, "versions"]):
                if subject not in state.subjects:
                    return 404, {"error_code": 40401, "message": f"Subject '{subject}' not found."}
                return 200, list(range(1, len(state.subjects[subject]) + 1))
            case ("PUT", ["config", subject]):
                state.config[subject] = str(body["compatibility"]).upper()
                return 200, {"compatibility": state.config[subject]}
            case ("GET", ["config", subject]):
                if subject not in state.config:
                    return 404, {"error_code": 40408, "message": f"Subject '{subject}' has no config"}
                return 200, {"compatibilityLevel": state.config[subject]}
        return 404, {"error_code": 404, "message": f"{method} /{'/'.join(parts)}: not in this fake"}

    def _lookup(self, subject: str, text: str) -> tuple[int, Any]:
        state = self.registry
        if subject not in state.subjects:
            return 404, {"error_code": 40401, "message": f"Subject '{subject}' not found."}
        schema_id = state.ids.get(_normalised(text))
        if schema_id is None or schema_id not in state.subjects[subject]:
            return 404, {"error_code": 40403, "message": "Schema not found"}
        version = state.subjects[subject].index(schema_id) + 1
        return 200, {
            "subject": subject,
            "id": schema_id,
            "version": version,
            "schema": state.texts[schema_id],
        }

    def _register(self, subject: str, text: str) -> int:
        state = self.registry
        key = _normalised(text)
        schema_id = state.ids.get(key)
        if schema_id is None:
            schema_id = state.ids[key] = len(state.ids) + 1
            state.texts[schema_id] = text
        versions = state.subjects.setdefault(subject, [])
        if schema_id not in versions:
            versions.append(schema_id)
        return schema_id

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
