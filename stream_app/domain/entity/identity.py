"""Who an entity and its alerts are: the entity key, alert keys and alert ids."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from stream_app.domain.catalogue import Catalogue


@dataclass(frozen=True, slots=True)
class EntityKey:
    """An entity's parts, as in its key ``indicator|region|station-or-dash``."""

    indicator: str
    region: str
    station: str | None

    @staticmethod
    def parse(entity: str) -> EntityKey:
        indicator, region, station = entity.split("|")
        return EntityKey(indicator, region, None if station == "-" else station)

    def __str__(self) -> str:
        return f"{self.indicator}|{self.region}|{self.station or '-'}"


def checked_entity(catalogue: Catalogue, text: str) -> EntityKey:
    """The entity an internal record names, checked against the catalogue: its indicator exists and
    the region and station fit the indicator's scope (``region_level``). Raises ``ValueError``
    otherwise: only a defect or a forged record gets there, and the step must never see it."""
    parts = text.split("|")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"entity {text[:80]!r} is not <indicator>|<region>|<station or ->")
    key = EntityKey.parse(text)
    indicator = catalogue.indicators.get(key.indicator)
    if indicator is None:
        raise ValueError(f"entity {text[:80]!r}: unknown indicator")
    region = catalogue.regions.get(key.region)
    if region is None or region.kind == "legacy":
        raise ValueError(f"entity {text[:80]!r}: {key.region!r} is not a current unit")
    if indicator.region_level == "national":
        fits = region.kind == "national" and key.station is None
    elif indicator.region_level == "province":
        fits = region.kind == "current" and key.station is None
    else:
        station = catalogue.stations.get(key.station or "")
        fits = station is not None and station.region == key.region
    if not fits:
        raise ValueError(
            f"entity {text[:80]!r} does not fit {indicator.code}'s scope ({indicator.region_level})"
        )
    return key


def alert_key(rule_id: str, entity: EntityKey) -> str:
    """One alert lifecycle: a rule at an entity."""
    return f"{rule_id}|{entity}"


def entity_of_alert_key(alert_key: str) -> str | None:
    """``<rule id>|<indicator>|<region>|<station or ->`` -> ``<indicator>|<region>|<station or ->``."""
    parts = alert_key.split("|")
    if len(parts) != 4 or not all(parts):
        return None
    return "|".join(parts[1:])


def alert_id(key: str, change: str, cause: str) -> str:
    """Deterministic alert id: reprocessing the same input yields the same id, never a new one."""
    return "alr-" + hashlib.blake2b(f"{key}|{change}|{cause}".encode(), digest_size=12).hexdigest()
