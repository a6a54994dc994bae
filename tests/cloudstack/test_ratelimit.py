"""The request-rate limit as the server counts requests, not as the client grants slots.

Most tests run on an event loop whose time is virtual (:class:`VirtualLoop`): timers fire in
order without real waiting, and "CPU work that blocks the loop" is a jump of the clock made
without yielding, exactly what a long JSON parse or ledger write does to real requests.
"""

from __future__ import annotations

import asyncio
import random
import selectors
import time
from collections.abc import Callable, Coroutine
from types import SimpleNamespace
from typing import Any, TypeVar

import httpx
import pytest

from cloudstack_simulator import Simulator
from sidecar.cloudstack.client import CloudStackClient
from sidecar.cloudstack.config import CloudStackConfig
from sidecar.cloudstack.limits import ClientLimits
from sidecar.cloudstack.ratelimit import MAX_STALLED_SLEEPS, RateLimiter
from sidecar.support.settings import Settings

T = TypeVar("T")


class VirtualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def block(self, seconds: float) -> None:
        """CPU work: time passes and nothing else runs."""
        self.now += seconds


class _VirtualSelector(selectors.DefaultSelector):
    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if not ready:
            if timeout is None:
                raise RuntimeError("deadlock: no task can run and no timer is set")
            self._clock.now += timeout  # idle until the next timer, without waiting
        return ready


class VirtualLoop(asyncio.SelectorEventLoop):
    """An event loop whose time is ``clock``; idle time is skipped."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(selector=_VirtualSelector(clock))
        self.clock = clock

    def time(self) -> float:
        return self.clock.now


def run_virtual(clock: VirtualClock, coro: Coroutine[Any, Any, T]) -> T:
    loop = VirtualLoop(clock)
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def max_in_any_window(times: list[float], window: float = 1.0) -> int:
    """Most ``times`` in any ``(t - window, t]`` (as the simulator's ``max_per_second``)."""
    ordered = sorted(times)
    best = first = 0
    for last, t in enumerate(ordered):
        while ordered[first] <= t - window:
            first += 1
        best = max(best, last - first + 1)
    return best


# -- the limiter alone ------------------------------------------------------------------------

HEADERS_IN = "http11.receive_response_headers.complete"


def test_a_start_holds_its_place_in_the_window_until_it_is_counted_however_late_that_is():
    clock = VirtualClock()
    limiter = RateLimiter(2, clock=clock)
    granted: list[float] = []

    async def go() -> None:
        first = await limiter.acquire()
        second = await limiter.acquire()
        third = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(5.0)  # both pending for 5 s: nothing aged out
        assert not third.done()
        first.counted()  # the first answer comes only now
        second.counted()
        start = await third
        granted.append(clock() - 1005.0)
        start.counted()

    run_virtual(clock, go())
    # The third start waited a whole window after the first answer, not after its grant.
    assert granted == [pytest.approx(limiter.window)]


def test_the_window_check_never_gives_up_however_early_the_sleeper_is_woken():
    now = [0.0]
    sleeps: list[float] = []

    async def early_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds / 20  # a sleep that wakes far too early, every time

    limiter = RateLimiter(5, clock=lambda: now[0], sleep=early_sleep)
    starts: list[float] = []

    async def go() -> None:
        for _ in range(25):
            start = await limiter.acquire()
            start.counted()
            starts.append(now[0])

    asyncio.run(go())
    assert len(sleeps) > 8 * 4  # far more wake-ups than the old bounded loop allowed
    assert max_in_any_window(starts, limiter.window) <= limiter.burst


def test_a_limiter_whose_clock_never_advances_fails_loudly_instead_of_spinning():
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    limiter = RateLimiter(2, clock=lambda: 7.0, sleep=sleep)

    async def go() -> None:
        for _ in range(3):
            (await limiter.acquire()).counted()

    with pytest.raises(RuntimeError, match=r"clock stayed at 7\.0"):
        asyncio.run(go())
    assert len(sleeps) == MAX_STALLED_SLEEPS


def test_the_answer_to_a_proxy_tunnels_connect_does_not_date_the_request():
    clock = VirtualClock()
    limiter = RateLimiter(1, clock=clock)

    async def go() -> tuple[float | None, float | None]:
        start = await limiter.acquire()
        trace = start.tracer()
        await trace(HEADERS_IN, {"request": SimpleNamespace(method=b"CONNECT")})
        tunnelled = start.at
        clock.block(0.5)  # TLS through the tunnel, then our request and its answer
        await trace(HEADERS_IN, {"request": SimpleNamespace(method=b"GET")})
        return tunnelled, start.at

    assert run_virtual(clock, go()) == (None, 1000.5)


def test_a_start_is_dated_by_the_first_sign_that_the_server_counted_it():
    clock = VirtualClock()
    limiter = RateLimiter(1, clock=clock)
    events: list[str] = []

    async def outer(name: str, info: object) -> None:
        events.append(name)

    async def go() -> tuple[float | None, float]:
        start = await limiter.acquire()
        await start.tracer(outer)(HEADERS_IN, {"request": SimpleNamespace(method=b"GET")})
        clock.block(0.4)  # reading a large body
        start.settle()  # the call is over: no later date
        dated = start.at
        (await limiter.acquire()).counted()
        return dated, clock()

    assert run_virtual(clock, go()) == (1000.0, pytest.approx(1000.0 + limiter.window))
    assert events == [HEADERS_IN]  # an existing trace callback still hears every event


def test_callers_get_their_slots_in_the_order_they_asked():
    clock = VirtualClock()
    limiter = RateLimiter(3, clock=clock)
    order: list[int] = []

    async def caller(n: int) -> None:
        start = await limiter.acquire()
        order.append(n)
        start.counted()

    async def go() -> None:
        await asyncio.gather(*(caller(n) for n in range(12)))

    run_virtual(clock, go())
    assert order == list(range(12))


def test_a_429_pause_holds_back_callers_already_waiting_for_room():
    clock = VirtualClock()
    limiter = RateLimiter(1, clock=clock)

    async def go() -> float:
        (await limiter.acquire()).counted()
        waiting = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0)
        limiter.pause_for(3.0)  # the server named 3 s while the next caller waited
        (await waiting).counted()
        return clock()

    assert run_virtual(clock, go()) == pytest.approx(1003.0)


# -- through the client ----------------------------------------------------------------------

ENDPOINT = "http://127.0.0.1:8080/client/api"


class WireTransport(httpx.AsyncBaseTransport):
    """Behaves like httpcore and a busy server, for timing.

    Between the transport getting a request and its bytes leaving, the stream yields to the
    loop (anyio's checkpoint), and whatever other tasks do then — ``busy()`` seconds of CPU
    work — delays the send. The server counts the request ``server_delay()`` seconds after it
    arrived (a busy server's threads wait for a CPU), answers ``latency`` seconds later, and the
    ``trace`` extension hears when the answer's headers are in. ``counted`` holds the (virtual)
    times the server counted requests at, as its ``max_per_second`` sees them.
    """

    def __init__(self, clock: VirtualClock, *, latency: float = 0.01, trace: bool = True,
                 busy: Callable[[], float] | None = None,
                 server_delay: Callable[[], float] | None = None,
                 throttle: set[int] | None = None) -> None:  # fmt: skip
        self.clock = clock
        self.latency = latency
        self.trace = trace
        self.busy = busy
        self.server_delay = server_delay
        self.throttle = throttle or set()  # numbers (in counting order) answered 429
        self.counted: list[float] = []
        self.entered: list[float] = []  # when the transport got each request (after its grant)
        self.answered_429: list[float] = []
        self.in_flight = self.max_in_flight = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        trace = request.extensions.get("trace") if self.trace else None
        info = {"request": SimpleNamespace(method=request.method.encode())}
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if trace is not None:
                await trace("http11.send_request_headers.started", info)
            entered = self.clock()
            await asyncio.sleep(0)
            if self.busy is not None:
                self.clock.block(self.busy())  # the loop ran other work before our write
            if trace is not None:
                await trace("http11.send_request_body.complete", info)
            if self.server_delay is not None:
                await asyncio.sleep(self.server_delay())
            self.entered.append(entered)
            self.counted.append(self.clock())
            number = len(self.counted)
            await asyncio.sleep(self.latency)
            if trace is not None:
                await trace(HEADERS_IN, info)
        finally:
            self.in_flight -= 1
        command = request.url.params.get("command", "x").lower()
        if number in self.throttle:
            self.answered_429.append(self.clock())
            text = "api limit, please retry after [2000] ms."
            body = {"errorcode": 429, "cserrorcode": 4545, "errortext": text}
            return httpx.Response(429, json={f"{command}response": body})
        return httpx.Response(200, json={f"{command}response": {}})


def sometimes(seed: int, share: float, most: float) -> Callable[[], float]:
    """A delay found at a send: ``share`` of the time, up to ``most`` seconds."""
    rng = random.Random(seed)
    return lambda: rng.uniform(0.0, most) if rng.random() < share else 0.0


def make_client(clock: VirtualClock, transport: httpx.AsyncBaseTransport, *, rps: float,
                concurrency: int = 4) -> CloudStackClient:  # fmt: skip
    settings = Settings(requests_per_second=rps, max_concurrency=concurrency, max_retries=3,
                        retry_backoff=0.1)  # fmt: skip
    return CloudStackClient(
        CloudStackConfig(endpoint=ENDPOINT, key="k" * 20, secret="s" * 20),
        limits=ClientLimits.from_settings(settings),
        transport=transport,
        clock=clock,
        wall_clock=lambda: 1_700_000_000.0,
        rng=random.Random(3),
    )


async def calls_with_cpu_work(cs: CloudStackClient, clock: VirtualClock, n: int, seed: int,
                              *, share: float = 0.5, most: float = 0.25) -> None:  # fmt: skip
    """``n`` calls, a ``share`` of them followed by up to ``most`` seconds of CPU work (parsing a
    page, writing the ledger)."""
    rng = random.Random(seed)

    async def one() -> None:
        await cs.request("listAlerts")
        if rng.random() < share:
            clock.block(rng.uniform(0.0, most))

    await asyncio.gather(*(one() for _ in range(n)))


@pytest.mark.parametrize("trace", [True, False], ids=["traced", "untraced-transport"])
@pytest.mark.parametrize("seed", range(3))
def test_requests_never_start_more_than_the_limit_in_any_window_when_the_loop_was_blocked(
    seed: int, trace: bool
):
    # The limiter that timed the window from its grants let 23-24 of these be counted in one
    # second.
    clock = VirtualClock()
    transport = WireTransport(clock, trace=trace, busy=sometimes(seed, 0.1, 0.25))

    async def go() -> None:
        async with make_client(clock, transport, rps=20) as cs:
            await calls_with_cpu_work(cs, clock, 300, seed, share=0.2, most=0.1)

    run_virtual(clock, go())
    assert len(transport.counted) == 300
    assert max_in_any_window(transport.counted) <= 20
    assert transport.max_in_flight <= 4


@pytest.mark.parametrize("seed", range(3))
def test_requests_never_count_more_than_the_limit_when_a_busy_server_counts_them_late(seed: int):
    # Timing the window from the grants, or even from the sends, with a 5 % margin let 21-23
    # of these be counted in one second: no margin knows how late a server counts.
    clock = VirtualClock()
    transport = WireTransport(clock, server_delay=sometimes(seed, 0.2, 0.15))

    async def go() -> None:
        async with make_client(clock, transport, rps=20) as cs:
            await calls_with_cpu_work(cs, clock, 300, seed, share=0.0)

    run_virtual(clock, go())
    assert len(transport.counted) == 300
    assert max_in_any_window(transport.counted) <= 20


@pytest.mark.parametrize("cpu", [0.0, 0.1], ids=["idle-loop", "busy-loop"])
@pytest.mark.parametrize("rps", [20, 60])
def test_the_limit_costs_little_throughput_even_when_the_loop_is_blocked(rps: int, cpu: float):
    clock = VirtualClock()
    transport = WireTransport(clock, busy=sometimes(1, cpu, 0.1))
    calls = 15 * rps

    async def go() -> float:
        async with make_client(clock, transport, rps=rps) as cs:
            began = clock()
            await calls_with_cpu_work(cs, clock, calls, seed=0, share=cpu, most=0.1)
            return clock() - began

    elapsed = run_virtual(clock, go())
    assert max_in_any_window(transport.counted) <= rps
    # The first ``rps`` calls go at once; every later one waits for a slot to age out, a window
    # (1.002 s) after the answer (10 ms) of the call that held it.
    steady = (calls - rps) / rps * (1.002 + transport.latency)
    # With 10 % of the sends delayed and 10 % of the answers followed by up to 100 ms of CPU
    # work, the loop is busy about half the time. Here the limiter that timed the window from
    # its grants (5 % margin) took 15.21 s at 20/s and 16.22 s at 60/s, and let 23 and 64
    # requests be counted in one second; this one takes 14.90 s and 15.92 s.
    assert elapsed < steady * (1.02 if cpu == 0 else 1.13)


def test_each_retry_after_a_429_is_a_new_start_after_the_pause_and_within_the_limit():
    clock = VirtualClock()
    transport = WireTransport(clock, throttle={5, 6, 30})

    async def go() -> CloudStackClient:
        async with make_client(clock, transport, rps=10) as cs:
            await calls_with_cpu_work(cs, clock, 60, seed=1)
            return cs

    cs = run_virtual(clock, go())
    counted = transport.counted
    assert len(counted) == 60 + 3  # every 429 was retried, as a new request
    assert cs.stats.retries == 3
    assert max_in_any_window(counted) <= 10
    assert len(transport.answered_429) == 3
    for answered in transport.answered_429:
        # No request granted after the 429 came back was counted in the 2 s the server named.
        granted_later = [c for e, c in zip(transport.entered, counted, strict=True) if e > answered]
        assert granted_later and min(granted_later) >= answered + 2.0


def test_the_wait_for_a_slot_is_not_counted_as_the_calls_latency():
    clock = VirtualClock()
    transport = WireTransport(clock, latency=0.05)
    seconds: list[float] = []

    async def go() -> None:
        settings = Settings(requests_per_second=1, max_concurrency=1)
        async with CloudStackClient(
            CloudStackConfig(endpoint=ENDPOINT, key="k" * 20, secret="s" * 20),
            limits=ClientLimits.from_settings(settings),
            transport=transport,
            clock=clock,
            on_call=lambda command, status, s: seconds.append(s),
        ) as cs:
            for _ in range(3):
                await cs.request("listZones")
            # Each slot ages out a window after the answer came.
            assert cs.stats.rate_limited_seconds == pytest.approx(2 * 1.002)

    run_virtual(clock, go())
    assert seconds == [pytest.approx(0.05)] * 3


# -- against a real local server --------------------------------------------------------------


def test_the_simulator_never_counts_more_arrivals_per_second_than_the_limit_under_cpu_load():
    """~400 real HTTP calls at 200/s while other tasks block the loop for tens of ms."""
    sim = Simulator(profile="4.19.2", seed=5, hosts=1, vms_per_host=1)

    def busy(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    async def go(endpoint: str) -> None:
        config = CloudStackConfig(endpoint=endpoint, key=sim.key, secret=sim.secret)
        settings = Settings(requests_per_second=200, max_concurrency=4)
        async with CloudStackClient(config, limits=ClientLimits.from_settings(settings)) as cs:
            await cs.request("listCapabilities")
            sim.stats.reset()
            rng = random.Random(9)
            done = asyncio.Event()

            async def hog() -> None:
                while not done.is_set():
                    await asyncio.sleep(rng.uniform(0.05, 0.2))
                    busy(rng.uniform(0.03, 0.12))

            hogging = asyncio.create_task(hog())
            await asyncio.gather(*(cs.request("listCapabilities") for _ in range(400)))
            done.set()
            await hogging

    with sim.serve() as endpoint:
        asyncio.run(go(endpoint))
        stats = sim.stats.snapshot()
    assert stats["calls"] == {"listCapabilities": 400}
    assert stats["max_per_second"] <= 200
    assert stats["max_inflight"] <= 4
