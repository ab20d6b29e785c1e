"""The project's contracts in the real schema registry of the local services (Apicurio Registry, serving
Confluent's API), not the fake: what ``deploy/local/services up`` does at every start, and what a
subscriber who knows nothing of this project but the registry's address relies on.

- ``stream-app schemas register`` registers every subject, each with compatibility FULL_TRANSITIVE
  (Apicurio's global default is NONE: it must be set per subject), and a second run registers nothing;
- one schema has one id, whatever the subject (so a reader's cache of ids is one per schema);
- FULL_TRANSITIVE is enforced by the registry itself: an incompatible evolution is refused with 409, a
  compatible one (a field with a default) accepted;
- Confluent's own Python ``SchemaRegistryClient`` reads a registered schema by id, and its
  ``AvroSerializer`` / ``AvroDeserializer`` round-trip an observation through the registry; this
  processor's resolver turns the id back into its own version.

Each test registers under its own topic namespace (``t<tag>.``) and deletes its subjects afterwards. The
tests are skipped when no registry is configured (``STREAM_APP_SCHEMA_REGISTRY_URL``, which
``deploy/local/services env`` exports) or it does not answer; ``make test`` starts it.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from stream_app.config.blueprint import Blueprint
from stream_app.kafka import registry, subjects
from stream_app.settings import Settings
from stream_app.wire.schemas import parse_version

from .support import observation, registry_client

CONFLICT = 409


def _subject(blueprint: Blueprint, role: str) -> subjects.Subject:
    """The subject of the first topic of ``role`` (there is one input topic per reporter)."""
    topic = min(t.name for t in blueprint.topics if t.role == role)
    return next(s for s in subjects.registered_subjects(blueprint) if s.topic == topic)


def test_the_projects_schemas_register_full_transitive_with_one_id_per_schema(
    real_registry: tuple[SchemaRegistryClient, Blueprint],
) -> None:
    client, blueprint = real_registry
    every = subjects.registered_subjects(blueprint)
    report = subjects.register(client, every, "local registry")

    assert report.subjects == len(every) > 0
    assert report.registered == report.versions == sum(len(s.versions) for s in every)
    assert report.compatibility_set == len(every), "Apicurio's global NONE is overridden on every subject"
    for subject in every:
        assert client.get_compatibility(subject.name) == subjects.COMPATIBILITY
        assert client.get_versions(subject.name) == list(range(1, len(subject.versions) + 1)), (
            "the registry's version history is the repository's, oldest first"
        )

    # one schema, one id: every subject holding observation.v2.avsc names it by the same id
    ids: dict[int, set[int]] = {}
    for subject in every:
        for item in subjects.ensure_subject(client, subject, "local registry"):
            assert not item.new, "a second look registers nothing"
            ids.setdefault(item.version.fingerprint, set()).add(item.schema_id)
    assert all(len(found) == 1 for found in ids.values()), ids
    assert len({next(iter(found)) for found in ids.values()}) == len(ids), "and two schemas, two ids"

    again = subjects.register(client, every, "local registry")
    assert again.registered == 0, "registering is idempotent"
    assert again.compatibility_set == 0


def test_full_transitive_refuses_an_incompatible_evolution_with_409(
    real_registry: tuple[SchemaRegistryClient, Blueprint],
) -> None:
    client, blueprint = real_registry
    alerts = _subject(blueprint, "alerts")
    subjects.register(client, [alerts], "local registry")
    latest = json.loads(subjects.registry_text(alerts.versions[-1]))

    # a new field without a default: old readers could read it, but the new reader could not read old records
    required = copy.deepcopy(latest)
    required["fields"].append({"name": "severity_rank", "type": "int"})
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(alerts.name, Schema(json.dumps(required), "AVRO"))
    assert refused.value.http_status_code == CONFLICT, refused.value

    # an older version's field dropped, its type changed: refused too, against every version (transitive)
    changed = copy.deepcopy(latest)
    first = next(f for f in changed["fields"] if f["name"] == "alert_id")
    first["type"] = "long"
    with pytest.raises(SchemaRegistryError) as refused_type:
        client.register_schema(alerts.name, Schema(json.dumps(changed), "AVRO"))
    assert refused_type.value.http_status_code == CONFLICT, refused_type.value

    # the same with a default: both ways compatible, accepted as the next version
    optional = copy.deepcopy(latest)
    optional["fields"].append({"name": "severity_rank", "type": ["null", "int"], "default": None})
    client.register_schema(alerts.name, Schema(json.dumps(optional), "AVRO"))
    assert client.get_versions(alerts.name) == list(range(1, len(alerts.versions) + 2))


def test_confluents_client_and_serdes_read_a_registered_schema_by_id(
    settings: Settings, real_registry: tuple[SchemaRegistryClient, Blueprint]
) -> None:
    client, blueprint = real_registry
    inputs = _subject(blueprint, "input")
    [*_, newest] = subjects.ensure_subject(client, inputs, "local registry")

    fetched = client.get_schema(newest.schema_id)
    assert fetched.schema_type in (None, "AVRO")
    assert parse_version(fetched.schema_str or "", "", 0).fingerprint == newest.version.fingerprint

    # a producer using Confluent's serializer (looking the id up, registering nothing) and a subscriber
    # using its deserializer: the bytes carry only the id, the registry gives the schema
    serializer = AvroSerializer(
        client,
        subjects.registry_text(newest.version),
        conf={"auto.register.schemas": False, "use.latest.version": False},
    )
    context = SerializationContext(inputs.topic, MessageField.VALUE)
    record = observation()
    framed = serializer(record, context)
    assert framed is not None
    assert framed[0] == 0
    assert int.from_bytes(framed[1:5], "big") == newest.schema_id

    with registry_client(settings) as fresh:  # no cache shared with the client that registered
        decoded: Any = AvroDeserializer(fresh)(framed, context)
        # and this processor's resolver names the id by its own version of the contract
        resolved = registry.ConfluentSchemas(fresh, blueprint.schemas)(newest.schema_id)
    assert resolved is not None
    assert resolved.file_name == newest.version.file_name

    # timestamp-millis comes back as an aware datetime; the fields the record left out, as their defaults
    as_sent = {k: v for k, v in decoded.items() if k in record}
    for k, v in as_sent.items():
        if isinstance(v, datetime):
            as_sent[k] = int(v.timestamp() * 1000)
    assert as_sent == record
    assert all(decoded[k] is None for k in decoded.keys() - record.keys())
