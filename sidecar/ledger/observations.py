"""Observations: host state transitions and alerts as the poller first saw them, and retention
(of VM placements too)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, RowMapping

from sidecar.ledger.database import Database
from sidecar.ledger.placements import prune_placements
from sidecar.ledger.schema import ALERT_OBSERVATIONS, HOST_OBSERVATIONS, HOST_STATES
from sidecar.ledger.sql import IDS, aware, chunks, executemany, newest, record, unique
from sidecar.model.plan import HostStateChange
from sidecar.model.resources import Alert, Host


@dataclass(frozen=True, slots=True)
class AlertSighting:
    """An alert as first seen by the poller."""

    alert_id: str
    name: str
    type: int
    subject: str
    sent: datetime | None
    fingerprint: str
    first_seen: datetime


def _existing(conn: Connection, column: Any, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in chunks(ids):
        found.update(
            conn.execute(select(column).where(column.in_(IDS)), {"ids": list(chunk)}).scalars()
        )
    return found


class Observations:
    """The host and alert observation tables, and each host's last known state."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def observe_hosts(self, hosts: Sequence[Host], at: datetime) -> list[HostStateChange]:
        """Record host state changes against the last known state; returns the new transitions.

        The first sighting of a host counts as a transition. Concurrent observers record each
        transition once (compare-and-set on the host's last known state).
        """
        at = aware(at, "at")
        latest = {h.id: h for h in hosts if h.id}

        def work(conn: Connection) -> list[HostStateChange]:
            known: dict[str, RowMapping] = {}
            for chunk in chunks(list(latest)):
                rows = conn.execute(select(HOST_STATES).where(HOST_STATES.c.host_id.in_(chunk)))
                known.update({r["host_id"]: r for r in rows.mappings()})
            changes: list[HostStateChange] = []
            rows_out: list[dict[str, Any]] = []
            for host in latest.values():
                hastate = host.hostha.hastate
                old = known.get(host.id)
                values = {
                    "host_name": host.name[:255],
                    "state": host.state[:32],
                    "hastate": hastate[:32],
                    "since": at,
                }
                stmt: Any
                if old is None:
                    stmt = (
                        self.db.insert_ignore(HOST_STATES)
                        .values(host_id=host.id, **values)
                        # rowcount of an INSERT is only kept on request (SQLAlchemy 2.x)
                        .execution_options(preserve_rowcount=True)
                    )
                elif (old["state"], old["hastate"]) == (host.state, hastate):
                    continue
                else:
                    stmt = (
                        update(HOST_STATES)
                        .where(
                            HOST_STATES.c.host_id == host.id,
                            HOST_STATES.c.state == old["state"],
                            HOST_STATES.c.hastate == old["hastate"],
                        )
                        .values(**values)
                    )
                if conn.execute(stmt).rowcount != 1:
                    continue  # another observer recorded this change first
                changes.append(HostStateChange(host.id, host.name, host.state, at, hastate))
                rows_out.append(
                    {
                        "host_id": host.id,
                        **{k: v for k, v in values.items() if k != "since"},
                        "previous_state": old["state"] if old else "",
                        "previous_hastate": old["hastate"] if old else "",
                        "observed_at": at,
                    }
                )
            if rows_out:
                conn.execute(insert(HOST_OBSERVATIONS), rows_out)
            return changes

        return self.db.write(work)

    def host_history(self, since: datetime | None = None) -> list[HostStateChange]:
        """Host state transitions (oldest first), optionally only those at or after ``since``."""
        stmt = select(HOST_OBSERVATIONS).order_by(
            HOST_OBSERVATIONS.c.observed_at, HOST_OBSERVATIONS.c.id
        )
        if since is not None:
            stmt = stmt.where(HOST_OBSERVATIONS.c.observed_at >= aware(since, "since"))
        rows = self.db.read(lambda conn: conn.execute(stmt).mappings().all())
        return [
            HostStateChange(
                r["host_id"], r["host_name"], r["state"], r["observed_at"], r["hastate"]
            )
            for r in rows
        ]

    def host_transitions(
        self, *, since: datetime | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Host transitions as rows with the previous state (for ``ledger show``)."""
        stmt = select(HOST_OBSERVATIONS)
        if since is not None:
            stmt = stmt.where(HOST_OBSERVATIONS.c.observed_at >= aware(since, "since"))
        rows = self.db.read(lambda conn: newest(conn, stmt, HOST_OBSERVATIONS.c.id, limit))
        return [dict(r) for r in rows]

    def observe_alerts(
        self, alerts: Sequence[Alert], fingerprints: Mapping[str, str], at: datetime
    ) -> int:
        """Record alerts not seen before (bulk); returns how many were new."""
        at = aware(at, "at")
        latest = {a.id: a for a in alerts if a.id}

        def work(conn: Connection) -> int:
            seen = _existing(conn, ALERT_OBSERVATIONS.c.alert_id, list(latest))
            rows = [
                {
                    "alert_id": alert.id,
                    "name": alert.name[:64],
                    "type": alert.type,
                    "subject": alert.description,
                    "sent": alert.sent,
                    "fingerprint": fingerprints.get(alert.id, "")[:255],
                    "first_seen": at,
                }
                # Sorted keys: concurrent observers lock index entries in the same order.
                for alert_id, alert in sorted(latest.items())
                if alert_id not in seen
            ]
            if rows:
                executemany(conn, self.db.insert_ignore(ALERT_OBSERVATIONS), rows)
            return len(rows)

        return self.db.write(work)

    def newest_seen_alert(self) -> tuple[str, datetime] | None:
        """Id and sent time of the newest alert ever seen (by ``sent``), or None."""
        stmt = (
            select(ALERT_OBSERVATIONS.c.alert_id, ALERT_OBSERVATIONS.c.sent)
            .where(ALERT_OBSERVATIONS.c.sent.is_not(None))
            .order_by(ALERT_OBSERVATIONS.c.sent.desc(), ALERT_OBSERVATIONS.c.alert_id.desc())
            .limit(1)
        )
        row = self.db.read(lambda conn: conn.execute(stmt).first())
        return None if row is None else (row[0], row[1])

    def seen_alert_ids(self, ids: Iterable[str]) -> set[str]:
        """Which of ``ids`` have been seen."""
        wanted = unique(ids)
        return self.db.read(lambda conn: _existing(conn, ALERT_OBSERVATIONS.c.alert_id, wanted))

    def alert_sightings(
        self, *, since: datetime | None = None, limit: int | None = None
    ) -> list[AlertSighting]:
        """Alerts first seen since ``since`` (oldest first; the newest ``limit`` if given)."""
        stmt = select(ALERT_OBSERVATIONS)
        if since is not None:
            stmt = stmt.where(ALERT_OBSERVATIONS.c.first_seen >= aware(since, "since"))
        rows = self.db.read(
            lambda conn: newest(conn, stmt, ALERT_OBSERVATIONS.c.first_seen, limit)
        )
        return [record(AlertSighting, r) for r in rows]

    def prune(self, older_than: datetime) -> int:
        """Delete host transitions, alert sightings and VM placements older than
        ``older_than``; return count.

        Actions and decisions are the audit trail and are kept. Each host's last known state
        is kept too, so change detection is unaffected, and so is each VM's placement in
        effect at ``older_than`` (``prune_placements``).
        """
        cutoff = aware(older_than, "older_than")

        def work(conn: Connection) -> int:
            hosts = conn.execute(
                delete(HOST_OBSERVATIONS).where(HOST_OBSERVATIONS.c.observed_at < cutoff)
            ).rowcount
            alerts = conn.execute(
                delete(ALERT_OBSERVATIONS).where(ALERT_OBSERVATIONS.c.first_seen < cutoff)
            ).rowcount
            return int(hosts) + int(alerts) + prune_placements(conn, cutoff)

        return self.db.write(work)
