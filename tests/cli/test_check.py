"""``cloudstack-sidecar check`` against respx: all well, wrong secret, missing APIs, skew."""

from __future__ import annotations

import json
import re
from datetime import datetime
from email.utils import formatdate
from pathlib import Path

import httpx
import pytest
import respx
import typer
from paths import FIXTURES
from typer.testing import CliRunner

import sidecar.cli.check
from sidecar.cli.check import register
from sidecar.cloudstack.signing import sign
from sidecar.ops.check import is_affected

ENDPOINT = "http://127.0.0.1:8080/client/api"
KEY = "check-test-key-0001"
SECRET = "check-test-secret-0001"
WALL = 1_700_000_000.0


def make_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test root: keeps ``check`` a subcommand."""

    register(app)
    return app


def capabilities(version: str = "4.19.2.0") -> dict:
    data = json.loads((FIXTURES / "constructed" / "listCapabilities.json").read_text())
    data.pop("_constructed")
    data["listcapabilitiesresponse"]["capability"]["cloudstackversion"] = version
    return data


def all_apis() -> dict:
    return {"listapisresponse": json.loads((FIXTURES / "cloudstack-apis-4.18.json").read_text())}


class Server:
    """Verifies signatures, and ``expires`` against its own clock (WALL + skew): refused once
    past, or (``enforce``, 4.21+) more than 15 minutes ahead. Upstream's Jetty sends no Date
    header; this one does only when told (``date``, a proxy in front)."""

    def __init__(self, *, skew: float = 0.0, version: str = "4.19.2.0", apis: dict | None = None,
                 date: bool = False, enforce: bool = False):
        self.skew = skew
        self.version = version
        self.apis = apis or all_apis()
        self.date = date
        self.enforce = enforce
        self.calls: list[str] = []

    def accepts(self, params: dict[str, str]) -> bool:
        now = WALL + self.skew
        expires = datetime.strptime(params["expires"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
        return expires >= now and not (self.enforce and expires > now + 900)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        signature = params.pop("signature")
        self.calls.append(params["command"])
        headers = {"Date": formatdate(WALL + self.skew, usegmt=True)} if self.date else {}
        if sign(params, SECRET) != signature or not self.accepts(params):
            return httpx.Response(
                401,
                json={
                    "errorresponse": {
                        "uuidList": [],
                        "errorcode": 401,
                        "errortext": "unable to verify user credentials and/or request signature",
                    }
                },
                headers=headers,
            )
        if params["command"] == "listCapabilities":
            return httpx.Response(200, json=capabilities(self.version), headers=headers)
        return httpx.Response(200, json=self.apis, headers=headers)


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("CLOUDSTACK_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("CLOUDSTACK_KEY", KEY)
    monkeypatch.setenv("CLOUDSTACK_SECRET", SECRET)
    monkeypatch.setenv("SIDECAR_MAX_RETRIES", "0")  # a failing check must not back off for real
    monkeypatch.setattr(sidecar.cli.check, "_wall_clock", lambda: WALL)


def invoke(server: Server, *args: str):
    with respx.mock() as mock:
        mock.get(ENDPOINT).mock(side_effect=server)
        result = CliRunner().invoke(make_app(), ["check", *args])
    return result


def shown_skew(stdout: str) -> int:
    """The signed seconds of the table's clock-skew row."""
    match = re.search(r"clock skew\s*│\s*([+-]\d+) s", stdout)
    assert match, stdout
    return int(match.group(1))


def test_all_well_exits_0_and_prints_version_and_a_skew_measured_without_a_date_header(env):
    server = Server(skew=3)
    result = invoke(server)
    assert result.exit_code == 0, result.output
    assert "4.19.2.0" in result.stdout
    assert abs(shown_skew(result.stdout) - 3) <= 1
    assert "ahead of this host" in result.stdout and "signed calls" in result.stdout
    assert "all 6 allowed" in result.stdout
    assert "all checks passed" in result.stdout
    # The version, the probes (a few, all listCapabilities), listApis.
    probes = server.calls[1:-1]
    assert set(probes) == {"listCapabilities"} and len(probes) <= 5  # +0.5, +8.5, bisect


def test_a_right_date_header_lets_two_probes_confirm_the_skew(env):
    server = Server(skew=-40, date=True)
    result = invoke(server, "--format", "json")
    data = json.loads(result.stdout)
    assert abs(data["clock_skew"] + 40) <= 1 and data["skew_source"] == "signature"
    low, high = data["skew_bounds"]
    assert data["skew_probes"] == 2 and low < -40 <= high and high - low <= 2


def test_json_output_has_every_finding(env):
    result = invoke(Server(skew=-12, version="4.20.1.0"), "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True
    assert data["version"] == "4.20.1.0"
    assert data["affected"] is False
    assert abs(data["clock_skew"] + 12) <= 1 and data["skew_source"] == "signature"
    assert data["missing_apis"] == []
    assert data["credentials_ok"] and data["reachable"]
    assert KEY not in result.stdout and SECRET not in result.stdout


def test_a_wrong_secret_exits_non_zero_with_one_line_naming_what_the_probe_ruled_out(
    env, monkeypatch
):
    monkeypatch.setenv("CLOUDSTACK_SECRET", "not-the-secret-0001")
    server = Server(skew=734, date=True)
    result = invoke(server)
    assert result.exit_code == 5
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    line = lines[0]
    assert line.startswith("error: listCapabilities at 127.0.0.1:8080")
    assert "wrong API key or secret" in line and "clock skew beyond what was probed" in line
    assert "its Date header says the server clock is 734 s ahead of this host" in line
    assert "not-the-secret-0001" not in result.output and KEY not in result.output
    assert result.stdout == ""
    assert len(server.calls) == 1 + 4  # the call; the probe asks again, then tries 3 windows


def test_a_server_clock_far_ahead_is_named_as_the_cause_of_the_401(env):
    result = invoke(Server(skew=905))
    assert result.exit_code == 5
    (line,) = result.stderr.strip().splitlines()
    match = re.search(r"your key works; the server clock is (\d+) s ahead of this host: fix NTP",
                      line)
    assert match, line
    assert abs(int(match.group(1)) - 905) <= 1


def test_a_wrong_secret_in_json_mode_reports_the_error(env, monkeypatch):
    monkeypatch.setenv("CLOUDSTACK_SECRET", "not-the-secret-0001")
    result = invoke(Server(), "--format", "json")
    assert result.exit_code == 5
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["credentials_ok"] is False
    assert "credentials" in data["error"]


def test_missing_apis_are_named_and_fail_the_check(env):
    apis = all_apis()
    apis["listapisresponse"]["api"] = [
        a for a in apis["listapisresponse"]["api"] if a["name"] != "archiveAlerts"
    ]
    result = invoke(Server(apis=apis))
    assert result.exit_code == 1
    assert "not allowed: archiveAlerts" in result.stdout
    assert "problems found" in result.stdout


def test_a_large_clock_skew_fails_the_check(env):
    result = invoke(Server(skew=-400), "--format", "json")
    data = json.loads(result.stdout)
    assert result.exit_code == 1
    assert abs(data["clock_skew"] + 400) <= 1
    assert data["skew_ok"] is False and data["ok"] is False


def test_an_unreachable_endpoint_is_one_line(env):
    with respx.mock() as mock:
        mock.get(ENDPOINT).mock(side_effect=httpx.ConnectError("[Errno 111] Connection refused"))
        result = CliRunner().invoke(make_app(), ["check"])
    assert result.exit_code == 5
    assert len(result.stderr.strip().splitlines()) == 1
    assert "cannot reach http://127.0.0.1:8080/client/api" in result.stderr


def test_missing_configuration_is_one_line_with_the_fix():
    result = CliRunner().invoke(make_app(), ["check"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no CloudStack credentials found")
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_region_option_selects_an_ini_section(monkeypatch):
    ini = Path.home() / ".cloudstack.ini"
    ini.write_text(
        f"[cloudstack]\nendpoint = http://127.0.0.1:9/client/api\nkey = x0001\nsecret = y0001\n"
        f"[lab]\nendpoint = {ENDPOINT}\nkey = {KEY}\nsecret = {SECRET}\n"
    )
    ini.chmod(0o600)
    monkeypatch.setattr(sidecar.cli.check, "_wall_clock", lambda: WALL)
    result = invoke(Server(), "--region", "lab")
    assert result.exit_code == 0, result.output
    assert "(lab)" in result.stdout


def test_ini_section_names_are_shown_literally_not_taken_as_markup(monkeypatch):
    ini = Path.home() / ".cloudstack.ini"
    # configparser reads "[[red]lab]" as the section "[red]lab": rich markup, were it not escaped.
    section = f"endpoint = {ENDPOINT}\nkey = {KEY}\nsecret = {SECRET}\n"
    ini.write_text(f"[cloudstack]\n{section}[[red]lab]\n{section}")
    ini.chmod(0o600)
    monkeypatch.setattr(sidecar.cli.check, "_wall_clock", lambda: WALL)
    result = invoke(Server(), "--region", "[red]lab")
    assert result.exit_code == 0, result.output
    assert "check ([red]lab)" in result.stdout
    assert "│ [[red]lab] of " in result.stdout
    default = invoke(Server(), "--region", "cloudstack")
    assert "│ [cloudstack] of " in default.stdout


def test_an_unknown_format_is_refused(env):
    result = CliRunner().invoke(make_app(), ["check", "--format", "xml"])
    assert result.exit_code == 2
    assert "unknown format 'xml'" in result.stderr


@pytest.mark.parametrize(
    ("version", "affected"),
    [
        ("4.19.0.0", True),
        ("4.19.2.0", True),
        ("4.19.3.0", False),
        ("4.20.0.0", True),
        ("4.20.0.0-SNAPSHOT", True),
        ("4.20.1.0", False),
        ("4.21.0.0", False),
        ("4.18.2.4", False),
        ("unknown", None),
        ("", None),
    ],
)
def test_affected_releases_are_recognised(version, affected):
    assert is_affected(version) is affected
