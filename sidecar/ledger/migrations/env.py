"""Alembic environment of the ledger: hand-written, portable migrations; batch mode on SQLite.

``Ledger`` runs the migrations programmatically and hands its connection over in
``config.attributes["connection"]`` (already inside a locked transaction). Developers may also run
``alembic -c sidecar/ledger/alembic.ini -x url=sqlite:///ledger.sqlite3 upgrade head``.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy.engine import Connection

from sidecar.ledger.engine import VERSION_TABLE, create_ledger_engine


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=None,  # no autogenerate at runtime: every migration is written by hand
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things: batch mode recreates the table when needed.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or context.config.get_main_option("sqlalchemy.url")
        or os.environ.get("SIDECAR_LEDGER_URL")
    )
    if not url:
        raise SystemExit("give the ledger URL: alembic -x url=... or SIDECAR_LEDGER_URL")
    engine = create_ledger_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("the ledger migrations run online only (they are applied at start)")
run_migrations_online()
