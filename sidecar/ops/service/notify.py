"""systemd ``sd_notify``: readiness, status and watchdog pings, with the standard library only.

A ``Type=notify`` unit waits for ``READY=1``; ``WatchdogSec=`` expects ``WATCHDOG=1`` more often
than its period. Outside systemd (``NOTIFY_SOCKET`` unset) every call is a no-op, and no call ever
raises: a lost notification must not take the service down.

Usage::

    from sidecar.ops.service.notify import Notifier, watchdog_interval

    notifier = Notifier()                      # reads $NOTIFY_SOCKET once
    notifier.ready("polling every 60 s")       # after settings are valid and the ledger is open
    period = watchdog_interval()               # seconds, or None without WatchdogSec=
    ...
    notifier.watchdog()                        # after each completed cycle, never from a timer
    notifier.status("last cycle: 3 duplicates archived")
    ...
    notifier.stopping()                        # on SIGTERM, before draining
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


def _socket_address(environ: Mapping[str, str]) -> str | None:
    """The datagram address from ``NOTIFY_SOCKET`` (``@name`` is a Linux abstract socket)."""
    path = environ.get("NOTIFY_SOCKET", "")
    if not path:
        return None
    if path.startswith("@"):
        return "\0" + path[1:]
    if path.startswith("/"):
        return path
    # systemd 254+ may also pass vsock:CID:PORT (VMs); the sidecar never runs that way.
    log.debug("ignoring NOTIFY_SOCKET %r: not an AF_UNIX path", path)
    return None


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds of ``WatchdogSec=`` for this process, or None when no watchdog is armed.

    ``WATCHDOG_PID`` set to another process means the variables were inherited: not ours.
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1_000_000 if value > 0 else None


class Notifier:
    """Send ``sd_notify`` messages to systemd; silently does nothing outside systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._address = _socket_address(os.environ if environ is None else environ)

    @property
    def enabled(self) -> bool:
        """True when systemd gave us a notification socket."""
        return self._address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=value`` fields in one datagram; True if it was sent."""
        if self._address is None or not fields:
            return False
        # One datagram, one field per line: a newline inside a value would forge another field.
        payload = "\n".join(f.replace("\n", " ") for f in fields).encode("utf-8", "replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(payload, self._address)
        except OSError as exc:
            log.debug("sd_notify %s failed: %s", fields[0].split("=", 1)[0], exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        """Tell systemd start-up is complete (the unit leaves "activating")."""
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        """Set the one-line status shown by ``systemctl status``."""
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        """Ping the watchdog: proof that a cycle completed, not merely that the process lives."""
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str = "stopping") -> bool:
        """Tell systemd the service is shutting down on purpose."""
        return self.notify("STOPPING=1", f"STATUS={status}")


__all__ = ["Notifier", "watchdog_interval"]
