"""Fault injection against the embedded simulator: every fault keeps issue 8's invariants.

Invariants (``reliakit.check_invariants``): no alert that is not a proven duplicate is archived;
each duplicate is archived at most once; every archived alert has a ledger row whose final state
matches CloudStack; and every archiveAlerts request carries only ids already ``sent`` in the
ledger (``IntentAuditor``). A run may fail under a fault, but only with a CloudStackError (one
clear line); once the fault is gone the next run completes the work.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from reliakit import (
    COMMANDS,
    IntentAuditor,
    NamedContext,
    NoDateTransport,
    archived_by_us,
    check_invariants,
    cleanup,
    fast_settings,
    history_sim,
    live_ids,
    make_context,
    read_ledger,
    recent_sim,
    settled,
)

from cloudstack_simulator import Simulator
from sidecar.cloudstack.client import CloudStackClient
from sidecar.cloudstack.config import CloudStackConfig
from sidecar.cloudstack.errors import (
    AuthenticationError,
    CloudStackError,
    NotJsonError,
    ThrottledError,
)
from sidecar.cloudstack.limits import ClientLimits
from sidecar.ops.cleanup import MAX_PASSES
from sidecar.ops.service.cycle import Service
from sidecar.support.settings import Settings

#: Every command a cleanup or a service cycle sends.
CLEANUP_COMMANDS = ("listCapabilities", "listHosts", "listVirtualMachines", "listAlerts",
                    "archiveAlerts")


@pytest.fixture
def world(fast_ledger: str) -> Iterator[tuple[Simulator, str, IntentAuditor]]:
    """A served 4.19.2 simulator with a 250-alert history, a SQLite ledger, an intent auditor."""
    sim = history_sim(seed=21, alerts=250)
    url = fast_ledger
    with sim.serve():
        auditor = IntentAuditor(sim, url)
        try:
            yield sim, url, auditor
        finally:
            auditor.close()


@pytest.fixture
def paged_world(fast_ledger: str) -> Iterator[tuple[Simulator, str, IntentAuditor]]:
    """Like ``world`` with 1,500 alerts: ALERT.COMPUTE.HOST then needs two 500-row pages."""
    sim = history_sim(seed=22, alerts=1500)
    url = fast_ledger
    with sim.serve():
        auditor = IntentAuditor(sim, url)
        try:
            yield sim, url, auditor
        finally:
            auditor.close()


def settle_under_faults(sim: Simulator, url: str, ctx: NamedContext, *, attempts: int,
                        allowed: tuple[type[BaseException], ...] = (CloudStackError,)) -> int:
    """Run cleanups while the faults stay on: each may fail, but only with ``allowed`` errors,
    and the invariants hold after each. Returns how many failed."""
    failures = 0
    for _ in range(attempts):
        attempt = cleanup(ctx)
        if attempt.error is not None:
            failures += 1
            assert isinstance(attempt.error, allowed), repr(attempt.error)
            assert "\n" not in str(attempt.error)
        assert check_invariants(sim, url, complete=False) == []
        if settled(attempt) and not (sim.truth.duplicate_ids & live_ids(sim)):
            break
    return failures


def finish_without_faults(sim: Simulator, url: str, auditor: IntentAuditor) -> None:
    """Faults off: the next run (default timeouts) completes everything; every invariant holds."""
    sim.faults.clear()
    attempt = cleanup(make_context(sim, fast_settings(url)))
    assert attempt.error is None, repr(attempt.error)
    assert check_invariants(sim, url, complete=True) == []
    assert auditor.violations == []


TRANSIENT: dict[str, tuple[str, dict[str, Any]]] = {
    "530": ("error", {"status": 530}),
    "503": ("error", {"status": 503}),
    "503-after-running": ("error", {"status": 503, "after": True}),
    "reset": ("reset", {}),
    "reset-after-running": ("reset", {"after": True}),
    "hang": ("hang", {"seconds": 2.0}),
}


@pytest.mark.parametrize("rate", [0.01, 0.1, 0.5], ids=lambda r: f"{r:.0%}")
@pytest.mark.parametrize("fault", list(TRANSIENT))
def test_transient_faults_on_every_command_keep_the_invariants(
    world: tuple[Simulator, str, IntentAuditor], fault: str, rate: float
) -> None:
    sim, url, auditor = world
    kind, options = TRANSIENT[fault]
    injected = sim.faults.add(kind, CLEANUP_COMMANDS, rate=rate, **options)
    # A hang costs a real request timeout: keep it short under that fault.
    timeout = 0.1 if kind == "hang" else 5.0
    ctx = make_context(sim, fast_settings(url, request_timeout=timeout, archive_batch_size=10))
    settle_under_faults(sim, url, ctx, attempts=4)
    finish_without_faults(sim, url, auditor)
    if rate >= 0.5:
        assert injected.fired > 0  # the fault really happened


@pytest.mark.parametrize("command", CLEANUP_COMMANDS)
def test_a_burst_of_503_on_each_command_fails_the_run_cleanly_and_the_next_completes(
    world: tuple[Simulator, str, IntentAuditor], command: str
) -> None:
    sim, url, auditor = world
    # A burst longer than the client's retries: the run gives up with one clear line.
    burst = sim.faults.add("error", command, status=503)
    ctx = make_context(sim, fast_settings(url, max_retries=2, archive_batch_size=10))
    attempt = cleanup(ctx)
    # Either the run ends with the error, or (archiving) it records the unanswered batch and
    # says the run is incomplete: one clear line naming the 503 either way.
    message = str(attempt.error) if attempt.error is not None else attempt.problem
    assert attempt.error is None or isinstance(attempt.error, CloudStackError)
    assert "CloudStack error 503" in message and command in message
    assert "\n" not in message
    # A read is tried three times (max_retries=2); a write once: after a 503 its outcome is
    # unknown, so it is settled from the next listing instead of being sent blindly again.
    if command == "archiveAlerts":
        assert burst.fired >= 1
        assert sim.stats.archive_count == {}
        assert read_ledger(url).having("sent")
    else:
        assert burst.fired >= 3
    assert check_invariants(sim, url, complete=False) == []
    finish_without_faults(sim, url, auditor)


@pytest.mark.parametrize("rate", [0.1, 0.5], ids=lambda r: f"{r:.0%}")
def test_html_pages_are_named_at_once_and_never_break_the_ledger(
    world: tuple[Simulator, str, IntentAuditor], rate: float
) -> None:
    sim, url, auditor = world
    fault = sim.faults.add("html", CLEANUP_COMMANDS, rate=rate)
    ctx = make_context(sim, fast_settings(url, archive_batch_size=10))
    errors: list[str] = []
    for _ in range(6):
        attempt = cleanup(ctx)
        if attempt.error is not None:
            assert isinstance(attempt.error, NotJsonError), repr(attempt.error)
            errors.append(str(attempt.error))
        assert check_invariants(sim, url, complete=False) == []
    assert errors, "the fault never reached the sidecar"
    assert all("expected CloudStack JSON from" in e and "text/html" in e for e in errors)
    assert fault.fired > 0
    finish_without_faults(sim, url, auditor)


# -- answers cut short -----------------------------------------------------------------------

#: Every read any command sends (check adds listApis to the cleanup's reads).
READS = (*(c for c in CLEANUP_COMMANDS if c != "archiveAlerts"), "listApis")


@pytest.mark.parametrize("command", list(COMMANDS))
def test_truncated_reads_are_retried_in_every_command_and_it_completes(
    world: tuple[Simulator, str, IntentAuditor], command: str
) -> None:
    sim, url, auditor = world
    # A third of every read's answers cut short: each is retried, none ends the command.
    fault = sim.faults.add("truncated", READS, rate=0.3)
    # check measures the skew: read our clock from the simulator's (it stands in the past).
    seams: dict[str, Any] = {"wall_clock": sim.clock.time} if command == "check" else {}
    ctx = make_context(sim, fast_settings(url, max_retries=8, archive_batch_size=10), **seams)
    ok, message = COMMANDS[command](ctx)
    assert ok, message
    assert fault.fired > 0
    assert check_invariants(sim, url, complete=command == "cleanup") == []
    assert auditor.violations == []


@pytest.mark.parametrize("kind", ["truncated", "malformed_json"])
def test_a_cleanup_under_10_percent_cut_answers_completes_exactly_in_one_run(
    fast_ledger: str, kind: str
) -> None:
    sim = history_sim(seed=23, alerts=1000)
    url = fast_ledger
    with sim.serve():
        auditor = IntentAuditor(sim, url)
        try:
            # Every command, archiveAlerts included: a cut answer to it is an unknown outcome,
            # settled from the next pass's listing (never sent twice).
            reads = sim.faults.add(kind, READS, rate=0.1)
            archives = sim.faults.add(kind, "archiveAlerts", rate=0.1)
            # One request at a time: the seeded faults fall on the same requests every run.
            settings = fast_settings(url, archive_batch_size=10, max_concurrency=1)
            attempt = cleanup(make_context(sim, settings))
        finally:
            auditor.close()
    assert attempt.error is None, repr(attempt.error)
    assert settled(attempt), attempt.problem
    assert reads.fired > 0 and archives.fired > 0
    truth = sim.truth.duplicate_ids
    assert archived_by_us(sim) == truth  # every duplicate, nothing else
    assert sim.stats.archived_more_than_once() == []
    view = read_ledger(url)
    assert view.having("done") | view.having("already-gone") == truth == set(view.states)
    assert check_invariants(sim, url, complete=True, view=view) == []
    assert auditor.violations == []
    assert attempt.totals is not None and attempt.totals["passes"] <= MAX_PASSES


def test_an_alert_archived_by_another_admin_meanwhile_is_recorded_already_gone(
    world: tuple[Simulator, str, IntentAuditor],
) -> None:
    sim, url, auditor = world
    # Just before three archiveAlerts run, another admin archives one of their ids: upstream
    # pre-checks every id and answers 530 for the whole batch, archiving nothing.
    fault = sim.faults.add("archived_by_other", times=3, k=1)
    ctx = make_context(sim, fast_settings(url, archive_batch_size=10))
    attempt = cleanup(ctx)
    assert attempt.error is None, repr(attempt.error)
    assert fault.fired == 3 and len(fault.affected) == 3
    view = read_ledger(url)
    assert set(fault.affected) <= view.having("already-gone")
    assert view.having("already-gone") == set(fault.affected)
    assert not sim.stats.archived_more_than_once()
    assert check_invariants(sim, url, complete=True) == []
    assert auditor.violations == []
    # Bisection finds the gone id in about log2(batch) calls per hit, not one call per id.
    batches = -(-len(sim.truth.duplicate_ids) // 10)
    assert sim.stats.calls["archiveAlerts"] <= batches + 3 * 2 * 4


def test_an_alert_deleted_meanwhile_is_recorded_already_gone_and_the_rest_archived(
    world: tuple[Simulator, str, IntentAuditor],
) -> None:
    sim, url, auditor = world
    # Deleted (purged) just before archiveAlerts: CloudStack answers 431 naming the uuid.
    fault = sim.faults.add("delete_alerts", "archiveAlerts", times=2, k=2)
    ctx = make_context(sim, fast_settings(url, archive_batch_size=10))
    attempt = cleanup(ctx)
    assert attempt.error is None, repr(attempt.error)
    assert len(fault.affected) == 4
    view = read_ledger(url)
    assert view.having("already-gone") == set(fault.affected)
    assert view.having("done") == sim.truth.duplicate_ids - set(fault.affected)
    assert check_invariants(sim, url, complete=True) == []
    assert auditor.violations == []


def test_new_alerts_arriving_while_paging_are_listed_and_never_archived_blindly(
    paged_world: tuple[Simulator, str, IntentAuditor],
) -> None:
    sim, url, auditor = paged_world
    # Alerts of an eligible name arrive just before page 2 is answered (every row shifts down
    # by as many positions); their subject is of no known format, so they must be left alone.
    fault = sim.faults.add(
        "insert_alerts", times=3, n=7, min_page=2, name="ALERT.COMPUTE.HOST",
        subject="operator note: rack 7 maintenance",
    )
    ctx = make_context(sim, fast_settings(url, archive_batch_size=50))
    attempt = cleanup(ctx)
    assert attempt.error is None, repr(attempt.error)
    assert fault.fired > 0 and fault.affected
    assert not set(fault.affected) & set(sim.stats.archive_count)
    assert set(fault.affected) <= live_ids(sim)
    assert check_invariants(sim, url, complete=True) == []
    assert auditor.violations == []


def test_alerts_purged_while_paging_do_not_hide_duplicates_or_break_the_ledger(
    paged_world: tuple[Simulator, str, IntentAuditor],
) -> None:
    sim, url, auditor = paged_world
    # CloudStack's purge deletes the oldest alerts while the sidecar pages (rows shift up by
    # as many positions, so a naive pager would skip some).
    fault = sim.faults.add("delete_alerts", "listAlerts", times=4, k=5)
    ctx = make_context(sim, fast_settings(url, archive_batch_size=50))
    attempt = cleanup(ctx)
    assert attempt.error is None, repr(attempt.error)
    assert fault.fired > 0
    assert not set(fault.affected) & set(sim.stats.archive_count)
    assert check_invariants(sim, url, complete=True) == []
    assert auditor.violations == []


# -- 429 -------------------------------------------------------------------------------------


class VirtualTime:
    """A clock that moves only when the client sleeps (one request at a time, so exact)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class StartRecorder(httpx.AsyncHTTPTransport):
    """Records the (virtual) time each request starts and the status it got."""

    def __init__(self, vtime: VirtualTime) -> None:
        super().__init__()
        self.time = vtime
        self.starts: list[tuple[float, int]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        at = self.time.now
        response = await super().handle_async_request(request)
        self.starts.append((at, response.status_code))
        return response


def test_a_429_waits_the_time_its_text_names_and_the_limit_holds_afterwards(
    world: tuple[Simulator, str, IntentAuditor],
) -> None:
    sim, _, _ = world
    sim.faults.add("throttle", "listAlerts", times=2, ms=1500)
    vtime = VirtualTime()
    transport = StartRecorder(vtime)
    settings = Settings(requests_per_second=4, max_concurrency=1, max_retries=3,
                        retry_backoff=0.0, request_timeout=5.0)
    config = CloudStackConfig(sim.endpoint or "", sim.key, sim.secret)

    async def scenario() -> int:
        async with CloudStackClient(config, limits=ClientLimits.from_settings(settings),
                                    transport=transport,
                                    sleep=vtime.sleep, clock=vtime.clock) as cs:
            total = 0
            for name in ("ALERT.USERVM", "ALERT.COMPUTE.HOST", "ALERT.HA.ACTION"):
                total += len(await cs.list_alerts(name=name, pagesize=50))
            return total

    assert asyncio.run(scenario()) > 0
    starts = transport.starts
    throttled = [at for at, status in starts if status == 429]
    assert len(throttled) == 2
    for at in throttled:
        later = [t for t, _ in starts if t > at]
        assert later and min(later) >= at + 1.5  # waited what "retry after [1500] ms" says
        # Nothing at all started in the window the server named.
        assert not [t for t, _ in starts if at < t < at + 1.5]
    # Never more than requests_per_second starts in any one-second window.
    times = sorted(t for t, _ in starts)
    for i, t in enumerate(times):
        assert len([u for u in times[i:] if u < t + 1.0]) <= 4


def test_a_cleanup_under_429s_retries_even_the_archive_calls_and_keeps_the_invariants(
    world: tuple[Simulator, str, IntentAuditor],
) -> None:
    sim, url, auditor = world
    # The rate-limit checker rejects a call before it runs, so an archiveAlerts answered 429
    # did nothing and is safely sent again.
    fault = sim.faults.add("throttle", CLEANUP_COMMANDS, rate=0.3, ms=20)
    ctx = make_context(sim, fast_settings(url, archive_batch_size=10, max_retries=8))
    attempt = cleanup(ctx)
    assert attempt.error is None or isinstance(attempt.error, ThrottledError)
    assert fault.fired > 0
    assert check_invariants(sim, url, complete=False) == []
    finish_without_faults(sim, url, auditor)


# -- credentials and clocks --------------------------------------------------------------------


def test_a_401_in_the_middle_of_archiving_stops_the_run_and_the_next_run_settles_it(
    world: tuple[Simulator, str, IntentAuditor],
) -> None:
    sim, url, auditor = world
    # The key is rotated (or the signature rejected) from the third archive call on.
    calls = {"n": 0}

    def on_request(call: object, number: int) -> None:
        if getattr(call, "command", "") == "archiveAlerts":
            calls["n"] += 1
            if calls["n"] == 3:
                sim.faults.add("unauthorized", "*", times=1000)

    auditor.on_request = on_request
    ctx = make_context(sim, fast_settings(url, archive_batch_size=10))
    attempt = cleanup(ctx)
    assert isinstance(attempt.error, AuthenticationError)
    assert "CloudStack rejected the credentials" in str(attempt.error)
    # Acting stops at the first 401: the key went during the third archive call, the fourth
    # was refused, and nothing was sent after it.
    assert sim.stats.calls["archiveAlerts"] == 4
    assert check_invariants(sim, url, complete=False) == []
    auditor.on_request = None
    finish_without_faults(sim, url, auditor)


def test_a_clock_skew_beyond_the_probes_reach_is_still_named_as_a_possible_cause(
    fast_ledger: str,
) -> None:
    sim = history_sim(seed=5, alerts=50)
    with sim.serve():
        # No Date header (upstream sends none); the server's clock two hours ahead of ours.
        ctx = make_context(sim, fast_settings(fast_ledger), transport=NoDateTransport(),
                           wall_clock=lambda: sim.clock.time() - 7200)
        attempt = cleanup(ctx)
    assert isinstance(attempt.error, AuthenticationError)
    text = str(attempt.error)
    assert "clock skew beyond what was probed" in text
    assert "from 1190 s behind to 2380 s ahead of this host were refused too" in text
    assert "your key works" not in text
    # The cleanup's call, then the probe: asked again, two windows ahead, one behind.
    assert sim.stats.calls["listCapabilities"] == 1 + 4
    assert sim.stats.archive_count == {}


@pytest.mark.parametrize("how", ["account disabled", "key rotated"])
def test_the_service_stops_acting_on_a_401_says_why_and_recovers_when_the_key_works_again(
    fast_ledger: str, how: str
) -> None:
    sim = recent_sim(seed=31, hours_behind=2)
    sim.run_scenario("host-crash")
    with sim.serve():
        auditor = IntentAuditor(sim, fast_ledger)
        ctx = make_context(sim, fast_settings(fast_ledger))
        service = Service(ctx, dry_run=False)
        try:
            first = service.run_cycle()
            assert first.ok, first.message
            assert check_invariants(sim, fast_ledger, complete=True) == []
            # The credentials stop working while a new failure adds duplicates.
            if how == "account disabled":
                sim.disable_key(sim.key)
            else:
                sim.rotate_key()
            sim.clock.advance(900)
            sim.run_scenario("host-crash")
            archive_calls = sim.stats.calls["archiveAlerts"]
            for _ in range(2):  # the service keeps cycling, and keeps refusing to act
                down = service.run_cycle()
                assert not down.ok
                assert "CloudStack rejected the credentials" in down.message
                assert "not acting until the credentials work again" in down.message
                assert "\n" not in down.message
            assert sim.stats.calls["archiveAlerts"] == archive_calls
            if how == "account disabled":
                sim.state.keys[sim.key].enabled = True  # the admin unlocks the account
            else:
                # The operator puts the new key where the sidecar reads it.
                ctx.cloudstack = dataclasses.replace(ctx.cloudstack, key=sim.key,
                                                     secret=sim.secret)
            up = service.run_cycle()
            assert up.ok, up.message
        finally:
            service.close()
            auditor.close()
    assert check_invariants(sim, fast_ledger, complete=True) == []
    assert auditor.violations == []


@pytest.mark.parametrize(("kind", "options", "rate"), [
    ("error", {"status": 503}, 0.2),
    ("error", {"status": 530, "after": True}, 0.2),
    ("reset", {"after": True}, 0.3),
    ("hang", {"seconds": 2.0}, 0.2),
    ("malformed_json", {}, 0.3),
], ids=["503", "530-after-running", "reset-after-running", "hang", "malformed-json"])
def test_the_service_keeps_cycling_through_faults_and_catches_up_afterwards(
    fast_ledger: str, kind: str, options: dict[str, Any], rate: float
) -> None:
    sim = recent_sim(seed=33, hours_behind=3)
    with sim.serve():
        auditor = IntentAuditor(sim, fast_ledger)
        timeout = 0.1 if kind == "hang" else 5.0
        ctx = make_context(sim, fast_settings(fast_ledger, request_timeout=timeout,
                                              archive_batch_size=2))
        service = Service(ctx, dry_run=False)
        try:
            fault = sim.faults.add(kind, CLEANUP_COMMANDS, rate=rate, **options)
            for i in range(4):
                sim.clock.advance(900)
                # A different host each time (see the test below for one host failing twice).
                sim.run_scenario("host-crash", host=f"kvm-{i + 1:02d}")
                result = service.run_cycle()  # never raises, whatever happens
                assert "\n" not in result.message
                assert check_invariants(sim, fast_ledger, complete=False) == []
            assert fault.fired > 0
            sim.faults.clear()
            ctx.settings = dataclasses.replace(ctx.settings, request_timeout=5.0)
            caught_up = service.run_cycle()
            assert caught_up.ok, caught_up.message
        finally:
            service.close()
            auditor.close()
    assert check_invariants(sim, fast_ledger, complete=True) == []
    assert auditor.violations == []


def test_a_host_failing_twice_between_polls_keeps_the_second_failures_canonicals(
    fast_ledger: str,
) -> None:
    # The ledger saw kvm-02 Up at every poll: both failures (an hour apart) began and ended
    # between two cycles. The second one's first alerts are canonicals, not duplicates.
    sim = recent_sim(seed=33, hours_behind=3)
    with sim.serve():
        service = Service(make_context(sim, fast_settings(fast_ledger)), dry_run=False)
        try:
            assert service.run_cycle().ok
            for _ in range(2):
                sim.run_scenario("host-crash", host="kvm-02")
                assert service.run_cycle().ok
                sim.clock.advance(3600)
        finally:
            service.close()
    assert archived_by_us(sim) == sim.truth.duplicate_ids
    assert check_invariants(sim, fast_ledger, complete=True) == []
