"""What the service or cleanup would do now, and why: the ``report`` command's use case.

It reads exactly what ``cleanup`` reads (every live alert of the HA names, hosts, VMs, the
ledger's host history) and plans with the same policy, so its JSON is the plan a cleanup would
carry out. It makes no state-changing CloudStack call.
"""

from __future__ import annotations

from sidecar.cloudstack.listing import (
    ELIGIBLE_NAMES,
    list_alerts_by_name,
    list_all_vms,
    list_hosts,
    server_now,
)
from sidecar.model.plan import Plan, Snapshot
from sidecar.ops.context import Context, require_supported
from sidecar.ops.detection import failure_detection
from sidecar.ops.policy import policy_for
from sidecar.reconcile import build_plan
from sidecar.support.gcpause import gc_paused


async def gather_plan(ctx: Context, *, families: frozenset[str] | None = None) -> tuple[Plan, str]:
    """List and plan, changing nothing in CloudStack; returns the plan and the version."""
    ledger = ctx.ledger()
    try:
        history = ledger.host_history()
        async with ctx.client() as cs:
            version = await cs.version()
            require_supported(version)
            listing = await list_alerts_by_name(cs, ELIGIBLE_NAMES)
            hosts = await list_hosts(cs)
            vms = await list_all_vms(cs)
            detection = await failure_detection(cs, ctx.settings, hosts)
            taken_at = server_now(cs)
        snapshot = Snapshot(
            taken_at=taken_at, alerts=listing.alerts, hosts=hosts, vms=vms, host_history=history
        )
        with gc_paused():
            plan = build_plan(snapshot, policy_for(ctx.settings, families, detection=detection))
        # The run record is the audit trail of who looked (ledger only, never CloudStack).
        run_id = ledger.start_run(
            "report", "dry-run", endpoint=ctx.cloudstack.endpoint, cloudstack_version=version
        )
        ledger.finish_run(run_id, "ok", plan.summary.to_json_counts())
    finally:
        ledger.close()
    return plan, version
