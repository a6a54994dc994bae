"""The reconciler policy of a command or the service, from the settings."""

from __future__ import annotations

import dataclasses

from sidecar.reconcile import Policy
from sidecar.support.settings import Settings


def policy_for(settings: Settings, families: frozenset[str] | None = None) -> Policy:
    """The reconciler policy from settings, optionally limited to some families."""
    policy = Policy(gap_window=float(settings.alert_gap_window),
                    ha_backlog_after=float(settings.ha_backlog_after))
    if families is not None:
        policy = dataclasses.replace(policy, families=families)
    return policy
