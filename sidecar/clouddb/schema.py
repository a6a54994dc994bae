"""What the sidecar may do with a CloudStack database: its version, columns and grants.

Merging (cancelling duplicate HA rows) is allowed only on releases whose ``op_ha_work``
semantics were verified in source (4.19.0–4.22.x, cloudstack.md §8.4) with every expected
column present; anything else is read-only with one clear warning, never a guess.

Grants are checked with harmless probes rather than by parsing ``SHOW GRANTS`` (roles, wildcard
databases and column grants make that parsing a guess): a ``SELECT … WHERE 1=0`` per table,
and for merging an ``UPDATE op_ha_work SET step=step, taken=taken WHERE 1=0`` inside a
transaction that is rolled back. Both change nothing and lock no row; MariaDB/MySQL check the
privileges (table- or column-level) before running them and refuse with 1142/1143.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from sidecar.clouddb.engine import unavailable
from sidecar.clouddb.queue import BASE_COLUMNS, REASON, ha_work_columns

#: Releases whose HA queue semantics (take(), steps, columns) were verified: 4.19.0–4.22.x.
VERIFIED_FROM: Final = (4, 19)
VERIFIED_UNTIL: Final = (4, 22)

#: MariaDB/MySQL: command denied on a table (1142), on a column (1143), on a database (1044).
_DENIED: Final = frozenset({1142, 1143, 1044})

_TABLES: Final = ("op_ha_work", "vm_instance", "host")


@dataclass(frozen=True, slots=True)
class SchemaInfo:
    """CloudStack's schema version, the columns of ``op_ha_work`` and whether merging is safe."""

    version: str | None
    columns: tuple[str, ...]
    has_reason: bool
    merge_allowed: bool
    warning: str = ""
    """Why merging is not allowed (empty when it is)."""


def _version_tuple(version: str) -> tuple[int, ...] | None:
    match = re.match(r"^(\d+)\.(\d+)(?:\.(\d+))?", version.strip())
    return None if match is None else tuple(int(g) for g in match.groups() if g is not None)


def verified_release(version: str | None) -> bool:
    """True for a 4.19.0–4.22.x version string (``4.19.2.0``)."""
    parsed = _version_tuple(version or "")
    return parsed is not None and VERIFIED_FROM <= parsed[:2] <= VERIFIED_UNTIL


def read_version(engine: Engine) -> str | None:
    """The newest completed schema version in ``version`` (e.g. ``4.19.2.0``), or None."""
    stmt = text("SELECT version FROM version WHERE step = 'Complete' ORDER BY id DESC LIMIT 1")
    try:
        with engine.connect() as conn:
            value = conn.execute(stmt).scalar()
    except SQLAlchemyError as exc:
        raise unavailable(engine, exc) from None
    return None if value is None else str(value).strip()


def schema_info(engine: Engine) -> SchemaInfo:
    """Version, ``op_ha_work`` columns and whether merging is allowed on this database."""
    version = read_version(engine)
    columns = ha_work_columns(engine)
    missing = [c for c in BASE_COLUMNS if c not in columns]
    warning = ""
    if missing:
        warning = (f"op_ha_work lacks column(s) {', '.join(missing)}: an unexpected schema, "
                   f"the HA queue is not read and nothing is cancelled")
    elif not verified_release(version):
        warning = (f"CloudStack schema version {version or 'unknown'} is outside 4.19.0–4.22.x, "
                   f"whose HA queue semantics are verified: the HA queue is read only, "
                   f"duplicate HA rows are not cancelled")
    ordered = tuple(c for c in (*BASE_COLUMNS, REASON) if c in columns)
    return SchemaInfo(version, ordered, REASON in columns, not warning, warning)


def _probe(engine: Engine, statement: str) -> str | None:
    """None when ``statement`` may run, else the server's refusal (rolled back either way)."""
    try:
        with engine.connect() as conn:
            trans = conn.begin()
            try:
                conn.execute(text(statement)).close()
            finally:
                trans.rollback()
    except DBAPIError as exc:
        args = getattr(exc.orig, "args", ())
        if args and args[0] in _DENIED:
            return str(args[1] if len(args) > 1 else args[0])
        raise unavailable(engine, exc) from None
    except SQLAlchemyError as exc:
        raise unavailable(engine, exc) from None
    return None


def missing_grants(engine: Engine, *, merging: bool) -> list[str]:
    """The grants the sidecar lacks: SELECT on the three tables, UPDATE(step, taken) to merge."""
    problems = []
    # Exactly the columns the sidecar reads: column-level grants on host/vm_instance suffice.
    reads = {"op_ha_work": ", ".join(c for c in (*BASE_COLUMNS, REASON)
                                     if c in ha_work_columns(engine)),
             "vm_instance": "id, instance_name", "host": "id, name", "version": "version, step"}
    for name, columns in reads.items():
        refused = _probe(engine, f"SELECT {columns} FROM {name} WHERE 1 = 0")
        if refused:
            problems.append(f"SELECT on {name}: {refused}")
    if merging:
        refused = _probe(engine, "UPDATE op_ha_work SET step = step, taken = taken WHERE 1 = 0")
        if refused:
            problems.append(f"UPDATE (step, taken) on op_ha_work: {refused}")
    return problems


def grant_statements(database: str = "cloud", user: str = "'sidecar'@'%'") -> dict[str, list[str]]:
    """Least-privilege GRANTs (cloudstack.md §8.4): ``read-only`` and ``merging``."""
    read = [f"GRANT SELECT ON `{database}`.`{t}` TO {user};" for t in (*_TABLES, "version")]
    merge = [*read, f"GRANT UPDATE (step, taken) ON `{database}`.`op_ha_work` TO {user};"]
    return {"read-only": read, "merging": merge}


__all__ = [
    "SchemaInfo",
    "grant_statements",
    "missing_grants",
    "read_version",
    "schema_info",
    "verified_release",
]
