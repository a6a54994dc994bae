"""The whole history of host failures: per host, how often it failed and how many HA rounds.

The itemised HA incidents (ha.ha_incidents) are an operational view limited to a recent
window; these counts cover everything scanned, so a summary never hides old duplicate work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sidecar.model.plan import HostFailures
from sidecar.reconcile import fingerprint as fp
from sidecar.reconcile.buckets import Bucket
from sidecar.reconcile.indexes import HostResolver


@dataclass
class _Tally:
    host: str
    zone: str
    failures: int = 0
    rounds: int = 0
    last: datetime | None = None


def host_failures(
    families: Mapping[str, Sequence[Bucket]], resolver: HostResolver
) -> tuple[HostFailures, ...]:
    """Each host's failures (incidents of its "Host is down"), rounds and duplicate rounds,
    most failures first, then most duplicate rounds, then by name."""
    tallies: dict[str, _Tally] = {}
    for b in families.get(fp.HOST_IS_DOWN, ()):
        key = resolver.key(b.subject)
        host = resolver.hosts_by_id.get(key)
        name = host.name if host else b.subject.host
        zone = host.zonename if host and host.zonename else b.subject.zone
        tally = tallies.get(key)
        if tally is None:
            tally = tallies[key] = _Tally(name, zone)
        elif (name, zone) < (tally.host, tally.zone):  # one name whatever the input order
            tally.host, tally.zone = name, zone
        tally.failures += len(b.cuts)
        tally.rounds += len(b.alerts)
        last = b.at(b.cuts[-1])
        if tally.last is None or last > tally.last:
            tally.last = last
    ranked = sorted(
        (-t.failures, t.failures - t.rounds, t.host, t.zone, key)
        for key, t in tallies.items()
    )
    return tuple(
        HostFailures(t.host, key if not key.startswith(("db:", "name:")) else "", t.zone,
                     t.failures, t.rounds, t.rounds - t.failures, t.last)
        for *_, key in ranked
        if (t := tallies[key]).last is not None
    )


__all__ = ["host_failures"]
