"""The ledger: runs, observations, decisions and write-ahead actions, with a fenced lease.

SQLite by default, PostgreSQL or MariaDB/MySQL by URL; the schema is migrated by Alembic at start.

The names below are imported on first use (PEP 562): SQLAlchemy, SQLModel and Alembic take a
second to import, and every command module imports this package, ``--help`` included.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sidecar.errors import LedgerUnavailable

if TYPE_CHECKING:
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

#: Where each lazily imported name lives.
_LAZY = {
    **dict.fromkeys(("LEASE_NAME", "LeaseInfo", "StaleLeaseError"), "sidecar.ledger.lease"),
    **dict.fromkeys(
        ("ACTION_STATES", "ALREADY_GONE", "DONE", "FAILED", "HA", "INTENDED", "MERGE", "SENT"),
        "sidecar.ledger.models",
    ),
    **dict.fromkeys(
        (
            "NEEDS_WORK", "TRANSITIONS", "UNRESOLVED", "ActionRecord", "AlertSighting",
            "DecisionRecord", "InvalidTransitionError", "Ledger", "RunRecord", "action_key",
            "default_holder",
        ),
        "sidecar.ledger.store",
    ),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once imported, an ordinary module attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
