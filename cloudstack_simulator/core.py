"""The embedded simulator: wires state, clock, truth, profile, scenarios and the HTTP server."""

from __future__ import annotations

import random
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from datetime import datetime, tzinfo
from typing import Any

from cloudstack_simulator.alert_table import ARCHIVED, DELETED
from cloudstack_simulator.alerting import archive_out_of_band, emit_alert, purge
from cloudstack_simulator.api import Call
from cloudstack_simulator.api.items import alert_item, host_item, vm_item
from cloudstack_simulator.auth import add_key, authenticate, check_method
from cloudstack_simulator.busy import BusyCloud, seed_busy
from cloudstack_simulator.clock import VirtualClock, parse_timezone
from cloudstack_simulator.cloud_db import CloudDb
from cloudstack_simulator.context import Context
from cloudstack_simulator.detection import PING_INTERVAL, PING_TIMEOUT, Ping, set_ping
from cloudstack_simulator.faults import FaultRegistry
from cloudstack_simulator.haqueue import HaQueue
from cloudstack_simulator.hooks import run_hooks
from cloudstack_simulator.inventory import Layout, build
from cloudstack_simulator.ordered import alert_key, key_row
from cloudstack_simulator.profiles import Profile, get_profile
from cloudstack_simulator.scenarios import ScenarioEngine
from cloudstack_simulator.seed import SeedReport, seed_history
from cloudstack_simulator.server import SimulatorHTTPServer
from cloudstack_simulator.state import Account, ApiKey, Host, State
from cloudstack_simulator.stats import Stats
from cloudstack_simulator.steps import ScenarioRun
from cloudstack_simulator.truth import Truth
from sidecar.model.constants import API_PATH

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


class Simulator:
    """A CloudStack management server in a box (see the package docstring)."""

    def __init__(
        self,
        profile: str = "4.19.2",
        seed: int = 7,
        tz: str = "+0530",
        hosts: int = 8,
        vms_per_host: int = 6,
        *,
        hosts_per_pod: int = 4,
        non_ha_per_host: int = 1,
        host_ha: bool = True,
        system_vms: bool = True,
        start: datetime | None = None,
        tie_order: str = "shuffle",
        key: str | None = None,
        secret: str | None = None,
        zone_name: str = "zone-a",
        enforce_post: bool = False,
        send_date: bool = False,
        ping_interval: float = PING_INTERVAL,
        ping_timeout: float = PING_TIMEOUT,
        cloud_db_url: str | None = None,
        cloud_db_path: str | None = None,
    ) -> None:
        if tie_order not in ("shuffle", "stable"):
            raise ValueError("tie_order must be 'shuffle' or 'stable'")
        if hosts < 1:
            raise ValueError("a simulator needs at least one host")
        release = get_profile(profile)
        if enforce_post and not release.post_enforcement:
            raise ValueError(
                f"enforce.post.requests.and.timestamps exists from 4.21.0, not in {profile}"
            )
        #: ``enforce.post.requests.and.timestamps`` (4.21+): POST for state-changing commands,
        #: signature version 3 required, ``expires`` at most 15 minutes ahead.
        self.enforce_post = enforce_post
        #: Answer with a ``Date`` header (virtual time), as a proxy in front would add; a plain
        #: management server sends none (Jetty's ``setSendDateHeader(false)``).
        self.send_date = send_date
        lock = threading.RLock()
        self.context = Context(
            state=State(uuid_rng=random.Random(f"uuid:{seed}")),
            lock=lock,
            clock=VirtualClock(start, lock),
            truth=Truth(),
            profile=release,
            tz=parse_timezone(tz),
            seed=seed,
            stats=Stats(),
            faults=FaultRegistry(seed),
            tie_order=tie_order,
        )
        self.scenarios = ScenarioEngine(self.context)
        self.layout = Layout(
            hosts, vms_per_host, hosts_per_pod, non_ha_per_host, host_ha, system_vms, zone_name
        )
        build(self.context.state, self.context.clock.time(), self.layout)
        # Served by listConfigurations and played by host failures (detection.py).
        set_ping(self.context.state, Ping(ping_interval, ping_timeout))
        self.key, self.secret = self.create_key(None, key=key, secret=secret)
        self._server: SimulatorHTTPServer | None = None
        # The cloud database is created on first use, so a simulator that never reads it
        # (the demo, the seeded benches) pays nothing and its outputs do not change.
        self._cloud_db_args = (cloud_db_url, cloud_db_path)
        self._cloud_db: CloudDb | None = None
        #: HA workers playing ``op_ha_work`` from the cloud database (``fail_hosts``).
        self.ha_queue = HaQueue(self.context, self._open_cloud_db)
        self._thread: threading.Thread | None = None
        self.endpoint: str | None = None

    # -- the cloud database (op_ha_work, host, vm_instance) ------------------------------------

    def _open_cloud_db(self) -> CloudDb:
        """The database, created (and filled from memory) the first time."""
        with self.lock:
            if self._cloud_db is None:
                url, path = self._cloud_db_args
                self._cloud_db = CloudDb(url, reason=self.profile.ha_reason, path=path)
                self._cloud_db.sync(self.state)
                self.truth.ha_rows = self._cloud_db.ha_rows
            return self._cloud_db

    @property
    def cloud_db(self) -> CloudDb:
        """The ``cloud`` database with this profile's DDL, synced from memory on each access."""
        with self.lock:
            db = self._open_cloud_db()
            db.sync(self.state)
            return db

    @property
    def cloud_db_url(self) -> str:
        """An SQLAlchemy-style URL of the cloud database (``sqlite:///…`` by default)."""
        return self.cloud_db.url

    def restart_management_server(self) -> int:
        """A management-server restart: 4.20.1+ marks untaken pending rows Investigating."""
        with self.lock:
            db = self.cloud_db
            if not self.profile.ha_reason:  # markPendingWorksAsInvestigating is 4.20.1+ (#10167)
                return 0
            changed = db.mark_pending_investigating()
            self.ha_queue.refresh()
            for work in self.state.ha_work:
                # The pre-planned rows live in memory: mark them too, so the next sync agrees.
                if work.id not in db.owned and work.taken is None and work.step != "Done":
                    work.step = "Investigating" if work.step != "Cancelled" else work.step
            return changed

    def fail_hosts(self, refs: list[str | int], rounds: int = 2, gap: float = 5.0) -> list[Any]:
        """Hosts die now and their HA runs through the database queue (see ``haqueue``)."""
        with self.lock:
            hosts = [self.host(r) for r in refs]
            return self.ha_queue.fail_hosts(hosts, rounds, gap)

    def close_cloud_db(self) -> None:
        """Close the cloud database connection."""
        if self._cloud_db is not None:
            self._cloud_db.close()
            self._cloud_db = None

    # -- the shared parts (one Context; the handlers get it, never the Simulator) --------------

    @property
    def profile(self) -> Profile:
        """The release played; assignable (a test may play another version mid-run)."""
        return self.context.profile

    @profile.setter
    def profile(self, value: Profile) -> None:
        self.context.profile = value

    @property
    def state(self) -> State:
        """Everything the API serves (guarded by :attr:`lock`)."""
        return self.context.state

    @property
    def clock(self) -> VirtualClock:
        """Virtual time; advance it to play scenarios."""
        return self.context.clock

    @property
    def truth(self) -> Truth:
        """Which emitted alerts are duplicates."""
        return self.context.truth

    @property
    def stats(self) -> Stats:
        """What the server measured."""
        return self.context.stats

    @property
    def faults(self) -> FaultRegistry:
        """Faults to inject (``sim.faults.add(...)``)."""
        return self.context.faults

    @property
    def lock(self) -> threading.RLock:
        """The lock every handler holds while it reads or writes :attr:`state`."""
        return self.context.lock

    @property
    def seed(self) -> int:
        """The seed of inventory, history, scenarios and faults."""
        return self.context.seed

    @property
    def tz(self) -> tzinfo:
        """The management server's time zone."""
        return self.context.tz

    @property
    def tie_order(self) -> str:
        """``shuffle`` (MySQL-like order of tied alerts) or ``stable``."""
        return self.context.tie_order

    @property
    def version(self) -> str:
        """``cloudstackversion`` of the profile, e.g. ``4.19.2.0``."""
        return self.profile.version

    # -- identity ------------------------------------------------------------------------------

    def create_key(
        self,
        role: set[str] | frozenset[str] | None = None,
        *,
        key: str | None = None,
        secret: str | None = None,
        account: str = "admin",
    ) -> tuple[str, str]:
        """A new API key pair; ``role`` = the APIs it may call (None = every API)."""
        return add_key(self.context, role, key=key, secret=secret, account=account)

    def rotate_key(self) -> tuple[str, str]:
        """Replace the main key pair (``registerUserKeys``): the old one gets 401 from now on."""
        with self.lock:
            self.state.keys.pop(self.key, None)
            self.key, self.secret = self.create_key(None)
        return self.key, self.secret

    def disable_key(self, key: str) -> None:
        """Disable a user's key (its requests get 401)."""
        with self.lock:
            self.state.keys[key].enabled = False

    # -- what the server calls per request (tests may replace these on an instance) -----------

    def check_method(self, command: str | None, method: str) -> None:
        """4.21+ with enforcement on: a state-changing command sent by GET gets 400."""
        check_method(command, method, enforce_post=self.enforce_post)

    def authenticate(self, params: dict[str, str]) -> tuple[ApiKey, Account]:
        """``ApiServer.verifyRequest``, in upstream's order of checks."""
        return authenticate(self.context, params, enforce_post=self.enforce_post)

    def run_hooks(self, call: Call) -> None:
        """Apply hook faults (another admin archiving, purges, new alerts) to this call."""
        run_hooks(self.context, call)

    # -- alerts --------------------------------------------------------------------------------

    def emit_alert(
        self,
        name: str,
        subject: str,
        *,
        body: str | None = None,
        host: str | int | None = None,
    ) -> str:
        """Store an alert now (outside any scenario); returns its uuid ('' if suppressed)."""
        return emit_alert(self.context, name, subject, body=body, host=host)

    def archive_out_of_band(self, uuids: list[str]) -> list[str]:
        """Archive alerts as another admin would (counted in ``stats.archive_count``)."""
        return self._each_alert(uuids, archive_out_of_band)

    def delete_alerts(self, uuids: list[str]) -> list[str]:
        """Hard-delete alerts (a purge or another admin)."""
        return self._each_alert(uuids, purge)

    def _each_alert(self, uuids: list[str], act: Callable[[Context, int], bool]) -> list[str]:
        """The uuids for which ``act(context, row)`` returned True."""
        done = []
        with self.lock:
            for uuid in uuids:
                row = self.state.alerts.find_uuid(uuid)
                if row is not None and act(self.context, row):
                    done.append(uuid)
        return done

    def archive_events(self, uuids: list[str]) -> list[str]:
        """Archive events as ``archiveEvents`` by another admin would; returns those archived."""
        wanted = set(uuids)
        with self.lock:
            hit = [e for e in self.state.events if e.uuid in wanted and not e.archived]
            for event in hit:
                event.archived = True
        return [e.uuid for e in hit]

    def is_archived(self, uuid: str) -> bool:
        """True if the alert exists and is archived."""
        with self.lock:
            row = self.state.alerts.find_uuid(uuid)
            return row is not None and self.state.alerts.flags[row - 1] == ARCHIVED

    # -- views for pure tests ------------------------------------------------------------------

    def alerts_as_api(self, include_archived: bool = False) -> list[dict[str, Any]]:
        """listAlerts-shaped items, ``last_sent DESC, id DESC`` (archived ones optional)."""
        with self.lock:
            table = self.state.alerts
            if include_archived:
                keys = sorted(
                    alert_key(table.last_sent[i], i + 1)
                    for i in range(len(table))
                    if table.flags[i] != DELETED
                )
            else:
                keys = list(table.live)
            return [alert_item(self.context, key_row(k)) for k in keys]

    def hosts_as_api(self, details: str = "all") -> list[dict[str, Any]]:
        """listHosts items of every listed host (id order)."""
        with self.lock:
            return [
                host_item(self.context, h, details.split(","))
                for h in sorted(self.state.hosts.values(), key=lambda h: h.id)
                if h.removed is None
            ]

    def vms_as_api(self, details: str = "all") -> list[dict[str, Any]]:
        """listVirtualMachines items of every user VM (as with ``listall=true``)."""
        with self.lock:
            return [
                vm_item(self.context, v, details.split(","))
                for v in sorted(self.state.vms.values(), key=lambda v: v.id)
                if v.vm_type == "User" and v.removed is None
            ]

    def ha_work(self, *, failure: int | None = None) -> list[dict[str, Any]]:
        """``op_ha_work`` rows (optionally of one failure), with upstream's columns."""
        with self.lock:
            if self._cloud_db is not None:
                self.ha_queue.refresh()  # another process may have cancelled rows
            return [
                w.as_row() for w in self.state.ha_work if failure is None or w.failure_id == failure
            ]

    def host(self, ref: str | int) -> Host:
        """A host by db id, uuid or name."""
        with self.lock:
            found = self.state.host_by(ref)
        if found is None:
            raise KeyError(ref)
        return found

    # -- scenarios and history -----------------------------------------------------------------

    def start_scenario(self, name: str, **options: Any) -> ScenarioRun:
        """Start a scenario now; advance ``sim.clock`` to play it."""
        return self.scenarios.start(name, **options)

    def run_scenario(self, name: str, **options: Any) -> ScenarioRun:
        """Start a scenario and advance the clock until every step has run."""
        run = self.start_scenario(name, **options)
        while not run.done:
            due = self.clock.next_due()
            if due is None:
                break
            self.clock.advance_to(due)
        return run

    def seed_history(
        self,
        alerts: int,
        duplicate_ratio: float = 0.3,
        months: int = 6,
        *,
        failures_per_hour: float | None = None,
        **options: Any,
    ) -> SeedReport:
        """Build a realistic alert history ending two hours before now (see ``seed.py``).

        ``failures_per_hour`` makes it a busy cloud's (``busy.py``; ``months`` then has no
        say: the failures take the time they need): ``options`` may then also hold the other
        fields of :class:`~cloudstack_simulator.busy.BusyCloud` (``rack_share``,
        ``parallel_spread``, ``expunged_share``, ``second_failure_share``).
        """
        busy_fields = {f.name for f in fields(BusyCloud)}
        busy_options = {k: options.pop(k) for k in list(options) if k in busy_fields}
        if failures_per_hour is None:
            if busy_options:
                raise ValueError(f"{', '.join(sorted(busy_options))} need failures_per_hour")
            return seed_history(
                self.context,
                alerts,
                vms_per_host=self.layout.vms_per_host,
                duplicate_ratio=duplicate_ratio,
                months=months,
                **options,
            )
        busy = BusyCloud(failures_per_hour, **busy_options)
        return seed_busy(self.context, alerts, busy, duplicate_ratio=duplicate_ratio, **options)

    # -- serving -------------------------------------------------------------------------------

    def start(
        self, host: str = "127.0.0.1", port: int = 0, *, tls: ssl.SSLContext | None = None
    ) -> str:
        """Serve in a background thread; returns the endpoint URL.

        ``tls`` (a server-side context with a certificate loaded) serves HTTPS instead.
        """
        if host not in LOOPBACK:
            raise ValueError(f"the simulator only listens on loopback, not {host!r}")
        if self._server is not None:
            raise RuntimeError("the simulator is already serving")
        server = SimulatorHTTPServer((host, port), self.context, self, send_date=self.send_date)
        if tls is not None:
            # Handshake lazily in the connection's thread, so that a client that never
            # completes it cannot block the accepting thread.
            server.socket = tls.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self.faults.release.clear()
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name="simulator-http",
        )
        thread.start()
        self._server, self._thread = server, thread
        bound = server.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        scheme = "https" if tls is not None else "http"
        self.endpoint = f"{scheme}://{shown}:{bound}{API_PATH}"
        return self.endpoint

    def stop(self) -> None:
        """Stop serving: release hung answers, close connections, free the port."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self.faults.release_hung()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    @contextmanager
    def serve(
        self, host: str = "127.0.0.1", port: int = 0, *, tls: ssl.SSLContext | None = None
    ) -> Iterator[str]:
        """``with sim.serve() as endpoint:`` — a background server on a free loopback port."""
        endpoint = self.start(host, port, tls=tls)
        try:
            yield endpoint
        finally:
            self.stop()

    @property
    def port(self) -> int | None:
        """The bound port while serving."""
        return self._server.server_address[1] if self._server else None

    def now(self) -> datetime:
        """Virtual time."""
        return self.clock.now()
