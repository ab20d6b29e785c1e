"""How the records the processor writes are framed on the wire: one object per process, chosen by
``STREAM_APP_OUTPUT_FRAMING``.

- ``confluent`` (the default): Confluent framing (``00`` + schema id, 4 bytes big-endian, + the Avro
  binary) on every public topic (:data:`stream_app.kafka.subjects.SUBJECT_OF_ROLE`: ``center.*``, the
  reporters' dead letters and directives), for Confluent deserializers, Kafka Connect and ksqlDB. The ids
  are those of the topic's subject ``<topic>-value`` (TopicNameStrategy, see
  :mod:`stream_app.kafka.subjects`) in ``STREAM_APP_SCHEMA_REGISTRY_URL``, looked up — or registered
  when missing — once, at start-up, and kept: the write path never asks the registry. A worker waits an
  unreachable registry out at start-up (not ready meanwhile); a command-line writer gives up after
  ``STREAM_APP_STARTUP_TIMEOUT_S``. No record is ever written unframed. The internal topics stay
  single-object encoded (read by this processor only; one of them carries several record types).
- ``single_object``: Avro single-object encoding (``C3 01`` + CRC-64-AVRO fingerprint + Avro binary).
  Self-describing by fingerprint: no registry anywhere, and a reader needs only the ``.avsc`` files.

Readers tell the two apart by the first byte (:func:`stream_app.wire.codecs.decode`), so a topic that
holds both during a change of framing is read whole.

Stages encode single-object records (:func:`stream_app.wire.codecs.encode`), which is also what they
hand each other in memory (the publish observers see them unframed); the framing is applied where records
leave the process — :class:`stream_app.kafka.publisher.Publisher` for a worker, the object of
:func:`stream_app.kafka.subjects.output_framing` for a command-line writer. Re-framing swaps the
10-byte header for the 5-byte one: the Avro body is the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from stream_app.exceptions import StreamAppError
from stream_app.logs import get_logger
from stream_app.wire import codecs
from stream_app.wire.schemas import SchemaRegistry, SchemaVersion

log = get_logger(__name__)

SINGLE_OBJECT = "single_object"
CONFLUENT = "confluent"


class UnframedOutputError(StreamAppError):
    """A record for a Confluent-framed topic that cannot be framed (not single-object encoded, or of a
    schema with no id under the topic's subject): a defect. It is raised, never sent unframed."""


class Framing(Protocol):
    """What turns the single-object bytes of a record into the bytes written to its topic."""

    name: str

    def frame(self, topic: str, value: bytes | None) -> bytes | None:
        """The bytes to write to ``topic`` for a single-object encoded ``value`` (None: a tombstone)."""

    def encode(self, topic: str, schema: SchemaVersion, record: dict[str, Any]) -> bytes:
        """``record`` encoded with ``schema`` and framed for ``topic``."""

    def resolve(self, schema_id: int) -> SchemaVersion | None:
        """The local version behind a Confluent schema id this process writes with (no registry call):
        a :data:`stream_app.wire.codecs.ConfluentResolver` for reading what the processor wrote."""


class SingleObjectFraming:
    """Every record as it is encoded: Avro single-object encoding."""

    name = SINGLE_OBJECT

    def frame(self, topic: str, value: bytes | None) -> bytes | None:
        return value

    def encode(self, topic: str, schema: SchemaVersion, record: dict[str, Any]) -> bytes:
        return codecs.encode(schema, record)

    def resolve(self, schema_id: int) -> SchemaVersion | None:
        return None


class ConfluentFraming:
    """Confluent framing on the topics of ``ids`` ({topic: {fingerprint: schema id}}); other topics'
    records (the internal topics) pass unchanged."""

    name = CONFLUENT

    def __init__(self, ids: Mapping[str, Mapping[int, int]], schemas: SchemaRegistry) -> None:
        self._ids = {topic: dict(by_fingerprint) for topic, by_fingerprint in ids.items()}
        self._by_id = {
            schema_id: schemas.by_fingerprint[fingerprint]
            for by_fingerprint in ids.values()
            for fingerprint, schema_id in by_fingerprint.items()
        }

    @property
    def topics(self) -> frozenset[str]:
        """The topics written in Confluent framing."""
        return frozenset(self._ids)

    def schema_id(self, topic: str, version: SchemaVersion) -> int | None:
        """The id ``version`` is written with on ``topic``; None for a topic not framed."""
        return self._ids.get(topic, {}).get(version.fingerprint)

    def frame(self, topic: str, value: bytes | None) -> bytes | None:
        if value is None or topic not in self._ids:
            return value
        return self._framed(topic, value)

    def encode(self, topic: str, schema: SchemaVersion, record: dict[str, Any]) -> bytes:
        encoded = codecs.encode(schema, record)
        return self._framed(topic, encoded) if topic in self._ids else encoded

    def resolve(self, schema_id: int) -> SchemaVersion | None:
        return self._by_id.get(schema_id)

    def _framed(self, topic: str, value: bytes) -> bytes:
        ids = self._ids[topic]
        fingerprint = codecs.single_object_fingerprint(value)
        if fingerprint is None:
            raise UnframedOutputError(f"{topic}: a record that is not Avro single-object encoded")
        schema_id = ids.get(fingerprint)
        if schema_id is None:
            raise UnframedOutputError(
                f"{topic}: schema fingerprint {fingerprint:016x} has no id under the topic's subject "
                "(a record of another type?)"
            )
        return codecs.confluent_reframed(value, schema_id)


SINGLE_OBJECT_FRAMING = SingleObjectFraming()
