"""The alert bridge against a misbehaving Alertmanager (issue 25): a 4xx is logged and dropped, not
retried; while Alertmanager answers 5xx the transitions of an alert wait as one post (its newest state),
sent once it answers again. A small local HTTP server stands in for Alertmanager, answering as told."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from stream_app.config.blueprint import Blueprint
from stream_app.settings import Settings

from .support import metric_value, probe, wait_until
from .test_ops_alertmanager_bridge import Feed

POSTS = "stream_app_alertmanager_posts_total"
DROPPED = "stream_app_alertmanager_dropped_total"


class StandIn:
    """Answers ``status`` to every ``POST /api/v2/alerts`` and keeps each request's alerts."""

    def __init__(self) -> None:
        self.status = 200
        self.requests: list[tuple[int, list[dict[str, Any]]]] = []  # (status answered, alerts)
        self.lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test reads the requests."""

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"[]")
                with stand_in.lock:
                    status = stand_in.status
                    stand_in.requests.append((status, body))
                reply = b"{}" if status < 300 else b'{"error": "told to refuse (test)"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def answered(self, status: int) -> list[list[dict[str, Any]]]:
        with self.lock:
            return [alerts for answer, alerts in self.requests if answer == status]


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    server = StandIn()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def _resolved(post: dict[str, Any]) -> bool:
    return datetime.fromisoformat(post["endsAt"].replace("Z", "+00:00")) <= datetime.now(UTC)


def test_a_4xx_is_dropped_and_a_5xx_keeps_the_newest_state_of_each_alert(
    settings: Settings, blueprint: Blueprint, start_worker: Any, stand_in: StandIn
) -> None:
    worker = start_worker(
        settings, STREAM_APP_ALERTMANAGER_URL=stand_in.url, STREAM_APP_ALERTMANAGER_RESEND_S="600"
    )
    air = Feed(settings, blueprint)

    # 1. Alertmanager refuses (400): the alert is posted, refused, dropped, and not sent again
    stand_in.status = 400
    air.send(170.0, 175.0)
    wait_until(lambda: metric_value(worker.metrics(), DROPPED, reason="refused") >= 1, 45, "a refused alert")
    refused = stand_in.answered(400)
    assert [a["labels"]["level"] for batch in refused for a in batch][-1:] == ["BAD"]
    assert metric_value(worker.metrics(), POSTS, outcome="refused") == len(refused) == 1
    time.sleep(5)  # a retried post would have gone out at 0.1, 0.2, 0.4, 0.8, 1.6 s ...
    assert len(stand_in.requests) == 1, "a 4xx is not retried"
    assert probe(settings, "/readyz")[0] == 200

    # 2. Alertmanager away (503): the transitions wait, one post per alert, retried with backoff
    stand_in.status = 503
    air.send(260.0, 265.0)  # escalated: BAD ends, VERY_BAD opens
    air.send(30.0, 28.0, 25.0)  # clean air: VERY_BAD ends, replacing its waiting open post

    def newest_states_tried() -> bool:
        tried = stand_in.answered(503)
        # one post per alert (the level is a label: BAD and VERY_BAD are two), each in its newest state
        return bool(tried) and sorted((a["labels"]["level"], _resolved(a)) for a in tried[-1]) == [
            ("BAD", True),
            ("VERY_BAD", True),
        ]

    wait_until(newest_states_tried, 45, "the newest state of each alert retried")
    assert metric_value(worker.metrics(), DROPPED, reason="superseded") >= 1, "VERY_BAD's open post replaced"
    assert metric_value(worker.metrics(), POSTS, outcome="error") >= 1

    # 3. Alertmanager back: the newest states are delivered, then nothing is pending
    stand_in.status = 200
    wait_until(lambda: stand_in.answered(200), 30, "the waiting posts delivered")
    [delivered] = stand_in.answered(200)
    assert sorted((a["labels"]["level"], _resolved(a)) for a in delivered) == [
        ("BAD", True),
        ("VERY_BAD", True),
    ]
    wait_until(
        lambda: metric_value(worker.metrics(), "stream_app_alertmanager_pending_alerts") == 0,
        10,
        "none pending",
    )
    assert probe(settings, "/readyz")[0] == 200
