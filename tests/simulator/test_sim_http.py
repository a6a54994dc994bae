"""The servlet surface: error JSON and headers, auth order, roles, XML default, list commands."""

from __future__ import annotations

import ipaddress
import json
import socket
from datetime import timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from simkit import RawClient, body, invoke, wire

from cloudstack_simulator import PROFILES, Simulator
from sidecar.model.constants import UNAUTHORIZED_TEXT

ROLE_TEXT = "The given command 'listAlerts' either does not exist, is not available for user."
RECORDED_VMS = (
    Path(__file__).resolve().parents[2] / "fixtures" / "recorded" / "listVirtualMachines.json"
)


def test_an_error_answer_has_cloudstacks_json_status_and_headers(
    served: tuple[Simulator, RawClient],
) -> None:
    sim, client = served
    alert = sim.emit_alert("ALERT.USERVM", "HA starting VM: web-001 (i-4-1-VM)")
    assert client.post("archiveAlerts", ids=alert).status_code == 200
    response = client.post("archiveAlerts", ids=alert)
    text = "Unable to archive Alerts, one or more parameters has invalid values"
    assert response.status_code == 530
    assert response.json() == {
        "archivealertsresponse": {
            "uuidList": [],
            "errorcode": 530,
            "cserrorcode": 9999,
            "errortext": text,
        }
    }
    assert response.headers["X-Description"] == text
    assert response.headers["Content-Type"] == "application/json; charset=UTF-8"


def test_answers_carry_neither_a_date_nor_a_server_header(
    served: tuple[Simulator, RawClient],
) -> None:
    _, client = served
    for response in (
        client.get("listZones"),
        client.get("listZones", secret="wrong"),
        client.http.get(client.endpoint.replace("/client/api", "/client/")),
    ):
        assert response.status_code in (200, 401, 404)
        assert "Date" not in response.headers and "Server" not in response.headers


def test_with_send_date_the_date_header_comes_from_the_virtual_clock() -> None:
    sim = Simulator(hosts=1, vms_per_host=1, send_date=True)
    with sim.serve() as endpoint:
        client = RawClient(endpoint, sim.key, sim.secret)
        try:
            first = parsedate_to_datetime(client.get("listZones").headers["Date"])
            assert first == sim.now()
            sim.clock.advance(7200)
            second = parsedate_to_datetime(client.get("listZones").headers["Date"])
            assert "Server" not in client.get("listZones").headers
        finally:
            client.close()
    assert (second - first).total_seconds() == 7200


def raw_exchange(endpoint: str, request: bytes) -> bytes:
    """Send ``request`` bytes as they are; everything the server answers until it closes."""
    url = urlsplit(endpoint)
    with socket.create_connection((url.hostname, url.port), timeout=10) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def get_of_size(endpoint: str, size: int, *, header: str = "") -> bytes:
    """A GET of ``/client/api`` whose request line and headers are exactly ``size`` bytes."""
    head = f"Host: {urlsplit(endpoint).netloc}\r\nConnection: close\r\n{header}\r\n"
    line = "GET /client/api?command=listZones&response=json&pad= HTTP/1.1\r\n"
    pad = "x" * (size - len(line) - len(head))
    return f"GET /client/api?command=listZones&response=json&pad={pad} HTTP/1.1\r\n{head}".encode()


def test_a_get_whose_uri_passes_8_kib_gets_jettys_414_before_the_api_sees_it(
    served: tuple[Simulator, RawClient],
) -> None:
    sim, client = served
    at_limit = raw_exchange(client.endpoint, get_of_size(client.endpoint, 8192))
    # Unsigned: the API answers 401, so a 414 below proves the API never saw the request.
    assert at_limit.startswith(b"HTTP/1.1 401 ")
    # Request line and headers are under 100 bytes but the URI: the URI alone passes 8 KiB.
    answer = raw_exchange(client.endpoint, get_of_size(client.endpoint, 8192 + 100))
    head, _, page = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "HTTP/1.1 414 URI Too Long"
    assert sorted(lines[1:]) == [
        "Connection: close",
        f"Content-Length: {len(page)}",
        "Content-Type: text/html;charset=iso-8859-1",
    ]
    assert page == b"<h1>Bad Message 414</h1><pre>reason: URI Too Long</pre>"
    assert sim.stats.statuses["listZones"] == {401: 1}
    assert sim.stats.statuses["-"] == {414: 1}


def test_headers_that_pass_8_kib_after_a_short_uri_get_jettys_431(
    served: tuple[Simulator, RawClient],
) -> None:
    _, client = served
    padding = f"X-Padding: {'y' * 8000}\r\n"
    at_limit = raw_exchange(client.endpoint, get_of_size(client.endpoint, 8192, header=padding))
    assert at_limit.startswith(b"HTTP/1.1 401 ")
    answer = raw_exchange(client.endpoint, get_of_size(client.endpoint, 8193, header=padding))
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert answer.endswith(b"<pre>reason: Request Header Fields Too Large</pre>")


def test_a_long_call_that_gets_414_by_get_succeeds_by_post(
    served: tuple[Simulator, RawClient],
) -> None:
    _, client = served
    long = {"padding": "z" * 9000}  # not a listZones parameter: signed, then ignored
    assert client.get("listZones", **long).status_code == 414
    response = client.post("listZones", **long)
    assert response.status_code == 200
    assert body(response.json())["count"] == 1
    assert len(wire(client.signed("listZones", **long).items())) > 9000


def test_a_bad_signature_gets_the_plain_servlet_401(served: tuple[Simulator, RawClient]) -> None:
    _, client = served
    response = client.get("listHosts", secret="wrong")
    assert response.status_code == 401
    assert response.json() == {
        "listhostsresponse": {"uuidList": [], "errorcode": 401, "errortext": UNAUTHORIZED_TEXT}
    }
    # verifyRequest returning false is not a ServerApiException: no X-Description.
    assert "X-Description" not in response.headers


def test_an_unknown_key_gets_401(served: tuple[Simulator, RawClient]) -> None:
    sim, client = served
    stranger = RawClient(client.endpoint, "no-such-key", sim.secret)
    try:
        assert stranger.get("listZones").status_code == 401
    finally:
        stranger.close()


def test_a_command_that_does_not_exist_gets_401_as_errorresponse(
    served: tuple[Simulator, RawClient],
) -> None:
    _, client = served
    response = client.get("listFrobnicators")
    assert response.status_code == 401
    assert response.json() == {
        "errorresponse": {"uuidList": [], "errorcode": 401, "errortext": UNAUTHORIZED_TEXT}
    }


def test_command_names_are_case_sensitive(served: tuple[Simulator, RawClient]) -> None:
    _, client = served
    assert client.get("listzones").status_code == 401


def test_a_request_without_signature_or_api_key_gets_401(
    served: tuple[Simulator, RawClient],
) -> None:
    _sim, client = served
    params = client.signed("listZones")
    for missing in ("signature", "apiKey"):
        partial = {k: v for k, v in params.items() if k != missing}
        assert client.send_params(partial).status_code == 401


def test_a_role_without_the_command_gets_the_role_401(served: tuple[Simulator, RawClient]) -> None:
    sim, client = served
    key, secret = sim.create_key({"listZones", "listApis"})
    limited = RawClient(client.endpoint, key, secret)
    try:
        response = limited.get("listAlerts")
        assert response.status_code == 401
        assert response.json() == {
            "listalertsresponse": {
                "uuidList": [],
                "errorcode": 401,
                "cserrorcode": 9999,
                "errortext": ROLE_TEXT,
            }
        }
        assert response.headers["X-Description"] == ROLE_TEXT
        # Upstream checks the role before the signature.
        assert limited.get("listAlerts", secret="wrong").json() == response.json()
        assert limited.get("listZones").status_code == 200
        apis = limited.get("listApis").json()["listapisresponse"]
        assert sorted(a["name"] for a in apis["api"]) == ["listApis", "listZones"]
    finally:
        limited.close()


def test_a_rotated_key_gets_401_and_the_new_one_works(served: tuple[Simulator, RawClient]) -> None:
    sim, client = served
    assert client.get("listZones").status_code == 200
    key, secret = sim.rotate_key()
    assert (sim.key, sim.secret) == (key, secret)
    assert client.get("listZones").status_code == 401
    fresh = RawClient(client.endpoint, key, secret)
    try:
        assert fresh.get("listZones").status_code == 200
    finally:
        fresh.close()


def test_without_response_json_the_answer_is_xml(served: tuple[Simulator, RawClient]) -> None:
    _, client = served
    response = client.get("listZones", response=None)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/xml; charset=UTF-8"
    assert response.text.startswith('<?xml version="1.0" encoding="UTF-8"?><listzonesresponse')
    with pytest.raises(ValueError):
        response.json()


def test_other_paths_are_not_the_api(served: tuple[Simulator, RawClient]) -> None:
    _, client = served
    response = client.http.get(client.endpoint.replace("/client/api", "/client/"))
    assert response.status_code == 404


def test_html_characters_are_written_literally(served: tuple[Simulator, RawClient]) -> None:
    sim, client = served
    sim.emit_alert("ALERT.MANAGEMENT", "Node's <status> = up & running")
    response = client.get("listAlerts")
    assert '"description":"Node\'s <status> = up & running"' in response.text
    assert "\\u00" not in response.text
    assert response.json()["listalertsresponse"]["alert"][0]["description"] == (
        "Node's <status> = up & running"
    )


def test_dates_are_rendered_in_the_server_zone() -> None:
    ist = Simulator(tz="+0530", hosts=1, vms_per_host=1)
    utc = Simulator(tz="UTC", hosts=1, vms_per_host=1)
    ist.emit_alert("ALERT.MANAGEMENT", "x")
    utc.emit_alert("ALERT.MANAGEMENT", "x")
    assert ist.alerts_as_api()[0]["sent"] == "2025-06-02T13:30:00+0530"
    assert utc.alerts_as_api()[0]["sent"] == "2025-06-02T08:00:00+0000"


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_list_capabilities_reports_the_profile_version(profile: str) -> None:
    sim = Simulator(profile=profile, hosts=1, vms_per_host=1)
    status, payload = invoke(sim, "listCapabilities")
    assert status == 200
    assert payload["listcapabilitiesresponse"]["capability"]["cloudstackversion"] == (
        PROFILES[profile].version
    )


def test_list_hosts_shows_state_and_host_ha(sim: Simulator) -> None:
    _, payload = invoke(sim, "listHosts", type="Routing")
    hosts = body(payload)["host"]
    assert body(payload)["count"] == 4
    first = hosts[0]
    assert first["state"] == "Up" and first["resourcestate"] == "Enabled"
    assert first["hostha"] == {
        "haenable": True,
        "hastate": "Available",
        "haprovider": "kvmhaprovider",
    }
    assert {"zonename", "podname", "clustername"} <= set(first)
    assert first["lastpinged"].startswith("1970-")


def test_list_hosts_with_details_min_drops_the_names(sim: Simulator) -> None:
    _, payload = invoke(sim, "listHosts", details="min", type="Routing")
    host = body(payload)["host"][0]
    assert "hostha" in host and "state" in host
    assert not {"zonename", "podname", "clustername", "hahost", "events"} & set(host)


def test_list_hosts_rejects_unknown_details(sim: Simulator) -> None:
    status, payload = invoke(sim, "listHosts", details="everything")
    assert status == 431
    assert body(payload)["errortext"] == (
        "The details parameter contains a non permitted value. The allowed values are "
        "[all, capacity, events, stats, min]"
    )


def test_list_hosts_includes_system_vm_hosts_unless_filtered(sim: Simulator) -> None:
    _, everything = invoke(sim, "listHosts")
    types = {h["type"] for h in body(everything)["host"]}
    assert types == {"Routing", "SecondaryStorageVM", "ConsoleProxy"}


def test_list_hosts_by_unknown_uuid_gets_431(sim: Simulator) -> None:
    status, payload = invoke(sim, "listHosts", id="0b0a7a3e-5d2b-4f3c-9a51-6f1c2d3e4f50")
    assert status == 431
    assert (
        "Invalid parameter id value=0b0a7a3e-5d2b-4f3c-9a51-6f1c2d3e4f50"
        in body(payload)["errortext"]
    )


def test_name_filters_of_hosts_and_vms_ignore_accents_and_case(sim: Simulator) -> None:
    accents = str.maketrans({"v": "ṽ", "e": "é", "o": "ö", "a": "á"})
    host = sim.hosts_as_api()[0]["name"]
    vm = sim.vms_as_api()[0]["name"]
    assert host.translate(accents) != host and vm.translate(accents) != vm
    _, hosts = invoke(sim, "listHosts", name=host.translate(accents).upper())
    assert [h["name"] for h in body(hosts)["host"]] == [host]
    for param in ("name", "keyword"):
        _, vms = invoke(sim, "listVirtualMachines", listall=True, **{param: vm.translate(accents)})
        assert vm in [v["name"] for v in body(vms)["virtualmachine"]]


def test_list_virtual_machines_needs_listall_for_other_accounts(sim: Simulator) -> None:
    _, own = invoke(sim, "listVirtualMachines")
    _, everything = invoke(sim, "listVirtualMachines", listall=True)
    all_vms = body(everything)["virtualmachine"]
    assert len(all_vms) == 12
    assert body(own)["count"] < len(all_vms)
    assert {v["account"] for v in body(own)["virtualmachine"]} == {"admin"}
    vm = all_vms[0]
    assert {"haenable", "hostid", "hostname", "instancename"} <= set(vm)
    assert vm["instancename"].startswith("i-") and vm["hostname"].startswith("kvm-")


def test_every_vm_has_one_default_nic_with_an_address_on_its_network(sim: Simulator) -> None:
    (recorded,) = json.loads(RECORDED_VMS.read_text())["listVirtualMachines"]["virtualmachine"]
    _, payload = invoke(sim, "listVirtualMachines", listall=True)
    vms = body(payload)["virtualmachine"]
    addresses = set()
    for vm in vms:
        (nic,) = vm["nic"]
        assert set(nic) == set(recorded["nic"][0])
        assert nic["isdefault"] is True and nic["traffictype"] == "Guest"
        network = ipaddress.ip_network(f"{nic['gateway']}/{nic['netmask']}", strict=False)
        assert ipaddress.ip_address(nic["ipaddress"]) in network
        assert nic["ipaddress"] not in (nic["gateway"], str(network.network_address))
        addresses.add((nic["networkid"], nic["ipaddress"]))
    assert len(addresses) == len(vms)  # no address twice on one network
    _, minimal = invoke(sim, "listVirtualMachines", listall=True, details="min")
    assert not any("nic" in vm for vm in body(minimal)["virtualmachine"])


def test_nics_are_the_same_for_the_same_seed_and_differ_for_another() -> None:
    def nics(seed: int) -> list[dict[str, object]]:
        return [vm["nic"][0] for vm in Simulator(seed=seed, hosts=2).vms_as_api()]

    assert nics(5) == nics(5)
    assert {n["id"] for n in nics(5)}.isdisjoint({n["id"] for n in nics(6)})


def test_list_virtual_machines_filters_by_host_and_ha(sim: Simulator) -> None:
    host = sim.hosts_as_api()[0]
    _, payload = invoke(sim, "listVirtualMachines", listall=True, hostid=host["id"], haenable=True)
    vms = body(payload)["virtualmachine"]
    assert vms and all(v["hostid"] == host["id"] and v["haenable"] for v in vms)


def test_list_events_shows_system_events_only_with_listall(sim: Simulator) -> None:
    sim.run_scenario("host-crash", recover_after=None)
    _, own = invoke(sim, "listEvents")
    _, everything = invoke(sim, "listEvents", listall=True)
    types = {e["type"] for e in body(everything)["event"]}
    assert "VM.START" in types
    assert body(own) == {}
    created = [e["created"] for e in body(everything)["event"]]
    assert created == sorted(created, reverse=True)


def test_list_events_shows_archived_events_only_when_asked_for_them(sim: Simulator) -> None:
    sim.run_scenario("host-crash", recover_after=None)
    events = body(invoke(sim, "listEvents", listall=True)[1])["event"]
    gone = [events[0]["id"], events[-1]["id"]]
    assert sorted(sim.archive_events(gone)) == sorted(gone)
    assert sim.archive_events(gone) == []

    def listed(**params: object) -> list[dict[str, object]]:
        status, payload = invoke(sim, "listEvents", listall=True, **params)
        assert status == 200, payload
        return body(payload).get("event", [])

    live = [e["id"] for e in events if e["id"] not in gone]
    assert [e["id"] for e in listed()] == live
    assert [e["id"] for e in listed(archived=False)] == live
    assert not any("archived" in e for e in listed())
    archived = listed(archived=True)
    assert [e["id"] for e in archived] == gone
    assert all(e["archived"] is True for e in archived)
    assert body(invoke(sim, "listEvents", listall=True, archived=True)[1])["count"] == 2
    # With an id the query leaves archived out: the event is found either way.
    assert [e["id"] for e in listed(id=gone[0])] == [gone[0]]


def test_async_jobs_use_the_plural_list_key_and_can_be_queried(sim: Simulator) -> None:
    _, payload = invoke(sim, "listAsyncJobs", listall=True)
    jobs = body(payload)["asyncjobs"]
    assert jobs
    status, result = invoke(sim, "queryAsyncJobResult", jobid=jobs[0]["jobid"])
    assert status == 200
    assert result["queryasyncjobresultresponse"]["jobstatus"] == 1


def test_query_async_job_result_without_jobid_gets_431(sim: Simulator) -> None:
    status, payload = invoke(sim, "queryAsyncJobResult")
    assert status == 431
    assert body(payload)["errortext"] == (
        "Unable to execute API command queryasyncjobresult due to missing parameter jobid"
    )


def test_list_host_ha_resources_lists_hosts_with_ha_config(sim: Simulator) -> None:
    _, payload = invoke(sim, "listHostHAResources")
    items = body(payload)["hostha"]
    assert len(items) == 4
    assert set(items[0]) == {"hostid", "haenable", "hastate", "haprovider"}


def test_list_apis_describes_the_served_commands_like_the_fixture(sim: Simulator) -> None:
    _, payload = invoke(sim, "listApis", name="listAlerts")
    (api,) = body(payload)["api"]
    assert api["name"] == "listAlerts" and api["isasync"] is False
    assert {p["name"] for p in api["params"]} == {
        "id",
        "keyword",
        "name",
        "page",
        "pagesize",
        "type",
    }


def test_post_enforcement_of_4_21_refuses_state_changes_by_get_and_unversioned_signatures() -> None:
    sim = Simulator(profile="4.22", hosts=1, vms_per_host=1, enforce_post=True)
    alert = sim.emit_alert("ALERT.USERVM", "HA starting VM: a (i-2-1-VM)")
    with sim.serve() as endpoint:
        client = RawClient(endpoint, sim.key, sim.secret)
        try:
            soon = sim.now() + timedelta(minutes=5)
            response = client.get("archiveAlerts", ids=alert, v3=soon)
            assert response.status_code == 400
            assert response.json()["archivealertsresponse"]["errortext"] == (
                "State changing command archiveAlerts needs to be sent using POST request"
            )
            assert client.get("listZones").status_code == 401  # version 3 is mandatory
            assert client.get("listZones", v3=sim.now() + timedelta(hours=1)).status_code == 401
            assert client.post("archiveAlerts", ids=alert, v3=soon).status_code == 200
        finally:
            client.close()


def test_post_enforcement_does_not_exist_before_4_21() -> None:
    with pytest.raises(ValueError, match=r"from 4\.21\.0"):
        Simulator(profile="4.19.2", enforce_post=True)
