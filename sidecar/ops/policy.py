"""The reconciler policy of a command or the service, from the settings."""

from __future__ import annotations

import dataclasses

from sidecar.model.defaults import ping_detection
from sidecar.reconcile import Policy
from sidecar.support.settings import Settings


def policy_for(
    settings: Settings,
    families: frozenset[str] | None = None,
    *,
    detection: float | None = None,
) -> Policy:
    """The reconciler policy from settings, optionally limited to some families.

    ``detection``: the cloud's host-failure detection time (``sidecar.ops.detection``); by
    default the settings' ping.interval and ping.timeout decide it.
    """
    if detection is None:
        detection = ping_detection(settings.ping_interval, settings.ping_timeout)
    policy = Policy(gap_window=float(settings.alert_gap_window),
                    ha_backlog_after=float(settings.ha_backlog_after),
                    failure_detection=detection)
    if families is not None:
        policy = dataclasses.replace(policy, families=families)
    return policy
