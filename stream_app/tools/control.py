"""Operators' and the center's inputs to a running pipeline: ticks and directives.

Both end as ordinary records on Kafka, ordered, durable and replayable like everything else. A tick
is produced here; a directive is a person's act, so it is posted to the workers' HTTP API with the
person's token, and the API writes it in that person's name.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from confluent_kafka import Producer

from stream_app.config.blueprint import Blueprint
from stream_app.exceptions import ConfigurationError, ServiceUnreachableError
from stream_app.kafka.config import confluent_config
from stream_app.kafka.partitioning import TICK_KEY
from stream_app.settings import Settings
from stream_app.wire import codecs


def _producer(blueprint: Blueprint) -> Producer:
    return Producer({**confluent_config(blueprint.settings), "acks": "all", "log_level": 3})


def send_ticks(blueprint: Blueprint, at_ms: int | None = None, source: str = "cli") -> int:
    """One tick (time ``at_ms``, default now) into every partition of the internal topic."""
    internal = blueprint.topic_by_role("repartition")
    schema = blueprint.schemas.latest("tick")
    now_ms = at_ms if at_ms is not None else int(time.time() * 1000)
    producer = _producer(blueprint)
    for partition in range(internal.partitions):
        record = {"partition": partition, "now": now_ms, "source": source}
        producer.produce(
            internal.name, key=TICK_KEY, value=codecs.encode(schema, record), partition=partition
        )
    if producer.flush(30):
        raise RuntimeError("ticks not delivered within 30 s")
    return internal.partitions


@dataclass(frozen=True, slots=True)
class Answer:
    """What the workers' API answered a directive: its HTTP status and JSON body."""

    status: int
    body: dict[str, Any]

    @property
    def accepted(self) -> bool:
        return self.status == 202


def post_directive(
    settings: Settings,
    *,
    alert_key: str,
    action: str,
    alert_id: str = "",
    assignee: str | None = None,
    comment: str | None = None,
    timeout_s: float | None = None,
) -> Answer:
    """Post a directive about ``alert_key`` to the workers' HTTP API (``STREAM_APP_API_URL``) with the
    person's own token (``STREAM_APP_API_TOKEN``): the API records it in the token's name and audits it.
    A directive never goes to Kafka from here: only the API, which authenticated the person, writes them."""
    if settings.api_token is None:
        raise ConfigurationError(
            "STREAM_APP_API_TOKEN is not set: a directive is issued with your own API token"
            " (`stream-app token create --name <you> --role operator`)"
        )
    body = {"action": action, "alert_id": alert_id, "assignee": assignee, "comment": comment}
    request = urllib.request.Request(  # noqa: S310 - http(s) only: STREAM_APP_API_URL's pattern
        f"{settings.api_base_url}/api/v1/alerts/{quote(alert_key, safe='')}/directives",
        data=json.dumps({k: v for k, v in body.items() if v is not None}).encode(),
        headers={
            "Authorization": f"Bearer {settings.api_token.get_secret_value()}",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    wait_s = timeout_s if timeout_s is not None else settings.api_write_timeout_s + 5
    try:
        with urllib.request.urlopen(request, timeout=wait_s) as response:  # noqa: S310 - the configured API
            return Answer(response.status, _json(response.read()))
    except urllib.error.HTTPError as error:
        return Answer(error.code, _json(error.read()))
    except (urllib.error.URLError, OSError) as exc:
        raise ServiceUnreachableError(f"the API at {settings.api_base_url} did not answer: {exc}") from None


def _json(raw: bytes) -> dict[str, Any]:
    try:
        found = json.loads(raw)
    except ValueError:
        return {"error": "not_json", "detail": raw[:300].decode("utf-8", "replace")}
    return found if isinstance(found, dict) else {"answer": found}
