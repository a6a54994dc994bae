"""How a long use case reports progress without knowing who watches (a terminal, a log, nobody)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


class Step(Protocol):
    """One phase of work: advanced as items finish, its total set when it becomes known."""

    def advance(self, n: int = 1) -> None: ...
    def total(self, n: int | None) -> None: ...


class Progress(Protocol):
    """Hands out steps; ``sidecar.cli.progress.Reporter`` draws them for people."""

    def step(self, label: str, total: int | None = None) -> AbstractContextManager[Step]: ...


class _SilentStep:
    def advance(self, n: int = 1) -> None:
        pass

    def total(self, n: int | None) -> None:
        pass


class Silent:
    """Progress nobody watches (the service, tests, benchmarks)."""

    @contextmanager
    def step(self, label: str, total: int | None = None) -> Iterator[Step]:
        yield _SilentStep()
