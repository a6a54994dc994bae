"""CloudStack-shaped state: inventory, the ``alert`` table with its indexes, ``op_ha_work``.

The alert table is columnar (one array per column, row id = list index + 1) and keeps the live
(non-archived) rows ordered by ``last_sent DESC`` in a blocked sorted list, overall and per
name and per type, so a page of listAlerts costs O(page), not O(table).
"""

from __future__ import annotations

import bisect
import random
import re
from array import array
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sidecar.constants import ALERT_TYPES, SUPPRESSED_NAMES

# --- ordered keys ----------------------------------------------------------------------------

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
    show a row on both pages and another on neither. Only the two edge groups are reordered:
    O(page + tie group).
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

    if head_end >= tail_start:  # one tie group covers the whole page
        window = shuffled(window)
    else:
        window = (
            shuffled(window[:head_end])
            + window[head_end:tail_start]
            + shuffled(window[tail_start:])
        )
    return window[start - lo : stop - lo]


# --- the alert table ---------------------------------------------------------------------------

LIVE, ARCHIVED, DELETED = 0, 1, 2

_NAME_CACHE: dict[str, str] = {}


def _intern(value: str) -> str:
    return _NAME_CACHE.setdefault(value, value)


def mysql_number(text: str) -> float:
    """How MySQL reads a string compared with a number: its numeric prefix, else 0."""
    match = re.match(r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)", text)
    return float(match.group(1)) if match else 0.0


def _collate(value: str) -> str:
    # utf8_general_ci: case-insensitive, trailing spaces ignored.
    return value.rstrip(" ").casefold()


def like_matcher(keyword: str) -> re.Pattern[str] | str:
    """``subject LIKE '%kw%'`` (case-insensitive; ``%``/``_`` wildcards, ``\\`` escapes)."""
    if not any(c in keyword for c in "%_\\"):
        return keyword.casefold()
    parts: list[str] = []
    escaped = False
    for char in keyword:
        if escaped:
            parts.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    if escaped:
        parts.append(re.escape("\\"))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


class AlertTable:
    """The ``alert`` table: columns, a uuid index and ``last_sent DESC`` indexes of live rows."""

    def __init__(self) -> None:
        self.uuid: list[str] = []
        self.type = array("i")
        self.name: list[str] = []
        self.subject: list[str] = []
        self.content: list[str | None] = []
        self.zone = array("q")
        self.pod = array("q")
        self.cluster = array("q")
        self.created = array("q")
        self.last_sent = array("q")
        self.flags = bytearray()
        self.by_uuid: dict[str, int] = {}
        self.live = SortedKeys()
        self.live_by_name: dict[str, SortedKeys] = {}
        self.live_by_type: dict[int, SortedKeys] = {}
        self.version = 0
        self._cache: OrderedDict[tuple[object, ...], tuple[int, list[int]]] = OrderedDict()
        self._lower: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.uuid)

    # -- writes -----------------------------------------------------------------------------

    def append_raw(
        self,
        uuid: str,
        type_: int,
        name: str,
        subject: str,
        content: str | None,
        zone: int,
        pod: int,
        cluster: int,
        created: int,
        last_sent: int,
        archived: bool = False,
    ) -> int:
        """Append a row without touching the indexes (bulk loads call :meth:`rebuild`)."""
        self.uuid.append(uuid)
        self.type.append(type_)
        self.name.append(_intern(name))
        self.subject.append(subject)
        self.content.append(content)
        self.zone.append(zone)
        self.pod.append(pod)
        self.cluster.append(cluster)
        self.created.append(created)
        self.last_sent.append(last_sent)
        self.flags.append(ARCHIVED if archived else LIVE)
        row = len(self.uuid)
        self.by_uuid[uuid] = row
        return row

    def insert(self, **columns: object) -> int:
        """Append a row and index it."""
        row = self.append_raw(**columns)  # type: ignore[arg-type]
        if self.flags[row - 1] == LIVE:
            self._index(row)
        self.version += 1
        return row

    def _index(self, row: int) -> None:
        key = alert_key(self.last_sent[row - 1], row)
        self.live.add(key)
        name = self.name[row - 1]
        self.live_by_name.setdefault(name, SortedKeys()).add(key)
        self.live_by_type.setdefault(self.type[row - 1], SortedKeys()).add(key)

    def _unindex(self, row: int) -> None:
        key = alert_key(self.last_sent[row - 1], row)
        self.live.discard(key)
        self.live_by_name[self.name[row - 1]].discard(key)
        self.live_by_type[self.type[row - 1]].discard(key)

    def rebuild(self) -> None:
        """Recreate every index from the columns (after bulk :meth:`append_raw`)."""
        sent = self.last_sent
        flags = self.flags
        keys = [alert_key(sent[i], i + 1) for i in range(len(self.uuid)) if flags[i] == LIVE]
        keys.sort()
        by_name: dict[str, list[int]] = {}
        by_type: dict[int, list[int]] = {}
        names = self.name
        types = self.type
        for key in keys:
            i = key_row(key) - 1
            by_name.setdefault(names[i], []).append(key)
            by_type.setdefault(types[i], []).append(key)
        self.live = SortedKeys.from_sorted(keys)
        self.live_by_name = {n: SortedKeys.from_sorted(k) for n, k in by_name.items()}
        self.live_by_type = {t: SortedKeys.from_sorted(k) for t, k in by_type.items()}
        self.version += 1
        self._cache.clear()

    def archive(self, row: int) -> bool:
        """Set ``archived=1``; True if the row was live."""
        if self.flags[row - 1] != LIVE:
            return False
        self._unindex(row)
        self.flags[row - 1] = ARCHIVED
        self.version += 1
        return True

    def delete(self, row: int) -> bool:
        """Hard-delete a row (it stays in the columns, flagged, but is gone for every query)."""
        state = self.flags[row - 1]
        if state == DELETED:
            return False
        if state == LIVE:
            self._unindex(row)
        self.flags[row - 1] = DELETED
        del self.by_uuid[self.uuid[row - 1]]
        self.version += 1
        return True

    # -- reads ------------------------------------------------------------------------------

    def is_live(self, row: int) -> bool:
        return 0 < row <= len(self.uuid) and self.flags[row - 1] == LIVE

    def exists(self, row: int) -> bool:
        return 0 < row <= len(self.uuid) and self.flags[row - 1] != DELETED

    def find_uuid(self, text: str) -> int | None:
        """Row of a uuid, compared like MySQL's case-insensitive collation."""
        row = self.by_uuid.get(text)
        if row is None and text != text.lower():
            row = self.by_uuid.get(text.lower())
        return row

    def live_suppressor(self, type_: int, zone: int, pod: int, cluster: int) -> int | None:
        """``AlertDao.getLastAlert``: a live row of this type number in this zone (and pod /
        cluster when given), else None."""
        keys = self.live_by_type.get(type_)
        if not keys:
            return None
        for key in keys:
            row = key_row(key)
            i = row - 1
            if self.zone[i] != zone:
                continue
            if pod and self.pod[i] != pod:
                continue
            if cluster and self.cluster[i] != cluster:
                continue
            return row
        return None

    def select(
        self,
        *,
        row: int | None = None,
        name: str | None = None,
        type_: str | None = None,
        keyword: str | None = None,
    ) -> OrderedView:
        """Live rows matching listAlerts' filters, as an ordered view of keys."""
        if row is not None:
            keys = []
            if self.is_live(row) and self._matches(row, name, type_, keyword):
                keys = [alert_key(self.last_sent[row - 1], row)]
            return ListView(keys)
        if name is None and type_ is None and keyword is None:
            return self.live
        narrow: list[SortedKeys] = []
        if name is not None:
            wanted = _collate(name)
            narrow = [v for n, v in self.live_by_name.items() if _collate(n) == wanted]
            if len(narrow) == 1 and type_ is None and keyword is None:
                return narrow[0]
        elif type_ is not None and keyword is None:
            value = mysql_number(type_)
            if value.is_integer() and int(value) in self.live_by_type:
                return self.live_by_type[int(value)]
            return ListView([])
        cache_key = (name, type_, keyword)
        cached = self._cache.get(cache_key)
        if cached is not None and cached[0] == self.version:
            self._cache.move_to_end(cache_key)
            return ListView(cached[1])
        sources: list[Iterator[int]] = (
            [iter(v) for v in narrow] if name is not None else [iter(self.live)]
        )
        out: list[int] = []
        for source in sources:
            for key in source:
                if self._matches(key_row(key), None, type_, keyword):
                    out.append(key)
        if len(sources) > 1:
            out.sort()
        self._cache[cache_key] = (self.version, out)
        if len(self._cache) > 32:
            self._cache.popitem(last=False)
        return ListView(out)

    def _matches(self, row: int, name: str | None, type_: str | None, keyword: str | None) -> bool:
        i = row - 1
        if name is not None and _collate(self.name[i]) != _collate(name):
            return False
        if type_ is not None and float(self.type[i]) != mysql_number(type_):
            return False
        if keyword is not None:
            subject = self.subject[i]
            lowered = self._lower.get(subject)
            if lowered is None:
                lowered = subject.casefold()
                if len(self._lower) < 200_000:
                    self._lower[subject] = lowered
            matcher = like_matcher(keyword)
            if isinstance(matcher, str):
                if matcher not in lowered:
                    return False
            elif matcher.search(subject) is None:
                return False
        return True

    def rows_for_filters(
        self,
        ids: list[int] | None,
        type_: str | None,
        start: float | None,
        end: float | None,
    ) -> list[int]:
        """``AlertDaoImpl`` archive/delete search: live rows matching every given filter
        (``id IN``, ``type =``, ``created BETWEEN`` or ``<= end``)."""
        if ids is not None:
            candidates = sorted({r for r in ids if self.is_live(r)})
        else:
            candidates = [key_row(k) for k in self.live]
        out = []
        type_value = mysql_number(type_) if type_ is not None else None
        for row in candidates:
            i = row - 1
            if type_value is not None and float(self.type[i]) != type_value:
                continue
            created = self.created[i]
            if start is not None and end is not None:
                if not (start <= created <= end):
                    continue
            elif end is not None and created > end:
                continue
            out.append(row)
        return out


# --- inventory -------------------------------------------------------------------------------


@dataclass(slots=True)
class Zone:
    id: int
    uuid: str
    name: str


@dataclass(slots=True)
class Pod:
    id: int
    uuid: str
    name: str
    zone_id: int


@dataclass(slots=True)
class Cluster:
    id: int
    uuid: str
    name: str
    pod_id: int
    zone_id: int


@dataclass(slots=True)
class Host:
    """A ``host`` row plus its Host-HA config (``ha_config`` False = no HA config row)."""

    id: int
    uuid: str
    name: str
    zone_id: int
    pod_id: int
    cluster_id: int
    ip: str
    created: float
    last_ping: int
    status: str = "Up"
    resource_state: str = "Enabled"
    type: str = "Routing"
    hypervisor: str = "KVM"
    disconnected: float | None = None
    removed: float | None = None
    update_count: int = 0
    ha_config: bool = True
    ha_enabled: bool = True
    ha_state: str = "Available"
    capacity: int = 32


@dataclass(slots=True)
class Vm:
    """A ``vm_instance`` row (``name`` is what alert texts print)."""

    id: int
    uuid: str
    name: str
    display_name: str
    instance_name: str
    vm_type: str
    state: str
    host_id: int | None
    last_host_id: int | None
    ha_enabled: bool
    zone_id: int
    pod_id: int
    account: str
    created: float
    last_updated: float
    update_count: int = 0
    removed: float | None = None


@dataclass(slots=True)
class HaWork:
    """An ``op_ha_work`` row (upstream columns) plus two simulator-only notes."""

    id: int
    instance_id: int
    type: str
    vm_type: str
    state: str
    host_id: int
    created: float
    step: str
    time_to_try: int
    updated: int
    tried: int = 0
    mgmt_server_id: int | None = None
    taken: float | None = None
    reason: str | None = None
    #: Simulator only: the failure this row belongs to, and how the worker ended it.
    failure_id: int = 0
    outcome: str = ""

    def as_row(self) -> dict[str, object]:
        """The row with upstream's column names (plus ``failure_id``/``outcome``)."""
        return {
            "id": self.id,
            "instance_id": self.instance_id,
            "type": self.type,
            "vm_type": self.vm_type,
            "state": self.state,
            "mgmt_server_id": self.mgmt_server_id,
            "host_id": self.host_id,
            "created": self.created,
            "tried": self.tried,
            "taken": self.taken,
            "step": self.step,
            "time_to_try": self.time_to_try,
            "updated": self.updated,
            "reason": self.reason,
            "failure_id": self.failure_id,
            "outcome": self.outcome,
        }


@dataclass(slots=True)
class Event:
    id: int
    uuid: str
    type: str
    level: str
    description: str
    account: str
    created: float
    state: str = "Completed"
    resource_id: str | None = None
    resource_type: str | None = None
    resource_name: str | None = None
    parent_id: str | None = None
    username: str = "system"


@dataclass(slots=True)
class AsyncJob:
    id: int
    uuid: str
    cmd: str
    account: str
    created: float
    status: int = 1
    result_code: int = 0
    result_type: str = "object"
    result: dict[str, object] | None = None
    completed: float | None = None
    instance_type: str | None = None
    instance_uuid: str | None = None


@dataclass(slots=True)
class Account:
    id: int
    uuid: str
    name: str
    user_uuid: str
    username: str


@dataclass(slots=True)
class ApiKey:
    """A user's API key pair and the role (set of allowed APIs; None = every API)."""

    key: str
    secret: str
    account: str
    role: frozenset[str] | None = None
    enabled: bool = True


@dataclass(slots=True)
class Setting:
    name: str
    value: str
    category: str
    description: str
    scope: str = "Global"
    isdynamic: bool = True
    component: str = "management-server"


@dataclass
class State:
    """Everything the API serves; guarded by the simulator's lock."""

    uuid_rng: random.Random
    zones: dict[int, Zone] = field(default_factory=dict)
    pods: dict[int, Pod] = field(default_factory=dict)
    clusters: dict[int, Cluster] = field(default_factory=dict)
    hosts: dict[int, Host] = field(default_factory=dict)
    vms: dict[int, Vm] = field(default_factory=dict)
    ha_work: list[HaWork] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    jobs: dict[int, AsyncJob] = field(default_factory=dict)
    accounts: dict[str, Account] = field(default_factory=dict)
    keys: dict[str, ApiKey] = field(default_factory=dict)
    settings: dict[str, Setting] = field(default_factory=dict)
    alerts: AlertTable = field(default_factory=AlertTable)
    domain_uuid: str = ""
    ms_uuid: str = ""
    _next: dict[str, int] = field(default_factory=dict)

    def new_uuid(self) -> str:
        """A random (seeded) version-4 UUID."""
        n = self.uuid_rng.getrandbits(128)
        n = (n & ~(0xF000 << 64)) | (0x4000 << 64)
        n = (n & ~(0xC000 << 48)) | (0x8000 << 48)
        h = f"{n:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def next_id(self, table: str) -> int:
        """The next auto-increment id of ``table``."""
        value = self._next.get(table, 0) + 1
        self._next[table] = value
        return value

    # -- lookups ----------------------------------------------------------------------------

    def host_by(self, ref: str | int) -> Host | None:
        """A host by db id, uuid or name."""
        if isinstance(ref, int):
            return self.hosts.get(ref)
        for host in self.hosts.values():
            if ref in (host.uuid, host.name):
                return host
        return None

    def find_uuid(self, kind: str, text: str) -> int | None:
        """``findByUuidIncludingRemoved`` for the entity kinds the API takes as parameters."""
        wanted = text.lower()
        table: dict[int, object]
        if kind == "alert":
            return self.alerts.find_uuid(text)
        if kind == "event":
            return next((e.id for e in self.events if e.uuid == wanted), None)
        table = {
            "zone": self.zones,
            "pod": self.pods,
            "cluster": self.clusters,
            "host": self.hosts,
            "vm": self.vms,
            "job": self.jobs,
        }.get(kind, {})  # type: ignore[assignment]
        for row_id, obj in table.items():
            if getattr(obj, "uuid", None) == wanted:
                return row_id
        if kind == "domain" and wanted == self.domain_uuid:
            return 1
        if kind == "account":
            for account in self.accounts.values():
                if account.uuid == wanted:
                    return account.id
        return None

    def vms_on_host(self, host_id: int) -> list[Vm]:
        """``VMInstanceDao.listByHostId``: VMs whose ``host_id`` is this host, by id."""
        return [vm for vm in self.vms.values() if vm.host_id == host_id and vm.removed is None]

    def pending_ha(self, instance_id: int, host_id: int) -> list[HaWork]:
        """HA rows of a VM on a host not yet Done/Cancelled/Error (the fix's query)."""
        return [
            w
            for w in self.ha_work
            if w.instance_id == instance_id
            and w.host_id == host_id
            and w.type == "HA"
            and w.step not in ("Done", "Cancelled", "Error")
        ]

    # -- the alert manager -------------------------------------------------------------------

    def send_alert(
        self,
        name: str,
        *,
        zone_id: int,
        pod_id: int,
        cluster_id: int = 0,
        subject: str,
        body: str | None,
        at: float,
    ) -> int | None:
        """``AlertManagerImpl.sendAlert``: store the alert unless its type is suppressed and a
        live row of the same type number exists in that zone (pod/cluster); returns the row."""
        type_ = ALERT_TYPES[name]
        if name in SUPPRESSED_NAMES and self.alerts.live_suppressor(
            type_, zone_id, pod_id, cluster_id
        ):
            return None
        when = int(at)
        return self.alerts.insert(
            uuid=self.new_uuid(),
            type_=type_,
            name=name,
            subject=subject,
            content=body,
            zone=zone_id,
            pod=pod_id,
            cluster=cluster_id,
            created=when,
            last_sent=when,
        )
