"""Write-ahead HA cancels: one ``actions`` row (kind ``ha-cancel``) per ``op_ha_work`` row.

The same table and protocol as archive actions (``sidecar.ledger.actions``), keyed
``ha-cancel:op_ha_work:<id>`` with ``alert_id`` = ``op_ha_work:<id>``, the merge group's kept
row as ``canonical`` and the row's full copy (``HaWorkRow.to_json()``) as ``alert``:

- ``intended`` when decided, ``sent`` just before the conditional UPDATE, then ``done`` (exactly
  one row changed), ``already-taken`` (0 rows: a worker won, never retried), ``already-gone``
  (the row no longer exists when a crash is resolved) or ``failed`` (not cancelled; a later merge
  may try again while the row is still a duplicate).
- The ``sent`` mark stores the exact time written into ``taken`` as ``updated_at``: reading the
  row back after a crash tells our cancel (step Cancelled, that ``taken``) from anything else.

``state`` is a free string (no CHECK constraint), so ``already-taken`` needs no migration.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from sidecar.ledger.actions import ActionRecord, InvalidTransitionError
from sidecar.ledger.database import Database
from sidecar.ledger.lease import Leases
from sidecar.ledger.schema import ACTIONS, ALREADY_GONE, DONE, FAILED, INTENDED, SENT
from sidecar.model.hawork import HaWorkGroup, HaWorkRow

#: ``actions.kind`` of an HA cancel.
HA_CANCEL = "ha-cancel"
#: The cancel found the row taken (0 rows changed): a worker won the race.
ALREADY_TAKEN = "already-taken"
HA_CANCEL_STATES = (INTENDED, SENT, DONE, ALREADY_TAKEN, ALREADY_GONE, FAILED)

TRANSITIONS: Mapping[str, frozenset[str]] = {
    INTENDED: frozenset({SENT, FAILED}),
    SENT: frozenset({DONE, ALREADY_TAKEN, ALREADY_GONE, FAILED}),
    FAILED: frozenset(),  # a retry goes through intend first
    DONE: frozenset(),
    ALREADY_TAKEN: frozenset(),
    ALREADY_GONE: frozenset(),
}


def row_ref(row_id: int) -> str:
    """The ``alert_id`` of the action cancelling one ``op_ha_work`` row."""
    return f"op_ha_work:{row_id}"


def cancel_key(row_id: int) -> str:
    """The idempotency key of cancelling one ``op_ha_work`` row."""
    return f"{HA_CANCEL}:{row_ref(row_id)}"


def group_id(group: HaWorkGroup) -> str:
    """The merge group of an HA cancel: the VM and host whose rows are merged, and the kept row."""
    return f"ha-work:{group.instance_id}:{group.host_id}:{group.keep}"


class HaCancels:
    """The ``ha-cancel`` actions: intents written before each cancel, settled after it."""

    def __init__(self, db: Database, leases: Leases) -> None:
        self.db = db
        self.leases = leases

    def _current(self, conn: Connection, row_id: int) -> ActionRecord | None:
        found = conn.execute(
            select(ACTIONS).where(ACTIONS.c.key == cancel_key(row_id))
        ).mappings().first()
        return None if found is None else ActionRecord.from_row(found)

    def intend(
        self, run_id: int | None, token: int, group: HaWorkGroup, row: HaWorkRow
    ) -> ActionRecord | None:
        """Write the intent to cancel ``row`` (fenced); None when it is already settled.

        A new row gets ``intended``; a ``failed`` one is reset to ``intended`` (a retry: the
        caller proved the row is still a cancellable duplicate); an ``intended``/``sent`` one is
        returned as it is (``sent`` must be resolved first); terminal ones return None.
        """
        if row.id == group.keep or row.id not in group.cancel:
            raise ValueError(f"refusing to cancel op_ha_work row {row.id}: not a duplicate of "
                             f"group {group_id(group)}")

        def work(conn: Connection) -> ActionRecord | None:
            now = self.db.clock()
            old = self._current(conn, row.id)
            values = {"group_id": group_id(group), "canonical": str(group.keep),
                      "reason": group.reason, "token": token, "updated_at": now}
            if old is None:
                conn.execute(insert(ACTIONS).values(
                    key=cancel_key(row.id), kind=HA_CANCEL, alert_id=row_ref(row.id),
                    state=INTENDED, alert=row.to_json(), run_id=run_id, created_at=now,
                    error="", attempts=0, **values,
                ))  # fmt: skip
            elif old.state == FAILED:
                conn.execute(update(ACTIONS).where(ACTIONS.c.key == old.key)
                             .values(state=INTENDED, alert=row.to_json(), **values))
            elif old.state not in (INTENDED, SENT):
                return None
            return self._current(conn, row.id)

        return self.leases.write(work, token)

    def mark(
        self, token: int, row_id: int, state: str, *, at: datetime | None = None, error: str = ""
    ) -> None:
        """Move one HA cancel to ``state`` (fenced); ``at`` is the ``taken`` time when ``sent``."""

        def work(conn: Connection) -> None:
            old = self._current(conn, row_id)
            if old is None:
                raise InvalidTransitionError(f"no HA cancel recorded for op_ha_work row {row_id}")
            if state not in TRANSITIONS.get(old.state, frozenset()):
                raise InvalidTransitionError(
                    f"HA cancel of op_ha_work row {row_id} cannot go from {old.state!r} to "
                    f"{state!r}"
                )
            values: dict[str, object] = {"state": state, "token": token, "error": error[:2000],
                                         "updated_at": at or self.db.clock()}
            if state == SENT:
                values["attempts"] = ACTIONS.c.attempts + 1
            conn.execute(update(ACTIONS).where(ACTIONS.c.key == old.key).values(**values))

        self.leases.write(work, token)

    def unresolved(self) -> list[ActionRecord]:
        """HA cancels left ``intended`` or ``sent`` (by a run that died, or one in progress)."""
        return self.records(states=(INTENDED, SENT))

    def records(self, *, states: tuple[str, ...] | None = None) -> list[ActionRecord]:
        """Every HA cancel (oldest first), optionally only those in ``states``."""
        stmt = select(ACTIONS).where(ACTIONS.c.kind == HA_CANCEL)
        if states is not None:
            stmt = stmt.where(ACTIONS.c.state.in_(list(states)))
        rows = self.db.read(lambda conn: conn.execute(stmt.order_by(ACTIONS.c.id)).mappings().all())
        return [ActionRecord.from_row(r) for r in rows]


def ha_row_id(record: ActionRecord) -> int:
    """The ``op_ha_work`` id an HA cancel is about."""
    return int(record.alert_id.removeprefix("op_ha_work:"))


__all__ = [
    "ALREADY_TAKEN",
    "HA_CANCEL",
    "HA_CANCEL_STATES",
    "HaCancels",
    "cancel_key",
    "group_id",
    "ha_row_id",
    "row_ref",
]
