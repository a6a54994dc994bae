"""Benchmark the embedded simulator: seeding 1,000,000 alerts, and requests per second.

The server runs in a child process (so client and server do not share one GIL); client threads
in this process send pre-signed requests over keep-alive loopback connections for a fixed time.

Prints one line per measurement and one JSON line with everything:
``python bench/bench_simulator.py [--alerts N] [--seconds S] [--threads T]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cloudstack_simulator import Simulator, compute_signature


def _serve(alerts: int, conn: Any) -> None:
    """Child process: seed, serve, report the endpoint and credentials, wait to be stopped."""
    sim = Simulator(profile="4.19.2", seed=7, hosts=40, vms_per_host=10)
    started = time.perf_counter()
    report = sim.seed_history(alerts=alerts, duplicate_ratio=0.3)
    seeded = time.perf_counter() - started
    endpoint = sim.start()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    conn.send(
        {
            "endpoint": endpoint,
            "key": sim.key,
            "secret": sim.secret,
            "seed_seconds": seeded,
            "alerts": report.alerts,
            "live": report.live,
            "duplicates": report.duplicates,
            "rss_mb": rss,
        }
    )
    conn.recv()  # wait for "stop"
    conn.send(sim.stats.snapshot())
    sim.stop()


def signed_path(endpoint: str, key: str, secret: str, params: dict[str, str]) -> str:
    """A GET path with a fixed (non-expiring) signature, reusable for every request."""
    full = {**params, "apiKey": key, "response": "json"}
    full["signature"] = compute_signature(full, secret)
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in full.items())
    return f"{urlsplit(endpoint).path}?{query}"


def hammer(endpoint: str, path: str, seconds: float, threads: int) -> tuple[float, int]:
    """Requests per second over ``seconds`` with ``threads`` keep-alive clients."""
    url = urlsplit(endpoint)
    counts = [0] * threads
    errors = [0] * threads
    deadline = time.perf_counter() + seconds

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
        while time.perf_counter() < deadline:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                counts[i] += 1
            else:
                errors[i] += 1
        conn.close()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    return sum(counts) / elapsed, sum(errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(args.alerts, child), daemon=True)
    proc.start()
    info = parent.recv()
    print(
        f"seeded {info['alerts']:,} alerts ({info['live']:,} live, {info['duplicates']:,} "
        f"duplicates) in {info['seed_seconds']:.1f} s; server RSS {info['rss_mb']:.0f} MB"
    )
    results: dict[str, Any] = {"seed": info}
    cases = {
        "listCapabilities": {"command": "listCapabilities"},
        "listAlerts page 1 (pagesize 20)": {"command": "listAlerts", "page": "1", "pagesize": "20"},
        "listAlerts page 1 (pagesize 500)": {
            "command": "listAlerts",
            "page": "1",
            "pagesize": "500",
        },
        "listAlerts name=ALERT.USERVM page 50 (pagesize 500)": {
            "command": "listAlerts",
            "name": "ALERT.USERVM",
            "page": "50",
            "pagesize": "500",
        },
    }
    for label, params in cases.items():
        path = signed_path(info["endpoint"], info["key"], info["secret"], params)
        rate, errors = hammer(info["endpoint"], path, args.seconds, args.threads)
        results[label] = {"req_per_s": round(rate, 1), "errors": errors}
        print(f"{label}: {rate:,.0f} req/s ({errors} errors, {args.threads} clients)")
    parent.send("stop")
    results["server"] = parent.recv()
    proc.join(timeout=10)
    print(
        json.dumps(
            {k: v for k, v in results.items() if k != "seed"}
            | {"seed": {k: v for k, v in info.items() if k not in ("key", "secret", "endpoint")}}
        )
    )


if __name__ == "__main__":
    main()
