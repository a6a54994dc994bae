"""Alertmanager notifications: each cycle posts the open incidents' alerts to ``/api/v2/alerts``.

Alertmanager's v2 contract: an alert is active until its ``endsAt``, so active alerts are sent
again every cycle with ``endsAt`` a few cycles ahead (a sidecar that stops lets them expire,
not fire forever), and an alert whose incident ended is sent once more with ``endsAt`` = now.
Every Alertmanager of a cluster gets every post (as Prometheus does); one answer is enough
since the cluster gossips. One attempt per URL per cycle with a short timeout, all at once:
an Alertmanager that is down costs one warning line and a metric, never the cycle.

What was sent, and what the incidents looked like before their copies were archived, is kept
in memory and in a small JSON file in the state directory, so that a restart (or the next
``run --once``) can still resolve what an earlier process sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from sidecar import __version__
from sidecar.model.plan import Plan, from_iso, iso
from sidecar.model.resources import Host
from sidecar.ops.service.amalerts import IncidentMemory, Wanted, wanted_alerts
from sidecar.ops.service.metrics import Metrics

log = logging.getLogger(__name__)

#: Seconds one POST may take (connect and read), all URLs at once: well within a cycle.
POST_TIMEOUT = 5.0

#: Where alerts point: nowhere private (never the CloudStack endpoint).
GENERATOR_URL = ""

STATE_VERSION = 1


@dataclass
class Sent:
    """An alert sent as firing until ``ends_at``; ``resolving`` once its incident ended and the
    resolve is still to be delivered."""

    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime
    incident_id: str
    resolving: bool = False

    def payload(self, now: datetime) -> dict[str, Any]:
        """The alert as ``POST /api/v2/alerts`` takes it; a resolve ends now."""
        ends = max(now, self.starts_at) if self.resolving else self.ends_at
        return {"labels": self.labels, "annotations": self.annotations,
                "startsAt": _stamp(self.starts_at), "endsAt": _stamp(ends),
                "generatorURL": GENERATOR_URL}

    def to_json(self) -> dict[str, Any]:
        return {"labels": self.labels, "annotations": self.annotations,
                "startsAt": _stamp(self.starts_at), "endsAt": _stamp(self.ends_at),
                "incident_id": self.incident_id, "resolving": self.resolving}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sent:
        return cls(dict(data["labels"]), dict(data["annotations"]),
                   _parse(data["startsAt"]), _parse(data["endsAt"]),
                   str(data.get("incident_id", "")), bool(data.get("resolving", False)))


def _stamp(value: datetime) -> str:
    """RFC 3339 in UTC, whole seconds (a cycle is far longer)."""
    return str(iso(value))


def _parse(text: str) -> datetime:
    parsed = from_iso(text)
    assert parsed is not None  # the file holds what _stamp wrote
    return parsed


async def post_alerts(
    urls: Iterable[str], alerts: list[dict[str, Any]], *, timeout: float = POST_TIMEOUT,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, str]:
    """POST ``alerts`` to every Alertmanager once; returns the error of each URL that failed."""
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(timeout), transport=transport, follow_redirects=False,
        headers={"User-Agent": f"cloudstack-sidecar/{__version__}"},
    ) as client:

        async def one(url: str) -> str:
            try:
                response = await client.post(url.rstrip("/") + "/api/v2/alerts", json=alerts)
            except httpx.HTTPError as exc:
                return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if response.status_code >= 300:
                return f"HTTP {response.status_code}: {response.text[:200].strip()}"
            return ""

        urls = list(urls)
        results = await asyncio.gather(*(one(url) for url in urls))
    return {url: error for url, error in zip(urls, results, strict=True) if error}


class Alerting:
    """The open incidents' alerts to Alertmanager each cycle; resolves what ended."""

    def __init__(
        self, urls: Collection[str], metrics: Metrics, *, cloudstack: str, poll_interval: float,
        cycle_deadline: float, backlog_after: float, horizon: float | None,
        state_path: Path | None = None, transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = POST_TIMEOUT,
    ) -> None:
        self.urls = tuple(urls)
        self._metrics = metrics
        self._cloudstack = cloudstack
        #: Alertmanager considers an alert resolved at ``endsAt``: three missed cycles.
        self.resend_for = timedelta(seconds=3 * poll_interval + cycle_deadline)
        self._backlog_after = backlog_after
        self._horizon = None if horizon is None else timedelta(seconds=horizon)
        self._state_path = state_path
        self._transport = transport
        self._timeout = timeout
        #: By label key: what was last sent, firing or to resolve.
        self.sent: dict[str, Sent] = {}
        #: By incident id: the largest numbers seen and the copies archived.
        self.incidents: dict[str, IncidentMemory] = {}
        self._load()

    async def cycle(
        self, plan: Plan, hosts: Iterable[Host], live: Collection[str],
        now: datetime | None = None,
    ) -> int:
        """Send this cycle's alerts (``live``: alert ids still live after archiving); returns
        how many Alertmanagers failed. Never raises for Alertmanager's sake."""
        now = now or datetime.now(UTC)
        # Alertmanager compares times with its own clock; the plan's are the server's.
        skew = now - plan.generated_at
        wanted = self._wanted(plan, hosts, live)
        for alert in wanted:
            previous = self.sent.get(alert.key)
            new = previous is None or previous.resolving
            if new and self._horizon is not None and (
                plan.generated_at - alert.incident_last_seen > self._horizon
            ):
                continue  # a first start does not replay old history
            starts = min(alert.starts_at + skew, now)
            if previous is not None and not previous.resolving and (
                previous.incident_id == alert.incident_id
            ):
                starts = previous.starts_at  # Alertmanager keys on labels; keep its start
            self.sent[alert.key] = Sent(dict(alert.labels), dict(alert.annotations), starts,
                                        now + self.resend_for, alert.incident_id)
        firing = {a.key for a in wanted}
        for key, sent in self.sent.items():
            if key not in firing:
                sent.resolving = True
        return await self.resend(now)

    async def resend(self, now: datetime | None = None) -> int:
        """Post what was sent again (firing ones a few cycles further), resolves until one
        Alertmanager took them; returns how many Alertmanagers failed."""
        now = now or datetime.now(UTC)
        for key, sent in list(self.sent.items()):
            if sent.ends_at <= now:
                del self.sent[key]  # Alertmanager resolved it on its own at endsAt
            elif not sent.resolving:
                sent.ends_at = now + self.resend_for
        failed = await self._post([s.payload(now) for s in self.sent.values()])
        if len(failed) < len(self.urls):
            # Delivered to at least one: resolves are done (the cluster shares them).
            self.sent = {k: s for k, s in self.sent.items() if not s.resolving}
        self._save()
        return len(failed)

    def _wanted(self, plan: Plan, hosts: Iterable[Host], live: Collection[str]) -> list[Wanted]:
        """The alerts the plan calls for, with each incident's memory brought up to date."""
        archive = set(plan.archive)
        seen_ids = set()
        for incident in plan.ha_incidents:
            seen_ids.add(incident.incident_id)
            memory = self.incidents.setdefault(incident.incident_id, IncidentMemory())
            memory.see(incident)
            # Copies the plan archived this cycle are no longer live.
            memory.archived += sum(1 for i in incident.alert_ids if i in archive and i not in live)
        keep = seen_ids | {s.incident_id for s in self.sent.values()}
        self.incidents = {k: v for k, v in self.incidents.items() if k in keep}
        return wanted_alerts(plan, hosts, self.incidents, cloudstack=self._cloudstack,
                             backlog_after=self._backlog_after)

    async def _post(self, payload: list[dict[str, Any]]) -> dict[str, str]:
        """Post to every URL once; count and log (one line) what failed."""
        if not payload or not self.urls:
            return {}
        try:
            failed = await asyncio.wait_for(
                post_alerts(self.urls, payload, timeout=self._timeout,
                            transport=self._transport),
                timeout=2 * self._timeout,  # the client's timeouts are per phase
            )
        except TimeoutError:
            failed = dict.fromkeys(self.urls, "timed out")
        for url in self.urls:
            if url in failed:
                self._metrics.alertmanager_error(url)
            else:
                self._metrics.alertmanager_sent(url, len(payload))
        if failed:
            log.warning("alertmanager: %d of %d failed (%s); %d alerts are sent again next cycle",
                        len(failed), len(self.urls),
                        "; ".join(f"{u}: {e}" for u, e in failed.items()), len(payload))
        return failed

    def _load(self) -> None:
        """Read what an earlier process sent; a missing or unreadable file starts afresh."""
        if self._state_path is None or not self._state_path.exists():
            return
        try:
            data = json.loads(self._state_path.read_text(encoding="utf-8"))
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"version {data.get('version')!r}")
            self.sent = {k: Sent.from_json(v) for k, v in data["sent"].items()}
            self.incidents = {k: IncidentMemory.from_json(v)
                              for k, v in data["incidents"].items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring %s (%s): alerts sent before this start will expire on "
                        "their own", self._state_path, exc)
            self.sent, self.incidents = {}, {}

    def _save(self) -> None:
        """Write what was sent, atomically (a crash leaves the old file or the new one)."""
        if self._state_path is None:
            return
        data = {"version": STATE_VERSION, "saved": iso(datetime.now(UTC)),
                "sent": {k: s.to_json() for k, s in self.sent.items()},
                "incidents": {k: m.to_json() for k, m in self.incidents.items()}}
        tmp = self._state_path.with_name(self._state_path.name + ".tmp")
        try:
            self._state_path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
            os.replace(tmp, self._state_path)
        except OSError as exc:
            log.warning("could not save %s (%s): a restart may not resolve alerts sent "
                        "before it", self._state_path, exc)


__all__ = ["GENERATOR_URL", "POST_TIMEOUT", "Alerting", "Sent", "post_alerts"]
