"""Write-ahead archive actions: intents, their state machine, and what a dead run left behind.

Every archive action is written as ``intended`` when decided, ``sent`` just before the
archiveAlerts call and ``done`` / ``already-gone`` / ``failed`` after it. A run that dies
anywhere leaves ``intended``/``sent`` rows (``unresolved``) that the next run settles by asking
CloudStack before it does anything else. ``failed`` actions are retried by a later run:
``intend_archive`` returns them again (reset to ``intended``) when the plan still wants them.
Every write here is fenced by the lease's token (``Leases.write``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection, RowMapping

from sidecar.ledger.database import Database
from sidecar.ledger.decisions import DecisionKey, Decisions, record_decisions
from sidecar.ledger.lease import Leases
from sidecar.ledger.schema import (
    ACTIONS,
    ALREADY_GONE,
    DONE,
    FAILED,
    INTENDED,
    MERGE,
    SENT,
)
from sidecar.ledger.sql import IDS, aware, chunks, executemany, newest, record, unique
from sidecar.model.plan import HAIncident, MergeGroup
from sidecar.model.resources import Alert, format_cs_date

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

#: ``actions.key`` of archiving an alert: this prefix and the alert id.
ARCHIVE_KEY_PREFIX = "archive:"


class InvalidTransitionError(ValueError):
    """A ``mark`` that the state machine forbids (or names alerts without an action)."""


def action_key(alert_id: str) -> str:
    """The idempotency key of archiving one alert."""
    return ARCHIVE_KEY_PREFIX + alert_id


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
        """The record of an ``actions`` row."""
        return record(cls, row, alert=dict(row["alert"] or {}), token=int(row["token"]),
                      attempts=int(row["attempts"]))  # fmt: skip


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
    groups: Mapping[DecisionKey, MergeGroup | HAIncident]
    fresh: Mapping[DecisionKey, Mapping[str, Any]]
    """The columns of each merge group if it is new (``record_decisions``)."""


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


_STATES_BY_KEY = select(ACTIONS.c.alert_id, ACTIONS.c.state).where(ACTIONS.c.key.in_(IDS))


def _action_states(conn: Connection, alert_ids: Sequence[str]) -> dict[str, str]:
    """State of the action of each alert that has one (narrow: no alert copies)."""
    found: dict[str, str] = {}
    keys = [action_key(i) for i in alert_ids]
    for chunk in chunks(keys):
        rows = conn.execute(_STATES_BY_KEY, {"ids": list(chunk)})
        found.update((row[0], row[1]) for row in rows)
    return found


def _actions_by_alert(conn: Connection, alert_ids: Sequence[str]) -> dict[str, ActionRecord]:
    found: dict[str, ActionRecord] = {}
    keys = [action_key(i) for i in alert_ids]
    for chunk in chunks(keys):
        rows = conn.execute(select(ACTIONS).where(ACTIONS.c.key.in_(IDS)), {"ids": list(chunk)})
        for row in rows.mappings():
            found[row["alert_id"]] = ActionRecord.from_row(row)
    return found


class Actions:
    """The ``actions`` table: intents written before each archive call, settled after it."""

    def __init__(self, db: Database, leases: Leases, decisions: Decisions) -> None:
        self.db = db
        self.leases = leases
        self.decisions = decisions

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
        encode_copy = self.db.encoder(ACTIONS.c.alert)
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
        groups: dict[DecisionKey, MergeGroup | HAIncident] = {}
        fresh: dict[DecisionKey, dict[str, Any]] = {}
        if record_groups:
            for group, _ in wanted.values():
                key = (MERGE, group.group_id)
                if key not in groups:
                    groups[key] = group
                    fresh[key] = self.decisions.new_group_columns(group)
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
            now = self.db.clock()
            if groups:
                record_decisions(conn, run_id, groups, now, fresh=fresh)
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
                            dataclasses.replace(
                                old, state=state, group_id=group.group_id,
                                canonical=group.canonical, reason=group.reason, token=token,
                                updated_at=now,
                            )
                        )  # fmt: skip
            if new_rows:
                constants = {"kind": "archive", "state": INTENDED, "run_id": run_id,
                             "token": token, "created_at": now, "updated_at": now,
                             "error": "", "attempts": 0}  # fmt: skip
                executemany(
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

        return self.leases.write(work, token)

    def mark(self, token: int, alert_ids: Sequence[str], state: str, *, error: str = "") -> None:
        """Move actions to ``state`` (sent, done, already-gone, failed), fenced by ``token``.

        All or nothing: an unknown alert or a forbidden transition (see TRANSITIONS) raises
        InvalidTransitionError and writes nothing. ``error`` is kept as the last error text.
        """
        if state not in MARK_STATES:
            raise InvalidTransitionError(
                f"cannot mark actions {state!r}: choose one of {', '.join(sorted(MARK_STATES))}"
            )
        ids = unique(alert_ids)
        if not ids:
            return
        sources = [old for old, targets in TRANSITIONS.items() if state in targets]

        def fast(conn: Connection) -> None:
            # The usual case in one UPDATE per chunk: every action may make this move. The
            # row count proves it; otherwise roll back and take the checking path below.
            values = _mark_values(state, token, self.db.clock(), error)
            moved = 0
            for chunk in chunks([action_key(i) for i in ids]):
                result = conn.execute(
                    update(ACTIONS)
                    .where(ACTIONS.c.key.in_(IDS), ACTIONS.c.state.in_(sources))
                    .values(**values),
                    {"ids": list(chunk)},
                )
                moved += result.rowcount
            if moved != len(ids):
                raise _NotEveryActionMoved

        try:
            self.leases.write(fast, token)
            return
        except _NotEveryActionMoved:
            pass

        def work(conn: Connection) -> None:
            now = self.db.clock()
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
            for chunk in chunks([action_key(i) for i in todo]):
                conn.execute(
                    update(ACTIONS).where(ACTIONS.c.key.in_(IDS)).values(**values),
                    {"ids": list(chunk)},
                )

        self.leases.write(work, token)

    def unresolved(self) -> list[ActionRecord]:
        """Archive actions left ``intended`` or ``sent`` (by a run that died, or one in progress).

        HA cancels (kind ``ha-cancel``) are settled by reading ``op_ha_work``, not a listing.
        """
        return self.records(states=UNRESOLVED, kind="archive")

    def records(
        self,
        *,
        states: Collection[str] | None = None,
        since: datetime | None = None,
        limit: int | None = None,
        kind: str | None = None,
    ) -> list[ActionRecord]:
        """Actions (oldest first), filtered by state, last update and kind; the newest ``limit``."""
        stmt = select(ACTIONS)
        if kind is not None:
            stmt = stmt.where(ACTIONS.c.kind == kind)
        if states is not None:
            stmt = stmt.where(ACTIONS.c.state.in_(list(states)))
        if since is not None:
            stmt = stmt.where(ACTIONS.c.updated_at >= aware(since, "since"))
        rows = self.db.read(lambda conn: newest(conn, stmt, ACTIONS.c.id, limit))
        return [ActionRecord.from_row(r) for r in rows]
