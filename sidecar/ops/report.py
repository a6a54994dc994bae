"""What the service or cleanup would do now, and why: the ``report`` command's use case.

It reads exactly what ``cleanup`` reads (every live alert of the HA names, hosts, VMs, the
ledger's host history and VM placements) and plans with the same policy, so its JSON is the plan
a cleanup would carry out. It makes no state-changing CloudStack call; in the ledger it records
its run and, as every VM listing does, the VMs' host changes (``take_inventory``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sidecar.cloudstack.listing import ELIGIBLE_NAMES, list_alerts_by_name, server_now
from sidecar.model.plan import Plan, Snapshot
from sidecar.ops.context import Context, require_supported
from sidecar.ops.inventory import take_inventory
from sidecar.ops.policy import policy_for
from sidecar.reconcile import build_plan
from sidecar.support.gcpause import gc_paused

if TYPE_CHECKING:
    from sidecar.ledger import Ledger


async def gather_snapshot(ctx: Context, ledger: Ledger) -> tuple[Snapshot, str, float]:
    """What the report plans from, listed now; returns it, the CloudStack version and the
    cloud's host-failure detection time."""
    history = ledger.host_history()
    async with ctx.client() as cs:
        version = await cs.version()
        require_supported(version)
        listing = await list_alerts_by_name(cs, ELIGIBLE_NAMES)
        inventory = await take_inventory(cs, ledger, ctx.settings)
        taken_at = server_now(cs)
    snapshot = Snapshot(
        taken_at=taken_at, alerts=listing.alerts, hosts=inventory.hosts, vms=inventory.vms,
        host_history=history, vm_placements=inventory.placements,
    )
    return snapshot, version, inventory.detection


async def gather_plan(ctx: Context, *, families: frozenset[str] | None = None) -> tuple[Plan, str]:
    """List and plan, changing nothing in CloudStack; returns the plan and the version."""
    ledger = ctx.ledger()
    try:
        snapshot, version, detection = await gather_snapshot(ctx, ledger)
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
