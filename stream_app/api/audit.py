"""The audit trail: who did what to the system, on ``center.audit`` and in the log.

Written by whatever acted, with the identity it authenticated as: the HTTP API for a directive an
operator posted (the token's name), the CLI for a dead-letter replay or an ACL change (the Kafka
principal it ran as). Each event is also a structured log line (``audit``), so an SRE sees it without
a consumer.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Producer

from stream_app.config.blueprint import Blueprint
from stream_app.kafka.config import confluent_config
from stream_app.kafka.subjects import output_framing
from stream_app.logs import get_logger
from stream_app.wire.framing import SINGLE_OBJECT_FRAMING, Framing

log = get_logger(__name__)


def event(
    *,
    actor: str,
    action: str,
    subject: str,
    outcome: str,
    source: str,
    role: str | None = None,
    details: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An audit record (Avro ``audit``), logged as it is made."""
    record = {
        "audit_id": f"aud-{uuid.uuid4().hex}",
        "at": int(time.time() * 1000),
        "actor": actor,
        "role": role,
        "source": source,
        "action": action,
        "subject": subject,
        "outcome": outcome,
        "details": {k: str(v)[:500] for k, v in (details or {}).items()},
    }
    log.info("audit", **{k: v for k, v in record.items() if k != "at"})
    return record


def encode(
    blueprint: Blueprint, record: dict[str, Any], framing: Framing = SINGLE_OBJECT_FRAMING
) -> tuple[str, bytes, bytes]:
    """(topic, key, value) of an audit record; single-object encoded unless ``framing`` says otherwise
    (a worker's publisher frames what it sends)."""
    topic = blueprint.topic_by_role("audit").name
    value = framing.encode(topic, blueprint.schemas.latest("audit"), record)
    return topic, record["subject"].encode(), value


def send(blueprint: Blueprint, record: dict[str, Any]) -> None:
    """Publish one audit record from a command-line process (a worker publishes through its own producer),
    framed as ``STREAM_APP_OUTPUT_FRAMING`` says."""
    topic = blueprint.topic_by_role("audit").name
    _, key, value = encode(blueprint, record, output_framing(blueprint, topics=[topic]))
    failures: list[str] = []
    producer = Producer(confluent_config(blueprint.settings, **{"acks": "all", "log_level": 3}))
    producer.produce(
        topic, key=key, value=value, on_delivery=lambda err, _m: failures.append(str(err)) if err else None
    )
    if producer.flush(30) or failures:
        raise RuntimeError(f"audit record not delivered to {topic}: {failures or 'timed out'}")


def send_cli(blueprint: Blueprint, action: str, subject: str, outcome: str, details: dict[str, str]) -> None:
    """Publish the audit record of one change a command made, acting as the CLI's Kafka principal."""
    record = event(
        actor=cli_actor(blueprint),
        source="cli",
        action=action,
        subject=subject,
        outcome=outcome,
        details=details,
    )
    send(blueprint, record)


def cli_actor(blueprint: Blueprint) -> str:
    """Who a command-line process acts as: the Kafka principal it authenticates as."""
    return blueprint.settings.kafka_sasl_username or "anonymous"
