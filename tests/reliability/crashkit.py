"""The crash-consistency harness: SIGKILL ``cloudstack-sidecar cleanup --apply`` at a seeded
random moment, run it again, and check that CloudStack and the ledger agree.

Used by tests/reliability/test_crash_consistency.py (20+ trials) and bench/soak_crash.py (500).

A trial picks one way to die from its seed:

* ``request``: when the simulator receives the k-th API request of the run (any command);
  the request is then answered into a dead socket;
* ``archive-before``: at the k-th archiveAlerts request, which is then refused (nothing is
  archived: the rows stay ``sent``, the alerts live);
* ``archive-after``: at the k-th archiveAlerts request, which then runs (the alerts are
  archived but the dead process never records ``done``);
* ``timer``: after a random delay within the expected run time (between ledger writes, in
  the middle of planning, during start-up or migration ...).

The rerun must finish with exit 0, and then: no alert archived twice, nothing archived but
proven duplicates, every proven duplicate archived, done ∪ already-gone == the set archived by
us, ``ledger verify`` clean, and every archiveAlerts request of both runs carried only ids whose
intent was already ``sent`` in the ledger.
"""

from __future__ import annotations

import random
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from reliakit import (
    IntentAuditor,
    Zygote,
    abort_request,
    archived_by_us,
    check_invariants,
    history_sim,
    migrated_template,
    read_ledger,
    sim_env,
    sqlite_url,
)

from cloudstack_simulator.api import Call
from sidecar.support.errors import LedgerUnavailable

make_template = migrated_template

MODES = ("request", "archive-before", "archive-after", "timer")


@dataclass
class Calibration:
    """What an uninterrupted run of the trial's size does."""

    requests: int
    archive_requests: int
    seconds: float


@dataclass
class TrialResult:
    """One trial: how it died, what was left, and what the rerun proved."""

    seed: int
    mode: str
    killed: bool
    first_code: int
    rerun_code: int
    duplicates: int
    archived_before_kill: int
    left_unresolved: int
    archived: int
    already_gone: int
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


def calibrate(zygote: Zygote, workdir: Path, *, alerts: int, batch: int, seed: int = 0
              ) -> Calibration:
    """Run one trial-sized cleanup without killing it."""
    workdir.mkdir(parents=True, exist_ok=True)
    zygote.ready()
    sim = history_sim(seed, alerts)
    url = sqlite_url(workdir)
    with sim.serve():
        auditor = IntentAuditor(sim, url)
        try:
            started = time.monotonic()
            result = zygote.run(["cleanup", "--apply"], _env(sim, workdir, url, batch), workdir)
            seconds = time.monotonic() - started
        finally:
            auditor.close()
    if result.code != 0:
        raise AssertionError(f"calibration run failed ({result.code}): {result.stderr[-2000:]}")
    return Calibration(auditor.requests, auditor.archive_requests, seconds)


def _env(sim: object, workdir: Path, url: str, batch: int) -> dict[str, str]:
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    return sim_env(sim, home, url, SIDECAR_ARCHIVE_BATCH_SIZE=str(batch))  # type: ignore[arg-type]


def run_trial(
    seed: int,
    zygote: Zygote,
    workdir: Path,
    calibration: Calibration,
    *,
    alerts: int,
    batch: int,
    template: Path | None = None,
) -> TrialResult:
    """One seeded kill-and-rerun trial in ``workdir`` (must be empty or absent)."""
    started = time.monotonic()
    rng = random.Random(f"crash-trial:{seed}")
    workdir.mkdir(parents=True, exist_ok=True)
    mode = rng.choice(MODES)
    sim = history_sim(seed, alerts)
    url = sqlite_url(workdir)
    # Most trials start from a migrated ledger; one in five from nothing (a kill may then
    # land in the migration).
    if template is not None and rng.random() < 0.8:
        shutil.copy(template, workdir / "ledger.sqlite3")
    argv = ["cleanup", "--apply"]
    problems: list[str] = []
    with sim.serve():
        env = _env(sim, workdir, url, batch)
        auditor = IntentAuditor(sim, url)
        pid_known = threading.Event()
        holder: dict[str, object] = {}
        target = 0
        if mode == "request":
            target = rng.randint(1, max(1, calibration.requests))
        elif mode.startswith("archive"):
            target = rng.randint(1, max(1, calibration.archive_requests))

        def on_request(call: Call, number: int) -> None:
            if mode == "request":
                hit = number == target
            elif mode.startswith("archive"):
                hit = call.command == "archiveAlerts" and auditor.archive_requests == target
            else:
                hit = False
            if not hit:
                return
            pid_known.wait(10)
            holder["child"].kill()  # type: ignore[attr-defined]
            if mode == "archive-before":
                raise abort_request()

        auditor.on_request = on_request
        try:
            child = zygote.start(argv, env, workdir)
            holder["child"] = child
            pid_known.set()
            timer = None
            if mode == "timer":
                # Within the first half of a calibrated run: a trial that finishes before its timer
                # is not a kill, and a warm trial can be quicker than the calibration.
                timer = threading.Timer(rng.uniform(0.0, 0.5 * calibration.seconds), child.kill)
                timer.start()
            first = zygote.wait(child)
            if timer is not None:
                timer.cancel()
            auditor.on_request = None
            killed = first.code == -9
            if not killed and first.code != 0:
                problems.append(f"first run failed without a kill ({first.code}): "
                                f"{first.stderr.strip()[-500:]}")
            archived_before = len(archived_by_us(sim))
            try:
                view = read_ledger(url)
            except LedgerUnavailable:
                view = None  # killed before the migration committed: an empty database
                if archived_before:
                    problems.append("alerts were archived before the ledger had a schema")
            unresolved = len(view.having("intended", "sent")) if view else 0
            if view is not None:
                problems.extend(f"after the kill: {p}"
                                for p in check_invariants(sim, url, complete=False, view=view))
            # The killed run still holds the lease; the rerun must see that its holder (a pid
            # of this host) is dead and take over at once, not wait lease_ttl.
            rerun = zygote.run(argv, env, workdir)
        finally:
            auditor.close()
    if rerun.code != 0:
        problems.append(f"rerun exited {rerun.code}: {rerun.stderr.strip()[-800:]}")
    final = read_ledger(url)
    problems.extend(check_invariants(sim, url, complete=True, view=final))
    problems.extend(auditor.violations)
    ours = archived_by_us(sim)
    settled = final.having("done", "already-gone")
    if settled != ours:
        problems.append(f"done ∪ already-gone ({len(settled)}) != archived by us ({len(ours)})")
    return TrialResult(
        seed=seed,
        mode=mode,
        killed=killed,
        first_code=first.code,
        rerun_code=rerun.code,
        duplicates=len(sim.truth.duplicate_ids),
        archived_before_kill=archived_before,
        left_unresolved=unresolved,
        archived=len(ours),
        already_gone=len(final.having("already-gone")),
        problems=problems,
        seconds=time.monotonic() - started,
    )
