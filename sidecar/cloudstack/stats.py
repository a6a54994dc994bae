"""What one client did: calls by command and status, bytes, retries, peak concurrency."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CallStats:
    """What one client did: calls by (command, status), bytes, retries, peak concurrency."""

    calls: Counter[tuple[str, int]] = field(default_factory=Counter)
    bytes_received: int = 0
    retries: int = 0
    max_concurrent: int = 0
    in_flight: int = 0
    seconds: float = 0.0
    rate_limited_seconds: float = 0.0

    @property
    def total(self) -> int:
        """Number of HTTP requests sent (including failed and retried ones)."""
        return sum(self.calls.values())

    def count(self, command: str | None = None, status: int | None = None) -> int:
        """Requests of ``command`` (any if None) that ended with ``status`` (any if None)."""
        return sum(
            n
            for (cmd, st), n in self.calls.items()
            if (command is None or cmd == command) and (status is None or st == status)
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary (status 0 = transport error)."""
        return {
            "calls": [
                {"command": cmd, "status": st, "count": n}
                for (cmd, st), n in sorted(self.calls.items())
            ],
            "total": self.total,
            "bytes_received": self.bytes_received,
            "retries": self.retries,
            "max_concurrent": self.max_concurrent,
            "seconds": round(self.seconds, 3),
            "rate_limited_seconds": round(self.rate_limited_seconds, 3),
        }
