"""Acting on a cycle's plan: archive its duplicates as the lease holder, write-ahead."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sidecar.cloudstack.client import CloudStackClient
from sidecar.ledger import Ledger, claim_lease
from sidecar.model.plan import Plan
from sidecar.ops.applier import Applier
from sidecar.ops.service.alerts import AlertMemory
from sidecar.ops.service.metrics import Metrics
from sidecar.support.settings import Settings

log = logging.getLogger(__name__)


class Archiver:
    """Holds (or waits for) the ledger lease and archives through the Applier while it does."""

    def __init__(
        self, settings: Settings, ledger: Ledger, metrics: Metrics, *, dry_run: bool,
        should_stop: Callable[[], bool],
    ) -> None:
        self._settings = settings
        self._ledger = ledger
        self._metrics = metrics
        self._dry_run = dry_run
        self._should_stop = should_stop
        #: The lease's fencing token while this sidecar holds it.
        self.token: int | None = None

    async def act(
        self, cs: CloudStackClient, run_id: int, plan: Plan, memory: AlertMemory,
        counts: dict[str, int],
    ) -> str:
        """Archive the plan's duplicates through the ledger, as the lease holder only.

        Returns why archiving stopped early (empty when it did not).
        """
        if self._dry_run:
            self._metrics.lease(False)
            return ""
        settings, ledger = self._settings, self._ledger
        self.token = claim_lease(ledger, settings.lease_ttl)
        self._metrics.lease(self.token is not None)
        if self.token is None:
            return ""
        unresolved = ledger.unresolved_actions()
        if not plan.archive and not unresolved:
            return ""
        applier = Applier(
            cs, ledger, run_id=run_id, token=self.token, batch_size=settings.archive_batch_size,
            renew_lease=lambda: ledger.acquire_lease(settings.lease_ttl),
            should_stop=self._should_stop,
        )
        if unresolved:
            # A run that died left intents: settle them (is each alert still live?) first.
            resolved = await applier.resolve(plan)
            counts["resolved"] = len(resolved.done) + len(resolved.already_gone)
        done = await applier.apply(plan, memory.live, max_actions=settings.max_actions)
        counts.update(done.counts())
        gone = [*done.archived, *done.already_gone]
        memory.forget(gone)
        groups = plan.group_of()
        by_family: dict[str, int] = {}
        for alert_id in gone:
            family = groups[alert_id].family
            by_family[family] = by_family.get(family, 0) + 1
        for family, n in by_family.items():
            self._metrics.archived(family, n)
        for alert_id in done.failed:
            # A superseded intent may name an alert no longer in any group.
            group = groups.get(alert_id)
            self._metrics.archive_failed(group.family if group else "unknown")
        if done.archived:
            log.info("archived %d duplicate alerts (%s)", len(done.archived),
                     ", ".join(f"{n} {f}" for f, n in sorted(by_family.items())))
        if done.lost_lease:
            self.token = None
        return done.error

    def release(self) -> None:
        """Give the lease up, if held: another sidecar may act at once."""
        if self.token is not None:
            self._ledger.release_lease()
            self.token = None
