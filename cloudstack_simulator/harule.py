"""The fixed duplicate rule of issue 16, written again here so the sidecar's copy is checked.

Never imported from ``sidecar``: a bug shared by both copies would hide itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

_WAITING = ("Scheduled", "Investigating")
_FINISHED = ("Done", "Cancelled", "Error")


def _pending(row: Mapping[str, Any]) -> bool:
    return row["type"] == "HA" and row["step"] not in _FINISHED


def _cancellable(row: Mapping[str, Any]) -> bool:
    return row["taken"] is None and row["mgmt_server_id"] is None and row["step"] in _WAITING


def cancel_plan(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[int, int], tuple[int, list[int]]]:
    """Per (instance_id, host_id) group of two or more pending HA rows: (keep, cancel ids)."""
    groups: dict[tuple[int, int], list[Mapping[str, Any]]] = {}
    for row in rows:
        if _pending(row):
            groups.setdefault((int(row["instance_id"]), int(row["host_id"] or 0)), []).append(row)
    plan: dict[tuple[int, int], tuple[int, list[int]]] = {}
    for key, group in groups.items():
        if len(group) < 2:
            continue
        active = [r for r in group if not _cancellable(r)]
        if active:
            keep = min(int(r["id"]) for r in active)
            cancel = sorted(int(r["id"]) for r in group if _cancellable(r))
        else:
            # A retry (tried > 0) carries the history: keep it over a fresh copy.
            kept = min(group, key=lambda r: (-int(r["tried"] or 0), int(r["id"])))
            keep = int(kept["id"])
            cancel = sorted(int(r["id"]) for r in group if r is not kept)
        if cancel:
            plan[key] = (keep, cancel)
    return plan


def cancel_ids(rows: Iterable[Mapping[str, Any]]) -> list[int]:
    """Every row id the fixed rule cancels, ascending."""
    return sorted(i for _, ids in cancel_plan(rows).values() for i in ids)
