"""Who a sidecar is, and when a lease holder is surely a dead process of this machine and boot
(taken over at once); whenever unsure, the lease waits for its expiry."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest
from ledgerkit import altered, child_process, dead_holder

from sidecar.ledger import holder as holder_module
from sidecar.ledger.holder import (
    boot_id,
    default_holder,
    holder_for,
    holder_is_dead_here,
    machine_id,
    process_start,
)

needs_proc = pytest.mark.skipif(
    not Path("/proc/self/stat").exists() or boot_id() is None or machine_id() is None,
    reason="needs Linux /proc, a boot id and a machine id (/etc/machine-id)",
)


def _start_from_proc(pid: int) -> int:
    """Field 22 of /proc/<pid>/stat, read independently of the code under test."""
    after_command = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1]
    return int(after_command.split()[19])


@needs_proc
def test_the_default_holder_names_host_pid_machine_boot_namespace_and_start_time():
    holder = default_holder()

    host = re.escape(socket.gethostname())
    assert re.fullmatch(rf"{host}:{os.getpid()}@[0-9a-f]{{8}}/[0-9a-f]{{8}}/\d+/\d+", holder)
    machine, boot, pidns, start = holder.partition("@")[2].split("/")
    etc = Path("/etc/machine-id")
    etc_id = etc.read_text().strip() if etc.exists() else ""
    expected = etc_id or Path("/var/lib/dbus/machine-id").read_text().strip()
    assert machine == expected[:8]
    assert boot == Path("/proc/sys/kernel/random/boot_id").read_text().replace("-", "")[:8]
    assert pidns == os.readlink("/proc/self/ns/pid").removeprefix("pid:[").removesuffix("]")
    assert int(start) == _start_from_proc(os.getpid())
    assert default_holder() == holder  # stable for the life of the process


def test_a_holder_fits_the_ledger_columns_even_with_a_long_host_name(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(socket, "gethostname", lambda: "h" * 300)

    holder = default_holder()

    assert len(f"cli:{holder}") <= 255  # leases.holder and runs.holder are VARCHAR(255)
    assert holder.startswith("h" * 64 + f":{os.getpid()}@")


@needs_proc
def test_ourselves_and_a_live_process_are_alive():
    assert not holder_is_dead_here(default_holder())
    with child_process() as child:
        assert not holder_is_dead_here(holder_for(child.pid))


@needs_proc
def test_a_gone_process_of_this_machine_and_boot_is_dead_even_behind_a_prefix():
    gone = dead_holder()

    assert holder_is_dead_here(gone)
    assert holder_is_dead_here(f"cli:{gone}")  # ``ledger`` commands name themselves so


@needs_proc
def test_a_reused_pid_is_dead_the_process_that_held_the_lease_is_gone():
    with child_process() as child:
        # Same pid, another start time: a later process got the pid of the holder.
        assert holder_is_dead_here(altered(holder_for(child.pid), "start"))


@needs_proc
def test_a_zombie_is_dead_it_can_never_act_again():
    with child_process() as child:
        holder = holder_for(child.pid)
        assert child.stdin is not None
        child.stdin.close()
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped

        assert holder_is_dead_here(holder)


@needs_proc
@pytest.mark.parametrize("piece", ["machine", "boot", "pidns"])
def test_a_gone_pid_of_another_machine_boot_or_pid_namespace_waits_for_expiry(piece: str):
    # Containers may share a host name, a kernel (boot id) and an image's machine id, and
    # each has its own pid 1: a pid that is gone here may be alive over there.
    assert not holder_is_dead_here(altered(dead_holder(), piece))


@needs_proc
@pytest.mark.parametrize("holder", [
    "sidecar-a",  # a chosen name
    "check",
    "{host}:{pid}",  # the old host:pid form
    "{host}:x@{identity}",
    "{host}:0@{identity}",
    "{host}:{pid}@{identity}/extra",
    "{host}:{pid}@?/?/?/?",
])
def test_a_holder_in_another_form_waits_for_expiry(holder: str):
    name, _, identity = dead_holder().partition("@")
    host, _, pid = name.rpartition(":")

    assert not holder_is_dead_here(holder.format(host=host, pid=pid, identity=identity))


@needs_proc
@pytest.mark.parametrize("broken", ["machine_id", "boot_id", "pid_namespace"])
def test_an_unreadable_identity_here_waits_for_expiry(monkeypatch: pytest.MonkeyPatch,
                                                      broken: str):
    gone = dead_holder()
    monkeypatch.setattr(holder_module, broken, lambda: None)

    assert not holder_is_dead_here(gone)
    assert "?" in default_holder()  # and this process's own holder says what it lacks


@needs_proc
def test_an_unreadable_proc_waits_for_expiry(monkeypatch: pytest.MonkeyPatch):
    gone = dead_holder()

    def unreadable(pid: int) -> int | None:
        raise PermissionError(13, "Permission denied", f"/proc/{pid}/stat")

    monkeypatch.setattr(holder_module, "process_start", unreadable)

    assert not holder_is_dead_here(gone)
    assert default_holder().endswith("/?")


@needs_proc
def test_a_pid_that_proc_hides_but_that_exists_waits_for_expiry(monkeypatch: pytest.MonkeyPatch):
    # /proc mounted with hidepid=2 hides other users' processes (ENOENT), yet they run.
    with child_process() as child:
        holder = holder_for(child.pid)
        real_read = Path.read_text

        def hidden(path: Path, *args: object, **kwargs: object) -> str:
            if path == Path(f"/proc/{child.pid}/stat"):
                raise FileNotFoundError(2, "No such file or directory", str(path))
            return real_read(path, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Path, "read_text", hidden)

        assert not holder_is_dead_here(holder)
        with pytest.raises(FileNotFoundError):
            process_start(child.pid)


def test_the_machine_id_falls_back_to_dbus_and_skips_empty_or_invalid_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
):
    etc, dbus = tmp_path / "machine-id", tmp_path / "dbus-machine-id"
    dbus.write_text("0123456789abcdef0123456789abcdef\n")
    monkeypatch.setattr(holder_module, "MACHINE_ID_FILES", (etc, dbus))

    assert machine_id() == "0123456789abcdef0123456789abcdef"  # no /etc/machine-id
    etc.write_text("uninitialized\n")  # systemd's first-boot placeholder
    assert machine_id() == "0123456789abcdef0123456789abcdef"
    etc.write_text("fedcba9876543210fedcba9876543210\n")
    assert machine_id() == "fedcba9876543210fedcba9876543210"
    dbus.unlink()
    etc.write_text("")  # an image's empty placeholder
    assert machine_id() is None


@needs_proc
def test_process_start_reads_field_22_of_proc_stat():
    assert process_start(os.getpid()) == _start_from_proc(os.getpid())
