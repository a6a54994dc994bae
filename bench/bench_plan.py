"""Benchmark the reconciler on 1,000,000 realistic listAlerts items (no simulator needed).

Each phase runs in its own child process so its peak RSS is its own:

- ``build``: listAlerts dicts, streamed page by page (500 items, as the lister receives them),
  turned into ``Alert`` objects with ``Alert.from_api`` (kept, as the cleanup keeps them);
- ``plan``: ``build_plan`` on 1M ``Alert`` objects already built (untimed) as a
  memory-conscious lister builds them: no raw-dict copy, name and subject interned;
- ``plan_plain``: the same with one subject string per alert (plain JSON parsing);
- ``all``: both, as ``cloudstack-sidecar cleanup`` does (dicts -> Alert.from_api -> plan).

Prints one line per phase and one JSON line with everything:
``python bench/bench_plan.py [--alerts N] [--seed S] [--phase build|plan|all]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sidecar.model.resources import Alert, parse_cs_date
from sidecar.reconcile import Policy, Snapshot, build_plan
from sidecar.support.gcpause import gc_paused

PAGE = 500
START = datetime(2023, 1, 1, tzinfo=UTC)
_EMPTY: MappingProxyType[str, Any] = MappingProxyType({})


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def generate(n: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """``n`` listAlerts items of a 4.19 cloud over two years, with the HA defect's copies.

    2,000 KVM hosts in 4 zones x 8 pods (names kvm-1 … kvm-2000, so kvm-1/kvm-10 share
    prefixes), 30 HA VMs per host. Host failures produce 1-4 "Host is down" rounds (the
    defect), "Host down, <id>", one or two "HA starting VM" per VM, a few "Unable to restart";
    agent flaps produce "Host disconnected" bursts; 5 % are capacity and other types.
    """
    rng = random.Random(seed)
    zones = [f"zone-{z}" for z in range(1, 5)]
    hosts = [
        (h, f"kvm-{h}", zones[(h - 1) % 4], f"pod-{(h - 1) % 4 + 1}-{(h // 4) % 8 + 1}")
        for h in range(1, 2001)
    ]
    vm_names = {h: [(f"vm-{h}-{v}", f"i-{2 + v % 7}-{h * 30 + v}-VM") for v in range(30)]
                for h, *_ in hosts}
    offsets = ("+0000", "+0530", "-0500")
    span = 2 * 365 * 86400
    made = 0
    clock = 0.0
    step = span / (n / 45)  # about 45 alerts per failure on average

    def item(t: float, name: str, type_: int, subject: str) -> dict[str, Any]:
        when = START + timedelta(seconds=int(t))
        off = offsets[int(t) % 3]
        hours, minutes = int(off[1:3]), int(off[3:5])
        delta = timedelta(hours=hours, minutes=minutes) * (1 if off[0] == "+" else -1)
        sent = (when + delta).strftime("%Y-%m-%dT%H:%M:%S") + off
        return {"id": _uuid(rng), "type": type_, "name": name, "description": subject,
                "sent": sent}

    while made < n:
        clock += rng.expovariate(1 / step)
        kind = rng.random()
        h, hname, zone, pod = hosts[rng.randrange(len(hosts))]
        desc = f"name: {hname} (id:{h}), availability zone: {zone}, pod: {pod}"
        batch: list[dict[str, Any]] = []
        if kind < 0.80:  # host failure with HA
            rounds = 1 + (rng.random() < 0.3) * rng.randint(1, 3)
            for r in range(rounds):
                t = clock + r * rng.uniform(0, 90)
                batch.append(item(t, "ALERT.COMPUTE.HOST", 7, f"Host down, {h}"))
                batch.append(item(t + 1, "ALERT.COMPUTE.HOST", 7, f"Host is down, {desc}"))
            for vm, inst in vm_names[h]:
                t = clock + rng.uniform(60, 400)
                batch.append(item(t, "ALERT.USERVM", 8, f"HA starting VM: {vm} ({inst})"))
                if rounds > 1 and rng.random() < 0.2:
                    batch.append(item(t + rng.uniform(0, 30), "ALERT.USERVM", 8,
                                      f"HA starting VM: {vm} ({inst})"))
                if rng.random() < 0.02:
                    batch.append(item(t - 30, "ALERT.USERVM", 8,
                                      f"Unable to restart {vm} which was running on host "
                                      f"name: {hname}(id:{h}), availability zone: {zone}, "
                                      f"pod: {pod}"))
        elif kind < 0.90:  # agent flapping
            for f in range(rng.randint(1, 6)):
                batch.append(item(clock + f * rng.uniform(20, 200), "ALERT.COMPUTE.HOST", 7,
                                  f"Host disconnected, {desc}"))
        elif kind < 0.95:
            for f in range(rng.randint(1, 3)):
                batch.append(item(clock + f * 60, "ALERT.COMPUTE.HOST", 7,
                                  f"Host in ALERT state, {desc}"))
        else:
            batch.append(item(clock, "ALERT.MEMORY", 0,
                              f"System Alert: Low Available Memory in cluster c-{h % 50} "
                              f"pod {pod} of availability zone: {zone}"))
            batch.append(item(clock, "ALERT.TYPE.SYNC", 27, "VM state sync alert"))
        yield from batch[: n - made]
        made += min(len(batch), n - made)


def compact_alerts(n: int, seed: int, *, intern: bool = True) -> list[Alert]:
    """Alert objects as a memory-conscious lister builds them: no raw-dict copy, and name and
    subject interned (duplicates share their subject text, so 1M alerts hold ~80,000 distinct
    subjects; ``intern=False`` keeps one string per alert, as plain JSON parsing does)."""
    out = []
    share = sys.intern if intern else str
    for raw in generate(n, seed):
        out.append(Alert(raw["id"], raw["type"], share(raw["name"]), share(raw["description"]),
                         parse_cs_date(raw["sent"]), _EMPTY))
    return out


def _rss_mb() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase(name: str, n: int, seed: int) -> dict[str, Any]:
    """Run one phase in this process; returns its measurements."""
    result: dict[str, Any] = {"phase": name, "alerts": n}
    if name in ("plan", "plan_plain"):
        alerts = compact_alerts(n, seed, intern=name == "plan")
        gc.collect()
        result["rss_before_plan_mb"] = round(_rss_mb(), 1)
    else:
        pages: list[dict[str, Any]] = []
        alerts = []
        build_cpu = 0.0
        for raw in generate(n, seed):
            pages.append(raw)
            if len(pages) == PAGE:
                t0 = time.process_time()
                alerts.extend(Alert.from_api(r) for r in pages)
                build_cpu += time.process_time() - t0
                pages = []
        t0 = time.process_time()
        alerts.extend(Alert.from_api(r) for r in pages)
        build_cpu += time.process_time() - t0
        del pages
        result["build_cpu_s"] = round(build_cpu, 3)
        result["rss_after_build_mb"] = round(_rss_mb(), 1)
    if name in ("plan", "plan_plain", "all"):
        # Taken an hour after the newest alert, as a cleanup run would be.
        newest = max(a.sent for a in alerts if a.sent is not None)
        snapshot = Snapshot(taken_at=newest + timedelta(hours=1), alerts=alerts)
        t0 = time.process_time()
        with gc_paused():  # as the cleanup command plans
            plan = build_plan(snapshot, Policy())
        result["plan_cpu_s"] = round(time.process_time() - t0, 3)
        result["archive"] = len(plan.archive)
        result["groups"] = len(plan.groups)
        result["ha_incidents"] = len(plan.ha_incidents)
    result["peak_rss_mb"] = round(_rss_mb(), 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--phase", choices=("build", "plan", "plan_plain", "all"))
    args = parser.parse_args()
    if args.phase:  # child
        print(json.dumps(phase(args.phase, args.alerts, args.seed)))
        return
    results = {}
    for name in ("build", "plan", "plan_plain", "all"):
        out = subprocess.run(
            [sys.executable, __file__, "--phase", name, "--alerts", str(args.alerts),
             "--seed", str(args.seed)],
            check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]
        results[name] = json.loads(out)
    b, p, a = results["build"], results["plan"], results["all"]
    q = results["plan_plain"]
    print(f"build {args.alerts:,} Alert objects from listAlerts dicts: "
          f"{b['build_cpu_s']:.2f} s CPU, peak RSS {b['peak_rss_mb']:.0f} MB")
    print(f"plan {args.alerts:,} alerts (objects prebuilt): {p['plan_cpu_s']:.2f} s CPU, "
          f"peak RSS {p['peak_rss_mb']:.0f} MB (of which {p['rss_before_plan_mb']:.0f} MB "
          f"before planning); {p['archive']:,} to archive in {p['groups']:,} groups, "
          f"{p['ha_incidents']:,} HA incidents")
    print(f"plan, subjects not interned: {q['plan_cpu_s']:.2f} s CPU, peak RSS "
          f"{q['peak_rss_mb']:.0f} MB (of which {q['rss_before_plan_mb']:.0f} MB before)")
    print(f"both (cleanup path): {a['build_cpu_s'] + a['plan_cpu_s']:.2f} s CPU, "
          f"peak RSS {a['peak_rss_mb']:.0f} MB")
    print(json.dumps({"bench": "plan", "python": platform.python_version(), **{
        f"{k}_{m}": v for k, r in results.items() for m, v in r.items() if m != "phase"
    }}))


if __name__ == "__main__":
    main()
