"""Reading CloudStack's HA queue, its version and grants, and the guarded cancel, on SQLite and
MariaDB with the fixture DDL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cloudkit import add_host, add_vm, add_work, dump, load_schema
from sqlalchemy.engine import Engine

from sidecar.clouddb import (
    cancel,
    create_cloud_engine,
    grant_statements,
    missing_grants,
    read_queue,
    read_row,
    schema_info,
    verified_release,
)
from sidecar.reconcile.hawork import ha_work_view
from sidecar.support.errors import CloudDbUnavailable

NOW = datetime(2025, 3, 1, 10, 5, tzinfo=UTC)


def crafted_queue(engine: Engine) -> None:
    """Two hosts; duplicates, a taken row, a retry, Stop/Migration rows and single rows."""
    for host in (7, 8):
        add_host(engine, host)
    for vm in (41, 42, 43, 44, 45, 46):
        add_vm(engine, vm, 7 if vm < 45 else 8)
    add_work(engine, 1, 42, 7)  # VM 42: three untaken duplicates -> keep 1
    add_work(engine, 2, 42, 7)
    add_work(engine, 3, 42, 7, step="Scheduled")
    add_work(engine, 4, 43, 7)  # VM 43: a worker holds 5 -> cancel 4 and 6
    add_work(engine, 5, 43, 7, step="Restarting", mgmt_server_id=345, taken="2025-03-01 10:01:00")
    add_work(engine, 6, 43, 7)
    add_work(engine, 7, 44, 7, tried=2)  # VM 44: the retry (tried=2) is kept, 8 cancelled
    add_work(engine, 8, 44, 7)
    add_work(engine, 9, 41, 7)  # VM 41: one HA row, plus Stop and Migration work: untouched
    add_work(engine, 10, 41, 7, type="Stop", step="Scheduled")
    add_work(engine, 11, 41, 7, type="Migration", step="Scheduled")
    add_work(engine, 12, 45, 8)  # VM 45 on host 8: single
    add_work(engine, 13, 46, 8, step="Done")  # VM 46: one finished, one pending: no duplicate
    add_work(engine, 14, 46, 8)
    add_work(engine, 15, 42, 8)  # VM 42 on another host: its own group of one


def test_the_queue_reads_every_pending_ha_row_with_names_and_utc_times(cloud: Engine) -> None:
    load_schema(cloud)
    crafted_queue(cloud)
    rows = read_queue(cloud)
    assert [r.id for r in rows] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 14, 15]
    first = rows[0]
    assert (first.vm, first.host, first.host_id, first.step) == ("i-2-42-VM", "kvm-7", 7,
                                                                  "Investigating")
    assert first.created == datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
    assert rows[4].taken == datetime(2025, 3, 1, 10, 1, tzinfo=UTC)
    assert rows[4].mgmt_server_id == 345


def test_crafted_queues_give_exactly_the_proven_duplicates(cloud: Engine) -> None:
    load_schema(cloud)
    crafted_queue(cloud)
    view = ha_work_view(read_queue(cloud), NOW)
    assert view.cancel == (2, 3, 4, 6, 8)
    assert [(g.instance_id, g.keep, g.cancel) for g in view.duplicates] == [
        (42, 1, (2, 3)), (43, 5, (4, 6)), (44, 7, (8,)),
    ]


def test_reason_is_read_only_where_the_column_exists(cloud: Engine) -> None:
    load_schema(cloud, reason=False, version="4.19.2.0")
    add_host(cloud, 7)
    add_vm(cloud, 42, 7)
    add_work(cloud, 1, 42, 7)
    info = schema_info(cloud)
    assert not info.has_reason and "reason" not in info.columns
    assert info.version == "4.19.2.0" and info.merge_allowed
    assert read_queue(cloud)[0].reason is None


def test_a_4_20_1_schema_has_the_reason_column(cloud: Engine) -> None:
    load_schema(cloud, reason=True, version="4.20.1.0")
    info = schema_info(cloud)
    assert info.has_reason and info.columns[-1] == "reason" and info.merge_allowed


@pytest.mark.parametrize("version", ["4.18.1.0", "4.23.0.0", None])
def test_an_unverified_release_is_read_only_with_one_warning(cloud: Engine,
                                                              version: str | None) -> None:
    load_schema(cloud, version=version)
    info = schema_info(cloud)
    assert not info.merge_allowed
    assert "4.19.0–4.22.x" in info.warning and "not cancelled" in info.warning


def test_verified_releases_are_4_19_to_4_22() -> None:
    assert [verified_release(v) for v in ("4.19.0.0", "4.22.9.1", "4.18.9", "4.23.0", "x")] == [
        True, True, False, False, False]


def test_cancel_changes_only_step_and_taken_of_that_row(cloud: Engine) -> None:
    load_schema(cloud)
    crafted_queue(cloud)
    before = dump(cloud)
    assert cancel(cloud, 2, NOW) is True
    after = dump(cloud)
    assert after[2]["step"] == "Cancelled" and after[2]["taken"] == "2025-03-01 10:05:00"
    for column in ("step", "taken"):
        after[2][column] = before[2][column]
    assert after == before
    assert read_row(cloud, 2).step == "Cancelled"  # type: ignore[union-attr]


@pytest.mark.parametrize("row_id", [5, 10, 11, 13, 99])
def test_cancel_refuses_taken_rows_other_work_types_finished_rows_and_missing_ones(
    cloud: Engine, row_id: int
) -> None:
    load_schema(cloud)
    crafted_queue(cloud)
    before = dump(cloud)
    assert cancel(cloud, row_id, NOW) is False
    assert dump(cloud) == before


def test_a_second_cancel_of_the_same_row_changes_nothing(cloud: Engine) -> None:
    load_schema(cloud)
    crafted_queue(cloud)
    assert cancel(cloud, 3, NOW)
    once = dump(cloud)
    assert cancel(cloud, 3, datetime(2025, 3, 1, 11, 0, tzinfo=UTC)) is False
    assert dump(cloud) == once


def test_the_owner_has_every_grant(cloud: Engine) -> None:
    load_schema(cloud)
    assert missing_grants(cloud, merging=True) == []


def test_grant_statements_are_least_privilege() -> None:
    grants = grant_statements()
    assert "GRANT SELECT ON `cloud`.`op_ha_work` TO 'sidecar'@'%';" in grants["read-only"]
    assert not any("UPDATE" in g for g in grants["read-only"])
    update = "GRANT UPDATE (step, taken) ON `cloud`.`op_ha_work` TO 'sidecar'@'%';"
    assert grants["merging"][-1] == update


def test_errors_never_show_the_password() -> None:
    url = "mysql+pymysql://sidecar:Very-Secret-Pw@127.0.0.1:1/cloud?connect_timeout=1"
    engine = create_cloud_engine(url)
    with pytest.raises(CloudDbUnavailable) as caught:
        read_queue(engine)
    assert "Very-Secret-Pw" not in str(caught.value)
    assert "***" in str(caught.value)


def test_a_missing_sqlite_file_is_not_created(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CloudDbUnavailable, match="no such file"):
        create_cloud_engine(f"sqlite:///{tmp_path / 'absent.sqlite3'}")
    assert not (tmp_path / "absent.sqlite3").exists()
