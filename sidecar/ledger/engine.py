"""Engines for the three ledger backends, and one-line errors for everything that can go wrong.

SQLite (the default) runs in WAL mode with a busy timeout and ``synchronous=FULL``; every write
transaction starts with ``BEGIN IMMEDIATE`` so that read-then-write transactions never fail on a
lock upgrade. PostgreSQL uses psycopg 3, MariaDB/MySQL PyMySQL (READ COMMITTED). Every
connection bounds its statements and lock waits (``sidecar.ledger.timeouts``).
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, create_engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from sidecar.ledger.timeouts import (
    is_mariadb,
    is_timeout,
    mysql_statements,
    postgres_statements,
)
from sidecar.model.defaults import LEDGER_STATEMENT_TIMEOUT
from sidecar.support.errors import LedgerUnavailable
from sidecar.support.redact import mask_url

#: Alembic's version table; not ``alembic_version`` so the ledger can share a database.
VERSION_TABLE = "sidecar_ledger_version"

#: SQLite page cache per connection, KiB (SQLite's default is 2,000 KiB).
SQLITE_CACHE_KIB = 16 * 1024

#: Seconds to wait for a PostgreSQL/MariaDB server to accept a connection.
CONNECT_TIMEOUT = 10

#: Execution option that makes the next SQLite transaction ``BEGIN IMMEDIATE``.
IMMEDIATE = "sidecar_begin_immediate"

_DRIVERS = {
    "sqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}
_SUPPORTED = {"sqlite", "sqlite+pysqlite", "postgresql+psycopg", "mysql+pymysql", "mariadb+pymysql"}
_URL_HELP = (
    "use sqlite:///PATH, postgresql+psycopg://USER:PASSWORD@HOST/DB or "
    "mysql+pymysql://USER:PASSWORD@HOST/DB (SIDECAR_LEDGER_URL or --ledger-url)"
)


def mask(url: str | URL) -> str:
    """The URL with its password replaced by ``***`` (safe for messages and logs)."""
    return mask_url(url)


def parse_url(url: str) -> URL:
    """Parse and normalise a ledger URL (bare ``postgresql://`` gets psycopg 3, etc.)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise LedgerUnavailable(
            f"the ledger URL {mask(url)!r} is not a valid URL: {_URL_HELP}"
        ) from None
    drivername = _DRIVERS.get(parsed.drivername, parsed.drivername)
    if drivername not in _SUPPORTED:
        raise LedgerUnavailable(
            f"the ledger URL {mask(parsed)!r} names an unsupported database driver "
            f"{parsed.drivername!r}: {_URL_HELP}"
        )
    parsed = parsed.set(drivername=drivername)
    if parsed.get_backend_name() in {"mysql", "mariadb"} and "charset" not in parsed.query:
        # utf8mb4: host, VM and alert texts are not limited to latin1 or 3-byte UTF-8.
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL, or None for an in-memory database."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return Path(database).expanduser()


def _prepare_sqlite_file(path: Path, url: URL) -> None:
    """Create the parent directory (mode 0700) and the file (mode 0600) when missing."""
    try:
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True, mode=0o700)
        if not path.exists():
            # The ledger holds copies of alerts naming hosts and VMs: owner-only.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise LedgerUnavailable(
            f"cannot create the ledger file {path} ({reason}): make its directory writable "
            f"for this user or point SIDECAR_LEDGER_URL / --ledger-url elsewhere"
        ) from None


def _install_sqlite_hooks(engine: Engine, busy_timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN (pysqlite's own handling cannot do
        # BEGIN IMMEDIATE and commits implicitly before DDL).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        # Switching a brand-new file to WAL while another process writes it returns "database
        # is locked" at once: SQLite skips the busy handler there (deadlock avoidance). Retry
        # until the busy timeout, as any other lock wait would.
        deadline = time.monotonic() + busy_timeout
        while True:
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)
        for pragma in (
            # FULL: a commit survives power loss; the write-ahead intents depend on it.
            "synchronous=FULL",
            "foreign_keys=ON",
            # 16 MiB of page cache instead of 2: a large cleanup inserts into indexes of
            # random uuids, which outgrow 2 MiB at about 50,000 actions; from then on each
            # insert re-read and spilled pages (1M alerts: intents 5x slower at the end).
            f"cache_size=-{SQLITE_CACHE_KIB}",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _install_server_hooks(engine: Engine, backend: str, timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        if backend == "postgresql":
            statements = postgres_statements(timeout)
            # Session settings, not a transaction psycopg would leave open.
            autocommit, dbapi_conn.autocommit = dbapi_conn.autocommit, True
        else:
            statements = mysql_statements(is_mariadb(dbapi_conn.get_server_info()), timeout)
        cursor = dbapi_conn.cursor()
        try:
            for statement in statements:
                cursor.execute(statement)
        finally:
            cursor.close()
            if backend == "postgresql":
                dbapi_conn.autocommit = autocommit


def create_ledger_engine(
    url: str | URL, *, statement_timeout: float = LEDGER_STATEMENT_TIMEOUT
) -> Engine:
    """An engine for the ledger URL whose statements give up after ``statement_timeout`` s.

    Raises LedgerUnavailable for bad URLs or missing paths.
    """
    parsed = parse_url(url) if isinstance(url, str) else url
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        path = sqlite_path(parsed)
        if path is None:
            # One shared connection, or every connection would see its own empty database.
            kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
        else:
            _prepare_sqlite_file(path, parsed)
            parsed = parsed.set(database=str(path))
            # LIFO: the connection used last comes back first, with its page cache still warm
            # (SQLite drops a connection's cache when another connection has written since).
            kwargs.update(
                connect_args={"timeout": statement_timeout, "check_same_thread": False},
                pool_use_lifo=True,
            )
    elif backend == "postgresql":
        kwargs.update(
            pool_pre_ping=True,
            connect_args={
                "connect_timeout": CONNECT_TIMEOUT,
                # No server-side prepared statements: their generic plans turn the chunked
                # ``IN (…500 ids…)`` lookups into linear scans on a freshly filled table
                # (3.6 s instead of 40 ms per chunk, measured at 100k rows).
                "prepare_threshold": None,
            },
        )
    else:
        kwargs.update(
            pool_pre_ping=True,
            pool_recycle=3600,  # below MySQL's default wait_timeout of 8 h
            isolation_level="READ COMMITTED",
            connect_args={"connect_timeout": CONNECT_TIMEOUT},
        )
    # Exceptions must not carry row data (alert copies) into logs and tracebacks.
    kwargs["hide_parameters"] = True
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ImportError, ArgumentError, TypeError) as exc:
        raise LedgerUnavailable(
            f"cannot use the ledger URL {mask(parsed)!r} ({_first_line(exc)}): {_URL_HELP}"
        ) from None
    if backend == "sqlite":
        _install_sqlite_hooks(engine, statement_timeout)
    else:
        _install_server_hooks(engine, backend, statement_timeout)
    return engine


def _first_line(exc: BaseException) -> str:
    args = exc.args
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):
        # PyMySQL's (code, message): "message (MySQL error 1205)", not a tuple's repr.
        text = f"{args[1].strip()} (MySQL error {args[0]})"
    else:
        text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def describe_error(
    exc: BaseException, url: URL, statement_timeout: float = LEDGER_STATEMENT_TIMEOUT
) -> str:
    """One line naming the problem and the fix, with any password masked."""
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    reason = _first_line(orig)
    if url.password:
        reason = reason.replace(str(url.password), "***")
    where = mask(url)
    if url.get_backend_name() == "sqlite":
        path = sqlite_path(url)
        lowered = reason.lower()
        if "locked" in lowered or "busy" in lowered:
            return (
                f"the ledger file {path} is locked by another process ({reason}): "
                f"stop the other writer or retry later"
            )
        if "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
            return (
                f"cannot write the ledger file {path} ({reason}): fix the permissions of the "
                f"file and its directory, or point SIDECAR_LEDGER_URL / --ledger-url elsewhere"
            )
        if "not a database" in lowered or "malformed" in lowered:
            return (
                f"the ledger file {path} is not a usable SQLite database ({reason}): move it "
                f"away or point SIDECAR_LEDGER_URL / --ledger-url elsewhere"
            )
        return f"the ledger file {path} failed ({reason}): check the file and its directory"
    if is_timeout(orig):
        return (
            f"a statement on the ledger at {where} exceeded the {statement_timeout:g} s "
            f"ledger_statement_timeout ({reason}): another session holds a lock on the ledger "
            f"or its server is stalled; raise ledger_statement_timeout if it is only slow"
        )
    return (
        f"cannot use the ledger at {where} ({reason}): check that the server is running and "
        f"reachable and that the URL's user, password and database are right"
    )


def unavailable(
    exc: BaseException, url: URL, statement_timeout: float = LEDGER_STATEMENT_TIMEOUT
) -> LedgerUnavailable:
    """The LedgerUnavailable to raise for a driver or connection error."""
    return LedgerUnavailable(describe_error(exc, url, statement_timeout))


def timed_out(exc: DBAPIError) -> bool:
    """True when a statement or lock timeout ended the statement (see ``timeouts``)."""
    return is_timeout(exc.orig)


def is_retryable(exc: DBAPIError) -> bool:
    """Deadlocks and serialization failures: the transaction may simply be run again."""
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in {"40001", "40P01"}:
        return True
    args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
    return bool(args) and args[0] == 1213  # MySQL/MariaDB ER_LOCK_DEADLOCK
