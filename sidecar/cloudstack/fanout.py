"""Concurrent calls that stop together: the first failure cancels the rest.

``asyncio.gather`` leaves the other calls running when one fails. They go on sending requests
to the management server after the cycle or cleanup has already failed, even after the client
is closed (httpx opens new connections for them), and whichever the event loop cancels at
shutdown before it started leaves an unawaited anyio ``try_connect`` coroutine behind
(anyio 4.14 and later). :func:`gather` waits for them to stop before it raises.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def gather(*calls: Coroutine[Any, Any, T]) -> list[T]:
    """Run ``calls`` concurrently; their results in order, or the first failure as it is.

    On a failure the others are cancelled and awaited first (an ``asyncio.TaskGroup``), so no
    request outlives the call. The failure is raised unwrapped, not as an ExceptionGroup:
    callers catch our ``CloudStackError`` types.
    """
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(call) for call in calls]
    except BaseExceptionGroup as failures:
        first = failures.exceptions[0]
        context = first.__context__
        try:
            raise first
        finally:
            # Raising here chains the group in as context; it only holds this failure again.
            first.__context__ = context
    return [task.result() for task in tasks]
