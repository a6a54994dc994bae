"""CloudStack's HA queue (``op_ha_work``) as the sidecar reads it, and what it would merge.

Column meanings (cloudstack.md §8.4): ``type`` is the work type (``HA`` = restart), ``vm_type``
the VM type, ``step`` the work's progress, ``taken``/``mgmt_server_id`` set once a worker holds
the row, ``tried`` counts retries, ``time_to_try`` is ``currentTimeMillis() >> 10``, ``updated``
a copy of the VM's ``update_count``, ``reason`` exists from 4.20.1 only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Final

from sidecar.model.plan import iso

#: Steps a row never leaves: the work is over (HA work never writes Error, take() skips it not).
FINAL_STEPS: Final = ("Done", "Cancelled", "Error")
#: Steps of an untaken row that the sidecar may cancel exactly as CloudStack cancels work.
CANCELLABLE_STEPS: Final = ("Scheduled", "Investigating")


@dataclass(frozen=True, slots=True)
class HaWorkRow:
    """One ``op_ha_work`` row, every column (``reason`` None before 4.20.1), plus names."""

    id: int
    instance_id: int
    type: str
    vm_type: str
    state: str
    mgmt_server_id: int | None
    host_id: int | None
    created: datetime | None
    tried: int | None
    taken: datetime | None
    step: str
    time_to_try: int | None
    updated: int
    reason: str | None = None
    vm: str = ""
    """The VM's instance name (``vm_instance.instance_name``), when the join found it."""
    host: str = ""
    """The host's name (``host.name``), when the join found it."""

    @property
    def pending(self) -> bool:
        """An HA row whose work is not over (the fix's own definition)."""
        return self.type == "HA" and self.step not in FINAL_STEPS

    @property
    def cancellable(self) -> bool:
        """Pending, untaken by any worker, and still waiting to be investigated or run."""
        return (self.pending and self.taken is None and self.mgmt_server_id is None
                and self.step in CANCELLABLE_STEPS)

    @property
    def active(self) -> bool:
        """Pending but held by (or past) a worker: never touched."""
        return self.pending and not self.cancellable

    def to_json(self) -> dict[str, Any]:
        """Every column, dates as ISO-8601 (the ledger's full copy of a cancelled row)."""
        data = asdict(self)
        data["created"] = iso(self.created)
        data["taken"] = iso(self.taken)
        return data


@dataclass(frozen=True, slots=True)
class HaWorkGroup:
    """Two or more pending HA rows of one VM and host: one is kept, the others cancelled."""

    instance_id: int
    vm: str
    host_id: int | None
    keep: int
    cancel: tuple[int, ...]
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"instance_id": self.instance_id, "vm": self.vm, "host_id": self.host_id,
                "keep": self.keep, "cancel": list(self.cancel), "reason": self.reason}


@dataclass(frozen=True, slots=True)
class HostQueue:
    """The HA queue of one host: pending and running rows, the oldest pending one's age."""

    host_id: int | None
    host: str
    pending: int
    running: int
    oldest_pending_seconds: float | None

    def to_json(self) -> dict[str, Any]:
        return {"host_id": self.host_id, "host": self.host, "pending": self.pending,
                "running": self.running, "oldest_pending_seconds": self.oldest_pending_seconds}


@dataclass(frozen=True)
class HaWorkView:
    """The exact HA queue at ``read_at`` and the duplicate rows a merge would cancel.

    ``cancel`` is exactly the union of the groups' ``cancel`` lists (like ``Plan.archive``).
    """

    read_at: datetime
    pending: int
    running: int
    oldest_pending_seconds: float | None
    by_host: tuple[HostQueue, ...] = ()
    duplicates: tuple[HaWorkGroup, ...] = ()
    cancel: tuple[int, ...] = ()
    source: str = "database"
    rows: Mapping[int, HaWorkRow] = field(default_factory=dict, repr=False, compare=False)
    """The pending rows by id (not in the JSON contract): the ledger's copies come from here."""

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "read_at": iso(self.read_at),
            "pending": self.pending,
            "running": self.running,
            "oldest_pending_seconds": self.oldest_pending_seconds,
            "by_host": [h.to_json() for h in self.by_host],
            "duplicates": [g.to_json() for g in self.duplicates],
            "cancel": list(self.cancel),
        }
