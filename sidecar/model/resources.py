"""Typed, frozen views of the CloudStack objects the sidecar reads (pure: no I/O imports)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Final

from sidecar.model.constants import CS_DATE_FORMAT

_STANDARD_ALERT_KEYS = frozenset({"id", "type", "name", "description", "sent"})

#: One shared empty mapping for every alert without extra keys (a dict each costs 64 bytes).
_NO_RAW: Mapping[str, Any] = MappingProxyType({})


def parse_cs_date(value: str | None) -> datetime | None:
    """Parse a CloudStack date (``2021-10-03T10:59:51+0530``) into an aware UTC datetime."""
    if not value or not isinstance(value, str):
        return None  # a proxy or another release may send anything: refuse, never crash
    try:
        # fromisoformat (3.11+) takes Gson's ``+0530`` as well as ``+05:30`` and ``Z``, and is
        # ~20x faster than strptime: it dominates parsing a 100k-alert listing.
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = datetime.strptime(value, CS_DATE_FORMAT)
        except ValueError:
            return None
    if parsed.tzinfo is None:
        return None  # never guess a time zone
    return parsed.astimezone(UTC)


@lru_cache(maxsize=64)
def _cs_offset(offset_minutes: int) -> tuple[timedelta, str]:
    """The shift and the ``+hhmm`` suffix of a zone ``offset_minutes`` east of UTC."""
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return timedelta(minutes=offset_minutes), f"{sign}{hours:02d}{minutes:02d}"


def format_cs_date(value: datetime, offset_minutes: int = 0) -> str:
    """Render an aware datetime as CloudStack does, in a zone ``offset_minutes`` east of UTC.

    ``CS_DATE_FORMAT`` by hand: isoformat is C and several times faster than strftime (a
    cleanup renders every archived alert's ``sent``), and pads the year to four digits as
    Java does.
    """
    shift, suffix = _cs_offset(offset_minutes)
    local = value.astimezone(UTC) + shift
    return local.replace(tzinfo=None).isoformat(timespec="seconds") + suffix


def _str(raw: Mapping[str, Any], key: str, default: str = "") -> str:
    value = raw.get(key, default)
    return default if value is None else str(value)


def _bool(raw: Mapping[str, Any], key: str) -> bool:
    value = raw.get(key, False)
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


def _int(raw: Mapping[str, Any], key: str, default: int = -1) -> int:
    try:
        return int(raw.get(key, default))
    except (TypeError, ValueError, OverflowError):  # OverflowError: JSON's 1e999 is inf
        return default


@dataclass(frozen=True, slots=True)
class HostHA:
    """The ``hostha`` object of a host (Host-HA framework state)."""

    haenable: bool = False
    hastate: str = "Disabled"
    haprovider: str | None = None

    @classmethod
    def from_api(cls, raw: Mapping[str, Any] | None) -> HostHA:
        if not isinstance(raw, Mapping):
            return cls()
        provider = raw.get("haprovider")
        return cls(
            haenable=_bool(raw, "haenable"),
            hastate=_str(raw, "hastate", "Disabled"),
            haprovider=None if provider is None else str(provider),
        )


#: Host states in which HA for the host's VMs is under way or pending (``com.cloud.host.Status``).
FAILED_HOST_STATES: Final = frozenset({"Down", "Alert", "Disconnected", "Error"})


@dataclass(frozen=True, slots=True)
class Host:
    """A ``listHosts`` item."""

    id: str
    name: str
    state: str
    type: str = ""
    resourcestate: str = ""
    zoneid: str = ""
    zonename: str = ""
    podid: str = ""
    podname: str = ""
    clusterid: str = ""
    hypervisor: str = ""
    disconnected: datetime | None = None
    created: datetime | None = None
    hostha: HostHA = field(default_factory=HostHA)

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> Host:
        return cls(
            id=_str(raw, "id"),
            name=_str(raw, "name"),
            state=_str(raw, "state"),
            type=_str(raw, "type"),
            resourcestate=_str(raw, "resourcestate"),
            zoneid=_str(raw, "zoneid"),
            zonename=_str(raw, "zonename"),
            podid=_str(raw, "podid"),
            podname=_str(raw, "podname"),
            clusterid=_str(raw, "clusterid"),
            hypervisor=_str(raw, "hypervisor"),
            disconnected=parse_cs_date(raw.get("disconnected")),
            created=parse_cs_date(raw.get("created")),
            hostha=HostHA.from_api(raw.get("hostha")),
        )


@dataclass(frozen=True, slots=True)
class VirtualMachine:
    """A ``listVirtualMachines`` item (only what HA reasoning needs)."""

    id: str
    name: str
    instancename: str
    state: str
    haenable: bool = False
    hostid: str = ""
    hostname: str = ""
    zoneid: str = ""
    displayname: str = ""
    lastupdated: datetime | None = None

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> VirtualMachine:
        return cls(
            id=_str(raw, "id"),
            name=_str(raw, "name"),
            instancename=_str(raw, "instancename"),
            state=_str(raw, "state"),
            haenable=_bool(raw, "haenable"),
            hostid=_str(raw, "hostid"),
            hostname=_str(raw, "hostname"),
            zoneid=_str(raw, "zoneid"),
            displayname=_str(raw, "displayname"),
            lastupdated=parse_cs_date(raw.get("lastupdated")),
        )


#: One int object per UTC offset: offsets such as 330 (+0530) are above the small ints Python
#: shares, and a million alerts would otherwise hold a million 32-byte copies (27 MiB).
_OFFSETS: dict[int, int] = {}


# The copies of one defect share their second and are neighbours in a listing: a small cache
# catches them (65,536 entries caught no more and held 10 MiB through the planning).
@lru_cache(maxsize=4096)
def _cached_date(value: str) -> tuple[datetime | None, int | None]:
    parsed = parse_cs_date(value)
    # CloudStack's own shape (``yyyy-MM-dd'T'HH:mm:ssZ``, e.g. 2021-10-03T10:59:51+0530), which
    # parsed, renders back to the very same text: then only the offset needs keeping.
    if (
        parsed is None
        or len(value) != 24
        or value[19] not in "+-"
        or value[4] != "-" or value[7] != "-" or value[10] != "T"
        or value[13] != ":" or value[16] != ":"
        or value[19:] == "-0000"
    ):
        return parsed, None
    offset = (int(value[20:22]) * 60 + int(value[22:24])) * (-1 if value[19] == "-" else 1)
    return parsed, _OFFSETS.setdefault(offset, offset)


@dataclass(frozen=True, slots=True)
class Alert:
    """A ``listAlerts`` item; ``raw`` keeps the object exactly as CloudStack returned it."""

    id: str
    type: int
    name: str
    description: str
    sent: datetime | None
    # The factory returns the one shared empty mapping (a dict each is 64 bytes an alert).
    raw: Mapping[str, Any] = field(
        default_factory=lambda: _NO_RAW, compare=False, hash=False, repr=False
    )
    sent_text: str = field(default="", compare=False, hash=False, repr=False)
    """``sent`` as CloudStack wrote it, when ``sent_offset`` cannot render it back exactly."""
    sent_offset: int | None = field(default=None, compare=False, hash=False, repr=False)
    """Minutes east of UTC that ``sent`` was written in (``api_item`` renders it back)."""

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> Alert:
        value = raw.get("sent")
        sent, offset = _cached_date(value) if isinstance(value, str) else (None, None)
        return cls(
            id=_str(raw, "id"),
            type=_int(raw, "type"),
            name=sys.intern(_str(raw, "name")),
            # Duplicates share their subject: one string object for all copies.
            description=sys.intern(_str(raw, "description")),
            sent=sent,
            # A listing holds up to millions of alerts: keep the raw item only when it has more
            # than the five standard keys, and the text of ``sent`` only when it cannot be
            # rendered back; otherwise ``api_item()`` rebuilds the item exactly.
            raw=_NO_RAW if _STANDARD_ALERT_KEYS.issuperset(raw) else dict(raw),
            sent_text="" if offset is not None else str(value or ""),
            sent_offset=offset,
        )

    def api_item(self) -> dict[str, Any]:
        """The item exactly as ``listAlerts`` returned it."""
        if self.raw:
            return dict(self.raw)
        item: dict[str, Any] = {"id": self.id, "type": self.type, "name": self.name,
                                "description": self.description}
        if self.sent_text:
            item["sent"] = self.sent_text
        elif self.sent is not None and self.sent_offset is not None:
            item["sent"] = format_cs_date(self.sent, self.sent_offset)
        return item


@dataclass(frozen=True, slots=True)
class Event:
    """A ``listEvents`` item."""

    id: str
    type: str
    level: str
    description: str
    state: str = ""
    resourceid: str = ""
    resourcetype: str = ""
    created: datetime | None = None

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> Event:
        return cls(
            id=_str(raw, "id"),
            type=_str(raw, "type"),
            level=_str(raw, "level"),
            description=_str(raw, "description"),
            state=_str(raw, "state"),
            resourceid=_str(raw, "resourceid"),
            resourcetype=_str(raw, "resourcetype"),
            created=parse_cs_date(raw.get("created")),
        )


@dataclass(frozen=True, slots=True)
class AsyncJob:
    """A ``listAsyncJobs`` / ``queryAsyncJobResult`` item."""

    jobid: str
    jobstatus: int
    cmd: str = ""
    jobresultcode: int = 0
    jobresult: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    created: datetime | None = None

    PENDING = 0
    SUCCEEDED = 1
    FAILED = 2
    CANCELLED = 3

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> AsyncJob:
        result = raw.get("jobresult")
        return cls(
            jobid=_str(raw, "jobid"),
            jobstatus=_int(raw, "jobstatus", 0),
            cmd=_str(raw, "cmd"),
            jobresultcode=_int(raw, "jobresultcode", 0),
            jobresult=dict(result) if isinstance(result, Mapping) else {},
            created=parse_cs_date(raw.get("created")),
        )

    @property
    def done(self) -> bool:
        return self.jobstatus != self.PENDING
