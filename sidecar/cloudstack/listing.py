"""Read what the reconciler needs from CloudStack: alerts of the HA families, hosts, VMs.

listAlerts sorts by ``last_sent`` only, with no tie-breaker, and duplicates often share a second:
rows tied across a page edge can show on both pages and another on neither. A full listing
therefore fills the gaps by fetching the pages around tied edges again until it holds ``count``
rows (bounded), and says whether it can be trusted as complete.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sidecar.cloudstack import fanout
from sidecar.cloudstack.client import CloudStackClient
from sidecar.cloudstack.errors import ParameterError
from sidecar.model.constants import DEDUP_ELIGIBLE_NAMES, MAX_PAGE_SIZE
from sidecar.model.resources import Alert, Host, VirtualMachine, parse_cs_date

log = logging.getLogger(__name__)

#: The alert names worth listing: the only ones the sidecar may ever archive.
ELIGIBLE_NAMES: tuple[str, ...] = tuple(sorted(DEDUP_ELIGIBLE_NAMES))

#: Rounds of re-fetching tied page edges before a listing is declared incomplete.
FILL_ROUNDS = 12

#: Page size of the service's newest-first alert polling: one small call per name when quiet.
NEW_ALERTS_PAGE_SIZE = 100


@dataclass(repr=False)
class AlertListing:
    """Alerts listed per name, and whether the listing can be trusted as complete."""

    alerts: list[Alert] = field(default_factory=list)
    consistent: bool = True
    counts: dict[str, int] = field(default_factory=dict)
    pages: int = 0

    @property
    def ids(self) -> set[str]:
        """Ids of every listed alert."""
        return {a.id for a in self.alerts}

    def __repr__(self) -> str:
        return (f"AlertListing(alerts={len(self.alerts)}, consistent={self.consistent}, "
                f"pages={self.pages})")

    def lazy_ids(self) -> Container[str]:
        """``ids`` built on the first ``in`` only (a million ids are ~60 MB; often unneeded)."""
        return _LazyIds(self)


class _LazyIds(Container[str]):
    def __init__(self, listing: AlertListing) -> None:
        self._listing = listing
        self._ids: set[str] | None = None

    def __contains__(self, item: object) -> bool:
        if self._ids is None:
            self._ids = self._listing.ids
        return item in self._ids


def now_utc() -> datetime:
    """The local wall clock, aware UTC."""
    return datetime.now(UTC)


def server_now(client: CloudStackClient) -> datetime:
    """The management server's clock (ours corrected by the skew its ``Date`` header showed).

    Alert times come from the server's clock; plans and host observations must use the same.
    """
    skew = client.clock_skew or 0.0
    return (now_utc() + timedelta(seconds=skew)).replace(microsecond=0)


def _sent_key(row: dict[str, Any]) -> str:
    return str(row.get("sent") or "")


def _rows(inner: dict[str, Any]) -> list[dict[str, Any]]:
    items = inner.get("alert") or []
    return [r for r in items if isinstance(r, dict)] if isinstance(items, list) else []


def _count(inner: dict[str, Any]) -> int | None:
    try:
        return int(inner["count"])
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class PageEdges:
    """All that tie handling needs of one page: its length and the ``sent`` runs at its ends.

    A listing keeps this instead of the page's rows: a million raw rows would cost GBs.
    """

    rows: int
    first: str = ""
    head: int = 0
    """Rows at the start of the page sent in the same second as the first."""
    last: str = ""
    tail: int = 0
    """Rows at the end of the page sent in the same second as the last."""

    @classmethod
    def of(cls, rows: Sequence[dict[str, Any]]) -> PageEdges:
        if not rows:
            return cls(0)
        keys = [_sent_key(r) for r in rows]
        head = 1
        while head < len(keys) and keys[head] == keys[0]:
            head += 1
        tail = 1
        while tail < len(keys) and keys[-1 - tail] == keys[-1]:
            tail += 1
        return cls(len(rows), keys[0], head, keys[-1], tail)


def tied_edges(pages: Mapping[int, PageEdges]) -> list[int]:
    """Edges ``e`` (between pages e and e+1) that cut a group of rows with one ``sent``.

    The last slot of page e and the first of page e+1 always hold members of a group that
    straddles the edge, whatever order the server chose for it on each request: equal ``sent``
    there is exactly the sign that rows of that group may be missing (or seen twice).
    """
    edges = []
    for number in sorted(pages):
        nxt = pages.get(number + 1)
        here = pages[number]
        if here.rows and nxt and nxt.rows and here.last == nxt.first:
            edges.append(number)
    return edges


@dataclass(frozen=True, slots=True)
class TieGroup:
    """Rows sharing one ``sent`` that page edges cut: positions ``start``..``stop - 1``."""

    sent: str
    start: int
    stop: int
    pages: tuple[int, ...]
    """The pages holding its rows."""


def tie_groups(pages: Mapping[int, PageEdges], size: int) -> list[TieGroup]:
    """Each group of rows with one ``sent`` that one or more page edges cut.

    Rows with one ``sent`` occupy a fixed, contiguous range of positions in the
    ``last_sent DESC`` order, whatever order the server picks inside it: from the group's
    first row on the page before its first edge to its last row on the page after its last
    edge (a group of more than a page spans whole pages in between).
    """
    groups: list[TieGroup] = []
    covered: set[int] = set()
    for edge in tied_edges(pages):
        if edge in covered:
            continue  # a later edge of a group already found (edges come in order)
        here = pages[edge]
        last = edge + 1
        covered.add(edge)
        while (
            pages[last].head == pages[last].rows
            and (nxt := pages.get(last + 1)) is not None
            and nxt.rows
            and nxt.first == here.last
        ):
            covered.add(last)
            last += 1
        start = (edge - 1) * size + here.rows - here.tail
        stop = (last - 1) * size + pages[last].head
        groups.append(TieGroup(here.last, start, stop, tuple(range(edge, last + 1))))
    return groups


def window_of(start: int, stop: int) -> tuple[int, int] | None:
    """(page, pagesize) of the smallest aligned window holding positions start..stop - 1."""
    for width in range(stop - start, MAX_PAGE_SIZE + 1):
        if start // width == (stop - 1) // width:
            return start // width + 1, width
    return None  # wider than a page: only whole pages can be fetched again


async def list_alerts_of_name(
    client: CloudStackClient,
    name: str,
    *,
    on_page: Callable[[int], None] | None = None,
) -> tuple[list[Alert], bool, int, int]:
    """Every live alert of ``name``: (alerts, complete, count, pages fetched).

    Pages 2..N are fetched concurrently; pages next to tied edges are fetched again until we
    hold ``count`` distinct alerts (at most FILL_ROUNDS rounds). Rows become ``Alert`` objects
    as their page arrives; of the pages only their edges are kept.
    """
    size = MAX_PAGE_SIZE
    fetched = 0
    pages: dict[int, PageEdges] = {}
    held: dict[str, Alert] = {}
    counts: set[int] = set()
    count = 0

    def take(number: int | None, inner: dict[str, Any]) -> None:
        nonlocal count
        rows = _rows(inner)
        if number is not None:
            pages[number] = PageEdges.of(rows)
        for row in rows:
            key = str(row.get("id") or "")
            if key not in held:
                held[key] = Alert.from_api(row)
        c = _count(inner)
        if c is not None:
            counts.add(c)
            count = c

    async def page(number: int, width: int = size, *, edge_of: bool = True) -> None:
        nonlocal fetched
        inner = await client.request(
            "listAlerts", {"name": name, "page": number, "pagesize": width}
        )
        fetched += 1
        if edge_of and on_page is not None:
            on_page(len(_rows(inner)))
        take(number if edge_of else None, inner)

    try:
        await page(1)
    except ParameterError:
        # The server's default.page.size is below ours: the client adopts it (no tie filling).
        rows, info = await client.list_all_with_info(
            "listAlerts", "alert", {"name": name}, on_page=on_page
        )
        alerts = list({a.id: a for a in map(Alert.from_api, rows)}.values())
        return alerts, info.consistent, info.count or len(alerts), info.pages
    last = max(1, math.ceil(count / size))
    await fanout.gather(*(page(n) for n in range(2, last + 1)))
    # Alerts may have arrived while we paged: go on until a short page.
    number = max(pages)
    while pages[number].rows == size:
        number += 1
        await page(number)
    for _ in range(FILL_ROUNDS):
        if len(held) >= count:
            break
        # Only the tied groups we hold fewer rows of than their width: one small request
        # covering such a group returns every member at once, in one consistent order; a
        # group wider than a page needs its pages again (the server's order inside it varies).
        groups = tie_groups(pages, size)
        if not groups:
            break  # nothing tied is short: rows came or went while we paged (see counts)
        when = {g.sent: parse_cs_date(g.sent) for g in groups}
        wanted = set(when.values())
        have = Counter(a.sent for a in held.values() if a.sent in wanted)
        short = [g for g in groups if have[when[g.sent]] < g.stop - g.start]
        if not short:
            break
        windows = {w for g in short if (w := window_of(g.start, g.stop))}
        whole = sorted({n for g in short if not window_of(g.start, g.stop) for n in g.pages})
        await fanout.gather(
            *(page(n, width, edge_of=False) for n, width in sorted(windows)),
            *(page(n) for n in whole),
        )
    complete = len(counts) <= 1 and len(held) == count
    if not complete:
        log.info(
            "listAlerts name=%s: holding %d rows of %d after re-fetching tied pages "
            "(counts seen %s)", name, len(held), count, sorted(counts),
        )
    return list(held.values()), complete, count, fetched


async def list_alerts_by_name(
    client: CloudStackClient,
    names: Iterable[str] = ELIGIBLE_NAMES,
    *,
    on_page: Callable[[int], None] | None = None,
) -> AlertListing:
    """List every live alert of ``names`` (one listing per name, pages concurrently)."""
    names = list(names)
    results = await fanout.gather(
        *(list_alerts_of_name(client, n, on_page=on_page) for n in names)
    )
    listing = AlertListing()
    for name, (alerts, complete, count, pages) in zip(names, results, strict=True):
        listing.counts[name] = count
        listing.pages += pages
        listing.consistent = listing.consistent and complete
        # An alert has one name for life: the per-name listings never share an id.
        listing.alerts.extend(alerts)
        alerts.clear()
    return listing


async def list_new_alerts(
    client: CloudStackClient,
    names: Iterable[str],
    *,
    known: Callable[[Sequence[str]], set[str]],
    not_before: datetime | None,
    watermarks: Mapping[str, datetime] | None = None,
    page_size: int = NEW_ALERTS_PAGE_SIZE,
) -> dict[str, list[Alert]]:
    """Newest-first alerts of each name, paging only as deep as new alerts can be.

    Paging of a name stops at a page that holds only ``known`` ids (seen before, per the
    ledger), or whose oldest row is older than the name's watermark (the newest ``sent`` seen
    in earlier polls: new alerts are stamped later) or than ``not_before`` (history the planner
    no longer needs): rows come newest first, so the next pages hold only older ones. A quiet
    poll therefore costs one small page per name. Rows tied on ``sent`` may swap across pages,
    so a stop never relies on the rows of one timestamp (``oldest`` must be strictly older).
    """
    marks = watermarks or {}

    async def one(name: str) -> list[Alert]:
        found: list[Alert] = []
        mark = marks.get(name)
        async for page in client.iter_pages(
            "listAlerts", "alert", {"name": name, "pagesize": min(page_size, MAX_PAGE_SIZE)}
        ):
            alerts = [Alert.from_api(r) for r in page]
            found.extend(alerts)
            ids = [a.id for a in alerts]
            times = [a.sent for a in alerts if a.sent is not None]
            oldest = min(times) if len(times) == len(alerts) and times else None
            if (
                (mark is not None and oldest is not None and oldest < mark)
                or (not_before is not None and oldest is not None and oldest < not_before)
                or len(known(ids)) == len(ids)  # a ledger read: only when the times say go on
            ):
                break
        return found

    names = list(names)
    results = await fanout.gather(*(one(n) for n in names))
    return dict(zip(names, results, strict=True))


async def list_hosts(client: CloudStackClient) -> list[Host]:
    """Hypervisor hosts (type Routing): the only hosts with HA-relevant VMs."""
    return await client.list_hosts(type="Routing")


async def list_vms_of_hosts(
    client: CloudStackClient, host_ids: Iterable[str]
) -> dict[str, list[VirtualMachine]]:
    """VMs still recorded on each of the given hosts (those HA must restart elsewhere)."""
    ids = sorted(set(host_ids))
    results = await fanout.gather(*(client.list_virtual_machines(hostid=h) for h in ids))
    return dict(zip(ids, results, strict=True))


async def list_all_vms(client: CloudStackClient) -> list[VirtualMachine]:
    """Every user VM of every account (``listall=true``): names, placement and HA flags.

    All of them, not only the HA-enabled ones: the planner leaves "Unable to restart <name>"
    alerts alone when two VMs share the name, so it must see every VM.
    """
    return await client.list_virtual_machines()
