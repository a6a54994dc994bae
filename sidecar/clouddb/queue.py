"""CloudStack's HA queue read from ``op_ha_work``, and the one write the sidecar ever makes.

The write is cloudstack.md §8.4's conditional UPDATE: ``step='Cancelled'``, ``taken=now``,
guarded so that it changes a row only while no worker has taken it. Under InnoDB row locks it
is atomic against a worker's ``take()`` (``SELECT … FOR UPDATE`` then set server and taken):
either the UPDATE wins and no worker ever takes the row, or the worker won and 0 rows change.
"""

from __future__ import annotations

import weakref
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import BigInteger, DateTime, Integer, String, and_, column, inspect, select, table
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Engine, RowMapping
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from sidecar.clouddb.engine import unavailable
from sidecar.model.hawork import CANCELLABLE_STEPS, FINAL_STEPS, HaWorkRow

#: Every column of ``op_ha_work`` in every release 4.19.0–main but ``reason`` (4.20.1+).
BASE_COLUMNS: Final = ("id", "instance_id", "type", "vm_type", "state", "mgmt_server_id",
                       "host_id", "created", "tried", "taken", "step", "time_to_try", "updated")
REASON: Final = "reason"

#: DATETIME as CloudStack writes it: whole seconds, no zone (UTC); on SQLite the same text.
CS_DATETIME: Final = DateTime().with_variant(
    sqlite.DATETIME(storage_format="%(year)04d-%(month)02d-%(day)02d "
                                   "%(hour)02d:%(minute)02d:%(second)02d"),
    "sqlite",
)

OP_HA_WORK = table(
    "op_ha_work",
    column("id", BigInteger), column("instance_id", BigInteger), column("type", String),
    column("vm_type", String), column("state", String), column("mgmt_server_id", BigInteger),
    column("host_id", BigInteger), column("created", CS_DATETIME), column("tried", Integer),
    column("taken", CS_DATETIME), column("step", String), column("time_to_try", BigInteger),
    column("updated", BigInteger), column("reason", String),
)
VM_INSTANCE = table("vm_instance", column("id", BigInteger), column("instance_name", String))
HOST = table("host", column("id", BigInteger), column("name", String))

_columns_seen: weakref.WeakKeyDictionary[Engine, frozenset[str]] = weakref.WeakKeyDictionary()


def ha_work_columns(engine: Engine) -> frozenset[str]:
    """The columns ``op_ha_work`` has, read once per engine through the inspector."""
    found = _columns_seen.get(engine)
    if found is None:
        try:
            found = frozenset(c["name"].lower() for c in inspect(engine).get_columns("op_ha_work"))
        except SQLAlchemyError as exc:
            raise unavailable(engine, exc) from None
        _columns_seen[engine] = found
    return found


def _utc(value: Any) -> datetime | None:
    """A DATETIME of CloudStack (written in UTC, returned naive) as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):  # SQLite without declared types hands back text
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _row(m: RowMapping) -> HaWorkRow:
    def opt_int(name: str) -> int | None:
        return None if m[name] is None else int(m[name])

    return HaWorkRow(
        id=int(m["id"]), instance_id=int(m["instance_id"]), type=m["type"], vm_type=m["vm_type"],
        state=m["state"], mgmt_server_id=opt_int("mgmt_server_id"), host_id=opt_int("host_id"),
        created=_utc(m["created"]), tried=opt_int("tried"), taken=_utc(m["taken"]),
        step=m["step"], time_to_try=opt_int("time_to_try"), updated=int(m["updated"]),
        reason=m.get(REASON), vm=m["vm"] or "", host=m["host"] or "",
    )  # fmt: skip


def _select(columns: Collection[str], where: ColumnElement[bool]) -> Any:
    wanted = [OP_HA_WORK.c[name] for name in BASE_COLUMNS]
    if REASON in columns:
        wanted.append(OP_HA_WORK.c.reason)
    return (
        select(*wanted, VM_INSTANCE.c.instance_name.label("vm"), HOST.c.name.label("host"))
        .select_from(
            OP_HA_WORK.outerjoin(VM_INSTANCE, VM_INSTANCE.c.id == OP_HA_WORK.c.instance_id)
            .outerjoin(HOST, HOST.c.id == OP_HA_WORK.c.host_id)
        )
        .where(where)
        .order_by(OP_HA_WORK.c.id)
    )


def read_queue(engine: Engine) -> list[HaWorkRow]:
    """Every pending HA row with its VM's instance name and host name (one indexed query)."""
    pending = and_(OP_HA_WORK.c.type == "HA", OP_HA_WORK.c.step.not_in(FINAL_STEPS))
    stmt = _select(ha_work_columns(engine), pending)
    try:
        with engine.connect() as conn:
            return [_row(m) for m in conn.execute(stmt).mappings()]
    except SQLAlchemyError as exc:
        raise unavailable(engine, exc) from None


def read_row(engine: Engine, row_id: int) -> HaWorkRow | None:
    """One row of any type and step (settles a cancel whose outcome is unknown), or None."""
    stmt = _select(ha_work_columns(engine), OP_HA_WORK.c.id == row_id)
    try:
        with engine.connect() as conn:
            found = conn.execute(stmt).mappings().first()
    except SQLAlchemyError as exc:
        raise unavailable(engine, exc) from None
    return None if found is None else _row(found)


class _NotOneRow(Exception):
    """Internal: the guarded UPDATE changed more than one row (rolls it back)."""


def cancel_statement(row_id: int, now: datetime) -> Any:
    """The conditional UPDATE of cloudstack.md §8.4 for one row (taken = ``now``, naive UTC)."""
    taken = now.astimezone(UTC).replace(tzinfo=None, microsecond=0)
    return (
        OP_HA_WORK.update()
        .where(
            OP_HA_WORK.c.id == row_id,
            OP_HA_WORK.c.taken.is_(None),
            OP_HA_WORK.c.mgmt_server_id.is_(None),
            OP_HA_WORK.c.type == "HA",
            OP_HA_WORK.c.step.in_(CANCELLABLE_STEPS),
        )
        .values(step="Cancelled", taken=taken)
    )


def cancel(engine: Engine, row_id: int, now: datetime) -> bool:
    """Cancel one untaken HA row in its own short transaction: True only if exactly it changed.

    False means a worker (or anything else) got there first: record it, never retry.
    """
    stmt = cancel_statement(row_id, now)
    if engine.dialect.name in {"mysql", "mariadb"}:
        # Lock by primary key only: MariaDB otherwise may walk the mgmt_server_id index first
        # (mgmt_server_id IS NULL), hold its entry and then wait for the row a worker's take()
        # holds, a deadlock whose victim can be CloudStack's worker (seen in the race test).
        stmt = stmt.with_hint("FORCE INDEX (PRIMARY)", dialect_name="*")
    try:
        with engine.begin() as conn:
            changed = conn.execute(stmt).rowcount
            if changed > 1:  # impossible with id as primary key; never commit a surprise
                raise _NotOneRow
    except _NotOneRow:
        surprise = RuntimeError(f"cancel of row {row_id} matched {changed} rows: rolled back")
        raise unavailable(engine, surprise) from None
    except SQLAlchemyError as exc:
        raise unavailable(engine, exc) from None
    return changed == 1


def stored_taken(now: datetime) -> datetime:
    """``now`` as ``cancel`` stores it in ``taken`` (whole seconds, aware UTC): to recognise it."""
    return now.astimezone(UTC).replace(microsecond=0)


__all__ = [
    "BASE_COLUMNS",
    "REASON",
    "cancel",
    "cancel_statement",
    "ha_work_columns",
    "read_queue",
    "read_row",
    "stored_taken",
]
