"""CloudStack databases for tests: the fixture DDL (fixtures/cloudstack-schema.sql) loaded on
SQLite or MariaDB, crafted HA queues, and full table dumps to prove what changed.

The DDL is translated minimally and the columns stay identical: the ``cloud.`` prefix goes (each
test has its own database); foreign keys to tables the fixture does not have (mshost, account,
cluster, …) are dropped; SQLite also loses ``COMMENT``, ``unsigned``, ``AUTO_INCREMENT``,
inline indexes, foreign keys (it has no syntax for MySQL's) and ``int(N)`` display widths.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

DDL = Path(__file__).resolve().parents[2] / "fixtures" / "cloudstack-schema.sql"
TABLES = ("host", "vm_instance", "op_ha_work", "version")
_KNOWN = set(TABLES)


def _blocks() -> dict[str, list[str]]:
    """The CREATE TABLE statements of the fixture by table name, as lines, comments dropped."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in DDL.read_text().splitlines():
        stripped = line.strip()
        head = re.match(r"CREATE TABLE\s+`cloud`\.`(\w+)`", stripped)
        if head:
            current = blocks.setdefault(head.group(1), [])
            continue
        if current is None or not stripped or stripped.startswith("--"):
            continue
        if stripped.startswith(")"):
            current = None
            continue
        current.append(stripped.rstrip(","))
    return blocks


def ddl_statements(backend: str, *, reason: bool = True) -> list[str]:
    """CREATE TABLE statements for ``host``, ``vm_instance``, ``op_ha_work`` and ``version``."""
    blocks = _blocks()
    out = []
    for name in TABLES:
        parts = []
        for line in blocks[name]:
            refs = re.search(r"REFERENCES\s+(?:`cloud`\.)?`(\w+)`", line)
            if refs and refs.group(1) not in _KNOWN:
                continue
            if not reason and line.startswith("`reason`"):
                continue
            line = line.replace("`cloud`.", "")
            if backend == "sqlite":
                if line.startswith(("INDEX", "CONSTRAINT `fk", "KEY")):
                    continue
                line = re.sub(r"""\s+COMMENT\s+(['"]).*?\1""", "", line, flags=re.I)
                line = re.sub(r"\b(unsigned|auto_increment)\b", "", line, flags=re.I)
                # int(10) is a MySQL display width: SQLite's reflection warns about it.
                line = re.sub(r"\bint\(\d+\)", "int", line, flags=re.I)
            parts.append(line)
        tail = "" if backend == "sqlite" else " ENGINE=InnoDB DEFAULT CHARSET=utf8"
        out.append(f"CREATE TABLE `{name}` (\n  " + ",\n  ".join(parts) + f"\n){tail}")
    return out


def load_schema(engine: Engine, *, reason: bool = True, version: str | None = "4.19.2.0") -> None:
    """Create the tables (``reason`` only when asked: 4.20.1+) and record the schema version."""
    with engine.begin() as conn:
        for statement in ddl_statements(engine.dialect.name, reason=reason):
            conn.exec_driver_sql(statement)
        if version is not None:
            conn.execute(text("INSERT INTO version (id, version, updated, step) "
                              "VALUES (1, '4.0.0', '2020-01-01 00:00:00', 'Complete'), "
                              "(2, :v, '2025-01-01 00:00:00', 'Complete')"), {"v": version})


def add_host(engine: Engine, host_id: int, name: str = "") -> None:
    """A host row with its NOT NULL columns."""
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO host (id, name, status, type, private_ip_address, data_center_id, "
            "last_ping, resource_state) VALUES (:id, :name, 'Down', 'Routing', :ip, 1, 0, "
            "'Enabled')"), {"id": host_id, "name": name or f"kvm-{host_id}",
                            "ip": f"10.0.0.{host_id}"})  # fmt: skip


def add_vm(engine: Engine, vm_id: int, host_id: int) -> None:
    """A user VM (HA enabled) recorded on ``host_id``."""
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO vm_instance (id, name, instance_name, state, data_center_id, host_id, "
            "ha_enabled, update_count, created, type, vm_type, account_id, domain_id, "
            "service_offering_id) VALUES (:id, :name, :iname, 'Running', 1, :host, 1, 3, "
            "'2025-01-01 00:00:00', 'User', 'User', 2, 1, 1)"),
            {"id": vm_id, "name": f"vm{vm_id}", "iname": f"i-2-{vm_id}-VM", "host": host_id})


def add_work(engine: Engine, row_id: int, vm_id: int, host_id: int | None, *,
             type: str = "HA", step: str = "Investigating", tried: int = 0,
             mgmt_server_id: int | None = None, taken: str | None = None,
             created: str = "2025-03-01 10:00:00") -> None:
    """One ``op_ha_work`` row as scheduleRestart writes it (or as a worker left it)."""
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO op_ha_work (id, instance_id, type, vm_type, state, mgmt_server_id, "
            "host_id, created, tried, taken, step, time_to_try, updated) VALUES (:id, :vm, "
            ":type, 'User', 'Running', :ms, :host, :created, :tried, :taken, :step, 1700000, 3)"),
            {"id": row_id, "vm": vm_id, "type": type, "ms": mgmt_server_id, "host": host_id,
             "created": created, "tried": tried, "taken": taken, "step": step})  # fmt: skip


def dump(engine: Engine, name: str = "op_ha_work") -> dict[int, dict[str, Any]]:
    """Every row of a table by id, every column, values normalised for comparison."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(f"SELECT * FROM {name} ORDER BY id").mappings().all()

    def norm(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.strftime("%Y-%m-%d %H:%M:%S")
        return value

    return {int(r["id"]): {k: norm(v) for k, v in r.items()} for r in rows}
