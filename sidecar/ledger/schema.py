"""The ledger's tables as SQLModel models (the schema itself is created by the Alembic migrations).

The models describe the schema at the newest migration; ``tests/ledger`` checks that the
migrations produce exactly these tables, columns, indexes and constraints on every backend.
Every datetime is timezone-aware UTC; every id is a CloudStack uuid (a string).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKeyConstraint,
    Index,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.types import TypeEngine
from sqlmodel import Field, SQLModel
from sqlmodel.sql.sqltypes import UTCDateTime

#: Action states. ``intended`` = decided; ``sent`` = written just before the archiveAlerts call;
#: the other three are written after it.
INTENDED = "intended"
SENT = "sent"
DONE = "done"
ALREADY_GONE = "already-gone"
FAILED = "failed"
ACTION_STATES = (INTENDED, SENT, DONE, ALREADY_GONE, FAILED)

#: Decision kinds: a merge group of duplicate alerts, or an HA incident.
MERGE = "merge"
HA = "ha"


class UTCDateTime6(UTCDateTime):
    """SQLModel's aware-UTC datetime, with microseconds on MySQL/MariaDB (DATETIME drops them)."""

    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in {"mysql", "mariadb"}:
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return super().load_dialect_impl(dialect)


def _when(*, index: bool = False, nullable: bool = False) -> Any:
    if nullable:
        return Field(default=None, sa_type=UTCDateTime6, index=index, nullable=True)
    return Field(sa_type=UTCDateTime6, index=index, nullable=False)


class Run(SQLModel, table=True):
    """One service cycle, cleanup or report."""

    __tablename__ = "runs"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)
    mode: str = Field(max_length=16)
    started_at: datetime = _when(index=True)
    finished_at: datetime | None = _when(nullable=True)
    outcome: str = Field(default="running", max_length=32)
    counts: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    endpoint: str = Field(default="", max_length=255)
    cloudstack_version: str = Field(default="", max_length=64)
    sidecar_version: str = Field(default="", max_length=64)
    holder: str = Field(default="", max_length=255)


class HostState(SQLModel, table=True):
    """The last known state of each host: what new observations are compared with."""

    __tablename__ = "host_states"

    host_id: str = Field(primary_key=True, max_length=64)
    host_name: str = Field(default="", max_length=255)
    state: str = Field(max_length=32)
    hastate: str = Field(default="", max_length=32)
    since: datetime = _when()


class HostObservation(SQLModel, table=True):
    """One host state transition as the poller saw it (``state`` after the change)."""

    __tablename__ = "host_observations"

    id: int | None = Field(default=None, primary_key=True)
    host_id: str = Field(index=True, max_length=64)
    host_name: str = Field(default="", max_length=255)
    state: str = Field(max_length=32)
    hastate: str = Field(default="", max_length=32)
    previous_state: str = Field(default="", max_length=32)
    previous_hastate: str = Field(default="", max_length=32)
    observed_at: datetime = _when(index=True)


class AlertObservation(SQLModel, table=True):
    """An alert the first time the sidecar saw it."""

    __tablename__ = "alert_observations"

    alert_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(default="", max_length=64)
    type: int = Field(default=-1)
    subject: str = Field(default="", sa_type=Text)
    sent: datetime | None = _when(index=True, nullable=True)  # index since revision 0002
    fingerprint: str = Field(default="", max_length=255)
    first_seen: datetime = _when(index=True)


class Decision(SQLModel, table=True):
    """A merge group or HA incident with all its members, upserted by (kind, decision_id)."""

    __tablename__ = "decisions"
    __table_args__ = (
        UniqueConstraint("kind", "decision_id", name="uq_decisions_kind_decision_id"),
        ForeignKeyConstraint(["first_run_id"], ["runs.id"], name="fk_decisions_first_run_id"),
        ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_decisions_run_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)
    decision_id: str = Field(max_length=128)
    first_run_id: int | None = Field(default=None, nullable=True)
    run_id: int | None = Field(default=None, nullable=True)
    created_at: datetime = _when()
    updated_at: datetime = _when(index=True)
    subject: str = Field(default="", max_length=255)
    fingerprint: str = Field(default="", max_length=255)
    canonical: str = Field(default="", max_length=64)  # unindexed since revision 0003
    reason: str = Field(default="", sa_type=Text)
    members: list[str] = Field(default_factory=list, sa_type=JSON)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class Action(SQLModel, table=True):
    """One alert to archive, written before the API call and updated after it."""

    __tablename__ = "actions"
    __table_args__ = (
        UniqueConstraint("key", name="uq_actions_key"),
        ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_actions_run_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=96)
    kind: str = Field(default="archive", max_length=16)
    alert_id: str = Field(max_length=64)  # looked up through key; unindexed since 0003
    state: str = Field(index=True, max_length=16)
    group_id: str = Field(max_length=128)  # unindexed since revision 0003
    canonical: str = Field(default="", max_length=64)
    reason: str = Field(default="", sa_type=Text)
    alert: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    run_id: int | None = Field(default=None, nullable=True)
    token: int = Field(sa_type=BigInteger)
    created_at: datetime = _when()
    updated_at: datetime = _when(index=True)
    error: str = Field(default="", sa_type=Text)
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})  # since 0002


class Lease(SQLModel, table=True):
    """Which sidecar may act: one row per lease name, with its fencing token."""

    __tablename__ = "leases"

    name: str = Field(primary_key=True, max_length=64)
    holder: str = Field(max_length=255)
    token: int = Field(sa_type=BigInteger)
    acquired_at: datetime = _when()
    renewed_at: datetime = _when()
    expires_at: datetime = _when()


class VmPlacementRow(SQLModel, table=True):
    """From ``since`` on, a sidecar saw VM ``vm`` on host ``host_id``: host changes only."""

    __tablename__ = "vm_placements"
    __table_args__ = (Index("ix_vm_placements_vm_since", "vm", "since"),)  # since 0004

    id: int | None = Field(default=None, primary_key=True)
    vm: str = Field(max_length=255)  # instance name, as "HA starting VM" alerts name it
    vm_id: str = Field(default="", max_length=64)
    host_id: str = Field(max_length=64)
    since: datetime = _when()


def table(model: type[SQLModel]) -> Table:
    """The Core ``Table`` of a model (the store uses Core for bulk statements)."""
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


RUNS = table(Run)
HOST_STATES = table(HostState)
HOST_OBSERVATIONS = table(HostObservation)
ALERT_OBSERVATIONS = table(AlertObservation)
DECISIONS = table(Decision)
ACTIONS = table(Action)
LEASES = table(Lease)
VM_PLACEMENTS = table(VmPlacementRow)

#: Every ledger table, parents first (the order of export and of the schema test).
TABLES = (
    RUNS,
    DECISIONS,
    ACTIONS,
    HOST_STATES,
    HOST_OBSERVATIONS,
    ALERT_OBSERVATIONS,
    LEASES,
    VM_PLACEMENTS,
)
