"""``cloudstack-sidecar ledger show|export|verify|migrate``: the operator's view of the ledger."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sidecar.support.errors import UserError
from sidecar.support.settings import load_settings

if TYPE_CHECKING:
    # The ledger's modules pull in SQLAlchemy and Alembic: each command imports them when it
    # opens the ledger, so that registering these commands (and ``--help``) stays cheap.
    from sidecar.ledger.store import Ledger

ledger_app = typer.Typer(
    name="ledger",
    help="Audit what the sidecar did: show, export, verify and migrate the ledger.",
    no_args_is_help=True,
)

#: What ``show --kind`` can select, in display order.
KINDS = ("run", "archive", "merge", "ha", "host", "alert")
SHOW_FORMATS = ("table", "json")
EXPORT_FORMATS = ("jsonl", "csv")

#: Exit code of ``ledger verify`` when an invariant fails.
EXIT_INVARIANT_FAILED = 1

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")

LEDGER_URL_OPTION = typer.Option(
    None,
    "--ledger-url",
    help="Ledger database URL (default: SIDECAR_LEDGER_URL, the settings file, or SQLite "
    "in the state directory).",
)
CONFIG_OPTION = typer.Option(None, "--config", help="Sidecar TOML settings file.")


def register(app: typer.Typer) -> None:
    """Add the ``ledger`` command group."""
    app.add_typer(ledger_app, name="ledger")


def parse_since(value: str | None, now: datetime) -> datetime | None:
    """``30m``/``12h``/``2d``/``1w`` before ``now``, or an ISO date (UTC unless it says)."""
    if value is None or not value.strip():
        return None
    match = _DURATION.match(value)
    if match:
        amount, unit = match.groups()
        return now - timedelta(**{_UNITS[unit]: float(amount)})
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UserError(
            f"--since {value!r} is neither a duration (30m, 12h, 2d, 1w) nor an ISO date "
            f"(2026-01-31 or 2026-01-31T12:00:00Z): fix it"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def open_ledger(ledger_url: str | None, config: Path | None, *, create: bool = False) -> Ledger:
    """Open (and migrate) the ledger named by the flag, else by the settings.

    With the flag the settings are not read (auditing a ledger needs no config file), so the
    statement timeout is its default.
    """
    # SQLAlchemy and Alembic: only when a ledger command runs, not for --help
    from sidecar.ledger import Ledger, default_holder

    holder = f"cli:{default_holder()}"
    if ledger_url:
        return Ledger(ledger_url, holder=holder, create=create)
    settings = load_settings(config)
    return Ledger(settings.resolved_ledger_url(), holder=holder, create=create,
                  statement_timeout=settings.ledger_statement_timeout)


def _plain(value: Any) -> Any:
    """JSON-ready value: datetimes as ISO 8601 UTC, dataclasses as dicts."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _when(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _short(text: str, width: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _gather(
    ledger: Ledger, kinds: Iterable[str], since: datetime | None, limit: int
) -> dict[str, list[Any]]:
    from sidecar.ledger.schema import HA, MERGE  # SQLModel: not for --help

    data: dict[str, list[Any]] = {}
    for kind in kinds:
        if kind == "run":
            data["runs"] = ledger.runs(since=since, limit=limit)
        elif kind == "archive":
            data["actions"] = ledger.actions(since=since, limit=limit)
        elif kind == "merge":
            data["merge_groups"] = ledger.decisions(kind=MERGE, since=since, limit=limit)
        elif kind == "ha":
            data["ha_incidents"] = ledger.decisions(kind=HA, since=since, limit=limit)
        elif kind == "host":
            data["host_transitions"] = ledger.host_transitions(since=since, limit=limit)
        elif kind == "alert":
            data["alerts_seen"] = ledger.alert_sightings(since=since, limit=limit)
    return data


def _row(table: Table, *cells: str) -> None:
    """Add a row of ledger data, shown literally (a subject's ``[…]`` is not rich markup)."""
    table.add_row(*map(escape, cells))


def _tables(data: Mapping[str, list[Any]]) -> list[Table]:
    tables: list[Table] = []
    if "runs" in data:
        t = Table(title="Runs")
        for col in ("id", "kind", "mode", "started", "ended", "outcome", "counts", "holder"):
            t.add_column(col, overflow="fold")
        for r in data["runs"]:
            counts = ", ".join(f"{k}={v}" for k, v in sorted(r.counts.items()) if v)
            _row(
                t,
                str(r.id),
                r.kind,
                r.mode,
                _when(r.started_at),
                _when(r.finished_at) or "(unfinished)",
                r.outcome,
                counts,
                r.holder,
            )
        tables.append(t)
    if "actions" in data:
        t = Table(title="Archive actions")
        for col in ("alert", "state", "group", "canonical", "tries", "updated", "error"):
            t.add_column(col, overflow="fold")
        for a in data["actions"]:
            _row(
                t,
                a.alert_id,
                a.state,
                a.group_id,
                a.canonical,
                str(a.attempts),
                _when(a.updated_at),
                _short(a.error, 40),
            )
        tables.append(t)
    if "merge_groups" in data:
        t = Table(title="Merge groups")
        for col in ("group", "object", "canonical", "merged", "reason", "updated"):
            t.add_column(col, overflow="fold")
        for d in data["merge_groups"]:
            _row(
                t,
                d.decision_id,
                d.subject,
                d.canonical,
                str(len(d.members)),
                _short(d.reason, 50),
                _when(d.updated_at),
            )
        tables.append(t)
    if "ha_incidents" in data:
        t = Table(title="HA incidents")
        for col in ("incident", "host", "rounds", "duplicate rounds", "alerts", "updated"):
            t.add_column(col, overflow="fold")
        for d in data["ha_incidents"]:
            _row(
                t,
                d.decision_id,
                d.subject,
                str(d.data.get("rounds", "")),
                str(d.data.get("duplicate_rounds", "")),
                str(len(d.members)),
                _when(d.updated_at),
            )
        tables.append(t)
    if "host_transitions" in data:
        t = Table(title="Host state transitions")
        for col in ("at", "host", "from", "to", "hastate"):
            t.add_column(col, overflow="fold")
        for h in data["host_transitions"]:
            _row(
                t,
                _when(h["observed_at"]),
                h["host_name"] or h["host_id"],
                h["previous_state"] or "(first seen)",
                h["state"],
                h["hastate"],
            )
        tables.append(t)
    if "alerts_seen" in data:
        t = Table(title="Alerts seen")
        for col in ("first seen", "alert", "name", "sent", "subject"):
            t.add_column(col, overflow="fold")
        for s in data["alerts_seen"]:
            _row(t, _when(s.first_seen), s.alert_id, s.name, _when(s.sent), _short(s.subject))
        tables.append(t)
    return tables


@ledger_app.command("show")
def show_command(
    since: str | None = typer.Option(
        None, "--since", help="Only entries newer than this: 30m, 12h, 2d, 1w or an ISO date."
    ),
    kind: list[str] = typer.Option(
        [], "--kind", help=f"Only these kinds (repeatable): {', '.join(KINDS)}. Default: all."
    ),
    fmt: str = typer.Option("table", "--format", "-f", help="table or json."),
    limit: int = typer.Option(50, "--limit", min=1, help="Newest entries per kind."),
    ledger_url: str | None = LEDGER_URL_OPTION,
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Show recent runs, archive actions, merge groups, HA incidents and host transitions."""
    if fmt not in SHOW_FORMATS:
        raise UserError(f"unknown format {fmt!r}: choose one of {', '.join(SHOW_FORMATS)}")
    unknown = [k for k in kind if k not in KINDS]
    if unknown:
        raise UserError(f"unknown kind {unknown[0]!r}: choose from {', '.join(KINDS)}")
    cutoff = parse_since(since, datetime.now(UTC))
    kinds = [k for k in KINDS if k in kind] if kind else list(KINDS)
    with open_ledger(ledger_url, config) as ledger:
        lease = ledger.lease()
        data = _gather(ledger, kinds, cutoff, limit)
    if fmt == "json":
        document = {"lease": _plain(lease), **{k: _plain(v) for k, v in data.items()}}
        typer.echo(json.dumps(document, indent=2, sort_keys=False))
        return
    console = Console(soft_wrap=False)
    if lease is not None:
        status = "valid" if lease.valid_at(datetime.now(UTC)) else "expired"
        console.print(
            f"Lease: {escape(lease.holder)} (token {lease.token}), {status}, "
            f"expires {_when(lease.expires_at)}"
        )
    for table in _tables(data):
        if table.row_count:
            console.print(table)
        else:
            console.print(f"{table.title}: none")


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(_plain(value), separators=(",", ":"), sort_keys=True)
    return str(value)


@ledger_app.command("export")
def export_command(
    fmt: str = typer.Option("jsonl", "--format", "-f", help="jsonl or csv."),
    ledger_url: str | None = LEDGER_URL_OPTION,
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Write every row of every table to stdout (paged, streaming), one record per line.

    Each record names its table in the ``record`` field; CSV has one column per field of any
    table (empty when not applicable) and JSON text in the JSON-valued cells.
    """
    if fmt not in EXPORT_FORMATS:
        raise UserError(f"unknown format {fmt!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    from sidecar.ledger.schema import TABLES  # SQLModel: not for --help

    out = sys.stdout
    with open_ledger(ledger_url, config) as ledger:
        if fmt == "jsonl":
            for name, row in ledger.export_rows():
                out.write(json.dumps({"record": name, **_plain(row)}, sort_keys=False) + "\n")
            return
        columns = ["record", *dict.fromkeys(c.name for t in TABLES for c in t.columns)]
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for name, row in ledger.export_rows():
            full = {"record": name, **row}
            writer.writerow([_csv_cell(full.get(c)) for c in columns])


@ledger_app.command("verify")
def verify_command(
    ledger_url: str | None = LEDGER_URL_OPTION,
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Check the invariants (every action decided, no canonical archived, no intent unresolved).

    Exits 1 when one fails.
    """
    with open_ledger(ledger_url, config) as ledger:
        problems = ledger.verify()
        counts = ledger.counts()
    if problems:
        typer.echo(f"ledger verify: {len(problems)} problem(s)")
        for line in problems:
            typer.echo(f"  - {line}")
        raise typer.Exit(EXIT_INVARIANT_FAILED)
    typer.echo(
        f"ledger OK: {counts['runs']} runs, {counts['actions']} actions, "
        f"{counts['decisions']} decisions; every invariant holds"
    )


@ledger_app.command("migrate")
def migrate_command(
    ledger_url: str | None = LEDGER_URL_OPTION,
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Create the ledger or upgrade its schema to this version's newest revision."""
    with open_ledger(ledger_url, config, create=True) as ledger:
        before = ledger.schema_before
        after = ledger.revision()
        where = ledger.display_url
    if before == after:
        typer.echo(f"ledger at {where} is up to date (schema revision {after})")
    else:
        typer.echo(f"ledger at {where} migrated from {before or 'empty'} to revision {after}")
