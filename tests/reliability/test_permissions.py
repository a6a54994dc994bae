"""Files holding credentials must not be readable by others: a cloudstack.ini (any of cs's three
places) or a sidecar TOML file that group or others may read gets a warning naming the file, at
every start; the ledger the sidecar creates is owner-only.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from reliakit import CliResult, Zygote, base_env

from cloudstack_simulator import Simulator


@pytest.fixture
def sim() -> Iterator[Simulator]:
    simulator = Simulator(hosts=2, vms_per_host=1, start=datetime.now(UTC) - timedelta(minutes=1))
    with simulator.serve():
        yield simulator


def ini_text(sim: Simulator) -> str:
    return f"[cloudstack]\nendpoint = {sim.endpoint}\nkey = {sim.key}\nsecret = {sim.secret}\n"


def warnings_about(result: CliResult, path: Path) -> list[str]:
    return [line for line in result.stderr.splitlines()
            if str(path) in line and "readable by group/others" in line]


@pytest.mark.parametrize(("where", "mode"), [("home", 0o644), ("cwd", 0o640),
                                             ("CLOUDSTACK_CONFIG", 0o604)])
def test_a_cloudstack_ini_readable_by_others_is_named_in_a_warning(
    zygote: Zygote, sim: Simulator, tmp_path: Path, where: str, mode: int
) -> None:
    home = tmp_path / "home"
    cwd = tmp_path / "work"
    cwd.mkdir()
    extra: dict[str, str] = {}
    if where == "home":
        path = home / ".cloudstack.ini"
    elif where == "cwd":
        path = cwd / "cloudstack.ini"
    else:
        path = tmp_path / "elsewhere.ini"
        extra["CLOUDSTACK_CONFIG"] = str(path)
    path.write_text(ini_text(sim))
    path.chmod(mode)
    env = base_env(home, SIDECAR_LEDGER_URL=f"sqlite:///{tmp_path / 'l.sqlite3'}", **extra)
    for argv in (["check"], ["run", "--once", "--dry-run"]):
        result = zygote.run(argv, env, cwd)
        assert result.code == 0, result.output
        found = warnings_about(result, path)
        assert len(found) == 1, (argv, result.stderr)
        assert f"chmod 600 {path}" in found[0]
        assert oct(mode)[2:] in found[0]


def test_an_owner_only_cloudstack_ini_gets_no_warning(
    zygote: Zygote, sim: Simulator, tmp_path: Path
) -> None:
    path = tmp_path / "cs.ini"
    path.write_text(ini_text(sim))
    path.chmod(0o600)
    env = base_env(tmp_path / "home", CLOUDSTACK_CONFIG=str(path))
    result = zygote.run(["check"], env, tmp_path)
    assert result.code == 0, result.output
    assert "readable by group/others" not in result.output


def test_a_sidecar_toml_readable_by_others_is_named_in_a_warning(
    zygote: Zygote, sim: Simulator, tmp_path: Path
) -> None:
    # The TOML may hold ledger_url with the database password.
    toml = tmp_path / "sidecar.toml"
    toml.write_text(f'ledger_url = "sqlite:///{tmp_path / "l.sqlite3"}"\n')
    toml.chmod(0o644)
    env = base_env(tmp_path / "home", CLOUDSTACK_ENDPOINT=sim.endpoint or "",
                   CLOUDSTACK_KEY=sim.key, CLOUDSTACK_SECRET=sim.secret)
    for argv in (["run", "--once", "--dry-run"], ["report"]):
        result = zygote.run([*argv, "--config", str(toml)], env, tmp_path)
        assert result.code in (0, 3), result.output
        found = warnings_about(result, toml)
        assert len(found) == 1, (argv, result.stderr)
        assert f"chmod 600 {toml}" in found[0]
    toml.chmod(0o600)
    quiet = zygote.run(["report", "--config", str(toml)], env, tmp_path)
    assert "readable by group/others" not in quiet.output


def test_the_ledger_and_its_directory_are_created_owner_only(
    zygote: Zygote, sim: Simulator, tmp_path: Path
) -> None:
    state = tmp_path / "state" / "cloudstack-sidecar"
    env = base_env(tmp_path / "home", CLOUDSTACK_ENDPOINT=sim.endpoint or "",
                   CLOUDSTACK_KEY=sim.key, CLOUDSTACK_SECRET=sim.secret,
                   STATE_DIRECTORY=str(state))
    result = zygote.run(["report"], env, tmp_path)
    assert result.code in (0, 3), result.output
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "ledger.sqlite3").stat().st_mode) == 0o600
