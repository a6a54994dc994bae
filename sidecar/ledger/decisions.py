"""Decisions: merge groups and HA incidents, upserted so that each keeps every member ever seen."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection, RowMapping

from sidecar.ledger.database import Database
from sidecar.ledger.schema import DECISIONS, HA, MERGE
from sidecar.ledger.sql import aware, chunks, executemany, newest, record
from sidecar.model.plan import HAIncident, MergeGroup, Plan, from_iso, iso

#: Decisions per transaction in ``record_plan`` (a cleanup plan may hold 100,000s of groups).
_DECISIONS_PER_TRANSACTION = 5000

#: Decision columns that ``Decisions.new_group_columns`` encodes ahead of the transaction.
FRESH_ENCODED = ("members", "data")

#: A decision's key: (kind, decision_id).
DecisionKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """A merge group or HA incident with every member ever seen in it."""

    kind: str
    decision_id: str
    subject: str
    fingerprint: str
    canonical: str
    reason: str
    members: tuple[str, ...]
    data: dict[str, Any]
    first_run_id: int | None
    run_id: int | None
    created_at: datetime
    updated_at: datetime


def _merge_members(old: Sequence[str], new: Iterable[str], drop: str = "") -> list[str]:
    """Old members then new ones, each once; ``drop`` (the canonical) excluded."""
    return [m for m in dict.fromkeys([*old, *new]) if m and m != drop]


def _merge_group_row(group: MergeGroup, old: RowMapping | None) -> dict[str, Any]:
    """Decision columns for a merge group, keeping the members of earlier runs."""
    data = group.to_json()
    members = _merge_members(old["members"] if old else (), group.duplicates, group.canonical)
    if old is not None:
        before = old["data"] or {}
        firsts = [v for v in (before.get("first_sent"), data["first_sent"]) if v]
        lasts = [v for v in (before.get("last_sent"), data["last_sent"]) if v]
        data["first_sent"] = iso(min(from_iso(v) for v in firsts)) if firsts else None  # type: ignore[type-var]
        data["last_sent"] = iso(max(from_iso(v) for v in lasts)) if lasts else None  # type: ignore[type-var]
    data["duplicates"] = members
    data["count"] = 1 + len(members)
    return {
        "subject": group.object[:255],
        "fingerprint": group.fingerprint[:255],
        "canonical": group.canonical,
        "reason": group.reason,
        "members": members,
        "data": data,
    }


def _merge_incident_row(incident: HAIncident, old: RowMapping | None) -> dict[str, Any]:
    """Decision columns for an HA incident, keeping alerts and VMs of earlier runs."""
    data = incident.to_json()
    members = _merge_members(old["members"] if old else (), incident.alert_ids)
    if old is not None:
        before = old["data"] or {}
        vms = {(v.get("vm_id") or v.get("vm"), v.get("instance")): v for v in before.get("vms", [])}
        for vm in data["vms"]:
            vms[(vm.get("vm_id") or vm.get("vm"), vm.get("instance"))] = vm
        data["vms"] = list(vms.values())
        for key, pick in (("started", min), ("last_seen", max)):
            values = [from_iso(v) for v in (before.get(key), data[key]) if v]
            data[key] = iso(pick(values))  # type: ignore[type-var]
        for key in ("rounds", "duplicate_rounds"):
            data[key] = max(int(before.get(key, 0)), int(data[key]))
        data["restarted_more_than_once"] = _merge_members(
            before.get("restarted_more_than_once", []), data["restarted_more_than_once"]
        )
    data["alert_ids"] = members
    return {
        "subject": incident.host[:255],
        "fingerprint": incident.host_id[:255],
        "canonical": "",
        "reason": f"{data['rounds']} HA rounds, {data['duplicate_rounds']} duplicate",
        "members": members,
        "data": data,
    }


def record_decisions(
    conn: Connection,
    run_id: int,
    wanted: Mapping[DecisionKey, MergeGroup | HAIncident],
    now: datetime,
    *,
    fresh: Mapping[DecisionKey, Mapping[str, Any]] | None = None,
) -> None:
    """Upsert decisions (merge groups, HA incidents), merging members with earlier runs'.

    ``fresh`` holds the columns of decisions not yet recorded, built (and JSON encoded, see
    ``FRESH_ENCODED``) ahead of the transaction; they are used when no row exists.
    """
    existing: dict[DecisionKey, RowMapping] = {}
    for kind in (MERGE, HA):
        ids = [i for k, i in wanted if k == kind]
        for chunk in chunks(ids):
            stmt = (
                select(DECISIONS)
                .where(DECISIONS.c.kind == kind, DECISIONS.c.decision_id.in_(chunk))
                .with_for_update()  # members are merged: no lost update between runs
            )
            for row in conn.execute(stmt).mappings():
                existing[(kind, row["decision_id"])] = row
    inserts: list[dict[str, Any]] = []
    encoded_inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    columns: Mapping[str, Any] = {}
    for (kind, decision_id), item in wanted.items():
        old = existing.get((kind, decision_id))
        ready = fresh.get((kind, decision_id)) if fresh is not None and old is None else None
        if ready is not None:
            columns = ready
        elif isinstance(item, MergeGroup):
            columns = _merge_group_row(item, old)
        else:
            columns = _merge_incident_row(item, old)
        if old is None:
            (encoded_inserts if ready is not None else inserts).append(
                {"kind": kind, "decision_id": decision_id, **columns}
            )
        else:
            updates.append(
                {"b_id": old["id"], "b_run_id": run_id, "b_updated_at": now}
                | {f"b_{k}": v for k, v in columns.items()}
            )
    constants = {"first_run_id": run_id, "run_id": run_id, "created_at": now, "updated_at": now}
    if inserts:
        executemany(conn, insert(DECISIONS), inserts, constants=constants)
    if encoded_inserts:
        executemany(conn, insert(DECISIONS), encoded_inserts, encoded=FRESH_ENCODED,
                    constants=constants)  # fmt: skip
    if updates:
        upsert = (
            update(DECISIONS)
            .where(DECISIONS.c.id == bindparam("b_id"))
            .values(
                run_id=bindparam("b_run_id"),
                updated_at=bindparam("b_updated_at"),
                **{k: bindparam(f"b_{k}") for k in columns},
            )
        )
        conn.execute(upsert, updates)


class Decisions:
    """The ``decisions`` table: what each run decided, merged across runs."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record_plan(self, run_id: int, plan: Plan, *, groups: bool = True) -> None:
        """Upsert the plan's merge groups and HA incidents, keeping members of earlier runs.

        ``groups=False`` records only the HA incidents: a cleanup records each merge group
        with the intents of its duplicates instead (``intend_archive(record_groups=True)``),
        in batches, rather than a million groups in one transaction up front.
        """
        wanted: dict[DecisionKey, MergeGroup | HAIncident] = {}
        if groups:
            for group in plan.groups:
                wanted[(MERGE, group.group_id)] = group
        for incident in plan.ha_incidents:
            wanted[(HA, incident.incident_id)] = incident
        if not wanted:
            return
        items = list(wanted.items())
        for start in range(0, len(items), _DECISIONS_PER_TRANSACTION):
            chunk = dict(items[start : start + _DECISIONS_PER_TRANSACTION])

            def work(conn: Connection, chunk: Mapping[Any, Any] = chunk) -> None:
                record_decisions(conn, run_id, chunk, self.db.clock())

            self.db.write(work, retry_conflicts=True)

    def records(
        self,
        *,
        kind: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[DecisionRecord]:
        """Decisions updated since ``since`` (oldest first; the newest ``limit`` if given)."""
        stmt = select(DECISIONS)
        if kind is not None:
            stmt = stmt.where(DECISIONS.c.kind == kind)
        if since is not None:
            stmt = stmt.where(DECISIONS.c.updated_at >= aware(since, "since"))
        rows = self.db.read(lambda conn: newest(conn, stmt, DECISIONS.c.id, limit))
        return [
            record(DecisionRecord, r, members=tuple(r["members"] or ()), data=dict(r["data"] or {}))
            for r in rows
        ]

    def new_group_columns(self, group: MergeGroup) -> dict[str, Any]:
        """The decision columns of a merge group seen for the first time, JSON encoded."""
        columns = _merge_group_row(group, None)
        for name in FRESH_ENCODED:
            columns[name] = self.db.encoder(DECISIONS.c[name])(columns[name])
        return columns
