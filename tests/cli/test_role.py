# mypy: allow-untyped-defs
"""The least-privilege role: exactly the APIs the sidecar calls, then deny everything else."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys

import pytest
import typer
from paths import ROOT
from typer.testing import CliRunner

from sidecar.cli.role import API_PURPOSE, ROLE_APIS, ROLE_TYPE, register, role_commands, role_json
from sidecar.model.constants import OPTIONAL_APIS, SIDECAR_APIS
from sidecar.support.errors import UserError

FAKE_CS = r'''#!{python}
"""Stands in for the cs CLI: logs its arguments, prints what CloudStack would answer."""
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_CS_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
command = [a for a in args if not a.startswith("--")][0]
answers = {{
    "createRole": {{"role": {{"id": "role-1", "name": "x", "type": "Admin"}}}},
    "createRolePermission": {{"rolepermission": {{"id": "perm"}}}},
    "createAccount": {{"account": {{"id": "acct-1", "user": [{{"id": "user-1"}}]}}}},
    "registerUserKeys": {{"userkeys": {{"apikey": "AK-generated", "secretkey": "SK-generated"}}}},
}}
print(json.dumps(answers[command], indent=2, sort_keys=True))
'''


@pytest.fixture
def app() -> typer.Typer:
    """A bare app with only the role command (the full CLI needs every module)."""
    application = typer.Typer()

    @application.callback()
    def _root() -> None:
        """Test root."""

    register(application)
    return application


def invoke(app: typer.Typer, *args: str):
    return CliRunner().invoke(app, ["role", *args])


def test_role_apis_are_exactly_the_apis_the_sidecar_calls():
    assert (*SIDECAR_APIS, *OPTIONAL_APIS) == ROLE_APIS
    assert len(set(ROLE_APIS)) == len(ROLE_APIS)


def test_every_role_api_exists_in_the_cloudstack_api_contract(fixtures_dir):
    contract = json.loads((fixtures_dir / "cloudstack-apis-4.18.json").read_text())
    known = {api["name"] for api in contract["api"]}
    assert set(ROLE_APIS) <= known, set(ROLE_APIS) - known


def test_every_role_api_says_why_it_is_needed():
    assert set(API_PURPOSE) == set(ROLE_APIS)
    assert all(API_PURPOSE[api].strip() for api in ROLE_APIS)


def test_the_role_is_admin_type_and_ends_with_deny_all():
    role = role_json()
    assert role["type"] == ROLE_TYPE == "Admin"
    rules = [(r["rule"], r["permission"]) for r in role["rules"]]
    assert rules[:-1] == [(api, "allow") for api in ROLE_APIS]
    assert rules[-1] == ("*", "deny")
    assert "listHosts" in role["why_admin"] and "archiveAlerts" in role["why_admin"]


def test_json_format_prints_the_role_as_data(app):
    result = invoke(app, "--format", "json", "--name", "sidecar-prod")
    assert result.exit_code == 0, result.output
    role = json.loads(result.output)
    assert role["name"] == "sidecar-prod"
    assert [r["rule"] for r in role["rules"]] == [*ROLE_APIS, "*"]


def test_table_format_lists_every_rule_and_explains_the_admin_type(app):
    result = invoke(app)
    assert result.exit_code == 0, result.output
    for api in ROLE_APIS:
        assert api in result.output
    assert "deny" in result.output
    assert "Type Admin" in result.output
    assert "--format cs" in result.output


def test_cs_format_creates_the_role_then_one_allow_per_api_then_deny_all(app):
    result = invoke(app, "--format", "cs")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    create = [line for line in lines if "createRole " in line]
    assert len(create) == 1 and "type=Admin" in create[0] and "name=cloudstack-sidecar" in create[0]
    perms = [shlex.split(line) for line in lines
             if line.startswith("cs --post createRolePermission")]
    assert [p[3:] for p in perms] == [
        *[["roleid=$ROLE_ID", f"rule={api}", "permission=allow"] for api in ROLE_APIS],
        ["roleid=$ROLE_ID", "rule=*", "permission=deny"],
    ]
    assert "registerUserKeys" in result.output and "getUserKeys" in result.output
    assert "createAccount" in result.output and 'roleid="$ROLE_ID"' in result.output


def test_cs_script_is_valid_shell():
    subprocess.run(["sh", "-n"], input=role_commands(), text=True, check=True)


def test_cs_script_runs_against_a_fake_cs_and_writes_the_credential_file(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "cs"
    fake.write_text(FAKE_CS.format(python=sys.executable))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    etc = tmp_path / "etc"
    script = role_commands("sidecar prod").replace("/etc/cloudstack-sidecar", str(etc))
    # Files in the working directory: an unquoted rule=* would be expanded by the shell.
    work = tmp_path / "work"
    work.mkdir()
    (work / "rule=a").write_text("")
    log = tmp_path / "cs.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_CS_LOG": str(log),
           "CLOUDSTACK_ENDPOINT": "https://ms.example:8080/client/api"}
    done = subprocess.run(["sh", "-c", script], cwd=work, env=env, text=True,
                          capture_output=True, check=False)
    assert done.returncode == 0, done.stderr

    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert all(call[0] == "--post" for call in calls)
    assert calls[0][1:4] == ["createRole", "name=sidecar prod", "type=Admin"]
    perms = [call[2:] for call in calls if call[1] == "createRolePermission"]
    assert perms[-1] == ["roleid=role-1", "rule=*", "permission=deny"]
    assert [p[1] for p in perms[:-1]] == [f"rule={api}" for api in ROLE_APIS]
    account = next(call for call in calls if call[1] == "createAccount")
    assert "roleid=role-1" in account
    password = next(a for a in account if a.startswith("password="))
    assert len(password) > len("password=") + 20
    assert calls[-1][1:] == ["registerUserKeys", "id=user-1"]

    ini = etc / "cloudstack.ini"
    assert ini.read_text().splitlines() == [
        "[cloudstack]",
        "endpoint = https://ms.example:8080/client/api",
        "key = AK-generated",
        "secret = SK-generated",
    ]
    assert stat.S_IMODE(ini.stat().st_mode) == 0o600
    assert "SK-generated" not in done.stdout + done.stderr  # the secret is never printed


def test_an_unknown_format_is_a_user_error(app):
    result = invoke(app, "--format", "yaml")
    assert isinstance(result.exception, UserError)
    assert "choose one of table, json, cs" in str(result.exception)


def test_an_empty_role_name_is_a_user_error(app):
    result = invoke(app, "--name", " ")
    assert isinstance(result.exception, UserError)
    assert "--name" in str(result.exception)


def test_role_description_is_quoted_for_the_shell():
    line = next(line for line in role_commands().splitlines() if "createRole " in line)
    assert "'description=Least privilege for cloudstack-sidecar" in line


def test_a_role_name_with_spaces_is_one_shell_word():
    line = next(line for line in role_commands("my role").splitlines() if "createRole " in line)
    assert "'name=my role'" in line


def test_the_script_writes_the_credential_file_the_unit_loads():
    path = "/etc/cloudstack-sidecar/cloudstack.ini"
    unit = (ROOT / "systemd" / "cloudstack-sidecar.service").read_text()
    assert f"LoadCredential=cloudstack.ini:{path}" in unit
    assert f"> {path}" in role_commands()


def test_role_db_prints_the_read_only_grants_and_the_one_update_merging_adds(
    app: typer.Typer,
) -> None:
    result = CliRunner().invoke(app, ["role", "--db", "--format", "json"])
    assert result.exit_code == 0, result.output
    grants = json.loads(result.output)
    assert all(g.startswith("GRANT SELECT ON `cloud`.") for g in grants["read-only"])
    assert grants["merging"] == [
        *grants["read-only"], "GRANT UPDATE (step, taken) ON `cloud`.`op_ha_work` TO 'sidecar'@'%';"
    ]
    text = CliRunner().invoke(app, ["role", "--db"]).output
    assert "GRANT UPDATE (step, taken)" in text and "ALL" not in text
