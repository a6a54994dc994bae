"""The simulator serves no parameter or response field that CloudStack 4.18 does not have."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from simkit import body, invoke

from cloudstack_simulator import Simulator
from cloudstack_simulator.api import COMMANDS
from cloudstack_simulator.apispec import APIS

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "cloudstack-apis-4.18.json"
RECORDED_HOSTS = Path(__file__).resolve().parents[2] / "fixtures" / "recorded" / "listHosts.json"


def upstream() -> dict[str, dict[str, Any]]:
    return {api["name"]: api for api in json.loads(FIXTURE.read_text())["api"]}


def field_tree(fields: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """name -> {"type": …, "children": {...}} of a response description."""
    out: dict[str, dict[str, Any]] = {}
    for item in fields:
        if "name" not in item:
            continue
        out[item["name"]] = {
            "type": item.get("type"),
            "children": field_tree(item.get("response", [])),
        }
    return out


def assert_subtree(ours: dict[str, Any], theirs: dict[str, Any], where: str) -> None:
    for name, spec in ours.items():
        assert name in theirs, f"{where}.{name} is not an upstream response field"
        assert spec["type"] == theirs[name]["type"], f"{where}.{name} has another type"
        assert_subtree(spec["children"], theirs[name]["children"], f"{where}.{name}")


def test_every_served_command_exists_in_the_4_18_api() -> None:
    assert set(COMMANDS) == set(APIS)
    assert set(APIS) <= set(upstream())


@pytest.mark.parametrize("command", sorted(APIS))
def test_declared_parameters_are_upstream_parameters(command: str) -> None:
    theirs = {p["name"]: p for p in upstream()[command]["params"]}
    for param in APIS[command]["params"]:
        assert param["name"] in theirs, f"{command}: {param['name']} is not an upstream parameter"
        assert param == {k: theirs[param["name"]][k] for k in param}, f"{command}.{param['name']}"


@pytest.mark.parametrize("command", sorted(APIS))
def test_declared_response_fields_are_upstream_fields(command: str) -> None:
    ours = field_tree(APIS[command]["response"])
    theirs = field_tree(upstream()[command]["response"])
    assert_subtree(ours, theirs, command)


# --- what is actually sent ------------------------------------------------------------------

#: Objects the 4.18 description types without listing their members: checked against the
#: upstream description of the same object elsewhere (or a recorded body).
NESTED = {
    ("listHosts", "hostha"): lambda: set(field_tree(upstream()["listHostHAResources"]["response"])),
    ("listHosts", "outofbandmanagement"): lambda: set(
        json.loads(RECORDED_HOSTS.read_text())["listhostsresponse"]["host"][0][
            "outofbandmanagement"
        ]
    ),
}
FREE_FORM = {
    ("queryAsyncJobResult", "jobresult"),
    ("listAsyncJobs", "jobresult"),
    ("listVirtualMachines", "details"),
    # listApis describes nested response fields recursively with the same item shape.
    ("listApis.response", "response"),
}


def served_items(sim: Simulator, command: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    status, payload = invoke(sim, command, **params)
    assert status == 200, payload
    inner = body(payload)
    if command == "listCapabilities":
        return [inner["capability"]]
    if command in ("archiveAlerts", "deleteAlerts", "queryAsyncJobResult"):
        return [inner]
    items = [v for k, v in inner.items() if k != "count"]
    assert len(items) == 1, f"{command} answered without items: {inner}"
    return items[0]


def check_item(command: str, item: dict[str, Any], tree: dict[str, Any]) -> None:
    for name, value in item.items():
        assert name in tree, f"{command} sends {name!r}, which its 4.18 description lacks"
        if (command, name) in FREE_FORM:
            continue
        if (command, name) in NESTED:
            assert set(value) <= NESTED[(command, name)](), f"{command}.{name}: {value}"
        elif isinstance(value, dict):
            check_item(f"{command}.{name}", value, tree[name]["children"])
        elif isinstance(value, list):
            for member in value:
                check_item(f"{command}.{name}", member, tree[name]["children"])


@pytest.fixture(scope="module")
def busy() -> Simulator:
    sim = Simulator(profile="4.20.1", seed=3, hosts=6, vms_per_host=3)
    sim.seed_history(alerts=300)
    sim.run_scenario("host-crash", recover_after=None)
    return sim


def test_every_field_actually_sent_is_declared_and_upstream(busy: Simulator) -> None:
    alert = busy.alerts_as_api()[0]["id"]
    job = busy.state.jobs[1].uuid
    calls: dict[str, dict[str, Any]] = {
        "listAlerts": {},
        "archiveAlerts": {"ids": alert},
        "deleteAlerts": {"ids": busy.alerts_as_api()[1]["id"]},
        "listHosts": {},
        "listVirtualMachines": {"listall": True},
        "listEvents": {"listall": True},
        "listAsyncJobs": {"listall": True},
        "queryAsyncJobResult": {"jobid": job},
        "listHostHAResources": {},
        "listHostHAProviders": {"hypervisor": "KVM"},
        "listCapabilities": {},
        "listApis": {},
        "listZones": {},
        "listClusters": {},
        "listConfigurations": {},
    }
    assert set(calls) == set(APIS)
    for command, params in calls.items():
        tree = field_tree(APIS[command]["response"])
        for item in served_items(busy, command, params):
            check_item(command, item, tree)


def test_list_apis_items_are_shaped_like_the_fixture(busy: Simulator) -> None:
    items = served_items(busy, "listApis", {})
    fixture = upstream()
    for item in items:
        assert set(item) <= set(fixture[item["name"]]) | {"since"}
        assert item["isasync"] == fixture[item["name"]]["isasync"]
