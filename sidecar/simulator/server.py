"""The HTTP side: a threading server on loopback that answers like CloudStack's API servlet."""

from __future__ import annotations

import json
import logging
import socket
import ssl
import struct
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from sidecar.constants import (
    API_PATH,
    HTTP_THROTTLED,
    HTTP_UNAUTHORIZED,
    THROTTLED_TEXT,
    UNAUTHORIZED_TEXT,
)
from sidecar.simulator.api import COMMANDS, ApiError, Call, dispatch
from sidecar.simulator.faults import Fault
from sidecar.simulator.verify import request_params

if TYPE_CHECKING:
    from sidecar.simulator.core import Simulator

log = logging.getLogger("sidecar.simulator")

JSON_TYPE = "application/json; charset=UTF-8"
XML_TYPE = "text/xml; charset=UTF-8"
HTML_TYPE = "text/html; charset=utf-8"

#: Gson escapes these by default; CloudStack's Gson does not turn that off.
_GSON_ESCAPES = tuple((c, f"\\u{ord(c):04x}") for c in "<>&='")

#: Parameter names whose values never reach logs or request records.
_SECRET_NAMES = frozenset({"signature", "apikey"})

_DEFAULT_ERROR_TEXT = {
    530: "Internal error executing command, please contact your system administrator",
    503: "Management server is shutting down, please try again later",
}

_HTML_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>"
    "<h1>Single sign-on</h1><p>Your session has expired. Please sign in again.</p>"
    "</body></html>\n"
)


def to_json(payload: dict[str, Any]) -> bytes:
    """Serialize as CloudStack's Gson does: compact, raw UTF-8, HTML characters escaped."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in _GSON_ESCAPES:
        if char in text:
            text = text.replace(char, escaped)
    return text.encode("utf-8")


def _xml_value(name: str, value: Any) -> str:
    if isinstance(value, dict):
        inner = "".join(_xml_value(k, v) for k, v in value.items())
        return f"<{name}>{inner}</{name}>"
    if isinstance(value, list):
        return "".join(_xml_value(name, v) for v in value)
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"<{name}>{escape(str(value))}</{name}>"


def to_xml(payload: dict[str, Any], version: str) -> bytes:
    """The XML answer a request without ``response=json`` gets (upstream's default)."""
    (outer, body), *_ = payload.items()
    inner = "".join(_xml_value(k, v) for k, v in body.items())
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><{outer} cloud-stack-version="{version}">'
        f"{inner}</{outer}>"
    ).encode()


def error_payload(command: str | None, error: ApiError) -> dict[str, Any]:
    """``{"<cmd>response":{"uuidList":[],"errorcode":N,"cserrorcode":M,"errortext":"…"}}``."""
    name = f"{command.lower()}response" if command in COMMANDS else "errorresponse"
    body: dict[str, Any] = {"uuidList": [], "errorcode": error.status}
    if error.cserrorcode is not None:
        body["cserrorcode"] = error.cserrorcode
    body["errortext"] = error.text
    return {name: body}


def masked(params: dict[str, str]) -> dict[str, str]:
    """Parameters with signature and API key values replaced."""
    return {k: ("***" if k.lower() in _SECRET_NAMES else v) for k, v in params.items()}


@dataclass
class RequestRecord:
    """One request as the instrumentation saw it (no secrets)."""

    command: str
    method: str
    status: int
    ms: float
    params: dict[str, str]
    started: float


@dataclass
class Stats:
    """What benchmarks and fault tests measure."""

    calls: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    inflight: int = 0
    max_inflight: int = 0
    max_per_second: int = 0
    #: Response body bytes.
    bytes_sent: int = 0
    #: uuid -> how many archive UPDATEs hit the alert (must stay <= 1 for a correct client).
    archive_count: Counter[str] = field(default_factory=Counter)
    archived_out_of_band: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    requests: deque[RequestRecord] = field(default_factory=lambda: deque(maxlen=20_000))
    _window: deque[float] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self) -> float:
        """A request started (real time); returns its start."""
        now = time.monotonic()
        with self._lock:
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            window = self._window
            window.append(now)
            while window and window[0] <= now - 1.0:
                window.popleft()
            self.max_per_second = max(self.max_per_second, len(window))
        return now

    def end(self, record: RequestRecord, nbytes: int) -> None:
        """A request finished."""
        with self._lock:
            self.inflight -= 1
            self.calls[record.command] += 1
            self.statuses.setdefault(record.command, Counter())[record.status] += 1
            self.bytes_sent += nbytes
            self.requests.append(record)

    def note_archived(self, uuid: str, *, out_of_band: bool = False) -> None:
        with self._lock:
            self.archive_count[uuid] += 1
            if out_of_band:
                self.archived_out_of_band.add(uuid)

    def note_deleted(self, uuid: str) -> None:
        with self._lock:
            self.deleted.add(uuid)

    def archived_by_clients(self) -> set[str]:
        """Alerts an API ``archiveAlerts`` hit (not those archived out of band)."""
        with self._lock:
            return {u for u in self.archive_count if u not in self.archived_out_of_band}

    def archived_more_than_once(self) -> list[str]:
        """Alerts an archive UPDATE hit twice or more (a client or race bug)."""
        with self._lock:
            return sorted(u for u, n in self.archive_count.items() if n > 1)

    def reset(self) -> None:
        """Forget everything measured so far."""
        with self._lock:
            self.calls.clear()
            self.statuses.clear()
            self.max_inflight = self.inflight
            self.max_per_second = 0
            self.bytes_sent = 0
            self.archive_count.clear()
            self.archived_out_of_band.clear()
            self.deleted.clear()
            self.requests.clear()
            self._window.clear()

    def snapshot(self) -> dict[str, Any]:
        """A JSON-friendly copy of the counters."""
        with self._lock:
            return {
                "calls": dict(self.calls),
                "statuses": {k: dict(v) for k, v in self.statuses.items()},
                "max_inflight": self.max_inflight,
                "max_per_second": self.max_per_second,
                "bytes_sent": self.bytes_sent,
                "archived_more_than_once": sorted(
                    u for u, n in self.archive_count.items() if n > 1
                ),
            }


#: Non-API paths for benchmarks driving a simulator in another process (loopback only, never
#: under ``/client/api``, never counted in :class:`Stats`): ``GET /_sim/stats[?ids=1]``,
#: ``POST /_sim/stats/reset``, ``POST /_sim/scenario?name=host-crash[&host=H][&advance=S]``,
#: ``POST /_sim/advance?seconds=S``.
CONTROL_PREFIX = "/_sim/"


def export_stats(sim: Simulator, *, ids: bool = False) -> dict[str, Any]:
    """Stats plus a score against the ground truth, JSON-ready (for ``--stats-file``).

    ``wrong_archives`` are alerts archived through the API that the truth does not call
    duplicates (canonicals, separate incidents, unknown formats); ``ids`` adds the id lists.
    """
    out = sim.stats.snapshot()
    with sim.lock:
        table = sim.state.alerts
        live_by_name = {name: len(keys) for name, keys in sorted(table.live_by_name.items())}
        truth_duplicates = sim.truth.duplicate_ids
        canonicals = sim.truth.canonical_ids
        summary = sim.truth.summary()
        now = sim.clock.time()
    archived = sim.stats.archived_by_clients()
    wrong = archived - truth_duplicates
    out.update(
        live=sum(live_by_name.values()),
        live_by_name=live_by_name,
        clock=now,
        truth=summary,
        score={
            "archived": len(archived),
            "truth_duplicates": len(truth_duplicates),
            "archived_duplicates": len(archived & truth_duplicates),
            "missed_duplicates": len(truth_duplicates - archived),
            "wrong_archives": len(wrong),
            "wrong_canonicals": len(wrong & canonicals),
        },
    )
    if ids:
        out["archived_ids"] = sorted(archived)
        out["truth_duplicate_ids"] = sorted(truth_duplicates)
    return out


class _Abort(Exception):
    """Close the connection without an answer."""


class SimulatorHTTPServer(ThreadingHTTPServer):
    """One thread per connection; tracks connections so ``stop()`` can close them."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], sim: Simulator) -> None:
        self.sim = sim
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, ApiHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that abort the TLS handshake (an untrusted certificate)."""
        if isinstance(sys.exc_info()[1], ssl.SSLError | ConnectionError):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Unblock every connection thread (idle keep-alives, hung answers)."""
        with self.connections_lock:
            conns = list(self.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class ApiHandler(BaseHTTPRequestHandler):
    """``/client/api``: GET query or POST form, like ``ApiServlet``."""

    protocol_version = "HTTP/1.1"
    server_version = "Jetty(9.4)"
    sys_version = ""
    timeout = 120
    server: SimulatorHTTPServer

    # -- plumbing -----------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Never log request lines: they carry the API key and signature."""

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header comes from the virtual clock (clients measure skew with it)."""
        return formatdate(self.server.sim.clock.time(), usegmt=True)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    # -- one request --------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self, method: str) -> None:
        sim = self.server.sim
        if self.path.startswith(CONTROL_PREFIX):
            self._control(sim, method)
            return
        self._started = sim.stats.begin()
        self._method = method
        self._command = "-"
        self._params: dict[str, str] = {}
        self._recorded = False
        try:
            url = urlsplit(self.path)
            body = self._read_body() if method == "POST" else b""
            if url.path.rstrip("/") != API_PATH:
                self._send(404, b"<html><body>Not Found</body></html>", HTML_TYPE)
                return
            form = None
            ctype = (self.headers.get("Content-Type") or "").lower()
            if body and ctype.startswith("application/x-www-form-urlencoded"):
                form = body.decode("utf-8", "replace")
            self._params = request_params(url.query, form)
            self._command = self._params.get("command") or "-"
            self._answer(sim, method, self._params)
        except _Abort:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self._record(0, 0)

    def _control(self, sim: Simulator, method: str) -> None:
        """Answer a ``/_sim/`` control request (see :data:`CONTROL_PREFIX`); not counted."""
        url = urlsplit(self.path)
        if method == "POST":
            self._read_body()
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        route = (method, url.path.rstrip("/"))
        status, payload = 200, {}
        try:
            if route == ("GET", "/_sim/stats"):
                payload = export_stats(sim, ids=query.get("ids") in ("1", "true"))
            elif route == ("POST", "/_sim/stats/reset"):
                sim.stats.reset()
                payload = {"reset": True}
            elif route == ("POST", "/_sim/scenario"):
                options = {"host": query["host"]} if query.get("host") else {}
                run = sim.start_scenario(query.get("name", ""), **options)
                sim.clock.advance(float(query.get("advance", 0)))
                payload = {"scenario": run.name, "hosts": run.hosts, "pending": run.pending}
            elif route == ("POST", "/_sim/advance"):
                ran = sim.clock.advance(float(query.get("seconds", 0)))
                payload = {"steps": ran, "clock": sim.clock.time()}
            else:
                status, payload = 404, {"error": f"no control route {method} {url.path}"}
        except (KeyError, ValueError) as exc:
            status, payload = 400, {"error": str(exc)}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        log.info("%s %s %s (control)", method, url.path, status)

    def _record(self, status: int, nbytes: int) -> None:
        """Count the request once, before its answer leaves (so a client that got the answer
        always finds the request in ``sim.stats``)."""
        if self._recorded:
            return
        self._recorded = True
        ms = (time.monotonic() - self._started) * 1000.0
        record = RequestRecord(
            self._command, self._method, status, ms, masked(self._params), self._started
        )
        self.server.sim.stats.end(record, nbytes)
        log.info("%s %s %s %.1fms", self._method, self._command, status or "-", ms)

    def _answer(self, sim: Simulator, method: str, params: dict[str, str]) -> tuple[int, int]:
        command = params.get("command")
        name = command or "-"
        as_json = (params.get("response") or "").lower() == "json"
        faults = sim.faults

        for fault in faults.draw(name, "before"):
            delay = fault.options["ms"] + faults.jitter(fault.options["jitter_ms"])
            time.sleep(max(0.0, delay) / 1000.0)

        transport = faults.draw(name, "transport")
        first = [f for f in transport if not f.options.get("after")]
        later = [f for f in transport if f.options.get("after")]
        if first:
            return self._transport_fault(sim, first[0], command, as_json)

        headers: dict[str, str] = {}
        try:
            sim.check_method(command, method)
            key, account = sim.authenticate(params)
            assert command is not None
            call = Call(command, params, method, key, account)
            sim.run_hooks(call)
            payload = dispatch(sim, call)
            status = 200
        except ApiError as error:
            payload = error_payload(command, error)
            status = error.status
            if error.server_api:
                headers["X-Description"] = error.text
        if later:
            return self._transport_fault(sim, later[0], command, as_json)

        data = to_json(payload) if as_json else to_xml(payload, sim.profile.version)
        if status == 200 and faults.draw(name, "body"):
            data = data[: max(1, len(data) // 2)]
        return self._send(status, data, JSON_TYPE if as_json else XML_TYPE, headers)

    def _transport_fault(
        self, sim: Simulator, fault: Fault, command: str | None, as_json: bool
    ) -> tuple[int, int]:
        kind = fault.kind
        if kind == "reset":
            # SO_LINGER 0 + close sends a TCP RST instead of an answer.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            raise _Abort
        if kind == "hang":
            sim.faults.release.wait(float(fault.options["seconds"]))
            raise _Abort
        if kind == "html":
            return self._send(int(fault.options["status"]), _HTML_PAGE.encode(), HTML_TYPE)
        if kind == "unauthorized":
            error = ApiError(HTTP_UNAUTHORIZED, UNAUTHORIZED_TEXT, server_api=False)
        elif kind == "throttle":
            error = ApiError(HTTP_THROTTLED, THROTTLED_TEXT.format(ms=int(fault.options["ms"])))
        else:  # error
            status = int(fault.options["status"])
            text = fault.options["text"] or _DEFAULT_ERROR_TEXT.get(status, "Internal error")
            error = ApiError(status, text, fault.options["cserrorcode"])
        payload = error_payload(command, error)
        data = to_json(payload) if as_json else to_xml(payload, sim.profile.version)
        headers = {"X-Description": error.text} if error.server_api else {}
        return self._send(error.status, data, JSON_TYPE if as_json else XML_TYPE, headers)

    def _send(
        self,
        status: int,
        data: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, int]:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            # Header values are latin-1 on the wire; CloudStack's texts are ASCII.
            self.send_header(name, value.encode("latin-1", "replace").decode("latin-1"))
        self._record(status, len(data))
        self.end_headers()
        self.wfile.write(data)
        return status, len(data)
