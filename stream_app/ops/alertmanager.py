"""The center's alerts, as Alertmanager alerts: labels, annotations, and the open set to keep alive.

Ops teams then get Alertmanager's grouping, silences, inhibition and resolved notifications for the
domain alerts (flood alarm levels, VN_AQI categories ...) as for any other alert.

Alertmanager forgets an alert at its ``endsAt``: an open alert is posted with ``endsAt`` a few
resend intervals ahead and re-posted every interval (what Prometheus does for its own alerts), and a
resolved one is posted once with ``endsAt`` = now. If the bridge stops, its alerts end by themselves
after that margin, as Prometheus' do when Prometheus stops.

The level is a label (routes can page on ``level_index``), so it is part of the alert's identity in
Alertmanager: when an alert changes level, the old level's alert is resolved as the new one is posted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

ACTIVE_TRANSITIONS = frozenset({"FIRING", "ESCALATED", "DEESCALATED"})
# Keep an open alert alive in Alertmanager this many resend intervals after the last post.
ENDS_AFTER_RESENDS = 4
SOURCE = "stream-app"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _time(value: Any) -> datetime:
    """An Avro timestamp as decoded (a datetime, or epoch milliseconds)."""
    if isinstance(value, datetime):
        return value
    return datetime.fromtimestamp(int(value) / 1000, UTC)


def alert_labels(alert: dict[str, Any], origin: str) -> dict[str, str]:
    """Labels of a center alert: its identity (rule, indicator, place) plus the level it is at.

    ``origin`` is the consumer group of the processor that raised it, so two deployments (or two
    test runs) sharing one Alertmanager never mix their alerts.
    """
    labels = {
        "alertname": f"center:{alert['rule']}",
        "source": SOURCE,
        "origin": origin,
        "domain": alert.get("domain") or "unknown",
        "rule": alert["rule"],
        "rule_kind": alert.get("rule_kind") or "levels",
        "indicator": alert["indicator"],
        "reporter": alert["reporter"],
        "region": alert["region"],
        "level": alert["level_code"],
        "level_index": str(alert["level"]),
    }
    if alert.get("station"):
        labels["station"] = alert["station"]
    return labels


def alert_annotations(alert: dict[str, Any]) -> dict[str, str]:
    """What a person reads: the level's names in Vietnamese and English, the value, who acts on it."""
    place = alert.get("station") or alert["region"]
    annotations = {
        "summary": f"{alert['indicator']} at {place}: {alert['level_name_en']}",
        "summary_vi": f"{alert['indicator']} tại {place}: {alert['level_name_vi']}",
        "value": f"{alert['value']:g}",
        "colour": alert["colour"],
        "alert_key": alert["alert_key"],
        "alert_id": alert["alert_id"],
        "transition": alert["transition"],
    }
    if alert.get("threshold") is not None:
        annotations["threshold"] = f"{alert['threshold']:g}"
    for name in ("detail", "acknowledged_by", "assigned_to", "comment"):
        if alert.get(name):
            annotations[name] = str(alert[name])
    return annotations


def is_open(alert: dict[str, Any]) -> bool:
    """Whether a center alert record leaves the alert open (a closing directive ends it too)."""
    if alert.get("event_type", "TRANSITION") == "CLOSE":
        return False
    return bool(alert["transition"] in ACTIVE_TRANSITIONS)


@dataclass
class OpenAlert:
    """An alert the bridge keeps active: what to post, without its ``endsAt``."""

    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime

    def postable(self, ends_at: datetime) -> dict[str, Any]:
        """The Alertmanager v2 API's ``PostableAlert``."""
        return {
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": _iso(self.starts_at),
            "endsAt": _iso(ends_at),
        }


@dataclass
class OpenAlerts:
    """The open center alerts by alert key, and what to post to Alertmanager as they change.

    Fed with the records of ``center.alerts.active`` (the current record of each open alert, a
    tombstone once resolved) in order; pure apart from the clock passed in.
    """

    origin: str
    resend_s: float
    alerts: dict[str, OpenAlert] = field(default_factory=dict)

    def ends_at(self, now: datetime) -> datetime:
        """When Alertmanager should end an open alert that is not re-posted."""
        return now + timedelta(seconds=self.resend_s * ENDS_AFTER_RESENDS)

    def apply(self, key: str, alert: dict[str, Any] | None, now: datetime) -> list[dict[str, Any]]:
        """Take one record (``None``: a tombstone) and return the alerts to post for it."""
        previous = self.alerts.get(key)
        if alert is None or not is_open(alert):
            self.alerts.pop(key, None)
            return [previous.postable(now)] if previous is not None else []
        current = OpenAlert(
            alert_labels(alert, self.origin), alert_annotations(alert), _time(alert["event_time"])
        )
        posts = []
        if previous is not None and previous.labels != current.labels:
            posts.append(previous.postable(now))  # another level: the old level's alert ends now
        elif previous is not None:
            current.starts_at = min(previous.starts_at, current.starts_at)  # a directive on the same level
        self.alerts[key] = current
        posts.append(current.postable(self.ends_at(now)))
        return posts

    def refresh(self, now: datetime) -> list[dict[str, Any]]:
        """Every open alert, to post again so that Alertmanager keeps it active."""
        ends = self.ends_at(now)
        return [a.postable(ends) for a in self.alerts.values()]


class AlertmanagerClient:
    """Posts alerts to Alertmanager's v2 API."""

    def __init__(self, base_url: str, timeout_s: float = 5.0) -> None:
        self.url = base_url.rstrip("/") + "/api/v2/alerts"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def post(self, alerts: list[dict[str, Any]]) -> None:
        """Post ``alerts``; raises ``aiohttp.ClientError`` (or ``TimeoutError``) when it fails."""
        if not alerts:
            return
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        async with self._session.post(self.url, json=alerts) as response:
            if response.status >= 300:
                text = (await response.text())[:300]
                raise aiohttp.ClientResponseError(
                    response.request_info, (), status=response.status, message=text
                )

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None
