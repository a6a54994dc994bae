"""Builders and fakes shared by the ledger tests (imported as ``ledgerkit``)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sidecar.ledger import Ledger
from sidecar.ledger.holder import holder_for
from sidecar.model.plan import HAIncident, MergeGroup, Plan, Summary, VmRestarts
from sidecar.model.resources import Alert, Host, HostHA, format_cs_date

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


class FakeClock:
    """A settable, thread-safe clock returning aware UTC datetimes."""

    def __init__(self, start: datetime = T0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now


def make_alert(
    alert_id: str,
    *,
    sent: datetime = T0,
    name: str = "ALERT.USERVM",
    description: str = "HA starting VM i-2-10-VM",
    type_: int = 8,
) -> Alert:
    """An Alert as CloudStack lists it (with its raw JSON)."""
    raw = {
        "id": alert_id,
        "type": type_,
        "name": name,
        "description": description,
        "sent": format_cs_date(sent, 330),
    }
    return Alert.from_api(raw)


def make_group(
    group_id: str, canonical: str, duplicates: Sequence[str], *, fingerprint: str = "fp"
) -> MergeGroup:
    return MergeGroup(
        group_id=group_id,
        family="vm-ha",
        object="i-2-10-VM",
        fingerprint=fingerprint,
        alert_name="ALERT.USERVM",
        canonical=canonical,
        duplicates=tuple(duplicates),
        first_sent=T0,
        last_sent=T0 + timedelta(seconds=3),
        reason="same VM, same host, 3 s apart",
    )


def make_incident(incident_id: str, alert_ids: Sequence[str], *, rounds: int = 2) -> HAIncident:
    return HAIncident(
        incident_id=incident_id,
        host="kvm-01",
        host_id="h-1",
        zone="z1",
        started=T0,
        last_seen=T0 + timedelta(minutes=2),
        rounds=rounds,
        duplicate_rounds=rounds - 1,
        vms=(VmRestarts("vm-a", "i-2-10-VM", 2, "vm-a-id"),),
        backlog=(),
        restarted_more_than_once=("vm-a",),
        alert_ids=tuple(alert_ids),
        host_state="Down",
    )


def make_plan(groups: Sequence[MergeGroup] = (), incidents: Sequence[HAIncident] = ()) -> Plan:
    archive = tuple(d for g in groups for d in g.duplicates)
    return Plan(
        generated_at=T0,
        groups=tuple(groups),
        archive=archive,
        ha_incidents=tuple(incidents),
        summary=Summary(groups=len(groups), duplicates=len(archive)),
    )


def make_host(host_id: str, state: str, hastate: str = "Available", name: str = "") -> Host:
    return Host(
        id=host_id,
        name=name or f"kvm-{host_id}",
        state=state,
        hostha=HostHA(haenable=True, hastate=hastate),
    )


def start_archiving(ledger: Ledger, n: int = 3) -> tuple[int, int, list[tuple[MergeGroup, Alert]]]:
    """A run, the lease, a recorded group c0 <- d1..dn; returns (run, token, items)."""
    run = ledger.start_run("cleanup", "apply")
    group = make_group("g1", "c0", [f"d{i}" for i in range(1, n + 1)])
    ledger.record_plan(run, make_plan([group]))
    token = ledger.acquire_lease(120)
    assert token is not None
    return run, token, [(group, make_alert(d)) for d in group.duplicates]


class FakeCloud:
    """Alerts that are live until archived; counts successful archive calls per alert."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.live = set(ids)
        self.archived: dict[str, int] = {}
        self.lock = threading.Lock()

    def is_live(self, alert_id: str) -> bool:
        with self.lock:
            return alert_id in self.live

    def archive(self, ids: Sequence[str]) -> tuple[list[str], list[str]]:
        """Archive live ids; return (archived now, already gone)."""
        done: list[str] = []
        gone: list[str] = []
        with self.lock:
            for alert_id in ids:
                if alert_id in self.live:
                    self.live.discard(alert_id)
                    self.archived[alert_id] = self.archived.get(alert_id, 0) + 1
                    done.append(alert_id)
                else:
                    gone.append(alert_id)
        return done, gone


def resolve(ledger: Ledger, token: int, cloud: FakeCloud) -> None:
    """What the apply layer does first: settle unresolved intents by asking CloudStack."""
    for record in ledger.unresolved_actions():
        if not cloud.is_live(record.alert_id):
            ledger.mark(
                token, [record.alert_id], "done" if record.state == "sent" else "already-gone"
            )


def apply_batch(
    ledger: Ledger,
    run_id: int,
    token: int,
    cloud: FakeCloud,
    items: Sequence[tuple[MergeGroup, Alert]],
) -> list[str]:
    """Intend, send, archive, record: one write-ahead batch. Returns the ids archived now."""
    records = ledger.intend_archive(run_id, token, items)
    ids = [r.alert_id for r in records]
    if not ids:
        return []
    ledger.mark(token, ids, "sent")
    done, gone = cloud.archive(ids)
    if done:
        ledger.mark(token, done, "done")
    if gone:
        ledger.mark(token, gone, "already-gone")
    return done


@contextmanager
def child_process() -> Iterator[subprocess.Popen[bytes]]:
    """A live child process (it waits for its stdin to close); ended and reaped afterwards."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        yield child
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait()


def dead_holder() -> str:
    """The holder name of a process of this machine and boot that has exited (and been reaped)."""
    with child_process() as child:
        holder = holder_for(child.pid)
    return holder


#: The identity pieces of a holder after its ``@`` (sidecar.ledger.holder).
HOLDER_PIECES = ("machine", "boot", "pidns", "start")


def altered(holder: str, piece: str) -> str:
    """``holder`` with one identity piece (``HOLDER_PIECES``) changed to another valid value."""
    name, _, identity = holder.partition("@")
    parts = identity.split("/")
    index = HOLDER_PIECES.index(piece)
    value = parts[index]
    if value.isdigit() and piece in {"pidns", "start"}:
        parts[index] = str(int(value) + 1)
    else:
        parts[index] = "0" * 8 if value != "0" * 8 else "1" * 8
    return f"{name}@{'/'.join(parts)}"
