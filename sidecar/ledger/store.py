"""The Ledger: how an operator audits what the sidecar did, and how nothing is lost.

Write-ahead: every archive action is written as ``intended`` when decided, ``sent`` just before
the archiveAlerts call and ``done`` / ``already-gone`` / ``failed`` after it. A run that dies
anywhere leaves ``intended``/``sent`` rows (``unresolved_actions``) that the next run settles by
asking CloudStack before it does anything else. ``failed`` actions are retried by a later run:
``intend_archive`` returns them again (reset to ``intended``) when the plan still wants them.

Every acting write is fenced by the lease's token (see ``sidecar.ledger.lease``). Bulk work uses
SQLAlchemy Core with executemany and ``IN`` lists of at most 500 ids.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import (
    BindParameter,
    String,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import (
    DatabaseError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.sql.dml import Insert

from sidecar import __version__
from sidecar.cloudstack.models import Alert, Host, format_cs_date
from sidecar.errors import LedgerUnavailable
from sidecar.ledger import lease as leases
from sidecar.ledger.engine import (
    DEFAULT_BUSY_TIMEOUT,
    IMMEDIATE,
    VERSION_TABLE,
    create_ledger_engine,
    is_retryable,
    mask,
    parse_url,
    sqlite_path,
    unavailable,
)
from sidecar.ledger.lease import LEASE_NAME, LeaseInfo, StaleLeaseError
from sidecar.ledger.models import (
    ACTION_STATES,
    ACTIONS,
    ALERT_OBSERVATIONS,
    ALREADY_GONE,
    DECISIONS,
    DONE,
    FAILED,
    HA,
    HOST_OBSERVATIONS,
    HOST_STATES,
    INTENDED,
    LEASES,
    MERGE,
    RUNS,
    SENT,
    TABLES,
)
from sidecar.reconcile.model import HAIncident, HostStateChange, MergeGroup, Plan, from_iso, iso

T = TypeVar("T")

#: Largest ``IN (…)`` list per statement (SQLite's variable limit, MySQL's packet, plan caches).
CHUNK = 500
#: Decisions per transaction in ``record_plan`` (a cleanup plan may hold 100,000s of groups).
_DECISIONS_PER_TRANSACTION = 5000

#: Where the Alembic migrations live (inside the installed package).
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: Arbitrary constants naming the migration lock on PostgreSQL and MariaDB/MySQL.
_PG_MIGRATION_LOCK = 0x5C5DEC4
_MYSQL_MIGRATION_LOCK = "cloudstack_sidecar_ledger_migrate"

#: One expanding parameter for the chunked ``IN`` lists: the statement is built and cached
#: once instead of coercing 500 literals per chunk.
_IDS: BindParameter[Any] = bindparam("ids", expanding=True)

#: States that still need work: ``intend_archive`` returns them.
NEEDS_WORK = (INTENDED, SENT, FAILED)
#: States a crashed run may leave behind: ``unresolved_actions`` returns them.
UNRESOLVED = (INTENDED, SENT)
#: Allowed ``mark`` transitions. A repeated terminal state is a no-op (nothing is written).
TRANSITIONS: Mapping[str, frozenset[str]] = {
    INTENDED: frozenset({SENT, ALREADY_GONE, FAILED}),
    SENT: frozenset({SENT, DONE, ALREADY_GONE, FAILED}),
    FAILED: frozenset({ALREADY_GONE, FAILED}),  # a retry goes through intend_archive first
    DONE: frozenset(),
    ALREADY_GONE: frozenset(),
}
MARK_STATES = frozenset({SENT, DONE, ALREADY_GONE, FAILED})
_TERMINAL = frozenset({DONE, ALREADY_GONE})
_MAX_ERROR = 2000
_RETRIES = 3
_SHOW_AT_MOST = 10


class InvalidTransitionError(ValueError):
    """A ``mark`` that the state machine forbids (or names alerts without an action)."""


def default_holder() -> str:
    """This process's name in leases and runs: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def utcnow() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(UTC)


#: ``actions.key`` of archiving an alert: this prefix and the alert id.
_ARCHIVE_KEY_PREFIX = "archive:"


def action_key(alert_id: str) -> str:
    """The idempotency key of archiving one alert."""
    return _ARCHIVE_KEY_PREFIX + alert_id


def _aware(value: datetime, name: str) -> datetime:
    if value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got the naive {value!r}")
    return value.astimezone(UTC)


def _chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _alert_copy(alert: Alert) -> dict[str, Any]:
    """The alert as CloudStack returned it (rebuilt from the fields if the raw copy is missing)."""
    if alert.raw or alert.sent_text or alert.sent_offset is not None:
        return alert.api_item()
    return {
        "id": alert.id,
        "type": alert.type,
        "name": alert.name,
        "description": alert.description,
        "sent": format_cs_date(alert.sent) if alert.sent else None,
    }


@dataclass(frozen=True, slots=True)
class PreparedIntents:
    """Intents built by ``Ledger.prepare_intents``, for ``Ledger.write_intents``."""

    run_id: int
    token: int
    wanted: Mapping[str, tuple[MergeGroup, Alert]]
    copies: Mapping[str, dict[str, Any]]
    """Alert id -> the alert as CloudStack returned it."""
    rows: Mapping[str, Mapping[str, Any]]
    """Alert id -> the columns of its new action that vary (the copy encoded)."""
    groups: Mapping[tuple[str, str], MergeGroup | HAIncident]
    fresh: Mapping[tuple[str, str], Mapping[str, Any]]
    """The columns of each merge group if it is new (``_record_decisions``)."""


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One archive action as the ledger holds it."""

    alert_id: str
    key: str
    state: str
    group_id: str
    canonical: str
    reason: str
    alert: dict[str, Any]
    token: int
    created_at: datetime
    updated_at: datetime
    error: str
    run_id: int | None = None
    attempts: int = 0

    @classmethod
    def from_row(cls, row: RowMapping) -> ActionRecord:
        return cls(
            alert_id=row["alert_id"],
            key=row["key"],
            state=row["state"],
            group_id=row["group_id"],
            canonical=row["canonical"],
            reason=row["reason"],
            alert=dict(row["alert"] or {}),
            token=int(row["token"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            error=row["error"],
            run_id=row["run_id"],
            attempts=int(row["attempts"]),
        )


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


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic configuration pointing at the packaged migrations (no ini file needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


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


class Ledger:
    """The sidecar's ledger on SQLite, PostgreSQL or MariaDB/MySQL (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        migrate: bool = True,
        holder: str | None = None,
        clock: Callable[[], datetime] | None = None,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        create: bool = True,
    ) -> None:
        """Open the ledger at ``url`` and bring its schema to the newest revision.

        ``migrate=False`` refuses (LedgerUnavailable) a schema that is not current;
        ``create=False`` refuses a SQLite file that does not exist yet. ``clock`` returns
        aware UTC datetimes (injectable for tests); it decides lease expiry.
        """
        self.url = parse_url(url)
        self.holder = holder or default_holder()
        self.clock = clock or utcnow
        self.lease_name = LEASE_NAME
        #: Schema revision found when opening (None: empty database); compare with revision().
        self.schema_before: str | None = None
        self.backend = self.url.get_backend_name()
        if not create and self.backend == "sqlite":
            path = sqlite_path(self.url)
            if path is not None and not path.expanduser().exists():
                raise LedgerUnavailable(
                    f"there is no ledger at {path}: run the service or "
                    f"`cloudstack-sidecar ledger migrate` first, or fix --ledger-url"
                )
        self.engine = create_ledger_engine(self.url, busy_timeout=busy_timeout)
        #: SQLite has one writer at a time. Threads of this process queue here and take over
        #: the moment the writer commits; waiting in SQLite's busy handler instead sleeps in
        #: steps of up to 100 ms (the applier's marks would wait behind each intent chunk).
        self._write_lock = threading.Lock() if self.backend == "sqlite" else None
        self._encoders: dict[tuple[str, str], Callable[[Any], Any]] = {}
        try:
            self._ensure_schema(migrate)
        except BaseException:
            self.engine.dispose()
            raise

    # -- plumbing -------------------------------------------------------------------------

    @property
    def display_url(self) -> str:
        """The URL with its password masked."""
        return mask(self.url)

    def close(self) -> None:
        """Release every connection."""
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _transaction(
        self,
        work: Callable[[Connection], T],
        *,
        write: bool,
        token: int | None = None,
        retry_conflicts: bool = False,
    ) -> T:
        """Run ``work`` in one transaction; retry deadlocks; driver errors -> LedgerUnavailable."""
        for attempt in itertools.count(1):
            try:
                with self.engine.connect() as conn:
                    if write and self.backend == "sqlite":
                        conn.execution_options(**{IMMEDIATE: True})
                    with conn.begin():
                        if token is not None:
                            leases.check_fence(
                                conn, self.holder, token, self.clock(), self.lease_name
                            )
                        return work(conn)
            except IntegrityError:
                # A concurrent insert of the same key: the next attempt sees and updates it.
                if retry_conflicts and attempt < _RETRIES:
                    continue
                raise
            except DBAPIError as exc:
                if is_retryable(exc) and attempt < _RETRIES:
                    continue
                # DatabaseError itself (not a subclass): SQLite's "file is not a database".
                broken = type(exc) is DatabaseError or exc.connection_invalidated
                if broken or isinstance(exc, OperationalError | InterfaceError):
                    raise unavailable(exc, self.url) from None
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self, work: Callable[[Connection], T]) -> T:
        return self._transaction(work, write=False)

    def _write(self, work: Callable[[Connection], T], **kwargs: Any) -> T:
        if self._write_lock is None:
            return self._transaction(work, write=True, **kwargs)
        with self._write_lock:
            return self._transaction(work, write=True, **kwargs)

    def _insert_ignore(self, table: Table) -> Insert:
        """INSERT that skips rows whose key exists (race-free "record once")."""
        if self.backend == "sqlite":
            return sqlite.insert(table).on_conflict_do_nothing()
        if self.backend == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing()
        return mysql.insert(table).prefix_with("IGNORE")

    # -- schema ---------------------------------------------------------------------------

    def _ensure_schema(self, migrate: bool) -> None:
        script = ScriptDirectory.from_config(alembic_config())
        head = script.get_current_head()
        current = self.revision()
        self.schema_before = current
        if current == head:
            return
        if current is not None:
            try:
                script.get_revision(current)
            except CommandError:
                raise LedgerUnavailable(
                    f"the ledger at {self.display_url} has schema revision {current}, newer than "
                    f"this cloudstack-sidecar knows ({head}): upgrade cloudstack-sidecar"
                ) from None
        if not migrate:
            raise LedgerUnavailable(
                f"the ledger at {self.display_url} has schema revision {current or 'none'}, "
                f"this cloudstack-sidecar needs {head}: run `cloudstack-sidecar ledger migrate`"
            )
        self.migrate()

    def revision(self) -> str | None:
        """The schema revision stored in the database (None for an empty database)."""

        def work(conn: Connection) -> str | None:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            return context.get_current_revision()

        return self._read(work)

    def head_revision(self) -> str | None:
        """The newest schema revision this sidecar knows."""
        return ScriptDirectory.from_config(alembic_config()).get_current_head()

    def migrate(self, revision: str = "head") -> str | None:
        """Apply the Alembic migrations up to ``revision`` under a lock; return the new revision.

        Several sidecars may start at once: PostgreSQL takes an advisory lock, MariaDB/MySQL a
        named lock, SQLite ``BEGIN IMMEDIATE``, so one migrates and the others find it done.
        """
        try:
            with self.engine.connect() as conn:
                if self.backend == "sqlite":
                    # Batch migrations recreate tables; FKs are checked again after them.
                    conn.connection.driver_connection.execute(  # type: ignore[union-attr]
                        "PRAGMA foreign_keys=OFF"
                    )
                    conn.execution_options(**{IMMEDIATE: True})
                locked = False
                try:
                    with conn.begin():
                        if self.backend == "postgresql":
                            conn.execute(
                                text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK}
                            )
                        elif self.backend in {"mysql", "mariadb"}:
                            got = conn.execute(
                                text("SELECT GET_LOCK(:k, 120)"), {"k": _MYSQL_MIGRATION_LOCK}
                            ).scalar()
                            if got != 1:
                                raise LedgerUnavailable(
                                    f"another sidecar has been migrating the ledger at "
                                    f"{self.display_url} for 2 minutes: retry later"
                                )
                            locked = True
                        command.upgrade(alembic_config(conn), revision)
                finally:
                    if locked:
                        conn.execute(text("SELECT RELEASE_LOCK(:k)"), {"k": _MYSQL_MIGRATION_LOCK})
                        conn.commit()
                    if self.backend == "sqlite":
                        conn.connection.driver_connection.execute(  # type: ignore[union-attr]
                            "PRAGMA foreign_keys=ON"
                        )
        except DBAPIError as exc:
            raise unavailable(exc, self.url) from None
        except CommandError as exc:
            raise LedgerUnavailable(
                f"cannot migrate the ledger at {self.display_url} ({exc}): "
                f"check the revision or upgrade cloudstack-sidecar"
            ) from None
        return self.revision()

    # -- runs -----------------------------------------------------------------------------

    def start_run(
        self, kind: str, mode: str, *, endpoint: str = "", cloudstack_version: str = ""
    ) -> int:
        """Record the start of a run; returns its id."""
        values = {
            "kind": kind[:32],
            "mode": mode[:16],
            "started_at": self.clock(),
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

        return self._write(work)

    def finish_run(self, run_id: int, outcome: str, counts: Mapping[str, int]) -> None:
        """Record the end of a run with its outcome and counts."""
        values = {"finished_at": self.clock(), "outcome": outcome[:32], "counts": dict(counts)}
        stmt = update(RUNS).where(RUNS.c.id == run_id).values(values)
        self._write(lambda conn: conn.execute(stmt))

    def runs(self, *, since: datetime | None = None, limit: int | None = None) -> list[RunRecord]:
        """Runs started since ``since`` (oldest first; the newest ``limit`` if given)."""
        stmt = select(RUNS)
        if since is not None:
            stmt = stmt.where(RUNS.c.started_at >= _aware(since, "since"))
        rows = self._read(lambda conn: _newest(conn, stmt, RUNS.c.id, limit))
        return [RunRecord(**dict(row)) for row in rows]

    # -- observations ---------------------------------------------------------------------

    def observe_hosts(self, hosts: Sequence[Host], at: datetime) -> list[HostStateChange]:
        """Record host state changes against the last known state; returns the new transitions.

        The first sighting of a host counts as a transition. Concurrent observers record each
        transition once (compare-and-set on the host's last known state).
        """
        at = _aware(at, "at")
        latest = {h.id: h for h in hosts if h.id}

        def work(conn: Connection) -> list[HostStateChange]:
            known: dict[str, RowMapping] = {}
            for chunk in _chunks(list(latest)):
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
                        self._insert_ignore(HOST_STATES)
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

        return self._write(work)

    def host_history(self, since: datetime | None = None) -> list[HostStateChange]:
        """Host state transitions (oldest first), optionally only those at or after ``since``."""
        stmt = select(HOST_OBSERVATIONS).order_by(
            HOST_OBSERVATIONS.c.observed_at, HOST_OBSERVATIONS.c.id
        )
        if since is not None:
            stmt = stmt.where(HOST_OBSERVATIONS.c.observed_at >= _aware(since, "since"))
        rows = self._read(lambda conn: conn.execute(stmt).mappings().all())
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
            stmt = stmt.where(HOST_OBSERVATIONS.c.observed_at >= _aware(since, "since"))
        rows = self._read(lambda conn: _newest(conn, stmt, HOST_OBSERVATIONS.c.id, limit))
        return [dict(r) for r in rows]

    def observe_alerts(
        self, alerts: Sequence[Alert], fingerprints: Mapping[str, str], at: datetime
    ) -> int:
        """Record alerts not seen before (bulk); returns how many were new."""
        at = _aware(at, "at")
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
                _executemany(conn, self._insert_ignore(ALERT_OBSERVATIONS), rows)
            return len(rows)

        return self._write(work)

    def newest_seen_alert(self) -> tuple[str, datetime] | None:
        """Id and sent time of the newest alert ever seen (by ``sent``), or None."""
        stmt = (
            select(ALERT_OBSERVATIONS.c.alert_id, ALERT_OBSERVATIONS.c.sent)
            .where(ALERT_OBSERVATIONS.c.sent.is_not(None))
            .order_by(ALERT_OBSERVATIONS.c.sent.desc(), ALERT_OBSERVATIONS.c.alert_id.desc())
            .limit(1)
        )
        row = self._read(lambda conn: conn.execute(stmt).first())
        return None if row is None else (row[0], row[1])

    def seen_alert_ids(self, ids: Iterable[str]) -> set[str]:
        """Which of ``ids`` have been seen."""
        wanted = _unique(ids)
        return self._read(lambda conn: _existing(conn, ALERT_OBSERVATIONS.c.alert_id, wanted))

    def alert_sightings(
        self, *, since: datetime | None = None, limit: int | None = None
    ) -> list[AlertSighting]:
        """Alerts first seen since ``since`` (oldest first; the newest ``limit`` if given)."""
        stmt = select(ALERT_OBSERVATIONS)
        if since is not None:
            stmt = stmt.where(ALERT_OBSERVATIONS.c.first_seen >= _aware(since, "since"))
        rows = self._read(lambda conn: _newest(conn, stmt, ALERT_OBSERVATIONS.c.first_seen, limit))
        return [AlertSighting(**dict(r)) for r in rows]

    def prune_observations(self, older_than: datetime) -> int:
        """Delete host transitions and alert sightings older than ``older_than``; return count.

        Actions and decisions are the audit trail and are kept. Each host's last known state
        is kept too, so change detection is unaffected.
        """
        cutoff = _aware(older_than, "older_than")

        def work(conn: Connection) -> int:
            hosts = conn.execute(
                delete(HOST_OBSERVATIONS).where(HOST_OBSERVATIONS.c.observed_at < cutoff)
            ).rowcount
            alerts = conn.execute(
                delete(ALERT_OBSERVATIONS).where(ALERT_OBSERVATIONS.c.first_seen < cutoff)
            ).rowcount
            return int(hosts) + int(alerts)

        return self._write(work)

    # -- decisions ------------------------------------------------------------------------

    def record_plan(self, run_id: int, plan: Plan, *, groups: bool = True) -> None:
        """Upsert the plan's merge groups and HA incidents, keeping members of earlier runs.

        ``groups=False`` records only the HA incidents: a cleanup records each merge group
        with the intents of its duplicates instead (``intend_archive(record_groups=True)``),
        in batches, rather than a million groups in one transaction up front.
        """
        wanted: dict[tuple[str, str], MergeGroup | HAIncident] = {}
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
                _record_decisions(conn, run_id, chunk, self.clock())

            self._write(work, retry_conflicts=True)

    def decisions(
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
            stmt = stmt.where(DECISIONS.c.updated_at >= _aware(since, "since"))
        rows = self._read(lambda conn: _newest(conn, stmt, DECISIONS.c.id, limit))
        return [
            DecisionRecord(
                kind=r["kind"],
                decision_id=r["decision_id"],
                subject=r["subject"],
                fingerprint=r["fingerprint"],
                canonical=r["canonical"],
                reason=r["reason"],
                members=tuple(r["members"] or ()),
                data=dict(r["data"] or {}),
                first_run_id=r["first_run_id"],
                run_id=r["run_id"],
                created_at=r["created_at"],
                updated_at=r["updated_at"],
            )
            for r in rows
        ]

    # -- lease ----------------------------------------------------------------------------

    def acquire_lease(self, ttl: float, *, now: datetime | None = None) -> int | None:
        """Take or renew the lease for ``ttl`` seconds; the fencing token, or None if held.

        A renewal keeps the token; a takeover (of an expired or released lease) increments it.
        ``now`` defaults to the ledger's clock (see ``sidecar.ledger.lease`` on clocks).
        """
        at = _aware(now, "now") if now is not None else self.clock()

        def work(conn: Connection) -> int | None:
            return leases.acquire(conn, self.holder, ttl, at, self.lease_name)

        try:
            return self._write(work)
        except IntegrityError:
            return None  # another sidecar created the lease row at the same moment

    def release_lease(self) -> None:
        """Give the lease up (if we hold it) so another sidecar may take over at once."""
        now = self.clock()
        self._write(lambda conn: leases.release(conn, self.holder, now, self.lease_name))

    def lease(self) -> LeaseInfo | None:
        """The lease as stored (holder, token, expiry), or None if never taken."""
        return self._read(lambda conn: leases.read(conn, self.lease_name))

    # -- actions --------------------------------------------------------------------------

    def _encoder(self, column: Any) -> Callable[[Any], Any]:
        """``column``'s bind processor for this database (identity if the driver adapts).

        Looked up once per column: ``prepare_intents`` needs two for each new merge group.
        """
        key = (column.table.name, column.name)
        encoder = self._encoders.get(key)
        if encoder is None:
            dialect = self.engine.dialect
            process = column.type.dialect_impl(dialect).bind_processor(dialect)
            encoder = self._encoders[key] = process if process is not None else _identity
        return encoder

    def _new_group_columns(self, group: MergeGroup) -> dict[str, Any]:
        """The decision columns of a merge group seen for the first time, JSON encoded."""
        columns = _merge_group_row(group, None)
        columns["members"] = self._encoder(DECISIONS.c.members)(columns["members"])
        columns["data"] = self._encoder(DECISIONS.c.data)(columns["data"])
        return columns

    def intend_archive(
        self,
        run_id: int,
        token: int,
        items: Sequence[tuple[MergeGroup, Alert]],
        *,
        record_groups: bool = False,
    ) -> list[ActionRecord]:
        """Write intents for alerts without an action; return every one still needing work.

        New alerts get an ``intended`` row; ``failed`` ones are reset to ``intended`` (a retry)
        with the current group; ``intended``/``sent`` ones are returned as they are (refreshed
        group and token); ``done``/``already-gone`` ones are skipped. Fenced by ``token``.
        ``record_groups`` also upserts the items' merge groups (as ``record_plan`` does) in
        the same transaction: the decision is on record with the first intent it causes.
        """
        prepared = self.prepare_intents(run_id, token, items, record_groups=record_groups)
        return self._write_intents(prepared, records=True)[1]

    def prepare_intents(
        self,
        run_id: int,
        token: int,
        items: Sequence[tuple[MergeGroup, Alert]],
        *,
        record_groups: bool = False,
    ) -> PreparedIntents:
        """The Python half of ``intend_archive``, without the database: run it in any thread.

        Most of the work of writing intents is building the rows, the alert copies and the
        new merge groups in their database (JSON) form. Done here, outside the transaction,
        it runs while SQLite writes other rows, and the writer lock is held only for the
        writing itself (``write_intents``).
        """
        wanted: dict[str, tuple[MergeGroup, Alert]] = {}
        for group, alert in items:
            if alert.id == group.canonical:
                raise ValueError(
                    f"refusing to archive alert {alert.id}: it is the canonical of {group.group_id}"
                )
            wanted[alert.id] = (group, alert)
        copies = {alert_id: _alert_copy(alert) for alert_id, (_, alert) in wanted.items()}
        encode_copy = self._encoder(ACTIONS.c.alert)
        rows = {
            alert_id: {
                "key": action_key(alert_id),
                "alert_id": alert_id,
                "group_id": group.group_id,
                "canonical": group.canonical,
                "reason": group.reason,
                "alert": encode_copy(copies[alert_id]),
            }
            for alert_id, (group, _) in wanted.items()
        }
        groups: dict[tuple[str, str], MergeGroup | HAIncident] = {}
        fresh: dict[tuple[str, str], dict[str, Any]] = {}
        if record_groups:
            for group, _ in wanted.values():
                key = (MERGE, group.group_id)
                if key not in groups:
                    groups[key] = group
                    fresh[key] = self._new_group_columns(group)
        return PreparedIntents(run_id, token, wanted, copies, rows, groups, fresh)

    def write_intents(self, prepared: PreparedIntents) -> list[str]:
        """The database half of ``intend_archive``: the ids that still need work, in order."""
        return self._write_intents(prepared, records=False)[0]

    def _write_intents(
        self, prepared: PreparedIntents, *, records: bool
    ) -> tuple[list[str], list[ActionRecord]]:
        run_id, token, wanted, copies = (
            prepared.run_id, prepared.token, prepared.wanted, prepared.copies
        )
        rows, groups, fresh = prepared.rows, prepared.groups, prepared.fresh
        if not wanted:
            return [], []

        def work(conn: Connection) -> tuple[list[str], list[ActionRecord]]:
            now = self.clock()
            if groups:
                _record_decisions(conn, run_id, groups, now, fresh=fresh)
            states = _action_states(conn, list(wanted))
            # Full rows (with the alert copy) only for the few that are retried or resumed.
            existing = _actions_by_alert(
                conn, [i for i, state in states.items() if state in NEEDS_WORK]
            )
            new_rows: list[Mapping[str, Any]] = []
            refresh: list[dict[str, Any]] = []
            ids: list[str] = []
            found: list[ActionRecord] = []
            for alert_id, (group, _) in wanted.items():
                old = existing.get(alert_id)
                if alert_id not in states:
                    new_rows.append(rows[alert_id])
                    ids.append(alert_id)
                    if records:
                        found.append(
                            ActionRecord(
                                alert_id=alert_id,
                                key=action_key(alert_id),
                                state=INTENDED,
                                group_id=group.group_id,
                                canonical=group.canonical,
                                reason=group.reason,
                                alert=copies[alert_id],
                                token=token,
                                created_at=now,
                                updated_at=now,
                                error="",
                                run_id=run_id,
                                attempts=0,
                            )
                        )
                elif old is not None:
                    state = INTENDED if old.state == FAILED else old.state
                    refresh.append(
                        {
                            "b_key": old.key,
                            "b_state": state,
                            "b_group_id": group.group_id,
                            "b_canonical": group.canonical,
                            "b_reason": group.reason,
                        }
                    )
                    ids.append(alert_id)
                    if records:
                        found.append(
                            ActionRecord(
                                alert_id=alert_id,
                                key=old.key,
                                state=state,
                                group_id=group.group_id,
                                canonical=group.canonical,
                                reason=group.reason,
                                alert=old.alert,
                                token=token,
                                created_at=old.created_at,
                                updated_at=now,
                                error=old.error,
                                run_id=old.run_id,
                                attempts=old.attempts,
                            )
                        )
            if new_rows:
                constants = {"kind": "archive", "state": INTENDED, "run_id": run_id,
                             "token": token, "created_at": now, "updated_at": now,
                             "error": "", "attempts": 0}  # fmt: skip
                _executemany(
                    conn, insert(ACTIONS), new_rows, encoded=("alert",), constants=constants
                )
            if refresh:
                stmt = (
                    update(ACTIONS)
                    .where(ACTIONS.c.key == bindparam("b_key"))
                    .values(
                        state=bindparam("b_state"),
                        group_id=bindparam("b_group_id"),
                        canonical=bindparam("b_canonical"),
                        reason=bindparam("b_reason"),
                        token=token,
                        updated_at=now,
                    )
                )
                conn.execute(stmt, refresh)
            return ids, found

        return self._write(work, token=token)

    def mark(self, token: int, alert_ids: Sequence[str], state: str, *, error: str = "") -> None:
        """Move actions to ``state`` (sent, done, already-gone, failed), fenced by ``token``.

        All or nothing: an unknown alert or a forbidden transition (see TRANSITIONS) raises
        InvalidTransitionError and writes nothing. ``error`` is kept as the last error text.
        """
        if state not in MARK_STATES:
            raise InvalidTransitionError(
                f"cannot mark actions {state!r}: choose one of {', '.join(sorted(MARK_STATES))}"
            )
        ids = _unique(alert_ids)
        if not ids:
            return
        sources = [old for old, targets in TRANSITIONS.items() if state in targets]

        def fast(conn: Connection) -> None:
            # The usual case in one UPDATE per chunk: every action may make this move. The
            # row count proves it; otherwise roll back and take the checking path below.
            values = _mark_values(state, token, self.clock(), error)
            moved = 0
            for chunk in _chunks([action_key(i) for i in ids]):
                result = conn.execute(
                    update(ACTIONS)
                    .where(ACTIONS.c.key.in_(_IDS), ACTIONS.c.state.in_(sources))
                    .values(**values),
                    {"ids": list(chunk)},
                )
                moved += result.rowcount
            if moved != len(ids):
                raise _NotEveryActionMoved

        try:
            self._write(fast, token=token)
            return
        except _NotEveryActionMoved:
            pass

        def work(conn: Connection) -> None:
            now = self.clock()
            current = _action_states(conn, ids)
            missing = [i for i in ids if i not in current]
            if missing:
                raise InvalidTransitionError(
                    f"no action recorded for {len(missing)} alert(s), e.g. {missing[0]}: "
                    f"intend_archive them first"
                )
            todo: list[str] = []
            for alert_id in ids:
                old = current[alert_id]
                if old == state and state in _TERMINAL:
                    continue  # already there: idempotent
                if state not in TRANSITIONS.get(old, frozenset()):
                    raise InvalidTransitionError(
                        f"action for alert {alert_id} cannot go from {old!r} to {state!r}"
                    )
                todo.append(alert_id)
            values = _mark_values(state, token, now, error)
            for chunk in _chunks([action_key(i) for i in todo]):
                conn.execute(
                    update(ACTIONS).where(ACTIONS.c.key.in_(_IDS)).values(**values),
                    {"ids": list(chunk)},
                )

        self._write(work, token=token)

    def unresolved_actions(self) -> list[ActionRecord]:
        """Actions left ``intended`` or ``sent`` (by a run that died, or one in progress)."""
        return self.actions(states=UNRESOLVED)

    def actions(
        self,
        *,
        states: Collection[str] | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[ActionRecord]:
        """Actions (oldest first), filtered by state and last update; the newest ``limit``."""
        stmt = select(ACTIONS)
        if states is not None:
            stmt = stmt.where(ACTIONS.c.state.in_(list(states)))
        if since is not None:
            stmt = stmt.where(ACTIONS.c.updated_at >= _aware(since, "since"))
        rows = self._read(lambda conn: _newest(conn, stmt, ACTIONS.c.id, limit))
        return [ActionRecord.from_row(r) for r in rows]

    # -- audit ----------------------------------------------------------------------------

    def verify(self) -> list[str]:
        """Check the ledger's invariants; one human-readable line per violation (empty = OK).

        Every action has its merge decision; no canonical alert was archived (or sent for
        archiving); no intent is left unresolved; every state is known; no action carries a
        token newer than the lease's.
        """
        return self._read(_verify)

    def export_rows(self, page_size: int = 1000) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every row of every table as (table name, row), paged by key: never all in memory."""
        for tbl in TABLES:
            key = next(iter(tbl.primary_key.columns))
            last: Any = None
            while True:
                stmt = select(tbl).order_by(key).limit(page_size)
                if last is not None:
                    stmt = stmt.where(key > last)
                rows = self._read(partial(_all_rows, stmt=stmt))
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

        return self._read(work)


class _NotEveryActionMoved(Exception):
    """Internal: the fast ``mark`` path matched fewer rows than asked (rolls it back)."""


def _mark_values(state: str, token: int, now: datetime, error: str) -> dict[str, Any]:
    values: dict[str, Any] = {
        "state": state,
        "token": token,
        "updated_at": now,
        "error": error[:_MAX_ERROR],
    }
    if state == SENT:
        values["attempts"] = ACTIONS.c.attempts + 1
    return values


def _record_decisions(
    conn: Connection,
    run_id: int,
    wanted: Mapping[tuple[str, str], MergeGroup | HAIncident],
    now: datetime,
    *,
    fresh: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
) -> None:
    """Upsert decisions (merge groups, HA incidents), merging members with earlier runs'.

    ``fresh`` holds the columns of decisions not yet recorded, built (and JSON encoded, see
    ``_FRESH_ENCODED``) ahead of the transaction; they are used when no row exists.
    """
    existing: dict[tuple[str, str], RowMapping] = {}
    for kind in (MERGE, HA):
        ids = [i for k, i in wanted if k == kind]
        for chunk in _chunks(ids):
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
        _executemany(conn, insert(DECISIONS), inserts, constants=constants)
    if encoded_inserts:
        _executemany(conn, insert(DECISIONS), encoded_inserts, encoded=_FRESH_ENCODED,
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


def _newest(conn: Connection, stmt: Any, key: Any, limit: int | None) -> list[RowMapping]:
    """Rows of ``stmt`` oldest first by ``key``; with ``limit`` only the newest ones."""
    if limit is None:
        return list(conn.execute(stmt.order_by(key)).mappings().all())
    rows = list(conn.execute(stmt.order_by(key.desc()).limit(limit)).mappings().all())
    rows.reverse()
    return rows


def _all_rows(conn: Connection, *, stmt: Any) -> list[RowMapping]:
    return list(conn.execute(stmt).mappings().all())


def _existing(conn: Connection, column: Any, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(ids):
        found.update(
            conn.execute(select(column).where(column.in_(_IDS)), {"ids": list(chunk)}).scalars()
        )
    return found


_STATES_BY_KEY = select(ACTIONS.c.alert_id, ACTIONS.c.state).where(ACTIONS.c.key.in_(_IDS))


def _action_states(conn: Connection, alert_ids: Sequence[str]) -> dict[str, str]:
    """State of the action of each alert that has one (narrow: no alert copies)."""
    found: dict[str, str] = {}
    keys = [action_key(i) for i in alert_ids]
    for chunk in _chunks(keys):
        rows = conn.execute(_STATES_BY_KEY, {"ids": list(chunk)})
        found.update((row[0], row[1]) for row in rows)
    return found


def _identity(value: Any) -> Any:
    return value


#: Decision columns that ``Ledger._new_group_columns`` encodes ahead of the transaction.
_FRESH_ENCODED = ("members", "data")


def _executemany(
    conn: Connection,
    stmt: Insert,
    rows: Sequence[Mapping[str, Any]],
    *,
    encoded: Collection[str] = (),
    constants: Mapping[str, Any] | None = None,
) -> None:
    """INSERT many rows with each column's type processing resolved once.

    The same SQL, the same bind processors (UTC conversion, JSON) and the same driver call
    as ``conn.execute(stmt, rows)``, without SQLAlchemy's per-row parameter machinery, which
    costs more than the database itself at 100k rows (tests/ledger/bench_ledger.py).
    Every row must give every column of the INSERT (no Python-side defaults are applied).
    The ``encoded`` columns already hold their database form (``Ledger._encoder``);
    ``constants`` are columns with one value for every row.
    """
    if not rows:
        return
    dialect = conn.dialect
    constants = constants or {}
    names = [*rows[0], *constants]
    compiled = stmt.compile(dialect=dialect, column_keys=names)
    table = stmt.table
    binds = list(compiled.positiontup or ()) if compiled.positional else list(compiled.binds)
    if set(binds) != set(names):
        raise ValueError(f"bulk insert needs exactly the columns {sorted(binds)}, got {names}")
    order = binds if compiled.positional else names
    columns: list[list[Any]] = []
    for name in order:
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if name in constants:
            value = constants[name]
            if process is not None and value is not None:
                value = process(value)
            columns.append([value] * len(rows))
            continue
        values = [row[name] for row in rows]
        if process is not None and name not in encoded:
            values = _processed(values, process)
        columns.append(values)
    params: list[Any]
    if compiled.positional:
        params = list(zip(*columns, strict=True))
    else:
        params = [dict(zip(order, values, strict=True)) for values in zip(*columns, strict=True)]
    conn.exec_driver_sql(compiled.string, params)


def _processed(values: list[Any], process: Callable[[Any], Any]) -> list[Any]:
    """Apply a bind processor, once per distinct value (a batch shares its timestamps)."""
    first = values[0]
    if all(value is first for value in values):  # one timestamp, run or token for the batch
        return [None if first is None else process(first)] * len(values)
    cache: dict[Any, Any] = {}
    out: list[Any] = []
    for value in values:
        if value is None:
            out.append(None)
            continue
        try:
            out.append(cache[value])
        except KeyError:
            out.append(cache.setdefault(value, process(value)))
        except TypeError:  # unhashable (a JSON dict)
            out.append(process(value))
    return out


def _actions_by_alert(conn: Connection, alert_ids: Sequence[str]) -> dict[str, ActionRecord]:
    found: dict[str, ActionRecord] = {}
    keys = [action_key(i) for i in alert_ids]
    for chunk in _chunks(keys):
        rows = conn.execute(select(ACTIONS).where(ACTIONS.c.key.in_(_IDS)), {"ids": list(chunk)})
        for row in rows.mappings():
            found[row["alert_id"]] = ActionRecord.from_row(row)
    return found


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
        .where(DECISIONS.c.id.is_(None))
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
    canonical_key = literal(_ARCHIVE_KEY_PREFIX, String) + DECISIONS.c.canonical
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


__all__ = [
    "NEEDS_WORK",
    "TRANSITIONS",
    "UNRESOLVED",
    "ActionRecord",
    "AlertSighting",
    "DecisionRecord",
    "InvalidTransitionError",
    "Ledger",
    "PreparedIntents",
    "RunRecord",
    "StaleLeaseError",
    "action_key",
    "alembic_config",
    "default_holder",
    "utcnow",
]
