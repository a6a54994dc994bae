"""Parse CloudStack HA alert subjects into a family and the identity of the object they are about.

Every format comes from ``cloudstack.md`` §6 (old form = 4.19.x/4.20.0, new form = 4.20.1+).
Parsers are tolerant (runs of whitespace, a missing pod, ``NO POD``, ``(id:`` with or without a
space, host JSON keys in any order) but never guess: a subject no parser recognises entirely is
family ``unknown``, and an unknown subject is never touched.

Only the subject is visible through ``listAlerts`` (§4.3), so the identity is what the subject
names: a host by name/db id/uuid with its zone and pod, a VM by name and instance name.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Final, NamedTuple

#: Family of a subject no parser recognises; such alerts are never touched.
UNKNOWN: Final = "unknown"

HOST_DOWN: Final = "host_down"
"""``Host down, <id>`` (§6.1): the investigation found the host Down."""
HOST_IS_DOWN: Final = "host_is_down"
"""``Host is down, name: … (id:…), availability zone: …, pod: …`` (§6.2): one HA round."""
HOST_DISCONNECTED: Final = "host_disconnected"
"""``Host disconnected, name: … (id:<id or uuid>), …`` (§6.1): the agent went away."""
HOST_ALERT_STATE: Final = "host_alert_state"
"""``Host in ALERT state, …`` (§6.1), old ``name: … (id:…)`` or new ``Host {json}`` form."""
HA_STARTING_VM: Final = "ha_starting_vm"
"""``HA starting VM: <vm> (<instance>)`` (§6.2): one successful HA restart."""
UNABLE_TO_RESTART: Final = "unable_to_restart"
"""``Unable to restart <vm> which was running on host …`` (§6.2), both host forms."""
VM_STOPPED: Final = "vm_stopped"
"""``VM (name: …, id: …) stopped unexpectedly on host id:…`` (§6.2): a non-HA VM stopped."""
HOST_HA_ACTION: Final = "host_ha_action"
"""``HA Fencing|Recovery of host id=…, in dc id=… performed`` (§6.3, Host-HA framework)."""
VM_STATE_SYNC: Final = "vm_state_sync"
"""``VM state sync alert`` (§6.4): parsed, but CloudStack suppresses it itself (never archived)."""

#: Every family a subject can parse into (``unknown`` excluded).
PARSED_FAMILIES: Final = (
    HOST_DOWN,
    HOST_IS_DOWN,
    HOST_DISCONNECTED,
    HOST_ALERT_STATE,
    HA_STARTING_VM,
    UNABLE_TO_RESTART,
    VM_STOPPED,
    HOST_HA_ACTION,
    VM_STATE_SYNC,
)

#: Identity fields in the order the object string renders them.
IDENTITY_FIELDS: Final = (
    "vm",
    "instance",
    "vm_id",
    "host",
    "host_id",
    "host_uuid",
    "zone",
    "zone_id",
    "zone_uuid",
    "pod",
    "pod_id",
    "action",
)


class Subject(NamedTuple):
    """A parsed alert subject: its family, the identity it names, and which release form it had.

    ``host_id``/``zone_id``/``pod_id``/``vm_id`` are numeric database ids, ``host_uuid`` and
    ``zone_uuid`` API ids; empty means the subject does not name it. ``object`` renders the
    identity injectively (see render_object). A NamedTuple: immutable, and cheap to build for
    the tens of thousands of distinct subjects of a large history.
    """

    family: str
    form: str = ""
    vm: str = ""
    instance: str = ""
    vm_id: str = ""
    host: str = ""
    host_id: str = ""
    host_uuid: str = ""
    zone: str = ""
    zone_id: str = ""
    zone_uuid: str = ""
    pod: str = ""
    pod_id: str = ""
    action: str = ""
    object: str = ""

    @property
    def known(self) -> bool:
        return self.family != UNKNOWN

    def identity(self) -> dict[str, str]:
        """The non-empty identity fields (what the fixtures and tests compare)."""
        return {f: getattr(self, f) for f in IDENTITY_FIELDS if getattr(self, f)}


UNKNOWN_SUBJECT: Final = Subject(UNKNOWN)

#: A value holding none of these renders bare; others are JSON-quoted (injective rendering:
#: after normalise() the only whitespace left is the plain space).
_QUOTE_IF_ANY: Final = frozenset(' ="\\')


def _show(value: str) -> str:
    return value if _QUOTE_IF_ANY.isdisjoint(value) else json.dumps(value)


def render_object(fields: dict[str, str]) -> str:
    """``key=value`` pairs in IDENTITY_FIELDS order; values JSON-quoted unless plain.

    Quoting makes the rendering injective, so the string alone is a safe identity key.
    """
    return " ".join(
        f"{name}={_show(value)}" for name in IDENTITY_FIELDS if (value := fields.get(name, ""))
    )


# --- regexes (cloudstack.md §6.5, made whitespace-tolerant) --------------------------------
# Subjects are whitespace-normalised first (runs collapsed to one space, ends stripped), so
# ``\s?`` below only has to allow a separator space to be present or missing.

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_ID = rf"(?:\d+|{_UUID})"
# A JSON object whose strings may hold braces (names are free text).
_JSON_OBJ = r"\{(?:[^{}\"]|\"(?:[^\"\\]|\\.)*\")*\}"
# Old form ``name: <name> (id:<id>)``; ``Unable to restart`` has no space before ``(id:``.
_HOST_OLD = rf"name:\s?(?P<host>.+?)\s?\(id:\s?(?P<host_id>{_ID})\)"
# New form ``Host {"id":12,"name":"kvm-02","type":"Routing","uuid":"…"}`` (HostVO.toString).
_HOST_NEW = rf"Host\s?(?P<hjson>{_JSON_OBJ})"
_HOST = rf"(?:{_HOST_OLD}|{_HOST_NEW})"
# Zone: a name, or ``Zone {"id": "1", "name": …, "uuid": …}`` (DataCenterVO.toString, new form).
_ZONE = rf"(?:Zone\s?(?P<zjson>{_JSON_OBJ})|(?P<zone>.+?))"
# ``, pod: <pod>`` may be missing; ``NO POD`` is CloudStack's text for a host without a pod.
_ZONE_POD = rf",\s?availability zone:\s?{_ZONE}(?:,\s?pod:\s?(?P<pod>.*?))?"

_RE_HOST_DOWN = re.compile(rf"^Host down,\s?(?P<host_id>{_ID})$")
_RE_HOST_IS_DOWN = re.compile(rf"^Host is down,\s?{_HOST}{_ZONE_POD}$")
_RE_HOST_DISCONNECTED = re.compile(rf"^Host disconnected,\s?{_HOST}{_ZONE_POD}$")
_RE_HOST_ALERT_STATE = re.compile(rf"^Host in ALERT state,\s?{_HOST}{_ZONE_POD}$")
_RE_HA_STARTING_VM = re.compile(r"^HA starting VM:\s?(?P<vm>.+?)\s?\((?P<instance>[^()\s]+)\)$")
_RE_UNABLE_TO_RESTART = re.compile(
    rf"^Unable to restart (?P<vm>.+?) which was running on host\s?{_HOST}{_ZONE_POD}$"
)
_NUM_OR_NULL = r"(?:\d+|null)"
_RE_VM_STOPPED = re.compile(
    rf"^VM \(name:\s?(?P<vm>.+?),\s?id:\s?(?P<vm_id>\d+)\) stopped unexpectedly on host "
    rf"id:\s?(?P<host_id>{_NUM_OR_NULL}),\s?availability zone id:\s?(?P<zone_id>{_NUM_OR_NULL})"
    rf"(?:,\s?pod id:\s?(?P<pod_id>{_NUM_OR_NULL}))?$"
)
_RE_HOST_HA_ACTION = re.compile(
    r"^HA (?P<action>Fencing|Recovery) of host id=\s?(?P<host_id>\d+),\s?in dc id=\s?"
    r"(?P<zone_id>\d+) performed$"
)
_RE_VM_STATE_SYNC = re.compile(r"^VM state sync alert$")

#: Cheap prefix -> (family, regex): a subject is tried only against its prefix's parser.
_DISPATCH: Final[tuple[tuple[str, str, re.Pattern[str]], ...]] = (
    ("Host down,", HOST_DOWN, _RE_HOST_DOWN),
    ("Host is down,", HOST_IS_DOWN, _RE_HOST_IS_DOWN),
    ("Host disconnected,", HOST_DISCONNECTED, _RE_HOST_DISCONNECTED),
    ("Host in ALERT state,", HOST_ALERT_STATE, _RE_HOST_ALERT_STATE),
    ("HA starting VM:", HA_STARTING_VM, _RE_HA_STARTING_VM),
    ("Unable to restart ", UNABLE_TO_RESTART, _RE_UNABLE_TO_RESTART),
    ("VM (name:", VM_STOPPED, _RE_VM_STOPPED),
    ("HA Fencing of host", HOST_HA_ACTION, _RE_HOST_HA_ACTION),
    ("HA Recovery of host", HOST_HA_ACTION, _RE_HOST_HA_ACTION),
    ("VM state sync alert", VM_STATE_SYNC, _RE_VM_STATE_SYNC),
)
_FIRST_CHARS: Final = frozenset(prefix[0] for prefix, _, _ in _DISPATCH)
_IS_UUID = re.compile(_UUID)


def normalise(text: str) -> str:
    """Collapse whitespace runs to one space and strip the ends (the only rewrite done)."""
    return " ".join(text.split())


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _scalar(value: Any) -> str:
    """A JSON id or name as text (ids are numbers in Host JSON but strings in Zone JSON)."""
    if value is None or isinstance(value, bool | dict | list):
        return ""
    return normalise(str(value))


def _host_fields(groups: dict[str, str | None], out: dict[str, str]) -> bool:
    """Fill host identity from the old ``name: … (id:…)`` or new ``Host {json}`` text."""
    if groups.get("hjson"):
        data = _json_object(groups["hjson"] or "")
        if data is None:
            return False
        host_id, name, uuid = _scalar(data.get("id")), _scalar(data.get("name")), _scalar(
            data.get("uuid")
        )
        # Never guess: the new form always carries a numeric id, a name and a uuid.
        if not (host_id.isdigit() and name and uuid and _IS_UUID.fullmatch(uuid)):
            return False
        out.update(host=name, host_id=host_id, host_uuid=uuid.lower(), form="new")
        return True
    name = (groups.get("host") or "").strip()
    ident = groups.get("host_id") or ""
    if not name or not ident:
        return False
    out["host"] = name
    if ident.isdigit():
        out["host_id"] = ident
        out.setdefault("form", "old")
    else:
        # 4.20.1+ ``Host disconnected`` shows the uuid in the old-style text (§6.1).
        out["host_uuid"] = ident.lower()
        out["form"] = "new"
    return True


def _zone_pod_fields(groups: dict[str, str | None], out: dict[str, str]) -> bool:
    if groups.get("zjson"):
        data = _json_object(groups["zjson"] or "")
        if data is None:
            return False
        name, zone_id, uuid = _scalar(data.get("name")), _scalar(data.get("id")), _scalar(
            data.get("uuid")
        )
        if not name:
            return False
        out.update(zone=name, zone_id=zone_id if zone_id.isdigit() else "",
                   zone_uuid=uuid.lower())
        out["form"] = "new"
    else:
        zone = (groups.get("zone") or "").strip()
        if not zone:
            return False
        out["zone"] = zone
    pod = (groups.get("pod") or "").strip()
    # ``NO POD`` and a missing pod both mean "no pod": the same host either way.
    out["pod"] = "" if pod == "NO POD" else pod
    return True


def _null(value: str | None) -> str:
    return "" if value in (None, "null") else str(value)


def _parse(text: str) -> Subject:
    if not text or text[0] not in _FIRST_CHARS:
        return UNKNOWN_SUBJECT
    if text.startswith("HA starting VM:"):
        # Fast path: the most numerous distinct subject of a large history (one per VM).
        m = _RE_HA_STARTING_VM.match(text)
        if m is None:
            return UNKNOWN_SUBJECT
        vm, instance = m.group("vm", "instance")
        vm = vm.strip()
        if _QUOTE_IF_ANY.isdisjoint(vm) and _QUOTE_IF_ANY.isdisjoint(instance):
            return Subject._make((HA_STARTING_VM, "all", vm, instance, "", "", "", "", "", "",
                                  "", "", "", "", f"vm={vm} instance={instance}"))
        return _subject(HA_STARTING_VM, "all", {"vm": vm, "instance": instance})
    for prefix, family, regex in _DISPATCH:
        if not text.startswith(prefix):
            continue
        m = regex.match(text)
        if m is None:
            return UNKNOWN_SUBJECT
        out: dict[str, str] = {}
        if family == HOST_DOWN:
            ident = m["host_id"]
            if ident.isdigit():
                out["host_id"] = ident
            else:
                out["host_uuid"] = ident.lower()
        elif family in (HOST_IS_DOWN, HOST_DISCONNECTED, HOST_ALERT_STATE):
            groups = m.groupdict()
            if not (_host_fields(groups, out) and _zone_pod_fields(groups, out)):
                return UNKNOWN_SUBJECT
        elif family == HA_STARTING_VM:
            out.update(vm=m["vm"].strip(), instance=m["instance"])
        elif family == UNABLE_TO_RESTART:
            groups = m.groupdict()
            out["vm"] = m["vm"].strip()
            if not (out["vm"] and _host_fields(groups, out) and _zone_pod_fields(groups, out)):
                return UNKNOWN_SUBJECT
        elif family == VM_STOPPED:
            out.update(
                vm=m["vm"].strip(),
                vm_id=m["vm_id"],
                host_id=_null(m["host_id"]),
                zone_id=_null(m["zone_id"]),
                pod_id=_null(m["pod_id"]),
            )
        elif family == HOST_HA_ACTION:
            out.update(action=m["action"], host_id=m["host_id"], zone_id=m["zone_id"])
        # VM_STATE_SYNC: the subject names nothing (the VM is only in the hidden body).
        form = out.pop("form", "")
        if family in (HA_STARTING_VM, VM_STOPPED, HOST_HA_ACTION, VM_STATE_SYNC, HOST_DOWN):
            form = "all"  # same wording in every release (§6)
        return _subject(family, form, out)
    return UNKNOWN_SUBJECT


def _subject(family: str, form: str, fields: dict[str, str]) -> Subject:
    values = [fields.get(name, "") for name in IDENTITY_FIELDS]
    parts = [
        f"{name}={value if _QUOTE_IF_ANY.isdisjoint(value) else json.dumps(value)}"
        for name, value in zip(IDENTITY_FIELDS, values, strict=True)
        if value
    ]
    return Subject._make((family, form, *values, " ".join(parts)))


def parse_uncached(description: str) -> Subject:
    """parse_subject without the cache (for callers that see each text once)."""
    return _parse(normalise(description))


@lru_cache(maxsize=1 << 14)
def parse_subject(description: str) -> Subject:
    """Parse one alert subject (``listAlerts`` ``description``) into a Subject; cached."""
    return _parse(normalise(description))


__all__ = [
    "HA_STARTING_VM",
    "HOST_ALERT_STATE",
    "HOST_DISCONNECTED",
    "HOST_DOWN",
    "HOST_HA_ACTION",
    "HOST_IS_DOWN",
    "IDENTITY_FIELDS",
    "PARSED_FAMILIES",
    "UNABLE_TO_RESTART",
    "UNKNOWN",
    "UNKNOWN_SUBJECT",
    "VM_STATE_SYNC",
    "VM_STOPPED",
    "Subject",
    "normalise",
    "parse_subject",
    "parse_uncached",
    "render_object",
]
