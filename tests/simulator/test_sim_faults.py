"""Every fault kind, shown happening over HTTP."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import httpx
import pytest
from simkit import RawClient

from cloudstack_simulator import Simulator
from sidecar.model.constants import THROTTLED_TEXT, UNAUTHORIZED_TEXT

Served = tuple[Simulator, RawClient]


def live_ids(sim: Simulator, n: int) -> list[str]:
    out = []
    for i in range(n):
        out.append(sim.emit_alert("ALERT.USERVM", f"HA starting VM: vm-{i} (i-2-{i}-VM)"))
        sim.clock.advance(5)
    return out


def test_latency_delays_the_answer(served: Served) -> None:
    sim, client = served
    fault = sim.faults.add("latency", command="listZones", ms=60)
    assert client.get("listZones").status_code == 200
    assert client.get("listHosts").status_code == 200
    assert fault.fired == 1
    slow = [r for r in sim.stats.requests if r.command == "listZones"]
    assert slow[-1].ms >= 60


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (530, "Internal error executing command, please contact your system administrator"),
        (503, "Management server is shutting down, please try again later"),
    ],
)
def test_error_faults_answer_cloudstack_error_json(served: Served, status: int, text: str) -> None:
    sim, client = served
    sim.faults.add("error", command="listAlerts", status=status, times=1)
    response = client.get("listAlerts")
    assert response.status_code == status
    assert response.json() == {
        "listalertsresponse": {
            "uuidList": [],
            "errorcode": status,
            "cserrorcode": 9999,
            "errortext": text,
        }
    }
    assert client.get("listAlerts").status_code == 200


def test_an_error_after_the_command_loses_the_answer_but_not_the_effect(served: Served) -> None:
    sim, client = served
    (alert,) = live_ids(sim, 1)
    sim.faults.add("error", command="archiveAlerts", after=True, times=1)
    assert client.post("archiveAlerts", ids=alert).status_code == 530
    assert sim.is_archived(alert)
    assert client.post("archiveAlerts", ids=alert).status_code == 530  # now: already archived


def test_throttling_answers_429_with_the_rate_limit_text(served: Served) -> None:
    sim, client = served
    fault = sim.faults.add("throttle", command="listHosts", ms=1500)
    response = client.get("listHosts")
    assert response.status_code == 429
    text = THROTTLED_TEXT.format(ms=1500)
    assert response.json()["listhostsresponse"]["errortext"] == text
    assert "Retry-After" not in response.headers
    capability = client.get("listCapabilities").json()["listcapabilitiesresponse"]["capability"]
    assert capability["apilimitmax"] == 25
    fault.remove()
    assert client.get("listHosts").status_code == 200


def test_a_reset_drops_the_connection(served: Served) -> None:
    sim, client = served
    fault = sim.faults.add("reset", command="listZones", times=1)
    with pytest.raises(httpx.TransportError):
        client.get("listZones")
    assert fault.fired == 1
    assert client.get("listZones").status_code == 200


def _wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait for another thread to make ``condition`` true; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the simulator never got there"
        threading.Event().wait(0.01)


def test_a_hung_answer_times_the_client_out_until_released(served: Served) -> None:
    sim, client = served
    fault = sim.faults.add("hang", command="listAlerts", seconds=30)
    # Only the read is impatient: a connect slowed by a loaded machine is not what we test.
    impatient = httpx.Client(timeout=httpx.Timeout(10.0, read=0.3))
    try:
        with pytest.raises(httpx.ReadTimeout):
            impatient.get(f"{client.endpoint}?{httpx.QueryParams(client.signed('listAlerts'))}")
    finally:
        impatient.close()
    # The server thread may reach the request after the client gave up: wait for it (a hang
    # that never fires still fails here).
    _wait_for(lambda: fault.fired > 0)
    assert fault.fired == 1
    fault.remove()
    sim.faults.release_hung()
    assert client.get("listAlerts").status_code == 200


def test_a_hung_answer_does_not_keep_the_server_from_stopping() -> None:
    sim = Simulator(hosts=1, vms_per_host=1)
    sim.faults.add("hang", seconds=600)
    endpoint = sim.start()
    client = RawClient(endpoint, sim.key, sim.secret)
    errors: list[Exception] = []

    def call() -> None:
        try:
            client.get("listZones")
        except httpx.HTTPError as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    _wait_for(lambda: sim.stats.inflight > 0)  # the request has reached the server
    sim.stop()
    caller.join(timeout=10)
    client.close()
    assert not caller.is_alive()
    assert errors and sim.port is None


def test_malformed_json_is_a_cut_body(served: Served) -> None:
    sim, client = served
    sim.faults.add("malformed_json", command="listHosts", times=1)
    response = client.get("listHosts")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


def truncated_bodies(seed: int, n: int) -> list[bytes]:
    """``n`` listAlerts answers of a seeded simulator, every one cut by the truncated fault."""
    sim = Simulator(profile="4.19.2", seed=seed, hosts=2, vms_per_host=2)
    live_ids(sim, 8)
    with sim.serve() as endpoint:
        client = RawClient(endpoint, sim.key, sim.secret)
        try:
            whole = client.get("listAlerts").content
            sim.faults.add("truncated", command="listAlerts")
            answers = [client.get("listAlerts") for _ in range(n)]
        finally:
            client.close()
    for answer in answers:
        assert answer.status_code == 200
        assert answer.headers["Content-Type"].startswith("application/json")
        assert whole.startswith(answer.content) and len(answer.content) < len(whole)
        with pytest.raises(ValueError):  # JSONDecodeError, or UnicodeDecodeError mid-character
            json.loads(answer.content)
    return [a.content for a in answers]


def test_truncated_answers_are_json_cut_at_a_seeded_random_byte() -> None:
    first = truncated_bodies(seed=3, n=6)
    # Cut at different places (not always the middle), and the same places for the same seed.
    assert len({len(b) for b in first}) > 3
    assert truncated_bodies(seed=3, n=6) == first
    assert truncated_bodies(seed=4, n=6) != first


def test_an_html_page_comes_instead_of_json(served: Served) -> None:
    sim, client = served
    sim.faults.add("html", status=502, times=1)
    response = client.get("listZones")
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.text.startswith("<!DOCTYPE html>")


def test_unauthorized_fault_answers_the_plain_401(served: Served) -> None:
    sim, client = served
    sim.faults.add("unauthorized", command="listZones", times=2)
    assert [client.get("listZones").status_code for _ in range(3)] == [401, 401, 200]
    sim.faults.add("unauthorized", times=1)
    assert client.get("listHosts").json()["listhostsresponse"]["errortext"] == UNAUTHORIZED_TEXT


def test_a_rotated_key_makes_a_burst_of_401(served: Served) -> None:
    sim, client = served
    sim.rotate_key()
    statuses = [client.get(c).status_code for c in ("listZones", "listHosts", "listAlerts")]
    assert statuses == [401, 401, 401]


def test_another_admin_archives_part_of_the_batch_first(served: Served) -> None:
    sim, client = served
    ids = live_ids(sim, 2)
    fault = sim.faults.add("archived_by_other", k=1, times=1)
    response = client.post("archiveAlerts", ids=",".join(ids))
    assert response.status_code == 530
    (taken,) = fault.affected
    assert sim.is_archived(taken) and taken in sim.stats.archived_out_of_band
    (other,) = [i for i in ids if i != taken]
    assert not sim.is_archived(other)
    assert client.post("archiveAlerts", ids=other).status_code == 200
    assert sim.stats.archived_more_than_once() == []


def test_alerts_purged_meanwhile_make_the_archive_fail_with_431(served: Served) -> None:
    sim, client = served
    ids = live_ids(sim, 3)
    fault = sim.faults.add("delete_alerts", k=1, times=1)
    response = client.post("archiveAlerts", ids=",".join(ids))
    assert response.status_code == 431
    (gone,) = fault.affected
    assert (
        f"Invalid parameter ids value={gone}"
        in response.json()["archivealertsresponse"]["errortext"]
    )
    assert all(not sim.is_archived(i) for i in ids if i != gone)


def test_a_purge_while_listing_removes_the_oldest_alerts(served: Served) -> None:
    sim, client = served
    ids = live_ids(sim, 4)
    fault = sim.faults.add("delete_alerts", command="listAlerts", k=2, times=1)
    listed = client.get("listAlerts").json()["listalertsresponse"]["alert"]
    assert fault.affected == [ids[1], ids[0]]
    assert [a["id"] for a in listed] == [ids[3], ids[2]]


def test_alerts_arriving_while_a_client_pages_shift_the_pages(served: Served) -> None:
    sim, client = served
    ids = live_ids(sim, 6)
    fault = sim.faults.add("insert_alerts", n=2, times=1)
    first = client.get("listAlerts", page=1, pagesize=3).json()["listalertsresponse"]["alert"]
    second = client.get("listAlerts", page=2, pagesize=3).json()["listalertsresponse"]
    assert [a["id"] for a in first] == [ids[5], ids[4], ids[3]]
    # Two newer alerts pushed everything down: page 2 repeats two rows of page 1.
    assert [a["id"] for a in second["alert"]] == [ids[4], ids[3], ids[2]]
    assert second["count"] == 8 and len(fault.affected) == 2
    assert set(fault.affected) <= sim.truth.other_ids


def test_faults_fire_at_their_rate_deterministically_per_seed() -> None:
    def pattern(seed: int) -> list[int]:
        sim = Simulator(seed=seed, hosts=1, vms_per_host=1)
        sim.faults.add("error", command="listZones", rate=0.5)
        with sim.serve() as endpoint:
            client = RawClient(endpoint, sim.key, sim.secret)
            try:
                return [client.get("listZones").status_code for _ in range(16)]
            finally:
                client.close()

    first = pattern(1)
    assert first == pattern(1)
    assert set(first) == {200, 530}


def test_clearing_faults_restores_normal_answers(served: Served) -> None:
    sim, client = served
    sim.faults.add("error")
    sim.faults.add("latency", ms=1)
    assert client.get("listZones").status_code == 530
    sim.faults.clear()
    assert sim.faults.active == []
    assert client.get("listZones").status_code == 200


def test_an_unknown_fault_or_option_is_refused(sim: Simulator) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        sim.faults.add("gremlins")
    with pytest.raises(ValueError, match="takes no option"):
        sim.faults.add("latency", seconds=3)


def test_instrumentation_counts_calls_statuses_and_concurrency(served: Served) -> None:
    sim, client = served
    sim.stats.reset()
    for _ in range(3):
        client.get("listZones")
    client.get("listZones", secret="bad")
    snapshot = sim.stats.snapshot()
    assert snapshot["calls"]["listZones"] == 4
    assert snapshot["statuses"]["listZones"] == {200: 3, 401: 1}
    assert snapshot["max_inflight"] >= 1 and snapshot["max_per_second"] >= 1
    assert snapshot["bytes_sent"] > 0
    assert all(r.params.get("signature") == "***" for r in sim.stats.requests)
    assert all(r.params.get("apiKey") == "***" for r in sim.stats.requests)
