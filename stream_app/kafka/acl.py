"""Who may do what on the broker, as data: Kafka ACLs derived from the topics and the reporters.

The rule the intake relies on — the topic a record came from says which reporter sent it — holds only
as far as write access to the topics holds; these grants make it so, on a broker whose authorizer
refuses whatever no ACL allows (``allow.everyone.if.no.acl.found=false``):

- each **reporter** writes its own input topic and reads its own dead letters and directives (and
  consumer groups named ``reporter.<code>.…``) — nothing else;
- the **center** (the screen's processes) reads every ``center.*`` topic (groups ``center.…``) and
  writes nothing: an operator's directive is forwarded to a worker's HTTP API, which authenticates the
  person;
- the **app** reads what its agents consume, writes what they produce (internal topics, outputs, dead
  letters), describes every topic, and owns its consumer group (and groups prefixed by it). It alone
  writes ``center.directives`` (what its HTTP API takes from authenticated people, each record naming
  the person, the token and the principal) and ``center.audit`` (one record per directive, accepted or
  refused): :data:`DIRECTIVE_WRITERS`;
- the **SRE** user reads every topic and describes the app's group (lag), writing nothing;
- anyone else (a reporter's neighbour, a stranger) is refused by the authorizer.

``plan`` compares the grants with the cluster; ``apply`` creates the missing ones and deletes, on the
resources it manages, grants of the managed principals that are no longer wanted. Idempotent, like
``stream-app topics apply``. The super users (the admin and the brokers) are the broker's setting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from stream_app.config.blueprint import Blueprint
from stream_app.exceptions import ServiceUnreachableError
from stream_app.kafka.config import confluent_config
from stream_app.settings import Settings

# What the app's agents consume, and what they (or its HTTP API, or its tools) produce.
APP_READS = frozenset({"input", "bulk_input", "repartition", "rollup", "directives", "active_alerts"})
APP_WRITES = frozenset(
    {
        "dead_letter",
        "reporter_directives",
        "repartition",
        "rollup",
        "briefings",
        "alerts",
        "domain_alerts",
        "active_alerts",
        "consolidated",
        "directives_dead_letter",
        "consolidate_dead_letter",
        "rollup_dead_letter",
    }
)


@dataclass(frozen=True, order=True, slots=True)
class Grant:
    """One ACL: ``principal`` may do ``operation`` on a resource (literal name, or a name prefix)."""

    principal: str  # User:<name>
    resource: str  # TOPIC | GROUP
    name: str
    pattern: str  # LITERAL | PREFIXED
    operation: str  # READ | WRITE | DESCRIBE | DESCRIBE_CONFIGS

    def binding(self) -> AclBinding:
        return AclBinding(
            ResourceType[self.resource],
            self.name,
            ResourcePatternType[self.pattern],
            self.principal,
            "*",
            AclOperation[self.operation],
            AclPermissionType.ALLOW,
        )

    def __str__(self) -> str:
        suffix = "*" if self.pattern == "PREFIXED" else ""
        return f"{self.principal:<18} {self.operation:<16} {self.resource.lower():<6} {self.name}{suffix}"


Keep = Callable[[Grant], bool]
"""Which of the wanted grants a ``plan`` or ``apply`` manages."""

# Who may write the center's directives and its audit trail: the process that authenticated the person.
DIRECTIVE_WRITERS = ("app",)


def own_principal(settings: Settings) -> str:
    """The Kafka principal this process authenticates as (``User:ANONYMOUS`` without SASL)."""
    sasl = settings.kafka_security_protocol.startswith("SASL") and settings.kafka_sasl_username
    return f"User:{settings.kafka_sasl_username}" if sasl else "User:ANONYMOUS"


def directive_writers(settings: Settings) -> frozenset[str]:
    """The principals whose directives a worker applies: those the grants let write the directives
    topic (without SASL, nobody is authenticated: then this process's own principal too)."""
    named = {"app": f"User:{settings.acl_app_user}"}
    found = {named[role] for role in DIRECTIVE_WRITERS}
    if own_principal(settings) == "User:ANONYMOUS":
        found.add("User:ANONYMOUS")
    return frozenset(found)


def reporter_principal(code: str) -> str:
    """A reporter's Kafka user: its catalogue code in lower case (``MAE`` -> ``User:mae``)."""
    return f"User:{code.lower()}"


def principals(settings: Settings, blueprint: Blueprint) -> dict[str, str]:
    """Every managed principal, by what it stands for (``app``, ``center``, ``sre``, a reporter code)."""
    found = {
        "app": f"User:{settings.acl_app_user}",
        "center": f"User:{settings.acl_center_user}",
        "sre": f"User:{settings.acl_sre_user}",
    }
    for code in sorted(blueprint.catalogue.reporters):
        found[code] = reporter_principal(code)
    return found


def grants(blueprint: Blueprint) -> set[Grant]:
    """The grants the topics and reporters call for."""
    settings = blueprint.settings
    who = principals(settings, blueprint)
    ns = settings.topic_namespace
    out: set[Grant] = set()

    def allow(principal: str, resource: str, name: str, *operations: str, prefixed: bool = False) -> None:
        pattern = "PREFIXED" if prefixed else "LITERAL"
        out.update(Grant(principal, resource, name, pattern, op) for op in operations)

    for spec in blueprint.topics:
        if spec.role in ("directives", "audit"):  # people's acts: written by who authenticated them only
            for role in DIRECTIVE_WRITERS:
                allow(who[role], "TOPIC", spec.name, "WRITE")
        if spec.reporter is not None:
            mine = who[spec.reporter]
            if spec.role in ("input", "bulk_input"):
                allow(mine, "TOPIC", spec.name, "WRITE", "DESCRIBE")
            elif spec.role in ("dead_letter", "reporter_directives"):
                allow(mine, "TOPIC", spec.name, "READ", "DESCRIBE")
        if spec.role in APP_READS:
            allow(who["app"], "TOPIC", spec.name, "READ")
        if spec.role in APP_WRITES:
            allow(who["app"], "TOPIC", spec.name, "WRITE")
        allow(who["app"], "TOPIC", spec.name, "DESCRIBE", "DESCRIBE_CONFIGS")
        allow(who["sre"], "TOPIC", spec.name, "READ", "DESCRIBE", "DESCRIBE_CONFIGS")
    allow(who["center"], "TOPIC", f"{ns}center.", "READ", "DESCRIBE", prefixed=True)
    allow(who["center"], "GROUP", f"{ns}center.", "READ", "DESCRIBE", prefixed=True)
    allow(who["app"], "GROUP", settings.group_id, "READ", "DESCRIBE", prefixed=True)
    allow(who["sre"], "GROUP", settings.group_id, "DESCRIBE", prefixed=True)
    allow(who["sre"], "GROUP", f"{ns}sre.", "READ", "DESCRIBE", prefixed=True)
    for code in blueprint.catalogue.reporters:
        allow(who[code], "GROUP", f"{ns}reporter.{code.lower()}.", "READ", "DESCRIBE", prefixed=True)
    return out


@dataclass(frozen=True, slots=True)
class AclPlan:
    """What ``apply`` would change."""

    create: list[Grant]
    delete: list[Grant]

    @property
    def empty(self) -> bool:
        return not self.create and not self.delete


def plan(blueprint: Blueprint, only: set[str] | None = None, keep: Keep | None = None) -> AclPlan:
    """The grants missing on the cluster, and the managed principals' grants on the managed resources
    that are no longer wanted (``only``: just these principals', e.g. ``{"User:stream-app"}``; ``keep``:
    just the grants it keeps, e.g. one reporter's, :func:`concerning`)."""
    wanted = _wanted(blueprint, only, keep)
    managed_principals = set(principals(blueprint.settings, blueprint).values())
    if only is not None:
        managed_principals &= only
    managed_resources = {(g.resource, g.name, g.pattern) for g in wanted}
    have = {
        g
        for g in current(blueprint.settings)
        if g.principal in managed_principals and (g.resource, g.name, g.pattern) in managed_resources
    }
    return AclPlan(sorted(wanted - have), sorted(have - wanted))


def apply(blueprint: Blueprint, only: set[str] | None = None, keep: Keep | None = None) -> AclPlan:
    """Make the cluster's ACLs match ``grants`` (of the principals ``only`` names, when given); returns
    what was changed. Returns once the broker enforces them: an ACL created is answered before the
    broker's authorizer has loaded it."""
    change = plan(blueprint, only, keep)
    admin = _admin(blueprint.settings)
    if change.create:
        _wait(admin.create_acls([g.binding() for g in change.create]))
    if change.delete:
        _wait(admin.delete_acls([_filter(g) for g in change.delete]))
    if not change.empty:
        _until_enforced(blueprint.settings, set(change.create), set(change.delete))
    return change


def _until_enforced(
    settings: Settings, created: set[Grant], deleted: set[Grant], timeout_s: float = 15.0
) -> None:
    """Wait until the broker's authorizer shows the last change: it loads them in order."""
    admin = _admin(settings)
    probes = [(max(created), True)] if created else []
    probes += [(max(deleted), False)] if deleted else []
    deadline = time.monotonic() + timeout_s
    for grant, present in probes:
        while True:
            found = admin.describe_acls(_filter(grant), request_timeout=timeout_s).result()
            if bool(found) == present:
                break
            if time.monotonic() > deadline:
                raise ServiceUnreachableError(
                    f"the broker did not load the ACL changes within {timeout_s:g} s"
                )
            time.sleep(0.05)


def revoke(blueprint: Blueprint, only: set[str] | None = None) -> None:
    """Delete every grant ``grants`` calls for (a throwaway namespace's, at the end of a test)."""
    wanted = _wanted(blueprint, only)
    if wanted:
        admin = _admin(blueprint.settings)  # kept until the futures are done: its end cancels them
        _wait(admin.delete_acls([_filter(g) for g in wanted]))


def _wanted(blueprint: Blueprint, only: set[str] | None, keep: Keep | None = None) -> set[Grant]:
    wanted = grants(blueprint)
    if keep is not None:
        wanted = {g for g in wanted if keep(g)}
    return wanted if only is None else {g for g in wanted if g.principal in only}


def concerning(principal: str, topics: Iterable[str]) -> Keep:
    """Keeps the grants of ``principal`` and every grant on one of ``topics``: what onboarding one
    reporter adds (its own rights, and the app's and the SRE's on its topics)."""
    names = frozenset(topics)
    return lambda grant: grant.principal == principal or (grant.resource == "TOPIC" and grant.name in names)


def delete(settings: Settings, unwanted: Iterable[Grant]) -> list[Grant]:
    """Delete these grants (a reporter's, when it leaves); returns them once the broker enforces it."""
    gone = sorted(set(unwanted))
    if gone:
        admin = _admin(settings)
        _wait(admin.delete_acls([_filter(g) for g in gone]))
        _until_enforced(settings, set(), set(gone))
    return gone


def current(settings: Settings) -> set[Grant]:
    """Every ALLOW ACL on topics and groups in the cluster."""
    admin = _admin(settings)
    found: set[Grant] = set()
    for resource in (ResourceType.TOPIC, ResourceType.GROUP):
        # None matches any name, principal and host (the stubs say str; the client documents None)
        anything: Any = None
        query = AclBindingFilter(
            resource,
            anything,
            ResourcePatternType.ANY,
            anything,
            anything,
            AclOperation.ANY,
            AclPermissionType.ALLOW,
        )
        try:
            bindings = admin.describe_acls(query, request_timeout=settings.startup_timeout_s).result()
        except KafkaException as exc:
            raise ServiceUnreachableError(f"Kafka did not list its ACLs: {exc}") from None
        for b in bindings:
            found.add(
                Grant(b.principal, b.restype.name, b.name, b.resource_pattern_type.name, b.operation.name)
            )
    return found


def _filter(grant: Grant) -> AclBindingFilter:
    return AclBindingFilter(
        ResourceType[grant.resource],
        grant.name,
        ResourcePatternType[grant.pattern],
        grant.principal,
        "*",
        AclOperation[grant.operation],
        AclPermissionType.ALLOW,
    )


def _admin(settings: Settings) -> AdminClient:
    return AdminClient(confluent_config(settings, **{"log_level": 3}))


def _wait(futures: Any) -> None:
    items = futures.values() if isinstance(futures, dict) else futures
    for future in items:
        try:
            future.result()
        except KafkaException as exc:
            raise ServiceUnreachableError(f"Kafka refused the ACL change: {exc}") from None
