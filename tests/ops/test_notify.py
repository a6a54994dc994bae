# mypy: allow-untyped-defs
"""sd_notify against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.ops.service.notify import Notifier, watchdog_interval


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket in tmp_path, like systemd's /run/systemd/notify."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)  # a failure, not a timing assertion: a missing datagram must not hang
    yield sock, str(path)
    sock.close()


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_ready_sends_ready_and_status_in_one_datagram(notify_socket):
    sock, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("polling every 60 s") is True
    assert received(sock) == ["READY=1", "STATUS=polling every 60 s"]


def test_status_watchdog_and_stopping_send_their_fields(notify_socket):
    sock, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    notifier.status("cycle ok")
    notifier.watchdog()
    notifier.stopping()
    assert received(sock) == ["STATUS=cycle ok"]
    assert received(sock) == ["WATCHDOG=1"]
    assert received(sock) == ["STOPPING=1", "STATUS=stopping"]


def test_a_newline_in_a_status_cannot_forge_another_field(notify_socket):
    sock, path = notify_socket
    Notifier({"NOTIFY_SOCKET": path}).status("bad\nREADY=1")
    assert received(sock) == ["STATUS=bad READY=1"]


def test_notifier_reads_notify_socket_from_the_process_environment(notify_socket, monkeypatch):
    sock, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert Notifier().watchdog() is True
    assert received(sock) == ["WATCHDOG=1"]


def test_an_abstract_socket_name_with_a_leading_at_is_reached():
    name = f"sidecar-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready() is True
        assert received(sock) == ["READY=1"]


def test_without_notify_socket_every_call_is_a_silent_no_op():
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready("x") is False
    assert notifier.status("x") is False
    assert notifier.watchdog() is False
    assert notifier.stopping() is False


def test_a_vanished_socket_is_logged_at_debug_and_never_raises(tmp_path, caplog):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    with caplog.at_level(logging.DEBUG, logger="sidecar.ops.service.notify"):
        assert notifier.watchdog() is False
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]
    assert "WATCHDOG" in caplog.text


def test_a_non_unix_notify_socket_is_ignored():
    assert not Notifier({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled


def test_watchdog_interval_converts_microseconds_to_seconds():
    assert watchdog_interval({"WATCHDOG_USEC": "180000000"}) == 180.0


def test_watchdog_interval_honours_a_watchdog_pid_of_this_process():
    env = {"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval(env) == 5.0


def test_watchdog_interval_ignores_a_watchdog_meant_for_another_process():
    env = {"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert watchdog_interval(env) is None


@pytest.mark.parametrize("env", [{}, {"WATCHDOG_USEC": "0"}, {"WATCHDOG_USEC": "soon"},
                                 {"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": "x"}])
def test_watchdog_interval_is_none_without_a_valid_watchdog(env):
    assert watchdog_interval(env) is None


def test_watchdog_interval_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "2500000")
    assert watchdog_interval() == 2.5
