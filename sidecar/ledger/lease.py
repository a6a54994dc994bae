"""The leader lease: exactly one sidecar per ledger acts; every action carries a fencing token.

Also how a sidecar claims the lease, taking over at once from a process of this machine that
died (who a sidecar is, and when a holder is surely dead: ``sidecar.ledger.holder``).

A lease row holds (holder, token, expires_at). ``acquire`` is one conditional UPDATE: it renews
the lease when we hold it and takes it over when it has expired; a takeover increments the
token, a renewal keeps it. A write that acts (an intent or a state change) first locks the lease
row in the same transaction (``SELECT … FOR UPDATE``; ``BEGIN IMMEDIATE`` on SQLite) and checks
that the caller's token is the current one and unexpired, so a paused ex-leader cannot act.

Clock assumption: ``now`` comes from the caller's clock, not the database's. Sidecars sharing a
ledger must keep their clocks in sync (NTP) to well within the lease TTL; a sidecar whose clock
runs ahead may take over a lease early, which the fencing token still makes safe (the ex-leader's
next write is refused), but it costs a needless takeover.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

from sqlalchemy import case, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from sidecar.ledger.database import Database
from sidecar.ledger.holder import default_holder, holder_is_dead_here
from sidecar.ledger.schema import LEASES
from sidecar.ledger.sql import aware

T = TypeVar("T")

log = logging.getLogger(__name__)

#: The one lease of a ledger.
LEASE_NAME = "leader"

#: ``expires_at`` of a released lease: long past on every clock.
RELEASED = datetime(1970, 1, 1, tzinfo=UTC)


class StaleLeaseError(Exception):
    """The caller's fencing token is not the current lease's (or the lease expired): act no more."""


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """The current state of the lease."""

    name: str
    holder: str
    token: int
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime

    def valid_at(self, now: datetime) -> bool:
        """True while the lease has not expired (it is valid strictly before ``expires_at``)."""
        return now < self.expires_at


def read(conn: Connection, name: str = LEASE_NAME, *, lock: bool = False) -> LeaseInfo | None:
    """The lease row, optionally locked until the end of the transaction."""
    stmt = select(LEASES).where(LEASES.c.name == name)
    if lock:
        stmt = stmt.with_for_update()  # rendered as nothing on SQLite (BEGIN IMMEDIATE locks)
    row = conn.execute(stmt).mappings().first()
    if row is None:
        return None
    return LeaseInfo(**dict(row))


def acquire(
    conn: Connection, holder: str, ttl: float, now: datetime, name: str = LEASE_NAME
) -> int | None:
    """Take or renew the lease; the fencing token if we hold it now, else None.

    Must run in a transaction; an IntegrityError (a concurrent first INSERT) means we lost.
    """
    expires = now + timedelta(seconds=ttl)
    ours = LEASES.c.holder == holder
    # Column order matters on MySQL, which evaluates SET left to right with the new values:
    # token and acquired_at must read the old holder before holder is overwritten.
    stmt = (
        update(LEASES)
        .where(LEASES.c.name == name, ours | (LEASES.c.expires_at <= now))
        .ordered_values(
            (LEASES.c.token, case((ours, LEASES.c.token), else_=LEASES.c.token + 1)),
            (LEASES.c.acquired_at, case((ours, LEASES.c.acquired_at), else_=now)),
            (LEASES.c.holder, holder),
            (LEASES.c.renewed_at, now),
            (LEASES.c.expires_at, expires),
        )
    )
    if conn.execute(stmt).rowcount == 1:
        token = conn.execute(select(LEASES.c.token).where(LEASES.c.name == name)).scalar_one()
        return int(token)
    if conn.execute(select(LEASES.c.name).where(LEASES.c.name == name)).first() is not None:
        return None  # held by another sidecar and not expired
    conn.execute(
        insert(LEASES).values(
            name=name, holder=holder, token=1, acquired_at=now, renewed_at=now, expires_at=expires
        )
    )
    return 1


def release(conn: Connection, holder: str, now: datetime, name: str = LEASE_NAME) -> None:
    """Let another sidecar take over at once (only if we hold the lease)."""
    conn.execute(
        update(LEASES)
        .where(LEASES.c.name == name, LEASES.c.holder == holder)
        .values(expires_at=RELEASED, renewed_at=now)
    )


def check_fence(
    conn: Connection, holder: str, token: int, now: datetime, name: str = LEASE_NAME
) -> None:
    """Lock the lease row and raise StaleLeaseError unless ``token`` is current and unexpired."""
    lease = read(conn, name, lock=True)
    if lease is None:
        raise StaleLeaseError(f"no lease is held: acquire the lease before acting (token {token})")
    if lease.token != token or lease.holder != holder:
        raise StaleLeaseError(
            f"fencing token {token} of {holder!r} is stale: the lease is held by "
            f"{lease.holder!r} with token {lease.token}"
        )
    if not lease.valid_at(now):
        raise StaleLeaseError(
            f"the lease of {holder!r} (token {token}) expired at {lease.expires_at.isoformat()}: "
            f"renew it before acting"
        )


class Leases:
    """The lease as one sidecar (``holder``) sees it: take, renew, release, and fence writes."""

    def __init__(self, db: Database, holder: str, name: str = LEASE_NAME) -> None:
        self.db = db
        self.holder = holder
        self.name = name

    def acquire(self, ttl: float, *, now: datetime | None = None) -> int | None:
        """Take or renew the lease for ``ttl`` seconds; the fencing token, or None if held.

        A renewal keeps the token; a takeover (of an expired or released lease) increments it.
        ``now`` defaults to the ledger's clock (see the module docstring on clocks).
        """
        at = aware(now, "now") if now is not None else self.db.clock()

        def work(conn: Connection) -> int | None:
            return acquire(conn, self.holder, ttl, at, self.name)

        try:
            return self.db.write(work)
        except IntegrityError:
            return None  # another sidecar created the lease row at the same moment

    def release(self, *, holder: str | None = None) -> None:
        """Give the lease up, so that another sidecar may take over at once.

        Only if ``holder`` (by default this sidecar) holds it: ``claim_lease`` names a dead
        holder of this machine to release its lease.
        """
        now = self.db.clock()
        self.db.write(lambda conn: release(conn, holder or self.holder, now, self.name))

    def current(self) -> LeaseInfo | None:
        """The lease as stored, or None if never taken."""
        return self.db.read(lambda conn: read(conn, self.name))

    def write(self, work: Callable[[Connection], T], token: int) -> T:
        """Run ``work`` in a write transaction that first checks ``token`` (StaleLeaseError)."""

        def fenced(conn: Connection) -> T:
            check_fence(conn, self.holder, token, self.db.clock(), self.name)
            return work(conn)

        return self.db.write(fenced)


class LeaseOwner(Protocol):
    """What ``claim_lease`` needs of a ``Ledger`` (a protocol: ``store`` imports this module)."""

    def acquire_lease(self, ttl: float, *, now: datetime | None = None) -> int | None: ...

    def lease(self) -> LeaseInfo | None: ...

    def release_lease(self, *, holder: str | None = None) -> None: ...


def claim_lease(ledger: LeaseOwner, ttl: float) -> int | None:
    """Take or renew the ledger lease; the fencing token, or None while another sidecar acts.

    A lease left by a process of this machine and boot that died (``kill -9``, OOM, a crash) is
    taken over at once instead of after its TTL, so a rerun resumes immediately; when in doubt
    (``holder_is_dead_here``) it waits for the TTL. The takeover raises the fencing token, so
    the dead holder could not act even if it came back.
    """
    token = ledger.acquire_lease(ttl)
    if token is not None:
        return token
    lease = ledger.lease()
    if lease is None or not holder_is_dead_here(lease.holder):
        return None
    log.warning("taking over the ledger lease of %s: that process is gone", lease.holder)
    ledger.release_lease(holder=lease.holder)  # only the dead holder's own row matches
    return ledger.acquire_lease(ttl)


__all__ = [
    "LEASE_NAME",
    "LeaseInfo",
    "LeaseOwner",
    "Leases",
    "StaleLeaseError",
    "acquire",
    "check_fence",
    "claim_lease",
    "default_holder",
    "holder_is_dead_here",
    "read",
    "release",
]
