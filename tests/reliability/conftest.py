"""Fixtures of the reliability suite: the zygote, a throwaway CA, ledgers on every backend."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbkit import SERVERS
from reliakit import (
    TlsFiles,
    Zygote,
    fast_directory,
    migrated_template,
    server_database,
    sqlite_url,
)


@pytest.fixture(scope="session")
def zygote() -> Iterator[Zygote]:
    """Forks ``cloudstack-sidecar`` processes without paying the imports each time."""
    z = Zygote()
    yield z
    z.close()


@pytest.fixture(scope="session")
def ledger_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated empty SQLite ledger, copied by ``fast_ledger``."""
    return migrated_template(tmp_path_factory.mktemp("template"))


@pytest.fixture
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    """A per-test directory on tmpfs when available (removed afterwards)."""
    directory = fast_directory(tmp_path / "fast")
    yield directory
    if directory.parent != tmp_path:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def fast_ledger(fast_dir: Path, ledger_template: Path) -> str:
    """The URL of a migrated, empty SQLite ledger on tmpfs."""
    shutil.copy(ledger_template, fast_dir / "ledger.sqlite3")
    return sqlite_url(fast_dir)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """Made with the ``openssl`` command (the ``cryptography`` package is not a dependency)."""
    d = tmp_path_factory.mktemp("tls")
    try:
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
                 "-out", "ca.pem", "-days", "2", "-subj", "/CN=sidecar test CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
                 "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)
        (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                   "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
        _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf",
                 cwd=d)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot make a test CA with openssl: {exc}")
    return TlsFiles(d / "ca.pem", d / "server.pem", d / "server.key")


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
    ]
)
def ledger_url(
    request: pytest.FixtureRequest, fast_dir: Path, ledger_template: Path
) -> Iterator[str]:
    """An empty ledger on each backend (server ones only when CI names a server).

    The SQLite one is already migrated: two processes opening a brand-new SQLite file at the
    same moment is a separate (reported) problem, not what these tests are about.
    """
    if request.param == "sqlite":
        shutil.copy(ledger_template, fast_dir / "ledger.sqlite3")
        yield sqlite_url(fast_dir)
        return
    env = SERVERS[request.param]
    if not os.environ.get(env):
        pytest.skip(f"{env} not set: no {request.param} server to test against")
    with server_database(request.param) as url:
        yield url
