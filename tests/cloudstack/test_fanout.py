"""Concurrent calls that stop together (sidecar.cloudstack.fanout)."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.cloudstack import fanout
from sidecar.cloudstack.errors import NotJsonError


async def _value(value: int, yields: int = 0) -> int:
    for _ in range(yields):
        await asyncio.sleep(0)
    return value


def test_results_come_in_the_order_of_the_calls_not_of_completion():
    async def go() -> list[int]:
        return await fanout.gather(_value(1, yields=3), _value(2), _value(3, yields=1))

    assert asyncio.run(go()) == [1, 2, 3]


def test_no_calls_gather_nothing():
    assert asyncio.run(fanout.gather()) == []


def test_the_first_failure_cancels_and_awaits_the_other_calls_before_it_is_raised():
    stopped: list[str] = []

    async def waits(name: str) -> None:
        try:
            await asyncio.Event().wait()  # until cancelled
        finally:
            stopped.append(name)

    async def fails() -> None:
        await asyncio.sleep(0)
        raise NotJsonError(status=200, content_type="text/html", reason="a login page")

    async def go() -> list[str]:
        with pytest.raises(NotJsonError):
            await fanout.gather(waits("a"), fails(), waits("b"))
        return list(stopped)  # what had stopped by the time the failure reached us

    assert sorted(asyncio.run(go())) == ["a", "b"]


def test_the_failure_is_raised_as_itself_with_its_own_context_not_as_a_group():
    async def fails() -> None:
        try:
            raise ValueError("bad JSON")
        except ValueError:
            raise NotJsonError(status=200, content_type="text/html", reason="broken JSON")  # noqa: B904

    async def go() -> None:
        await fanout.gather(fails(), _value(1))

    with pytest.raises(NotJsonError) as caught:
        asyncio.run(go())
    assert isinstance(caught.value.__context__, ValueError)
    assert not isinstance(caught.value, BaseExceptionGroup)


def test_cancelling_the_caller_cancels_every_call():
    stopped: list[str] = []

    async def waits(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.append(name)

    async def go() -> None:
        task = asyncio.ensure_future(fanout.gather(waits("a"), waits("b")))
        for _ in range(3):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert sorted(stopped) == ["a", "b"]
