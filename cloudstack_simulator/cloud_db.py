"""The simulator's ``cloud`` database: ``op_ha_work``, ``host`` and ``vm_instance`` in real SQL.

An SQLite file by default (created in a temp dir, or at a given path), or MariaDB/MySQL through
``mysql+pymysql://…``. The DDL follows ``fixtures/cloudstack-schema.sql`` per release profile:
``op_ha_work`` complete (``reason`` only from 4.20.1), ``host`` and ``vm_instance`` trimmed to
the columns HA uses. Foreign keys to tables the simulator does not keep (mshost, account, …)
are left out; ``host_id`` has no FK because ``scheduleRestart`` may write 0 there.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from cloudstack_simulator.state import HaWork, Host, State, Vm

#: ``take()``'s WHERE clause, verbatim in meaning (HighAvailabilityDaoImpl.take).
TAKE_WHERE = (
    "mgmt_server_id IS NULL AND taken IS NULL AND time_to_try <= ? "
    "AND step NOT IN ('Done','Cancelled')"
)

HA_COLUMNS = (
    "id, instance_id, type, vm_type, state, mgmt_server_id, host_id, created, tried, taken, "
    "step, time_to_try, updated"
)


def _ddl(reason: bool, mysql: bool) -> list[str]:
    """CREATE TABLE statements for one profile and dialect."""
    auto = "bigint unsigned NOT NULL AUTO_INCREMENT" if mysql else "INTEGER NOT NULL"
    engine = " ENGINE=InnoDB DEFAULT CHARSET=utf8" if mysql else ""
    reason_col = "  `reason` varchar(32) DEFAULT NULL,\n" if reason else ""
    idx = (
        ",\n  INDEX `i_op_ha_work__instance_id`(`instance_id`),\n"
        "  INDEX `i_op_ha_work__host_id`(`host_id`),\n  INDEX `i_op_ha_work__step`(`step`),\n"
        "  INDEX `i_op_ha_work__type`(`type`),\n"
        "  INDEX `i_op_ha_work__mgmt_server_id`(`mgmt_server_id`)"
        if mysql
        else ""
    )
    host = (
        "CREATE TABLE `host` (\n  `id` bigint unsigned NOT NULL,\n  `name` varchar(255) NOT NULL,\n"
        "  `uuid` varchar(40),\n  `status` varchar(32) NOT NULL,\n  `type` varchar(32) NOT NULL,\n"
        "  `private_ip_address` char(40) NOT NULL,\n  `cluster_id` bigint unsigned,\n"
        "  `data_center_id` bigint unsigned NOT NULL,\n  `pod_id` bigint unsigned,\n"
        "  `last_ping` int(10) unsigned NOT NULL,\n  `mgmt_server_id` bigint unsigned,\n"
        "  `removed` datetime,\n  `update_count` bigint unsigned NOT NULL DEFAULT 0,\n"
        "  `resource_state` varchar(32) NOT NULL DEFAULT 'Enabled',\n  PRIMARY KEY (`id`)\n)"
        + engine
    )
    vm = (
        "CREATE TABLE `vm_instance` (\n  `id` bigint unsigned NOT NULL,\n"
        "  `name` varchar(255) NOT NULL,\n  `uuid` varchar(40),\n"
        "  `instance_name` varchar(255) NOT NULL,\n  `state` varchar(32) NOT NULL,\n"
        "  `pod_id` bigint unsigned,\n  `data_center_id` bigint unsigned NOT NULL,\n"
        "  `host_id` bigint unsigned,\n  `last_host_id` bigint unsigned,\n"
        "  `ha_enabled` tinyint(1) NOT NULL DEFAULT 0,\n"
        "  `update_count` bigint unsigned NOT NULL DEFAULT 0,\n  `removed` datetime,\n"
        "  `type` varchar(32) NOT NULL,\n  `vm_type` varchar(32) NOT NULL,\n  PRIMARY KEY (`id`)\n)"
        + engine
    )
    work = (
        f"CREATE TABLE `op_ha_work` (\n  `id` {auto},\n  `instance_id` bigint unsigned NOT NULL,\n"
        "  `type` varchar(32) NOT NULL,\n  `vm_type` varchar(32) NOT NULL,\n"
        "  `state` varchar(32) NOT NULL,\n  `mgmt_server_id` bigint unsigned,\n"
        "  `host_id` bigint unsigned,\n  `created` datetime NOT NULL,\n"
        "  `tried` int(10) unsigned,\n  `taken` datetime,\n  `step` varchar(32) NOT NULL,\n"
        "  `time_to_try` bigint,\n  `updated` bigint unsigned NOT NULL,\n"
        f"{reason_col}  PRIMARY KEY (`id`),\n"
        "  CONSTRAINT `fk_op_ha_work__instance_id` FOREIGN KEY (`instance_id`) "
        f"REFERENCES `vm_instance` (`id`) ON DELETE CASCADE{idx}\n)" + engine
    )
    if not mysql:
        # SQLite takes no type words after a length; the affinity stays INTEGER.
        return [t.replace("int(10) unsigned", "int unsigned") for t in (host, vm, work)]
    return [host, vm, work]


def dt(at: float | None) -> str | None:
    """A virtual epoch time as a UTC DATETIME string (CloudStack writes UTC)."""
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


class CloudDb:
    """One connection to the simulator's ``cloud`` database (SQLite file or MariaDB)."""

    def __init__(self, url: str | None, *, reason: bool, path: str | Path | None = None) -> None:
        self.reason = reason
        if url is None or url.startswith("sqlite"):
            if url is not None:
                path = url.split("///", 1)[1]
            if path is None:
                path = Path(tempfile.mkdtemp(prefix="cloudsim-db-")) / "cloud.db"
            self.path: Path | None = Path(path)
            self.url = f"sqlite:///{self.path}"
            self.mysql = False
            # isolation_level=None: autocommit, so every write is visible to the sidecar at once.
            self.conn: Any = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False
            )
            # WAL: the sidecar reads while the workers write; NORMAL: a test file, not a bank.
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        else:
            import pymysql  # only for a MariaDB/MySQL cloud database

            parts = urlparse(url)
            self.path = None
            self.url = url
            self.mysql = True
            self.conn = pymysql.connect(
                host=parts.hostname or "127.0.0.1",
                port=parts.port or 3306,
                user=unquote(parts.username or "root"),
                password=unquote(parts.password or ""),
                database=parts.path.lstrip("/"),
                autocommit=True,
            )
        #: Rows whose truth is the database (the HA queue's), never overwritten by ``sync``.
        self.owned: set[int] = set()
        self._create()

    def _create(self) -> None:
        """Drop and create the three tables with this profile's DDL."""
        for table in ("op_ha_work", "vm_instance", "host"):
            self.execute(f"DROP TABLE IF EXISTS `{table}`")
        for statement in _ddl(self.reason, self.mysql):
            self.execute(statement)

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.mysql else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement (autocommit); returns rows changed."""
        cur = self.conn.cursor()
        try:
            cur.execute(self._sql(sql), tuple(params))
            return int(cur.rowcount)
        finally:
            cur.close()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a SELECT as dicts."""
        cur = self.conn.cursor()
        try:
            cur.execute(self._sql(sql), tuple(params))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        finally:
            cur.close()

    def columns(self, table: str) -> list[str]:
        """The columns ``table`` has, in order."""
        cur = self.conn.cursor()
        try:
            cur.execute(f"SELECT * FROM `{table}` WHERE 1=0")
            return [d[0] for d in cur.description]
        finally:
            cur.close()

    def take(self, now_stamp: int, msid: int, now: float) -> dict[str, Any] | None:
        """``HighAvailabilityDaoImpl.take``: lock one due untaken row (lowest id), take it."""
        select = f"SELECT id FROM op_ha_work WHERE {TAKE_WHERE} ORDER BY id LIMIT 1"
        if self.mysql:
            self.conn.begin()
            try:
                found = self.query(select + " FOR UPDATE", (now_stamp,))
                if found:
                    self.execute(
                        "UPDATE op_ha_work SET mgmt_server_id=?, taken=? WHERE id=?",
                        (msid, dt(now), found[0]["id"]),
                    )
                self.conn.commit()
            except Exception:
                self.conn.rollback()
                raise
        else:
            # BEGIN IMMEDIATE takes SQLite's write lock first: the same guarantee as FOR UPDATE.
            self.execute("BEGIN IMMEDIATE")
            try:
                found = self.query(select, (now_stamp,))
                if found:
                    self.execute(
                        "UPDATE op_ha_work SET mgmt_server_id=?, taken=? WHERE id=?",
                        (msid, dt(now), found[0]["id"]),
                    )
                self.execute("COMMIT")
            except Exception:
                self.execute("ROLLBACK")
                raise
        if not found:
            return None
        return self.ha_row(int(found[0]["id"]))

    def ha_row(self, row_id: int) -> dict[str, Any]:
        """One ``op_ha_work`` row."""
        return self.query("SELECT * FROM op_ha_work WHERE id=?", (row_id,))[0]

    def ha_rows(self) -> list[dict[str, Any]]:
        """Every ``op_ha_work`` row, by id."""
        return self.query("SELECT * FROM op_ha_work ORDER BY id")

    def update_ha(self, row_id: int, **cols: Any) -> None:
        """Set columns of one ``op_ha_work`` row."""
        names = ", ".join(f"{k}=?" for k in cols)
        self.execute(f"UPDATE op_ha_work SET {names} WHERE id=?", (*cols.values(), row_id))

    def mark_pending_investigating(self) -> int:
        """``markPendingWorksAsInvestigating`` (4.20.1+, at MS start): untaken pending rows."""
        return self.execute(
            "UPDATE op_ha_work SET step='Investigating' WHERE taken IS NULL "
            "AND step NOT IN ('Done','Cancelled','Investigating')"
        )

    def _upsert(self, table: str, row: dict[str, Any]) -> None:
        """Insert ``row`` or update it in place (by id): rows keep their identity."""
        if self.query(f"SELECT id FROM `{table}` WHERE id=?", (row["id"],)):
            names = ", ".join(f"`{k}`=?" for k in row if k != "id")
            values = [v for k, v in row.items() if k != "id"]
            self.execute(f"UPDATE `{table}` SET {names} WHERE id=?", (*values, row["id"]))
        else:
            names = ", ".join(f"`{k}`" for k in row)
            marks = ", ".join("?" for _ in row)
            self.execute(f"INSERT INTO `{table}` ({names}) VALUES ({marks})", tuple(row.values()))

    def write_host(self, host: Host) -> None:
        """Mirror one host into ``host``."""
        self._upsert(
            "host",
            {
                "id": host.id,
                "name": host.name,
                "uuid": host.uuid,
                "status": host.status,
                "type": host.type,
                "private_ip_address": host.ip,
                "cluster_id": host.cluster_id,
                "data_center_id": host.zone_id,
                "pod_id": host.pod_id,
                "last_ping": host.last_ping,
                "mgmt_server_id": None,
                "removed": dt(host.removed),
                "update_count": host.update_count,
                "resource_state": host.resource_state,
            },
        )

    def write_vm(self, vm: Vm) -> None:
        """Mirror one VM into ``vm_instance`` (``type`` is the legacy copy of ``vm_type``)."""
        self._upsert(
            "vm_instance",
            {
                "id": vm.id,
                "name": vm.name,
                "uuid": vm.uuid,
                "instance_name": vm.instance_name,
                "state": vm.state,
                "pod_id": vm.pod_id,
                "data_center_id": vm.zone_id,
                "host_id": vm.host_id,
                "last_host_id": vm.last_host_id,
                "ha_enabled": int(vm.ha_enabled),
                "update_count": vm.update_count,
                "removed": dt(vm.removed),
                "type": vm.vm_type,
                "vm_type": vm.vm_type,
            },
        )

    def write_ha(self, work: HaWork) -> None:
        """Mirror one in-memory ``op_ha_work`` row (same id)."""
        row: dict[str, Any] = {
            "id": work.id,
            "instance_id": work.instance_id,
            "type": work.type,
            "vm_type": work.vm_type,
            "state": work.state,
            "mgmt_server_id": work.mgmt_server_id,
            "host_id": work.host_id,
            "created": dt(work.created),
            "tried": work.tried,
            "taken": dt(work.taken),
            "step": work.step,
            "time_to_try": work.time_to_try,
            "updated": work.updated,
        }
        if self.reason:
            row["reason"] = work.reason
        self._upsert("op_ha_work", row)

    def sync(self, state: State) -> None:
        """Mirror the in-memory hosts, VMs and ``op_ha_work`` rows (the pre-planned scenarios)."""
        for host in state.hosts.values():
            self.write_host(host)
        for vm in state.vms.values():
            self.write_vm(vm)
        for work in state.ha_work:
            if work.id not in self.owned:
                self.write_ha(work)

    def close(self) -> None:
        """Close the connection (the file or database stays)."""
        self.conn.close()
