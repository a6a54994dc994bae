"""Pause the cyclic garbage collector around planning a large history (owned by the caller).

Planning a million alerts allocates millions of acyclic containers (tuples, lists, dicts of
buckets and indexes) that live until the plan is built. Each allocation burst triggers
generational collections that rescan them all while they can never be garbage, which costs
seconds. The pure reconciler must not touch process-wide state, so the command that plans
pauses the collector, knowing whether other threads of its own run meanwhile.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic GC for the block; re-enable it after only if it was enabled before."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


__all__ = ["gc_paused"]
