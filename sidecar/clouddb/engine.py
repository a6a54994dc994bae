"""An engine for CloudStack's own database (``cloud_db_url``): bounded, masked, opt-in.

MariaDB/MySQL through PyMySQL (``ssl_ca``/``ssl_cert``/``ssl_key``/``ssl_check_hostname``
query options reach PyMySQL as its ``ssl`` argument), SQLite for tests and the simulator. Every
connection bounds its statements so that a slow or locked CloudStack database never blocks the
sidecar: MariaDB ``max_statement_time``, MySQL ``max_execution_time`` (SELECTs), both
``innodb_lock_wait_timeout``; SQLite's busy timeout. The statements are the ledger's
(``sidecar.support.sqltimeouts``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, create_engine, make_url
from sqlalchemy.exc import ArgumentError

from sidecar.support.errors import CloudDbUnavailable
from sidecar.support.redact import mask_url, redact, register_secret
from sidecar.support.sqltimeouts import is_mariadb, mysql_statements

#: Seconds one statement on CloudStack's database may take (one indexed query takes ms).
STATEMENT_TIMEOUT = 10.0
#: Seconds to wait for the database server to accept a connection.
CONNECT_TIMEOUT = 5

_DRIVERS = {"mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql", "sqlite": "sqlite"}
_SUPPORTED = {"mysql+pymysql", "mariadb+pymysql", "sqlite", "sqlite+pysqlite"}
_HELP = "use mysql+pymysql://USER:PASSWORD@HOST:3306/cloud (SIDECAR_CLOUD_DB_URL)"


def parse_cloud_url(url: str | URL) -> URL:
    """The normalised URL (bare ``mysql://`` gets PyMySQL); CloudDbUnavailable if unusable."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise CloudDbUnavailable(
            f"cloud_db_url {mask_url(url)!r} is not a valid URL: {_HELP}"
        ) from None
    drivername = _DRIVERS.get(parsed.drivername, parsed.drivername)
    if drivername not in _SUPPORTED:
        raise CloudDbUnavailable(
            f"cloud_db_url {mask_url(parsed)!r} names an unsupported driver "
            f"{parsed.drivername!r}: {_HELP}"
        )
    return parsed.set(drivername=drivername)


def create_cloud_engine(url: str | URL, *, statement_timeout: float = STATEMENT_TIMEOUT) -> Engine:
    """An engine on CloudStack's database whose statements give up after ``statement_timeout``."""
    parsed = parse_cloud_url(url)
    register_secret(parsed.password if isinstance(parsed.password, str) else None)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not Path(database).is_file():
            # Connecting would create an empty file: CloudStack's database is never created here.
            raise CloudDbUnavailable(f"cloud_db_url {mask_url(parsed)!r}: no such file")
        return create_engine(
            parsed, connect_args={"timeout": statement_timeout, "check_same_thread": False}
        )
    if "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    engine = create_engine(
        parsed,
        pool_pre_ping=True,
        pool_size=2,
        # READ COMMITTED: every read sees the queue as it is now, not a snapshot of an old one.
        isolation_level="READ COMMITTED",
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT,
            # A socket-level backstop in case the server-side limit is not honoured.
            "read_timeout": math.ceil(statement_timeout * 2),
            "write_timeout": math.ceil(statement_timeout * 2),
        },
    )

    @event.listens_for(engine, "connect")
    def _bound(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        try:
            mariadb = is_mariadb(dbapi_conn.get_server_info())
            for statement in mysql_statements(mariadb, statement_timeout):
                cursor.execute(statement)
        finally:
            cursor.close()

    return engine


def unavailable(engine_or_url: Engine | str | URL, exc: BaseException) -> CloudDbUnavailable:
    """A one-line, password-free error for a failed call on CloudStack's database."""
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else engine_or_url
    parsed = make_url(url)
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    password = parsed.password if isinstance(parsed.password, str) else ""
    return CloudDbUnavailable(
        redact(f"CloudStack database {mask_url(parsed)}: {first}", extra=[password])
    )


__all__ = [
    "STATEMENT_TIMEOUT",
    "create_cloud_engine",
    "parse_cloud_url",
    "unavailable",
]
