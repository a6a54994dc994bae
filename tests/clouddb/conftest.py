"""CloudStack database fixtures: the fixture DDL on SQLite, and on MariaDB when
SIDECAR_TEST_MYSQL_URL names a server (each test its own database, dropped afterwards)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbkit import server_database
from sqlalchemy.engine import Engine

from sidecar.clouddb import create_cloud_engine


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
    ]
)
def cloud_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty CloudStack database (SQLite file, or a fresh MariaDB database)."""
    if request.param == "sqlite":
        path = tmp_path / "cloud.sqlite3"
        sqlite3.connect(path).close()
        yield f"sqlite:///{path}"
        return
    if not os.environ.get("SIDECAR_TEST_MYSQL_URL"):
        pytest.skip("SIDECAR_TEST_MYSQL_URL not set: no MariaDB server to test against")
    with server_database("mysql", prefix="sidecar_cloud_test") as url:
        yield url


@pytest.fixture
def cloud(cloud_url: str) -> Iterator[Engine]:
    """The sidecar's own engine on that database (bounded statements, masked password)."""
    engine = create_cloud_engine(cloud_url)
    yield engine
    engine.dispose()
