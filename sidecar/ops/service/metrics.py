"""Prometheus metrics of the service, on a registry of their own (not the process-global one).

Every name starts with ``cloudstack_sidecar_``. Families are the reconciler's merge families;
API ``code`` is the HTTP status, or ``transport`` when no response arrived.

Usage::

    from sidecar.ops.service.metrics import Metrics

    metrics = Metrics()
    server = metrics.start_server("127.0.0.1:9465")    # optional; loopback: metrics name hosts
    client = CloudStackClient(..., on_call=metrics.api_call)
    metrics.lease(True)
    metrics.alerts_seen(new_alerts)
    metrics.archived("ha_starting_vm", 3)
    metrics.alertmanager_sent("http://127.0.0.1:9093", 2)  # or alertmanager_error(url)
    metrics.cycle(True, 1.8, plan.summary)              # after every cycle, failed ones too
    metrics.cycle(False, 50.0, reason="ledger")         # a failed cycle says why
    ...
    server.shutdown()

Sample exposition::

    # HELP cloudstack_sidecar_archived_total Duplicate alerts archived, by family.
    # TYPE cloudstack_sidecar_archived_total counter
    cloudstack_sidecar_archived_total{family="ha_starting_vm"} 3.0
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
    start_http_server,
)

from sidecar import __version__
from sidecar.model.plan import Summary
from sidecar.model.resources import Alert
from sidecar.reconcile import parse_subject
from sidecar.support.errors import ConfigError

NAMESPACE = "cloudstack_sidecar"

#: Cycle durations: most cycles take well under a second; the default deadline is 50 s.
CYCLE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 50.0, 60.0, 120.0)

#: API call latency: the MS answers lists in tens of milliseconds; the request timeout is 10 s.
API_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

#: Why a cycle failed (the ``reason`` of cycle_failures_total): past its deadline, refused
#: credentials, another CloudStack error, the ledger, another user error, a bug, archiving
#: interrupted (a lost lease or a stop between batches).
FAILURE_REASONS = (
    "deadline", "authentication", "cloudstack", "ledger", "error", "internal", "interrupted",
)


def reconciler_family(alert: Alert) -> str:
    """The merge family the reconciler gives this alert (``unknown`` if none)."""
    return parse_subject(alert.description).family


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); a ConfigError names a bad value."""
    host, sep, port_text = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not sep or not host or not 0 <= port <= 65535:
        raise ConfigError(
            f"metrics_address {address!r} is not host:port: use e.g. 127.0.0.1:9465"
        )
    return host, port


class MetricsServer:
    """The running ``/metrics`` HTTP server (a daemon thread); ``shutdown()`` stops it."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def shutdown(self) -> None:
        """Stop serving and close the listening socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


class Metrics:
    """The sidecar's metrics; methods are what the service and the API client call."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        family_of: Callable[[Alert], str] | None = None,
    ) -> None:
        """``family_of`` labels seen alerts; by default the reconciler's family, like archived."""
        self.registry = registry if registry is not None else CollectorRegistry()
        self._family_of = family_of or reconciler_family
        self._families: set[str] = set()
        reg, ns = self.registry, NAMESPACE

        Info("build", "Version of the sidecar.", namespace=ns, registry=reg).info(
            {"version": __version__}
        )
        self.alerts_seen_total = Counter(
            "alerts_seen", "HA alerts seen for the first time, by family.",
            ["family"], namespace=ns, registry=reg,
        )
        self.duplicates = Gauge(
            "duplicates", "Duplicate alerts in the latest plan (still to archive), by family.",
            ["family"], namespace=ns, registry=reg,
        )
        self.archived_total = Counter(
            "archived", "Duplicate alerts archived, by family.",
            ["family"], namespace=ns, registry=reg,
        )
        self.archive_failures_total = Counter(
            "archive_failures", "Duplicate alerts whose archiving failed, by family.",
            ["family"], namespace=ns, registry=reg,
        )
        self.ha_incidents_open = Gauge(
            "ha_incidents_open", "HA incidents (failed hosts) in the latest plan.",
            namespace=ns, registry=reg,
        )
        self.duplicate_ha_rounds = Gauge(
            "duplicate_ha_rounds", "Redundant HA scheduling rounds in the latest plan.",
            namespace=ns, registry=reg,
        )
        self.ha_backlog = Gauge(
            "ha_backlog_vms", "HA-enabled VMs of failed hosts not running elsewhere in time.",
            namespace=ns, registry=reg,
        )
        self.vms_restarted_more_than_once = Gauge(
            "vms_restarted_more_than_once", "VMs HA restarted more than once in one incident.",
            namespace=ns, registry=reg,
        )
        self.cycle_duration = Histogram(
            "cycle_duration_seconds", "Duration of reconcile cycles.",
            namespace=ns, registry=reg, buckets=CYCLE_BUCKETS,
        )
        self.cycles_total = Counter(
            "cycles", "Reconcile cycles by outcome (ok, failed).",
            ["outcome"], namespace=ns, registry=reg,
        )
        self.cycle_failures_total = Counter(
            "cycle_failures", "Failed reconcile cycles by reason (ledger, cloudstack, ...).",
            ["reason"], namespace=ns, registry=reg,
        )
        self.last_success = Gauge(
            "last_successful_cycle_timestamp_seconds",
            "Unix time the last cycle succeeded (alert when it is too old).",
            namespace=ns, registry=reg,
        )
        self.api_calls_total = Counter(
            "api_calls", "CloudStack API calls by command and HTTP status.",
            ["command", "code"], namespace=ns, registry=reg,
        )
        self.api_errors_total = Counter(
            "api_errors", "CloudStack API calls that failed (status >= 400 or transport).",
            ["command", "code"], namespace=ns, registry=reg,
        )
        self.api_duration = Histogram(
            "api_call_duration_seconds", "CloudStack API call latency by command.",
            ["command"], namespace=ns, registry=reg, buckets=API_BUCKETS,
        )
        self.lease_held = Gauge(
            "lease_held", "1 while this sidecar holds the leader lease (acts), else 0.",
            namespace=ns, registry=reg,
        )
        self.alertmanager_sent_total = Counter(
            "alertmanager_alerts_sent", "Alerts posted to Alertmanager and accepted, by URL.",
            ["alertmanager"], namespace=ns, registry=reg,
        )
        self.alertmanager_errors_total = Counter(
            "alertmanager_errors", "Posts to Alertmanager that failed (retried next cycle).",
            ["alertmanager"], namespace=ns, registry=reg,
        )
        self.dry_run_mode = Gauge(
            "dry_run", "1 if this sidecar runs in dry-run mode (never acts, never leases).",
            namespace=ns, registry=reg,
        )
        # Show every outcome and reason from the start, so that rate() and increase() work
        # before the first failure (a series born at 1 hides its first increment).
        for outcome in ("ok", "failed"):
            self.cycles_total.labels(outcome)
        for reason in FAILURE_REASONS:
            self.cycle_failures_total.labels(reason)

    def cycle(
        self, ok: bool, duration: float, summary: Summary | None = None, *,
        reason: str = "internal",
    ) -> None:
        """Record one cycle; a plan summary updates the HA and duplicate gauges."""
        self.cycle_duration.observe(duration)
        self.cycles_total.labels("ok" if ok else "failed").inc()
        if ok:
            self.last_success.set(time.time())
        else:
            self.cycle_failures_total.labels(reason).inc()
        if summary is None:
            return  # a failed cycle keeps the last known picture; the timestamp shows its age
        self.ha_incidents_open.set(summary.ha_incidents)
        self.duplicate_ha_rounds.set(summary.duplicate_rounds)
        self.ha_backlog.set(summary.ha_backlog)
        self.vms_restarted_more_than_once.set(summary.vms_restarted_more_than_once)
        # Families absent from this plan drop to 0 instead of keeping a stale count.
        self._families |= set(summary.by_family)
        for family in self._families:
            self.duplicates.labels(family).set(summary.by_family.get(family, 0))

    def alerts_seen(self, alerts: Iterable[Alert]) -> None:
        """Count alerts seen for the first time this cycle."""
        for alert in alerts:
            self.alerts_seen_total.labels(self._family_of(alert)).inc()

    def archived(self, family: str, n: int = 1) -> None:
        """Count ``n`` duplicates of ``family`` archived (or found already gone)."""
        if n > 0:
            self.archived_total.labels(family).inc(n)

    def archive_failed(self, family: str, n: int = 1) -> None:
        """Count ``n`` duplicates of ``family`` whose archiving failed."""
        if n > 0:
            self.archive_failures_total.labels(family).inc(n)

    def api_call(self, command: str, status: int, seconds: float) -> None:
        """The API client's ``on_call`` hook; ``status`` 0 means no response (transport)."""
        code = str(status) if status else "transport"
        self.api_calls_total.labels(command, code).inc()
        if status == 0 or status >= 400:
            self.api_errors_total.labels(command, code).inc()
        self.api_duration.labels(command).observe(seconds)

    def alertmanager_sent(self, url: str, n: int) -> None:
        """``n`` alerts accepted by the Alertmanager at ``url`` (no user info: settings check)."""
        self.alertmanager_sent_total.labels(url).inc(n)
        self.alertmanager_errors_total.labels(url)  # 0 from the start, so rate() works

    def alertmanager_error(self, url: str) -> None:
        """One failed post to the Alertmanager at ``url``."""
        self.alertmanager_errors_total.labels(url).inc()
        self.alertmanager_sent_total.labels(url)

    def lease(self, held: bool) -> None:
        """Whether this sidecar holds the leader lease now."""
        self.lease_held.set(1 if held else 0)

    def dry_run(self, on: bool) -> None:
        """Whether this sidecar runs in dry-run mode (lease rules skip such sidecars)."""
        self.dry_run_mode.set(1 if on else 0)

    def render(self) -> bytes:
        """The text exposition format (what ``/metrics`` serves)."""
        return generate_latest(self.registry)

    def start_server(self, address: str) -> MetricsServer:
        """Serve ``/metrics`` on ``host:port`` from a daemon thread; port 0 picks a free one."""
        host, port = parse_address(address)
        try:
            httpd, thread = start_http_server(port, host, registry=self.registry)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {address} ({exc.strerror or exc}): "
                "choose another metrics_address or stop what uses that port"
            ) from None
        return MetricsServer(httpd, thread)


__all__ = ["FAILURE_REASONS", "Metrics", "MetricsServer", "parse_address", "reconciler_family"]
