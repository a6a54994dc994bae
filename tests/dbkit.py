"""Per-test databases on the servers named by SIDECAR_TEST_POSTGRES_URL / SIDECAR_TEST_MYSQL_URL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, make_url

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
