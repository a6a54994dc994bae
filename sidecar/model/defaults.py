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
