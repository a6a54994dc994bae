"""Parsing of the flags that several commands share (``--family``, ``--since``, ``--format``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sidecar.model.resources import parse_cs_date
from sidecar.reconcile import FAMILIES
from sidecar.support.errors import UserError


def parse_families(values: Iterable[str]) -> frozenset[str] | None:
    """Validate ``--family`` values (``host-is-down`` or ``host_is_down``, comma lists too)."""
    chosen = {
        v.strip().lower().replace("-", "_")
        for raw in values
        for v in raw.split(",")
        if v.strip()
    }
    if not chosen:
        return None
    unknown = sorted(chosen - set(FAMILIES))
    if unknown:
        names = ", ".join(n.replace("_", "-") for n in sorted(FAMILIES))
        raise UserError(f"unknown family {', '.join(unknown)}: choose from {names}")
    return frozenset(chosen)


def parse_when(value: str | None, flag: str) -> datetime | None:
    """Parse ``--since/--until``: ISO-8601 with an offset (``2025-01-31T00:00:00+00:00``)."""
    if not value:
        return None
    parsed = parse_cs_date(value.strip())
    if parsed is None:
        raise UserError(
            f"{flag} {value!r} is not a date and time with a time zone: "
            "use e.g. 2025-01-31T00:00:00+00:00"
        )
    return parsed


def require_format(fmt: str, formats: Iterable[str]) -> None:
    """Refuse an unknown ``--format`` before any work is done."""
    if fmt not in formats:
        raise UserError(f"unknown format {fmt!r}: choose one of {', '.join(formats)}")
