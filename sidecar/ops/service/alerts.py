"""The service's memory of recent alerts: what is live, and where each name's new alerts begin."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from sidecar.cloudstack.client import CloudStackClient
from sidecar.cloudstack.listing import ELIGIBLE_NAMES, list_new_alerts
from sidecar.ledger import Ledger
from sidecar.model.resources import Alert
from sidecar.ops.service.metrics import Metrics
from sidecar.reconcile import fingerprint_of

log = logging.getLogger(__name__)

#: How far back the service keeps live alerts in memory to merge new copies with their
#: canonical: as long as the planner's longest split (history_max_gap, one day).
ALERT_MEMORY = timedelta(hours=24)


class AlertMemory:
    """Live alerts of the last ALERT_MEMORY, and the newest ``sent`` seen per alert name."""

    def __init__(self, ledger: Ledger, metrics: Metrics) -> None:
        self._ledger = ledger
        self._metrics = metrics
        #: Live alerts by id.
        self.live: dict[str, Alert] = {}
        #: Newest ``sent`` seen per alert name: new alerts are stamped later.
        self.watermarks: dict[str, datetime] = {}
        self._primed = False

    async def poll(
        self, cs: CloudStackClient, now: datetime, counts: dict[str, int]
    ) -> list[Alert]:
        """New alerts of the HA names into memory and the ledger; returns those new to memory."""
        horizon = now - ALERT_MEMORY

        def recent(alert: Alert) -> bool:
            return alert.sent is None or alert.sent >= horizon

        # First cycle: page back to the horizon to fill the memory; later, stop at known ones.
        known = self._ledger.seen_alert_ids if self._primed else (lambda ids: set())
        by_name = await list_new_alerts(
            cs, ELIGIBLE_NAMES, known=known, not_before=horizon,
            watermarks=self.watermarks if self._primed else None,
        )
        self._primed = True
        fresh: list[Alert] = []
        for name, alerts in by_name.items():
            for alert in alerts:
                if alert.sent is not None:
                    mark = self.watermarks.get(name)
                    if mark is None or alert.sent > mark:
                        self.watermarks[name] = alert.sent
                if alert.id not in self.live:
                    fresh.append(alert)
                    self.live[alert.id] = alert
        self.live = {k: a for k, a in self.live.items() if recent(a)}
        if fresh:
            unseen = {a.id for a in fresh} - self._ledger.seen_alert_ids([a.id for a in fresh])
            fingerprints = {
                a.id: "|".join(fingerprint_of(a.name, a.description)) for a in fresh
            }
            self._ledger.observe_alerts(fresh, fingerprints, now)
            # Unseen rows older than the memory are history a page happened to show (after
            # archiving, older rows move up): recorded, but not news.
            new = [a for a in fresh if a.id in unseen and recent(a)]
            self._metrics.alerts_seen(new)
            counts["new_alerts"] = len(new)
            for a in new:
                log.info("new alert %s %s: %s", a.id, a.name, a.description)
        return [a for a in fresh if recent(a)]

    def forget(self, alert_ids: Iterable[str]) -> None:
        """Drop alerts that are no longer live (archived, or found gone)."""
        for alert_id in alert_ids:
            self.live.pop(alert_id, None)
