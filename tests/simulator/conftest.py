"""Fixtures for the simulator tests: small simulators, served on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from simkit import RawClient

from cloudstack_simulator import Simulator


@pytest.fixture
def sim() -> Simulator:
    """A small 4.19.2 simulator (4 hosts x 3 VMs, stable tie order for exact assertions)."""
    return Simulator(profile="4.19.2", seed=11, hosts=4, vms_per_host=3, tie_order="stable")


@pytest.fixture
def served(sim: Simulator) -> Iterator[tuple[Simulator, RawClient]]:
    """``sim`` serving in the background, and a raw client with its main key."""
    with sim.serve() as endpoint:
        client = RawClient(endpoint, sim.key, sim.secret)
        try:
            yield sim, client
        finally:
            client.close()
