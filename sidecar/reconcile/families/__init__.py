"""Alert families: which the sidecar may de-duplicate and how each splits into incidents."""

from sidecar.reconcile.families.policy import (
    FAMILIES,
    SPLIT_GAP,
    SPLIT_HISTORY,
    SPLIT_NEW_FAILURE,
    SPLIT_VM_RAN,
    FamilySpec,
    Policy,
)

__all__ = [
    "FAMILIES",
    "SPLIT_GAP",
    "SPLIT_HISTORY",
    "SPLIT_NEW_FAILURE",
    "SPLIT_VM_RAN",
    "FamilySpec",
    "Policy",
]
