"""Errors of CloudStack calls: one line each, naming the command and the endpoint host.

Messages never contain the API key, secret or signature: every text passes through
``sidecar.support.redact.redact`` and only the endpoint's host (no query, no user info) is named.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from sidecar.cloudstack.skew import MAX_EXPIRES_AHEAD, PRECISION, SkewBracket
from sidecar.model.constants import (
    HTTP_ACCOUNT_ERROR,
    HTTP_API_DISABLED,
    HTTP_MALFORMED,
    HTTP_PARAM_ERROR,
    HTTP_THROTTLED,
    HTTP_UNAUTHORIZED,
)
from sidecar.support.redact import redact

#: 511: the user must complete two-factor authentication first.
_HTTP_2FA_REQUIRED = 511
#: A 401 for a command the caller's role lacks (not a credentials problem).
_NOT_ALLOWED = re.compile(r"The given command .* either does not exist, is not available for user")
#: The 429 text of the api-rate-limit plugin: ``please retry after [1500] ms.``
_RETRY_AFTER = re.compile(r"retry after \[?(\d+(?:\.\d+)?)\]?\s*ms", re.IGNORECASE)


def endpoint_host(endpoint: str) -> str:
    """``host[:port]`` of an endpoint URL, without user info, path or query."""
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "?"
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    return f"{host}:{port}" if port else host or "?"


def _one_line(text: str) -> str:
    return " ".join(redact(text).split())


def describe_skew(skew: float | None, *, at_least: bool = False) -> str:
    """``server clock is 734 s ahead of this host`` (or behind), or empty when unknown.

    ``at_least``: only a bound is known (``more than 734 s``).
    """
    if skew is None:
        return ""
    seconds = round(abs(skew))
    if seconds == 0 and not at_least:
        return "server clock agrees with this host"
    more = "more than " if at_least else ""
    return f"server clock is {more}{seconds} s {'ahead of' if skew > 0 else 'behind'} this host"


def _auth_hint(skew: float | None, bracket: SkewBracket | None, lifetime: float | None) -> str:
    """What a 401 means, from the Date header's skew and what signed probes found out."""
    by_date = describe_skew(skew)
    if bracket is None:  # not probed
        return (
            "CloudStack rejected the credentials or the request signature: wrong API key or "
            "secret, a disabled or locked user/account, or clock skew beyond the request's "
            "expires window" + (f" ({by_date})" if by_date else "")
        )
    measured = bracket.seconds
    if not bracket.key_works:
        low, high = bracket.searched
        date = f"; its Date header says the {by_date}" if by_date else ""
        return (
            "CloudStack rejected the credentials or the request signature: wrong API key or "
            "secret, a disabled or locked user/account, or clock skew beyond what was probed "
            f"(requests signed for a server clock from {round(-low)} s behind to "
            f"{round(high)} s ahead of this host were refused too{date})"
        )
    if measured is None:
        return (
            "your key works (a signed call was accepted), but others were refused without a "
            "clock to explain it: the key or account changing meanwhile, or a proxy in between"
        )
    text = describe_skew(measured, at_least=not bracket.exact)
    if not bracket.lifetime_refused or lifetime is None:
        # A call signed as the refused one was, sent again at once, went through.
        return (
            f"your key works and the {text}: a signed call right after was accepted, so the "
            "refusal had another cause (the key or account changing meanwhile?); run again"
        )
    if measured > lifetime - PRECISION:
        return f"your key works; the {text}: fix NTP (a signed request is valid {lifetime:g} s)"
    # Refused as signed while earlier expires were accepted: only 4.21's limit does that.
    fix = (
        "fix NTP"
        if lifetime <= MAX_EXPIRES_AHEAD
        else f"lower expiration in cloudstack.ini to {MAX_EXPIRES_AHEAD:g} s or less"
    )
    return (
        f"your key works; the {text}, so a request signed to expire {lifetime:g} s after this "
        f"host's clock lands more than {MAX_EXPIRES_AHEAD / 60:g} minutes after the server's, "
        f"which CloudStack 4.21+ refuses (enforce.post.requests.and.timestamps): {fix}"
    )


class CloudStackError(Exception):
    """Base of every CloudStack call failure; ``str()`` is one secret-free line."""

    def __init__(self, detail: str, *, command: str = "", endpoint: str = "") -> None:
        self.detail = _one_line(detail)
        self.command = command
        self.endpoint = endpoint
        self.host = endpoint_host(endpoint) if endpoint else ""
        super().__init__(str(self))

    def __str__(self) -> str:
        where = " at ".join(p for p in (self.command, self.host) if p)
        return f"{where}: {self.detail}" if where else self.detail

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[CloudStackError], state: dict[str, Any]) -> CloudStackError:
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    Exception.__init__(obj, str(obj))
    return obj


class TransportError(CloudStackError):
    """The endpoint could not be reached: connection refused, timeout, reset, TLS failure."""

    def __init__(self, reason: str, *, command: str = "", endpoint: str = "") -> None:
        self.reason = _one_line(reason)
        safe = endpoint.split("?", 1)[0]
        super().__init__(
            f"cannot reach {safe or 'the endpoint'} ({self.reason}): check the endpoint URL, "
            "the network path and the TLS settings",
            command=command,
            endpoint=endpoint,
        )


class NotJsonError(CloudStackError):
    """The answer was not CloudStack JSON: a login page, a proxy error, XML, broken JSON."""

    def __init__(
        self,
        *,
        status: int,
        content_type: str,
        reason: str = "",
        command: str = "",
        endpoint: str = "",
    ) -> None:
        self.status = status
        self.content_type = content_type or "no content type"
        safe = endpoint.split("?", 1)[0]
        why = f" ({_one_line(reason)})" if reason else ""
        super().__init__(
            f"expected CloudStack JSON from {safe or 'the endpoint'} but got HTTP {status} "
            f"{self.content_type}{why}: check that the endpoint is the API URL "
            "(http(s)://<management-server>:8080/client/api) and not a UI or proxy page",
            command=command,
            endpoint=endpoint,
        )


class MalformedAnswerError(CloudStackError):
    """A JSON answer cut short or garbled on its way (a dropped connection, a proxy): transient.

    Unlike :class:`NotJsonError` it does not mean a wrong endpoint: reads are retried on it.
    """

    def __init__(
        self,
        *,
        status: int,
        content_type: str,
        size: int,
        reason: str,
        tries: int = 1,
        command: str = "",
        endpoint: str = "",
    ) -> None:
        self.status = status
        self.content_type = content_type or "no content type"
        self.size = size
        self.reason = _one_line(reason)
        self.tries = tries
        after = f" after {tries} tries" if tries > 1 else ""
        super().__init__(
            f"the answer was cut short or is not valid JSON{after} (HTTP {status} "
            f"{self.content_type}, {size} bytes: {self.reason}): it broke on its way (a "
            "connection cut, a proxy, a server that stopped writing); run again",
            command=command,
            endpoint=endpoint,
        )

    def tried(self, tries: int) -> MalformedAnswerError:
        """The same error, saying how many tries it took."""
        names = ("status", "content_type", "size", "reason", "command", "endpoint")
        return MalformedAnswerError(tries=tries, **{name: getattr(self, name) for name in names})


class ApiError(CloudStackError):
    """CloudStack answered with an error object (``errorcode`` = HTTP status)."""

    hint: str = ""

    def __init__(
        self,
        errorcode: int,
        cserrorcode: int | None,
        errortext: str,
        command: str,
        *,
        endpoint: str = "",
    ) -> None:
        self.errorcode = errorcode
        self.cserrorcode = cserrorcode
        self.errortext = redact(errortext)
        cs = f", cserrorcode {cserrorcode}" if cserrorcode is not None else ""
        text = self.errortext.strip() or "no error text"
        hint = f": {self.hint}" if self.hint else ""
        super().__init__(
            f"CloudStack error {errorcode}{cs}: {text}{hint}", command=command, endpoint=endpoint
        )


class AuthenticationError(ApiError):
    """401: bad key or secret, disabled user, or a request expired by clock skew.

    ``skew``: what a ``Date`` header showed; ``bracket``: what signed probes found out
    (``sidecar.cloudstack.skew``), with ``lifetime`` the seconds a signed request is valid.
    """

    def __init__(
        self,
        errorcode: int,
        cserrorcode: int | None,
        errortext: str,
        command: str,
        *,
        endpoint: str = "",
        skew: float | None = None,
        bracket: SkewBracket | None = None,
        lifetime: float | None = None,
    ) -> None:
        self.skew = skew
        self.bracket = bracket
        self.lifetime = lifetime
        self.hint = _auth_hint(skew, bracket, lifetime)
        super().__init__(errorcode, cserrorcode, errortext, command, endpoint=endpoint)

    @property
    def measured_skew(self) -> float | None:
        """The probes' estimate of the skew, else the Date header's, else None."""
        if self.bracket is not None and self.bracket.seconds is not None:
            return self.bracket.seconds
        return self.skew

    def explained(self, bracket: SkewBracket | None, lifetime: float) -> AuthenticationError:
        """The same 401, its message saying what the probes found."""
        return AuthenticationError(
            self.errorcode,
            self.cserrorcode,
            self.errortext,
            self.command,
            endpoint=self.endpoint,
            skew=self.skew,
            bracket=bracket,
            lifetime=lifetime,
        )


class CommandNotAllowedError(ApiError):
    """The caller's role lacks the command (401 with its own text), or the API is off (432)."""

    hint = (
        "the account's role does not allow this API (or it does not exist in this release): "
        "grant it, e.g. with the role from `cloudstack-sidecar role`"
    )


class ParameterError(ApiError):
    """430/431: a malformed or invalid parameter (e.g. a uuid that no longer exists)."""


class ThrottledError(ApiError):
    """429: the account's API rate limit; ``retry_after`` seconds come from the text."""

    def __init__(
        self,
        errorcode: int,
        cserrorcode: int | None,
        errortext: str,
        command: str,
        *,
        endpoint: str = "",
    ) -> None:
        self.retry_after = parse_retry_after(errortext)
        self.hint = "lower requests_per_second, or raise api.throttling.max for this account"
        super().__init__(errorcode, cserrorcode, errortext, command, endpoint=endpoint)


class ServerError(ApiError):
    """530, 503 and other 5xx: the management server failed or is shutting down."""


class AccountPermissionError(ApiError):
    """531: the account may not act on this resource."""

    hint = "the account lacks permission for this resource: use a root-admin based role"


def parse_retry_after(errortext: str) -> float | None:
    """Seconds from ``please retry after [<ms>] ms.``, or None."""
    match = _RETRY_AFTER.search(errortext or "")
    return float(match.group(1)) / 1000.0 if match else None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: JSON's 1e999 is inf
        return None


def api_error(
    status: int,
    body: Mapping[str, Any] | None,
    *,
    command: str,
    endpoint: str = "",
    skew: float | None = None,
) -> ApiError:
    """The ApiError subclass for an HTTP status and the inner error object."""
    body = body or {}
    code = _int(body.get("errorcode")) or status
    cscode = _int(body.get("cserrorcode"))
    text = str(body.get("errortext") or "")
    kwargs: dict[str, Any] = {"endpoint": endpoint}
    cls: type[ApiError]
    if code == HTTP_UNAUTHORIZED:
        if _NOT_ALLOWED.search(text):
            cls = CommandNotAllowedError
        else:
            return AuthenticationError(code, cscode, text, command, endpoint=endpoint, skew=skew)
    elif code == HTTP_API_DISABLED:
        cls = CommandNotAllowedError
    elif code in (HTTP_MALFORMED, HTTP_PARAM_ERROR):
        cls = ParameterError
    elif code == HTTP_THROTTLED:
        cls = ThrottledError
    elif code == HTTP_ACCOUNT_ERROR:
        cls = AccountPermissionError
    elif code == _HTTP_2FA_REQUIRED:
        cls = ApiError  # the user must pass two-factor login: retrying cannot help
    elif 500 <= code <= 599:
        cls = ServerError
    else:
        cls = ApiError
    return cls(code, cscode, text, command, **kwargs)


__all__ = [
    "AccountPermissionError",
    "ApiError",
    "AuthenticationError",
    "CloudStackError",
    "CommandNotAllowedError",
    "MalformedAnswerError",
    "NotJsonError",
    "ParameterError",
    "ServerError",
    "ThrottledError",
    "TransportError",
    "api_error",
    "describe_skew",
    "endpoint_host",
    "parse_retry_after",
]
