"""Crash consistency: ``cloudstack-sidecar cleanup --apply`` is SIGKILLed at seeded random
moments and run again; CloudStack and the ledger must then agree exactly.

Each trial (see ``crashkit``) seeds a 400-alert history (about 110 duplicates), archives in
batches of 10 (about 11 archiveAlerts calls, so kills land between and inside batches), kills
the process at a seeded moment (a given API request, a given archive call before or after it
runs on the server, or a random delay), reruns it, and checks: no alert archived twice, nothing
but proven duplicates archived, every duplicate archived, done ∪ already-gone == the alerts we
archived, ``ledger verify`` clean, every archive request carried only ``sent`` intents.

``SIDECAR_TEST_CRASH_TRIALS`` sets the number of trials (default 20) and
``SIDECAR_TEST_CRASH_WORKERS`` how many run at once (default 2); bench/soak_crash.py runs 500
with 2,000-alert histories. The processes are forked from a pre-imported interpreter
(``reliakit.Zygote``: the same ``sidecar.cli.app.main`` as the console script, without 1.5 s of
imports per run); one test kills a plain ``python -m sidecar`` subprocess to show that nothing
depends on that.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from crashkit import Calibration, TrialResult, calibrate, run_trial
from reliakit import (
    IntentAuditor,
    Zygote,
    archived_by_us,
    check_invariants,
    fast_directory,
    history_sim,
    read_ledger,
    sim_env,
    sqlite_url,
)

from cloudstack_simulator.api import Call

ALERTS = 400
BATCH = 10
TRIALS = int(os.environ.get("SIDECAR_TEST_CRASH_TRIALS", "20"))
WORKERS = int(os.environ.get("SIDECAR_TEST_CRASH_WORKERS", "2"))


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = fast_directory(tmp_path_factory.mktemp("crash"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def second_zygote() -> Iterator[Zygote]:
    z = Zygote()
    yield z
    z.close()


@pytest.fixture(scope="module")
def calibration(zygote: Zygote, work: Path) -> Calibration:
    """How many requests and how long an uninterrupted trial-sized run takes."""
    return calibrate(zygote, work / "calibration", alerts=ALERTS, batch=BATCH)


def test_seeded_kills_and_reruns_leave_cloudstack_and_the_ledger_in_agreement(
    zygote: Zygote, second_zygote: Zygote, work: Path, calibration: Calibration,
    ledger_template: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    zygotes = [zygote, second_zygote]

    def trial(seed: int) -> TrialResult:
        return run_trial(seed, zygotes[seed % 2], work / f"trial-{seed}", calibration,
                         alerts=ALERTS, batch=BATCH, template=ledger_template)

    # Two trials at a time (one per zygote): each is mostly waiting on its own process.
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = list(pool.map(trial, range(1, TRIALS + 1)))
    failed = [r for r in results if not r.ok]
    killed = [r for r in results if r.killed]
    modes = Counter(r.mode for r in killed)
    with capsys.disabled():  # the trial count belongs in every CI log
        print(f"\ncrash trials: {len(results)} run, {len(killed)} killed mid-run "
              f"({dict(sorted(modes.items()))}), {len(failed)} failed; "
              f"{sum(r.left_unresolved for r in killed)} intents left unresolved by the kills "
              f"and settled by the reruns")
    assert not failed, "\n".join(f"seed {r.seed} ({r.mode}): {p}"
                                 for r in failed for p in r.problems)
    assert len(results) == TRIALS
    # The seeds exercise every way to die, and most trials really die mid-run.
    assert len(killed) >= TRIALS * 0.75
    if TRIALS >= 20:
        assert set(modes) == {"request", "archive-before", "archive-after", "timer"}
        assert any(r.left_unresolved for r in killed)


def test_a_plain_python_m_sidecar_process_killed_mid_archive_is_completed_by_a_rerun(
    zygote: Zygote, work: Path
) -> None:
    workdir = work / "plain"
    workdir.mkdir()
    (workdir / "home").mkdir()
    sim = history_sim(seed=99, alerts=ALERTS)
    url = sqlite_url(workdir)
    with sim.serve():
        auditor = IntentAuditor(sim, url)
        env = sim_env(sim, workdir / "home", url, SIDECAR_ARCHIVE_BATCH_SIZE=str(BATCH))
        proc = subprocess.Popen([sys.executable, "-m", "sidecar", "cleanup", "--apply"],
                                env=env, cwd=workdir, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)

        def on_request(call: Call, number: int) -> None:
            # Killed while the server runs the fourth batch: archived, never recorded done.
            if call.command == "archiveAlerts" and auditor.archive_requests == 4:
                proc.send_signal(signal.SIGKILL)

        auditor.on_request = on_request
        try:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == -signal.SIGKILL, err
            auditor.on_request = None
            assert len(read_ledger(url).having("sent")) == BATCH
            assert len(archived_by_us(sim)) == 4 * BATCH
            rerun = zygote.run(["cleanup", "--apply"], env, workdir)
        finally:
            auditor.close()
    assert rerun.code == 0, rerun.stderr
    verified = zygote.run(["ledger", "verify"], env, workdir)
    assert verified.code == 0, verified.output
    assert check_invariants(sim, url, complete=True) == []
    assert auditor.violations == []
    assert read_ledger(url).having("done") == sim.truth.duplicate_ids
