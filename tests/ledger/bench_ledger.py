"""Time the ledger's bulk paths with 100k alerts (prints numbers; asserts nothing).

    .venv/bin/python tests/ledger/bench_ledger.py [URL] [N]

Default: a temporary SQLite file and 100,000 alerts.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sidecar.ledger import Ledger
from sidecar.model.plan import MergeGroup, Plan, Summary
from sidecar.model.resources import Alert


def main() -> None:
    tmp = tempfile.TemporaryDirectory()
    url = sys.argv[1] if len(sys.argv) > 1 else f"sqlite:///{Path(tmp.name) / 'bench.sqlite3'}"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    now = datetime.now(UTC)
    alerts = [
        Alert.from_api(
            {
                "id": f"{i:08x}-0000-4000-8000-000000000000",
                "type": 8,
                "name": "ALERT.USERVM",
                "description": f"HA starting VM i-2-{i}-VM on host kvm-{i % 50:02d}",
                "sent": "2026-03-01T12:00:00+0000",
            }
        )
        for i in range(n)
    ]
    fingerprints = {a.id: f"vm-ha:{i % 5000}" for i, a in enumerate(alerts)}
    canon = alerts[0].id
    groups = [
        MergeGroup(
            f"g{k}",
            "vm-ha",
            f"i-2-{k}-VM",
            f"vm-ha:{k}",
            "ALERT.USERVM",
            canon,
            tuple(a.id for a in alerts[1 + k * 100 : 1 + (k + 1) * 100]),
            now,
            now,
            "same VM",
        )
        for k in range((n - 1) // 100 + 1)
    ]
    groups = [g for g in groups if g.duplicates]
    by_id = {a.id: a for a in alerts}
    items = [(g, by_id[d]) for g in groups for d in g.duplicates]
    ledger = Ledger(url, holder="bench")

    def timed(label: str, fn) -> object:  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        result = fn()
        print(f"{label:<40} {time.perf_counter() - start:7.2f} s")
        return result

    print(f"{n} alerts on {ledger.display_url}")
    timed("observe_alerts (all new)", lambda: ledger.observe_alerts(alerts, fingerprints, now))
    timed("observe_alerts (all seen)", lambda: ledger.observe_alerts(alerts, fingerprints, now))
    timed("seen_alert_ids", lambda: ledger.seen_alert_ids(a.id for a in alerts))
    run = ledger.start_run("bench", "apply")
    plan = Plan(now, tuple(groups), tuple(a.id for _, a in items), (), Summary())
    timed(f"record_plan ({len(groups)} groups)", lambda: ledger.record_plan(run, plan))
    token = ledger.acquire_lease(3600)
    assert token is not None
    records = timed("intend_archive (all new)", lambda: ledger.intend_archive(run, token, items))
    ids = [r.alert_id for r in records]  # type: ignore[attr-defined]
    timed("mark sent", lambda: ledger.mark(token, ids, "sent"))
    timed("mark done", lambda: ledger.mark(token, ids, "done"))
    timed("intend_archive (all done)", lambda: ledger.intend_archive(run, token, items))
    timed("verify", ledger.verify)
    ledger.close()
    tmp.cleanup()


if __name__ == "__main__":
    main()
