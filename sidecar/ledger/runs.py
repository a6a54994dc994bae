"""Runs: one row per service cycle, cleanup or report, from its start to its outcome."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from sidecar import __version__
from sidecar.ledger.database import Database
from sidecar.ledger.schema import RUNS
from sidecar.ledger.sql import aware, newest, record


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One service cycle, cleanup or report."""

    id: int
    kind: str
    mode: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    counts: dict[str, Any]
    endpoint: str
    cloudstack_version: str
    sidecar_version: str
    holder: str


class Runs:
    """The ``runs`` table, as written by one sidecar (``holder``)."""

    def __init__(self, db: Database, holder: str) -> None:
        self.db = db
        self.holder = holder

    def start(
        self, kind: str, mode: str, *, endpoint: str = "", cloudstack_version: str = ""
    ) -> int:
        """Record the start of a run; returns its id."""
        values = {
            "kind": kind[:32],
            "mode": mode[:16],
            "started_at": self.db.clock(),
            "finished_at": None,
            "outcome": "running",
            "counts": {},
            "endpoint": endpoint[:255],
            "cloudstack_version": cloudstack_version[:64],
            "sidecar_version": __version__,
            "holder": self.holder[:255],
        }

        def work(conn: Connection) -> int:
            result = conn.execute(insert(RUNS).values(**values))
            return int(result.inserted_primary_key[0])  # type: ignore[index]

        return self.db.write(work)

    def finish(self, run_id: int, outcome: str, counts: Mapping[str, int]) -> None:
        """Record the end of a run with its outcome and counts."""
        values = {"finished_at": self.db.clock(), "outcome": outcome[:32], "counts": dict(counts)}
        stmt = update(RUNS).where(RUNS.c.id == run_id).values(values)
        self.db.write(lambda conn: conn.execute(stmt))

    def records(
        self, *, since: datetime | None = None, limit: int | None = None
    ) -> list[RunRecord]:
        """Runs started since ``since`` (oldest first; the newest ``limit`` if given)."""
        stmt = select(RUNS)
        if since is not None:
            stmt = stmt.where(RUNS.c.started_at >= aware(since, "since"))
        rows = self.db.read(lambda conn: newest(conn, stmt, RUNS.c.id, limit))
        return [record(RunRecord, row) for row in rows]
