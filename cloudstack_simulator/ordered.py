"""Ordered key lists behind the alert table's ``last_sent DESC`` indexes, and MySQL-like paging.

A key packs ``last_sent`` and the row id into one int whose ascending order is the table's
``last_sent DESC, id DESC`` order; a blocked sorted list of keys gives O(page) page reads.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from typing import Protocol

_SHIFT = 32
_LOW = (1 << _SHIFT) - 1


def alert_key(last_sent: int, row_id: int) -> int:
    """Sort key: ascending keys = ``last_sent DESC, id DESC`` (InnoDB's backward index scan)."""
    return -((last_sent << _SHIFT) | row_id)


def key_row(key: int) -> int:
    """Row id of a key."""
    return (-key) & _LOW


def key_sent(key: int) -> int:
    """``last_sent`` (epoch seconds) of a key."""
    return (-key) >> _SHIFT


def tie_bounds(last_sent: int) -> tuple[int, int]:
    """Smallest and largest key of rows with this ``last_sent``."""
    return alert_key(last_sent, _LOW), alert_key(last_sent, 0)


class OrderedView(Protocol):
    """What paging needs from an ordered key list."""

    def __len__(self) -> int: ...

    def bisect_left(self, key: int) -> int: ...

    def bisect_right(self, key: int) -> int: ...

    def slice(self, start: int, stop: int) -> list[int]: ...


class SortedKeys:
    """A sorted multiset of ints in blocks: O(√n) insert/remove, O(log n + k) positional slices."""

    LOAD = 512

    def __init__(self) -> None:
        self._blocks: list[list[int]] = []
        self._maxes: list[int] = []
        self._offsets: list[int] | None = None
        self._len = 0

    @classmethod
    def from_sorted(cls, keys: Sequence[int]) -> SortedKeys:
        """Build from already sorted keys."""
        out = cls()
        load = cls.LOAD
        out._blocks = [list(keys[i : i + load]) for i in range(0, len(keys), load)]
        out._maxes = [b[-1] for b in out._blocks]
        out._len = len(keys)
        return out

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[int]:
        for block in self._blocks:
            yield from block

    def add(self, key: int) -> None:
        """Insert ``key``."""
        self._offsets = None
        self._len += 1
        if not self._blocks:
            self._blocks.append([key])
            self._maxes.append(key)
            return
        i = bisect.bisect_left(self._maxes, key)
        if i == len(self._maxes):
            i -= 1
        block = self._blocks[i]
        bisect.insort(block, key)
        self._maxes[i] = block[-1]
        if len(block) > 2 * self.LOAD:
            half = len(block) // 2
            self._blocks[i : i + 1] = [block[:half], block[half:]]
            self._maxes[i : i + 1] = [block[half - 1], block[-1]]

    def discard(self, key: int) -> bool:
        """Remove one ``key``; False if absent."""
        i = bisect.bisect_left(self._maxes, key)
        if i == len(self._maxes):
            return False
        block = self._blocks[i]
        j = bisect.bisect_left(block, key)
        if j == len(block) or block[j] != key:
            return False
        del block[j]
        self._len -= 1
        self._offsets = None
        if block:
            self._maxes[i] = block[-1]
        else:
            del self._blocks[i]
            del self._maxes[i]
        return True

    def _prefix(self) -> list[int]:
        if self._offsets is None:
            offsets = [0] * len(self._blocks)
            total = 0
            for i, block in enumerate(self._blocks):
                offsets[i] = total
                total += len(block)
            self._offsets = offsets
        return self._offsets

    def bisect_left(self, key: int) -> int:
        i = bisect.bisect_left(self._maxes, key)
        if i == len(self._maxes):
            return self._len
        return self._prefix()[i] + bisect.bisect_left(self._blocks[i], key)

    def bisect_right(self, key: int) -> int:
        i = bisect.bisect_right(self._maxes, key)
        if i == len(self._maxes):
            return self._len
        return self._prefix()[i] + bisect.bisect_right(self._blocks[i], key)

    def slice(self, start: int, stop: int) -> list[int]:
        """Keys at positions ``start`` (inclusive) to ``stop`` (exclusive)."""
        start = max(0, start)
        stop = min(self._len, stop)
        if start >= stop:
            return []
        offsets = self._prefix()
        i = bisect.bisect_right(offsets, start) - 1
        out: list[int] = []
        pos = start - offsets[i]
        need = stop - start
        while need > 0 and i < len(self._blocks):
            block = self._blocks[i]
            chunk = block[pos : pos + need]
            out.extend(chunk)
            need -= len(chunk)
            i += 1
            pos = 0
        return out


class ListView:
    """An already sorted plain list behind the :class:`OrderedView` protocol."""

    def __init__(self, keys: list[int]) -> None:
        self.keys = keys

    def __len__(self) -> int:
        return len(self.keys)

    def bisect_left(self, key: int) -> int:
        return bisect.bisect_left(self.keys, key)

    def bisect_right(self, key: int) -> int:
        return bisect.bisect_right(self.keys, key)

    def slice(self, start: int, stop: int) -> list[int]:
        return self.keys[max(0, start) : max(0, stop)]


def page_with_unstable_ties(view: OrderedView, start: int, stop: int, salt: int) -> list[int]:
    """Rows ``start:stop`` where rows of equal ``last_sent`` straddling the page edges come in
    a per-``salt`` order.

    MySQL promises nothing about rows that tie on the ORDER BY column, and with LIMIT it may
    order them differently from one page to the next, so a tie group cut by a page edge can
    show a row on both pages and another on neither. Rows never cross a row with another
    ``last_sent``: each group is reordered only among itself, and only the two edge groups
    are (the page's rows between them are whole groups): O(page + tie group).
    """
    if start >= stop or start >= len(view):
        return []
    stop = min(stop, len(view))
    first = view.slice(start, start + 1)[0]
    last = view.slice(stop - 1, stop)[0]
    first_lo, first_hi = tie_bounds(key_sent(first))
    last_lo, last_hi = tie_bounds(key_sent(last))
    lo = view.bisect_left(first_lo)
    hi = view.bisect_right(last_hi)
    window = view.slice(lo, hi)
    head_end = bisect.bisect_right(window, first_hi)
    tail_start = bisect.bisect_left(window, last_lo)

    def shuffled(group: list[int]) -> list[int]:
        return sorted(group, key=lambda k: hash((salt, k))) if len(group) > 1 else group

    if key_sent(first) == key_sent(last):  # one tie group covers the whole page
        window = shuffled(window)
    else:
        window = (
            shuffled(window[:head_end])
            + window[head_end:tail_start]
            + shuffled(window[tail_start:])
        )
    return window[start - lo : stop - lo]
