"""How hard one client may press the management server: rate, concurrency, timeout, retries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class LimitSource(Protocol):
    """Anything carrying the five limits by name (the application's ``Settings`` does)."""

    request_timeout: float
    requests_per_second: float
    max_concurrency: int
    max_retries: int
    retry_backoff: float


@dataclass(frozen=True)
class ClientLimits:
    """The client's share of the settings, so the HTTP layer never sees the whole application."""

    requests_per_second: float = 20.0
    """Default 20 req/s: well under CloudStack's api.throttling.max of 25/s per account."""

    max_concurrency: int = 4
    """Default 4 parallel requests: the MS serves API calls from a bounded thread pool."""

    request_timeout: float | None = None
    """Default None: the ``timeout`` of the cloudstack.ini section (cs's convention, 10 s)."""

    max_retries: int = 4
    """Default 4 retries for reads (and idempotent writes) on 5xx, 429 and transport errors."""

    retry_backoff: float = 0.5
    """Default 0.5 s first backoff, doubled per retry with jitter, capped at 30 s."""

    @classmethod
    def from_settings(cls, source: LimitSource) -> ClientLimits:
        """The limits named in ``source`` (its request timeout replaces the ini's)."""
        return cls(
            requests_per_second=source.requests_per_second,
            max_concurrency=source.max_concurrency,
            request_timeout=source.request_timeout,
            max_retries=source.max_retries,
            retry_backoff=source.retry_backoff,
        )
