"""Async CloudStack API client: signing, limits, retries and typed helpers (paging: paging.py).

One client holds one ``httpx.AsyncClient``; every call goes through the same rate limiter and
concurrency bound of its ``ClientLimits``. Reads (``list*``/``get*``/``query*``/``find*``) go
by GET and are retried on 5xx, 429 and transport errors; everything else is POSTed and retried
only when the caller says it is idempotent, or after a 429 (the rate-limit checker rejects a
call before it runs).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from sidecar.cloudstack.config import CloudStackConfig
from sidecar.cloudstack.errors import (
    AuthenticationError,
    CloudStackError,
    CommandNotAllowedError,
    MalformedAnswerError,
    NotJsonError,
    ServerError,
    ThrottledError,
    TransportError,
    api_error,
)
from sidecar.cloudstack.limits import ClientLimits
from sidecar.cloudstack.paging import ListInfo, Paging
from sidecar.cloudstack.ratelimit import RateLimiter, Start
from sidecar.cloudstack.signing import (
    AUTH_PARAMS,
    EXPIRES_AT,
    FORM_CONTENT_TYPE,
    CloudStackSigner,
    encode_params,
    flatten_params,
    java_urlencode,
)
from sidecar.cloudstack.skew import SkewBracket, bracket_skew
from sidecar.cloudstack.stats import CallStats
from sidecar.model.constants import HTTP_INTERNAL_ERROR, STATE_CHANGING_PREFIXES_READ
from sidecar.model.resources import Alert, Host, VirtualMachine
from sidecar.support.redact import install_log_redaction, register_secret

log = logging.getLogger(__name__)

#: Longest query string we send by GET; longer reads are POSTed (servlet/proxy URL limits).
MAX_GET_QUERY = 4096
#: Room for apiKey (added separately), response, signatureVersion, expires and signature.
_SIGNING_OVERHEAD = 160
#: Upper bound of one backoff sleep.
BACKOFF_CAP = 30.0
_JSON_TYPES = ("application/json", "text/javascript")
#: First bytes of a page, not JSON, whatever its Content-Type says (HTML, XML).
_MARKUP = b"<"
#: The command the clock-skew probe signs: cheap, read-only, in every role the sidecar needs.
SKEW_PROBE_COMMAND = "listCapabilities"
#: Request extension that carries a call's :class:`_Attempt` to the request hook.
_ATTEMPT = "sidecar.attempt"


def is_read_command(command: str) -> bool:
    """True for ``list*``, ``get*``, ``query*``, ``find*``: safe to GET and to retry."""
    return command.startswith(STATE_CHANGING_PREFIXES_READ)


@dataclass
class _Attempt:
    """One HTTP send of ``_call_once``, filled in by the request hook when its slot is granted."""

    starts: list[Start] = field(default_factory=list)
    started: float | None = None
    wall_started: float = 0.0

    def settle(self) -> None:
        for start in self.starts:
            start.settle()


class CloudStackClient(Paging):
    """Async CloudStack API client; use as ``async with CloudStackClient(config) as cs:``."""

    def __init__(
        self,
        config: CloudStackConfig,
        *,
        limits: ClientLimits | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_call: Callable[[str, int, float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.limits = limits if limits is not None else ClientLimits()
        self.endpoint = config.endpoint
        self.timeout = self.limits.request_timeout or config.timeout
        self.stats = CallStats()
        #: Server clock minus ours as the last ``Date`` header showed it (None: no header).
        self.clock_skew: float | None = None
        #: What signed probes found out about the skew (``measure_skew``), once measured.
        self.skew: SkewBracket | None = None
        self._skew_lock = asyncio.Lock()
        self._transport = transport
        self._sleep = sleep
        self._on_call = on_call
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()
        self._signer = CloudStackSigner(
            config.key,
            config.secret,
            expires_in=config.expiration,
            now=lambda: datetime.fromtimestamp(self._wall_clock(), UTC),
        )
        self._limiter = RateLimiter(self.limits.requests_per_second, clock=clock, sleep=sleep)
        self._semaphore = asyncio.Semaphore(self.limits.max_concurrency)
        self._http: httpx.AsyncClient | None = None
        register_secret(config.key, config.secret)
        # httpx logs every request URL (apiKey, signature) at INFO.
        install_log_redaction(logging.getLogger("httpx"), logging.getLogger("httpcore"))

    def __repr__(self) -> str:
        return f"<CloudStackClient {self.endpoint} region={self.config.region!r}>"

    async def __aenter__(self) -> CloudStackClient:
        self._ensure_http()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    def _ensure_http(self) -> httpx.AsyncClient:
        if self._http is None:
            limit = self.limits.max_concurrency
            self._http = httpx.AsyncClient(
                auth=self._signer,
                transport=self._transport,
                timeout=httpx.Timeout(self.timeout),
                verify=self.config.verify,
                headers={"Accept": "application/json", **dict(self.config.headers)},
                limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
                follow_redirects=False,  # a redirect is a login page or a wrong URL: report it
                # The rate limit is taken in a request hook: after signing, right before the
                # transport (whichever one httpx picks, env proxies included) gets the request.
                event_hooks={"request": [self._take_rate_slot]},
            )
        return self._http

    async def _take_rate_slot(self, request: httpx.Request) -> None:
        """Request hook: wait for a start slot as late as possible before the bytes leave.

        The start stays pending until httpcore reports the answer's headers (``trace``) or the
        send ends (``_Attempt.settle`` in ``_call_once``): the server has counted the request
        by then, however late the loop sent it or the server counted it.
        """
        attempt = request.extensions.get(_ATTEMPT)
        start = await self._limiter.acquire()
        request.extensions["trace"] = start.tracer(request.extensions.get("trace"))
        self.stats.rate_limited_seconds += start.waited
        if not isinstance(attempt, _Attempt):
            start.settle()
            raise RuntimeError("CloudStackClient's HTTP client sends only through _call_once")
        attempt.starts.append(start)
        if attempt.started is None:
            attempt.started, attempt.wall_started = self._clock(), self._wall_clock()
            self.stats.in_flight += 1
            self.stats.max_concurrent = max(self.stats.max_concurrent, self.stats.in_flight)

    # -- one call -------------------------------------------------------------------------

    def _build_request(self, command: str, flat: Mapping[str, str]) -> httpx.Request:
        http = self._ensure_http()
        params = {"command": command, **{k: v for k, v in flat.items() if k not in AUTH_PARAMS}}
        wire = encode_params(params.items())
        room = MAX_GET_QUERY - _SIGNING_OVERHEAD - len(java_urlencode(self.config.key))
        if is_read_command(command) and len(wire) <= room:
            return http.build_request("GET", self.endpoint, params=params)
        # State-changing commands are POSTed (4.21+ may refuse them by GET); so are long reads.
        return http.build_request(
            "POST",
            self.endpoint,
            content=wire.encode("ascii"),
            headers={"Content-Type": FORM_CONTENT_TYPE},
        )

    def _note_date(self, response: httpx.Response, local: float) -> None:
        date = response.headers.get("Date")
        if not date:
            return
        try:
            server = parsedate_to_datetime(date)
        except (TypeError, ValueError, IndexError):
            return
        if server.tzinfo is None:
            return
        self.clock_skew = server.timestamp() - local

    def _record(self, command: str, status: int, seconds: float, size: int = 0) -> None:
        self.stats.calls[(command, status)] += 1
        self.stats.seconds += seconds
        self.stats.bytes_received += size
        if self._on_call is not None:
            try:
                self._on_call(command, status, seconds)
            except Exception:  # metrics must never break an API call
                log.exception("on_call callback failed for %s", command)

    async def _call_once(
        self, command: str, flat: Mapping[str, str], expires: datetime | None = None
    ) -> dict[str, Any]:
        request = self._build_request(command, flat)
        http = self._ensure_http()
        attempt = _Attempt()
        request.extensions[_ATTEMPT] = attempt  # the signed copy shares it with the hook
        if expires is not None:
            request.extensions[EXPIRES_AT] = expires
        async with self._semaphore:
            try:
                response = await http.send(request)  # the hook takes the rate-limit slot
            except httpx.RequestError as exc:
                started = self._clock() if attempt.started is None else attempt.started
                self._record(command, 0, self._clock() - started)
                raise TransportError(
                    f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                    command=command,
                    endpoint=self.endpoint,
                ) from None  # the cause's text may hold the signed URL; ours is redacted
            finally:
                attempt.settle()  # a start whose answer was not traced is dated now
                if attempt.started is not None:
                    self.stats.in_flight -= 1
        started = self._clock() if attempt.started is None else attempt.started
        elapsed = self._clock() - started
        self._note_date(response, (attempt.wall_started + self._wall_clock()) / 2)
        self._record(command, response.status_code, elapsed, len(response.content))
        log.debug(
            "%s %s -> %d in %.3f s (%d bytes)",
            command,
            request.method,
            response.status_code,
            elapsed,
            len(response.content),
        )
        return self._parse(command, response)

    def _parse(self, command: str, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        ctype = response.headers.get("Content-Type", "")
        if not ctype.lower().startswith(_JSON_TYPES):
            location = response.headers.get("Location")
            why = f"redirected to {location}" if response.is_redirect and location else ""
            raise self._not_json(command, response, why)
        try:
            data = response.json()
        except ValueError as exc:
            if response.content.lstrip().startswith(_MARKUP):
                # A page labelled JSON (some proxies and SSO gateways): no retry will help.
                raise self._not_json(command, response, "an HTML or XML page") from None
            raise MalformedAnswerError(
                status=status,
                content_type=ctype,
                size=len(response.content),
                reason=str(exc),
                command=command,
                endpoint=self.endpoint,
            ) from None
        inner = self._unwrap(command, data, response)
        if status != 200 or "errorcode" in inner:
            raise api_error(
                status, inner, command=command, endpoint=self.endpoint, skew=self.clock_skew
            )
        return inner

    def _not_json(self, command: str, response: httpx.Response, reason: str) -> NotJsonError:
        return NotJsonError(
            status=response.status_code,
            content_type=response.headers.get("Content-Type", ""),
            reason=reason,
            command=command,
            endpoint=self.endpoint,
        )

    def _unwrap(self, command: str, data: Any, response: httpx.Response) -> dict[str, Any]:
        """The inner object of ``{"<command>response": {...}}`` (or ``errorresponse``)."""
        inner: Any = None
        if isinstance(data, dict):
            key = f"{command.lower()}response"
            if key in data:
                inner = data[key]
            elif "errorresponse" in data:
                inner = data["errorresponse"]
            elif len(data) == 1:
                inner = next(iter(data.values()))
        if not isinstance(inner, dict):
            raise self._not_json(command, response, "not a CloudStack response object")
        return inner

    def _backoff(self, attempt: int) -> float:
        """Capped exponential backoff with jitter (half to full of the nominal delay)."""
        nominal = min(BACKOFF_CAP, self.limits.retry_backoff * (2**attempt))
        return nominal * self._rng.uniform(0.5, 1.0)

    async def request(
        self, command: str, params: Mapping[str, Any] | None = None, *, idempotent: bool = False
    ) -> dict[str, Any]:
        """Call ``command`` and return the inner ``<command>response`` object.

        A 401 is explained before it is raised: signed probes tell a key that does not work
        from a clock that makes every signature expire (``measure_skew``, once per client).
        """
        flat = flatten_params(params)
        may_retry = is_read_command(command) or idempotent
        try:
            return await self._request(command, flat, may_retry=may_retry)
        except AuthenticationError as exc:
            raise await self._explain(exc) from None

    async def _request(
        self,
        command: str,
        flat: Mapping[str, str],
        *,
        may_retry: bool,
        expires: datetime | None = None,
    ) -> dict[str, Any]:
        """``_call_once`` with the retries: 429 always, the rest when ``may_retry``."""
        attempt = 0
        while True:
            delay = wait = 0.0
            try:
                return await self._call_once(command, flat, expires)
            except ThrottledError as exc:
                # The rate-limit checker rejects a call before it runs, so even a write may be
                # resent. Everyone waits (via the limiter) until the named time has passed.
                if attempt >= self.limits.max_retries:
                    raise
                wait = exc.retry_after if exc.retry_after is not None else self._backoff(attempt)
                self._limiter.pause_for(wait)  # the retry sleeps in the limiter, not here
                reason: CloudStackError = exc
            except (ServerError, TransportError, NotJsonError, MalformedAnswerError) as exc:
                # A cut or garbled answer is the way's fault, like a reset; a page is not.
                retryable = not isinstance(exc, NotJsonError) or exc.status >= 500
                if not (may_retry and retryable) or attempt >= self.limits.max_retries:
                    if isinstance(exc, MalformedAnswerError) and attempt:
                        raise exc.tried(attempt + 1) from None
                    raise
                delay = self._backoff(attempt)
                reason = exc
            attempt += 1
            self.stats.retries += 1
            # INFO: the service (INFO by default) shows retries; an interactive command whose
            # calls finally fail prints only its one ``error:`` line.
            log.info(
                "retry %d/%d of %s in %.1f s: %s",
                attempt,
                self.limits.max_retries,
                command,
                delay or wait,
                reason.detail,
            )
            if delay > 0:
                await self._sleep(delay)

    # -- clock skew -----------------------------------------------------------------------

    async def measure_skew(self, *, ordinary_accepted: bool = True) -> SkewBracket | None:
        """Bracket the server's clock with signed calls (``skew.py``); once per client.

        ``ordinary_accepted``: whether a normally signed call was just accepted (``check``)
        or refused (a 401). None when the probe could not run (no role for its command, or
        the server did not answer).
        """
        async with self._skew_lock:  # concurrent 401s share one measurement
            if self.skew is None:
                try:
                    self.skew = await bracket_skew(
                        self._probe,
                        now=self._wall_clock,
                        lifetime=self._signer.expires_in,
                        ordinary_accepted=ordinary_accepted,
                        guess=self.clock_skew,
                    )
                except CloudStackError as exc:
                    log.info("could not measure the clock skew: %s", exc)
                    return None
                bracket = self.skew
                log.info("skew probe: server minus ours in (%s, %s] s after %d signed calls",
                         bracket.low, bracket.high, bracket.calls)  # fmt: skip
            return self.skew

    async def _probe(self, expires: datetime) -> bool:
        """One signed call with this ``expires``: accepted (True) or refused with a 401."""
        try:
            await self._request(SKEW_PROBE_COMMAND, {}, may_retry=True, expires=expires)
        except CommandNotAllowedError:
            raise  # the role lacks the probe's command: the probe cannot tell anything
        except AuthenticationError:
            return False
        return True

    async def _explain(self, exc: AuthenticationError) -> AuthenticationError:
        """The 401 with what signed probes found: the key, or the clock."""
        bracket = await self.measure_skew(ordinary_accepted=False)
        return exc.explained(bracket, self._signer.expires_in) if bracket is not None else exc

    # -- typed helpers --------------------------------------------------------------------

    async def list_hosts(self, **params: Any) -> list[Host]:
        """Hosts (default ``type=Routing``: hypervisors) with the default details."""
        rows = await self.list_all("listHosts", "host", {"type": "Routing", **params})
        return [Host.from_api(r) for r in rows]

    async def list_virtual_machines(self, **params: Any) -> list[VirtualMachine]:
        """User VMs of every account (``listall=true``, ``details=min``)."""
        rows = await self.list_all(
            "listVirtualMachines", "virtualmachine", {"listall": True, "details": "min", **params}
        )
        return [VirtualMachine.from_api(r) for r in rows]

    async def list_alerts(self, **params: Any) -> list[Alert]:
        """Live (unarchived) alerts, newest ``sent`` first."""
        rows = await self.list_all("listAlerts", "alert", params)
        return [Alert.from_api(r) for r in rows]

    async def archive_alerts(self, ids: Sequence[str]) -> None:
        """Archive alerts by id in one POST; all or nothing on the server (530 voids all)."""
        unique = list(dict.fromkeys(i for i in ids if i))  # the same id twice gets a 530
        if not unique:
            return
        inner = await self.request("archiveAlerts", {"ids": unique})
        if inner.get("success") in (False, "false"):
            raise ServerError(
                HTTP_INTERNAL_ERROR,
                None,
                str(inner.get("displaytext") or "archiveAlerts returned success=false"),
                "archiveAlerts",
                endpoint=self.endpoint,
            )

    async def capabilities(self) -> dict[str, Any]:
        """The ``capability`` object of ``listCapabilities``."""
        inner = await self.request("listCapabilities")
        capability = inner.get("capability")
        if isinstance(capability, list):
            capability = capability[0] if capability else {}
        return dict(capability) if isinstance(capability, Mapping) else {}

    async def version(self) -> str:
        """CloudStack version (``4.19.2.0``), or ``unknown``."""
        capability = await self.capabilities()
        return str(capability.get("cloudstackversion") or "unknown")

    async def configurations(self, prefix: str) -> dict[str, str]:
        """Global settings whose name starts with ``prefix`` (``listConfigurations`` matches
        ``name`` as a substring, so the prefix is checked here)."""
        rows = await self.list_all("listConfigurations", "configuration", {"name": prefix})
        return {
            str(row["name"]): str(row.get("value") if row.get("value") is not None else "")
            for row in rows
            if str(row.get("name", "")).startswith(prefix)
        }

    async def list_api_names(self) -> set[str]:
        """Names of the APIs this account may call (``listApis`` lists only allowed ones)."""
        inner = await self.request("listApis")
        return {
            str(api["name"])
            for api in inner.get("api") or []
            if isinstance(api, Mapping) and api.get("name")
        }



__all__ = [
    "BACKOFF_CAP",
    "MAX_GET_QUERY",
    "CallStats",
    "CloudStackClient",
    "ListInfo",
    "is_read_command",
]
