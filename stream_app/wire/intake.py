"""What the intake decides about one reporter's record, from its key and value bytes alone: the
validated observation, or the dead-letter reason and message. Pure (no Kafka, no Redis, no Faust).

One function for every caller: the intake agent (``agents/intake.py``) runs it on each record it
consumes, and ``stream-app produce --dry-run`` on each row it would send, so a dry run answers exactly
what the worker would. What needs the worker's state (duplicates, revisions, the entity's history) is
decided later, by the stateful step, and is not part of this check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from stream_app.domain.catalogue import Catalogue
from stream_app.domain.model import Observation, Rejection
from stream_app.domain.reasons import Reason
from stream_app.domain.validation import Limits, validate
from stream_app.wire import codecs
from stream_app.wire.codecs import DecodeError
from stream_app.wire.schemas import SchemaRegistry

if TYPE_CHECKING:
    from stream_app.settings import Settings


@dataclass(frozen=True, slots=True)
class IntakeCheck:
    """The intake's checks of one record, in its order: key size, decoding (size, wire format,
    schema), then validation against the catalogue.

    ``confluent`` resolves Confluent schema ids (the schema registry's edge; None without a
    registry): whatever it raises besides :class:`DecodeError` (the registry unreachable) propagates.
    """

    schemas: SchemaRegistry
    catalogue: Catalogue
    limits: Limits
    max_key_bytes: int
    max_record_bytes: int
    confluent: codecs.ConfluentResolver | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        catalogue: Catalogue,
        schemas: SchemaRegistry,
        confluent: codecs.ConfluentResolver | None = None,
    ) -> IntakeCheck:
        """The check a worker configured with ``settings`` runs."""
        return cls(
            schemas=schemas,
            catalogue=catalogue,
            limits=Limits.from_settings(settings),
            max_key_bytes=settings.intake_max_key_bytes,
            max_record_bytes=settings.intake_max_record_bytes,
            confluent=confluent,
        )

    def __call__(
        self, key: bytes | None, value: bytes | None, reporter: str, now_ms: int
    ) -> Observation | Rejection:
        """The observation of a record read from ``reporter``'s input topic at ``now_ms``, or why it
        is refused."""
        if key is not None and len(key) > self.max_key_bytes:
            return Rejection(Reason.KEY_TOO_LARGE, f"key of {len(key)} bytes exceeds {self.max_key_bytes}")
        try:
            record = codecs.decode_observation(
                self.schemas, value or b"", self.max_record_bytes, self.confluent, epoch_ms=True
            )
        except DecodeError as exc:
            return Rejection(exc.reason, exc.message)
        return validate(record, reporter, self.catalogue, now_ms, self.limits)
