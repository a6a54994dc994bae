"""Crash soak: SIGKILL ``cloudstack-sidecar cleanup --apply`` at 500 seeded random moments.

Each trial seeds a simulator history, starts the cleanup as a separate process, kills it with
SIGKILL at a seeded moment (at the k-th API request; at the k-th archiveAlerts call before or
after the server runs it; or after a random delay), runs the cleanup again and checks that
CloudStack and the ledger agree: no alert archived twice, nothing but proven duplicates
archived, every duplicate archived, done ∪ already-gone == the alerts archived by us, ``ledger
verify`` clean, and every archive request carried only ids already ``sent`` in the ledger.
The harness is tests/reliability/crashkit.py (the CI test runs 20 trials of it).

``python bench/soak_crash.py [--trials 500] [--alerts 2000] [--batch 50] [--workers 2]
[--first-seed 1]``: one line per failed trial, a summary, and one JSON line. Exit 1 if any trial
failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "reliability"))

from crashkit import TrialResult, calibrate, make_template, run_trial  # noqa: E402
from reliakit import Zygote, fast_directory  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--alerts", type=int, default=2000, help="history size per trial")
    parser.add_argument("--batch", type=int, default=50, help="SIDECAR_ARCHIVE_BATCH_SIZE")
    parser.add_argument("--workers", type=int, default=2, help="trials at a time")
    parser.add_argument("--first-seed", type=int, default=1)
    args = parser.parse_args(argv)

    base = fast_directory(Path(tempfile.gettempdir()) / f"soak-crash-{os.getpid()}")
    zygotes = [Zygote() for _ in range(max(1, args.workers))]
    started = time.monotonic()
    try:
        template = make_template(base / "template")
        cal = calibrate(zygotes[0], base / "calibration", alerts=args.alerts, batch=args.batch)
        print(f"calibration: {cal.requests} requests, {cal.archive_requests} archiveAlerts "
              f"calls, {cal.seconds:.2f} s per uninterrupted run", flush=True)
        seeds = range(args.first_seed, args.first_seed + args.trials)
        done: list[TrialResult] = []

        def trial(seed: int) -> TrialResult:
            workdir = base / f"trial-{seed}"
            try:
                result = run_trial(seed, zygotes[seed % len(zygotes)], workdir, cal,
                                   alerts=args.alerts, batch=args.batch, template=template)
            except Exception as exc:  # a harness error fails the trial, not the soak
                result = TrialResult(seed, "?", False, -1, -1, 0, 0, 0, 0, 0,
                                     [f"harness error: {type(exc).__name__}: {exc}"])
            done.append(result)
            if len(done) % 50 == 0:
                print(f"{len(done)} trials, {sum(not r.ok for r in done)} failed", flush=True)
            if result.ok:
                shutil.rmtree(workdir, ignore_errors=True)  # keep failed trials to inspect
            else:
                for problem in result.problems:
                    print(f"FAILED seed {seed} ({result.mode}): {problem} [{workdir}]",
                          flush=True)
            return result

        with ThreadPoolExecutor(max_workers=len(zygotes)) as pool:
            results = list(pool.map(trial, seeds))
    finally:
        for z in zygotes:
            z.close()
    elapsed = time.monotonic() - started
    failed = [r for r in results if not r.ok]
    killed = [r for r in results if r.killed]
    modes = Counter(r.mode for r in killed)
    summary = {
        "trials": len(results),
        "killed_mid_run": len(killed),
        "kills_by_mode": dict(sorted(modes.items())),
        "failed": len(failed),
        "failed_seeds": [r.seed for r in failed],
        "alerts_per_trial": args.alerts,
        "batch": args.batch,
        "duplicates_archived": sum(r.archived for r in results),
        "archived_before_kill": sum(r.archived_before_kill for r in killed),
        "intents_left_by_kills": sum(r.left_unresolved for r in killed),
        "already_gone": sum(r.already_gone for r in results),
        "seconds": round(elapsed, 1),
        "seconds_per_trial": round(elapsed / max(1, len(results)), 2),
    }
    print(f"{len(results)} trials, {len(killed)} killed mid-run {dict(sorted(modes.items()))}, "
          f"{len(failed)} failed, {summary['intents_left_by_kills']} intents left by kills and "
          f"settled by reruns, {elapsed:.0f} s")
    print(json.dumps(summary))
    if not failed:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
