"""``cloudstack-sidecar simulator``: the credentials file, user errors, and a real run."""

from __future__ import annotations

import configparser
import json
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import typer
from simkit import RawClient
from typer.testing import CliRunner

from cloudstack_simulator import Simulator
from sidecar.cli.simulator import register, write_ini
from sidecar.support.errors import UserError

APP = """
import typer
from sidecar.cli.simulator import register
app = typer.Typer()
@app.callback()
def root() -> None:
    pass
register(app)
app()
"""


def cli_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """Test root."""

    register(app)
    return app


def test_write_ini_creates_a_private_section(tmp_path: Path) -> None:
    path = tmp_path / "cloudstack.ini"
    write_ini(path, "cloudstack", "http://127.0.0.1:9/client/api", "k" * 86, "s" * 86)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    parser = configparser.ConfigParser()
    parser.read(path)
    assert dict(parser["cloudstack"]) == {
        "endpoint": "http://127.0.0.1:9/client/api",
        "key": "k" * 86,
        "secret": "s" * 86,
        "timeout": "30",
    }


def test_write_ini_keeps_other_sections_and_tightens_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "cloudstack.ini"
    path.write_text("[prod]\nendpoint = https://cloud.example/client/api\nkey = a\nsecret = b\n")
    path.chmod(0o644)
    write_ini(path, "cloudstack", "http://127.0.0.1:9/client/api", "k", "s")
    parser = configparser.ConfigParser()
    parser.read(path)
    assert parser["prod"]["endpoint"] == "https://cloud.example/client/api"
    assert parser["cloudstack"]["key"] == "k"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_write_ini_never_overwrites_real_credentials(tmp_path: Path) -> None:
    path = tmp_path / "cloudstack.ini"
    path.write_text(
        "[cloudstack]\nendpoint = https://cloud.example/client/api\nkey = a\nsecret = b\n"
    )
    with pytest.raises(UserError, match="refusing to overwrite"):
        write_ini(path, "cloudstack", "http://127.0.0.1:9/client/api", "k", "s")
    assert "cloud.example" in path.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "10.0.0.1"], "not a loopback address"),
        (["--profile", "4.18"], "unknown simulator profile"),
        (["--scenario", "meteor"], "unknown scenario"),
        (["--key", "k"], "--key and --secret go together"),
        (["--timezone", "Mars/Olympus"], "unknown time zone"),
        (["--rack-share", "0.1"], "--rack-share needs --failures-per-hour"),
    ],
)
def test_bad_options_are_one_line_user_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli_app(), ["simulator", *args])
    assert isinstance(result.exception, UserError)
    assert message in str(result.exception)
    assert "\n" not in str(result.exception)


@pytest.mark.parametrize(("args", "dated"), [([], False), (["--send-date"], True)])
def test_the_simulator_command_sends_a_date_header_only_with_send_date(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], dated: bool
) -> None:
    answers: list[httpx.Response] = []

    def one_request(sim: Simulator, speed: float) -> None:
        assert sim.endpoint is not None
        client = RawClient(sim.endpoint, sim.key, sim.secret)
        try:
            answers.append(client.get("listCapabilities"))
        finally:
            client.close()

    # Serve one request instead of waiting for a signal; keep the CLI's log handler away from
    # the test runner's captured stdout.
    monkeypatch.setattr("sidecar.cli.simulator._run_until_signal", one_request)
    monkeypatch.setattr("sidecar.cli.simulator._configure_logging", lambda: None)
    ini = str(tmp_path / "sim.ini")
    result = CliRunner().invoke(cli_app(), ["simulator", "--port", "0", "--write-ini", ini, *args])
    assert result.exit_code == 0, result.output
    (answer,) = answers
    assert answer.status_code == 200
    assert ("Date" in answer.headers) is dated
    assert "Server" not in answer.headers


def test_the_simulator_command_serves_logs_and_stops_on_sigterm(tmp_path: Path) -> None:
    ini = tmp_path / "sim.ini"
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", APP, "simulator", "--port", "0", "--write-ini", str(ini),
         "--alerts", "200", "--scenario", "host-crash", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "scenario host-crash started" in line:
                break
        endpoint = next(x.split(" on ")[-1].strip() for x in lines if " simulator (" in x)
        parser = configparser.ConfigParser()
        parser.read(ini)
        section = parser["cloudstack"]
        assert section["endpoint"] == endpoint
        client = RawClient(endpoint, section["key"], section["secret"])
        try:
            assert client.get("listCapabilities").status_code == 200
        finally:
            client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=20)
    output = "".join(lines) + rest
    assert proc.returncode == 0
    assert "GET listCapabilities 200" in output
    assert "simulator stopped" in output
    assert section["key"] not in output and section["secret"] not in output


def _control(endpoint: str, method: str, path: str) -> httpx.Response:
    """A request to a ``/_sim/`` control route of the simulator serving ``endpoint``."""
    base = endpoint.removesuffix("/client/api")
    return httpx.request(method, f"{base}{path}", timeout=10.0)


def test_the_stats_route_scores_archives_against_the_truth_and_is_not_counted(
    served: tuple[Simulator, RawClient],
) -> None:
    sim, client = served
    sim.seed_history(alerts=400, duplicate_ratio=0.3)
    duplicate = sorted(sim.truth.duplicate_ids)[0]
    canonical = sorted(sim.truth.canonical_ids)[0]
    assert client.get("listCapabilities").status_code == 200
    assert client.post("archiveAlerts", ids=f"{duplicate},{canonical}").status_code == 200

    stats = _control(client.endpoint, "GET", "/_sim/stats?ids=1").json()

    assert stats["calls"] == {"listCapabilities": 1, "archiveAlerts": 1}
    assert stats["score"]["archived"] == 2
    assert stats["score"]["archived_duplicates"] == 1
    assert stats["score"]["wrong_archives"] == 1
    assert stats["score"]["wrong_canonicals"] == 1
    assert stats["score"]["missed_duplicates"] == len(sim.truth.duplicate_ids) - 1
    assert stats["archived_ids"] == sorted([duplicate, canonical])
    assert duplicate in stats["truth_duplicate_ids"]
    assert stats["live"] == len(sim.state.alerts.live)
    assert sum(stats["live_by_name"].values()) == stats["live"]
    assert sim.stats.calls.total() == 2  # the control request itself was not counted


def test_the_stats_reset_route_forgets_what_was_measured(
    served: tuple[Simulator, RawClient],
) -> None:
    sim, client = served
    assert client.get("listCapabilities").status_code == 200

    assert _control(client.endpoint, "POST", "/_sim/stats/reset").status_code == 200

    assert _control(client.endpoint, "GET", "/_sim/stats").json()["calls"] == {}
    assert not sim.stats.calls


def test_the_scenario_route_crashes_a_host_and_advances_the_virtual_clock(
    served: tuple[Simulator, RawClient],
) -> None:
    sim, client = served
    before = sim.clock.time()

    answer = _control(client.endpoint, "POST", "/_sim/scenario?name=host-crash&advance=400")

    assert answer.status_code == 200
    host = answer.json()["hosts"][0]
    assert sim.host(host).status != "Up"
    assert sim.clock.time() == before + 400
    assert len(sim.truth.failures) == 1
    advanced = _control(client.endpoint, "POST", "/_sim/advance?seconds=5000").json()
    assert advanced["steps"] > 0
    assert sim.host(host).status == "Up"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/_sim/scenario?name=meteor", 400),
        ("POST", "/_sim/advance?seconds=-1", 400),
        ("POST", "/_sim/advance?seconds=soon", 400),
        ("GET", "/_sim/scenario", 404),
        ("GET", "/_sim/nothing", 404),
    ],
)
def test_bad_control_requests_get_a_json_error(
    served: tuple[Simulator, RawClient], method: str, path: str, status: int
) -> None:
    sim, client = served

    answer = _control(client.endpoint, method, path)

    assert answer.status_code == status
    assert "error" in answer.json()
    assert not sim.truth.failures


def test_the_simulator_command_writes_its_stats_file_on_sigterm(tmp_path: Path) -> None:
    ini, stats_file = tmp_path / "sim.ini", tmp_path / "stats.json"
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", APP, "simulator", "--port", "0", "--write-ini", str(ini),
         "--alerts", "200", "--seed", "3", "--stats-file", str(stats_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if line.startswith("credentials:"):
                break
        section = configparser.ConfigParser()
        section.read(ini)
        client = RawClient(
            section["cloudstack"]["endpoint"],
            section["cloudstack"]["key"],
            section["cloudstack"]["secret"],
        )
        try:
            assert client.get("listCapabilities").status_code == 200
        finally:
            client.close()
        assert not stats_file.exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert f"stats written to {stats_file}" in output
    stats = json.loads(stats_file.read_text())
    assert stats["calls"] == {"listCapabilities": 1}
    assert stats["score"]["archived"] == 0
    assert stats["score"]["truth_duplicates"] == len(stats["truth_duplicate_ids"]) > 0
