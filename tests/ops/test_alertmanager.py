"""Alertmanager notifications: payload, re-send, resolve, several Alertmanagers, one down."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from privatedb import free_port
from wiringkit import context, ledger_url, served, sim_with_history

from sidecar.model.plan import HAIncident, Plan, Summary, VmRestarts
from sidecar.model.resources import Host
from sidecar.ops.service.alertmanager import Alerting
from sidecar.ops.service.cycle import Service
from sidecar.ops.service.metrics import Metrics

AM1, AM2 = "http://127.0.0.1:9093", "http://127.0.0.2:9093/am"
#: The CloudStack server's clock runs far behind ours (the simulator's does too).
SERVER_NOW = datetime(2025, 2, 11, 10, 30, tzinfo=UTC)
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DOWN_AT = SERVER_NOW - timedelta(minutes=20)


def host(state: str = "Down") -> Host:
    return Host(id="h-7", name="kvm-07", state=state, zonename="zone-a", podname="pod-1")


def incident(rounds: int = 3, restarts: int = 2, backlog: Sequence[str] = (),
             archive: Sequence[str] = (), started: datetime = DOWN_AT) -> HAIncident:
    return HAIncident(
        incident_id="inc-1", host="kvm-07", host_id="h-7", zone="zone-a", started=started,
        last_seen=started + timedelta(minutes=2), rounds=rounds, duplicate_rounds=rounds - 1,
        vms=(VmRestarts("web-1", "i-2-10-VM", restarts), VmRestarts("db-1", "i-2-11-VM", 1)),
        backlog=tuple(backlog), restarted_more_than_once=("web-1",) if restarts > 1 else (),
        alert_ids=("a1", "a2", "a3", *archive), host_state="Down",
    )


def plan(*incidents: HAIncident, archive: Sequence[str] = (),
         now: datetime = SERVER_NOW) -> Plan:
    return Plan(generated_at=now, groups=(), archive=tuple(archive), ha_incidents=incidents,
                summary=Summary())


def alerting(metrics: Metrics, urls: Sequence[str] = (AM1,), **kwargs: Any) -> Alerting:
    options: dict[str, Any] = {"cloudstack": "cloud-1", "poll_interval": 60.0,
                               "cycle_deadline": 50.0, "backlog_after": 900.0,
                               "horizon": 7 * 86400.0, **kwargs}
    return Alerting(urls, metrics, **options)


@pytest.fixture
def am() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        router.post(path="/api/v2/alerts").respond(200)
        router.post(path="/am/api/v2/alerts").respond(200)
        yield router


def posted(router: respx.MockRouter, url: str = AM1) -> list[list[dict[str, Any]]]:
    """The alert lists posted to ``url``'s Alertmanager, in order."""
    return [json.loads(call.request.content) for call in router.calls
            if str(call.request.url) == url + "/api/v2/alerts"]


def by_name(alerts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {a["labels"]["alertname"]: a for a in alerts}


def cycle(target: Alerting, the_plan: Plan, hosts: Sequence[Host], now: datetime = NOW,
          live: Sequence[str] = ("a1", "a2", "a3")) -> int:
    return asyncio.run(target.cycle(the_plan, hosts, set(live), now=now))


def test_a_failed_host_is_one_alert_with_its_labels_numbers_and_times_on_our_clock(
    am: respx.MockRouter,
) -> None:
    target = alerting(Metrics())
    assert cycle(target, plan(incident(backlog=["web-1"])), [host()]) == 0
    [sent] = posted(am)
    alerts = by_name(sent)
    assert set(alerts) == {"CloudStackHostFailure", "CloudStackHABacklog",
                           "CloudStackVMRestartedTwice"}
    failure = alerts["CloudStackHostFailure"]
    assert failure["labels"] == {"alertname": "CloudStackHostFailure", "host": "kvm-07",
                                 "zone": "zone-a", "pod": "pod-1", "cloudstack": "cloud-1",
                                 "severity": "critical"}
    notes = failure["annotations"]
    assert (notes["rounds"], notes["duplicate_rounds"]) == ("3", "2")
    assert notes["restarts"] == "db-1: 1, web-1: 2"
    assert notes["summary"] == ("Host kvm-07 is Down: 3 HA rounds (2 duplicate), 2 VMs, "
                                "1 restarted more than once")
    assert failure["generatorURL"] == ""
    # Started 20 minutes before the server's now: 20 minutes before ours.
    assert failure["startsAt"] == "2026-01-01T11:40:00Z"
    assert failure["endsAt"] == "2026-01-01T12:03:50Z"  # 3 x 60 s + 50 s ahead
    assert alerts["CloudStackVMRestartedTwice"]["labels"]["vm"] == "web-1"
    assert alerts["CloudStackHABacklog"]["annotations"]["backlog"] == "web-1"


def test_active_alerts_are_sent_again_each_cycle_with_a_later_end_and_the_same_start(
    am: respx.MockRouter,
) -> None:
    target = alerting(Metrics())
    cycle(target, plan(incident()), [host()])
    cycle(target, plan(incident(), now=SERVER_NOW + timedelta(minutes=1)), [host()],
          now=NOW + timedelta(minutes=1))
    first, second = (by_name(p)["CloudStackHostFailure"] for p in posted(am))
    assert second["startsAt"] == first["startsAt"]
    assert second["endsAt"] == "2026-01-01T12:04:50Z"


def test_archived_copies_are_counted_and_the_rounds_seen_before_archiving_are_kept(
    am: respx.MockRouter,
) -> None:
    target = alerting(Metrics())
    # This cycle archived a4 and a5 (no longer live); the next plan sees one round left.
    cycle(target, plan(incident(archive=["a4", "a5"]), archive=["a4", "a5"]), [host()])
    cycle(target, plan(incident(rounds=1, restarts=1)), [host()])
    notes = by_name(posted(am)[-1])["CloudStackHostFailure"]["annotations"]
    assert (notes["rounds"], notes["archived_copies"]) == ("3", "2")
    assert "CloudStackVMRestartedTwice" in by_name(posted(am)[-1])


def test_the_alert_is_resolved_once_with_a_past_end_when_the_host_is_up_again(
    am: respx.MockRouter,
) -> None:
    target = alerting(Metrics())
    cycle(target, plan(incident()), [host()])
    later = SERVER_NOW + timedelta(hours=1)  # the double restart is no longer news either
    cycle(target, plan(incident(), now=later), [host("Up")], now=NOW + timedelta(minutes=1))
    cycle(target, plan(incident(), now=later), [host("Up")], now=NOW + timedelta(minutes=2))
    firing, resolving, *rest = posted(am)
    assert set(by_name(resolving)) == set(by_name(firing))
    for alert in resolving:
        assert alert["endsAt"] == "2026-01-01T12:01:00Z"  # now: resolved
    assert rest == []  # nothing left to send
    assert target.sent == {}


def test_a_first_start_does_not_send_incidents_that_ended_or_are_older_than_the_horizon(
    am: respx.MockRouter,
) -> None:
    old = incident(started=SERVER_NOW - timedelta(days=8))
    other = Host(id="h-8", name="kvm-08", state="Up", zonename="zone-a")
    ended = HAIncident(**{**incident().to_json(), "incident_id": "inc-2", "host": "kvm-08",
                          "host_id": "h-8", "started": DOWN_AT - timedelta(hours=2),
                          "last_seen": DOWN_AT - timedelta(hours=2),
                          "vms": (), "backlog": (), "restarted_more_than_once": ()})
    target = alerting(Metrics())
    assert cycle(target, plan(old, ended), [host(), other]) == 0
    assert posted(am) == []


def test_every_alertmanager_of_a_cluster_gets_every_alert_and_is_counted(
    am: respx.MockRouter,
) -> None:
    metrics = Metrics()
    target = alerting(metrics, urls=(AM1, AM2))
    cycle(target, plan(incident(restarts=1)), [host()])
    assert posted(am, AM1) == posted(am, AM2) and len(posted(am, AM2)) == 1
    text = metrics.render().decode()
    for url in (AM1, AM2):
        assert (f'cloudstack_sidecar_alertmanager_alerts_sent_total{{alertmanager="{url}"}} 1.0'
                in text)
        assert f'cloudstack_sidecar_alertmanager_errors_total{{alertmanager="{url}"}} 0.0' in text


def test_an_alertmanager_that_is_down_is_one_warning_a_metric_and_a_retry_next_cycle(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    target = alerting(metrics)
    with respx.mock() as router:
        route = router.post(path="/api/v2/alerts")
        route.side_effect = httpx.ConnectError("connection refused")
        with caplog.at_level(logging.WARNING):
            assert cycle(target, plan(incident()), [host()]) == 1
        # The host came back while Alertmanager was down: the resolve waits for it.
        up = plan(incident(), now=SERVER_NOW + timedelta(hours=1))
        assert cycle(target, up, [host("Up")], now=NOW + timedelta(minutes=1)) == 1
        route.side_effect = None
        route.return_value = httpx.Response(200)
        assert cycle(target, up, [host("Up")], now=NOW + timedelta(minutes=2)) == 0
    assert route.call_count == 3  # one attempt per cycle, no retry storm
    retried = json.loads(route.calls[-1].request.content)
    assert {a["labels"]["alertname"] for a in retried} == {"CloudStackHostFailure",
                                                           "CloudStackVMRestartedTwice"}
    assert all(a["endsAt"] == "2026-01-01T12:02:00Z" for a in retried)
    warnings = [r for r in caplog.records if r.name.endswith("alertmanager")]
    assert len(warnings) == 2  # one line per failed cycle
    assert "127.0.0.1:9093: ConnectError: connection refused" in warnings[0].getMessage()
    assert (f'cloudstack_sidecar_alertmanager_errors_total{{alertmanager="{AM1}"}} 2.0'
            in metrics.render().decode())


def test_a_slow_alertmanager_gives_up_after_its_own_timeout(am: respx.MockRouter) -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200)

    am.post(path="/api/v2/alerts").mock(side_effect=hang)
    target = alerting(Metrics(), timeout=0.2)
    assert cycle(target, plan(incident()), [host()]) == 1


def test_an_alert_past_its_end_is_not_resolved_again_alertmanager_did_it_already(
    am: respx.MockRouter,
) -> None:
    target = alerting(Metrics())
    cycle(target, plan(incident(restarts=1)), [host()])
    later = plan(incident(restarts=1), now=SERVER_NOW + timedelta(hours=1))
    cycle(target, later, [host("Up")], now=NOW + timedelta(minutes=5))  # endsAt was 12:03:50
    assert len(posted(am)) == 1 and target.sent == {}


def test_a_restarted_service_resolves_what_the_previous_process_sent(
    am: respx.MockRouter, tmp_path: Path,
) -> None:
    state = tmp_path / "state" / "alertmanager.json"
    cycle(alerting(Metrics(), state_path=state), plan(incident()), [host()])
    again = alerting(Metrics(), state_path=state)
    later = plan(incident(), now=SERVER_NOW + timedelta(hours=1))
    cycle(again, later, [host("Up")], now=NOW + timedelta(minutes=1))
    assert len(posted(am)) == 2
    resolved = by_name(posted(am)[-1])["CloudStackHostFailure"]
    assert resolved["endsAt"] == "2026-01-01T12:01:00Z"
    assert json.loads(state.read_text())["sent"] == {}


def test_a_service_cycle_with_its_alertmanager_down_still_succeeds_and_counts_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    sim = sim_with_history(0)
    sim.start_scenario("host-crash", host="kvm-02", recover_after=None)
    sim.clock.advance(200)
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with served(sim) as endpoint:
        service = Service(context(sim, endpoint, ledger_url(tmp_path), alertmanager_url=down),
                          dry_run=False, metrics=Metrics())
        try:
            asyncio.run(service.verify())
            result = service.run_cycle()
        finally:
            service.close()
    assert result.ok, result.message
    assert (f'cloudstack_sidecar_alertmanager_errors_total{{alertmanager="{down}"}} 1.0'
            in service.metrics.render().decode())
    saved = json.loads((tmp_path / "state" / "alertmanager.json").read_text())
    assert {json.loads(k)["alertname"] for k in saved["sent"]} >= {"CloudStackHostFailure"}
