"""HA work under a pod failure: duplicate HA executions and recovery time, per sidecar mode.

Simulator 4.19.2, a pod of 16 hosts x 20 HA VMs fails, 5 HA workers (``ha.workers``), the HA
queue played from the simulator's SQLite cloud database on the virtual clock. Modes: without the
sidecar; with alert de-duplication only (``cleanup --apply``, which does not touch the queue);
with ``merge_ha_work`` (``cleanup --apply --ha-work``, from the sidecar's HA-work branch: skipped
with a message while that flag does not exist). Prints numbers; asserts nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from cloudstack_simulator import Simulator

SIDECAR = [str(Path(sys.executable).parent / "cloudstack-sidecar")]


def _pod_failure() -> Simulator:
    """48 hosts in pods of 16 (20 HA VMs each); the first pod's 16 hosts die at once."""
    sim = Simulator(
        profile="4.19.2",
        seed=7,
        hosts=48,
        vms_per_host=20,
        hosts_per_pod=16,
        non_ha_per_host=0,
        system_vms=False,
        tie_order="stable",
    )
    pod = min(h.pod_id for h in sim.state.hosts.values())
    hosts = [h.id for h in sim.state.hosts.values() if h.pod_id == pod][:16]
    sim.fail_hosts(hosts, rounds=2, gap=5.0)
    sim.clock.advance(6.0)  # both rounds queued; the sidecar acts before the backlog drains
    return sim


def _sidecar(sim: Simulator, workdir: Path, *args: str, **settings: str) -> int:
    """Run ``cloudstack-sidecar`` against the served simulator; returns its exit code."""
    assert sim.endpoint is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDSTACK_", "SIDECAR_"))}
    env |= {
        "CLOUDSTACK_ENDPOINT": sim.endpoint,
        "CLOUDSTACK_KEY": sim.key,
        "CLOUDSTACK_SECRET": sim.secret,
        "HOME": str(workdir),
        "NO_COLOR": "1",
        "SIDECAR_LEDGER_URL": f"sqlite:///{workdir / 'ledger.sqlite3'}",
    }
    env |= {f"SIDECAR_{k.upper()}": v for k, v in settings.items()}
    done = subprocess.run(
        [*SIDECAR, *args],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return done.returncode


def _has_ha_work_flag() -> bool:
    """Whether this branch's ``cleanup`` knows ``--ha-work`` (the merge branch provides it)."""
    text = subprocess.run(
        [*SIDECAR, "cleanup", "--help"], capture_output=True, text=True, check=False
    ).stdout
    return "--ha-work" in text


def run(mode: str) -> dict[str, Any] | None:
    """One mode's numbers, or None when it cannot run on this branch."""
    if mode == "merge_ha_work" and not _has_ha_work_flag():
        print("merge_ha_work: skipped, `cleanup --apply --ha-work` does not exist on this branch")
        return None
    sim = _pod_failure()
    queued = len(sim.cloud_db.ha_rows())
    with tempfile.TemporaryDirectory(prefix="bench-hawork-") as tmp, sim.serve():
        code = 0
        if mode == "alerts":
            code = _sidecar(sim, Path(tmp), "cleanup", "--apply", "--no-limit")
        elif mode == "merge_ha_work":
            code = _sidecar(
                sim,
                Path(tmp),
                "cleanup",
                "--apply",
                "--no-limit",
                "--ha-work",
                cloud_db_url=sim.cloud_db_url,
            )
    started = sim.clock.time()
    sim.clock.run_until_idle()
    rows = sim.cloud_db.ha_rows()
    outcome = sim.ha_queue.outcome()
    return {
        "mode": mode,
        "exit": code,
        "rows": queued,
        "cancelled": sum(r["step"] == "Cancelled" for r in rows),
        "duplicate_executions": outcome["duplicate_executions"],
        "all_running_after_s": outcome["all_running_after"],
        "wrong_cancellations": len(outcome["never_ran_again"]),
        "virtual_s_after_sidecar": round(sim.clock.time() - started, 1),
    }


def main() -> None:
    """Print one line per mode."""
    for mode in ("none", "alerts", "merge_ha_work"):
        result = run(mode)
        if result is not None:
            print(result)


if __name__ == "__main__":
    main()
