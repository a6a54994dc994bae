"""Every ledger statement gives up after ``ledger_statement_timeout``: a lock held by another
session, a statement that runs too long; migrations are exempt. Real servers when CI names them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from dbkit import call_within, lease_row_locked
from sqlalchemy import create_engine, make_url, text

from sidecar.cloudstack.config import CloudStackConfig
from sidecar.ledger import Ledger
from sidecar.ledger.migrate import _MYSQL_MIGRATION_LOCK, _PG_MIGRATION_LOCK
from sidecar.ledger.timeouts import (
    is_mariadb,
    mysql_statements,
    postgres_statements,
    unbounded_statements,
)
from sidecar.ops.context import Context
from sidecar.support.errors import LedgerUnavailable
from sidecar.support.settings import Settings, load_settings

#: Seconds a test waits for a call the timeouts should have ended long before.
HANG = 60.0


def one_line_timeout(call: Callable[[], object]) -> tuple[str, float]:
    """The one-line LedgerUnavailable that ``call`` ends with, and how long it took."""
    started = time.monotonic()
    with pytest.raises(LedgerUnavailable) as err:
        call_within(HANG, call)
    message = str(err.value)
    assert "\n" not in message
    assert err.value.exit_code == 4
    return message, time.monotonic() - started


def test_one_timeout_gives_each_backend_its_statement_and_lock_limits():
    assert postgres_statements(15.0) == [
        "SET statement_timeout = 15000", "SET lock_timeout = 7500",
    ]
    assert mysql_statements(True, 15.0) == [
        "SET SESSION max_statement_time = 15.000, "
        "innodb_lock_wait_timeout = 8, lock_wait_timeout = 8",
    ]
    # MySQL proper has no limit for writes: SELECTs are bounded, writes in their lock waits.
    assert mysql_statements(False, 1.0) == [
        "SET SESSION max_execution_time = 1000, "
        "innodb_lock_wait_timeout = 1, lock_wait_timeout = 1",
    ]
    assert unbounded_statements("postgresql", mariadb=False) == [
        "SET LOCAL statement_timeout = 0", "SET LOCAL lock_timeout = 0",
    ]
    assert unbounded_statements("mysql", mariadb=True)[0].startswith(
        "SET SESSION max_statement_time = 0, innodb_lock_wait_timeout = @@GLOBAL."
    )
    assert is_mariadb("5.5.5-10.11.6-MariaDB-0+deb12u1")
    assert not is_mariadb("8.0.36")


def test_the_context_opens_the_ledger_with_the_configured_timeout(sqlite_url: str):
    settings = load_settings(environ={
        "SIDECAR_LEDGER_URL": sqlite_url, "SIDECAR_LEDGER_STATEMENT_TIMEOUT": "3",
    })
    ctx = Context(settings, CloudStackConfig("http://127.0.0.1:1/client/api", "k", "s"))

    with ctx.ledger() as ledger, ledger.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 3000


def test_the_timeout_defaults_to_15_s():
    assert Settings().ledger_statement_timeout == 15.0


def test_server_sessions_carry_the_statement_and_lock_limits(server_db: str):
    with Ledger(server_db, holder="a", statement_timeout=2) as ledger, \
            ledger.engine.connect() as conn:
        if ledger.backend == "postgresql":
            limits = [conn.exec_driver_sql(f"SHOW {name}").scalar()
                      for name in ("statement_timeout", "lock_timeout")]
            assert limits == ["2s", "1s"]
        else:
            row = conn.exec_driver_sql(
                "SELECT @@max_statement_time, @@innodb_lock_wait_timeout, @@lock_wait_timeout"
            ).one()
            assert tuple(row) == (2.0, 1, 1)


#: What the one-line error quotes from each backend when the lock wait gives up.
LOCK_REASONS = {
    "sqlite": "is locked by another process",
    "postgresql": "canceling statement due to lock timeout",
    "mysql": "Lock wait timeout exceeded; try restarting transaction (MySQL error 1205)",
}


def test_a_row_lock_held_by_another_session_ends_the_statement_in_one_line_at_the_lock_timeout(
    db: str,
):
    ledger = Ledger(db, holder="sidecar-a", statement_timeout=2)
    try:
        assert ledger.acquire_lease(600) == 1
        with lease_row_locked(db):
            message, _ = one_line_timeout(lambda: ledger.acquire_lease(600))
        assert LOCK_REASONS[ledger.backend] in message
        if ledger.backend != "sqlite":
            assert "exceeded the 2 s ledger_statement_timeout" in message
            assert ledger.display_url in message
        # The lock is gone: the same ledger (and its pooled connections) works again.
        assert ledger.acquire_lease(600) == 1
    finally:
        ledger.close()


def _slow_inserts_into_runs(url: str, backend: str) -> None:
    """A trigger that makes every INSERT into ``runs`` sleep 60 s (a stalled server)."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if backend == "postgresql":
            conn.exec_driver_sql(
                "CREATE FUNCTION stall() RETURNS trigger AS $$ BEGIN PERFORM pg_sleep(60); "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER stall BEFORE INSERT ON runs FOR EACH ROW EXECUTE FUNCTION stall()"
            )
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER stall BEFORE INSERT ON runs FOR EACH ROW SET @x = SLEEP(60)"
            )
    engine.dispose()


#: What the one-line error quotes when the statement timer fires.
STATEMENT_REASONS = {
    "postgresql": "canceling statement due to statement timeout",
    "mysql": "max_statement_time exceeded",
}


def test_a_statement_running_past_the_timeout_is_cancelled_in_one_line(server_db: str):
    ledger = Ledger(server_db, holder="sidecar-a", statement_timeout=2)
    try:
        _slow_inserts_into_runs(server_db, ledger.backend)
        message, elapsed = one_line_timeout(lambda: ledger.start_run("service", "apply"))
        assert STATEMENT_REASONS[ledger.backend] in message
        assert "exceeded the 2 s ledger_statement_timeout" in message
        assert elapsed >= 2.0  # the statement timer, not the lock wait, ended it
        assert ledger.runs() == []  # rolled back
    finally:
        ledger.close()


def _waiting_for_the_migration_lock(admin: Callable[[], object], url: str) -> bool:
    database = make_url(url).database
    with admin() as conn:  # type: ignore[attr-defined]
        if url.startswith("postgresql"):
            query = (
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                "WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = :db"
            )
        else:
            query = (
                "SELECT count(*) FROM information_schema.processlist "
                "WHERE db = :db AND state = 'User lock'"
            )
        return bool(conn.execute(text(query), {"db": database}).scalar())


def test_a_migration_waiting_for_another_sidecars_migration_is_not_cut_short(server_db: str):
    timeout = 1.0
    holder = create_engine(server_db)
    admin = create_engine(server_db, isolation_level="AUTOCOMMIT")
    opened: list[Ledger] = []
    try:
        with holder.connect() as conn:
            # Another sidecar migrating: it holds the migration lock.
            if server_db.startswith("postgresql"):
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            else:
                conn.execute(text("SELECT GET_LOCK(:k, 60)"), {"k": _MYSQL_MIGRATION_LOCK})
            worker_outcome: list[BaseException | None] = []

            def migrate() -> None:
                try:
                    opened.append(Ledger(server_db, statement_timeout=timeout))
                    worker_outcome.append(None)
                except BaseException as exc:
                    worker_outcome.append(exc)

            worker = threading.Thread(target=migrate, daemon=True)
            worker.start()
            deadline = time.monotonic() + HANG
            while not _waiting_for_the_migration_lock(admin.connect, server_db):
                assert worker.is_alive() and time.monotonic() < deadline, worker_outcome
                worker.join(0.05)
            # Three times the statement timeout: with the limits on, the wait had ended.
            worker.join(3 * timeout)
            assert worker.is_alive(), worker_outcome
            conn.rollback()
            if server_db.startswith("postgresql"):
                conn.exec_driver_sql("SELECT pg_advisory_unlock_all()")
            else:
                conn.execute(text("SELECT RELEASE_LOCK(:k)"), {"k": _MYSQL_MIGRATION_LOCK})
        worker.join(HANG)
        assert worker_outcome == [None]
        ledger = opened[0]
        assert ledger.revision() == ledger.head_revision()
        # Every pooled connection is bounded again (MariaDB's migration session is dropped).
        idle = ledger.engine.pool.checkedin()  # type: ignore[attr-defined]
        conns = [ledger.engine.connect() for _ in range(max(idle, 1))]
        try:
            for c in conns:
                if ledger.backend == "postgresql":
                    assert c.exec_driver_sql("SHOW statement_timeout").scalar() == "1s"
                else:
                    assert c.exec_driver_sql("SELECT @@max_statement_time").scalar() == 1.0
        finally:
            for c in conns:
                c.close()
    finally:
        for ledger in opened:
            ledger.close()
        holder.dispose()
        admin.dispose()
