"""A private MariaDB server for tests that kill, restart or lock a whole server.

Such tests must never touch the machine's shared server (other test runs use it). A
``PrivateMariaDB`` installs a data directory in a temporary directory of its own, runs
``mariadbd`` there on a free loopback port (root without a password, the socket in the same
directory), and can be killed (SIGKILL, as a crash or the OOM killer would) and started again on
the same data. ``private_mariadb()`` guarantees the cleanup: the server is killed and its
directory removed however the test ends.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pymysql

#: Where the server binaries live besides PATH (Debian puts mariadbd in /usr/sbin).
_SBIN = ("/usr/sbin", "/usr/local/sbin")

#: Seconds to wait for the server to accept connections (crash recovery included).
START_TIMEOUT = 60.0

#: Small memory and log sizes: a test server holds a few thousand rows.
_SIZES = ("--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M")


def _which(name: str) -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN])
    return shutil.which(name, path=path)


def missing_binaries() -> str | None:
    """Why a private server cannot run here (a skip reason), or None when it can."""
    missing = [name for name in ("mariadbd", "mariadb-install-db") if _which(name) is None]
    if missing:
        return (f"{' and '.join(missing)} not installed (Debian/Ubuntu: apt-get install "
                f"mariadb-server): no private MariaDB server to kill and restart")
    return None


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateMariaDB:
    """One ``mariadbd`` on a data directory under ``directory``; see the module docstring."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.datadir = directory / "data"
        self.socket = directory / "mariadbd.sock"
        self.error_log = directory / "error.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def install(self) -> None:
        """Create the system tables (root@127.0.0.1 without a password)."""
        installer = _which("mariadb-install-db")
        assert installer is not None, missing_binaries()
        done = subprocess.run(
            # Its own tmpdir: bootstrap temp tables in the shared /tmp collide with other runs'.
            [installer, "--no-defaults", f"--datadir={self.datadir}", f"--user={getpass.getuser()}",
             f"--tmpdir={self.directory}", "--auth-root-authentication-method=normal",
             "--skip-test-db", *_SIZES],
            capture_output=True, text=True, timeout=START_TIMEOUT, check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed ({done.returncode}): "
                               f"{(done.stderr or done.stdout).strip()[-2000:]}")

    def start(self) -> None:
        """Start the server on its data and port; return once it accepts connections."""
        assert self.proc is None, "already running"
        server = _which("mariadbd")
        assert server is not None, missing_binaries()
        self.proc = subprocess.Popen(
            [server, "--no-defaults", f"--datadir={self.datadir}", f"--socket={self.socket}",
             f"--pid-file={self.directory / 'mariadbd.pid'}", f"--log-error={self.error_log}",
             f"--tmpdir={self.directory}", f"--user={getpass.getuser()}", "--skip-networking=0",
             "--bind-address=127.0.0.1", f"--port={self.port}", *_SIZES],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._wait_until_ready(time.monotonic() + START_TIMEOUT)

    def _wait_until_ready(self, deadline: float) -> None:
        assert self.proc is not None
        while True:
            code = self.proc.poll()
            if code is not None:
                self.proc = None
                raise RuntimeError(
                    f"mariadbd exited with {code} while starting: {self._log_tail()}"
                )
            try:
                self._check_it_is_ours()
                return
            except pymysql.err.OperationalError as exc:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"mariadbd did not accept connections within "
                                       f"{START_TIMEOUT:g} s ({exc}): {self._log_tail()}") from None
            try:
                self.proc.wait(timeout=0.05)  # the pause between polls also notices an exit
            except subprocess.TimeoutExpired:
                pass

    def _check_it_is_ours(self) -> None:
        """Connect; refuse a server on our port that serves another data directory."""
        conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=1)
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT @@datadir")
                row = cursor.fetchone()
        finally:
            conn.close()
        served = Path(str(row[0] if row else "")).resolve()
        if served != self.datadir.resolve():
            raise RuntimeError(f"port {self.port} serves {served}, not this test's server")

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.error_log.read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return "(no error log)"

    def kill(self) -> None:
        """SIGKILL the server and reap it: no shutdown, no flush, as a crash would."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def url(self, database: str) -> str:
        """A ledger URL for ``database`` on this server."""
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create ``name``; its ledger URL."""
        conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", autocommit=True)
        try:
            with conn.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {name}")
        finally:
            conn.close()
        return self.url(name)

    def close(self) -> None:
        """Kill the server and remove its directory."""
        try:
            self.kill()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


@contextmanager
def private_mariadb() -> Iterator[PrivateMariaDB]:
    """A running private server, killed and removed afterwards whatever happens."""
    # Under /tmp, not pytest's deep tmp_path: a Unix socket path must stay under 108 bytes.
    server = PrivateMariaDB(Path(tempfile.mkdtemp(prefix="sidecar-mariadb-")))
    try:
        server.install()
        server.start()
        yield server
    finally:
        server.close()
