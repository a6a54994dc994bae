"""Async CloudStack API client: signing, limits, retries, pagination, typed helpers.

One client holds one ``httpx.AsyncClient``; every call goes through the same rate limiter
(``Settings.requests_per_second``) and concurrency bound (``Settings.max_concurrency``).
Reads (``list*``/``get*``/``query*``/``find*``) go by GET and are retried on 5xx, 429 and
transport errors; everything else is POSTed and retried only when the caller says it is
idempotent, or after a 429 (the rate-limit checker rejects a call before it runs).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from sidecar.cloudstack import fanout
from sidecar.cloudstack.config import CloudStackConfig
from sidecar.cloudstack.errors import (
    CloudStackError,
    JobTimeoutError,
    NotJsonError,
    ParameterError,
    ServerError,
    ThrottledError,
    TransportError,
    api_error,
)
from sidecar.cloudstack.models import Alert, AsyncJob, Event, Host, VirtualMachine
from sidecar.cloudstack.ratelimit import RateLimiter, Start
from sidecar.cloudstack.signing import (
    AUTH_PARAMS,
    FORM_CONTENT_TYPE,
    CloudStackSigner,
    encode_params,
    flatten_params,
    java_urlencode,
)
from sidecar.constants import HTTP_INTERNAL_ERROR, MAX_PAGE_SIZE, STATE_CHANGING_PREFIXES_READ
from sidecar.redact import install_log_redaction, register_secret
from sidecar.settings import Settings

log = logging.getLogger(__name__)

#: Longest query string we send by GET; longer reads are POSTed (servlet/proxy URL limits).
MAX_GET_QUERY = 4096
#: Room for apiKey (added separately), response, signatureVersion, expires and signature.
_SIGNING_OVERHEAD = 160
#: Upper bound of one backoff sleep.
BACKOFF_CAP = 30.0
#: Default wait between ``queryAsyncJobResult`` polls (cs uses 2 s).
JOB_POLL_INTERVAL = 2.0
_JSON_TYPES = ("application/json", "text/javascript")
#: 431 text when ``pagesize`` exceeds the server's ``default.page.size``.
_MAX_PAGE_SIZE_TEXT = re.compile(r"max allowed page size value: (\d+)")
#: Request extension that carries a call's :class:`_Attempt` to the request hook.
_ATTEMPT = "sidecar.attempt"


def is_read_command(command: str) -> bool:
    """True for ``list*``, ``get*``, ``query*``, ``find*``: safe to GET and to retry."""
    return command.startswith(STATE_CHANGING_PREFIXES_READ)


@dataclass
class CallStats:
    """What one client did: calls by (command, status), bytes, retries, peak concurrency."""

    calls: Counter[tuple[str, int]] = field(default_factory=Counter)
    bytes_received: int = 0
    retries: int = 0
    max_concurrent: int = 0
    in_flight: int = 0
    seconds: float = 0.0
    rate_limited_seconds: float = 0.0

    @property
    def total(self) -> int:
        """Number of HTTP requests sent (including failed and retried ones)."""
        return sum(self.calls.values())

    def count(self, command: str | None = None, status: int | None = None) -> int:
        """Requests of ``command`` (any if None) that ended with ``status`` (any if None)."""
        return sum(
            n
            for (cmd, st), n in self.calls.items()
            if (command is None or cmd == command) and (status is None or st == status)
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary (status 0 = transport error)."""
        return {
            "calls": [
                {"command": cmd, "status": st, "count": n}
                for (cmd, st), n in sorted(self.calls.items())
            ],
            "total": self.total,
            "bytes_received": self.bytes_received,
            "retries": self.retries,
            "max_concurrent": self.max_concurrent,
            "seconds": round(self.seconds, 3),
            "rate_limited_seconds": round(self.rate_limited_seconds, 3),
        }


@dataclass(frozen=True)
class ListInfo:
    """How a full listing went; ``consistent`` False means rows may have been missed."""

    command: str
    pages: int
    count: int | None
    counts_seen: tuple[int, ...]
    rows: int
    duplicates: int

    @property
    def consistent(self) -> bool:
        """Count stable across pages, no row seen twice, and every counted row held."""
        return (
            len(set(self.counts_seen)) <= 1
            and self.duplicates == 0
            and self.rows >= (self.count or 0)
        )


@dataclass
class _Page:
    rows: list[dict[str, Any]]
    count: int | None


@dataclass
class _Attempt:
    """One HTTP send of ``_call_once``, filled in by the request hook when its slot is granted."""

    starts: list[Start] = field(default_factory=list)
    started: float | None = None
    wall_started: float = 0.0

    def settle(self) -> None:
        for start in self.starts:
            start.settle()


def _count(inner: Mapping[str, Any]) -> int | None:
    try:
        return int(inner["count"])
    except (KeyError, TypeError, ValueError, OverflowError):  # OverflowError: 1e999 is inf
        return None


class CloudStackClient:
    """Async CloudStack API client; use as ``async with CloudStackClient(config) as cs:``."""

    def __init__(
        self,
        config: CloudStackConfig,
        *,
        settings: Settings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_call: Callable[[str, int, float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.settings = settings if settings is not None else Settings()
        self.endpoint = config.endpoint
        self.timeout = self.settings.request_timeout if settings is not None else config.timeout
        self.stats = CallStats()
        self.clock_skew: float | None = None
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
        self._limiter = RateLimiter(self.settings.requests_per_second, clock=clock, sleep=sleep)
        self._semaphore = asyncio.Semaphore(self.settings.max_concurrency)
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
            limit = self.settings.max_concurrency
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

    async def _call_once(self, command: str, flat: Mapping[str, str]) -> dict[str, Any]:
        request = self._build_request(command, flat)
        http = self._ensure_http()
        attempt = _Attempt()
        request.extensions[_ATTEMPT] = attempt  # the signed copy shares it with the hook
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
            raise NotJsonError(
                status=status,
                content_type=ctype,
                reason=f"redirected to {location}" if response.is_redirect and location else "",
                command=command,
                endpoint=self.endpoint,
            )
        try:
            data = response.json()
        except ValueError as exc:
            raise NotJsonError(
                status=status,
                content_type=ctype,
                reason=f"malformed JSON: {exc}",
                command=command,
                endpoint=self.endpoint,
            ) from None
        inner = self._unwrap(command, data, status, ctype)
        if status != 200 or "errorcode" in inner:
            raise api_error(
                status, inner, command=command, endpoint=self.endpoint, skew=self.clock_skew
            )
        return inner

    def _unwrap(self, command: str, data: Any, status: int, ctype: str) -> dict[str, Any]:
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
            raise NotJsonError(
                status=status,
                content_type=ctype,
                reason="not a CloudStack response object",
                command=command,
                endpoint=self.endpoint,
            )
        return inner

    def _backoff(self, attempt: int) -> float:
        """Capped exponential backoff with jitter (half to full of the nominal delay)."""
        nominal = min(BACKOFF_CAP, self.settings.retry_backoff * (2**attempt))
        return nominal * self._rng.uniform(0.5, 1.0)

    async def request(
        self, command: str, params: Mapping[str, Any] | None = None, *, idempotent: bool = False
    ) -> dict[str, Any]:
        """Call ``command`` and return the inner ``<command>response`` object."""
        flat = flatten_params(params)
        may_retry = is_read_command(command) or idempotent
        attempt = 0
        while True:
            delay = wait = 0.0
            try:
                return await self._call_once(command, flat)
            except ThrottledError as exc:
                # The rate-limit checker rejects a call before it runs, so even a write may be
                # resent. Everyone waits (via the limiter) until the named time has passed.
                if attempt >= self.settings.max_retries:
                    raise
                wait = exc.retry_after if exc.retry_after is not None else self._backoff(attempt)
                self._limiter.pause_for(wait)  # the retry sleeps in the limiter, not here
                reason: CloudStackError = exc
            except (ServerError, TransportError, NotJsonError) as exc:
                retryable = not isinstance(exc, NotJsonError) or exc.status >= 500
                if not (may_retry and retryable) or attempt >= self.settings.max_retries:
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
                self.settings.max_retries,
                command,
                delay or wait,
                reason.detail,
            )
            if delay > 0:
                await self._sleep(delay)

    # -- pagination -----------------------------------------------------------------------

    def _paging_params(self, params: Mapping[str, Any] | None) -> tuple[dict[str, str], int]:
        base = flatten_params(params)
        base.pop("page", None)
        try:
            size = int(base.get("pagesize", MAX_PAGE_SIZE))
        except ValueError:
            size = MAX_PAGE_SIZE
        size = MAX_PAGE_SIZE if size <= 0 else min(size, MAX_PAGE_SIZE)
        base["pagesize"] = str(size)
        return base, size

    async def _first_page(
        self,
        command: str,
        list_key: str,
        base: dict[str, str],
        on_page: Callable[[int], None] | None,
    ) -> tuple[_Page, int]:
        """Page 1; if the server's ``default.page.size`` is below ours, adopt it once."""
        try:
            return await self._page(command, list_key, base, 1, on_page), int(base["pagesize"])
        except ParameterError as exc:
            match = _MAX_PAGE_SIZE_TEXT.search(exc.errortext)
            if not match or int(match.group(1)) <= 0:
                raise
            size = int(match.group(1))
            log.info("%s: the server allows at most %d rows per page", command, size)
            base["pagesize"] = str(size)
            return await self._page(command, list_key, base, 1, on_page), size

    async def _page(
        self,
        command: str,
        list_key: str,
        base: Mapping[str, str],
        page: int,
        on_page: Callable[[int], None] | None = None,
    ) -> _Page:
        # ``{}`` = no rows at all; ``{"count": N}`` without the list key = past the end.
        inner = await self.request(command, {**base, "page": str(page)})
        rows = inner.get(list_key) or []
        if not isinstance(rows, list):
            rows = []
        if on_page is not None:
            on_page(len(rows))
        return _Page([r for r in rows if isinstance(r, dict)], _count(inner))

    async def list_all_with_info(
        self,
        command: str,
        list_key: str,
        params: Mapping[str, Any] | None = None,
        *,
        on_page: Callable[[int], None] | None = None,
    ) -> tuple[list[dict[str, Any]], ListInfo]:
        """Every row of a list command (de-duplicated by id) and how consistent it was."""
        base, _ = self._paging_params(params)
        first, size = await self._first_page(command, list_key, base, on_page)
        pages: dict[int, _Page] = {1: first}
        if len(first.rows) == size and first.count is not None and first.count > size:
            last = math.ceil(first.count / size)
            fetched = await fanout.gather(
                *(self._page(command, list_key, base, p, on_page) for p in range(2, last + 1))
            )
            pages.update(zip(range(2, last + 1), fetched, strict=True))
        # Rows may have been added while we paged: go on while the last page was full and the
        # newest count says there is more (no extra empty page when the total is a multiple
        # of the page size).
        number = max(pages)
        while len(pages[number].rows) == size:
            latest = pages[number].count
            if latest is not None and number * size >= latest:
                break
            number += 1
            pages[number] = await self._page(command, list_key, base, number, on_page)
        rows: list[dict[str, Any]] = []
        seen: set[Any] = set()
        duplicates = 0
        for number in sorted(pages):
            for row in pages[number].rows:
                row_id = row.get("id")
                if row_id is not None:
                    if row_id in seen:
                        duplicates += 1
                        continue
                    seen.add(row_id)
                rows.append(row)
        counts = tuple(p.count for _, p in sorted(pages.items()) if p.count is not None)
        info = ListInfo(
            command=command,
            pages=len(pages),
            count=counts[-1] if counts else None,
            counts_seen=counts,
            rows=len(rows),
            duplicates=duplicates,
        )
        if not info.consistent:
            log.info(
                "%s changed while paging (counts %s, %d duplicate rows, %d rows held)",
                command,
                sorted(set(counts)),
                duplicates,
                len(rows),
            )
        return rows, info

    async def list_all(
        self, command: str, list_key: str, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Every row of a list command, de-duplicated by id."""
        rows, _ = await self.list_all_with_info(command, list_key, params)
        return rows

    async def iter_pages(
        self, command: str, list_key: str, params: Mapping[str, Any] | None = None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield page after page (rows not seen on earlier pages), so a caller can stop early."""
        base, _ = self._paging_params(params)
        page, size = await self._first_page(command, list_key, base, None)
        seen: set[Any] = set()
        number = 1
        while True:
            if number > 1:
                page = await self._page(command, list_key, base, number)
            fresh = []
            for row in page.rows:
                row_id = row.get("id")
                if row_id is not None:
                    if row_id in seen:
                        continue
                    seen.add(row_id)
                fresh.append(row)
            if fresh:
                yield fresh
            if len(page.rows) < size:
                return
            number += 1

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

    async def list_events(self, **params: Any) -> list[Event]:
        """Events of every account (``listall=true``), newest first."""
        rows = await self.list_all("listEvents", "event", {"listall": True, **params})
        return [Event.from_api(r) for r in rows]

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

    async def list_api_names(self) -> set[str]:
        """Names of the APIs this account may call (``listApis`` lists only allowed ones)."""
        inner = await self.request("listApis")
        return {
            str(api["name"])
            for api in inner.get("api") or []
            if isinstance(api, Mapping) and api.get("name")
        }

    async def wait_for_job(
        self, jobid: str, *, deadline: float, poll_interval: float = JOB_POLL_INTERVAL
    ) -> AsyncJob:
        """Poll ``queryAsyncJobResult`` until the job ends (status 1/2/3) or ``deadline`` s pass.

        Returns the finished job whatever its status; raises JobTimeoutError on the deadline.
        """
        started = self._clock()
        waited = 0.0
        while True:
            inner = await self.request("queryAsyncJobResult", {"jobid": jobid})
            job = AsyncJob.from_api({"jobid": jobid, **inner})
            if job.done:
                return job
            # Count both the clock and our own sleeps, so a fake sleep still ends the loop.
            elapsed = max(self._clock() - started, waited)
            if elapsed + poll_interval > deadline:
                raise JobTimeoutError(
                    f"async job {jobid} still pending after {elapsed:.0f} s "
                    f"(deadline {deadline:.0f} s): check it with queryAsyncJobResult",
                    command="queryAsyncJobResult",
                    endpoint=self.endpoint,
                )
            waited += poll_interval
            await self._sleep(poll_interval)


__all__ = [
    "BACKOFF_CAP",
    "MAX_GET_QUERY",
    "CallStats",
    "CloudStackClient",
    "ListInfo",
    "is_read_command",
]
