"""The leader lease: exactly one sidecar per ledger acts; every action carries a fencing token.

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

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, insert, select, update
from sqlalchemy.engine import Connection

from sidecar.ledger.models import LEASES

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


__all__ = [
    "LEASE_NAME",
    "LeaseInfo",
    "StaleLeaseError",
    "acquire",
    "check_fence",
    "read",
    "release",
]
