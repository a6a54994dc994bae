"""Fixtures of the use-case tests: the snapshots the service and cleanup hand to the planner."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from sidecar.ops import cleanup as cleanup_module
from sidecar.ops.service import cycle as service_module
from sidecar.reconcile import Snapshot, build_plan


def _spy(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> list[Snapshot]:
    """Every snapshot ``module`` hands to ``build_plan`` from now on."""
    seen: list[Snapshot] = []

    def spy(snapshot: Snapshot, *args: Any, **kwargs: Any) -> Any:
        seen.append(snapshot)
        return build_plan(snapshot, *args, **kwargs)

    monkeypatch.setattr(module, "build_plan", spy)
    return seen


@pytest.fixture
def planned(monkeypatch: pytest.MonkeyPatch) -> list[Snapshot]:
    """Every snapshot the service hands to the planner."""
    return _spy(monkeypatch, service_module)


@pytest.fixture
def cleanup_planned(monkeypatch: pytest.MonkeyPatch) -> list[Snapshot]:
    """Every snapshot cleanup hands to the planner."""
    return _spy(monkeypatch, cleanup_module)
