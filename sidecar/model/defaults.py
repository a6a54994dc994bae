"""Defaults shared by the settings and the reconciler's Policy: one home for each number."""

from __future__ import annotations

import math
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


#: Seconds between refreshes of CloudStack's ``InaccurateClock`` (hard-coded upstream), the
#: clock the management server records agent pings with and checks them against.
PING_CLOCK_REFRESH: Final = 60.0


def ping_detection(interval: float, timeout: float) -> float:
    """The earliest a host's "Host is down" can follow its silent death, in seconds.

    AgentManagerImpl's monitor times an agent out once its recorded last ping is more than
    T = interval × timeout old; both readings come from InaccurateClock, refreshed every 60 s,
    so they differ by whole minutes and the timeout needs a difference of 60 × (⌊T/60⌋ + 1).
    The last ping came up to one interval before the death, hence more than
    60 × ⌊T/60⌋ − interval after it (60 s by default, not the naive (timeout − 1) × interval
    = 90 s). An agent whose connection closes is investigated at once: a bound for silent
    deaths (power loss, panic, partition), the failures HA exists for.
    """
    window = interval * timeout
    return max(0.0, PING_CLOCK_REFRESH * math.floor(window / PING_CLOCK_REFRESH) - interval)


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
