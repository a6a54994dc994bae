"""Listing every row of a CloudStack list command: pages fetched together, rows de-duplicated.

CloudStack pages by offset with a ``count`` of all matching rows, and ``listAlerts`` sorts
without a tie-breaker, so rows can shift across pages while we read: every listing says how
consistent it was (``ListInfo``) and callers decide whether that is good enough.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.cloudstack import fanout
from sidecar.cloudstack.errors import ParameterError
from sidecar.cloudstack.signing import flatten_params
from sidecar.model.constants import MAX_PAGE_SIZE

log = logging.getLogger(__name__)

#: 431 text when ``pagesize`` exceeds the server's ``default.page.size``.
_MAX_PAGE_SIZE_TEXT = re.compile(r"max allowed page size value: (\d+)")


@dataclass(frozen=True)
class ListInfo:
    """How a full listing went; ``consistent`` False means rows may have been missed."""

    command: str
    pages: int
    count: int | None
    counts_seen: tuple[int, ...]
    rows: int
    duplicates: int

    @property
    def consistent(self) -> bool:
        """Count stable across pages, no row seen twice, and every counted row held."""
        return (
            len(set(self.counts_seen)) <= 1
            and self.duplicates == 0
            and self.rows >= (self.count or 0)
        )


@dataclass
class _Page:
    rows: list[dict[str, Any]]
    count: int | None


def _count(inner: Mapping[str, Any]) -> int | None:
    try:
        return int(inner["count"])
    except (KeyError, TypeError, ValueError, OverflowError):  # OverflowError: 1e999 is inf
        return None


class Paging:
    """Full listings on top of ``request`` (the client's one call with limits and retries)."""

    async def request(
        self, command: str, params: Mapping[str, Any] | None = None, *, idempotent: bool = False
    ) -> dict[str, Any]:
        raise NotImplementedError

    def _paging_params(self, params: Mapping[str, Any] | None) -> tuple[dict[str, str], int]:
        base = flatten_params(params)
        base.pop("page", None)
        try:
            size = int(base.get("pagesize", MAX_PAGE_SIZE))
        except ValueError:
            size = MAX_PAGE_SIZE
        size = MAX_PAGE_SIZE if size <= 0 else min(size, MAX_PAGE_SIZE)
        base["pagesize"] = str(size)
        return base, size

    async def _first_page(
        self,
        command: str,
        list_key: str,
        base: dict[str, str],
        on_page: Callable[[int], None] | None,
    ) -> tuple[_Page, int]:
        """Page 1; if the server's ``default.page.size`` is below ours, adopt it once."""
        try:
            return await self._page(command, list_key, base, 1, on_page), int(base["pagesize"])
        except ParameterError as exc:
            match = _MAX_PAGE_SIZE_TEXT.search(exc.errortext)
            if not match or int(match.group(1)) <= 0:
                raise
            size = int(match.group(1))
            log.info("%s: the server allows at most %d rows per page", command, size)
            base["pagesize"] = str(size)
            return await self._page(command, list_key, base, 1, on_page), size

    async def _page(
        self,
        command: str,
        list_key: str,
        base: Mapping[str, str],
        page: int,
        on_page: Callable[[int], None] | None = None,
    ) -> _Page:
        # ``{}`` = no rows at all; ``{"count": N}`` without the list key = past the end.
        inner = await self.request(command, {**base, "page": str(page)})
        rows = inner.get(list_key) or []
        if not isinstance(rows, list):
            rows = []
        if on_page is not None:
            on_page(len(rows))
        return _Page([r for r in rows if isinstance(r, dict)], _count(inner))

    async def list_all_with_info(
        self,
        command: str,
        list_key: str,
        params: Mapping[str, Any] | None = None,
        *,
        on_page: Callable[[int], None] | None = None,
    ) -> tuple[list[dict[str, Any]], ListInfo]:
        """Every row of a list command (de-duplicated by id) and how consistent it was."""
        base, _ = self._paging_params(params)
        first, size = await self._first_page(command, list_key, base, on_page)
        pages: dict[int, _Page] = {1: first}
        if len(first.rows) == size and first.count is not None and first.count > size:
            last = math.ceil(first.count / size)
            fetched = await fanout.gather(
                *(self._page(command, list_key, base, p, on_page) for p in range(2, last + 1))
            )
            pages.update(zip(range(2, last + 1), fetched, strict=True))
        # Rows may have been added while we paged: go on while the last page was full and the
        # newest count says there is more (no extra empty page when the total is a multiple
        # of the page size).
        number = max(pages)
        while len(pages[number].rows) == size:
            latest = pages[number].count
            if latest is not None and number * size >= latest:
                break
            number += 1
            pages[number] = await self._page(command, list_key, base, number, on_page)
        rows: list[dict[str, Any]] = []
        seen: set[Any] = set()
        duplicates = 0
        for number in sorted(pages):
            for row in pages[number].rows:
                row_id = row.get("id")
                if row_id is not None:
                    if row_id in seen:
                        duplicates += 1
                        continue
                    seen.add(row_id)
                rows.append(row)
        counts = tuple(p.count for _, p in sorted(pages.items()) if p.count is not None)
        info = ListInfo(
            command=command,
            pages=len(pages),
            count=counts[-1] if counts else None,
            counts_seen=counts,
            rows=len(rows),
            duplicates=duplicates,
        )
        if not info.consistent:
            log.info(
                "%s changed while paging (counts %s, %d duplicate rows, %d rows held)",
                command,
                sorted(set(counts)),
                duplicates,
                len(rows),
            )
        return rows, info

    async def list_all(
        self, command: str, list_key: str, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Every row of a list command, de-duplicated by id."""
        rows, _ = await self.list_all_with_info(command, list_key, params)
        return rows

    async def iter_pages(
        self, command: str, list_key: str, params: Mapping[str, Any] | None = None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield page after page (rows not seen on earlier pages), so a caller can stop early."""
        base, _ = self._paging_params(params)
        page, size = await self._first_page(command, list_key, base, None)
        seen: set[Any] = set()
        number = 1
        while True:
            if number > 1:
                page = await self._page(command, list_key, base, number)
            fresh = []
            for row in page.rows:
                row_id = row.get("id")
                if row_id is not None:
                    if row_id in seen:
                        continue
                    seen.add(row_id)
                fresh.append(row)
            if fresh:
                yield fresh
            if len(page.rows) < size:
                return
            number += 1
