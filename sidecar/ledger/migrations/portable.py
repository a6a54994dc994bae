"""What the hand-written revisions build tables with, the same on SQLite, PostgreSQL and MariaDB.

Revisions import these, so they never change: an old revision would build another schema.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

#: Table options for MySQL/MariaDB: InnoDB for transactions, utf8mb4 for any host or VM name.
MYSQL: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mariadb_engine": "InnoDB",
    "mariadb_charset": "utf8mb4",
}


def utc_datetime() -> sa.types.TypeEngine[Any]:
    """Aware datetime; DATETIME(6) on MySQL/MariaDB, whose plain DATETIME drops microseconds."""
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
