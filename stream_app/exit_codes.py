"""The ``stream-app`` command's exit codes, and the one place that maps a failure to its code.

The codes above 2 are BSD's ``sysexits.h`` (what ``sendmail``, ``ssh`` and many scripts already know),
so that a script tells "fix the command line" from "fix the settings" from "retry later":

====  ===========  ============================================================================
code  name         meaning
====  ===========  ============================================================================
0     OK           done (a dry run, and a plan with nothing to change, included)
1     FAILED       understood and the services answered, but refused, a check failed or only
                   part was done (a refused directive, a partial replay, a lost state partition)
2     CHANGES      a ``plan`` (topics, acl, quotas) found something that ``apply`` would change
64    USAGE        the command line is wrong (argparse, an unknown reporter or domain, a time
                   without its offset): EX_USAGE
69    UNAVAILABLE  Kafka, Redis, the schema registry or the workers' API did not answer: EX_UNAVAILABLE
75    FORCED_STOP  a worker whose stop the grace ended (EX_TEMPFAIL): a supervisor counts it, nothing
                   to repair (the next owner redelivers)
78    CONFIG       a setting (``STREAM_APP_*``) or a data file (catalogue, topics, schemas) is
                   wrong: EX_CONFIG
130   INTERRUPTED  Ctrl-C (SIGINT), as shells report it
====  ===========  ============================================================================
"""

from __future__ import annotations

from enum import IntEnum

from pydantic import ValidationError

from stream_app.exceptions import ConfigurationError, RefusedError, ServiceUnreachableError, UsageError


class ExitCode(IntEnum):
    """What the process's exit status tells a script (see the module's table)."""

    OK = 0
    FAILED = 1
    CHANGES = 2
    USAGE = 64
    UNAVAILABLE = 69
    FORCED_STOP = 75
    CONFIG = 78
    INTERRUPTED = 130


def for_error(exc: BaseException) -> ExitCode | None:
    """The exit code of a failure the command reports in one line; None for one it does not know (a
    bug: let its traceback show)."""
    # the most specific first: a UsageError is a ConfigurationError
    if isinstance(exc, UsageError):
        return ExitCode.USAGE
    if isinstance(exc, RefusedError):
        return ExitCode.FAILED
    if isinstance(exc, ServiceUnreachableError):
        return ExitCode.UNAVAILABLE
    if isinstance(exc, ConfigurationError | ValidationError):
        return ExitCode.CONFIG
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    return None


def plan_code(changes: bool) -> ExitCode:
    """A plan's exit code: 2 when ``apply`` would change something, 0 when it would not."""
    return ExitCode.CHANGES if changes else ExitCode.OK


# A value given to a setting whose name has one of these words is never echoed (it may hold a secret).
_SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "KEY", "URL", "JAAS")


def setting_errors(exc: ValidationError, prefix: str) -> str:
    """A settings validation error as one line naming each variable (``STREAM_APP_…``), its problem and
    the value given, never a traceback: ``STREAM_APP_KAFKA_LINGER_MS: Input should be a valid integer
    (got 'fast')``."""
    parts = []
    for error in exc.errors(include_url=False):
        name = prefix + "_".join(str(part) for part in error["loc"]).upper() if error["loc"] else prefix + "*"
        given = error.get("input")
        shown = (
            f" (got {given!r})"
            if isinstance(given, str | int | float)
            and error["type"] != "missing"
            and not any(word in name for word in _SECRET_WORDS)
            else ""
        )
        if error["type"] == "extra_forbidden":
            parts.append(f"{name}: no such setting")
            continue
        parts.append(f"{name}: {error['msg']}{shown}")
    return "; ".join(parts)
