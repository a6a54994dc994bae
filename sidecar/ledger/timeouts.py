"""Statement and lock timeouts: one setting bounds every ledger statement on every backend.

The service's cycle deadline cannot interrupt a ledger call (the calls are synchronous), so the
database has to give up by itself. From ``ledger_statement_timeout`` (T seconds):

- PostgreSQL: ``statement_timeout`` T and ``lock_timeout`` T/2, set on each new connection.
- MariaDB: ``max_statement_time`` T (every statement), ``innodb_lock_wait_timeout`` and
  ``lock_wait_timeout`` (row and metadata locks, e.g. behind ``FLUSH TABLES WITH READ LOCK``)
  T/2 rounded up to whole seconds.
- MySQL proper: ``max_execution_time`` T bounds SELECTs only (MySQL has nothing for other
  statements); the same two lock-wait limits bound writes where they usually hang, waiting for
  a lock. A write that is slow for another reason (a stalled disk) is not bounded on MySQL.
- SQLite: the busy timeout is T (SQLite's only wait is for the file lock; it has no server).

Lock waits get half of T so that the error names the lock (the statement timer, started first,
would win a tie), and a statement that got its lock late still has time to run. A statement
that gives up ends its transaction (rolled back), and the caller gets a one-line
LedgerUnavailable; nothing is retried here: the service's next cycle retries.
"""

from __future__ import annotations

from typing import Any

from sidecar.support.sqltimeouts import (
    is_mariadb,
    lock_wait,
    mysql_statements,
    postgres_statements,
)

#: SQLSTATEs of PostgreSQL: query_canceled (statement_timeout), lock_not_available.
_PG_TIMEOUTS = {"57014", "55P03"}

#: MySQL/MariaDB errors: lock wait timeout, MariaDB max_statement_time, MySQL
#: max_execution_time.
_MYSQL_TIMEOUTS = {1205, 1969, 3024}


def unbounded_statements(backend: str, *, mariadb: bool) -> list[str]:
    """Statements lifting the limits for one migration (transaction-local on PostgreSQL).

    DDL on MariaDB is not transactional: a migration cut short by a timeout would leave a
    half-migrated schema. Migrations are serialized by their own lock instead.
    """
    if backend == "postgresql":
        return ["SET LOCAL statement_timeout = 0", "SET LOCAL lock_timeout = 0"]
    restore = (
        "innodb_lock_wait_timeout = @@GLOBAL.innodb_lock_wait_timeout, "
        "lock_wait_timeout = @@GLOBAL.lock_wait_timeout"
    )
    limit = "max_statement_time" if mariadb else "max_execution_time"
    return [f"SET SESSION {limit} = 0, {restore}"]


def is_timeout(orig: Any) -> bool:
    """True when the driver error ``orig`` is one of these timeouts firing."""
    if getattr(orig, "sqlstate", None) in _PG_TIMEOUTS:
        return True
    args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
    return bool(args) and args[0] in _MYSQL_TIMEOUTS


__all__ = [
    "is_mariadb",
    "is_timeout",
    "lock_wait",
    "mysql_statements",
    "postgres_statements",
    "unbounded_statements",
]
