"""Per-test databases on the servers named by SIDECAR_TEST_POSTGRES_URL / SIDECAR_TEST_MYSQL_URL,
another session holding the ledger's lease row, and ledger calls that must not hang the suite."""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import create_engine, make_url

T = TypeVar("T")

#: Backend -> the environment variable naming its server (CI sets both).
SERVERS = {"postgres": "SIDECAR_TEST_POSTGRES_URL", "mysql": "SIDECAR_TEST_MYSQL_URL"}


@contextmanager
def server_database(backend: str, prefix: str = "sidecar_test") -> Iterator[str]:
    """A fresh, uniquely named database on the backend's server, dropped afterwards.

    The caller skips when the variable is unset; the servers outlive a run, so every test
    cleans up after itself.
    """
    server = os.environ[SERVERS[backend]]
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if backend == "postgres":
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            else:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()


@contextmanager
def lease_row_locked(url: str) -> Iterator[None]:
    """Another session holds the lease row (SQLite: the whole file) until the block ends."""
    if url.startswith("sqlite"):
        other = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()
        return
    engine = create_engine(url)  # a plain engine: none of the ledger's own limits
    try:
        with engine.connect() as conn, conn.begin():
            conn.exec_driver_sql("SELECT name FROM leases FOR UPDATE").all()
            yield
    finally:
        engine.dispose()


def call_within(limit: float, call: Callable[[], T]) -> T:
    """``call()``'s result (or exception), run in a thread so that a call still running after
    ``limit`` s fails the test instead of hanging the suite."""
    outcome: list[tuple[T | None, BaseException | None]] = []

    def run() -> None:
        try:
            outcome.append((call(), None))
        except BaseException as exc:
            outcome.append((None, exc))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(limit)
    assert not worker.is_alive(), f"the call still runs after {limit:g} s"
    result, error = outcome[0]
    if error is not None:
        raise error
    return result  # type: ignore[return-value]
