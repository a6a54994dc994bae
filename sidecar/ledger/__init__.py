"""The ledger: runs, observations, decisions and write-ahead actions, with a fenced lease.

SQLite by default, PostgreSQL or MariaDB/MySQL by URL; the schema is migrated by Alembic at start.
"""

from sidecar.errors import LedgerUnavailable
from sidecar.ledger.lease import LEASE_NAME, LeaseInfo, StaleLeaseError
from sidecar.ledger.models import (
    ACTION_STATES,
    ALREADY_GONE,
    DONE,
    FAILED,
    HA,
    INTENDED,
    MERGE,
    SENT,
)
from sidecar.ledger.store import (
    NEEDS_WORK,
    TRANSITIONS,
    UNRESOLVED,
    ActionRecord,
    AlertSighting,
    DecisionRecord,
    InvalidTransitionError,
    Ledger,
    RunRecord,
    action_key,
    default_holder,
)

__all__ = [
    "ACTION_STATES",
    "ALREADY_GONE",
    "DONE",
    "FAILED",
    "HA",
    "INTENDED",
    "LEASE_NAME",
    "MERGE",
    "NEEDS_WORK",
    "SENT",
    "TRANSITIONS",
    "UNRESOLVED",
    "ActionRecord",
    "AlertSighting",
    "DecisionRecord",
    "InvalidTransitionError",
    "LeaseInfo",
    "Ledger",
    "LedgerUnavailable",
    "RunRecord",
    "StaleLeaseError",
    "action_key",
    "default_holder",
]
