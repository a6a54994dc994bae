"""Every way the ledger can be unavailable is one line naming the problem and the fix."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from sidecar.ledger import Ledger
from sidecar.ledger.engine import mask
from sidecar.support.errors import LedgerUnavailable
from sidecar.support.settings import Settings


def _one_line(err: pytest.ExceptionInfo[LedgerUnavailable]) -> str:
    message = str(err.value)
    assert "\n" not in message
    assert "Traceback" not in message
    assert err.value.exit_code == 4
    return message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "is not a valid URL"),
        ("oracle://scott:tiger@127.0.0.1/orcl", "unsupported database driver"),
        ("postgresql+asyncpg://u@127.0.0.1/db", "unsupported database driver"),
    ],
)
def test_a_bad_url_is_one_line_naming_the_supported_forms(url: str, expected: str):
    with pytest.raises(LedgerUnavailable, match=expected) as err:
        Ledger(url)

    message = _one_line(err)
    assert "sqlite:///" in message and "postgresql+psycopg://" in message
    assert "tiger" not in message


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://sidecar:s3cr3t-pw@127.0.0.1:1/ledger",
        "mysql+pymysql://sidecar:s3cr3t-pw@127.0.0.1:1/ledger",
        "postgresql://sidecar:s3cr3t-pw@127.0.0.1:1/ledger",  # driver filled in
    ],
)
def test_an_unreachable_server_is_one_line_without_the_password(url: str):
    with pytest.raises(LedgerUnavailable) as err:
        Ledger(url)

    message = _one_line(err)
    assert "s3cr3t-pw" not in message
    assert "sidecar:***@127.0.0.1:1/ledger" in message
    assert "check that the server is running" in message


def test_a_password_is_masked_in_every_rendering_of_the_url():
    assert mask("postgresql+psycopg://u:pa%40ss@h/db") == "postgresql+psycopg://u:***@h/db"
    assert mask("not a url") == "<unparseable URL>"


def test_a_ledger_whose_directory_cannot_be_created_is_one_line(tmp_path: Path):
    blocker = tmp_path / "state"
    blocker.write_text("a file where the directory should be")

    with pytest.raises(LedgerUnavailable, match="cannot create the ledger file") as err:
        Ledger(f"sqlite:///{blocker / 'sub' / 'ledger.sqlite3'}")

    assert "SIDECAR_LEDGER_URL" in _one_line(err)


def test_a_locked_ledger_file_is_one_line_after_the_busy_timeout(sqlite_url: str):
    Ledger(sqlite_url).close()
    path = sqlite_url.removeprefix("sqlite:///")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        ledger = Ledger(sqlite_url, statement_timeout=0.05)  # reading still works in WAL mode
        with pytest.raises(LedgerUnavailable, match="is locked by another process") as err:
            ledger.start_run("report", "dry-run")
        ledger.close()
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert path in _one_line(err)


def test_a_file_that_is_not_a_database_is_one_line(tmp_path: Path):
    bogus = tmp_path / "ledger.sqlite3"
    bogus.write_bytes(b"this is not sqlite" * 100)

    with pytest.raises(LedgerUnavailable, match="not a usable SQLite database") as err:
        Ledger(f"sqlite:///{bogus}")

    _one_line(err)


def test_the_default_ledger_is_created_owner_only_in_the_state_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    state = tmp_path / "var" / "lib" / "cloudstack-sidecar"
    monkeypatch.setenv("STATE_DIRECTORY", str(state))

    url = Settings().resolved_ledger_url()
    Ledger(url).close()

    assert url == f"sqlite:///{state / 'ledger.sqlite3'}"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "ledger.sqlite3").stat().st_mode) == 0o600


def test_without_systemd_the_ledger_lives_under_the_home_state_dir():
    url = Settings().resolved_ledger_url()
    Ledger(url).close()

    home_state = Path.home() / ".local" / "state" / "cloudstack-sidecar"
    assert (home_state / "ledger.sqlite3").is_file()
    assert stat.S_IMODE(home_state.stat().st_mode) == 0o700


def test_opening_a_missing_ledger_without_create_says_how_to_make_one(tmp_path: Path):
    with pytest.raises(LedgerUnavailable, match="there is no ledger") as err:
        Ledger(f"sqlite:///{tmp_path / 'none.sqlite3'}", create=False)

    assert "ledger migrate" in _one_line(err)
    assert not (tmp_path / "none.sqlite3").exists()
