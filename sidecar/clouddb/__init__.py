"""CloudStack's own database, opt-in and read-mostly: the exact HA queue (``op_ha_work``).

A layer of its own (a sibling of ``cloudstack``, ``ledger`` and ``reconcile``): SQLAlchemy Core,
PyMySQL for MariaDB/MySQL, SQLite for tests and the simulator. Its one write is the guarded
cancel of cloudstack.md §8.4 (``queue.cancel``).
"""

from sidecar.clouddb.engine import create_cloud_engine, parse_cloud_url
from sidecar.clouddb.queue import cancel, ha_work_columns, read_queue, read_row, stored_taken
from sidecar.clouddb.schema import (
    SchemaInfo,
    grant_statements,
    missing_grants,
    schema_info,
    verified_release,
)

__all__ = [
    "SchemaInfo",
    "cancel",
    "create_cloud_engine",
    "grant_statements",
    "ha_work_columns",
    "missing_grants",
    "parse_cloud_url",
    "read_queue",
    "read_row",
    "schema_info",
    "stored_taken",
    "verified_release",
]
