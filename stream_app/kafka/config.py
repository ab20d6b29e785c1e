"""How every Kafka client of the project connects and authenticates, from the one settings object.

Two families of clients: Faust's (aiokafka: the worker's consumer and producer) and confluent-kafka's
(librdkafka: the CLI verbs, admin operations, the alert bridge's reader, tools and tests). Both get
the same security settings — protocol, SASL mechanism, user and password, the CA the broker's
certificate is checked against, and a client certificate (mTLS) when
``STREAM_APP_KAFKA_CLIENT_PROPERTIES`` names one — and librdkafka also any other property named there.
Nothing else in the project builds a client configuration.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import faust

from stream_app.settings import Settings

# Which protocols carry TLS, which carry SASL.
_SSL_PROTOCOLS = ("SSL", "SASL_SSL")
_SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")


def confluent_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """A confluent-kafka (librdkafka) configuration: brokers and security from ``settings``, then the
    pass-through properties, then ``extra`` (names with dots given as ``{"a.b": ...}`` via ``**``)."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in _SASL_PROTOCOLS:
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username or ""
        config["sasl.password"] = (
            settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
        )
    if settings.kafka_security_protocol in _SSL_PROTOCOLS and settings.kafka_ssl_ca_file is not None:
        config["ssl.ca.location"] = str(settings.kafka_ssl_ca_file)
    config.update(settings.kafka_client_properties)
    config.update(extra)
    return config


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of Faust's clients: the broker's certificate checked against the configured CA
    (or the system's), its host name too unless ``ssl.endpoint.identification.algorithm`` is none; and
    the client's own certificate (mTLS) when the pass-through properties name one as librdkafka takes it
    (``ssl.certificate.location``, ``ssl.key.location``, ``ssl.key.password``: PEM files), so both
    families present the same identity."""
    if settings.kafka_security_protocol not in _SSL_PROTOCOLS:
        return None
    cafile = str(settings.kafka_ssl_ca_file) if settings.kafka_ssl_ca_file is not None else None
    context = ssl.create_default_context(cafile=cafile)
    properties = settings.kafka_client_properties
    if properties.get("ssl.endpoint.identification.algorithm", "https") in ("", "none"):
        context.check_hostname = False
    certificate = properties.get("ssl.certificate.location")
    if certificate:
        context.load_cert_chain(
            str(certificate),
            keyfile=str(properties["ssl.key.location"]) if properties.get("ssl.key.location") else None,
            password=str(properties["ssl.key.password"]) if properties.get("ssl.key.password") else None,
        )
    return context


def faust_credentials(settings: Settings) -> Any:
    """Faust's ``broker_credentials`` for the settings (None for PLAINTEXT)."""
    protocol = settings.kafka_security_protocol
    context = ssl_context(settings)
    if protocol in _SASL_PROTOCOLS:
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username or "",
            password=settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else "",
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return None


def registry_config(settings: Settings, url: str) -> dict[str, Any]:
    """The schema-registry client's configuration (basic auth and CA when set)."""
    config: dict[str, Any] = {"url": url}
    if settings.schema_registry_auth is not None:
        config["basic.auth.user.info"] = settings.schema_registry_auth.get_secret_value()
    if settings.schema_registry_ca_file is not None:
        config["ssl.ca.location"] = str(settings.schema_registry_ca_file)
    return config


def security_env(settings: Settings) -> dict[str, str]:
    """The STREAM_APP_* variables that give a child process the same Kafka identity and security."""
    env = {
        "STREAM_APP_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "STREAM_APP_KAFKA_SECURITY_PROTOCOL": settings.kafka_security_protocol,
        "STREAM_APP_KAFKA_SASL_MECHANISM": settings.kafka_sasl_mechanism,
    }
    if settings.kafka_sasl_username is not None:
        env["STREAM_APP_KAFKA_SASL_USERNAME"] = settings.kafka_sasl_username
    if settings.kafka_sasl_password is not None:
        env["STREAM_APP_KAFKA_SASL_PASSWORD"] = settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_ssl_ca_file is not None:
        env["STREAM_APP_KAFKA_SSL_CA_FILE"] = str(settings.kafka_ssl_ca_file)
    if settings.kafka_client_properties:
        env["STREAM_APP_KAFKA_CLIENT_PROPERTIES"] = json.dumps(settings.kafka_client_properties)
    return env
