"""A private Alertmanager on loopback ports, and a webhook receiver that records what it sends.

``prometheus-alertmanager`` (Debian) or ``alertmanager`` must be installed; ``missing_binary``
gives the skip reason when it is not.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
from privatedb import free_port

#: Seconds to wait for Alertmanager to start, or for a notification to arrive.
DEADLINE = 30.0

T = TypeVar("T")


def alertmanager_binary() -> str | None:
    """The Alertmanager executable (Debian names it prometheus-alertmanager)."""
    return shutil.which("alertmanager") or shutil.which("prometheus-alertmanager")


def missing_binary() -> str | None:
    """Why no real Alertmanager can run here (a skip reason), or None when it can."""
    if alertmanager_binary() is None:
        return ("alertmanager not installed (Debian/Ubuntu: apt-get install "
                "prometheus-alertmanager): no real Alertmanager to send to")
    return None


def wait_for(what: str, probe: Callable[[], T | None], deadline: float = DEADLINE) -> T:
    """Poll ``probe`` until it returns something truthy, or fail after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline:g} s waiting for {what}")
        time.sleep(0.05)


class Receiver:
    """A webhook receiver on a loopback port: every notification body, in arrival order."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        received = self.notifications

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass  # the test's output is its assertions

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


CONFIG = """\
route:
  receiver: nobody
  group_by: [alertname, host]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - receiver: hook
      matchers: ['alertname="CloudStackHostFailure"']
receivers:
  - name: nobody
  - name: hook
    webhook_configs:
      - url: {url}
        send_resolved: true
"""


@contextmanager
def private_alertmanager(directory: Path, receiver: Receiver) -> Iterator[str]:
    """A running Alertmanager (clustering off) routing host failures to ``receiver``; yields
    its base URL."""
    binary = alertmanager_binary()
    assert binary is not None
    config = directory / "alertmanager.yml"
    config.write_text(CONFIG.format(url=receiver.url))
    port = free_port()
    log = (directory / "alertmanager.log").open("w")
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.path={directory / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            tail = (directory / "alertmanager.log").read_text()[-2000:]
            raise AssertionError(f"alertmanager exited: {tail}")
        try:
            return httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for("alertmanager to be ready", ready)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def active_alerts(url: str, alertname: str) -> list[dict[str, Any]]:
    """The alerts of ``alertname`` Alertmanager holds now (active, silenced or inhibited)."""
    response = httpx.get(f"{url}/api/v2/alerts", timeout=5.0,
                         params={"filter": f'alertname="{alertname}"'})
    response.raise_for_status()
    return list(response.json())
