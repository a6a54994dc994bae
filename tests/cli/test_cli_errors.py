"""Every command fails the same way on the same problems: one ``error:`` line naming the problem
and its fix, a non-zero exit code by kind (2 configuration, 4 ledger, 5 CloudStack), no traceback.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from wiringkit import FAST, Outcome, cli_process, ledger_url, run_cli

from cloudstack_simulator import Simulator

COMMANDS = {
    "check": ["check"],
    "report": ["report"],
    "cleanup": ["cleanup", "--apply"],
    "run": ["run", "--once"],
}


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    """One small served simulator (nothing here changes its state)."""
    simulator = Simulator(hosts=2, vms_per_host=1)
    with simulator.serve():
        yield simulator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(sim: Simulator, tmp_path: Path, **changes: str) -> dict[str, str]:
    env = {
        "CLOUDSTACK_ENDPOINT": sim.endpoint or "",
        "CLOUDSTACK_KEY": sim.key,
        "CLOUDSTACK_SECRET": sim.secret,
        "SIDECAR_LEDGER_URL": ledger_url(tmp_path),
        **{f"SIDECAR_{k.upper()}": str(v) for k, v in FAST.items()},
    }
    env.update(changes)
    return env


def assert_one_error_line(result: Outcome, code: int, start: str, *, only_line: bool) -> str:
    assert result.code == code, result.err
    assert "Traceback" not in result.err + result.out
    lines = result.err.strip().splitlines()
    assert lines, "nothing on stderr"
    line = lines[-1]
    if only_line:
        assert lines == [line], result.err
    assert line.startswith(start), line
    return line


@pytest.mark.parametrize("command", COMMANDS)
def test_wrong_credentials_name_the_rejection_and_its_causes(
    command: str, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = env_for(sim, tmp_path, CLOUDSTACK_SECRET="not-the-secret")
    result = run_cli(COMMANDS[command], env, monkeypatch)
    line = assert_one_error_line(result, 5, "error: listCapabilities at 127.0.0.1:",
                                 only_line=command != "run")
    assert "CloudStack error 401" in line
    assert "wrong API key or secret, a disabled or locked user/account, or clock skew" in line
    assert "not-the-secret" not in result.err


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unreachable_endpoint_names_the_url_and_what_to_check(
    command: str, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{free_port()}/client/api"
    result = run_cli(COMMANDS[command], env_for(sim, tmp_path, CLOUDSTACK_ENDPOINT=url),
                     monkeypatch)
    line = assert_one_error_line(result, 5, "error: listCapabilities at 127.0.0.1:",
                                 only_line=command != "run")
    assert f"cannot reach {url} (" in line
    assert line.endswith("check the endpoint URL, the network path and the TLS settings")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_bad_ledger_url_names_the_supported_forms(
    command: str, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = env_for(sim, tmp_path, SIDECAR_LEDGER_URL="nosuch://db/ledger")
    result = run_cli(COMMANDS[command], env, monkeypatch)
    line = assert_one_error_line(
        result, 4, "error: the ledger URL 'nosuch://db/ledger' names an unsupported database",
        only_line=command != "run",
    )
    assert "use sqlite:///PATH, postgresql+psycopg://" in line
    assert sim.stats.calls["archiveAlerts"] == 0


@pytest.mark.parametrize("command", COMMANDS)
def test_a_malformed_config_file_names_the_file_and_the_syntax_error(
    command: str, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "sidecar.toml"
    config.write_text("poll_interval = [60\n")
    config.chmod(0o600)
    result = run_cli([*COMMANDS[command], "--config", str(config)], env_for(sim, tmp_path),
                     monkeypatch)
    line = assert_one_error_line(result, 2, f"error: config file {config} is not valid TOML (",
                                 only_line=True)
    assert line.endswith("): fix the syntax")


def test_a_real_process_prints_only_the_error_line(sim: Simulator, tmp_path: Path) -> None:
    # The same path as above through a separate interpreter: no logging set-up or
    # exception hook of the test process can hide a traceback.
    config = tmp_path / "sidecar.toml"
    config.write_text("no_such_setting = 1\n")
    config.chmod(0o600)
    bad_config = cli_process(["run", "--config", str(config)], env_for(sim, tmp_path))
    assert_one_error_line(
        bad_config, 2, f"error: unknown setting 'no_such_setting' in {config}: see "
        "sidecar.toml.example", only_line=True,
    )
    rejected = cli_process(["report"], env_for(sim, tmp_path, CLOUDSTACK_KEY="nobody"))
    assert_one_error_line(rejected, 5, "error: listCapabilities at 127.0.0.1:", only_line=True)
