"""Hook faults: what other admins and the alert manager do between authentication and a command."""

from __future__ import annotations

from cloudstack_simulator.alerting import archive_out_of_band, emit_alert, purge
from cloudstack_simulator.api import Call
from cloudstack_simulator.context import Context
from cloudstack_simulator.faults import Fault
from cloudstack_simulator.ordered import key_row

_DEFAULT_INSERTED_SUBJECT = "Management server node 10.1.1.5 is up"


def run_hooks(ctx: Context, call: Call) -> None:
    """Apply hook faults (another admin archiving, purges, new alerts) to this call."""

    def applicable(fault: Fault) -> bool:
        if fault.kind == "insert_alerts":
            page = call.params.get("page", "1")
            return page.lstrip("-").isdigit() and int(page) >= int(fault.options["min_page"])
        return True

    table = ctx.state.alerts
    for fault in ctx.faults.draw(call.command, "hook", applicable):
        with ctx.lock:
            if fault.kind in ("archived_by_other", "delete_alerts") and "ids" in call.params:
                found = (table.find_uuid(t) for t in call.params["ids"].split(",") if t)
                rows = [r for r in found if r is not None and table.is_live(r)]
                chosen = ctx.faults.rng_sample(sorted(set(rows)), int(fault.options["k"]))
                act = archive_out_of_band if fault.kind == "archived_by_other" else purge
                for row in chosen:
                    act(ctx, row)
                    fault.affected.append(table.uuid[row - 1])
            elif fault.kind == "delete_alerts":
                for key in list(table.live)[-int(fault.options["k"]) :]:
                    row = key_row(key)
                    purge(ctx, row)
                    fault.affected.append(table.uuid[row - 1])
            elif fault.kind == "insert_alerts":
                subject = fault.options["subject"] or _DEFAULT_INSERTED_SUBJECT
                for _ in range(int(fault.options["n"])):
                    fault.affected.append(emit_alert(ctx, fault.options["name"], subject))
