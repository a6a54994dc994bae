"""An embedded CloudStack management-server simulator for demos, tests, benchmarks and faults.

It answers on ``http://127.0.0.1:<port>/client/api`` like CloudStack's API servlet (its own
signature check, error JSON, list semantics), keeps CloudStack-shaped state (hosts, VMs, the
``alert`` table, ``op_ha_work``), plays failure scenarios on a virtual clock with the alert
wording and the duplicate-HA defect of each release profile, seeds months of history, injects
faults, and records the ground truth of every duplicate it emitted::

    from sidecar.simulator import Simulator
    sim = Simulator(profile="4.19.2", seed=7, tz="+0530", hosts=8, vms_per_host=6)
    sim.seed_history(alerts=100_000, duplicate_ratio=0.3)
    sim.run_scenario("host-crash")
    with sim.serve() as endpoint:   # http://127.0.0.1:PORT/client/api
        ...  # sim.key, sim.secret; sim.truth.duplicate_ids is what a correct tool archives

It shares nothing with ``sidecar.cloudstack`` but ``sidecar.constants``: a bug common to the
client and the simulator would hide itself.
"""

from sidecar.simulator.clock import VirtualClock
from sidecar.simulator.core import Simulator, parse_timezone
from sidecar.simulator.faults import KINDS as FAULT_KINDS
from sidecar.simulator.faults import Fault, FaultRegistry
from sidecar.simulator.profiles import PROFILES, Profile, get_profile
from sidecar.simulator.scenarios import SCENARIOS, ScenarioRun
from sidecar.simulator.seed import SeedReport
from sidecar.simulator.server import RequestRecord, Stats
from sidecar.simulator.truth import FailureTruth, Truth
from sidecar.simulator.verify import compute_signature, java_url_encode, unsigned_request

__all__ = [
    "FAULT_KINDS",
    "PROFILES",
    "SCENARIOS",
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
