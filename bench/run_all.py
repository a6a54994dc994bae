"""``make bench``: every benchmark of issue 7 in one run, written to bench/results.md and .json.

1. Historical cleanup (bench_cleanup.py): the ``cs`` baseline script at 100,000 alerts (its
   archive loop bounded by ``--baseline-seconds`` and extrapolated, unless ``--full-baseline``)
   and estimated at 1,000,000; ``cloudstack-sidecar cleanup`` at 100,000 and 1,000,000 alerts
   at the default 20 requests/s, and at 1,000,000 again with 60 and with 150 requests/s.
2. Planning 1,000,000 alerts (bench_plan.py, when present).
3. Steady state on 2,000 hosts / 40,000 VMs / 200,000 alerts (bench_steady.py).
4. Busy cloud (bench_busy.py, issue 15): ``cleanup`` on a busy cloud's history of 100,000 and
   1,000,000 alerts, recall and precision per family against the simulator's truth.

Every step is a child process with a timeout; a failed step is reported, the others still run.
``--quick``: 100,000 alerts only (planning and the busy cloud at 100,000 too), no 1,000,000 runs.

``python bench/run_all.py [--quick] [--full-baseline] [--baseline-seconds S] [--out DIR]``;
``--only-busy [--quick]`` runs step 4 alone and merges it into the results in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_busy import checks as busy_checks
from bench_busy import section as busy_section
from bench_cleanup import estimate_baseline
from simproc import (
    BYTES_PER_ID,
    FORM_OVERHEAD,
    IDS_PER_POST,
    LATENCY_MS,
    MAX_FORM_BYTES,
    PAGE_SIZE,
    machine_info,
)

BENCH = Path(__file__).resolve().parent
SMALL, LARGE = 100_000, 1_000_000
DEFAULT_RPS, FAST_RPS, FASTER_RPS, CONCURRENCY = 20.0, 60.0, 150.0, 4
#: The 1M runs above the default rate: (run key, requests per second).
FAST_RUNS = (("sidecar_1m_fast", FAST_RPS), ("sidecar_1m_faster", FASTER_RPS))
#: The busy-cloud runs: (run key, alerts).
BUSY_RUNS = (("busy_100k", SMALL), ("busy_1m", LARGE))


def step(name: str, cmd: list[str], timeout: float) -> dict[str, Any]:
    """Run one bench script; its last stdout line is its JSON result."""
    print(f"== {name}: {' '.join(Path(c).name if c.endswith('.py') else c for c in cmd[1:])}",
          flush=True)
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    # Its own session, so a timeout stops the script and what it started (simulator, client).
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.communicate(timeout=15)
                break
            except subprocess.TimeoutExpired:
                continue
        print(f"   timed out after {timeout:g} s", flush=True)
        return {"error": f"timed out after {timeout:g} s"}
    seconds = time.perf_counter() - started
    lines = stdout.strip().splitlines()
    for line in lines[:-1]:
        print(f"   {line}", flush=True)
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        print(f"   failed (exit {proc.returncode}):\n{stderr[-3000:]}", flush=True)
        return {"error": f"exit {proc.returncode}: {stderr.strip()[-500:]}"}
    result["step_seconds"] = round(seconds, 1)
    # Other processes on the machine inflate wall times (not CPU times): keep the evidence.
    result["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(f"   done in {seconds:.0f} s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 alerts only")
    parser.add_argument("--full-baseline", action="store_true",
                        help="run the baseline's archive loop to the end (about 25 min)")
    parser.add_argument("--baseline-seconds", type=float, default=240.0,
                        help="measure the baseline's archive loop this long, then extrapolate")
    parser.add_argument("--out", type=Path, default=BENCH, help="where results.md/.json go")
    parser.add_argument("--render", type=Path, default=None, metavar="RESULTS_JSON",
                        help="only rewrite results.md (in --out) from an earlier results.json")
    parser.add_argument("--only-busy", action="store_true",
                        help="run only the busy-cloud step(s) and merge them into --out's "
                             "results.json (each run records its own machine and date)")
    args = parser.parse_args()
    if args.render is not None or args.only_busy:
        earlier = json.loads((args.render or args.out / "results.json").read_text())
        if args.only_busy:
            _run_busy(earlier["runs"], quick=args.quick)
            (args.out / "results.json").write_text(json.dumps(earlier, indent=1) + "\n")
        earlier["targets"] = targets(earlier["runs"])
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.md").write_text(markdown(earlier))
        return

    py = sys.executable
    started = time.perf_counter()
    runs: dict[str, dict[str, Any]] = {}
    cleanup = [py, str(BENCH / "bench_cleanup.py")]
    baseline_cmd = [*cleanup, "--tool", "baseline", "--alerts", str(SMALL)]
    # Each script bounds its client run (--timeout); the step bound adds seeding and slack.
    if args.full_baseline:
        baseline_cmd += ["--timeout", "3600"]
    else:
        baseline_cmd += ["--max-seconds", f"{args.baseline_seconds:g}",
                         "--timeout", f"{args.baseline_seconds + 200:g}"]
    bound = 3800 if args.full_baseline else args.baseline_seconds + 400
    runs["baseline_100k"] = step("baseline cs script, 100,000 alerts", baseline_cmd, bound)
    runs["sidecar_100k"] = step(
        "sidecar cleanup, 100,000 alerts",
        [*cleanup, "--tool", "sidecar", "--alerts", str(SMALL), "--timeout", "400"], 600)
    if not args.quick:
        runs["sidecar_1m"] = step(
            "sidecar cleanup, 1,000,000 alerts",
            [*cleanup, "--tool", "sidecar", "--alerts", str(LARGE), "--timeout", "700"], 900)
        for key, rps in FAST_RUNS:
            runs[key] = step(
                f"sidecar cleanup, 1,000,000 alerts, {rps:g} requests/s",
                [*cleanup, "--tool", "sidecar", "--alerts", str(LARGE), "--rps", f"{rps:g}",
                 "--timeout", "700"],
                900,
            )
    plan_script = BENCH / "bench_plan.py"
    if plan_script.exists():
        runs["plan"] = step("planning", [py, str(plan_script), "--alerts",
                                         str(SMALL if args.quick else LARGE)], 900)
    runs["steady"] = step("steady state", [py, str(BENCH / "bench_steady.py")], 900)
    _run_busy(runs, quick=args.quick)

    base, big = runs["baseline_100k"], runs.get("sidecar_1m", {})
    if "report" in base and "live_before" in big:
        runs["baseline_1m_estimated"] = estimate_baseline(
            base, big["live_before"], big["truth_duplicates"]
        )
    checks = targets(runs)
    results: dict[str, Any] = {
        "machine": machine_info(),
        "config": {
            "latency_ms": LATENCY_MS,
            "profile": "4.19.2",
            "inventory": "simulator default: 8 hosts x 6 VMs (seed 7)",
            "duplicate_ratio": 0.3,
            "requests_per_second": DEFAULT_RPS,
            "max_concurrency": CONCURRENCY,
            "quick": args.quick,
            "full_baseline": args.full_baseline,
            "baseline_seconds": None if args.full_baseline else args.baseline_seconds,
        },
        "ids_per_post": {
            "value": IDS_PER_POST,
            "formula": f"floor(({MAX_FORM_BYTES} - {FORM_OVERHEAD}) / {BYTES_PER_ID})",
        },
        "runs": runs,
        "targets": checks,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "results.md").write_text(markdown(results))
    failed = [t for t in checks if t["pass"] is False]
    print(f"\n{len(checks) - len(failed)} of {len(checks)} targets met; "
          f"results in {args.out / 'results.md'} ({results['total_seconds']:.0f} s)")


def _run_busy(runs: dict[str, dict[str, Any]], *, quick: bool) -> None:
    """The busy-cloud step(s) into ``runs`` (100,000 alerts, and 1,000,000 unless ``quick``)."""
    busy = [sys.executable, str(BENCH / "bench_busy.py")]
    for key, size in BUSY_RUNS[:1] if quick else BUSY_RUNS:
        # Seeding 1M busy alerts takes minutes before the cleanup's own bound starts.
        runs[key] = step(f"busy cloud cleanup, {size:,} alerts",
                         [*busy, "--alerts", str(size), "--timeout", "1800"], 3600)


# --- targets ---------------------------------------------------------------------------------


def _get(run: dict[str, Any], *path: str) -> Any:
    value: Any = run
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _target(
    area: str, what: str, goal: str, measured: Any, check: Callable[[Any], bool], shown: str = ""
) -> dict[str, Any]:
    ok = None if measured is None else bool(check(measured))
    return {"area": area, "target": what, "goal": goal,
            "measured": shown or ("n/a" if measured is None else str(measured)), "pass": ok}


def _mib(value: Any) -> str:
    """A peak RSS (ru_maxrss / 1024: MiB) with its size in 10^6 bytes beside it."""
    if not isinstance(value, int | float):
        return ""
    return f"{value} MiB ({value * 1.048576:.0f} MB of 10^6 bytes)"


def _rate_floor(run: dict[str, Any]) -> str:
    """The least time the run's minimum calls take at its rate limit, if it rules out 60 s."""
    calls, rps = _get(run, "min_calls", "total"), run.get("rps", DEFAULT_RPS)
    if not isinstance(calls, int) or not rps:
        return ""
    floor = calls / rps
    if floor < 60:
        return ""
    return (f"; unattainable at {rps:g} req/s: the {calls:,} calls any correct tool needs take "
            f"{floor:.0f} s")


def _baseline_full(base: dict[str, Any]) -> dict[str, Any]:
    return base.get("estimated_full") or {}


def targets(runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every target of issue 7 with its measured value and pass/fail (None: not measured)."""
    out = []
    s100, base = runs.get("sidecar_100k", {}), runs.get("baseline_100k", {})
    for key, label in (("sidecar_100k", "100k"), ("sidecar_1m", "1M"),
                       *((k, f"1M @ {r:g}/s") for k, r in FAST_RUNS)):
        run = runs.get(key)
        if run is None:
            continue
        ratio = _get(run, "calls_vs_min")
        out.append(_target("cleanup", f"API calls vs minimum ({label})", "<= 1.2x", ratio,
                           lambda r: r <= 1.2,
                           f"{ratio}x ({_get(run, 'calls_total')} / "
                           f"{_get(run, 'min_calls', 'total')})" if ratio else ""))
    bcalls, scalls = _baseline_full(base).get("calls_total"), s100.get("calls_total")
    fewer = round(bcalls / scalls, 1) if bcalls and scalls else None
    method = "" if _get(base, "estimated_full", "complete_run") else " (baseline extrapolated)"
    out.append(_target("cleanup", "fewer calls than the baseline (100k)", ">= 50x", fewer,
                       lambda r: r >= 50, f"{fewer}x ({bcalls} / {scalls}){method}" if fewer
                       else ""))
    bwall, swall = _baseline_full(base).get("wall_s"), s100.get("wall_s")
    faster = round(bwall / swall, 1) if bwall and swall else None
    out.append(_target("cleanup", "less wall time than the baseline (100k)", ">= 20x", faster,
                       lambda r: r >= 20, f"{faster}x ({bwall} s / {swall} s){method}"
                       if faster else ""))
    for key, label in (("sidecar_1m", f"1M @ {DEFAULT_RPS:g}/s (default)"),
                       *((k, f"1M @ {r:g}/s") for k, r in FAST_RUNS)):
        run = runs.get(key)
        if run is None:
            continue
        floor = _rate_floor(run)
        out.append(_target("cleanup", f"wall time {label}", "< 60 s", _get(run, "wall_s"),
                           lambda w: w < 60, f"{_n(_get(run, 'wall_s'))} s" + floor))
        out.append(_target("cleanup", f"peak RSS {label}", "< 500 MB", _get(run, "peak_rss_mb"),
                           lambda m: m < 500, _mib(_get(run, "peak_rss_mb"))))
    for key, label in (("sidecar_100k", "100k"), ("sidecar_1m", "1M"),
                       *((k, f"1M @ {r:g}/s") for k, r in FAST_RUNS)):
        run = runs.get(key)
        if run is None or "max_per_second" not in run:
            continue
        rps: float = run.get("rps", DEFAULT_RPS)

        def within(m: tuple[int, int], rps: float = rps) -> bool:
            return m[0] <= rps and m[1] <= CONCURRENCY

        out.append(_target(
            "cleanup", f"limits never exceeded ({label})",
            f"<= {rps:g} req/s, <= {CONCURRENCY} concurrent",
            (run["max_per_second"], run["max_inflight"]),
            within,
            f"max {run['max_per_second']} req/s, {run['max_inflight']} concurrent"))
        out.append(_target(
            "cleanup", f"wrong archives ({label})", "0 (and none missed)",
            (_get(run, "score", "wrong_archives"), _get(run, "score", "missed_duplicates")),
            lambda s: s == (0, 0),
            f"{_get(run, 'score', 'wrong_archives')} wrong, "
            f"{_get(run, 'score', 'missed_duplicates')} missed"))
    plan = runs.get("plan", {})
    cpu, rss = plan.get("plan_plan_cpu_s"), plan.get("plan_peak_rss_mb")
    n = plan.get("plan_alerts")
    label = f"{n:,}" if isinstance(n, int) else "?"
    out.append(_target("planning", f"plan CPU ({label} alerts)", "<= 5 s", cpu, lambda c: c <= 5,
                       f"{cpu} s" if cpu is not None else ""))
    out.append(_target("planning", f"plan peak RSS ({label} alerts)", "<= 400 MB", rss,
                       lambda m: m <= 400, _mib(rss)))
    steady = runs.get("steady", {})
    calls, budget = steady.get("quiet_max_calls"), steady.get("quiet_budget_calls")
    out.append(_target("steady", "API calls per quiet cycle", f"<= {budget} "
                       f"({steady.get('quiet_budget_formula', '')})", calls,
                       lambda c: budget is not None and c <= budget))
    qcpu = steady.get("quiet_max_cpu_ms")
    out.append(_target("steady", "CPU per quiet cycle (max)", "< 200 ms", qcpu,
                       lambda c: c < 200, f"{qcpu} ms" if qcpu is not None else ""))
    all_ok = all(c.get("ok") for c in steady.get("cycles", [])) if steady.get("cycles") else None
    out.append(_target("steady", "every cycle succeeded", "all ok", all_ok, bool))
    for key, size in BUSY_RUNS:
        if key in runs:
            label = "100k" if size == SMALL else "1M"
            out += [_target("busy cloud", f"{what} ({label})", goal, measured, check, shown)
                    for what, goal, measured, check, shown in busy_checks(runs[key])]
    return out


# --- markdown --------------------------------------------------------------------------------


def _fmt_calls(calls: dict[str, int] | None) -> str:
    if not calls:
        return "n/a"
    return ", ".join(f"{k} {v:,}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1]))


def _n(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _mark(ok: bool | None) -> str:
    return {True: "PASS", False: "**FAIL**", None: "not measured"}[ok]


def markdown(results: dict[str, Any]) -> str:
    """results.md: machine, targets, then one section per benchmark."""
    m, cfg, runs = results["machine"], results["config"], results["runs"]
    lines = [
        "# Benchmarks (issue 7)",
        "",
        "Generated by `make bench` (`.venv/bin/python bench/run_all.py"
        + (" --quick" if cfg["quick"] else "") + (" --full-baseline" if cfg["full_baseline"]
                                                   else "") + "`); raw numbers in "
        "`results.json`. Do not edit by hand.",
        "",
        f"- Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB RAM, "
        f"Python {m['python']}, {m['os']}",
        f"- Date: {m['date']}, commit {m['git']}; whole run {results['total_seconds']:.0f} s",
        f"- 1-minute load average at the start and end of each step: {_loads(runs)} (above "
        f"{m['nproc']}, other processes shared the CPUs: wall times are inflated, CPU times "
        "much less)",
        f"- Simulator: own process, profile {cfg['profile']}, {cfg['inventory']}, "
        f"{cfg['latency_ms']:g} ms injected per API call, duplicate ratio {cfg['duplicate_ratio']}",
        f"- Sidecar limits: {cfg['requests_per_second']:g} requests/s, "
        f"{cfg['max_concurrency']} concurrent (defaults) unless stated",
        "- Memory: peak RSS is the kernel's ru_maxrss / 1024, in MiB (as `ps` and `free -m` "
        "count). The targets' MB are checked as MiB; each target row also gives the size in "
        "10^6 bytes, 4.9 % more.",
        "",
        "## Targets",
        "",
        "| area | target | goal | measured | result |",
        "|---|---|---|---|---|",
    ]
    for t in results["targets"]:
        lines.append(f"| {t['area']} | {t['target']} | {t['goal']} | {t['measured']} | "
                     f"{_mark(t['pass'])} |")
    lines += ["", *_cleanup_section(results), "", *_plan_section(runs.get("plan")), "",
              *_steady_section(runs.get("steady")), "",
              *busy_section({k: runs[k] for k, _ in BUSY_RUNS if k in runs})]
    return "\n".join(lines) + "\n"


def _loads(runs: dict[str, dict[str, Any]]) -> str:
    loads = [v for r in runs.values() for v in r.get("load_average", [])]
    return f"{min(loads):.1f} to {max(loads):.1f}" if loads else "n/a"


def _cleanup_section(results: dict[str, Any]) -> list[str]:
    runs = results["runs"]
    ids = results["ids_per_post"]
    lines = [
        "## 1. Historical cleanup",
        "",
        "Baseline: `bench/baseline_cs.py`, what an operator scripts with `cs` today "
        "(`listAlerts fetch_list=True`, group by subject, one `archiveAlerts ids=<id>` per "
        "copy, sequential, cs defaults). Sidecar: `cloudstack-sidecar cleanup --apply "
        "--no-limit --format json` as a child process (temp SQLite ledger). Calls, "
        "concurrency and request rate are counted by the simulator; CPU and peak RSS are the "
        "client process's own (`os.wait4`). Wrong archives = archived ids the simulator's "
        "ground truth does not call duplicates.",
        "",
        f"Minimum calls for any correct tool = sum over the 6 HA alert names of "
        f"ceil(live alerts of the name / {PAGE_SIZE}) list pages + ceil(duplicates / "
        f"{ids['value']:,}) archive POSTs, where {ids['value']:,} = {ids['formula']} ids per "
        f"POST (the management server accepts form bodies up to request.content.size = "
        f"1,048,576 bytes, ServerDaemon.java; a uuid is 36 characters plus a `%2C` separator; "
        f"{FORM_OVERHEAD} bytes left for the other fields).",
        "",
        "| run | live alerts (HA names) | duplicates (truth) | API calls | min calls | "
        "calls / min | wall s | CPU s | peak RSS MiB | max req/s | max concurrent | "
        "wrong archives | missed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = [("baseline_100k", "baseline cs, 100k"), ("sidecar_100k", "sidecar, 100k"),
             ("baseline_1m_estimated", "baseline cs, 1M (**estimated**)"),
             ("sidecar_1m", f"sidecar, 1M, {DEFAULT_RPS:g} req/s (default)"),
             *((k, f"sidecar, 1M, {r:g} req/s") for k, r in FAST_RUNS)]
    notes = []
    for key, label in order:
        run = runs.get(key)
        if not run:
            continue
        if "error" in run:
            lines.append(f"| {label} | error: {run['error'][:200]} |" + " |" * 11)
            continue
        if key == "baseline_1m_estimated":
            lines.append(
                f"| {label} | {_n(run['live_before'])} (all names) | | "
                f"{_n(run['calls_total'])} ({_fmt_calls(run['calls'])}) | | | "
                f"{_n(run['wall_s'])} | {_n(run['cpu_s'])} | {_n(run['peak_rss_mb'])} | | 1 | "
                f"{_n(run['wrong_archives'])} | |")
            notes.append(f"- Baseline at 1M is **estimated**, not run: {run['method']}.")
            continue
        mins = run.get("min_calls", {})
        if key == "baseline_100k":
            full = run.get("estimated_full", {})
            complete = full.get("complete_run")
            tag = "" if complete else " (**extrapolated**)"
            calls = f"{_n(full.get('calls_total'))}{tag}; made {_n(run['calls_total'])} " \
                    f"({_fmt_calls(run['calls'])})"
            wall, cpu = f"{_n(full.get('wall_s'))}{tag}", f"{_n(full.get('cpu_s'))}{tag}"
            wrong = f"{_n(run['intended']['wrong'])} of {_n(run['intended']['archives'])}" \
                    " it archives"
            missed = _n(run["truth_duplicates"] - run["intended"]["duplicates_covered"])
            ratio = round(full["calls_total"] / mins["total"], 1) if full.get("calls_total") \
                else None
            if not complete:
                notes.append(f"- Baseline at 100k: {full.get('method')}. Wrong archives are "
                             "exact: the script's whole archive list is scored against the "
                             "truth.")
            if full.get("listing"):
                notes.append(f"- Baseline listing: {full['listing']}.")
            if full.get("stopped_by"):
                notes.append(f"- The baseline script stopped with `{full['stopped_by']}`; "
                             "the estimate assumes the operator re-runs it.")
        else:
            calls = f"{_n(run['calls_total'])} ({_fmt_calls(run['calls'])})"
            wall, cpu = _n(run["wall_s"]), _n(run["cpu_s"])
            wrong = _n(run["score"]["wrong_archives"])
            missed = _n(run["score"]["missed_duplicates"])
            ratio = run.get("calls_vs_min")
        lines.append(
            f"| {label} | {_n(run['live_before'])} ({_n(run['live_ha_before'])}) | "
            f"{_n(run['truth_duplicates'])} | {calls} | {_n(mins.get('total'))} | {_n(ratio)} | "
            f"{wall} | {cpu} | {_n(run['peak_rss_mb'])} | {_n(run['max_per_second'])} | "
            f"{_n(run['max_inflight'])} | {wrong} | {missed} |")
        size = f"{run['alerts']:,} alerts"
        if mins and not any(size in n for n in notes):
            notes.append(f"- Minimum at {size}: {mins['formula']}.")
    lines += ["", *notes]
    big = runs.get("sidecar_1m", {})
    fast = runs.get("sidecar_1m_fast", {})
    faster = runs.get("sidecar_1m_faster", {})
    if big.get("min_calls"):
        pages = big["min_calls"]["pages"]
        lines += [
            "",
            f"**The 60 s target needs a rate limit above the default**: a 1M cleanup must "
            f"read {pages:,} list pages at least (500 alerts each), and at the default "
            f"{DEFAULT_RPS:g} requests/s that alone takes {pages:,} / {DEFAULT_RPS:g} = "
            f"{pages / DEFAULT_RPS:.0f} s > 60 s, whatever the client does. Meeting 60 s "
            f"needs at least {pages / 60:.0f} requests/s ({pages:,} / 60 s) for the pages, "
            f"plus the time to plan and to write 276,000 intents ahead of their POSTs; with "
            f"{CONCURRENCY} concurrent calls of {LATENCY_MS:g} ms latency the ceiling is about "
            f"{CONCURRENCY * 1000 / LATENCY_MS:.0f} requests/s before server time. With "
            f"`SIDECAR_REQUESTS_PER_SECOND={FAST_RPS:g}` it took {_n(fast.get('wall_s'))} s "
            f"(at most {_n(fast.get('max_per_second'))} requests/s); with "
            f"`SIDECAR_REQUESTS_PER_SECOND={FASTER_RPS:g}` {_n(faster.get('wall_s'))} s "
            f"(at most {_n(faster.get('max_per_second'))} requests/s).",
        ]
        for run, rps in ((big, DEFAULT_RPS), (fast, FAST_RPS), (faster, FASTER_RPS)):
            if run.get("calls_total") and run.get("wall_s"):
                t = run.get("timings") or {}
                phases = (
                    f": listing {t.get('listing', 0):.0f} s, planning {t.get('planning', 0):.0f}"
                    f" s, archiving {t.get('archiving', 0):.0f} s (ledger calls "
                    f"{t.get('ledger_during_archiving', 0):.0f} s summed, in the ledger thread, "
                    "while the POSTs go out and the next intents' rows are built in another "
                    "thread), the rest start-up and writing the plan"
                ) if t else ""
                lines.append(
                    f"- At {rps:g} requests/s: its {run['calls_total']:,} calls need at least "
                    f"{run['calls_total'] / rps:.0f} s; it took {run['wall_s']:.0f} s wall and "
                    f"{run['cpu_s']:.0f} s CPU{phases}.")
    for key in ("sidecar_100k", "sidecar_1m", *(k for k, _ in FAST_RUNS)):
        run = runs.get(key, {})
        if run.get("totals"):
            lines.append(f"- `{key}` totals: {json.dumps(run['totals'])}; simulator start "
                         f"(seeding) {run.get('simulator_start_s')} s, not counted.")
    return lines


def _plan_section(plan: dict[str, Any] | None) -> list[str]:
    lines = ["## 2. Planning", ""]
    if not plan:
        return [*lines, "bench/bench_plan.py is not present: not measured."]
    if "error" in plan:
        return [*lines, f"bench/bench_plan.py failed: {plan['error'][:500]}"]
    lines += [
        "`bench/bench_plan.py` (each phase in its own process; its own generator of realistic "
        "listAlerts items, no simulator):",
        "",
        "| phase | alerts | CPU s | peak RSS MiB |",
        "|---|---|---|---|",
    ]
    for phase, label, cpu_keys in (
        ("build", "listAlerts dicts -> Alert objects", ("build_build_cpu_s",)),
        ("plan", "build_plan on prebuilt Alert objects", ("plan_plan_cpu_s",)),
        ("all", "both, as cleanup does", ("all_build_cpu_s", "all_plan_cpu_s")),
    ):
        if f"{phase}_peak_rss_mb" not in plan:
            continue
        cpu = sum(plan.get(k) or 0.0 for k in cpu_keys)
        lines.append(f"| {label} | {_n(plan.get(f'{phase}_alerts'))} | {cpu:.2f} | "
                     f"{_n(plan.get(f'{phase}_peak_rss_mb'))} |")
    extra = {k: v for k, v in plan.items() if k.startswith("plan_") and k not in (
        "plan_plan_cpu_s", "plan_peak_rss_mb", "plan_alerts")}
    if extra:
        lines += ["", f"Plan phase details: {json.dumps(extra)}"]
    return lines


def _steady_section(steady: dict[str, Any] | None) -> list[str]:
    lines = ["## 3. Steady state", ""]
    if not steady:
        return [*lines, "not measured"]
    if "error" in steady:
        return [*lines, f"bench/bench_steady.py failed: {steady['error'][:500]}"]
    lines += [
        "`bench/bench_steady.py`: "
        "`sidecar.ops.service.cycle.Service(ctx, dry_run=False).run_cycle()` "
        f"in-process against a simulator of {steady['hosts']:,} hosts, {steady['vms']:,} VMs "
        f"and {steady['alerts']:,} alerts ({_n(steady['live_alerts'])} live) in its own "
        f"process. Calls and bytes from the simulator's stats (reset before each cycle), CPU "
        f"from `time.process_time()` around the cycle. The host failure is a `host-crash` "
        f"scenario started through `POST /_sim/scenario` with the virtual clock advanced "
        f"400 s. Quiet-cycle budget: {steady['quiet_budget_formula']} = "
        f"{steady['quiet_budget_calls']} calls.",
        "",
        "| cycle | ok | API calls | bytes received | CPU ms | wall ms | outcome |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in steady["cycles"]:
        lines.append(f"| {c['cycle']} | {'yes' if c['ok'] else '**no**'} | {c['calls_total']} "
                     f"({_fmt_calls(c['calls'])}) | {_n(c['bytes_received'])} | "
                     f"{_n(c['cpu_ms'])} | {_n(c['wall_ms'])} | {c['message'][:160]} |")
    lines += ["", f"Peak RSS of the service process: {_n(steady.get('peak_rss_mb'))} MiB."]
    return lines


if __name__ == "__main__":
    main()
