"""Fuzzing (hypothesis) of everything that reads CloudStack's answers: the typed models, the
client's JSON handling and the subject parser. Arbitrary JSON and text never crash them;
what they do not recognise becomes ``unknown`` and the planner leaves it alone.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from sidecar.cloudstack.client import CloudStackClient
from sidecar.cloudstack.config import CloudStackConfig
from sidecar.cloudstack.errors import CloudStackError
from sidecar.cloudstack.limits import ClientLimits
from sidecar.model.plan import Snapshot
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
from sidecar.reconcile import PARSED_FAMILIES, UNKNOWN, build_plan, parse_subject
from sidecar.support.settings import Settings

FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=6,
)

#: The keys the models read, so that arbitrary values land where they are looked for.
MODEL_KEYS = (
    "id", "name", "type", "description", "sent", "state", "resourcestate", "hostid",
    "hostname", "zoneid", "zonename", "podid", "podname", "clusterid", "ipaddress",
    "hypervisor", "hostha", "haenable", "hastate", "haprovider", "disconnected", "lastpinged",
    "created", "instancename", "displayname", "lastupdated", "level", "resourceid",
    "resourcetype", "jobid", "jobstatus", "cmd", "jobresultcode", "jobresult", "events",
)
RECORDS = st.dictionaries(st.sampled_from(MODEL_KEYS) | st.text(max_size=8), JSON, max_size=12)


MODELS = (Host, HostHA, VirtualMachine, Alert, Event, AsyncJob)


@FUZZ
@given(model=st.sampled_from(MODELS), raw=RECORDS)
@example(model=Alert, raw={"type": float("inf"), "jobstatus": float("nan"), "sent": 12})
@example(model=AsyncJob, raw={"jobstatus": float("-inf"), "created": {"a": 1}})
@example(model=Host, raw={"created": ["2025-01-01T00:00:00+0000"], "hostha": "yes"})
@example(model=VirtualMachine, raw={"lastupdated": [None], "created": 1735725600})
def test_every_model_takes_any_json_object_without_crashing(model: Any, raw: dict) -> None:
    item = model.from_api(raw)
    assert isinstance(item, model)
    for name in ("id", "name", "description", "state", "jobid"):
        if hasattr(item, name):
            assert isinstance(getattr(item, name), str)


@FUZZ
@given(value=JSON)
@example(value="2025-02-30T10:00:00+0530")
@example(value="2025-01-01T10:00:00")  # no zone: never guessed
@example(value=1735725600)
def test_dates_are_parsed_or_refused_never_guessed(value: Any) -> None:
    parsed = parse_cs_date(value)
    assert parsed is None or (parsed.tzinfo is not None and parsed.utcoffset() == timedelta(0))


@FUZZ
@given(moment=st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2999, 1, 1),
                           timezones=st.just(UTC)),
       offset=st.integers(min_value=-14 * 60, max_value=14 * 60))
def test_dates_round_trip_in_any_zone(moment: datetime, offset: int) -> None:
    moment = moment.replace(microsecond=0)
    assert parse_cs_date(format_cs_date(moment, offset)) == moment


# -- the client's JSON handling --------------------------------------------------------------

BODIES = st.one_of(
    JSON.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["listalertsresponse", "errorresponse", "x"]),
                    st.dictionaries(st.sampled_from(["alert", "count", "errorcode",
                                                     "errortext", "cserrorcode"]), JSON,
                                    max_size=4), max_size=2).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=80),
    st.text(max_size=80).map(str.encode),
)
CONTENT_TYPES = st.sampled_from([
    "application/json; charset=UTF-8", "application/json", "text/javascript", "text/html",
    "text/xml", "", "application/octet-stream",
])
STATUSES = st.sampled_from([200, 200, 200, 401, 429, 431, 432, 500, 503, 530, 302, 404])


@FUZZ
@given(body=BODIES, ctype=CONTENT_TYPES, status=STATUSES)
@example(body=b'{"listalertsresponse": {"count": "x", "alert": {"id": 1}}}',
         ctype="application/json", status=200)
@example(body=b'{"listalertsresponse": []}', ctype="application/json", status=200)
@example(body=b'{"listalertsresponse": {"errorcode": "NaN", "errortext": 5}}',
         ctype="application/json", status=530)
@example(body=b'{"listalertsresponse": {"count": 1e999, "alert": [{"id": 1}]}}',
         ctype="application/json", status=200)
def test_the_client_turns_any_answer_into_data_or_a_cloudstack_error(
    body: bytes, ctype: str, status: int
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Type": ctype} if ctype else {}
        return httpx.Response(status, content=body, headers=headers)

    config = CloudStackConfig("http://127.0.0.1:9/client/api", "fuzz-key", "fuzz-secret")
    settings_ = Settings(max_retries=0, retry_backoff=0.0)

    async def call() -> None:
        async with CloudStackClient(config, limits=ClientLimits.from_settings(settings_),
                                    transport=httpx.MockTransport(answer)) as cs:
            alerts = await cs.list_alerts(name="ALERT.USERVM")
            assert all(isinstance(a, Alert) for a in alerts)

    try:
        asyncio.run(call())
    except CloudStackError as exc:
        text = str(exc)
        assert "\n" not in text and "fuzz-secret" not in text


# -- subjects ----------------------------------------------------------------------------------

#: Real subjects of every form (cloudstack.md §6), mutated below.
SUBJECTS = (
    "Host is down, name: kvm-01 (id:1), availability zone: zone-a, pod: pod-1",
    "Host disconnected, name: kvm-02 (id:2), availability zone: zone-a, pod: pod-1",
    "Host in ALERT state, name: kvm-03 (id:3), availability zone: zone-a, pod: pod-1",
    "HA starting VM: web-001 (i-2-10-VM)",
    "Unable to restart web-001 which was running on host name: kvm-01 (id:1), availability "
    "zone: zone-a, pod: pod-1",
    "VM (name: web-001, id: 10) stopped unexpectedly on host id:1, availability zone id:1, "
    "pod id:1",
    "HA Fencing of host id=1, in dc id=1 performed",
    "Host down, 1",
    'Host in ALERT state, Host {"id":12,"name":"kvm-02","type":"Routing",'
    '"uuid":"0f6e9c2a-3b1d-4c5e-8f7a-9b0c1d2e3f40"}, availability zone: Zone {"id": "1", '
    '"name": "zone-a", "uuid": "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"}, pod: pod-1',
)


def _mutate(text: str, position: int, edit: str, kind: int) -> str:
    position %= len(text) + 1
    if kind == 0:
        return text[:position] + edit + text[position:]
    if kind == 1:
        return text[:position] + text[position + len(edit) + 1:]
    return text[:position] + edit + text[position + len(edit):]


@FUZZ
@given(text=st.text(max_size=200))
@example(text="")
@example(text="Host is down, name: ")
@example(text="HA starting VM: (")
@example(text="Host is down, Host {not json}, availability zone: {, pod: }")
def test_any_text_parses_to_a_known_family_or_unknown(text: str) -> None:
    subject = parse_subject(text)
    assert subject.family in (*PARSED_FAMILIES, UNKNOWN)
    if subject.family == UNKNOWN:
        assert not subject.known


@FUZZ
@given(base=st.sampled_from(SUBJECTS), position=st.integers(0, 300),
       edit=st.text(max_size=6), kind=st.integers(0, 2))
def test_mutated_real_subjects_never_crash_the_parser(base: str, position: int, edit: str,
                                                      kind: int) -> None:
    subject = parse_subject(_mutate(base, position, edit, kind))
    assert subject.family in (*PARSED_FAMILIES, UNKNOWN)


def test_the_real_subjects_are_all_recognised() -> None:
    assert [parse_subject(s).family for s in SUBJECTS].count(UNKNOWN) == 0


T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@FUZZ
@given(texts=st.lists(st.text(max_size=60) | st.sampled_from(SUBJECTS), min_size=1,
                      max_size=25),
       gaps=st.lists(st.integers(0, 900), min_size=25, max_size=25),
       names=st.lists(st.sampled_from(["ALERT.COMPUTE.HOST", "ALERT.USERVM",
                                       "ALERT.HA.ACTION", "ALERT.MANAGEMENT"]),
                      min_size=25, max_size=25))
def test_the_planner_never_archives_an_alert_it_cannot_parse(
    texts: list[str], gaps: list[int], names: list[str]
) -> None:
    moment = T0
    alerts = []
    for i, text in enumerate(texts):
        moment += timedelta(seconds=gaps[i])
        alerts.append(Alert(id=f"a-{i:03d}", type=7, name=names[i], description=text,
                            sent=moment))
    plan = build_plan(Snapshot(taken_at=moment + timedelta(hours=1), alerts=alerts))
    by_id = {a.id: a for a in alerts}
    archived = set(plan.archive)
    assume(alerts)
    for alert_id in archived:
        assert parse_subject(by_id[alert_id].description).known
    unknown = {a.id for a in alerts if not parse_subject(a.description).known}
    assert not unknown & archived
    # Each group keeps its canonical; the archive is exactly the union of the duplicates.
    assert archived == {d for g in plan.groups for d in g.duplicates}
    assert not {g.canonical for g in plan.groups} & archived
