"""VM placements: where the sidecar saw each VM and since when, host changes only.

A row says "from ``since`` on, VM ``vm`` (instance name) was seen on host ``host_id``"; a VM's
first row is when watching it began. Rows are written only when a listing shows a VM on
another host than its latest row says, so a cycle of unchanged VMs writes nothing; each
``Placements`` keeps every VM's latest host in memory after one read, so it reads nothing
either. A VM without a host (Stopped) records nothing: its last host stays its placement.

Several sidecars may share the ledger. A move one of them recorded first is not recorded
again (the latest rows of the VMs that moved are read again in the writing transaction);
readers merge consecutive rows of one host all the same, so that they see host changes only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, exists, insert, or_, select
from sqlalchemy.engine import Connection

from sidecar.ledger.database import Database
from sidecar.ledger.schema import VM_PLACEMENTS
from sidecar.ledger.sql import IDS, aware, chunks, executemany
from sidecar.model.plan import VmPlacement
from sidecar.model.resources import VirtualMachine

_P = VM_PLACEMENTS.c


def _superseded(at: datetime | None) -> ColumnElement[bool]:
    """A later placement of the same VM began at or before ``at`` (ever, when None).

    Ties of ``since`` (two sidecars, one moment) are broken by id, so exactly one placement
    of each VM is in effect at any moment.
    """
    later = VM_PLACEMENTS.alias("later")
    conditions = [
        later.c.vm == _P.vm,
        or_(later.c.since > _P.since, and_(later.c.since == _P.since, later.c.id > _P.id)),
    ]
    if at is not None:
        conditions.append(later.c.since <= at)
    return exists().where(*conditions)


def _latest_hosts(conn: Connection, vms: Sequence[str] | None = None) -> dict[str, str]:
    """Each VM's host by its latest placement: of ``vms``, or of every VM when None."""
    stmt = select(_P.vm, _P.host_id).where(~_superseded(None))
    if vms is None:
        return dict(conn.execute(stmt).all())
    latest: dict[str, str] = {}
    stmt = stmt.where(_P.vm.in_(IDS))
    for chunk in chunks(vms):
        latest.update(conn.execute(stmt, {"ids": list(chunk)}).all())
    return latest


def prune_placements(conn: Connection, older_than: datetime) -> int:
    """Delete the placements a later one replaced at or before ``older_than``; return count.

    Each VM keeps the placement in effect at ``older_than`` (so the host at the horizon stays
    known) and every later one; its earliest kept row still carries its own ``since``, true
    as far as it goes: a restart before it reads as "before watching began", never as a
    wrong host. A VM's latest placement is never deleted, which keeps every cache valid.
    """
    # Ids first: MySQL refuses a DELETE whose subquery reads the same table.
    ids = list(conn.execute(select(_P.id).where(_superseded(older_than))).scalars())
    stmt = delete(VM_PLACEMENTS).where(_P.id.in_(IDS))
    for chunk in chunks(ids):
        conn.execute(stmt, {"ids": list(chunk)})
    return len(ids)


def _merged(rows: Iterable[Any]) -> list[VmPlacement]:
    """(vm, host_id, since, id) rows as placements by VM and time, a host's repeats merged."""
    out: list[VmPlacement] = []
    # Sorted here, not in SQL: collations order names differently on each backend.
    for vm, host_id, since, _id in sorted(rows, key=lambda r: (r[0], r[2], r[3])):
        last = out[-1] if out else None
        if last is not None and last.vm == vm and last.host_id == host_id:
            continue  # a move two sidecars both recorded, or a VM back where it was seen
        out.append(VmPlacement(vm, host_id, since))
    return out


class Placements:
    """The ``vm_placements`` table, with every VM's latest host kept after the first read."""

    def __init__(self, db: Database) -> None:
        self.db = db
        #: Instance name -> host id of its latest placement (None: not read yet).
        self._latest: dict[str, str] | None = None

    def record(self, vms: Sequence[VirtualMachine], at: datetime) -> int:
        """Record the VMs whose host differs from their latest placement (or that are new);
        returns the rows written.

        VMs without a host (Stopped) or without an instance name are left out. Only the first
        call reads every VM's latest placement; later ones read only those of VMs that moved.
        """
        at = aware(at, "at")
        # Instance name -> (VM id, host id), cut to their columns' lengths.
        seen = {
            vm.instancename[:255]: (vm.id[:64], vm.hostid[:64])
            for vm in vms
            if vm.instancename and vm.hostid
        }
        latest = self._latest
        if latest is None:
            latest = self._latest = self.db.read(_latest_hosts)
        moved = sorted(name for name, (_, host) in seen.items() if latest.get(name) != host)
        if not moved:
            return 0

        def work(conn: Connection) -> tuple[dict[str, str], list[dict[str, Any]]]:
            # Another sidecar sharing the ledger may have recorded these moves already.
            current = _latest_hosts(conn, moved)
            rows = [
                {"vm": name, "vm_id": seen[name][0], "host_id": seen[name][1], "since": at}
                for name in moved
                if current.get(name) != seen[name][1]
            ]
            if rows:
                executemany(conn, insert(VM_PLACEMENTS), rows)
            return current, rows

        current, rows = self.db.write(work)
        # Only after the commit: a failed transaction leaves the cache as the ledger is.
        latest.update(current)
        latest.update((row["vm"], row["host_id"]) for row in rows)
        return len(rows)

    def history(self, since: datetime | None = None) -> list[VmPlacement]:
        """Placements by VM and time: with ``since``, those in effect at ``since`` or later
        (each VM's placement at ``since`` keeps its own, earlier, ``since``)."""
        stmt = select(_P.vm, _P.host_id, _P.since, _P.id)
        if since is not None:
            stmt = stmt.where(~_superseded(aware(since, "since")))
        return _merged(self.db.read(lambda conn: conn.execute(stmt).all()))
