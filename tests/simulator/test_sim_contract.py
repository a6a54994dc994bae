"""The simulator serves no parameter or response field that CloudStack 4.18 does not have (but
for a listed few added later), and lists alerts in upstream's order."""

from __future__ import annotations

import json
import random
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from simkit import body, invoke

from cloudstack_simulator import PROFILES, Simulator
from cloudstack_simulator.api import COMMANDS
from cloudstack_simulator.apispec import APIS

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "cloudstack-apis-4.18.json"
RECORDED_HOSTS = Path(__file__).resolve().parents[2] / "fixtures" / "recorded" / "listHosts.json"


#: (command, name) of parameters and response fields added after 4.18, with the release that
#: added them (ListEventsCmd ``archived`` since 4.19.0, and EventResponse's ``archived``).
AFTER_4_18 = {("listEvents", "archived"): "4.19.0"}


def upstream() -> dict[str, dict[str, Any]]:
    return {api["name"]: api for api in json.loads(FIXTURE.read_text())["api"]}


def release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:3])


def test_every_profile_has_what_was_added_after_4_18() -> None:
    for since in AFTER_4_18.values():
        assert all(release(p.version) >= release(since) for p in PROFILES.values())


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
        if (command, param["name"]) in AFTER_4_18:
            assert param["name"] not in theirs, "upstream in 4.18 after all: drop it from the list"
            assert param["since"] == AFTER_4_18[(command, param["name"])]
            continue
        assert param["name"] in theirs, f"{command}: {param['name']} is not an upstream parameter"
        assert param == {k: theirs[param["name"]][k] for k in param}, f"{command}.{param['name']}"


@pytest.mark.parametrize("command", sorted(APIS))
def test_declared_response_fields_are_upstream_fields(command: str) -> None:
    ours = field_tree(APIS[command]["response"])
    theirs = field_tree(upstream()[command]["response"])
    for later_command, name in AFTER_4_18:
        if later_command == command and name in ours:
            assert name not in theirs, "upstream in 4.18 after all: drop it from the list"
            theirs[name] = ours[name]
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


# --- listAlerts order ------------------------------------------------------------------------


def tied_history(tie_order: str) -> Simulator:
    """Seeded history plus many groups of alerts sent in the same second."""
    sim = Simulator(seed=5, hosts=4, vms_per_host=3, tie_order=tie_order)
    sim.seed_history(alerts=300)
    rng = random.Random(5)
    for group in range(80):
        for member in range(rng.choice([1, 2, 2, 3, 5, 8])):
            sim.emit_alert(
                "ALERT.MANAGEMENT", f"Management server node 10.1.{group}.{member} is up"
            )
        sim.clock.advance(rng.choice([1, 1, 2, 60]))
    return sim


def sweep(sim: Simulator, size: int) -> list[list[dict[str, Any]]]:
    """Every page of listAlerts at ``size`` per page, as a client walks them."""
    pages: list[list[dict[str, Any]]] = []
    while True:
        status, payload = invoke(sim, "listAlerts", page=len(pages) + 1, pagesize=size)
        assert status == 200, payload
        items = body(payload).get("alert", [])
        if not items:
            return pages
        pages.append(items)


def sent(item: dict[str, Any]) -> datetime:
    return datetime.strptime(item["sent"], "%Y-%m-%dT%H:%M:%S%z")


SIZES = [2, 3, 7, 50, 500]


@pytest.mark.parametrize("size", SIZES)
def test_with_a_stable_tie_order_a_sweep_lists_every_alert_once_newest_first(size: int) -> None:
    sim = tied_history("stable")
    truth = [a["id"] for a in sim.alerts_as_api()]
    pages = sweep(sim, size)
    for page in pages:
        assert [sent(a) for a in page] == sorted((sent(a) for a in page), reverse=True)
    assert [a["id"] for page in pages for a in page] == truth


def cut_groups(truth: list[dict[str, Any]], size: int) -> set[str]:
    """The ``sent`` values whose alerts a page edge splits over two pages."""
    pages_of: dict[str, set[int]] = {}
    for position, alert in enumerate(truth):
        pages_of.setdefault(alert["sent"], set()).add(position // size)
    return {value for value, pages in pages_of.items() if len(pages) > 1}


def ids_by_sent(alerts: list[dict[str, Any]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for alert in alerts:
        out.setdefault(alert["sent"], set()).add(alert["id"])
    return out


@pytest.mark.parametrize("size", SIZES)
def test_tied_alerts_trade_places_only_among_themselves_across_a_sweep(size: int) -> None:
    sim = tied_history("shuffle")
    truth = sim.alerts_as_api()
    groups = ids_by_sent(truth)
    assert sum(1 for ids in groups.values() if len(ids) > 1) >= 60  # the history has many ties
    cut = cut_groups(truth, size)
    assert cut or size == 500
    for _ in range(3):  # every request orders ties anew
        pages = sweep(sim, size)
        for page in pages:
            assert [sent(a) for a in page] == sorted((sent(a) for a in page), reverse=True)
        seen = [a for page in pages for a in page]
        # Position by position the sent of upstream's order: a row never crosses one with
        # another sent, so an alert of a unique sent, or of a group no page edge cuts, is seen
        # exactly once; a cut group may show one of its rows twice and another not at all.
        assert [a["sent"] for a in seen] == [a["sent"] for a in truth]
        for value, ids in ids_by_sent(seen).items():
            if value in cut:
                assert ids <= groups[value]
            else:
                assert ids == groups[value]
