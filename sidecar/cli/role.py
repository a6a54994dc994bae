"""``cloudstack-sidecar role``: the least-privilege CloudStack role, and how to create it.

The role allows exactly the APIs the sidecar calls (``constants.SIDECAR_APIS``, then the
optional ``constants.OPTIONAL_APIS``) and ends with a ``*`` deny rule. CloudStack checks a
role's rules in order, first match wins; a call that no rule matches falls back to what the
role *type* allows by default (``DynamicRoleBasedAPIAccessChecker.checkApiPermissionByRole``),
so without the final deny an Admin-type role would get every admin API.

Usage::

    cloudstack-sidecar role                 # table of APIs and why
    cloudstack-sidecar role --format cs     # shell commands for an operator (cs CLI)
    cloudstack-sidecar role --format json   # machine-readable
"""

from __future__ import annotations

import json
import shlex
from typing import Any, Final

import typer

from sidecar.model.constants import OPTIONAL_APIS, SIDECAR_APIS
from sidecar.support.errors import UserError

#: The APIs the role allows, in the order their rules are created.
ROLE_APIS: Final[tuple[str, ...]] = (*SIDECAR_APIS, *OPTIONAL_APIS)

#: Role type. ``createRole type=`` accepts Admin, ResourceAdmin, DomainAdmin or User.
ROLE_TYPE: Final = "Admin"

DEFAULT_ROLE_NAME: Final = "cloudstack-sidecar"

#: Why each API is in the role (shown to the operator who grants it).
API_PURPOSE: Final[dict[str, str]] = {
    "listApis": "start-up check that this role grants every API the sidecar needs",
    "listCapabilities": "read the CloudStack version (the defect affects 4.19.0-4.19.2, 4.20.0)",
    "listHosts": "host states: find failed hosts and when they went Down (admin API)",
    "listVirtualMachines": "HA-enabled VMs of failed hosts and where they run now "
    "(the admin view carries hostid)",
    "listAlerts": "read the HA, host and VM alerts to find duplicates (admin API)",
    "archiveAlerts": "archive duplicate alerts: the only call that changes anything "
    "(admin API; alerts are archived, never deleted)",
    "listConfigurations": "optional: read ping.interval, ping.timeout and kvm.ha.* to know how "
    "soon CloudStack can report a host down (without it: the sidecar's settings)",
}

WHY_ADMIN: Final = (
    "Type Admin: listHosts, listAlerts and archiveAlerts are admin APIs on system-wide objects "
    "(hosts and alerts belong to no account), and CloudStack gives the admin view of "
    "listVirtualMachines (hostid) only to Admin-type roles. The type sets the scope; the "
    "allow rules narrow it to exactly these APIs."
)

WHY_DENY_ALL: Final = (
    "The last rule denies '*': rules are checked in order and the first match wins, and an "
    "API no rule matches falls back to everything the Admin type allows by default."
)

FORMATS: Final = ("table", "json", "cs")


def role_rules() -> list[dict[str, str]]:
    """The role's permission rules in creation order: one allow per API, then deny ``*``."""
    rules = [
        {"rule": api, "permission": "allow", "description": API_PURPOSE[api]} for api in ROLE_APIS
    ]
    rules.append({"rule": "*", "permission": "deny", "description": "everything else"})
    return rules


def role_description() -> str:
    return "Least privilege for cloudstack-sidecar: read hosts, VMs and alerts; archive duplicates"


def role_json(name: str = DEFAULT_ROLE_NAME) -> dict[str, Any]:
    """The role as data: name, type, description, ordered rules and the reasons."""
    return {
        "name": name,
        "type": ROLE_TYPE,
        "description": role_description(),
        "rules": role_rules(),
        "why_admin": WHY_ADMIN,
        "why_deny_all": WHY_DENY_ALL,
    }


def _json_field(*path: str | int) -> str:
    """A python3 one-liner printing one field of the JSON cs writes (no jq needed)."""
    index = "".join(f"[{key!r}]".replace("'", '"') for key in path)
    return f"python3 -c 'import json,sys; print(json.load(sys.stdin){index})'"


def _comment(text: str, width: int = 96) -> list[str]:
    import textwrap

    return [f"# {line}" for line in textwrap.wrap(text, width - 2)]


def role_commands(name: str = DEFAULT_ROLE_NAME) -> str:
    """A shell script of ``cs`` commands creating the role, an account and its API keys."""
    q = shlex.quote
    lines = [
        "#!/bin/sh",
        f"# Least-privilege CloudStack role for cloudstack-sidecar ({len(ROLE_APIS)} APIs).",
        "# Run as a root admin with cs configured (~/.cloudstack.ini or CLOUDSTACK_* variables).",
        "# --post keeps parameters (the account password) out of URLs and proxy logs.",
        *_comment(WHY_ADMIN),
        "set -eu",
        "",
        "# 1. The role. cs prints the new role as JSON; keep its id.",
        f"ROLE_ID=$(cs --post createRole {q('name=' + name)} type={ROLE_TYPE} "
        f"{q('description=' + role_description())} \\",
        f"    | {_json_field('role', 'id')})",
        "",
        "# 2. Its rules, in this order: one allow per API the sidecar calls ...",
    ]
    for rule in role_rules()[:-1]:
        lines.append(
            f'cs --post createRolePermission roleid="$ROLE_ID" rule={rule["rule"]} '
            "permission=allow"
        )
    lines += [
        "# ... then deny everything else (quoted so the shell does not expand it).",
        *_comment(WHY_DENY_ALL),
        "cs --post createRolePermission roleid=\"$ROLE_ID\" 'rule=*' permission=deny",
        "",
        "# 3. An account in that role, used only through API keys: its password is random and",
        "#    never shown.",
        f"USER_ID=$(cs --post createAccount roleid=\"$ROLE_ID\" {q('username=' + name)} "
        f"{q('account=' + name)} \\",
        f"    {q('email=' + name + '@localhost')} firstname=cloudstack lastname=sidecar \\",
        "    \"password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')\" \\",
        f"    | {_json_field('account', 'user', 0, 'id')})",
        "",
        "# 4. API key and secret for that user, written straight into the credential file the",
        "#    systemd unit loads (LoadCredential=), readable by root only. Set",
        "#    CLOUDSTACK_ENDPOINT first, or edit the endpoint line afterwards.",
        "#    To read the keys again later: cs getUserKeys id=\"$USER_ID\"",
        "umask 077",
        "mkdir -p /etc/cloudstack-sidecar",
        "cs --post registerUserKeys id=\"$USER_ID\" | python3 -c '",
        "import json, os, sys",
        "keys = json.load(sys.stdin)[\"userkeys\"]",
        "print(\"[cloudstack]\")",
        "print(\"endpoint = \" + os.environ.get(\"CLOUDSTACK_ENDPOINT\",",
        "                                     \"https://cloudstack.example:8080/client/api\"))",
        "print(\"key = \" + keys[\"apikey\"])",
        "print(\"secret = \" + keys[\"secretkey\"])",
        "' > /etc/cloudstack-sidecar/cloudstack.ini",
        "echo \"role $ROLE_ID, user $USER_ID: keys in /etc/cloudstack-sidecar/cloudstack.ini\"",
    ]
    return "\n".join(lines) + "\n"


def print_table(name: str = DEFAULT_ROLE_NAME) -> None:
    """The role as a rich table with the reasons, for reading."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    table = Table(title=f"CloudStack role {escape(repr(name))} (type {ROLE_TYPE})",
                  title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("rule")
    table.add_column("permission")
    table.add_column("why")
    for index, rule in enumerate(role_rules(), start=1):
        table.add_row(str(index), *map(escape, (rule["rule"], rule["permission"],
                                                rule["description"])))
    console.print(table)
    console.print(WHY_ADMIN, markup=False)
    console.print(WHY_DENY_ALL, markup=False)
    console.print(
        "Create it, an account in it and its API keys with the commands of "
        "`cloudstack-sidecar role --format cs`.",
        markup=False,
    )


def print_db_grants(*, json_format: bool) -> None:
    """The GRANTs for ``cloud_db_url``'s user: read-only, and with merging (cloudstack.md §8.4)."""
    # Imported here: it loads SQLAlchemy, which `role --help` does not need.
    from sidecar.clouddb.schema import grant_statements

    grants = grant_statements()
    if json_format:
        typer.echo(json.dumps(grants, indent=2))
        return
    typer.echo("-- Read-only (report, check, the HA queue view; merge_ha_work off):")
    typer.echo("\n".join(grants["read-only"]))
    typer.echo("-- Merging (merge_ha_work or cleanup --apply --ha-work): the same, plus")
    typer.echo(grants["merging"][-1])


def role_command(
    fmt: str = typer.Option("table", "--format", "-f", help="table, json or cs (shell commands)."),
    name: str = typer.Option(DEFAULT_ROLE_NAME, "--name", help="Name of the CloudStack role."),
    db: bool = typer.Option(False, "--db", help="Print the least-privilege GRANTs on "
                            "CloudStack's database instead (read-only; merging)."),
) -> None:
    """Print the least-privilege CloudStack role the sidecar needs, and how to create it."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if db:
        print_db_grants(json_format=fmt == "json")
        return
    if not name.strip():
        raise UserError("the role name is empty: pass --name with a name, e.g. cloudstack-sidecar")
    if fmt == "json":
        typer.echo(json.dumps(role_json(name), indent=2))
    elif fmt == "cs":
        typer.echo(role_commands(name), nl=False)
    else:
        print_table(name)


def register(app: typer.Typer) -> None:
    app.command("role")(role_command)


__all__ = ["API_PURPOSE", "ROLE_APIS", "ROLE_TYPE", "register", "role_commands", "role_json",
           "role_rules"]
