"""A real crash: a process killed with SIGKILL mid-batch leaves intents the next run resolves."""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from ledgerkit import FakeCloud, apply_batch, make_alert, make_group, resolve

from sidecar.ledger import Ledger

# Self-contained: the child cannot import the test helpers.
DOOMED_RUN = """
import os, signal, sys
from datetime import UTC, datetime
from sidecar.model.resources import Alert
from sidecar.ledger import Ledger
from sidecar.model.plan import MergeGroup, Plan, Summary

ledger = Ledger(sys.argv[1], holder="doomed")
now = datetime.now(UTC)
group = MergeGroup("g1", "vm-ha", "i-2-10-VM", "fp", "ALERT.USERVM", "c0",
                   ("d1", "d2", "d3", "d4"), now, now, "same VM")
run = ledger.start_run("cleanup", "apply")
ledger.record_plan(run, Plan(now, (group,), group.duplicates, (), Summary()))
token = ledger.acquire_lease(600)
def alert(i):
    return Alert.from_api({"id": i, "type": 8, "name": "ALERT.USERVM",
                           "description": "HA starting VM", "sent": "2026-03-01T12:00:00+0000"})
ledger.intend_archive(run, token, [(group, alert("d1")), (group, alert("d2"))])
ledger.mark(token, ["d1", "d2"], "sent")
ledger.intend_archive(run, token, [(group, alert("d3")), (group, alert("d4"))])
print("about to POST d1, d2", flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # power loss: no cleanup, no finally, no atexit
"""


def test_a_killed_run_leaves_sent_and_intended_rows_the_next_run_settles(db: str):
    child = subprocess.run(
        [sys.executable, "-c", DOOMED_RUN, db], capture_output=True, text=True, timeout=120
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert "about to POST" in child.stdout
    cloud = FakeCloud(["c0", "d1", "d2", "d3", "d4"])
    cloud.archive(["d1"])  # the first POST had reached CloudStack for d1 only

    later = datetime.now(UTC) + timedelta(seconds=601)
    survivor = Ledger(db, holder="survivor", clock=lambda: later)
    try:
        pending = {r.alert_id: r.state for r in survivor.unresolved_actions()}
        assert pending == {"d1": "sent", "d2": "sent", "d3": "intended", "d4": "intended"}
        token = survivor.acquire_lease(120)
        assert token == 2  # took over the dead process's expired lease
        run = survivor.start_run("cleanup", "apply")
        resolve(survivor, token, cloud)
        group = make_group("g1", "c0", ["d1", "d2", "d3", "d4"])
        live = [(group, make_alert(d)) for d in ("d2", "d3", "d4") if cloud.is_live(d)]
        apply_batch(survivor, run, token, cloud, live)
        survivor.finish_run(run, "ok", {"archived": 3})

        assert cloud.archived == {"d1": 1, "d2": 1, "d3": 1, "d4": 1}
        assert {r.alert_id: r.state for r in survivor.actions()} == dict.fromkeys(
            ("d1", "d2", "d3", "d4"), "done"
        )
        assert survivor.verify() == []
        assert [r.outcome for r in survivor.runs()] == ["running", "ok"]  # the dead run shows
    finally:
        survivor.close()
