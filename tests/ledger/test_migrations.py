"""Alembic migrations: from an empty database, from the previous revision, matching the models."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from ledgerkit import T0
from sqlalchemy import MetaData, Table, insert, inspect, text

from sidecar.ledger import Ledger
from sidecar.ledger.engine import VERSION_TABLE, create_ledger_engine
from sidecar.ledger.migrate import alembic_config
from sidecar.ledger.schema import ACTIONS, TABLES
from sidecar.model.resources import VirtualMachine
from sidecar.support.errors import LedgerUnavailable

LEDGER_TABLES = {t.name for t in TABLES}


def _upgrade(url: str, revision: str, *, step: Callable[..., None] = command.upgrade) -> None:
    """Migrate the database at ``url`` to ``revision`` (``step=command.downgrade``: down)."""
    engine = create_ledger_engine(url)
    try:
        with engine.begin() as conn:
            step(alembic_config(conn), revision)
    finally:
        engine.dispose()


def test_an_empty_database_is_migrated_to_the_newest_revision(db: str):
    ledger = Ledger(db, holder="sidecar-a")
    try:
        assert ledger.schema_before is None
        assert ledger.revision() == ledger.head_revision() == "0004"
        names = set(inspect(ledger.engine).get_table_names())
        assert LEDGER_TABLES | {VERSION_TABLE} <= names
    finally:
        ledger.close()


def test_the_migrations_create_exactly_the_schema_of_the_models(db: str):
    ledger = Ledger(db, holder="sidecar-a")
    metadata = MetaData()
    for tbl in TABLES:
        tbl.to_metadata(metadata)
    try:
        with ledger.engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": False,  # UTCDateTime6 vs TIMESTAMP/DATETIME(6) etc.
                    "include_name": lambda name, kind, _parent: (
                        kind != "table" or name in LEDGER_TABLES
                    ),
                },
            )
            diff = compare_metadata(context, metadata)
    finally:
        ledger.close()
    assert diff == []


def test_upgrading_from_the_first_revision_keeps_every_row(db: str):
    _upgrade(db, "0001")
    engine = create_ledger_engine(db)
    assert "attempts" not in {c["name"] for c in inspect(engine).get_columns("actions")}
    # The tables as revision 0001 had them (typed, so JSON and datetimes bind correctly).
    old = {t.name: t for t in TABLES}
    old["actions"] = Table(
        "actions", MetaData(), *[c._copy() for c in ACTIONS.c if c.name != "attempts"]
    )
    with engine.begin() as conn:
        run_id = conn.execute(  # type: ignore[index]
            insert(old["runs"]).values(
                kind="cleanup",
                mode="apply",
                started_at=T0,
                finished_at=T0 + timedelta(seconds=5),
                outcome="ok",
                counts={"archived": 1},
                endpoint="https://ms1/client/api",
                cloudstack_version="4.19.1.0",
                sidecar_version="0.0.9",
                holder="old",
            )
        ).inserted_primary_key[0]
        conn.execute(
            insert(old["decisions"]).values(
                kind="merge",
                decision_id="g1",
                first_run_id=run_id,
                run_id=run_id,
                created_at=T0,
                updated_at=T0,
                subject="i-2-10-VM",
                fingerprint="fp",
                canonical="c0",
                reason="same VM",
                members=["d1"],
                data={"group_id": "g1"},
            )
        )
        conn.execute(
            insert(old["actions"]).values(
                key="archive:d1",
                kind="archive",
                alert_id="d1",
                state="done",
                group_id="g1",
                canonical="c0",
                reason="same VM",
                alert={"id": "d1", "name": "ALERT.USERVM"},
                run_id=run_id,
                token=3,
                created_at=T0,
                updated_at=T0,
                error="",
            )
        )
        conn.execute(
            insert(old["alert_observations"]).values(
                alert_id="d1",
                name="ALERT.USERVM",
                type=8,
                subject="HA",
                sent=T0,
                fingerprint="fp",
                first_seen=T0,
            )
        )
        conn.execute(
            insert(old["leases"]).values(
                name="leader",
                holder="old",
                token=3,
                acquired_at=T0,
                renewed_at=T0,
                expires_at=T0,
            )
        )
    engine.dispose()

    ledger = Ledger(db, holder="sidecar-a")
    try:
        assert (ledger.schema_before, ledger.revision()) == ("0001", "0004")
        (action,) = ledger.actions()
        assert (action.alert_id, action.state, action.token, action.attempts) == (
            "d1",
            "done",
            3,
            0,
        )
        assert action.alert == {"id": "d1", "name": "ALERT.USERVM"}
        assert action.created_at == T0
        (run,) = ledger.runs()
        assert run.counts == {"archived": 1}
        assert run.finished_at == T0 + timedelta(seconds=5)
        assert ledger.decisions()[0].members == ("d1",)
        assert ledger.newest_seen_alert() == ("d1", T0)
        assert ledger.acquire_lease(60, now=T0 + timedelta(seconds=1)) == 4  # tokens go on
        assert ledger.verify() == []
    finally:
        ledger.close()


def test_revision_0004_adds_the_vm_placements_and_its_downgrade_drops_only_them(db: str):
    _upgrade(db, "0003")
    ledger = Ledger(db, holder="sidecar-a")
    try:
        assert (ledger.schema_before, ledger.revision()) == ("0003", "0004")
        ledger.start_run("service", "apply")
        ledger.record_vm_placements(
            [VirtualMachine(id="v1", name="web", instancename="i-2-10-VM", state="Running",
                            hostid="h1")],
            T0,
        )
        assert [(p.vm, p.host_id, p.since) for p in ledger.vm_placements()] == [
            ("i-2-10-VM", "h1", T0)
        ]
        indexes = inspect(ledger.engine).get_indexes("vm_placements")
        assert [(i["name"], i["column_names"]) for i in indexes] == [
            ("ix_vm_placements_vm_since", ["vm", "since"])
        ]
    finally:
        ledger.close()

    _upgrade(db, "0003", step=command.downgrade)
    engine = create_ledger_engine(db)
    try:
        names = set(inspect(engine).get_table_names())
        assert "vm_placements" not in names
        assert LEDGER_TABLES - {"vm_placements"} <= names
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM runs")).scalar_one() == 1
    finally:
        engine.dispose()
    with Ledger(db, holder="sidecar-a") as again:  # and up again, empty
        assert (again.schema_before, again.revision()) == ("0003", "0004")
        assert again.vm_placements() == []


def test_sidecars_starting_together_on_an_empty_database_migrate_it_once(db: str):
    barrier = threading.Barrier(3)
    revisions: list[str | None] = []
    errors: list[BaseException] = []

    def start(name: str) -> None:
        try:
            barrier.wait(timeout=30)
            ledger = Ledger(db, holder=name)
            revisions.append(ledger.revision())
            ledger.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(f"s{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not any(t.is_alive() for t in threads), "a migration hung"
    assert errors == []
    assert revisions == ["0004"] * 3


def test_an_old_schema_is_refused_without_migrate_and_named_with_the_fix(sqlite_url: str):
    _upgrade(sqlite_url, "0001")

    with pytest.raises(LedgerUnavailable, match="ledger migrate") as err:
        Ledger(sqlite_url, migrate=False)

    assert "revision 0001" in str(err.value)
    assert "\n" not in str(err.value)
    assert Ledger(sqlite_url).revision() == "0004"


def test_a_schema_newer_than_this_sidecar_is_refused(sqlite_url: str):
    Ledger(sqlite_url).close()
    engine = create_ledger_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '0099'"))
    engine.dispose()

    with pytest.raises(LedgerUnavailable, match="upgrade cloudstack-sidecar"):
        Ledger(sqlite_url)


def test_sqlite_runs_in_wal_mode_with_foreign_keys(sqlite_url: str):
    ledger = Ledger(sqlite_url)
    try:
        with ledger.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 15000
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -16 * 1024  # KiB
    finally:
        ledger.close()
