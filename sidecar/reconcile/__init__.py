"""The reconciler: from a Snapshot of alerts, hosts and VMs to a deterministic Plan.

Pure by contract: no I/O, no clock, no garbage-collector tuning, and no import of httpx,
requests, sqlmodel or sqlalchemy (tests/test_layers.py checks it in a fresh
interpreter).

Modules, in pipeline order: fingerprint (subject parsing), policy (families and Policy),
indexes (hosts, VMs, host failures), split (split rules), buckets (classification), dedup
(incidents and merge groups), ha (HA work per host failure), planner (``build_plan``).
"""

from sidecar.model.plan import (
    HAIncident,
    HostStateChange,
    MergeGroup,
    Plan,
    Snapshot,
    Summary,
    VmRestarts,
)
from sidecar.reconcile.fingerprint import (
    PARSED_FAMILIES,
    UNKNOWN,
    Subject,
    parse_subject,
)
from sidecar.reconcile.planner import build_plan
from sidecar.reconcile.policy import FAMILIES, FamilySpec, Policy


def fingerprint_of(name: str, description: str) -> tuple[str, str, str]:
    """(alert name, family, object) of one alert, as the planner keys it."""
    subject = parse_subject(description)
    return name, subject.family, subject.object


__all__ = [
    "FAMILIES",
    "PARSED_FAMILIES",
    "UNKNOWN",
    "FamilySpec",
    "HAIncident",
    "HostStateChange",
    "MergeGroup",
    "Plan",
    "Policy",
    "Snapshot",
    "Subject",
    "Summary",
    "VmRestarts",
    "build_plan",
    "fingerprint_of",
    "parse_subject",
]
