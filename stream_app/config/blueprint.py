"""What every agent needs, loaded once at start-up: settings, catalogue, schemas, topics."""

from __future__ import annotations

from dataclasses import dataclass, replace

from stream_app.config.topics import TopicSpec, load_topics
from stream_app.domain.alerting import RuleBook, load_rules
from stream_app.domain.catalogue import DOMAINS, Catalogue, load_catalogue
from stream_app.exceptions import ConfigurationError
from stream_app.settings import Settings
from stream_app.wire.schemas import SchemaRegistry, load_schemas


@dataclass(frozen=True, slots=True)
class Blueprint:
    """The static configuration of a worker: everything read from the repository's data files."""

    settings: Settings
    catalogue: Catalogue
    schemas: SchemaRegistry
    topics: list[TopicSpec]
    rulebook: RuleBook

    def topic_by_role(self, role: str) -> TopicSpec:
        """The single topic of ``role`` (alerts, consolidated, directives, repartition)."""
        found = [t for t in self.topics if t.role == role]
        if len(found) != 1:
            raise ConfigurationError(f"expected one {role!r} topic, found {len(found)}")
        return found[0]

    def input_topics(self) -> list[TopicSpec]:
        """Every reporter's input topic."""
        return [t for t in self.topics if t.role == "input"]

    def input_topic(self, reporter: str) -> TopicSpec:
        """The input topic of ``reporter``."""
        return self._reporter_topic("input", reporter)

    def bulk_topics(self) -> list[TopicSpec]:
        """Every reporter's bulk topic (history and backfills, read after the live feed)."""
        return [t for t in self.topics if t.role == "bulk_input"]

    def bulk_topic(self, reporter: str) -> TopicSpec:
        """The bulk topic of ``reporter``."""
        return self._reporter_topic("bulk_input", reporter)

    def directives_topic(self, reporter: str) -> TopicSpec:
        """The topic of the center's directives about ``reporter``'s alerts."""
        return self._reporter_topic("reporter_directives", reporter)

    def domain_alerts_topic(self, domain: str) -> TopicSpec:
        """The alert topic of one catalogue domain; an unknown domain's error lists the known ones."""
        for spec in self.topics:
            if spec.role == "domain_alerts" and spec.domain == domain:
                return spec
        raise ConfigurationError(
            f"unknown domain {domain!r}: the domains are {', '.join(self.alert_domains())}"
        )

    def alert_domains(self) -> list[str]:
        """The domains that have an alert topic (every domain of the catalogue), sorted."""
        return sorted(t.domain for t in self.topics if t.role == "domain_alerts" and t.domain is not None)

    def dead_letter_topic(self, reporter: str) -> TopicSpec:
        """The dead-letter topic of ``reporter``."""
        return self._reporter_topic("dead_letter", reporter)

    def _reporter_topic(self, role: str, reporter: str) -> TopicSpec:
        for spec in self.topics:
            if spec.role == role and spec.reporter == reporter:
                return spec
        raise ConfigurationError(f"no {role} topic for reporter {reporter!r}")


REPORTER_INPUT_ROLES = ("input", "bulk_input")
"""The roles of the topics the reporters write (live and bulk): the only topics the workers read that
another party writes, held to the intake's bounds (:func:`reporter_limits`, and in the worker
:mod:`stream_app.kafka.fetch_bounds`)."""


REPORTER_BATCH_SLACK_BYTES = 64 * 1024
"""Room in a reporter topic's record batch beyond the largest value and key the intake accepts: the
batch and record framing, headers, and a few small records batched with the largest one."""


KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
"""The broker's default ``message.max.bytes``: what a producer left at its defaults batches up to
(librdkafka's ``batch.size`` is 1,000,000 bytes, counted before compression)."""


def reporter_max_message_bytes(settings: Settings) -> int:
    """The largest record batch a reporter's topic takes (its ``max.message.bytes``): what the intake
    accepts of one record and the slack, and never less than Kafka's default, so that a reporter whose
    producer batches as librdkafka does by default is not refused. A larger batch the broker refuses at
    the door instead of storing it and handing it to every worker; what a batch inflates to is bounded
    in the worker (:mod:`stream_app.kafka.fetch_bounds`)."""
    accepted = settings.intake_max_record_bytes + settings.intake_max_key_bytes + REPORTER_BATCH_SLACK_BYTES
    return max(accepted, KAFKA_DEFAULT_MAX_MESSAGE_BYTES)


def reporter_limits(topics: list[TopicSpec], settings: Settings) -> list[TopicSpec]:
    """``topics`` with every reporter input topic (live and bulk) limited to the intake's own bound
    (:func:`reporter_max_message_bytes`), whatever topics.toml says: the two cannot drift apart."""
    limit = {"max.message.bytes": str(reporter_max_message_bytes(settings))}
    return [
        replace(spec, config={**spec.config, **limit}) if spec.role in REPORTER_INPUT_ROLES else spec
        for spec in topics
    ]


def load_blueprint(settings: Settings) -> Blueprint:
    """Load and cross-check the catalogue, schemas and topics; errors name the file and the entry."""
    catalogue = load_catalogue(settings.catalogue_dir)
    schemas = load_schemas(settings.schemas_dir)
    topics = reporter_limits(
        load_topics(settings.topics_file, settings.topic_namespace, settings.topic_profile), settings
    )
    where = settings.topics_file
    for spec in topics:
        if spec.reporter is not None and spec.reporter not in catalogue.reporters:
            raise ConfigurationError(f"{where}: topic {spec.name!r}: unknown reporter {spec.reporter!r}")
    for role in ("input", "bulk_input", "dead_letter", "reporter_directives"):
        declared = [t.reporter for t in topics if t.role == role]
        twice = sorted({r for r in declared if r is not None and declared.count(r) > 1})
        missing = sorted(set(catalogue.reporters) - set(declared))
        if twice or missing:
            raise ConfigurationError(
                f"{where}: every reporter needs exactly one {role} topic"
                + (f"; missing for {missing}" if missing else "")
                + (f"; more than one for {twice}" if twice else "")
            )
    rulebook = load_rules(settings.catalogue_dir / "rules.toml", catalogue)
    blueprint = Blueprint(settings, catalogue, schemas, topics, rulebook)
    for role in (
        "alerts",
        "active_alerts",
        "consolidated",
        "directives",
        "directives_dead_letter",
        "repartition",
        "rollup",
        "briefings",
    ):
        blueprint.topic_by_role(role)  # exactly one of each, or a ConfigurationError
    # one alert topic per catalogue domain, spelt as the catalogue spells it
    declared = [t.domain for t in topics if t.role == "domain_alerts"]
    unknown = sorted({str(d) for d in declared if d not in DOMAINS})
    twice = sorted({d for d in declared if d is not None and declared.count(d) > 1})
    missing_domains = sorted(set(DOMAINS) - set(declared))
    if unknown or twice or missing_domains:
        raise ConfigurationError(
            f"{where}: every catalogue domain needs exactly one domain_alerts topic"
            + (f"; missing for {missing_domains}" if missing_domains else "")
            + (f"; more than one for {twice}" if twice else "")
            + (f"; unknown domains {unknown} (the catalogue's: {', '.join(DOMAINS)})" if unknown else "")
        )
    return blueprint
