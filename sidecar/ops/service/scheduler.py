"""Running the service: start-up, cycles on an APScheduler job, and a clean stop on a signal.

The watchdog is pinged only after a cycle completes, so a hung cycle trips it. SIGTERM/SIGINT
reach a watcher thread (never scheduler code inside a signal handler), which sends STOPPING=1,
lets the running cycle finish and stops the scheduler.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_SCHEDULER_STARTED,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.base import SchedulerNotRunningError
from apscheduler.schedulers.blocking import BlockingScheduler

from sidecar import __version__
from sidecar.ops.context import Context
from sidecar.ops.service.cycle import CycleResult, Service
from sidecar.ops.service.metrics import Metrics
from sidecar.ops.service.notify import Notifier
from sidecar.support.errors import UserError

log = logging.getLogger(__name__)


def _ignore(_signum: int, _frame: Any) -> None:
    """Python-level handler: the wake-up fd carries the signal to the watcher thread."""


class SignalWatcher:
    """Turns SIGTERM/SIGINT into a call of ``on_signal`` on a thread of its own.

    A signal handler runs between two bytecodes of the main thread, possibly while it holds a
    lock the scheduler or logging needs; stopping the scheduler from there can deadlock. The
    C-level handler writes the signal number to a socket (``signal.set_wakeup_fd``) and this
    thread does the work.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, on_signal: Callable[[int], None]) -> None:
        self._on_signal = on_signal
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)
        self._old_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._old = {s: signal.signal(s, _ignore) for s in self.SIGNALS}
        self._thread = threading.Thread(target=self._run, name="signal-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        wanted = {int(s) for s in self.SIGNALS}
        while True:
            try:
                data = self._reader.recv(64)
            except OSError:
                return
            if not data:
                return
            for number in data:
                if number in wanted:
                    self._on_signal(number)

    def close(self) -> None:
        """Restore the previous handlers and stop the thread."""
        signal.set_wakeup_fd(self._old_fd)
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._writer.close()
        self._thread.join(timeout=5)
        self._reader.close()


def _tell_status(notifier: Notifier, result: CycleResult) -> None:
    """Show a cycle's outcome in ``systemctl status``."""
    notifier.status(("ok: " if result.ok else "failed: ") + result.message)


def serve(service: Service, *, notifier: Notifier) -> int:
    """Run cycles on a BlockingScheduler until SIGTERM/SIGINT; returns the exit code."""
    settings = service.settings
    scheduler = BlockingScheduler(
        executors={"default": ThreadPoolExecutor(max_workers=2)},
        job_defaults={"coalesce": True, "max_instances": 1,
                      "misfire_grace_time": int(settings.misfire_grace_time)},
        timezone="UTC",
    )

    def cycle_job() -> None:
        if service.stopping.is_set():
            return
        _tell_status(notifier, service.run_cycle())
        # Ping only after a cycle completes (ok or not): a hung cycle must trip the watchdog.
        notifier.watchdog()

    scheduler.add_job(
        cycle_job, "interval", seconds=settings.poll_interval,
        jitter=settings.poll_interval * settings.poll_jitter, id="cycle",
        next_run_time=datetime.now(UTC), replace_existing=True,
    )
    scheduler.add_job(service.prune, "interval", hours=6, id="prune", replace_existing=True)

    started = threading.Event()

    def on_event(event: Any) -> None:
        if event.code == EVENT_SCHEDULER_STARTED:
            started.set()
            return
        log.warning("scheduler event %s for job %s", event.code, getattr(event, "job_id", "?"))

    scheduler.add_listener(
        on_event,
        EVENT_SCHEDULER_STARTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES,
    )

    def on_signal(signum: int) -> None:
        if service.stopping.is_set():
            return
        service.stopping.set()
        log.info("received %s; finishing the running cycle", signal.Signals(signum).name)
        notifier.stopping("stopping: finishing the running cycle")
        started.wait()
        try:
            # Joins the running cycle (it stops between archive batches and is bounded by
            # its deadline), then start() returns on the main thread.
            scheduler.shutdown(wait=True)
        except SchedulerNotRunningError:
            pass

    watcher = SignalWatcher(on_signal)
    # Everything loaded so far (modules, settings, the client) lives as long as the process:
    # keep it out of the cyclic GC's full collections, which otherwise land in a quiet cycle
    # every few dozen cycles and double its CPU.
    gc.collect()
    gc.freeze()
    try:
        scheduler.start()
    finally:
        watcher.close()
    log.info("stopped")
    return 0


def run_service(ctx: Context, *, once: bool) -> int:
    """Start the service (metrics, ledger, CloudStack check, READY=1), then run one cycle or
    serve until stopped; returns the exit code (a failed ``once`` cycle raises UserError)."""
    settings = ctx.settings
    notifier = Notifier()
    metrics = Metrics()
    server = metrics.start_server(settings.metrics_address) if settings.metrics_address else None
    service: Service | None = None
    try:
        service = Service(ctx, dry_run=settings.dry_run, metrics=metrics)  # opens the ledger
        version = asyncio.run(service.verify())
        log.info("cloudstack-sidecar %s started: CloudStack %s at %s, ledger %s, %s%s",
                 __version__, version, ctx.cloudstack.endpoint, service.ledger.display_url,
                 "dry run" if settings.dry_run else "acting",
                 f", metrics on {server.url}" if server is not None else "")
        notifier.ready(f"CloudStack {version}; first cycle starting")
        if not once:
            return serve(service, notifier=notifier)
        result = service.run_cycle()
        _tell_status(notifier, result)
        if not result.ok:
            raise UserError(result.message, exit_code=result.exit_code or 1)
        return 0
    finally:
        if service is not None:
            service.close()
        if server is not None:
            server.shutdown()
