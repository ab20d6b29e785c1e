"""A readable live view of the center's alerts and consolidated topics, for a person at a terminal."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from confluent_kafka import Consumer, KafkaError

from stream_app import codecs
from stream_app.exceptions import DecodeError
from stream_app.schemas import SchemaRegistry
from stream_app.settings import Settings

VIETNAM = timezone(timedelta(hours=7), "ICT")
_RESET = "\x1b[0m"


def _colour(hex_rgb: str, text: str, enabled: bool) -> str:
    if not enabled or len(hex_rgb) != 7:
        return text
    r, g, b = (int(hex_rgb[i : i + 2], 16) for i in (1, 3, 5))
    return f"\x1b[1;38;2;{r};{g};{b}m{text}{_RESET}"


def _local(ms: Any) -> str:
    moment = ms if isinstance(ms, datetime) else datetime.fromtimestamp(int(ms) / 1000, UTC)
    return moment.astimezone(VIETNAM).strftime("%Y-%m-%d %H:%M:%S")


def format_alert(alert: dict[str, Any], colour: bool = False) -> str:
    """One line per alert transition, in Vietnamese and English."""
    where = alert["station"] or alert["region"]
    level = f"{alert['level_name_vi']} / {alert['level_name_en']}"
    return (
        f"ALERT {alert['transition']:<11} {alert['indicator']:<16} {where:<16} "
        f"value={alert['value']:<8g} level={_colour(alert['colour'], level, colour)} "
        f"at {_local(alert['event_time'])} ICT  id={alert['alert_id']}"
    )


def format_consolidated(row: dict[str, Any]) -> str:
    """One line per consolidated update."""
    where = row["station"] or row["region"]
    return (
        f"CONSOLIDATED {row['indicator']:<16} {where:<16} latest={row['latest_value']:<8g} "
        f"24h n={row['count']:<4} mean={row['mean']:<8.4g} min={row['min']:<8g} max={row['max']:<8g} "
        f"level={row['alert_level_code']}"
    )


def follow(
    settings: Settings,
    schemas: SchemaRegistry,
    topics: dict[str, str],
    on_record: Callable[[str, str], None],
    *,
    stop: Callable[[], bool],
    from_beginning: bool = False,
    colour: bool = False,
) -> None:
    """Consume ``topics`` ({name: subject}) and call ``on_record(subject, line)`` until ``stop()``."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"{settings.group_id}-tail-{time.time_ns()}",
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(list(topics))
    try:
        while not stop():
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    on_record("error", str(error))
                continue
            subject = topics[message.topic() or ""]
            try:
                record = codecs.decode(schemas, subject, message.value() or b"")
            except DecodeError as exc:
                on_record("error", f"{message.topic()}: {exc.message}")
                continue
            if subject == "alert":
                on_record(subject, format_alert(record, colour))
            elif subject == "consolidated":
                on_record(subject, format_consolidated(record))
            else:
                on_record(subject, f"DEAD-LETTER reason={record['reason']} {record['message']}")
    finally:
        consumer.close()
