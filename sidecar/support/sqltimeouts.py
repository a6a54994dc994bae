"""Per-backend SET statements that bound a database session's statements and lock waits.

Shared by the ledger (``sidecar.ledger.timeouts``) and CloudStack's database
(``sidecar.clouddb``), which are sibling layers. From a timeout T seconds:

- PostgreSQL: ``statement_timeout`` T and ``lock_timeout`` T/2.
- MariaDB: ``max_statement_time`` T (every statement), ``innodb_lock_wait_timeout`` and
  ``lock_wait_timeout`` (row and metadata locks) T/2 rounded up to whole seconds.
- MySQL proper: ``max_execution_time`` T bounds SELECTs only; the same two lock-wait limits
  bound writes where they usually hang, waiting for a lock.

Lock waits get half of T so that the error names the lock (the statement timer, started first,
would win a tie), and a statement that got its lock late still has time to run.
"""

from __future__ import annotations

import math


def lock_wait(timeout: float) -> float:
    """Seconds a statement may wait for a lock: half of the statement timeout."""
    return timeout / 2


def postgres_statements(timeout: float) -> list[str]:
    """SET statements bounding a PostgreSQL session (values in milliseconds)."""
    return [
        f"SET statement_timeout = {max(1, round(timeout * 1000))}",
        f"SET lock_timeout = {max(1, round(lock_wait(timeout) * 1000))}",
    ]


def is_mariadb(server_version: str) -> bool:
    """True for MariaDB's version string (``10.11.6-MariaDB-…``), False for MySQL's."""
    return "mariadb" in server_version.lower()


def mysql_statements(mariadb: bool, timeout: float) -> list[str]:
    """The SET statement bounding a MariaDB or MySQL session (see the module docstring)."""
    # Whole seconds, at least 1: InnoDB's and the metadata lock's limits have no fractions.
    lock = max(1, math.ceil(lock_wait(timeout)))
    waits = f"innodb_lock_wait_timeout = {lock}, lock_wait_timeout = {lock}"
    if mariadb:
        return [f"SET SESSION max_statement_time = {timeout:.3f}, {waits}"]
    return [f"SET SESSION max_execution_time = {max(1, round(timeout * 1000))}, {waits}"]


__all__ = ["is_mariadb", "lock_wait", "mysql_statements", "postgres_statements"]
