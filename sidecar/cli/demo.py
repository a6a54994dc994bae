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


def run_demo(console: Console, *, seed: int = 7, history: int = 3000, workdir: Path) -> int:
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

    archived = {a.alert_id for a in actions if a.state == "done"}
    truth = set(sim.truth.duplicate_ids)
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
) -> None:
    """Show duplicates found, archived, and the ledger, on the embedded simulator."""
    console = Console()
    with tempfile.TemporaryDirectory(prefix="sidecar-demo-") as tmp:
        code = run_demo(console, seed=seed, history=history, workdir=Path(tmp))
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
