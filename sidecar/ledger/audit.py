"""Audit: the ledger's invariants, and every row of every table for export."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

from sqlalchemy import String, and_, func, literal, select
from sqlalchemy.engine import Connection, RowMapping

from sidecar.ledger.actions import ARCHIVE_KEY_PREFIX, UNRESOLVED
from sidecar.ledger.database import Database
from sidecar.ledger.schema import (
    ACTION_STATES,
    ACTIONS,
    DECISIONS,
    DONE,
    LEASES,
    MERGE,
    SENT,
    TABLES,
)

#: Violations of one kind listed before the rest are only counted.
_SHOW_AT_MOST = 10


class Audit:
    """Read-only checks and exports over the whole ledger."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def verify(self) -> list[str]:
        """Check the ledger's invariants; one human-readable line per violation (empty = OK).

        Every action has its merge decision; no canonical alert was archived (or sent for
        archiving); no intent is left unresolved; every state is known; no action carries a
        token newer than the lease's.
        """
        return self.db.read(_verify)

    def export_rows(self, page_size: int = 1000) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every row of every table as (table name, row), paged by key: never all in memory."""
        for tbl in TABLES:
            key = next(iter(tbl.primary_key.columns))
            last: Any = None
            while True:
                stmt = select(tbl).order_by(key).limit(page_size)
                if last is not None:
                    stmt = stmt.where(key > last)
                rows = self.db.read(partial(_all_rows, stmt=stmt))
                for row in rows:
                    yield tbl.name, dict(row)
                if len(rows) < page_size:
                    break
                last = rows[-1][key.name]

    def counts(self) -> dict[str, int]:
        """Row count of every table."""

        def work(conn: Connection) -> dict[str, int]:
            return {
                tbl.name: int(conn.execute(select(func.count()).select_from(tbl)).scalar_one())
                for tbl in TABLES
            }

        return self.db.read(work)


def _all_rows(conn: Connection, *, stmt: Any) -> list[RowMapping]:
    return list(conn.execute(stmt).mappings().all())


def _verify(conn: Connection) -> list[str]:
    problems: list[str] = []

    def report(rows: Sequence[Any], one: Callable[[Any], str], many: str) -> None:
        for row in rows[:_SHOW_AT_MOST]:
            problems.append(one(row))
        if len(rows) > _SHOW_AT_MOST:
            problems.append(many.format(n=len(rows) - _SHOW_AT_MOST))

    decided = and_(DECISIONS.c.kind == MERGE, DECISIONS.c.decision_id == ACTIONS.c.group_id)
    orphans = conn.execute(
        select(ACTIONS.c.alert_id, ACTIONS.c.group_id)
        .select_from(ACTIONS.outerjoin(DECISIONS, decided))
        # HA cancels carry their group (VM, host, kept row) in the action itself.
        .where(DECISIONS.c.id.is_(None), ACTIONS.c.kind == "archive")
        .order_by(ACTIONS.c.id)
    ).all()
    report(
        orphans,
        lambda r: f"action for alert {r[0]} has no decision: group {r[1]} was never recorded",
        "... and {n} more actions without a decision",
    )

    archived_states = (SENT, DONE)
    own = conn.execute(
        select(ACTIONS.c.alert_id, ACTIONS.c.state, ACTIONS.c.group_id)
        .where(ACTIONS.c.alert_id == ACTIONS.c.canonical)
        .order_by(ACTIONS.c.id)
    ).all()
    report(
        own,
        lambda r: f"action for alert {r[0]} ({r[1]}) archives the canonical of its group {r[2]}",
        "... and {n} more actions on their own group's canonical",
    )
    # Each merge group's canonical looked up through the unique ``key`` of its action (no
    # index on ``canonical`` or ``alert_id``, revision 0003).
    canonical_key = literal(ARCHIVE_KEY_PREFIX, String) + DECISIONS.c.canonical
    canon = conn.execute(
        select(ACTIONS.c.alert_id, ACTIONS.c.state, DECISIONS.c.decision_id)
        .select_from(DECISIONS.join(ACTIONS, ACTIONS.c.key == canonical_key))
        .where(
            DECISIONS.c.kind == MERGE,
            ACTIONS.c.state.in_(archived_states),
            ACTIONS.c.alert_id != ACTIONS.c.canonical,
        )
        .order_by(ACTIONS.c.id)
    ).all()
    report(
        canon,
        lambda r: f"canonical alert {r[0]} of group {r[2]} was archived (action state {r[1]})",
        "... and {n} more archived canonical alerts",
    )

    pending = conn.execute(
        select(ACTIONS.c.alert_id, ACTIONS.c.state, ACTIONS.c.run_id)
        .where(ACTIONS.c.state.in_(UNRESOLVED))
        .order_by(ACTIONS.c.id)
    ).all()
    report(
        pending,
        lambda r: (
            f"action for alert {r[0]} is unresolved ({r[1]} by run {r[2]}): the next "
            f"apply run resolves it"
        ),
        "... and {n} more unresolved actions",
    )

    unknown = conn.execute(
        select(ACTIONS.c.alert_id, ACTIONS.c.state)
        .where(ACTIONS.c.state.not_in(list(ACTION_STATES)))
        .order_by(ACTIONS.c.id)
    ).all()
    report(
        unknown,
        lambda r: f"action for alert {r[0]} has the unknown state {r[1]!r}",
        "... and {n} more actions in unknown states",
    )

    newest = conn.execute(select(func.max(ACTIONS.c.token))).scalar()
    current = conn.execute(select(func.max(LEASES.c.token))).scalar()
    if newest is not None and (current is None or newest > current):
        problems.append(
            f"actions carry fencing token {newest}, newer than the lease's "
            f"{current if current is not None else '(no lease)'}: the lease table was reset"
        )
    return problems
