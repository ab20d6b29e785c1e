"""The walking skeleton end to end: a real worker process, real Kafka topics, real Redis."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis
from fastavro import parse_schema, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from stream_app.config.blueprint import Blueprint
from stream_app.kafka import acl
from stream_app.settings import Settings
from stream_app.wire import codecs

from .conftest import principal_env, secured
from .support import (
    collect,
    encode_alert,
    metric_value,
    observation,
    produce,
    redis_hash,
    to_the_end,
    wait_consumed,
)


def _input_topic(bp: Blueprint) -> str:
    return bp.input_topic("MAE").name


def _encode(bp: Blueprint, record: dict[str, Any]) -> bytes:
    return codecs.encode(bp.schemas.latest("observation"), record)


def test_observation_travels_to_alert_consolidated_and_redis(
    settings: Settings, blueprint: Blueprint, start_worker: Any
) -> None:
    worker = start_worker(settings)
    # VN_AQI fires after two consecutive readings at a level (min_count = 2 in catalogue/rules.toml).
    now_ms = int(time.time() * 1000)
    first = observation(value=163.0, event_time=now_ms - 120_000)
    second = observation(value=168.0, event_time=now_ms - 60_000)
    produce(
        settings,
        _input_topic(blueprint),
        [(b"HN-AQ-HOANKIEM", _encode(blueprint, o)) for o in (first, second)],
    )

    alerts = collect(settings, blueprint.topic_by_role("alerts").name, "alert", lambda r: len(r) >= 1)
    assert len(alerts.records) == 1
    alert = alerts.records[0]
    assert (alert["transition"], alert["event_type"], alert["rule_kind"]) == (
        "FIRING",
        "TRANSITION",
        "levels",
    )
    assert alert["level_code"] == "BAD"
    assert alert["level_name_vi"] == "Xấu"
    assert alert["colour"] == "#FF0000"
    assert alert["threshold"] == 151.0
    assert alert["domain"] == "environment"
    assert alert["observation_id"] == second["observation_id"]
    assert alert["cause_observation_ids"] == [second["observation_id"]]
    key = b"levels:ENV.AQI|ENV.AQI|01|HN-AQ-HOANKIEM"
    assert alerts.keys[0] == key
    domain = collect(
        settings, blueprint.domain_alerts_topic("environment").name, "alert", lambda r: len(r) >= 1
    )
    assert [a["alert_id"] for a in domain.records] == [alert["alert_id"]]
    active = collect(settings, blueprint.topic_by_role("active_alerts").name, "alert", lambda r: len(r) >= 1)
    assert active.keys == [key]

    consolidated = collect(
        settings,
        blueprint.topic_by_role("consolidated").name,
        "consolidated",
        lambda r: any(row["count"] == 2 and row["scope"] == "ENTITY" for row in r),
    )
    row = [r for r in consolidated.records if r["scope"] == "ENTITY"][-1]
    assert row["key"] == f"ENV.AQI:01:HN-AQ-HOANKIEM:{row['period']}"
    assert (row["frequency"], row["status"], row["kind"]) == ("daily", "OPEN", "UPDATE")
    assert row["windows"][0]["name"] == "rolling-24h"
    assert row["windows"][0]["count"] == 2
    assert (row["latest_value"], row["count"], row["max"], row["alert_level_code"]) == (
        168.0,
        2,
        168.0,
        "BAD",
    )

    state = redis_hash(
        redis.Redis.from_url(settings.redis_url.get_secret_value()),
        f"{settings.redis_key_prefix}:{{ENV.AQI|01|HN-AQ-HOANKIEM}}:state",
    )
    assert state[b"r:levels:ENV.AQI:l"] == b"3"
    assert float(state[b"latest_value"]) == 168.0
    assert any(k.startswith(b"off:") for k in state)

    exposition = worker.metrics()
    assert metric_value(exposition, "stream_app_records_accepted_total", reporter="MAE") == 2
    assert metric_value(exposition, "stream_app_alerts_emitted_total", transition="FIRING") == 1
    assert metric_value(exposition, "stream_app_end_to_end_latency_seconds_count") >= 1


def _kcat_as_mae(settings: Settings) -> list[str]:
    """kcat's connection, as MAE: with MAE's certificate on the mutual-TLS listener of the secured local
    broker (Debian's kcat cannot do SCRAM-SHA-512 there), or plainly on an open broker."""
    if not secured(settings):
        return ["-b", settings.kafka_bootstrap]
    mae = principal_env("mae")
    return [
        "-b",
        mae["SERVICES_KAFKA_MTLS_BOOTSTRAP"],
        "-X",
        "security.protocol=SSL",
        "-X",
        f"ssl.ca.location={mae['STREAM_APP_KAFKA_SSL_CA_FILE']}",
        "-X",
        f"ssl.certificate.location={mae['SERVICES_KAFKA_CLIENT_CERT']}",
        "-X",
        f"ssl.key.location={mae['SERVICES_KAFKA_CLIENT_KEY']}",
    ]


def test_kcat_produces_json_and_independently_encoded_avro(
    settings: Settings, blueprint: Blueprint, start_worker: Any, tmp_path: Path
) -> None:
    """The wire format is what the spec says, not only what our own encoder writes."""
    found = shutil.which("kcat")
    assert found, "kcat is installed by deploy/local/services install"
    kcat = [found, *_kcat_as_mae(settings)]
    if secured(settings):
        acl.apply(blueprint, only={acl.reporter_principal("MAE")})  # kcat writes as MAE
    start_worker(settings)
    topic = _input_topic(blueprint)
    now_ms = int(time.time() * 1000)

    # A JSON document, hand-written as a reporter's system would, with ISO-8601 times.
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now_ms / 1000))
    json_doc = (
        '{"observation_id": "kcat-json-1", "reporter": "MAE", "indicator": "HYD.WATER_LEVEL", '
        '"region": "01", "station": "HN-LONGBIEN", "value": 10.7, "unit": "m", '
        f'"event_time": "{stamp}", "report_time": "{stamp}"}}'
    )
    subprocess.run(
        [*kcat, "-P", "-t", topic, "-k", "HN-LONGBIEN"],
        input=json_doc.encode() + b"\n",
        check=True,
        timeout=30,
    )

    # Avro single-object encoding built with fastavro's own fingerprint, not stream_app.wire.codecs.
    raw_schema = json.loads((settings.schemas_dir / "observation.v1.avsc").read_text(encoding="utf-8"))
    parsed = parse_schema(raw_schema)
    wire = b"\xc3\x01" + bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
    # VN_AQI alerts after two consecutive readings at the level (min_count = 2 in rules.toml).
    files = []
    for n, value in enumerate((205.0, 212.0), start=1):
        body = io.BytesIO()
        reading = observation(
            observation_id=f"kcat-avro-{n}", value=value, event_time=now_ms - (3 - n) * 60_000
        )
        schemaless_writer(body, parsed, reading)
        files.append(tmp_path / f"obs{n}.avro")
        files[-1].write_bytes(wire + body.getvalue())
    # With file arguments, kcat sends each file whole as one message: binary-safe.
    subprocess.run(
        [*kcat, "-P", "-t", topic, "-k", "HN-AQ-HOANKIEM", *map(str, files)],
        check=True,
        timeout=30,
    )

    alerts = collect(settings, blueprint.topic_by_role("alerts").name, "alert", lambda r: len(r) >= 2)
    by_obs = {a["observation_id"]: a for a in alerts.records}
    assert by_obs["kcat-json-1"]["level_code"] == "BD2"  # 10.7 m at Long Biên: alarm level II
    assert by_obs["kcat-avro-2"]["level_code"] == "VERY_BAD"
    # none dead-lettered: the topic read to its end once every record is consumed (not for a fixed 3 s)
    wait_consumed(settings, blueprint, [topic, blueprint.topic_by_role("repartition").name])
    assert to_the_end(settings, blueprint.dead_letter_topic("MAE").name) == []


def test_every_record_is_accepted_or_dead_lettered_with_its_reason(
    settings: Settings, blueprint: Blueprint, start_worker: Any
) -> None:
    """A mixed stream: one record per reason code, hostile input among them; nothing is lost."""
    worker = start_worker(settings)
    now_ms = int(time.time() * 1000)
    good = [observation(value=float(v)) for v in (10, 20, 30)]
    nan_doc = (
        b'{"observation_id": "n", "reporter": "MAE", "indicator": "ENV.AQI", "region": "01",'
        b' "station": "HN-AQ-HOANKIEM", "value": NaN, "unit": "index", "event_time": 1764000000000,'
        b' "report_time": 1764000000000}'
    )
    bad: list[tuple[str, bytes]] = [
        ("undecodable", b"\xff\xfe not an observation"),
        ("undecodable", b'{"observation_id": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"),  # deep nesting
        ("oversized", b'{"observation_id": "' + b"x" * 300_000 + b'"}'),  # beyond the 256 KiB limit
        ("unknown_schema", b"\xc3\x01" + bytes(8) + b"\x00"),  # single-object, unknown fingerprint
        ("unknown_schema", b"\x00\x00\x00\x00\x07" + b"\x02"),  # Confluent framing, no registry
        ("schema_mismatch", b'{"observation_id": "x"}'),
        ("schema_mismatch", encode_alert(blueprint)),  # an alert sent as an observation
        ("unknown_reporter", _encode(blueprint, observation(reporter="MOH"))),
        ("unknown_indicator", _encode(blueprint, observation(indicator="XYZ.NOPE"))),
        (
            "indicator_not_owned",
            _encode(blueprint, observation(indicator="TRF.DEATHS", unit="persons", station=None)),
        ),
        ("unit_mismatch", _encode(blueprint, observation(unit="ppm"))),
        ("value_not_finite", nan_doc),
        ("value_out_of_range", _encode(blueprint, observation(value=501.0))),
        ("unknown_region", _encode(blueprint, observation(region="99"))),
        ("unknown_station", _encode(blueprint, observation(station="HCM-AQ-Q1"))),
        ("station_required", _encode(blueprint, observation(station=None))),
        ("event_time_in_future", _encode(blueprint, observation(event_time=now_ms + 3_600_000))),
        ("event_time_before_2010", _encode(blueprint, observation(event_time=1_200_000_000_000))),
        ("period_inconsistent", _encode(blueprint, observation(period="2024-Q1"))),
    ]
    records = [(b"k", _encode(blueprint, g)) for g in good] + [(b"bad", raw) for _, raw in bad]
    produce(settings, _input_topic(blueprint), records)

    dead = collect(
        settings, blueprint.dead_letter_topic("MAE").name, "dead_letter", lambda r: len(r) >= len(bad)
    )
    consolidated = collect(
        settings,
        blueprint.topic_by_role("consolidated").name,
        "consolidated",
        lambda r: any(row["count"] == 3 for row in r),
    )
    assert max(row["count"] for row in consolidated.records) == 3
    assert len(dead.records) == len(bad)
    assert Counter(d["reason"] for d in dead.records) == Counter(reason for reason, _ in bad)
    assert sorted(d["original"] for d in dead.records) == sorted(raw for _, raw in bad)
    for d in dead.records:
        assert d["source_topic"] == _input_topic(blueprint)
        assert d["source_offset"] >= 0
        assert d["message"]

    exposition = worker.metrics()
    consumed = metric_value(exposition, "stream_app_records_consumed_total", topic=_input_topic(blueprint))
    accepted = metric_value(exposition, "stream_app_records_accepted_total", reporter="MAE")
    assert consumed == len(records) == accepted + len(dead.records)
    for reason, count in Counter(d["reason"] for d in dead.records).items():
        assert (
            metric_value(exposition, "stream_app_records_rejected_total", reporter="MAE", reason=reason)
            == count
        )
    assert worker.proc.poll() is None, "hostile input must not crash the worker"
