"""``cloudstack-sidecar simulator``: the credentials file, user errors, and a real run."""

from __future__ import annotations

import configparser
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from simkit import RawClient
from typer.testing import CliRunner

from sidecar.errors import UserError
from sidecar.simulator.cli import register, write_ini

APP = """
import typer
from sidecar.simulator.cli import register
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
    ],
)
def test_bad_options_are_one_line_user_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli_app(), ["simulator", *args])
    assert isinstance(result.exception, UserError)
    assert message in str(result.exception)
    assert "\n" not in str(result.exception)


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
