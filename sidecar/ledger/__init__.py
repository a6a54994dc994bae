"""The ledger: runs, observations, VM placements, decisions and write-ahead actions; a lease.

SQLite by default, PostgreSQL or MariaDB/MySQL by URL; the schema is migrated by Alembic at start.
"""

from sidecar.ledger.actions import (
    NEEDS_WORK,
    TRANSITIONS,
    UNRESOLVED,
    ActionRecord,
    InvalidTransitionError,
    PreparedIntents,
    action_key,
)
from sidecar.ledger.database import utcnow
from sidecar.ledger.decisions import DecisionRecord
from sidecar.ledger.hacancels import ALREADY_TAKEN, HA_CANCEL, ha_row_id
from sidecar.ledger.lease import (
    LEASE_NAME,
    LeaseInfo,
    StaleLeaseError,
    claim_lease,
    default_holder,
    holder_is_dead_here,
)
from sidecar.ledger.observations import AlertSighting
from sidecar.ledger.runs import RunRecord
from sidecar.ledger.schema import (
    ACTION_STATES,
    ALREADY_GONE,
    DONE,
    FAILED,
    HA,
    INTENDED,
    MERGE,
    SENT,
)
from sidecar.ledger.store import Ledger
from sidecar.support.errors import LedgerUnavailable

__all__ = [
    "ACTION_STATES",
    "ALREADY_GONE",
    "ALREADY_TAKEN",
    "DONE",
    "FAILED",
    "HA",
    "HA_CANCEL",
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
    "PreparedIntents",
    "RunRecord",
    "StaleLeaseError",
    "action_key",
    "claim_lease",
    "default_holder",
    "ha_row_id",
    "holder_is_dead_here",
    "utcnow",
]
