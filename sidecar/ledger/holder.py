"""Who a sidecar is in leases and runs, and whether a lease holder is a process here that died.

A holder reads ``<host>:<pid>@<machine>/<boot>/<pidns>/<start>``, e.g.
``ms1:4242@3f9a0c1e/8e2b6d4a/4026531836/123456789``: the host name (for people), the pid, the
first 8 hex digits of the machine id (``/etc/machine-id``, else ``/var/lib/dbus/machine-id``)
and of the boot id (``/proc/sys/kernel/random/boot_id``), the inode of the pid namespace
(``/proc/self/ns/pid``) and the process's start time in clock ticks since boot (field 22 of
``/proc/<pid>/stat``). A piece that cannot be read is ``?``.

``holder_is_dead_here`` lets ``claim_lease`` take a lease over at once, not after its TTL, and
says so only when sure: the holder names this machine, this boot and this pid namespace, and its
pid is gone, a zombie, or now a later process (another start time: the pid was reused). Anything
else waits for the lease to expire: an unreadable file, a holder in the old ``host:pid`` form
or any other form, another machine, boot or pid namespace (two containers sharing a host name,
a kernel and even a machine id each have a pid 1 of their own), a pid /proc hides from us.
An early takeover would still be safe (the fencing token refuses the ex-holder's writes), but
it would let two sidecars act in turn; expiry is the price of doubt.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

#: Where the machine id is (systemd's file, then D-Bus's for systems without systemd).
MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
PID_NAMESPACE_LINK = Path("/proc/self/ns/pid")

#: Hex digits of the machine and boot ids in a holder: short enough to read, and 64 bits
#: together make two machines or boots that look alike very unlikely.
ID_DIGITS = 8

#: The host name's share of a holder (HOST_NAME_MAX on Linux): holders fit the 255-character
#: ``leases.holder`` and ``runs.holder`` columns with room for a ``cli:`` prefix.
HOST_CHARS = 64

UNKNOWN = "?"


def _hex_id(text: str) -> str | None:
    digits = text.strip().replace("-", "").lower()
    if len(digits) != 32 or any(c not in "0123456789abcdef" for c in digits):
        return None  # empty (an image's placeholder), "uninitialized", or garbage
    return digits


def machine_id() -> str | None:
    """This machine's id (32 hex digits), or None when no file holds a valid one."""
    for path in MACHINE_ID_FILES:
        try:
            found = _hex_id(path.read_text())
        except (OSError, UnicodeDecodeError):
            continue
        if found is not None:
            return found
    return None


def boot_id() -> str | None:
    """This boot's id (32 hex digits), or None when unreadable."""
    try:
        return _hex_id(BOOT_ID_FILE.read_text())
    except (OSError, UnicodeDecodeError):
        return None


def pid_namespace() -> str | None:
    """The inode of this process's pid namespace (``pid:[4026531836]`` -> ``4026531836``)."""
    try:
        link = os.readlink(PID_NAMESPACE_LINK)
    except OSError:
        return None
    inode = link.removeprefix("pid:[").removesuffix("]")
    return inode if inode.isdigit() else None


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def process_start(pid: int) -> int | None:
    """``pid``'s start time (clock ticks since boot); None when no live process has that pid.

    A zombie counts as gone: it can never act again. Raises OSError (or ValueError for an
    unexpected format) when /proc cannot tell.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if _pid_exists(pid):
            raise  # /proc hides it (hidepid): cannot tell its start time
        return None
    # Field 2 (the command) may hold spaces and parentheses: count from the last ")".
    fields = stat[stat.rfind(")") + 1 :].split()
    if ")" not in stat or len(fields) < 20 or not fields[19].isdigit():
        raise ValueError(f"unexpected /proc/{pid}/stat: {stat[:80]!r}")
    state, start = fields[0], int(fields[19])  # fields 3 and 22
    return None if state in {"Z", "X", "x"} else start


def _here() -> tuple[str, str, str]:
    """(machine, boot, pid namespace) of this process as a holder writes them."""
    machine, boot = machine_id(), boot_id()
    return (
        machine[:ID_DIGITS] if machine else UNKNOWN,
        boot[:ID_DIGITS] if boot else UNKNOWN,
        pid_namespace() or UNKNOWN,
    )


def holder_for(pid: int) -> str:
    """The holder name of process ``pid`` of this machine (see the module docstring)."""
    try:
        start = process_start(pid)
    except (OSError, ValueError):
        start = None
    identity = "/".join([*_here(), str(start) if start is not None else UNKNOWN])
    return f"{socket.gethostname()[:HOST_CHARS]}:{pid}@{identity}"


def default_holder() -> str:
    """This process's name in leases and runs: host, pid, machine, boot, namespace, start."""
    return holder_for(os.getpid())


def holder_is_dead_here(holder: str) -> bool:
    """True only when ``holder`` surely names a process of this machine and boot that is gone.

    See the module docstring: whenever unsure, False (the lease then waits for its expiry).
    """
    name, at, identity = holder.rpartition("@")
    _, colon, pid_text = name.rpartition(":")  # a ``cli:`` prefix stays in front
    parts = identity.split("/")
    if not at or not colon or not pid_text.isdigit() or len(parts) != 4:
        return False
    *where, start_text = parts
    here = _here()
    if UNKNOWN in here or tuple(where) != here or not start_text.isdigit():
        return False
    pid = int(pid_text)
    if pid <= 0:
        return False
    try:
        start = process_start(pid)
    except (OSError, ValueError):
        return False
    return start is None or start != int(start_text)


__all__ = [
    "boot_id",
    "default_holder",
    "holder_for",
    "holder_is_dead_here",
    "machine_id",
    "pid_namespace",
    "process_start",
]
