"""One ledger database: its engine, and transactions that retry deadlocks and name outages."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Table
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import (
    DatabaseError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.sql.dml import Insert

from sidecar.ledger.engine import (
    IMMEDIATE,
    create_ledger_engine,
    is_retryable,
    mask,
    sqlite_path,
    timed_out,
    unavailable,
)
from sidecar.model.defaults import LEDGER_STATEMENT_TIMEOUT
from sidecar.support.errors import LedgerUnavailable

T = TypeVar("T")

#: Attempts of a transaction that hits a deadlock or a concurrent insert of the same key.
RETRIES = 3


def utcnow() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(UTC)


def _identity(value: Any) -> Any:
    return value


class Database:
    """The engine of one ledger URL and the transactions every part of the ledger runs in."""

    def __init__(
        self,
        url: URL,
        *,
        clock: Callable[[], datetime] = utcnow,
        statement_timeout: float = LEDGER_STATEMENT_TIMEOUT,
        create: bool = True,
    ) -> None:
        """Connect to ``url`` (parsed); ``create=False`` refuses a SQLite file not there yet.

        Each statement gives up after ``statement_timeout`` s (see ``sidecar.ledger.timeouts``).
        """
        self.url = url
        self.clock = clock
        self.statement_timeout = statement_timeout
        self.backend = url.get_backend_name()
        if not create and self.backend == "sqlite":
            path = sqlite_path(url)
            if path is not None and not path.expanduser().exists():
                raise LedgerUnavailable(
                    f"there is no ledger at {path}: run the service or "
                    f"`cloudstack-sidecar ledger migrate` first, or fix --ledger-url"
                )
        self.engine = create_ledger_engine(url, statement_timeout=statement_timeout)
        #: SQLite has one writer at a time. Threads of this process queue here and take over
        #: the moment the writer commits; waiting in SQLite's busy handler instead sleeps in
        #: steps of up to 100 ms (the applier's marks would wait behind each intent chunk).
        self._write_lock = threading.Lock() if self.backend == "sqlite" else None
        self._encoders: dict[tuple[str, str], Callable[[Any], Any]] = {}

    @property
    def display_url(self) -> str:
        """The URL with its password masked."""
        return mask(self.url)

    def close(self) -> None:
        """Release every connection."""
        self.engine.dispose()

    def transaction(
        self, work: Callable[[Connection], T], *, write: bool, retry_conflicts: bool = False
    ) -> T:
        """Run ``work`` in one transaction; retry deadlocks; driver errors -> LedgerUnavailable."""
        for attempt in itertools.count(1):
            try:
                with self.engine.connect() as conn:
                    if write and self.backend == "sqlite":
                        conn.execution_options(**{IMMEDIATE: True})
                    with conn.begin():
                        return work(conn)
            except IntegrityError:
                # A concurrent insert of the same key: the next attempt sees and updates it.
                if retry_conflicts and attempt < RETRIES:
                    continue
                raise
            except DBAPIError as exc:
                if is_retryable(exc) and attempt < RETRIES:
                    continue
                # DatabaseError itself (not a subclass): SQLite's "file is not a database".
                # A timeout is an InternalError on PyMySQL, an OperationalError on psycopg.
                broken = type(exc) is DatabaseError or exc.connection_invalidated
                if broken or timed_out(exc) or isinstance(exc, OperationalError | InterfaceError):
                    raise unavailable(exc, self.url, self.statement_timeout) from None
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def read(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in a read transaction."""
        return self.transaction(work, write=False)

    def write(self, work: Callable[[Connection], T], *, retry_conflicts: bool = False) -> T:
        """Run ``work`` in a write transaction (one writer of this process at a time on SQLite)."""
        if self._write_lock is None:
            return self.transaction(work, write=True, retry_conflicts=retry_conflicts)
        with self._write_lock:
            return self.transaction(work, write=True, retry_conflicts=retry_conflicts)

    def insert_ignore(self, table: Table) -> Insert:
        """INSERT that skips rows whose key exists (race-free "record once")."""
        if self.backend == "sqlite":
            return sqlite.insert(table).on_conflict_do_nothing()
        if self.backend == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing()
        return mysql.insert(table).prefix_with("IGNORE")

    def encoder(self, column: Any) -> Callable[[Any], Any]:
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
