"""Reading the project's TOML data files (the catalogue, the alert rules): one reader for both.

Every error names the file, the entry and the key, and says what was expected: the files are edited
by people, and a worker refuses to start on any mistake rather than guess.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

from stream_app.exceptions import ConfigurationError

_COLOUR = re.compile(r"#[0-9A-Fa-f]{6}")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def read_toml(path: Path, sections: frozenset[str]) -> dict[str, Any]:
    """A TOML file's top level; a section other than ``sections`` is refused."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{path}: {exc}") from exc
    unknown = sorted(data.keys() - sections)
    if unknown:
        raise ConfigurationError(f"{path}: unknown sections {unknown}; expected some of {sorted(sections)}")
    return data


def array_of_tables(path: Path, data: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    """The ``[[key]]`` tables of a file's top level (none: an empty list)."""
    tables = data.get(key, [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigurationError(f"{path}: {key!r} must be an array of tables ([[{key}]])")
    return tables


class TableReader:
    """Reads the keys of one TOML table; errors name the file and ``what`` the table is."""

    __slots__ = ("path", "table", "what")

    def __init__(self, path: Path, what: str, table: Mapping[str, Any]) -> None:
        self.path, self.what, self.table = path, what, table

    @classmethod
    def entry(cls, path: Path, kind: str, table: Mapping[str, Any], name_key: str = "code") -> TableReader:
        """A catalogue entry, named by its code: ``indicator 'ENV.AQI'``."""
        return cls(path, f"{kind} {str(table.get(name_key, '?'))!r}", table)

    def fail(self, problem: str) -> ConfigurationError:
        return ConfigurationError(f"{self.path}: {self.what}: {problem}")

    def sub(self, what: str, table: Mapping[str, Any]) -> TableReader:
        """A table inside this one."""
        return TableReader(self.path, f"{self.what}: {what}", table)

    def only(self, allowed: frozenset[str], why: str = "") -> None:
        """Refuse keys nobody reads: a misspelt optional key would otherwise be silently ignored."""
        unknown = sorted(self.table.keys() - allowed)
        if unknown:
            raise self.fail(f"unknown keys {unknown}{why}; expected some of {sorted(allowed)}")

    def text(self, key: str, default: str | None = None) -> str:
        value = self.table.get(key, default)
        if not isinstance(value, str) or not value:
            raise self.fail(f"{key!r} must be a non-empty string")
        return value

    def optional_text(self, key: str) -> str | None:
        return self.text(key) if key in self.table else None

    def choice(self, key: str, allowed: tuple[str, ...], default: str | None = None) -> str:
        value = self.text(key, default)
        if value not in allowed:
            raise self.fail(f"{key!r} is {value!r}; expected one of {', '.join(allowed)}")
        return value

    def number(
        self, key: str, default: float | None = None, *, minimum: float | None = None, positive: bool = False
    ) -> float:
        """A finite number (at least ``minimum``; above 0 if ``positive``); required without a default."""
        value = self.table.get(key, default)
        if value is None:
            raise self.fail(f"{key!r} is required")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(f"{key!r} must be a finite number, not {value!r}")
        if positive and value <= 0:
            raise self.fail(f"{key!r} must be above 0, not {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(f"{key!r} must be at least {minimum:g}, not {value!r}")
        return float(value)

    def integer(self, key: str, default: int | None = None, *, at_least: int | None = None) -> int:
        value = self.table.get(key, default)
        if value is None:
            raise self.fail(f"{key!r} is required")
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{key!r} must be an integer, not {value!r}")
        if at_least is not None and value < at_least:
            raise self.fail(f"{key!r} must be at least {at_least}, not {value}")
        return value

    def strings(self, key: str, *, required: bool) -> tuple[str, ...]:
        """An array of distinct non-empty strings (an empty one only when not ``required``)."""
        value = self.table.get(key, None if required else [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(f"{key!r} must be an array of non-empty strings")
        if required and not value:
            raise self.fail(f"{key!r} must not be empty")
        repeated = sorted({v for v in value if value.count(v) > 1})
        if repeated:
            raise self.fail(f"{key!r} repeats {repeated}")
        return tuple(value)

    def optional_date(self, key: str) -> date | None:
        """A local date, as an ISO string ("2024-07-01") or a TOML date; ``None`` when absent."""
        if key not in self.table:
            return None
        value = self.table[key]
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        if isinstance(value, str) and _ISO_DATE.fullmatch(value):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        raise self.fail(f"{key!r} must be a date, YYYY-MM-DD; got {value!r}")

    def colour(self, key: str, default: str | None = None) -> str:
        value = self.text(key, default)
        if not _COLOUR.fullmatch(value):
            raise self.fail(f"{key!r} {value!r} must be #RRGGBB")
        return value
