"""Baseline: what an operator scripts today with the ``cs`` library to drop duplicate alerts.

List every alert (``fetch_list=True``), group them by subject, keep the oldest of each subject
and archive every other one with its own ``archiveAlerts ids=<id>`` call, sequentially, with
``cs`` defaults (GET, 10 s timeout, no retries) and ``read_config()`` credentials
(``CLOUDSTACK_CONFIG``). Grouping by subject across all time also archives alerts of separate
incidents that happen to share a subject ("Host down, 7" a month later is a new failure).

Bench-only additions, outside the operator's logic: ``--report`` writes timings and the ids
the script decided to archive (to score them against the simulator's truth), and
``--max-seconds`` stops the archive loop after that long so ``make bench`` stays bounded
(the rest is extrapolated from the measured per-call time and marked so).

``python bench/baseline_cs.py [--report out.json] [--max-seconds S]``
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from typing import Any

from cs import CloudStack, read_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", help="write timings and the chosen ids here (JSON)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="stop archiving after this many seconds (bench bound)")
    args = parser.parse_args()

    wall0, cpu0 = time.perf_counter(), time.process_time()

    # --- the operator's script ------------------------------------------------------------
    cs = CloudStack(**read_config())
    alerts: list[dict[str, Any]] = cs.listAlerts(fetch_list=True)
    listed_wall, listed_cpu = time.perf_counter(), time.process_time()

    by_subject: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for alert in alerts:
        by_subject[alert["description"]].append(alert)
    duplicates: list[str] = []
    for group in by_subject.values():
        group.sort(key=lambda a: a["sent"])  # keep the first one sent
        duplicates.extend(a["id"] for a in group[1:])
    print(f"{len(alerts)} alerts, {len(by_subject)} subjects, {len(duplicates)} to archive")

    planned_wall, planned_cpu = time.perf_counter(), time.process_time()
    archived = 0
    error = None
    try:
        for alert_id in duplicates:
            cs.archiveAlerts(ids=alert_id)
            archived += 1
            # --- bench bound (not part of the operator's script) ---
            if args.max_seconds is not None and \
                    time.perf_counter() - planned_wall > args.max_seconds:
                break
    except Exception as exc:  # the operator's script stops here with a traceback
        error = f"{type(exc).__name__}: {exc}"
        print(f"stopped after {archived} archives: {error}")
    print(f"archived {archived}")
    # ---------------------------------------------------------------------------------------

    end_wall, end_cpu = time.perf_counter(), time.process_time()
    if args.report:
        report = {
            "listed": len(alerts),
            # Tied rows swap across pages (no tie-breaker in listAlerts' ORDER BY): some rows
            # come twice, others never; the script archives a row seen twice twice.
            "listed_unique": len({a["id"] for a in alerts}),
            "error": error,
            "subjects": len(by_subject),
            "to_archive": len(duplicates),
            "archived": archived,
            "complete": archived == len(duplicates) and error is None,
            "list_wall_s": listed_wall - wall0,
            "list_cpu_s": listed_cpu - cpu0,
            "group_wall_s": planned_wall - listed_wall,
            "group_cpu_s": planned_cpu - listed_cpu,
            "archive_wall_s": end_wall - planned_wall,
            "archive_cpu_s": end_cpu - planned_cpu,
            "ids": duplicates,
        }
        with open(args.report, "w", encoding="utf-8") as handle:
            json.dump(report, handle)
    if error is not None:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
