"""An embedded CloudStack management-server simulator for demos, tests, benchmarks and faults.

It answers on ``http://127.0.0.1:<port>/client/api`` like CloudStack's API servlet (its own
signature check, error JSON, list semantics), keeps CloudStack-shaped state (hosts, VMs, the
``alert`` table, ``op_ha_work``), plays failure scenarios on a virtual clock with the alert
wording and the duplicate-HA defect of each release profile, seeds months of history, injects
faults, and records the ground truth of every duplicate it emitted::

    from cloudstack_simulator import Simulator
    sim = Simulator(profile="4.19.2", seed=7, tz="+0530", hosts=8, vms_per_host=6)
    sim.seed_history(alerts=100_000, duplicate_ratio=0.3)
    sim.run_scenario("host-crash")
    with sim.serve() as endpoint:   # http://127.0.0.1:PORT/client/api
        ...  # sim.key, sim.secret; sim.truth.duplicate_ids is what a correct tool archives

It imports nothing from ``sidecar`` but ``sidecar.model.constants`` (the protocol's numbers and
alert names), so a bug common to the client and the simulator cannot hide itself.

``core.Simulator`` only wires the parts together: the handlers (``api``, ``auth``, ``hooks``,
``scenarios``/``ha``, ``seed``, ``server``) get the shared :class:`~context.Context` (state
under its lock, clock, truth, release profile, counters, faults) and none of them imports
``core``; the server reaches the Simulator only through the four per-request calls of its
``Backend`` protocol. The API spec is data, ``apispec.json``, read once at import.
"""

from cloudstack_simulator.clock import VirtualClock, parse_timezone
from cloudstack_simulator.context import Context
from cloudstack_simulator.core import Simulator
from cloudstack_simulator.faults import KINDS as FAULT_KINDS
from cloudstack_simulator.faults import Fault, FaultRegistry
from cloudstack_simulator.profiles import PROFILES, Profile, get_profile
from cloudstack_simulator.scenarios import SCENARIOS
from cloudstack_simulator.seed import SeedReport
from cloudstack_simulator.stats import RequestRecord, Stats
from cloudstack_simulator.steps import ScenarioRun
from cloudstack_simulator.truth import FailureTruth, Truth
from cloudstack_simulator.verify import compute_signature, java_url_encode, unsigned_request

__all__ = [
    "FAULT_KINDS",
    "PROFILES",
    "SCENARIOS",
    "Context",
    "FailureTruth",
    "Fault",
    "FaultRegistry",
    "Profile",
    "RequestRecord",
    "ScenarioRun",
    "SeedReport",
    "Simulator",
    "Stats",
    "Truth",
    "VirtualClock",
    "compute_signature",
    "get_profile",
    "java_url_encode",
    "parse_timezone",
    "unsigned_request",
]
