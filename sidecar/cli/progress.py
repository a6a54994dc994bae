"""Progress display: rich bars on a terminal, plain log lines otherwise (journald, pipes, CI)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sidecar.ops.progress import Step


class _RichStep:
    def __init__(self, progress: Progress, task: int) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)  # type: ignore[arg-type]

    def total(self, n: int | None) -> None:
        self._progress.update(self._task, total=n)  # type: ignore[arg-type]


class _PlainStep:
    def __init__(self, label: str, stream: object) -> None:
        self._label, self._stream, self._done = label, stream, 0

    def advance(self, n: int = 1) -> None:
        self._done += n

    def total(self, n: int | None) -> None:
        pass

    def finish(self) -> None:
        print(f"{self._label}: {self._done}", file=self._stream)  # type: ignore[call-overload]


class Reporter:
    """Hands out progress steps (``sidecar.ops.progress.Progress``); rich only on a terminal."""

    def __init__(self, console: Console, *, enabled: bool = True) -> None:
        self.console = console
        self.rich = enabled and console.is_terminal
        self._progress: Progress | None = None

    @contextmanager
    def step(self, label: str, total: int | None = None) -> Iterator[Step]:
        if self.rich:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            ) as progress:
                yield _RichStep(progress, progress.add_task(label, total=total))
        else:
            plain = _PlainStep(label, sys.stderr)
            yield plain
            plain.finish()
