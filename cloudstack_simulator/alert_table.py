"""The ``alert`` table: columns, a uuid index and ``last_sent DESC`` indexes of live rows.

The table is columnar (one array per column, row id = list index + 1) and keeps the live
(non-archived) rows ordered by ``last_sent DESC`` in a blocked sorted list, overall and per
name and per type, so a page of listAlerts costs O(page), not O(table).
"""

from __future__ import annotations

import re
import unicodedata
from array import array
from collections import OrderedDict
from collections.abc import Iterator

from cloudstack_simulator.ordered import ListView, OrderedView, SortedKeys, alert_key, key_row

LIVE, ARCHIVED, DELETED = 0, 1, 2

_NAME_CACHE: dict[str, str] = {}


def _intern(value: str) -> str:
    return _NAME_CACHE.setdefault(value, value)


def mysql_number(text: str) -> float:
    """How MySQL reads a string compared with a number: its numeric prefix, else 0."""
    match = re.match(r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)", text)
    return float(match.group(1)) if match else 0.0


def fold(text: str) -> str:
    """Text as utf8 collation compares it: accents dropped (NFKD without combining marks), case
    folded, so ``Hóst`` and ``host`` are equal."""
    if text.isascii():
        return text.lower()  # the common case, and what casefold does to ASCII
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def collate(value: str) -> str:
    # utf8_general_ci: case- and accent-insensitive, trailing spaces ignored.
    return fold(value.rstrip(" "))


def like_matcher(keyword: str) -> re.Pattern[str] | str:
    """``v LIKE '%kw%'`` under utf8 collation, for searching :func:`fold`-ed text (``%``/``_``
    wildcards, ``\\`` escapes)."""
    if not any(c in keyword for c in "%_\\"):
        return fold(keyword)
    parts: list[str] = []
    escaped = False
    for char in keyword:
        if escaped:
            parts.append(re.escape(fold(char)))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(fold(char)))
    if escaped:
        parts.append(re.escape("\\"))
    return re.compile("".join(parts), re.DOTALL)


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
        self._folded: dict[str, str] = {}

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
            wanted = collate(name)
            narrow = [v for n, v in self.live_by_name.items() if collate(n) == wanted]
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
        if name is not None and collate(self.name[i]) != collate(name):
            return False
        if type_ is not None and float(self.type[i]) != mysql_number(type_):
            return False
        if keyword is not None:
            subject = self.subject[i]
            folded = self._folded.get(subject)
            if folded is None:
                folded = fold(subject)
                if len(self._folded) < 200_000:
                    self._folded[subject] = folded
            matcher = like_matcher(keyword)
            if isinstance(matcher, str):
                if matcher not in folded:
                    return False
            elif matcher.search(folded) is None:
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
