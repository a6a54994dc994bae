"""HA incidents at the edge of the horizon: a restart incident that began before the oldest
failure kept and ended after it (found by bench/bench_busy.py on a 1M-alert busy history)."""

from __future__ import annotations

from plankit import USERVM, alert, down, plan_of, started

DAY = 86400


def test_a_restart_incident_straddling_the_oldest_failure_kept_is_planned_not_a_crash() -> None:
    alerts = [
        alert(started(), 1 * DAY, USERVM),
        # One incident (the failure at 5 d comes less than restart_latency before the copy)
        # that began before the oldest failure within the 7-day horizon and ends after it.
        alert(started(), 5 * DAY - 100, USERVM, alert_id="restart"),
        alert(down(), 5 * DAY),
        alert(started(), 5 * DAY + 5, USERVM, alert_id="copy"),
    ]
    plan = plan_of(alerts, at=10 * DAY)
    assert set(plan.archive) == {"copy"}
    assert plan.summary.ha_incidents == 1
