"""Benchmark a historical cleanup: the sidecar's ``cleanup`` against the ``cs`` baseline script.

Each run gets a fresh simulator in its own process (``--alerts N --duplicate-ratio 0.3``,
10 ms per call); the client runs as a child process whose CPU time and peak RSS come from
``os.wait4``. Calls, concurrency, request rate and wrong archives are the simulator's.

``python bench/bench_cleanup.py --tool sidecar|baseline --alerts N [--rps R] [--max-seconds S]``
prints one JSON line (the last line of stdout).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from simproc import (
    HA_NAMES,
    PAGE_SIZE,
    SimProcess,
    cleanup_outcome,
    client_env,
    emit,
    min_calls,
    run_child,
    run_cleanup,
)

BENCH = Path(__file__).resolve().parent


def _common(sim: SimProcess, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the simulator measured during one client run."""
    calls: dict[str, int] = after["calls"]
    return {
        "alerts": sim.alerts,
        "history": sim.history,
        "simulator_start_s": round(sim.start_s, 1),
        "live_before": before["live"],
        "live_ha_before": sum(before["live_by_name"].get(n, 0) for n in HA_NAMES),
        "live_by_name_before": {n: before["live_by_name"].get(n, 0) for n in HA_NAMES},
        "truth_duplicates": before["score"]["truth_duplicates"],
        "calls": calls,
        "calls_total": sum(calls.values()),
        "statuses": after["statuses"],
        "max_inflight": after["max_inflight"],
        "max_per_second": after["max_per_second"],
        "bytes_sent": after["bytes_sent"],
        "archived_more_than_once": len(after["archived_more_than_once"]),
        "score": after["score"],
        "live_after": after["live"],
    }


def sidecar_run(alerts: int, workdir: Path, *, rps: float | None, timeout: float) -> dict[str, Any]:
    """``cloudstack-sidecar cleanup --apply --no-limit --format json`` against a fresh simulator."""
    with SimProcess(workdir / "sim", alerts=alerts) as sim:
        before = sim.stats()
        sim.reset()
        child = run_cleanup(sim, workdir, rps=rps, timeout=timeout)
        after = sim.stats()
    result = {"tool": "sidecar", "rps": rps if rps is not None else 20.0, "max_concurrency": 4,
              **_common(sim, before, after), **child.to_json()}  # fmt: skip
    result["min_calls"] = min_calls(before["live_by_name"], before["score"]["truth_duplicates"])
    result["calls_vs_min"] = round(result["calls_total"] / result["min_calls"]["total"], 3)
    return {**result, **cleanup_outcome(child)}


def baseline_run(
    alerts: int, workdir: Path, *, max_seconds: float | None, timeout: float
) -> dict[str, Any]:
    """``bench/baseline_cs.py`` against a fresh simulator; extrapolated if bounded."""
    report_path = workdir / "baseline-report.json"
    with SimProcess(workdir / "sim", alerts=alerts) as sim:
        before = sim.stats()
        sim.reset()
        cmd = [sys.executable, str(BENCH / "baseline_cs.py"), "--report", str(report_path)]
        if max_seconds is not None:
            cmd += ["--max-seconds", f"{max_seconds:g}"]
        env = client_env(sim, workdir / "unused.sqlite3")
        child = run_child(cmd, env=env, cwd=workdir, timeout=timeout, name="baseline")
        after = sim.stats(ids=True)
    result: dict[str, Any] = {"tool": "baseline-cs", **_common(sim, before, after),
                              **child.to_json()}  # fmt: skip
    result["min_calls"] = min_calls(before["live_by_name"], before["score"]["truth_duplicates"])
    if not report_path.exists():
        result["stderr_tail"] = child.stderr[-2000:]
        return result
    report = json.loads(report_path.read_text())
    truth = set(after.pop("truth_duplicate_ids"))
    intended = set(report.pop("ids"))
    after.pop("archived_ids", None)
    result["report"] = report
    # What the script decided to archive, scored whole (also the part a bounded run skipped).
    result["intended"] = {
        "archives": len(intended),
        "wrong": len(intended - truth),
        "duplicates_covered": len(intended & truth),
    }
    done = max(1, report["archived"])
    per_call_wall = report["archive_wall_s"] / done
    per_call_cpu = report["archive_cpu_s"] / done
    todo = report["to_archive"]
    list_calls = result["calls"].get("listAlerts", 0)
    startup_wall = result["wall_s"] - report["list_wall_s"] - report["group_wall_s"] - report[
        "archive_wall_s"]
    startup_cpu = result["cpu_s"] - report["list_cpu_s"] - report["group_cpu_s"] - report[
        "archive_cpu_s"]
    result["per_archive_call_wall_s"] = round(per_call_wall, 5)
    result["per_archive_call_cpu_s"] = round(per_call_cpu, 6)
    result["per_list_page_wall_s"] = round(report["list_wall_s"] / max(1, list_calls), 5)
    result["estimated_full"] = {
        "complete_run": report["complete"],
        "calls_total": list_calls + todo,
        "wall_s": round(startup_wall + report["list_wall_s"] + report["group_wall_s"]
                        + todo * per_call_wall, 1),
        "cpu_s": round(startup_cpu + report["list_cpu_s"] + report["group_cpu_s"]
                       + todo * per_call_cpu, 1),
        "peak_rss_mb": result["peak_rss_mb"],
        "wrong_archives": result["intended"]["wrong"],
        "method": "measured" if report["complete"] else (
            f"listing measured; archive loop measured for {report['archived']} of {todo} calls "
            f"({report['archive_wall_s']:.0f} s), the rest at the measured "
            f"{per_call_wall * 1000:.2f} ms per call"),
        "listing": (
            f"cs listed {report['listed']} rows, {report['listed_unique']} distinct: tied rows "
            f"swap across pages, so {report['listed'] - report['listed_unique']} came twice "
            "(the script archives those twice; the second archiveAlerts of an id fails with "
            "530 and stops it) and as many were never seen"
        ),
        "stopped_by": report.get("error"),
    }
    return result


def estimate_baseline(base: dict[str, Any], live_all: int, truth_duplicates: int) -> dict[str, Any]:
    """The baseline at another size, from a measured run: every page and call costs the same.

    Pages = ceil(live / 500) (it lists every alert); archive calls = live - distinct subjects
    (the subject universe is the simulator's inventory, the same at both sizes); wrong archives
    = archive calls - duplicates (it archives every copy after the first of a subject).
    """
    report = base["report"]
    ratio = live_all / max(1, base["live_before"])
    pages = -(-live_all // PAGE_SIZE)
    archives = max(0, live_all - report["subjects"])
    startup = base["wall_s"] - report["list_wall_s"] - report["group_wall_s"] - report[
        "archive_wall_s"]
    wall = (startup + pages * base["per_list_page_wall_s"] + report["group_wall_s"] * ratio
            + archives * base["per_archive_call_wall_s"])
    cpu = (base["estimated_full"]["cpu_s"] - report["list_cpu_s"] - report["group_cpu_s"]
           - report["to_archive"] * base["per_archive_call_cpu_s"]
           + (report["list_cpu_s"] + report["group_cpu_s"]) * ratio
           + archives * base["per_archive_call_cpu_s"])
    return {
        "tool": "baseline-cs",
        "estimated": True,
        "live_before": live_all,
        "calls_total": pages + archives,
        "calls": {"listAlerts": pages, "archiveAlerts": archives},
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "peak_rss_mb": round(base["peak_rss_mb"] * ratio, 0),
        "wrong_archives": max(0, archives - truth_duplicates),
        "method": (
            f"from the {base['alerts']:,}-alert run: {pages} pages x "
            f"{base['per_list_page_wall_s'] * 1000:.1f} ms + {archives} archive calls "
            f"(live {live_all} - {report['subjects']} subjects) x "
            f"{base['per_archive_call_wall_s'] * 1000:.2f} ms; RSS scaled by live alerts"
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tool", choices=("sidecar", "baseline"), required=True)
    parser.add_argument("--alerts", type=int, default=100_000)
    parser.add_argument("--rps", type=float, default=None, help="SIDECAR_REQUESTS_PER_SECOND")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="bound the baseline's archive loop (extrapolate the rest)")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cleanup-") as tmp:
        workdir = args.workdir or Path(tmp)
        if args.tool == "sidecar":
            result = sidecar_run(args.alerts, workdir, rps=args.rps, timeout=args.timeout)
            print(f"sidecar cleanup of {args.alerts:,} alerts: {result['calls_total']} calls "
                  f"({result.get('calls_vs_min')}x the minimum), {result['wall_s']:.1f} s, "
                  f"{result['cpu_s']:.1f} s CPU, {result['peak_rss_mb']:.0f} MB")
        else:
            result = baseline_run(args.alerts, workdir, max_seconds=args.max_seconds,
                                  timeout=args.timeout)
            est = result.get("estimated_full", {})
            print(f"baseline cs script on {args.alerts:,} alerts: {result['calls_total']} calls "
                  f"made in {result['wall_s']:.1f} s; full run: {est.get('calls_total')} calls, "
                  f"{est.get('wall_s')} s ({est.get('method')})")
        emit(result)


if __name__ == "__main__":
    main()
