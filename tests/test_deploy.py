"""deploy/: the Prometheus rules pass ``promtool check rules`` and their unit tests, a real scrape
passes ``promtool check metrics``, and every metric the rules and the dashboard name is one the
sidecar exports.

promtool is Debian's ``prometheus`` package; its tests skip without it (``.ci/run`` installs it).
No test talks to a Prometheus server: promtool evaluates the rules on its own.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from paths import ROOT
from wiringkit import context, ledger_url, served, sim_with_history

from sidecar.ops.service.cycle import Service
from sidecar.ops.service.metrics import Metrics

RULES_DIR = ROOT / "deploy" / "prometheus"
RULES = RULES_DIR / "cloudstack-sidecar.rules.yml"
RULE_TESTS = RULES_DIR / "cloudstack-sidecar.rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "cloudstack-sidecar.json"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian package 'prometheus'; .ci/run installs it)",
)

#: Metrics Prometheus itself makes for every target.
PROMETHEUS_OWN = frozenset({"up"})

#: Sample suffixes of each metric type in the text format (counters' _created is not queried).
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
}

# What is not a metric name in PromQL: strings, label matchers, ranges, label lists, keywords.
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
# A name not preceded by a name character, a dot or $ (numbers, durations, Grafana variables)
# and not followed by "(" (functions and aggregations).
_NAMES = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf",
                       "nan", "Inf", "NaN"})


def promtool(*args: str, stdin: str | None = None, cwd: Path | None = None) -> \
        subprocess.CompletedProcess[str]:
    """Run promtool; its output (stdout and stderr) is in ``.stdout``."""
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], input=stdin, cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=120, check=False)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _LABEL_LISTS.sub(" ", text)
    return {name for name in _NAMES.findall(text) if name not in _KEYWORDS}


def exported_names(metrics: Metrics) -> set[str]:
    """Every sample name the sidecar's registry can expose, from its families' types."""
    names: set[str] = set()
    for family in metrics.registry.collect():
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
    return names


def rules() -> list[dict[str, Any]]:
    """Every rule of the rules file."""
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expr) of every panel target, rows' nested panels included."""
    out: list[tuple[str, str]] = []
    for panel in dashboard()["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            out += [(inner["title"], t["expr"]) for t in inner.get("targets", []) if "expr" in t]
    return out


def unknown_metrics(expr: str, exported: set[str], recorded: set[str]) -> set[str]:
    """Names in ``expr`` that neither the sidecar, the rules file nor Prometheus produce."""
    names = metric_names(expr)
    # A recording rule's name has a colon: the rules file is where it must come from.
    return {n for n in names if n not in (recorded if ":" in n else exported | PROMETHEUS_OWN)}


# --- promtool on the rules -------------------------------------------------------------------


@needs_promtool
def test_promtool_check_rules_accepts_the_rules_file() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


@needs_promtool
def test_promtool_test_rules_passes_every_alert_firing_and_not_firing() -> None:
    result = promtool("test", "rules", RULE_TESTS.name, cwd=RULES_DIR)
    assert result.returncode == 0, result.stdout
    assert "SUCCESS" in result.stdout


@needs_promtool
@pytest.mark.parametrize(("before", "after"), [
    ("time() - cloudstack_sidecar_last_successful_cycle_timestamp_seconds"
     '{job="cloudstack-sidecar"} > 300', "time() - "
     'cloudstack_sidecar_last_successful_cycle_timestamp_seconds{job="cloudstack-sidecar"} > 3000'),
    ('cloudstack_sidecar_dry_run{job="cloudstack-sidecar"} == 1', "vector(0) == 1"),
    ('reason="ledger"}[10m])) > 2', 'reason="ledger"}[10m])) > 0'),
])
def test_promtool_test_rules_fails_on_a_broken_rule(
    tmp_path: Path, before: str, after: str
) -> None:
    text = RULES.read_text()
    assert text.count(before) == 1, before
    (tmp_path / RULES.name).write_text(text.replace(before, after))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0, result.stdout
    assert "FAILED" in result.stdout


def test_every_alert_has_for_severity_summary_description_and_tests_firing_and_silent() -> None:
    alerts = [rule for rule in rules() if "alert" in rule]
    assert len(alerts) >= 7
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    for rule in alerts:
        name = rule["alert"]
        assert rule.get("for"), name
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert 'job="cloudstack-sidecar"' in rule["expr"], name
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in mine), f"{name} is never tested firing"
        assert any(not case["exp_alerts"] for case in mine), f"{name} is never tested silent"


# --- promtool on a real scrape ---------------------------------------------------------------


def scraped_metrics(tmp_path: Path) -> str:
    """A real service cycle against the simulator (API calls, archives), then every other
    metric driven once; returns the text served on ``/metrics``."""
    sim = sim_with_history(300)
    metrics = Metrics()
    server = metrics.start_server("127.0.0.1:0")
    try:
        with served(sim) as endpoint:
            service = Service(context(sim, endpoint, ledger_url(tmp_path)), dry_run=False,
                              metrics=metrics)
            try:
                result = service.run_cycle()
            finally:
                service.close()
        assert result.ok, result.message
        metrics.archive_failed("ha_starting_vm")
        metrics.cycle(False, 50.0, reason="deadline")
        return httpx.get(server.url, timeout=10).text
    finally:
        server.shutdown()


@needs_promtool
def test_a_real_scrape_passes_promtool_check_metrics(tmp_path: Path) -> None:
    text = scraped_metrics(tmp_path)
    for sample in ("cloudstack_sidecar_archived_total{", "cloudstack_sidecar_api_calls_total{",
                   'cloudstack_sidecar_cycles_total{outcome="ok"} 1.0',
                   "cloudstack_sidecar_archive_failures_total{",
                   "cloudstack_sidecar_lease_held 1.0"):
        assert sample in text
    result = promtool("check", "metrics", stdin=text)
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout


@needs_promtool
def test_promtool_check_metrics_reports_a_counter_without_total() -> None:
    text = ("# HELP cloudstack_sidecar_cycles Reconcile cycles.\n"
            "# TYPE cloudstack_sidecar_cycles counter\n"
            "cloudstack_sidecar_cycles 1\n")
    result = promtool("check", "metrics", stdin=text)
    assert result.returncode != 0
    assert "_total" in result.stdout


# --- every metric named is exported ----------------------------------------------------------


@pytest.mark.parametrize(("expr", "names"), [
    ('sum by (job, le) (rate(a_bucket{job="x", le=~"1.*"}[5m])) / on (job) group_left b',
     {"a_bucket", "b"}),
    ("histogram_quantile(0.9, x) > 1e3 offset 5m and bool y", {"x", "y"}),
    ('time() - max by (instance) (c{instance=~"$instance"}[$__rate_interval])', {"c"}),
    ('absent(up{job="cloudstack-sidecar"})', {"up"}),
    ("job:m:rate5m{job=~\"$job\"} * 60", {"job:m:rate5m"}),
])
def test_metric_names_finds_the_selected_metrics_and_nothing_else(
    expr: str, names: set[str]
) -> None:
    assert metric_names(expr) == names


@pytest.mark.parametrize(("expr", "unknown"), [
    ('sum(rate(cloudstack_sidecar_archived_total{job="x"}[5m]))', set()),
    ("cloudstack_sidecar_cycle_duration_seconds_bucket", set()),
    ("cloudstack_sidecar_build_info", set()),
    ("job_family:cloudstack_sidecar_archived:rate5m", set()),
    # Made up, a counter without _total, a gauge with one, an unrecorded rule name:
    ("sum(rate(cloudstack_sidecar_made_up_total[5m]))", {"cloudstack_sidecar_made_up_total"}),
    ("rate(cloudstack_sidecar_archived[5m])", {"cloudstack_sidecar_archived"}),
    ("cloudstack_sidecar_lease_held_total", {"cloudstack_sidecar_lease_held_total"}),
    ("job:cloudstack_sidecar_made_up:rate5m", {"job:cloudstack_sidecar_made_up:rate5m"}),
    ("node_cpu_seconds_total", {"node_cpu_seconds_total"}),
])
def test_unknown_metrics_names_what_the_sidecar_does_not_export(
    expr: str, unknown: set[str]
) -> None:
    assert unknown_metrics(expr, exported_names(Metrics()), recorded_names()) == unknown


def test_every_metric_the_rules_and_the_dashboard_name_is_exported() -> None:
    exported, recorded = exported_names(Metrics()), recorded_names()
    queries = [(rule.get("alert") or rule["record"], rule["expr"]) for rule in rules()]
    queries += dashboard_exprs()
    assert len(queries) > 30
    unknown = {where: sorted(found) for where, expr in queries
               if (found := unknown_metrics(expr, exported, recorded))}
    assert unknown == {}


def test_the_dashboard_has_a_datasource_input_and_panels_for_what_operators_watch() -> None:
    dash = dashboard()
    assert dash["schemaVersion"] >= 36
    assert [i["name"] for i in dash["__inputs"]] == ["DS_PROMETHEUS"]
    targets = [inner for panel in dash["panels"] for inner in [panel, *panel.get("panels", [])]
               if inner.get("targets")]
    assert all(p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in targets)
    used = {name for _title, expr in dashboard_exprs() for name in metric_names(expr)}
    assert {
        "cloudstack_sidecar_cycles_total", "cloudstack_sidecar_cycle_failures_total",
        "cloudstack_sidecar_cycle_duration_seconds_bucket", "cloudstack_sidecar_duplicates",
        "cloudstack_sidecar_archived_total", "cloudstack_sidecar_ha_incidents_open",
        "cloudstack_sidecar_ha_backlog_vms", "cloudstack_sidecar_api_calls_total",
        "cloudstack_sidecar_api_call_duration_seconds_bucket", "cloudstack_sidecar_lease_held",
    } <= used
    assert any('reason="ledger"' in expr for _title, expr in dashboard_exprs())
