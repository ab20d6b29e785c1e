"""Every Redis key the processor uses, in one place.

An entity's keys are ``<prefix>:{<entity>}:<part>``: the braces are a Redis Cluster hash tag, so the
five keys one commit touches live in one slot. Keys outside any entity (the periods-due registry, the
query API's indexes, the briefing marker) are ``<prefix>:<name>:...``; a roll-up period is a key of its
own, tagged by ``rollup|<indicator>|<target>``.
"""

from __future__ import annotations

from datetime import date
from typing import Final

from stream_app.domain.model import period_field

STATE_TTL_S: Final = 800 * 24 * 3600
"""An entity's keys live this long after its last commit (this and the previous reporting year)."""

ENTITY_PARTS: Final = ("state", "seen", "seen-index", "periods", "periods-index")
"""An entity's keys, in the order of the commit script's KEYS: its state hash, the observations it has
seen (hash and index by event hour) and its reporting periods (hash and index by period end)."""


class Keys:
    """Key names under one prefix (``STREAM_APP_REDIS_KEY_PREFIX``)."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def entity(self, entity: str, part: str = "state") -> str:
        """One key of an entity (``part`` one of :data:`ENTITY_PARTS`)."""
        return f"{self.prefix}:{{{entity}}}:{part}"

    def entity_all(self, entity: str) -> list[str]:
        """An entity's keys in the order of :data:`ENTITY_PARTS`."""
        return [self.entity(entity, part) for part in ENTITY_PARTS]

    def entity_states(self) -> str:
        """A SCAN pattern matching every entity's state hash."""
        return self.entity("*")

    def everything(self) -> str:
        """A SCAN pattern matching every key under the prefix."""
        return f"{self.prefix}:*"

    def rollup(self, indicator: str, target: str, series: str, label: str) -> str:
        """A roll-up period's hash (source entity -> ``seq;aggregate``)."""
        return self.entity(f"rollup|{indicator}|{target}", period_field(series, label))

    def due(self, partition: int) -> str:
        """The periods-due registry of an internal partition: entities scored by their earliest open
        period's deadline (epoch ms), so a tick finds the periods to close without a scan."""
        return self._global("due", str(partition))

    def reporter_entities(self, reporter: str) -> str:
        """The entities a reporter has ever sent (compliance's "connected")."""
        return self._global("reporter", reporter, "entities")

    def active_alerts(self) -> str:
        """The open alerts, alert key -> the alert record as JSON (the query API's picture)."""
        return self._global("alerts", "active")

    def briefing(self, day: date) -> str:
        """Set once the briefing of ``day`` (local date) is published."""
        return self.briefing_prefix() + day.isoformat()

    def briefing_prefix(self) -> str:
        """What every briefing marker's key starts with (:meth:`briefing`)."""
        return self._global("briefing", "")

    def epoch(self) -> str:
        """When and how the state was begun (by a worker on an empty log, or by ``state rebuild``)."""
        return self._meta("epoch")

    def applied(self, source: str) -> str:
        """The applied mark of an input partition (``<topic>:<partition>``): the highest offset whose
        record the state holds. Behind the consumer group's position means the state lost writes."""
        return self._meta("applied", source)

    def ledger(self, source: str) -> str:
        """The applied ledger of an input partition: entity -> the offset its state holds of the
        partition, as the applied mark vouches (:mod:`stream_app.state.ledger`)."""
        return self._meta("ledger", source)

    def rollup_ledger(self) -> str:
        """The roll-ups' ledger: roll-up period key -> how many sources its hash held when last applied
        (:mod:`stream_app.state.ledger`)."""
        return self._meta("ledger", "rollups")

    def rebuilding(self) -> str:
        """Set while ``stream-app state rebuild`` runs: the state is not to be applied to."""
        return self._meta("rebuilding")

    def sync_prefix(self) -> str:
        """Where a batch on a Redis Cluster writes one small key per primary before it WAITs for a replica
        (``<prefix>:{sync-<n>}``, n picked per primary's slots), so the WAIT covers every earlier write of
        the batch even when this attempt's scripts found everything applied and wrote nothing."""
        return f"{self.prefix}:{{sync-"

    def _meta(self, *parts: str) -> str:
        # one hash tag for the epoch, the marks and the rebuild flag (the mark script reads the flag);
        # under the prefix, as every key the app's Redis user may touch
        return ":".join((self.prefix, "{meta}", *parts))

    def _global(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))
