"""The embedded simulator: inventory, keys, scenarios, history, faults and the HTTP server."""

from __future__ import annotations

import itertools
import random
import re
import secrets
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sidecar.constants import API_PATH, STATE_CHANGING_PREFIXES_READ, UNAUTHORIZED_TEXT
from sidecar.simulator.api import COMMANDS, ApiError, Call, alert_item, host_item, vm_item
from sidecar.simulator.clock import VirtualClock
from sidecar.simulator.faults import Fault, FaultRegistry
from sidecar.simulator.profiles import Profile, get_profile
from sidecar.simulator.scenarios import ScenarioEngine, ScenarioRun
from sidecar.simulator.server import SimulatorHTTPServer, Stats
from sidecar.simulator.state import (
    Account,
    ApiKey,
    AsyncJob,
    Cluster,
    Host,
    Pod,
    Setting,
    State,
    Vm,
    Zone,
    alert_key,
    key_row,
)
from sidecar.simulator.truth import Truth
from sidecar.simulator.verify import parse_tz_date, signature_matches

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_VM_ROLES = ("web", "app", "db", "cache", "api", "mq", "batch", "ci")
_TENANTS = ("acme", "globex", "initech")

#: Settings ``listConfigurations`` shows (HA-relevant ones, upstream defaults).
_SETTINGS = (
    ("ha.workers", "5", "Advanced", "Number of ha worker threads."),
    ("time.between.failures", "3600", "Advanced", "Time in seconds between VM restarts."),
    (
        "time.between.cleanup",
        "86400",
        "Advanced",
        "Time in seconds to wait before taking over a VM in transition state.",
    ),
    (
        "vm.ha.migration.max.retries",
        "5",
        "Advanced",
        "Total number of attempts for trying migration of a VM.",
    ),
    (
        "restart.retry.interval",
        "600",
        "Advanced",
        "Time in seconds between retries to restart a vm",
    ),
    ("alert.wait", "1800", "Alert", "Seconds to wait before alerting on a disconnected agent"),
    (
        "ping.interval",
        "60",
        "Advanced",
        "Interval to send application level pings to make sure the connection is still working",
    ),
    (
        "ping.timeout",
        "2.5",
        "Advanced",
        "Multiplier to ping.interval before announcing an agent has timed out",
    ),
    (
        "alert.purge.delay",
        "0",
        "Advanced",
        "Alerts older than specified number days will be purged. Set this value to 0 to never "
        "delete alerts",
    ),
    ("api.throttling.enabled", "false", "Advanced", "Enable/disable Api rate limit"),
    ("default.page.size", "500", "Advanced", "Default page size for API list* commands"),
)


def parse_timezone(text: str) -> tzinfo:
    """``+0530``, ``+05:30``, ``-08``, ``UTC``/``Z`` or an IANA name such as ``Asia/Kolkata``."""
    value = text.strip()
    if value.upper() in ("UTC", "Z", "GMT"):
        return UTC
    match = re.fullmatch(r"([+-])(\d{2}):?(\d{2})?", value)
    if match:
        sign = -1 if match.group(1) == "-" else 1
        delta = timedelta(hours=int(match.group(2)), minutes=int(match.group(3) or 0))
        if delta >= timedelta(hours=24):
            raise ValueError(f"time zone offset out of range: {text!r}")
        return timezone(sign * delta)
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {text!r}: use an offset like +0530 or a name like Asia/Kolkata"
        ) from None


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
    ) -> None:
        if tie_order not in ("shuffle", "stable"):
            raise ValueError("tie_order must be 'shuffle' or 'stable'")
        if hosts < 1:
            raise ValueError("a simulator needs at least one host")
        self.profile: Profile = get_profile(profile)
        if enforce_post and not self.profile.post_enforcement:
            raise ValueError(
                f"enforce.post.requests.and.timestamps exists from 4.21.0, not in {profile}"
            )
        #: ``enforce.post.requests.and.timestamps`` (4.21+): POST for state-changing commands,
        #: signature version 3 required, ``expires`` at most 15 minutes ahead.
        self.enforce_post = enforce_post
        self.seed = seed
        self.tz = parse_timezone(tz)
        self.tie_order = tie_order
        self.lock = threading.RLock()
        self.clock = VirtualClock(start, self.lock)
        self.state = State(uuid_rng=random.Random(f"uuid:{seed}"))
        self.truth = Truth()
        self.faults = FaultRegistry(seed)
        self.stats = Stats()
        self.scenarios = ScenarioEngine(self)
        self._salt = itertools.count(1)
        self._vms_per_host = vms_per_host
        self._non_ha_per_host = non_ha_per_host
        self._build(
            hosts, vms_per_host, hosts_per_pod, non_ha_per_host, host_ha, system_vms, zone_name
        )
        self.key, self.secret = self.create_key(None, key=key, secret=secret)
        self._server: SimulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.endpoint: str | None = None

    # -- inventory -----------------------------------------------------------------------------

    def _build(
        self,
        hosts: int,
        vms_per_host: int,
        hosts_per_pod: int,
        non_ha_per_host: int,
        host_ha: bool,
        system_vms: bool,
        zone_name: str,
    ) -> None:
        st = self.state
        now = self.clock.time()
        born = now - 400 * 86400
        st.domain_uuid = st.new_uuid()
        st.ms_uuid = st.new_uuid()
        for name in ("system", "admin", *_TENANTS):
            account_id = st.next_id("account")
            st.accounts[name] = Account(
                account_id,
                st.new_uuid(),
                name,
                st.new_uuid(),
                name if name != "system" else "system",
            )
        zone = Zone(st.next_id("data_center"), st.new_uuid(), zone_name)
        st.zones[zone.id] = zone
        per_pod = max(1, hosts_per_pod)
        for index in range(hosts):
            if index % per_pod == 0:
                pod = Pod(
                    st.next_id("host_pod_ref"),
                    st.new_uuid(),
                    f"pod-{index // per_pod + 1}",
                    zone.id,
                )
                st.pods[pod.id] = pod
                cluster = Cluster(
                    st.next_id("cluster"),
                    st.new_uuid(),
                    f"cluster-{index // per_pod + 1}",
                    pod.id,
                    zone.id,
                )
                st.clusters[cluster.id] = cluster
            host = Host(
                id=st.next_id("host"),
                uuid=st.new_uuid(),
                name=f"kvm-{index + 1:02d}",
                zone_id=zone.id,
                pod_id=pod.id,
                cluster_id=cluster.id,
                ip=f"10.1.{index // per_pod + 1}.{index % per_pod + 11}",
                created=born + index * 3600,
                last_ping=int(now * 1000) >> 10,
                ha_config=host_ha,
                ha_enabled=host_ha,
                ha_state="Available" if host_ha else "Disabled",
                capacity=max(32, vms_per_host * 4),
            )
            st.hosts[host.id] = host
        routing = list(st.hosts.values())
        counter = itertools.count(1)
        for host in routing:
            for j in range(vms_per_host):
                n = next(counter)
                account = "admin" if n % 5 == 0 else _TENANTS[n % len(_TENANTS)]
                ha = j < vms_per_host - non_ha_per_host
                name = f"{_VM_ROLES[(n - 1) % len(_VM_ROLES)]}-{n:03d}"
                self._add_vm(host, name, "User", account, ha, born + n * 600)
        if system_vms:
            first, second = routing[0], routing[min(1, len(routing) - 1)]
            self._add_vm(first, "", "SecondaryStorageVm", "system", True, born)
            self._add_vm(second, "", "ConsoleProxy", "system", True, born)
            for i, tenant in enumerate(_TENANTS):
                host = routing[(i + 2) % len(routing)]
                self._add_vm(host, "", "DomainRouter", tenant, True, born + 60 * i)
        for name, value, category, description in _SETTINGS:
            st.settings[name] = Setting(name, value, category, description)
        for host in routing[:2]:
            job = AsyncJob(
                id=st.next_id("async_job"),
                uuid=st.new_uuid(),
                cmd="org.apache.cloudstack.api.command.admin.ha.EnableHAForHostCmd",
                account="admin",
                created=now - 30 * 86400,
                completed=now - 30 * 86400 + 2,
                result={"hostha": {"hostid": host.uuid, "haenable": True, "status": True}},
                instance_type="Host",
                instance_uuid=host.uuid,
            )
            st.jobs[job.id] = job

    def _add_vm(
        self, host: Host, name: str, kind: str, account: str, ha: bool, created: float
    ) -> Vm:
        st = self.state
        vm_id = st.next_id("vm_instance")
        account_id = st.accounts[account].id
        if kind == "User":
            instance = f"i-{account_id}-{vm_id}-VM"
        else:
            prefix = {"DomainRouter": "r", "ConsoleProxy": "v", "SecondaryStorageVm": "s"}[kind]
            instance = f"{prefix}-{vm_id}-VM"
            name = instance
        vm = Vm(
            id=vm_id,
            uuid=st.new_uuid(),
            name=name,
            display_name=name,
            instance_name=instance,
            vm_type=kind,
            state="Running",
            host_id=host.id,
            last_host_id=host.id,
            ha_enabled=ha,
            zone_id=host.zone_id,
            pod_id=host.pod_id,
            account=account,
            created=created,
            last_updated=created,
        )
        st.vms[vm.id] = vm
        if kind in ("ConsoleProxy", "SecondaryStorageVm"):
            # A system VM's agent shows in listHosts as a host of its own type.
            sys_host = Host(
                id=st.next_id("host"),
                uuid=st.new_uuid(),
                name=instance,
                zone_id=host.zone_id,
                pod_id=host.pod_id,
                cluster_id=0,
                ip=f"10.1.250.{vm_id % 250}",
                created=created,
                last_ping=host.last_ping,
                type="SecondaryStorageVM" if kind == "SecondaryStorageVm" else "ConsoleProxy",
                hypervisor="",
                ha_config=False,
                ha_enabled=False,
                ha_state="Disabled",
            )
            st.hosts[sys_host.id] = sys_host
        return vm

    def add_removed_host(self, name: str, vms: int, removed: float) -> Host:
        """A decommissioned hypervisor (not listed) with expunged VMs, for seeded history."""
        with self.lock:
            st = self.state
            template = next(h for h in st.hosts.values() if h.type == "Routing")
            host = Host(
                id=st.next_id("host"),
                uuid=st.new_uuid(),
                name=name,
                zone_id=template.zone_id,
                pod_id=template.pod_id,
                cluster_id=template.cluster_id,
                ip=f"10.1.200.{st._next['host'] % 250}",
                created=removed - 500 * 86400,
                last_ping=int(removed * 1000) >> 10,
                status="Removed",
                removed=removed,
            )
            st.hosts[host.id] = host
            for j in range(vms):
                account = _TENANTS[j % len(_TENANTS)]
                vm = self._add_vm(
                    host, f"old-{host.id}-{j + 1}", "User", account, True, host.created
                )
                vm.removed = removed
                vm.state = "Expunging"
                vm.host_id = None
                vm.last_host_id = host.id
            return host

    # -- identity --------------------------------------------------------------------------

    @property
    def version(self) -> str:
        """``cloudstackversion`` of the profile, e.g. ``4.19.2.0``."""
        return self.profile.version

    def create_key(
        self,
        role: set[str] | frozenset[str] | None = None,
        *,
        key: str | None = None,
        secret: str | None = None,
        account: str = "admin",
    ) -> tuple[str, str]:
        """A new API key pair; ``role`` = the APIs it may call (None = every API)."""
        pair = ApiKey(
            key=key or secrets.token_urlsafe(64),
            secret=secret or secrets.token_urlsafe(64),
            account=account,
            role=None if role is None else frozenset(role),
        )
        with self.lock:
            self.state.keys[pair.key] = pair
        return pair.key, pair.secret

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

    def check_method(self, command: str | None, method: str) -> None:
        """4.21+ with enforcement on: a state-changing command sent by GET gets 400."""
        if (
            self.enforce_post
            and method != "POST"
            and command in COMMANDS
            and not command.startswith(STATE_CHANGING_PREFIXES_READ)
        ):
            raise ApiError(
                400,
                f"State changing command {command} needs to be sent using POST request",
                server_api=False,
            )

    def authenticate(self, params: dict[str, str]) -> tuple[ApiKey, Account]:
        """``ApiServer.verifyRequest``, in upstream's order of checks."""
        plain = ApiError(401, UNAUTHORIZED_TEXT, server_api=False)
        command = params.get("command")
        if command is None or command not in COMMANDS:
            raise plain
        signature = api_key = version = expires = None
        for name in sorted(params):
            lowered = name.lower()
            if lowered == "signature":
                signature = params[name]
            elif lowered == "apikey":
                api_key = params[name]
            elif lowered == "signatureversion":
                version = params[name]
            elif lowered == "expires":
                expires = params[name]
        if signature is None or api_key is None:
            raise plain
        if version == "3":
            if expires is None:
                raise plain
            moment = parse_tz_date(expires)
            if moment is None or moment.timestamp() < self.clock.time():
                raise plain
            if self.enforce_post and moment.timestamp() > self.clock.time() + 15 * 60:
                raise plain
        elif self.enforce_post:
            raise plain
        with self.lock:
            pair = self.state.keys.get(api_key)
            account = self.state.accounts.get(pair.account) if pair else None
        if pair is None or account is None or not pair.enabled:
            raise plain
        if pair.role is not None and command not in pair.role:
            # checkCommandAvailable runs before the signature check.
            raise ApiError(
                401,
                f"The given command '{command}' either does not exist, is not available for user.",
            )
        if not signature_matches(params, pair.secret):
            raise plain
        return pair, account

    # -- hooks run between authentication and the command (faults) ---------------------------

    def run_hooks(self, call: Call) -> None:
        """Apply hook faults (another admin archiving, purges, new alerts) to this call."""

        def applicable(fault: Fault) -> bool:
            if fault.kind == "insert_alerts":
                page = call.params.get("page", "1")
                return page.lstrip("-").isdigit() and int(page) >= int(fault.options["min_page"])
            return True

        for fault in self.faults.draw(call.command, "hook", applicable):
            with self.lock:
                if fault.kind in ("archived_by_other", "delete_alerts") and "ids" in call.params:
                    rows = [
                        r
                        for r in (
                            self.state.alerts.find_uuid(t)
                            for t in call.params["ids"].split(",")
                            if t
                        )
                        if r is not None and self.state.alerts.is_live(r)
                    ]
                    chosen = self.faults.rng_sample(sorted(set(rows)), int(fault.options["k"]))
                    for row in chosen:
                        uuid = self.state.alerts.uuid[row - 1]
                        if fault.kind == "archived_by_other":
                            self.state.alerts.archive(row)
                            self.stats.note_archived(uuid, out_of_band=True)
                        else:
                            self.state.alerts.delete(row)
                            self.stats.note_deleted(uuid)
                        fault.affected.append(uuid)
                elif fault.kind == "delete_alerts":
                    oldest = list(self.state.alerts.live)[-int(fault.options["k"]) :]
                    for key in oldest:
                        row = key_row(key)
                        uuid = self.state.alerts.uuid[row - 1]
                        self.state.alerts.delete(row)
                        self.stats.note_deleted(uuid)
                        fault.affected.append(uuid)
                elif fault.kind == "insert_alerts":
                    for _ in range(int(fault.options["n"])):
                        uuid = self.emit_alert(
                            fault.options["name"],
                            fault.options["subject"] or "Management server node 10.1.1.5 is up",
                        )
                        fault.affected.append(uuid)

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
        with self.lock:
            ref = self.state.host_by(host) if host is not None else None
            where = ref or next(iter(self.state.hosts.values()))
            row = self.state.send_alert(
                name,
                zone_id=where.zone_id,
                pod_id=where.pod_id,
                subject=subject,
                body=body if body is not None else subject,
                at=self.clock.time(),
            )
            if row is None:
                return ""
            uuid = self.state.alerts.uuid[row - 1]
            self.truth.other_ids.add(uuid)
            return uuid

    def archive_out_of_band(self, uuids: list[str]) -> list[str]:
        """Archive alerts as another admin would (counted in ``stats.archive_count``)."""
        done = []
        with self.lock:
            for uuid in uuids:
                row = self.state.alerts.find_uuid(uuid)
                if row is not None and self.state.alerts.archive(row):
                    self.stats.note_archived(uuid, out_of_band=True)
                    done.append(uuid)
        return done

    def delete_alerts(self, uuids: list[str]) -> list[str]:
        """Hard-delete alerts (a purge or another admin)."""
        done = []
        with self.lock:
            for uuid in uuids:
                row = self.state.alerts.find_uuid(uuid)
                if row is not None and self.state.alerts.delete(row):
                    self.stats.note_deleted(uuid)
                    done.append(uuid)
        return done

    def is_archived(self, uuid: str) -> bool:
        """True if the alert exists and is archived."""
        with self.lock:
            row = self.state.alerts.find_uuid(uuid)
            return row is not None and self.state.alerts.flags[row - 1] == 1

    def next_salt(self) -> int:
        """A per-request salt for the order of tied rows (deterministic per seed)."""
        return hash((self.seed, next(self._salt)))

    # -- views for pure tests ------------------------------------------------------------------

    def alerts_as_api(self, include_archived: bool = False) -> list[dict[str, Any]]:
        """listAlerts-shaped items, ``last_sent DESC, id DESC`` (archived ones optional)."""
        with self.lock:
            table = self.state.alerts
            if include_archived:
                keys = sorted(
                    alert_key(table.last_sent[i], i + 1)
                    for i in range(len(table))
                    if table.flags[i] != 2
                )
            else:
                keys = list(table.live)
            return [alert_item(self, key_row(k)) for k in keys]

    def hosts_as_api(self, details: str = "all") -> list[dict[str, Any]]:
        """listHosts items of every listed host (id order)."""
        with self.lock:
            return [
                host_item(self, h, details.split(","))
                for h in sorted(self.state.hosts.values(), key=lambda h: h.id)
                if h.removed is None
            ]

    def vms_as_api(self, details: str = "all") -> list[dict[str, Any]]:
        """listVirtualMachines items of every user VM (as with ``listall=true``)."""
        with self.lock:
            return [
                vm_item(self, v, details.split(","))
                for v in sorted(self.state.vms.values(), key=lambda v: v.id)
                if v.vm_type == "User" and v.removed is None
            ]

    def ha_work(self, *, failure: int | None = None) -> list[dict[str, Any]]:
        """``op_ha_work`` rows (optionally of one failure), with upstream's columns."""
        with self.lock:
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

    # -- scenarios and history -------------------------------------------------------------

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
        self, alerts: int, duplicate_ratio: float = 0.3, months: int = 6, **options: Any
    ) -> Any:
        """Build a realistic alert history ending two hours before now (see ``seed.py``)."""
        from sidecar.simulator.seed import seed_history

        return seed_history(self, alerts, duplicate_ratio=duplicate_ratio, months=months, **options)

    # -- serving -----------------------------------------------------------------------------

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
        server = SimulatorHTTPServer((host, port), self)
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
