"""What the service or cleanup would do now, and why: the ``report`` command's use case.

It reads exactly what ``cleanup`` reads (every live alert of the HA names, hosts, VMs, the
ledger's host history and VM placements) and plans with the same policy, so its JSON is the plan
a cleanup would carry out. It makes no state-changing CloudStack call; in the ledger it records
its run and, as every VM listing does, the VMs' host changes (``take_inventory``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sidecar.cloudstack.listing import ELIGIBLE_NAMES, list_alerts_by_name, server_now
from sidecar.model.plan import Plan, Snapshot
from sidecar.ops.context import Context, require_supported
from sidecar.ops.inventory import take_inventory
from sidecar.ops.policy import policy_for
from sidecar.reconcile import build_plan, parse_subject
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


@dataclass(frozen=True, slots=True)
class AlertTimes:
    """What the HTML report draws that the Plan contract does not carry (not part of the JSON).

    The plan keeps a group's first and last time only; the per-hour history and the incident
    timelines need each alert's own time, and the kind of each alert of an incident.
    """

    sent: Mapping[str, datetime]
    """Every alert scanned that has a date: id -> sent."""
    kinds: Mapping[str, tuple[str, str]]
    """Each itemised HA incident's alert id -> (family, VM name; empty for host alerts)."""


def alert_times(snapshot: Snapshot, plan: Plan) -> AlertTimes:
    """Each alert's time, and what the itemised incidents' alerts are about."""
    wanted = {i for incident in plan.ha_incidents for i in incident.alert_ids}
    sent: dict[str, datetime] = {}
    kinds: dict[str, tuple[str, str]] = {}
    for a in snapshot.alerts:
        if a.sent is not None:
            sent[a.id] = a.sent
        if a.id in wanted:
            subject = parse_subject(a.description)
            kinds[a.id] = (subject.family, subject.vm)
    return AlertTimes(sent, kinds)


async def gather_report(
    ctx: Context, *, families: frozenset[str] | None = None
) -> tuple[Plan, AlertTimes]:
    """The plan and its alerts' times (``report --format html``), changing nothing."""
    snapshot, plan, _ = await _gather(ctx, families)
    return plan, alert_times(snapshot, plan)


async def gather_plan(ctx: Context, *, families: frozenset[str] | None = None) -> tuple[Plan, str]:
    """List and plan, changing nothing in CloudStack; returns the plan and the version."""
    _, plan, version = await _gather(ctx, families)
    return plan, version


async def _gather(
    ctx: Context, families: frozenset[str] | None
) -> tuple[Snapshot, Plan, str]:
    """List and plan, and record the run in the ledger."""
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
    return snapshot, plan, version
