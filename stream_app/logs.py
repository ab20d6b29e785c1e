"""Structured logging: configured once, JSON in production, readable on a terminal.

Faust's and aiokafka's stdlib log records go through the same processors, so every line an SRE
reads has the same shape.
"""

from __future__ import annotations

import logging
import logging.config
import os
import re
import sys
from typing import Any
from urllib.parse import unquote, urlsplit

import structlog

from stream_app.settings import Settings


def colour_allowed(stream: Any) -> bool:
    """Whether ANSI colour may be written to ``stream``: it is a terminal, and the ``NO_COLOR``
    environment variable is absent or empty (https://no-color.org).

    Every part of the project that colours text asks here: the console log renderer, ``stream-app
    tail`` and ``alerts tail``, the demo. This is the one place ``NO_COLOR`` is read, and the one
    exception to "only :mod:`stream_app.settings` reads the environment", on purpose: ``NO_COLOR`` is
    a convention shared by every command-line tool, set once by a person for all of them, not a
    setting of this application. It has no ``STREAM_APP_`` prefix, nothing to validate and nothing a
    deployment configures, and it changes only how text looks on a terminal, never what is written.
    """
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty()) and not os.environ.get("NO_COLOR")


def _renderer(settings: Settings) -> Any:
    use_json = settings.log_format == "json" or (settings.log_format == "auto" and not sys.stderr.isatty())
    if use_json:
        return structlog.processors.JSONRenderer()
    return structlog.dev.ConsoleRenderer(colors=colour_allowed(sys.stderr))


# user:password@ in any URL; password=, token=, secret= ... parameters; bearer tokens.
_URL_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s'\"]*:)[^@\s'\"]+@")
_PARAMETER = re.compile(
    r"(?P<head>(?:password|passwd|pwd|secret|token|api[_-]?key|sasl\.password|ssl\.key\.password)"
    r"['\"]?\s*[=:]\s*['\"]?)(?P<value>[^&\s'\",;)}]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<head>Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
# Each pattern above needs one of these (a URL's ":", a parameter's "=" or ":", a bearer's space):
# most values of a log line (ids, codes, numbers as text) have none and skip the three.
_MAY_HOLD_CREDENTIALS = re.compile(r"[:=\s]")
MASK = "***"


class Redactor:
    """A processor that masks secrets in every string of a log event, the app's and its libraries':
    the secrets the settings hold (wherever they appear), passwords in URLs, ``password=``-style
    parameters and bearer tokens."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, logger: Any, name: str, event: dict[str, Any]) -> dict[str, Any]:
        return {key: self._clean(value) for key, value in event.items()}

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {k: self._clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(v) for v in value]
        return value

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        if _MAY_HOLD_CREDENTIALS.search(text) is None:
            return text
        text = _URL_CREDENTIALS.sub(lambda m: m.group("head") + MASK + "@", text)
        text = _PARAMETER.sub(lambda m: m.group("head") + MASK, text)
        return _BEARER.sub(lambda m: m.group("head") + MASK, text)


def secrets_of(settings: Settings) -> list[str]:
    """Every secret the settings hold, and the password part of every URL they hold."""
    found = [
        secret.get_secret_value()
        for secret in (settings.kafka_sasl_password, settings.schema_registry_auth)
        if secret is not None
    ]
    for url in (
        settings.redis_url.get_secret_value(),
        settings.alertmanager_url,
        settings.schema_registry_url,
    ):
        if url:
            password = urlsplit(url).password
            if password:
                found += [password, unquote(password)]
    if settings.schema_registry_auth is not None:
        found.append(settings.schema_registry_auth.get_secret_value().partition(":")[2])
    found += [v for k, v in settings.kafka_client_properties.items() if "password" in k or "secret" in k]
    return found


def logging_config(settings: Settings) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` that renders stdlib records through structlog."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structlog": {
                "()": structlog.stdlib.ProcessorFormatter,
                "foreign_pre_chain": shared,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    Redactor(secrets_of(settings)),
                    _renderer(settings),
                ],
            }
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "structlog",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": settings.log_level.upper()},
        "loggers": {
            # aiokafka is chatty at INFO about every metadata refresh
            "aiokafka": {"level": "WARNING"},
        },
    }


def configure_logging(settings: Settings) -> None:
    """Configure structlog and stdlib logging once for the process."""
    logging.config.dictConfig(logging_config(settings))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger named after the module."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
