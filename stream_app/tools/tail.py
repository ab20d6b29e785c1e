"""A readable live view of the center's alerts and consolidated topics, for a person at a terminal.

Colour (the regulation's colour of an alert level) is the caller's choice: ``colour=True`` only where
:func:`stream_app.logs.colour_allowed` says so (a terminal, and no ``NO_COLOR``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

from stream_app.exceptions import ConfigurationError, ServiceUnreachableError, UsageError
from stream_app.kafka import registry
from stream_app.kafka.config import confluent_config
from stream_app.kafka.registry import SchemaRegistryUnavailable
from stream_app.settings import Settings
from stream_app.wire import codecs
from stream_app.wire.codecs import DecodeError
from stream_app.wire.schemas import SchemaRegistry

if TYPE_CHECKING:
    from stream_app.config.blueprint import Blueprint

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


_WORDS = {
    "vi": {
        "FIRING": "BÁO ĐỘNG",
        "ESCALATED": "TĂNG CẤP",
        "DEESCALATED": "GIẢM CẤP",
        "RESOLVED": "KẾT THÚC",
        "ACKNOWLEDGE": "ĐÃ TIẾP NHẬN",
        "ASSIGN": "GIAO XỬ LÝ",
        "COMMENT": "Ý KIẾN",
        "ESCALATE": "CHUYỂN CẤP TRÊN",
        "CLOSE": "ĐÓNG",
        "at": "lúc",
        "value": "giá trị",
        "by": "bởi",
    },
    "en": {"at": "at", "value": "value", "by": "by"},
}


def alerts_topic(blueprint: Blueprint, domain: str | None) -> str:
    """The topic ``alerts tail`` reads: every alert (``domain`` None), or one domain's.

    A domain the catalogue does not name is a usage error, raised before anything connects: a
    :class:`UsageError` (exit code 64) listing the domains, as the topics declare them.
    """
    if domain is None:
        return blueprint.topic_by_role("alerts").name
    known = blueprint.alert_domains()
    if domain not in known:
        close = difflib.get_close_matches(domain.replace("-", "_").replace(" ", "_").lower(), known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UsageError(f"unknown domain {domain!r}{hint}; the domains are: {', '.join(known)}")
    return blueprint.domain_alerts_topic(domain).name


def format_alert(alert: dict[str, Any], colour: bool = False, lang: str = "both") -> str:
    """One line per alert change: what, where, value, level (in the regulation's colour), when.

    ``lang`` is ``vi``, ``en`` or ``both`` (level names in both languages).
    """
    words = _WORDS.get(lang, _WORDS["en"])
    event = alert.get("event_type", "TRANSITION")
    what = alert["transition"] if event == "TRANSITION" else event
    what = words.get(what, what)
    where = alert["station"] or alert["region"]
    if lang == "vi":
        level = alert["level_name_vi"]
    elif lang == "en":
        level = alert["level_name_en"]
    else:
        level = f"{alert['level_name_vi']} / {alert['level_name_en']}"
    extra = ""
    if event != "TRANSITION":
        who = alert.get("acknowledged_by") or alert.get("assigned_to") or ""
        extra = f" {words['by']} {who}" if who else ""
        if alert.get("comment"):
            extra += f" «{alert['comment']}»"
    elif alert.get("detail"):
        extra = f" ({alert['detail']})"
    value = alert["value"]
    shown = f"{value:<8g}" if isinstance(value, int | float) else f"{'-':<8}"
    return (
        f"ALERT {what:<14} {alert['indicator']:<20} {where:<16} {words['value']}={shown} "
        f"{_colour(alert['colour'], level, colour)} {words['at']} {_local(alert['event_time'])} ICT"
        f"{extra}  id={alert['alert_id']}"
    )


def format_consolidated(row: dict[str, Any]) -> str:
    """One line per consolidated record: where, which period and its status, the value, the same
    period last year, and for an entity's own period the last 24 hours and the alert level."""
    scope = row.get("scope", "ENTITY")
    where = row["station"] or row["region"]
    series = ",".join(f"{k}={v}" for k, v in sorted((row.get("breakdowns") or {}).items()))
    label = f"{row.get('period') or row['window']} {row.get('status', '')}".strip()
    value = row.get("value")
    text = (
        f"{'CONSOLIDATED' if scope == 'ENTITY' else scope:<12} {row['indicator']:<16} "
        f"{where + (' ' + series if series else ''):<18} {label:<20} "
        f"value={value if value is not None else row['latest_value']:<8.6g} n={row['count']:<5}"
    )
    if row.get("yoy_change_pct") is not None:
        text += f" yoy={row['yoy_change_pct']:+.1f}%"
    if row.get("contributors"):
        text += f" units={row['contributors']}"
    day = next((w for w in row.get("windows") or [] if w["name"] == "rolling-24h"), None)
    if day is not None:
        text += f" 24h mean={day['mean']:.4g} max={day['max']:g}"
    if scope == "ENTITY":
        text += f" level={row['alert_level_code']}"
    return text


def assignment(
    consumer: Consumer, settings: Settings, topics: list[str], *, from_beginning: bool
) -> list[TopicPartition]:
    """Every partition of ``topics``, from its start or its end: a live view reads by assignment, in no
    consumer group, so a principal allowed to read the topics but not to join the app's groups (the
    center's, the SRE's: :mod:`stream_app.kafka.acl`) may run it, and nothing is committed anywhere."""
    start = OFFSET_BEGINNING if from_beginning else OFFSET_END
    try:
        found = consumer.list_topics(timeout=settings.startup_timeout_s).topics
    except KafkaException as exc:
        raise ServiceUnreachableError(f"Kafka did not answer at {settings.kafka_bootstrap}: {exc}") from None
    missing = [t for t in topics if t not in found or found[t].error is not None]
    if missing:
        raise ConfigurationError(
            f"cannot read {', '.join(missing)}: the topic does not exist, or this principal may not describe "
            "it (`stream-app topics apply`, `stream-app acl apply`)"
        )
    return [TopicPartition(t, p, start) for t in topics for p in sorted(found[t].partitions)]


def follow(
    settings: Settings,
    schemas: SchemaRegistry,
    topics: dict[str, str],
    on_record: Callable[[str, str], None],
    *,
    stop: Callable[[], bool],
    from_beginning: bool = False,
    colour: bool = False,
    lang: str = "both",
    min_level: int = 0,
) -> None:
    """Consume ``topics`` ({name: subject}) and call ``on_record(subject, line)`` until ``stop()``; by
    assignment (:func:`assignment`), in no consumer group.

    Records are read in either framing the processor writes: Avro single-object encoding, or Confluent
    framing through ``STREAM_APP_SCHEMA_REGISTRY_URL`` (``STREAM_APP_OUTPUT_FRAMING=confluent``).
    """
    resolve = registry.from_settings(settings, schemas)
    # the Python client wants a group.id even for a consumer that never joins a group nor commits
    unused = {"group.id": f"{settings.topic_namespace}tail-by-assignment", "enable.auto.commit": False}
    consumer = Consumer(confluent_config(settings, **unused))
    consumer.assign(assignment(consumer, settings, list(topics), from_beginning=from_beginning))
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
            if message.value() is None:  # a tombstone on a compacted topic: nothing to show
                continue
            try:
                record = codecs.decode(schemas, subject, message.value() or b"", resolve)
            except DecodeError as exc:
                on_record("error", f"{message.topic()}: {exc.message}")
                continue
            except SchemaRegistryUnavailable as exc:
                on_record("error", f"{message.topic()}: {exc}")
                continue
            if subject == "alert":
                if max(record["level"], record["previous_level"]) < min_level:
                    continue
                on_record(subject, format_alert(record, colour, lang))
            elif subject == "consolidated":
                on_record(subject, format_consolidated(record))
            else:
                on_record(subject, f"DEAD-LETTER reason={record['reason']} {record['message']}")
    finally:
        consumer.close()
