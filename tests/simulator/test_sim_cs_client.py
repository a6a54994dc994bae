"""The real ``cs`` library (an independent client, on requests) works against the simulator."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from cs import CloudStack, CloudStackApiException

from cloudstack_simulator import Simulator


@pytest.fixture
def busy() -> Iterator[tuple[Simulator, CloudStack]]:
    sim = Simulator(profile="4.19.2", seed=9, hosts=6, vms_per_host=4, tie_order="stable")
    sim.seed_history(alerts=1600, duplicate_ratio=0.3)
    sim.run_scenario("host-crash")
    with sim.serve() as endpoint:
        yield sim, CloudStack(endpoint=endpoint, key=sim.key, secret=sim.secret, timeout=10)


def test_cs_lists_hosts(busy: tuple[Simulator, CloudStack]) -> None:
    _sim, cs = busy
    answer = cs.listHosts(type="Routing")
    assert answer["count"] == 6
    assert [h["name"] for h in answer["host"]] == [f"kvm-{i:02d}" for i in range(1, 7)]


def test_cs_fetches_every_alert_over_several_pages(busy: tuple[Simulator, CloudStack]) -> None:
    sim, cs = busy
    sim.stats.reset()
    alerts = cs.listAlerts(fetch_list=True)
    expected = [a["id"] for a in sim.alerts_as_api()]
    assert len(expected) > 1000
    assert [a["id"] for a in alerts] == expected
    pages = [r for r in sim.stats.requests if r.command == "listAlerts"]
    assert len(pages) >= 3
    assert {r.params["pagesize"] for r in pages} == {"500"}


def test_cs_archives_alerts_by_get_and_by_post(busy: tuple[Simulator, CloudStack]) -> None:
    sim, cs = busy
    duplicates = sorted(sim.truth.duplicate_ids)[:4]
    assert cs.archiveAlerts(ids=",".join(duplicates[:2])) == {"success": True}
    poster = CloudStack(endpoint=cs.endpoint, key=sim.key, secret=sim.secret, method="post")
    assert poster.archiveAlerts(ids=duplicates[2:]) == {"success": True}
    assert all(sim.is_archived(u) for u in duplicates)
    methods = {r.method for r in sim.stats.requests if r.command == "archiveAlerts"}
    assert methods == {"GET", "POST"}
    with pytest.raises(CloudStackApiException) as caught:
        cs.archiveAlerts(ids=duplicates[0])
    assert caught.value.error["errorcode"] == 530


def test_cs_signs_with_signature_version_3(busy: tuple[Simulator, CloudStack]) -> None:
    sim, cs = busy
    sim.stats.reset()
    cs.listZones()
    (record,) = sim.stats.requests
    assert record.params["signatureVersion"] == "3" and record.status == 200
    expires = datetime.strptime(record.params["expires"], "%Y-%m-%dT%H:%M:%S%z")
    assert expires > datetime.now(UTC)


def test_cs_gets_401_once_the_server_clock_passes_its_expiry(
    busy: tuple[Simulator, CloudStack],
) -> None:
    sim, cs = busy
    ahead = datetime.now(UTC).timestamp() + 3600 - sim.clock.time()
    sim.clock.advance(ahead)  # the server's clock now runs an hour ahead of the client's
    with pytest.raises(CloudStackApiException) as caught:
        cs.listZones()
    assert caught.value.error["errorcode"] == 401
    legacy = CloudStack(endpoint=cs.endpoint, key=sim.key, secret=sim.secret, expiration=-1)
    assert legacy.listZones()["count"] == 1  # without version 3 there is no expiry
