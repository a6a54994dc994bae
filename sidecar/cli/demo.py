"""``cloudstack-sidecar demo``: the whole story on the embedded simulator, in seconds.

Starts a 4.19.2 simulator on a free loopback port, seeds a modest history, crashes a host with
HA-enabled VMs, shows the alert list, the report, archives the duplicates with the ledger, and
shows the ledger and the alert list afterwards. No configuration, no network beyond loopback.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.rule import Rule
from rich.table import Table

from sidecar.cli.progress import Reporter
from sidecar.cli.render import print_plan_tables
from sidecar.cloudstack.config import CloudStackConfig
from sidecar.model.resources import Alert
from sidecar.ops.context import Context
from sidecar.support.settings import Settings


def _alert_table(title: str, alerts: list[Alert], limit: int = 12) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("sent (UTC)")
    table.add_column("name")
    table.add_column("subject", overflow="fold")
    for a in sorted(alerts, key=lambda a: (a.sent is None, a.sent), reverse=True)[:limit]:
        # Subjects are CloudStack's text: a VM named ``[web]`` is shown, not taken as markup.
        table.add_row(a.sent.strftime("%Y-%m-%d %H:%M:%S") if a.sent else "-", escape(a.name),
                      escape(a.description))
    counts = Counter(a.name for a in alerts)
    table.caption = f"{len(alerts)} live alerts: " + ", ".join(
        f"{n} {escape(k)}" for k, n in counts.most_common()
    )
    return table


def _queue_table(title: str, rows: list[dict[str, Any]], names: dict[int, str]) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("id", "vm", "host", "step", "taken", "tried"):
        table.add_column(col)
    for r in rows[-14:]:  # the newest rows: the failure just played
        table.add_row(str(r["id"]), escape(names.get(int(r["instance_id"]), "?")),
                      str(r["host_id"]), r["step"], str(r["taken"] or "-"), str(r["tried"]))
    table.caption = f"{len(rows)} op_ha_work rows: " + ", ".join(
        f"{n} {k}" for k, n in Counter(r["step"] for r in rows).most_common()
    )
    return table


def _ha_work_section(console: Console, sim: Any) -> None:
    """``--ha-work``: two more hosts fail; the HA queue in the simulator's database."""
    # Imported here: only the demo reaches into the simulator's truth (its own copy of the rule).
    from cloudstack_simulator.harule import cancel_plan

    console.print(Rule("--ha-work: the HA queue (op_ha_work) in the simulated cloud database"))
    up = [h.id for h in sim.state.hosts.values() if h.status == "Up" and h.type == "Routing"]
    sim.fail_hosts(up[:2], rounds=2)
    sim.clock.advance(6)  # both scheduleRestartForVmsOnHost rounds have queued their rows
    names = {vm.id: vm.name for vm in sim.state.vms.values()}
    rows = sim.cloud_db.ha_rows()
    console.print(f"database: {escape(sim.cloud_db_url)}")
    console.print(_queue_table("HA queue before", rows, names))
    plan = cancel_plan(rows)
    table = Table(title="Duplicate HA rows (the simulator's truth)", title_justify="left")
    for col in ("vm", "host", "keep", "cancel"):
        table.add_column(col)
    for (vm_id, host_id), (keep, cancel) in sorted(plan.items())[:10]:
        table.add_row(escape(names.get(vm_id, "?")), str(host_id), str(keep),
                      ", ".join(map(str, cancel)))
    table.caption = f"{sum(len(c) for _, c in plan.values())} rows a merge would cancel"
    console.print(table)
    # Merge hook: when `cleanup --apply --ha-work` exists (the sidecar's HA-work branch), run it
    # here against sim.cloud_db_url, before the workers reach the duplicates.
    console.print("[dim]merge: not on this branch (cleanup --apply --ha-work goes here)[/]")
    sim.clock.run_until_idle()
    console.print(_queue_table("HA queue after the workers ran", sim.cloud_db.ha_rows(), names))
    outcome = sim.ha_queue.outcome()
    console.print(
        f"duplicate HA executions {outcome['duplicate_executions']}, every HA VM running again "
        f"after {outcome['all_running_after']} s (virtual), "
        f"{len(outcome['never_ran_again'])} never ran again"
    )


def run_demo(
    console: Console, *, seed: int = 7, history: int = 3000, workdir: Path, ha_work: bool = False
) -> int:
    """Run the demo; returns 0 when exactly the injected duplicates were archived."""
    # Imported here: the ledger (and cleanup, which uses it) pull in SQLAlchemy and Alembic.
    from cloudstack_simulator import Simulator
    from sidecar.ledger import Ledger
    from sidecar.ops.cleanup import run_cleanup
    from sidecar.ops.report import gather_plan

    started = time.monotonic()
    sim = Simulator(profile="4.19.2", seed=seed, hosts=6, vms_per_host=4)
    sim.seed_history(alerts=history, duplicate_ratio=0.3)
    crashed = sim.run_scenario("host-crash")
    ledger_url = f"sqlite:///{workdir / 'ledger.sqlite3'}"
    with sim.serve() as endpoint:
        console.print(Rule("cloudstack-sidecar demo"))
        console.print(
            f"Simulated CloudStack {sim.version} (affected by apache/cloudstack#10367) at "
            f"[bold]{escape(endpoint)}[/]; {history} historical alerts; host "
            f"[bold]{escape(str(crashed))}[/] just crashed with HA-enabled VMs on it."
        )
        ctx = Context(
            settings=Settings(ledger_url=ledger_url),
            cloudstack=CloudStackConfig(endpoint=endpoint, key=sim.key, secret=sim.secret),
        )
        before = [Alert.from_api(r) for r in sim.alerts_as_api()]
        console.print(_alert_table("Alert list before", before))

        console.print(Rule("report (dry run): what would be archived, and why"))
        plan, _ = asyncio.run(gather_plan(ctx))
        print_plan_tables(plan, console, max_rows=10)

        console.print(Rule("cleanup --apply: archive the duplicates, write-ahead in the ledger"))
        result = asyncio.run(run_cleanup(
            ctx, apply=True, families=None, since=None, until=None, max_actions=None,
            reporter=Reporter(console),
        ))
        totals = result.totals
        console.print(f"archived {totals['archived']}, already gone {totals['already_gone']}, "
                      f"failed {totals['failed']}, in {totals['passes']} pass(es)")

        console.print(Rule("the ledger"))
        ledger = Ledger(ledger_url)
        try:
            actions = ledger.actions()
            by_state = Counter(a.state for a in actions)
            table = Table(title="Ledger actions", title_justify="left")
            for col in ("alert", "state", "canonical", "reason"):
                table.add_column(col, overflow="fold")
            for a in actions[:8]:
                table.add_row(*map(escape, (a.alert_id, a.state, a.canonical, a.reason)))
            table.caption = ", ".join(f"{n} {s}" for s, n in sorted(by_state.items()))
            console.print(table)
            problems = ledger.verify()
        finally:
            ledger.close()

        after = [Alert.from_api(r) for r in sim.alerts_as_api()]
        console.print(_alert_table("Alert list after", after))
        # The truth of the alert demo, before --ha-work's failure adds alerts of its own.
        truth = set(sim.truth.duplicate_ids)
        if ha_work:
            _ha_work_section(console, sim)

    archived = {a.alert_id for a in actions if a.state == "done"}
    wrong = archived - truth
    missed = truth - archived
    elapsed = time.monotonic() - started
    ok = not wrong and not missed and not problems
    console.print(Rule("result"))
    console.print(
        f"{len(truth)} injected duplicates, {len(archived)} archived, {len(wrong)} wrongly "
        f"archived, {len(missed)} missed; ledger verify: "
        f"{'ok' if not problems else escape('; '.join(problems))}; {elapsed:.1f} s"
    )
    return 0 if ok else 1


def demo_command(
    seed: int = typer.Option(7, "--seed", help="Simulator seed."),
    history: int = typer.Option(3000, "--history", help="Historical alerts to seed."),
    ha_work: bool = typer.Option(
        False, "--ha-work", help="Also show the HA queue (op_ha_work) before and after."
    ),
) -> None:
    """Show duplicates found, archived, and the ledger, on the embedded simulator."""
    console = Console()
    with tempfile.TemporaryDirectory(prefix="sidecar-demo-") as tmp:
        code = run_demo(console, seed=seed, history=history, workdir=Path(tmp), ha_work=ha_work)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
