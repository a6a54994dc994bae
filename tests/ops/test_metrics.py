# mypy: allow-untyped-defs
"""Prometheus metrics: values by scraping the registry, and a real HTTP scrape on loopback."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from sidecar import __version__
from sidecar.model.plan import Summary
from sidecar.model.resources import Alert
from sidecar.ops.service.metrics import FAILURE_REASONS, Metrics, parse_address
from sidecar.support.errors import ConfigError


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, keyed by (name, sorted labels)."""
    text = metrics.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, tuple(sorted(labels.items()))))


def alert(alert_id: str, name: str = "ALERT.USERVM",
          description: str = "HA starting VM: web01 (i-2-14-VM)") -> Alert:
    return Alert(id=alert_id, type=8, name=name, description=description, sent=None)


def test_metrics_use_their_own_registry_not_the_global_one():
    metrics = Metrics()
    assert metrics.registry is not REGISTRY
    metrics.archived("vm-ha", 2)
    assert REGISTRY.get_sample_value("cloudstack_sidecar_archived_total", {"family": "vm-ha"}) \
        is None


def test_two_instances_do_not_share_values():
    first, second = Metrics(), Metrics()
    first.archived("vm-ha", 2)
    assert value(first, "cloudstack_sidecar_archived_total", family="vm-ha") == 2
    assert value(second, "cloudstack_sidecar_archived_total", family="vm-ha") is None


def test_every_metric_name_has_the_sidecar_prefix():
    text = Metrics().render().decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert names
    assert all(n.startswith("cloudstack_sidecar_") for n in names), names


def test_build_info_carries_the_version():
    assert value(Metrics(), "cloudstack_sidecar_build_info", version=__version__) == 1


def test_a_successful_cycle_sets_the_plan_gauges_and_the_success_time():
    metrics = Metrics()
    summary = Summary(ha_incidents=2, duplicate_rounds=3, ha_backlog=4,
                      vms_restarted_more_than_once=5, by_family={"vm-ha": 7, "host-down": 1})
    metrics.cycle(True, 1.5, summary)
    assert value(metrics, "cloudstack_sidecar_ha_incidents_open") == 2
    assert value(metrics, "cloudstack_sidecar_duplicate_ha_rounds") == 3
    assert value(metrics, "cloudstack_sidecar_ha_backlog_vms") == 4
    assert value(metrics, "cloudstack_sidecar_vms_restarted_more_than_once") == 5
    assert value(metrics, "cloudstack_sidecar_duplicates", family="vm-ha") == 7
    assert value(metrics, "cloudstack_sidecar_duplicates", family="host-down") == 1
    assert value(metrics, "cloudstack_sidecar_cycles_total", outcome="ok") == 1
    assert value(metrics, "cloudstack_sidecar_cycle_duration_seconds_count") == 1
    assert value(metrics, "cloudstack_sidecar_cycle_duration_seconds_sum") == 1.5
    assert value(metrics, "cloudstack_sidecar_cycle_duration_seconds_bucket", le="2.5") == 1
    assert value(metrics, "cloudstack_sidecar_cycle_duration_seconds_bucket", le="1.0") == 0
    assert (value(metrics, "cloudstack_sidecar_last_successful_cycle_timestamp_seconds") or 0) > 0


def test_a_family_missing_from_the_next_plan_drops_to_zero():
    metrics = Metrics()
    metrics.cycle(True, 1.0, Summary(by_family={"vm-ha": 7}))
    metrics.cycle(True, 1.0, Summary(by_family={"host-down": 2}))
    assert value(metrics, "cloudstack_sidecar_duplicates", family="vm-ha") == 0
    assert value(metrics, "cloudstack_sidecar_duplicates", family="host-down") == 2


def test_a_failed_cycle_counts_as_failed_and_keeps_the_last_picture():
    metrics = Metrics()
    metrics.cycle(True, 1.0, Summary(ha_incidents=2))
    last_ok = value(metrics, "cloudstack_sidecar_last_successful_cycle_timestamp_seconds")
    metrics.cycle(False, 50.0, None)
    assert value(metrics, "cloudstack_sidecar_cycles_total", outcome="failed") == 1
    assert value(metrics, "cloudstack_sidecar_cycles_total", outcome="ok") == 1
    assert value(metrics, "cloudstack_sidecar_ha_incidents_open") == 2
    assert value(metrics, "cloudstack_sidecar_last_successful_cycle_timestamp_seconds") == last_ok


def test_no_success_time_before_the_first_good_cycle():
    metrics = Metrics()
    metrics.cycle(False, 3.0)
    assert value(metrics, "cloudstack_sidecar_last_successful_cycle_timestamp_seconds") == 0
    assert value(metrics, "cloudstack_sidecar_cycles_total", outcome="ok") == 0


def test_alerts_seen_are_labelled_with_the_reconcilers_family_by_default():
    metrics = Metrics()
    metrics.alerts_seen([
        alert("a1"), alert("a2"),
        alert("h1", "ALERT.COMPUTE.HOST", "Host down, 42"),
        alert("x1", "ALERT.USERVM", "something CloudStack never says"),
    ])
    assert value(metrics, "cloudstack_sidecar_alerts_seen_total", family="ha_starting_vm") == 2
    assert value(metrics, "cloudstack_sidecar_alerts_seen_total", family="host_down") == 1
    assert value(metrics, "cloudstack_sidecar_alerts_seen_total", family="unknown") == 1


def test_a_failed_cycle_counts_its_reason_and_every_reason_starts_at_zero():
    metrics = Metrics()
    assert all(value(metrics, "cloudstack_sidecar_cycle_failures_total", reason=r) == 0
               for r in FAILURE_REASONS)
    metrics.cycle(False, 2.0, reason="ledger")
    metrics.cycle(False, 2.0)
    metrics.cycle(True, 1.0, reason="ledger")  # an ok cycle has no failure to count
    assert value(metrics, "cloudstack_sidecar_cycle_failures_total", reason="ledger") == 1
    assert value(metrics, "cloudstack_sidecar_cycle_failures_total", reason="internal") == 1
    assert value(metrics, "cloudstack_sidecar_cycles_total", outcome="failed") == 2


def test_alerts_seen_use_the_given_family_classifier():
    metrics = Metrics(family_of=lambda a: "vm-ha" if a.name == "ALERT.USERVM" else "other")
    metrics.alerts_seen([alert("a1"), alert("h1", "ALERT.COMPUTE.HOST")])
    assert value(metrics, "cloudstack_sidecar_alerts_seen_total", family="vm-ha") == 1
    assert value(metrics, "cloudstack_sidecar_alerts_seen_total", family="other") == 1


@pytest.mark.parametrize(("method", "name"), [
    ("archived", "cloudstack_sidecar_archived_total"),
    ("archive_failed", "cloudstack_sidecar_archive_failures_total"),
])
def test_archived_and_archive_failures_add_up_by_family_and_ignore_zero(method, name):
    metrics = Metrics()
    count = getattr(metrics, method)
    count("vm-ha", 2)
    count("vm-ha")
    count("host-down", 0)
    assert value(metrics, name, family="vm-ha") == 3
    assert value(metrics, name, family="host-down") is None


def test_api_call_counts_calls_and_errors_by_command_and_code():
    metrics = Metrics()
    metrics.api_call("listAlerts", 200, 0.02)
    metrics.api_call("listAlerts", 200, 0.03)
    metrics.api_call("archiveAlerts", 530, 0.5)
    metrics.api_call("listHosts", 0, 10.0)
    assert value(metrics, "cloudstack_sidecar_api_calls_total",
                 command="listAlerts", code="200") == 2
    assert value(metrics, "cloudstack_sidecar_api_errors_total",
                 command="listAlerts", code="200") is None
    assert value(metrics, "cloudstack_sidecar_api_errors_total",
                 command="archiveAlerts", code="530") == 1
    assert value(metrics, "cloudstack_sidecar_api_errors_total",
                 command="listHosts", code="transport") == 1
    assert value(metrics, "cloudstack_sidecar_api_call_duration_seconds_count",
                 command="listAlerts") == 2


@pytest.mark.parametrize(("method", "name"), [
    ("lease", "cloudstack_sidecar_lease_held"),
    ("dry_run", "cloudstack_sidecar_dry_run"),
])
def test_lease_held_and_dry_run_are_one_when_true_and_zero_after(method, name):
    metrics = Metrics()
    getattr(metrics, method)(True)
    assert value(metrics, name) == 1
    getattr(metrics, method)(False)
    assert value(metrics, name) == 0


def test_metrics_are_served_over_http_on_loopback():
    metrics = Metrics(CollectorRegistry())
    metrics.archived("vm-ha", 4)
    server = metrics.start_server("127.0.0.1:0")
    try:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(server.url, timeout=5) as response:
            body = response.read().decode()
            assert response.status == 200
    finally:
        server.shutdown()
    assert 'cloudstack_sidecar_archived_total{family="vm-ha"} 4.0' in body


def test_shutdown_releases_the_port():
    metrics = Metrics()
    server = metrics.start_server("127.0.0.1:0")
    port = server.port
    server.shutdown()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # would raise EADDRINUSE if the server still held it


def test_a_busy_port_is_a_one_line_config_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            Metrics().start_server(f"127.0.0.1:{port}")


@pytest.mark.parametrize(("address", "expected"), [
    ("127.0.0.1:9465", ("127.0.0.1", 9465)),
    ("[::1]:9465", ("::1", 9465)),
    ("localhost:0", ("localhost", 0)),
])
def test_parse_address_accepts_host_and_port(address, expected):
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["9465", ":9465", "127.0.0.1:", "127.0.0.1:http",
                                     "127.0.0.1:70000"])
def test_parse_address_rejects_a_malformed_address(address):
    with pytest.raises(ConfigError, match="is not host:port"):
        parse_address(address)
