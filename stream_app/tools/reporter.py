"""``stream-app reporter add|rotate|remove CODE``: a reporter onboarded, re-keyed or let go in one step.

``add`` takes a reporter from its catalogue entry (``catalogue/reporters.toml``, its four topics in
``topics.toml``) to a broker on which it can send: its topics (live, bulk, dead letters, directives:
``stream-app topics apply`` on just those), its ACLs and the app's and the SRE's on its topics
(``acl apply`` on just those), its client quotas (``quotas apply`` on just its user) and its SCRAM
credential, made last so that a reporter that can log in has everything else. The client settings are
printed; the password only when this run made it. Idempotent: a second ``add`` changes nothing and
prints no password (the broker keeps only a hash: ``rotate`` makes a new one). A reporter whose user
already exists (the local services make one per catalogue reporter when they format the broker) keeps
its password.

``rotate`` replaces the password (new logins with the old one are refused; connections already open
stay until they reconnect). ``remove`` deletes the credential, every ACL of the reporter's user and
its quotas, and with ``--delete-topics`` its topics (and every ACL on them); the catalogue entry is the
operator's to delete afterwards, or ``acl apply`` grants the rights again.

Every change is one audit record on ``center.audit`` (``reporter_add``, ``reporter_rotate``,
``reporter_remove``), by the admin principal running the command; never with a password.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from stream_app.api import audit
from stream_app.config.blueprint import Blueprint
from stream_app.config.topics import REPORTER_ROLES, TopicSpec
from stream_app.exceptions import RefusedError, UsageError
from stream_app.kafka import acl, credentials, quotas, topics
from stream_app.kafka.acl import reporter_principal
from stream_app.kafka.quotas import reporter_user
from stream_app.settings import Settings

# What a client calls each of a reporter's topics (the role's name in topics.toml is the project's).
TOPIC_USES = {
    "input": "live",
    "bulk_input": "bulk",
    "dead_letter": "dead_letters",
    "reporter_directives": "directives",
}


@dataclass(slots=True)
class Outcome:
    """What one ``reporter`` command did (or, dry, would do). ``client`` carries the password only when
    this run made one; :meth:`audit_details` never does."""

    action: str  # add | rotate | remove
    reporter: str
    user: str
    dry_run: bool
    topics: list[str] = field(default_factory=list)  # created (add) or deleted (remove)
    granted: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    quotas: list[str] = field(default_factory=list)  # set (add) or removed (remove)
    credential: str = "unchanged"  # created | rotated | deleted | unchanged | absent
    client: dict[str, Any] | None = None

    @property
    def changed(self) -> bool:
        return bool(self.topics or self.granted or self.revoked or self.quotas) or self.credential in (
            "created",
            "rotated",
            "deleted",
        )

    def audit_details(self) -> dict[str, str]:
        """The audit record's details: counts and names, never a secret."""
        return {
            "user": self.user,
            "topics": ",".join(self.topics),
            "granted": str(len(self.granted)),
            "revoked": str(len(self.revoked)),
            "quotas": ",".join(self.quotas),
            "credential": self.credential,
        }


def reporter_topics(blueprint: Blueprint, code: str) -> list[TopicSpec]:
    """The reporter's four topics as declared (live, bulk, dead letters, directives); an unknown code
    is a usage error naming the catalogue."""
    if code not in blueprint.catalogue.reporters:
        known = ", ".join(sorted(blueprint.catalogue.reporters))
        raise UsageError(
            f"reporter {code!r} is not in the catalogue ({blueprint.settings.catalogue_dir}/reporters.toml; "
            f"known: {known})"
        )
    return [t for t in blueprint.topics if t.reporter == code and t.role in REPORTER_ROLES]


def client_settings(
    settings: Settings, code: str, specs: list[TopicSpec], password: str | None
) -> dict[str, Any]:
    """What the reporter's producer needs, as librdkafka properties (Python, Go, kcat take them as they
    are; Java's names differ only in spelling), its topics and its consumer groups' prefix. Without
    ``password`` the property is absent: the broker keeps only a hash of it."""
    properties: dict[str, str] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol.startswith("SASL"):
        properties["sasl.mechanism"] = credentials.mechanism(settings)
        properties["sasl.username"] = reporter_user(code)
        if password is not None:
            properties["sasl.password"] = password
    if settings.kafka_ssl_ca_file is not None and settings.kafka_security_protocol.endswith("SSL"):
        properties["ssl.ca.location"] = str(settings.kafka_ssl_ca_file)
    return {
        "properties": properties,
        "topics": {TOPIC_USES[s.role]: s.name for s in specs},
        "group_prefix": f"{settings.topic_namespace}reporter.{code.lower()}.",
    }


def add(blueprint: Blueprint, code: str, *, dry_run: bool = False) -> Outcome:
    """Onboard ``code`` (see the module's doc): topics, ACLs, quotas, then the credential."""
    settings = blueprint.settings
    specs = reporter_topics(blueprint, code)
    user = reporter_user(code)
    keep = acl.concerning(reporter_principal(code), [s.name for s in specs])
    outcome = Outcome("add", code, user, dry_run)
    if dry_run:
        outcome.topics = [c.topic for c in topics.plan(settings, specs) if c.action == "create"]
        grants = acl.plan(blueprint, keep=keep)
        quota_plan = quotas.plan(blueprint, users={user})
    else:
        outcome.topics = [c.topic for c in topics.apply(settings, specs) if c.action == "create"]
        grants = acl.apply(blueprint, keep=keep)
        quota_plan = quotas.apply(blueprint, users={user})
    outcome.granted = [str(g) for g in grants.create]
    outcome.revoked = [str(g) for g in grants.delete]
    outcome.quotas = [str(q) for q in quota_plan.to_set]
    password = None
    if not credentials.exists(settings, user):
        outcome.credential = "created"
        if not dry_run:
            password = credentials.new_password()
            credentials.upsert(settings, user, password)
    outcome.client = client_settings(settings, code, specs, password)
    return outcome


def rotate(blueprint: Blueprint, code: str) -> Outcome:
    """A new password for ``code``'s user; refused when it has none (``add`` first)."""
    settings = blueprint.settings
    specs = reporter_topics(blueprint, code)
    user = reporter_user(code)
    if not credentials.exists(settings, user):
        raise RefusedError(
            f"Kafka user {user!r} has no credential: onboard it with `stream-app reporter add {code}`"
        )
    password = credentials.new_password()
    credentials.upsert(settings, user, password)
    outcome = Outcome("rotate", code, user, dry_run=False, credential="rotated")
    outcome.client = client_settings(settings, code, specs, password)
    return outcome


def remove(blueprint: Blueprint, code: str, *, delete_topics: bool = False, dry_run: bool = False) -> Outcome:
    """Let ``code`` go: its credential, its user's ACLs, its quotas; its topics only when asked. Works
    whether or not the catalogue still lists it (its declared topics are known only while it does)."""
    settings = blueprint.settings
    user = reporter_user(code)
    principal = reporter_principal(code)
    names = [t.name for t in blueprint.topics if t.reporter == code] if delete_topics else []
    unwanted = {g for g in acl.current(settings) if g.principal == principal or g.name in names}
    outcome = Outcome("remove", code, user, dry_run)
    outcome.revoked = [str(g) for g in sorted(unwanted)]
    if dry_run:
        outcome.credential = "deleted" if credentials.exists(settings, user) else "absent"
        outcome.quotas = sorted(key for (_u, key) in quotas.current(settings, [user]))
        present = topics.plan(settings, [t for t in blueprint.topics if t.name in names])
        missing = {c.topic for c in present if c.action == "create"}
        outcome.topics = [n for n in names if n not in missing]
        return outcome
    # the credential first: from then on the reporter cannot log in, whatever else is left
    outcome.credential = "deleted" if credentials.delete(settings, user) else "absent"
    acl.delete(settings, unwanted)
    outcome.quotas = quotas.remove(settings, user)
    outcome.topics = topics.delete(settings, names) if names else []
    return outcome


def run(
    blueprint: Blueprint, action: str, code: str, *, output: str, dry_run: bool, delete_topics: bool
) -> int:
    """The ``reporter`` verb: act, audit a change, print the outcome; the exit code."""
    if action == "add":
        outcome = add(blueprint, code, dry_run=dry_run)
    elif action == "rotate":
        outcome = rotate(blueprint, code)  # RefusedError: exit 1 (stream_app.exit_codes)
    else:
        outcome = remove(blueprint, code, delete_topics=delete_topics, dry_run=dry_run)
    if outcome.changed and not outcome.dry_run:
        audit.send_cli(blueprint, f"reporter_{action}", code, "applied", outcome.audit_details())
    print(json.dumps(asdict(outcome), indent=2) if output == "json" else "\n".join(text(outcome)))
    return 0


def text(outcome: Outcome) -> list[str]:
    """The outcome as a person reads it."""
    lines = [f"reporter {outcome.reporter} ({outcome.action}{', dry run' if outcome.dry_run else ''}):"]
    topic_verb = "create" if outcome.action == "add" else "delete"
    lines += [f"  topic    {topic_verb:<7} {name}" for name in outcome.topics]
    lines += [f"  acl      + {g}" for g in outcome.granted]
    lines += [f"  acl      - {g}" for g in outcome.revoked]
    lines += [f"  quota    {'remove ' if outcome.action == 'remove' else ''}{q}" for q in outcome.quotas]
    lines.append(f"  user     {outcome.user}: credential {outcome.credential}")
    if not outcome.changed:
        lines.append("  nothing to change")
    elif outcome.dry_run:
        lines.append("  (would change the above: run without --dry-run)")
    if outcome.client is not None:
        lines.append("client settings (librdkafka properties):")
        lines += [f"  {k}={v}" for k, v in outcome.client["properties"].items()]
        if "sasl.password" in outcome.client["properties"]:
            lines.append(
                "  (the password is shown only now: the broker keeps a hash; `reporter rotate` makes another)"
            )
        elif outcome.client["properties"].get("sasl.username"):
            lines.append(
                "  sasl.password: not shown (unchanged; `stream-app reporter rotate` makes a new one)"
            )
        lines += [f"  topic {use}: {name}" for use, name in outcome.client["topics"].items()]
        lines.append(f"  consumer groups: {outcome.client['group_prefix']}*")
    return lines
