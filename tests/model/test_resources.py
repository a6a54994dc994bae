"""Typed models from recorded and constructed answers; CloudStack dates across offsets."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paths import FIXTURES

from sidecar.model.resources import (
    Alert,
    AsyncJob,
    Event,
    Host,
    HostHA,
    VirtualMachine,
    format_cs_date,
    parse_cs_date,
)


def load(path: str) -> dict:
    data = json.loads((FIXTURES / path).read_text())
    data.pop("_constructed", None)
    return data


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2021-10-03T10:59:51+0530", datetime(2021, 10, 3, 5, 29, 51, tzinfo=UTC)),
        ("2025-02-11T02:04:12-0800", datetime(2025, 2, 11, 10, 4, 12, tzinfo=UTC)),
        ("2025-02-11T10:04:12+0000", datetime(2025, 2, 11, 10, 4, 12, tzinfo=UTC)),
        ("2025-02-11T10:04:12Z", datetime(2025, 2, 11, 10, 4, 12, tzinfo=UTC)),
        ("2025-02-11T15:34:12+05:30", datetime(2025, 2, 11, 10, 4, 12, tzinfo=UTC)),
    ],
)
def test_dates_parse_to_the_same_utc_instant_whatever_the_offset(text, utc):
    parsed = parse_cs_date(text)
    assert parsed == utc
    assert parsed is not None and parsed.tzinfo == UTC


@pytest.mark.parametrize(
    "text", [None, "", "2025-02-11T10:04:12", "yesterday", "2025-13-01T00:00:00+0000"]
)
def test_missing_naive_or_broken_dates_are_none(text):
    assert parse_cs_date(text) is None


@pytest.mark.parametrize("offset", [330, -480, 0])
def test_format_renders_like_gson_and_parses_back(offset):
    moment = datetime(2025, 2, 11, 10, 4, 12, tzinfo=UTC)
    text = format_cs_date(moment, offset)
    sign = "-" if offset < 0 else "+"
    assert text.endswith(f"{sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}")
    assert parse_cs_date(text) == moment


def test_the_same_instant_in_two_zones_compares_equal():
    assert parse_cs_date("2025-02-11T15:31:40+0530") == parse_cs_date("2025-02-11T02:01:40-0800")


def test_a_recorded_host_becomes_a_host():
    raw = load("recorded/listHosts.json")["listhostsresponse"]["host"][0]
    host = Host.from_api(raw)
    assert host.id == "d9960e4d-5da9-47be-af88-5cd19473b844"
    assert (host.state, host.type, host.resourcestate) == ("Up", "Routing", "Enabled")
    assert (host.zonename, host.podname, host.hypervisor) == (
        "Sandbox-simulator",
        "POD0",
        "Simulator",
    )
    assert host.created == datetime(2021, 10, 3, 5, 29, 51, tzinfo=UTC)
    assert host.hostha == HostHA(haenable=False, hastate="Disabled")
    assert host.disconnected is None


def test_a_recorded_vm_becomes_a_virtual_machine():
    raw = load("recorded/listVirtualMachines.json")["listVirtualMachines"]["virtualmachine"][0]
    vm = VirtualMachine.from_api(raw)
    assert (vm.name, vm.instancename, vm.state) == ("testDummyVM", "i-2-683-QA", "Running")
    assert vm.haenable is False
    assert vm.hostname.startswith("SimulatedAgent.")  # the hypervisor host, not the guest


def test_constructed_alerts_keep_their_api_item_and_utc_sent_times():
    rows = load("constructed/listAlerts.json")["listalertsresponse"]["alert"]
    alerts = [Alert.from_api(r) for r in rows]
    assert [a.type for a in alerts] == [8, 7, 7, 7]
    assert alerts[0].description == "HA starting VM: web01 (i-2-14-VM)"
    assert alerts[1].sent == alerts[2].sent  # the duplicate pair shares its second
    assert alerts[3].sent == datetime(2025, 2, 11, 10, 1, 40, tzinfo=UTC)  # sent in +0530
    assert alerts[0].api_item() == rows[0]
    assert alerts[1] != alerts[2]  # they differ by id


def test_constructed_events_become_events():
    rows = load("constructed/listEvents.json")["listeventsresponse"]["event"]
    events = [Event.from_api(r) for r in rows]
    assert [(e.type, e.state) for e in events] == [
        ("VM.START", "Completed"),
        ("VM.START", "Started"),
    ]
    assert events[0].resourcetype == "VirtualMachine"
    first, second = events[0].created, events[1].created
    assert first is not None and second is not None and first > second


def test_jobs_report_their_status():
    done = AsyncJob.from_api(
        load("recorded/queryAsyncJobResult-enableHAForHost.json")["enablehaforhostresponse"]
    )
    assert done.done and done.jobstatus == AsyncJob.SUCCEEDED
    assert done.jobresult["hostha"]["status"] is True
    pending = AsyncJob.from_api(
        load("constructed/queryAsyncJobResult-pending.json")["queryasyncjobresultresponse"]
    )
    assert not pending.done and pending.jobresult == {}
    failed = AsyncJob.from_api(
        load("constructed/queryAsyncJobResult-failed.json")["queryasyncjobresultresponse"]
    )
    assert failed.done and failed.jobstatus == AsyncJob.FAILED and failed.jobresultcode == 530


def test_a_recorded_job_list_item_without_status_is_pending():
    item = load("recorded/listAsyncJobs.json")["listasyncjobsresponse"]["asyncjobs"][0]
    job = AsyncJob.from_api(item)
    assert job.jobstatus == AsyncJob.PENDING
    assert job.created == datetime(2021, 9, 29, 12, 20, 11, tzinfo=UTC)


def test_every_constructed_fixture_says_where_it_comes_from():
    files = sorted((FIXTURES / "constructed").glob("*.json"))
    assert files
    for path in files:
        data = json.loads(path.read_text())
        assert data.get("_constructed"), path.name
        outer = [k for k in data if k != "_constructed"]
        assert len(outer) == 1 and outer[0].endswith("response"), path.name


@given(
    when=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    offset=st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
    sign=st.sampled_from(["", "-"]),
)
def test_an_alert_gives_back_its_sent_text_exactly_whatever_the_zone(
    when: datetime, offset: int, sign: str
) -> None:
    hours, minutes = divmod(abs(offset), 60)
    zone = ("-" if offset < 0 or (sign and offset == 0) else "+") + f"{hours:02d}{minutes:02d}"
    text = f"{when:%Y}".zfill(4) + when.strftime("-%m-%dT%H:%M:%S") + zone
    item = {"id": "a1", "type": 8, "name": "ALERT.USERVM", "description": "d", "sent": text}
    alert = Alert.from_api(item)
    assert alert.sent is not None
    assert alert.api_item() == item


def test_an_alert_keeps_the_text_of_a_sent_time_it_could_not_render_back() -> None:
    for text in ("2026-03-01T12:00:00Z", "2026-03-01T12:00:00.5+0000", "2026-03-01T12:00:00-0000",
                 "2026-03-01T12:00:00+05:30", "yesterday"):
        item = {"id": "a1", "type": 8, "name": "ALERT.USERVM", "description": "d", "sent": text}
        assert Alert.from_api(item).api_item() == item


def test_alerts_written_in_one_zone_share_one_offset_object() -> None:
    # 330 (+0530) is no small int: a million alerts must not hold a million copies of it.
    first, second = (
        Alert.from_api({"id": f"a{n}", "type": 8, "name": "ALERT.USERVM", "description": "d",
                        "sent": f"2026-03-01T12:00:0{n}+0530"})
        for n in (1, 2)
    )
    assert first.sent_offset == 330
    assert first.sent_offset is second.sent_offset
