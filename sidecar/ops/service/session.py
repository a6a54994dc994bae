"""The event loop and CloudStack client a service keeps from one cycle to the next."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from sidecar.cloudstack.client import CloudStackClient
from sidecar.cloudstack.config import CloudStackConfig
from sidecar.ops.context import Context
from sidecar.support.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")


class Session:
    """One event loop and one client (one SSL context, one connection pool) across cycles.

    A failed cycle ``drop()``s them (they may hold a broken connection or ledger work in a
    worker thread), and the next cycle starts afresh.
    """

    def __init__(self, ctx: Context, *, on_call: Callable[[str, int, float], None]) -> None:
        self._ctx = ctx
        self._on_call = on_call
        self._runner: asyncio.Runner | None = None
        self._cs: CloudStackClient | None = None
        self._cs_made_for: tuple[CloudStackConfig, Settings] | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the kept event loop (made on first use)."""
        if self._runner is None:
            self._runner = asyncio.Runner(loop_factory=asyncio.new_event_loop)
        return self._runner.run(coro)

    async def client(self) -> CloudStackClient:
        """The kept client; a new one when the credentials, endpoint or settings changed."""
        wanted = (self._ctx.cloudstack, self._ctx.settings)
        if self._cs is not None and self._cs_made_for == wanted:
            return self._cs
        if self._cs is not None:
            old, self._cs = self._cs, None
            try:
                await old.aclose()
            except Exception as exc:  # the new client does not need the old connections
                log.debug("closing the previous CloudStack client failed: %s", exc)
        cs = self._ctx.client(on_call=self._on_call)
        await cs.__aenter__()
        self._cs, self._cs_made_for = cs, wanted
        return cs

    def drop(self) -> None:
        """Close the kept client and event loop (as ``asyncio.run`` would: pending tasks are
        cancelled, ledger work in worker threads is waited for)."""
        runner, cs = self._runner, self._cs
        self._runner, self._cs, self._cs_made_for = None, None, None
        if runner is None:
            return
        try:
            if cs is not None:
                runner.run(cs.aclose())
        except Exception as exc:  # the connection may be the broken thing
            log.debug("closing the CloudStack client failed: %s", exc)
        finally:
            runner.close()
