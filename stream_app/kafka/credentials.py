"""Kafka users' SCRAM credentials, on a running broker (KIP-554: AlterUserScramCredentials).

A reporter authenticates with its own Kafka user (``reporter_principal``: its code in lower case) and
a password the broker keeps only as a salted SCRAM hash. The local services make one user per
principal when they format the broker's storage; a reporter onboarded later gets its user here
(``stream-app reporter add``), through the admin's own connection: no password on a command line, as
``kafka-configs --alter --add-config SCRAM-SHA-512=[password=...]`` would want.
"""

from __future__ import annotations

import secrets
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from stream_app.exceptions import ServiceUnreachableError
from stream_app.kafka.config import confluent_config
from stream_app.settings import Settings

SCRAM_ITERATIONS = 8192
"""PBKDF2 rounds of a new credential: Kafka's minimum is 4096; more costs each login, not each record."""

PASSWORD_BYTES = 24
"""A generated password's randomness (32 URL-safe characters)."""


def mechanism(settings: Settings) -> str:
    """The SCRAM mechanism new credentials are made for: the one the admin itself logs in with (the
    broker's ``sasl.enabled.mechanisms``), SCRAM-SHA-512 when the admin does not use SCRAM."""
    chosen = settings.kafka_sasl_mechanism
    return chosen if chosen.startswith("SCRAM-") else "SCRAM-SHA-512"


def new_password() -> str:
    """A fresh random password."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def exists(settings: Settings, user: str) -> bool:
    """Whether the broker holds a SCRAM credential for ``user`` (of any mechanism)."""
    admin = _admin(settings)
    # given a list of users, the client answers a future per user (the stubs also allow one future)
    futures: Any = admin.describe_user_scram_credentials([user], request_timeout=settings.startup_timeout_s)
    future = futures[user]
    try:
        future.result()
    except KafkaException as exc:
        if _code(exc) == KafkaError.RESOURCE_NOT_FOUND:
            return False
        raise ServiceUnreachableError(f"Kafka did not describe the credentials of {user!r}: {exc}") from None
    return True


def upsert(settings: Settings, user: str, password: str) -> None:
    """Create ``user``'s credential, or replace it: the old password stops working for new logins."""
    info = ScramCredentialInfo(_scram(settings), SCRAM_ITERATIONS)
    _alter(settings, [UserScramCredentialUpsertion(user, info, password.encode())], user)


def delete(settings: Settings, user: str) -> bool:
    """Delete ``user``'s credential of this mechanism; False when it had none."""
    if not exists(settings, user):
        return False
    _alter(settings, [UserScramCredentialDeletion(user, _scram(settings))], user)
    return True


def _alter(settings: Settings, alterations: list[Any], user: str) -> None:
    admin = _admin(settings)  # kept until the futures are done: its end cancels them
    for future in admin.alter_user_scram_credentials(
        alterations, request_timeout=settings.startup_timeout_s
    ).values():
        try:
            future.result()
        except KafkaException as exc:
            raise ServiceUnreachableError(f"Kafka refused the credentials of {user!r}: {exc}") from None


def _scram(settings: Settings) -> ScramMechanism:
    return ScramMechanism[mechanism(settings).replace("-", "_")]


def _code(exc: KafkaException) -> int | None:
    error = exc.args[0] if exc.args else None
    return error.code() if isinstance(error, KafkaError) else None


def _admin(settings: Settings) -> AdminClient:
    return AdminClient(confluent_config(settings, **{"log_level": 3}))
