"""Defaults shared by the settings and the reconciler's Policy: one home for each number."""

from __future__ import annotations

from typing import Final

#: Seconds between consecutive alerts of one fingerprint above which they are two incidents
#: when no host-state history decides (Settings.alert_gap_window, Policy.gap_window).
ALERT_GAP_WINDOW: Final = 600.0

#: Seconds after a host failure from which an HA-enabled VM not running elsewhere is HA
#: backlog (Settings.ha_backlog_after, Policy.ha_backlog_after).
HA_BACKLOG_AFTER: Final = 900.0

#: Seconds one ledger statement may wait for locks and run before it fails (and with it the
#: cycle, which the next cycle retries) (Settings.ledger_statement_timeout; the ledger's engine).
LEDGER_STATEMENT_TIMEOUT: Final = 15.0

#: CloudStack's ``ping.interval`` (seconds) and ``ping.timeout`` (a multiple of it) defaults
#: (engine/orchestration AgentManagerImpl): an agent silent for interval × timeout is timed out.
PING_INTERVAL: Final = 60.0
PING_TIMEOUT: Final = 2.5


def ping_detection(interval: float, timeout: float) -> float:
    """The earliest a host's "Host is down" can follow its death on the ping path, in seconds.

    The monitor times an agent out once its last ping is interval × timeout old; the last
    ping came at most one interval before the death, so (timeout − 1) × interval after it at
    the earliest (90 s by default), and investigation only adds to that.
    """
    return max(0.0, (timeout - 1.0) * interval)


#: The shortest host-failure detection time by CloudStack's defaults (Policy.failure_detection).
FAILURE_DETECTION: Final = ping_detection(PING_INTERVAL, PING_TIMEOUT)


def host_ha_detection(activity_interval: float, max_attempts: float) -> float:
    """The earliest Host HA can recover or fence a dead KVM host (then "Host is down"), seconds.

    HAManagerImpl decides only after ``kvm.ha.activity.check.max.attempts`` activity checks,
    ``kvm.ha.activity.check.interval`` apart (HAResourceCounter, ActivityCheckTask): at least
    (attempts − 1) × interval after the first failed health check (540 s by default).
    """
    return max(0.0, (max_attempts - 1.0) * activity_interval)


#: CloudStack's ``kvm.ha.activity.check.interval`` and ``.max.attempts`` defaults (KVMHAConfig).
KVM_HA_ACTIVITY_INTERVAL: Final = 60.0
KVM_HA_ACTIVITY_ATTEMPTS: Final = 10.0
