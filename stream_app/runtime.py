"""What every agent needs, loaded once at start-up: settings, catalogue, schemas, topics, state store."""

from __future__ import annotations

from dataclasses import dataclass

from stream_app.catalogue import Catalogue, load_catalogue
from stream_app.schemas import SchemaRegistry, load_schemas
from stream_app.settings import Settings
from stream_app.topics import TopicSpec, load_topics


@dataclass(frozen=True, slots=True)
class Blueprint:
    """The static configuration of a worker: everything read from the repository's data files."""

    settings: Settings
    catalogue: Catalogue
    schemas: SchemaRegistry
    topics: list[TopicSpec]

    def topic_by_role(self, role: str) -> TopicSpec:
        """The single topic of ``role`` (alerts, consolidated, repartition)."""
        found = [t for t in self.topics if t.role == role]
        if len(found) != 1:
            raise LookupError(f"expected one {role!r} topic, found {len(found)}")
        return found[0]

    def dead_letter_topic(self, reporter: str) -> TopicSpec:
        """The dead-letter topic of ``reporter``."""
        for spec in self.topics:
            if spec.role == "dead_letter" and spec.reporter == reporter:
                return spec
        raise LookupError(f"no dead-letter topic for reporter {reporter!r}")


def load_blueprint(settings: Settings) -> Blueprint:
    """Load and check the catalogue, schemas and topics; raises ConfigurationError naming the problem."""
    catalogue = load_catalogue(settings.catalogue_dir)
    schemas = load_schemas(settings.schemas_dir)
    topics = load_topics(settings.topics_file, settings.topic_namespace)
    for spec in topics:
        if spec.reporter is not None and spec.reporter not in catalogue.reporters:
            raise LookupError(
                f"{settings.topics_file}: topic {spec.name!r}: unknown reporter {spec.reporter!r}"
            )
    return Blueprint(settings, catalogue, schemas, topics)
