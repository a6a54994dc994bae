"""``cloudstack-sidecar simulator``: run the simulator as a standalone server until stopped."""

from __future__ import annotations

import configparser
import errno
import logging
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import typer

from sidecar.support.errors import UserError

if TYPE_CHECKING:
    from cloudstack_simulator.core import Simulator

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def write_ini(path: Path, section: str, endpoint: str, key: str, secret: str) -> None:
    """Write (or update) a cloudstack.ini section with mode 0600.

    Other sections are kept; a section pointing at a non-loopback endpoint is never replaced
    (it holds someone's real credentials).
    """
    parser = configparser.ConfigParser(interpolation=None)
    if path.exists():
        try:
            parser.read(path, encoding="utf-8")
        except configparser.Error as exc:
            raise UserError(
                f"{path} is not a valid ini file ({exc}); pass another --write-ini"
            ) from None
        if parser.has_section(section):
            existing = parser.get(section, "endpoint", fallback="")
            host = urlsplit(existing).hostname if existing else None
            if existing and host not in LOOPBACK_HOSTS:
                raise UserError(
                    f"{path} [{section}] points at {existing}, not a simulator; refusing to "
                    "overwrite it: pass --write-ini with another file or --ini-section"
                )
    if not parser.has_section(section):
        parser.add_section(section)
    parser.set(section, "endpoint", endpoint)
    parser.set(section, "key", key)
    parser.set(section, "secret", secret)
    parser.set(section, "timeout", "30")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            fd = -1
            parser.write(handle)
    finally:
        if fd >= 0:
            os.close(fd)


def _configure_logging() -> None:
    logger = logging.getLogger("cloudstack_simulator")
    if not any(getattr(h, "_simulator", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        handler._simulator = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def simulator_command(
    port: int = typer.Option(8080, "--port", help="TCP port on loopback (0 = any free port)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Loopback address to listen on."),
    profile: str = typer.Option(
        "4.19.2",
        "--profile",
        help="Release to play: 4.19.2, 4.20.0 (defect), 4.20.1, 4.22 (fixed).",
    ),
    scenario: list[str] = typer.Option(
        [],
        "--scenario",
        help="host-crash, disconnect-flap, mass-failure or maintenance (repeatable).",
    ),
    scenario_host: str | None = typer.Option(
        None, "--scenario-host", help="Host name for host-crash/disconnect-flap/maintenance."
    ),
    alerts: int = typer.Option(0, "--alerts", min=0, help="Historical alerts to seed."),
    duplicate_ratio: float = typer.Option(
        0.3,
        "--duplicate-ratio",
        min=0.0,
        max=0.95,
        help="Share of HA-family history that is duplicates.",
    ),
    failures_per_hour: float | None = typer.Option(
        None,
        "--failures-per-hour",
        min=0.001,
        help="Seed a busy cloud's history: host failure events per hour over the whole cloud "
        "(racks failing at once, HA workers queued, VMs moving; default: a quiet history).",
    ),
    rack_share: float | None = typer.Option(
        None,
        "--rack-share",
        min=0.0,
        max=1.0,
        help="Busy history: share of events that take a whole pod down (default 0.02).",
    ),
    parallel_spread: float | None = typer.Option(
        None,
        "--parallel-spread",
        min=1.0,
        max=300.0,
        help="Busy history: parallel restart copies come up to this many seconds later "
        "(default 40).",
    ),
    expunged_share: float | None = typer.Option(
        None,
        "--expunged-share",
        min=0.0,
        max=1.0,
        help="Busy history: share of HA-restarted VMs expunged afterwards (default 0.05).",
    ),
    second_failure_share: float | None = typer.Option(
        None,
        "--second-failure-share",
        min=0.0,
        max=1.0,
        help="Busy history: share of events that strike a host HA just restarted VMs on "
        "(default 0.05).",
    ),
    seed: int = typer.Option(7, "--seed", help="Seed for inventory, history and scenarios."),
    hosts: int = typer.Option(8, "--hosts", min=1, help="Hypervisor hosts."),
    vms_per_host: int = typer.Option(6, "--vms-per-host", min=0, help="User VMs per host."),
    hosts_per_pod: int = typer.Option(4, "--hosts-per-pod", min=1, help="Hosts per pod (rack)."),
    ping_interval: float = typer.Option(
        60.0, "--ping-interval", min=1.0, help="ping.interval in seconds (served and played)."
    ),
    ping_timeout: float = typer.Option(
        2.5, "--ping-timeout", min=1.01, help="ping.timeout, a multiple of ping.interval."
    ),
    key: str | None = typer.Option(None, "--key", help="API key to accept (default: generated)."),
    secret: str | None = typer.Option(None, "--secret", help="Secret key (default: generated)."),
    timezone: str = typer.Option("+0530", "--timezone", help="Management server time zone."),
    write_ini_path: Path = typer.Option(
        Path("cloudstack.ini"), "--write-ini", help="cloudstack.ini to write the credentials to."
    ),
    ini_section: str = typer.Option(
        "cloudstack", "--ini-section", help="Section (cs region) to write."
    ),
    latency_ms: float = typer.Option(
        0.0, "--latency-ms", min=0.0, help="Added latency per request."
    ),
    speed: float = typer.Option(
        1.0,
        "--speed",
        min=0.01,
        max=3600.0,
        help="Virtual seconds per real second (>1 runs the server clock ahead of yours).",
    ),
    send_date: bool = typer.Option(
        False,
        "--send-date",
        help="Add a Date header, as a proxy in front adds (a plain management server sends none).",
    ),
    stats_file: Path | None = typer.Option(
        None,
        "--stats-file",
        help="On SIGTERM/SIGINT write the request stats and the truth score here as JSON "
        "(also served live at GET /_sim/stats).",
    ),
) -> None:
    """Run a simulated CloudStack API on loopback until Ctrl-C / SIGTERM."""
    from cloudstack_simulator import SCENARIOS, Simulator  # only when a simulator runs

    for name in scenario:
        if name not in SCENARIOS:
            raise UserError(f"unknown scenario {name!r}: choose one of {', '.join(SCENARIOS)}")
    if host not in LOOPBACK_HOSTS:
        raise UserError(
            f"--host {host} is not a loopback address: the simulator only serves 127.0.0.1 / ::1"
        )
    if (key is None) != (secret is None):
        raise UserError("--key and --secret go together: pass both or neither")
    # Only what was given: the others keep BusyCloud's defaults.
    busy: dict[str, Any] = {
        name: value
        for name, value in (
            ("rack_share", rack_share),
            ("parallel_spread", parallel_spread),
            ("expunged_share", expunged_share),
            ("second_failure_share", second_failure_share),
        )
        if value is not None
    }
    if busy and failures_per_hour is None:
        raise UserError(f"--{next(iter(busy)).replace('_', '-')} needs --failures-per-hour")
    try:
        sim = Simulator(
            profile=profile,
            seed=seed,
            tz=timezone,
            hosts=hosts,
            vms_per_host=vms_per_host,
            hosts_per_pod=hosts_per_pod,
            start=datetime.now(UTC).replace(microsecond=0),
            key=key,
            secret=secret,
            send_date=send_date,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    _configure_logging()
    if alerts:
        typer.echo(f"seeding {alerts} historical alerts ...")
        try:
            report = sim.seed_history(
                alerts=alerts,
                duplicate_ratio=duplicate_ratio,
                failures_per_hour=failures_per_hour,
                **busy,
            )
        except ValueError as exc:
            raise UserError(str(exc)) from None
        typer.echo(
            f"history: {report.alerts} alerts ({report.live} live), {report.duplicates} duplicates "
            f"in {report.incidents} incidents, seeded in {report.seconds:.1f} s"
        )
        if failures_per_hour is not None:
            typer.echo(
                f"busy cloud: {report.span_hours:.0f} h at {failures_per_hour:g} failures/h on "
                f"{hosts} hosts, {report.second_restarts} genuine second restarts, "
                f"{report.expunged} VMs expunged"
            )
    if latency_ms:
        sim.faults.add("latency", ms=latency_ms)
    try:
        endpoint = sim.start(host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} is already in use: pick another with --port") from None
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    try:
        write_ini(write_ini_path, ini_section, endpoint, sim.key, sim.secret)
        typer.echo(f"CloudStack {sim.version} simulator ({sim.profile.name} profile) on {endpoint}")
        typer.echo(f"credentials: {write_ini_path} [{ini_section}] (mode 0600)")
        for name in scenario:
            options = {}
            if scenario_host and name != "mass-failure":
                options["host"] = scenario_host
            try:
                run = sim.start_scenario(name, **options)
            except ValueError as exc:
                raise UserError(str(exc)) from None
            typer.echo(f"scenario {name} started on {run}")
        _run_until_signal(sim, speed)
    finally:
        sim.stop()
    if stats_file is not None:
        write_stats(stats_file, sim)
        typer.echo(f"stats written to {stats_file}")
    typer.echo("simulator stopped")


def write_stats(path: Path, sim: Simulator) -> None:
    """Write ``export_stats`` (with the id lists) as JSON, atomically."""
    import json

    from cloudstack_simulator.server import export_stats  # only when a simulator runs

    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(export_stats(sim, ids=True)), encoding="utf-8")
    tmp.replace(path)


def _run_until_signal(sim: Simulator, speed: float) -> None:
    """Advance the virtual clock with real time until SIGINT or SIGTERM."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        last = time.monotonic()
        while not stop.wait(0.2):
            now = time.monotonic()
            sim.clock.advance((now - last) * speed)
            last = now
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def register(app: typer.Typer) -> None:
    """Add the ``simulator`` command."""
    app.command("simulator")(simulator_command)
