"""A reporter turning the schema-registry path against the worker (issue 25), on the real broker with the
registry's HTTP test double (``tests/registry_fake.py``) that the worker process asks.

MAE sends a record framed with a schema it registered whose array items take no bytes, then hundreds of
records framed with random schema ids, then a valid record; MPS sends a valid Confluent-framed record
meanwhile. The valid records are applied; MAE's others are dead-lettered (``schema_not_allowed``,
``unknown_schema``, or ``schema_not_looked_up`` beyond the batch's lookups); the registry is asked at most
``STREAM_APP_SCHEMA_REGISTRY_MAX_LOOKUPS_PER_BATCH`` ids a batch, each once; the worker stays ready.
"""

from __future__ import annotations

import io
import json
import random
import time
from collections import Counter
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema
from fastavro import parse_schema, schemaless_writer

from stream_app.config.blueprint import Blueprint
from stream_app.kafka import registry
from stream_app.settings import Settings
from stream_app.wire import codecs

from ..registry_fake import FakeRegistry
from .support import collect, metric_value, observation, probe, produce

LIMIT = 8
RANDOM_IDS = 300
LOOKUPS = "/schemas/ids/"


def _framed(schema_id: int, schema: Any, record: dict[str, Any]) -> bytes:
    body = io.BytesIO()
    schemaless_writer(body, schema, record)
    return b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()


def _zero_byte_items_record(schema_id: int, schema: dict[str, Any], now_ms: int) -> bytes:
    """A record of ``schema`` (observation v2 + an array of nulls, last) whose array declares 2**20 nulls
    in four bytes. Few enough to do no harm should the worker read it: it would then be applied."""
    record = observation(value=66.0, event_time=now_ms - 3000) | {
        "report_ref": None,
        "source_system": None,
        "padding": [],
    }
    framed = _framed(schema_id, parse_schema(schema), record)
    assert framed.endswith(b"\x00")  # the empty array: a block count of 0
    return framed[:-1] + b"\x80\x80\x80\x01" + b"\x00"  # a block of 2**20 items, then the end


def _mps_record(now_ms: int) -> dict[str, Any]:
    return observation(
        reporter="MPS",
        indicator="TRF.DEATHS",
        region="01",
        station=None,
        unit="persons",
        value=3.0,
        event_time=now_ms - 3_600_000,
        report_time=now_ms - 3_540_000,
    ) | {"report_ref": None, "source_system": None}


def test_random_schema_ids_and_a_schema_of_empty_items_cannot_stall_the_worker(
    settings: Settings, blueprint: Blueprint, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STREAM_APP_SCHEMA_REGISTRY_URL", raising=False)
    mae, mps = blueprint.input_topic("MAE").name, blueprint.input_topic("MPS").name
    v2 = blueprint.schemas.latest("observation")
    with FakeRegistry() as fake:
        client = registry.new_client(fake.url)
        valid_id = int(client.register_schema(f"{mps}-value", Schema(v2.text, "AVRO")))
        hostile = json.loads(v2.text)
        hostile["fields"].append(
            {"name": "padding", "type": {"type": "array", "items": "null"}, "default": []}
        )
        hostile_id = int(client.register_schema(f"{mae}-value", Schema(json.dumps(hostile), "AVRO")))

        worker = start_worker(
            settings,
            STREAM_APP_SCHEMA_REGISTRY_URL=fake.url,
            STREAM_APP_OUTPUT_FRAMING="single_object",  # the fake's ids are not the test readers' registry's
            STREAM_APP_SCHEMA_REGISTRY_MAX_LOOKUPS_PER_BATCH=str(LIMIT),
            STREAM_APP_BATCH_WITHIN_S="0.5",  # the flood in few batches: the limit is met
        )
        assert fake.count("GET", LOOKUPS) == 0

        now_ms = int(time.time() * 1000)
        rng = random.Random(25)
        random_ids = rng.sample(range(1_000, 2**31), RANDOM_IDS)
        flood_record = observation(value=99.0, event_time=now_ms - 2000) | {
            "report_ref": None,
            "source_system": None,
        }
        flood = [_framed(i, v2.parsed, flood_record) for i in random_ids]
        valid_mae = codecs.encode(v2, observation(value=61.0, event_time=now_ms - 1000))
        produce(
            settings,
            mae,
            [(b"HN-AQ-HOANKIEM", v) for v in [_zero_byte_items_record(hostile_id, hostile, now_ms), *flood]],
        )
        produce(settings, mps, [(b"01", _framed(valid_id, v2.parsed, _mps_record(now_ms)))])
        produce(settings, mae, [(b"HN-AQ-HOANKIEM", valid_mae)])

        consolidated = collect(
            settings,
            blueprint.topic_by_role("consolidated").name,
            "consolidated",
            lambda rows: {"MAE", "MPS"} <= {r["reporter"] for r in rows},
            timeout=60,
        )
        applied = {(r["reporter"], r["latest_value"]) for r in consolidated.records if r["scope"] == "ENTITY"}
        assert ("MAE", 61.0) in applied
        assert any(r["reporter"] == "MPS" for r in consolidated.records), (
            "MPS's new schema id took no turn among MAE's: each record's topic must reach the lookup plan"
        )
        assert ("MAE", 66.0) not in applied
        assert ("MAE", 99.0) not in applied

        dead = collect(
            settings,
            blueprint.dead_letter_topic("MAE").name,
            "dead_letter",
            lambda rows: len(rows) >= 1 + RANDOM_IDS,
            timeout=60,
        )
        reasons = Counter(letter["reason"] for letter in dead.records)
        assert sum(reasons.values()) == 1 + RANDOM_IDS, reasons
        first = next(letter for letter in dead.records if letter["source_offset"] == 0)
        assert first["reason"] == "schema_not_allowed", first
        assert f"schema id {hostile_id} has array items that take no bytes" in first["message"]
        assert set(reasons) <= {"schema_not_allowed", "unknown_schema", "schema_not_looked_up"}, reasons
        assert reasons["schema_not_looked_up"] > 0, "the flood met the limit"

        # the registry: each id asked once at most, and no more than LIMIT ids a batch
        text = worker.metrics()
        batches = metric_value(text, "stream_app_batch_size_count", agent="intake")
        lookups = fake.count("GET", LOOKUPS)
        assert lookups == reasons["unknown_schema"] + 2, "the random ids asked, the two registered ones"
        assert lookups <= LIMIT * batches, (lookups, batches)
        assert (
            metric_value(text, "stream_app_schema_registry_lookups_total", outcome="skipped")
            == (reasons["schema_not_looked_up"])
        )
        assert metric_value(text, "stream_app_schema_registry_lookups_total", outcome="refused") == 1
        assert (
            metric_value(
                text, "stream_app_records_rejected_total", reporter="MAE", reason="schema_not_allowed"
            )
            == 1
        )
        status, _ = probe(settings, "/readyz")
        assert status == 200
