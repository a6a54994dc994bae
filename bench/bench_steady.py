"""Benchmark the service's steady state on a large cloud: calls, bytes and CPU per cycle.

The simulator (2,000 hosts, 40,000 VMs, 200,000 alerts by default; 10 ms per call) runs in its
own process; ``sidecar.ops.service.cycle.Service`` runs here, in-process, because it keeps its
state (the last 24 h of alerts, the VMs of failed hosts) between cycles. Each cycle is measured on
its own: API calls and bytes from the simulator's stats (reset before the cycle), CPU with
``time.process_time()`` around ``run_cycle()`` (this process does nothing else meanwhile), and
the part of it the cyclic GC took (``gc_ms``: a full collection walks every live object, about
0.1 s here, and lands in whichever cycle crosses its threshold).

Cycles: the first (primes the 24 h window), ``--quiet`` quiet ones, then a host crash is
injected through the simulator's control route (``POST /_sim/scenario?name=host-crash``, the
virtual clock advanced 400 s so the failure's alerts exist) and one cycle sees it, then one
more quiet cycle.

``python bench/bench_steady.py [--hosts 2000] [--vms-per-host 20] [--alerts 200000]``
prints one JSON line (the last line of stdout).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simproc import HA_NAMES, PAGE_SIZE, SimProcess, client_env, emit

#: Virtual seconds the clock moves after the crash starts (detection at 150 s, HA restarts
#: after); below the 600 s signature lifetime, so the client's ``expires`` stays valid.
CRASH_ADVANCE = 400.0


class GcTimer:
    """CPU seconds spent in the cyclic GC, and its full (generation 2) collections."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.process_time()
            return
        self.seconds += time.process_time() - self._started
        self.full += info["generation"] == 2


def measure_cycle(service: Any, sim: SimProcess, label: str) -> dict[str, Any]:
    """One ``run_cycle()`` with its calls, bytes, CPU and GC time."""
    sim.reset()
    timer = GcTimer()
    gc.callbacks.append(timer)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        result = service.run_cycle()
    finally:
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        gc.callbacks.remove(timer)
    stats = sim.stats()
    calls: dict[str, int] = stats["calls"]
    return {
        "cycle": label,
        "ok": result.ok,
        "message": result.message,
        "calls": calls,
        "calls_total": sum(calls.values()),
        "bytes_received": stats["bytes_sent"],
        "cpu_ms": round(cpu * 1000, 1),
        "gc_ms": round(timer.seconds * 1000, 1),
        "gc_full_collections": timer.full,
        "wall_ms": round(wall * 1000, 1),
        "max_inflight": stats["max_inflight"],
        "max_per_second": stats["max_per_second"],
        "counts": dict(result.counts),
    }


def run(hosts: int, vms_per_host: int, alerts: int, quiet: int, workdir: Path) -> dict[str, Any]:
    """Start the simulator, drive the service cycle by cycle, return the measurements."""
    with SimProcess(workdir / "sim", alerts=alerts, hosts=hosts,
                    vms_per_host=vms_per_host) as sim:  # fmt: skip
        os.environ.update(client_env(sim, workdir / "ledger.sqlite3"))
        from sidecar.ops.context import load_context
        from sidecar.ops.service.cycle import Service

        service = Service(load_context(), dry_run=False)
        try:
            asyncio.run(service.verify())
            cycles = [measure_cycle(service, sim, "first (primes the 24 h window)")]
            for i in range(quiet):
                cycles.append(measure_cycle(service, sim, f"quiet {i + 1}"))
            crash = sim.scenario("host-crash", advance=CRASH_ADVANCE)
            cycles.append(measure_cycle(service, sim, f"host failure ({crash['hosts'][0]})"))
            cycles.append(measure_cycle(service, sim, "quiet after the failure"))
        finally:
            service.close()
        before = sim.stats()
    host_pages = -(-hosts // PAGE_SIZE)
    quiet_cycles = [c for c in cycles if c["cycle"].startswith("quiet ")]
    return {
        "hosts": hosts,
        "vms": hosts * vms_per_host,
        "alerts": alerts,
        "history": sim.history,
        "simulator_start_s": round(sim.start_s, 1),
        "live_alerts": before["live"],
        "cycles": cycles,
        "quiet_budget_calls": host_pages + len(HA_NAMES),
        "quiet_budget_formula": f"ceil({hosts}/{PAGE_SIZE}) = {host_pages} host pages + "
        f"{len(HA_NAMES)} alert names",
        "quiet_max_calls": max(c["calls_total"] for c in quiet_cycles),
        "quiet_max_cpu_ms": max(c["cpu_ms"] for c in quiet_cycles),
        "quiet_mean_cpu_ms": round(sum(c["cpu_ms"] for c in quiet_cycles) / len(quiet_cycles), 1),
        "quiet_bytes": max(c["bytes_received"] for c in quiet_cycles),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=2000)
    parser.add_argument("--vms-per-host", type=int, default=20)
    parser.add_argument("--alerts", type=int, default=200_000)
    parser.add_argument("--quiet", type=int, default=3, help="quiet cycles before the failure")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-steady-") as tmp:
        result = run(args.hosts, args.vms_per_host, args.alerts, max(1, args.quiet),
                     args.workdir or Path(tmp))  # fmt: skip
    for c in result["cycles"]:
        print(f"{c['cycle']}: {c['calls_total']} calls {c['calls']}, "
              f"{c['bytes_received']:,} bytes, {c['cpu_ms']:.0f} ms CPU "
              f"({c['gc_ms']:.0f} ms GC), "
              f"{c['wall_ms']:.0f} ms wall; {c['message']}")
    emit(result)


if __name__ == "__main__":
    main()
