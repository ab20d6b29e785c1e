"""The topics the processor reads and writes, as declared in ``topics/topics.toml``: name, role,
partitions, replication, Kafka configs, and the reporter or domain a topic belongs to. Checked entry
by entry when loaded; :mod:`stream_app.kafka.topics` makes the cluster match."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from stream_app.exceptions import ConfigurationError

ROLES = frozenset(
    {
        "input",  # a reporter's observations
        "bulk_input",  # a reporter's bulk loads (history, backfills): read after the live feed
        "dead_letter",  # a reporter's rejected records
        "reporter_directives",  # the center's directives about one reporter's alerts
        "repartition",  # internal: observations, ticks and directives keyed by entity
        "rollup",  # internal: entities' period aggregates keyed by roll-up target (national, province)
        "briefings",  # the daily briefing
        "alerts",  # every alert change
        "domain_alerts",  # the alert changes of one domain
        "active_alerts",  # compacted: the open alerts
        "consolidated",
        "directives",  # the center's directives, as issued
        "directives_dead_letter",  # directives that could not be applied
        "consolidate_dead_letter",  # internal records the stateful step could not process (poison)
        "rollup_dead_letter",  # roll-up contributions the roll-up step could not process (poison)
        "audit",  # who did what: directives over HTTP, dead-letter replays, ACL changes
    }
)
REPORTER_ROLES = frozenset({"input", "bulk_input", "dead_letter", "reporter_directives"})


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One declared topic, with its namespaced cluster name."""

    name: str
    role: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)
    reporter: str | None = None
    domain: str | None = None
    doc: str = ""


def load_topics(path: Path, namespace: str = "", profile: str = "single") -> list[TopicSpec]:
    """Read the topic declarations, checking each entry. ``profile`` (``STREAM_APP_TOPIC_PROFILE``)
    picks a ``[profile.<name>]`` table: its replication factor and its configs (a topic's own win)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{path}: {exc}") from exc
    profiles = data.get("profile", {})
    if profiles and profile not in profiles:
        raise ConfigurationError(f"{path}: no [profile.{profile}] (profiles: {sorted(profiles)})")
    chosen = profiles.get(profile, {})
    defaults = {**data.get("defaults", {}), **{k: v for k, v in chosen.items() if k != "config"}}
    shared_config = chosen.get("config", {})
    if not isinstance(shared_config, dict):
        raise ConfigurationError(f"{path}: [profile.{profile}] config must be a table of Kafka topic configs")
    specs: list[TopicSpec] = []
    seen: set[str] = set()
    for entry in data.get("topic", []):
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"{path}: a [[topic]] has no name")
        if name in seen:
            raise ConfigurationError(f"{path}: topic {name!r} declared twice")
        seen.add(name)
        role = entry.get("role")
        if role not in ROLES:
            raise ConfigurationError(f"{path}: topic {name!r}: role {role!r} is not one of {sorted(ROLES)}")
        if role in REPORTER_ROLES and not entry.get("reporter"):
            article = "an" if role[0] in "aeiou" else "a"
            raise ConfigurationError(f"{path}: topic {name!r}: {article} {role} topic needs a reporter")
        counts = {}
        for key in ("partitions", "replication_factor"):
            value = entry.get(key, defaults.get(key, 1))
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{path}: topic {name!r}: {key} must be a whole number >= 1")
            counts[key] = value
        config = entry.get("config", {})
        if not isinstance(config, dict):
            raise ConfigurationError(f"{path}: topic {name!r}: config must be a table of Kafka topic configs")
        specs.append(
            TopicSpec(
                name=f"{namespace}{name}",
                role=role,
                partitions=counts["partitions"],
                replication_factor=counts["replication_factor"],
                config={str(k): str(v) for k, v in {**shared_config, **config}.items()},
                reporter=entry.get("reporter"),
                domain=entry.get("domain"),
                doc=str(entry.get("doc", "")),
            )
        )
    return specs
