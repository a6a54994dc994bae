"""Merging CloudStack's duplicate HA rows: write-ahead cancels, and what a crash left behind.

``merge`` cancels ``view.cancel`` row by row, each in its own short transaction on CloudStack's
database, with the ledger's intent written before and the outcome after (``sidecar.ledger.
hacancels``). ``resolve`` settles cancels a dead run left ``sent``: the row is read back, never
updated again, so a row is cancelled at most once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.engine import Engine

from sidecar.clouddb import cancel, read_queue, read_row, stored_taken
from sidecar.ledger import ALREADY_TAKEN, Ledger, ha_row_id
from sidecar.ledger.schema import ALREADY_GONE, DONE, FAILED, INTENDED, SENT
from sidecar.model.hawork import HaWorkView
from sidecar.reconcile.hawork import ha_work_view
from sidecar.support.errors import CloudDbUnavailable

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    """Now, aware UTC."""
    return datetime.now(UTC)


@dataclass
class MergeOutcome:
    """What one merge (or resolve) did, by ``op_ha_work`` row id."""

    cancelled: list[int] = field(default_factory=list)
    already_taken: list[int] = field(default_factory=list)
    already_gone: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    unknown: list[int] = field(default_factory=list)
    """Sent, but the database failed before answering: the next resolve reads them back."""
    error: str = ""

    def counts(self) -> dict[str, int]:
        """Rows per outcome (for logs, metrics and the CLI)."""
        return {"cancelled": len(self.cancelled), "already_taken": len(self.already_taken),
                "already_gone": len(self.already_gone), "failed": len(self.failed),
                "unknown": len(self.unknown)}  # fmt: skip


def read_view(engine: Engine, clock: Callable[[], datetime] = utcnow) -> HaWorkView:
    """The HA queue now and the duplicates a merge would cancel."""
    rows = read_queue(engine)
    return ha_work_view(rows, clock())


def resolve(engine: Engine, ledger: Ledger, token: int) -> MergeOutcome:
    """Settle HA cancels left ``intended``/``sent`` by reading each row back (no UPDATE)."""
    outcome = MergeOutcome()
    for record in ledger.unresolved_ha_cancels():
        row_id = ha_row_id(record)
        if record.state == INTENDED:
            # Never sent: nothing happened in CloudStack. A later merge retries it if the row
            # is still a cancellable duplicate then.
            ledger.mark_ha_cancel(token, row_id, FAILED, error="never sent: a run stopped first")
            outcome.failed.append(row_id)
            continue
        row = read_row(engine, row_id)
        if row is None:
            ledger.mark_ha_cancel(token, row_id, ALREADY_GONE,
                                  error="the row no longer exists (purged or its VM deleted)")
            outcome.already_gone.append(row_id)
        elif row.step == "Cancelled" and row.taken == stored_taken(record.updated_at):
            ledger.mark_ha_cancel(token, row_id, DONE)
            outcome.cancelled.append(row_id)
        elif row.cancellable:
            # Our UPDATE never committed: the row waits untouched, free to be merged again.
            ledger.mark_ha_cancel(token, row_id, FAILED, error="the cancel did not commit")
            outcome.failed.append(row_id)
        else:
            ledger.mark_ha_cancel(token, row_id, ALREADY_TAKEN,
                                  error=f"read back: step {row.step}, taken {row.taken}")
            outcome.already_taken.append(row_id)
    return outcome


def merge(
    engine: Engine,
    ledger: Ledger,
    token: int,
    view: HaWorkView,
    *,
    run_id: int | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> MergeOutcome:
    """Cancel ``view.cancel`` row by row, write-ahead; stop at the first database failure."""
    outcome = resolve(engine, ledger, token)
    for group in view.duplicates:
        for row_id in group.cancel:
            row = view.rows[row_id]
            intent = ledger.intend_ha_cancel(run_id, token, group, row)
            if intent is None or intent.state != INTENDED:
                continue  # settled before (done, taken, gone): never cancelled twice
            now = clock()
            # The taken time goes into the ledger first: resolve recognises our own cancel.
            ledger.mark_ha_cancel(token, row_id, SENT, at=now)
            try:
                changed = cancel(engine, row_id, now)
            except CloudDbUnavailable as exc:
                outcome.unknown.append(row_id)
                outcome.error = str(exc)
                log.warning("HA cancel of op_ha_work row %s: outcome unknown (%s); the next "
                            "run reads it back", row_id, exc)
                return outcome
            if changed:
                ledger.mark_ha_cancel(token, row_id, DONE)
                outcome.cancelled.append(row_id)
                log.info("cancelled duplicate HA row %s of VM %s (kept row %s)", row_id,
                         group.vm or group.instance_id, group.keep)
            else:
                ledger.mark_ha_cancel(token, row_id, ALREADY_TAKEN,
                                      error="0 rows changed: a worker took the row first")
                outcome.already_taken.append(row_id)
    return outcome


__all__ = ["MergeOutcome", "merge", "read_view", "resolve", "utcnow"]
