"""The schema's revision: read it, refuse an unknown one, and migrate under a lock."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from sidecar.ledger.database import Database
from sidecar.ledger.engine import IMMEDIATE, VERSION_TABLE, unavailable
from sidecar.ledger.timeouts import unbounded_statements
from sidecar.support.errors import LedgerUnavailable

#: Where the Alembic migrations live (inside the installed package).
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: Arbitrary constants naming the migration lock on PostgreSQL and MariaDB/MySQL.
_PG_MIGRATION_LOCK = 0x5C5DEC4
_MYSQL_MIGRATION_LOCK = "cloudstack_sidecar_ledger_migrate"


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic configuration pointing at the packaged migrations (no ini file needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    """The newest schema revision this sidecar knows."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(db: Database) -> str | None:
    """The schema revision stored in the database (None for an empty database)."""

    def work(conn: Connection) -> str | None:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()

    return db.read(work)


def ensure_schema(db: Database, *, migrate: bool) -> str | None:
    """Bring the schema to the newest revision (or refuse); the revision found before."""
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    current = current_revision(db)
    if current == head:
        return current
    if current is not None:
        try:
            script.get_revision(current)
        except CommandError:
            raise LedgerUnavailable(
                f"the ledger at {db.display_url} has schema revision {current}, newer than "
                f"this cloudstack-sidecar knows ({head}): upgrade cloudstack-sidecar"
            ) from None
    if not migrate:
        raise LedgerUnavailable(
            f"the ledger at {db.display_url} has schema revision {current or 'none'}, "
            f"this cloudstack-sidecar needs {head}: run `cloudstack-sidecar ledger migrate`"
        )
    upgrade(db)
    return current


def upgrade(db: Database, revision: str = "head") -> str | None:
    """Apply the Alembic migrations up to ``revision`` under a lock; return the new revision.

    Several sidecars may start at once: PostgreSQL takes an advisory lock, MariaDB/MySQL a
    named lock, SQLite ``BEGIN IMMEDIATE``, so one migrates and the others find it done. The
    statement timeout does not apply (``timeouts.unbounded_statements`` says why).
    """
    server = db.backend in {"postgresql", "mysql", "mariadb"}
    try:
        with db.engine.connect() as conn:
            if db.backend == "sqlite":
                # Batch migrations recreate tables; FKs are checked again after them.
                conn.connection.driver_connection.execute(  # type: ignore[union-attr]
                    "PRAGMA foreign_keys=OFF"
                )
                conn.execution_options(**{IMMEDIATE: True})
            locked = False
            try:
                with conn.begin():
                    if server:
                        mariadb = bool(getattr(conn.dialect, "is_mariadb", False))
                        for statement in unbounded_statements(db.backend, mariadb=mariadb):
                            conn.exec_driver_sql(statement)
                    if db.backend == "postgresql":
                        conn.execute(
                            text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK}
                        )
                    elif db.backend in {"mysql", "mariadb"}:
                        got = conn.execute(
                            text("SELECT GET_LOCK(:k, 120)"), {"k": _MYSQL_MIGRATION_LOCK}
                        ).scalar()
                        if got != 1:
                            raise LedgerUnavailable(
                                f"another sidecar has been migrating the ledger at "
                                f"{db.display_url} for 2 minutes: retry later"
                            )
                        locked = True
                    command.upgrade(alembic_config(conn), revision)
            finally:
                if locked:
                    conn.execute(text("SELECT RELEASE_LOCK(:k)"), {"k": _MYSQL_MIGRATION_LOCK})
                    conn.commit()
                if db.backend in {"mysql", "mariadb"}:
                    # Its session limits are lifted: the pool must not hand it out again.
                    conn.invalidate()
                if db.backend == "sqlite":
                    conn.connection.driver_connection.execute(  # type: ignore[union-attr]
                        "PRAGMA foreign_keys=ON"
                    )
    except DBAPIError as exc:
        raise unavailable(exc, db.url, db.statement_timeout) from None
    except CommandError as exc:
        raise LedgerUnavailable(
            f"cannot migrate the ledger at {db.display_url} ({exc}): "
            f"check the revision or upgrade cloudstack-sidecar"
        ) from None
    return current_revision(db)
