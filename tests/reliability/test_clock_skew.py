"""Clock skew against a server that sends no ``Date`` (upstream's Jetty): the signature tells.

Our clock is injected (``wall_clock``) and the simulator's is virtual, so the skew is exact and
nothing sleeps. ``NoDateTransport`` drops the simulator's ``Date`` header.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Callable, Iterator

import pytest
from reliakit import COMMANDS, NoDateTransport, fast_settings, make_context

from cloudstack_simulator import Simulator
from sidecar.cloudstack.skew import MAX_CALLS
from sidecar.ops.check import EXIT_PROBLEMS, CheckResult, run_check
from sidecar.support.errors import EXIT_CLOUDSTACK

#: The acceptance's tolerance; the probe brackets to 2 s (so ±1 s here).
TOLERANCE = 5.0


@pytest.fixture(params=["4.19.2", "4.22-enforced"])
def sim(request: pytest.FixtureRequest) -> Iterator[Simulator]:
    """A served simulator; with 4.21+'s enforcement, ``expires`` must also be at most 15
    minutes ahead of its clock."""
    enforced = request.param.endswith("-enforced")
    simulator = Simulator(profile=request.param.removesuffix("-enforced"), seed=41, hosts=2,
                          vms_per_host=2, enforce_post=enforced)
    simulator.seed_history(alerts=60, duplicate_ratio=0.3)
    with simulator.serve():
        yield simulator


def ours(sim: Simulator, skew: float) -> Callable[[], float]:
    """Our wall clock, ``skew`` seconds behind the server's (negative: ahead of it)."""
    return lambda: sim.clock.time() - skew


def check(sim: Simulator, skew: float, *, expiration: float = 600.0) -> CheckResult:
    ctx = make_context(sim, fast_settings("sqlite://"))
    config = dataclasses.replace(ctx.cloudstack, expiration=expiration)
    return asyncio.run(run_check(config, ctx.settings, transport=NoDateTransport(),
                                 wall_clock=ours(sim, skew)))


@pytest.mark.parametrize("skew", [300.0, -300.0], ids=["ahead", "behind"])
def test_check_measures_the_skew_without_a_date_header_and_fails_beyond_the_limit(
    sim: Simulator, skew: float
) -> None:
    # Half of a 500 s request lifetime is 250 s: 300 s is too much.
    tight = check(sim, skew, expiration=500.0)
    assert tight.clock_skew is not None and abs(tight.clock_skew - skew) <= TOLERANCE
    assert tight.skew_source == "signature"
    assert tight.skew_probes > 2  # no Date header gave the probe a head start
    assert tight.skew_limit == 250.0 and not tight.skew_ok
    assert not tight.ok and tight.exit_code == EXIT_PROBLEMS
    assert tight.error is None and tight.credentials_ok


def test_check_passes_with_a_skew_within_the_limit(sim: Simulator) -> None:
    # Half of a 700 s lifetime is 350 s: a server 300 s ahead is within it (our expires lands
    # 400 s after its clock).
    result = check(sim, 300.0, expiration=700.0)
    assert result.clock_skew is not None and abs(result.clock_skew - 300.0) <= TOLERANCE
    assert result.skew_ok and result.ok and result.exit_code == 0


def test_a_server_behind_by_more_than_4_21s_limit_allows_is_named_as_the_401s_cause() -> None:
    sim = Simulator(profile="4.22", seed=41, hosts=2, vms_per_host=2, enforce_post=True)
    with sim.serve():
        # Signed 900 s ahead of our clock = 1200 s ahead of the server's: over 15 minutes.
        result = check(sim, -300.0, expiration=900.0)
    assert result.exit_code == EXIT_CLOUDSTACK and result.credentials_ok
    assert result.error is not None
    match = re.search(r"your key works; the server clock is (\d+) s behind this host",
                      result.error)
    assert match and abs(int(match.group(1)) - 300) <= TOLERANCE, result.error
    assert "more than 15 minutes after the server's" in result.error
    assert result.clock_skew is not None and abs(result.clock_skew + 300.0) <= TOLERANCE


def named_skew(message: str) -> int:
    match = re.search(r"your key works; the server clock is (\d+) s ahead of this host: fix NTP",
                      message)
    assert match, message
    return int(match.group(1))


def test_check_with_the_server_900_s_ahead_says_the_key_works_and_names_the_skew(
    sim: Simulator,
) -> None:
    result = check(sim, 900.0)
    assert result.exit_code == EXIT_CLOUDSTACK and result.credentials_ok
    assert result.error is not None and abs(named_skew(result.error) - 900) <= TOLERANCE
    assert "wrong API key" not in result.error


@pytest.mark.parametrize("command", ["report", "cleanup", "run --once"])
def test_a_normal_command_with_the_server_900_s_ahead_names_the_skew_in_its_401(
    sim: Simulator, fast_ledger: str, command: str
) -> None:
    ctx = make_context(sim, fast_settings(fast_ledger), transport=NoDateTransport(),
                       wall_clock=ours(sim, 900.0))
    ok, message = COMMANDS[command](ctx)
    assert not ok
    assert abs(named_skew(message) - 900) <= TOLERANCE
    assert "wrong API key" not in message and "\n" not in message
    if command == "run --once":
        assert message.endswith("not acting until signed requests are accepted again")
    assert sim.stats.archive_count == {}
    # The command's first call, then one measurement.
    assert sum(sim.stats.calls.values()) <= 1 + MAX_CALLS


def test_a_request_lifetime_over_4_21s_limit_is_named_in_the_401() -> None:
    sim = Simulator(profile="4.22", seed=41, hosts=2, vms_per_host=2, enforce_post=True)
    with sim.serve():
        result = check(sim, 0.0, expiration=1200.0)
    assert result.exit_code == EXIT_CLOUDSTACK and result.credentials_ok
    assert result.error is not None
    assert "lower expiration in cloudstack.ini to 900 s or less" in result.error
    assert result.clock_skew is not None and abs(result.clock_skew) <= TOLERANCE
