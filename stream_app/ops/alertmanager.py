"""The center's alerts, as Alertmanager alerts: labels, annotations, and the open set to keep alive.

Ops teams then get Alertmanager's grouping, silences, inhibition and resolved notifications for the
domain alerts (flood alarm levels, VN_AQI categories ...) as for any other alert.

Alertmanager forgets an alert at its ``endsAt``: an open alert is posted with ``endsAt`` a few
resend intervals ahead and re-posted every interval (what Prometheus does for its own alerts), and a
resolved one is posted once with ``endsAt`` = now. If the bridge stops, its alerts end by themselves
after that margin, as Prometheus' do when Prometheus stops.

The level is a label (routes can page on ``level_index``), so it is part of the alert's identity in
Alertmanager: when an alert changes level, the old level's alert is resolved as the new one is posted.

What waits to be posted is one post per alert, bounded (:class:`PendingPosts`); a 4xx answer is final
(:class:`AlertmanagerRefusedError`: logged and dropped by the bridge), a 5xx or no answer is retried.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

ACTIVE_TRANSITIONS = frozenset({"FIRING", "ESCALATED", "DEESCALATED"})
# 4xx answers that say "not now" rather than "never": retried like a 5xx.
_RETRYABLE_4XX = frozenset({408, 425, 429})
# 4xx answers about the payload itself, where one bad alert may spoil a batch: worth isolating it.
_PAYLOAD_4XX = frozenset({400, 413, 422})
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


AlertIdentity = frozenset[tuple[str, str]]


def alert_identity(post: dict[str, Any]) -> AlertIdentity:
    """What Alertmanager tells alerts apart by: the label set."""
    return frozenset(post["labels"].items())


@dataclass(frozen=True, slots=True)
class Queued:
    """What adding posts to :class:`PendingPosts` cost: posts replaced by a newer state of their alert
    (``superseded``), and the oldest posts dropped to stay within the limit (``overflowed``)."""

    superseded: int = 0
    overflowed: int = 0


class PendingPosts:
    """The posts waiting for Alertmanager: one per alert, the newest state of each, at most ``limit``.

    A flood of transitions (or an Alertmanager away for a while) must not grow a queue: Alertmanager only
    needs each alert's latest state, so a newer post replaces the one waiting, and past ``limit`` the
    post waiting longest is dropped (an open alert comes back with the next re-send of the open set; a
    resolved one ends by itself at its ``endsAt``). Pure.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._posts: dict[AlertIdentity, dict[str, Any]] = {}

    def add(self, posts: Iterable[dict[str, Any]]) -> Queued:
        """Queue ``posts``, each replacing its alert's waiting post (and going last in line)."""
        superseded = overflowed = 0
        for post in posts:
            identity = alert_identity(post)
            if self._posts.pop(identity, None) is not None:
                superseded += 1
            elif len(self._posts) >= self.limit:
                del self._posts[next(iter(self._posts))]
                overflowed += 1
            self._posts[identity] = post
        return Queued(superseded, overflowed)

    def posts(self) -> list[dict[str, Any]]:
        """What is waiting, the longest waiting first."""
        return list(self._posts.values())

    def clear(self) -> None:
        self._posts.clear()

    def __len__(self) -> int:
        return len(self._posts)


class AlertmanagerRefusedError(Exception):
    """Alertmanager answered a 4xx that retrying cannot cure (bad request, unauthorised, not found ...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status

    @property
    def about_the_payload(self) -> bool:
        """Whether the answer is about what was posted (so one alert of a batch may be the cause)."""
        return self.status in _PAYLOAD_4XX


def refused_for_good(status: int) -> bool:
    """Whether an HTTP status from Alertmanager means: do not send this again."""
    return 400 <= status < 500 and status not in _RETRYABLE_4XX


class AlertmanagerClient:
    """Posts alerts to Alertmanager's v2 API."""

    def __init__(self, base_url: str, timeout_s: float = 5.0) -> None:
        self.url = base_url.rstrip("/") + "/api/v2/alerts"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def post(self, alerts: list[dict[str, Any]]) -> None:
        """Post ``alerts``; raises :class:`AlertmanagerRefusedError` for a 4xx that retrying cannot cure,
        ``aiohttp.ClientError`` (or ``TimeoutError``) when it fails otherwise (5xx, no answer)."""
        if not alerts:
            return
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        async with self._session.post(self.url, json=alerts) as response:
            if response.status >= 300:
                text = (await response.text())[:300]
                if refused_for_good(response.status):
                    raise AlertmanagerRefusedError(response.status, text)
                raise aiohttp.ClientResponseError(
                    response.request_info, (), status=response.status, message=text
                )

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None
