"""The async client: methods, retries, rate and concurrency limits, clock skew, jobs, stats."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import datetime
from email.utils import formatdate
from urllib.parse import parse_qsl

import httpx
import pytest
import respx
from paths import FIXTURES

from sidecar.cloudstack.client import CloudStackClient, is_read_command
from sidecar.cloudstack.config import CloudStackConfig
from sidecar.cloudstack.errors import (
    AuthenticationError,
    CommandNotAllowedError,
    MalformedAnswerError,
    NotJsonError,
    ParameterError,
    ServerError,
    ThrottledError,
    TransportError,
)
from sidecar.cloudstack.limits import ClientLimits
from sidecar.cloudstack.signing import sign
from sidecar.model.resources import Alert, Host, VirtualMachine
from sidecar.support.settings import Settings

ENDPOINT = "http://127.0.0.1:8080/client/api"
KEY = "client-test-key-0123456789"
SECRET = "client-test-secret-abcdefghij"
WALL = 1_700_000_000.0


class FakeTime:
    """A monotonic clock that only the fake sleep moves; records every sleep."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_config() -> CloudStackConfig:
    return CloudStackConfig(endpoint=ENDPOINT, key=KEY, secret=SECRET)


def make_client(fake: FakeTime, *, transport=None, on_call=None, **overrides) -> CloudStackClient:
    values = {"max_retries": 3, "retry_backoff": 0.5, **overrides}
    return CloudStackClient(
        make_config(),
        limits=ClientLimits.from_settings(Settings(**values)),
        transport=transport,
        sleep=fake.sleep,
        clock=fake.clock,
        wall_clock=lambda: WALL,
        on_call=on_call,
    )


def reply(command: str, inner: dict, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={f"{command.lower()}response": inner}, headers=headers)


def error(command: str, code: int, text: str, cscode: int = 9999) -> httpx.Response:
    return reply(command, {"errorcode": code, "cserrorcode": cscode, "errortext": text}, code)


def sent_params(request: httpx.Request) -> dict[str, str]:
    raw = request.url.query.decode() if request.method == "GET" else request.content.decode()
    return dict(parse_qsl(raw, keep_blank_values=True))


def load(path: str) -> dict:
    data = json.loads((FIXTURES / path).read_text())
    data.pop("_constructed", None)
    return data


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def mock():
    with respx.mock(assert_all_called=False) as router:
        yield router


# -- requests -------------------------------------------------------------------------------


def test_read_commands_are_get_and_signed(fake, mock):
    route = mock.get(ENDPOINT, params={"command": "listZones"}).mock(
        return_value=reply("listZones", {"count": 0})
    )

    async def go():
        async with make_client(fake) as cs:
            return await cs.request("listZones", {"available": True})

    assert run(go()) == {"count": 0}
    request = route.calls.last.request
    params = sent_params(request)
    assert request.method == "GET"
    assert params["available"] == "true"
    assert params["apiKey"] == KEY
    assert params["response"] == "json"
    assert params["signatureVersion"] == "3"
    assert params["expires"] == "2023-11-14T22:23:20+0000"  # WALL + 600 s, in UTC
    signature = params.pop("signature")
    assert sign(params, SECRET) == signature


def test_state_changing_commands_are_posted_as_a_signed_form(fake, mock):
    route = mock.post(ENDPOINT, data__contains={"command": "archiveAlerts"}).mock(
        return_value=reply("archiveAlerts", {"success": True})
    )

    async def go():
        async with make_client(fake) as cs:
            await cs.archive_alerts(["a1", "b2", "a1", ""])

    run(go())
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.url.query == b""
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    params = sent_params(request)
    assert params["ids"] == "a1,b2"  # the same id twice would void the batch (530)
    signature = params.pop("signature")
    assert sign(params, SECRET) == signature


def test_archive_of_nothing_sends_nothing(fake, mock):
    async def go():
        async with make_client(fake) as cs:
            await cs.archive_alerts([])
            return cs.stats.total

    assert run(go()) == 0


def test_archive_reporting_success_false_is_a_server_error(fake, mock):
    mock.post(ENDPOINT).mock(return_value=reply("archiveAlerts", {"success": False}))

    async def go():
        async with make_client(fake) as cs:
            await cs.archive_alerts(["a1"])

    with pytest.raises(ServerError) as info:
        run(go())
    assert info.value.errorcode == 530


def test_a_read_whose_query_would_exceed_4_kb_is_posted(fake, mock):
    route = mock.post(ENDPOINT, data__contains={"command": "listVirtualMachines"}).mock(
        return_value=reply("listVirtualMachines", {})
    )
    ids = [f"{n:08d}-0000-4000-8000-000000000000" for n in range(150)]

    async def go():
        async with make_client(fake) as cs:
            await cs.request("listVirtualMachines", {"ids": ids})

    run(go())
    assert route.call_count == 1
    assert sent_params(route.calls.last.request)["ids"] == ",".join(ids)


def test_the_read_rule_covers_list_get_query_and_find():
    assert all(map(is_read_command, ["listHosts", "getUser", "queryAsyncJobResult", "findHost"]))
    assert not any(map(is_read_command, ["archiveAlerts", "deleteAlerts", "Listx", "enableHA"]))


def test_every_request_has_the_configured_timeout(fake):
    async def go():
        async with make_client(fake, request_timeout=3.5) as cs:
            http = cs._ensure_http()
            return http.timeout

    timeout = run(go())
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (3.5, 3.5, 3.5, 3.5)


def test_without_settings_the_cs_timeout_applies():
    config = CloudStackConfig(endpoint=ENDPOINT, key=KEY, secret=SECRET, timeout=7.0)
    assert CloudStackClient(config).timeout == 7.0


# -- retries --------------------------------------------------------------------------------


def test_reads_are_retried_on_530_with_backoff_through_the_fake_sleep(fake, mock):
    route = mock.get(ENDPOINT, params={"command": "listHosts"}).mock(
        side_effect=[
            error("listHosts", 530, "boom"),
            error("listHosts", 503, "shutting down"),
            reply("listHosts", {"count": 1, "host": [{"id": "h1", "name": "kvm1", "state": "Up"}]}),
        ]
    )

    async def go():
        async with make_client(fake) as cs:
            return await cs.list_hosts(), cs.stats

    hosts, stats = run(go())
    assert [h.id for h in hosts] == ["h1"]
    assert route.call_count == 3
    assert stats.retries == 2
    assert 0.25 <= fake.sleeps[0] <= 0.5  # 0.5 s nominal, jitter 50-100 %
    assert 0.5 <= fake.sleeps[1] <= 1.0  # doubled
    assert stats.count("listHosts", 530) == 1 and stats.count("listHosts", 200) == 1


def test_backoff_is_capped_at_30_seconds(fake, mock):
    mock.get(ENDPOINT).mock(return_value=error("listHosts", 530, "boom"))

    async def go():
        async with make_client(fake, retry_backoff=20.0, max_retries=4) as cs:
            await cs.request("listHosts")

    with pytest.raises(ServerError):
        run(go())
    assert len(fake.sleeps) == 4
    assert max(fake.sleeps) <= 30.0
    assert fake.sleeps[-1] >= 15.0


def test_reads_are_retried_on_transport_errors_and_report_status_0(fake, mock):
    calls: list[tuple[str, int]] = []
    mock.get(ENDPOINT).mock(
        side_effect=[httpx.ConnectError("refused"), reply("listZones", {"count": 0})]
    )

    async def go():
        async with make_client(fake, on_call=lambda c, s, t: calls.append((c, s))) as cs:
            return await cs.request("listZones")

    assert run(go()) == {"count": 0}
    assert calls == [("listZones", 0), ("listZones", 200)]


def test_retries_stop_after_max_retries_with_the_last_error(fake, mock):
    route = mock.get(ENDPOINT).mock(side_effect=httpx.ReadTimeout("slow"))

    async def go():
        async with make_client(fake, max_retries=2) as cs:
            await cs.request("listAlerts")

    with pytest.raises(TransportError) as info:
        run(go())
    assert route.call_count == 3
    assert "127.0.0.1:8080" in str(info.value)


@pytest.mark.parametrize(
    "failure",
    [
        error(
            "archiveAlerts",
            530,
            "Unable to archive Alerts, one or more parameters has invalid values",
        ),
        error("archiveAlerts", 503, "shutting down"),
        httpx.ConnectError("reset"),
        httpx.ReadTimeout("slow"),
    ],
    ids=["530", "503", "connect", "timeout"],
)
def test_archive_alerts_is_never_retried_after_it_may_have_run(fake, mock, failure):
    route = mock.post(ENDPOINT).mock(
        side_effect=[failure, reply("archiveAlerts", {"success": True})]
    )

    async def go():
        async with make_client(fake) as cs:
            await cs.archive_alerts(["a1"])

    with pytest.raises((ServerError, TransportError)):
        run(go())
    assert route.call_count == 1
    assert fake.sleeps == []


def test_a_write_marked_idempotent_is_retried(fake, mock):
    route = mock.post(ENDPOINT).mock(
        side_effect=[
            error("archiveAlerts", 503, "shutting down"),
            reply("archiveAlerts", {"success": True}),
        ]
    )

    async def go():
        async with make_client(fake) as cs:
            return await cs.request("archiveAlerts", {"ids": "a1"}, idempotent=True)

    assert run(go()) == {"success": True}
    assert route.call_count == 2


@pytest.mark.parametrize(
    ("code", "text", "exc"),
    [
        (401, "unable to verify user credentials and/or request signature", AuthenticationError),
        (430, "malformed", ParameterError),
        (431, "Invalid parameter ids value=x", ParameterError),
        (432, "The API is disabled", CommandNotAllowedError),
    ],
)
def test_client_errors_are_never_retried_even_for_reads(fake, mock, code, text, exc):
    route = mock.get(ENDPOINT, params={"command": "listAlerts"}).mock(
        return_value=error("listAlerts", code, text)
    )
    # A 401 is explained by signed listCapabilities probes (test_skew.py), not retried.
    mock.get(ENDPOINT, params={"command": "listCapabilities"}).mock(
        return_value=error("listCapabilities", code, text)
    )

    async def go():
        async with make_client(fake) as cs:
            await cs.request("listAlerts")

    with pytest.raises(exc):
        run(go())
    assert route.call_count == 1
    assert fake.sleeps == []


THROTTLED = "The given user has reached his/her account api limit, please retry after [1500] ms."


def test_a_429_waits_the_time_the_server_names(fake, mock):
    starts: list[float] = []
    responses = iter([error("listAlerts", 429, THROTTLED, 4545), reply("listAlerts", {})])

    def handler(request):
        starts.append(fake.now)
        return next(responses)

    mock.get(ENDPOINT).mock(side_effect=handler)

    async def go():
        async with make_client(fake) as cs:
            return await cs.request("listAlerts")

    assert run(go()) == {}
    assert fake.sleeps == [1.5]
    assert starts[1] - starts[0] == pytest.approx(1.5)


def test_a_429_holds_back_every_later_call_of_the_client(fake, mock):
    starts: list[tuple[str, float]] = []
    throttled = iter([True])

    def handler(request):
        command = request.url.params["command"]
        starts.append((command, fake.now))
        if command == "listAlerts" and next(throttled, False):
            return error("listAlerts", 429, THROTTLED, 4545)
        return reply(command, {})

    mock.get(ENDPOINT).mock(side_effect=handler)

    async def go():
        async with make_client(fake) as cs:
            await cs.request("listAlerts")
            await cs.request("listHosts")

    run(go())
    assert starts[0] == ("listAlerts", 100.0)
    assert all(t >= 101.5 for _, t in starts[1:])


def test_a_429_on_archive_is_retried_because_the_limiter_rejects_before_running(fake, mock):
    route = mock.post(ENDPOINT).mock(
        side_effect=[
            error("archiveAlerts", 429, THROTTLED, 4545),
            reply("archiveAlerts", {"success": True}),
        ]
    )

    async def go():
        async with make_client(fake) as cs:
            await cs.archive_alerts(["a1"])

    run(go())
    assert route.call_count == 2
    assert fake.sleeps == [1.5]


def test_a_429_without_a_named_time_backs_off(fake, mock):
    mock.get(ENDPOINT).mock(
        side_effect=[error("listAlerts", 429, "slow down", 4545), reply("listAlerts", {})]
    )

    async def go():
        async with make_client(fake) as cs:
            return await cs.request("listAlerts")

    run(go())
    assert len(fake.sleeps) == 1 and 0.25 <= fake.sleeps[0] <= 0.5


def test_a_proxy_error_page_is_retried_for_reads(fake, mock):
    mock.get(ENDPOINT).mock(
        side_effect=[
            httpx.Response(
                502, text="<html>Bad Gateway</html>", headers={"Content-Type": "text/html"}
            ),
            reply("listZones", {}),
        ]
    )

    async def go():
        async with make_client(fake) as cs:
            return await cs.request("listZones")

    assert run(go()) == {}


# -- limits ---------------------------------------------------------------------------------


def test_the_request_rate_never_exceeds_the_limit_in_any_second(fake, mock):
    starts: list[float] = []

    def handler(request):
        starts.append(fake.now)
        return reply("listZones", {})

    mock.get(ENDPOINT).mock(side_effect=handler)

    async def go():
        async with make_client(fake, requests_per_second=5, max_concurrency=3) as cs:
            await asyncio.gather(*(cs.request("listZones") for _ in range(23)))
            return cs.stats

    stats = run(go())
    assert len(starts) == 23
    for t in starts:
        assert sum(1 for s in starts if t <= s < t + 1.0) <= 5
    assert max(starts) - min(starts) >= 4.0  # 23 calls at 5/s need more than 4 s
    assert stats.rate_limited_seconds > 0


def test_a_fractional_rate_spaces_calls_out(fake, mock):
    starts: list[float] = []

    def handler(request):
        starts.append(fake.now)
        return reply("listZones", {})

    mock.get(ENDPOINT).mock(side_effect=handler)

    async def go():
        async with make_client(fake, requests_per_second=0.5) as cs:
            for _ in range(3):
                await cs.request("listZones")

    run(go())
    # 2 s per call at 0.5/s, plus the limiter's 0.2 % margin for clocks that disagree.
    assert [b - a for a, b in itertools.pairwise(starts)] == pytest.approx([2.004, 2.004])


def test_callers_woken_late_by_a_busy_loop_do_not_bunch_up():
    from sidecar.cloudstack.ratelimit import RateLimiter

    now = [0.0]
    starts: list[float] = []

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = RateLimiter(20, clock=lambda: now[0], sleep=sleep)

    async def go():
        # 20 callers start over the first second; then a blocked loop wakes the next 20 callers
        # only at t=1.0, all at once.
        for n in range(20):
            now[0] = n * 0.05
            (await limiter.acquire()).counted()
            starts.append(now[0])
        now[0] = 1.0
        for _ in range(20):
            (await limiter.acquire()).counted()
            starts.append(now[0])

    asyncio.run(go())
    for t in starts:
        assert sum(1 for u in starts if t - limiter.window < u <= t) <= limiter.burst


class SlowTransport(httpx.AsyncBaseTransport):
    """Answers after yielding to the loop a few times, counting requests in flight."""

    def __init__(self, handler) -> None:
        self.handler = handler
        self.in_flight = 0
        self.max_in_flight = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for _ in range(5):
                await asyncio.sleep(0)  # yield only: no time passes
            return self.handler(request)
        finally:
            self.in_flight -= 1


def test_concurrency_is_bounded_by_max_concurrency(fake):
    transport = SlowTransport(lambda r: reply("listZones", {}))

    async def go():
        async with make_client(
            fake, transport=transport, max_concurrency=3, requests_per_second=1000
        ) as cs:
            await asyncio.gather(*(cs.request("listZones") for _ in range(20)))
            return cs.stats

    stats = run(go())
    assert transport.max_in_flight == 3
    assert stats.max_concurrent == 3
    assert stats.total == 20


# -- answers --------------------------------------------------------------------------------


def test_clock_skew_comes_from_the_date_header(fake, mock):
    mock.get(ENDPOINT).mock(
        return_value=reply("listZones", {}, Date=formatdate(WALL + 734, usegmt=True))
    )

    async def go():
        async with make_client(fake) as cs:
            assert cs.clock_skew is None
            await cs.request("listZones")
            return cs.clock_skew

    assert run(go()) == 734.0


def test_a_401_that_no_probe_gets_past_names_the_key_and_the_date_headers_skew(fake, mock):
    refused = httpx.Response(
        401,
        json={
            "listcapabilitiesresponse": {
                "errorcode": 401,
                "errortext": "unable to verify user credentials and/or request signature",
            }
        },
        headers={"Date": formatdate(WALL + 734, usegmt=True)},
    )
    route = mock.get(ENDPOINT, params={"command": "listCapabilities"}).mock(return_value=refused)

    async def go():
        async with make_client(fake) as cs:
            await cs.capabilities()

    with pytest.raises(AuthenticationError) as info:
        run(go())
    message = str(info.value)
    assert "wrong API key or secret" in message and "clock skew beyond what was probed" in message
    assert "its Date header says the server clock is 734 s ahead of this host" in message
    assert info.value.skew == 734.0
    assert info.value.bracket is not None and not info.value.bracket.key_works
    assert route.call_count == 1 + 4  # the call; the probe asks again, then 3 windows
    assert "\n" not in message


def test_concurrent_401s_share_one_rate_limited_skew_probe_that_names_the_clock(fake, mock):
    unauthorized = {"errorcode": 401, "errortext": "unable to verify user credentials"}

    def verify(request: httpx.Request) -> httpx.Response:
        # A server 905 s ahead of WALL: a signature is refused once its expires is past.
        params = sent_params(request)
        expires = datetime.strptime(params["expires"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
        command = params["command"]
        if expires < WALL + 905:
            return reply(command, unauthorized, 401)
        return reply(command, {"capability": {"cloudstackversion": "4.19.2.0"}})

    mock.get(ENDPOINT, params={"command": "listAlerts"}).mock(side_effect=verify)
    probes = mock.get(ENDPOINT, params={"command": "listCapabilities"}).mock(side_effect=verify)

    async def go():
        async with make_client(fake, requests_per_second=5) as cs:
            results = await asyncio.gather(
                *(cs.request("listAlerts", {"name": n}) for n in ("a", "b", "c")),
                return_exceptions=True,
            )
            return results, cs.skew, cs.stats

    results, bracket, stats = run(go())
    assert all(isinstance(r, AuthenticationError) for r in results)
    assert all("your key works; the server clock is 905 s ahead of this host" in str(r)
               or "your key works; the server clock is 904 s ahead of this host" in str(r)
               for r in results)
    assert bracket is not None and probes.call_count == bracket.calls <= 14  # one measurement
    probe_calls = stats.calls[("listCapabilities", 401)] + stats.calls[("listCapabilities", 200)]
    assert probe_calls == bracket.calls
    assert stats.rate_limited_seconds > 0  # every probe waited its turn like any call


@pytest.mark.parametrize(
    ("body", "ctype", "status"),
    [
        ("<html><body>Login</body></html>", "text/html;charset=UTF-8", 200),
        ("<?xml version='1.0'?><listzonesresponse/>", "text/xml", 200),
        ("\n<!DOCTYPE html><html>Sign in</html>", "application/json", 200),
        ("[1, 2]", "application/json", 200),
        ("", "", 302),
    ],
    ids=["html-login", "xml", "html-labelled-json", "not-an-object", "redirect"],
)
def test_anything_but_cloudstack_json_is_a_not_json_error(fake, mock, body, ctype, status):
    headers = {"Content-Type": ctype} if ctype else {}
    if status == 302:
        headers["Location"] = "http://127.0.0.1:8080/client/"
    mock.get(ENDPOINT).mock(
        return_value=httpx.Response(status, content=body.encode(), headers=headers)
    )

    async def go():
        async with make_client(fake) as cs:
            await cs.request("listZones")

    with pytest.raises(NotJsonError) as info:
        run(go())
    message = str(info.value)
    assert ENDPOINT in message
    assert (ctype.split(";")[0] if ctype else "no content type") in message
    assert info.value.status == status
    if status == 302:
        assert "redirected to http://127.0.0.1:8080/client/" in message


def labelled_json(content: bytes) -> httpx.Response:
    """A 200 answer whose Content-Type says JSON, whatever ``content`` is."""
    return httpx.Response(200, content=content, headers={"Content-Type": "application/json"})


def test_a_truncated_json_answer_to_a_read_is_retried_like_a_reset(fake, mock):
    whole = json.dumps({"listzonesresponse": {"count": 0}}).encode()
    cut = labelled_json(whole[:17])
    route = mock.get(ENDPOINT, params={"command": "listZones"}).mock(
        side_effect=[cut, cut, reply("listZones", {"count": 0})]
    )

    async def go():
        async with make_client(fake) as cs:
            return await cs.request("listZones"), cs.stats.retries

    assert run(go()) == ({"count": 0}, 2)
    assert route.call_count == 3
    assert len(fake.sleeps) == 2 and fake.sleeps[1] > fake.sleeps[0]  # backoff, doubled


def test_a_read_whose_answers_stay_cut_short_fails_without_blaming_the_endpoint(fake, mock):
    cut = labelled_json(b'{"listalertsresponse":{"count":3,"al')
    route = mock.get(ENDPOINT, params={"command": "listAlerts"}).mock(return_value=cut)

    async def go():
        async with make_client(fake, max_retries=2) as cs:
            await cs.request("listAlerts")

    with pytest.raises(MalformedAnswerError) as info:
        run(go())
    message = str(info.value)
    assert route.call_count == 3
    assert "cut short or is not valid JSON after 3 tries" in message
    assert "HTTP 200 application/json, 36 bytes" in message
    assert "endpoint is the API URL" not in message and "UI or proxy page" not in message
    assert not isinstance(info.value, NotJsonError)


def test_a_truncated_answer_to_archive_alerts_is_not_resent(fake, mock):
    cut = labelled_json(b'{"archivealer')
    route = mock.post(ENDPOINT).mock(side_effect=[cut, reply("archiveAlerts", {"success": True})])

    async def go():
        async with make_client(fake) as cs:
            await cs.archive_alerts(["a1"])

    # The archive may have run: the caller settles it by listing (ops/applier.py).
    with pytest.raises(MalformedAnswerError) as info:
        run(go())
    assert route.call_count == 1 and fake.sleeps == []
    assert "tries" not in str(info.value)


def test_a_page_labelled_json_is_not_retried(fake, mock):
    page = labelled_json(b"<html><body>Sign in</body></html>")
    route = mock.get(ENDPOINT, params={"command": "listHosts"}).mock(return_value=page)

    async def go():
        async with make_client(fake) as cs:
            await cs.request("listHosts")

    with pytest.raises(NotJsonError) as info:
        run(go())
    assert route.call_count == 1 and fake.sleeps == []
    assert "an HTML or XML page" in str(info.value) and "not a UI or proxy page" in str(info.value)


def test_an_error_object_under_errorresponse_is_raised(fake, mock):
    mock.get(ENDPOINT).mock(
        return_value=httpx.Response(
            401,
            json={
                "errorresponse": {
                    "errorcode": 401,
                    "errortext": "The given command 'listAlerts' either does not exist, "
                    "is not available for user.",
                }
            },
        )
    )

    async def go():
        async with make_client(fake) as cs:
            await cs.request("listAlerts")

    with pytest.raises(CommandNotAllowedError):
        run(go())


def test_typed_helpers_send_their_defaults(fake, mock):
    hosts = load("recorded/listHosts.json")
    vms = {
        "listvirtualmachinesresponse": load("recorded/listVirtualMachines.json")[
            "listVirtualMachines"
        ]
    }
    host_route = mock.get(ENDPOINT, params={"command": "listHosts"}).respond(json=hosts)
    vm_route = mock.get(ENDPOINT, params={"command": "listVirtualMachines"}).respond(json=vms)
    alert_route = mock.get(ENDPOINT, params={"command": "listAlerts"}).respond(
        json=load("constructed/listAlerts.json")
    )

    async def go():
        async with make_client(fake) as cs:
            return (
                await cs.list_hosts(),
                await cs.list_virtual_machines(hostid="h1"),
                await cs.list_alerts(name="ALERT.USERVM"),
            )

    got_hosts, got_vms, got_alerts = run(go())
    assert isinstance(got_hosts[0], Host) and got_hosts[0].state == "Up"
    assert isinstance(got_vms[0], VirtualMachine) and got_vms[0].instancename == "i-2-683-QA"
    assert all(isinstance(a, Alert) for a in got_alerts) and got_alerts
    assert sent_params(host_route.calls.last.request)["type"] == "Routing"
    vm_params = sent_params(vm_route.calls.last.request)
    assert (vm_params["listall"], vm_params["details"], vm_params["hostid"]) == (
        "true",
        "min",
        "h1",
    )
    assert sent_params(alert_route.calls.last.request)["name"] == "ALERT.USERVM"


def test_version_capabilities_and_api_names(fake, mock):
    mock.get(ENDPOINT, params={"command": "listCapabilities"}).respond(
        json=load("constructed/listCapabilities.json")
    )
    mock.get(ENDPOINT, params={"command": "listApis"}).respond(
        json={"listapisresponse": load("cloudstack-apis-4.18.json")}
    )

    async def go():
        async with make_client(fake) as cs:
            return await cs.version(), await cs.capabilities(), await cs.list_api_names()

    version, capability, names = run(go())
    assert version == "4.19.2.0"
    assert capability["cloudstackversion"] == "4.19.2.0"
    assert {"listAlerts", "archiveAlerts", "queryAsyncJobResult"} <= names


def test_an_unknown_version_is_reported_as_unknown(fake, mock):
    mock.get(ENDPOINT).respond(json={"listcapabilitiesresponse": {"capability": {}}})

    async def go():
        async with make_client(fake) as cs:
            return await cs.version()

    assert run(go()) == "unknown"


# -- stats ----------------------------------------------------------------------------------


def test_stats_count_calls_bytes_and_retries(fake, mock):
    mock.get(ENDPOINT).mock(
        side_effect=[error("listZones", 530, "x"), reply("listZones", {"count": 0})]
    )

    async def go():
        async with make_client(fake) as cs:
            await cs.request("listZones")
            return cs.stats

    stats = run(go())
    assert stats.total == 2
    assert stats.retries == 1
    assert stats.bytes_received > 0
    assert stats.max_concurrent == 1
    summary = stats.to_json()
    assert {"command": "listZones", "status": 530, "count": 1} in summary["calls"]
    json.dumps(summary)


def test_the_client_can_be_used_without_async_with(fake, mock):
    mock.get(ENDPOINT).respond(json={"listzonesresponse": {}})
    client = make_client(fake)

    async def go():
        try:
            return await client.request("listZones")
        finally:
            await client.aclose()

    assert run(go()) == {}


def test_throttled_error_carries_retry_after(fake, mock):
    mock.get(ENDPOINT).mock(return_value=error("listAlerts", 429, THROTTLED, 4545))

    async def go():
        async with make_client(fake, max_retries=0) as cs:
            await cs.request("listAlerts")

    with pytest.raises(ThrottledError) as info:
        run(go())
    assert info.value.retry_after == 1.5
