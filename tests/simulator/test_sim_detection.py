"""How soon a silently dead host is noticed: the bound, the model, the settings it is read from."""

from __future__ import annotations

import random

import pytest
from simkit import body, invoke

from cloudstack_simulator import Simulator
from cloudstack_simulator.detection import CLOCK_REFRESH, Phases, Ping, detected_at


def test_the_defaults_give_a_150_s_timeout_noticed_between_60_and_240_s_after_death() -> None:
    ping = Ping()
    assert (ping.limit, ping.refreshes, ping.earliest, ping.latest) == (150, 3, 60.0, 240.0)
    faster = Ping(interval=30.0, timeout=2.5)
    assert (faster.limit, faster.refreshes, faster.earliest, faster.latest) == (75, 2, 30.0, 150.0)


@pytest.mark.parametrize("ping", [Ping(), Ping(30.0, 2.5), Ping(45.0, 4.0)])
def test_detection_never_beats_the_bound_and_reaches_both_ends(ping: Ping) -> None:
    rng = random.Random(3)
    delays = []
    for _ in range(20_000):
        phases = Phases(rng.uniform(0, CLOCK_REFRESH), rng.uniform(0, ping.interval))
        died = rng.uniform(1e9, 1e9 + 86400)
        delays.append(detected_at(ping, phases, died, rng.uniform(0, ping.interval)) - died)
    # Each end needs three phases to line up: within 10 s of it is close enough to show the
    # bound is tight (with the defaults the naive (ping.timeout - 1) × ping.interval is 90 s).
    assert ping.earliest < min(delays) < ping.earliest + 10
    assert ping.latest - 10 < max(delays) <= ping.latest


def test_a_host_is_noticed_at_a_monitor_run_once_the_clock_is_three_refreshes_ahead() -> None:
    # Clock refreshed at 0, 60, 120, …; monitor runs at 10, 70, 130, …; the agent pinged at
    # 55, recorded as 0; the clock must read 180 (behind = 0 < 180 - 150): the 190 run.
    assert detected_at(Ping(), Phases(clock=0.0, monitor=10.0), died=100.0, agent_phase=55.0) == 190


def test_the_simulator_serves_and_plays_its_ping_settings() -> None:
    sim = Simulator(seed=4, hosts=3, vms_per_host=2, ping_interval=30, ping_timeout=3)
    status, answer = invoke(sim, "listConfigurations", name="ping.")
    assert status == 200
    served = {c["name"]: c["value"] for c in body(answer)["configuration"]}
    assert served == {"ping.interval": "30", "ping.timeout": "3"}
    sim.run_scenario("host-crash", recover_after=None)
    (failure,) = sim.truth.failures
    assert failure.died is not None and failure.first_round is not None
    assert 90 < failure.first_round - failure.died < 100  # 30 × 3 s, then the investigation


def test_settings_that_cannot_time_out_are_refused() -> None:
    with pytest.raises(ValueError, match=r"ping\.timeout"):
        Simulator(ping_timeout=1.0)
