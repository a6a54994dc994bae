"""Statement helpers shared by the ledger's parts: chunked ``IN`` lists, bulk inserts, records."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import BindParameter, bindparam
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.sql.dml import Insert

T = TypeVar("T")

#: Largest ``IN (…)`` list per statement (SQLite's variable limit, MySQL's packet, plan caches).
CHUNK = 500

#: One expanding parameter for the chunked ``IN`` lists: the statement is built and cached
#: once instead of coercing 500 literals per chunk.
IDS: BindParameter[Any] = bindparam("ids", expanding=True)


def aware(value: datetime, name: str) -> datetime:
    """``value`` in UTC; a naive datetime is refused (ValueError naming the argument)."""
    if value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got the naive {value!r}")
    return value.astimezone(UTC)


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    """``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def unique(items: Iterable[str]) -> list[str]:
    """``items`` in order, each once."""
    return list(dict.fromkeys(items))


def newest(conn: Connection, stmt: Any, key: Any, limit: int | None) -> list[RowMapping]:
    """Rows of ``stmt`` oldest first by ``key``; with ``limit`` only the newest ones."""
    if limit is None:
        return list(conn.execute(stmt.order_by(key)).mappings().all())
    rows = list(conn.execute(stmt.order_by(key.desc()).limit(limit)).mappings().all())
    rows.reverse()
    return rows


#: Field names of each record dataclass, looked up once per class.
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def record(cls: type[T], row: RowMapping, **converted: Any) -> T:
    """The record dataclass ``cls`` from the same-named columns of ``row``.

    ``converted`` gives the fields whose record value is not the column's as read (e.g. a
    JSON list as a tuple); the other columns of ``row`` (its id) are left out.
    """
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    return cls(**{name: row[name] for name in names if name not in converted}, **converted)


def executemany(
    conn: Connection,
    stmt: Insert,
    rows: Sequence[Mapping[str, Any]],
    *,
    encoded: Collection[str] = (),
    constants: Mapping[str, Any] | None = None,
) -> None:
    """INSERT many rows with each column's type processing resolved once.

    The same SQL, the same bind processors (UTC conversion, JSON) and the same driver call
    as ``conn.execute(stmt, rows)``, without SQLAlchemy's per-row parameter machinery, which
    costs more than the database itself at 100k rows (tests/ledger/bench_ledger.py).
    Every row must give every column of the INSERT (no Python-side defaults are applied).
    The ``encoded`` columns already hold their database form (``Database.encoder``);
    ``constants`` are columns with one value for every row.
    """
    if not rows:
        return
    dialect = conn.dialect
    constants = constants or {}
    names = [*rows[0], *constants]
    compiled = stmt.compile(dialect=dialect, column_keys=names)
    table = stmt.table
    binds = list(compiled.positiontup or ()) if compiled.positional else list(compiled.binds)
    if set(binds) != set(names):
        raise ValueError(f"bulk insert needs exactly the columns {sorted(binds)}, got {names}")
    order = binds if compiled.positional else names
    columns: list[list[Any]] = []
    for name in order:
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if name in constants:
            value = constants[name]
            if process is not None and value is not None:
                value = process(value)
            columns.append([value] * len(rows))
            continue
        values = [row[name] for row in rows]
        if process is not None and name not in encoded:
            values = _processed(values, process)
        columns.append(values)
    params: list[Any]
    if compiled.positional:
        params = list(zip(*columns, strict=True))
    else:
        params = [dict(zip(order, values, strict=True)) for values in zip(*columns, strict=True)]
    conn.exec_driver_sql(compiled.string, params)


def _processed(values: list[Any], process: Callable[[Any], Any]) -> list[Any]:
    """Apply a bind processor, once per distinct value (a batch shares its timestamps)."""
    first = values[0]
    if all(value is first for value in values):  # one timestamp, run or token for the batch
        return [None if first is None else process(first)] * len(values)
    cache: dict[Any, Any] = {}
    out: list[Any] = []
    for value in values:
        if value is None:
            out.append(None)
            continue
        try:
            out.append(cache[value])
        except KeyError:
            out.append(cache.setdefault(value, process(value)))
        except TypeError:  # unhashable (a JSON dict)
            out.append(process(value))
    return out
