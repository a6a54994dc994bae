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
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from cloudstack_simulator.api import COMMANDS, ApiError, Call, dispatch
from cloudstack_simulator.context import Context
from cloudstack_simulator.faults import Fault
from cloudstack_simulator.state import Account, ApiKey
from cloudstack_simulator.stats import RequestRecord, export_stats
from cloudstack_simulator.steps import ScenarioRun
from cloudstack_simulator.verify import request_params
from sidecar.model.constants import (
    API_PATH,
    HTTP_THROTTLED,
    HTTP_UNAUTHORIZED,
    THROTTLED_TEXT,
    UNAUTHORIZED_TEXT,
)

log = logging.getLogger("cloudstack_simulator")

JSON_TYPE = "application/json; charset=UTF-8"
XML_TYPE = "text/xml; charset=UTF-8"
HTML_TYPE = "text/html; charset=utf-8"

#: Jetty's ``setRequestHeaderSize(8192)`` (``ServerDaemon``): request line and headers together.
REQUEST_HEADER_SIZE = 8192
#: Jetty's ``badMessageError`` answer: status, reason, and this type (the connection closes).
_BAD_MESSAGE_TYPE = "text/html;charset=iso-8859-1"
_BAD_MESSAGE_REASON = {414: "URI Too Long", 431: "Request Header Fields Too Large"}

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
    """Serialize as CloudStack does: compact, raw UTF-8, ``'=<>&`` literal.

    Gson escapes those five as ``\\u0027``…, but ``ApiResponseSerializer`` undoes it before
    the text is written.
    """
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


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


#: Non-API paths for benchmarks driving a simulator in another process (loopback only, never
#: under ``/client/api``, never counted in :class:`Stats`): ``GET /_sim/stats[?ids=1]``,
#: ``POST /_sim/stats/reset``, ``POST /_sim/scenario?name=host-crash[&host=H][&advance=S]``,
#: ``POST /_sim/advance?seconds=S``.
CONTROL_PREFIX = "/_sim/"


class Backend(Protocol):
    """What the server asks of the simulator it serves, looked up per request (tests wrap them)."""

    def check_method(self, command: str | None, method: str) -> None: ...

    def authenticate(self, params: dict[str, str]) -> tuple[ApiKey, Account]: ...

    def run_hooks(self, call: Call) -> None: ...

    def start_scenario(self, name: str, **options: Any) -> ScenarioRun: ...


class _Abort(Exception):
    """Close the connection without an answer."""


class SimulatorHTTPServer(ThreadingHTTPServer):
    """One thread per connection; tracks connections so ``stop()`` can close them."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(
        self, address: tuple[str, int], ctx: Context, backend: Backend, *, send_date: bool = False
    ) -> None:
        self.ctx = ctx
        self.backend = backend
        #: Add a ``Date`` header, as a proxy in front of the management server would.
        self.send_date = send_date
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

    def log_message(self, format: str, *args: Any) -> None:
        """Never log request lines: they carry the API key and signature."""

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header comes from the virtual clock (clients measure skew with it)."""
        return formatdate(self.server.ctx.clock.time(), usegmt=True)

    def send_response(self, code: int, message: str | None = None) -> None:
        """No ``Server`` and no ``Date`` header: Jetty runs with ``setSendServerVersion(false)``
        and ``setSendDateHeader(false)``; ``send_date`` plays a proxy in front adding ``Date``."""
        self.log_request(code)
        self.send_response_only(code, message)
        if self.server.send_date:
            self.send_header("Date", self.date_time_string())

    def parse_request(self) -> bool:
        """Jetty's header size limit, before anything else looks at the request."""
        if not super().parse_request():
            return False
        head = f"{self.requestline}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        size = len(head.encode("latin-1", "replace")) + 2
        if size <= REQUEST_HEADER_SIZE:
            return True
        # Jetty counts bytes as it parses: the limit falls inside the URI (414) or after it (431).
        through_uri = len(f"{self.command} {self.path}".encode("latin-1", "replace"))
        self._bad_message(414 if through_uri > REQUEST_HEADER_SIZE else 431)
        return False

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Python's own limits (a request line over 64 KiB, too many headers) answer as Jetty's."""
        if code in _BAD_MESSAGE_REASON:
            self._bad_message(code)
        else:
            super().send_error(code, message, explain)

    def _bad_message(self, status: int) -> None:
        """Jetty's answer to a request it cannot parse: a short HTML page, then close."""
        stats = self.server.ctx.stats
        started = stats.begin()
        reason = _BAD_MESSAGE_REASON[status]
        data = f"<h1>Bad Message {status}</h1><pre>reason: {reason}</pre>".encode("latin-1")
        self.close_connection = True
        self.send_response(status, reason)
        self.send_header("Content-Type", _BAD_MESSAGE_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        ms = (time.monotonic() - started) * 1000.0
        stats.end(RequestRecord("-", self.command, status, ms, {}, started), len(data))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    # -- one request --------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self, method: str) -> None:
        ctx = self.server.ctx
        if self.path.startswith(CONTROL_PREFIX):
            self._control(ctx, method)
            return
        self._started = ctx.stats.begin()
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
            self._answer(ctx, method, self._params)
        except _Abort:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self._record(0, 0)

    def _control(self, ctx: Context, method: str) -> None:
        """Answer a ``/_sim/`` control request (see :data:`CONTROL_PREFIX`); not counted."""
        url = urlsplit(self.path)
        if method == "POST":
            self._read_body()
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        route = (method, url.path.rstrip("/"))
        status, payload = 200, {}
        try:
            if route == ("GET", "/_sim/stats"):
                payload = export_stats(ctx, ids=query.get("ids") in ("1", "true"))
            elif route == ("POST", "/_sim/stats/reset"):
                ctx.stats.reset()
                payload = {"reset": True}
            elif route == ("POST", "/_sim/scenario"):
                options = {"host": query["host"]} if query.get("host") else {}
                run = self.server.backend.start_scenario(query.get("name", ""), **options)
                ctx.clock.advance(float(query.get("advance", 0)))
                payload = {"scenario": run.name, "hosts": run.hosts, "pending": run.pending}
            elif route == ("POST", "/_sim/advance"):
                ran = ctx.clock.advance(float(query.get("seconds", 0)))
                payload = {"steps": ran, "clock": ctx.clock.time()}
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
        self.server.ctx.stats.end(record, nbytes)
        log.info("%s %s %s %.1fms", self._method, self._command, status or "-", ms)

    def _answer(self, ctx: Context, method: str, params: dict[str, str]) -> tuple[int, int]:
        command = params.get("command")
        name = command or "-"
        as_json = (params.get("response") or "").lower() == "json"
        faults = ctx.faults
        backend = self.server.backend

        for fault in faults.draw(name, "before"):
            delay = fault.options["ms"] + faults.jitter(fault.options["jitter_ms"])
            time.sleep(max(0.0, delay) / 1000.0)

        transport = faults.draw(name, "transport")
        first = [f for f in transport if not f.options.get("after")]
        later = [f for f in transport if f.options.get("after")]
        if first:
            return self._transport_fault(ctx, first[0], command, as_json)

        headers: dict[str, str] = {}
        try:
            backend.check_method(command, method)
            key, account = backend.authenticate(params)
            assert command is not None
            call = Call(command, params, method, key, account)
            backend.run_hooks(call)
            payload = dispatch(ctx, call)
            status = 200
        except ApiError as error:
            payload = error_payload(command, error)
            status = error.status
            if error.server_api:
                headers["X-Description"] = error.text
        if later:
            return self._transport_fault(ctx, later[0], command, as_json)

        data = to_json(payload) if as_json else to_xml(payload, ctx.profile.version)
        if status == 200:
            for fault in faults.draw(name, "body"):
                # Any cut short of the whole body leaves the JSON object (or XML) unclosed.
                end = faults.cut_point(len(data)) if fault.kind == "truncated" else len(data) // 2
                data = data[: max(1, end)]
        return self._send(status, data, JSON_TYPE if as_json else XML_TYPE, headers)

    def _transport_fault(
        self, ctx: Context, fault: Fault, command: str | None, as_json: bool
    ) -> tuple[int, int]:
        kind = fault.kind
        if kind == "reset":
            # SO_LINGER 0 + close sends a TCP RST instead of an answer.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            raise _Abort
        if kind == "hang":
            ctx.faults.release.wait(float(fault.options["seconds"]))
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
        data = to_json(payload) if as_json else to_xml(payload, ctx.profile.version)
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
